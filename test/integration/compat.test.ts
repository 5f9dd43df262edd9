// Habits of S3 implementations other than MinIO, played by the fault proxy in
// front of a real MinIO: a composite multipart CRC32 served without its "-N"
// suffix or checksum type (moto), bodiless HEAD errors, TLS spoken to a
// plain-HTTP endpoint, and a store that requires Content-MD5 on DeleteObjects.
import { createHash, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import type { IncomingMessage } from "node:http";
import { join } from "node:path";
import { PutObjectCommand } from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type MinioServer } from "../../scripts/lib/minio.mjs";
import { type FaultProxy } from "../support/fault-proxy.js";
import { adminClient } from "../support/minio-access.js";
import { type PluginProcess, artifact, startPlugin } from "../support/plugin.js";
import { type ProxiedMinio, startProxiedMinio } from "../support/proxied-minio.js";

let bed: ProxiedMinio;
let minio: MinioServer;
let proxy: FaultProxy;
let plugin: PluginProcess;
let work: string;
const BUCKET = "compat";
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");
const cfg = (extra = "") =>
  `endpoint: ${proxy.endpoint}\nbucket: ${BUCKET}\ninsecure: true\ntuning: {partSizeMiB: 5, multipartThresholdMiB: 5}\n${extra}`;

beforeAll(async () => {
  bed = await startProxiedMinio("compat", BUCKET);
  ({ minio, proxy, plugin, work } = bed);
}, 120_000);

afterAll(async () => {
  expect(await bed?.stop()).toBe(0);
});

it("a composite multipart CRC32 served without '-N' or checksum type is not taken for corruption", async () => {
  // Uploaded by another client as multipart with a (composite) CRC32.
  const data = randomBytes(11 * 1024 * 1024);
  await new Upload({
    client: adminClient(minio),
    params: { Bucket: BUCKET, Key: "composite.bin", Body: data, ChecksumAlgorithm: "CRC32" },
    partSize: 5 * 1024 * 1024,
  }).done();
  proxy.editHeaders((h) => {
    const v = h["x-amz-checksum-crc32"];
    if (typeof v === "string") h["x-amz-checksum-crc32"] = v.replace(/-\d+$/, "");
    delete h["x-amz-checksum-type"];
  });
  try {
    const dest = join(work, "composite.bin");
    expect(await plugin.client.load(artifact(cfg(), "composite.bin"), dest)).toEqual({ success: true, error: "" });
    expect(sha(readFileSync(dest))).toBe(sha(data));
    const streamed = await plugin.client.openStream(artifact(cfg(), "composite.bin"));
    expect(sha(streamed.data)).toBe(sha(data));
  } finally {
    proxy.editHeaders();
  }
});

it("a bodiless 403 on HEAD says in words what it likely means", async () => {
  await adminClient(minio).send(new PutObjectCommand({ Bucket: BUCKET, Key: "k.txt", Body: "k" }));
  const wrong = await startPlugin({
    AWS_ACCESS_KEY_ID: minio.accessKey,
    AWS_SECRET_ACCESS_KEY: "not-the-secret-key",
    AWS_EC2_METADATA_DISABLED: "true",
  });
  try {
    const res = await wrong.client.load(artifact(cfg(), "k.txt"), join(work, "k.txt"));
    expect(res.success).toBe(false);
    expect(res.error).toContain("HeadObject");
    expect(res.error).toContain("wrong access key or secret key");
  } finally {
    expect(await wrong.stop()).toBe(0);
  }
});

it("TLS spoken to a plain-HTTP endpoint says to set insecure: true", async () => {
  const res = await plugin.client.isDirectory(
    artifact(`endpoint: ${minio.endpoint}\nbucket: ${BUCKET}\ntuning: {maxAttempts: 1}\n`, "k"),
  );
  expect(res.error).toContain("set `insecure: true`");
  expect(res.error).not.toMatch(/ssl3_get_record|SSL routines/);
});

it("DeleteObjects carries Content-MD5 (AWS documents it as required; some stores refuse without)", async () => {
  for (let i = 0; i < 3; i++)
    await adminClient(minio).send(new PutObjectCommand({ Bucket: BUCKET, Key: `del/${i}`, Body: "x" }));
  const seen: (string | undefined)[] = [];
  const record = (req: IncomingMessage) => {
    if (req.method === "POST" && (req.url ?? "").includes("delete"))
      seen.push(req.headers["content-md5"] as string | undefined);
    return false; // inject nothing
  };
  proxy.inject(1, "503", record);
  expect(await plugin.client.delete(artifact(cfg(), "del/"))).toEqual({ success: true, error: "" });
  proxy.inject(0, "503");
  expect(seen.length).toBeGreaterThan(0);
  for (const md5 of seen) expect(md5).toMatch(/^[A-Za-z0-9+/]{22}==$/);
});
