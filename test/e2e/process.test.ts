// The process contract Argo relies on: one argument (the socket path), a
// stale socket replaced, a ready line, restrictive socket permissions, and
// SIGTERM → in-flight RPCs finish within the grace period (or are cancelled
// and cleaned up) → exit 0.
import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CreateBucketCommand, HeadObjectCommand, ListMultipartUploadsCommand, type S3Client } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type MinioServer, startMinio } from "../../scripts/lib/minio.mjs";
import { scanForSecrets, tally } from "../support/ledger.js";
import { adminClient, objectSha, rootKeysEnv } from "../support/minio-access.js";
import { ROOT, artifact, startPlugin } from "../support/plugin.js";
import { exitOf } from "../support/bounded.js";

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

function runMain(
  args: readonly string[],
  env: Record<string, string> = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [join(ROOT, "dist", "main.cjs"), ...args],
      { timeout: 10_000, env: { ...process.env, ...env } },
      (err, stdout, stderr) => {
        resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stdout, stderr });
      },
    );
  });
}

describe("command line", () => {
  it("--version on both commands prints package.json's version, exit 0", async () => {
    const version = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string }).version;
    const plugin = await runMain(["--version"]);
    expect(plugin).toMatchObject({ code: 0, stdout: `argo-s3-artifact-plugin ${version}\n` });
    const cli = await new Promise<{ code: number | null; stdout: string }>((resolve) =>
      execFile(process.execPath, [join(ROOT, "dist", "bin", "cli.js"), "--version"], (err, stdout) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout }),
      ),
    );
    expect(cli).toEqual({ code: 0, stdout: `argo-s3-artifact ${version}\n` });
  });

  it("logs as Argo does: level names, RFC 3339 times, the workflow pod's fields, the version in the ready line; a failed RPC at ERROR naming bucket and endpoint; nothing but JSON lines", async () => {
    const version = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string }).version;
    const plugin = await startPlugin({
      LOG_LEVEL: "info",
      ARGO_WORKFLOW_NAME: "wf-1",
      ARGO_POD_NAME: "wf-1-produce-123",
      ARGO_NODE_ID: "wf-1-123",
      ARGO_CONTAINER_NAME: "artifact-plugin-s3",
      AWS_ACCESS_KEY_ID: "x",
      AWS_SECRET_ACCESS_KEY: "y",
      AWS_EC2_METADATA_DISABLED: "true",
    });
    // A store that is not there: the SDK client is built (its warnings, if any, must come out as JSON too), the RPC fails.
    const r = await plugin.client.load(
      artifact("endpoint: 127.0.0.1:9\ninsecure: true\nbucket: nowhere\ntuning: {maxAttempts: 1}\n", "k"),
      join(tmpdir(), `never-${process.pid}`),
    );
    expect(r.success).toBe(false);
    expect(await plugin.stop()).toBe(0);
    const lines = plugin
      .output()
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    for (const l of lines) {
      expect(["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"]).toContain(l["level"]);
      expect(String(l["time"])).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      expect(l).toMatchObject({
        workflow: "wf-1",
        pod: "wf-1-produce-123",
        nodeId: "wf-1-123",
        container: "artifact-plugin-s3",
      });
    }
    expect(lines.find((l) => l["msg"] === "ready")).toMatchObject({ level: "INFO", version });
    expect(lines.find((l) => l["msg"] === "rpc")).toMatchObject({
      level: "ERROR",
      method: "Load",
      bucket: "nowhere",
      key: "k",
      endpoint: "http://127.0.0.1:9",
      outcome: "storage",
    });
  });

  it("no argument, or a flag where the socket path belongs: usage on stderr, exit 2; --help: usage on stdout, exit 0", async () => {
    for (const args of [[], ["--loglevel", "debug"]]) {
      const { code, stderr } = await runMain(args);
      expect(code).toBe(2);
      expect(stderr).toContain("usage: argo-s3-artifact-plugin <socket-path>");
    }
    for (const flag of ["--help", "-h"]) {
      const { code, stdout } = await runMain([flag]);
      expect(code).toBe(0);
      expect(stdout).toContain("usage: argo-s3-artifact-plugin <socket-path>");
    }
  });

  it("accepts the executor's args Argo appends after the socket path: --loglevel sets the level, the rest is ignored with one warning", async () => {
    const dir = mkdtempSync(join(tmpdir(), "proc-"));
    const plugin = await startPlugin({ LOG_LEVEL: "" }, dir, ["--loglevel", "warn", "--gloglevel", "6"]);
    expect(await plugin.client.getCapabilities()).toEqual({ supportsSaveStream: true });
    expect(await plugin.stop()).toBe(0);
    const lines = plugin
      .output()
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { level: string; msg: string; ignoredArgs?: string[] });
    expect(lines.filter((l) => l.ignoredArgs)).toEqual([
      expect.objectContaining({ ignoredArgs: ["--gloglevel", "6"] }),
    ]);
    expect(lines.every((l) => ["WARN", "ERROR", "FATAL"].includes(l.level))).toBe(true); // warn and up only: no ready/info lines
    rmSync(dir, { recursive: true, force: true });
  });

  it("an unknown log level or socket mode: one line naming it, exit 2 (no stack trace)", async () => {
    for (const [env, args, name] of [
      [{ LOG_LEVEL: "verbose" }, [], "LOG_LEVEL"],
      [{}, ["--loglevel", "loud"], "--loglevel"],
      [{ ARGO_S3_PLUGIN_SOCKET_MODE: "777x" }, [], "ARGO_S3_PLUGIN_SOCKET_MODE"],
      [{ ARGO_S3_PLUGIN_SOCKET_MODE: "8" }, [], "ARGO_S3_PLUGIN_SOCKET_MODE"],
      // Allow-list entries are Kubernetes names ("name" or "name/key"), checked at start.
      [
        { ARGO_S3_PLUGIN_ALLOWED_SECRETS: "minio-keys,Minio_Keys" },
        [],
        'ARGO_S3_PLUGIN_ALLOWED_SECRETS: entry "Minio_Keys"',
      ],
      [
        { ARGO_S3_PLUGIN_ALLOWED_SECRETS: "minio-keys/a/b" },
        [],
        'ARGO_S3_PLUGIN_ALLOWED_SECRETS: entry "minio-keys/a/b"',
      ],
      [
        { ARGO_S3_PLUGIN_ALLOWED_SECRETS: "minio-keys/a%2Fb" },
        [],
        'ARGO_S3_PLUGIN_ALLOWED_SECRETS: entry "minio-keys/a%2Fb" key',
      ],
    ] as const) {
      const { code, stderr } = await runMain([join(tmpdir(), "never.sock"), ...args], env);
      expect(code, name).toBe(2);
      expect(stderr).toContain(name);
      expect(stderr).not.toMatch(/\n\s+at /);
    }
  });

  it("refuses to take over a socket a live plugin serves; the first keeps serving", async () => {
    const dir = mkdtempSync(join(tmpdir(), "proc-"));
    const first = await startPlugin({}, dir);
    const { code, stdout } = await runMain([first.socket]);
    expect(code).toBe(1);
    expect(stdout).toContain("another process is serving on this socket");
    expect(await first.client.getCapabilities()).toEqual({ supportsSaveStream: true });
    expect(await first.stop()).toBe(0);
    rmSync(dir, { recursive: true, force: true });
  });

  it("socket mode follows its folder: 0666 in a folder any uid may write (Argo's emptyDir), 0660 in one the plugin created", async () => {
    const dir = mkdtempSync(join(tmpdir(), "proc-"));
    const shared = join(dir, "shared");
    mkdirSync(shared);
    chmodSync(shared, 0o777);
    const inShared = await startPlugin({}, undefined, [], join(shared, "socket"));
    expect(statSync(inShared.socket).mode & 0o777).toBe(0o666);
    expect(await inShared.stop()).toBe(0);
    const fresh = await startPlugin({}, dir);
    expect(statSync(fresh.socket).mode & 0o777).toBe(0o660);
    expect(statSync(join(dir, "artifact-plugins", "s3")).mode & 0o007).toBe(0);
    expect(await fresh.stop()).toBe(0);
    const explicit = await startPlugin({ ARGO_S3_PLUGIN_SOCKET_MODE: "600" }, undefined, [], join(shared, "socket"));
    expect(statSync(explicit.socket).mode & 0o777).toBe(0o600);
    expect(await explicit.stop()).toBe(0);
    rmSync(dir, { recursive: true, force: true });
  });

  it("a malformed setting in the environment: its name and value on stderr, exit 2", async () => {
    for (const [name, value] of [
      ["ARGO_S3_PLUGIN_LATE_UPLOAD_WATCH_SECONDS", "soon"],
      ["ARGO_S3_PLUGIN_BUFFER_MIB", "lots"],
      ["ARGO_S3_PLUGIN_GRACE_SECONDS", "-1"],
      ["ARGO_S3_PLUGIN_STREAM_IDLE_SECONDS", "0"],
    ]) {
      const { code, stderr } = await runMain([join(tmpdir(), "never.sock")], { [name!]: value! });
      expect(code, name).toBe(2);
      expect(stderr).toContain(`${name}: "${value}"`);
    }
  });

  it("refuses to replace a path that is not a socket", async () => {
    const dir = mkdtempSync(join(tmpdir(), "proc-"));
    const path = join(dir, "socket");
    writeFileSync(path, "precious");
    const { code } = await runMain([path]);
    expect(code).toBe(1);
    expect(statSync(path).isFile()).toBe(true);
    rmSync(dir, { recursive: true });
  });

  it("replaces a stale socket left by a killed process; socket is owner+group only; SIGINT exits 0", async () => {
    const dir = mkdtempSync(join(tmpdir(), "proc-"));
    const first = await startPlugin({}, dir);
    first.proc.kill("SIGKILL");
    await exitOf(first.proc, 10_000, "the killed plugin's exit");
    expect(statSync(first.socket).isSocket()).toBe(true); // left behind
    const second = await startPlugin({}, dir);
    expect(statSync(second.socket).mode & 0o777).toBe(0o660);
    expect(await second.client.getCapabilities()).toEqual({ supportsSaveStream: true });
    expect(await second.stop("SIGINT")).toBe(0);
    rmSync(dir, { recursive: true, force: true });
  });
});

