// @ts-check
// `npm run bench:reliability`: the reliability figures in one place. Runs the
// suites that inject faults and hostile input (against real MinIO servers,
// exactly as in `npm test`) with a ledger file, then the load test, and prints
// one summary: faults injected / survived, hostile inputs tried / refused,
// bytes lost, multipart uploads left behind, secrets found in the plugin's
// output and errors. Every count comes from the tests' own checks (see
// test/support/ledger.ts); the suites still fail on any miss, and so does this
// command (exit 1). Results go to bench/results/reliability.json.
//
//   npm run bench:reliability                    # suites + a 20 s load test (≈ 7 min)
//   npm run bench:reliability -- --no-load       # suites only
//   npm run bench:reliability -- --seconds 60    # a longer load test
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT } from "../lib/tools.mjs";

const SUITES = [
  "test/e2e/faults.test.ts",
  "test/e2e/cancellation.test.ts",
  "test/e2e/process.test.ts",
  "test/integration/retry.test.ts",
  "test/integration/integrity.test.ts",
  "test/e2e/late-uploads.test.ts",
  "test/integration/hostile-input.test.ts",
  "test/e2e/wire-fuzz.test.ts",
  "test/integration/tls-secrets.test.ts",
  "test/e2e/pod-identity.test.ts",
  "test/e2e/identity-paths.test.ts",
  "test/integration/trust-boundary.test.ts",
  "test/e2e/tenants.test.ts",
  "test/e2e/budget-accounting.test.ts",
  "test/integration/ensure-bucket.test.ts",
  "test/unit/save-swapped-links.test.ts",
];

const args = process.argv.slice(2);
const withLoad = !args.includes("--no-load");
const secondsAt = args.indexOf("--seconds");
const loadSeconds = secondsAt >= 0 ? Number(args[secondsAt + 1]) : 20;
if (!Number.isFinite(loadSeconds) || loadSeconds <= 0) throw new Error(`--seconds: expected a positive number, got ${args[secondsAt + 1]}`);

const log = (/** @type {string} */ s) => process.stderr.write(`${s}\n`);

/** Runs a command with its output on stderr (stdout is kept for the summary). @param {string} cmd @param {string[]} argv @param {Record<string, string>} env */
function run(cmd, argv, env = {}) {
  return new Promise((resolve) => {
    const child = spawn(cmd, argv, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ["ignore", process.stderr, process.stderr] });
    child.once("exit", (code) => resolve(code ?? 1));
  });
}

