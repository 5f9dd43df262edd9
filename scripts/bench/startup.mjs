// @ts-check
// What the plugin costs every pod before it moves a byte: time from exec to a
// listening socket (Argo's executor dials it then) and resident memory once
// idle, on the Node the image runs (NODE_IMAGE_VERSION) and on the lowest
// supported (NODE_MIN_VERSION), beside the floor of the same Node: `node -e 0`
// to exit, and an idle `node` process's RSS. Median of N starts after two
// unmeasured ones (pages warmed). Part of `npm run bench`; alone:
//   node scripts/bench/startup.mjs [--starts N]
// Results: bench/results/startup.json and a table on stdout.
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { ROOT, nodeBinary, toolVersions } from "../lib/tools.mjs";

const MAIN = join(ROOT, "dist", "main.js");
const median = (/** @type {number[]} */ xs) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)] ?? NaN;
const rssMiB = (/** @type {number} */ pid) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? NaN) / 1024;
const settle = (/** @type {number} */ ms) => new Promise((r) => setTimeout(r, ms));

/** ms from spawn to the socket's appearance, and RSS after `idleMs`, for one plugin start. @param {string} node */
async function pluginOnce(node, idleMs = 1500) {
  const dir = mkdtempSync(join(tmpdir(), "startup-"));
  const socket = join(dir, "s3.sock");
  const t = process.hrtime.bigint();
  const p = spawn(node, [MAIN, socket], { stdio: "ignore", env: { PATH: process.env["PATH"] ?? "", LOG_LEVEL: "warn" } });
  const deadline = Date.now() + 20_000;
  while (!existsSync(socket)) {
    if (p.exitCode !== null || Date.now() > deadline) throw new Error(`the plugin did not listen within 20 s (exit ${p.exitCode})`);
    await new Promise((r) => setImmediate(r));
  }
  const ms = Number(process.hrtime.bigint() - t) / 1e6;
  await settle(idleMs);
  const rss = rssMiB(/** @type {number} */ (p.pid));
  p.kill("SIGTERM");
  await new Promise((r) => p.once("exit", r));
  rmSync(dir, { recursive: true, force: true });
  return { ms, rss };
}

/** The floor: `node -e 0` to exit, and an idle node's RSS. @param {string} node */
async function floorOnce(node, idleMs = 1500) {
  const t = process.hrtime.bigint();
  await new Promise((resolve) => spawn(node, ["-e", "0"], { stdio: "ignore" }).once("exit", resolve));
  const ms = Number(process.hrtime.bigint() - t) / 1e6;
  const idle = spawn(node, ["-e", "setInterval(() => {}, 1000)"], { stdio: "ignore" });
  await settle(idleMs);
  const rss = rssMiB(/** @type {number} */ (idle.pid));
  idle.kill("SIGKILL");
  await new Promise((r) => idle.once("exit", r));
  return { ms, rss };
}

/** @param {number} starts */
export async function benchStartup(starts = 20) {
  const v = toolVersions();
  /** @type {{ case: string, node: string, startMs: number, idleRssMiB: number, starts: number }[]} */
  const rows = [];
  for (const pin of ["NODE_IMAGE_VERSION", "NODE_MIN_VERSION"]) {
    const version = v[pin] ?? "";
    const node = await nodeBinary(version);
    for (const [name, once] of /** @type {const} */ ([["plugin", pluginOnce], ["floor: node -e 0 / idle node", floorOnce]])) {
      for (let i = 0; i < 2; i++) await once(node); // warm the pages
      const runs = [];
      for (let i = 0; i < starts; i++) runs.push(await once(node));
      rows.push({ case: name, node: version, startMs: Math.round(median(runs.map((r) => r.ms))), idleRssMiB: Math.round(median(runs.map((r) => r.rss)) * 10) / 10, starts });
    }
  }
  return rows;
}

/** @param {Awaited<ReturnType<typeof benchStartup>>} rows */
export function startupTable(rows) {
  return [
    "| case | Node | start (ms, median) | idle RSS (MiB, median) |",
    "|---|---|---|---|",
    ...rows.map((r) => `| ${r.case} | ${r.node} | ${r.startMs} | ${r.idleRssMiB} |`),
  ].join("\n");
}

if (process.argv[1] && import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({ options: { starts: { type: "string", default: "20" } } });
  const rows = await benchStartup(Number(values.starts));
  process.stdout.write(`${startupTable(rows)}\n`);
  const dir = join(ROOT, "bench", "results");
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "startup.json"), `${JSON.stringify({ date: new Date().toISOString(), rows }, null, 2)}\n`);
  process.stdout.write("results: bench/results/startup.json\n");
}
