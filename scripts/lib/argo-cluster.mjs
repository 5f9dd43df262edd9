// @ts-check
// A running Argo in the one-node test cluster, with a MinIO it can reach: the
// cluster (scripts/lib/cluster.mjs), MinIO on the node's address inside the
// cluster's network namespace (pods reach it, the host's namespace does not),
// Argo installed as the README says (scripts/lib/argo-install.mjs) and the
// store's keys in a secret. Shared by the cluster tier (test/cluster) and the
// end-to-end benchmark (npm run bench:argo), with the helpers both use to
// submit Workflows and read objects back.
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { NAMESPACE, installArgo } from "./argo-install.mjs";
import * as clusterLib from "./cluster.mjs";
import { eventually } from "./eventually.mjs";
import { minioBinary } from "./tools.mjs";

const run = promisify(execFile);
const KEYS = { access: "cluster-tier", secret: "cluster-tier-secret-key" };

/**
 * @typedef {{ type: string, phase: string, message?: string, displayName: string, templateName?: string,
 *   startedAt?: string, finishedAt?: string,
 *   outputs?: { artifacts?: { name: string, plugin?: { key: string } }[] } }} WorkflowNode
 * @typedef {{ phase?: string, message?: string, startedAt?: string, finishedAt?: string, nodes?: Record<string, WorkflowNode> }} WorkflowStatus
 * @typedef {{ endpoint: string, bucket: string, secret: string }} Store
 */

/**
 * @param {{ pluginImage: string, executorMemory?: string }} opts
 */
