// The deployment artefacts Argo reads: deploy/ (artifactDrivers entry, image
// entrypoint, argo-server sidecar patch, secrets Role) and the Dockerfile's
// contract with Argo.
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { promisify } from "node:util";
import { parseAllDocuments, parse, stringify } from "yaml";
import { beforeAll, describe, expect, it } from "vitest";
import { readmeOverlay, readmeYaml } from "../../scripts/lib/argo-install.mjs";
import { kustomizeBinary, toolVersions } from "../../scripts/lib/tools.mjs";
import { ROOT } from "../support/plugin.js";
import { argoParse } from "../support/argo-config.js";
import { parseConfig } from "../../src/config/parse.js";

const run = promisify(execFile);

interface Container {
  name: string;
  image?: string;
  args?: string[];
  volumeMounts?: { name: string; mountPath: string }[];
}

/**
 * deploy/ as an operator applies it: the README's overlay, with Argo's
 * install.yaml (not reachable here) swapped for a base shaped like Argo's stock
 * manifests (the argo-server Deployment with runAsNonRoot and no runAsUser, the
 * controller ConfigMap) and the Component's path made real; kustomize renders it.
 */
async function render(
  opts: {
    baseData?: Record<string, string>;
    continued?: string;
    monitoring?: boolean;
    /** Edits the README's overlay as an operator would (after the paths are made real). */
    edit?: (overlay: string) => string;
  } = {},
): Promise<Record<string, unknown>[]> {
  const dir = mkdtempSync(join(tmpdir(), "deploy-"));
  try {
    writeFileSync(
      join(dir, "base.yaml"),
      stringify({
        apiVersion: "v1",
        kind: "ConfigMap",
        metadata: { name: "workflow-controller-configmap" },
        data: opts.baseData ?? {},
      }) +
        `---\n` +
        `apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: argo-server}\nspec:\n  selector: {matchLabels: {app: argo-server}}\n  template:\n    metadata: {labels: {app: argo-server}}\n    spec:\n` +
        `      securityContext: {runAsNonRoot: true}\n      containers:\n        - name: argo-server\n          image: quay.io/argoproj/argocli:v4.1.2\n          args: [server]\n          volumeMounts: [{name: tmp, mountPath: /tmp}]\n      volumes: [{name: tmp, emptyDir: {}}]\n`,
    );
    const overlay = readmeOverlay();
    expect(overlay).toMatch(
      /^\s+- https:\/\/github\.com\/argoproj\/argo-workflows\/releases\/download\/v[\d.]+\/install\.yaml$/m,
    );
    expect(overlay).toContain("path/to/argo-s3-artifact-plugin/deploy");
    writeFileSync(
      join(dir, "kustomization.yaml"),
      overlay
        .replace(
          /https:\/\/github\.com\/argoproj\/argo-workflows\/releases\/download\/v[\d.]+\/install\.yaml/,
          "base.yaml",
        )
        .replace(
          "path/to/argo-s3-artifact-plugin/deploy",
          relative(dir, join(ROOT, "deploy")) +
            // README, Operations: the monitoring Component listed under the plugin's.
            (opts.monitoring ? `\n  - ${relative(dir, join(ROOT, "deploy", "monitoring"))}` : ""),
        ) + (opts.continued ?? ""),
    );
    if (opts.edit) {
      const file = join(dir, "kustomization.yaml");
      writeFileSync(file, opts.edit(readFileSync(file, "utf8")));
    }
    const { stdout } = await run(await kustomizeBinary(), ["build", "--load-restrictor", "LoadRestrictionsNone", dir], {
      timeout: 60_000,
    });
    return parseAllDocuments(stdout).map((d) => d.toJS() as Record<string, unknown>);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe("deploy/ (kustomize Component)", () => {
  let docs: Record<string, any>[];
  beforeAll(async () => {
    docs = await render();
  }, 20 * 60_000);
  const find = (kind: string) => docs.filter((d) => d["kind"] === kind);
  const sidecarImage = () =>
    (find("Deployment")[0]!.spec.template.spec.containers as Container[]).find((c) => c.name !== "argo-server")!.image!;

  it("registers the plugin, with an images: entry whose entrypoint is the Dockerfile's", () => {
    const cm = find("ConfigMap")[0]!;
    expect(cm.metadata.name).toBe("workflow-controller-configmap");
    const drivers = parse(cm.data.artifactDrivers) as {
      name: string;
      image: string;
      connectionTimeoutSeconds?: number;
    }[];
    expect(drivers).toHaveLength(1);
    expect(drivers[0]!.name).toBe("s3");
    const images = parse(cm.data.images) as Record<string, { entrypoint: string[] }>;
    const entry = images[drivers[0]!.image];
    expect(entry, "images: has an entry for the artifactDrivers image").toBeDefined();
    const dockerEntrypoint = JSON.parse(
      /^ENTRYPOINT (.*)$/m.exec(readFileSync(join(ROOT, "Dockerfile"), "utf8"))![1]!,
    ) as string[];
    expect(entry!.entrypoint).toEqual(dockerEntrypoint);
  });

  it("adds the argo-server sidecar on the shared socket folder, in shared mode, non-root with a numeric image user", () => {
    const deploy = find("Deployment")[0]!;
    const containers = deploy.spec.template.spec.containers as Container[];
    const server = containers.find((c) => c.name === "argo-server")!;
    const sidecar = containers.find((c) => c.name !== "argo-server")! as Container & {
      env: { name: string; value: string }[];
      securityContext: Record<string, unknown>;
      resources: { limits: { memory: string } };
    };
    const dir = "/tmp/artifact-plugins/s3";
    expect(sidecar.args).toEqual([`${dir}/socket`]);
    expect(server.volumeMounts!.find((m) => m.mountPath === dir)!.name).toBe(
      sidecar.volumeMounts!.find((m) => m.mountPath === dir)!.name,
    );
    const volume = (deploy.spec.template.spec.volumes as { name: string; emptyDir?: object }[]).find(
      (v) => v.name === sidecar.volumeMounts!.find((m) => m.mountPath === dir)!.name,
    );
    expect(volume?.emptyDir).toBeDefined();
    expect(sidecar.env).toEqual(expect.arrayContaining([{ name: "ARGO_S3_PLUGIN_SHARED", value: "true" }]));
    expect(sidecar.securityContext["runAsNonRoot"]).toBe(true);
    expect(sidecar.resources.limits.memory).toBeTruthy();
    // The base's own volumes and mounts survive the patch.
    expect(server.volumeMounts!.map((m) => m.mountPath)).toContain("/tmp");
  });

  it("names the image the operator wrote once in images: in the sidecar, artifactDrivers and the images: entry (argo-server exits on a mismatch)", () => {
    const cm = find("ConfigMap")[0]!;
    const written = /newName: (\S+)\n\s+newTag: "([^"]+)"/.exec(readmeOverlay())!;
    const image = `${written[1]}:${written[2]}`;
    const sidecar = (find("Deployment")[0]!.spec.template.spec.containers as Container[]).find(
      (c) => c.name !== "argo-server",
    )!;
    expect(sidecar.image).toBe(image);
    expect((parse(cm.data.artifactDrivers) as { image: string }[])[0]!.image).toBe(image);
    expect(Object.keys(parse(cm.data.images) as Record<string, unknown>)).toEqual([image]);
  });

  it("is a controller config Argo's own parser accepts: the driver and its image's entrypoint, and no workflowDefaults of its own", async () => {
    const cm = find("ConfigMap")[0]!;
    const parsed = await argoParse(cm);
    expect(parsed.artifactDrivers).toEqual([{ name: "s3", image: sidecarImage(), connectionTimeoutSeconds: 10 }]);
    expect(parsed.images?.[sidecarImage()]?.entrypoint).toEqual([
      "/app/launch",
      "/usr/local/bin/node",
      "/app/dist/main.cjs",
    ]);
    // Argo's own argoexec keeps a Save going through the controller's stop (argo-pod-model.test.ts): nothing to override.
    expect(parsed.workflowDefaults).toBeUndefined();
    // The parser can fail: a key beside the others that Argo does not know stops the controller.
    await expect(argoParse({ ...cm, data: { ...cm.data, artifactDriver: "[]" } })).rejects.toThrow(
      /unknown field "artifactDriver"/,
    );
  });

  it("keeps an images: map the installation already had when the operator adds the README's continued overlay, the operator's quoted entry first: the image is written by its mark, not by position (and the map is lost without the overlay)", async () => {
    const base = { images: `my-registry.example.com/tool:2.1: {entrypoint: [/usr/bin/tool]}\n` };
    const imagesOf = async (d: Record<string, any>[]) =>
      (await argoParse(d.find((x) => x["kind"] === "ConfigMap")!)).images ?? {};
    const without = await imagesOf(await render({ baseData: base }));
    expect(Object.keys(without), "a ConfigMap value is one string: the Component's replaces the base's").toEqual([
      sidecarImage(),
    ]);
    const merged = await render({
      baseData: base,
      continued: readmeYaml("# kustomization.yaml, continued: your own images: entries kept"),
    });
    const images = await imagesOf(merged);
    const sidecar = (
      (merged.find((d) => d["kind"] === "Deployment") as Record<string, any>)["spec"].template.spec
        .containers as Container[]
    ).find((c) => c.name !== "argo-server")!.image!;
    expect(images[sidecar]?.entrypoint).toEqual(["/app/launch", "/usr/local/bin/node", "/app/dist/main.cjs"]);
    expect(images["my-registry.example.com/tool:2.1"]?.entrypoint).toEqual(["/usr/bin/tool"]);
    expect(Object.keys(images)).toHaveLength(2);
    const parsed = await argoParse(merged.find((d) => d["kind"] === "ConfigMap")!);
    expect(parsed.artifactDrivers?.[0]?.image).toBe(sidecar);
  }, 120_000);

  it("pins the image by digest as README step 1 says: the sidecar, artifactDrivers and the images: entry carry the same digest", async () => {
    const digest = `sha256:${"ab".repeat(32)}`;
    const docs = await render({
      edit: (o) => {
        expect(o).toMatch(/^    newTag: "[^"]+"$/m);
        return o.replace(/^(    newTag: "[^"]+")$/m, `$1\n    digest: ${digest}`);
      },
    });
    const sidecar = (
      (docs.find((d) => d["kind"] === "Deployment") as Record<string, any>)["spec"].template.spec
        .containers as Container[]
    ).find((c) => c.name !== "argo-server")!.image!;
    expect(sidecar).toContain(`@${digest}`);
    expect(sidecar.startsWith("registry.example.com/argo-s3-artifact-plugin")).toBe(true);
    const parsed = await argoParse(docs.find((d) => d["kind"] === "ConfigMap")!);
    expect(parsed.artifactDrivers?.map((d) => d.image)).toEqual([sidecar]);
    expect(Object.keys(parsed.images ?? {})).toEqual([sidecar]);
  }, 120_000);

  it("gives the UI its secret and endpoint through the README's overlay patch, every other setting of the sidecar kept (no kubectl set env to be undone by the next apply)", async () => {
    const sidecarOf = (d: Record<string, any>[]) =>
      (
        (d.find((x) => x["kind"] === "Deployment") as Record<string, any>)["spec"].template.spec
          .containers as (Container & { env: { name: string; value?: string }[] })[]
      ).find((c) => c.name === "s3-artifact-plugin")!;
    const before = sidecarOf(await render());
    const after = sidecarOf(await render({ continued: readmeYaml("# kustomization.yaml, continued: UI access") }));
    const env = (c: typeof before) => Object.fromEntries(c.env.map((e) => [e.name, e.value]));
    expect(env(after)).toEqual({
      ...env(before),
      ARGO_S3_PLUGIN_ALLOWED_SECRETS: "my-minio-cred",
      ARGO_S3_PLUGIN_ALLOWED_ENDPOINTS: "minio:9000",
    });
    expect(env(before)["ARGO_S3_PLUGIN_ALLOWED_SECRETS"]).toBe("");
    expect({ ...after, env: [] }).toEqual({ ...before, env: [] });
  }, 120_000);

  it("deploy/monitoring adds a PodMonitor that selects argo-server's pods and scrapes the sidecar's named metrics port", async () => {
    const docs = await render({ monitoring: true });
    const monitors = docs.filter((d) => d["kind"] === "PodMonitor") as Record<string, any>[];
    expect(monitors).toHaveLength(1);
    const deploy = docs.find((d) => d["kind"] === "Deployment") as Record<string, any>;
    const podLabels = deploy["spec"].template.metadata.labels as Record<string, string>;
    for (const [k, v] of Object.entries(monitors[0]!["spec"].selector.matchLabels as Record<string, string>))
      expect(podLabels[k], k).toBe(v);
    const sidecar = (deploy["spec"].template.spec.containers as (Container & { ports: { name: string }[] })[]).find(
      (c) => c.name === "s3-artifact-plugin",
    )!;
    const port = monitors[0]!["spec"].podMetricsEndpoints[0];
    expect(sidecar.ports.map((p) => p.name)).toContain(port.port);
    expect(port.path).toBe("/metrics");
    expect(
      (await render()).some((d) => d["kind"] === "PodMonitor"),
      "not in the plugin's own Component",
    ).toBe(false);
  }, 120_000);

  it("plugin.yaml at the root is the registration deploy/ installs, and Argo's parser reads it as a `config` key, with its default repository", async () => {
    const text = readFileSync(join(ROOT, "plugin.yaml"), "utf8");
    const fromRoot = await argoParse({
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: "workflow-controller-configmap" },
      data: { config: text },
    });
    const installed = await argoParse(find("ConfigMap")[0]!);
    // deploy/'s image is the operator's (README overlay); the root file keeps the Dockerfile-built name.
    const image = (c: typeof fromRoot) => c.artifactDrivers![0]!.image;
    const sameImage = (c: typeof fromRoot, to: string) =>
      JSON.parse(
        JSON.stringify(c)
          .split(JSON.stringify(image(c)).slice(1, -1))
          .join(to),
      ) as typeof fromRoot;
    expect(sameImage(fromRoot, "IMAGE").artifactDrivers).toEqual(sameImage(installed, "IMAGE").artifactDrivers);
    expect(sameImage(fromRoot, "IMAGE").images).toEqual(sameImage(installed, "IMAGE").images);
    expect(fromRoot.workflowDefaults).toEqual(installed.workflowDefaults);
    const raw = parseAllDocuments(
      readFileSync(join(ROOT, "deploy", "controller-configmap-patch.yaml"), "utf8"),
    )[0]!.toJS() as { data: Record<string, string> };
    expect(image(fromRoot), "the same image name as the Component before the operator's overlay").toBe(
      (parse(raw.data["artifactDrivers"]!) as { image: string }[])[0]!.image,
    );
    const repo = fromRoot.artifactRepository?.plugin;
    expect(repo?.name).toBe(fromRoot.artifactDrivers![0]!.name);
    expect(parseConfig(repo!.configuration!).bucket).toBeTruthy();
    expect(repo?.keyFormat).toContain("{{workflow.name}}");
  });

  it("gives argo-server its own pod name (its start-up image check otherwise picks any argo-server pod)", () => {
    const server = (find("Deployment")[0]!.spec.template.spec.containers as (Container & { env?: unknown[] })[]).find(
      (c) => c.name === "argo-server",
    )!;
    expect(server.env).toContainEqual({
      name: "ARGO_POD_NAME",
      valueFrom: { fieldRef: { fieldPath: "metadata.name" } },
    });
  });

  it("grants nothing on secrets in Argo's namespace (every workflow there could read argo-server's secrets)", () => {
    expect(find("Role")).toEqual([]);
    expect(find("RoleBinding")).toEqual([]);
  });
});

