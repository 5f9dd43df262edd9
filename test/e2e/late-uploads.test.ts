// A CreateMultipartUpload that the store carries out but whose answer is lost
// (here: a proxy lets the request through to MinIO, then drops the connection
// before the answer) leaves an upload whose id the plugin never learned. The
// plugin watches the key afterwards and aborts that upload, and only that one:
// another writer's upload of the same key, which has stored a part, is left
// alone. A Save cancelled while its Create is on the way waits (briefly) for
// the answer instead, and aborts the new upload by its id at once; one
// cancelled while its Complete is on the way lets it finish: the object exists
// and the plugin says the Save succeeded, never "cancelled" beside a new object.
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  AbortMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  ListMultipartUploadsCommand,
  type S3Client,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { Metadata } from "@grpc/grpc-js";
import { afterAll, beforeAll, expect, it } from "vitest";
import { objectSha } from "../support/minio-access.js";
import { type MinioServer, startMinio } from "../../scripts/lib/minio.mjs";
import { type FaultProxy, startFaultProxy } from "../support/fault-proxy.js";
import { stopAndScan, tally } from "../support/ledger.js";
import { adminClient, rootKeysEnv } from "../support/minio-access.js";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { type PluginProcess, artifact, startPlugin } from "../support/plugin.js";

const BUCKET = "late";
const WATCH_SECONDS = 8; // looks every 1 s; aborts a part-less upload 2 s old or more
const MiB = 1024 * 1024;
let minio: MinioServer;
let proxy: FaultProxy;
let plugin: PluginProcess;
let s3: S3Client;
let work: string;
const cfg = () =>
  `endpoint: ${proxy.endpoint}\nbucket: ${BUCKET}\ninsecure: true\ntuning: {partSizeMiB: 5, multipartThresholdMiB: 5, maxAttempts: 2}\n`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const isCreate = (r: { method?: string; url?: string }) =>
  r.method === "POST" && /[?&]uploads(=|&|$)/.test(r.url ?? "");

async function uploadsFor(key: string): Promise<string[]> {
  const out = await s3.send(new ListMultipartUploadsCommand({ Bucket: BUCKET, Prefix: key }));
  return (out.Uploads ?? []).filter((u) => u.Key === key).map((u) => u.UploadId!);
}

beforeAll(async () => {
  minio = await startMinio();
  proxy = await startFaultProxy(minio.port);
  s3 = adminClient(minio);
  await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  plugin = await startPlugin({
    ...rootKeysEnv(minio),
    ARGO_S3_PLUGIN_LATE_UPLOAD_WATCH_SECONDS: String(WATCH_SECONDS),
  });
  work = mkdtempSync(join(tmpdir(), "late-"));
  writeFileSync(join(work, "big.bin"), randomBytes(12 * MiB));
});

afterAll(async () => {
  await stopAndScan("late uploads", plugin, { "MinIO root secret key": minio?.secretKey });
  await proxy?.stop();
  await minio?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

it("aborts the upload created by a CreateMultipartUpload whose answer was lost; leaves another writer's upload alone", async () => {
  const key = "lost-answer.bin";
  // Another writer of the same key, mid-upload: it has stored a part.
  const other = await s3.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: key }));
  await s3.send(
    new UploadPartCommand({
      Bucket: BUCKET,
      Key: key,
      UploadId: other.UploadId,
      PartNumber: 1,
      Body: randomBytes(5 * MiB),
    }),
  );

  proxy.inject(1, "lose-answer", isCreate);
  const res = await plugin.client.save(artifact(cfg(), key), join(work, "big.bin"));
  expect(proxy.injected).toBe(1);
  tally({ suite: "faults: CreateMultipartUpload answer lost (proxy)", faultsInjected: 1 });
  expect(res.success).toBe(false);
  expect(res.error).toContain("CreateMultipartUpload");
  expect(res.error).toContain(`s3://${BUCKET}/${key}`);
  expect(res.error).toContain(proxy.endpoint);

  // The store did create it: the plugin's upload is there beside the other writer's.
  const lost = (await uploadsFor(key)).filter((id) => id !== other.UploadId);
  expect(lost).toHaveLength(1);

  let left = lost;
  for (let i = 0; i < (WATCH_SECONDS + 4) * 10 && left.length > 0; i++) {
    await sleep(100);
    left = (await uploadsFor(key)).filter((id) => id !== other.UploadId);
  }
  tally({ suite: "faults: CreateMultipartUpload answer lost (proxy)", orphanUploads: left.length });
  expect(left, "the lost upload is still there").toEqual([]);
  // The plugin says so (its line may trail the abort itself by a moment).
  const said = (out: string) =>
    out.includes(`"uploadId":"${lost[0]}"`) &&
    out.includes("aborted a multipart upload the store created after its CreateMultipartUpload had gone unanswered");
  for (let i = 0; i < 50 && !said(plugin.output()); i++) await sleep(100);
  expect(plugin.output()).toContain(`"uploadId":"${lost[0]}"`);
  expect(plugin.output()).toContain(
    "aborted a multipart upload the store created after its CreateMultipartUpload had gone unanswered",
  );
  // The whole watch window has passed: the other writer's upload is untouched.
  await sleep(WATCH_SECONDS * 1000);
  expect(await uploadsFor(key)).toEqual([other.UploadId]);
  await s3.send(new AbortMultipartUploadCommand({ Bucket: BUCKET, Key: key, UploadId: other.UploadId }));

  // And the same Save, retried, goes through.
  expect(await plugin.client.save(artifact(cfg(), key), join(work, "big.bin"))).toEqual({ success: true, error: "" });
  expect(await uploadsFor(key)).toEqual([]);
  tally({ suite: "faults: CreateMultipartUpload answer lost (proxy)", faultsSurvived: 1 });
}, 60_000);

