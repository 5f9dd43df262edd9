// Streams the regular files of a directory tree. Entries are read with
// opendir (no full readdir arrays) and yielded one at a time, so a huge tree
// costs memory in proportion to its depth and pending directories, not its
// file count. Symbolic links are never followed (Argo's S3 driver skips them),
// and are counted so the caller can log how many were skipped.
import { opendir } from "node:fs/promises";
import { join } from "node:path";
import { PluginError } from "../errors.js";
import { localReadProblem } from "../util/local-access.js";

export interface WalkedFile {
  path: string;
  /** POSIX path relative to the root. */
  rel: string;
}

export interface WalkStats {
  skippedSymlinks: number;
  skippedOther: number;
}

export async function* walkFiles(root: string, stats: WalkStats): AsyncGenerator<WalkedFile> {
  const pending: string[] = [""];
  while (pending.length > 0) {
    const relDir = pending.pop()!;
    const at = relDir === "" ? root : join(root, relDir);
    const dir = await opendir(at).catch((e: unknown) => {
      throw new PluginError("local", `cannot save ${at}: ${localReadProblem(at, e)}`);
    });
    for await (const entry of dir) {
      const rel = relDir === "" ? entry.name : `${relDir}/${entry.name}`;
      if (entry.isSymbolicLink()) stats.skippedSymlinks++;
      else if (entry.isDirectory()) pending.push(rel);
      else if (entry.isFile()) yield { path: join(root, rel), rel };
      else stats.skippedOther++;
    }
  }
}
