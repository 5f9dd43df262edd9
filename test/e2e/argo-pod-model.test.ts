// Argo's pod model, with Argo's own binaries: the plugin runs the way the
// controller starts a plugin container, `argoexec artifact-plugin-sidecar --
// <entrypoint> <socket> <executor args>` (argoexec sets umask 0 first), as uid
// 1000 (the image's user) in a socket folder shared like Argo's emptyDir
// (0777), with Argo's documented executor args appended. Argo's plugin client
// (test/argo-client, on workflow/artifacts/plugin) connects as uid 8737 (the
// executor's and argo-server's uid) and runs every step: Load as the init
// container does, Save as the sidecar does, OpenStream/ListObjects/IsDirectory
// as argo-server does, and Artifact GC's Delete of a directory. The plugin is
// stopped the way Argo stops an artifact sidecar (a signal file read by
// argoexec) and must exit 0. Also: Argo's linter on every example workflow.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { CreateBucketCommand, ListMultipartUploadsCommand } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type MinioServer, startMinio } from "../../scripts/lib/minio.mjs";
import { argoTools } from "../../scripts/lib/tools.mjs";
import { adminClient, rootKeysEnv } from "../support/minio-access.js";
import { ROOT } from "../support/plugin.js";
import { within } from "../support/bounded.js";

const run = promisify(execFile);
const PLUGIN_UID = 1000;
const CLIENT_UID = 8737;
const VAR_RUN_ARGO = "/var/run/argo";
const isRoot = process.getuid?.() === 0;
if (!isRoot) process.stdout.write("argo-pod-model: skipped, running as another uid needs root (CI runs as root)\n");

let tools: { argoexec: string; lint: string };
let minio: MinioServer;
let pod: string;
let clientBin: string;

beforeAll(async () => {
  tools = await argoTools();
  if (!isRoot) return;
  // A world-readable place for the binaries: the other uids cannot enter root's home.
  pod = mkdtempSync(join(tmpdir(), "argo-pod-"));
  chmodSync(pod, 0o755);
  copyFileSync(tools.argoexec, join(pod, "argoexec"));
  chmodSync(join(pod, "argoexec"), 0o755);
  clientBin = join(pod, "argo-client");
  const build = run("go", ["build", "-o", clientBin, "."], {
    cwd: join(ROOT, "test", "argo-client"),
    env: { ...process.env, GOFLAGS: "-buildvcs=false" },
    maxBuffer: 32 * 1024 * 1024,
  });
  minio = await startMinio();
  await adminClient(minio).send(new CreateBucketCommand({ Bucket: "argo" }));
  await build;
  chmodSync(clientBin, 0o755);
  // argoexec keeps each container's exit code and signal file here (an emptyDir in a pod).
  mkdirSync(VAR_RUN_ARGO, { recursive: true });
  chmodSync(VAR_RUN_ARGO, 0o777);
}, 600_000);

afterAll(async () => {
  await minio?.stop();
  if (pod) rmSync(pod, { recursive: true, force: true });
});

interface Sidecar {
  proc: ChildProcess;
  socket: string;
  container: string;
  output: () => string;
  exited: Promise<number | null>;
}

