// Uploads: from a local file (parts read at their own offsets, several in
// flight) and from a stream of chunks (cut into parts as they arrive, with the
// source not read while the part queue is full). Memory is bounded by
// (parts in flight + 1) × part size, whatever the object's size.
import { closeSync, constants, fstatSync, openSync, read, readSync } from "node:fs";
import { PluginError } from "../errors.js";
import type { S3Target } from "../s3/client.js";
import { transferBuffers } from "./buffer-budget.js";
import { MAX_PARTS, MIN_PART_SIZE, MultipartUpload, partSizeFor, putSmallObject } from "./multipart.js";
import { outsideRoot } from "./opened-inside.js";
import { TaskGroup } from "./task-group.js";

const MiB = 1024 * 1024;

export interface UploadResult {
  bytes: number;
  parts: number;
}

async function withMultipart(
  target: S3Target,
  key: string,
  signal: AbortSignal,
  run: (mpu: MultipartUpload, group: TaskGroup) => Promise<number>,
): Promise<number> {
  const sse = await target.encryption.forWrite(key);
  const mpu = await MultipartUpload.start(target, key, sse, signal);
  const group = new TaskGroup(target.cfg.tuning.partConcurrency, signal);
  try {
    const parts = await run(mpu, group);
    await group.wait();
    await mpu.complete(signal);
    return parts;
  } catch (e) {
    await group.settle();
    const abortErr = await mpu.abort();
    if (abortErr) {
      // The upload failed and so did its cleanup: say both, the first cause first.
      const first = e instanceof Error ? e.message : String(e);
      throw new PluginError("storage", `${first}; additionally ${abortErr.message} (upload id ${mpu.uploadId} may be left behind)`, { cause: e });
    }
    throw e;
  }
}

/** Files up to this size are read with one synchronous call (see SMALL_OBJECT in download-to-file.ts for why). */
const SMALL_FILE = 256 * 1024;

async function uploadSmallFile(target: S3Target, key: string, src: LocalFile, signal: AbortSignal): Promise<UploadResult> {
  const { fd, size, path } = src;
  const budget = transferBuffers();
  const buf = await budget.acquire(size, signal);
  try {
    let done = 0;
    while (done < size) {
      const n = readSync(fd, buf, done, size - done, done);
      if (n === 0) throw new PluginError("local", `${path} shrank while it was being uploaded (expected ${size} bytes, got ${done})`);
      done += n;
    }
    await putSmallObject(target, key, buf, await target.encryption.forWrite(key), signal);
    return { bytes: size, parts: 1 };
  } finally {
    budget.release(buf);
  }
}

/** A file opened for upload: its descriptor, its size when opened, and the path for messages. */
interface LocalFile {
  fd: number;
  size: number;
  path: string;
}

/**
 * Open `path` for reading. With `within` (a directory being saved), the file
 * is opened without following a final symbolic link and what was opened is
 * checked: a regular file whose real location is inside `within`. A file
 * swapped for a link (or a directory on its way swapped for one) after the
 * walk is refused instead of uploading whatever it points at.
 */
