// deploy/helm/ on the argo-helm chart itself: Helm (built from its Go module)
// renders the real chart `argo-workflows` (the argo-helm repository from the Go
// module proxy) with an operator's own non-default values, with and without
// deploy/helm/values.yaml and its post-renderer, installed as the README says
// (a Helm 4 plugin) and run as Helm 3 would (the script itself). Argo's own
// controller-config parser reads both results: the operator's config must come
// out the same, with only the plugin's driver and image entry added, and
// argo-server must get the sidecar of deploy/argo-server-patch.yaml.
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { parse, parseAllDocuments, stringify } from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { helmWithPostRenderer } from "../../scripts/lib/tools.mjs";
import { ROOT } from "../support/plugin.js";
import { argoParse, type ArgoConfig } from "../support/argo-config.js";

const run = promisify(execFile);
type Obj = Record<string, any>;

interface Container {
  name: string;
  image?: string;
  env?: { name: string; value?: string; valueFrom?: unknown }[];
  volumeMounts?: { name: string; mountPath: string }[];
  [field: string]: unknown;
}

const VALUES = join(ROOT, "deploy", "helm", "values.yaml");
const POST_RENDERER = join(ROOT, "deploy", "helm", "post-renderer");
const PLUGIN_IMAGE = "argo-s3-artifact-plugin:0.2.0";
const SIDECAR = "s3-artifact-plugin";

/**
 * An operator's own values, set before the plugin: every kind of controller
 * config the chart renders that the old values (`configMap.create: false`)
 * silently dropped, and an emissary.images entry that sorts before the plugin's.
 */
const OPERATOR_VALUES = {
  controller: {
    parallelism: 7,
    workflowDefaults: {
      spec: {
        ttlStrategy: { secondsAfterCompletion: 3600 },
        podGC: { strategy: "OnPodSuccess" },
        serviceAccountName: "workflow-runner",
      },
    },
    configMap: { annotations: { team: "data" } },
    metricsConfig: { enabled: true, path: "/metrics", port: 9090 },
  },
  executor: { resources: { limits: { memory: "256Mi" } } },
  artifactRepository: {
    archiveLogs: true,
    s3: {
      bucket: "my-bucket",
      endpoint: "minio:9000",
      insecure: true,
      accessKeySecret: { name: "my-minio-cred", key: "accesskey" },
      secretKeySecret: { name: "my-minio-cred", key: "secretkey" },
    },
  },
  emissary: { images: { "aaa.example.com/tool:1": { cmd: ["/tool"] } } },
  server: { sso: { enabled: false }, extraArgs: ["--auth-mode=server"] },
};

let tmp: string;
let helm: string;
let chart: string;
/** Helm's own folders (plugins, config, cache) and a PATH with the pinned kustomize first. */
let env: NodeJS.ProcessEnv;

async function helmTemplate(args: string[]): Promise<string> {
  const { stdout } = await run(
    helm,
    ["template", "argo-workflows", chart, "-n", "argo", "-f", join(tmp, "operator.yaml"), ...args],
    { env, timeout: 120_000, maxBuffer: 64 * 1024 * 1024 },
  );
  return stdout;
}

const docs = (text: string): Obj[] =>
  parseAllDocuments(text)
    .map((d) => d.toJS() as Obj | null)
    .filter((d): d is Obj => !!d);

function controllerConfigMap(all: Obj[]): Obj {
  const cms = all.filter(
    (d) => d["kind"] === "ConfigMap" && d["metadata"].name.endsWith("workflow-controller-configmap"),
  );
  expect(cms).toHaveLength(1);
  return cms[0]!;
}

function serverPod(all: Obj[]): Obj {
  const d = all.find((x) => x["kind"] === "Deployment" && x["metadata"].name === "argo-workflows-server");
  expect(d, "the chart's argo-server Deployment").toBeDefined();
  return d!["spec"].template;
}

/** deploy/argo-server-patch.yaml: the sidecar and the argo-server container's additions. */
function kustomizePatch(): { server: Container; sidecar: Container; volumes: Obj[] } {
  const spec = (parse(readFileSync(join(ROOT, "deploy", "argo-server-patch.yaml"), "utf8")) as Obj)["spec"].template
    .spec as { containers: Container[]; volumes: Obj[] };
  return {
    server: spec.containers.find((c) => c.name === "argo-server")!,
    sidecar: spec.containers.find((c) => c.name === SIDECAR)!,
    volumes: spec.volumes,
  };
}

