// The deployment artefacts Argo reads: plugin.yaml (artifactDrivers entry and
// argo-server sidecar patch) and the Dockerfile's contract with Argo.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseAllDocuments, parse } from "yaml";
import { describe, expect, it } from "vitest";
import { ROOT } from "./support/plugin.js";

interface Container {
  name: string;
  image?: string;
  args?: string[];
  volumeMounts?: { name: string; mountPath: string }[];
}

describe("plugin.yaml", () => {
  const docs = parseAllDocuments(readFileSync(join(ROOT, "plugin.yaml"), "utf8")).map((d) => d.toJS());
  const cm = docs.find((d) => d?.kind === "ConfigMap");
  const deploy = docs.find((d) => d?.kind === "Deployment");

  it("registers the plugin in workflow-controller-configmap artifactDrivers", () => {
    expect(cm.metadata.name).toBe("workflow-controller-configmap");
    const drivers = parse(cm.data.artifactDrivers) as { name: string; image: string; connectionTimeoutSeconds?: number }[];
    expect(drivers).toHaveLength(1);
    expect(drivers[0]!.name).toMatch(/^[a-z0-9-]+$/);
    expect(drivers[0]!.image).toBeTruthy();
    if (drivers[0]!.connectionTimeoutSeconds !== undefined) expect(Number.isInteger(drivers[0]!.connectionTimeoutSeconds)).toBe(true);
  });

  it("adds an argo-server sidecar on the shared socket directory /tmp/artifact-plugins/<name>", () => {
    const name = (parse(cm.data.artifactDrivers) as { name: string; image: string }[])[0]!;
    const dir = `/tmp/artifact-plugins/${name.name}`;
    expect(deploy.metadata.name).toBe("argo-server");
    const containers = deploy.spec.template.spec.containers as Container[];
    const server = containers.find((c) => c.name === "argo-server")!;
    const sidecar = containers.find((c) => c.name !== "argo-server")!;
    expect(sidecar.image).toBe(name.image);
    expect(sidecar.args).toEqual([`${dir}/socket`]);
    const serverMount = server.volumeMounts!.find((m) => m.mountPath === dir)!;
    const sidecarMount = sidecar.volumeMounts!.find((m) => m.mountPath === dir)!;
    expect(serverMount.name).toBe(sidecarMount.name);
    const volume = (deploy.spec.template.spec.volumes as { name: string; emptyDir?: object }[]).find((v) => v.name === serverMount.name);
    expect(volume?.emptyDir).toBeDefined();
  });
});

describe("Dockerfile", () => {
  const text = readFileSync(join(ROOT, "Dockerfile"), "utf8");
  const stages = text.split("\n").filter((l) => l.startsWith("FROM "));

  it("is multi-stage on a supported Node LTS (even major ≥ 22)", () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    for (const s of stages) {
      const major = Number(/node:(\d+)/.exec(s)?.[1]);
      expect(major % 2).toBe(0);
      expect(major).toBeGreaterThanOrEqual(22);
    }
  });

  it("installs production dependencies only, runs as non-root, keeps /tmp writable, exec-form ENTRYPOINT", () => {
    expect(text).toMatch(/npm ci --omit=dev/);
    const user = [...text.matchAll(/^USER (\S+)/gm)].at(-1)?.[1];
    expect(user && user !== "root" && user !== "0").toBeTruthy();
    expect(text).toMatch(/chmod 1777 \/tmp/);
    expect(text).toMatch(/^ENTRYPOINT \["node", "\/app\/dist\/main\.js"\]$/m);
    expect(text).not.toMatch(/^CMD /m);
  });
});
