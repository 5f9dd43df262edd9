// createBucketIfNotPresent is checked once per configuration and shared by
// the Saves that arrive meanwhile. One caller cancelling must not fail the
// others: the shared check runs on no caller's cancellation. The fault proxy
// holds the store's answer to HeadBucket back so the first caller's deadline
// passes while the check is in flight.
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { Metadata, status } from "@grpc/grpc-js";
import { HeadBucketCommand } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type MinioServer } from "../../scripts/lib/minio.mjs";
import { type FaultProxy } from "../support/fault-proxy.js";
import { adminClient, objectSha } from "../support/minio-access.js";
import { type PluginProcess, artifact } from "../support/plugin.js";
import { type ProxiedMinio, startProxiedMinio } from "../support/proxied-minio.js";

let bed: ProxiedMinio;
let minio: MinioServer;
let proxy: FaultProxy;
let plugin: PluginProcess;
let work: string;

beforeAll(async () => {
  bed = await startProxiedMinio("ensure-bucket");
  ({ minio, proxy, plugin, work } = bed);
}, 120_000);

afterAll(async () => {
  expect(await bed?.stop()).toBe(0);
});

it("a Save cancelled during the shared bucket check does not fail another Save waiting on the same check", async () => {
  const cfg = `endpoint: ${proxy.endpoint}\nbucket: made-on-demand\ninsecure: true\ncreateBucketIfNotPresent: {}\n`;
  const file = join(work, "f.bin");
  const data = randomBytes(64 * 1024);
  writeFileSync(file, data);
  // HEAD /made-on-demand: its answer is held back 1.5 s.
  proxy.inject(1, "slow-answer", (req) => req.method === "HEAD" && /^\/made-on-demand\/?(\?|$)/.test(req.url ?? ""));
  const raw = plugin.client.raw as unknown as Record<string, (...a: unknown[]) => unknown>;
  const first = new Promise<number | undefined>((resolve) =>
    raw["Save"]!.call(
      plugin.client.raw,
      { outputArtifact: artifact(cfg, "first.bin"), path: file },
      new Metadata(),
      { deadline: Date.now() + 400 },
      (err: { code?: number } | null) => resolve(err?.code),
    ),
  );
  await new Promise((r) => setTimeout(r, 100));
  const second = plugin.client.save(artifact(cfg, "second.bin"), file);
  expect(await first).toBe(status.DEADLINE_EXCEEDED);
  expect(await second).toEqual({ success: true, error: "" });
  const s3 = adminClient(minio);
  await s3.send(new HeadBucketCommand({ Bucket: "made-on-demand" }));
  expect(await objectSha(s3, "made-on-demand", "second.bin")).toBe(
    (await import("node:crypto")).createHash("sha256").update(data).digest("hex"),
  );
});

it("LOG_LEVEL=debug logs one line per S3 request, naming operation, bucket, key and status, and no credential", () => {
  const lines = plugin
    .output()
    .split("\n")
    .filter((l) => l.includes('"msg":"s3 request"'))
    .map((l) => JSON.parse(l) as { s3: string; bucket: string; key?: string; status?: number });
  expect(lines).toEqual(
    expect.arrayContaining([expect.objectContaining({ s3: "HeadBucket", bucket: "made-on-demand" })]),
  );
  expect(lines).toEqual(
    expect.arrayContaining([
      expect.objectContaining({ s3: "PutObject", bucket: "made-on-demand", key: "second.bin", status: 200 }),
    ]),
  );
  expect(plugin.output()).not.toContain(minio.secretKey);
});
