// One multipart upload, from CreateMultipartUpload to Complete or Abort, and
// the one runner that drives it: both upload paths (parts read from a file at
// their offsets, parts cut from a gRPC stream) are part sources fed to
// runMultipart, so there is one place that completes and one place that
// cleans up.
import { PluginError, describeError } from "../errors.js";
import { type CompletedPart, StoreError, type StoreTarget } from "../store/port.js";
import { backoff } from "../util/backoff.js";
import { PieceCrcs, crc32, crc32ToBase64 } from "./crc32.js";
import type { JobContext } from "./job.js";
import { TaskGroup } from "./task-group.js";

const MiB = 1024 * 1024;
export const MIN_PART_SIZE = 5 * MiB;
export const MAX_PARTS = 10_000;
/** How long a cancelled Create or Complete may still take to answer (see lenient). */
const CREATE_GRACE_MS = 5_000;

/**
 * A signal that follows `signal` CREATE_GRACE_MS late. Create and Complete are
 * not cut the moment the caller cancels: the request may already be at the
 * store, which would then carry it out with nobody left to see the answer (an
 * upload no one can name, or an object the caller was told was not written).
 */
function lenient(signal: AbortSignal): { signal: AbortSignal; dispose: () => void } {
  const ctl = new AbortController();
  let grace: NodeJS.Timeout | undefined;
  const onCancel = () => (grace = setTimeout(() => ctl.abort(signal.reason), CREATE_GRACE_MS).unref());
  if (signal.aborted) onCancel();
  else signal.addEventListener("abort", onCancel, { once: true });
  return {
    signal: ctl.signal,
    dispose: () => {
      signal.removeEventListener("abort", onCancel);
      clearTimeout(grace);
    },
  };
}

/** The configured part size, grown (in whole MiB) so `size` fits in 10,000 parts. */
export function partSizeFor(size: number, configured: number): number {
  const needed = Math.ceil(size / MAX_PARTS);
  const part = Math.max(configured, MIN_PART_SIZE, needed);
  return Math.ceil(part / MiB) * MiB;
}

/** One PUT for objects that fit in a single request. */
export async function putSmallObject(job: JobContext, key: string, body: Buffer, signal: AbortSignal): Promise<void> {
  const { target } = job;
  const checksum = job.tuning.checksum === "crc32" ? crc32ToBase64(crc32(body)) : undefined;
  const out = await target.store.put(key, body, checksum, { signal });
  job.progress.bytes += body.length;
  if (out.unencrypted) await failUnencrypted(target, key, "PutObject", out.unencrypted);
}

/** Plaintext where encryption was asked for must not stay: delete what was written, then fail. */
async function failUnencrypted(target: StoreTarget, key: string, op: string, problem: string): Promise<never> {
  let cleanup = "the object was deleted";
  try {
    await target.store.deleteObject(key, { signal: AbortSignal.timeout(30_000) });
  } catch (e) {
    cleanup = `deleting it failed too (${describeError(e)}): delete it by hand`;
  }
  throw new PluginError(
    "storage",
    `${op} ${target.store.location(key)}: ${problem}; ${cleanup}. The store ignores the encryption asked for: use one that supports it, or drop encryptionOptions`,
  );
}

/**
 * With checksums on, each part carries its CRC32 (S3 verifies it on arrival)
 * and Complete carries the full-object CRC32 folded from the parts' CRCs, so
 * S3 also verifies the assembled object; downloads check against the same value.
 */
export class MultipartUpload {
  private readonly parts: CompletedPart[] = [];
  private readonly crcs = new PieceCrcs();
  private finished = false;
  /** Set once any answer (Create, a part, Complete) echoes the encryption asked for. */
  encryptionConfirmed = false;

  private readonly target: StoreTarget;

  private constructor(
    private readonly job: JobContext,
    readonly key: string,
    readonly uploadId: string,
    private readonly checksums: boolean,
  ) {
    this.target = job.target;
  }

  static async start(job: JobContext, key: string, signal: AbortSignal): Promise<MultipartUpload> {
    const { target } = job;
    const checksums = job.tuning.checksum === "crc32";
    // Not the SDK's blind retry: a Create whose answer was lost (timeout, reset) may
    // still be carried out by the store, creating an upload whose id we never learn;
    // every repeat would leave one more behind. Retried only when the store answered
    // that it did not act (throttling, 5xx) or the connection was refused.
    for (let attempt = 1; ; attempt++) {
      if (signal.aborted) throw target.store.cancelled("CreateMultipartUpload", key, signal); // never sent: nothing to clean up
      const attemptStarted = Date.now();
      // Cancelled meanwhile: the Create gets a few seconds to answer, so the upload it
      // created can be aborted by its id right away.
      const create = lenient(signal);
      let out;
      try {
        out = await target.store.createUpload(key, checksums, { signal: create.signal, single: true });
      } catch (e) {
        if (!(e instanceof StoreError)) throw e; // not a request that went out (e.g. credentials)
        const { status } = e;
        const refused = e.code === "ECONNREFUSED";
        // No answer at all (timeout, connection lost, cancelled mid-request): the store may
        // still create the upload later, with an id we never learn. Watch for it.
        if (status === undefined && !refused) job.lateUploads.watch(target, key, attemptStarted);
        if (signal.aborted) throw target.store.cancelled("CreateMultipartUpload", key, signal);
        const notActedOn = (status !== undefined && (status >= 500 || status === 429)) || refused;
        if (!notActedOn || attempt >= job.tuning.maxAttempts) throw e;
        await backoff(attempt);
        continue;
      } finally {
        create.dispose();
      }
      // Answered: from here on, nothing calls for the late-upload watch.
      if (!out.uploadId)
        throw new PluginError(
          "storage",
          `CreateMultipartUpload ${target.store.location(key)}: no UploadId in the answer`,
        );
      job.lateUploads.started(out.uploadId);
      const upload = new MultipartUpload(job, key, out.uploadId, checksums);
      if (signal.aborted) {
        await upload.abort();
        throw target.store.cancelled("CreateMultipartUpload", key, signal);
      }
      // Some stores (MinIO) confirm the encryption only when the upload completes.
      upload.encryptionConfirmed = !out.unencrypted;
      return upload;
    }
  }

