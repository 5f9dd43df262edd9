// Uploads: from a local file (parts read at their own offsets, several in
// flight) and from a stream of chunks (cut into parts as they arrive, with the
// source not read while the part queue is full). Each is a part source for the
// one multipart runner (multipart.ts), or a single PUT when it is small.
// Memory is bounded by (parts in flight + 1) × part size, whatever the size.
import { closeSync, constants, fstatSync, openSync, read, readSync } from "node:fs";
import { localReadProblem } from "../util/local-access.js";
import { PluginError } from "../errors.js";
import type { Buffers } from "./buffer-budget.js";
import type { JobContext } from "./job.js";
import { MAX_PARTS, MIN_PART_SIZE, type Part, partSizeFor, putSmallObject, runMultipart } from "./multipart.js";
import { outsideRoot } from "./opened-inside.js";

const MiB = 1024 * 1024;

export interface UploadResult {
  bytes: number;
  parts: number;
}

/** Files up to this size are read with one synchronous call (see SMALL_OBJECT in download-to-file.ts for why). */
const SMALL_FILE = 256 * 1024;

/** A file that fits one request: read whole into one buffer (synchronously when small), then one PUT. */
async function uploadWhole(job: JobContext, key: string, src: LocalFile, signal: AbortSignal): Promise<UploadResult> {
  const { fd, size, path } = src;
  const buf = await job.buffers.acquire(size, signal);
  try {
    if (size > SMALL_FILE) await readFully(fd, buf, 0, path);
    else {
      for (let done = 0; done < size;) {
        const n = readSync(fd, buf, done, size - done, done);
        if (n === 0)
          throw new PluginError(
            "local",
            `${path} shrank while it was being uploaded (expected ${size} bytes, got ${done})`,
          );
        done += n;
      }
    }
    await putSmallObject(job, key, buf, signal);
    return { bytes: size, parts: 1 };
  } finally {
    job.buffers.release(buf);
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
    if ((e as NodeJS.ErrnoException).code === "ELOOP")
      throw new PluginError(
        "local",
        `refusing to save ${path}: it was replaced by a symbolic link after the directory was read`,
      );
    throw e;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new PluginError("local", `cannot save ${path}: not a regular file any more`);
    const real = within === undefined ? undefined : outsideRoot(fd, within);
    if (real !== undefined) {
      throw new PluginError(
        "local",
        `refusing to save ${path}: it now resolves to ${real}, outside the directory being saved (${within}); was it replaced by a link?`,
      );
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
function bufferedSizes(job: JobContext): { partSize: number; multipartThreshold: number } {
  const cap = Math.max(MIN_PART_SIZE, Math.floor(job.buffers.limitBytes / 4 / MiB) * MiB);
  const { partSize, multipartThreshold } = job.tuning;
  return { partSize: Math.min(partSize, cap), multipartThreshold: Math.min(multipartThreshold, cap) };
}

/**
 * Upload a local file. `within`: the real path of the directory being saved,
 * for files found by its walk (see openLocal). The size is the file's when it
 * is opened: the file is read as it is now.
 */
export async function uploadFile(
  job: JobContext,
  key: string,
  path: string,
  signal: AbortSignal,
  within?: string,
): Promise<UploadResult> {
  let src: LocalFile;
  try {
    src = openLocal(path, within);
  } catch (e) {
    if (e instanceof PluginError) throw e;
    throw new PluginError("local", `cannot save ${path}: ${localReadProblem(path, e)}`);
  }
  try {
    return await uploadOpened(job, key, src, signal);
  } finally {
    closeSync(src.fd);
  }
}

async function uploadOpened(job: JobContext, key: string, src: LocalFile, signal: AbortSignal): Promise<UploadResult> {
  const tuning = bufferedSizes(job);
  const { size } = src;
  if (size <= tuning.multipartThreshold) return uploadWhole(job, key, src, signal);
  const parts = await runMultipart(job, key, fileParts(job.buffers, src, partSizeFor(size, tuning.partSize)), signal);
  return { bytes: size, parts };
}

/** A file's parts: each read at its offset inside its own task, into a buffer taken there. */
function* fileParts(buffers: Buffers, src: LocalFile, partSize: number): Generator<Part> {
  for (let offset = 0; offset < src.size; offset += partSize) {
    const at = offset;
    const len = Math.min(partSize, src.size - at);
    let buf: Buffer | undefined;
    yield {
      body: async (signal) => {
        buf = await buffers.acquire(partSize, signal);
        const body = buf.subarray(0, len);
        await readFully(src.fd, body, at, src.path);
        return body;
      },
      release: () => {
        if (buf) buffers.release(buf);
        buf = undefined;
      },
    };
  }
}

/** Positional reads on the thread pool (large parts must not block the event loop). */
async function readFully(fd: number, into: Buffer, position: number, path: string): Promise<void> {
  let done = 0;
  while (done < into.length) {
    const bytesRead = await new Promise<number>((resolve, reject) =>
      read(fd, into, done, into.length - done, position + done, (err, n) => (err ? reject(err) : resolve(n))),
    );
    if (bytesRead === 0) {
      throw new PluginError(
        "local",
        `${path} shrank while it was being uploaded (expected ${into.length - done} more bytes at offset ${position + done})`,
      );
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

/** Pours a stream's chunks into part buffers; a chunk that overflows one part carries over into the next. */
class ChunkReader {
  private readonly iterator: AsyncIterator<Buffer>;
  private pending: Buffer | undefined;
  /** Bytes in the buffer being filled. */
  filled = 0;
  /** Bytes read from the stream so far. */
  total = 0;

  constructor(chunks: AsyncIterable<Buffer>) {
    this.iterator = chunks[Symbol.asyncIterator]();
  }

  /**
   * Wait for the stream's next bytes without taking them: false when it ended.
   * A part buffer is taken from the budget only once there is data for it, so
   * a stream whose sender goes quiet holds none (an idle SaveStream in the
   * shared sidecar would otherwise sit on a part's worth until the idle limit).
   */
  async ready(): Promise<boolean> {
    while (!this.pending || this.pending.length === 0) {
      const next = await this.iterator.next();
      if (next.done) return false;
      this.pending = next.value;
      this.total += next.value.length;
    }
    return true;
  }

  /** Fill `into` from its start: true when it is full, false when the stream ended first. */
  async fill(into: Buffer): Promise<boolean> {
    this.filled = 0;
    while (await this.ready()) {
      const pending = this.pending!;
      const n = Math.min(pending.length, into.length - this.filled);
      pending.copy(into, this.filled, 0, n);
      this.filled += n;
      this.pending = n < pending.length ? pending.subarray(n) : undefined;
      if (this.filled === into.length) return true;
    }
    return false;
  }
}

/**
 * A stream's parts, starting with the first (already filled) one; each next
 * buffer is filled only once the runner asks for it. The first buffer stays
 * in `held` until this generator starts: one that never starts (the upload's
 * Create failed) runs no finally, so the caller gives it back.
 */
async function* streamParts(
  job: JobContext,
  key: string,
  reader: ChunkReader,
  held: { first?: Buffer | undefined },
  base: number,
  signal: AbortSignal,
): AsyncGenerator<Part> {
  const buffers = job.buffers;
  let buf: Buffer | undefined = held.first;
  held.first = undefined;
  try {
    if (!buf) return;
    for (let n = 1; ; n++) {
      const part = buf;
      const body = part.subarray(0, reader.filled);
      const full = reader.filled === part.length;
      buf = undefined; // the part owns it now and gives it back
      yield { body: async () => body, release: () => buffers.release(part) };
      if (!full) return;
      if (!(await reader.ready())) return; // the stream ended exactly on a part boundary
      if (n + 1 > MAX_PARTS) {
        throw new PluginError(
          "local",
          `stream for s3://${job.target.bucket}/${key} exceeds ${MAX_PARTS} parts; raise tuning.partSizeMiB`,
        );
      }
      buf = await buffers.acquire(streamPartSize(n + 1, base), signal);
      await reader.fill(buf);
    }
  } finally {
    if (buf) buffers.release(buf);
  }
}

export async function uploadStream(
  job: JobContext,
  key: string,
  chunks: AsyncIterable<Buffer>,
  signal: AbortSignal,
): Promise<UploadResult> {
  const base = Math.max(bufferedSizes(job).partSize, MIN_PART_SIZE);
  const reader = new ChunkReader(chunks);
  // No bytes at all: an empty object, with no buffer taken.
  if (!(await reader.ready())) {
    await putSmallObject(job, key, Buffer.alloc(0), signal);
    return { bytes: 0, parts: 1 };
  }
  // Fill the first part; if the stream ends inside it, one PUT is enough.
  const held: { first?: Buffer | undefined } = { first: await job.buffers.acquire(streamPartSize(1, base), signal) };
  try {
    if (!(await reader.fill(held.first!))) {
      await putSmallObject(job, key, held.first!.subarray(0, reader.filled), signal);
      return { bytes: reader.total, parts: 1 };
    }
    const parts = await runMultipart(job, key, streamParts(job, key, reader, held, base, signal), signal);
    return { bytes: reader.total, parts };
  } finally {
    if (held.first) job.buffers.release(held.first);
  }
}
