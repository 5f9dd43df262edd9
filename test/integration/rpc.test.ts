// Every RPC against a real MinIO, through the real plugin process and socket.
import { createHash, randomBytes } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import {
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  PutObjectCommand,
  type S3Client,
  GetBucketEncryptionCommand,
  GetObjectLockConfigurationCommand,
  CreateBucketCommand,
} from "@aws-sdk/client-s3";
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type MinioServer, startMinio } from "../../scripts/lib/minio.mjs";
import { adminClient, rootKeysEnv } from "../support/minio-access.js";
import { type PluginProcess, artifact, startPlugin } from "../support/plugin.js";

let minio: MinioServer;
let plugin: PluginProcess;
let s3: S3Client;
let work: string;
const BUCKET = "artifacts";

const config = (extra = "") =>
  `endpoint: ${minio.endpoint}\nbucket: ${BUCKET}\ninsecure: true\nregion: us-east-1\n${extra}`;
// Small parts so multipart and ranged paths run on test-sized data.
const TUNED = "tuning:\n  partSizeMiB: 5\n  multipartThresholdMiB: 5\n  partConcurrency: 3\n";

function listTree(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isSymbolicLink()) continue;
      if (e.isDirectory()) walk(p);
      else out[relative(root, p)] = createHash("sha256").update(readFileSync(p)).digest("hex");
    }
  };
  walk(root);
  return out;
}

async function objectBytes(key: string, bucket = BUCKET): Promise<Buffer> {
  const out = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return Buffer.from(await out.Body!.transformToByteArray());
}

async function openUploads(bucket = BUCKET): Promise<number> {
  const out = await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
  return out.Uploads?.length ?? 0;
}

beforeAll(async () => {
  minio = await startMinio();
  s3 = adminClient(minio);
  await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  plugin = await startPlugin(rootKeysEnv(minio));
  work = mkdtempSync(join(tmpdir(), "rpc-"));
});

afterAll(async () => {
  const code = await plugin?.stop();
  expect(code).toBe(0);
  // No secret of the run may appear in anything the plugin wrote.
  expect(plugin.output()).not.toContain(minio.secretKey);
  await minio?.stop();
  rmSync(work, { recursive: true, force: true });
});

describe("file artifacts", () => {
  it.each([
    ["empty", 0],
    ["small", 1234],
    ["exactly the threshold", 5 * 1024 * 1024],
    ["multipart with a short last part", 17 * 1024 * 1024 + 3],
  ])("Save then Load round-trips a %s file byte for byte", async (label, size) => {
    const data = randomBytes(size);
    const src = join(work, `src-${size}.bin`);
    writeFileSync(src, data);
    const key = `files/${label.replace(/ /g, "-")}.bin`;
    const a = artifact(config(TUNED), key);
    expect(await plugin.client.save(a, src)).toEqual({ success: true, error: "" });
    expect((await objectBytes(key)).equals(data)).toBe(true);
    const dest = join(work, `dest-${size}.bin.tmp`);
    expect(await plugin.client.load(a, dest)).toEqual({ success: true, error: "" });
    expect(readFileSync(dest).equals(data)).toBe(true);
    // Nothing but the target appears beside it (no leftover temp file).
    expect(readdirSync(work).filter((f) => f.includes(`dest-${size}`))).toEqual([`dest-${size}.bin.tmp`]);
  });

  it("Load of a missing key fails with a not-found error naming bucket, key and endpoint", async () => {
    const dest = join(work, "missing.tmp");
    const res = await plugin.client.load(artifact(config(), "nope/missing.bin"), dest);
    expect(res.success).toBe(false);
    expect(res.error).toContain("not found");
    expect(res.error).toContain(`s3://${BUCKET}/nope/missing.bin`);
    expect(res.error).toContain(minio.endpoint);
    expect(existsSync(dest)).toBe(false);
  });

  it("Save of a missing local path fails and names the path", async () => {
    const res = await plugin.client.save(artifact(config(), "x/y"), join(work, "does-not-exist"));
    expect(res.success).toBe(false);
    expect(res.error).toContain("does-not-exist");
  });
});

