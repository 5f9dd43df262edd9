// @ts-check
// What the plugin costs every pod before it moves a byte, started as the
// image starts it: the bundle (dist/main.cjs) with the compile cache baked as
// the Dockerfile bakes it, from a replay of the image's /app
// (scripts/lib/image-app.mjs). Per start: ms from exec to the listening socket
// (Argo's client looks for it once a second, so this decides whether a step
// waits a second), ms to the ready line (services built, Health SERVING),
// resident memory once idle and the private (anonymous) part of it. Beside it
// in the same run: the same bundle without the cache, the tsc output
// (dist/bin/plugin.js, what ran before the bundle) and the floor of the same Node
// (`node -e 0` to exit, an idle `node`). On the image's Node
// (NODE_IMAGE_VERSION) and the lowest supported (NODE_MIN_VERSION). Median of
// N starts after two unmeasured ones (pages warmed), and the size of the
// image's /app. Part of `npm run bench`; alone:
//   node scripts/bench/startup.mjs [--starts N]
//   BENCH_STARTUP_BEFORE=/path/to/earlier/dist/main.js …   # an earlier build beside this one
// Results: bench/results/startup.json and a table on stdout.
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { imageEnv } from "../lib/image-env.mjs";
import { stageImageApp, treeBytes } from "../lib/image-app.mjs";
import { ROOT, nodeBinary, toolVersions } from "../lib/tools.mjs";

const median = (/** @type {number[]} */ xs) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)] ?? NaN;
const status = (/** @type {number} */ pid, /** @type {string} */ field) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? NaN) / 1024;
const settle = (/** @type {number} */ ms) => new Promise((r) => setTimeout(r, ms));
const MiB = 1024 * 1024;

/**
 * One plugin start: ms to the socket, ms to the ready line, RSS and private memory after `idleMs`.
 * @param {string} node @param {string} main @param {Record<string, string>} env
 */
async function pluginOnce(node, main, env, idleMs = 1500) {
  const dir = mkdtempSync(join(tmpdir(), "startup-"));
  const socket = join(dir, "s3.sock");
  const t = process.hrtime.bigint();
  const p = spawn(node, [main, socket], { stdio: ["ignore", "pipe", "ignore"], env: { PATH: process.env["PATH"] ?? "", LOG_LEVEL: "info", ...env } });
  let readyMs = NaN;
  let out = "";
  p.stdout.on("data", (c) => {
    out += c;
    if (Number.isNaN(readyMs) && out.includes('"msg":"ready"')) readyMs = Number(process.hrtime.bigint() - t) / 1e6;
  });
  const deadline = Date.now() + 20_000;
  while (!existsSync(socket)) {
    if (p.exitCode !== null || Date.now() > deadline) throw new Error(`the plugin did not listen within 20 s (exit ${p.exitCode})`);
    await new Promise((r) => setImmediate(r));
  }
  const ms = Number(process.hrtime.bigint() - t) / 1e6;
  await settle(idleMs);
  if (Number.isNaN(readyMs)) throw new Error(`the plugin logged no ready line within ${idleMs} ms of its socket`);
  const rss = status(/** @type {number} */ (p.pid), "VmRSS");
  const anon = status(/** @type {number} */ (p.pid), "RssAnon");
  p.kill("SIGTERM");
  await new Promise((r) => p.once("exit", r));
  rmSync(dir, { recursive: true, force: true });
  return { ms, readyMs, rss, anon };
}

/** The floor: `node -e 0` to exit, and an idle node's memory. @param {string} node */
async function floorOnce(node, idleMs = 1500) {
  const t = process.hrtime.bigint();
  await new Promise((resolve) => spawn(node, ["-e", "0"], { stdio: "ignore" }).once("exit", resolve));
  const ms = Number(process.hrtime.bigint() - t) / 1e6;
  const idle = spawn(node, ["-e", "setInterval(() => {}, 1000)"], { stdio: "ignore" });
  await settle(idleMs);
  const rss = status(/** @type {number} */ (idle.pid), "VmRSS");
  const anon = status(/** @type {number} */ (idle.pid), "RssAnon");
  idle.kill("SIGKILL");
  await new Promise((r) => idle.once("exit", r));
  return { ms, readyMs: NaN, rss, anon };
}

