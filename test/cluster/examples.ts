// The repository's examples made runnable in the test cluster: every plugin
// configuration points at the cluster's MinIO with keys from a secret, and
// the public alpine image becomes the busybox image the setup imported.
// Nothing else changes: keys, archive settings, modes, volumes and templates
// run as a user would submit them.
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { parse, parseAllDocuments, stringify } from "yaml";

export interface Store {
  endpoint: string;
  bucket: string;
  secret: string;
}

export function storeConfiguration(s: Store, extra = ""): string {
  return (
    [
      `endpoint: ${s.endpoint}`,
      `bucket: ${s.bucket}`,
      "insecure: true",
      `accessKeySecret: {name: ${s.secret}, key: accesskey}`,
      `secretKeySecret: {name: ${s.secret}, key: secretkey}`,
      extra,
    ]
      .filter(Boolean)
      .join("\n") + "\n"
  );
}

/** The example's own configuration with the store's address and keys in place of AWS's; the rest (tuning, ...) kept. */
function retarget(configuration: string, s: Store): string {
  const cfg = (parse(configuration) ?? {}) as Record<string, unknown>;
  for (const k of [
    "endpoint",
    "bucket",
    "region",
    "useSDKCreds",
    "insecure",
    "accessKeySecret",
    "secretKeySecret",
    "createBucketIfNotPresent",
  ])
    delete cfg[k];
  const rest = Object.keys(cfg).length ? stringify(cfg) : "";
  return storeConfiguration(s, rest.trimEnd());
}

type Node = Record<string, unknown> | unknown[] | string | number | boolean | null;

/** Every `plugin: {configuration}` and every alpine image, rewritten in place. */
function rewrite(n: Node, s: Store, image: string, scale: (cmd: string) => string): Node {
  if (Array.isArray(n)) return n.map((v) => rewrite(v as Node, s, image, scale));
  if (n && typeof n === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(n)) {
      if (k === "configuration" && typeof v === "string") out[k] = retarget(v, s);
      else if (k === "image" && typeof v === "string" && v.startsWith("alpine:")) out[k] = image;
      else if (k === "command" && Array.isArray(v)) out[k] = v.map((c) => (typeof c === "string" ? scale(c) : c));
      else out[k] = rewrite(v as Node, s, image, scale);
    }
    return out;
  }
  return n;
}

export interface Example {
  file: string;
  kind: string;
  doc: Record<string, unknown>;
}

/**
 * The examples' documents, rewritten. `scale` may shrink a command's size
 * (e.g. the large-output example's dd count); ConfigMaps' YAML-in-YAML
 * repository entries are rewritten too.
 */
export function examples(root: string, s: Store, image: string, scale: (cmd: string) => string = (c) => c): Example[] {
  const dir = join(root, "examples");
  const out: Example[] = [];
  for (const file of readdirSync(dir)
    .filter((f) => f.endsWith(".yaml"))
    .sort()) {
    for (const d of parseAllDocuments(readFileSync(join(dir, file), "utf8"))) {
      const doc = d.toJS() as Record<string, unknown> | null;
      if (!doc) continue;
      let rewritten = rewrite(doc as Node, s, image, scale) as Record<string, unknown>;
      if (doc["kind"] === "ConfigMap") {
        const data = doc["data"] as Record<string, string>;
        const repos: Record<string, string> = {};
        for (const [k, v] of Object.entries(data)) {
          const parsed = parseAllDocuments(v)[0]!.toJS() as Node;
          repos[k] = stringify(rewrite(parsed, s, image, scale));
        }
        rewritten = { ...rewritten, data: repos };
      }
      out.push({ file, kind: String(doc["kind"]), doc: rewritten });
    }
  }
  return out;
}
