// The transfer buffer budget must come back whole on every path. The server
// runs in this process so the budget's own counter can be read: hundreds of
// calls of every kind are cancelled (client cancel or deadline) at random
// moments, then the budget in use must be 0 and a Load must succeed at once.
// Also: stalled stream peers are cut off after the idle limit, and a part
// size beyond any memory (tuning.partSizeMiB: 5120) neither allocates it nor
// wedges the budget.
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { Metadata } from "@grpc/grpc-js";
import { CreateBucketCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type MinioServer, startMinio } from "../../scripts/lib/minio.mjs";
import { ArtifactService } from "../../src/artifacts/service.js";
import { ArtifactClient, artifact } from "../../src/plugin-client/artifact-service-client.js";
import { createLogger } from "../../src/log.js";
import { S3TargetFactory } from "../../src/s3/targets.js";
import { KubeSecretSource } from "../../src/s3/kube-secrets.js";
import { BufferBudget } from "../../src/transfer/buffer-budget.js";
import { TransferEngine } from "../../src/transfer/engine.js";
import { PluginServer } from "../../src/wire/server.js";
import { until, within } from "../support/bounded.js";
import { tally } from "../support/ledger.js";
import { adminClient, rootKeysEnv } from "../support/minio-access.js";
import { prng } from "../../scripts/lib/prng.mjs";

const MiB = 1024 * 1024;
const BUCKET = "budget";
const CALLS = 240;
const IDLE_MS = 1500;

let minio: MinioServer;
let server: PluginServer;
let client: ArtifactClient;
let work: string;
let big: Buffer;
// Small, so a leak shows after a few calls.
const budget = new BufferBudget(32 * MiB);

const cfg = (part = 5, threshold = 5) =>
  `endpoint: ${minio.endpoint}\nbucket: ${BUCKET}\ninsecure: true\ntuning: {partSizeMiB: ${part}, multipartThresholdMiB: ${threshold}, partConcurrency: 4}\n`;
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  Object.assign(process.env, rootKeysEnv(await (async () => (minio = await startMinio()))()));
  const s3 = adminClient(minio);
  await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  big = randomBytes(24 * MiB);
  await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "big.bin", Body: big }));
  for (let i = 0; i < 20; i++)
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: `dir/f${i}`, Body: randomBytes(300 * 1024) }));
  work = mkdtempSync(join(tmpdir(), "budget-"));
  writeFileSync(join(work, "up.bin"), randomBytes(12 * MiB));
  const socketPath = join(work, "sock", "socket");
  const logger = createLogger(new Writable({ write: (_c, _e, cb) => cb() }));
  server = new PluginServer({
    socketPath,
    logger,
    service: new ArtifactService(
      new S3TargetFactory(new KubeSecretSource(process.env), { env: process.env }),
      new TransferEngine(budget),
    ),
    streamIdleMs: IDLE_MS,
  });
  await server.listen();
  client = new ArtifactClient(socketPath);
}, 600_000);

afterAll(async () => {
  client?.close();
  await server?.shutdown(1000);
  await minio?.stop();
  rmSync(work, { recursive: true, force: true });
});

/** One call of a random kind, cut by a cancel or a deadline after `ms`. */
function cancelledCall(kind: number, ms: number, useDeadline: boolean, n: number): Promise<unknown> {
  const raw = client.raw as unknown as Record<
    string,
    (...a: unknown[]) => {
      cancel(): void;
      on(e: string, f: (...a: unknown[]) => void): void;
      write(m: unknown): boolean;
      end(): void;
    }
  >;
  const md = new Metadata();
  const opts = { deadline: Date.now() + (useDeadline ? ms : 60_000) };
  return new Promise<void>((resolve) => {
    let call: { cancel(): void } | undefined;
    const done = () => resolve();
    const a = artifact(cfg(), "big.bin");
    switch (kind) {
      case 0: // OpenStream of a multi-range object, read slowly
      case 1: {
        const c = raw["OpenStream"]!.call(client.raw, { artifact: a }, md, opts);
        c.on("data", () => undefined);
        c.on("error", done);
        c.on("end", done);
        call = c;
        break;
      }
      case 2: {
        const c = raw["Load"]!.call(client.raw, { inputArtifact: a, path: join(work, `load-${n}`) }, md, opts, done);
        call = c;
        break;
      }
      case 3: {
        const c = raw["Load"]!.call(
          client.raw,
          { inputArtifact: artifact(cfg(), "dir"), path: join(work, `dir-${n}`) },
          md,
          opts,
          done,
        );
        call = c;
        break;
      }
      case 4: {
        const c = raw["Save"]!.call(
          client.raw,
          { outputArtifact: artifact(cfg(), `up/${n}`), path: join(work, "up.bin") },
          md,
          opts,
          done,
        );
        call = c;
        break;
      }
      default: {
        const c = raw["SaveStream"]!.call(client.raw, md, opts, done);
        c.write({ outputArtifact: artifact(cfg(), `stream/${n}`) });
        for (let i = 0; i < 6; i++) c.write({ chunk: big.subarray(i * 2 * MiB, (i + 1) * 2 * MiB) });
        call = c;
        break;
      }
    }
    if (!useDeadline) setTimeout(() => call?.cancel(), ms);
  });
}

