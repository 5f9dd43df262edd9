// Prometheus' text exposition read by Prometheus' own parser (expfmt, in
// test/promparse, built once): what a scrape of the plugin's /metrics gives.
import { execFile } from "node:child_process";
import { goBuild } from "../../scripts/lib/tools.mjs";

export interface PromMetric {
  labels: Record<string, string>;
  value?: number;
  count?: number;
  sum?: number;
  buckets?: Record<string, number>;
}

export interface PromFamily {
  name: string;
  help: string;
  type: "COUNTER" | "GAUGE" | "HISTOGRAM" | "SUMMARY" | "UNTYPED";
  metrics: PromMetric[];
}

/** Parses `text`; rejects with the parser's error when Prometheus would refuse it. */
export async function prometheusParse(text: string): Promise<PromFamily[]> {
  const bin = await goBuild("test/promparse");
  return new Promise((resolve, reject) => {
    const child = execFile(bin, [], { maxBuffer: 64 * 1024 * 1024, timeout: 30_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`Prometheus' parser refused the metrics: ${stderr || err.message}`));
      else resolve(JSON.parse(stdout) as PromFamily[]);
    });
    child.stdin!.end(text);
  });
}