describe("deploy/workflow-namespace", () => {
  it("grants get on the named secrets only, to the workflows' service account", async () => {
    const { stdout } = await run(await kustomizeBinary(), ["build", join(ROOT, "deploy", "workflow-namespace")], {
      timeout: 60_000,
    });
    const docs = parseAllDocuments(stdout).map((d) => d.toJS() as Record<string, any>);
    const role = docs.find((d) => d["kind"] === "Role")!;
    expect(role.rules).toEqual([
      { apiGroups: [""], resources: ["secrets"], resourceNames: ["s3-credentials"], verbs: ["get"] },
    ]);
    const binding = docs.find((d) => d["kind"] === "RoleBinding")!;
    expect(binding.roleRef.name).toBe(role.metadata.name);
    expect(binding.subjects).toEqual([{ kind: "ServiceAccount", name: "default" }]);
    expect(role.metadata.namespace, "applied with -n <workflow namespace>").toBeUndefined();
  });
});

describe("Dockerfile", () => {
  const text = readFileSync(join(ROOT, "Dockerfile"), "utf8");
  const stages = text.split("\n").filter((l) => l.startsWith("FROM "));

  it("is multi-stage on one pinned Node: the tested NODE_IMAGE_VERSION, an LTS line at or above the lowest supported; the launcher from a pinned C toolchain", () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    // Every Node stage on the one pinned Node; the launcher (static C) from a pinned gcc image, copied into the last.
    for (const s of stages.filter((x) => !/ AS launcher$/.test(x))) expect(s).toMatch(/^FROM node:\$\{NODE_VERSION\}-/);
    expect(stages.filter((x) => / AS launcher$/.test(x))).toEqual([
      expect.stringMatching(/^FROM gcc:\d+-bookworm AS launcher$/),
    ]);
    expect(stages.at(-1)).toMatch(/^FROM node:\$\{NODE_VERSION\}-/);
    const pinned = /^ARG NODE_VERSION=(\S+)$/m.exec(text)?.[1];
    const versions = toolVersions();
    expect(pinned, "the Dockerfile's Node is the one the tests run on").toBe(versions["NODE_IMAGE_VERSION"]);
    const major = Number(pinned!.split(".")[0]);
    expect(major % 2).toBe(0);
    expect(major).toBeGreaterThanOrEqual(Number(versions["NODE_MIN_VERSION"]!.split(".")[0]));
    const engines = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { engines: { node: string } })
      .engines.node;
    expect(engines).toBe(`>=${versions["NODE_MIN_VERSION"]!.split(".")[0]}`);
  });

  it("labels the image with the release package.json names (OCI labels)", () => {
    const version = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string }).version;
    expect(/^ARG VERSION=(\S+)$/m.exec(text)?.[1]).toBe(version);
    expect(text).toContain('org.opencontainers.image.version="${VERSION}"');
    expect(readFileSync(join(ROOT, "CHANGELOG.md"), "utf8")).toMatch(
      new RegExp(`^## ${version.replaceAll(".", "\\.")}$`, "m"),
    );
  });

  it("installs production dependencies only, runs as Argo's executor uid, keeps /tmp writable, exec-form ENTRYPOINT through the launcher", () => {
    expect(text).toMatch(/npm ci --omit=dev/);
    const user = [...text.matchAll(/^USER (\S+)/gm)].at(-1)?.[1];
    // Numeric: the kubelet can only check runAsNonRoot (argo-server's pod sets it without runAsUser) against a uid.
    // 8737, the argoexec image's: in v4.1's init-less layout Argo's supervisor chmods what the plugin loaded.
    expect(user).toBe("8737:8737");
    expect(text).toMatch(/chmod 1777 \/tmp/);
    expect(text).toMatch(/^ENTRYPOINT \["\/app\/launch", "\/usr\/local\/bin\/node", "\/app\/dist\/main\.cjs"\]$/m);
    expect(text).toMatch(/^COPY --from=launcher \/launch \.\/launch$/m);
    expect(text).not.toMatch(/^CMD /m);
  });
});
