// End-to-end integrity: every upload stores a full-object CRC32 that S3
// verifies, every download is checked against it, and a corrupted or
// truncated download fails the RPC leaving nothing at the target. Failed
// multipart uploads are aborted: the bucket lists no leftover uploads.
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { crc32 } from "node:zlib";
import { CreateBucketCommand, HeadObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type MinioServer, startMinio } from "../../scripts/lib/minio.mjs";
import { countInjectedFaults, stopAndScan } from "../support/ledger.js";
import { adminClient, rootKeysEnv, uploadsLeft } from "../support/minio-access.js";
import { crc32ToBase64 } from "../../src/transfer/crc32.js";
import { type FaultProxy, startFaultProxy } from "../support/fault-proxy.js";
import { type PluginProcess, artifact, startPlugin } from "../support/plugin.js";

let minio: MinioServer;
let proxy: FaultProxy;
let plugin: PluginProcess;
let work: string;
let s3: S3Client;
const MiB = 1024 * 1024;
const cfg = (extra = "") =>
  `endpoint: ${proxy.endpoint}\nbucket: integrity\ninsecure: true\ntuning: {partSizeMiB: 5, multipartThresholdMiB: 5, maxAttempts: 2${extra}}\n`;
const isGet = (r: { method?: string }) => r.method === "GET";
const isRangedGet = (r: { method?: string; headers: Record<string, unknown> }) =>
  r.method === "GET" && r.headers["range"] !== undefined;

async function noUploadsLeft(): Promise<void> {
  expect(await uploadsLeft(s3, "integrity")).toEqual([]);
}

beforeAll(async () => {
  minio = await startMinio();
  proxy = await startFaultProxy(minio.port);
  s3 = adminClient(minio);
  await s3.send(new CreateBucketCommand({ Bucket: "integrity" }));
  plugin = await startPlugin(rootKeysEnv(minio));
  work = mkdtempSync(join(tmpdir(), "integrity-"));
  writeFileSync(join(work, "big.bin"), randomBytes(17 * MiB + 9));
  writeFileSync(join(work, "small.bin"), randomBytes(100_000));
  for (const name of ["big.bin", "small.bin"]) {
    expect(await plugin.client.save(artifact(cfg(), name), join(work, name))).toEqual({ success: true, error: "" });
  }
});

countInjectedFaults("faults: corrupted and truncated bodies, failing parts (proxy)", () => proxy?.injected ?? 0);

afterAll(async () => {
  await stopAndScan("integrity (proxy faults)", plugin, { "MinIO root secret key": minio?.secretKey });
  await proxy?.stop();
  await minio?.stop();
  rmSync(work, { recursive: true, force: true });
});

describe("checksums stored by uploads", () => {
  it.each(["big.bin", "small.bin"])("%s has a full-object CRC32 equal to the CRC of the file", async (name) => {
    const head = await s3.send(new HeadObjectCommand({ Bucket: "integrity", Key: name, ChecksumMode: "ENABLED" }));
    const { readFileSync } = await import("node:fs");
    expect(head.ChecksumCRC32).toBe(crc32ToBase64(crc32(readFileSync(join(work, name)))));
    expect(head.ChecksumType ?? "FULL_OBJECT").toBe("FULL_OBJECT");
  });

  it("a SaveStream upload (multipart, parts cut from the stream) has one too", async () => {
    const data = randomBytes(11 * MiB + 3);
    const chunks = [data.subarray(0, 4 * MiB), data.subarray(4 * MiB, 8 * MiB), data.subarray(8 * MiB)];
    expect(await plugin.client.saveStream(artifact(cfg(), "streamed.bin"), chunks)).toEqual({
      success: true,
      error: "",
    });
    const head = await s3.send(
      new HeadObjectCommand({ Bucket: "integrity", Key: "streamed.bin", ChecksumMode: "ENABLED" }),
    );
    expect(head.ChecksumCRC32).toBe(crc32ToBase64(crc32(data)));
  });
});

