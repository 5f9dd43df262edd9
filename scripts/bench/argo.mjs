// @ts-check
// The figure a user feels: the same Workflows run by a real Argo (the cluster
// tier's one-node Kubernetes, Argo installed as the README says, MinIO on the
// node) once with Argo's built-in `s3:` driver and once with this plugin, in
// one run, alternating which goes first. Cases:
//   file    — a 1 GiB file (dd from /dev/urandom) on an emptyDir, archive none
//   dir     — a directory of 5,000 files of 4 KiB on an emptyDir, archive none
//   fanout  — 8 steps × 128 MiB in parallel, joined by one step that loads all eight
//   small   — a 1 KiB input: what a step with a small input pays to start
//   rootfs  — a 512 MiB output on the main container's own filesystem (not a
//             volume: Argo's emissary copies it out), loaded by the next step
// Profiles: `loopback` (pods reach MinIO directly) and `s3-like` (every pod
// reaches MinIO only through bench/link on the node, shaped like S3 from
// inside a region: the same link and figures as `npm run bench`).
// Times per step, with millisecond resolution from the containers' own log
// lines (`kubectl logs --timestamps`): the Save (wait container: main done →
// its last line), the Load (first line of the consuming pod's first init
// container → last line of its last one), and for the plugin the init
// container's own run (argoexec's "starting command", i.e. the plugin's exec,
// → its last line). The node's wall time and pod start (created → main
// running) come from Kubernetes' whole-second timestamps; medians of rounds.
//   npm run bench:argo [-- --profile loopback|s3-like] [--rounds N] [--cases file,dir,...]
// BENCH_ARGO_LOGS=<dir> keeps every container's timed log of every run there.
// Results: bench/results/argo-<profile>.json, a table on stdout, and a last line
// `bench:argo <profile>: save-1gib 3.4x ...` (built-in ÷ plugin time, larger is
// better; fanout-wall is plugin ÷ built-in).
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, release, totalmem } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { NAMESPACE } from "../lib/argo-install.mjs";
import { startArgoCluster } from "../lib/argo-cluster.mjs";
import { ARGO_RUN_VERSION, IMAGES, cannotRun } from "../lib/cluster.mjs";
import { eventually } from "../lib/eventually.mjs";
import { PROFILES, linkArgs, linkBinary } from "../lib/link.mjs";
import { ROOT, ToolError } from "../lib/tools.mjs";

const ALL_CASES = ["small", "file", "rootfs", "fanout", "dir"];
const { values } = parseArgs({ options: { rounds: { type: "string", default: "3" }, profile: { type: "string", default: "loopback" }, cases: { type: "string", default: ALL_CASES.join(",") } } });
const ROUNDS = Number(values.rounds);
const LOGS_DIR = process.env["BENCH_ARGO_LOGS"];
const PROFILE = PROFILES[values.profile ?? ""];
if (!PROFILE) throw new ToolError(`--profile ${values.profile}: one of ${Object.keys(PROFILES).join(", ")}`);
const CASES = (values.cases ?? "").split(",").filter(Boolean);
for (const c of CASES) if (!ALL_CASES.includes(c)) throw new ToolError(`--cases: ${c} is not one of ${ALL_CASES.join(", ")}`);
const PLUGIN_IMAGE = "argo-s3-artifact-plugin:bench";
const MiB = 1024 * 1024;

/** @typedef {{ endpoint: string, bucket: string, secret: string }} Store */
/** @typedef {"builtin" | "plugin"} Driver */

/** Where an artifact goes, for each driver. @param {Driver} driver @param {Store} s @param {string} key */
function location(driver, s, key) {
  const secrets = { accessKeySecret: { name: s.secret, key: "accesskey" }, secretKeySecret: { name: s.secret, key: "secretkey" } };
  if (driver === "builtin") return { s3: { endpoint: s.endpoint, bucket: s.bucket, insecure: true, key, ...secrets } };
  const configuration = [`endpoint: ${s.endpoint}`, `bucket: ${s.bucket}`, "insecure: true", `accessKeySecret: {name: ${s.secret}, key: accesskey}`, `secretKeySecret: {name: ${s.secret}, key: secretkey}`, ""].join("\n");
  return { plugin: { name: "s3", key, configuration } };
}

