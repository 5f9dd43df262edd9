// Linux network namespaces for the Pod Identity tests: a namespace whose
// loopback device also carries the EKS Pod Identity agent's addresses
// (169.254.170.23/32 and fd00:ec2::23/128), and helpers to run MinIO, the agent
// stand-in and the plugin inside it with `ip netns exec`.
//
// TCP inside the namespace is invisible from the host, unix sockets are not
// (they live in the file system). So the plugin is driven from the host over
// its socket as usual, and the host reaches the namespace's MinIO through a
// tiny unix-socket → TCP forwarder started inside the namespace.
import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { Agent as HttpAgent, request as httpRequest } from "node:http";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { S3Client } from "@aws-sdk/client-s3";
import { NodeHttpHandler } from "@smithy/node-http-handler";
import { minioBinary } from "../../scripts/lib/tools.mjs";
import { ArtifactClient, ROOT } from "./plugin.js";

export const POD_IDENTITY_V4 = "169.254.170.23";
export const POD_IDENTITY_V6 = "fd00:ec2::23";
const PREFIX = "argos3pi";

/** Whether this process can make network namespaces (root, `ip`, and the kernel lets us). */
export function netnsSupport(): { ok: true } | { ok: false; reason: string } {
  if (process.platform !== "linux")
    return { ok: false, reason: `network namespaces need Linux (this is ${process.platform})` };
  if (process.getuid?.() !== 0)
    return { ok: false, reason: `network namespaces need root (uid is ${process.getuid?.()})` };
  const v = spawnSync("ip", ["-V"], { encoding: "utf8" });
  if (v.error || v.status !== 0)
    return { ok: false, reason: `the \`ip\` command (iproute2) is not available: ${v.error?.message ?? v.stderr}` };
  const probe = `${PREFIX}-probe-${process.pid}`;
  const add = spawnSync("ip", ["netns", "add", probe], { encoding: "utf8" });
  if (add.status !== 0)
    return { ok: false, reason: `\`ip netns add\` failed: ${add.stderr.trim() || add.error?.message}` };
  spawnSync("ip", ["netns", "del", probe]);
  return { ok: true };
}

