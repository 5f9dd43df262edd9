// An object as an ordered stream (OpenStream): bounded read-ahead of ranges,
// the consumer's pace is what bounds memory, the CRC32 checked before the last
// range is handed out.
import type { Buffers } from "./buffer-budget.js";
import { crc32Combine } from "./crc32.js";
import { FRAME_HEADROOM, markHeadroom } from "../util/headroom.js";
import type { JobContext } from "./job.js";
import { type ObjectRead, type RangeResult, checkCrc, getRange, headObject, intoBuffer } from "./range-reader.js";

/** OpenStream read-ahead: at most STREAM_WINDOW ranges of at most STREAM_RANGE bytes (and at least MIN_STREAM_RANGE). */
const STREAM_RANGE = 8 * 1024 * 1024;
const MIN_STREAM_RANGE = 1024 * 1024;
const STREAM_WINDOW = 4;

/**
 * A range's bytes in one buffer from the budget (for ordered streaming), with
 * FRAME_HEADROOM spare bytes in front (see util/headroom.ts); the caller
 * releases `full`.
 */
async function getRangeBuffer(
  read: ObjectRead,
  start: number,
  length: number,
  signal: AbortSignal,
): Promise<{ full: Buffer; buf: Buffer; result: RangeResult }> {
  const budget: Buffers = read.job.buffers;
  const full = await budget.acquire(length + FRAME_HEADROOM, signal);
  const buf = markHeadroom(full.subarray(FRAME_HEADROOM, FRAME_HEADROOM + length));
  try {
    return { full, buf, result: await getRange(read, start, length, signal, intoBuffer(buf)) };
  } catch (e) {
    budget.release(full);
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
export async function* readObject(job: JobContext, key: string, signal: AbortSignal): AsyncGenerator<Buffer> {
  const { target, tuning } = job;
  const info = await headObject(job, key, signal, true);
  if (info.size === 0) return;
  const read: ObjectRead = { single: true, job, key, info };
  // Read-ahead stays small: the window is what a slow client makes us hold, and
  // gRPC's own send buffers come on top of it.
  const partConcurrency = Math.min(tuning.partConcurrency, STREAM_WINDOW);
  const partSize = Math.min(tuning.partSize, STREAM_RANGE);
  const window: Promise<{ full: Buffer; buf: Buffer; result: RangeResult }>[] = [];
  const inner = new AbortController();
  const onAbort = () => inner.abort(signal.reason);
  signal.addEventListener("abort", onAbort, { once: true });
  let next = 0;
  let crc = 0;
  let received = 0;
  let lent: Buffer | undefined; // the range the consumer holds; returned when it asks for the next
  let done = false;
  const budget = job.buffers;
  const schedule = () => {
    while (window.length < partConcurrency && next < info.size) {
      // What a slow consumer makes us hold is the read-ahead: it stays within this call's fair
      // share of the budget, in range size and in ranges fetched ahead, so that other calls (the
      // shared sidecar's other users) find buffers when many streams are read slowly at once.
      // Alone, a call's share is the whole budget and nothing changes. One range is always in flight.
      const fair = budget.fairShareBytes();
      // In whole MiB: the budget reuses a kept buffer of the same size, and shares change often.
      const share = Math.floor(fair / (partConcurrency + 1) / MIN_STREAM_RANGE) * MIN_STREAM_RANGE;
      const size = Math.max(MIN_STREAM_RANGE, Math.min(partSize, share));
      if (window.length > 0 && budget.heldBytes() + size > fair) break;
      const start = next;
      const len = Math.min(size, info.size - start);
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
      const { full, buf, result } = await window.shift()!;
      lent = full;
      crc = received === 0 ? result.crc : crc32Combine(crc, result.crc, buf.length);
      received += buf.length;
      if (received === info.size && tuning.checksum === "crc32")
        checkCrc(target, key, info.crc32 ?? result.objectCrc, crc);
      schedule();
      yield buf;
    }
    done = true;
  } finally {
    inner.abort();
    signal.removeEventListener("abort", onAbort);
    // A consumer that stopped early may have left frames of the range it held queued in its
    // transport (OpenStream sends them from this buffer): not reused, only let go.
    if (lent) budget.release(lent, done);
    // Ranges still in flight give their buffers back as they settle.
    for (const p of window)
      p.then(
        ({ full }) => budget.release(full),
        () => undefined,
      );
  }
}
