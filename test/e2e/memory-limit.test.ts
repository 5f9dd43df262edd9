// The plugin inside a real memory cgroup of 256 MiB (what a small executor
// limit gives a plugin container) under the 64-way mixed load of
// `npm run bench:load`: it sizes its buffer budget and concurrent transfers
// from the limit it reads, and must end with no OOM kill, no failed RPC and
// every byte checked. Needs root to make the cgroup (CI runs as root).
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { expect, it } from "vitest";
import { cgroupMemoryLimit, sizeForMemory } from "../../src/settings.js";
import { ROOT } from "../support/plugin.js";

const run = promisify(execFile);
const isRoot = process.getuid?.() === 0;
if (!isRoot)
  process.stdout.write(
    "memory-limit: the cgroup load run skipped, making a memory cgroup needs root (CI runs as root)\n",
  );

it("reads the memory limit of its own cgroup, v1 or v2, the smallest along the path", () => {
  const files: Record<string, string> = {
    "/proc/self/cgroup": "4:memory:/pods/pod1/ctr\n0::/kubepods/pod2\n",
    "/sys/fs/cgroup/memory/pods/pod1/ctr/memory.limit_in_bytes": "9223372036854771712\n",
    "/sys/fs/cgroup/memory/pods/pod1/memory.limit_in_bytes": String(512 * 2 ** 20),
    "/sys/fs/cgroup/kubepods/pod2/memory.max": "max\n",
    "/sys/fs/cgroup/kubepods/memory.max": String(300 * 2 ** 20),
  };
  expect(cgroupMemoryLimit((p) => files[p])).toBe(300 * 2 ** 20);
  expect(
    cgroupMemoryLimit((p) =>
      p === "/proc/self/cgroup" ? "0::/\n" : p === "/sys/fs/cgroup/memory.max" ? "max\n" : undefined,
    ),
  ).toBeUndefined();
  const small = sizeForMemory(256 * 2 ** 20);
  expect(small.bufferBytes).toBeLessThan(96 * 2 ** 20);
  expect(small.maxConcurrentTransfers).toBeLessThan(64);
  expect(sizeForMemory(undefined)).toEqual({ bufferBytes: 96 * 2 ** 20, maxConcurrentTransfers: 64 });
});

it.skipIf(!isRoot)(
  "runs the 64-way load inside a 256 MiB memory cgroup: no OOM kill, no failed RPC",
  async () => {
    const out = mkdtempSync(join(tmpdir(), "memcg-"));
    try {
      const r = await run(
        process.execPath,
        [
          join(ROOT, "scripts", "bench", "load.mjs"),
          "--seconds",
          "15",
          "--idle",
          "12",
          "--memory-limit-mib",
          "256",
          "--results",
          out,
        ],
        {
          timeout: 300_000,
          maxBuffer: 16 * 1024 * 1024,
        },
      ).catch((e: { code?: number; stdout?: string; stderr?: string }) => e);
      const text = `${r.stdout ?? ""}\n${r.stderr ?? ""}`;
      const result = JSON.parse(readFileSync(join(out, "load-256mib.json"), "utf8")) as {
        completed: number;
        failures: number;
        plugin: { alive: boolean };
        cgroup: { oomKills: number; peakMiB: number };
      };
      expect(result.cgroup.oomKills, text).toBe(0);
      expect(result.failures, text).toBe(0);
      expect(result.plugin.alive, text).toBe(true);
      expect(result.completed).toBeGreaterThan(100);
      expect(result.cgroup.peakMiB).toBeLessThanOrEqual(256);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  },
  400_000,
);
