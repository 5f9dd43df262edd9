// @ts-check
// Finds or builds the external tools the tests, the demo and the benchmark
// need. Versions come from tools/versions.env; built binaries are cached per
// machine (they take minutes to build) under ~/.cache/argo-s3-artifact-plugin.
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const run = promisify(execFile);
export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

/** @returns {Record<string, string>} */
export function toolVersions() {
  /** @type {Record<string, string>} */
  const out = {};
  for (const line of readFileSync(join(ROOT, "tools", "versions.env"), "utf8").split("\n")) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (m && m[1] && m[2] !== undefined) out[m[1]] = m[2];
  }
  return out;
}

export function cacheDir() {
  const base = process.env["XDG_CACHE_HOME"] || join(homedir(), ".cache");
  return join(base, "argo-s3-artifact-plugin");
}

/**
 * `go install module@version` into a versioned cache directory, once.
 * @param {string} module @param {string} version @param {string} binary
 */
export async function goInstall(module, version, binary) {
  const dir = join(cacheDir(), "tools", `${binary}-${version}`);
  const bin = join(dir, binary);
  if (existsSync(bin)) return bin;
  mkdirSync(dir, { recursive: true });
  process.stderr.write(`building ${module}@${version} with go install (minutes, once per machine)...\n`);
  await run("go", ["install", `${module}@${version}`], {
    env: { ...process.env, GOBIN: dir, GOFLAGS: "-buildvcs=false" },
    maxBuffer: 64 * 1024 * 1024,
    timeout: 30 * 60_000,
  });
  if (!existsSync(bin)) throw new Error(`go install ${module}@${version} did not produce ${bin}`);
  return bin;
}

/** MINIO_BIN if set, else the pinned build (built on first use). */
export async function minioBinary() {
  const fromEnv = process.env["MINIO_BIN"];
  if (fromEnv) {
    if (!existsSync(fromEnv)) throw new Error(`MINIO_BIN=${fromEnv} does not exist`);
    return fromEnv;
  }
  const v = toolVersions();
  return goInstall(v["MINIO_MODULE"] ?? "github.com/minio/minio", v["MINIO_VERSION"] ?? "", "minio");
}