/**
 * A Save cancelled by its client at the moment `match`'s request reaches the
 * store (the proxy holds that answer back 1.5 s): the scenario happens on every
 * machine, however fast or slow, instead of racing a deadline.
 */
function saveCancelledAt(
  key: string,
  match: (r: { method?: string; url?: string }) => boolean,
): Promise<number | undefined> {
  const raw = plugin.client.raw as unknown as Record<string, (...a: unknown[]) => { cancel(): void }>;
  let fired = false;
  let call: { cancel(): void } | undefined;
  proxy.inject(1, "slow-answer", (req) => {
    if (!match(req)) return false;
    if (!fired) {
      fired = true;
      setImmediate(() => call?.cancel());
    }
    return true;
  });
  return new Promise((resolve) => {
    call = raw["Save"]!.call(
      plugin.client.raw,
      { outputArtifact: artifact(cfg(), key), path: join(work, "big.bin") },
      new Metadata(),
      { deadline: Date.now() + 60_000 },
      (err: { code?: number } | null) => resolve(err?.code),
    );
  });
}

const rpcLine = (key: string) =>
  plugin
    .output()
    .split("\n")
    .find((l) => l.includes('"msg":"rpc"') && l.includes(`"key":"${key}"`));

it("a Save cancelled while its CreateMultipartUpload is on the way aborts the new upload at once", async () => {
  const key = "cancelled-in-create.bin";
  const before = proxy.injected;
  expect(await saveCancelledAt(key, isCreate)).toBe(1); // CANCELLED
  proxy.inject(0, "slow-answer");
  expect(proxy.injected - before).toBe(1); // Create was sent and its answer held back
  tally({ suite: "faults: cancel during CreateMultipartUpload (proxy)", faultsInjected: 1 });
  // The plugin's own line for the call: cancelled, once the upload it created was aborted.
  for (let i = 0; i < 100 && !rpcLine(key); i++) await sleep(100);
  expect(rpcLine(key)).toContain('"outcome":"cancelled"');
  const left = await uploadsFor(key);
  tally({ suite: "faults: cancel during CreateMultipartUpload (proxy)", orphanUploads: left.length });
  expect(left).toEqual([]);
  tally({ suite: "faults: cancel during CreateMultipartUpload (proxy)", faultsSurvived: 1 });
});

it("a Save cancelled while its CompleteMultipartUpload is on the way lets it finish: object whole, Save logged as ok", async () => {
  const key = "cancelled-in-complete.bin";
  const isComplete = (r: { method?: string; url?: string }) =>
    r.method === "POST" && (r.url ?? "").includes("uploadId=");
  const before = proxy.injected;
  await saveCancelledAt(key, isComplete);
  proxy.inject(0, "slow-answer");
  expect(proxy.injected - before).toBe(1); // Complete was sent and its answer held back past the cancel
  tally({ suite: "faults: cancel during CompleteMultipartUpload (proxy)", faultsInjected: 1 });
  for (let i = 0; i < 100 && !rpcLine(key); i++) await sleep(100);
  expect(rpcLine(key)).toContain('"outcome":"ok"');
  expect(await objectSha(s3, BUCKET, key)).toBe(
    createHash("sha256")
      .update(readFileSync(join(work, "big.bin")))
      .digest("hex"),
  );
  expect(await uploadsFor(key)).toEqual([]);
  tally({ suite: "faults: cancel during CompleteMultipartUpload (proxy)", faultsSurvived: 1 });
});
