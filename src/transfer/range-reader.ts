// Reading one object's bytes from the store: its HEAD (size, ETag, full-object
// CRC32), and ranged GETs pinned to that ETag (an object replaced mid-read
// fails instead of mixing two versions), counted and CRC-ed as they arrive,
// with a range whose body broke mid-way fetched again. download-to-file.ts and
// object-stream.ts are the two ways the engine uses it.
import { PluginError } from "../errors.js";
import type { BodySink, StoreTarget } from "../store/port.js";
import { backoff } from "../util/backoff.js";
import { crc32, crc32FromBase64, crc32ToBase64 } from "./crc32.js";
import type { JobContext } from "./job.js";

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
function fullObjectCrc(
  value: string | undefined,
  type: string | undefined,
  etag: string | undefined,
): number | undefined {
  if (!value || value.includes("-") || (type !== undefined && type !== "FULL_OBJECT")) return undefined;
  if (type === undefined && etag !== undefined && /-\d+"?$/.test(etag)) return undefined;
  return crc32FromBase64(value);
}

/** `single`: one attempt only (OpenStream). */
export async function headObject(
  job: JobContext,
  key: string,
  signal: AbortSignal,
  single = false,
): Promise<ObjectInfo> {
  const checksums = job.tuning.checksum === "crc32";
  const out = await job.target.store.head(key, checksums, { signal, single });
  return {
    size: out.size,
    etag: out.etag,
    crc32: checksums ? fullObjectCrc(out.crc32, out.checksumType, out.etag) : undefined,
  };
}

/** Where a range's bytes go: buffers handed out in order (see http/http1.ts). */
export type { BodySink };

export interface RangeResult {
  /** CRC32 of the bytes received. */
  crc: number;
  /** Full-object CRC32 from the response, for whole-object GETs. */
  objectCrc: number | undefined;
}

/** Everything that stays the same across the ranges of one object. */
export interface ObjectRead {
  /** One attempt per request (OpenStream); otherwise the SDK's retries. */
  single: boolean;
  job: JobContext;
  key: string;
  info: ObjectInfo;
}

/**
 * Why an answer's Content-Range does not describe the bytes asked for, if it
 * does not: a ranged GET must be answered with exactly that range of an
 * object of the known size (a server that ignores Range answers 200 without
 * one), and a whole-object GET with no range or the whole one.
 */
export function contentRangeProblem(
  value: string | undefined,
  start: number,
  length: number,
  size: number,
  ranged: boolean,
): string | undefined {
  const expected = `bytes ${start}-${start + length - 1}/${size}`;
  if (value === undefined)
    return ranged ? `the server ignored the Range (no Content-Range in its answer; expected ${expected})` : undefined;
  if (!ranged && length === 0)
    return `the server answered with Content-Range ${JSON.stringify(value.slice(0, 60))} for an empty object`;
  if (value.trim() !== expected)
    return `the server answered with Content-Range ${JSON.stringify(value.slice(0, 60))}, not the ${expected} asked for`;
  return undefined;
}

/**
 * GET one range (or the whole object) into `sink`, checking its length and CRC-ing its bytes as they land.
 * The sink is offered exactly `length` bytes and never more: an answer that
 * is longer (whatever its framing says) fails before a byte lands outside
 * its range, so a retry can never leave stray bytes behind.
 */
export async function getRange(
  read: ObjectRead,
  start: number,
  length: number,
  signal: AbortSignal,
  sink: BodySink,
): Promise<RangeResult> {
  const { single, job, key, info } = read;
  const { target, progress } = job;
  const whole = start === 0 && length === info.size;
  const range = whole ? undefined : `bytes=${start}-${start + length - 1}`;
  const label = whole ? "GetObject" : `GetObject ${range}`;
  const checksums = job.tuning.checksum === "crc32";
  let received = 0;
  let crc = 0;
  const refuse = (why: string) =>
    new PluginError("storage", `${label} ${target.store.location(key)}: ${why}`, { retryable: true });
  const answer = await target.store.getInto(
    key,
    { Range: range, IfMatch: info.etag, ...(checksums && whole ? { ChecksumMode: "ENABLED" as const } : {}) },
    { signal, single },
    (a) => {
      if (a.ContentLength !== undefined && a.ContentLength !== length)
        throw refuse(`the server answered with ${a.ContentLength} bytes for the ${length} asked for`);
      const problem = contentRangeProblem(a.ContentRange, start, length, info.size, !whole);
      if (problem) throw refuse(problem);
      // The GET is pinned to this ETag (If-Match): an answer naming another is not this object's.
      if (info.etag !== undefined && a.ETag !== undefined && a.ETag !== info.etag)
        throw refuse(`the answer is for ETag ${a.ETag.slice(0, 80)}, not the ${info.etag} asked for`);
      let last: Buffer = Buffer.alloc(0);
      return {
        space: () => {
          const s = sink.space();
          const room = length - received;
          return (last = s.length > room ? s.subarray(0, room) : s);
        },
        took: (n) => {
          if (n > last.length) throw refuse(`internal: ${n} bytes reported into a space of ${last.length}`);
          if (checksums) crc = crc32(last.subarray(0, n), crc);
          received += n;
          progress.bytes += n;
          return sink.took(n);
        },
      };
    },
  );
  if (received !== length) throw refuse(`truncated, got ${received} of ${length} bytes`);
  return {
    crc,
    objectCrc: checksums && whole ? fullObjectCrc(answer.ChecksumCRC32, answer.ChecksumType, answer.ETag) : undefined,
  };
}

export function checkCrc(target: StoreTarget, key: string, expected: number | undefined, actual: number): void {
  if (expected !== undefined && expected !== actual >>> 0) {
    throw new PluginError(
      "storage",
      `checksum mismatch for ${target.store.location(key)}: S3 says CRC32 ${crc32ToBase64(expected)}, received data has ${crc32ToBase64(actual)}; the data was corrupted in transit or at rest`,
    );
  }
}

function retriable(e: unknown): boolean {
  return e instanceof PluginError && e.kind === "storage" && e.retryable;
}

/**
 * Run one range attempt again when its body broke mid-way (the SDK retries
 * only before the body starts); the attempt must be safe to repeat.
 */
export async function withRangeRetries<T>(
  read: ObjectRead,
  signal: AbortSignal,
  attempt: () => Promise<T>,
): Promise<T> {
  for (let n = 1; ; n++) {
    try {
      return await attempt();
    } catch (e) {
      if (!retriable(e) || n >= read.job.tuning.maxAttempts || signal.aborted) throw e;
      await backoff(n);
    }
  }
}

/** A sink filling `buf` from its start: the bytes land in it directly. */
export function intoBuffer(buf: Buffer): BodySink {
  let filled = 0;
  return {
    space: () => buf.subarray(filled),
    took: (n) => {
      filled += n;
    },
  };
}
