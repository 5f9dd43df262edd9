// The plugin's Prometheus metrics, scraped from a running plugin and read with
// Prometheus' own text-format parser (test/promparse): RPCs by method and outcome, their latency,
// bytes moved, S3 requests by operation and status, the buffer budget and the
// slot pools. No bucket, key or endpoint is ever a label.
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CreateBucketCommand } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type MinioServer, startMinio } from "../../scripts/lib/minio.mjs";
import { adminClient, rootKeysEnv } from "../support/minio-access.js";
import { type PluginProcess, artifact, startPlugin } from "../support/plugin.js";
import { prometheusParse } from "../support/prometheus.js";

let minio: MinioServer;
let plugin: PluginProcess;
let port: number;
const work = mkdtempSync(join(tmpdir(), "metrics-"));

beforeAll(async () => {
  minio = await startMinio();
  await adminClient(minio).send(new CreateBucketCommand({ Bucket: "metrics" }));
  // Port 0: the plugin binds one of the system's choosing and says which in its ready line.
  plugin = await startPlugin({ ...rootKeysEnv(minio), ARGO_S3_PLUGIN_METRICS_PORT: "0", LOG_LEVEL: "info" });
  port = (
    JSON.parse(
      plugin
        .output()
        .split("\n")
        .find((l) => l.includes('"msg":"ready"'))!,
    ) as { metricsPort: number }
  ).metricsPort;
  expect(port).toBeGreaterThan(0);
}, 600_000);

afterAll(async () => {
  await plugin?.stop();
  await minio?.stop();
  rmSync(work, { recursive: true, force: true });
});

async function scrape() {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(10_000) });
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
  return prometheusParse(await res.text());
}

describe("metrics (ARGO_S3_PLUGIN_METRICS_PORT)", () => {
  it("counts what the RPCs did, as Prometheus reads it", async () => {
    const cfg = `endpoint: ${minio.endpoint}\ninsecure: true\nbucket: metrics\n`;
    const data = randomBytes(3 * 1024 * 1024 + 5);
    writeFileSync(join(work, "in.bin"), data);
    expect((await plugin.client.save(artifact(cfg, "m/a.bin"), join(work, "in.bin"))).success).toBe(true);
    expect((await plugin.client.load(artifact(cfg, "m/a.bin"), join(work, "out.bin"))).success).toBe(true);
    expect((await plugin.client.load(artifact(cfg, "m/missing"), join(work, "none"))).success).toBe(false);
    const families = await scrape();
    const family = (name: string) => {
      const f = families.find((x) => x.name === `argo_s3_plugin_${name}`);
      expect(f, name).toBeDefined();
      return f!;
    };
    const value = (name: string, labels: Record<string, string>) =>
      family(name).metrics.find((m) => Object.entries(labels).every(([k, v]) => m.labels[k] === v))?.value ?? NaN;
    expect(family("rpcs_total").type).toBe("COUNTER");
    expect(value("rpcs_total", { method: "Save", outcome: "ok" })).toBe(1);
    expect(value("rpcs_total", { method: "Load", outcome: "ok" })).toBe(1);
    expect(value("rpcs_total", { method: "Load", outcome: "not-found" })).toBe(1);
    expect(value("transferred_bytes_total", { method: "Load" })).toBe(data.length);
    expect(value("transferred_bytes_total", { method: "Save" })).toBe(data.length);
    const latency = family("rpc_duration_seconds");
    expect(latency.type).toBe("HISTOGRAM");
    const loads = latency.metrics.find((m) => m.labels["method"] === "Load")!;
    expect(loads.count).toBe(2);
    expect(loads.buckets!["+Inf"]).toBe(2);
    expect(value("s3_requests_total", { operation: "PutObject", status: "200" })).toBeGreaterThanOrEqual(1);
    expect(value("s3_requests_total", { operation: "HeadObject", status: "404" })).toBeGreaterThanOrEqual(1);
    expect(value("buffer_bytes_in_use", {})).toBe(0);
    expect(value("buffer_bytes_limit", {})).toBeGreaterThan(0);
    expect(value("buffer_waiting", {})).toBe(0);
    expect(value("slots_in_use", { pool: "transfers" })).toBe(0);
    expect(value("slots_limit", { pool: "transfers" })).toBeGreaterThan(0);
    expect(value("slots_waiting", { pool: "listings" })).toBe(0);
    expect(family("process_resident_memory_bytes").type).toBe("GAUGE");
    // Bounded cardinality: nothing an author chose is a label.
    const labelValues = families.flatMap((f) => f.metrics.flatMap((m) => Object.values(m.labels)));
    for (const v of labelValues) expect(v).not.toMatch(/metrics|m\/a\.bin|missing|127\.0\.0\.1/);
  });

  it("answers 404 off /metrics, and a port already taken stops the plugin with the variable named", async () => {
    expect((await fetch(`http://127.0.0.1:${port}/other`)).status).toBe(404);
    await expect(startPlugin({ ARGO_S3_PLUGIN_METRICS_PORT: String(port) })).rejects.toThrow(
      /cannot serve metrics on ARGO_S3_PLUGIN_METRICS_PORT/,
    );
  });
});
