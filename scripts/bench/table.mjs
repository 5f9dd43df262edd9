// @ts-check
// Prints bench/results/latest.json (or the file given) as the Markdown table the README carries.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "../lib/tools.mjs";

const file = process.argv[2] ?? join(ROOT, "bench", "results", "latest.json");
const r = JSON.parse(readFileSync(file, "utf8"));
const m = r.machine;
console.log(`Run of ${r.date.slice(0, 10)} on ${m.cores} cores (${m.cpu}), ${m.memGiB} GiB, Node ${m.node}, MinIO ${r.tools.minio}, s5cmd ${r.tools.s5cmd}; best of ${r.options.reps}.\n`);
console.log("| case | plugin | reference | ratio | target | plugin CPU s | plugin peak RSS MiB |");
console.log("|---|---|---|---|---|---|---|");
for (const row of r.results) {
  const target = row.target === undefined ? "" : `≥ ${row.target} ${row.met ? "✔" : "✘"}`;
  console.log(
    `| ${row.case} | ${row.plugin.rate} ${row.unit} | ${row.reference.name} ${row.reference.rate} ${row.unit} | ${row.ratio.toFixed(2)} | ${target} | ${row.plugin.cpuSeconds} | ${row.plugin.peakRssMiB} |`,
  );
}