const work = mkdtempSync(join(tmpdir(), "reliability-"));
const ledgerFile = join(work, "ledger.jsonl");
try {
  log(`running ${SUITES.length} suites with the reliability ledger…`);
  const testsCode = await run(process.execPath, [join(ROOT, "node_modules", "vitest", "vitest.mjs"), "run", ...SUITES], { RELIABILITY_LEDGER: ledgerFile });

  /** @type {Array<Record<string, any>>} */
  const records = existsSync(ledgerFile)
    ? readFileSync(ledgerFile, "utf8")
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l))
    : [];
  /** @type {Map<string, Record<string, number>>} */
  const bySuite = new Map();
  const FIELDS = ["faultsInjected", "faultsSurvived", "hostileTried", "hostileRefused", "bytesChecked", "bytesLost", "orphanUploads", "lateCreates", "secretsSought", "logBytesScanned", "secretsFound"];
  /** @type {Record<string, number>} */
  const totals = Object.fromEntries(FIELDS.map((f) => [f, 0]));
  for (const r of records) {
    const s = bySuite.get(r.suite) ?? Object.fromEntries(FIELDS.map((f) => [f, 0]));
    for (const f of FIELDS) {
      s[f] = (s[f] ?? 0) + (r[f] ?? 0);
      totals[f] = (totals[f] ?? 0) + (r[f] ?? 0);
    }
    bySuite.set(r.suite, s);
  }

  /** @type {Record<string, any> | undefined} */
  let load;
  let loadCode = 0;
  if (withLoad) {
    log(`\nload test: 64 callers for ${loadSeconds} s…`);
    loadCode = await run(process.execPath, [join(ROOT, "scripts", "bench", "load.mjs"), "--seconds", String(loadSeconds)]);
    const file = join(ROOT, "bench", "results", "load.json");
    if (existsSync(file)) load = JSON.parse(readFileSync(file, "utf8"));
  }

  const t = /** @type {Record<string, number>} */ (totals);
  const n = (/** @type {string} */ f) => t[f] ?? 0;
  const MiB = 1024 * 1024;
  const fmt = (/** @type {number} */ x) => x.toLocaleString("en-US");
  const rows = [...bySuite.entries()].sort(([a], [b]) => a.localeCompare(b));
  const faultRows = rows.filter(([, s]) => (s["faultsInjected"] ?? 0) > 0 || (s["bytesChecked"] ?? 0) > 0 || (s["orphanUploads"] ?? 0) > 0);
  const hostileRows = rows.filter(([, s]) => (s["hostileTried"] ?? 0) > 0);
  const secretRows = rows.filter(([, s]) => (s["secretsSought"] ?? 0) > 0);
  const w = Math.max(45, ...rows.map(([name]) => name.length));
  const lines = [
    `reliability summary (${new Date().toISOString()}, node ${process.version})`,
    "",
    `${"faults".padEnd(w)} ${"injected".padStart(8)} ${"survived".padStart(8)} ${"MiB checked".padStart(11)} ${"lost".padStart(5)} ${"orphans".padStart(7)}`,
    ...faultRows.map(
      ([name, s]) =>
        `${name.padEnd(w)} ${fmt(s["faultsInjected"] ?? 0).padStart(8)} ${fmt(s["faultsSurvived"] ?? 0).padStart(8)} ${fmt(Math.round((s["bytesChecked"] ?? 0) / MiB)).padStart(11)} ${fmt(s["bytesLost"] ?? 0).padStart(5)} ${fmt(s["orphanUploads"] ?? 0).padStart(7)}`,
    ),
    "",
    `${"hostile input".padEnd(w)} ${"tried".padStart(8)} ${"refused".padStart(8)}`,
    ...hostileRows.map(([name, s]) => `${name.padEnd(w)} ${fmt(s["hostileTried"] ?? 0).padStart(8)} ${fmt(s["hostileRefused"] ?? 0).padStart(8)}`),
    "",
    `${"secrets in the plugin's output and errors".padEnd(w)} ${"sought".padStart(8)} ${"KiB".padStart(8)} ${"found".padStart(5)}`,
    ...secretRows.map(
      ([name, s]) => `${name.padEnd(w)} ${fmt(s["secretsSought"] ?? 0).padStart(8)} ${fmt(Math.round((s["logBytesScanned"] ?? 0) / 1024)).padStart(8)} ${fmt(s["secretsFound"] ?? 0).padStart(5)}`,
    ),
    "",
  ];
  if (load) {
    const p = load["plugin"];
    lines.push(
      `load: ${load["concurrency"]} callers for ${load["seconds"]} s: ${fmt(load["completed"])} RPCs, ${load["failures"]} failed; ` +
        `plugin RSS ${p.rssMiB.start} → peak ${p.rssMiB.peak} → ${p.rssMiB.endAfterIdle} MiB, open fds ${p.openFds.start} → peak ${p.openFds.peak} → ${p.openFds.endAfterIdle}`,
      "",
    );
  }
  const late = n("lateCreates");
  lines.push(
    `faults injected ${fmt(n("faultsInjected"))}, survived ${fmt(n("faultsSurvived"))}`,
    `hostile inputs tried ${fmt(n("hostileTried"))}, refused or contained ${fmt(n("hostileRefused"))}`,
    `bytes lost ${fmt(n("bytesLost"))} (of ${fmt(Math.round(n("bytesChecked") / MiB))} MiB checked)`,
    `orphan multipart uploads ${fmt(n("orphanUploads"))}` +
      (late > 0 ? ` (${late} created late by a stalled store after an unanswered CreateMultipartUpload were found and aborted by the plugin's watch)` : ""),
    `secrets found in logs and errors ${fmt(n("secretsFound"))} (${n("secretsSought")} secret values sought in ${fmt(Math.round(n("logBytesScanned") / 1024))} KiB)`,
  );
  const missed = [
    testsCode !== 0 && `a suite failed (vitest exit ${testsCode})`,
    records.length === 0 && "the ledger is empty",
    n("faultsSurvived") < n("faultsInjected") && "not every fault was survived",
    n("hostileRefused") < n("hostileTried") && "not every hostile input was refused",
    n("bytesLost") > 0 && "bytes were lost",
    n("orphanUploads") > 0 && "multipart uploads were left behind",
    n("secretsFound") > 0 && "a secret was found",
    withLoad && (loadCode !== 0 || !load || load["failures"] > 0) && "the load test failed",
    // Back to baseline after the idle phase: fds within 2 of the start, RSS within 32 MiB of it.
    load && load["plugin"].openFds.endAfterIdle > load["plugin"].openFds.start + 2 && "open fds not back to baseline after the load",
    load &&
      load["plugin"].rssMiB.endAfterIdle > load["plugin"].rssMiB.start + 32 &&
      `plugin RSS not back to baseline after the load (${load["plugin"].rssMiB.endAfterIdle} MiB after idling, ${load["plugin"].rssMiB.start} MiB at the start: memory the C allocator keeps; see README, "Reliability")`,
  ].filter(Boolean);
  lines.push(missed.length === 0 ? "all targets met" : `TARGETS MISSED: ${missed.join("; ")}`);
  process.stdout.write(`\n${lines.join("\n")}\n`);

  const out = join(ROOT, "bench", "results");
  mkdirSync(out, { recursive: true });
  const result = { date: new Date().toISOString(), node: process.version, suites: Object.fromEntries(rows), totals, load: load ?? null, missed };
  writeFileSync(join(out, "reliability.json"), `${JSON.stringify(result, null, 2)}\n`);
  process.stdout.write("written to bench/results/reliability.json\n");
  process.exitCode = missed.length === 0 ? 0 : 1;
} finally {
  rmSync(work, { recursive: true, force: true });
}