function openLocal(path: string, within: string | undefined): LocalFile {
  let fd: number;
  try {
    fd = openSync(path, within === undefined ? constants.O_RDONLY : constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ELOOP") throw new PluginError("local", `refusing to save ${path}: it was replaced by a symbolic link after the directory was read`);
    throw e;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new PluginError("local", `cannot save ${path}: not a regular file any more`);
    const real = within === undefined ? undefined : outsideRoot(fd, within);
    if (real !== undefined) {
      throw new PluginError("local", `refusing to save ${path}: it now resolves to ${real}, outside the directory being saved (${within}); was it replaced by a link?`);
    }
    return { fd, size: st.size, path };
  } catch (e) {
    closeSync(fd);
    throw e;
  }
}

/**
 * Part size and single-request threshold as the budget allows: no one buffer
 * above a quarter of it (a configured 5 GiB part would otherwise be one
 * allocation beyond any memory limit). The 10,000-part rule may still grow parts.
 */
function bufferedSizes(target: S3Target): { partSize: number; multipartThreshold: number } {
  const cap = Math.max(MIN_PART_SIZE, Math.floor(transferBuffers().limitBytes / 4 / MiB) * MiB);
  const { partSize, multipartThreshold } = target.cfg.tuning;
  return { partSize: Math.min(partSize, cap), multipartThreshold: Math.min(multipartThreshold, cap) };
}

/**
 * Upload a local file. `within`: the real path of the directory being saved,
 * for files found by its walk (see openLocal). The size is the file's when it
 * is opened: the file is read as it is now.
 */
export async function uploadFile(target: S3Target, key: string, path: string, signal: AbortSignal, within?: string): Promise<UploadResult> {
  let src: LocalFile;
  try {
    src = openLocal(path, within);
  } catch (e) {
    if (e instanceof PluginError) throw e;
    throw new PluginError("local", `cannot save ${path}: ${(e as Error).message}`);
  }
  try {
    return await uploadOpened(target, key, src, signal);
  } finally {
    closeSync(src.fd);
  }
}

async function uploadOpened(target: S3Target, key: string, src: LocalFile, signal: AbortSignal): Promise<UploadResult> {
  const tuning = bufferedSizes(target);
  const { size, path, fd } = src;
  if (size <= SMALL_FILE && size <= tuning.multipartThreshold) return uploadSmallFile(target, key, src, signal);
  const budget = transferBuffers();
  if (size <= tuning.multipartThreshold) {
    const buf = await budget.acquire(size, signal);
    try {
      await readFully(fd, buf, 0, path);
      await putSmallObject(target, key, buf, await target.encryption.forWrite(key), signal);
    } finally {
      budget.release(buf);
    }
    return { bytes: size, parts: 1 };
  }
  const partSize = partSizeFor(size, tuning.partSize);
  const count = Math.ceil(size / partSize);
  const parts = await withMultipart(target, key, signal, async (mpu, group) => {
    for (let i = 0; i < count; i++) {
      const offset = i * partSize;
      const len = Math.min(partSize, size - offset);
      await group.add(async (s) => {
        const buf = await budget.acquire(partSize, s);
        try {
          const body = buf.subarray(0, len);
          await readFully(fd, body, offset, path);
          await mpu.uploadPart(i + 1, body, s);
        } finally {
          budget.release(buf);
        }
      });
    }
    return count;
  });
  return { bytes: size, parts };
}

/** Positional reads on the thread pool (large parts must not block the event loop). */
async function readFully(fd: number, into: Buffer, position: number, path: string): Promise<void> {
  let done = 0;
  while (done < into.length) {
    const bytesRead = await new Promise<number>((resolve, reject) =>
      read(fd, into, done, into.length - done, position + done, (err, n) => (err ? reject(err) : resolve(n))),
    );
    if (bytesRead === 0) {
      throw new PluginError("local", `${path} shrank while it was being uploaded (expected ${into.length - done} more bytes at offset ${position + done})`);
    }
    done += bytesRead;
  }
}

/**
 * Parts of a stream of unknown length: the configured size for the first 2,500
 * parts, then doubled every 2,500 parts, so 10,000 parts reach 15 × 2,500 × base
 * (≈ 300 GiB at 8 MiB) while small streams keep small buffers.
 */
export function streamPartSize(partNumber: number, base: number): number {
  return base * 2 ** Math.floor((partNumber - 1) / 2500);
}

export async function uploadStream(target: S3Target, key: string, chunks: AsyncIterable<Buffer>, signal: AbortSignal): Promise<UploadResult> {
  const base = Math.max(bufferedSizes(target).partSize, MIN_PART_SIZE);
  const budget = transferBuffers();
  const iterator = chunks[Symbol.asyncIterator]();
  // Fill the first part; if the stream ends inside it, one PUT is enough.
  let partNumber = 1;
  let buf: Buffer | undefined = await budget.acquire(streamPartSize(partNumber, base), signal);
  let filled = 0;
  let pending: Buffer | undefined; // remainder of a chunk that overflowed the current part
  let total = 0;

  const fill = async (into: Buffer): Promise<boolean> => {
    // Returns true when `into` is full, false when the stream ended.
    for (;;) {
      if (!pending) {
        const next = await iterator.next();
        if (next.done) return false;
        pending = next.value;
        total += pending.length;
      }
      const n = Math.min(pending.length, into.length - filled);
      pending.copy(into, filled, 0, n);
      filled += n;
      pending = n < pending.length ? pending.subarray(n) : undefined;
      if (filled === into.length) return true;
    }
  };

  try {
    let full = await fill(buf);
    if (!full) {
      await putSmallObject(target, key, buf.subarray(0, filled), await target.encryption.forWrite(key), signal);
      return { bytes: total, parts: 1 };
    }
    const parts = await withMultipart(target, key, signal, async (mpu, group) => {
      for (;;) {
        // A full part with more data behind it, or the last (possibly short) part.
        const part = buf!;
        const body = part.subarray(0, filled);
        const n = partNumber;
        buf = undefined; // the upload task owns it now and gives it back
        await group.add(async (s) => {
          try {
            await mpu.uploadPart(n, body, s);
          } finally {
            budget.release(part);
          }
        });
        if (!full) return n;
        partNumber++;
        if (partNumber > MAX_PARTS) {
          throw new PluginError("local", `stream for s3://${target.bucket}/${key} exceeds ${MAX_PARTS} parts; raise tuning.partSizeMiB`);
        }
        buf = await budget.acquire(streamPartSize(partNumber, base), signal);
        filled = 0;
        full = await fill(buf);
        if (!full && filled === 0) return n; // stream ended exactly on a part boundary
      }
    });
    return { bytes: total, parts };
  } finally {
    if (buf) budget.release(buf);
  }
}
