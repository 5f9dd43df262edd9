// The transfer engine through the store interface, in-process: an in-memory
// store (test/support/memory-store.ts) that can break a body midway, fail a
// part or hang until cancelled. What moves is compared byte for byte, and
// after every path the budget must have every buffer back.
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { PluginError } from "../../src/errors.js";
import { BufferBudget } from "../../src/transfer/buffer-budget.js";
import { crc32, crc32ToBase64 } from "../../src/transfer/crc32.js";
import { TransferEngine } from "../../src/transfer/engine.js";
import { LateUploadWatch } from "../../src/transfer/late-uploads.js";
import { until } from "../support/bounded.js";
import { MemoryStore, memoryTarget, s3Failure } from "../support/memory-store.js";

const MiB = 1024 * 1024;
const work = mkdtempSync(join(tmpdir(), "engine-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function setup(tuning: string) {
  const store = new MemoryStore();
  const target = memoryTarget(store, tuning);
  const budget = new BufferBudget(64 * MiB);
  const engine = new TransferEngine(budget, new LateUploadWatch(0));
  return { store, budget, engine, target };
}

async function* chunksOf(data: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let off = 0; off < data.length; off += size) yield data.subarray(off, off + size);
}

describe("download", () => {
  it("fetches a range again when its body breaks midway; the file is the object, byte for byte", async () => {
    const { store, budget, engine, target } = setup("{partSizeMiB: 5, multipartThresholdMiB: 5, partConcurrency: 3}");
    const data = randomBytes(23 * MiB + 17);
    store.objects.set("big", data);
    let broken = 0;
    store.before = (op, _key, range) => {
      if (op === "get" && range?.startsWith(`bytes=${5 * MiB}-`) && broken++ === 0) return { cut: MiB + 3 };
    };
    const progress = { bytes: 0 };
    const dest = join(work, "big.bin");
    expect(await engine.job(target, progress).download("big", dest, new AbortController().signal)).toBe(data.length);
    expect(readFileSync(dest).equals(data)).toBe(true);
    expect(broken).toBe(2); // the cut attempt and the one after it
    expect(store.count("get")).toBe(Math.ceil(data.length / (5 * MiB)) + 1);
    expect(progress.bytes).toBe(data.length + MiB + 3); // the broken attempt's bytes moved too
    expect(budget.inUse).toBe(0);
  });

  it("fails on bytes that do not match the object's CRC32 and leaves no file behind", async () => {
    const { store, budget, engine, target } = setup("{partSizeMiB: 5, multipartThresholdMiB: 5}");
    const data = randomBytes(12 * MiB);
    store.objects.set("k", data);
    const head = store.head.bind(store);
    store.head = async (...args) => ({
      ...(await head(...args)),
      crc32: crc32ToBase64(crc32(Buffer.from("something else"))),
    });
    const dir = mkdtempSync(join(work, "crc-"));
    await expect(engine.job(target).download("k", join(dir, "k.bin"), new AbortController().signal)).rejects.toThrow(
      /checksum mismatch for s3:\/\/mem\/k \(endpoint memory\)/,
    );
    expect(readdirSync(dir)).toEqual([]);
    expect(budget.inUse).toBe(0);
  });

  it("counts each job's bytes in its own progress", async () => {
    const { store, engine, target } = setup("{partSizeMiB: 5, multipartThresholdMiB: 5}");
    store.objects.set("a", randomBytes(7 * MiB));
    store.objects.set("b", randomBytes(300 * 1024));
    const pa = { bytes: 0 };
    const pb = { bytes: 0 };
    const signal = new AbortController().signal;
    await Promise.all([
      engine.job(target, pa).download("a", join(work, "a"), signal),
      engine.job(target, pb).download("b", join(work, "b"), signal),
    ]);
    expect([pa.bytes, pb.bytes]).toEqual([7 * MiB, 300 * 1024]);
  });
});

describe("read (OpenStream)", () => {
  it("hands out the object in order; the range a consumer held when it stopped early is never reused, the rest are", async () => {
    const { store, budget, engine, target } = setup("{partSizeMiB: 5, multipartThresholdMiB: 5, partConcurrency: 2}");
    const data = randomBytes(17 * MiB + 3);
    store.objects.set("k", data);
    const signal = new AbortController().signal;
    const whole: Buffer[] = [];
    for await (const r of engine.job(target).read("k", signal)) whole.push(Buffer.from(r));
    expect(Buffer.concat(whole).equals(data)).toBe(true);
    expect(budget.inUse).toBe(0);
    const keptAfterWhole = budget.kept;
    expect(keptAfterWhole).toBeGreaterThan(0); // a stream read to its end gives every buffer back for reuse

    // A consumer that stops while it holds a range (OpenStream's frames of it may still be queued in
    // its transport): that buffer is let go, not kept, so no later call can write into it.
    const stream = engine.job(target).read("k", signal);
    const first = (await stream.next()).value as Buffer;
    expect(first.equals(data.subarray(0, first.length))).toBe(true);
    await stream.return(undefined);
    await until("the read-ahead ranges to come back", () => budget.inUse === 0, 5_000);
    expect(budget.kept).toBeGreaterThan(0); // the ranges read ahead are kept
    const size = first.buffer.byteLength;
    const taken: Buffer[] = [];
    for (let i = 0; i < 8; i++) taken.push(await budget.acquire(size));
    expect(taken.filter((t) => t.buffer === first.buffer)).toEqual([]);
    for (const t of taken) budget.release(t);
  });
});

