// @ts-check
// Process measurements for the benchmark: CPU seconds and peak RSS of a
// long-running process read from /proc (the plugin), and of a one-shot
// command through wait4's rusage (s5cmd), via a tiny Python wrapper.
import { execFile } from "node:child_process";
import { closeSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";

const TICKS = 100; // USER_HZ on Linux

/** @param {number} pid */
export function cpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / TICKS;
}

/** Peak resident set (VmHWM) in MiB since the last resetPeak. @param {number} pid */
export function peakRssMiB(pid) {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** Current RSS in MiB. @param {number} pid */
export function rssMiB(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** Reset VmHWM to the current RSS (Linux ≥ 4.0, needs write access to clear_refs). @param {number} pid */
export function resetPeak(pid) {
  writeFileSync(`/proc/${pid}/clear_refs`, "5");
}

const WRAPPER = `
import json, os, sys, time
t0 = time.monotonic()
pid = os.spawnvp(os.P_NOWAIT, sys.argv[1], sys.argv[1:])
_, status, ru = os.wait4(pid, 0)
print(json.dumps({"code": os.waitstatus_to_exitcode(status), "wall": time.monotonic() - t0,
  "cpu": ru.ru_utime + ru.ru_stime, "maxRssMiB": ru.ru_maxrss / 1024}), file=sys.stderr)
`;

/**
 * Run a command to completion; wall time, CPU seconds and peak RSS from rusage.
 * @param {string} cmd @param {string[]} args @param {Record<string,string>} env
 * @returns {Promise<{wall: number, cpu: number, maxRssMiB: number, stdout: string}>}
 */
export function runMeasured(cmd, args, env) {
  return new Promise((resolve, reject) => {
    execFile("python3", ["-c", WRAPPER, cmd, ...args], { env: { ...process.env, ...env }, maxBuffer: 256 * 1024 * 1024 }, (err, stdout, stderr) => {
      const line = stderr.trim().split("\n").at(-1) ?? "";
      let r;
      try {
        r = JSON.parse(line);
      } catch {
        return reject(new Error(`${cmd} ${args.join(" ")}: ${err?.message ?? ""}\n${stderr.slice(-2000)}`));
      }
      if (r.code !== 0) return reject(new Error(`${cmd} ${args.join(" ")} exited ${r.code}:\n${stdout.slice(-1000)}\n${stderr.slice(-2000)}`));
      resolve({ ...r, stdout });
    });
  });
}

/**
 * Writes and deletes a file of `bytes` (at least 64 MiB) in `dir` just before a timed run, so the
 * run writes into pages the VM has handed out before: first-touch pages cost ~3 s of system time
 * per GiB here (../shared/perf-facts.md), which would measure the VM instead of the tool.
 * @param {string} dir @param {number} bytes
 */
export function warmPages(dir, bytes) {
  const path = join(dir, "warm.tmp");
  const fd = openSync(path, "w");
  const block = Buffer.alloc(8 * 1024 * 1024, 0xa5);
  for (let off = 0; off < Math.max(bytes, 64 * 1024 * 1024); off += block.length) writeSync(fd, block);
  closeSync(fd);
  rmSync(path);
}