const dd = (/** @type {string} */ path, /** @type {number} */ mib) => `dd if=/dev/urandom of=${path} bs=1M count=${mib} 2>/dev/null`;
const sizeIs = (/** @type {string} */ path, /** @type {number} */ bytes) => `test $(wc -c < ${path}) -eq ${bytes}`;

/** Two-step cases: what produce writes (and where), what consume checks. */
const PAIRS = {
  file: { produce: dd("/work/out/blob", 1024), consume: sizeIs("/work/in/blob", 1024 * MiB), onVolume: true },
  dir: {
    produce: "mkdir -p /work/out/blob && cd /work/out/blob && i=0; while [ $i -lt 5000 ]; do printf '%4096d' $i > f$i; i=$((i+1)); done",
    consume: "test $(ls /work/in/blob | wc -l) -eq 5000",
    onVolume: true,
  },
  small: { produce: "head -c 1024 /dev/urandom > /work/out/blob", consume: sizeIs("/work/in/blob", 1024), onVolume: true },
  rootfs: { produce: dd("/blob", 512), consume: sizeIs("/work/in/blob", 512 * MiB), onVolume: false },
};

/** @param {string} which @param {Driver} driver @param {Store} s */
function workflow(which, driver, s) {
  const key = (/** @type {string} */ part) => `bench/${driver}/${which}/{{workflow.name}}/${part}`;
  const art = (/** @type {string} */ name, /** @type {string} */ path, /** @type {string} */ k) => ({ name, path, archive: { none: {} }, ...location(driver, s, k) });
  const work = (/** @type {string} */ at) => ({ volumeMounts: [{ name: "work", mountPath: at }] });
  const base = (/** @type {unknown[]} */ templates) => ({
    apiVersion: "argoproj.io/v1alpha1",
    kind: "Workflow",
    metadata: { generateName: `bench-${which}-${driver}-` },
    spec: { entrypoint: "main", volumes: [{ name: "work", emptyDir: {} }], templates },
  });
  if (which === "fanout") {
    const n = 8;
    return base([
      { name: "main", steps: [Array.from({ length: n }, (_, i) => ({ name: `produce-${i}`, template: "produce", arguments: { parameters: [{ name: "i", value: String(i) }] } })), [{ name: "consume", template: "consume" }]] },
      {
        name: "produce",
        inputs: { parameters: [{ name: "i" }] },
        container: { image: IMAGES.busybox, command: ["sh", "-c", dd("/work/out/blob", 128)], ...work("/work/out") },
        outputs: { artifacts: [art("blob", "/work/out/blob", key("p{{inputs.parameters.i}}"))] },
      },
      {
        name: "consume",
        inputs: { artifacts: Array.from({ length: n }, (_, i) => art(`blob${i}`, `/work/in/b${i}`, key(`p${i}`))) },
        container: { image: IMAGES.busybox, command: ["sh", "-c", Array.from({ length: n }, (_, i) => sizeIs(`/work/in/b${i}`, 128 * MiB)).join(" && ")], ...work("/work/in") },
      },
    ]);
  }
  const c = PAIRS[/** @type {keyof typeof PAIRS} */ (which)];
  return base([
    { name: "main", steps: [[{ name: "produce", template: "produce" }], [{ name: "consume", template: "consume" }]] },
    {
      name: "produce",
      container: { image: IMAGES.busybox, command: ["sh", "-c", c.produce], ...(c.onVolume ? work("/work/out") : {}) },
      outputs: { artifacts: [art("blob", c.onVolume ? "/work/out/blob" : "/blob", key("blob"))] },
    },
    { name: "consume", inputs: { artifacts: [art("blob", "/work/in/blob", key("blob"))] }, container: { image: IMAGES.busybox, command: ["sh", "-c", c.consume], ...work("/work/in") } },
  ]);
}

