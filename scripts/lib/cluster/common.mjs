// @ts-check
// The cluster tier's shared pieces: its fixed addresses and versions, running a command with a bound, hashing inputs for cache keys.
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import {
  closeSync,
  createReadStream,
  existsSync,
  openSync,
  readFileSync,
  readSync,
  fstatSync,
  readdirSync,
} from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";

const execFileP = promisify(execFile);

/** Bump when a build or image recipe below changes: it is part of every cache key. */
export const RECIPE = "cluster-recipe-1";
export const K8S_VERSION = "v1.33.13";
export const ARGO_MODULE = "github.com/argoproj/argo-workflows/v4";
export const ARGO_VERSION = "v4.0.5";
export const CNI_BIN_DIR = "/usr/lib/cni";
export const NODE_IP = "10.213.0.1";
export const NODE_CIDR = "10.213.0.1/24";
export const POD_CIDR = "10.214.0.0/24";
export const SERVICE_CIDR = "10.215.0.0/24";
export const API_SERVICE_IP = "10.215.0.1";
export const NODE_NAME = "argo-s3-k8s";
export const PATH_ENV = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// ---------------------------------------------------------------------------
// small helpers

/**
 * execFile with a bounded time and an error that names the command and ends
 * with its stderr (not its stdout, which may be large).
 * @param {string} cmd @param {string[]} args
 * @param {{ cwd?: string, env?: NodeJS.ProcessEnv, timeoutMs?: number, input?: string | Buffer, what?: string }} [opts]
 * @returns {Promise<{ stdout: string, stderr: string }>}
 */
export async function run(cmd, args, opts = {}) {
  const timeout = opts.timeoutMs ?? 120_000;
  const p = execFileP(cmd, args, {
    cwd: opts.cwd,
    env: opts.env,
    timeout,
    maxBuffer: 256 * 1024 * 1024,
    encoding: "utf8",
  });
  if (opts.input !== undefined) {
    p.child.stdin?.on("error", () => undefined);
    p.child.stdin?.end(opts.input);
  }
  try {
    return await p;
  } catch (e) {
    const err = /** @type {Error & { stderr?: string, code?: unknown, killed?: boolean, signal?: string }} */ (e);
    const what = opts.what ?? `${cmd} ${args.join(" ")}`.slice(0, 300);
    const stderr = String(err.stderr ?? "")
      .trim()
      .split("\n")
      .slice(-15)
      .join("\n");
    const how = err.killed
      ? `timed out after ${Math.round(timeout / 1000)} s`
      : err.code === "ENOENT"
        ? `not found on PATH`
        : `failed (exit ${err.code ?? err.signal})`;
    throw new Error(`${what}: ${how}${stderr ? `\n${stderr}` : ""}`);
  }
}

/** @param {number} ms */
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** @param {string} cmd */
export function onPath(cmd) {
  for (const d of PATH_ENV.split(":").concat((process.env["PATH"] ?? "").split(":")))
    if (d && existsSync(join(d, cmd))) return join(d, cmd);
  return undefined;
}

/** sha256 of a file, streamed. @param {string} file @returns {Promise<string>} */
export function sha256File(file) {
  return new Promise((resolve, reject) => {
    const h = createHash("sha256");
    createReadStream(file)
      .on("data", (d) => h.update(d))
      .on("error", reject)
      .on("end", () => resolve(h.digest("hex")));
  });
}

/** Adds every file under `dir` (names and bytes, sorted) to `hash`. @param {import("node:crypto").Hash} hash @param {string} dir */
export function hashTree(hash, dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const p = join(dir, entry.name);
    hash.update(`${entry.name}\0`);
    if (entry.isDirectory()) hashTree(hash, p);
    else if (entry.isFile()) hash.update(readFileSync(p));
  }
}

/** The last `n` lines of a file, read from its end. @param {string} file @param {number} n */
export function tail(file, n) {
  let fd;
  try {
    fd = openSync(file, "r");
    const size = fstatSync(fd).size;
    const len = Math.min(size, 64 * 1024);
    const buf = Buffer.alloc(len);
    readSync(fd, buf, 0, len, size - len);
    return buf
      .toString("utf8")
      .split("\n")
      .slice(-n - 1)
      .map((l) => (l.length > 400 ? `${l.slice(0, 400)}…` : l))
      .join("\n")
      .trimEnd();
  } catch {
    return "";
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** @param {string} s */
export const shq = (s) => `'${s.replace(/'/g, `'\\''`)}'`;