describe("directory artifacts", () => {
  let src: string;
  beforeAll(() => {
    src = join(work, "tree");
    mkdirSync(join(src, "nested", "deeper"), { recursive: true });
    mkdirSync(join(src, "empty-dir"));
    writeFileSync(join(src, "a.txt"), "hello\n");
    writeFileSync(join(src, "empty.txt"), "");
    writeFileSync(join(src, "nested", "b.bin"), randomBytes(6 * 1024 * 1024 + 11));
    writeFileSync(join(src, "nested", "deeper", "c.txt"), "deep");
    symlinkSync(join(src, "a.txt"), join(src, "link-to-a"));
    symlinkSync("/etc", join(src, "link-out"));
  });

  it("Save uploads each regular file under key/<relative path>, skipping symlinks", async () => {
    const a = artifact(config(TUNED), "dirs/one");
    expect(await plugin.client.save(a, src)).toEqual({ success: true, error: "" });
    const listed = await plugin.client.listObjects(a);
    expect(listed.error).toBe("");
    expect([...listed.objects].sort()).toEqual(
      ["dirs/one/a.txt", "dirs/one/empty.txt", "dirs/one/nested/b.bin", "dirs/one/nested/deeper/c.txt"].sort(),
    );
  });

  it("Load recreates the tree exactly, empty file included", async () => {
    const dest = join(work, "tree-loaded.tmp");
    expect(await plugin.client.load(artifact(config(TUNED), "dirs/one"), dest)).toEqual({ success: true, error: "" });
    const expected = listTree(src);
    delete expected["link-to-a"];
    delete expected["link-out"];
    expect(listTree(dest)).toEqual(expected);
  });

  it("IsDirectory is true for a prefix, false for an object and for nothing", async () => {
    expect(await plugin.client.isDirectory(artifact(config(), "dirs/one"))).toEqual({ isDirectory: true, error: "" });
    expect(await plugin.client.isDirectory(artifact(config(), "dirs/one/"))).toEqual({ isDirectory: true, error: "" });
    expect(await plugin.client.isDirectory(artifact(config(), "dirs/one/a.txt"))).toEqual({
      isDirectory: false,
      error: "",
    });
    expect(await plugin.client.isDirectory(artifact(config(), "dirs/none"))).toEqual({ isDirectory: false, error: "" });
  });

  it("ListObjects skips folder markers; errors only when neither prefix nor key exists", async () => {
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "dirs/one/nested/", Body: "" }));
    const listed = await plugin.client.listObjects(artifact(config(), "dirs/one/nested"));
    expect([...listed.objects].sort()).toEqual(["dirs/one/nested/b.bin", "dirs/one/nested/deeper/c.txt"]);
    const file = await plugin.client.listObjects(artifact(config(), "dirs/one/a.txt"));
    expect(file).toEqual({ objects: [], error: "" });
    const none = await plugin.client.listObjects(artifact(config(), "dirs/nothing-here"));
    expect(none.objects).toEqual([]);
    expect(none.error).toContain("not found");
    expect(none.error).toContain("dirs/nothing-here");
  });

  it("Delete with a trailing slash removes every object under the prefix; without, one key", async () => {
    expect(await plugin.client.delete(artifact(config(), "dirs/one/a.txt"))).toEqual({ success: true, error: "" });
    const after = await plugin.client.listObjects(artifact(config(), "dirs/one"));
    expect(after.objects).not.toContain("dirs/one/a.txt");
    expect(after.objects.length).toBeGreaterThan(0);
    expect(await plugin.client.delete(artifact(config(), "dirs/one/"))).toEqual({ success: true, error: "" });
    expect(await plugin.client.isDirectory(artifact(config(), "dirs/one"))).toEqual({ isDirectory: false, error: "" });
  });

  it("Delete of a key without '/' that names only a prefix (how Artifact GC deletes an archive: none directory) removes the prefix, not its neighbours", async () => {
    for (const k of ["gc/run/out/a.txt", "gc/run/out/sub/b.txt", "gc/run/outside.txt", "gc/run/out-sibling/c.txt"]) {
      await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: k, Body: k }));
    }
    expect(await plugin.client.delete(artifact(config(), "gc/run/out"))).toEqual({ success: true, error: "" });
    const left = await plugin.client.listObjects(artifact(config(), "gc/run"));
    expect(left.objects.sort()).toEqual(["gc/run/out-sibling/c.txt", "gc/run/outside.txt"]);
    // An object at the key itself is what such a Delete removes, and only it.
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "gc/run/both", Body: "file" }));
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "gc/run/both/inner", Body: "inner" }));
    expect(await plugin.client.delete(artifact(config(), "gc/run/both"))).toEqual({ success: true, error: "" });
    expect((await plugin.client.listObjects(artifact(config(), "gc/run/both"))).objects).toEqual(["gc/run/both/inner"]);
  });
});

