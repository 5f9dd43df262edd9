// Downloads: to a file (ranged GETs in parallel, each written at its offset
// into a temporary file beside the target, renamed into place only once every
// byte is there) and as an ordered stream (bounded read-ahead of ranges, for
// OpenStream). Every range is pinned to the ETag seen by HEAD, so an object
// replaced mid-download fails the transfer instead of mixing two versions.
import { randomBytes } from "node:crypto";
import { type FileHandle, open, rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import type { Readable } from "node:stream";
import { GetObjectCommand, HeadObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { PluginError } from "../errors.js";
import type { S3Target } from "../s3/client.js";
import { type S3Where, isAbort, storageError } from "../s3/errors.js";
import type { ReadSse } from "../s3/encryption.js";
import { TaskGroup } from "./task-group.js";

export interface ObjectInfo {
  size: number;
  etag: string | undefined;
}

export async function headObject(target: S3Target, key: string, signal: AbortSignal, client: S3Client = target.client): Promise<ObjectInfo> {
  const sse = await target.encryption.forRead(key);
  try {
    const out = await client.send(new HeadObjectCommand({ Bucket: target.bucket, Key: key, ...sse }), { abortSignal: signal });
    return { size: out.ContentLength ?? 0, etag: out.ETag };
  } catch (e) {
    throw storageError("HeadObject", where(target, key), e, signal);
  }
}

function where(target: S3Target, key: string): S3Where {
  return { bucket: target.bucket, key, endpointLabel: target.endpointLabel };
}

/** Receives a range's bytes in order; may return a promise to pause the body. */
type ChunkSink = (chunk: Buffer) => void | Promise<void>;

/** GET one range (or the whole object), handing its bytes to `sink` and checking their count. */
async function getRange(
  client: S3Client,
  target: S3Target,
  key: string,
  info: ObjectInfo,
  sse: ReadSse,
  start: number,
  length: number,
  signal: AbortSignal,
  sink: ChunkSink,
): Promise<void> {
  const whole = start === 0 && length === info.size;
  const range = whole ? undefined : `bytes=${start}-${start + length - 1}`;
  const label = whole ? "GetObject" : `GetObject ${range}`;
  let body: Readable | undefined;
  try {
    const out = await client.send(
      new GetObjectCommand({ Bucket: target.bucket, Key: key, Range: range, IfMatch: info.etag, ...sse }),
      { abortSignal: signal },
    );
    body = out.Body as Readable | undefined;
    let received = 0;
    if (body) {
      for await (const chunk of body as AsyncIterable<Buffer>) {
        received += chunk.length;
        if (received > length) {
          throw new PluginError("storage", `${label} ${describeWhere(target, key)}: server sent more than the ${length} bytes asked for`);
        }
        const pending = sink(chunk);
        if (pending) await pending;
      }
    }
    if (received !== length) {
      throw new PluginError("storage", `${label} ${describeWhere(target, key)}: truncated, got ${received} of ${length} bytes`);
    }
  } catch (e) {
    body?.destroy();
    throw storageError(label, where(target, key), e, signal);
  }
}

/** A range's bytes in one buffer (for ordered streaming). */
async function getRangeBuffer(
  client: S3Client,
  target: S3Target,
  key: string,
  info: ObjectInfo,
  sse: ReadSse,
  start: number,
  length: number,
  signal: AbortSignal,
): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(length);
  let filled = 0;
  await getRange(client, target, key, info, sse, start, length, signal, (chunk) => {
    chunk.copy(buf, filled);
    filled += chunk.length;
  });
  return buf;
}

function describeWhere(target: S3Target, key: string): string {
  return `s3://${target.bucket}/${key} (endpoint ${target.endpointLabel})`;
}

/** Write batches: big enough to keep syscalls few, small enough that memory is concurrency × 1 MiB. */
const WRITE_BATCH = 1024 * 1024;
const writeBuffers: Buffer[] = [];

/**
 * GET a range straight into the file at its offset, through one reusable
 * batch buffer: no range is ever held whole in memory. A range whose body
 * breaks mid-way is fetched again (the SDK only retries before the body
 * starts); rewriting the same offsets is harmless.
 */
async function rangeToFile(
  target: S3Target,
  key: string,
  info: ObjectInfo,
  sse: ReadSse,
  start: number,
  length: number,
  fh: FileHandle,
  signal: AbortSignal,
): Promise<void> {
  const batch = writeBuffers.pop() ?? Buffer.allocUnsafeSlow(WRITE_BATCH);
  try {
    const attempts = target.cfg.tuning.maxAttempts;
    for (let attempt = 1; ; attempt++) {
      let pos = start;
      let filled = 0;
      const flush = async () => {
        await writeFully(fh, batch.subarray(0, filled), pos);
        pos += filled;
        filled = 0;
      };
      try {
        await getRange(target.client, target, key, info, sse, start, length, signal, async (chunk) => {
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
        return;
      } catch (e) {
        const retriable = e instanceof PluginError && e.kind === "storage" && !/PreconditionFailed|AccessDenied|InvalidRange|InvalidRequest/.test(e.message);
        if (!retriable || attempt >= attempts || signal.aborted) throw e;
        await new Promise((r) => setTimeout(r, Math.min(2000, 100 * 2 ** attempt)));
      }
    }
  } finally {
    if (writeBuffers.length < 64) writeBuffers.push(batch);
  }
}

/** Temporary sibling of `dest`, on the same file system so the final rename is atomic. */
export function tempPathFor(dest: string): string {
  return join(dirname(dest), `.${basename(dest)}.${randomBytes(6).toString("hex")}.part`);
}

/** Download `key` to `dest`. `info` may come from a listing to save a HEAD. */
export async function downloadToFile(target: S3Target, key: string, dest: string, signal: AbortSignal, known?: ObjectInfo): Promise<number> {
  const info = known ?? (await headObject(target, key, signal));
  const sse = await target.encryption.forRead(key);
  const { partSize, partConcurrency, multipartThreshold } = target.cfg.tuning;
  const tmp = tempPathFor(dest);
  const fh = await open(tmp, "wx", 0o644);
  let closed = false;
  try {
    if (info.size <= multipartThreshold) {
      if (info.size > 0) await rangeToFile(target, key, info, sse, 0, info.size, fh, signal);
    } else {
      const group = new TaskGroup(partConcurrency, signal);
      try {
        for (let offset = 0; offset < info.size; offset += partSize) {
          const start = offset;
          const len = Math.min(partSize, info.size - start);
          await group.add((s) => rangeToFile(target, key, info, sse, start, len, fh, s));
        }
        await group.wait();
      } catch (e) {
        await group.settle();
        throw e;
      }
    }
    const { size } = await fh.stat();
    if (size !== info.size) {
      throw new PluginError("storage", `download of ${describeWhere(target, key)} to ${dest}: wrote ${size} bytes, object has ${info.size}`);
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

/**
 * The object's bytes in order, fetched as ranges with at most `partConcurrency`
 * of them in memory. Uses the single-attempt client: OpenStream must not retry.
 * The consumer pulling slowly is what bounds memory: no range beyond the
 * read-ahead window is requested until the consumer has taken earlier ones.
 */
export async function* readObject(target: S3Target, key: string, signal: AbortSignal): AsyncGenerator<Buffer> {
  const client = target.singleAttemptClient;
  const info = await headObject(target, key, signal, client);
  if (info.size === 0) return;
  const sse = await target.encryption.forRead(key);
  const { partSize, partConcurrency } = target.cfg.tuning;
  const window: Promise<Buffer>[] = [];
  const inner = new AbortController();
  const onAbort = () => inner.abort(signal.reason);
  signal.addEventListener("abort", onAbort, { once: true });
  let next = 0;
  const schedule = () => {
    while (window.length < partConcurrency && next < info.size) {
      const start = next;
      const len = Math.min(partSize, info.size - start);
      next += len;
      const p = getRangeBuffer(client, target, key, info, sse, start, len, inner.signal);
      p.catch(() => undefined); // observed when awaited below; avoid unhandled rejections meanwhile
      window.push(p);
    }
  };
  try {
    schedule();
    while (window.length > 0) {
      const buf = await window.shift()!;
      schedule();
      yield buf;
    }
  } finally {
    inner.abort();
    signal.removeEventListener("abort", onAbort);
  }
}
