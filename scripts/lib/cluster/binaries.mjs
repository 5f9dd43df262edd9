// @ts-check
// The cluster's binaries: Kubernetes and Argo built from the Go module proxy (or Argo from a checkout, CLUSTER_ARGO_SRC), containerd 2 for image volumes; cached by the hash of every build input.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { ARGO_SYMLINKS, restoreArgoSymlinks } from "../argo-module.mjs";
import { ROOT, ToolError, cacheDir, publish, requireGo } from "../tools.mjs";
import { ARGO_MODULE, ARGO_VERSION, K8S_VERSION, RECIPE, run } from "./common.mjs";

/**
 * CLUSTER_ARGO_SRC: a checkout of argo-workflows (e.g. tag v4.1.2, which the Go
 * module proxy does not serve) to build Argo's three binaries from and install
 * from its manifests/, instead of v4.0.5 from the proxy. For developers who
 * have the source; CI never sets it, and nothing of it is kept in this repository.
 * @returns {{ dir: string, version: string, identity: string } | undefined}
 */
export function argoSource() {
  const dir = process.env["CLUSTER_ARGO_SRC"];
  if (!dir) return undefined;
  const abs = resolve(dir);
  if (!existsSync(join(abs, "cmd", "argoexec")) || !existsSync(join(abs, "manifests"))) {
    throw new ToolError(`CLUSTER_ARGO_SRC=${dir}: not a checkout of argo-workflows (no cmd/argoexec or manifests/)`);
  }
  const git = (/** @type {string[]} */ args) => execFileSync("git", ["-C", abs, ...args], { encoding: "utf8" }).trim();
  let version;
  let identity;
  try {
    version = git(["describe", "--tags", "--always"]);
    // The commit and any local change: a new build when either differs.
    // The commit, and the content of any file changed since (a checkout may lack blobs git cannot diff).
    const changed = git(["status", "--porcelain", "--untracked-files=no"]);
    const h = createHash("sha256").update(`${git(["rev-parse", "HEAD"])}\n${changed}\n`);
    for (const line of changed.split("\n")) {
      const f = join(abs, line.slice(3));
      if (line.length > 3 && existsSync(f) && statSync(f).isFile()) h.update(readFileSync(f));
    }
    identity = h.digest("hex");
  } catch (e) {
    throw new ToolError(
      `CLUSTER_ARGO_SRC=${dir}: git cannot describe it (${/** @type {Error} */ (e).message.split("\n")[0]}); a git checkout is needed to name the build`,
    );
  }
  return { dir: abs, version, identity };
}

/**
 * CLUSTER_ARGO_LAYOUT=initless: Argo's init-less pod layout (v4.1 and later, beta): the controller's
 * `initlessPod: {enabled: true}`, and what it needs from the node: Kubernetes image volumes (the
 * ImageVolume feature gate on the apiserver and kubelet) and a runtime that mounts them (containerd
 * 2.x, built from the module proxy; Debian's 1.6 cannot). Unset: Argo's default layout.
 */
export function argoLayout() {
  const v = process.env["CLUSTER_ARGO_LAYOUT"] ?? "";
  if (v === "" || v === "default") return "default";
  if (v === "initless") return "initless";
  throw new ToolError(`CLUSTER_ARGO_LAYOUT=${v}: one of default, initless`);
}

export const CONTAINERD2_MODULE = "github.com/containerd/containerd/v2";
export const CONTAINERD2_VERSION = "v2.2.9";
export const CONTAINERD2_COMMANDS = ["containerd", "containerd-shim-runc-v2", "ctr"];

