// @ts-check
// `npm run bench:load`: a sustained mixed load on one plugin process, the way a
// busy argo-server sidecar sees it. 64 concurrent callers (one gRPC connection)
// run small (16 KiB) and large (16 MiB) Saves, Loads, OpenStreams and
// SaveStreams plus ListObjects and IsDirectory for a fixed time against a local
// MinIO; every Load and OpenStream is checked byte for byte. Reports completed
// RPCs, failures, p50/p99 latency per method, and the plugin's RSS and open
// file descriptors at start, at peak and after a short idle at the end. The
// plugin runs with the image's environment (the Dockerfile's ENV lines).
// Results go to bench/results/load.json. Loopback only; stops by itself.
//
//   npm run bench:load                      # 30 s
//   npm run bench:load -- --seconds 20      # shorter
//   npm run bench:load -- --concurrency 16 --idle 10   # idle: at most N s for fds to settle (default 30)
//   npm run bench:load -- --memory-limit-mib 256        # the plugin in a real memory cgroup (root):
//                                                       # no OOM kill and no failed RPC allowed
//   --results DIR   where the JSON goes (default bench/results)
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ArtifactClient, artifact } from "../../dist/plugin-client/artifact-service-client.js";
import { imageEnv } from "../lib/image-env.mjs";
import { startMinio } from "../lib/minio.mjs";
import { ROOT } from "../lib/tools.mjs";
import { prng } from "../lib/prng.mjs";
import { memoryCgroup } from "../lib/memcg.mjs";
import { sizeForMemory } from "../../dist/settings.js";

const args = process.argv.slice(2);
const opt = (/** @type {string} */ name, /** @type {number} */ dflt) => {
  const i = args.indexOf(name);
  const v = i >= 0 ? Number(args[i + 1]) : dflt;
  if (!Number.isFinite(v) || v <= 0) throw new Error(`${name}: expected a positive number, got ${args[i + 1]}`);
  return v;
};
const SECONDS = opt("--seconds", 30);
const CONCURRENCY = Math.floor(opt("--concurrency", 64));
const IDLE_SECONDS = opt("--idle", 30);
const LIMIT_MIB = args.includes("--memory-limit-mib") ? opt("--memory-limit-mib", 256) : undefined;
const KiB = 1024;
const MiB = 1024 * KiB;
const SMALL = 16 * KiB;
const LARGE = 16 * MiB;
const DIR_FILES = 8;
const STREAM_CHUNK = 2 * MiB; // Argo's SaveStream chunk size
const RPC_DEADLINE_MS = 120_000;

const log = (/** @type {string} */ s) => process.stderr.write(`${s}\n`);
const work = mkdtempSync(join(tmpdir(), "bench-load-"));

// Whatever happens, do not run for ever: the load phase, the idle phase and generous slack.
const watchdog = setTimeout(() => {
  log(`load test did not finish in time; stopping`);
  try {
    plugin.kill("SIGKILL");
  } catch {
    // not started yet
  }
  process.exit(2);
}, (SECONDS + IDLE_SECONDS + 180) * 1000);
watchdog.unref();


/** Deterministic content (random-looking, so nothing compresses or dedups it). @param {number} size @param {number} seed */
function content(size, seed) {
  const rand = prng(seed);
  const buf = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i += 4) buf.writeUInt32LE(Math.floor(rand() * 4294967296), i);
  return buf;
}
const sha256 = (/** @type {Buffer} */ b) => createHash("sha256").update(b).digest("hex");
/** @param {string} path */
async function fileSha256(path) {
  const h = createHash("sha256");
  for await (const c of createReadStream(path, { highWaterMark: 1 * MiB })) h.update(c);
  return h.digest("hex");
}

// --- /proc readings of the plugin process ---
/** @param {number} pid @param {string} field */
function statusKiB(pid, field) {
  const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) : NaN;
}
const rssMiB = (/** @type {number} */ pid) => statusKiB(pid, "VmRSS") / 1024;
const hwmMiB = (/** @type {number} */ pid) => statusKiB(pid, "VmHWM") / 1024;
const openFds = (/** @type {number} */ pid) => readdirSync(`/proc/${pid}/fd`).length;
const round = (/** @type {number} */ n, d = 1) => Math.round(n * 10 ** d) / 10 ** d;

/** @param {number[]} sorted @param {number} q */
function quantile(sorted, q) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] ?? NaN;
}

