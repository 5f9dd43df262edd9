#!/usr/bin/env node
// @ts-check
// The import graph of src/ between its folders (the layers), with how many
// imports each edge has; test/unit/import-graph.test.ts holds it to the floor
// order. Usage: node scripts/import-graph.mjs [srcDir]   (default: ./src)
import { readFileSync, readdirSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * Every import between two folders (or top-level files) of `srcDir`, as "from -> to" with its
 * count, and the files importing each edge; plus where S3 commands are built and the environment read.
 * @param {string} srcDir
 */
export function importGraph(srcDir) {
  const root = resolve(srcDir);
  /** @type {string[]} */
  const files = [];
  /** @param {string} d */
  const walk = (d) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (p.endsWith(".ts")) files.push(p);
    }
  };
  walk(root);
  /** @param {string} file */
  const layerOf = (file) => {
    const rel = relative(root, file);
    return rel.includes("/") ? rel.split("/")[0] : rel.replace(/\.ts$/, "");
  };
  /** @type {Map<string, { count: number, files: Set<string> }>} */
  const edges = new Map();
  /** @type {string[]} */
  const commandSites = [];
  /** @type {string[]} */
  const envReaders = [];
  for (const f of files) {
    const text = readFileSync(f, "utf8");
    // S3 commands constructed here (`new XxxCommand(`), and reads of the environment.
    const commands = (text.match(/new [A-Z][A-Za-z0-9]*Command\(/g) ?? []).length;
    if (commands > 0) commandSites.push(`${relative(root, f)} (${commands})`);
    if (/process\.env\b/.test(text.replace(/\/\/.*$/gm, ""))) envReaders.push(relative(root, f));
    for (const m of text.matchAll(/^\s*(?:import|export)\s[^'"]*?from\s+["'](\.[^"']+)["']/gm)) {
      const target = resolve(dirname(f), (m[1] ?? "").replace(/\.js$/, ".ts"));
      const a = layerOf(f);
      const b = layerOf(target);
      if (a === b) continue;
      const k = `${a} -> ${b}`;
      const e = edges.get(k) ?? { count: 0, files: new Set() };
      e.count++;
      e.files.add(relative(root, f));
      edges.set(k, e);
    }
  }
  return { files: files.length, edges, commandSites, envReaders };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const g = importGraph(process.argv[2] ?? "src");
  for (const [k, e] of [...g.edges].sort()) console.log(`${k}  (${e.count})`);
  console.log(`S3 commands built in: ${g.commandSites.join(", ") || "none"}`);
  console.log(`process.env read in: ${g.envReaders.join(", ") || "none"}`);
  console.log(`${g.files} files, ${g.edges.size} edges between folders`);
}
