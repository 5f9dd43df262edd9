// @ts-check
// `npm run bench`: the plugin beside Argo's built-in S3 driver and s5cmd, same
// MinIO, same data, same run. The plugin is driven through Argo's own v4.0.5
// plugin client (test/argo-client), the built-in driver is Argo's
// workflow/artifacts/s3 with its defaults (test/argo-client/builtin.go).
// Rounds are interleaved (each round runs the three in a rotated order) and
// the median is reported; every Load is compared byte for byte with its
// source, every Save read back. Results: bench/results/bench-<profile>.json.
//
//   npm run bench                          # loopback profile
//   npm run bench -- --profile s3-like     # through bench/link: 20 ms RTT, 85 MB/s per connection
//   npm run bench -- --profile both
//   npm run bench -- --quick               # small sizes, 1 round: a smoke run
//   BENCH_ONLY=file,dir,bigdir npm run bench   # a subset of sections
//   BENCH_PLUGIN_MAIN=/path/to/other/dist/main.cjs npm run bench   # the same run with another build of the plugin (A/B)
import { execFileSync, spawn } from "node:child_process";
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, statSync, writeFileSync, writeSync } from "node:fs";
import { cpus, release, tmpdir, totalmem } from "node:os";
import { join, relative } from "node:path";
import { randomBytes } from "node:crypto";
import { startMinio } from "../lib/minio.mjs";
import { PROFILES, startLink } from "../lib/link.mjs";
import { ROOT, goBuild, s5cmdBinary, toolVersions } from "../lib/tools.mjs";
import { benchStartup, startupTable } from "./startup.mjs";
import { benchObservability, observabilityTable } from "./observability.mjs";
import { cpuSeconds, peakRssMiB, resetPeak, runMeasured, warmPages } from "./measure.mjs";

const args = process.argv.slice(2);
const ONLY = process.env["BENCH_ONLY"]?.split(",") ?? [];
const opt = (/** @type {string} */ name, /** @type {string} */ dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? (args[i + 1] ?? dflt) : dflt;
};
const QUICK = args.includes("--quick");
const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const BIG = Math.round((QUICK ? 0.25 : Number(opt("--big-gib", "1"))) * GiB);
const ROUNDS = Number(opt("--rounds", QUICK ? "1" : "3"));
const SMALL = { count: QUICK ? 500 : 5000, size: 16 * 1024 };
const LARGE = { count: QUICK ? 4 : 50, size: (QUICK ? 16 : 64) * MiB };
const profileArg = opt("--profile", "loopback");
const profiles = profileArg === "both" ? ["loopback", "s3-like"] : [profileArg];
for (const p of profiles) if (!PROFILES[p]) throw new Error(`--profile ${p}: known profiles are ${Object.keys(PROFILES).join(", ")}, both`);

const log = (/** @type {string} */ s) => process.stderr.write(`${s}\n`);
const work = mkdtempSync(join(tmpdir(), "bench-"));
const BUCKET = "bench";

/** @param {string} path @param {number} size */
function makeFile(path, size) {
  const fd = openSync(path, "w");
  const block = randomBytes(Math.min(size, 8 * MiB));
  for (let off = 0; off < size; off += block.length) writeSync(fd, block, 0, Math.min(block.length, size - off));
  closeSync(fd);
}

/** @param {string} dir @param {{count:number,size:number}} shape */
function makeTree(dir, shape) {
  for (let i = 0; i < shape.count; i++) {
    const sub = join(dir, `d${String(i % 100).padStart(2, "0")}`);
    if (i < 100) mkdirSync(sub, { recursive: true });
    if (shape.size > 8 * MiB) makeFile(join(sub, `f${i}.bin`), shape.size);
    else writeFileSync(join(sub, `f${i}.bin`), randomBytes(shape.size));
  }
}

/** Throws unless `got` holds the same bytes as `want` (a file or a tree). @param {string} want @param {string} got */
function sameBytes(want, got) {
  try {
    execFileSync("diff", ["-r", "-q", want, got], { stdio: ["ignore", "pipe", "pipe"] });
  } catch (e) {
    throw new Error(`${got} differs from ${want}: ${String(/** @type {{stdout?: Buffer}} */ (e).stdout ?? e).slice(0, 500)}`);
  }
}

