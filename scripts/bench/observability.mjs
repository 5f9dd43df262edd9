// @ts-check
// What metrics and traces cost a transfer: three plugin processes side by
// side, the same MinIO, the same files: plain; metrics on
// (ARGO_S3_PLUGIN_METRICS_PORT, scraped once a second during the run as
// Prometheus would); metrics and traces on (OTLP/HTTP to test/otlpreceiver, a
// real receiver on loopback). Save and Load of one file through Argo's own
// plugin client (test/argo-client), rounds interleaved in rotated order,
// pages warmed before each run; medians of wall time and the plugin's CPU,
// and each configuration's ratio to plain. Every Load is compared with its
// source. Part of `npm run bench`; alone:
//   node scripts/bench/observability.mjs [--mib 512] [--rounds 5]
//   BENCH_OBS_BEFORE=/path/to/earlier/dist/main.js …   # an earlier build, plain, in the same rotation
// Results: bench/results/observability.json and a table on stdout.
import { spawn } from "node:child_process";
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { randomBytes } from "node:crypto";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { freePort, startMinio } from "../lib/minio.mjs";
import { ROOT, goBuild } from "../lib/tools.mjs";
import { cpuSeconds, runMeasured, warmPages } from "./measure.mjs";

const MiB = 1024 * 1024;
const median = (/** @type {number[]} */ xs) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)] ?? NaN;
const round2 = (/** @type {number} */ n) => Math.round(n * 100) / 100;