/** @param {number} starts */
export async function benchStartup(starts = 20) {
  const v = toolVersions();
  /** @type {{ case: string, node: string, startMs: number, readyMs: number, idleRssMiB: number, privateMiB: number, starts: number }[]} */
  const rows = [];
  /** @type {{ node: string, appMiB: number }[]} */
  const images = [];
  for (const pin of ["NODE_IMAGE_VERSION", "NODE_MIN_VERSION"]) {
    const version = v[pin] ?? "";
    const node = await nodeBinary(version);
    // The image's /app, its compile cache baked by this Node (ROOT's node_modules stand for the deps stage: same lockfile).
    const app = mkdtempSync(join(tmpdir(), "startup-app-"));
    try {
      await stageImageApp(app, node, ROOT);
      images.push({ node: version, appMiB: Math.round((treeBytes(app) / MiB) * 10) / 10 });
      const env = imageEnv(app);
      const { NODE_COMPILE_CACHE: _cache, ...noCache } = env;
      /** @type {[string, () => Promise<{ ms: number, readyMs: number, rss: number, anon: number }>][]} */
      const cases = [
        ["plugin as the image runs it (bundle, baked compile cache)", () => pluginOnce(node, join(app, "dist", "main.cjs"), env)],
        ["the bundle without the compile cache", () => pluginOnce(node, join(app, "dist", "main.cjs"), noCache)],
        ["tsc output, dist/bin/plugin.js (no bundle)", () => pluginOnce(node, join(ROOT, "dist", "bin", "plugin.js"), noCache)],
        ["floor: node -e 0 / idle node", () => floorOnce(node)],
      ];
      // BENCH_STARTUP_BEFORE=<an earlier build's dist/main.js>: that build beside this one, in the same run.
      const before = process.env["BENCH_STARTUP_BEFORE"];
      if (before) cases.splice(3, 0, [`earlier build: ${before}`, () => pluginOnce(node, before, noCache)]);
      for (const [name, once] of cases) {
        for (let i = 0; i < 2; i++) await once(); // warm the pages
        const runs = [];
        for (let i = 0; i < starts; i++) runs.push(await once());
        const m = (/** @type {(r: { ms: number, readyMs: number, rss: number, anon: number }) => number} */ f, digits = 0) => Math.round(median(runs.map(f)) * 10 ** digits) / 10 ** digits;
        rows.push({ case: name, node: version, startMs: m((r) => r.ms), readyMs: m((r) => r.readyMs), idleRssMiB: m((r) => r.rss, 1), privateMiB: m((r) => r.anon, 1), starts });
      }
    } finally {
      rmSync(app, { recursive: true, force: true });
    }
  }
  return { rows, images };
}

/** @param {Awaited<ReturnType<typeof benchStartup>>} result */
export function startupTable({ rows, images }) {
  const num = (/** @type {number} */ n) => (Number.isNaN(n) ? "–" : String(n));
  return [
    "| case | Node | socket (ms, median) | ready (ms, median) | idle RSS (MiB) | of it private (MiB) |",
    "|---|---|---|---|---|---|",
    ...rows.map((r) => `| ${r.case} | ${r.node} | ${num(r.startMs)} | ${num(r.readyMs)} | ${num(r.idleRssMiB)} | ${num(r.privateMiB)} |`),
    "",
    "| image /app (bundle, protos, native CRC32, compile cache) | Node | MiB |",
    "|---|---|---|",
    ...images.map((i) => `| the layer the Dockerfile's final stage adds to node:<version>-bookworm-slim | ${i.node} | ${i.appMiB} |`),
  ].join("\n");
}

// Run as a script (a path that needs URL escaping compares right too).
if (process.argv[1] && fileURLToPath(import.meta.url) === resolve(process.argv[1])) {
  const { values } = parseArgs({ options: { starts: { type: "string", default: "20" } } });
  const result = await benchStartup(Number(values.starts));
  process.stdout.write(`${startupTable(result)}\n`);
  const dir = join(ROOT, "bench", "results");
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "startup.json"), `${JSON.stringify({ date: new Date().toISOString(), ...result }, null, 2)}\n`);
  process.stdout.write("results: bench/results/startup.json\n");
}
