// Transient S3 errors (503 SlowDown, dropped connections) are retried with
// backoff for Load, Save, ListObjects and Delete, and not for OpenStream.
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CreateBucketCommand, ListMultipartUploadsCommand, type S3Client } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type MinioServer, startMinio } from "../../scripts/lib/minio.mjs";
import { countInjectedFaults, stopAndScan } from "../support/ledger.js";
import { adminClient, rootKeysEnv } from "../support/minio-access.js";
import { type FaultProxy, startFaultProxy } from "../support/fault-proxy.js";
import { type PluginProcess, artifact, startPlugin } from "../support/plugin.js";

let minio: MinioServer;
let proxy: FaultProxy;
let plugin: PluginProcess;
let work: string;
let s3: S3Client;
const cfg = () =>
  `endpoint: ${proxy.endpoint}\nbucket: retry\ninsecure: true\ntuning: {partSizeMiB: 5, multipartThresholdMiB: 5, maxAttempts: 4}\n`;

beforeAll(async () => {
  minio = await startMinio();
  proxy = await startFaultProxy(minio.port);
  s3 = adminClient(minio);
  await s3.send(new CreateBucketCommand({ Bucket: "retry" }));
  plugin = await startPlugin(rootKeysEnv(minio));
  work = mkdtempSync(join(tmpdir(), "retry-"));
});

countInjectedFaults("faults: S3 503 SlowDown and dropped connections (proxy)", () => proxy?.injected ?? 0);

afterAll(async () => {
  await stopAndScan("retry (proxy faults)", plugin, { "MinIO root secret key": minio?.secretKey });
  await proxy?.stop();
  await minio?.stop();
  rmSync(work, { recursive: true, force: true });
});

it.each(["503", "reset"] as const)("Save (multipart) and Load survive %s faults on parts and ranges", async (fault) => {
  const data = randomBytes(12 * 1024 * 1024);
  const src = join(work, `in-${fault}`);
  writeFileSync(src, data);
  const before = proxy.injected;
  proxy.inject(2, fault, (r) => r.method === "PUT" && (r.url ?? "").includes("partNumber="));
  expect(await plugin.client.save(artifact(cfg(), `r/${fault}.bin`), src)).toEqual({ success: true, error: "" });
  expect(proxy.injected - before).toBe(2);
  proxy.inject(2, fault, (r) => r.method === "GET" && r.headers["range"] !== undefined);
  const dest = join(work, `out-${fault}`);
  expect(await plugin.client.load(artifact(cfg(), `r/${fault}.bin`), dest)).toEqual({ success: true, error: "" });
  expect(proxy.injected - before).toBe(4);
  expect(readFileSync(dest).equals(data)).toBe(true);
  const uploads = await s3.send(new ListMultipartUploadsCommand({ Bucket: "retry" }));
  expect(uploads.Uploads ?? []).toEqual([]);
});

it("ListObjects and Delete retry 503s", async () => {
  proxy.inject(2, "503", (r) => r.method === "GET" && (r.url ?? "").includes("list-type=2"));
  const listed = await plugin.client.listObjects(artifact(cfg(), "r"));
  expect(listed.error).toBe("");
  expect(listed.objects.sort()).toEqual(["r/503.bin", "r/reset.bin"]);
  proxy.inject(2, "503", (r) => r.method === "DELETE");
  expect(await plugin.client.delete(artifact(cfg(), "r/503.bin"))).toEqual({ success: true, error: "" });
  expect((await plugin.client.listObjects(artifact(cfg(), "r"))).objects).toEqual(["r/reset.bin"]);
});

it("a fault that outlasts the attempts fails with S3's code, bucket, key and endpoint", async () => {
  const src = join(work, "small");
  writeFileSync(src, "x");
  proxy.inject(10, "503", (r) => r.method === "PUT");
  const res = await plugin.client.save(artifact(cfg(), "r/never.txt"), src);
  expect(res.success).toBe(false);
  expect(res.error).toContain("SlowDown");
  expect(res.error).toContain("s3://retry/r/never.txt");
  expect(res.error).toContain(proxy.endpoint);
  proxy.inject(0, "503");
});

it("OpenStream does not retry: one injected fault fails the stream", async () => {
  const before = proxy.injected;
  proxy.inject(1, "503", (r) => r.method === "GET" && r.headers["range"] !== undefined);
  const res = await plugin.client.openStream(artifact(cfg(), "r/reset.bin"));
  expect(proxy.injected - before).toBe(1);
  expect(res.frames.at(-1)?.error).toContain("SlowDown");
  expect(res.frames.some((f) => f.isEnd)).toBe(false);
});
