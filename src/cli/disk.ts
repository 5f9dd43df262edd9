// Local file facts the CLI shows in its progress line. A Load is one unary RPC
// and the plugin writes the files itself, so the only view of its progress is
// what has reached the disk so far.
import type { Dirent, Stats } from "node:fs";
import { lstat, readdir } from "node:fs/promises";
import { basename, dirname, join } from "node:path";

/** Bytes actually written: ranged parallel writes leave holes, so count allocated blocks, not the length. */
function written(st: Stats): number {
  return Math.min(st.size, st.blocks * 512);
}

/** Regular files and their total size under `dir`; symlinks are skipped, as Save skips them. */
export async function treeSize(dir: string): Promise<{ files: number; bytes: number }> {
  let files = 0;
  let bytes = 0;
  const walk = async (d: string): Promise<void> => {
    let entries: Dirent[];
    try {
      entries = await readdir(d, { withFileTypes: true });
    } catch {
      return; // vanished or unreadable mid-walk: count what we can
    }
    for (const e of entries) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile()) {
        const st = await lstat(p).catch(() => undefined);
        if (st) {
          files++;
          bytes += st.size;
        }
      }
    }
  };
  await walk(dir);
  return { files, bytes };
}

/**
 * How much of a Load into `dest` is on disk. A file is written to a hidden
 * `.<name>.<random>.part` sibling and renamed at the end; a directory fills in
 * place (with such siblings inside it).
 */
export async function loadedBytes(dest: string): Promise<number> {
  const st = await lstat(dest).catch(() => undefined);
  if (st?.isDirectory()) {
    let bytes = 0;
    const walk = async (d: string): Promise<void> => {
      const entries = await readdir(d, { withFileTypes: true }).catch(() => [] as Dirent[]);
      for (const e of entries) {
        const p = join(d, e.name);
        if (e.isDirectory()) await walk(p);
        else if (e.isFile()) bytes += await lstat(p).then(written, () => 0);
      }
    };
    await walk(dest);
    return bytes;
  }
  const prefix = `.${basename(dest)}.`;
  const siblings = await readdir(dirname(dest)).catch(() => [] as string[]);
  let partial = 0;
  let found = false;
  for (const name of siblings) {
    if (name.startsWith(prefix) && name.endsWith(".part")) {
      found = true;
      partial += await lstat(join(dirname(dest), name)).then(written, () => 0);
    }
  }
  if (found) return partial;
  return st?.isFile() ? st.size : 0;
}
