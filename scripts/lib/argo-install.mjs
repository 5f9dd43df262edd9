// @ts-check
// Argo Workflows installed into the test cluster the way the README tells an
// operator to: Argo's own manifests (cluster-install, from the Go module zip,
// the same tree Argo's release install.yaml is rendered from), our deploy/
// Component and the README's overlay as printed, applied with the README's
// command (kubectl apply --server-side -k). The only edits are what a
// registry-less cluster needs: the overlay's remote install.yaml becomes the
// local manifests, Argo's images point at images the setup built, and the test
// patch (below, kept apart from the overlay) speeds the controller up and turns
// argo-server's auth to `server` so the test can call its API.
import {
  cpSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
  chmodSync,
  readdirSync,
  statSync,
} from "node:fs";
import { execFile } from "node:child_process";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { promisify } from "node:util";
import { stringify } from "yaml";
import { IMAGES, splitRef } from "./cluster.mjs";
import { ROOT, helmWithPostRenderer } from "./tools.mjs";

const run = promisify(execFile);

export const NAMESPACE = "argo";
/** Argo's images as the cluster setup builds and imports them. */
export const ARGO_IMAGES = { controller: IMAGES.workflowController, cli: IMAGES.argoCli, exec: IMAGES.argoexec };

/**
 * A ```yaml block of the README whose first line is `firstLine`, exactly as
 * printed, without the list indentation (the fence's) and without that line.
 * @param {string} firstLine
 */
export function readmeYaml(firstLine) {
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  for (const block of readme.matchAll(/^( *)```yaml\n([\s\S]*?)^ *```/gm)) {
    const indent = new RegExp(`^ {${(block[1] ?? "").length}}`, "gm");
    const lines = (block[2] ?? "").replace(indent, "").split("\n");
    if (lines[0]?.trim() === firstLine) return lines.slice(1).join("\n");
  }
  throw new Error(`README has no \`\`\`yaml block starting with '${firstLine}'`);
}

/** The README's install overlay, exactly as printed (Install, step 2). */
export function readmeOverlay() {
  return readmeYaml("# kustomization.yaml");
}

/**
 * The first command in the README's ```sh blocks that starts with `prefix`,
 * exactly as printed, split into words (the README's commands have no quoting).
 * @param {string} prefix
 */
export function readmeCommand(prefix) {
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  for (const block of readme.matchAll(/^ *```sh\n([\s\S]*?)^ *```/gm)) {
    const line = (block[1] ?? "")
      .split("\n")
      .map((l) => l.trim())
      .find((l) => l.startsWith(prefix));
    if (line) return line.split(/\s+/);
  }
  throw new Error(`README has no \`\`\`sh block with a command starting "${prefix}"`);
}

/** The README's apply command, exactly as printed (Install, step 2), without "kubectl". */
export function readmeApplyCommand() {
  return readmeCommand("kubectl apply").slice(1);
}

/** A writable copy of a read-only tree (the Go module cache is 0444). @param {string} from @param {string} to */
function copyTree(from, to) {
  cpSync(from, to, { recursive: true });
  const walk = (/** @type {string} */ d) => {
    chmodSync(d, 0o755);
    for (const f of readdirSync(d)) {
      const p = join(d, f);
      if (statSync(p).isDirectory()) walk(p);
      else chmodSync(p, 0o644);
    }
  };
  walk(to);
}

/**
 * @param {{ kubectl: (args: string[], opts?: { input?: string, timeoutMs?: number }) => Promise<{ stdout: string, stderr: string }> }} cluster
 * @param {{ argoModule: string, pluginImage: string, executorMemory?: string, controllerConfig?: string, workflowSecrets?: string[] }} opts
 *   pluginImage: "name:tag" as imported into the cluster; executorMemory: the executor's memory limit
 *   (the plugin containers inherit it); controllerConfig: extra controller ConfigMap data keys (YAML);
 *   workflowSecrets: the secrets workflows in Argo's namespace may name (the Role's resourceNames).
 * @returns {Promise<{ dir: string, overlay: string, cleanup: () => void }>}
 */
