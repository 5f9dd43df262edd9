// Faults of the store itself, mid-transfer, with a real MinIO: the process is
// killed (SIGKILL) and started again on the same port and data directory, or
// frozen (SIGSTOP) for longer than the request timeout and then resumed
// (SIGCONT). At a random point of Save (multipart), SaveStream, Load and
// OpenStream. Whatever happens, every RPC ends within a bounded time, either
// with the right bytes or with an error naming the operation and the endpoint,
// and nothing is left behind: no object unless the upload succeeded, no
// (partial or temporary) file at a failed Load's target, no multipart upload.
// Half the runs start with data already there (an older object under the key,
// an older file at the Load target), which a failed RPC must leave intact.
// Two outcomes no client can rule out are allowed, and counted in the summary
// line: a CreateMultipartUpload or CompleteMultipartUpload whose answer was lost
// but which the store carried out anyway (see lateCreates, and checkAfter).
// "missed" counts faults that came after the RPC had already ended.
import { type MinioServer, startMinio } from "../../scripts/lib/minio.mjs";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  AbortMultipartUploadCommand,
  CreateBucketCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  PutObjectCommand,
  type S3Client,
} from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stopAndScan, tally } from "../support/ledger.js";
import { adminClient, objectSha, rootKeysEnv, uploadsLeft } from "../support/minio-access.js";
import { type PluginProcess, artifact, startPlugin } from "../support/plugin.js";

const MiB = 1024 * 1024;
const BUCKET = "faults";
const SIZE = 40 * MiB;
const RUNS_PER_KIND = 10; // alternating kill / freeze
const HANG_LIMIT_MS = 60_000; // not a timing assert: only catches hangs
const LATE_UPLOAD_WATCH_SECONDS = 20; // the plugin's watch for uploads created after an unanswered Create

let minio: MinioServer;
let plugin: PluginProcess;
let s3: S3Client;
let work: string;
let source: Buffer;
let sourceSha: string;
const errors: string[] = [];
const stats: Record<
  string,
  {
    kill: number;
    freeze: number;
    missed: number;
    ok: number;
    failed: number;
    lateCompletes: number;
    lateCreates: number;
    maxMs: number;
  }
> = {};

const cfg = () =>
  `endpoint: ${minio.endpoint}\nbucket: ${BUCKET}\ninsecure: true\n` +
  `tuning: {partSizeMiB: 5, partConcurrency: 2, multipartThresholdMiB: 5, maxAttempts: 3, requestTimeoutSeconds: 2}\n`;
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const rand = (lo: number, hi: number) => lo + Math.random() * (hi - lo);

/** MinIO answers S3 again (it may take a moment after a restart or a thaw). */
async function untilServing(): Promise<void> {
  for (let i = 0; ; i++) {
    try {
      await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "seed.bin" }));
      return;
    } catch (e) {
      if (i > 100) throw e;
      await sleep(100);
    }
  }
}

/**
 * The other ambiguity: CreateMultipartUpload itself timed out (or its connection
 * died), so the plugin never learned an upload id, yet the stopped store may carry
 * the request out once it resumes. The plugin watches the key after such a
 * failure (LATE_UPLOAD_WATCH_SECONDS here) and aborts what the store created late.
 * Counted; whatever is still there after the watch is an orphan (and fails the run).
 */
async function lateCreates(kind: Kind, key: string): Promise<{ late: number; left: number }> {
  await sleep(1000);
  const seen = new Set<string>();
  let left: string[] = [];
  for (const until = Date.now() + (LATE_UPLOAD_WATCH_SECONDS + 4) * 1000; ;) {
    const out = await s3.send(new ListMultipartUploadsCommand({ Bucket: BUCKET, Prefix: key }));
    left = (out.Uploads ?? []).filter((x) => x.Key === key).map((u) => u.UploadId!);
    for (const id of left) seen.add(id);
    if (left.length === 0 || Date.now() > until) break;
    await sleep(500);
  }
  stats[kind]!.lateCreates += seen.size;
  // Cleaned up so later runs start clean; the caller's check reports them.
  for (const id of left) await s3.send(new AbortMultipartUploadCommand({ Bucket: BUCKET, Key: key, UploadId: id }));
  return { late: seen.size, left: left.length };
}

type Kind = "Save" | "SaveStream" | "Load" | "OpenStream";
type Outcome = { ok: true } | { ok: false; error: string };

/** Runs the RPC; the fault hits it `delayMs` after it started. */
async function runWithFault(
  kind: Kind,
  key: string,
  fault: "kill" | "freeze",
  delayMs: number,
  freezeMs: number,
): Promise<{ outcome: Outcome; ms: number; hitInFlight: boolean }> {
  const started = Date.now();
  const rpc = startRpc(kind, key);
  let outcome: Outcome | undefined;
  const settled = rpc.then((o) => (outcome = o));
  await Promise.race([sleep(delayMs), settled]);
  const hitInFlight = outcome === undefined;
  if (fault === "kill") {
    await minio.kill();
    await sleep(rand(200, 1500)); // down for a while: connections refused
    await minio.restart();
  } else {
    minio.freeze();
    await sleep(freezeMs);
    minio.thaw();
  }
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<"hang">((r) => (timer = setTimeout(() => r("hang"), HANG_LIMIT_MS)));
  const r = await Promise.race([settled, hang]);
  clearTimeout(timer);
  expect(r, `${kind} ${key} did not end within ${HANG_LIMIT_MS} ms`).not.toBe("hang");
  return { outcome: outcome!, ms: Date.now() - started, hitInFlight };
}

