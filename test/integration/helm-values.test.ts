// deploy/helm-values.yaml, the install path for Argo installed with the argo-helm
// chart `argo-workflows`: what the chart renders from these values must give
// Argo the same controller config and argo-server the same sidecar as the
// kustomize Component in deploy/, so the two install paths cannot drift.
//
// Helm is not run here. The few template steps the values go through are
// restated below from chart 1.0.18 (appVersion v4.0.6), and only for the keys
// deploy/helm-values.yaml uses:
//   templates/controller/workflow-controller-config-map.yaml, line 1:
//     `{{- if .Values.controller.configMap.create }}` around the whole file, so
//     with create: false the chart renders no controller ConfigMap at all;
//   templates/extra-manifests.yaml: `range .Values.extraObjects`, each one
//     emitted as `tpl (toYaml .) $` (template actions in its strings evaluated);
//   templates/_helpers.tpl: "argo-workflows.controller.config-map.name" is
//     `<fullname>-workflow-controller-configmap` (fullname = the release name
//     when it contains "argo-workflows"), the name both Deployments pass as
//     --configmap; "argo-workflows.namespace" is the release namespace;
//   templates/server/server-deployment.yaml, lines 111-151: the argo-server
//     container's env is IN_CLUSTER, ARGO_NAMESPACE, ARGO_BASE_HREF then
//     server.extraEnv; its volumeMounts are `tmp` at /tmp then
//     server.volumeMounts; server.extraContainers follow the argo-server
//     container; the pod's volumes are `tmp` (server.tmpVolume) then
//     server.volumes. Each list value is inserted as is (toYaml).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse, parseAllDocuments } from "yaml";
import { describe, expect, it } from "vitest";
import { ROOT } from "../support/plugin.js";
import { argoParse } from "../support/argo-config.js";

/** The release the rendering below stands for: `helm upgrade --install argo-workflows argo/argo-workflows -n argo`. */
const RELEASE = { name: "argo-workflows", namespace: "argo" };
const CONFIGMAP_NAME = `${RELEASE.name}-workflow-controller-configmap`;

type Obj = Record<string, any>;

interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: unknown;
}
interface Mount {
  name: string;
  mountPath: string;
}
interface Volume {
  name: string;
  [source: string]: unknown;
}
interface Container {
  name: string;
  image?: string;
  env?: EnvVar[];
  volumeMounts?: Mount[];
  [field: string]: unknown;
}

const readYaml = (file: string): Obj => parse(readFileSync(join(ROOT, file), "utf8")) as Obj;
const helmValues = (): Obj => readYaml("deploy/helm-values.yaml");

/**
 * The template actions deploy/helm-values.yaml uses inside extraObjects, with
 * what the chart's helpers give for RELEASE. Any other action fails the test:
 * the mapping here is only as wide as what the values really contain.
 */
const KNOWN_ACTIONS: Record<string, string> = {
  '{{ include "argo-workflows.controller.config-map.name" . }}': CONFIGMAP_NAME,
  '{{ include "argo-workflows.namespace" . }}': RELEASE.namespace,
};

function tpl(value: unknown): unknown {
  if (typeof value === "string") {
    let out = value;
    for (const [action, result] of Object.entries(KNOWN_ACTIONS)) out = out.split(action).join(result);
    if (out.includes("{{")) throw new Error(`template action this test does not render: ${JSON.stringify(out)}`);
    return out;
  }
  if (Array.isArray(value)) return value.map(tpl);
  if (value && typeof value === "object") return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, tpl(v)]));
  return value;
}

/** The manifests the chart renders from `values` that carry controller config: its own ConfigMap (if created) and extraObjects. */
function controllerConfigMaps(values: Obj): Obj[] {
  if (values["controller"]?.configMap?.create !== false) {
    throw new Error(
      "controller.configMap.create is not false: the chart would render its own ConfigMap, which has no artifactDrivers",
    );
  }
  const extra = (values["extraObjects"] ?? []) as Obj[];
  return extra
    .map((o) => tpl(o) as Obj)
    .filter((o) => o["kind"] === "ConfigMap" && o["metadata"]?.name === CONFIGMAP_NAME);
}

/** The argo-server pod spec fields the chart builds from server.* values (server-deployment.yaml). */
function argoServerPod(values: Obj): { containers: Container[]; volumes: Volume[] } {
  const server = (values["server"] ?? {}) as Obj;
  const argoServer: Container = {
    name: "argo-server",
    env: [
      { name: "IN_CLUSTER", value: "true" },
      { name: "ARGO_NAMESPACE", valueFrom: { fieldRef: { apiVersion: "v1", fieldPath: "metadata.namespace" } } },
      { name: "ARGO_BASE_HREF", value: "/" },
      ...((server["extraEnv"] ?? []) as EnvVar[]),
    ],
    volumeMounts: [{ name: "tmp", mountPath: "/tmp" }, ...((server["volumeMounts"] ?? []) as Mount[])],
  };
  return {
    containers: [argoServer, ...((server["extraContainers"] ?? []) as Container[])],
    volumes: [
      { name: "tmp", ...((server["tmpVolume"] ?? { emptyDir: {} }) as Obj) },
      ...((server["volumes"] ?? []) as Volume[]),
    ],
  };
}

/** deploy/argo-server-patch.yaml's pod spec: the argo-server container's additions, the sidecar, the volumes. */
function kustomizePatch(): { server: Container; sidecar: Container; volumes: Volume[] } {
  const [doc] = parseAllDocuments(readFileSync(join(ROOT, "deploy/argo-server-patch.yaml"), "utf8"));
  const spec = (doc!.toJS() as Obj)["spec"].template.spec as { containers: Container[]; volumes: Volume[] };
  const server = spec.containers.find((c) => c.name === "argo-server")!;
  const others = spec.containers.filter((c) => c.name !== "argo-server");
  expect(others).toHaveLength(1);
  return { server, sidecar: others[0]!, volumes: spec.volumes };
}