export async function startArgoCluster(opts) {
  const images = await clusterLib.clusterImages(opts.pluginImage);
  // CLUSTER_ARGO_LAYOUT=initless: Argo's init-less pod layout, on a node with image volumes.
  const initless = clusterLib.argoLayout() === "initless";
  const cluster = await clusterLib.startCluster({ images, imageVolumes: initless });
  /** @type {import("node:child_process").ChildProcess | undefined} */
  let minio;
  /** @type {{ cleanup: () => void } | undefined} */
  let install;
  const minioDir = mkdtempSync(join(tmpdir(), "cluster-minio-"));
  const stop = async () => {
    minio?.kill("SIGKILL");
    await cluster.stop();
    install?.cleanup();
    rmSync(minioDir, { recursive: true, force: true });
  };
  try {
    /** @type {Store} */
    const store = { endpoint: `${cluster.nodeIP}:9000`, bucket: "argo", secret: "minio-keys" };

    /** curl inside the cluster's network namespace, SigV4-signed for MinIO. @param {string} method @param {string} path @returns {Promise<Buffer>} */
    const s3 = async (method, path) => {
      const r = await run(
        "ip",
        [
          "netns",
          "exec",
          cluster.netns,
          "curl",
          "-sS",
          "--fail-with-body",
          "-X",
          method,
          "--aws-sigv4",
          "aws:amz:us-east-1:s3",
          "--user",
          `${KEYS.access}:${KEYS.secret}`,
          `http://${store.endpoint}${path}`,
        ],
        { encoding: "buffer", maxBuffer: 2 ** 31 - 1, timeout: 120_000 },
      );
      return r.stdout;
    };
    /** @param {string} key */
    const objectBytes = (key) => s3("GET", `/${store.bucket}/${key.split("/").map(encodeURIComponent).join("/")}`);
    /** Keys under a prefix (first 1,000). @param {string} prefix */
    const keysUnder = async (prefix) => {
      const xml = (await s3("GET", `/${store.bucket}?list-type=2&prefix=${encodeURIComponent(prefix)}`)).toString();
      return [...xml.matchAll(/<Key>([^<]*)<\/Key>/g)].map((m) => /** @type {string} */ (m[1]));
    };
    /** @template T @param {string[]} args @returns {Promise<T>} */
    const kubectlJson = async (args) => JSON.parse((await cluster.kubectl([...args, "-o", "json"])).stdout);

    /** Everything a failing Workflow left: node messages and every container's log. @param {string} name @param {string} [ns] */
    const diagnose = async (name, ns = NAMESPACE) => {
      const lines = [];
      /** @type {{ status: WorkflowStatus }} */
      const wf = await kubectlJson(["-n", ns, "get", "wf", name]).catch((/** @type {Error} */ e) => ({
        status: { message: e.message },
      }));
      lines.push(`workflow ${name}: ${wf.status.phase} ${wf.status.message ?? ""}`);
      for (const n of Object.values(wf.status.nodes ?? {}))
        lines.push(`  node ${n.displayName}: ${n.phase} ${n.message ?? ""}`);
      /** @type {{ items: { metadata: { name: string }, spec: { initContainers?: { name: string }[], containers: { name: string }[] } }[] }} */
      const pods = await kubectlJson(["-n", ns, "get", "pods", "-l", `workflows.argoproj.io/workflow=${name}`]).catch(
        () => ({ items: [] }),
      );
      for (const p of pods.items) {
        for (const c of [...(p.spec.initContainers ?? []), ...p.spec.containers]) {
          const log = await cluster.kubectl(["-n", ns, "logs", p.metadata.name, "-c", c.name, "--tail=30"]).then(
            (r) => r.stdout,
            (/** @type {Error} */ e) => e.message,
          );
          lines.push(`--- ${p.metadata.name}/${c.name}\n${log}`);
        }
      }
      return lines.join("\n");
    };

    /**
     * Submits a Workflow and waits for it to end; returns its name and status.
     * @param {Record<string, unknown>} doc @param {string} [ns] @param {number} [timeoutMs]
     * @returns {Promise<{ name: string, status: WorkflowStatus }>}
     */
    const runWorkflow = async (doc, ns = NAMESPACE, timeoutMs = 240_000) => {
      const created = await cluster.kubectl(["-n", ns, "create", "-o", "jsonpath={.metadata.name}", "-f", "-"], {
        input: JSON.stringify(doc),
      });
      const name = created.stdout.trim();
      /** @type {WorkflowStatus} */
      let status = {};
      await eventually(
        `Workflow ${name} to end`,
        async () => {
          /** @type {{ status?: WorkflowStatus }} */
          const wf = await kubectlJson(["-n", ns, "get", "wf", name]);
          status = wf.status ?? {};
          return ["Succeeded", "Failed", "Error"].includes(status.phase ?? "");
        },
        timeoutMs,
      ).catch(async (/** @type {Error} */ e) => {
        throw new Error(`${e.message}\n${await diagnose(name, ns)}`);
      });
      return { name, status };
    };

    // In the cluster's namespace and cgroup: the cluster's stop() ends it too.
    minio = cluster.spawn(
      await minioBinary(),
      ["server", minioDir, "--address", store.endpoint, "--console-address", `${cluster.nodeIP}:9001`, "--quiet"],
      {
        env: {
          PATH: process.env["PATH"] ?? "",
          HOME: minioDir,
          MINIO_ROOT_USER: KEYS.access,
          MINIO_ROOT_PASSWORD: KEYS.secret,
          MINIO_BROWSER: "off",
          MINIO_UPDATE: "off",
        },
      },
    );
    await eventually(
      "MinIO in the cluster's namespace",
      async () => {
        await s3("PUT", `/${store.bucket}`).catch(() => undefined);
        await s3("HEAD", `/${store.bucket}`);
        return true;
      },
      60_000,
      250,
    );
    install = await installArgo(cluster, {
      argoModule: await clusterLib.argoModuleDir(),
      pluginImage: opts.pluginImage,
      executorMemory: opts.executorMemory ?? "256Mi",
      workflowSecrets: [store.secret],
      ...(initless ? { controllerConfig: "  initlessPod: |\n    enabled: true" } : {}),
    });
    await cluster.kubectl([
      "-n",
      NAMESPACE,
      "create",
      "secret",
      "generic",
      store.secret,
      `--from-literal=accesskey=${KEYS.access}`,
      `--from-literal=secretkey=${KEYS.secret}`,
    ]);
    /** MinIO's root keys and URL inside the cluster's namespace (for stand-ins that mint credentials from it). */
    const minioAccess = { url: `http://${store.endpoint}`, accessKey: KEYS.access, secretKey: KEYS.secret };
    return { cluster, store, minioAccess, s3, objectBytes, keysUnder, kubectlJson, diagnose, runWorkflow, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}