function ip(...args: string[]): string {
  return execFileSync("ip", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** A child process inside the namespace, with its output captured. */
export interface NsChild {
  proc: ChildProcess;
  output: () => string;
  /** Resolves on the first output line matching `re` (rejects if the process exits first). */
  waitFor: (re: RegExp, timeoutMs?: number) => Promise<string>;
  stop: (signal?: NodeJS.Signals) => Promise<number | null>;
}

export class NetNs {
  private readonly children = new Set<NsChild>();

  private constructor(readonly name: string) {}

  /**
   * Makes a namespace with `lo` up and the Pod Identity agent addresses on it.
   * Namespaces left behind by a killed earlier run of these tests (our prefix,
   * creator pid gone) are removed first.
   */
  static create(): NetNs {
    for (const line of ip("netns", "list").split("\n")) {
      const m = new RegExp(`^(${PREFIX}-(\\d+)-[0-9a-f]+)\\b`).exec(line.trim());
      if (m && !pidAlive(Number(m[2]))) {
        // Left by a test process that was killed: stop what it started in there, then delete it.
        const pids = spawnSync("ip", ["netns", "pids", m[1]!], { encoding: "utf8" }).stdout.split("\n").filter(Boolean);
        for (const pid of pids) {
          try {
            process.kill(Number(pid), "SIGKILL");
          } catch {
            // already gone
          }
        }
        spawnSync("ip", ["netns", "del", m[1]!]);
      }
    }
    const name = `${PREFIX}-${process.pid}-${randomBytes(3).toString("hex")}`;
    ip("netns", "add", name);
    const ns = new NetNs(name);
    try {
      ip("-n", name, "link", "set", "lo", "up");
      ip("-n", name, "addr", "add", `${POD_IDENTITY_V4}/32`, "dev", "lo");
      execFileSync("ip", ["netns", "exec", name, "sysctl", "-q", "-w", "net.ipv6.conf.lo.disable_ipv6=0"]);
      ip("-n", name, "-6", "addr", "add", `${POD_IDENTITY_V6}/128`, "dev", "lo", "nodad");
    } catch (e) {
      spawnSync("ip", ["netns", "del", name]);
      throw e;
    }
    return ns;
  }

  /** Addresses on the namespace's `lo`, e.g. for a sanity check. */
  addresses(): string {
    return ip("-n", this.name, "addr", "show", "dev", "lo");
  }

  /** Starts `cmd args` inside the namespace (`ip netns exec` execs, so the pid is the command's own). */
  spawn(cmd: string, args: string[], env: Record<string, string>): NsChild {
    const proc = spawn("ip", ["netns", "exec", this.name, cmd, ...args], { env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    const listeners = new Set<() => void>();
    const onData = (c: Buffer) => {
      out += c.toString();
      for (const l of listeners) l();
    };
    proc.stdout!.on("data", onData);
    proc.stderr!.on("data", onData);
    const exited = new Promise<number | null>((resolve) => proc.once("exit", (code) => resolve(code)));
    proc.once("exit", () => {
      for (const l of listeners) l();
    });
    const child: NsChild = {
      proc,
      output: () => out,
      waitFor: (re, timeoutMs = 30_000) =>
        new Promise((resolve, reject) => {
          const check = () => {
            const line = out.split("\n").find((l) => re.test(l));
            if (line !== undefined) done(() => resolve(line));
            else if (proc.exitCode !== null || proc.signalCode !== null)
              done(() =>
                reject(new Error(`${cmd} exited (${proc.exitCode ?? proc.signalCode}) before ${re}:\n${out}`)),
              );
          };
          const timer = setTimeout(
            () => done(() => reject(new Error(`${cmd}: no ${re} in ${timeoutMs} ms:\n${out}`))),
            timeoutMs,
          );
          const done = (f: () => void) => {
            clearTimeout(timer);
            listeners.delete(check);
            f();
          };
          listeners.add(check);
          check();
        }),
      stop: async (signal: NodeJS.Signals = "SIGTERM") => {
        if (proc.exitCode === null && proc.signalCode === null) {
          proc.kill(signal);
          const t = setTimeout(() => proc.kill("SIGKILL"), 5000);
          await exited;
          clearTimeout(t);
        }
        this.children.delete(child);
        return proc.exitCode;
      },
    };
    this.children.add(child);
    return child;
  }

  /**
   * A unix socket at `socketPath` whose connections are piped to `host:port`
   * inside the namespace (a few lines of node, started in the namespace).
   */
  async forward(socketPath: string, port: number, host = "127.0.0.1"): Promise<NsChild> {
    const code = `
      const net = require("node:net"), fs = require("node:fs");
      const [, path, host, port] = process.argv;
      fs.rmSync(path, { force: true });
      net.createServer((c) => {
        const u = net.connect(Number(port), host);
        const kill = () => { c.destroy(); u.destroy(); };
        c.pipe(u).pipe(c);
        for (const s of [c, u]) { s.on("error", kill); s.on("close", kill); }
      }).listen(path, () => console.log("forwarding"));
      process.on("SIGTERM", () => process.exit(0));`;
    const child = this.spawn(process.execPath, ["-e", code, socketPath, host, String(port)], {
      PATH: process.env["PATH"] ?? "",
    });
    await child.waitFor(/^forwarding$/);
    return child;
  }

  /** Stops every process still running in it, then deletes the namespace. Safe to call twice. */
  async destroy(): Promise<void> {
    await Promise.all([...this.children].map((c) => c.stop("SIGKILL")));
    spawnSync("ip", ["netns", "del", this.name]);
  }
}

/** An http.Agent whose every connection goes to a unix socket (the forwarder). */
export function unixSocketAgent(socketPath: string): HttpAgent {
  const agent = new HttpAgent({ keepAlive: true });
  (agent as unknown as { createConnection: () => unknown }).createConnection = () => connect(socketPath);
  return agent;
}

export interface NsMinio {
  /** host:port as seen inside the namespace (for plugin configurations). */
  endpoint: string;
  /** URL as seen inside the namespace. */
  url: string;
  accessKey: string;
  secretKey: string;
  /** Root-key S3 client on the host, through the forwarder. */
  s3: S3Client;
  logs: () => string;
  stop: () => Promise<void>;
}

/** MinIO on 127.0.0.1 inside the namespace (like scripts/lib/minio.mjs's startMinio, spawned via `ip netns exec`). */
export async function startMinioInNetns(ns: NetNs, base: string, env: Record<string, string> = {}): Promise<NsMinio> {
  const bin = await minioBinary();
  const port = 9000; // the namespace is ours alone: any port is free
  const dir = join(base, "minio");
  mkdirSync(join(dir, "data"), { recursive: true });
  mkdirSync(join(dir, "certs"), { recursive: true });
  const accessKey = "minio-root";
  const secretKey = `minio-secret-${randomBytes(12).toString("hex")}`;
  const child = ns.spawn(
    bin,
    [
      "server",
      join(dir, "data"),
      "--address",
      `127.0.0.1:${port}`,
      "--console-address",
      `127.0.0.1:${port + 1}`,
      "--certs-dir",
      join(dir, "certs"),
      "--quiet",
    ],
    {
      PATH: process.env["PATH"] ?? "",
      HOME: dir,
      MINIO_ROOT_USER: accessKey,
      MINIO_ROOT_PASSWORD: secretKey,
      MINIO_BROWSER: "off",
      MINIO_UPDATE: "off",
      ...env,
    },
  );
  const fwdSocket = join(base, "minio.sock");
  const fwd = await ns.forward(fwdSocket, port);
  const agent = unixSocketAgent(fwdSocket);
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.proc.exitCode !== null) throw new Error(`minio exited with ${child.proc.exitCode}:\n${child.output()}`);
    if (await healthy(agent)) break;
    if (Date.now() > deadline) throw new Error(`minio not healthy in the namespace in 60 s:\n${child.output()}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  const s3 = new S3Client({
    endpoint: url,
    region: "us-east-1",
    forcePathStyle: true,
    credentials: { accessKeyId: accessKey, secretAccessKey: secretKey },
    requestHandler: new NodeHttpHandler({ httpAgent: agent }),
  });
  return {
    endpoint: `127.0.0.1:${port}`,
    url,
    accessKey,
    secretKey,
    s3,
    logs: child.output,
    stop: async () => {
      s3.destroy();
      agent.destroy();
      await fwd.stop();
      await child.stop();
    },
  };
}

function healthy(agent: HttpAgent): Promise<boolean> {
  return new Promise((resolve) => {
    const req = httpRequest({ agent, host: "127.0.0.1", path: "/minio/health/live", timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on("error", () => resolve(false));
    req.on("timeout", () => req.destroy());
    req.end();
  });
}

export interface NsPlugin {
  socket: string;
  client: ArtifactClient;
  output: () => string;
  stop: () => Promise<number | null>;
}

/** `node dist/main.cjs <socket>` inside the namespace, driven from the host over its socket. */
export async function startPluginInNetns(ns: NetNs, env: Record<string, string>, base: string): Promise<NsPlugin> {
  const dir = mkdtempSync(join(base, "plugin-"));
  const socket = join(dir, "artifact-plugins", "s3", "socket");
  const home = join(dir, "home"); // an empty HOME: no ~/.aws files can leak into the SDK chain
  mkdirSync(home);
  const child = ns.spawn(process.execPath, [join(ROOT, "dist", "main.cjs"), socket], {
    PATH: process.env["PATH"] ?? "",
    HOME: home,
    LOG_LEVEL: "debug",
    ...env,
  });
  await child.waitFor(/"msg":"ready"/, 20_000);
  const client = new ArtifactClient(socket, 120_000);
  return {
    socket,
    client,
    output: child.output,
    stop: async () => {
      client.close();
      return child.stop("SIGTERM");
    },
  };
}

/** A fresh temp dir for one test file; removed by the caller. */
export function tempBase(prefix: string): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function removeTree(p: string | undefined): void {
  if (p) rmSync(p, { recursive: true, force: true });
}
