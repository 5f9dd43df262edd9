// @ts-check
// The figure a user feels: the same Workflows run by a real Argo (the cluster
// tier's one-node Kubernetes, Argo installed as the README says, MinIO on the
// node) once with Argo's built-in `s3:` driver and once with this plugin, in
// one run, alternating. Two Workflows, each a producing step and a consuming
// step whose artifact lives on an emptyDir volume (so no emissary gzip):
//   file  — a 1 GiB file (dd from /dev/urandom), archive none
//   dir   — a directory of 5,000 files of 4 KiB, archive none
// Per step: the node's wall time, and from the pod's container timestamps the
// part the artifact driver owns — the Save after main ends (wait container)
// and the Load before main starts (init containers) — and the pod start
// overhead (pod created → main running). Kubernetes timestamps have 1 s
// resolution: the medians of several rounds are reported.
//   npm run bench:argo [-- --rounds N]      (Linux, root; the cluster tier's setup)
// Results: bench/results/argo.json and a table on stdout.
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, release, totalmem } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { NAMESPACE } from "../lib/argo-install.mjs";
import { startArgoCluster } from "../lib/argo-cluster.mjs";
import { IMAGES, cannotRun } from "../lib/cluster.mjs";
import { ROOT, ToolError } from "../lib/tools.mjs";

const { values } = parseArgs({ options: { rounds: { type: "string", default: "3" } } });
const ROUNDS = Number(values.rounds);
const PLUGIN_IMAGE = "argo-s3-artifact-plugin:bench";

/** @typedef {{ endpoint: string, bucket: string, secret: string }} Store */

/** Where an artifact goes, for each driver. @param {"builtin" | "plugin"} driver @param {Store} s @param {string} key */
function location(driver, s, key) {
  const secrets = { accessKeySecret: { name: s.secret, key: "accesskey" }, secretKeySecret: { name: s.secret, key: "secretkey" } };
  if (driver === "builtin") return { s3: { endpoint: s.endpoint, bucket: s.bucket, insecure: true, key, ...secrets } };
  const configuration = [`endpoint: ${s.endpoint}`, `bucket: ${s.bucket}`, "insecure: true", `accessKeySecret: {name: ${s.secret}, key: accesskey}`, `secretKeySecret: {name: ${s.secret}, key: secretkey}`, ""].join("\n");
  return { plugin: { name: "s3", key, configuration } };
}

const CASES = {
  file: {
    produce: "dd if=/dev/urandom of=/work/out/blob bs=1M count=1024 2>/dev/null",
    consume: "test $(wc -c < /work/in/blob) -eq 1073741824",
  },
  dir: {
    produce: "mkdir -p /work/out/blob && cd /work/out/blob && i=0; while [ $i -lt 5000 ]; do printf '%4096d' $i > f$i; i=$((i+1)); done",
    consume: "test $(ls /work/in/blob | wc -l) -eq 5000",
  },
};

/** @param {keyof typeof CASES} which @param {"builtin" | "plugin"} driver @param {Store} s */
function workflow(which, driver, s) {
  const key = `bench/${driver}/${which}/{{workflow.name}}/blob`;
  const art = (/** @type {string} */ path) => ({ name: "blob", path, archive: { none: {} }, ...location(driver, s, key) });
  const c = CASES[which];
  return {
    apiVersion: "argoproj.io/v1alpha1",
    kind: "Workflow",
    metadata: { generateName: `bench-${which}-${driver}-` },
    spec: {
      entrypoint: "main",
      volumes: [{ name: "work", emptyDir: {} }],
      templates: [
        { name: "main", steps: [[{ name: "produce", template: "produce" }], [{ name: "consume", template: "consume" }]] },
        {
          name: "produce",
          container: { image: IMAGES.busybox, command: ["sh", "-c", c.produce], volumeMounts: [{ name: "work", mountPath: "/work/out" }] },
          outputs: { artifacts: [art("/work/out/blob")] },
        },
        {
          name: "consume",
          inputs: { artifacts: [art("/work/in/blob")] },
          container: { image: IMAGES.busybox, command: ["sh", "-c", c.consume], volumeMounts: [{ name: "work", mountPath: "/work/in" }] },
        },
      ],
    },
  };
}

const secs = (/** @type {string | undefined} */ a, /** @type {string | undefined} */ b) => (a && b ? (Date.parse(b) - Date.parse(a)) / 1000 : NaN);
const median = (/** @type {number[]} */ xs) => {
  const v = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  return v.length ? v[Math.floor((v.length - 1) / 2)] ?? NaN : NaN;
};

/**
 * @typedef {{ state?: { terminated?: { startedAt?: string, finishedAt?: string }, running?: { startedAt?: string } } }} CS
 * @typedef {{ name: string } & CS} NamedCS
 * @typedef {{ metadata: { name: string, creationTimestamp: string }, status: { initContainerStatuses?: NamedCS[], containerStatuses?: NamedCS[] } }} Pod
 */
const started = (/** @type {NamedCS | undefined} */ c) => c?.state?.terminated?.startedAt ?? c?.state?.running?.startedAt;
const finished = (/** @type {NamedCS | undefined} */ c) => c?.state?.terminated?.finishedAt;

