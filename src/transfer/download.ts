// Downloads: to a file (ranged GETs in parallel, each streamed to its offset
// of a temporary file beside the target, renamed into place only once every
// byte is there and checked) and as an ordered stream (bounded read-ahead of
// ranges, for OpenStream). Every range is pinned to the ETag seen first, so an
// object replaced mid-download fails instead of mixing two versions; the CRC32
// of what arrived is checked against the object's full-object CRC32 when S3
// has one (every upload of this plugin stores one).
import { randomBytes } from "node:crypto";
import { type FileHandle, open, readlink, rename, rm, writeFile } from "node:fs/promises";
import { basename, dirname, join, sep } from "node:path";
import type { Readable } from "node:stream";
import { PluginError } from "../errors.js";
import type { S3Target } from "../s3/client.js";
import { type S3Where, isAbort, storageError } from "../s3/errors.js";
import type { ReadSse } from "../s3/encryption.js";
import { backoff } from "./backoff.js";
import { PieceCrcs, crc32, crc32Combine, crc32FromBase64, crc32ToBase64 } from "./crc32.js";
import { transferBuffers } from "./buffer-budget.js";
import { addProgress } from "./progress.js";
import { TaskGroup } from "./task-group.js";

export interface ObjectInfo {
  size: number;
  etag: string | undefined;
  /** Full-object CRC32, when S3 reports one (not for composite multipart checksums). */
  crc32?: number | undefined;
}

/**
 * A full-object CRC32 from response headers, or undefined when the value may
 * describe parts instead: a "…-N" value, a type other than FULL_OBJECT, or no
 * type at all on a multipart object (its ETag ends in "-N"; some stores send
 * a composite value without saying so, which would read as corruption).
 */
