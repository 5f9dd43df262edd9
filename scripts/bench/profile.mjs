// @ts-check
// `npm run bench:profile -- <case>`: one case of the benchmark with the plugin
// under `node --cpu-prof`, driven by Argo's client (test/argo-client) against a
// fresh MinIO. Writes bench/results/profiles/<case>.cpuprofile (open it in
// Chrome DevTools or speedscope for the flame graph) and prints where the
// plugin's CPU went, by function (self time), the same table as <case>.txt.
//
//   cases: load (1 GiB), open (OpenStream 1 GiB), savestream (SaveStream 1 GiB), dirload, dirsave (5,000 × 16 KiB)
import { spawn } from "node:child_process";
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { startMinio } from "../lib/minio.mjs";
import { ROOT, goBuild } from "../lib/tools.mjs";
import { cpuSeconds, runMeasured } from "./measure.mjs";

const which = process.argv[2] ?? "";
const CASES = ["load", "open", "savestream", "dirload", "dirsave"];
if (!CASES.includes(which)) {
  process.stderr.write(`usage: npm run bench:profile -- <${CASES.join("|")}>\n`);
  process.exit(2);
}
const work = mkdtempSync(join(tmpdir(), "bench-profile-"));
const out = join(ROOT, "bench", "results", "profiles");
mkdirSync(out, { recursive: true });
const minio = await startMinio();
const creds = { AWS_ACCESS_KEY_ID: minio.accessKey, AWS_SECRET_ACCESS_KEY: minio.secretKey, AWS_REGION: "us-east-1" };
const client = await goBuild("test/argo-client");
const socket = join(work, "plugin.sock");
const cfg = join(work, "config.yaml");
writeFileSync(cfg, `endpoint: ${minio.endpoint}\nbucket: bench\ninsecure: true\nregion: us-east-1\ncreateBucketIfNotPresent: {}\n`);
const profDir = join(work, "prof");
const plugin = spawn(process.execPath, ["--cpu-prof", "--cpu-prof-dir", profDir, join(ROOT, "dist", "main.cjs"), socket], {
  env: { ...process.env, ...creds, LOG_LEVEL: "warn" },
  stdio: ["ignore", "ignore", "inherit"],
});
try {
  for (let i = 0; i < 100 && !exists(socket); i++) await new Promise((r) => setTimeout(r, 100));
  const go = (/** @type {string[]} */ a) => runMeasured(client, ["-socket", socket, "-config-file", cfg, ...a], {});
  const src = join(work, "src");
  if (which.startsWith("dir")) {
    for (let i = 0; i < 5000; i++) {
      const d = join(src, `d${i % 100}`);
      if (i < 100) mkdirSync(d, { recursive: true });
      writeFileSync(join(d, `f${i}.bin`), randomBytes(16 * 1024));
    }
  } else {
    const fd = openSync(src, "w");
    const block = randomBytes(8 << 20);
    for (let i = 0; i < 128; i++) writeSync(fd, block);
    closeSync(fd);
  }
  await go(["-bench", "save", "-key", "k", "-file", src]); // warm-up, and the object read below
  const pid = /** @type {number} */ (plugin.pid);
  for (let round = 1; round <= 3; round++) {
    const dest = join(work, `dest-${round}`);
    const cpu0 = cpuSeconds(pid);
    const args = { load: ["load", "-file", dest], dirload: ["load", "-file", dest], open: ["open"], savestream: ["savestream", "-file", src], dirsave: ["save", "-file", src] }[which] ?? [];
    const r = await go(["-bench", args[0] ?? "", "-key", which === "dirsave" || which === "savestream" ? `k${round}` : "k", ...args.slice(1)]);
    process.stderr.write(`${which} round ${round}: ${r.wall.toFixed(2)} s, plugin ${(cpuSeconds(pid) - cpu0).toFixed(2)} CPU-s, client ${r.cpu.toFixed(2)} CPU-s\n`);
    rmSync(dest, { recursive: true, force: true });
  }
} finally {
  const exited = new Promise((r) => plugin.once("exit", r));
  plugin.kill("SIGTERM");
  await exited;
  await minio.stop();
}
const file = readdirSync(profDir).find((f) => f.endsWith(".cpuprofile"));
if (!file) throw new Error("the plugin wrote no profile");
renameSync(join(profDir, file), join(out, `${which}.cpuprofile`));
rmSync(work, { recursive: true, force: true });
const table = topSelf(join(out, `${which}.cpuprofile`));
writeFileSync(join(out, `${which}.txt`), table);
process.stdout.write(table);

/** @param {string} p */
function exists(p) {
  try {
    statSync(p);
    return true;
  } catch {
    return false;
  }
}

/** Self time by function, as a share of the time the plugin was not idle. @param {string} path */
function topSelf(path) {
  /** @type {{nodes: {id: number, callFrame: {functionName: string, url: string, lineNumber: number}}[], samples: number[], timeDeltas: number[]}} */
  const prof = JSON.parse(readFileSync(path, "utf8"));
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  /** @type {Map<string, number>} */
  const self = new Map();
  let busy = 0;
  prof.samples.forEach((id, i) => {
    const f = byId.get(id)?.callFrame;
    const name = `${f?.functionName || "(anonymous)"} ${(f?.url ?? "").split("/").slice(-2).join("/")}${f && f.lineNumber >= 0 ? `:${f.lineNumber + 1}` : ""}`.trim();
    if (name.startsWith("(idle)")) return;
    const dt = prof.timeDeltas[i] ?? 0;
    busy += dt;
    self.set(name, (self.get(name) ?? 0) + dt);
  });
  const rows = [...self].sort((a, b) => b[1] - a[1]).slice(0, 25);
  return `${which}: ${(busy / 1e6).toFixed(2)} s of the plugin's main thread busy (warm-up Save and 3 rounds)\n${rows.map(([k, v]) => `${((v / busy) * 100).toFixed(1).padStart(5)} %  ${k}`).join("\n")}\n`;
}
