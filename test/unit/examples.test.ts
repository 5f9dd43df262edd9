// Every manifest under examples/ must be usable as written: valid YAML, each
// `plugin:` block shaped the way Argo reads it, named after the driver that
// deploy/ registers, and its configuration accepted by the plugin's own
// parser (what the plugin would answer at the first RPC).
import { readFileSync, readdirSync } from "node:fs";
import { join, relative } from "node:path";
import { parse, parseAllDocuments } from "yaml";
import { describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config/parse.js";
import { ROOT } from "../support/plugin.js";

const EXAMPLES = join(ROOT, "examples");

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

interface PluginBlock {
  file: string;
  /** Where in the document, e.g. `Workflow spec.templates[1].outputs.artifacts[0].plugin`. */
  where: string;
  /** An artifact's location, or a repository (default artifact repository). */
  kind: "artifact" | "repository";
  block: Obj;
}

function yamlFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return yamlFiles(p);
    return /\.ya?ml$/.test(e.name) ? [p] : [];
  });
}

function loadDocs(file: string): Obj[] {
  const docs = parseAllDocuments(readFileSync(file, "utf8"));
  return docs.map((d, i) => {
    expect(d.errors, `${relative(ROOT, file)} document ${i + 1}`).toEqual([]);
    return d.toJS() as Obj;
  });
}

/** Every `plugin:` mapping under an `artifacts` list (inputs, outputs, arguments). */
function artifactPlugins(node: unknown, path: string, out: { where: string; block: Obj }[], inArtifacts = false): void {
  if (Array.isArray(node)) node.forEach((v, i) => artifactPlugins(v, `${path}[${i}]`, out, inArtifacts));
  else if (isObj(node)) {
    if (inArtifacts && isObj(node["plugin"])) out.push({ where: `${path}.plugin`, block: node["plugin"] });
    for (const [k, v] of Object.entries(node)) artifactPlugins(v, path ? `${path}.${k}` : k, out, k === "artifacts");
  }
}

function collect(): { blocks: PluginBlock[]; files: string[]; docs: { file: string; doc: Obj }[] } {
  const files = yamlFiles(EXAMPLES);
  const blocks: PluginBlock[] = [];
  const docs: { file: string; doc: Obj }[] = [];
  for (const file of files) {
    const rel = relative(ROOT, file);
    for (const doc of loadDocs(file)) {
      if (!doc) continue;
      docs.push({ file: rel, doc });
      const kind = String(doc["kind"]);
      const data = doc["data"];
      if (kind === "ConfigMap" && isObj(data)) {
        // Repositories are YAML strings inside the ConfigMap: parse each like Argo does.
        for (const [key, text] of Object.entries(data)) {
          if (
            key === "artifactRepository" ||
            (doc["metadata"] && (doc["metadata"] as Obj)["name"] === "artifact-repositories")
          ) {
            const repo = parse(String(text)) as unknown;
            if (isObj(repo) && isObj(repo["plugin"]))
              blocks.push({
                file: rel,
                where: `ConfigMap data.${key}.plugin`,
                kind: "repository",
                block: repo["plugin"],
              });
          }
        }
      }
      const found: { where: string; block: Obj }[] = [];
      artifactPlugins(doc, "", found);
      for (const f of found) blocks.push({ file: rel, where: `${kind} ${f.where}`, kind: "artifact", block: f.block });
    }
  }
  return { blocks, files, docs };
}

const registered = (() => {
  const cm = parseAllDocuments(readFileSync(join(ROOT, "deploy", "controller-configmap-patch.yaml"), "utf8"))
    .map((d) => d.toJS() as Obj)
    .find((d) => d?.["kind"] === "ConfigMap")!;
  return (parse(String((cm["data"] as Obj)["artifactDrivers"])) as { name: string }[]).map((d) => d.name);
})();

const { blocks, files, docs } = collect();
const label = (b: PluginBlock) => `${b.file}: ${b.where}`;

describe("examples/", () => {
  it("holds the documented examples, each with at least one plugin block", () => {
    const names = files.map((f) => relative(EXAMPLES, f)).sort();
    expect(names).toEqual(
      expect.arrayContaining([
        "artifact-repository.yaml",
        "eks-pod-identity.yaml",
        "workflow-directory-artifact.yaml",
        "workflow-file-artifact.yaml",
        "workflow-key-only.yaml",
        "workflow-large-output.yaml",
      ]),
    );
    for (const f of files)
      expect(
        blocks.some((b) => b.file === relative(ROOT, f)),
        relative(ROOT, f),
      ).toBe(true);
  });

  it.each(blocks.map((b) => [label(b), b] as const))("%s: the fields Argo reads", (_l, b) => {
    const allowed =
      b.kind === "repository"
        ? ["name", "configuration", "keyFormat"]
        : ["name", "configuration", "key", "connectionTimeoutSeconds"];
    expect(Object.keys(b.block).filter((k) => !allowed.includes(k))).toEqual([]);
    if (b.kind === "repository") {
      expect(registered).toContain(b.block["name"]);
      expect(typeof b.block["configuration"]).toBe("string");
      if (b.block["keyFormat"] !== undefined) expect(b.block["keyFormat"]).toMatch(/\S/);
    } else {
      expect(typeof b.block["key"]).toBe("string");
      expect(b.block["key"]).toMatch(/\S/);
      // Either a full location, or key-only (name and configuration from the default repository).
      if (b.block["configuration"] !== undefined || b.block["name"] !== undefined) {
        expect(registered).toContain(b.block["name"]);
        expect(typeof b.block["configuration"]).toBe("string");
      }
      if (b.block["connectionTimeoutSeconds"] !== undefined)
        expect(Number.isInteger(b.block["connectionTimeoutSeconds"])).toBe(true);
    }
  });

  const configured = blocks.filter((b) => typeof b.block["configuration"] === "string");
  it.each(configured.map((b) => [label(b), b] as const))("%s: configuration passes the plugin's parser", (_l, b) => {
    const cfg = parseConfig(b.block["configuration"] as string);
    expect(cfg.bucket).toBeTruthy();
  });

  it("key-only artifacts have a default plugin repository to take their location from", () => {
    const keyOnly = blocks.filter((b) => b.kind === "artifact" && b.block["configuration"] === undefined);
    expect(keyOnly.length).toBeGreaterThan(0);
    const cm = docs.find(
      (d) => d.doc["kind"] === "ConfigMap" && (d.doc["metadata"] as Obj)["name"] === "artifact-repositories",
    )!.doc;
    const defaultKey = ((cm["metadata"] as Obj)["annotations"] as Obj)[
      "workflows.argoproj.io/default-artifact-repository"
    ] as string;
    const repo = parse(String((cm["data"] as Obj)[defaultKey])) as Obj;
    expect(isObj(repo["plugin"])).toBe(true);
    expect((repo["plugin"] as Obj)["keyFormat"]).toBeTruthy();
  });

  it("the directory example stores its output unarchived", () => {
    const wf = docs.find((d) => d.file.endsWith("workflow-directory-artifact.yaml"))!.doc;
    const outputs: Obj[] = [];
    const walk = (n: unknown): void => {
      if (Array.isArray(n)) n.forEach(walk);
      else if (isObj(n)) {
        if (isObj(n["outputs"])) outputs.push(...(((n["outputs"] as Obj)["artifacts"] as Obj[] | undefined) ?? []));
        Object.values(n).forEach(walk);
      }
    };
    walk(wf);
    expect(outputs.length).toBeGreaterThan(0);
    for (const a of outputs) expect(a["archive"]).toEqual({ none: {} });
  });
});