/** The plugin under argoexec as uid 1000, with the executor's args appended after the socket path. */
async function startSidecar(executorArgs: string[]): Promise<Sidecar> {
  const share = join(pod, `artifact-plugins-${Date.now()}`, "s3");
  mkdirSync(share, { recursive: true });
  chmodSync(share, 0o777); // Kubernetes makes emptyDir folders 0777
  const socket = join(share, "socket");
  const container = `s3-plugin-${process.pid}-${Date.now()}`;
  const proc = spawn(
    "setpriv",
    [`--reuid=${PLUGIN_UID}`, `--regid=${PLUGIN_UID}`, "--clear-groups", "--", join(pod, "argoexec"), "artifact-plugin-sidecar", "--", process.execPath, join(ROOT, "dist", "main.js"), socket, ...executorArgs],
    {
      env: { PATH: process.env["PATH"] ?? "", HOME: pod, ARGO_CONTAINER_NAME: container, ...rootKeysEnv(minio) },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let out = "";
  proc.stdout!.on("data", (c: Buffer) => (out += c.toString()));
  proc.stderr!.on("data", (c: Buffer) => (out += c.toString()));
  const exited = new Promise<number | null>((resolve) => proc.once("exit", (code) => resolve(code)));
  const until = Date.now() + 20_000;
  while (!out.includes('"msg":"ready"')) {
    if (proc.exitCode !== null || Date.now() > until) throw new Error(`plugin under argoexec not ready:\n${out}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return { proc, socket, container, output: () => out, exited };
}

/** Stop it as Argo stops an artifact sidecar: SIGTERM is ignored by argoexec; the wait container writes a signal file. */
async function stopSidecar(s: Sidecar): Promise<{ code: number | null; pluginExit: string }> {
  const dir = join(VAR_RUN_ARGO, "ctr", s.container);
  writeFileSync(join(dir, "signal"), "15");
  const timer = setTimeout(() => s.proc.kill("SIGKILL"), 20_000);
  const code = await within(s.exited, 60_000, "argoexec's exit after the stop signal");
  clearTimeout(timer);
  const pluginExit = readFileSync(join(dir, "exitcode"), "utf8");
  rmSync(dir, { recursive: true, force: true });
  return { code, pluginExit };
}

describe.skipIf(!isRoot)("under argoexec, as Argo's pod runs it", () => {
  it(
    "uid 8737 runs every step of Argo's plugin client against the plugin (uid 1000) started with Argo's executor args; exit 0 on Argo's stop",
    async () => {
      const sidecar = await startSidecar(["--loglevel", "debug", "--gloglevel", "6"]);
      // The socket takes the sharing of its folder: any uid in the pod may connect.
      expect(statSync(sidecar.socket).mode & 0o777).toBe(0o666);
      expect(statSync(sidecar.socket).uid).toBe(PLUGIN_UID);
      const work = join(pod, `client-${Date.now()}`);
      mkdirSync(work);
      chownSync(work, CLIENT_UID, CLIENT_UID);
      // The artifacts' volume is an emptyDir (0777) shared by the executor and the plugin.
      mkdirSync(join(work, "scratch"));
      chmodSync(join(work, "scratch"), 0o777);
      const cfg = join(work, "config.yaml");
      writeFileSync(cfg, `endpoint: ${minio.endpoint}\nbucket: argo\ninsecure: true\ntuning:\n  partSizeMiB: 5\n  multipartThresholdMiB: 1\n`);
      chmodSync(cfg, 0o644);
      const result = await run(
        "setpriv",
        [`--reuid=${CLIENT_UID}`, `--regid=${CLIENT_UID}`, "--clear-groups", "--", clientBin, "-socket", sidecar.socket, "-config-file", cfg, "-prefix", `pod-${Date.now()}`, "-workdir", join(work, "scratch")],
        { env: { PATH: process.env["PATH"] ?? "", HOME: work }, maxBuffer: 16 * 1024 * 1024, timeout: 300_000 },
      ).catch((e: { stdout?: string; stderr?: string }) => e);
      const stdout = result.stdout ?? "";
      expect(stdout, `${stdout}\n${result.stderr ?? ""}\n${sidecar.output()}`).toMatch(/^11 passed, 0 failed$/m);
      // Files the client made were made by uid 8737 from bytes the plugin (uid 1000) loaded.
      expect(statSync(join(work, "scratch", "loaded-dir")).uid).toBe(PLUGIN_UID);
      // The executor's --loglevel reached the plugin; the rest was set aside with one warning.
      expect(sidecar.output()).toContain('"ignoredArgs":["--gloglevel","6"]');
      const { code, pluginExit } = await stopSidecar(sidecar);
      expect(code).toBe(0);
      expect(pluginExit).toBe("0");
      const uploads = await adminClient(minio).send(new ListMultipartUploadsCommand({ Bucket: "argo" }));
      expect(uploads.Uploads ?? []).toEqual([]);
    },
    600_000,
  );

  it("a second plugin started on the live socket (as `kubectl exec` could) is refused; the first keeps serving uid 8737", async () => {
    const sidecar = await startSidecar([]);
    const second = await run(process.execPath, [join(ROOT, "dist", "main.js"), sidecar.socket], { timeout: 20_000 }).catch((e: { code?: number; stdout?: string }) => e);
    expect((second as { code?: number }).code).toBe(1);
    expect(second.stdout).toContain("another process is serving on this socket");
    expect(existsSync(sidecar.socket)).toBe(true);
    const caps = await run(
      "setpriv",
      [`--reuid=${CLIENT_UID}`, `--regid=${CLIENT_UID}`, "--clear-groups", "--", clientBin, "-bench", "caps", "-socket", sidecar.socket],
      { timeout: 60_000 },
    ).catch((e: { stdout?: string; stderr?: string }) => e);
    expect(caps.stdout, caps.stderr).toContain('"supportsSaveStream":true');
    expect((await stopSidecar(sidecar)).code).toBe(0);
  });
});

describe("Argo's linter", () => {
  const files = () => [
    ...readdirSync(join(ROOT, "examples"))
      .filter((f) => f.endsWith(".yaml"))
      .map((f) => join(ROOT, "examples", f)),
  ];

  it("passes every example workflow (argo lint --offline --strict)", async () => {
    const list = files();
    expect(list.length).toBeGreaterThan(3);
    const r = await run(tools.lint, list, { timeout: 120_000 }).catch((e: { code?: number; stdout?: string; stderr?: string }) => e);
    expect((r as { code?: number }).code ?? 0, `${r.stdout}\n${r.stderr}`).toBe(0);
  });

  it("passes every workflow in the README, and fails a broken one (the check can fail)", async () => {
    const readme = readFileSync(join(ROOT, "README.md"), "utf8");
    const blocks = [...readme.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!).filter((b) => /^kind: (Workflow|WorkflowTemplate|CronWorkflow)\b/m.test(b));
    expect(blocks.length).toBeGreaterThan(0);
    const dir = mkdtempSync(join(tmpdir(), "lint-"));
    const paths = blocks.map((b, i) => {
      const p = join(dir, `readme-${i}.yaml`);
      writeFileSync(p, b);
      return p;
    });
    const ok = await run(tools.lint, paths, { timeout: 120_000 }).catch((e: { code?: number; stdout?: string; stderr?: string }) => e);
    expect((ok as { code?: number }).code ?? 0, `${ok.stdout}\n${ok.stderr}`).toBe(0);
    const broken = join(dir, "broken.yaml");
    writeFileSync(broken, blocks[0]!.replace("templates:", "templatez:"));
    const bad = await run(tools.lint, [broken], { timeout: 120_000 }).catch((e: { code?: number }) => e);
    expect((bad as { code?: number }).code).not.toBe(0);
    rmSync(dir, { recursive: true, force: true });
  });
});
