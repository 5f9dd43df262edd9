// A store that ignores the encryption headers stores plaintext and answers
// 200 (versitygw ignores them all, moto ignores SSE-C). AWS echoes the
// encryption it applied in every write answer; when that echo is missing,
// the Save fails with a clear error and leaves no object. The fault proxy
// plays the ignoring store by dropping the echo from MinIO's answers.
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { HeadObjectCommand } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type MinioServer } from "../../scripts/lib/minio.mjs";
import { type FaultProxy } from "../support/fault-proxy.js";
import { tally } from "../support/ledger.js";
import { adminClient, uploadsLeft } from "../support/minio-access.js";
import { type PluginProcess, artifact } from "../support/plugin.js";
import { type ProxiedMinio, startProxiedMinio } from "../support/proxied-minio.js";

let bed: ProxiedMinio;
let minio: MinioServer;
let proxy: FaultProxy;
let plugin: PluginProcess;
let work: string;
const BUCKET = "sse";

beforeAll(async () => {
  bed = await startProxiedMinio("sse", BUCKET);
  ({ minio, proxy, plugin, work } = bed);
}, 120_000);

afterAll(async () => {
  expect(await bed?.stop()).toBe(0);
});

const cfg = (enc: string) =>
  `endpoint: ${proxy.endpoint}\nbucket: ${BUCKET}\ninsecure: true\ntuning: {partSizeMiB: 5, multipartThresholdMiB: 5}\nencryptionOptions:\n${enc}`;
const SSE_HEADERS = [
  "x-amz-server-side-encryption",
  "x-amz-server-side-encryption-aws-kms-key-id",
  "x-amz-server-side-encryption-customer-algorithm",
];

it.each([
  ["SSE-S3, one PUT", "  enableEncryption: true\n", 64 * 1024],
  ["SSE-S3, multipart", "  enableEncryption: true\n", 12 * 1024 * 1024],
  ["SSE-KMS, one PUT", "  enableEncryption: true\n  kmsKeyId: test-key\n", 64 * 1024],
  ["SSE-KMS, multipart", "  enableEncryption: true\n  kmsKeyId: test-key\n", 12 * 1024 * 1024],
])(
  "%s: confirmed by the store → saved encrypted; not confirmed → the Save fails and no object or upload is left",
  async (label, enc, size) => {
    const src = join(work, `${label.replace(/\W+/g, "-")}.bin`);
    writeFileSync(src, randomBytes(size));
    const key = `${label.replace(/\W+/g, "-")}.bin`;
    expect(await plugin.client.save(artifact(cfg(enc), `ok-${key}`), src)).toEqual({ success: true, error: "" });
    const s3 = adminClient(minio);
    expect(
      (await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: `ok-${key}` }))).ServerSideEncryption,
    ).toBeTruthy();
    tally({ suite: "compat: encryption not confirmed by the store", hostileTried: 1 });
    proxy.dropHeaders(SSE_HEADERS);
    try {
      const res = await plugin.client.save(artifact(cfg(enc), `ignored-${key}`), src);
      expect(res.success).toBe(false);
      expect(res.error).toContain(`s3://${BUCKET}/ignored-${key}`);
      expect(res.error).toMatch(/did not confirm SSE-(S3|KMS)/);
    } finally {
      proxy.dropHeaders();
    }
    await expect(s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: `ignored-${key}` }))).rejects.toMatchObject({
      name: "NotFound",
    });
    expect(await uploadsLeft(s3, BUCKET)).toEqual([]);
    tally({ suite: "compat: encryption not confirmed by the store", hostileRefused: 1 });
  },
);