it(`gives every buffer back after ${CALLS} calls cancelled at random moments, and serves a Load at once`, async () => {
  const rnd = prng(20261129);
  const batch: Promise<unknown>[] = [];
  for (let n = 0; n < CALLS; n++) {
    batch.push(cancelledCall(Math.floor(rnd() * 6), Math.floor(rnd() * 400), rnd() < 0.5, n));
    if (batch.length === 8) await within(Promise.all(batch.splice(0)), 60_000, "a batch of cancelled calls");
  }
  await within(Promise.all(batch), 60_000, "the last cancelled calls");
  await until("budget in use back to 0", () => budget.inUse === 0, 15_000);
  tally({ suite: "budget: calls cancelled at random moments", faultsInjected: CALLS, faultsSurvived: CALLS });
  const dest = join(work, "after");
  const res = await within(client.load(artifact(cfg(), "big.bin"), dest), 10_000, "Load after the cancellations");
  expect(res).toEqual({ success: true, error: "" });
  expect(sha(readFileSync(dest))).toBe(sha(big));
  expect(budget.inUse).toBe(0);
}, 600_000);

it("closes an OpenStream that ends after its first frame, 30 times over, without holding a byte", async () => {
  for (let i = 0; i < 30; i++) {
    for await (const f of client.openStreamFrames(artifact(cfg(), "big.bin"))) {
      expect(f.data.length).toBeGreaterThan(0);
      break; // leaving the loop cancels the call
    }
  }
  await until("budget in use back to 0", () => budget.inUse === 0, 10_000);
});

it("ends OpenStream and SaveStream calls whose peer stalls, so the budget comes back", async () => {
  const raw = client.raw as unknown as Record<
    string,
    (...a: unknown[]) => {
      pause(): void;
      resume(): void;
      cancel(): void;
      on(e: string, f: (...a: unknown[]) => void): void;
      write(m: unknown): boolean;
    }
  >;
  const outcomes: Promise<string>[] = [];
  const calls: { cancel(): void }[] = [];
  for (let i = 0; i < 4; i++) {
    const c = raw["OpenStream"]!.call(client.raw, { artifact: artifact(cfg(), "big.bin") });
    outcomes.push(
      new Promise((resolve) => {
        let error = "";
        c.on("data", (f: unknown) => {
          error ||= (f as { error: string }).error;
          c.pause(); // stop reading: HTTP/2 flow control holds the plugin's writes
        });
        c.on("error", (e: unknown) => resolve(String(e)));
        c.on("status", () => resolve(error));
        c.on("end", () => resolve(error));
      }),
    );
    calls.push(c);
  }
  // A SaveStream that sends its metadata and one chunk, then nothing.
  const stalledSave = new Promise<string>((resolve) => {
    const c = raw["SaveStream"]!.call(client.raw, new Metadata(), (err: unknown, res: { error?: string }) =>
      resolve(err ? String(err) : (res.error ?? "")),
    );
    c.write({ outputArtifact: artifact(cfg(), "stalled-save") });
    c.write({ chunk: big.subarray(0, 2 * MiB) });
    calls.push(c);
  });
  await sleep(300);
  // Another caller is served within the idle limit (plus the transfer), not blocked for good.
  const dest = join(work, "beside-stalled");
  const res = await within(
    client.load(artifact(cfg(), "big.bin"), dest),
    IDLE_MS + 20_000,
    "Load beside stalled streams",
  );
  expect(res.success).toBe(true);
  expect(await within(stalledSave, IDLE_MS + 10_000, "stalled SaveStream")).toMatch(/sent no data for 1\.5 s/);
  // The plugin ended the stalled streams itself: their buffers are back while the clients still sit there.
  await until(
    "budget in use back to 0 with the stalled clients still connected",
    () => budget.inUse === 0,
    IDLE_MS + 10_000,
  );
  tally({ suite: "hostile: stalled stream peers", hostileTried: 5, hostileRefused: 5 });
  for (const c of calls) c.cancel();
  for (const c of calls) (c as { resume?: () => void }).resume?.();
  await Promise.all(outcomes.map((o) => within(o, 10_000, "stalled OpenStream")));
});

it("ends a SaveStream that sends only empty chunks: they are not progress, the idle limit runs from the last data", async () => {
  const raw = client.raw as unknown as Record<
    string,
    (...a: unknown[]) => { cancel(): void; write(m: unknown): boolean }
  >;
  let timer: NodeJS.Timeout | undefined;
  const outcome = new Promise<string>((resolve) => {
    const c = raw["SaveStream"]!.call(client.raw, new Metadata(), (err: unknown, res: { error?: string }) =>
      resolve(err ? String(err) : (res.error ?? "")),
    );
    c.write({ outputArtifact: artifact(cfg(), "empty-chunks") });
    c.write({ chunk: big.subarray(0, 1024) });
    // An empty chunk every 100 ms, far more often than the idle limit.
    timer = setInterval(() => c.write({ chunk: Buffer.alloc(0) }), 100);
  });
  try {
    expect(await within(outcome, IDLE_MS + 10_000, "SaveStream of empty chunks")).toMatch(/sent no data for 1\.5 s/);
  } finally {
    clearInterval(timer);
  }
  await until("budget in use back to 0", () => budget.inUse === 0, 10_000);
});

it("does not wedge on a part size beyond memory: tuning.partSizeMiB 5120 saves with bounded buffers", async () => {
  const src = join(work, "up.bin");
  const res = await within(client.save(artifact(cfg(5120, 5120), "huge-part"), src), 60_000, "Save");
  expect(res).toEqual({ success: true, error: "" });
  expect(budget.inUse).toBe(0);
  const dest = join(work, "huge-part-back");
  expect((await within(client.load(artifact(cfg(), "huge-part"), dest), 30_000, "Load")).success).toBe(true);
  expect(sha(readFileSync(dest))).toBe(sha(readFileSync(src)));
});
