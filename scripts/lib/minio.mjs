// @ts-check
// Starts a real MinIO on a free loopback port with a temporary data directory,
// optionally with TLS (a self-signed certificate made with openssl) and with a
// single-key KMS so SSE-S3 / SSE-KMS / bucket encryption work. Used by the
// tests, the demo and the benchmark alike.
import { execFile, spawn } from "node:child_process";
import { mkdtempSync, rmSync, mkdirSync, readFileSync, readdirSync } from "node:fs";
import { createServer } from "node:net";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { listeningPorts } from "./listening.mjs";
import { minioBinary } from "./tools.mjs";

const run = promisify(execFile);

/** @returns {Promise<number>} a port that was free a moment ago on 127.0.0.1 */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * A self-signed certificate for 127.0.0.1 / localhost (also its own CA).
 * @param {string} dir @returns {Promise<{cert: string, key: string}>}
 */
export async function selfSignedCert(dir, cn = "127.0.0.1") {
  mkdirSync(dir, { recursive: true });
  const cert = join(dir, "public.crt");
  const key = join(dir, "private.key");
  await run("openssl", [
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    key,
    "-out",
    cert,
    "-days",
    "2",
    "-subj",
    `/CN=${cn}`,
    "-addext",
    "subjectAltName=IP:127.0.0.1,DNS:localhost",
    "-addext",
    "basicConstraints=critical,CA:TRUE",
  ]);
  return { cert, key };
}

/**
 * @typedef {{
 *   endpoint: string, url: string, port: number, accessKey: string, secretKey: string,
 *   dataDir: string, caPem?: string, stop: () => Promise<void>, logs: () => string,
 *   kill: () => Promise<void>, restart: () => Promise<void>, freeze: () => void, thaw: () => void,
 *   pid: () => number | undefined
 * }} MinioServer
 * kill: SIGKILL, resolves once gone. restart: start again on the same port and data directory,
 * resolves when healthy (fault tests). freeze / thaw: SIGSTOP / SIGCONT.
 */

/** Whether every thread of `pid` is in the stopped state ("T"). @param {number} pid */
function allThreadsStopped(pid) {
  try {
    return readdirSync(`/proc/${pid}/task`).every((t) => {
      const stat = readFileSync(`/proc/${pid}/task/${t}/stat`, "utf8");
      return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) === "T";
    });
  } catch {
    return true; // gone, or no /proc: nothing left to wait for
  }
}

/**
 * @param {{ tls?: boolean, env?: Record<string,string>, host?: string }} [opts]
 * @returns {Promise<MinioServer>}
 */
export async function startMinio(opts = {}) {
  const bin = await minioBinary();
  const host = opts.host ?? "127.0.0.1";
  // Port 0: MinIO binds one of its own choosing, read back from /proc (no port is picked here and
  // lost to another process before MinIO binds it). A restart binds the same one again.
  let port = 0;
  const base = mkdtempSync(join(tmpdir(), "minio-"));
  const dataDir = join(base, "data");
  const certsDir = join(base, "certs");
  mkdirSync(dataDir);
  mkdirSync(certsDir);
  /** @type {string | undefined} */
  let caPem;
  if (opts.tls) {
    const { cert } = await selfSignedCert(certsDir);
    caPem = readFileSync(cert, "utf8");
  }
  const accessKey = "minio-root";
  const secretKey = `minio-secret-${Math.random().toString(36).slice(2)}`;
  const hostInUrl = host.includes(":") ? `[${host}]` : host;
  const urlOf = (/** @type {number} */ p) => `${opts.tls ? "https" : "http"}://${hostInUrl}:${p}`;
  /** @type {import("node:child_process").ChildProcess | undefined} */
  let child;
  /** @type {Promise<unknown>} */
  let exited = Promise.resolve();
  let output = "";
  // If whoever started it dies without stopping it, do not leave MinIO running.
  const orphanGuard = () => child?.kill("SIGKILL");
  process.once("exit", orphanGuard);

  const launch = async () => {
    const c = spawn(
      bin,
      // The console is off (MINIO_BROWSER), so the API's is the only port it listens on.
      [
        "server",
        dataDir,
        "--address",
        `${hostInUrl}:${port}`,
        "--console-address",
        `${hostInUrl}:0`,
        "--certs-dir",
        certsDir,
        "--quiet",
      ],
      {
        env: {
          PATH: process.env["PATH"] ?? "",
          HOME: base,
          MINIO_ROOT_USER: accessKey,
          MINIO_ROOT_PASSWORD: secretKey,
          MINIO_BROWSER: "off",
          MINIO_UPDATE: "off",
          // A single static key: enough for SSE-S3, SSE-KMS with key id "test-key" and bucket encryption.
          MINIO_KMS_SECRET_KEY: "test-key:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
          ...opts.env,
        },
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    child = c;
    c.stdout?.on("data", (d) => (output += d));
    c.stderr?.on("data", (d) => (output += d));
    exited = new Promise((resolve) => c.once("exit", resolve));
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (c.exitCode !== null) throw new Error(`minio exited with ${c.exitCode}:\n${output}`);
      // Only a port this very process listens on counts (not another server's that answers health checks too).
      const mine = c.pid ? listeningPorts(c.pid) : [];
      if (port === 0 && mine.length === 1) port = /** @type {number} */ (mine[0]);
      if (port !== 0 && mine.includes(port) && (await healthy(urlOf(port), caPem))) return;
      if (Date.now() > deadline) {
        c.kill("SIGKILL");
        throw new Error(
          `minio did not become healthy${port ? ` at ${urlOf(port)}` : ""} in 60 s (listening on ${JSON.stringify(mine)}):\n${output}`,
        );
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  const kill = async () => {
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill("SIGKILL");
      await exited;
    }
  };
  await launch();
  return {
    endpoint: `${hostInUrl}:${port}`,
    url: urlOf(port),
    port,
    accessKey,
    secretKey,
    dataDir,
    caPem,
    logs: () => output,
    kill,
    restart: async () => {
      await kill();
      // The port is free again once the old process is gone (MinIO listens with SO_REUSEADDR).
      await launch();
    },
    freeze: () => {
      if (!child?.pid) return;
      child.kill("SIGSTOP");
      // SIGSTOP takes effect per thread, as each next enters the kernel; right after a
      // SIGCONT some threads can still serve a request. Return only once every thread is stopped.
      const until = Date.now() + 5_000;
      while (Date.now() < until && !allThreadsStopped(child.pid))
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 2);
    },
    thaw: () => void child?.kill("SIGCONT"),
    pid: () => child?.pid,
    stop: async () => {
      process.removeListener("exit", orphanGuard);
      const c = child;
      if (c && c.exitCode === null && c.signalCode === null) {
        c.kill("SIGCONT"); // a frozen server cannot act on SIGTERM
        c.kill("SIGTERM");
        const t = setTimeout(() => c.kill("SIGKILL"), 5000);
        await exited;
        clearTimeout(t);
      }
      rmSync(base, { recursive: true, force: true });
    },
  };
}

/** @param {string} url @param {string | undefined} ca */
function healthy(url, ca) {
  return new Promise((resolve) => {
    const req = (url.startsWith("https") ? httpsRequest : httpRequest)(
      `${url}/minio/health/live`,
      { ca, timeout: 1000 },
      (res) => {
        res.resume();
        resolve(res.statusCode === 200);
      },
    );
    req.on("error", () => resolve(false));
    req.on("timeout", () => req.destroy());
    req.end();
  });
}
