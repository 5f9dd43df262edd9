// A MinIO the fault tests can kill (SIGKILL), freeze (SIGSTOP / SIGCONT) and
// start again on the same port and data directory, so a client that was
// talking to it finds "the same server" back. `scripts/lib/minio.mjs` stays
// as it is for everyone else; this one only adds the restart.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { MinioServer } from "../../scripts/lib/minio.mjs";
import { freePort } from "../../scripts/lib/minio.mjs";
import { minioBinary } from "../../scripts/lib/tools.mjs";

export interface RestartableMinio extends MinioServer {
  /** SIGKILL; resolves once the process is gone. */
  kill: () => Promise<void>;
  /** Start again on the same port and data directory; resolves when healthy. */
  restart: () => Promise<void>;
  freeze: () => void;
  thaw: () => void;
  pid: () => number | undefined;
}

function healthy(url: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request(`${url}/minio/health/live`, { timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on("error", () => resolve(false));
    req.on("timeout", () => req.destroy());
    req.end();
  });
}

export async function startRestartableMinio(): Promise<RestartableMinio> {
  const bin = await minioBinary();
  const port = await freePort();
  const consolePort = await freePort();
  const base = mkdtempSync(join(tmpdir(), "minio-restartable-"));
  const dataDir = join(base, "data");
  mkdirSync(dataDir);
  const accessKey = "minio-root";
  const secretKey = `minio-secret-${Math.random().toString(36).slice(2)}`;
  const url = `http://127.0.0.1:${port}`;
  let child: ChildProcess | undefined;
  let exited: Promise<unknown> = Promise.resolve();
  let output = "";
  const orphanGuard = () => child?.kill("SIGKILL");
  process.once("exit", orphanGuard);

  const launch = async () => {
    const c = spawn(bin, ["server", dataDir, "--address", `127.0.0.1:${port}`, "--console-address", `127.0.0.1:${consolePort}`, "--quiet"], {
      env: {
        PATH: process.env["PATH"] ?? "",
        HOME: base,
        MINIO_ROOT_USER: accessKey,
        MINIO_ROOT_PASSWORD: secretKey,
        MINIO_BROWSER: "off",
        MINIO_UPDATE: "off",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    child = c;
    c.stdout!.on("data", (d: Buffer) => (output += d.toString()));
    c.stderr!.on("data", (d: Buffer) => (output += d.toString()));
    exited = new Promise((r) => c.once("exit", r));
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (c.exitCode !== null) throw new Error(`minio exited with ${c.exitCode}:\n${output}`);
      if (await healthy(url)) return;
      if (Date.now() > deadline) throw new Error(`minio not healthy at ${url} in 60 s:\n${output}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  await launch();

  const kill = async () => {
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill("SIGKILL");
      await exited;
    }
  };
  return {
    endpoint: `127.0.0.1:${port}`,
    url,
    port,
    accessKey,
    secretKey,
    dataDir,
    logs: () => output,
    kill,
    restart: async () => {
      await kill();
      // The port is ours again once the old process is gone; a bind race with
      // TIME_WAIT does not apply to a listening socket (MinIO sets SO_REUSEADDR).
      await launch();
    },
    freeze: () => void child?.kill("SIGSTOP"),
    thaw: () => void child?.kill("SIGCONT"),
    pid: () => child?.pid,
    stop: async () => {
      process.removeListener("exit", orphanGuard);
      child?.kill("SIGCONT");
      await kill();
      rmSync(base, { recursive: true, force: true });
    },
  };
}