export async function installArgo(cluster, opts) {
  const dir = mkdtempSync(join(tmpdir(), "argo-install-"));
  copyTree(join(opts.argoModule, "manifests"), join(dir, "argo-manifests"));
  copyTree(join(ROOT, "deploy"), join(dir, "argo-s3-artifact-plugin", "deploy"));
  const app = join(dir, "install");
  mkdirSync(app);
  if (!/:[^/:]+$/.test(opts.pluginImage)) throw new Error(`plugin image ${opts.pluginImage} has no tag`);
  const [pluginName, pluginTag] = splitRef(opts.pluginImage);
  let overlay = readmeOverlay();
  const remote = /https:\/\/github\.com\/argoproj\/argo-workflows\/releases\/download\/v[\d.]+\/install\.yaml/;
  if (!remote.test(overlay))
    throw new Error("the README's overlay no longer names Argo's install.yaml; update scripts/lib/argo-install.mjs");
  overlay = overlay
    .replace(remote, relative(app, join(dir, "argo-manifests", "cluster-install")))
    .replace("path/to/argo-s3-artifact-plugin/deploy", relative(app, join(dir, "argo-s3-artifact-plugin", "deploy")))
    .replace(
      /newName: registry\.example\.com\/argo-s3-artifact-plugin\n(\s+)newTag: "[^"]*"/,
      `newName: ${pluginName}\n$1newTag: "${pluginTag}"`,
    );
  if (!overlay.includes(`newName: ${pluginName}`))
    throw new Error("could not put the plugin image into the README's overlay");
  // A registry-less cluster: Argo's images are the ones the setup built and imported.
  const [ctlName, ctlTag] = splitRef(ARGO_IMAGES.controller);
  const [cliName, cliTag] = splitRef(ARGO_IMAGES.cli);
  overlay = overlay.replace(
    /^images:\n/m,
    `images:\n  - {name: quay.io/argoproj/workflow-controller, newName: ${ctlName}, newTag: "${ctlTag}"}\n  - {name: quay.io/argoproj/argocli, newName: ${cliName}, newTag: "${cliTag}"}\n`,
  );
  overlay += `patches:\n  - path: test-patch.yaml\n`;
  writeFileSync(join(app, "kustomization.yaml"), overlay);
  const executorMemory = opts.executorMemory ?? "256Mi";
  writeFileSync(
    join(app, "test-patch.yaml"),
    [
      "apiVersion: apps/v1",
      "kind: Deployment",
      "metadata: {name: workflow-controller}",
      "spec:",
      "  template:",
      "    spec:",
      "      containers:",
      "        - name: workflow-controller",
      // Debug: argoexec in plugin containers logs at the controller's level, and only at debug does it say when it
      // looked for the plugin's socket and found none (the cluster tier asserts the first look finds it).
      `          args: [--executor-image, ${ARGO_IMAGES.exec}, --loglevel, debug]`,
      "          env:",
      '            - {name: LEADER_ELECTION_DISABLE, value: "true"}',
      "            - {name: DEFAULT_REQUEUE_TIME, value: 1s}",
      "---",
      "apiVersion: apps/v1",
      "kind: Deployment",
      "metadata: {name: argo-server}",
      "spec:",
      "  template:",
      "    spec:",
      "      containers:",
      "        - name: argo-server",
      "          args: [server, --auth-mode=server]",
      "---",
      "apiVersion: v1",
      "kind: ConfigMap",
      "metadata: {name: workflow-controller-configmap}",
      "data:",
      "  executor: |",
      // Plugin containers get the executor's args after the socket path (argoexec's flags here).
      '    args: [--gloglevel, "2"]',
      "    resources:",
      `      requests: {cpu: 10m, memory: 64Mi}`,
      `      limits: {memory: ${executorMemory}}`,
      ...(opts.controllerConfig ? [opts.controllerConfig] : []),
      "",
    ].join("\n"),
  );
  await cluster.kubectl(["create", "namespace", NAMESPACE]);
  await cluster.kubectl([...readmeApplyCommand().slice(0, -1), app], { timeoutMs: 180_000 });
  // README, Install step 3: the per-namespace secrets Role, its resourceNames edited to the secrets the workflows name.
  const wns = join(dir, "argo-s3-artifact-plugin", "deploy", "workflow-namespace");
  writeFileSync(join(wns, "secrets-role.yaml"), secretsRole(opts.workflowSecrets ?? []));
  await cluster.kubectl(["-n", NAMESPACE, "apply", "--server-side", "-k", wns]);
  // What Argo's docs have every workflow namespace grant the workflow's service account (quick-start's roles).
  const quick = join(dir, "argo-manifests", "quick-start", "base");
  for (const f of [
    "executor/emissary/executor-role.yaml",
    "executor-default-rolebinding.yaml",
    "artifactgc-role.yaml",
    "artifactgc-default-rolebinding.yaml",
  ]) {
    await cluster.kubectl(["-n", NAMESPACE, "apply", "--server-side", "-f", join(quick, f)]);
  }
  for (const d of ["workflow-controller", "argo-server"]) {
    await cluster.kubectl(["-n", NAMESPACE, "rollout", "status", `deploy/${d}`, "--timeout=240s"], {
      timeoutMs: 250_000,
    });
  }
  return { dir, overlay, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * deploy/workflow-namespace/secrets-role.yaml as README step 3 has the operator edit it: the
 * secrets the workflows name as its resourceNames and, when they do not run as `default`, their
 * service account as the subject.
 * @param {string[]} secrets @param {string} [serviceAccount]
 */
function secretsRole(secrets, serviceAccount = "default") {
  const role = readFileSync(join(ROOT, "deploy", "workflow-namespace", "secrets-role.yaml"), "utf8");
  if (!role.includes("resourceNames: [s3-credentials]") || !/\n {4}name: default\n/.test(role))
    throw new Error("deploy/workflow-namespace/secrets-role.yaml changed shape; update scripts/lib/argo-install.mjs");
  return role
    .replace("resourceNames: [s3-credentials]", `resourceNames: [${secrets.join(", ")}]`)
    .replace(/\n {4}name: default\n/, `\n    name: ${serviceAccount}\n`);
}

/**
 * Argo installed a second time, with the argo-helm chart as README "With the argo-helm chart"
 * says: the operator's own values, then the plugin's values file with the image written in its
 * one place, rendered by Helm with the post-renderer installed as a Helm 4 plugin, and applied
 * as Helm's output (kubectl apply --server-side of what `helm template` prints, as GitOps tools
 * apply charts; applied again, it is an upgrade). Beside the kustomize install in the same
 * cluster: its own namespace, the controller limited to it (singleNamespace) and to Workflows
 * labelled with its instanceID, the CRDs left to the first install. Argo's images are the ones
 * the setup built. `pluginValues` defaults to deploy/helm/values.yaml; another file (0.1.0's)
 * is rendered without the post-renderer, as it was.
 * @param {{ kubectl: (args: string[], opts?: { input?: string, timeoutMs?: number }) => Promise<{ stdout: string, stderr: string }> }} cluster
 * @param {{ namespace: string, release: string, pluginImage: string, operatorValues: Record<string, unknown>, workflowSecrets: string[], workflowServiceAccount: string, pluginValues?: { file: string, image: string } }} opts
 * @returns {Promise<{ rendered: string }>}
 */
export async function installArgoWithHelm(cluster, opts) {
  const dir = mkdtempSync(join(tmpdir(), "argo-helm-install-"));
  try {
    const { helm, chart, env } = await helmWithPostRenderer(dir);
    const current = opts.pluginValues === undefined;
    const { file, image: written } = opts.pluginValues ?? {
      file: join(ROOT, "deploy", "helm", "values.yaml"),
      image: "argo-s3-artifact-plugin:0.2.0",
    };
    const valuesText = readFileSync(file, "utf8");
    if (current && valuesText.split(written).length !== 2)
      throw new Error(`deploy/helm/values.yaml no longer writes ${written} once; update scripts/lib/argo-install.mjs`);
    if (!valuesText.includes(written)) throw new Error(`${file} does not name ${written}`);
    writeFileSync(join(dir, "plugin-values.yaml"), valuesText.split(written).join(opts.pluginImage));
    writeFileSync(join(dir, "operator-values.yaml"), stringify(opts.operatorValues));
    const { stdout: rendered } = await run(
      helm,
      [
        "template",
        opts.release,
        chart,
        "-n",
        opts.namespace,
        "-f",
        join(dir, "operator-values.yaml"),
        "-f",
        join(dir, "plugin-values.yaml"),
        ...(current ? ["--post-renderer", "argo-s3-artifact-plugin"] : []),
      ],
      { env, timeout: 120_000, maxBuffer: 64 * 1024 * 1024 },
    );
    await cluster.kubectl(["create", "namespace", opts.namespace]).catch((/** @type {Error} */ e) => {
      if (!/AlreadyExists/.test(e.message)) throw e;
    });
    // Objects the chart renders without a namespace go to the release's, as Helm applies them.
    await cluster.kubectl(["-n", opts.namespace, "apply", "--server-side", "-f", "-"], {
      input: rendered,
      timeoutMs: 180_000,
    });
    // README step 3 in the release's namespace, for the service account its workflows run as.
    await cluster.kubectl(["-n", opts.namespace, "apply", "--server-side", "-f", "-"], {
      input: secretsRole(opts.workflowSecrets, opts.workflowServiceAccount),
    });
    for (const d of ["workflow-controller", "server"]) {
      await cluster.kubectl(
        ["-n", opts.namespace, "rollout", "status", `deploy/${opts.release}-${d}`, "--timeout=240s"],
        { timeoutMs: 250_000 },
      );
    }
    return { rendered };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