describe("upload", () => {
  it("uploads a file in parts that arrive whole; the object is the file", async () => {
    const { store, budget, engine, target } = setup("{partSizeMiB: 5, multipartThresholdMiB: 5, partConcurrency: 2}");
    const data = randomBytes(17 * MiB + 5);
    const path = join(work, "up.bin");
    writeFileSync(path, data);
    const r = await engine.job(target).uploadFile("up", path, new AbortController().signal);
    expect(r).toEqual({ bytes: data.length, parts: 4 });
    expect(store.objects.get("up")!.equals(data)).toBe(true);
    expect(store.count("abort")).toBe(0);
    expect(budget.inUse).toBe(0);
  });

  it("a stream whose part fails ends in one abort, names the part, and gives every buffer back", async () => {
    const { store, budget, engine, target } = setup("{partSizeMiB: 5, partConcurrency: 1}");
    store.before = (op, _key, part) => {
      if (op === "part" && part === "2") throw s3Failure(403, "AccessDenied");
    };
    const data = randomBytes(22 * MiB);
    const e = await engine
      .job(target)
      .uploadStream("s", chunksOf(data, 2 * MiB), new AbortController().signal)
      .catch((x: unknown) => x);
    expect(e).toBeInstanceOf(PluginError);
    expect((e as Error).message).toMatch(/UploadPart 2 s3:\/\/mem\/s \(endpoint memory\) failed: AccessDenied/);
    expect(store.count("abort")).toBe(1);
    expect(store.uploads.size).toBe(0);
    expect(store.objects.has("s")).toBe(false);
    // Part 3 was cut from the stream while part 2 ran, then refused by the failed group: its buffer too.
    expect(budget.inUse).toBe(0);
  });

  it("a stream whose CreateMultipartUpload fails gives its first part's buffer back", async () => {
    const { store, budget, engine, target } = setup("{partSizeMiB: 5}");
    store.before = (op) => {
      if (op === "create") throw s3Failure(403, "AccessDenied");
    };
    await expect(
      engine.job(target).uploadStream("c", chunksOf(randomBytes(12 * MiB), MiB), new AbortController().signal),
    ).rejects.toThrow(/CreateMultipartUpload s3:\/\/mem\/c \(endpoint memory\) failed: AccessDenied/);
    expect(store.count("part")).toBe(0);
    expect(budget.inUse).toBe(0);
  });

  it("a Create answered after the caller left: that upload is aborted at once, named, and no late-upload watch starts", async () => {
    const { store, budget, target } = setup("{partSizeMiB: 5, multipartThresholdMiB: 5}");
    const watched: string[] = [];
    const watch = new (class extends LateUploadWatch {
      override watch(_t: unknown, key: string): void {
        watched.push(key);
      }
    })(60_000);
    const engine = new TransferEngine(budget, watch);
    const path = join(work, "late.bin");
    writeFileSync(path, randomBytes(12 * MiB));
    const ctl = new AbortController();
    // The caller goes (a sibling file failed with no answer, say) while the Create is on its way; the store still answers.
    const sibling = s3Failure(500, "InternalError");
    store.before = (op) => {
      if (op !== "create") return;
      ctl.abort(Object.assign(new PluginError("storage", "a sibling failed", { retryable: true }), { cause: sibling }));
      return new Promise<void>((r) => setTimeout(r, 20));
    };
    const e = await engine
      .job(target)
      .uploadFile("late", path, ctl.signal)
      .catch((x: unknown) => x);
    expect((e as PluginError).kind).toBe("cancelled");
    expect((e as Error).message).toBe("CreateMultipartUpload s3://mem/late (endpoint memory): cancelled");
    expect([store.count("create"), store.count("part"), store.count("abort")]).toEqual([1, 0, 1]);
    expect(store.uploads.size).toBe(0);
    expect(watched).toEqual([]);
    expect(budget.inUse).toBe(0);
  });

  it("an Abort that fails for want of credentials is tried again, not given up", async () => {
    const { store, budget, engine, target } = setup("{partSizeMiB: 5, multipartThresholdMiB: 5}");
    let aborts = 0;
    store.before = (op, _key, part) => {
      if (op === "part" && part === "2") throw s3Failure(403, "AccessDenied");
      if (op === "abort" && aborts++ === 0)
        throw new PluginError("credentials", "could not read Kubernetes secret (test)");
    };
    const path = join(work, "abort.bin");
    writeFileSync(path, randomBytes(12 * MiB));
    await expect(engine.job(target).uploadFile("abort", path, new AbortController().signal)).rejects.toThrow(
      /UploadPart 2 .*AccessDenied/,
    );
    expect(store.count("abort")).toBe(2);
    expect(store.uploads.size).toBe(0);
    expect(budget.inUse).toBe(0);
  });

  it("a Save cancelled while parts hang is aborted once and gives every buffer back", async () => {
    const { store, budget, engine, target } = setup("{partSizeMiB: 5, multipartThresholdMiB: 5, partConcurrency: 3}");
    const path = join(work, "slow.bin");
    writeFileSync(path, randomBytes(30 * MiB));
    const ctl = new AbortController();
    store.before = (op, _key, _d, signal) => {
      if (op !== "part") return;
      if (store.count("part") === 3)
        setImmediate(() => ctl.abort(new PluginError("cancelled", "Save: cancelled by the client")));
      // Hangs until cancelled, as a stalled store does.
      return new Promise<void>((_, reject) =>
        signal?.addEventListener("abort", () => reject(Object.assign(new Error("aborted"), { name: "AbortError" })), {
          once: true,
        }),
      );
    };
    const e = await engine
      .job(target)
      .uploadFile("slow", path, ctl.signal)
      .catch((x: unknown) => x);
    expect((e as PluginError).kind).toBe("cancelled");
    expect(store.count("part")).toBe(3);
    expect(store.count("abort")).toBe(1);
    expect(store.uploads.size).toBe(0);
    expect(budget.inUse).toBe(0);
  });

  it("a stream holds no part buffer while its sender is quiet: not before the first chunk, not between parts", async () => {
    const { store, budget, engine, target } = setup("{partSizeMiB: 5}");
    const data = randomBytes(7 * MiB);
    const gate = () => {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      return { promise, resolve };
    };
    const gates = [gate(), gate()];
    async function* quiet(): AsyncGenerator<Buffer> {
      await gates[0]!.promise; // metadata sent, then nothing for a while
      yield data.subarray(0, 5 * MiB);
      await gates[1]!.promise; // one full part, then quiet again
      yield data.subarray(5 * MiB);
    }
    const done = engine.job(target).uploadStream("quiet", quiet(), new AbortController().signal);
    await new Promise((r) => setTimeout(r, 50));
    expect(budget.inUse, "before the first chunk").toBe(0);
    gates[0]!.resolve();
    await until("the first part stored", () => store.count("part") === 1, 5_000);
    await new Promise((r) => setTimeout(r, 50));
    expect(budget.inUse, "between parts").toBe(0);
    gates[1]!.resolve();
    expect(await done).toEqual({ bytes: data.length, parts: 2 });
    expect(store.objects.get("quiet")!.equals(data)).toBe(true);
    expect(budget.inUse).toBe(0);
  });

  it("an empty stream is an empty object, with no buffer taken", async () => {
    const { store, budget, engine, target } = setup("{}");
    const seen: number[] = [];
    const orig = budget.acquire.bind(budget);
    budget.acquire = (n: number, s: AbortSignal) => (seen.push(n), orig(n, s));
    async function* none(): AsyncGenerator<Buffer> {}
    expect(await engine.job(target).uploadStream("empty", none(), new AbortController().signal)).toEqual({
      bytes: 0,
      parts: 1,
    });
    expect(store.objects.get("empty")!.length).toBe(0);
    expect(seen).toEqual([]);
  });

  it("a stream that ends inside its first part is one PUT with the exact bytes", async () => {
    const { store, budget, engine, target } = setup("{partSizeMiB: 5}");
    const data = randomBytes(3 * MiB + 1);
    expect(
      await engine.job(target).uploadStream("one", chunksOf(data, 64 * 1024 + 1), new AbortController().signal),
    ).toEqual({ bytes: data.length, parts: 1 });
    expect(store.objects.get("one")!.equals(data)).toBe(true);
    expect(store.count("create")).toBe(0);
    expect(budget.inUse).toBe(0);
  });
});

