// Client cancellation (call.cancel()) and gRPC deadlines on every RPC, with a
// real MinIO. The plugin must stop the work promptly (its own "rpc" log line
// for the call appears within seconds, even while MinIO is frozen and would
// never answer), clean up (no temporary or partial file at a Load target, no
// multipart upload, no object from an upload that did not succeed), and not
// leak: the plugin's open file descriptors come back to the baseline after
// every round of 20 cancellations.
import { type MinioServer, startMinio } from "../../scripts/lib/minio.mjs";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Metadata, status } from "@grpc/grpc-js";
import { CreateBucketCommand, ListMultipartUploadsCommand, PutObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stopAndScan, tally } from "../support/ledger.js";
import { adminClient, objectSha, rootKeysEnv, uploadsLeft } from "../support/minio-access.js";
import { type PluginProcess, artifact, startPlugin } from "../support/plugin.js";

const MiB = 1024 * 1024;
const BUCKET = "cancel";
const SIZE = 40 * MiB;
const REPS = 20;
const FD_SLACK = 2; // sockets the plugin closes lazily

let minio: MinioServer;
let plugin: PluginProcess;
let s3: S3Client;
let work: string;
let source: Buffer;
let sourceSha: string;
let fdBaseline: number;

// requestTimeoutSeconds is long on purpose: only the cancellation can end a call to a frozen MinIO.
const cfg = () =>
  `endpoint: ${minio.endpoint}\nbucket: ${BUCKET}\ninsecure: true\n` +
  `tuning: {partSizeMiB: 5, partConcurrency: 2, multipartThresholdMiB: 5, maxAttempts: 3, requestTimeoutSeconds: 120}\n`;
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const rand = (lo: number, hi: number) => Math.floor(lo + Math.random() * (hi - lo));

const fdCount = () => readdirSync(`/proc/${plugin.proc.pid}/fd`).length;

async function fdsBackToBaseline(): Promise<void> {
  let n = fdCount();
  for (let i = 0; i < 100 && n > fdBaseline + FD_SLACK; i++) {
    await sleep(100);
    n = fdCount();
  }
  expect(n, `plugin fds (baseline ${fdBaseline})`).toBeLessThanOrEqual(fdBaseline + FD_SLACK);
}

interface RpcLine {
  method: string;
  key?: string;
  outcome: string;
  durationMs: number;
}
function rpcLines(method: string): RpcLine[] {
  return plugin
    .output()
    .split("\n")
    .filter((l) => l.includes('"msg":"rpc"') && l.includes(`"method":"${method}"`))
    .map((l) => JSON.parse(l) as RpcLine);
}

/** The plugin's own end-of-RPC line: the handler (cleanup included) has returned. */
async function serverFinished(method: string, before: number, withinMs = 10_000): Promise<RpcLine> {
  const until = Date.now() + withinMs;
  for (;;) {
    const lines = rpcLines(method);
    if (lines.length > before) return lines[before]!;
    if (Date.now() > until)
      throw new Error(`${method}: the plugin did not finish the call within ${withinMs} ms after it was cancelled`);
    await sleep(20);
  }
}

type Stop = { deadlineMs: number } | { cancelAfterMs: number };
type GrpcResult = { code: number | undefined; res?: unknown };

/** A unary call on the raw client, ended by a deadline or by call.cancel(). */
function unary(method: string, req: unknown, stop: Stop): Promise<GrpcResult> {
  return new Promise((resolve) => {
    const fn = plugin.client.raw[method] as (
      req: unknown,
      md: Metadata,
      opts: object,
      cb: (e: { code?: number } | null, r: unknown) => void,
    ) => { cancel(): void };
    const opts = "deadlineMs" in stop ? { deadline: Date.now() + stop.deadlineMs } : { deadline: Date.now() + 60_000 };
    const call = fn.call(plugin.client.raw, req, new Metadata(), opts, (e, res) =>
      resolve(e ? { code: e.code } : { code: status.OK, res }),
    );
    if ("cancelAfterMs" in stop) setTimeout(() => call.cancel(), stop.cancelAfterMs);
  });
}