describe("graceful shutdown", () => {
  let minio: MinioServer;
  let s3: S3Client;
  beforeAll(async () => {
    minio = await startMinio();
    s3 = adminClient(minio);
    await s3.send(new CreateBucketCommand({ Bucket: "shutdown" }));
  });
  afterAll(async () => {
    await minio?.stop();
  });
  const cfg = () => `endpoint: ${minio.endpoint}\nbucket: shutdown\ninsecure: true\ntuning: {partSizeMiB: 5}\n`;
  const env = () => rootKeysEnv(minio);

  it("an RPC in flight at SIGTERM completes within the grace period, then exit 0", async () => {
    const plugin = await startPlugin({ ...env(), ARGO_S3_PLUGIN_GRACE_SECONDS: "20" });
    const data = randomBytes(12 * 1024 * 1024);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    async function* slow() {
      yield data.subarray(0, 6 * 1024 * 1024);
      await gate; // SIGTERM arrives while the client is still sending
      yield data.subarray(6 * 1024 * 1024);
    }
    const pending = plugin.client.saveStream(artifact(cfg(), "graceful.bin"), slow());
    await new Promise((r) => setTimeout(r, 300));
    tally({ suite: "SIGTERM to the plugin mid-transfer", faultsInjected: 1 });
    plugin.proc.kill("SIGTERM");
    await new Promise((r) => setTimeout(r, 300));
    release();
    expect(await pending).toEqual({ success: true, error: "" });
    expect(await plugin.stop()).toBe(0);
    const stored = await objectSha(s3, "shutdown", "graceful.bin");
    tally({
      suite: "SIGTERM to the plugin mid-transfer",
      bytesChecked: data.length,
      bytesLost: stored === sha(data) ? 0 : data.length,
    });
    expect(stored).toBe(sha(data));
    expect(scanForSecrets("SIGTERM", [plugin.output()], { "MinIO root secret key": minio.secretKey })).toEqual([]);
    tally({ suite: "SIGTERM to the plugin mid-transfer", faultsSurvived: 1 });
  });

  it("an RPC still running when the grace period ends is cancelled, its upload aborted, exit 0", async () => {
    const plugin = await startPlugin({ ...env(), ARGO_S3_PLUGIN_GRACE_SECONDS: "1" });
    let stop = false;
    async function* endless() {
      while (!stop) {
        yield randomBytes(2 * 1024 * 1024);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    const pending = plugin.client.saveStream(artifact(cfg(), "cut-off.bin"), endless()).then(
      (r) => r,
      (e: Error) => e,
    );
    await new Promise((r) => setTimeout(r, 800));
    const started = Date.now();
    tally({ suite: "SIGTERM to the plugin mid-transfer", faultsInjected: 1 });
    plugin.proc.kill("SIGTERM");
    expect(await plugin.stop()).toBe(0);
    expect(Date.now() - started).toBeLessThan(15_000);
    stop = true;
    const outcome = await pending;
    expect(outcome instanceof Error || (outcome as { success: boolean }).success === false).toBe(true);
    const uploads = await s3.send(new ListMultipartUploadsCommand({ Bucket: "shutdown" }));
    tally({ suite: "SIGTERM to the plugin mid-transfer", orphanUploads: (uploads.Uploads ?? []).length });
    if ((uploads.Uploads ?? []).length > 0)
      process.stdout.write(`an upload was left behind; the plugin said:\n${plugin.output()}\n`);
    expect(uploads.Uploads ?? []).toEqual([]);
    await expect(s3.send(new HeadObjectCommand({ Bucket: "shutdown", Key: "cut-off.bin" }))).rejects.toMatchObject({
      name: "NotFound",
    });
    expect(scanForSecrets("SIGTERM", [plugin.output()], { "MinIO root secret key": minio.secretKey })).toEqual([]);
    tally({ suite: "SIGTERM to the plugin mid-transfer", faultsSurvived: 1 });
  });
});