let plain: Obj[];
let withPlugin: Obj[];
let withPluginText: string;

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), "helm-chart-"));
  // The README's install of the post-renderer (Helm 4 takes post-renderers only as plugins).
  ({ helm, chart, env } = await helmWithPostRenderer(tmp));
  writeFileSync(join(tmp, "operator.yaml"), stringify(OPERATOR_VALUES));
  const [a, b] = await Promise.all([
    helmTemplate([]),
    helmTemplate(["-f", VALUES, "--post-renderer", "argo-s3-artifact-plugin"]),
  ]);
  plain = docs(a);
  withPluginText = b;
  withPlugin = docs(b);
}, 30 * 60_000);

afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe("deploy/helm (argo-helm chart 2.0.4 with the post-renderer)", () => {
  it("keeps every controller setting of the operator's own values; adds only the driver and its images: entry", async () => {
    const before = await argoParse(controllerConfigMap(plain));
    const after = await argoParse(controllerConfigMap(withPlugin));
    // What the operator set is really there (the parser did not just drop it on both sides).
    expect(before).toMatchObject({
      parallelism: 7,
      executor: { resources: { limits: { memory: "256Mi" } } },
      artifactRepository: { archiveLogs: true, s3: { bucket: "my-bucket", endpoint: "minio:9000" } },
      workflowDefaults: { spec: { serviceAccountName: "workflow-runner", podGC: { strategy: "OnPodSuccess" } } },
      images: { "aaa.example.com/tool:1": { cmd: ["/tool"] } },
    });
    expect(after.artifactDrivers).toEqual([{ name: "s3", image: PLUGIN_IMAGE, connectionTimeoutSeconds: 10 }]);
    expect(after.images).toEqual({
      ...before.images,
      [PLUGIN_IMAGE]: { entrypoint: ["/app/launch", "/usr/local/bin/node", "/app/dist/main.cjs"] },
    });
    const { artifactDrivers: _drivers, images: _images, ...afterRest } = after;
    const { images: _beforeImages, ...beforeRest } = before;
    expect(afterRest).toEqual(beforeRest);
    // The ConfigMap keeps the one `config` key Argo accepts, and the operator's annotation.
    const cm = controllerConfigMap(withPlugin);
    expect(Object.keys(cm["data"])).toEqual(["config"]);
    expect(cm["metadata"].annotations).toMatchObject({ team: "data" });
  });

  it("adds to argo-server the sidecar of deploy/argo-server-patch.yaml field for field, with ARGO_POD_NAME, the socket volume and the chart's restart-on-config annotation", () => {
    const pod = serverPod(withPlugin);
    const patch = kustomizePatch();
    const containers = pod["spec"].containers as Container[];
    expect(containers.find((c) => c.name === SIDECAR)).toEqual(patch.sidecar);
    const server = containers.find((c) => c.name === "argo-server")!;
    for (const e of patch.server.env!) expect(server.env).toContainEqual(e);
    for (const m of patch.server.volumeMounts!) expect(server.volumeMounts).toContainEqual(m);
    for (const v of patch.volumes) expect(pod["spec"].volumes).toContainEqual(v);
    // The operator's argo-server values stay.
    expect(server["args"]).toContain("--auth-mode=server");
    expect(pod["metadata"].annotations["checksum/cm"]).toMatch(/^[0-9a-f]{64}$/);
  });

  it("takes the image from one place: another image there changes the sidecar, the driver, the images: entry and argo-server's checksum", async () => {
    const text = readFileSync(VALUES, "utf8");
    expect(text.split(PLUGIN_IMAGE)).toHaveLength(2);
    // A registry, a tag and a digest, as README step 1 suggests pinning.
    const other = `registry.example.com/team/argo-s3-artifact-plugin:0.2.0@sha256:${"cd".repeat(32)}`;
    const values = join(tmp, "values-other-image.yaml");
    writeFileSync(values, text.replace(PLUGIN_IMAGE, other));
    const rendered = docs(await helmTemplate(["-f", values, "--post-renderer", "argo-s3-artifact-plugin"]));
    const cfg = await argoParse(controllerConfigMap(rendered));
    expect(cfg.artifactDrivers!.map((d) => d.image)).toEqual([other]);
    expect(Object.keys(cfg.images!).sort()).toEqual(["aaa.example.com/tool:1", other]);
    const pod = serverPod(rendered);
    expect((pod["spec"].containers as Container[]).find((c) => c.name === SIDECAR)!.image).toBe(other);
    expect(pod["metadata"].annotations["checksum/cm"]).not.toBe(
      serverPod(withPlugin)["metadata"].annotations["checksum/cm"],
    );
  });

  it("Helm 3's way (the script as --post-renderer) gives the same manifests as the Helm 4 plugin", async () => {
    const raw = await helmTemplate(["-f", VALUES]);
    const child = execFile(join(POST_RENDERER, "post-render.sh"), {
      env,
      timeout: 60_000,
      maxBuffer: 64 * 1024 * 1024,
    });
    const out = new Promise<string>((resolve, reject) => {
      let text = "";
      child.stdout!.on("data", (c: string) => (text += c));
      child.on("error", reject);
      child.on("close", (code) => (code === 0 ? resolve(text) : reject(new Error(`post-render.sh exited ${code}`))));
    });
    child.stdin!.end(raw);
    // Helm post-renders the release's manifests, not its hooks (the chart's CRD job); `helm
    // template` prints the hooks as rendered either way.
    const byId = (all: Obj[]) =>
      new Map(
        all
          .filter((d) => !d["metadata"]?.annotations?.["helm.sh/hook"])
          .map((d) => [`${d["kind"]}/${d["metadata"]?.namespace ?? ""}/${d["metadata"]?.name}`, d]),
      );
    const helm3 = byId(docs(await out));
    const helm4 = byId(withPlugin);
    expect([...helm3.keys()].sort()).toEqual([...helm4.keys()].sort());
    for (const [id, d] of helm4) expect(helm3.get(id), id).toEqual(d);
  });

  it("drops its ArtifactDriverEntry; without the post-renderer the entry stays, an unknown kind no cluster accepts", async () => {
    expect(withPlugin.filter((d) => d["kind"] === "ArtifactDriverEntry")).toEqual([]);
    expect(withPluginText).not.toContain("argo-s3-artifact-plugin.local");
    const raw = docs(await helmTemplate(["-f", VALUES]));
    expect(raw.filter((d) => d["kind"] === "ArtifactDriverEntry").map((d) => d["apiVersion"])).toEqual([
      "argo-s3-artifact-plugin.local/v1",
    ]);
    expect(controllerConfigMap(raw)["data"].config).not.toContain("artifactDrivers");
  });

  it("refuses, naming what is missing, when the post-renderer runs without the plugin's values or without the ConfigMap's annotation", async () => {
    const noAnnotation = join(tmp, "values-no-annotation.yaml");
    writeFileSync(
      noAnnotation,
      readFileSync(VALUES, "utf8").replace("argo-s3-artifact-plugin/artifact-drivers: s3", "other: x"),
    );
    const cases: [string[], RegExp][] = [
      [[], /no ArtifactDriverEntry: add deploy\/helm\/values\.yaml/],
      [
        ["-f", noAnnotation],
        /no controller ConfigMap carries the annotation argo-s3-artifact-plugin\/artifact-drivers/,
      ],
    ];
    for (const [args, message] of cases) {
      // Helm 4 fails the release (and keeps the plugin's own words to itself: it captures a
      // post-renderer's stderr and drops it, 4.3.2's runtime_subprocess.go) ...
      const helm4 = await helmTemplate([...args, "--post-renderer", "argo-s3-artifact-plugin"]).then(
        () => "rendered",
        (e: { stderr?: string }) => e.stderr ?? String(e),
      );
      expect(helm4).toMatch(
        /post-renderer plugin "argo-s3-artifact-plugin": plugin "argo-s3-artifact-plugin" exited with error/,
      );
      // ... and the script run as Helm 3 runs it (or by hand, as the README says for Helm 4) says why.
      const raw = await helmTemplate(args);
      const script = await new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
        const child = execFile(join(POST_RENDERER, "post-render.sh"), { env, timeout: 60_000 }, (e, _out, stderr) =>
          resolve({ code: e ? ((e as { code?: number }).code ?? null) : 0, stderr }),
        );
        child.on("error", reject);
        child.stdin!.end(raw);
      });
      expect(script.code).toBe(1);
      expect(script.stderr).toMatch(message);
    }
  });

  it("refuses to render when a values file after ours replaced server.extraContainers (lists are not merged): no driver without its sidecar", async () => {
    const later = join(tmp, "values-later-lists.yaml");
    writeFileSync(later, stringify({ server: { extraContainers: [{ name: "log-shipper", image: "busybox" }] } }));
    const err = await helmTemplate(["-f", VALUES, "-f", later, "--post-renderer", "argo-s3-artifact-plugin"]).then(
      () => "rendered",
      (e: { stderr?: string }) => e.stderr ?? String(e),
    );
    expect(err).toMatch(/server\.extraContainers has no s3-artifact-plugin container with an image/);
  });

  it("is what plugin.yaml registers: the same artifactDrivers and images: entry", async () => {
    const cfg = await argoParse(controllerConfigMap(withPlugin));
    const registration = parse(readFileSync(join(ROOT, "plugin.yaml"), "utf8")) as ArgoConfig;
    expect(cfg.artifactDrivers).toEqual(registration.artifactDrivers);
    for (const [image, entry] of Object.entries(registration.images!)) expect(cfg.images![image]).toEqual(entry);
  });
});