/** Times of one run, in seconds. @param {Awaited<ReturnType<typeof startArgoCluster>>} env @param {string} name @param {import("../lib/argo-cluster.mjs").WorkflowStatus} status */
async function times(env, name, status) {
  /** @type {{ items: Pod[] }} */
  const pods = await env.kubectlJson(["-n", NAMESPACE, "get", "pods", "-l", `workflows.argoproj.io/workflow=${name}`]);
  const pod = (/** @type {string} */ t) => pods.items.find((p) => p.metadata.name.includes(`-${t}-`));
  const ctr = (/** @type {Pod | undefined} */ p, /** @type {string} */ n) => [...(p?.status.initContainerStatuses ?? []), ...(p?.status.containerStatuses ?? [])].find((c) => c.name === n);
  const node = (/** @type {string} */ t) => Object.values(status.nodes ?? {}).find((n) => n.templateName === t && n.type === "Pod");
  const p = pod("produce");
  const c = pod("consume");
  const inits = [...(c?.status.initContainerStatuses ?? [])];
  return {
    workflow: secs(status.startedAt, status.finishedAt),
    produceStep: secs(node("produce")?.startedAt, node("produce")?.finishedAt),
    consumeStep: secs(node("consume")?.startedAt, node("consume")?.finishedAt),
    // main ended → the wait container ended: the outputs' Save (the plugin sidecar's run included).
    save: secs(finished(ctr(p, "main")), finished(ctr(p, "wait"))),
    // first init container started → last ended: Argo's init and, with the plugin, init-artifact-s3 (its start and the Load).
    load: secs(inits.map(started).filter(Boolean).sort()[0], inits.map(finished).filter(Boolean).sort().at(-1)),
    // pod created → main running, for the consuming pod (the one with init containers).
    podStart: secs(c?.metadata.creationTimestamp, started(ctr(c, "main"))),
  };
}

async function main() {
  const why = cannotRun();
  if (why) throw new ToolError(`bench:argo cannot run here: ${why}`);
  const t0 = Date.now();
  const env = await startArgoCluster({ pluginImage: PLUGIN_IMAGE, executorMemory: "256Mi" });
  process.stdout.write(`cluster and Argo up in ${((Date.now() - t0) / 1000).toFixed(0)} s\n`);
  /** @type {Record<string, Record<string, ReturnType<typeof times> extends Promise<infer T> ? T[] : never>>} */
  const runs = { file: { builtin: [], plugin: [] }, dir: { builtin: [], plugin: [] } };
  try {
    for (let round = 0; round < ROUNDS; round++) {
      for (const which of /** @type {const} */ (["file", "dir"])) {
        const order = round % 2 === 0 ? /** @type {const} */ (["builtin", "plugin"]) : /** @type {const} */ (["plugin", "builtin"]);
        for (const driver of order) {
          const { name, status } = await env.runWorkflow(workflow(which, driver, env.store), NAMESPACE, 15 * 60_000);
          if (status.phase !== "Succeeded") throw new Error(`${name} (${which}, ${driver}) ${status.phase}\n${await env.diagnose(name)}`);
          const t = await times(env, name, status);
          runs[which]?.[driver]?.push(t);
          process.stdout.write(`round ${round + 1} ${which} ${driver}: ${JSON.stringify(t)}\n`);
          await env.cluster.kubectl(["-n", NAMESPACE, "delete", "wf", name, "--wait=false"]);
        }
      }
    }
  } finally {
    await env.stop();
  }
  const fields = /** @type {const} */ (["workflow", "produceStep", "save", "consumeStep", "load", "podStart"]);
  /** @type {Record<string, unknown>[]} */
  const rows = [];
  const lines = ["| case | measure (median s) | built-in s3: | plugin | plugin ÷ built-in |", "|---|---|---|---|---|"];
  for (const which of /** @type {const} */ (["file", "dir"])) {
    for (const f of fields) {
      const b = median((runs[which]?.["builtin"] ?? []).map((t) => t[f]));
      const p = median((runs[which]?.["plugin"] ?? []).map((t) => t[f]));
      rows.push({ case: which, measure: f, builtin: b, plugin: p });
      lines.push(`| ${which === "file" ? "1 GiB file" : "5,000 files × 4 KiB"} | ${f} | ${b} | ${p} | ${b > 0 ? (p / b).toFixed(2) : "—"} |`);
    }
  }
  process.stdout.write(`${lines.join("\n")}\n`);
  const dir = join(ROOT, "bench", "results");
  mkdirSync(dir, { recursive: true });
  const report = {
    at: new Date().toISOString(),
    machine: { cores: cpus().length, cpu: cpus()[0]?.model, memGiB: Math.round(totalmem() / 2 ** 30), kernel: release() },
    rounds: ROUNDS,
    executorMemoryLimit: "256Mi",
    rows,
    runs,
  };
  writeFileSync(join(dir, "argo.json"), `${JSON.stringify(report, null, 2)}\n`);
  process.stdout.write(`results: bench/results/argo.json\n`);
}

main().catch((e) => {
  process.stderr.write(`${e instanceof ToolError ? e.message : (e.stack ?? e)}\n`);
  process.exit(1);
});