function fullObjectCrc(value: string | undefined, type: string | undefined, etag: string | undefined): number | undefined {
  if (!value || value.includes("-") || (type !== undefined && type !== "FULL_OBJECT")) return undefined;
  if (type === undefined && etag !== undefined && /-\d+"?$/.test(etag)) return undefined;
  return crc32FromBase64(value);
}

/** `single`: one attempt only (OpenStream). */
export async function headObject(target: S3Target, key: string, signal: AbortSignal, single = false): Promise<ObjectInfo> {
  const sse = await target.encryption.forRead(key);
  const checksums = target.cfg.tuning.checksum === "crc32";
  try {
    const out = await target.store.head(key, { ...(checksums ? { ChecksumMode: "ENABLED" } : {}), ...sse }, { signal, single });
    return { size: out.ContentLength ?? 0, etag: out.ETag, crc32: checksums ? fullObjectCrc(out.ChecksumCRC32, out.ChecksumType, out.ETag) : undefined };
  } catch (e) {
    throw storageError("HeadObject", where(target, key), e, signal);
  }
}

function where(target: S3Target, key: string): S3Where {
  return { bucket: target.bucket, key, endpointLabel: target.endpointLabel };
}

function describeWhere(target: S3Target, key: string): string {
  return `s3://${target.bucket}/${key} (endpoint ${target.endpointLabel})`;
}

/** Receives a range's bytes in order; may return a promise to pause the body. */
type ChunkSink = (chunk: Buffer) => void | Promise<void>;

interface RangeResult {
  /** CRC32 of the bytes received. */
  crc: number;
  /** Full-object CRC32 from the response, for whole-object GETs. */
  objectCrc: number | undefined;
}

/** Everything that stays the same across the ranges of one object. */
interface ObjectRead {
  /** One attempt per request (OpenStream); otherwise the SDK's retries. */
  single: boolean;
  target: S3Target;
  key: string;
  info: ObjectInfo;
  sse: ReadSse;
}

/** GET one range (or the whole object), handing its bytes to `sink`, checking their count and CRC-ing them. */
async function getRange(read: ObjectRead, start: number, length: number, signal: AbortSignal, sink: ChunkSink): Promise<RangeResult> {
  const { single, target, key, info, sse } = read;
  const whole = start === 0 && length === info.size;
  const range = whole ? undefined : `bytes=${start}-${start + length - 1}`;
  const label = whole ? "GetObject" : `GetObject ${range}`;
  const checksums = target.cfg.tuning.checksum === "crc32";
  let body: Readable | undefined;
  try {
    const out = await target.store.get(
      key,
      { Range: range, IfMatch: info.etag, ...(checksums && whole ? { ChecksumMode: "ENABLED" } : {}), ...sse },
      { signal, single },
    );
    body = out.Body as Readable | undefined;
    let received = 0;
    let crc = 0;
    if (body) {
      for await (const chunk of body as AsyncIterable<Buffer>) {
        received += chunk.length;
        if (received > length) {
          throw new PluginError("storage", `${label} ${describeWhere(target, key)}: server sent more than the ${length} bytes asked for`, { retryable: true });
        }
        if (checksums) crc = crc32(chunk, crc);
        addProgress(chunk.length);
        const pending = sink(chunk);
        if (pending) await pending;
      }
    }
    if (received !== length) {
      throw new PluginError("storage", `${label} ${describeWhere(target, key)}: truncated, got ${received} of ${length} bytes`, { retryable: true });
    }
    return { crc, objectCrc: checksums && whole ? fullObjectCrc(out.ChecksumCRC32, out.ChecksumType, out.ETag) : undefined };
  } catch (e) {
    body?.destroy();
    throw storageError(label, where(target, key), e, signal);
  }
}

function checkCrc(target: S3Target, key: string, expected: number | undefined, actual: number): void {
  if (expected !== undefined && expected !== actual >>> 0) {
    throw new PluginError(
      "storage",
      `checksum mismatch for ${describeWhere(target, key)}: S3 says CRC32 ${crc32ToBase64(expected)}, received data has ${crc32ToBase64(actual)}; the data was corrupted in transit or at rest`,
    );
  }
}

/** OpenStream read-ahead: at most STREAM_WINDOW ranges of at most STREAM_RANGE bytes. */
const STREAM_RANGE = 8 * 1024 * 1024;
const STREAM_WINDOW = 4;

/** Write batches: big enough to keep syscalls few, small enough that memory is concurrency × 1 MiB. */
const WRITE_BATCH = 1024 * 1024;

function retriable(e: unknown): boolean {
  return e instanceof PluginError && e.kind === "storage" && e.retryable;
}

/**
 * Run one range attempt again when its body broke mid-way (the SDK retries
 * only before the body starts); the attempt must be safe to repeat.
 */
async function withRangeRetries<T>(read: ObjectRead, signal: AbortSignal, attempt: () => Promise<T>): Promise<T> {
  for (let n = 1; ; n++) {
    try {
      return await attempt();
    } catch (e) {
      if (!retriable(e) || n >= read.target.cfg.tuning.maxAttempts || signal.aborted) throw e;
      await backoff(n);
    }
  }
}

/** A sink copying a range into `buf` from its start. */
function intoBuffer(buf: Buffer): ChunkSink {
  let filled = 0;
  return (chunk) => {
    chunk.copy(buf, filled);
    filled += chunk.length;
  };
}

/**
 * GET a range straight into the file at its offset, through one reusable
 * batch buffer: no range is ever held whole in memory. Rewriting the same
 * offsets on a retry is harmless.
 */
async function rangeToFile(read: ObjectRead, start: number, length: number, fh: FileHandle, signal: AbortSignal): Promise<RangeResult> {
  const budget = transferBuffers();
  const batch = await budget.acquire(WRITE_BATCH, signal);
  try {
    return await withRangeRetries(read, signal, async () => {
      let pos = start;
      let filled = 0;
      const flush = async () => {
        await writeFully(fh, batch.subarray(0, filled), pos);
        pos += filled;
        filled = 0;
      };
      const result = await getRange(read, start, length, signal, async (chunk) => {
        let off = 0;
        while (off < chunk.length) {
          const n = Math.min(chunk.length - off, WRITE_BATCH - filled);
          chunk.copy(batch, filled, off, off + n);
          filled += n;
          off += n;
          if (filled === WRITE_BATCH) await flush();
        }
      });
      if (filled > 0) await flush();
      return result;
    });
  } finally {
    budget.release(batch);
  }
}

/**
 * Objects up to this size are received into one buffer and written with a
 * single writeFile: fewer thread-pool round trips per file, which is what
 * dominates a directory of thousands of small files.
 */
export const SMALL_OBJECT = 256 * 1024;

async function smallToFile(read: ObjectRead, dest: string, signal: AbortSignal, inPlace: boolean, within: string | undefined): Promise<number> {
  const { target, key, info } = read;
  const budget = transferBuffers();
  const buf = await budget.acquire(info.size, signal);
  try {
    await withRangeRetries(read, signal, async () => {
      const r = await getRange(read, 0, info.size, signal, intoBuffer(buf));
      checkCrc(target, key, info.crc32 ?? r.objectCrc, r.crc);
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
  let real: string | undefined;
  try {
    real = await readlink(`/proc/self/fd/${fh.fd}`);
  } catch {
    real = undefined; // no /proc: the checked directories are the guard
  }
  if (real !== undefined && !real.startsWith(within.endsWith(sep) ? within : within + sep)) {
    await fh.close();
    await rm(real, { force: true });
    throw new PluginError("local", `refusing to load into ${dirname(tmp)}: it now resolves to ${dirname(real)}, outside the target directory ${within}; was a directory replaced by a link?`);
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

/**
 * Download `key` to `dest`. `known` may come from a listing to save a HEAD;
 * a listing has no checksum, so large objects still get a HEAD for theirs.
 * `inPlace` (files of a directory Load, whose caller removes the whole
 * directory on failure) writes small objects straight to `dest`, sparing a
 * rename per file; a single-file Load always goes through a temporary sibling.
 * `within`: the real path of an existing Load target (see openTemp).
 */
export async function downloadToFile(
  target: S3Target,
  key: string,
  dest: string,
  signal: AbortSignal,
  known?: ObjectInfo,
  inPlace = false,
  within?: string,
): Promise<number> {
  const { partSize, partConcurrency, multipartThreshold, checksum } = target.cfg.tuning;
  const needHead = !known || (checksum === "crc32" && known.crc32 === undefined && known.size > multipartThreshold);
  const info = needHead ? await headObject(target, key, signal) : known;
  const read: ObjectRead = { single: false, target, key, info, sse: await target.encryption.forRead(key) };
  if (info.size <= SMALL_OBJECT) return smallToFile(read, dest, signal, inPlace, within);
  const tmp = tempPathFor(dest);
  const fh = await openTemp(tmp, within);
  let closed = false;
  try {
    if (info.size <= multipartThreshold) {
      if (info.size > 0) {
        const r = await rangeToFile(read, 0, info.size, fh, signal);
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
            const r = await rangeToFile(read, start, len, fh, s);
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
    await fh.close();
    closed = true;
    await rename(tmp, dest);
    return info.size;
  } catch (e) {
    if (!closed) await fh.close().catch(() => undefined);
    await rm(tmp, { force: true });
    if (isAbort(e, signal) && !(e instanceof PluginError)) throw storageError("GetObject", where(target, key), e, signal);
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

/** A range's bytes in one buffer from the budget (for ordered streaming); the caller releases it. */
async function getRangeBuffer(read: ObjectRead, start: number, length: number, signal: AbortSignal): Promise<{ buf: Buffer; result: RangeResult }> {
  const budget = transferBuffers();
  const buf = await budget.acquire(length, signal);
  try {
    return { buf, result: await getRange(read, start, length, signal, intoBuffer(buf)) };
  } catch (e) {
    budget.release(buf);
    throw e;
  }
}

/**
 * The object's bytes in order, fetched as ranges with at most `partConcurrency`
 * of them in memory. Uses the single-attempt client: OpenStream must not retry.
 * The consumer pulling slowly is what bounds memory: no range beyond the
 * read-ahead window is requested until the consumer has taken earlier ones.
 * The CRC32 is checked before the last range is handed out, so a corrupted
 * object ends in an error instead of a clean end of stream.
 */
export async function* readObject(target: S3Target, key: string, signal: AbortSignal): AsyncGenerator<Buffer> {
  const info = await headObject(target, key, signal, true);
  if (info.size === 0) return;
  const read: ObjectRead = { single: true, target, key, info, sse: await target.encryption.forRead(key) };
  // Read-ahead stays small: the window is what a slow client makes us hold, and
  // gRPC's own send buffers come on top of it.
  const partConcurrency = Math.min(target.cfg.tuning.partConcurrency, STREAM_WINDOW);
  const partSize = Math.min(target.cfg.tuning.partSize, STREAM_RANGE);
  const window: Promise<{ buf: Buffer; result: RangeResult }>[] = [];
  const inner = new AbortController();
  const onAbort = () => inner.abort(signal.reason);
  signal.addEventListener("abort", onAbort, { once: true });
  let next = 0;
  let crc = 0;
  let received = 0;
  let lent: Buffer | undefined; // the range the consumer holds; returned when it asks for the next
  const budget = transferBuffers();
  const schedule = () => {
    while (window.length < partConcurrency && next < info.size) {
      const start = next;
      const len = Math.min(partSize, info.size - start);
      next += len;
      const p = getRangeBuffer(read, start, len, inner.signal);
      p.catch(() => undefined); // observed when awaited below; avoid unhandled rejections meanwhile
      window.push(p);
    }
  };
  try {
    schedule();
    while (window.length > 0) {
      if (lent) budget.release(lent);
      lent = undefined;
      const { buf, result } = await window.shift()!;
      lent = buf;
      crc = received === 0 ? result.crc : crc32Combine(crc, result.crc, buf.length);
      received += buf.length;
      if (received === info.size && target.cfg.tuning.checksum === "crc32") checkCrc(target, key, info.crc32 ?? result.objectCrc, crc);
      schedule();
      yield buf;
    }
  } finally {
    inner.abort();
    signal.removeEventListener("abort", onAbort);
    if (lent) budget.release(lent);
    // Ranges still in flight give their buffers back as they settle.
    for (const p of window) p.then(({ buf }) => budget.release(buf), () => undefined);
  }
}