log("starting MinIO and the plugin…");
const minio = await startMinio();
const socket = join(work, "plugin.sock");
let pluginOutput = "";
const cgroup = LIMIT_MIB === undefined ? undefined : memoryCgroup(`argo-s3-load-${process.pid}`, LIMIT_MIB * MiB);
const argv = [process.execPath, join(ROOT, "dist", "main.cjs"), socket];
const [cmd, ...cmdArgs] = cgroup ? cgroup.wrap(argv) : argv;
const plugin = spawn(/** @type {string} */ (cmd), cmdArgs, {
  env: { ...process.env, ...imageEnv(work), AWS_ACCESS_KEY_ID: minio.accessKey, AWS_SECRET_ACCESS_KEY: minio.secretKey, AWS_EC2_METADATA_DISABLED: "true", LOG_LEVEL: "warn" },
  stdio: ["ignore", "pipe", "pipe"],
});
plugin.stdout?.on("data", (c) => (pluginOutput = (pluginOutput + c).slice(-200_000)));
plugin.stderr?.on("data", (c) => (pluginOutput = (pluginOutput + c).slice(-200_000)));
const pluginExited = new Promise((r) => plugin.once("exit", r));
for (let i = 0; ; i++) {
  try {
    if (statSync(socket).isSocket()) break;
  } catch {
    // not yet
  }
  if (plugin.exitCode !== null || i > 200) throw new Error(`plugin did not start:\n${pluginOutput}`);
  await new Promise((r) => setTimeout(r, 100));
}
const pid = /** @type {number} */ (plugin.pid);
const client = new ArtifactClient(socket, RPC_DEADLINE_MS);

const BUCKET = "load";
const config = `endpoint: ${minio.endpoint}\nbucket: ${BUCKET}\ninsecure: true\nregion: us-east-1\ncreateBucketIfNotPresent: {}\n`;
/** @param {{success: boolean, error: string}} r @param {string} what */
function ok(r, what) {
  if (!r.success) throw new Error(`${what}: ${r.error}`);
}

