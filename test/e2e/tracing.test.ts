// OpenTelemetry traces, received by a real OTLP receiver on loopback
// (test/otlpreceiver, built on OpenTelemetry's own protocol definitions):
// - through Argo's own v4.0.5 plugin client (test/argo-client), with the
//   TRACEPARENT that Argo 4.1's controller puts on every container of a
//   workflow pod: the plugin's RPC spans are children of that span, its S3
//   spans children of the RPC spans, exported over OTLP/HTTP protobuf when
//   the plugin stops;
// - a caller's W3C `traceparent` in the gRPC metadata wins over the pod's,
//   exported over OTLP/gRPC;
// - without OTEL_* the plugin loads none of it (the ready line says so) and
//   exports nothing.
import { execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { promisify } from "node:util";
import { Metadata } from "@grpc/grpc-js";
import { CreateBucketCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type MinioServer, startMinio } from "../../scripts/lib/minio.mjs";
import { goBuild } from "../../scripts/lib/tools.mjs";
import { adminClient, rootKeysEnv } from "../support/minio-access.js";
import { ROOT, artifact, startPlugin } from "../support/plugin.js";
import { until, within } from "../support/bounded.js";
import { type OtlpSpan, listeningOf, spansOf } from "../support/otlp.js";

const run = promisify(execFile);

/** A running OTLP receiver: its addresses and every span it has received so far. */
interface Receiver {
  grpc: string;
  http: string;
  spans: () => OtlpSpan[];
  stop: () => void;
}

async function startReceiver(): Promise<Receiver> {
  const bin = await goBuild("test/otlpreceiver");
  const proc = spawn(bin, [], { stdio: ["pipe", "pipe", "inherit"] });
  const spans: OtlpSpan[] = [];
  const lines = createInterface({ input: proc.stdout! });
  const listening = new Promise<{ grpc: string; http: string }>((resolve, reject) => {
    proc.once("exit", (code) => reject(new Error(`the OTLP receiver exited (${code})`)));
    lines.on("line", (line) => {
      const addr = listeningOf(line);
      if (addr) return resolve(addr);
      spans.push(...spansOf(line));
    });
  });
  const addr = await within(listening, 60_000, "the OTLP receiver listening");
  return { ...addr, spans: () => [...spans], stop: () => proc.kill("SIGKILL") };
}

let minio: MinioServer;
let receiver: Receiver;
let work: string;
let cfgFile: string;
const cfg = () => `endpoint: ${minio.endpoint}\nbucket: traces\ninsecure: true\n`;
const POD_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";
const POD_SPAN = "00f067aa0ba902b7";

/** The plugin as in a workflow pod of Argo 4.1, whose controller sets TRACEPARENT on every container; `env` adds to that. */
const podPlugin = (env: Record<string, string>) =>
  startPlugin({ ...rootKeysEnv(minio), TRACEPARENT: `00-${POD_TRACE}-${POD_SPAN}-01`, ...env });

beforeAll(async () => {
  [minio, receiver] = await Promise.all([startMinio(), startReceiver()]);
  await adminClient(minio).send(new CreateBucketCommand({ Bucket: "traces" }));
  await adminClient(minio).send(
    new PutObjectCommand({ Bucket: "traces", Key: "in/small.txt", Body: "hello traces\n" }),
  );
  work = mkdtempSync(join(tmpdir(), "tracing-"));
  chmodSync(work, 0o755);
  cfgFile = join(work, "config.yaml");
  writeFileSync(cfgFile, cfg());
}, 600_000);

afterAll(async () => {
  receiver?.stop();
  await minio?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe("traces", () => {
  it("Argo's plugin client: RPC spans continue the pod's TRACEPARENT, S3 spans sit under them; OTLP/HTTP protobuf, flushed at stop", async () => {
    const clientBin = join(work, "argo-client");
    await run("go", ["build", "-o", clientBin, "."], {
      cwd: join(ROOT, "test", "argo-client"),
      env: { ...process.env, GOFLAGS: "-buildvcs=false" },
      maxBuffer: 32 * 1024 * 1024,
    });
    const plugin = await podPlugin({
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://${receiver.http}`,
      OTEL_EXPORTER_OTLP_PROTOCOL: "http/protobuf",
      OTEL_SERVICE_NAME: "s3-plugin-under-test",
      ARGO_WORKFLOW_NAME: "wf-traces",
      ARGO_POD_NAME: "wf-traces-1234",
    });
    expect(plugin.output()).toContain('"tracing":"otlp http/protobuf"');
    const data = randomBytes(3 * 1024 * 1024 + 7);
    writeFileSync(join(work, "out.bin"), data);
    const argo = (mode: string, key: string, file: string) =>
      run(clientBin, ["-socket", plugin.socket, "-config-file", cfgFile, "-bench", mode, "-key", key, "-file", file], {
        timeout: 120_000,
        maxBuffer: 16 * 1024 * 1024,
      });
    await argo("save", "argo/out.bin", join(work, "out.bin"));
    await argo("load", "argo/out.bin", join(work, "back.bin"));
    expect(readFileSync(join(work, "back.bin")).equals(data)).toBe(true);
    // The batch goes out when the plugin stops (SIGTERM, as a pod ends): nothing is lost.
    expect(await plugin.stop()).toBe(0);
    await until(
      "the Load span at the receiver",
      () => receiver.spans().some((s) => s.name.endsWith("/Load") && s.traceId === POD_TRACE),
      20_000,
    );
    const mine = receiver.spans().filter((s) => s.traceId === POD_TRACE);
    const rpcs = mine.filter((s) => s.kind === "SPAN_KIND_SERVER");
    expect(rpcs.map((s) => s.name).sort()).toEqual(["artifact.ArtifactService/Load", "artifact.ArtifactService/Save"]);
    for (const r of rpcs) {
      expect(r.parentSpanId, `${r.name}'s parent is the pod's span`).toBe(POD_SPAN);
      expect(r.resource["service.name"]).toBe("s3-plugin-under-test");
      expect(r.attributes).toMatchObject({
        "rpc.system": "grpc",
        "rpc.service": "artifact.ArtifactService",
        "aws.s3.bucket": "traces",
        "aws.s3.key": "argo/out.bin",
        "rpc.grpc.status_code": 0,
        "argo_s3.outcome": "ok",
      });
      expect(r.attributes["argo_s3.bytes"]).toBe(data.length);
      expect(r.status.code ?? "STATUS_CODE_UNSET").toBe("STATUS_CODE_UNSET");
    }
    const save = rpcs.find((s) => s.name.endsWith("/Save"))!;
    const load = rpcs.find((s) => s.name.endsWith("/Load"))!;
    const under = (p: OtlpSpan) =>
      mine.filter((s) => s.parentSpanId === p.spanId && s.kind === "SPAN_KIND_CLIENT").map((s) => s.name);
    // 3 MiB over a 1 MiB threshold? The default threshold keeps it one PUT; the load is a GET (after a HEAD).
    expect(under(save).length, `S3 spans under Save: ${under(save).join(", ")}`).toBeGreaterThan(0);
    expect(under(save).some((n) => /^S3\.(PutObject|UploadPart|CompleteMultipartUpload)$/.test(n))).toBe(true);
    expect(under(load)).toContain("S3.GetObject");
    const get = mine.find((s) => s.name === "S3.GetObject" && s.parentSpanId === load.spanId)!;
    expect(get.attributes).toMatchObject({
      "rpc.system": "aws-api",
      "rpc.service": "S3",
      "rpc.method": "GetObject",
      "aws.s3.bucket": "traces",
      "aws.s3.key": "argo/out.bin",
    });
    expect(String(get.attributes["server.address"])).toContain(
      minio.endpoint.replace(/^https?:\/\//, "").split(":")[0]!,
    );
    // No credential in any attribute.
    const text = JSON.stringify(mine);
    expect(text).not.toContain(minio.secretKey);
  }, 240_000);

  it("a caller's W3C traceparent in the gRPC metadata wins over the pod's; a failed Load is an error span; OTLP/gRPC", async () => {
    const plugin = await podPlugin({
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://${receiver.grpc}`,
      OTEL_EXPORTER_OTLP_PROTOCOL: "grpc",
    });
    expect(plugin.output()).toContain('"tracing":"otlp grpc"');
    const callerTrace = randomBytes(16).toString("hex");
    const callerSpan = randomBytes(8).toString("hex");
    const load = (key: string, dest: string) =>
      new Promise<{ success: boolean; error: string }>((resolve, reject) => {
        const md = new Metadata();
        md.set("traceparent", `00-${callerTrace}-${callerSpan}-01`);
        const raw = plugin.client.raw as unknown as Record<
          string,
          (
            req: unknown,
            md: Metadata,
            opts: object,
            cb: (e: Error | null, r: { success: boolean; error: string }) => void,
          ) => void
        >;
        raw["Load"]!.call(
          plugin.client.raw,
          { inputArtifact: artifact(cfg(), key), path: dest },
          md,
          { deadline: Date.now() + 30_000 },
          (e, r) => (e ? reject(e) : resolve(r)),
        );
      });
    expect(await load("in/small.txt", join(work, "small.txt"))).toEqual({ success: true, error: "" });
    expect(readFileSync(join(work, "small.txt"), "utf8")).toBe("hello traces\n");
    const missing = await load("in/missing.txt", join(work, "missing.txt"));
    expect(missing.success).toBe(false);
    // Any author's key: a span keeps at most 1,024 characters of it (and of the message naming it).
    // Longer than S3 allows, so refused at once (INVALID_ARGUMENT), with a span all the same.
    const longKey = `in/${"k".repeat(5000)}`;
    await expect(load(longKey, join(work, "long.txt"))).rejects.toThrow(/S3 object keys are at most 1024 bytes/);
    expect(await plugin.stop()).toBe(0);
    await until(
      "the three Load spans at the receiver",
      () => receiver.spans().filter((s) => s.traceId === callerTrace && s.kind === "SPAN_KIND_SERVER").length === 3,
      20_000,
    );
    const mine = receiver.spans().filter((s) => s.traceId === callerTrace);
    const servers = mine.filter((s) => s.kind === "SPAN_KIND_SERVER");
    const long = servers.find((s) => String(s.attributes["aws.s3.key"]).startsWith("in/kkk"))!;
    expect(String(long.attributes["aws.s3.key"])).toBe(longKey.slice(0, 1024));
    expect(long.status.code).toBe("STATUS_CODE_ERROR");
    expect(long.status.message!.length).toBeLessThanOrEqual(1024);
    for (const s of mine)
      for (const v of Object.values(s.attributes)) expect(String(v).length).toBeLessThanOrEqual(1024);
    const ok = servers.find((s) => s.attributes["aws.s3.key"] === "in/small.txt")!;
    const failed = servers.find((s) => s.attributes["aws.s3.key"] === "in/missing.txt")!;
    expect(ok.parentSpanId).toBe(callerSpan);
    expect(ok.resource["service.name"]).toBe("argo-s3-artifact-plugin");
    expect(failed.status.code).toBe("STATUS_CODE_ERROR");
    expect(failed.status.message).toBe(missing.error);
    expect(failed.attributes["argo_s3.outcome"]).not.toBe("ok");
    // The pod's trace got none of these.
    expect(
      receiver.spans().filter((s) => s.traceId === POD_TRACE && s.attributes["aws.s3.key"] === "in/missing.txt"),
    ).toEqual([]);
  }, 120_000);

  it("in Argo's init container (killed without a signal once its Loads are answered) a Load's spans are sent before its reply", async () => {
    // Only the endpoint, as Argo's docs have operators set it: gRPC, Argo's default and the plugin's.
    const plugin = await podPlugin({
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://${receiver.grpc}`,
      ARGO_CONTAINER_NAME: "init-artifact-s3",
    });
    const key = `in/init-${Date.now()}.txt`;
    await adminClient(minio).send(
      new PutObjectCommand({ Bucket: "traces", Key: key, Body: "for the init container\n" }),
    );
    expect(await plugin.client.load(artifact(cfg(), key), join(work, "init.txt"))).toEqual({
      success: true,
      error: "",
    });
    // As the container ends: SIGKILL, no flush at shutdown.
    await plugin.stop("SIGKILL");
    const mine = receiver.spans().filter((s) => s.traceId === POD_TRACE && s.attributes["aws.s3.key"] === key);
    expect(mine.map((s) => s.name).sort()).toEqual(
      expect.arrayContaining(["S3.GetObject", "artifact.ArtifactService/Load"]),
    );
  }, 60_000);

  it("off without OTEL_*: no tracing in the ready line, nothing exported", async () => {
    const before = receiver.spans().length;
    const plugin = await podPlugin({});
    expect(plugin.output()).not.toContain('"tracing"');
    expect(await plugin.client.load(artifact(cfg(), "in/small.txt"), join(work, "small-off.txt"))).toEqual({
      success: true,
      error: "",
    });
    expect(await plugin.stop()).toBe(0);
    await new Promise((r) => setTimeout(r, 500));
    expect(receiver.spans().length).toBe(before);
  }, 60_000);
});
