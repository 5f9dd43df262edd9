// Argo's pod model, with Argo's own binaries: the plugin runs the way the
// controller starts a plugin container, `argoexec artifact-plugin-sidecar --
// <entrypoint> <socket> <executor args>` (argoexec sets umask 0 first), as uid
// 8737 (the image's user, Argo's executor uid) in a socket folder shared like Argo's emptyDir
// (0777), with Argo's documented executor args appended. Argo's plugin client
// (test/argo-client, on workflow/artifacts/plugin) connects as uid 8737 (the
// executor's and argo-server's uid) and runs every step: Load as the init
// container does, Save as the sidecar does, OpenStream/ListObjects/IsDirectory
// as argo-server does, and Artifact GC's Delete of a directory. The plugin is
// stopped the way Argo stops an artifact sidecar (a signal file read by
// argoexec) and must exit 0. The controller's own stop (`argoexec kill 15 1`
// exec'd in the sidecar once main ends) must not end a Save in progress.
// argoexec is Argo's own code: built from the module with the files the zip
// lost put back from their targets (scripts/lib/argo-module.mjs). The plugin
// starts as the image starts it: the launcher (launcher/), then Node. Also:
// Argo's linter on every example workflow.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import {
  chmodSync,
  chownSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import { createConnection } from "node:net";
import { join } from "node:path";
import { promisify } from "node:util";
import { CreateBucketCommand, GetObjectCommand, ListMultipartUploadsCommand } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type MinioServer, startMinio } from "../../scripts/lib/minio.mjs";
import { argoTools, launcherBinary } from "../../scripts/lib/tools.mjs";
import { adminClient, rootKeysEnv } from "../support/minio-access.js";
import { ROOT } from "../support/plugin.js";
import { until, within } from "../support/bounded.js";
import { startFaultProxy } from "../support/fault-proxy.js";

const run = promisify(execFile);
const PLUGIN_UID = 8737;
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
  copyFileSync(await launcherBinary(), join(pod, "launch"));
  chmodSync(join(pod, "launch"), 0o755);
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

