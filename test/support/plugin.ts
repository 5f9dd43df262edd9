// Runs the built plugin (`node dist/main.cjs <socket>`) as a child process, the
// way Argo does, and talks to it over its unix socket with a gRPC client made
// from the same proto. Captures everything the process writes, for the
// log-scanning tests.
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ArtifactClient } from "../../src/plugin-client/artifact-service-client.js";

export { type Artifact, ArtifactClient, artifact } from "../../src/plugin-client/artifact-service-client.js";

export const ROOT = join(import.meta.dirname, "..", "..");

export interface PluginProcess {
  socket: string;
  proc: ChildProcess;
  client: ArtifactClient;
  output: () => string;
  stop: (signal?: NodeJS.Signals) => Promise<number | null>;
}

/**
 * `extraArgs` follow the socket path as Argo's executor args do; `socketPath` overrides the default place under `dir`;
 * `wrap` runs the command through another (e.g. into a memory cgroup before it starts, so it reads that limit).
 */
export async function startPlugin(
  env: Record<string, string> = {},
  dir?: string,
  extraArgs: string[] = [],
  socketPath?: string,
  wrap: (argv: string[]) => string[] = (a) => a,
): Promise<PluginProcess> {
  const base = dir ?? mkdtempSync(join(tmpdir(), "plugin-"));
  const socket = socketPath ?? join(base, "artifact-plugins", "s3", "socket");
  // PLUGIN_MAIN runs another build (an A/B against an earlier commit's dist/main.cjs).
  const main = process.env["PLUGIN_MAIN"] || join(ROOT, "dist", "main.cjs");
  const [cmd, ...args] = wrap([process.execPath, main, socket, ...extraArgs]);
  const proc = spawn(cmd!, args, {
    env: { PATH: process.env["PATH"] ?? "", HOME: process.env["HOME"] ?? "/root", LOG_LEVEL: "debug", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  const ready = new Promise<void>((resolve, reject) => {
    const onData = (c: Buffer) => {
      out += c.toString();
      if (out.includes('"msg":"ready"')) resolve();
    };
    proc.stdout!.on("data", onData);
    proc.stderr!.on("data", (c: Buffer) => (out += c.toString()));
    proc.once("exit", (code) => reject(new Error(`plugin exited with ${code} before ready:\n${out}`)));
    setTimeout(() => reject(new Error(`plugin not ready in 20 s:\n${out}`)), 20_000).unref();
    // A log level above info (set by an appended --loglevel) prints no ready line: then the socket appearing is the sign.
    const quiet = extraArgs.includes("--loglevel");
    const poll = setInterval(() => {
      if (quiet && existsSync(socket) && statSync(socket).isSocket()) {
        clearInterval(poll);
        setTimeout(resolve, 100);
      }
    }, 50);
    poll.unref();
    proc.once("exit", () => clearInterval(poll));
  });
  await ready;
  const exited = new Promise<number | null>((resolve) => proc.once("exit", (code) => resolve(code)));
  const client = new ArtifactClient(socket);
  return {
    socket,
    proc,
    client,
    output: () => out,
    stop: async (signal: NodeJS.Signals = "SIGTERM") => {
      client.close();
      if (proc.exitCode === null) proc.kill(signal);
      const code = await exited;
      if (!dir) rmSync(base, { recursive: true, force: true });
      return code;
    },
  };
}
