#!/usr/bin/env node
// The import graph of src/ between its folders (the layers), with how many
// imports each edge has, and any import that points the wrong way.
// Usage: node scripts/import-graph.mjs [srcDir]   (default: ./src)
import { readFileSync, readdirSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

const root = resolve(process.argv[2] ?? "src");
const files = [];
const walk = (d) => {
  for (const name of readdirSync(d)) {
    const p = join(d, name);
    if (statSync(p).isDirectory()) walk(p);
    else if (p.endsWith(".ts")) files.push(p);
  }
};
walk(root);

const layerOf = (file) => {
  const rel = relative(root, file);
  return rel.includes("/") ? rel.split("/")[0] : rel.replace(/\.ts$/, "");
};
const edges = new Map();
const commandSites = [];
const envReaders = [];
for (const f of files) {
  const text = readFileSync(f, "utf8");
  // S3 commands constructed here (\`new XxxCommand(\`), and reads of the environment.
  const commands = (text.match(/new [A-Z][A-Za-z0-9]*Command\(/g) ?? []).length;
  if (commands > 0) commandSites.push(`${relative(root, f)} (${commands})`);
  if (/process\.env\b/.test(text.replace(/\/\/.*$/gm, ""))) envReaders.push(relative(root, f));
  for (const m of text.matchAll(/^\s*(?:import|export)\s[^'"]*?from\s+["'](\.[^"']+)["']/gm)) {
    const target = resolve(dirname(f), m[1].replace(/\.js$/, ".ts"));
    const a = layerOf(f);
    const b = layerOf(target);
    if (a === b) continue;
    const k = `${a} -> ${b}`;
    edges.set(k, (edges.get(k) ?? 0) + 1);
  }
}
for (const [k, n] of [...edges].sort()) console.log(`${k}  (${n})`);
console.log(`S3 commands built in: ${commandSites.join(", ") || "none"}`);
console.log(`process.env read in: ${envReaders.join(", ") || "none"}`);
console.log(`${files.length} files, ${edges.size} edges between folders`);