describe("streams", () => {
  it("GetCapabilities advertises SaveStream", async () => {
    expect(await plugin.client.getCapabilities()).toEqual({ supportsSaveStream: true });
  });

  it("OpenStream sends the object in frames under 4 MiB, then a separate is_end frame", async () => {
    const data = randomBytes(12 * 1024 * 1024 + 5);
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "stream/big.bin", Body: data }));
    const { frames, data: got } = await plugin.client.openStream(artifact(config(TUNED), "stream/big.bin"));
    expect(got.equals(data)).toBe(true);
    for (const f of frames) expect(f.data.length).toBeLessThanOrEqual(2 * 1024 * 1024);
    const last = frames[frames.length - 1]!;
    expect(last.isEnd).toBe(true);
    expect(last.data.length).toBe(0);
  });

  it("OpenStream of an empty object sends only is_end; of a missing key, an error frame naming the key", async () => {
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "stream/empty", Body: "" }));
    const empty = await plugin.client.openStream(artifact(config(), "stream/empty"));
    expect(empty.data.length).toBe(0);
    expect(empty.frames.at(-1)?.isEnd).toBe(true);
    const missing = await plugin.client.openStream(artifact(config(), "stream/missing.bin"));
    expect(missing.frames.at(-1)?.error).toContain("stream/missing.bin");
    expect(missing.frames.some((f) => f.isEnd)).toBe(false);
  });

  it("SaveStream turns 2 MiB chunks into an object, multipart when large", async () => {
    const data = randomBytes(13 * 1024 * 1024 + 17);
    const chunks: Buffer[] = [];
    for (let off = 0; off < data.length; off += 2 * 1024 * 1024) chunks.push(data.subarray(off, off + 2 * 1024 * 1024));
    const res = await plugin.client.saveStream(artifact(config(TUNED), "stream/saved.bin"), chunks);
    expect(res).toEqual({ success: true, error: "" });
    expect((await objectBytes("stream/saved.bin")).equals(data)).toBe(true);
    const small = await plugin.client.saveStream(artifact(config(TUNED), "stream/small.bin"), [Buffer.from("tiny")]);
    expect(small.success).toBe(true);
    expect((await objectBytes("stream/small.bin")).toString()).toBe("tiny");
    const none = await plugin.client.saveStream(artifact(config(TUNED), "stream/none.bin"), []);
    expect(none.success).toBe(true);
    expect((await objectBytes("stream/none.bin")).length).toBe(0);
  });

  it("a SaveStream cancelled by the client leaves no object and no multipart upload", async () => {
    async function* endless() {
      for (let i = 0; i < 100; i++) yield randomBytes(2 * 1024 * 1024);
    }
    await expect(
      plugin.client.saveStream(artifact(config(TUNED), "stream/cancelled.bin"), endless(), {
        cancelAfter: 14 * 1024 * 1024,
      }),
    ).rejects.toMatchObject({
      code: status.CANCELLED,
    });
    // Cleanup runs after the cancel reaches the server; give it a moment.
    for (let i = 0; i < 50 && (await openUploads()) > 0; i++) await new Promise((r) => setTimeout(r, 100));
    expect(await openUploads()).toBe(0);
    await expect(s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "stream/cancelled.bin" }))).rejects.toMatchObject(
      { name: "NotFound" },
    );
  });
});