  async uploadPart(partNumber: number, body: Buffer, signal: AbortSignal): Promise<void> {
    let checksum: string | undefined;
    if (this.checksums) {
      const crc = crc32(body);
      this.crcs.set(partNumber - 1, crc, body.length);
      checksum = crc32ToBase64(crc);
    }
    const out = await this.target.store.uploadPart(this.key, this.uploadId, partNumber, body, checksum, { signal });
    this.parts.push({ partNumber, etag: out.etag, crc32: checksum });
    if (!out.unencrypted) this.encryptionConfirmed = true;
    this.job.progress.bytes += body.length;
  }

  /** Completes the upload; once sent, a cancellation lets it finish (see lenient): the object then exists. */
  async complete(signal: AbortSignal): Promise<void> {
    if (signal.aborted) throw this.target.store.cancelled("CompleteMultipartUpload", this.key, signal);
    const parts = [...this.parts].sort((a, b) => a.partNumber - b.partNumber);
    const sending = lenient(signal);
    let out;
    try {
      out = await this.target.store.completeUpload(
        this.key,
        this.uploadId,
        parts,
        this.checksums ? crc32ToBase64(this.crcs.combine(parts.length)) : undefined,
        { signal: sending.signal },
      );
      this.finished = true;
      this.job.lateUploads.ended(this.uploadId);
    } catch (e) {
      // The caller left meanwhile: what it sees is its cancellation (the store's answer is moot).
      throw signal.aborted ? this.target.store.cancelled("CompleteMultipartUpload", this.key, signal) : e;
    } finally {
      sending.dispose();
    }
    const problem = this.encryptionConfirmed ? undefined : out.unencrypted;
    if (problem) await failUnencrypted(this.target, this.key, "CompleteMultipartUpload", problem);
  }

  /**
   * Abort unless completed. Runs on its own short deadline, not the caller's
   * signal, because it usually runs *because* the caller was cancelled.
   * Returns the abort failure (if any) for the caller to log; never throws.
   */
  async abort(): Promise<Error | undefined> {
    if (this.finished) return undefined;
    this.finished = true;
    this.job.lateUploads.ended(this.uploadId);
    // Retried until that deadline, not just the client's few quick attempts: the
    // store being down (restarting: connection refused) or unresponsive is often
    // why the upload failed, and giving up at once would leave the upload behind.
    const deadline = AbortSignal.timeout(30_000);
    let last: Error | undefined; // the last failure before the deadline: what to report, not "cancelled"
    for (let attempt = 1; ; attempt++) {
      try {
        await this.target.store.abortUpload(this.key, this.uploadId, { signal: deadline });
        return undefined;
      } catch (e) {
        // An earlier attempt got through but its answer was lost: nothing is left.
        if (attempt > 1 && e instanceof StoreError && e.code === "NoSuchUpload") return undefined;
        const err = e instanceof Error ? e : new Error(String(e));
        if (deadline.aborted) return last ?? err;
        last = err;
        // Not an S3 answer (credentials could not be refreshed, say): as transient as no answer.
        if (e instanceof StoreError && !e.retryable) return err;
        await backoff(attempt);
      }
    }
  }
}

/** One part of an upload: its bytes, produced inside the part's own task (so reading overlaps sending), then given back. */
export interface Part {
  body(signal: AbortSignal): Promise<Buffer>;
  release(): void;
}

/**
 * Run a multipart upload of `parts` (numbered from 1 in the order they come):
 * create, up to partConcurrency parts in flight, complete; on any failure the
 * parts in flight settle and the upload is aborted, once. The source is pulled
 * only when a part may start, which is the backpressure on whatever feeds it.
 */
export async function runMultipart(
  job: JobContext,
  key: string,
  parts: AsyncIterable<Part> | Iterable<Part>,
  signal: AbortSignal,
): Promise<number> {
  const mpu = await MultipartUpload.start(job, key, signal);
  const group = new TaskGroup(job.tuning.partConcurrency, signal);
  let count = 0;
  try {
    for await (const part of parts) {
      const n = ++count;
      let started = false;
      try {
        if (n > MAX_PARTS)
          throw new PluginError(
            "local",
            `s3://${job.target.bucket}/${key} needs more than ${MAX_PARTS} parts; raise tuning.partSizeMiB`,
          );
        await group.add(async (s) => {
          started = true;
          try {
            await mpu.uploadPart(n, await part.body(s), s);
          } finally {
            part.release();
          }
        });
      } finally {
        // A part the group refused (it failed meanwhile) never ran: give its buffer back here.
        if (!started) part.release();
      }
    }
    await group.wait();
    await mpu.complete(signal);
    return count;
  } catch (e) {
    await group.settle();
    const abortErr = await mpu.abort();
    if (!abortErr) throw e;
    // The upload failed and so did its cleanup: say both, the first cause first.
    const first = e instanceof Error ? e.message : String(e);
    throw new PluginError(
      "storage",
      `${first}; additionally ${abortErr.message} (upload id ${mpu.uploadId} may be left behind)`,
      { cause: e },
    );
  }
}
