// The wire, in process: a PluginServer on a temporary socket with a fake
// service behind it (no MinIO, no S3), driven by the plugin's own gRPC client.
// Each error kind reaches the client as Argo's client needs it; OpenStream's
// frames and SaveStream's chunks arrive whole and in order; the shared
// sidecar's call deadline ends a call that runs too long; a client's
// cancellation reaches the service; shutdown lets calls in flight finish; a
// stream client that takes or sends nothing for the idle limit is cut off and
// the service's side of the stream is closed.
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { connect, constants as h2 } from "node:http2";
import { connect as netConnect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import type { ArtifactOps } from "../../../src/artifacts/ops.js";
import type { Admitted, ArtifactRef, Call } from "../../../src/artifacts/service.js";
import { parseConfig } from "../../../src/config/parse.js";
import type { StoreTarget } from "../../../src/store/port.js";
import { ArtifactClient, artifact } from "../../../src/plugin-client/artifact-service-client.js";
import { type ErrorKind, PluginError } from "../../../src/errors.js";
import { createLogger } from "../../../src/log.js";
import { loadArtifactService } from "../../../src/wire/proto.js";
import { PluginServer, type ServerOptions } from "../../../src/wire/server.js";
import { FRAME_HEADROOM, markHeadroom } from "../../../src/util/headroom.js";
import { until, within } from "../../support/bounded.js";
import { MemoryStore } from "../../support/memory-store.js";

const quiet = createLogger(new Writable({ write: (_c, _e, cb) => cb() }));
const cfg = "bucket: b\n";
const started: { server: PluginServer; client: ArtifactClient; dir: string }[] = [];

afterEach(async () => {
  for (const s of started.splice(0)) {
    s.client.close();
    await s.server.shutdown(0);
    rmSync(s.dir, { recursive: true, force: true });
  }
});

/** The target the fake resolves every artifact to: its configuration (the tenant), over a store in memory. */
function fakeTarget(ref: ArtifactRef): StoreTarget {
  const cfg = parseConfig(ref.configuration);
  return { cfg, bucket: cfg.bucket, endpointLabel: "http://fake.example", store: new MemoryStore() };
}

/** A service whose every operation does what `impl` says; the rest fail loudly. */
function fake(impl: Partial<ArtifactOps>): ArtifactOps {
  const no = (name: string) => () => Promise.reject(new Error(`${name} not expected in this test`));
  return {
    resolve: impl.resolve ?? (async (ref) => fakeTarget(ref)),
    load: impl.load ?? no("load"),
    save: impl.save ?? no("save"),
    saveStream: impl.saveStream ?? no("saveStream"),
    delete: impl.delete ?? no("delete"),
    listObjects: impl.listObjects ?? no("listObjects"),
    isDirectory: impl.isDirectory ?? no("isDirectory"),
    openStream: impl.openStream ?? no("openStream"),
  };
}

/** A service whose OpenStream streams what `chunks` yields, from bucket "b", key "k". */
function streaming(chunks: () => AsyncGenerator<Buffer>): ArtifactOps {
  return fake({ openStream: async () => ({ bucket: "b", key: "k", chunks: chunks() }) });
}

async function serve(service: ArtifactOps, opts: Partial<ServerOptions> = {}) {
  const dir = mkdtempSync(join(tmpdir(), "wire-"));
  const server = new PluginServer({ socketPath: join(dir, "socket"), service, logger: quiet, ...opts });
  await server.listen();
  const client = new ArtifactClient(join(dir, "socket"));
  started.push({ server, client, dir });
  return { server, client, socket: join(dir, "socket") };
}

const summary = { bucket: "b", key: "k", kind: "file" as const, bytes: 1, files: 1 };

/** A service operation that runs until the call is aborted, tells `seen`, then fails with the abort's reason. */
function untilAborted(call: Call, seen: () => void): Promise<never> {
  return new Promise((_, reject) =>
    call.signal.addEventListener("abort", () => {
      seen();
      reject(call.signal.reason);
    }),
  );
}

describe("the wire, in process", () => {
  it.each<[ErrorKind, "status" | "field", number | undefined]>([
    ["invalid-argument", "status", 3],
    ["cancelled", "status", 1],
    ["invalid-config", "field", undefined],
    ["not-found", "field", undefined],
    ["local", "field", undefined],
    ["credentials", "field", undefined],
    ["storage", "field", undefined],
  ])("a %s failure reaches the client as %s", async (kind, how, code) => {
    const { client } = await serve(fake({ load: () => Promise.reject(new PluginError(kind, `the ${kind} words`)) }));
    const got = await client.load(artifact(cfg, "k"), "/tmp/x").then(
      (r) => ({ field: r.error, code: undefined }),
      (e: { code?: number; details?: string }) => ({ field: e.details, code: e.code }),
    );
    expect(got.field).toBe(`the ${kind} words`);
    expect(got.code).toBe(how === "status" ? code : undefined);
  });

  it("a call is admitted before the service runs: its target resolved, its slot taken under its tenant's cap", async () => {
    const order: string[] = [];
    let finishFirst: () => void = () => undefined;
    const { client } = await serve(
      fake({
        resolve: async (ref) => (order.push(`resolve ${ref.key}`), fakeTarget(ref)),
        load: (a: Admitted, _p: string, call: Call) => {
          order.push(`load ${a.key} in ${a.target.bucket} shares ${call.shares?.map((g) => g.key).join(",")}`);
          return a.key === "first" ? new Promise((r) => (finishFirst = () => r(summary))) : Promise.resolve(summary);
        },
      }),
      // Two transfer slots, and one tenant may hold half of them: one.
      { maxConcurrentTransfers: 2, shares: () => [{ key: "tenant b", fraction: 1 / 2 }] },
    );
    const first = client.load(artifact(cfg, "first"), "/tmp/x");
    await until("the first Load to run", () => order.includes("load first in b shares tenant b"), 10_000);
    const second = client.load(artifact(cfg, "second"), "/tmp/y");
    await until("the second Load to be resolved", () => order.includes("resolve second"), 10_000);
    await new Promise((r) => setTimeout(r, 200));
    expect(order, "the second waits for the tenant's one slot, its operation not started").not.toContain(
      "load second in b shares tenant b",
    );
    finishFirst();
    expect(await within(first, 10_000, "the first Load")).toEqual({ success: true, error: "" });
    expect(await within(second, 10_000, "the second Load")).toEqual({ success: true, error: "" });
    expect(order).toEqual([
      "resolve first",
      "load first in b shares tenant b",
      "resolve second",
      "load second in b shares tenant b",
    ]);
  });

  it("a request without an artifact is INVALID_ARGUMENT before the service is called", async () => {
    let called = false;
    const { client } = await serve(fake({ load: async () => ((called = true), summary) }));
    const raw = client.raw as unknown as Record<
      string,
      (req: unknown, cb: (e: { code?: number } | null) => void) => void
    >;
    const e = await new Promise<{ code?: number } | null>((r) => raw["Load"]!.call(client.raw, { path: "/tmp/x" }, r));
    expect(e?.code).toBe(3);
    expect(called).toBe(false);
  });

  it("OpenStream: the service's bytes arrive whole, in frames under grpc-go's 4 MiB limit, then is_end", async () => {
    const parts = [Buffer.alloc(5 * 1024 * 1024, 1), Buffer.alloc(3, 2), Buffer.alloc(1024 * 1024 + 1, 3)];
    const { client } = await serve(
      streaming(async function* () {
        for (const p of parts) yield p;
      }),
    );
    const frames = [];
    for await (const f of client.openStreamFrames(artifact(cfg, "k"))) frames.push(f);
    expect(frames.at(-1)?.isEnd).toBe(true);
    for (const f of frames) expect(f.data.length).toBeLessThan(4 * 1024 * 1024);
    expect(Buffer.concat(frames.map((f) => f.data)).equals(Buffer.concat(parts))).toBe(true);
  });

  it("OpenStream sends ranges with headroom from their own buffers (gRPC's prefix written in front), intact to a slow reader", async () => {
    const FRAME = 2 * 1024 * 1024;
    // Two ranges as the engine reads them: FRAME_HEADROOM spare bytes in front of each.
    const sizes = [3 * FRAME + 5, FRAME - 1];
    const want = sizes.map((n) => randomBytes(n));
    const blocks = want.map((w) => {
      const block = Buffer.alloc(FRAME_HEADROOM + w.length);
      w.copy(block, FRAME_HEADROOM);
      return block;
    });
    const { client } = await serve(
      streaming(async function* () {
        for (const b of blocks) yield markHeadroom(b.subarray(FRAME_HEADROOM));
      }),
    );
    const got: Buffer[] = [];
    for await (const f of client.openStreamFrames(artifact(cfg, "k"))) {
      got.push(Buffer.from(f.data));
      // A slow reader: frames back up in HTTP/2's flow control while later ones are encoded.
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(Buffer.concat(got).equals(Buffer.concat(want))).toBe(true);
    expect(got.length).toBe(4 + 1 + 1); // the frames, then is_end (empty data)
    // Each frame's message was written in front of its bytes, in the range's own buffer: gRPC's
    // 5-byte prefix (not compressed, the message's length), then field 1's tag and length.
    for (const [i, block] of blocks.entries()) {
      for (let off = 0; off < sizes[i]!; off += FRAME) {
        const len = Math.min(FRAME, sizes[i]! - off);
        const varint: number[] = [];
        for (let n = len; ; n = Math.floor(n / 128)) {
          varint.push((n & 0x7f) | (n >= 128 ? 0x80 : 0));
          if (n < 128) break;
        }
        const head = Buffer.alloc(5);
        head.writeUInt32BE(1 + varint.length + len, 1);
        const prefix = Buffer.concat([head, Buffer.from([0x0a, ...varint])]);
        const at = FRAME_HEADROOM + off - prefix.length;
        expect(block.subarray(at, at + prefix.length)).toEqual(prefix);
      }
    }
  });

  it("SaveStream: the chunks reach the service whole and in order, empty ones dropped", async () => {
    const received: Buffer[] = [];
    const { client } = await serve(
      fake({
        saveStream: async (_a: Admitted, chunks: AsyncIterable<Buffer>) => {
          for await (const c of chunks) received.push(Buffer.from(c));
          return summary;
        },
      }),
    );
    const chunks = [Buffer.alloc(2 * 1024 * 1024, 7), Buffer.alloc(0), Buffer.from("tail")];
    expect(await client.saveStream(artifact(cfg, "k"), chunks)).toEqual({ success: true, error: "" });
    expect(received.map((b) => b.length)).toEqual([2 * 1024 * 1024, 4]);
    expect(Buffer.concat(received).equals(Buffer.concat(chunks))).toBe(true);
  });

  it("a call deadline (the shared sidecar's listing bound) ends a listing that does not, naming the bound", async () => {
    let aborted = false;
    const { client } = await serve(
      fake({
        listObjects: (_a: Admitted, call: Call) => untilAborted(call, () => (aborted = true)),
      }),
      { callDeadlinesMs: { ListObjects: 300 } },
    );
    const r = await within(client.listObjects(artifact(cfg, "k")), 10_000, "the bounded ListObjects");
    expect(r.error).toMatch(/ListObjects of key "k" .* did not finish within 0.3 s, the bound the operator set for it/);
    expect(aborted).toBe(true);
  });

  it("a client's cancellation reaches the service's signal", async () => {
    let sawAbort = false;
    const { client } = await serve(
      fake({
        load: (_a: Admitted, _p: string, call: Call) => untilAborted(call, () => (sawAbort = true)),
      }),
    );
    const raw = client.raw as unknown as Record<string, (req: unknown, cb: () => void) => { cancel(): void }>;
    const c = raw["Load"]!.call(client.raw, { inputArtifact: artifact(cfg, "k"), path: "/tmp/x" }, () => undefined);
    await new Promise((r) => setTimeout(r, 100));
    c.cancel();
    await until("the service saw the cancellation", () => sawAbort, 10_000);
  });

  it("shutdown lets a call in flight finish within the grace, then the socket is gone", async () => {
    let finish!: () => void;
    const { server, client } = await serve(fake({ save: () => new Promise((r) => (finish = () => r(summary))) }));
    const save = client.save(artifact(cfg, "k"), "/tmp/x");
    await until("the Save in flight", () => finish !== undefined, 10_000);
    const stopping = server.shutdown(10_000);
    setTimeout(() => finish(), 200);
    expect(await within(save, 10_000, "the Save through shutdown")).toEqual({ success: true, error: "" });
    expect((await within(stopping, 10_000, "the shutdown")).cancelled).toBe(0);
  });

  it("shutdown past the grace cancels a SaveStream still receiving data", async () => {
    let sawAbort = false;
    const { server, client } = await serve(
      fake({
        saveStream: async (_a: Admitted, chunks: AsyncIterable<Buffer>, call: Call) => {
          call.signal.addEventListener("abort", () => (sawAbort = true));
          for await (const c of chunks) void c;
          return summary;
        },
      }),
    );
    let stop = false;
    const endless = (async function* () {
      while (!stop) {
        yield Buffer.alloc(64 * 1024, 1);
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    const save = client.saveStream(artifact(cfg, "k"), endless).catch((e: Error) => e);
    await new Promise((r) => setTimeout(r, 200));
    const { cancelled } = await within(server.shutdown(300), 15_000, "the shutdown");
    stop = true;
    expect(cancelled).toBe(1);
    expect(sawAbort).toBe(true);
    await within(save, 10_000, "the cancelled SaveStream's answer");
  });

  it("shutdown past the grace cancels what is left, and the service sees it", async () => {
    let sawAbort = false;
    const { server, client } = await serve(
      fake({
        save: (_a: Admitted, _p: string, call: Call) => untilAborted(call, () => (sawAbort = true)),
      }),
    );
    const save = client.save(artifact(cfg, "k"), "/tmp/x").catch((e: Error) => e);
    await new Promise((r) => setTimeout(r, 100));
    expect((await within(server.shutdown(200), 15_000, "the shutdown")).cancelled).toBe(1);
    expect(sawAbort).toBe(true);
    await within(save, 10_000, "the cancelled Save's answer");
  });

  it("OpenStream: a client that takes no data for the idle limit, and one idle limit more, has its stream reset; the service's reader is closed", async () => {
    let closed = false;
    const { socket } = await serve(
      streaming(async function* () {
        try {
          for (;;) yield Buffer.alloc(1024 * 1024, 5);
        } finally {
          closed = true;
        }
      }),
      { streamIdleMs: 300 },
    );
    // A raw HTTP/2 client that never reads: its 64 KiB windows fill, and no frame the plugin
    // sends after that is ever taken (grpc-js's own client would keep reading into its buffers).
    const session = connect("http://localhost", { createConnection: () => netConnect(socket) });
    try {
      const request = loadArtifactService()["OpenStream"]!.requestSerialize({ artifact: artifact(cfg, "k") });
      const framed = Buffer.concat([Buffer.alloc(5), request]);
      framed.writeUInt32BE(request.length, 1);
      const stream = session.request({
        ":method": "POST",
        ":path": "/artifact.ArtifactService/OpenStream",
        "content-type": "application/grpc",
        te: "trailers",
      });
      stream.pause();
      const reset = new Promise<number>((resolve) => stream.on("close", () => resolve(stream.rstCode ?? -1)));
      stream.end(framed);
      const t0 = Date.now();
      // The frames it never took are dropped with its stream (RST_STREAM CANCEL), and the range
      // they were sent from goes back only then: after the idle limit and one more.
      await until("the service's reader closed", () => closed, 10_000);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(2 * 300 - 50);
      expect(await within(reset, 10_000, "the stream's reset")).toBe(h2.NGHTTP2_CANCEL);
    } finally {
      session.destroy();
    }
  });

  it("OpenStream: after a failure mid-stream, a slow client still takes the frames already sent, then the error naming why", async () => {
    let failed = false;
    const { client } = await serve(
      streaming(async function* () {
        for (let i = 0; i < 16; i++) yield Buffer.alloc(1024 * 1024, i);
        failed = true;
        throw new PluginError("storage", "GetObject s3://b/k: the store broke off");
      }),
      { streamIdleMs: 10_000 },
    );
    const raw = client.raw as unknown as Record<string, (req: unknown) => NodeJS.ReadableStream>;
    const stream = raw["OpenStream"]!.call(client.raw, { artifact: artifact(cfg, "k") });
    const got: Buffer[] = [];
    const errors: string[] = [];
    const ended = new Promise<void>((resolve, reject) => {
      stream.on("data", (m: { data?: Buffer; error?: string }) => {
        if (m.data?.length) got.push(Buffer.from(m.data));
        if (m.error) errors.push(m.error);
      });
      stream.on("end", resolve);
      stream.on("error", reject);
    });
    stream.pause(); // the frames pile up in the transport while the store fails behind them
    await until("the store's failure", () => failed, 10_000);
    stream.resume();
    await within(ended, 10_000, "the failed OpenStream's end");
    const want = Buffer.concat(Array.from({ length: 16 }, (_, i) => Buffer.alloc(1024 * 1024, i)));
    expect(Buffer.concat(got).equals(want)).toBe(true);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/the store broke off/);
  });

  it("SaveStream: a client that sends nothing for the idle limit is cut off, and the service's stream ends", async () => {
    let ended: unknown;
    const { client } = await serve(
      fake({
        saveStream: async (_a: Admitted, chunks: AsyncIterable<Buffer>) => {
          try {
            for await (const c of chunks) void c;
          } catch (e) {
            ended = e;
            throw e;
          }
          return summary;
        },
      }),
      { streamIdleMs: 300 },
    );
    let stop!: () => void;
    const stalled = (async function* () {
      yield Buffer.from("first");
      await new Promise<void>((r) => (stop = r)); // then nothing, until the test ends
    })();
    const answer = await within(
      client.saveStream(artifact(cfg, "k"), stalled).then(
        (r) => r.error,
        (e: { details?: string }) => e.details ?? String(e),
      ),
      15_000,
      "the idle SaveStream's answer",
    );
    stop();
    expect(answer).toMatch(/0.3 s/);
    expect(ended).toBeDefined();
  });
});
