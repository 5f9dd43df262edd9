// A prefix as one transfer: every object under it loaded, every file of a
// directory saved, every key under it deleted. One runner drives them all:
// items are pulled from their source (a listing, a file walk) only when a slot
// of the job's file group is free, which is the backpressure on that source;
// the first failure stops the rest, and what is reported is that failure, not
// the listing or walk it cut short. Which object goes to which path (Argo's
// key ↔ path rule and the load target's safety) is the caller's to say.
import { PluginError } from "../errors.js";
import type { ListedObject, StoreTarget } from "../store/port.js";
import type { DownloadOptions } from "./download-to-file.js";
import { listPrefix } from "./listing.js";
import { TaskGroup } from "./task-group.js";

/** What a prefix transfer moved. */
export interface Moved {
  bytes: number;
  files: number;
}

/** Where one listed object is written, or undefined to pass it over. Runs inside the object's own task. */
export type Placement = (
  obj: ListedObject,
  signal: AbortSignal,
) => Promise<{ path: string; opts: Omit<DownloadOptions, "known"> } | undefined>;

/** One file of a directory to save: its object key and its path. */
export interface FileToSave {
  key: string;
  path: string;
}

/**
 * The one runner: `each(item, signal)` for every item `items(signal)` yields, at most `limit` at
 * once; the source is read on the group's signal, so a failed item stops it too. Returns the bytes
 * the calls returned, summed, and how many returned a number (undefined: passed over).
 */
export async function forEachBounded<T>(
  limit: number,
  signal: AbortSignal,
  items: (signal: AbortSignal) => AsyncIterable<T>,
  each: (item: T, signal: AbortSignal) => Promise<number | undefined>,
): Promise<Moved> {
  const group = new TaskGroup(limit, signal);
  const moved: Moved = { bytes: 0, files: 0 };
  try {
    for await (const item of items(group.signal)) {
      await group.add(async (s) => {
        const bytes = await each(item, s);
        if (bytes === undefined) return;
        moved.bytes += bytes;
        moved.files++;
      });
    }
    await group.wait();
    return moved;
  } catch (e) {
    await group.settle();
    throw group.causeOf(e);
  }
}

/** The DeleteObjects batch limit. */
const DELETE_BATCH = 1000;

/** Every key under `prefix` deleted, in batches of up to 1,000 as the listing streams in. Returns how many. */
export async function deletePrefix(target: StoreTarget, prefix: string, signal: AbortSignal): Promise<number> {
  let batch: string[] = [];
  let deleted = 0;
  const flush = async () => {
    if (batch.length === 0) return;
    const keys = batch;
    batch = [];
    const failed = await target.store.deleteObjects(keys, prefix, { signal });
    if (failed.length > 0) {
      const first = failed[0]!;
      throw new PluginError(
        "storage",
        `DeleteObjects ${target.store.location(prefix)}: ${failed.length} of ${keys.length} keys not deleted, first ${first.key}: ${first.code}: ${first.message}`,
      );
    }
    deleted += keys.length;
  };
  for await (const obj of listPrefix(target, prefix, signal)) {
    batch.push(obj.key);
    if (batch.length === DELETE_BATCH) await flush();
  }
  await flush();
  return deleted;
}