/** @param {{ mib?: number, rounds?: number }} [o] */
export async function benchObservability({ mib = 512, rounds = 5 } = {}) {
  const work = mkdtempSync(join(tmpdir(), "bench-obs-"));
  const minio = await startMinio();
  const argoClient = await goBuild("test/argo-client");
  const receiverBin = await goBuild("test/otlpreceiver");
  const receiver = spawn(receiverBin, [], { stdio: ["pipe", "pipe", "inherit"] });
  /** @type {import("node:child_process").ChildProcess[]} */
  const plugins = [];
  let spansReceived = 0;
  try {
    const http = await new Promise((resolve, reject) => {
      let buf = "";
      receiver.stdout?.on("data", (c) => {
        buf += c;
        const m = /^listening grpc=\S+ http=(\S+)$/m.exec(buf);
        if (m) resolve(m[1]);
        spansReceived += (String(c).match(/"spanId"/g) ?? []).length;
      });
      receiver.once("exit", (code) => reject(new Error(`the OTLP receiver exited (${code})`)));
    });
    const creds = { AWS_ACCESS_KEY_ID: minio.accessKey, AWS_SECRET_ACCESS_KEY: minio.secretKey, AWS_REGION: "us-east-1" };
    const cfgFile = join(work, "config.yaml");
    writeFileSync(cfgFile, `endpoint: ${minio.endpoint.replace(/^https?:\/\//, "")}\nbucket: obs\ninsecure: true\nregion: us-east-1\ncreateBucketIfNotPresent: {}\n`);
    const src = join(work, "src.bin");
    const fd = openSync(src, "w");
    const block = randomBytes(8 * MiB);
    for (let off = 0; off < mib * MiB; off += block.length) writeSync(fd, block);
    closeSync(fd);
    const metricsPorts = [await freePort(), await freePort()];
    const configs = [
      { name: "plain", env: {} },
      { name: "metrics on", env: { ARGO_S3_PLUGIN_METRICS_PORT: String(metricsPorts[0]) } },
      { name: "metrics and traces on", env: { ARGO_S3_PLUGIN_METRICS_PORT: String(metricsPorts[1]), OTEL_EXPORTER_OTLP_ENDPOINT: `http://${http}`, OTEL_EXPORTER_OTLP_PROTOCOL: "http/protobuf" } },
    ].map((c) => ({ ...c, main: join(ROOT, "dist", "main.cjs") }));
    // BENCH_OBS_BEFORE=<an earlier build's main file>: that build, plain, in the same rotation (an A/B of the data path).
    const before = process.env["BENCH_OBS_BEFORE"];
    if (before) configs.push({ name: `earlier build: ${before}`, env: {}, main: before });
    const running = configs.map((c, i) => ({ ...c, socket: join(work, `plugin-${i}.sock`), port: "ARGO_S3_PLUGIN_METRICS_PORT" in c.env ? c.env.ARGO_S3_PLUGIN_METRICS_PORT : undefined }));
    for (const c of running) {
      const p = spawn(process.execPath, [c.main, c.socket], { env: { PATH: process.env["PATH"] ?? "", ...creds, AWS_EC2_METADATA_DISABLED: "true", LOG_LEVEL: "warn", ...c.env }, stdio: ["ignore", "ignore", "inherit"] });
      plugins.push(p);
      for (let i = 0; i < 200 && !existsSocket(c.socket); i++) await new Promise((r) => setTimeout(r, 50));
      if (!existsSocket(c.socket)) throw new Error(`plugin (${c.name}) did not listen within 10 s`);
    }
    // Prometheus' part: a scrape a second of each plugin with metrics on.
    const scrape = setInterval(() => {
      for (const c of running) if (c.port) fetch(`http://127.0.0.1:${c.port}/metrics`).then((r) => r.text(), () => "");
    }, 1000);
    /** @type {Record<string, { save: { wall: number, cpu: number }[], load: { wall: number, cpu: number }[] }>} */
    const runs = {};
    try {
      for (let r = 0; r < rounds; r++) {
        for (let i = 0; i < running.length; i++) {
          const c = /** @type {(typeof running)[number]} */ (running[(i + r) % running.length]);
          const pid = /** @type {number} */ (plugins[running.indexOf(c)]?.pid);
          const key = `obs/${r}-${i}.bin`;
          const dest = join(work, "dest.bin");
          const one = async (/** @type {string[]} */ a) => {
            warmPages(work, mib * MiB);
            const cpu0 = cpuSeconds(pid);
            const res = await runMeasured(argoClient, ["-socket", c.socket, "-config-file", cfgFile, ...a], {});
            return { wall: res.wall, cpu: cpuSeconds(pid) - cpu0 };
          };
          const entry = (runs[c.name] ??= { save: [], load: [] });
          entry.save.push(await one(["-bench", "save", "-key", key, "-file", src]));
          rmSync(dest, { force: true });
          entry.load.push(await one(["-bench", "load", "-key", key, "-file", dest]));
          if (statSync(dest).size !== mib * MiB || !readFileSync(dest).equals(readFileSync(src))) throw new Error(`${c.name}: the loaded file differs from its source`);
          rmSync(dest, { force: true });
        }
      }
    } finally {
      clearInterval(scrape);
    }
    for (const p of plugins) p.kill("SIGTERM");
    await Promise.all(plugins.map((p) => (p.exitCode !== null ? undefined : new Promise((r) => (p.once("exit", r), setTimeout(r, 10_000).unref())))));
    await new Promise((r) => setTimeout(r, 300));
    const rows = running.map((c) => {
      const rr = /** @type {(typeof runs)[string]} */ (runs[c.name]);
      const stat = (/** @type {{ wall: number, cpu: number }[]} */ xs) => ({ mibPerSec: round2(mib / median(xs.map((x) => x.wall))), cpuSecondsPerGiB: round2(median(xs.map((x) => x.cpu)) / (mib / 1024)) });
      return { config: c.name, save: stat(rr.save), load: stat(rr.load) };
    });
    const plain = /** @type {(typeof rows)[number]} */ (rows[0]);
    return {
      mib,
      rounds,
      spansReceived,
      rows: rows.map((r) => ({ ...r, saveRatio: round2(r.save.mibPerSec / plain.save.mibPerSec), loadRatio: round2(r.load.mibPerSec / plain.load.mibPerSec) })),
    };
  } finally {
    // SIGTERM flushes the last spans; the receiver stays until the plugins are gone.
    await Promise.all(
      plugins.map((p) => (p.exitCode !== null ? undefined : new Promise((r) => (p.once("exit", r), p.kill("SIGTERM"), setTimeout(r, 10_000).unref())))),
    );
    receiver.kill("SIGKILL");
    await minio.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

/** @param {string} path */
function existsSocket(path) {
  try {
    return statSync(path).isSocket();
  } catch {
    return false;
  }
}

/** @param {Awaited<ReturnType<typeof benchObservability>>} r */
export function observabilityTable(r) {
  return [
    `| ${r.mib} MiB, median of ${r.rounds} | Save MiB/s | Save CPU-s/GiB | Load MiB/s | Load CPU-s/GiB | ÷ plain (Save / Load) |`,
    "|---|---|---|---|---|---|",
    ...r.rows.map((x) => `| ${x.config} | ${x.save.mibPerSec} | ${x.save.cpuSecondsPerGiB} | ${x.load.mibPerSec} | ${x.load.cpuSecondsPerGiB} | ${x.saveRatio} / ${x.loadRatio} |`),
    `\nspans received by the OTLP receiver: ${r.spansReceived}`,
  ].join("\n");
}

// Run as a script (a path that needs URL escaping compares right too).
if (process.argv[1] && fileURLToPath(import.meta.url) === resolve(process.argv[1])) {
  const { values } = parseArgs({ options: { mib: { type: "string", default: "512" }, rounds: { type: "string", default: "5" } } });
  const result = await benchObservability({ mib: Number(values.mib), rounds: Number(values.rounds) });
  process.stdout.write(`${observabilityTable(result)}\n`);
  const dir = join(ROOT, "bench", "results");
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "observability.json"), `${JSON.stringify({ date: new Date().toISOString(), ...result }, null, 2)}\n`);
  process.stdout.write("results: bench/results/observability.json\n");
}
