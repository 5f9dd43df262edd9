// S3 semantics on more than one S3 implementation: every RPC, multipart
// sizes, listings over 1,000 keys, odd keys, checksums and encryption, run
// against MinIO and versitygw (posix backend; strict about signatures,
// regions and checksums, and it ignores SSE headers) through one fixture.
// What a server cannot do is skipped by the capability table, with the
// reason printed; the rest must pass byte for byte on both.
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  CreateBucketCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  PutObjectCommand,
  S3Client,
} from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startMinio } from "../../scripts/lib/minio.mjs";
import { startVersitygw } from "../../scripts/lib/versitygw.mjs";
import { type PluginProcess, artifact, startPlugin } from "../support/plugin.js";
import { treeSha } from "../support/tree.js";

const MiB = 1024 * 1024;
const BUCKET = "stores-bucket";
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

interface Store {
  endpoint: string;
  url: string;
  accessKey: string;
  secretKey: string;
  stop: () => Promise<void>;
}

interface Capabilities {
  /** Applies SSE-S3 / SSE-KMS and says so in its answers. */
  sse: boolean;
  /** Accepts PutBucketEncryption (bucket default encryption). */
  bucketEncryption: boolean;
}

const STORES: {
  name: string;
  start: () => Promise<Store>;
  caps: Capabilities;
  why: Partial<Record<keyof Capabilities, string>>;
}[] = [
  { name: "MinIO", start: () => startMinio(), caps: { sse: true, bucketEncryption: true }, why: {} },
  {
    name: "versitygw",
    start: () => startVersitygw(),
    caps: { sse: false, bucketEncryption: false },
    why: {
      sse: "versitygw ignores SSE headers: a Save asking for encryption must fail there",
      bucketEncryption:
        "versitygw answers PutBucketEncryption with NotImplemented: a bucket created with encryptionOptions must never be taken as ready",
    },
  },
];

for (const s of STORES) {
  for (const [cap, reason] of Object.entries(s.why))
    process.stdout.write(`stores: ${s.name} lacks ${cap}: ${reason}\n`);
}