function startRpc(kind: Kind, key: string): Promise<Outcome> {
  const a = artifact(cfg(), key);
  const asOutcome = (r: { success: boolean; error: string }): Outcome =>
    r.success ? { ok: true } : { ok: false, error: r.error };
  const grpcError = (e: Error & { details?: string }): Outcome => ({
    ok: false,
    error: `grpc: ${e.details ?? e.message}`,
  });
  switch (kind) {
    case "Save":
      return plugin.client.save(a, join(work, "source.bin")).then(asOutcome, grpcError);
    case "SaveStream": {
      async function* chunks() {
        for (let off = 0; off < SIZE; off += MiB) {
          yield source.subarray(off, off + MiB);
          if (off % (4 * MiB) === 0) await sleep(5); // a producer, not a memcpy
        }
      }
      return plugin.client.saveStream(a, chunks()).then(asOutcome, grpcError);
    }
    case "Load":
      return plugin.client.load(artifact(cfg(), "seed.bin"), join(work, "loads", key)).then(asOutcome, grpcError);
    case "OpenStream":
      return plugin.client.openStream(artifact(cfg(), "seed.bin")).then(({ frames, data }) => {
        const err = frames.find((f) => f.error)?.error;
        if (err) return { ok: false, error: err };
        expect(frames.at(-1)?.isEnd).toBe(true);
        expect(data.length).toBe(SIZE);
        expect(sha(data)).toBe(sourceSha);
        return { ok: true };
      }, grpcError);
  }
}

const OPERATIONS: Record<Kind, RegExp> = {
  Save: /\b(CreateMultipartUpload|UploadPart \d+|CompleteMultipartUpload|PutObject)\b/,
  SaveStream: /\b(CreateMultipartUpload|UploadPart \d+|CompleteMultipartUpload|PutObject)\b/,
  Load: /\b(HeadObject|GetObject)\b/,
  OpenStream: /\b(HeadObject|GetObject)\b/,
};

/** Data that was there before the RPC: an older object under the key, or an older file at the Load target. */
interface Before {
  bytes: Buffer;
  sha: string;
}

async function placeBefore(kind: Kind, key: string): Promise<Before> {
  const bytes = randomBytes(MiB + 17);
  if (kind === "Save" || kind === "SaveStream")
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: bytes }));
  if (kind === "Load") writeFileSync(join(work, "loads", key), bytes);
  return { bytes, sha: sha(bytes) };
}

/** Checks the aftermath of one faulted RPC; tallies the bytes it covered, any lost, and uploads left over. */
async function checkAfter(kind: Kind, key: string, outcome: Outcome, before?: Before): Promise<void> {
  await untilServing();
  const suite = `faults: ${kind} (MinIO killed / frozen)`;
  if (!outcome.ok) {
    expect(outcome.error, `${kind} ${key}`).toContain(minio.endpoint);
    expect(outcome.error, `${kind} ${key}`).toMatch(OPERATIONS[kind]);
  }
  // Bytes lost: a success whose bytes differ from the source, or older data damaged by a failure.
  let checked = 0;
  let lost = 0;
  const account = (size: number, intact: boolean) => {
    checked += size;
    if (!intact) lost += size;
  };
  if (kind === "Save" || kind === "SaveStream") {
    const stored = await objectSha(s3, BUCKET, key);
    if (outcome.ok) account(SIZE, stored === sourceSha);
    else if (before) account(before.bytes.length, stored === before.sha || stored === sourceSha);
    tally({ suite, bytesChecked: checked, bytesLost: lost });
    if (outcome.ok) expect(stored, `${kind} ${key} succeeded`).toBe(sourceSha);
    else if (stored === sourceSha && /^CompleteMultipartUpload /.test(outcome.error)) {
      // An ambiguity no client can close: a CompleteMultipartUpload that timed out (or lost
      // its connection) may still have been, or be, carried out by the store. Then the object is
      // whole and verified (never a truncated one); Argo's retry overwrites it. Counted.
      stats[kind]!.lateCompletes++;
    } else
      expect(stored, `${kind} ${key} failed: the key must hold what it held before: ${outcome.error}`).toBe(
        before?.sha,
      );
    if (!outcome.ok && /^CreateMultipartUpload /.test(outcome.error)) {
      const late = await lateCreates(kind, key);
      tally({ suite, lateCreates: late.late, orphanUploads: late.left });
      expect(late.left, `uploads created late for ${key} and not aborted by the plugin`).toBe(0);
    }
    const left = await uploadsLeft(s3, BUCKET, key);
    tally({ suite, orphanUploads: left.length });
    expect(left, `multipart uploads left for ${key} after ${JSON.stringify(outcome)}`).toEqual([]);
  }
  if (kind === "Load") {
    const target = join(work, "loads", key);
    const got = existsSync(target) ? sha(readFileSync(target)) : undefined;
    if (outcome.ok) account(SIZE, got === sourceSha);
    else if (before) account(before.bytes.length, got === before.sha);
    const parts = readdirSync(join(work, "loads")).filter((f) => f.endsWith(".part"));
    tally({ suite, bytesChecked: checked, bytesLost: lost });
    if (outcome.ok) expect(got).toBe(sourceSha);
    else
      expect(got, `${key}: the target must hold what it held before (or nothing) after: ${outcome.error}`).toBe(
        before?.sha,
      );
    // No temporary sibling (".<name>.<hex>.part") whatever the outcome.
    expect(parts).toEqual([]);
  }
  if (kind === "OpenStream" && outcome.ok) account(SIZE, true); // startRpc compared every byte
  if (kind === "OpenStream") tally({ suite, bytesChecked: checked });
}