/** The plugin under argoexec as the image's uid, through the image's launcher, with the executor's args appended after the socket path. */
async function startSidecar(executorArgs: string[], extraEnv: Record<string, string> = {}): Promise<Sidecar> {
  const share = join(pod, `artifact-plugins-${Date.now()}`, "s3");
  mkdirSync(share, { recursive: true });
  chmodSync(share, 0o777); // Kubernetes makes emptyDir folders 0777
  const socket = join(share, "socket");
  const container = `s3-plugin-${process.pid}-${Date.now()}`;
  const proc = spawn(
    "setpriv",
    [
      `--reuid=${PLUGIN_UID}`,
      `--regid=${PLUGIN_UID}`,
      "--clear-groups",
      "--",
      join(pod, "argoexec"),
      "artifact-plugin-sidecar",
      "--",
      join(pod, "launch"),
      process.execPath,
      join(ROOT, "dist", "main.cjs"),
      socket,
      ...executorArgs,
    ],
    {
      env: {
        PATH: process.env["PATH"] ?? "",
        HOME: pod,
        ARGO_CONTAINER_NAME: container,
        ...rootKeysEnv(minio),
        ...extraEnv,
      },
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
async function stopSidecar(s: Sidecar): Promise<{ code: number | null; pluginExit: string; ms: number }> {
  const dir = join(VAR_RUN_ARGO, "ctr", s.container);
  const asked = Date.now();
  writeFileSync(join(dir, "signal"), "15");
  const timer = setTimeout(() => s.proc.kill("SIGKILL"), 20_000);
  const code = await within(s.exited, 60_000, "argoexec's exit after the stop signal");
  clearTimeout(timer);
  const pluginExit = readFileSync(join(dir, "exitcode"), "utf8");
  rmSync(dir, { recursive: true, force: true });
  return { code, pluginExit, ms: Date.now() - asked };
}

/**
 * One transfer through Argo's plugin client as uid 8737, in its own process (as the init or wait
 * container runs it: its connections end with the process).
 */
function benchClient(
  socket: string,
  o: { mode: string; cfg: string; key: string; file: string; home: string },
): Promise<{ stdout: string; stderr: string }> {
  return run(
    "setpriv",
    [`--reuid=${CLIENT_UID}`, `--regid=${CLIENT_UID}`, "--clear-groups", "--", clientBin, "-bench", o.mode].concat([
      "-socket",
      socket,
      "-config-file",
      o.cfg,
      "-key",
      o.key,
      "-file",
      o.file,
    ]),
    { env: { PATH: process.env["PATH"] ?? "", HOME: o.home }, maxBuffer: 16 * 1024 * 1024, timeout: 120_000 },
  );
}

describe.skipIf(!isRoot)("under argoexec, as Argo's pod runs it", () => {
  it("uid 8737 runs every step of Argo's plugin client against the plugin started through the image's launcher with Argo's executor args; exit 0 on Argo's stop", async () => {
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
    writeFileSync(
      cfg,
      `endpoint: ${minio.endpoint}\nbucket: argo\ninsecure: true\ntuning:\n  partSizeMiB: 5\n  multipartThresholdMiB: 1\n`,
    );
    chmodSync(cfg, 0o644);
    const result = await run(
      "setpriv",
      [
        `--reuid=${CLIENT_UID}`,
        `--regid=${CLIENT_UID}`,
        "--clear-groups",
        "--",
        clientBin,
        "-socket",
        sidecar.socket,
        "-config-file",
        cfg,
        "-prefix",
        `pod-${Date.now()}`,
        "-workdir",
        join(work, "scratch"),
      ],
      { env: { PATH: process.env["PATH"] ?? "", HOME: work }, maxBuffer: 16 * 1024 * 1024, timeout: 300_000 },
    ).catch((e: { stdout?: string; stderr?: string }) => e);
    const stdout = result.stdout ?? "";
    expect(stdout, `${stdout}\n${result.stderr ?? ""}\n${sidecar.output()}`).toMatch(/^11 passed, 0 failed$/m);
    // Files the client made were made by uid 8737 from bytes the plugin loaded.
    expect(statSync(join(work, "scratch", "loaded-dir")).uid).toBe(PLUGIN_UID);
    // The executor's --loglevel reached the plugin; the rest was set aside with one warning.
    expect(sidecar.output()).toContain('"ignoredArgs":["--gloglevel","6"]');
    const { code, pluginExit, ms } = await stopSidecar(sidecar);
    expect(code).toBe(0);
    expect(pluginExit).toBe("0");
    // The plugin read Argo's stop itself (v4.0's wrapper looks every 2 s; the wait container then
    // waits for the exit code): how long the stop took is printed, not asserted.
    expect(sidecar.output()).toMatch(/"signal":"Argo's signal file \(15\)".*"msg":"shutting down"/);
    process.stdout.write(`argo-pod-model: signal file written → argoexec's wrapper exited in ${ms} ms\n`);
    const uploads = await adminClient(minio).send(new ListMultipartUploadsCommand({ Bucket: "argo" }));
    expect(uploads.Uploads ?? []).toEqual([]);
  }, 600_000);

  // Once main ends, Argo's controller execs the container's kill command in
  // every running container, by default `/var/run/argo/argoexec kill 15 1`;
  // PID 1 of the plugin's container is the wrapper. Here the container's
  // paths and PID 1 are mapped to the test's argoexec copy and the wrapper.
  async function controllerKill(s: Sidecar, command: string[], signal: number): Promise<void> {
    const argv = command.map((a) => a.replaceAll("%d", String(signal)));
    expect(argv.at(-1), "the kill command addresses PID 1, the wrapper").toBe("1");
    argv[argv.length - 1] = String(s.proc.pid);
    if (argv[0] === `${VAR_RUN_ARGO}/argoexec`) argv[0] = join(pod, "argoexec");
    await run("setpriv", [`--reuid=${PLUGIN_UID}`, `--regid=${PLUGIN_UID}`, "--clear-groups", "--", ...argv], {
      timeout: 30_000,
    });
  }

  /** A Save through Argo's client that is still uploading when `during` runs (its parts' answers are held back 1.5 s each). */
  async function saveWhile(
    s: Sidecar,
    during: () => Promise<void>,
  ): Promise<{ ok: boolean; out: string; key: string; bytes: Buffer }> {
    const proxy = await startFaultProxy(minio.port);
    try {
      const work = join(pod, `kill-${Date.now()}`);
      mkdirSync(work);
      chmodSync(work, 0o755);
      const bytes = randomBytes(12 * 2 ** 20);
      const file = join(work, "big.bin");
      writeFileSync(file, bytes);
      chmodSync(file, 0o644);
      const cfg = join(work, "config.yaml");
      writeFileSync(
        cfg,
        `endpoint: ${proxy.endpoint}\nbucket: argo\ninsecure: true\ntuning:\n  partSizeMiB: 5\n  multipartThresholdMiB: 1\n`,
      );
      chmodSync(cfg, 0o644);
      proxy.inject(3, "slow-answer", (req) => req.method === "PUT");
      const key = `kill-${Date.now()}/big.bin`;
      const save = benchClient(s.socket, { mode: "save", cfg, key, file, home: work }).then(
        (r) => ({ ok: true, out: `${r.stdout}${r.stderr}` }),
        (e: { stdout?: string; stderr?: string }) => ({ ok: false, out: `${e.stdout ?? ""}${e.stderr ?? ""}` }),
      );
      await until("the Save's first part on the wire", () => proxy.injected > 0, 30_000);
      await during();
      const r = await within(save, 120_000, "the Save through Argo's client");
      return { ...r, key, bytes };
    } finally {
      await proxy.stop();
    }
  }

  it("the controller's stop of a running sidecar (argoexec kill 15 1, twice) leaves the Save to finish: Argo's own argoexec ignores SIGTERM and cannot kill a released child", async () => {
    const sidecar = await startSidecar([]);
    const saved = await saveWhile(sidecar, async () => {
      // The controller's default kill command for every container still running once main ends.
      await controllerKill(sidecar, [`${VAR_RUN_ARGO}/argoexec`, "kill", "%d", "1"], 15);
      await new Promise((r) => setTimeout(r, 1_000));
      await controllerKill(sidecar, [`${VAR_RUN_ARGO}/argoexec`, "kill", "%d", "1"], 15);
    });
    expect(saved.ok, `${saved.out}\n${sidecar.output()}`).toBe(true);
    const got = await adminClient(minio).send(new GetObjectCommand({ Bucket: "argo", Key: saved.key }));
    expect(Buffer.from(await got.Body!.transformToByteArray()).equals(saved.bytes)).toBe(true);
    expect(sidecar.proc.exitCode, "argoexec's wrapper is still serving").toBeNull();
    const { code, pluginExit } = await stopSidecar(sidecar);
    expect(code).toBe(0);
    expect(pluginExit).toBe("0");
  }, 300_000);

  it("a sidecar whose wait container dies before writing the stop leaves by itself once its Save client is gone (exit 0, Argo's wrapper records it); a Load client gone does not end it", async () => {
    const GONE_SECONDS = 2;
    const sidecar = await startSidecar([], { ARGO_S3_PLUGIN_CLIENT_GONE_SECONDS: String(GONE_SECONDS) });
    const work = join(pod, `gone-${Date.now()}`);
    mkdirSync(work);
    chownSync(work, CLIENT_UID, CLIENT_UID);
    const cfg = join(work, "config.yaml");
    writeFileSync(cfg, `endpoint: ${minio.endpoint}\nbucket: argo\ninsecure: true\n`);
    chmodSync(cfg, 0o644);
    const bytes = randomBytes(3 * 2 ** 20);
    writeFileSync(join(work, "out.bin"), bytes);
    chmodSync(join(work, "out.bin"), 0o644);
    const key = `gone-${Date.now()}/out.bin`;
    // Argo's client in its own process: its connections end with it, as a killed wait container's do.
    const client = (mode: string, file: string) => benchClient(sidecar.socket, { mode, cfg, key, file, home: work });
    // Another client connected all along (as a live wait container's connections stay) holds it.
    const held = createConnection(sidecar.socket);
    await new Promise<void>((resolve, reject) => held.once("connect", resolve).once("error", reject));
    await client("save", join(work, "out.bin"));
    await new Promise((r) => setTimeout(r, 3 * GONE_SECONDS * 1000));
    expect(sidecar.proc.exitCode, sidecar.output()).toBeNull();
    held.destroy();
    const code = await within(sidecar.exited, 60_000, "the sidecar leaving once its clients are gone");
    expect(code).toBe(0);
    const dir = join(VAR_RUN_ARGO, "ctr", sidecar.container);
    expect(readFileSync(join(dir, "exitcode"), "utf8")).toBe("0");
    rmSync(dir, { recursive: true, force: true });
    expect(sidecar.output()).toMatch(/"clientGoneSeconds":2,"msg":"no client connected since the last Save/);
    const got = await adminClient(minio).send(new GetObjectCommand({ Bucket: "argo", Key: key }));
    expect(Buffer.from(await got.Body!.transformToByteArray()).equals(bytes)).toBe(true);

    // Loads only (an init container, an init-less supervisor before main): clients come and go,
    // the plugin stays for the Save to come.
    const loader = await startSidecar([], { ARGO_S3_PLUGIN_CLIENT_GONE_SECONDS: String(GONE_SECONDS) });
    try {
      const loaded = join(work, "loaded.bin");
      await benchClient(loader.socket, { mode: "load", cfg, key, file: loaded, home: work });
      expect(readFileSync(loaded).equals(bytes)).toBe(true);
      await new Promise((r) => setTimeout(r, 3 * GONE_SECONDS * 1000));
      expect(loader.proc.exitCode, loader.output()).toBeNull();
    } finally {
      const { code: loaderCode, pluginExit } = await stopSidecar(loader);
      expect(loaderCode).toBe(0);
      expect(pluginExit).toBe("0");
    }
  }, 300_000);

  it("an output the main container wrote 0600 as root fails with the uid that could not read it, the owner and mode, and what to set", async () => {
    const sidecar = await startSidecar([]);
    try {
      const work = join(pod, `private-${Date.now()}`);
      mkdirSync(join(work, "dir", "sub"), { recursive: true });
      chmodSync(work, 0o755);
      writeFileSync(join(work, "secret.bin"), "not for the plugin's uid");
      chmodSync(join(work, "secret.bin"), 0o600); // as root with umask 077
      chmodSync(join(work, "dir"), 0o755);
      chmodSync(join(work, "dir", "sub"), 0o700);
      writeFileSync(join(work, "dir", "sub", "x.txt"), "x");
      const cfg = join(work, "config.yaml");
      writeFileSync(cfg, `endpoint: ${minio.endpoint}\nbucket: argo\ninsecure: true\n`);
      chmodSync(cfg, 0o644);
      const save = (file: string) =>
        run(
          "setpriv",
          [
            `--reuid=${CLIENT_UID}`,
            `--regid=${CLIENT_UID}`,
            "--clear-groups",
            "--",
            clientBin,
            "-bench",
            "save",
            "-socket",
            sidecar.socket,
            "-config-file",
            cfg,
            "-key",
            `private-${Date.now()}`,
            "-file",
            file,
          ],
          { env: { PATH: process.env["PATH"] ?? "", HOME: work }, timeout: 60_000 },
        ).then(
          (r) => ({ ok: true, out: `${r.stdout}${r.stderr}` }),
          (e: { stdout?: string; stderr?: string }) => ({ ok: false, out: `${e.stdout ?? ""}${e.stderr ?? ""}` }),
        );
      const file = await save(join(work, "secret.bin"));
      expect(file.ok, file.out).toBe(false);
      expect(file.out).toContain(
        `cannot save ${join(work, "secret.bin")}: permission denied (EACCES): the plugin (uid ${PLUGIN_UID}, gid ${PLUGIN_UID}) cannot read it`,
      );
      expect(file.out).toContain("is owned by uid 0 (gid 0) with mode 0600");
      expect(file.out).toMatch(/umask 022 or chmod -R a\+rX .*securityContext\.runAsUser/);
      const dir = await save(join(work, "dir"));
      expect(dir.ok, dir.out).toBe(false);
      expect(dir.out).toContain(`cannot save ${join(work, "dir", "sub")}: permission denied (EACCES)`);
      expect(dir.out).toContain("with mode 0700");
    } finally {
      expect((await stopSidecar(sidecar)).code).toBe(0);
    }
  });

  it("a second plugin started on the live socket (as `kubectl exec` could) is refused; the first keeps serving uid 8737", async () => {
    const sidecar = await startSidecar([]);
    const second = await run(process.execPath, [join(ROOT, "dist", "main.cjs"), sidecar.socket], {
      timeout: 20_000,
    }).catch((e: { code?: number; stdout?: string }) => e);
    expect((second as { code?: number }).code).toBe(1);
    expect(second.stdout).toContain("another process is serving on this socket");
    expect(existsSync(sidecar.socket)).toBe(true);
    const caps = await run(
      "setpriv",
      [
        `--reuid=${CLIENT_UID}`,
        `--regid=${CLIENT_UID}`,
        "--clear-groups",
        "--",
        clientBin,
        "-bench",
        "caps",
        "-socket",
        sidecar.socket,
      ],
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
    const r = await run(tools.lint, list, { timeout: 120_000 }).catch(
      (e: { code?: number; stdout?: string; stderr?: string }) => e,
    );
    expect((r as { code?: number }).code ?? 0, `${r.stdout}\n${r.stderr}`).toBe(0);
  });

  it("passes every workflow in the README, and fails a broken one (the check can fail)", async () => {
    const readme = readFileSync(join(ROOT, "README.md"), "utf8");
    const blocks = [...readme.matchAll(/```yaml\n([\s\S]*?)```/g)]
      .map((m) => m[1]!)
      .filter((b) => /^kind: (Workflow|WorkflowTemplate|CronWorkflow)\b/m.test(b));
    expect(blocks.length).toBeGreaterThan(0);
    const dir = mkdtempSync(join(tmpdir(), "lint-"));
    const paths = blocks.map((b, i) => {
      const p = join(dir, `readme-${i}.yaml`);
      writeFileSync(p, b);
      return p;
    });
    const ok = await run(tools.lint, paths, { timeout: 120_000 }).catch(
      (e: { code?: number; stdout?: string; stderr?: string }) => e,
    );
    expect((ok as { code?: number }).code ?? 0, `${ok.stdout}\n${ok.stderr}`).toBe(0);
    const broken = join(dir, "broken.yaml");
    writeFileSync(broken, blocks[0]!.replace("templates:", "templatez:"));
    const bad = await run(tools.lint, [broken], { timeout: 120_000 }).catch((e: { code?: number }) => e);
    expect((bad as { code?: number }).code).not.toBe(0);
    rmSync(dir, { recursive: true, force: true });
  });
});