describe("late-upload watch", () => {
  it("follows an upload that appears at the end of the window until it is old enough, then aborts it; leaves one with parts", async () => {
    const store = new MemoryStore();
    const target = memoryTarget(store);
    const events: string[] = [];
    // Window 800 ms: looks every 100 ms, an upload must be 200 ms old without parts.
    const watch = new LateUploadWatch(800, (e) =>
      events.push(e.event === "aborted" ? `aborted ${e.uploadId}` : `failed ${e.error}`),
    );
    const failedAt = Date.now();
    watch.watch(target, "k", failedAt);
    await new Promise((r) => setTimeout(r, 700));
    // The stalled store carries the lost Create out now, late in the window; another writer's upload has a part.
    store.uploads.set("lost", { key: "k", parts: new Map(), initiated: new Date() });
    store.uploads.set("busy", { key: "k", parts: new Map([[1, Buffer.from("x")]]), initiated: new Date() });
    await until("the lost upload aborted", () => !store.uploads.has("lost"), 3000);
    expect(events).toEqual(["aborted lost"]);
    expect(store.uploads.has("busy")).toBe(true);
  });
});

describe("prefixes", () => {
  it("downloadAll: every object to the path given, markers passed over, bytes equal; counts what moved", async () => {
    const { store, budget, engine, target } = setup("{fileConcurrency: 3}");
    const files = new Map<string, Buffer>();
    for (let i = 0; i < 20; i++) files.set(`dir/f${i}`, randomBytes(1000 + i * 777));
    for (const [k, v] of files) store.objects.set(k, v);
    store.objects.set("dir/marker/", Buffer.alloc(0));
    store.objects.set("dirt", Buffer.from("not under dir/"));
    const dest = mkdtempSync(join(work, "all-"));
    const moved = await engine
      .job(target)
      .downloadAll(
        "dir/",
        async (obj) => (obj.key.endsWith("/") ? undefined : { path: join(dest, obj.key.slice(4)), opts: {} }),
        new AbortController().signal,
      );
    expect(moved).toEqual({ files: 20, bytes: [...files.values()].reduce((n, b) => n + b.length, 0) });
    expect(readdirSync(dest).sort()).toEqual([...files.keys()].map((k) => k.slice(4)).sort());
    for (const [k, v] of files) expect(readFileSync(join(dest, k.slice(4))).equals(v)).toBe(true);
    expect(budget.inUse).toBe(0);
  });

  it("downloadAll: the first failure is what is thrown, and no more objects start after it", async () => {
    const { store, budget, engine, target } = setup("{fileConcurrency: 2}");
    for (let i = 0; i < 50; i++) store.objects.set(`p/${String(i).padStart(2, "0")}`, randomBytes(100));
    store.before = (op, key) => {
      if (op === "get" && key === "p/03") throw s3Failure(403, "AccessDenied");
    };
    const dest = mkdtempSync(join(work, "fail-"));
    await expect(
      engine
        .job(target)
        .downloadAll(
          "p/",
          async (obj) => ({ path: join(dest, obj.key.slice(2)), opts: {} }),
          new AbortController().signal,
        ),
    ).rejects.toThrow(/GetObject s3:\/\/mem\/p\/03 .*AccessDenied/);
    // At most the two in flight beside the failed one had started.
    expect(store.count("get")).toBeLessThanOrEqual(6);
    expect(budget.inUse).toBe(0);
  });

  it("uploadAll: every file to its key, byte for byte", async () => {
    const { store, engine, target } = setup("{fileConcurrency: 4}");
    const dir = mkdtempSync(join(work, "up-"));
    const want = new Map<string, Buffer>();
    for (let i = 0; i < 12; i++) {
      const data = randomBytes(500 * i + 1);
      writeFileSync(join(dir, `f${i}`), data);
      want.set(`out/f${i}`, data);
    }
    async function* files() {
      for (const k of want.keys()) yield { key: k, path: join(dir, k.slice(4)) };
    }
    const moved = await engine.job(target).uploadAll(files(), dir, new AbortController().signal);
    expect(moved.files).toBe(12);
    for (const [k, v] of want) expect(store.objects.get(k)?.equals(v)).toBe(true);
  });

  it("deletePrefix: batches of at most 1,000 keys as the listing streams, only under the prefix", async () => {
    const { store, engine, target } = setup("{}");
    for (let i = 0; i < 2500; i++) store.objects.set(`gc/${i}`, Buffer.from("x"));
    store.objects.set("gc-not/0", Buffer.from("x"));
    const sizes: number[] = [];
    const deleteObjects = store.deleteObjects.bind(store);
    store.deleteObjects = (keys, prefix, o) => (sizes.push(keys.length), deleteObjects(keys, prefix, o));
    expect(await engine.deletePrefix(target, "gc/", new AbortController().signal)).toBe(2500);
    expect(sizes).toEqual([1000, 1000, 500]);
    expect([...store.objects.keys()]).toEqual(["gc-not/0"]);
  });
});
