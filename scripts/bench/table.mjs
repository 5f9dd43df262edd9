// @ts-check
// Prints bench/results/bench-<profile>.json (or the files given) as the Markdown tables the docs carry.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "../lib/tools.mjs";

const files = process.argv.slice(2);
if (files.length === 0) for (const p of ["loopback", "s3-like"]) files.push(join(ROOT, "bench", "results", `bench-${p}.json`));
for (const file of files) {
  /** @type {any} */
  let r;
  try {
    r = JSON.parse(readFileSync(file, "utf8"));
  } catch {
    continue;
  }
  const m = r.machine;
  console.log(`\n**${r.options.profile.name}** (${r.options.profile.note}). Run of ${r.date.slice(0, 10)} at ${r.commit} on ${m.cores} cores, Node ${m.node}, MinIO ${r.tools.minio}; median of ${r.options.rounds} interleaved rounds.\n`);
  console.log("| case | plugin | built-in | s5cmd | plugin ÷ built-in | plugin ÷ s5cmd | CPU-s/GiB plugin / built-in / s5cmd | peak RSS MiB plugin / built-in / s5cmd |");
  console.log("|---|---|---|---|---|---|---|---|");
  for (const row of r.results) {
    const by = row.results;
    const t = row.targets?.["built-in"];
    const mark = t === undefined ? "" : ` (≥ ${t} ${row.met ? "✔" : "✘"})`;
    const cell = (/** @type {string} */ n) => (by[n] ? `${Math.round(by[n].rate)} ${row.unit}` : "—");
    const three = (/** @type {string} */ f, /** @type {number} */ digits) => ["plugin", "built-in", "s5cmd"].map((n) => (by[n] ? by[n][f].toFixed(digits) : "—")).join(" / ");
    console.log(`| ${row.case} | ${cell("plugin")} | ${cell("built-in")} | ${cell("s5cmd")} | ${row.ratios["built-in"].toFixed(2)}${mark} | ${row.ratios["s5cmd"].toFixed(2)} | ${three("cpuPerGiB", 2)} | ${three("peakRssMiB", 0)} |`);
  }
}