const secs = (/** @type {string | undefined} */ a, /** @type {string | undefined} */ b) => (a && b ? (Date.parse(b) - Date.parse(a)) / 1000 : NaN);
const median = (/** @type {number[]} */ xs) => {
  const v = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (!v.length) return NaN;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 ? (v[mid] ?? NaN) : ((v[mid - 1] ?? NaN) + (v[mid] ?? NaN)) / 2;
};

/**
 * @typedef {{ state?: { terminated?: { startedAt?: string, finishedAt?: string }, running?: { startedAt?: string } } }} CS
 * @typedef {{ name: string } & CS} NamedCS
 * @typedef {{ metadata: { name: string, creationTimestamp: string }, spec: { initContainers?: { name: string }[] }, status: { initContainerStatuses?: NamedCS[], containerStatuses?: NamedCS[] } }} Pod
 * @typedef {Awaited<ReturnType<typeof startArgoCluster>>} Env
 */
const started = (/** @type {NamedCS | undefined} */ c) => c?.state?.terminated?.startedAt ?? c?.state?.running?.startedAt;

/** A container's log lines with the runtime's nanosecond timestamps: [ms since epoch, text]. @param {Env} env @param {string} pod @param {string} container @returns {Promise<[number, string][]>} */
async function timedLog(env, pod, container) {
  const out = await env.cluster.kubectl(["-n", NAMESPACE, "logs", pod, "-c", container, "--timestamps"]).then((r) => r.stdout, () => "");
  return out
    .split("\n")
    .filter(Boolean)
    .map((l) => {
      const cut = l.indexOf(" ");
      return /** @type {[number, string]} */ ([Date.parse(l.slice(0, cut)), l.slice(cut + 1)]);
    })
    .filter(([t]) => !Number.isNaN(t));
}

/** Times of one run, in seconds (initPluginMs in ms). @param {Env} env @param {string} name @param {import("../lib/argo-cluster.mjs").WorkflowStatus} status */
async function times(env, name, status) {
  /** @type {{ items: Pod[] }} */
  const pods = await env.kubectlJson(["-n", NAMESPACE, "get", "pods", "-l", `workflows.argoproj.io/workflow=${name}`]);
  const producers = pods.items.filter((p) => /-produce(-\d+)?-/.test(p.metadata.name));
  const c = pods.items.find((p) => p.metadata.name.includes("-consume-"));
  const ctr = (/** @type {Pod | undefined} */ p, /** @type {string} */ n) => [...(p?.status.initContainerStatuses ?? []), ...(p?.status.containerStatuses ?? [])].find((x) => x.name === n);
  const nodes = (/** @type {string} */ t) => Object.values(status.nodes ?? {}).filter((n) => n.templateName === t && n.type === "Pod");
  const span = (/** @type {string} */ t) => Math.max(...nodes(t).map((n) => secs(n.startedAt, n.finishedAt)));
  // Save: the wait container from main's end (its "main container completed" line) to its last line; the slowest producer.
  const saves = await Promise.all(
    producers.map(async (p) => {
      const wait = await timedLog(env, p.metadata.name, "wait");
      const from = wait.find(([, l]) => /main container .*(completed|finished|exited)|Main container completed/i.test(l))?.[0] ?? Date.parse(ctr(p, "main")?.state?.terminated?.finishedAt ?? "");
      return ((wait.at(-1)?.[0] ?? NaN) - from) / 1000;
    }),
  );
  // Load: the consuming pod's init containers, first line of the first to last line of the last.
  const initNames = (c?.spec.initContainers ?? []).map((x) => x.name);
  const initLogs = await Promise.all(initNames.map((n) => timedLog(env, c?.metadata.name ?? "", n)));
  const allInit = initLogs.flat().map(([t]) => t);
  const pluginInit = initLogs[initNames.indexOf("init-artifact-s3")] ?? [];
  const exec = pluginInit.find(([, l]) => l.includes("starting command"))?.[0];
  return {
    workflow: secs(status.startedAt, status.finishedAt),
    produceStep: Math.max(...["produce", ...[0, 1, 2, 3, 4, 5, 6, 7].map((i) => `produce-${i}`)].map((t) => (nodes(t).length ? span(t) : -Infinity))),
    save: Math.max(...saves),
    consumeStep: span("consume"),
    load: allInit.length ? (Math.max(...allInit) - Math.min(...allInit)) / 1000 : NaN,
    // pod created → main running, for the consuming pod (the one with init containers).
    podStart: secs(c?.metadata.creationTimestamp, started(ctr(c, "main"))),
    // The plugin's exec (argoexec's "starting command") → the init container's last line.
    initPluginMs: exec === undefined ? NaN : (pluginInit.at(-1)?.[0] ?? NaN) - exec,
  };
}