describe("bucket creation and encryption", () => {
  it("createBucketIfNotPresent creates the bucket, with object locking and default encryption", async () => {
    const bucket = "created-locked";
    const cfg = `endpoint: ${minio.endpoint}\nbucket: ${bucket}\ninsecure: true\ncreateBucketIfNotPresent:\n  objectLocking: true\nencryptionOptions:\n  enableEncryption: true\n`;
    const src = join(work, "enc.txt");
    writeFileSync(src, "encrypted at rest");
    expect(await plugin.client.save(artifact(cfg, "enc.txt"), src)).toEqual({ success: true, error: "" });
    const lock = await s3.send(new GetObjectLockConfigurationCommand({ Bucket: bucket }));
    expect(lock.ObjectLockConfiguration?.ObjectLockEnabled).toBe("Enabled");
    const enc = await s3.send(new GetBucketEncryptionCommand({ Bucket: bucket }));
    expect(enc.ServerSideEncryptionConfiguration?.Rules?.[0]?.ApplyServerSideEncryptionByDefault?.SSEAlgorithm).toBe(
      "AES256",
    );
    const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: "enc.txt" }));
    expect(head.ServerSideEncryption).toBe("AES256");
    // A second Save with the bucket now present is fine.
    expect(await plugin.client.save(artifact(cfg, "enc2.txt"), src)).toEqual({ success: true, error: "" });
  });

  it("SSE-KMS with a key id and encryption context round-trips", async () => {
    const cfg = config(
      'encryptionOptions:\n  enableEncryption: true\n  kmsKeyId: test-key\n  kmsEncryptionContext: \'{"team":"ml"}\'\n',
    );
    const src = join(work, "kms.bin");
    const data = randomBytes(7 * 1024 * 1024);
    writeFileSync(src, data);
    expect(await plugin.client.save(artifact(cfg + TUNED, "kms/obj.bin"), src)).toEqual({ success: true, error: "" });
    const head = await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "kms/obj.bin" }));
    expect(head.ServerSideEncryption).toBe("aws:kms");
    const dest = join(work, "kms.out");
    expect(await plugin.client.load(artifact(cfg + TUNED, "kms/obj.bin"), dest)).toEqual({ success: true, error: "" });
    expect(readFileSync(dest).equals(data)).toBe(true);
  });

  it("a Save to a bucket that does not exist (no createBucketIfNotPresent) names bucket and S3 code", async () => {
    const src = join(work, "nb.txt");
    writeFileSync(src, "x");
    const res = await plugin.client.save(
      artifact(`endpoint: ${minio.endpoint}\nbucket: no-such-bucket\ninsecure: true\n`, "k"),
      src,
    );
    expect(res.success).toBe(false);
    expect(res.error).toContain("s3://no-such-bucket/k");
    expect(res.error).toContain("NoSuchBucket");
  });
});

describe("bad requests and configuration", () => {
  it("no artifact, no plugin block, empty configuration → INVALID_ARGUMENT", async () => {
    await expect(plugin.client.load(undefined as never, "/tmp/x")).rejects.toMatchObject({
      code: status.INVALID_ARGUMENT,
    });
    await expect(plugin.client.save({ name: "out" }, "/tmp/x")).rejects.toMatchObject({
      code: status.INVALID_ARGUMENT,
      details: expect.stringContaining("plugin"),
    });
    await expect(plugin.client.listObjects(artifact("", "k"))).rejects.toMatchObject({
      code: status.INVALID_ARGUMENT,
      details: expect.stringContaining("configuration"),
    });
  });

  it("a configuration error names the field", async () => {
    const unknown = await plugin.client.load(artifact(config("bogusField: 1\n"), "k"), join(work, "u"));
    expect(unknown).toMatchObject({ success: false });
    expect(unknown.error).toContain("bogusField");
    const wrongType = await plugin.client.isDirectory(
      artifact(config("insecure: yes please\n").replace("insecure: true\n", ""), "k"),
    );
    expect(wrongType.error).toContain("insecure");
    const noBucket = await plugin.client.delete(artifact(`endpoint: ${minio.endpoint}\n`, "k"));
    expect(noBucket.error).toContain("bucket: required");
  });

  it("wrong credentials give an error with the S3 code, bucket and endpoint, never the secret", async () => {
    const other = await startPlugin({
      AWS_ACCESS_KEY_ID: minio.accessKey,
      AWS_SECRET_ACCESS_KEY: "wrong-secret-value-123",
      AWS_EC2_METADATA_DISABLED: "true",
    });
    try {
      const res = await other.client.listObjects(artifact(config(), "dirs"));
      expect(res.error).toMatch(/SignatureDoesNotMatch|InvalidAccessKeyId|AccessDenied/);
      expect(res.error).toContain(BUCKET);
      expect(res.error).toContain(minio.endpoint);
      expect(res.error).not.toContain("wrong-secret-value-123");
    } finally {
      expect(await other.stop()).toBe(0);
    }
    expect(other.output()).not.toContain("wrong-secret-value-123");
  });
});