describe("corrupted and truncated downloads", () => {
  it.each([
    ["a multipart object read in ranges", "big.bin", isRangedGet],
    ["a small object read whole", "small.bin", isGet],
  ])(
    "a flipped byte in %s (on every attempt) fails Load with a checksum error and leaves nothing",
    async (_label, key, match) => {
      proxy.inject(10, "corrupt", match);
      const dest = join(work, `out-${key}`);
      const res = await plugin.client.load(artifact(cfg(), key), dest);
      expect(res.success).toBe(false);
      expect(res.error).toMatch(/checksum mismatch/i);
      expect(res.error).toContain(`s3://integrity/${key}`);
      expect(existsSync(dest)).toBe(false);
      expect(readdirSync(work).filter((f) => f.includes(`out-${key}`))).toEqual([]);
      proxy.inject(0, "corrupt");
    },
  );

  it("a flipped byte fails OpenStream with an error frame and no is_end", async () => {
    proxy.inject(1, "corrupt", isRangedGet);
    const res = await plugin.client.openStream(artifact(cfg(), "big.bin"));
    expect(res.frames.at(-1)?.error).toContain("checksum mismatch");
    expect(res.frames.some((f) => f.isEnd)).toBe(false);
    proxy.inject(0, "corrupt");
  });

  it("a body cut short on every attempt fails Load as truncated and leaves nothing", async () => {
    proxy.inject(10, "truncate", isRangedGet);
    const dest = join(work, "out-truncated");
    const res = await plugin.client.load(artifact(cfg(), "big.bin"), dest);
    expect(res.success).toBe(false);
    expect(res.error).toMatch(/truncated|aborted|socket|ECONNRESET|terminated/i);
    expect(existsSync(dest)).toBe(false);
    proxy.inject(0, "truncate");
  });

  it("with the corruption gone the same Load succeeds (nothing sticky)", async () => {
    const dest = join(work, "out-clean");
    expect(await plugin.client.load(artifact(cfg(), "big.bin"), dest)).toEqual({ success: true, error: "" });
  });
});

describe("single PUTs (the lean data path) are retried like the SDK's", () => {
  const isPut = (r: { method?: string; url?: string }) => r.method === "PUT" && !(r.url ?? "").includes("partNumber=");

  it("a PUT answered 503 once is sent again, and the object is whole", async () => {
    proxy.inject(1, "503", isPut);
    const before = proxy.injected;
    expect(await plugin.client.save(artifact(cfg(), "retried.bin"), join(work, "small.bin"))).toEqual({
      success: true,
      error: "",
    });
    expect(proxy.injected).toBe(before + 1);
    const head = await s3.send(
      new HeadObjectCommand({ Bucket: "integrity", Key: "retried.bin", ChecksumMode: "ENABLED" }),
    );
    const { readFileSync } = await import("node:fs");
    expect(head.ChecksumCRC32).toBe(crc32ToBase64(crc32(readFileSync(join(work, "small.bin")))));
    expect(head.ContentType).toBe("application/octet-stream");
  });

  it("a PUT that keeps failing fails the Save naming PutObject, after maxAttempts", async () => {
    proxy.inject(100, "503", isPut);
    const before = proxy.injected;
    const res = await plugin.client.save(artifact(cfg(), "never-put.bin"), join(work, "small.bin"));
    proxy.inject(0, "503");
    expect(res.success).toBe(false);
    expect(res.error).toMatch(/PutObject s3:\/\/integrity\/never-put\.bin .*failed/);
    expect(proxy.injected - before).toBe(2); // maxAttempts: 2 in cfg()
  });
});

describe("failed uploads are aborted", () => {
  it("a multipart Save whose parts keep failing is aborted: no object, no leftover upload", async () => {
    proxy.inject(100, "503", (r) => r.method === "PUT" && (r.url ?? "").includes("partNumber="));
    const res = await plugin.client.save(artifact(cfg(), "never.bin"), join(work, "big.bin"));
    proxy.inject(0, "503");
    expect(res.success).toBe(false);
    expect(res.error).toContain("UploadPart");
    await noUploadsLeft();
    await expect(s3.send(new HeadObjectCommand({ Bucket: "integrity", Key: "never.bin" }))).rejects.toMatchObject({
      name: "NotFound",
    });
  });

  it("a Save whose Complete fails is aborted too", async () => {
    proxy.inject(100, "503", (r) => r.method === "POST" && (r.url ?? "").includes("uploadId="));
    const res = await plugin.client.save(artifact(cfg(), "never2.bin"), join(work, "big.bin"));
    proxy.inject(0, "503");
    expect(res.success).toBe(false);
    expect(res.error).toContain("CompleteMultipartUpload");
    await noUploadsLeft();
  });
});
