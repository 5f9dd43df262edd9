// After opening a file in a tree a neighbour may change (a Save's walk, a Load
// into an existing target), check what was really opened: the kernel's name
// for the descriptor must lie inside the tree's real root.
import { readlinkSync } from "node:fs";
import { sep } from "node:path";

/** The real path of `fd` when it lies outside `root`; undefined when inside (or when /proc cannot tell). */
export function outsideRoot(fd: number, root: string): string | undefined {
  let real: string;
  try {
    real = readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    return undefined; // no /proc: the caller's no-follow open and checked directories are the guard
  }
  return real.startsWith(root.endsWith(sep) ? root : root + sep) ? undefined : real;
}