const median = (/** @type {number[]} */ xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] ?? NaN) : ((s[m - 1] ?? 0) + (s[m] ?? 0)) / 2;
};
const round2 = (/** @type {number} */ n) => Math.round(n * 100) / 100;

const s5cmd = await s5cmdBinary();
const argoClient = await goBuild("test/argo-client");

/**
 * @typedef {{ wall: number, cpu: number, rss: number, clientCpu?: number }} Run
 * @typedef {{ name: string, run: () => Promise<Run>, check: () => void | Promise<void>, before?: () => void }} Impl
 */

/** @param {string} profileName */
async function benchProfile(profileName) {
  const profile = /** @type {import("../lib/link.mjs").Profile} */ (PROFILES[profileName]);
  log(`\n##### profile ${profile.name}: ${profile.note}`);
  const minio = await startMinio();
  const link = await startLink(profile, minio.endpoint);
  const url = `http://${link.hostPort}`;
  const creds = { AWS_ACCESS_KEY_ID: minio.accessKey, AWS_SECRET_ACCESS_KEY: minio.secretKey, AWS_REGION: "us-east-1" };
  const socket = join(work, "plugin.sock");
  const cfgFile = join(work, "config.yaml");
  writeFileSync(cfgFile, `endpoint: ${link.hostPort}\nbucket: ${BUCKET}\ninsecure: true\nregion: us-east-1\ncreateBucketIfNotPresent: {}\n${process.env["BENCH_TUNING"] ?? ""}\n`);
  /** @type {import("node:child_process").ChildProcess | undefined} */
  let plugin;

  /** A fresh plugin process per section, so its peak RSS is its own. */
  async function freshPlugin() {
    await stopPlugin();
    rmSync(socket, { force: true });
    // BENCH_PLUGIN_MAIN runs another build (an A/B against an earlier commit's dist/main.cjs).
    plugin = spawn(process.execPath, [process.env["BENCH_PLUGIN_MAIN"] || join(ROOT, "dist", "main.cjs"), socket], {
      env: { ...process.env, ...creds, AWS_EC2_METADATA_DISABLED: "true", LOG_LEVEL: "warn" },
      stdio: ["ignore", "ignore", "inherit"],
    });
    for (let i = 0; i < 100; i++) {
      try {
        statSync(socket);
        return;
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    throw new Error("the plugin did not create its socket within 10 s");
  }
  async function stopPlugin() {
    if (!plugin || plugin.exitCode !== null) return;
    const exited = new Promise((r) => plugin?.once("exit", r));
    plugin.kill("SIGTERM");
    await exited;
  }
  const s5 = (/** @type {string} */ cmdline) => runMeasured("sh", ["-c", `exec ${s5cmd} --endpoint-url ${url} ${cmdline}`], creds);

  /** The plugin through Argo's client; CPU and peak RSS of the plugin process from /proc. @param {string[]} a */
  async function viaPlugin(a) {
    const pid = /** @type {number} */ (plugin?.pid);
    resetPeak(pid);
    const cpu0 = cpuSeconds(pid);
    const r = await runMeasured(argoClient, ["-socket", socket, "-config-file", cfgFile, ...a], {});
    return { wall: r.wall, cpu: cpuSeconds(pid) - cpu0, rss: peakRssMiB(pid), clientCpu: r.cpu, out: r.stdout };
  }
  /** Argo's built-in driver: one process, its own CPU and peak RSS. @param {string[]} a */
  async function viaBuiltin(a) {
    const r = await runMeasured(argoClient, ["-endpoint", link.hostPort, "-bucket", BUCKET, ...a], creds);
    return { wall: r.wall, cpu: r.cpu, rss: r.maxRssMiB, out: r.stdout };
  }
  const streamed = (/** @type {{out: string}} */ r, /** @type {number} */ want) => {
    const n = JSON.parse(r.out.trim().split("\n").at(-1) ?? "{}").bytes;
    if (n !== want) throw new Error(`streamed ${n} bytes, want ${want}`);
  };

  /** @type {object[]} */
  const rows = [];
  /**
   * Runs each implementation ROUNDS times, interleaved, checks the bytes, records medians.
   * @param {string} name @param {"MiB/s"|"files/s"} unit @param {number} bytes @param {number} files @param {Impl[]} impls
   * @param {Record<string, number>} targets minimum plugin ÷ reference ratios, by reference name
   */
  async function measure(name, unit, bytes, files, impls, targets) {
    // A fresh plugin per case: its peak RSS is this case's, not memory an earlier case left behind.
    await freshPlugin();
    /** @type {Record<string, Run[]>} */
    const runs = {};
    for (let r = 0; r < ROUNDS; r++) {
      for (let i = 0; i < impls.length; i++) {
        const impl = /** @type {Impl} */ (impls[(i + r) % impls.length]);
        impl.before?.();
        warmPages(work, bytes);
        (runs[impl.name] ??= []).push(await impl.run());
      }
    }
    for (const impl of impls) await impl.check();
    const amount = unit === "MiB/s" ? bytes / MiB : files;
    /** @type {Record<string, {rate:number, seconds:number, cpuSeconds:number, cpuPerGiB:number, peakRssMiB:number, clientCpuSeconds?:number}>} */
    const by = {};
    for (const [n, rs] of Object.entries(runs)) {
      const wall = median(rs.map((x) => x.wall));
      const cpu = median(rs.map((x) => x.cpu));
      const clientCpu = rs[0]?.clientCpu === undefined ? undefined : round2(median(rs.map((x) => x.clientCpu ?? 0)));
      by[n] = { rate: round2(amount / wall), seconds: round2(wall), cpuSeconds: round2(cpu), cpuPerGiB: round2(cpu / (bytes / GiB)), peakRssMiB: round2(Math.max(...rs.map((x) => x.rss))), ...(clientCpu === undefined ? {} : { clientCpuSeconds: clientCpu }) };
    }
    const p = /** @type {{seconds:number, peakRssMiB:number}} */ (by["plugin"]);
    /** @type {Record<string, number>} */
    const ratios = {};
    for (const n of Object.keys(by)) if (n !== "plugin") ratios[n] = round2(/** @type {{seconds:number}} */ (by[n]).seconds / p.seconds);
    const met = Object.entries(targets).every(([n, t]) => (ratios[n] ?? 0) >= t) && p.peakRssMiB <= 256;
    const row = { case: name, unit, bytes, files, results: by, ratios, targets, met: Object.keys(targets).length ? met : undefined };
    rows.push(row);
    const fmt = (/** @type {string} */ n) => `${n} ${String(by[n]?.rate).padStart(7)} (${by[n]?.cpuPerGiB} CPU-s/GiB, ${Math.round(by[n]?.peakRssMiB ?? 0)} MiB)`;
    log(`${name.padEnd(26)} ${Object.keys(by).map(fmt).join("  ")} ${unit}  ratios ${JSON.stringify(ratios)}${row.met === undefined ? "" : row.met ? "  met" : "  MISSED"}`);
  }

  /** Impl for a plugin op. @param {string} mode @param {string} key @param {string} file @param {() => void | Promise<void>} check @param {() => void} [before] @returns {Impl} */
  const pluginImpl = (mode, key, file, check, before) => ({ name: "plugin", run: () => viaPlugin(["-bench", mode, "-key", key, "-file", file]), check, before });
  /** @param {string} mode @param {string} key @param {string} file @param {() => void | Promise<void>} check @param {() => void} [before] @returns {Impl} */
  const builtinImpl = (mode, key, file, check, before) => ({ name: "built-in", run: () => viaBuiltin(["-bench", `builtin-${mode}`, "-key", key, "-file", file]), check, before });
  /** @param {string} cmd @param {() => void | Promise<void>} check @param {() => void} [before] @returns {Impl} */
  const s5Impl = (cmd, check, before) => ({ name: "s5cmd", run: async () => { const r = await s5(cmd); return { wall: r.wall, cpu: r.cpu, rss: r.maxRssMiB }; }, check, before });

  /** Reads a saved object (or prefix) back with s5cmd and compares it with its source. @param {string} key @param {string} src @param {boolean} tree */
  const readBack = (key, src, tree) => async () => {
    const back = join(work, "readback");
    rmSync(back, { recursive: true, force: true });
    mkdirSync(back, { recursive: true });
    await s5(tree ? `cp 's3://${BUCKET}/${key}/*' ${back}/` : `cp s3://${BUCKET}/${key} ${back}/obj`);
    sameBytes(src, tree ? back : join(back, "obj"));
    rmSync(back, { recursive: true, force: true });
  };

  try {
    await freshPlugin();
    await s5(`mb s3://${BUCKET}`);
    const want = (/** @type {string} */ s) => ONLY.length === 0 || ONLY.includes(s);

    if (want("file")) {
      const label = `${BIG / GiB} GiB`;
      log(`\n== one file of ${label}`);
      await freshPlugin();
      const src = join(work, "big.bin");
      makeFile(src, BIG);
      const dest = (/** @type {string} */ n) => join(work, `big-${n}.out`);
      const clean = (/** @type {string} */ n) => () => rmSync(dest(n), { force: true });
      await measure(`Save ${label}`, "MiB/s", BIG, 1, [
        pluginImpl("save", "plugin/big.bin", src, readBack("plugin/big.bin", src, false)),
        builtinImpl("save", "builtin/big.bin", src, readBack("builtin/big.bin", src, false)),
        s5Impl(`cp ${src} s3://${BUCKET}/s5cmd/big.bin`, readBack("s5cmd/big.bin", src, false)),
      ], { "built-in": profile.rttMs ? 3 : 1.5 });
      // Every reader reads the same object.
      const k = "plugin/big.bin";
      await measure(`Load ${label}`, "MiB/s", BIG, 1, [
        pluginImpl("load", k, dest("plugin"), () => sameBytes(src, dest("plugin")), clean("plugin")),
        builtinImpl("load", k, dest("builtin"), () => sameBytes(src, dest("builtin")), clean("builtin")),
        s5Impl(`cp s3://${BUCKET}/${k} ${dest("s5cmd")}`, () => sameBytes(src, dest("s5cmd")), clean("s5cmd")),
      ], { "built-in": profile.rttMs ? 3 : 1.2 });
      for (const n of ["plugin", "builtin", "s5cmd"]) clean(n)();
      /** @type {{out: string}[]} */
      const outs = [];
      const counted = (/** @type {Promise<Run & {out: string}>} */ p) => p.then((r) => (outs.push(r), r));
      await measure(`OpenStream ${label}`, "MiB/s", BIG, 1, [
        { name: "plugin", run: () => counted(viaPlugin(["-bench", "open", "-key", k])), check: () => outs.forEach((o) => streamed(o, BIG)) },
        { name: "built-in", run: () => counted(viaBuiltin(["-bench", "builtin-open", "-key", k])), check: () => {} },
        s5Impl(`cat s3://${BUCKET}/${k} > /dev/null`, () => {}),
      ], { "built-in": profile.rttMs ? 2 : 1.0 });
      await measure(`SaveStream ${label}`, "MiB/s", BIG, 1, [
        pluginImpl("savestream", "plugin/stream.bin", src, readBack("plugin/stream.bin", src, false)),
        builtinImpl("savestream", "builtin/stream.bin", src, readBack("builtin/stream.bin", src, false)),
        s5Impl(`pipe s3://${BUCKET}/s5cmd/stream.bin < ${src}`, readBack("s5cmd/stream.bin", src, false)),
      ], { "built-in": 1.0 });
      rmSync(src, { force: true });
    }

    for (const [section, shape] of /** @type {const} */ ([["dir", SMALL], ["bigdir", LARGE]])) {
      if (!want(section)) continue;
      const label = `dir ${shape.count} × ${shape.size >= MiB ? `${shape.size / MiB} MiB` : `${shape.size / 1024} KiB`}`;
      log(`\n== ${label}`);
      await freshPlugin();
      const src = join(work, `tree-${section}`);
      makeTree(src, shape);
      const bytes = shape.count * shape.size;
      const dest = (/** @type {string} */ n) => join(work, `tree-${section}-${n}.out`);
      const clean = (/** @type {string} */ n) => () => rmSync(dest(n), { recursive: true, force: true });
      const key = (/** @type {string} */ n) => `${n}/${section}`;
      const small = section === "dir";
      await measure(`Save ${label}`, small ? "files/s" : "MiB/s", bytes, shape.count, [
        pluginImpl("save", key("plugin"), src, readBack(key("plugin"), src, true)),
        builtinImpl("save", key("builtin"), src, readBack(key("builtin"), src, true)),
        s5Impl(`cp '${src}/*' s3://${BUCKET}/${key("s5cmd")}/`, readBack(key("s5cmd"), src, true)),
      ], { "built-in": profile.rttMs ? (small ? 5 : 3) : small ? 2 : 1.5 });
      // Only the plugin's copy is read below; the others would only fill the disk.
      await s5(`rm 's3://${BUCKET}/${key("builtin")}/*' 's3://${BUCKET}/${key("s5cmd")}/*'`);
      const k = key("plugin");
      await measure(`Load ${label}`, small ? "files/s" : "MiB/s", bytes, shape.count, [
        pluginImpl("load", k, dest("plugin"), () => sameBytes(src, dest("plugin")), clean("plugin")),
        builtinImpl("load", k, dest("builtin"), () => sameBytes(src, dest("builtin")), clean("builtin")),
        s5Impl(`cp 's3://${BUCKET}/${k}/*' ${dest("s5cmd")}/`, () => sameBytes(src, dest("s5cmd")), clean("s5cmd")),
      ], { "built-in": profile.rttMs ? (small ? 5 : 3) : small ? 1.5 : 1.2 });
      for (const n of ["plugin", "builtin", "s5cmd"]) clean(n)();
      rmSync(src, { recursive: true, force: true });
      await s5(`rm 's3://${BUCKET}/${k}/*'`);
    }
  } finally {
    await stopPlugin();
    await link.stop();
    await minio.stop();
  }
  return { profile, rows };
}

/** @type {object[]} */
const out = [];
try {
  for (const p of profiles) {
    const r = await benchProfile(p);
    out.push(r);
    const v = toolVersions();
    const report = {
      date: new Date().toISOString(),
      commit: execFileSync("git", ["-C", ROOT, "rev-parse", "--short", "HEAD"], { encoding: "utf8" }).trim(),
      machine: { cores: cpus().length, cpu: cpus()[0]?.model, memGiB: Math.round(totalmem() / GiB), kernel: release(), node: process.version },
      tools: { minio: v["MINIO_VERSION"], s5cmd: v["S5CMD_VERSION"], argo: "v4.0.5 (workflow/artifacts/s3 and the plugin client)" },
      options: { profile: r.profile, bigBytes: BIG, rounds: ROUNDS, quick: QUICK, tuning: process.env["BENCH_TUNING"] ?? "" },
      results: r.rows,
    };
    const dir = join(ROOT, "bench", "results");
    mkdirSync(dir, { recursive: true });
    const file = join(dir, `bench-${p}${QUICK ? "-quick" : ""}.json`);
    writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
    log(`\nwrote ${relative(ROOT, file)}`);
  }
  // What every pod pays before a byte moves: start to a listening socket and idle RSS, beside Node's own floor.
  log("\nstart-up and idle memory (scripts/bench/startup.mjs):");
  const startup = await benchStartup(QUICK ? 5 : 20);
  log(startupTable(startup));
  writeFileSync(join(ROOT, "bench", "results", "startup.json"), `${JSON.stringify({ date: new Date().toISOString(), ...startup }, null, 2)}\n`);
  // What metrics and traces cost a transfer, beside the plain plugin.
  log("\nmetrics and traces on and off (scripts/bench/observability.mjs):");
  const obs = await benchObservability(QUICK ? { mib: 64, rounds: 1 } : {});
  log(observabilityTable(obs));
  writeFileSync(join(ROOT, "bench", "results", "observability.json"), `${JSON.stringify({ date: new Date().toISOString(), ...obs }, null, 2)}\n`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