beforeAll(async () => {
  minio = await startMinio();
  s3 = adminClient(minio);
  await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  work = mkdtempSync(join(tmpdir(), "faults-"));
  source = randomBytes(SIZE);
  sourceSha = sha(source);
  writeFileSync(join(work, "source.bin"), source);
  mkdirSync(join(work, "loads"));
  plugin = await startPlugin({
    ...rootKeysEnv(minio),
    ARGO_S3_PLUGIN_LATE_UPLOAD_WATCH_SECONDS: String(LATE_UPLOAD_WATCH_SECONDS),
  });
  // The object Load and OpenStream read, written by the plugin (multipart, full-object CRC32).
  expect(await plugin.client.save(artifact(cfg(), "seed.bin"), join(work, "source.bin"))).toEqual({
    success: true,
    error: "",
  });
});

afterAll(async () => {
  if (Object.keys(stats).length) console.log(`faults injected: ${JSON.stringify(stats)}`);
  await stopAndScan("faults (MinIO killed / frozen)", plugin, { "MinIO root secret key": minio?.secretKey }, errors);
  await minio?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe("MinIO killed and restarted, or frozen past the request timeout, mid-RPC", () => {
  it.each<Kind>(["Save", "SaveStream", "Load", "OpenStream"])(
    "%s: each run succeeds with the right bytes or fails cleanly, naming the endpoint and operation",
    async (kind) => {
      // How long the RPC takes undisturbed, so the faults land inside it.
      const t0 = Date.now();
      const clean = await startRpc(kind, `${kind}-baseline`);
      const baseline = Date.now() - t0;
      expect(clean).toEqual({ ok: true });
      await checkAfter(kind, `${kind}-baseline`, clean);
      const s = (stats[kind] = {
        kill: 0,
        freeze: 0,
        missed: 0,
        ok: 0,
        failed: 0,
        lateCompletes: 0,
        lateCreates: 0,
        maxMs: 0,
      });
      // Until RUNS_PER_KIND faults have hit the RPC in flight (one that lands after it ended is "missed").
      let hits = 0;
      for (let i = 0; hits < RUNS_PER_KIND && i < 3 * RUNS_PER_KIND; i++) {
        const fault = i % 2 === 0 ? "kill" : "freeze";
        const key = `${kind}-${i}`;
        const before = i % 4 < 2 ? await placeBefore(kind, key) : undefined;
        // Frozen longer than requestTimeoutSeconds (2 s): briefly (a retry gets through after
        // SIGCONT), or past every attempt (3 × 2 s) so the RPC has to give up.
        const freezeMs = i % 4 === 3 ? rand(7500, 9000) : rand(2500, 5000);
        const { outcome, ms, hitInFlight } = await runWithFault(kind, key, fault, rand(0, baseline * 0.5), freezeMs);
        if (hitInFlight) hits++;
        s[fault]++;
        if (!hitInFlight) s.missed++;
        if (outcome.ok) s.ok++;
        else s.failed++;
        s.maxMs = Math.max(s.maxMs, ms);
        if (!outcome.ok) errors.push(outcome.error);
        if (process.env["FAULTS_DEBUG"])
          console.log(
            kind,
            key,
            fault === "freeze" ? `freeze ${Math.round(freezeMs)} ms` : "kill",
            { hitInFlight, ms },
            outcome,
          );
        const suite = `faults: ${kind} (MinIO killed / frozen)`;
        if (hitInFlight) tally({ suite, faultsInjected: 1 });
        await checkAfter(kind, key, outcome, before);
        if (hitInFlight) tally({ suite, faultsSurvived: 1 });
      }
      expect(hits, `${kind}: faults that hit the RPC in flight`).toBe(RUNS_PER_KIND);
    },
    300_000,
  );
});