const stopFor = (i: number, lo: number, hi: number): Stop =>
  i % 2 === 0 ? { deadlineMs: rand(lo, hi) } : { cancelAfterMs: rand(lo, hi) };
const ENDED = [status.OK, status.CANCELLED, status.DEADLINE_EXCEEDED];

async function noUploadsLeft(): Promise<void> {
  expect(await uploadsLeft(s3, BUCKET)).toEqual([]);
}

/** An upload ended by the client: the object exists only if the plugin logged success, and then whole. */
async function uploadCleanedUp(suite: string, key: string, line: RpcLine): Promise<void> {
  const stored = await objectSha(s3, BUCKET, key);
  if (line.outcome === "ok") tally({ suite, bytesChecked: SIZE, bytesLost: stored === sourceSha ? 0 : SIZE });
  if (line.outcome === "ok") expect(stored).toBe(sourceSha);
  else expect(stored, `${key} (${line.outcome}) left an object`).toBeUndefined();
  const byKey = await s3.send(new ListMultipartUploadsCommand({ Bucket: BUCKET, Prefix: key }));
  tally({ suite, orphanUploads: (byKey.Uploads ?? []).length });
  expect(byKey.Uploads ?? []).toEqual([]);
}

/** One cancellation or deadline, counted as injected now and as survived once `checks` pass. */
async function counted(suite: string, checks: () => Promise<void>): Promise<void> {
  tally({ suite, faultsInjected: 1 });
  await checks();
  tally({ suite, faultsSurvived: 1 });
}
const SUITE = (method: string) => `cancellation: ${method} (client cancel / deadline)`;

beforeAll(async () => {
  minio = await startMinio();
  s3 = adminClient(minio);
  await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  work = mkdtempSync(join(tmpdir(), "cancel-"));
  mkdirSync(join(work, "loads"));
  source = randomBytes(SIZE);
  sourceSha = sha(source);
  writeFileSync(join(work, "source.bin"), source);
  plugin = await startPlugin(rootKeysEnv(minio));
  const c = plugin.client;
  // One of every RPC run to completion first, so the baseline holds whatever the
  // process keeps for good (S3 client, keep-alive sockets, the gRPC connection).
  expect(await c.save(artifact(cfg(), "big.bin"), join(work, "source.bin"))).toEqual({ success: true, error: "" });
  expect(
    await c.saveStream(artifact(cfg(), "streamed.bin"), [
      source.subarray(0, 6 * MiB),
      source.subarray(6 * MiB, 12 * MiB),
    ]),
  ).toEqual({ success: true, error: "" });
  expect(await c.load(artifact(cfg(), "big.bin"), join(work, "warm.bin"))).toEqual({ success: true, error: "" });
  expect((await c.openStream(artifact(cfg(), "big.bin"), { discard: true })).frames.at(-1)?.isEnd).toBe(true);
  for (let i = 0; i < 3; i++) await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: `dir/f${i}`, Body: "x" }));
  expect((await c.listObjects(artifact(cfg(), "dir"))).objects).toHaveLength(3);
  expect((await c.isDirectory(artifact(cfg(), "dir"))).isDirectory).toBe(true);
  await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "gone", Body: "x" }));
  expect(await c.delete(artifact(cfg(), "gone"))).toEqual({ success: true, error: "" });
  rmSync(join(work, "warm.bin"));
  await sleep(500);
  fdBaseline = fdCount();
});