/** @type {Record<string, any>} */
let result = {};
try {
  // --- fixtures: local sources and seeded objects to read back ---
  const small = content(SMALL, 1);
  const large = content(LARGE, 2);
  const expected = { small: sha256(small), large: sha256(large) };
  const smallPath = join(work, "small.bin");
  const largePath = join(work, "large.bin");
  writeFileSync(smallPath, small);
  writeFileSync(largePath, large);
  const seedDir = join(work, "seed-dir");
  mkdirSync(seedDir);
  for (let i = 0; i < DIR_FILES; i++) writeFileSync(join(seedDir, `f${i}.bin`), content(SMALL, 100 + i));
  ok(await client.save(artifact(config, "seed/small.bin"), smallPath), "seed small");
  ok(await client.save(artifact(config, "seed/large.bin"), largePath), "seed large");
  ok(await client.save(artifact(config, "seed/dir"), seedDir), "seed dir");

  // Settle, then the baseline.
  await new Promise((r) => setTimeout(r, 1000));
  const start = { rssMiB: rssMiB(pid), hwmMiB: hwmMiB(pid), fds: openFds(pid) };
  log(`baseline: RSS ${round(start.rssMiB)} MiB, ${start.fds} open fds; running ${CONCURRENCY} callers for ${SECONDS} s…`);

  /** @type {Map<string, number[]>} */
  const latencies = new Map();
  /** @type {Map<string, number>} */
  const failures = new Map();
  /** @type {string[]} */
  const failureSamples = [];
  let peakFds = start.fds;
  let peakRss = start.rssMiB;
  const sampler = setInterval(() => {
    try {
      peakFds = Math.max(peakFds, openFds(pid));
      peakRss = Math.max(peakRss, rssMiB(pid));
    } catch {
      // the process is gone; the RPCs will say so
    }
  }, 200);

  /** @type {Array<[string, number, (w: number, rand: () => number) => Promise<void>]>} */
  const ops = [
    ["Save 16KiB", 12, async (w) => ok(await client.save(artifact(config, `w${w}/small.bin`), smallPath), "Save")],
    ["Save 16MiB", 3, async (w) => ok(await client.save(artifact(config, `w${w}/large.bin`), largePath), "Save")],
    ...(/** @type {const} */ (["small", "large"])).map((size) => /** @type {[string, number, (w: number) => Promise<void>]} */ ([
      `Load ${size === "small" ? "16KiB" : "16MiB"}`,
      size === "small" ? 12 : 3,
      async (w) => {
        const dest = join(work, `w${w}`, `${size}.bin`);
        ok(await client.load(artifact(config, `seed/${size}.bin`), dest), "Load");
        const got = await fileSha256(dest);
        rmSync(dest, { force: true });
        if (got !== expected[size]) throw new Error(`Load seed/${size}.bin: bytes differ`);
      },
    ])),
    ["ListObjects", 12, async () => {
      const r = await client.listObjects(artifact(config, "seed/dir"));
      if (r.error) throw new Error(r.error);
      if (r.objects.length !== DIR_FILES) throw new Error(`ListObjects: ${r.objects.length} objects, expected ${DIR_FILES}`);
    }],
    ["IsDirectory", 12, async (_w, rand) => {
      const dir = rand() < 0.5;
      const r = await client.isDirectory(artifact(config, dir ? "seed/dir" : "seed/small.bin"));
      if (r.error) throw new Error(r.error);
      if (r.isDirectory !== dir) throw new Error(`IsDirectory: ${r.isDirectory}, expected ${dir}`);
    }],
    ...(/** @type {const} */ (["small", "large"])).map((size) => /** @type {[string, number, (w: number) => Promise<void>]} */ ([
      `OpenStream ${size === "small" ? "16KiB" : "16MiB"}`,
      size === "small" ? 10 : 3,
      async () => {
        const h = createHash("sha256");
        let ended = false;
        for await (const f of client.openStreamFrames(artifact(config, `seed/${size}.bin`))) {
          if (f.error) throw new Error(`OpenStream: ${f.error}`);
          if (ended) throw new Error("OpenStream: a frame after is_end");
          h.update(f.data);
          if (f.isEnd) ended = true;
        }
        if (!ended) throw new Error("OpenStream: no is_end frame");
        if (h.digest("hex") !== expected[size]) throw new Error(`OpenStream seed/${size}.bin: bytes differ`);
      },
    ])),
    ["SaveStream 16KiB", 10, async (w) => ok(await client.saveStream(artifact(config, `w${w}/stream-small.bin`), [small]), "SaveStream")],
    ["SaveStream 16MiB", 3, async (w) => {
      const chunks = function* () {
        for (let off = 0; off < LARGE; off += STREAM_CHUNK) yield large.subarray(off, off + STREAM_CHUNK);
      };
      ok(await client.saveStream(artifact(config, `w${w}/stream-large.bin`), chunks()), "SaveStream");
    }],
  ];
  const totalWeight = ops.reduce((s, [, wgt]) => s + wgt, 0);
  for (const [name] of ops) latencies.set(name, []);

  const t0 = Date.now();
  const until = t0 + SECONDS * 1000;
  /** @param {number} w */
  const caller = async (w) => {
    const rand = prng(1000 + w);
    mkdirSync(join(work, `w${w}`), { recursive: true });
    while (Date.now() < until) {
      let pick = rand() * totalWeight;
      const op = ops.find(([, wgt]) => (pick -= wgt) < 0) ?? ops[0];
      const [name, , run] = /** @type {NonNullable<typeof op>} */ (op);
      const started = process.hrtime.bigint();
      try {
        await run(w, rand);
        latencies.get(name)?.push(Number(process.hrtime.bigint() - started) / 1e6);
      } catch (e) {
        failures.set(name, (failures.get(name) ?? 0) + 1);
        if (failureSamples.length < 20) failureSamples.push(`${name}: ${/** @type {Error} */ (e).message}`);
      }
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, (_, w) => caller(w)));
  const elapsed = (Date.now() - t0) / 1000;
  clearInterval(sampler);
  const peak = { rssMiB: Math.max(peakRss, hwmMiB(pid)), fds: Math.max(peakFds, openFds(pid)) };

  // Idle until the fds are back near the baseline (idle keep-alive connections
  // to S3 close when the server times them out), at most IDLE_SECONDS, and at
  // least long enough for the buffer budget to let its kept buffers go (10 s).
  log(`load done in ${round(elapsed)} s; idling up to ${IDLE_SECONDS} s…`);
  const idleStart = Date.now();
  const minIdleMs = Math.min(15_000, IDLE_SECONDS * 1000);
  while (Date.now() - idleStart < IDLE_SECONDS * 1000 && (openFds(pid) > start.fds + 2 || Date.now() - idleStart < minIdleMs)) await new Promise((r) => setTimeout(r, 500));
  const idled = round((Date.now() - idleStart) / 1000);
  const end = { rssMiB: rssMiB(pid), fds: openFds(pid) };
  // Still answering after all of it.
  const caps = await client.getCapabilities();
  if (!caps.supportsSaveStream) throw new Error("GetCapabilities after the load: unexpected answer");

  /** @type {Record<string, {count: number, failures: number, p50Ms: number, p99Ms: number}>} */
  const methods = {};
  let completed = 0;
  let failed = 0;
  for (const [name] of ops) {
    const l = (latencies.get(name) ?? []).sort((a, b) => a - b);
    const f = failures.get(name) ?? 0;
    completed += l.length;
    failed += f;
    methods[name] = { count: l.length, failures: f, p50Ms: round(quantile(l, 0.5)), p99Ms: round(quantile(l, 0.99)) };
  }
  result = {
    date: new Date().toISOString(),
    node: process.version,
    seconds: round(elapsed),
    concurrency: CONCURRENCY,
    completed,
    failures: failed,
    rpcPerSecond: round(completed / elapsed),
    methods,
    failureSamples,
    plugin: {
      rssMiB: { start: round(start.rssMiB), peak: round(peak.rssMiB), endAfterIdle: round(end.rssMiB) },
      openFds: { start: start.fds, peak: peak.fds, endAfterIdle: end.fds },
      idleSeconds: idled,
      alive: plugin.exitCode === null,
    },
    ...(cgroup
      ? { cgroup: { version: cgroup.version, limitMiB: LIMIT_MIB, peakMiB: round(cgroup.peakBytes() / MiB), oomKills: cgroup.oomKills(), chosen: sizeForMemory(LIMIT_MIB * MiB) } }
      : {}),
  };
} finally {
  client.close();
  if (plugin.exitCode === null) plugin.kill("SIGTERM");
  await pluginExited;
  await minio.stop();
  rmSync(work, { recursive: true, force: true });
  cgroup?.remove();
}

