// The layout reads as the architecture: every import between src/'s folders
// goes down the floors below (wire → admission → artifact semantics →
// transfer engine → the store port ← S3 → the HTTP/1.1 client → foundations), and only src/s3/ speaks to the AWS SDK.
// Imports that break a rule of the shape still to land (issue #35) are listed
// by name as debts: a new one fails, and so does a debt paid but still listed.
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { importGraph } from "../../scripts/import-graph.mjs";

const SRC = join(import.meta.dirname, "..", "..", "src");

/** Floor of each folder (or top-level file) of src/: an import goes to a lower floor only. */
const FLOORS: Record<string, number> = {
  "package-root": 0,
  util: 0,
  errors: 0,
  log: 0,
  version: 1,
  config: 1,
  settings: 1,
  http: 2,
  store: 3,
  s3: 4,
  transfer: 5,
  artifacts: 6,
  admission: 7,
  wire: 8,
  tracing: 9,
  metrics: 9,
  "plugin-client": 9,
  services: 10,
  cli: 10,
  bin: 11,
};

/** Imports the floors would allow but the shape does not, each with its reason. */
const FORBIDDEN: Record<string, string> = {
  "transfer -> s3": "the transfer engine speaks to stores only through the port (src/store/port.ts)",
  "transfer -> http": "the engine's bytes reach the HTTP client only through a store",
  "admission -> s3": "a tenant is read from the port's target, not from the S3 layer's",
  "wire -> s3": "the wire sees targets through the port",
  "artifacts -> s3": "the artifact rules reach S3 only through the transfer engine's front door",
  "artifacts -> admission": "a call's target and tenant are admission's, decided before the service",
};

/** Imports that break a rule of the shape still to land; each names the rule. */
const DEBTS: Record<string, string> = {
  // e.g. "artifacts -> s3": "why it is still there, and what removes it"
};

type Graph = { edges: Map<string, { count: number; files: Set<string> }> };

describe("src/ import graph", () => {
  const graph: Graph = importGraph(SRC);

  it("every folder has a floor", () => {
    const layers = readdirSync(SRC).map((n) => n.replace(/\.ts$/, ""));
    expect(layers.filter((l) => FLOORS[l] === undefined)).toEqual([]);
  });

  it("every import goes down the floors, except the listed debts", () => {
    const wrong: string[] = [];
    for (const [edge, e] of graph.edges) {
      const [from, to] = edge.split(" -> ") as [string, string];
      if ((FLOORS[to] ?? Infinity) < (FLOORS[from] ?? -Infinity) || DEBTS[edge] !== undefined) continue;
      wrong.push(`${edge} (${[...e.files].join(", ")})`);
    }
    expect(wrong).toEqual([]);
  });

  it("no import the shape forbids", () => {
    expect(Object.keys(FORBIDDEN).filter((e) => graph.edges.has(e) && DEBTS[e] === undefined)).toEqual([]);
  });

  it("each listed debt is still there (remove it once paid)", () => {
    expect(Object.keys(DEBTS).filter((d) => !graph.edges.has(d))).toEqual([]);
  });

  it("only src/s3/ imports the AWS SDK", () => {
    const outside: string[] = [];
    const walk = (dir: string): void => {
      for (const ent of readdirSync(dir, { withFileTypes: true })) {
        const p = join(dir, ent.name);
        if (ent.isDirectory()) walk(p);
        else if (p.endsWith(".ts") && !p.startsWith(join(SRC, "s3"))) {
          if (/from\s+["']@(aws-sdk|smithy)\//.test(readFileSync(p, "utf8"))) outside.push(p.slice(SRC.length + 1));
        }
      }
    };
    walk(SRC);
    expect(outside).toEqual([]);
  });
});