/** Every container's log of a run's pods, with the runtime's timestamps, one file each (BENCH_ARGO_LOGS). @param {Env} env @param {string} name @param {string} dir */
async function keepLogs(env, name, dir) {
  /** @type {{ items: Pod[] }} */
  const pods = await env.kubectlJson(["-n", NAMESPACE, "get", "pods", "-l", `workflows.argoproj.io/workflow=${name}`]);
  mkdirSync(dir, { recursive: true });
  for (const p of pods.items)
    for (const c of [...(p.status.initContainerStatuses ?? []), ...(p.status.containerStatuses ?? [])]) {
      const lines = await timedLog(env, p.metadata.name, c.name);
      writeFileSync(join(dir, `${p.metadata.name}.${c.name}.log`), lines.map(([t, l]) => `${new Date(t).toISOString()} ${l}\n`).join(""));
    }
}

/** @param {Env} env @returns {Promise<{ store: Store, stop: () => void }>} */
async function storeFor(env) {
  if (PROFILE.rttMs === 0 && PROFILE.connMBps === 0) return { store: env.store, stop: () => undefined };
  // The link on the node, in the cluster's namespace: pods reach MinIO only through it.
  const listen = `${env.cluster.nodeIP}:9100`;
  const link = env.cluster.spawn(await linkBinary(), linkArgs(PROFILE, listen, env.store.endpoint), { env: { PATH: process.env["PATH"] ?? "" } });
  let out = "";
  link.stdout?.on("data", (/** @type {Buffer} */ b) => (out += b.toString()));
  await eventually("bench/link on the node", async () => out.includes("listening"), 30_000, 100);
  return { store: { ...env.store, endpoint: listen }, stop: () => link.kill("SIGKILL") };
}