const resultsAt = args.indexOf("--results");
const outDir = resultsAt >= 0 ? String(args[resultsAt + 1]) : join(ROOT, "bench", "results");
mkdirSync(outDir, { recursive: true });
writeFileSync(join(outDir, LIMIT_MIB === undefined ? "load.json" : `load-${LIMIT_MIB}mib.json`), `${JSON.stringify(result, null, 2)}\n`);

const lines = [
  `load: ${result["concurrency"]} callers, ${result["seconds"]} s: ${result["completed"]} RPCs completed (${result["rpcPerSecond"]}/s), ${result["failures"]} failed`,
  `${"method".padEnd(18)} ${"count".padStart(6)} ${"fail".padStart(5)} ${"p50 ms".padStart(9)} ${"p99 ms".padStart(9)}`,
  ...Object.entries(/** @type {Record<string, any>} */ (result["methods"])).map(
    ([name, m]) => `${name.padEnd(18)} ${String(m.count).padStart(6)} ${String(m.failures).padStart(5)} ${String(m.p50Ms).padStart(9)} ${String(m.p99Ms).padStart(9)}`,
  ),
  `plugin RSS MiB   start ${result["plugin"].rssMiB.start}, peak ${result["plugin"].rssMiB.peak}, after ${result["plugin"].idleSeconds} s idle ${result["plugin"].rssMiB.endAfterIdle}`,
  `plugin open fds  start ${result["plugin"].openFds.start}, peak ${result["plugin"].openFds.peak}, after ${result["plugin"].idleSeconds} s idle ${result["plugin"].openFds.endAfterIdle}`,
  ...(result["failureSamples"].length > 0 ? ["failures (first 20):", ...result["failureSamples"].map((/** @type {string} */ s) => `  ${s}`)] : []),
  ...(result["cgroup"] ? [`memory cgroup v${result["cgroup"].version}: limit ${result["cgroup"].limitMiB} MiB, peak ${result["cgroup"].peakMiB} MiB, OOM kills ${result["cgroup"].oomKills}`] : []),
  `written to bench/results/${LIMIT_MIB === undefined ? "load.json" : `load-${LIMIT_MIB}mib.json`}`,
];
process.stdout.write(`${lines.join("\n")}\n`);
process.exitCode = result["failures"] > 0 || (result["cgroup"]?.oomKills ?? 0) > 0 || !result["plugin"].alive ? 1 : 0;