describe("deploy/helm-values.yaml (argo-helm chart)", () => {
  it("renders one controller ConfigMap, under the name the controller and argo-server get as --configmap, holding only `config`", () => {
    const cms = controllerConfigMaps(helmValues());
    expect(cms).toHaveLength(1);
    expect(cms[0]!["metadata"]).toEqual({ name: CONFIGMAP_NAME, namespace: RELEASE.namespace });
    expect(Object.keys(cms[0]!["data"])).toEqual(["config"]);
  });

  it("gives Argo's parser the same artifactDrivers and images as deploy/controller-configmap-patch.yaml, and no workflowDefaults", async () => {
    const [cm] = controllerConfigMaps(helmValues());
    const fromHelm = await argoParse(cm!);
    const deployCm = readYaml("deploy/controller-configmap-patch.yaml");
    const fromKustomize = await argoParse({
      ...deployCm,
      metadata: { name: CONFIGMAP_NAME, namespace: RELEASE.namespace },
    });

    expect(fromHelm.artifactDrivers).toEqual([
      { name: "s3", image: "argo-s3-artifact-plugin:0.2.0", connectionTimeoutSeconds: 10 },
    ]);
    expect(fromHelm.artifactDrivers).toEqual(fromKustomize.artifactDrivers);
    expect(fromHelm.images).toEqual({
      "argo-s3-artifact-plugin:0.2.0": { entrypoint: ["/app/launch", "/usr/local/bin/node", "/app/dist/main.cjs"] },
    });
    expect(fromHelm.images).toEqual(fromKustomize.images);
    expect(fromHelm.workflowDefaults).toBeUndefined();
    expect(fromKustomize.workflowDefaults).toBeUndefined();
  });

  it("is refused by Argo's parser once a key sits beside `config` (why the kustomize patch cannot go onto a Helm install)", async () => {
    const [cm] = controllerConfigMaps(helmValues());
    const deployCm = readYaml("deploy/controller-configmap-patch.yaml");
    const mixed = { ...cm!, data: { ...cm!["data"], artifactDrivers: deployCm["data"].artifactDrivers } };
    await expect(argoParse(mixed)).rejects.toThrow(/named 'config', you must only have one item/);
  });

  it("adds to argo-server the sidecar of deploy/argo-server-patch.yaml, field for field", () => {
    const pod = argoServerPod(helmValues());
    const patch = kustomizePatch();
    const sidecar = pod.containers.find((c) => c.name === patch.sidecar.name);
    expect(sidecar, `argo-server has a ${patch.sidecar.name} container`).toBeDefined();
    for (const field of [
      "image",
      "args",
      "env",
      "readinessProbe",
      "livenessProbe",
      "securityContext",
      "resources",
      "volumeMounts",
    ]) {
      expect(sidecar![field], field).toBeDefined();
      expect(sidecar![field], field).toEqual(patch.sidecar[field]);
    }
    expect(sidecar).toEqual(patch.sidecar);
    expect(sidecar!.env).toContainEqual({ name: "ARGO_S3_PLUGIN_SHARED", value: "true" });
  });

  it("gives the argo-server container the patch's ARGO_POD_NAME and socket mount, and the pod the patch's emptyDir volumes", () => {
    const pod = argoServerPod(helmValues());
    const patch = kustomizePatch();
    const server = pod.containers.find((c) => c.name === "argo-server")!;
    for (const env of patch.server.env!) expect(server.env).toContainEqual(env);
    expect(server.env).toContainEqual({
      name: "ARGO_POD_NAME",
      valueFrom: { fieldRef: { fieldPath: "metadata.name" } },
    });
    for (const mount of patch.server.volumeMounts!) expect(server.volumeMounts).toContainEqual(mount);
    for (const volume of patch.volumes) expect(pod.volumes).toContainEqual(volume);
    // Nothing the values add collides with what the chart already has, and every mount has its volume.
    expect(new Set(server.env!.map((e) => e.name)).size).toBe(server.env!.length);
    expect(new Set(pod.volumes.map((v) => v.name)).size).toBe(pod.volumes.length);
    const volumeNames = pod.volumes.map((v) => v.name);
    for (const c of pod.containers)
      for (const m of c.volumeMounts ?? []) expect(volumeNames, `${c.name} mounts ${m.name}`).toContain(m.name);
    // The socket folder is one volume shared by argo-server and the sidecar.
    const dir = "/tmp/artifact-plugins/s3";
    const sidecar = pod.containers.find((c) => c.name === patch.sidecar.name)!;
    expect(server.volumeMounts!.find((m) => m.mountPath === dir)?.name).toBe(
      sidecar.volumeMounts!.find((m) => m.mountPath === dir)?.name,
    );
  });

  it("names one image in the sidecar, artifactDrivers and the images: entry (argo-server exits on a mismatch)", async () => {
    const values = helmValues();
    const [cm] = controllerConfigMaps(values);
    const parsed = await argoParse(cm!);
    const sidecarImage = argoServerPod(values).containers.find((c) => c.name === kustomizePatch().sidecar.name)!.image;
    expect(parsed.artifactDrivers!.map((d) => d.image)).toEqual([sidecarImage]);
    expect(Object.keys(parsed.images!)).toEqual([sidecarImage]);
  });
});