async function main() {
  const why = cannotRun();
  if (why) throw new ToolError(`bench:argo cannot run here: ${why}`);
  const t0 = Date.now();
  const env = await startArgoCluster({ pluginImage: PLUGIN_IMAGE, executorMemory: "256Mi" });
  process.stdout.write(`cluster and Argo ${ARGO_RUN_VERSION} up in ${((Date.now() - t0) / 1000).toFixed(0)} s; profile ${PROFILE.name}: ${PROFILE.note}\n`);
  /** @type {Record<string, Record<Driver, Awaited<ReturnType<typeof times>>[]>>} */
  const runs = Object.fromEntries(CASES.map((c) => [c, { builtin: [], plugin: [] }]));
  const { store, stop: stopLink } = await storeFor(env);
  try {
    for (let round = 0; round < ROUNDS; round++) {
      for (const which of CASES) {
        /** @type {Driver[]} */
        const order = round % 2 === 0 ? ["builtin", "plugin"] : ["plugin", "builtin"];
        for (const driver of order) {
          const { name, status } = await env.runWorkflow(workflow(which, driver, store), NAMESPACE, 40 * 60_000);
          if (status.phase !== "Succeeded") throw new Error(`${name} (${which}, ${driver}) ${status.phase}\n${await env.diagnose(name)}`);
          const t = await times(env, name, status);
          if (LOGS_DIR) await keepLogs(env, name, join(LOGS_DIR, `${round + 1}-${which}-${driver}`));
          runs[which]?.[driver]?.push(t);
          process.stdout.write(`round ${round + 1} ${which} ${driver}: ${JSON.stringify(t)}\n`);
          await env.cluster.kubectl(["-n", NAMESPACE, "delete", "wf", name, "--wait=false"]);
        }
      }
    }
  } finally {
    stopLink();
    await env.stop();
  }
  const fields = /** @type {const} */ (["workflow", "produceStep", "save", "consumeStep", "load", "podStart", "initPluginMs"]);
  const label = { file: "1 GiB file", dir: "5,000 files × 4 KiB", fanout: "fan-out 8 × 128 MiB + join", small: "1 KiB input", rootfs: "512 MiB output on the container's filesystem" };
  /** @type {Record<string, unknown>[]} */
  const rows = [];
  const lines = [`| case | measure (median ${PROFILE.name}) | built-in s3: | plugin | built-in ÷ plugin |`, "|---|---|---|---|---|"];
  const med = (/** @type {string} */ which, /** @type {Driver} */ d, /** @type {typeof fields[number]} */ f) => median((runs[which]?.[d] ?? []).map((t) => t[f]));
  for (const which of CASES) {
    for (const f of fields) {
      const b = med(which, "builtin", f);
      const p = med(which, "plugin", f);
      if (Number.isNaN(b) && Number.isNaN(p)) continue;
      rows.push({ case: which, measure: f, builtin: b, plugin: p });
      const unit = f === "initPluginMs" ? " ms" : " s";
      const show = (/** @type {number} */ x) => (Number.isNaN(x) ? "—" : `${f === "initPluginMs" ? Math.round(x) : x.toFixed(2)}${unit}`);
      lines.push(`| ${label[/** @type {keyof typeof label} */ (which)]} | ${f} | ${show(b)} | ${show(p)} | ${b > 0 && p > 0 ? `${(b / p).toFixed(2)}×` : "—"} |`);
    }
  }
  process.stdout.write(`${lines.join("\n")}\n`);
  const dir = join(ROOT, "bench", "results");
  mkdirSync(dir, { recursive: true });
  const report = {
    at: new Date().toISOString(),
    argo: ARGO_RUN_VERSION,
    profile: PROFILE,
    machine: { cores: cpus().length, cpu: cpus()[0]?.model, memGiB: Math.round(totalmem() / 2 ** 30), kernel: release() },
    rounds: ROUNDS,
    executorMemoryLimit: "256Mi",
    rows,
    runs,
  };
  writeFileSync(join(dir, `argo-${PROFILE.name}.json`), `${JSON.stringify(report, null, 2)}\n`);
  process.stdout.write(`results: bench/results/argo-${PROFILE.name}.json\n`);
  const ratio = (/** @type {string} */ which, /** @type {typeof fields[number]} */ f, invert = false) => {
    const b = med(which, "builtin", f);
    const p = med(which, "plugin", f);
    return b > 0 && p > 0 ? `${(invert ? p / b : b / p).toFixed(2)}x` : "n/a";
  };
  const summary = [
    ["save-1gib", ratio("file", "save")],
    ["load-1gib", ratio("file", "load")],
    ["save-files", ratio("dir", "save")],
    ["load-files", ratio("dir", "load")],
    ["fanout-wall", ratio("fanout", "workflow", true)],
    ["small-step", ratio("small", "consumeStep")],
    ["rootfs-save", ratio("rootfs", "save")],
    ["init-plugin-ms", String(Math.round(med("small", "plugin", "initPluginMs")))],
  ];
  process.stdout.write(`bench:argo ${PROFILE.name}: ${summary.map(([k, v]) => `${k} ${v}`).join(" ")}\n`);
}

main().catch((e) => {
  process.stderr.write(`${e instanceof ToolError ? e.message : (e.stack ?? e)}\n`);
  process.exit(1);
});