afterAll(async () => {
  // What the plugin logged for each call: how many it finished as cancelled, and how many it had completed anyway.
  const summary: Record<string, Record<string, number>> = {};
  for (const m of ["Load", "Save", "SaveStream", "OpenStream", "ListObjects", "IsDirectory", "Delete"]) {
    for (const l of plugin ? rpcLines(m) : [])
      (summary[m] ??= {})[l.outcome] = ((summary[m] ??= {})[l.outcome] ?? 0) + 1;
  }
  console.log(
    `plugin outcomes (warm-up calls included): ${JSON.stringify(summary)}; fd baseline ${fdBaseline}, at the end ${plugin ? fdCount() : "?"}`,
  );
  minio?.thaw();
  await stopAndScan("cancellation", plugin, { "MinIO root secret key": minio?.secretKey });
  await minio?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe(`${REPS} cancellations or deadlines per RPC: the plugin stops, cleans up, and leaks no descriptors`, () => {
  it("Load (40 MiB, ranged GETs into a temporary sibling)", async () => {
    for (let i = 0; i < REPS; i++) {
      const target = join(work, "loads", `load-${i}`);
      const before = rpcLines("Load").length;
      await counted(SUITE("Load"), async () => {
        const r = await unary("Load", { inputArtifact: artifact(cfg(), "big.bin"), path: target }, stopFor(i, 20, 250));
        expect(ENDED).toContain(r.code);
        const line = await serverFinished("Load", before);
        // Whole and correct, or nothing; never a temporary ".<name>.<hex>.part" file.
        if (existsSync(target)) {
          const whole = sha(readFileSync(target)) === sourceSha;
          tally({ suite: SUITE("Load"), bytesChecked: SIZE, bytesLost: whole ? 0 : SIZE });
          expect(line.outcome).toBe("ok");
          expect(whole).toBe(true);
          rmSync(target);
        }
        expect(readdirSync(join(work, "loads"))).toEqual([]);
      });
    }
    await fdsBackToBaseline();
  });

  it("Save (40 MiB multipart from a file)", async () => {
    let cancelledMidway = 0;
    for (let i = 0; i < REPS; i++) {
      const key = `save-${i}`;
      const before = rpcLines("Save").length;
      await counted(SUITE("Save"), async () => {
        const r = await unary(
          "Save",
          { outputArtifact: artifact(cfg(), key), path: join(work, "source.bin") },
          stopFor(i, 20, 300),
        );
        expect(ENDED).toContain(r.code);
        const line = await serverFinished("Save", before);
        if (line.outcome === "cancelled") cancelledMidway++;
        await uploadCleanedUp(SUITE("Save"), key, line);
      });
    }
    expect(cancelledMidway).toBeGreaterThan(0);
    await noUploadsLeft();
    await fdsBackToBaseline();
  });

  it("SaveStream (a producer still sending when the call is cancelled or its deadline passes)", async () => {
    for (let i = 0; i < REPS; i++) {
      const key = `stream-${i}`;
      const before = rpcLines("SaveStream").length;
      const stop = stopFor(i, 50, 400);
      tally({ suite: SUITE("SaveStream"), faultsInjected: 1 });
      const r = await new Promise<GrpcResult>((resolve) => {
        const fn = plugin.client.raw["SaveStream"] as (
          md: Metadata,
          opts: object,
          cb: (e: { code?: number } | null, r: unknown) => void,
        ) => {
          write(m: unknown): boolean;
          end(): void;
          cancel(): void;
          once(ev: string, f: () => void): void;
        };
        let done = false;
        const call = fn.call(
          plugin.client.raw,
          new Metadata(),
          "deadlineMs" in stop ? { deadline: Date.now() + stop.deadlineMs } : { deadline: Date.now() + 60_000 },
          (e, res) => {
            done = true;
            resolve(e ? { code: e.code } : { code: status.OK, res });
          },
        );
        if ("cancelAfterMs" in stop) setTimeout(() => call.cancel(), stop.cancelAfterMs);
        void (async () => {
          call.write({ outputArtifact: artifact(cfg(), key) });
          // Never ends on its own: only the cancellation or the deadline stops it.
          for (let off = 0; !done; off = (off + MiB) % SIZE) {
            if (!call.write({ chunk: source.subarray(off, off + MiB) }))
              await new Promise<void>((d) => call.once("drain", d));
            await sleep(2);
          }
        })();
      });
      expect([status.CANCELLED, status.DEADLINE_EXCEEDED]).toContain(r.code);
      const line = await serverFinished("SaveStream", before);
      expect(line.outcome).not.toBe("ok");
      await uploadCleanedUp(SUITE("SaveStream"), key, line);
      tally({ suite: SUITE("SaveStream"), faultsSurvived: 1 });
    }
    await noUploadsLeft();
    await fdsBackToBaseline();
  });

  it("OpenStream (cancelled after some frames, or a stalled reader past its deadline)", async () => {
    for (let i = 0; i < REPS; i++) {
      const before = rpcLines("OpenStream").length;
      tally({ suite: SUITE("OpenStream"), faultsInjected: 1 });
      const r = await new Promise<GrpcResult>((resolve) => {
        const fn = plugin.client.raw["OpenStream"] as (
          req: unknown,
          md: Metadata,
          opts: object,
        ) => NodeJS.ReadableStream & { cancel(): void };
        const deadline = i % 2 === 0;
        const call = fn.call(
          plugin.client.raw,
          { artifact: artifact(cfg(), "big.bin") },
          new Metadata(),
          deadline ? { deadline: Date.now() + rand(100, 400) } : { deadline: Date.now() + 60_000 },
        );
        const cancelAt = rand(1, 10);
        let frames = 0;
        call.on("data", () => {
          frames++;
          // Even runs: stop reading (the plugin waits for drain) until the deadline passes.
          if (deadline) call.pause();
          else if (frames === cancelAt) call.cancel();
        });
        call.on("error", (e: { code?: number }) => resolve({ code: e.code }));
        call.on("end", () => resolve({ code: status.OK }));
      });
      expect([status.CANCELLED, status.DEADLINE_EXCEEDED]).toContain(r.code);
      const line = await serverFinished("OpenStream", before);
      expect(line.outcome).not.toBe("ok");
      tally({ suite: SUITE("OpenStream"), faultsSurvived: 1 });
    }
    await fdsBackToBaseline();
  });

  // These are quick when S3 answers, so MinIO is frozen (SIGSTOP) under them: the
  // call is certainly waiting on S3 when it is cancelled, and the plugin has to
  // give up on its own, since the frozen MinIO never answers.
  it.each([
    ["ListObjects", (i: number) => ({ artifact: artifact(cfg(), i % 2 ? "dir" : `none-${i}`) })],
    ["IsDirectory", (i: number) => ({ artifact: artifact(cfg(), `dir-${i}`) })],
    ["Delete", (i: number) => ({ artifact: artifact(cfg(), i % 2 ? `dir-${i}/` : `obj-${i}`) })],
  ] as const)("%s, while MinIO is frozen", async (method, request) => {
    for (let i = 0; i < REPS; i++) {
      const before = rpcLines(method).length;
      tally({ suite: SUITE(`${method} on a frozen store`), faultsInjected: 1 });
      minio.freeze();
      try {
        const started = Date.now();
        const r = await unary(method, request(i), stopFor(i, 100, 400));
        expect([status.CANCELLED, status.DEADLINE_EXCEEDED], `${method} #${i} answered ${JSON.stringify(r)}`).toContain(
          r.code,
        );
        const line = await serverFinished(method, before, 5_000);
        expect(line.outcome).toBe("cancelled");
        expect(Date.now() - started).toBeLessThan(10_000);
        tally({ suite: SUITE(`${method} on a frozen store`), faultsSurvived: 1 });
      } finally {
        minio.thaw();
      }
    }
    await fdsBackToBaseline();
  });
});

describe("after all that", () => {
  it("the plugin still works: a full Save and Load round trip, nothing left over", async () => {
    expect(await plugin.client.save(artifact(cfg(), "after.bin"), join(work, "source.bin"))).toEqual({
      success: true,
      error: "",
    });
    const target = join(work, "loads", "after.bin");
    expect(await plugin.client.load(artifact(cfg(), "after.bin"), target)).toEqual({ success: true, error: "" });
    expect(sha(readFileSync(target))).toBe(sourceSha);
    await noUploadsLeft();
    await fdsBackToBaseline();
  });
});