/** containerd 2.x (containerd, its runc shim, ctr), static, from the Go module proxy; once per machine. @returns {Promise<string>} their folder */
export async function containerd2() {
  const dir = join(cacheDir(), "tools", `containerd-${CONTAINERD2_VERSION}`);
  if (CONTAINERD2_COMMANDS.every((c) => existsSync(join(dir, c)))) return dir;
  await requireGo("containerd 2 for image volumes (CLUSTER_ARGO_LAYOUT=initless)");
  process.stderr.write(
    `building containerd ${CONTAINERD2_VERSION} from the Go module proxy (image volumes): ~2 min of CPU, once per machine...\n`,
  );
  const tmp = mkdtempSync(join(tmpdir(), "containerd2-"));
  try {
    await run(
      "go",
      [
        "install",
        "-trimpath",
        "-tags",
        "no_btrfs no_devmapper no_zfs",
        ...CONTAINERD2_COMMANDS.map((c) => `${CONTAINERD2_MODULE}/cmd/${c}@${CONTAINERD2_VERSION}`),
      ],
      {
        cwd: tmp,
        env: { ...process.env, CGO_ENABLED: "0", GOBIN: join(tmp, "bin"), GOFLAGS: "-buildvcs=false" },
        timeoutMs: 30 * 60_000,
        what: `go install of containerd ${CONTAINERD2_VERSION}`,
      },
    );
    mkdirSync(dir, { recursive: true });
    for (const c of CONTAINERD2_COMMANDS) publish(join(tmp, "bin", c), join(dir, c));
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return dir;
}

/** The Argo version the cluster tier runs: CLUSTER_ARGO_SRC's tag, else the module proxy's v4.0.5. */
export const ARGO_RUN_VERSION = argoSource()?.version ?? ARGO_VERSION;

// ---------------------------------------------------------------------------
// binaries

export const BINARIES = /** @type {const} */ ({
  kubeApiserver: "kube-apiserver",
  kubeControllerManager: "kube-controller-manager",
  kubeScheduler: "kube-scheduler",
  kubelet: "kubelet",
  kubeProxy: "kube-proxy",
  kubectl: "kubectl",
  workflowController: "workflow-controller",
  argo: "argo",
  argoexec: "argoexec",
});
export const K8S_COMMANDS = [
  "kube-apiserver",
  "kube-controller-manager",
  "kube-scheduler",
  "kubelet",
  "kube-proxy",
  "kubectl",
];
export const ARGO_COMMANDS = ["argo", "argoexec", "workflow-controller"];

/** The cache directory of the cluster binaries: named by the hash of every build input. */
export function clusterBinariesDir() {
  const hash = createHash("sha256").update(
    `${RECIPE} ${K8S_VERSION} ${ARGO_MODULE}@${ARGO_VERSION} ${JSON.stringify(ARGO_SYMLINKS)}\n`,
  );
  for (const f of [
    "test/cluster/k8s/go.mod",
    "test/cluster/k8s/go.sum",
    "test/cluster/argo/go.mod",
    "test/cluster/argo/go.sum",
  ]) {
    hash.update(`${f}\0`).update(readFileSync(join(ROOT, f)));
  }
  return join(cacheDir(), "tools", `cluster-${hash.digest("hex").slice(0, 16)}`);
}

/** Where Argo's three binaries are: beside Kubernetes', or (CLUSTER_ARGO_SRC) per source tree. */
export function argoBinariesDir() {
  const src = argoSource();
  if (!src) return clusterBinariesDir();
  const hash = createHash("sha256").update(`${RECIPE} ${src.version}\n${src.identity}`);
  return join(cacheDir(), "tools", `argo-src-${hash.digest("hex").slice(0, 16)}`);
}

/**
 * Kubernetes' server binaries and kubectl (v1.33.13) and Argo's
 * workflow-controller, argo and argoexec (v4.0.5, or CLUSTER_ARGO_SRC's), all
 * static, built once per content of their inputs (minutes of CPU; the builds
 * run one after the other).
 * @returns {Promise<{ kubeApiserver: string, kubeControllerManager: string, kubeScheduler: string, kubelet: string, kubeProxy: string, kubectl: string, workflowController: string, argo: string, argoexec: string }>}
 */
export async function clusterBinaries() {
  const dir = clusterBinariesDir();
  const argoDir = argoBinariesDir();
  const isArgo = (/** @type {string} */ v) => ARGO_COMMANDS.includes(v);
  const out = /** @type {{ [K in keyof typeof BINARIES]: string }} */ (
    Object.fromEntries(Object.entries(BINARIES).map(([k, v]) => [k, join(isArgo(v) ? argoDir : dir, v)]))
  );
  const missing = (/** @type {string} */ d, /** @type {string[]} */ names) =>
    names.some((n) => !existsSync(join(d, n)));
  if (!missing(dir, K8S_COMMANDS) && !missing(argoDir, ARGO_COMMANDS)) return out;
  await requireGo("the cluster tier (Kubernetes and Argo)");
  mkdirSync(dir, { recursive: true });
  mkdirSync(argoDir, { recursive: true });
  const goOpts = (/** @type {string} */ cwd) => ({
    cwd,
    env: { ...process.env, CGO_ENABLED: "0", GOFLAGS: "-buildvcs=false" },
    timeoutMs: 60 * 60_000,
  });
  if (missing(dir, K8S_COMMANDS)) {
    process.stderr.write(
      `building Kubernetes ${K8S_VERSION} (${K8S_COMMANDS.join(", ")}) from the Go module proxy: ~10 min of CPU, once per machine...\n`,
    );
    const tmp = mkdtempSync(join(tmpdir(), "cluster-k8s-build-"));
    try {
      for (const f of ["go.mod", "go.sum"]) copyFileSync(join(ROOT, "test", "cluster", "k8s", f), join(tmp, f));
      const minor = /^v1\.(\d+)\./.exec(K8S_VERSION)?.[1] ?? "";
      const ldflags = `-X k8s.io/component-base/version.gitVersion=${K8S_VERSION} -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${minor}`;
      const t0 = Date.now();
      await run(
        "go",
        [
          "build",
          "-trimpath",
          "-ldflags",
          ldflags,
          "-o",
          `${join(tmp, "bin")}/`,
          ...K8S_COMMANDS.map((c) => `k8s.io/kubernetes/cmd/${c}`),
        ],
        { ...goOpts(tmp), what: `go build of Kubernetes ${K8S_VERSION} (in ${tmp})` },
      );
      for (const c of K8S_COMMANDS) publish(join(tmp, "bin", c), join(dir, c));
      process.stderr.write(`built Kubernetes in ${Math.round((Date.now() - t0) / 1000)} s\n`);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }
  if (missing(argoDir, ARGO_COMMANDS)) {
    const src = argoSource();
    if (src) await buildArgoFromSource(src, argoDir, goOpts(src.dir));
    else await buildArgoFromProxy(argoDir, goOpts);
  }
  return out;
}

/**
 * Argo v4.0.5 from the module proxy, through a vendored wrapper module, with the symlinks the zip dropped put back.
 * @param {string} dir @param {(cwd: string) => { cwd: string, env: NodeJS.ProcessEnv, timeoutMs: number }} goOpts
 */
export async function buildArgoFromProxy(dir, goOpts) {
  process.stderr.write(
    `building Argo ${ARGO_VERSION} (${ARGO_COMMANDS.join(", ")}) from the Go module proxy: ~6 min of CPU, once per machine...\n`,
  );
  const tmp = mkdtempSync(join(tmpdir(), "cluster-argo-build-"));
  try {
    for (const f of ["go.mod", "go.sum"]) copyFileSync(join(ROOT, "test", "cluster", "argo", f), join(tmp, f));
    const t0 = Date.now();
    // -e: the module zip lacks the UI bundle `argo` embeds; the placeholder below stands in for it.
    await run("go", ["mod", "vendor", "-e"], { ...goOpts(tmp), what: "go mod vendor of Argo's wrapper module" });
    const vendored = join(tmp, "vendor", ...ARGO_MODULE.split("/"));
    if (!existsSync(vendored)) throw new Error(`go mod vendor did not produce ${vendored}`);
    // The module zip also drops the repository's symlinks (argoexec's Linux process handling): Argo's own files back.
    restoreArgoSymlinks(vendored);
    placeholderUi(vendored);
    await run(
      "go",
      [
        "build",
        "-mod=vendor",
        "-trimpath",
        "-o",
        `${join(tmp, "bin")}/`,
        ...ARGO_COMMANDS.map((c) => `${ARGO_MODULE}/cmd/${c}`),
      ],
      { ...goOpts(tmp), what: `go build of Argo ${ARGO_VERSION} (in ${tmp})` },
    );
    for (const c of ARGO_COMMANDS) publish(join(tmp, "bin", c), join(dir, c));
    process.stderr.write(`built Argo in ${Math.round((Date.now() - t0) / 1000)} s\n`);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/**
 * Argo from a checkout (CLUSTER_ARGO_SRC), dependencies from the Go module proxy. The checkout
 * is left as it was: a placeholder UI is written only where none was built, and removed after.
 * @param {{ dir: string, version: string }} src @param {string} dir @param {{ cwd: string, env: NodeJS.ProcessEnv, timeoutMs: number }} opts
 */
export async function buildArgoFromSource(src, dir, opts) {
  process.stderr.write(
    `building Argo ${src.version} (${ARGO_COMMANDS.join(", ")}) from ${src.dir} (CLUSTER_ARGO_SRC): ~7 min of CPU, once per source...\n`,
  );
  const t0 = Date.now();
  const made = placeholderUi(src.dir);
  const tmp = mkdtempSync(join(tmpdir(), "cluster-argo-src-build-"));
  try {
    await run(
      "go",
      [
        "build",
        "-trimpath",
        "-ldflags",
        `-X ${ARGO_MODULE}.version=${src.version}`,
        "-o",
        `${tmp}/`,
        ...ARGO_COMMANDS.map((c) => `./cmd/${c}`),
      ],
      { ...opts, what: `go build of Argo ${src.version} in ${src.dir}` },
    );
    for (const c of ARGO_COMMANDS) publish(join(tmp, c), join(dir, c));
  } finally {
    if (made) rmSync(made, { recursive: true, force: true });
    rmSync(tmp, { recursive: true, force: true });
  }
  process.stderr.write(`built Argo ${src.version} in ${Math.round((Date.now() - t0) / 1000)} s\n`);
}

/**
 * `argo` embeds the UI bundle, which neither the module zip nor a plain checkout holds: a
 * placeholder page lets it compile (blank UI, working API). Returns the folder it made, if any.
 * @param {string} root @returns {string | undefined}
 */
export function placeholderUi(root) {
  const app = join(root, "ui", "dist", "app");
  if (existsSync(join(app, "index.html"))) return undefined;
  const made = existsSync(join(root, "ui", "dist")) ? app : join(root, "ui", "dist");
  mkdirSync(app, { recursive: true });
  writeFileSync(
    join(app, "index.html"),
    "<!doctype html><title>Argo</title><p>UI not built in the cluster tier; the API works.</p>\n",
  );
  return made;
}

/** @type {Promise<string> | undefined} */
export let argoModuleDirPromise;
/**
 * The directory of github.com/argoproj/argo-workflows/v4@v4.0.5 in the Go
 * module cache (downloaded if absent); its manifests/ holds Argo's install
 * manifests. Read-only, like everything in the module cache.
 * @returns {Promise<string>}
 */
export function argoModuleDir() {
  const src = argoSource();
  if (src) return Promise.resolve(src.dir);
  argoModuleDirPromise ??= (async () => {
    await requireGo("the cluster tier (Kubernetes and Argo)");
    const r = await run("go", ["mod", "download", "-json", `${ARGO_MODULE}@${ARGO_VERSION}`], {
      cwd: tmpdir(),
      env: { ...process.env, GOFLAGS: "-mod=mod" },
      timeoutMs: 10 * 60_000,
    });
    const info = /** @type {{ Dir?: string, Error?: string }} */ (JSON.parse(r.stdout));
    if (!info.Dir || !existsSync(join(info.Dir, "manifests")))
      throw new Error(
        `go mod download ${ARGO_MODULE}@${ARGO_VERSION} gave no module directory with manifests/: ${info.Error ?? r.stdout.slice(0, 300)}`,
      );
    return info.Dir;
  })();
  argoModuleDirPromise.catch(() => (argoModuleDirPromise = undefined));
  return argoModuleDirPromise;
}
