// @ts-check
// What the cluster needs of the host and gives back: Debian packages (never installed without the opt-in), and the kernel settings, cgroups, mounts and iptables chains it may change, recorded and restored.
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { ToolError } from "../tools.mjs";
import { onPath, run } from "./common.mjs";

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
export const PACKAGE_COMMANDS = {
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

/** Kernel settings the kubelet (and, in the host namespace, CNI or kube-proxy) may change: recorded, restored. */
export const SYSCTLS = [
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
export function readSysctls() {
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
export function cgroupHierarchies() {
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
export function isMountPoint(path) {
  return readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .some((l) => l.split(" ")[4] === path);
}

/** iptables chains named KUBE-* in the host's namespace, as "tool table chain". */
export function hostKubeChains() {
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
