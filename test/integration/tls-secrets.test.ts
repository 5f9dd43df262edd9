// TLS with a self-signed MinIO trusted through caSecret, static keys and an
// SSE-C key from Kubernetes secrets (served by a stand-in of the API server),
// and a scan of everything the plugin logged for any secret value.
import { pbkdf2Sync, randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { Agent } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GetObjectCommand, HeadObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { NodeHttpHandler } from "@smithy/node-http-handler";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { scanForSecrets } from "../support/ledger.js";
import { type MinioServer, startMinio } from "../../scripts/lib/minio.mjs";
import { type KubeApi, startKubeApi } from "../support/kube-api.js";
import { type PluginProcess, artifact, startPlugin } from "../support/plugin.js";

let minio: MinioServer;
let kube: KubeApi;
let plugin: PluginProcess;
let work: string;
let direct: S3Client;
const BUCKET = "secure";
const SSE_PASSWORD = `sse-c-password-${randomBytes(8).toString("hex")}`;

const secretsConfig = (extra = "") =>
  [
    `endpoint: ${minio.endpoint}`,
    `bucket: ${BUCKET}`,
    "accessKeySecret: {name: s3-creds, key: accesskey}",
    "secretKeySecret: {name: s3-creds, key: secretkey}",
    "caSecret: {name: minio-ca, key: ca.crt}",
    "createBucketIfNotPresent: {}",
    extra,
  ].join("\n");
const sseConfig = () =>
  secretsConfig(
    "encryptionOptions:\n  enableEncryption: true\n  serverSideCustomerKeySecret: {name: sse, key: password}\ntuning: {partSizeMiB: 5, multipartThresholdMiB: 5}\n",
  );

/** The per-object key Argo's built-in driver (minio-go DefaultPBKDF) derives. */
function ssecKey(key: string): string {
  return pbkdf2Sync(SSE_PASSWORD, BUCKET + key, 32768, 32, "sha256").toString("base64");
}

beforeAll(async () => {
  minio = await startMinio({ tls: true });
  kube = await startKubeApi();
  kube.setSecret("s3-creds", { accesskey: `${minio.accessKey}\n`, secretkey: `${minio.secretKey}\n` });
  kube.setSecret("sse", { password: SSE_PASSWORD });
  kube.setSecret("minio-ca", { "ca.crt": minio.caPem! });
  plugin = await startPlugin({ ...kube.env, AWS_EC2_METADATA_DISABLED: "true" });
  work = mkdtempSync(join(tmpdir(), "tls-"));
  direct = new S3Client({
    endpoint: minio.url,
    region: "us-east-1",
    forcePathStyle: true,
    credentials: { accessKeyId: minio.accessKey, secretAccessKey: minio.secretKey },
    requestHandler: new NodeHttpHandler({ httpsAgent: new Agent({ ca: minio.caPem }) }),
  });
});

afterAll(async () => {
  expect(await plugin?.stop()).toBe(0);
  const logs = plugin.output();
  // The whole run's output, searched for every secret value that crossed the plugin.
  const secrets = {
    "secret key from a Kubernetes secret": minio.secretKey,
    "SSE-C password": SSE_PASSWORD,
    "service account token": kube.token,
    "SSE-C key (file)": ssecKey("sse/file.bin"),
    "SSE-C key (directory file)": ssecKey("sse/dir/a.txt"),
  };
  expect(scanForSecrets("TLS, Kubernetes secrets, SSE-C", [logs], secrets)).toEqual([]);
  expect(logs).toContain('"msg":"rpc"'); // the scan did look at real log lines
  await minio?.stop();
  await kube?.stop();
  rmSync(work, { recursive: true, force: true });
});

describe("TLS, keys from secrets, SSE-C", () => {
  it("saves and loads over TLS with keys and CA from Kubernetes secrets", async () => {
    const src = join(work, "plain.txt");
    writeFileSync(src, "over tls");
    expect(await plugin.client.save(artifact(secretsConfig(), "tls/plain.txt"), src)).toEqual({
      success: true,
      error: "",
    });
    const dest = join(work, "plain.out");
    expect(await plugin.client.load(artifact(secretsConfig(), "tls/plain.txt"), dest)).toEqual({
      success: true,
      error: "",
    });
    expect(readFileSync(dest, "utf8")).toBe("over tls");
    expect(kube.requests.some((r) => r.includes("/namespaces/argo/secrets/s3-creds"))).toBe(true);
  });

  it("without caSecret the self-signed certificate is refused with a clear error", async () => {
    const cfg = secretsConfig().replace("caSecret: {name: minio-ca, key: ca.crt}\n", "");
    const res = await plugin.client.isDirectory(artifact(cfg, "tls"));
    expect(res.error).toMatch(/certificate/i);
    expect(res.error).toContain(minio.endpoint);
  });

  it("SSE-C round trip: file (multipart), directory and stream, with Argo's per-object key derivation", async () => {
    const data = randomBytes(11 * 1024 * 1024 + 1);
    const src = join(work, "sse.bin");
    writeFileSync(src, data);
    expect(await plugin.client.save(artifact(sseConfig(), "sse/file.bin"), src)).toEqual({ success: true, error: "" });
    // Unreadable without the key …
    await expect(direct.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "sse/file.bin" }))).rejects.toBeTruthy();
    // … and readable with the key minio-go's DefaultPBKDF derives, so Argo's built-in driver can read it too.
    const got = await direct.send(
      new GetObjectCommand({
        Bucket: BUCKET,
        Key: "sse/file.bin",
        SSECustomerAlgorithm: "AES256",
        SSECustomerKey: ssecKey("sse/file.bin"),
      }),
    );
    expect(Buffer.from(await got.Body!.transformToByteArray()).equals(data)).toBe(true);

    const dest = join(work, "sse.out");
    expect(await plugin.client.load(artifact(sseConfig(), "sse/file.bin"), dest)).toEqual({ success: true, error: "" });
    expect(readFileSync(dest).equals(data)).toBe(true);
    const streamed = await plugin.client.openStream(artifact(sseConfig(), "sse/file.bin"));
    expect(streamed.data.equals(data)).toBe(true);

    const dir = join(work, "sse-dir");
    mkdirSync(join(dir, "sub"), { recursive: true });
    writeFileSync(join(dir, "a.txt"), "alpha");
    writeFileSync(join(dir, "sub", "b.txt"), "beta");
    expect(await plugin.client.save(artifact(sseConfig(), "sse/dir"), dir)).toEqual({ success: true, error: "" });
    const dirOut = join(work, "sse-dir.out");
    expect(await plugin.client.load(artifact(sseConfig(), "sse/dir"), dirOut)).toEqual({ success: true, error: "" });
    expect(readFileSync(join(dirOut, "a.txt"), "utf8")).toBe("alpha");
    expect(readFileSync(join(dirOut, "sub", "b.txt"), "utf8")).toBe("beta");

    const chunks = [randomBytes(2 * 1024 * 1024), randomBytes(2 * 1024 * 1024), randomBytes(3)];
    expect(await plugin.client.saveStream(artifact(sseConfig(), "sse/stream.bin"), chunks)).toEqual({
      success: true,
      error: "",
    });
    const back = await plugin.client.openStream(artifact(sseConfig(), "sse/stream.bin"));
    expect(back.data.equals(Buffer.concat(chunks))).toBe(true);
  });

  it("a missing secret or key is reported by name", async () => {
    const missingSecret = secretsConfig().replace(
      "{name: s3-creds, key: secretkey}",
      "{name: nope-creds, key: secretkey}",
    );
    const r1 = await plugin.client.listObjects(artifact(missingSecret, "tls"));
    expect(r1.error).toContain('"nope-creds"');
    expect(r1.error).toContain("not found");
    const missingKey = secretsConfig().replace("{name: s3-creds, key: secretkey}", "{name: s3-creds, key: nokey}");
    const r2 = await plugin.client.listObjects(artifact(missingKey, "tls"));
    expect(r2.error).toContain('"nokey"');
  });
});
