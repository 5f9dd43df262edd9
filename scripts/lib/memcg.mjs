// @ts-check
// A real memory cgroup for a child process: v2 (memory.max) where the unified
// hierarchy has the memory controller, else v1 (memory.limit_in_bytes). Needs
// root. The child is moved in by a shell that writes its own pid to
// cgroup.procs and then execs the command, so no byte runs outside the limit.
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/**
 * @param {string} name @param {number} limitBytes
 * @returns {{ dir: string, version: 1 | 2, wrap: (argv: string[]) => string[], oomKills: () => number, peakBytes: () => number, remove: () => void }}
 */
export function memoryCgroup(name, limitBytes) {
  const v2 =
    existsSync("/sys/fs/cgroup/cgroup.controllers") &&
    readFileSync("/sys/fs/cgroup/cgroup.controllers", "utf8").includes("memory");
  const dir = v2 ? join("/sys/fs/cgroup", name) : join("/sys/fs/cgroup/memory", name);
  mkdirSync(dir, { recursive: true });
  if (v2) writeFileSync(join(dir, "memory.max"), String(limitBytes));
  else writeFileSync(join(dir, "memory.limit_in_bytes"), String(limitBytes));
  const read = (/** @type {string} */ f) => {
    try {
      return readFileSync(join(dir, f), "utf8");
    } catch {
      return "";
    }
  };
  return {
    dir,
    version: v2 ? 2 : 1,
    wrap: (argv) => ["sh", "-c", `echo $$ > ${join(dir, "cgroup.procs")} && exec "$@"`, "sh", ...argv],
    oomKills: () => Number(/oom_kill (\d+)/.exec(read(v2 ? "memory.events" : "memory.oom_control"))?.[1] ?? 0),
    peakBytes: () => Number((v2 ? read("memory.peak") : read("memory.max_usage_in_bytes")).trim() || 0),
    remove: () => {
      try {
        rmdirSync(dir);
      } catch {
        // still has a process in it; the kernel keeps it until that exits
      }
    },
  };
}
