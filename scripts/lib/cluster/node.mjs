// @ts-check
// Starting and stopping the one-node cluster (see ../cluster.mjs for its isolation and teardown).
import { execFileSync, spawn } from "node:child_process";
import {
  chmodSync,
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readdirSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { ToolError } from "../tools.mjs";
import {
  CNI_BIN_DIR,
  NODE_CIDR,
  NODE_IP,
  NODE_NAME,
  PATH_ENV,
  POD_CIDR,
  SERVICE_CIDR,
  onPath,
  run,
  shq,
  sleep,
  tail,
} from "./common.mjs";
import { clusterBinaries, containerd2 } from "./binaries.mjs";
import { IMAGES, normalizeRef, pauseImage } from "./images.mjs";
import {
  HOST_PACKAGES,
  cannotRun,
  cgroupHierarchies,
  ensureHostPackages,
  hostKubeChains,
  isMountPoint,
  readSysctls,
} from "./host.mjs";
import { kubeconfig, makePki } from "./pki.mjs";

/** @type {Set<() => void>} */
export const liveClusters = new Set();
/** @type {((signal: NodeJS.Signals) => void) | undefined} */
export let onSignal;
export function onExit() {
  for (const stopSync of [...liveClusters]) stopSync();
}

/** Teardown hooks for process exit and SIGINT/SIGTERM/SIGHUP while a cluster lives; the signal is re-raised after. */
export function trackCluster(/** @type {() => void} */ stopSync) {
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
export function untrackAll() {
  process.off("exit", onExit);
  if (onSignal)
    for (const s of /** @type {NodeJS.Signals[]} */ (["SIGINT", "SIGTERM", "SIGHUP"])) process.off(s, onSignal);
  onSignal = undefined;
}
export function untrackCluster(/** @type {() => void} */ stopSync) {
  liveClusters.delete(stopSync);
  if (liveClusters.size === 0) untrackAll();
}

export let clusterCount = 0;

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
