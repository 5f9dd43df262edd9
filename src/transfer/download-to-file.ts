// Download to a file: ranged GETs in parallel, each streamed to its offset of
// a temporary file beside the target, renamed into place only once every byte
// is there and checked (CRC32 against the object's full-object CRC32 when S3
// has one: every upload of this plugin stores one).
import { randomBytes } from "node:crypto";
import { writeSync } from "node:fs";
import { type FileHandle, open, rename, rm, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { PluginError } from "../errors.js";
import { isAbort } from "../util/abortable.js";
import type { JobContext } from "./job.js";
import { PieceCrcs } from "./crc32.js";
import {
  type BodySink,
  type ObjectInfo,
  type ObjectRead,
  type RangeResult,
  checkCrc,
  getRange,
  headObject,
  intoBuffer,
  withRangeRetries,
} from "./range-reader.js";
import { outsideRoot } from "./opened-inside.js";
import { TaskGroup } from "./task-group.js";

/**
 * Write batches (two halves): big enough to keep syscalls few, small enough that a half is still
 * in the CPU's cache when it is written (see SerialFile: 1 MiB batches cost half as much CPU again).
 */
const WRITE_BATCH = 256 * 1024;

/**
 * One file's writes, one at a time in the order asked, and while the disk
 * keeps up, on the event loop's own thread. Measured on a 1 GiB Load (perf, 2
 * cores, loopback MinIO): pwrites from several thread-pool threads to one file
 * queue on the inode's lock and spin there, and a batch received on one core
 * and written from another is copied out of a cold cache; with 1 MiB batches
 * through the pool the plugin spent 1.3–2.4 CPU-s/GiB, with small batches
 * written where they arrived 0.8. A write into the page cache returns in
 * microseconds; once one takes longer than SLOW_WRITE_MS (the kernel is
 * throttling a writer of dirty pages, a slow volume), the file's writes go
 * through the thread pool, and so do the writes of every file opened in the
 * next SLOW_DISK_MEMORY_MS (a directory of large files on a slow volume blocks
 * the event loop once, not once per file). Writes through the pool are timed
 * too: a slow one renews that memory, and FAST_WRITES_TO_RETURN quick ones in
 * a row end it and bring the file back to the event loop. Without that, one
 * slow write in a long-lived process (argo-server's sidecar) sent every Load
 * of the next minute the slower way, and a steady trickle of them kept it so.
 */
export class SerialFile {
  private tail: Promise<unknown> = Promise.resolve();
  /** True while the file's writes go through the thread pool. */
  pooled: boolean;
  /** Writes through the pool in a row that were quick. */
  private quick = 0;
  constructor(
    readonly fh: FileHandle,
    private readonly slowMs = SLOW_WRITE_MS,
    private readonly disk: { slowAt: number } = DISK,
  ) {
    this.pooled = performance.now() - disk.slowAt < SLOW_DISK_MEMORY_MS;
  }

  write(buf: Buffer, position: number): Promise<void> {
    if (!this.pooled) {
      const t0 = performance.now();
      try {
        for (let done = 0; done < buf.length;) {
          const n = writeSync(this.fh.fd, buf, done, buf.length - done, position + done);
          if (n <= 0) throw new Error(`a write of ${buf.length - done} bytes at ${position + done} wrote nothing`);
          done += n;
        }
      } catch (e) {
        return Promise.reject(e instanceof Error ? e : new Error(String(e)));
      }
      if (performance.now() - t0 > this.slowMs) this.slow();
      return Promise.resolve();
    }
    const done = this.tail.then(async () => {
      const t0 = performance.now();
      await writeFully(this.fh, buf, position);
      if (performance.now() - t0 > this.slowMs) this.slow();
      else if (++this.quick >= FAST_WRITES_TO_RETURN) {
        // The disk keeps up again: this file, and files opened from now on, back on the event loop.
        this.pooled = false;
        this.disk.slowAt = -Infinity;
      }
    });
    this.tail = done.catch(() => undefined);
    return done;
  }

  private slow(): void {
    this.pooled = true;
    this.quick = 0;
    this.disk.slowAt = performance.now();
  }
}

/** A write on the event loop that took longer than this sends the file's later writes to the thread pool. */
const SLOW_WRITE_MS = 10;
/** How long a slow write sends the writes of files opened after it to the thread pool too. */
const SLOW_DISK_MEMORY_MS = 60_000;
/** Quick writes through the pool in a row (4 MiB of 256 KiB batches) that bring a file back to the event loop. */
const FAST_WRITES_TO_RETURN = 16;
/** When a write was last slow, for the whole process (one disk under the plugin's files, as a rule). */
const DISK = { slowAt: -Infinity };

/**
 * A range's bytes land in one half of `batch` (straight from the socket on the
 * lean path) while the other half is being written at its offset: reading
 * waits only when both halves are full. A write error is raised at the next
 * hand-over, and `drain` waits for the write in flight (a retry must not
 * reuse a half the file system is still reading).
 */
function fileSink(
  file: SerialFile,
  start: number,
  batch: Buffer,
): BodySink & { finish(): Promise<void>; drain(): Promise<void> } {
  const half = batch.length >> 1;
  const halves = [batch.subarray(0, half), batch.subarray(half, 2 * half)] as const;
  let cur = 0;
  let filled = 0;
  let pos = start;
  let writing: Promise<void> = Promise.resolve();
  let failure: unknown;
  const handOver = (): Promise<void> => {
    const data = halves[cur as 0 | 1].subarray(0, filled);
    const at = pos;
    pos += filled;
    filled = 0;
    cur ^= 1;
    const previous = writing;
    writing = previous
      .then(() => file.write(data, at))
      .catch((e: unknown) => {
        failure ??= e;
      });
    // The half we switch to is free once the write before this one is done.
    return previous.then(() => {
      if (failure !== undefined) throw failure;
    });
  };
  return {
    space: () => halves[cur as 0 | 1].subarray(filled),
    took(n) {
      filled += n;
      if (filled === half) return handOver();
    },
    async finish() {
      if (filled > 0) await handOver();
      await writing;
      if (failure !== undefined) throw failure;
    },
    drain: () => writing,
  };
}

/**
 * GET a range straight into the file at its offset: no range is ever held
 * whole in memory. Rewriting the same offsets on a retry is harmless.
 */
async function rangeToFile(
  read: ObjectRead,
  start: number,
  length: number,
  file: SerialFile,
  signal: AbortSignal,
): Promise<RangeResult> {
  const leave = await read.job.rangeSlots.take(signal);
  const budget = read.job.buffers;
  let batch: Buffer;
  try {
    batch = await budget.acquire(2 * Math.min(WRITE_BATCH, length), signal);
  } catch (e) {
    leave();
    throw e;
  }
  try {
    return await withRangeRetries(read, signal, async () => {
      const sink = fileSink(file, start, batch);
      try {
        const result = await getRange(read, start, length, signal, sink);
        await sink.finish();
        return result;
      } catch (e) {
        await sink.drain();
        throw e;
      }
    });
  } finally {
    budget.release(batch);
    leave();
  }
}

/**
 * Objects up to this size are received into one buffer and written with a
 * single writeFile: fewer thread-pool round trips per file, which is what
 * dominates a directory of thousands of small files.
 */
export const SMALL_OBJECT = 256 * 1024;

async function smallToFile(
  read: ObjectRead,
  dest: string,
  signal: AbortSignal,
  inPlace: boolean,
  within: string | undefined,
): Promise<number> {
  const { job, key, info } = read;
  const budget = job.buffers;
  const buf = await budget.acquire(info.size, signal);
  try {
    await withRangeRetries(read, signal, async () => {
      const r = await getRange(read, 0, info.size, signal, intoBuffer(buf));
      checkCrc(job.target, key, info.crc32 ?? r.objectCrc, r.crc);
    });
    if (inPlace) {
      await writeFile(dest, buf, { flag: "w", mode: 0o644 });
      return info.size;
    }
    const tmp = tempPathFor(dest);
    try {
      const fh = await openTemp(tmp, within);
      try {
        await writeFully(fh, buf, 0);
      } finally {
        await fh.close();
      }
      await rename(tmp, dest);
    } catch (e) {
      await rm(tmp, { force: true });
      throw e;
    }
    return info.size;
  } finally {
    budget.release(buf);
  }
}

/**
 * Create the temporary file (never through a link: "wx" fails on anything that
 * exists). With `within` (a Load into a target that existed before, whose
 * directories a neighbour may swap for links after they were checked), what
 * was created must really be inside that directory, or it is removed and the
 * Load fails. The final rename uses the same parent path, so a parent swapped
 * after this check makes the rename fail rather than land elsewhere.
 */
async function openTemp(tmp: string, within: string | undefined): Promise<FileHandle> {
  const fh = await open(tmp, "wx", 0o644);
  if (within === undefined) return fh;
  const real = outsideRoot(fh.fd, within);
  if (real !== undefined) {
    await fh.close();
    await rm(real, { force: true });
    throw new PluginError(
      "local",
      `refusing to load into ${dirname(tmp)}: it now resolves to ${dirname(real)}, outside the target directory ${within}; was a directory replaced by a link?`,
    );
  }
  return fh;
}

/** File names longer than this (bytes) cannot exist on Linux file systems. */
const NAME_MAX = 255;

/**
 * Temporary sibling of `dest`, on the same file system so the final rename is
 * atomic. Named after the file when that fits in NAME_MAX (easier to spot),
 * else a short random name (a 240-byte file name must still load).
 */
export function tempPathFor(dest: string): string {
  const tag = randomBytes(6).toString("hex");
  const named = `.${basename(dest)}.${tag}.part`;
  return join(dirname(dest), Buffer.byteLength(named) <= NAME_MAX ? named : `.argo-s3-${tag}.part`);
}

/** How a download is placed; see downloadToFile. */
export interface DownloadOptions {
  /** Size and ETag from a listing, to save a HEAD. */
  known?: ObjectInfo | undefined;
  /** Write small objects straight to `dest` (files of a directory Load whose caller removes the whole directory on failure). */
  inPlace?: boolean;
  /** The real path of an existing Load target (see openTemp). */
  within?: string | undefined;
}

/**
 * Download `key` to `dest`. A listing has no checksum, so large objects still
 * get a HEAD for theirs. Without `inPlace`, every file goes through a
 * temporary sibling renamed into place. Ranged GETs take the job's range
 * slots, so files × ranges per file in flight stay bounded.
 */
export async function downloadToFile(
  job: JobContext,
  key: string,
  dest: string,
  signal: AbortSignal,
  opts: DownloadOptions = {},
): Promise<number> {
  const { target, tuning } = job;
  const { known, inPlace = false, within } = opts;
  const { partSize, partConcurrency, multipartThreshold, checksum } = tuning;
  const needHead = !known || (checksum === "crc32" && known.crc32 === undefined && known.size > multipartThreshold);
  const info = needHead ? await headObject(job, key, signal) : known;
  const read: ObjectRead = { single: false, job, key, info };
  if (info.size <= SMALL_OBJECT) return smallToFile(read, dest, signal, inPlace, within);
  const tmp = tempPathFor(dest);
  const fh = await openTemp(tmp, within);
  const file = new SerialFile(fh);
  let closed = false;
  try {
    if (info.size <= multipartThreshold) {
      if (info.size > 0) {
        const r = await rangeToFile(read, 0, info.size, file, signal);
        checkCrc(target, key, info.crc32 ?? r.objectCrc, r.crc);
      }
    } else {
      const group = new TaskGroup(partConcurrency, signal);
      const crcs = new PieceCrcs();
      let count = 0;
      try {
        for (let offset = 0; offset < info.size; offset += partSize, count++) {
          const start = offset;
          const len = Math.min(partSize, info.size - start);
          const index = count;
          await group.add(async (s) => {
            const r = await rangeToFile(read, start, len, file, s);
            crcs.set(index, r.crc, len);
          });
        }
        await group.wait();
      } catch (e) {
        await group.settle();
        throw e;
      }
      if (checksum === "crc32") checkCrc(target, key, info.crc32, crcs.combine(count));
    }
    // What is verified is the file, not only the bytes received: exactly the object's size.
    const written = (await fh.stat()).size;
    if (written !== info.size)
      throw new PluginError(
        "storage",
        `Load of ${target.store.location(key)}: the file holds ${written} bytes, the object ${info.size}; not kept`,
      );
    await fh.close();
    closed = true;
    await rename(tmp, dest);
    return info.size;
  } catch (e) {
    if (!closed) await fh.close().catch(() => undefined);
    await rm(tmp, { force: true });
    if (isAbort(e, signal) && !(e instanceof PluginError)) throw target.store.cancelled("GetObject", key, signal);
    throw e;
  }
}

async function writeFully(fh: FileHandle, buf: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < buf.length) {
    const { bytesWritten } = await fh.write(buf, done, buf.length - done, position + done);
    done += bytesWritten;
  }
}
