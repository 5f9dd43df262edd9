// moto (server mode) covers what MinIO and versitygw cannot: STS AssumeRole
// for `roleARN` (one call per configuration, however many S3 clients use it),
// SSE-KMS with a key id, and multipart CRC32 checksums served the way moto
// serves them (a composite value with neither "-N" nor a checksum type).
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CreateBucketCommand, HeadObjectCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type MotoServer, startMoto } from "../../scripts/lib/moto.mjs";
import { type FaultProxy, startFaultProxy } from "../support/fault-proxy.js";
import { type PluginProcess, artifact, startPlugin } from "../support/plugin.js";

const BUCKET = "moto-bucket";
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");
let moto: MotoServer;
let sts: FaultProxy;
let s3: S3Client;
let plugin: PluginProcess;
let work: string;

beforeAll(async () => {
  moto = await startMoto();
  s3 = new S3Client({
    endpoint: moto.url,
    region: "us-east-1",
    forcePathStyle: true,
    credentials: { accessKeyId: moto.accessKey, secretAccessKey: moto.secretKey },
  });
  await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  // STS goes through a counting proxy; S3 goes to moto directly.
  sts = await startFaultProxy(moto.port);
  plugin = await startPlugin({
    AWS_ACCESS_KEY_ID: moto.accessKey,
    AWS_SECRET_ACCESS_KEY: moto.secretKey,
    AWS_EC2_METADATA_DISABLED: "true",
    AWS_ENDPOINT_URL_STS: `http://${sts.endpoint}`,
  });
  work = mkdtempSync(join(tmpdir(), "moto-"));
}, 20 * 60_000);

afterAll(async () => {
  expect(await plugin?.stop()).toBe(0);
  await sts?.stop();
  await moto?.stop();
  rmSync(work, { recursive: true, force: true });
});

const cfg = (extra = "") =>
  `endpoint: ${moto.endpoint}\nbucket: ${BUCKET}\ninsecure: true\nregion: us-east-1\ntuning: {partSizeMiB: 5, multipartThresholdMiB: 5}\n${extra}`;

it("roleARN: one AssumeRole per configuration, shared by its retrying and single-attempt clients", async () => {
  const role = "roleARN: arn:aws:iam::123456789012:role/argo-artifacts\n";
  const calls = new Set<object>();
  // Counts STS requests without failing any (the proxy may ask twice per request).
  sts.inject(1, "503", (req) => {
    if (req.method === "POST") calls.add(req);
    return false;
  });
  const src = join(work, "role.bin");
  const data = randomBytes(300 * 1024);
  writeFileSync(src, data);
  expect(await plugin.client.save(artifact(cfg(role), "role/obj.bin"), src)).toEqual({ success: true, error: "" });
  const dest = join(work, "role.back");
  expect(await plugin.client.load(artifact(cfg(role), "role/obj.bin"), dest)).toEqual({ success: true, error: "" });
  const streamed = await plugin.client.openStream(artifact(cfg(role), "role/obj.bin"));
  expect(sha(streamed.data)).toBe(sha(data));
  expect(sha(readFileSync(dest))).toBe(sha(data));
  sts.inject(0, "503");
  expect(calls.size).toBe(1);
});

it("SSE-KMS with a key id: the store confirms aws:kms and the key", async () => {
  const src = join(work, "kms.bin");
  writeFileSync(src, randomBytes(7 * 1024 * 1024));
  const keyId = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
  expect(
    await plugin.client.save(
      artifact(cfg(`encryptionOptions: {enableEncryption: true, kmsKeyId: "${keyId}"}\n`), "kms/obj.bin"),
      src,
    ),
  ).toEqual({ success: true, error: "" });
  const head = await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "kms/obj.bin" }));
  expect(head.ServerSideEncryption).toBe("aws:kms");
  expect(head.SSEKMSKeyId).toContain("1234abcd-12ab-34cd-56ef-1234567890ab");
});

it("an object uploaded by another client as multipart with CRC32 loads (moto's composite value is not a full-object checksum)", async () => {
  const data = randomBytes(11 * 1024 * 1024);
  await new Upload({
    client: s3,
    params: { Bucket: BUCKET, Key: "composite.bin", Body: data, ChecksumAlgorithm: "CRC32" },
    partSize: 5 * 1024 * 1024,
  }).done();
  const dest = join(work, "composite.back");
  expect(await plugin.client.load(artifact(cfg(), "composite.bin"), dest)).toEqual({ success: true, error: "" });
  expect(sha(readFileSync(dest))).toBe(sha(data));
});

it("keys that S3 keeps apart but that name one local file (a/b, a//b, a/./b) fail the Load naming the key; no file is made of two objects", async () => {
  const objects = { "same/a/b": randomBytes(3000), "same/a//b": randomBytes(3000), "same/a/./b": randomBytes(3000) };
  for (const [Key, Body] of Object.entries(objects)) await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key, Body }));
  for (const k of Object.keys(objects))
    expect((await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: k }))).ContentLength, `moto keeps ${k}`).toBe(
      3000,
    );
  const dest = join(work, "same-back");
  const res = await plugin.client.load(artifact(cfg(), "same"), dest);
  expect(res.success).toBe(false);
  expect(res.error).toMatch(
    /refusing to load object "same\/a(\/\/|\/\.\/)b" .*names the same file as another key would/,
  );
  // The target was made by this Load: a refused Load removes it whole.
  expect(() => readFileSync(join(dest, "a", "b"))).toThrow();
});