describe.each(STORES)("$name", ({ start, caps }) => {
  let store: Store;
  let s3: S3Client;
  let plugin: PluginProcess;
  let work: string;
  const cfg = (extra = "") =>
    `endpoint: ${store.endpoint}\nbucket: ${BUCKET}\ninsecure: true\nregion: us-east-1\ntuning: {partSizeMiB: 5, multipartThresholdMiB: 5}\n${extra}`;

  beforeAll(async () => {
    store = await start();
    s3 = new S3Client({
      endpoint: store.url,
      region: "us-east-1",
      forcePathStyle: true,
      credentials: { accessKeyId: store.accessKey, secretAccessKey: store.secretKey },
    });
    await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
    plugin = await startPlugin({
      AWS_ACCESS_KEY_ID: store.accessKey,
      AWS_SECRET_ACCESS_KEY: store.secretKey,
      AWS_EC2_METADATA_DISABLED: "true",
    });
    work = mkdtempSync(join(tmpdir(), "stores-"));
  }, 300_000);

  afterAll(async () => {
    expect(await plugin?.stop()).toBe(0);
    await store?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it.each([
    ["empty", 0],
    ["small", 1234],
    ["one part exactly", 5 * MiB],
    ["multipart, exact multiple", 10 * MiB],
    ["multipart, ragged", 12 * MiB + 7],
  ])("Save and Load a file (%s), byte for byte, with its CRC32 checked; no upload left", async (label, size) => {
    const data = randomBytes(size);
    const src = join(work, `f-${size}`);
    writeFileSync(src, data);
    const key = `files/${label.replace(/\W+/g, "-")}.bin`;
    expect(await plugin.client.save(artifact(cfg(), key), src)).toEqual({ success: true, error: "" });
    const dest = join(work, `back-${size}`);
    expect(await plugin.client.load(artifact(cfg(), key), dest)).toEqual({ success: true, error: "" });
    expect(sha(readFileSync(dest))).toBe(sha(data));
    const streamed = await plugin.client.openStream(artifact(cfg(), key));
    expect(sha(streamed.data)).toBe(sha(data));
    expect((await s3.send(new ListMultipartUploadsCommand({ Bucket: BUCKET }))).Uploads ?? []).toEqual([]);
  });

  it("SaveStream in 2 MiB chunks, then OpenStream of it in frames", async () => {
    const data = randomBytes(13 * MiB + 3);
    const chunks = Array.from({ length: Math.ceil(data.length / (2 * MiB)) }, (_, i) =>
      data.subarray(i * 2 * MiB, (i + 1) * 2 * MiB),
    );
    expect(await plugin.client.saveStream(artifact(cfg(), "stream/s.bin"), chunks)).toEqual({
      success: true,
      error: "",
    });
    const { data: got, frames } = await plugin.client.openStream(artifact(cfg(), "stream/s.bin"));
    expect(sha(got)).toBe(sha(data));
    expect(frames.at(-1)?.isEnd).toBe(true);
  });

  it("Save and Load a directory with odd names, then ListObjects and IsDirectory", async () => {
    const src = join(work, "odd-src");
    const names = [
      "a.txt",
      "space name.txt",
      "ünïcödé/ß.txt",
      "plus+sign.txt",
      "per%cent.txt",
      "eq=amp&hash#.txt",
      "deep/er/still/x.bin",
      "(paren)[brk].txt",
    ];
    for (const n of names) {
      mkdirSync(join(src, n, ".."), { recursive: true });
      writeFileSync(join(src, n), randomBytes(100 + n.length));
    }
    expect(await plugin.client.save(artifact(cfg(), "odd"), src)).toEqual({ success: true, error: "" });
    const dest = join(work, "odd-back");
    expect(await plugin.client.load(artifact(cfg(), "odd"), dest)).toEqual({ success: true, error: "" });
    expect(treeSha(dest)).toEqual(treeSha(src));
    const list = await plugin.client.listObjects(artifact(cfg(), "odd"));
    expect(list.objects.sort()).toEqual(names.map((n) => `odd/${n}`).sort());
    expect(await plugin.client.isDirectory(artifact(cfg(), "odd"))).toEqual({ isDirectory: true, error: "" });
    expect(await plugin.client.isDirectory(artifact(cfg(), "odd/a.txt"))).toEqual({ isDirectory: false, error: "" });
  });

  it("lists and deletes more than 1,000 keys (pages and DeleteObjects batches), and GC's delete of a prefix without '/'", async () => {
    const keys = Array.from({ length: 1_050 }, (_, i) => `many/k${String(i).padStart(5, "0")}`);
    for (let i = 0; i < keys.length; i += 50) {
      await Promise.all(
        keys.slice(i, i + 50).map((k) => s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: k, Body: k }))),
      );
    }
    const list = await plugin.client.listObjects(artifact(cfg(), "many"));
    expect(list.error).toBe("");
    expect(list.objects.sort()).toEqual(keys);
    expect(await plugin.client.delete(artifact(cfg(), "many"))).toEqual({ success: true, error: "" });
    expect(await plugin.client.isDirectory(artifact(cfg(), "many"))).toEqual({ isDirectory: false, error: "" });
  });

  it("a missing key: Load and OpenStream name bucket and key", async () => {
    const res = await plugin.client.load(artifact(cfg(), "nothing/here"), join(work, "nothing"));
    expect(res.success).toBe(false);
    expect(res.error).toContain(`s3://${BUCKET}/nothing/here`);
    const frames = (await plugin.client.openStream(artifact(cfg(), "nothing/here"))).frames;
    expect(frames.at(-1)?.error).toContain(`s3://${BUCKET}/nothing/here`);
  });

  it(
    caps.sse
      ? "SSE-S3 is applied (the store confirms it)"
      : "SSE-S3 is refused with a clear error and no object (the store ignores it)",
    async () => {
      const src = join(work, "enc.bin");
      writeFileSync(src, randomBytes(64 * 1024));
      for (const [key, size] of [
        ["enc/small.bin", 64 * 1024],
        ["enc/multi.bin", 11 * MiB],
      ] as const) {
        writeFileSync(src, randomBytes(size));
        const res = await plugin.client.save(artifact(cfg("encryptionOptions: {enableEncryption: true}\n"), key), src);
        if (caps.sse) {
          expect(res).toEqual({ success: true, error: "" });
          expect((await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }))).ServerSideEncryption).toBe(
            "AES256",
          );
        } else {
          expect(res.success).toBe(false);
          expect(res.error).toContain("did not confirm SSE-S3");
          await expect(s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }))).rejects.toMatchObject({
            $metadata: { httpStatusCode: 404 },
          });
        }
      }
      expect(statSync(src).size).toBeGreaterThan(0);
    },
  );

  it(
    caps.bucketEncryption
      ? "createBucketIfNotPresent with encryptionOptions creates the bucket with its default encryption"
      : "createBucketIfNotPresent with encryptionOptions: the bucket's encryption cannot be set, so it is never taken as ready (the retry fails too)",
    async () => {
      const bucket = "made-with-encryption";
      const src = join(work, "mk.bin");
      writeFileSync(src, randomBytes(1000));
      const c = `endpoint: ${store.endpoint}\nbucket: ${bucket}\ninsecure: true\nregion: us-east-1\ncreateBucketIfNotPresent: {}\nencryptionOptions: {enableEncryption: true}\n`;
      for (let attempt = 0; attempt < 2; attempt++) {
        const res = await plugin.client.save(artifact(c, `try-${attempt}.bin`), src);
        if (caps.bucketEncryption) expect(res).toEqual({ success: true, error: "" });
        else {
          expect(res.success, `attempt ${attempt}`).toBe(false);
          expect(res.error).toContain("PutBucketEncryption");
          expect(res.error).toContain("default encryption could not be set");
        }
      }
    },
  );
});
