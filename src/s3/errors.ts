// Turns whatever the SDK threw into a PluginError whose message names the
// operation, bucket, key, endpoint and S3's error code. Credentials never
// appear: SDK error messages don't carry them, and we add none.
import { PluginError, describeError, isPluginError } from "../errors.js";

export interface S3Where {
  bucket: string;
  key?: string;
  endpointLabel: string;
}

interface SdkErrorShape {
  name?: string;
  Code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
  code?: string;
}

export function s3ErrorCode(e: unknown): string | undefined {
  if (typeof e !== "object" || e === null) return undefined;
  const x = e as SdkErrorShape;
  return x.Code ?? (x.name && x.name !== "Error" ? x.name : undefined) ?? x.code;
}

export function httpStatus(e: unknown): number | undefined {
  if (typeof e !== "object" || e === null) return undefined;
  return (e as SdkErrorShape).$metadata?.httpStatusCode;
}

export function isNotFound(e: unknown): boolean {
  const code = s3ErrorCode(e);
  return code === "NoSuchKey" || code === "NotFound" || httpStatus(e) === 404;
}

export function isAbort(e: unknown, signal?: AbortSignal): boolean {
  if (signal?.aborted) return true;
  const name = (e as { name?: string } | null)?.name;
  return name === "AbortError";
}

export function location(w: S3Where): string {
  const obj = w.key !== undefined ? `s3://${w.bucket}/${w.key}` : `s3://${w.bucket}`;
  return `${obj} (endpoint ${w.endpointLabel})`;
}

const STATUS_CODES: Record<number, string> = {
  400: "BadRequest",
  401: "Unauthorized",
  403: "AccessDenied",
  404: "NotFound",
  409: "Conflict",
  412: "PreconditionFailed",
  416: "InvalidRange",
  500: "InternalError",
  503: "ServiceUnavailable",
};

/** What a status without a body (every HEAD answer) most likely means, in words. */
const BODILESS_HINTS: Record<number, string> = {
  400: "the answer has no body; most often the wrong region for this bucket: set region to the bucket's, or leave it empty to follow S3's redirect",
  301: "the answer has no body; the bucket is in another region: set region to the bucket's, or leave it empty",
  403: "the answer has no body; most often a wrong access key or secret key, a clock far off, or no permission for this bucket/key",
};

/** Wrap an SDK failure of `op` (e.g. "GetObject") at `w`. */
export function storageError(op: string, w: S3Where, e: unknown, signal?: AbortSignal): PluginError {
  if (isPluginError(e)) return e;
  if (isAbort(e, signal)) {
    return new PluginError("cancelled", `${op} ${location(w)}: cancelled`, { cause: e });
  }
  const status = httpStatus(e);
  let code = s3ErrorCode(e);
  // Bodiless answers (every HEAD) come back as "Unknown"; the status still says what happened.
  if ((code === undefined || code === "Unknown" || code === "UnknownError") && status !== undefined) code = STATUS_CODES[status] ?? code;
  let detail = describeError(e);
  // SDK messages for bodiless errors (HEAD) are just "UnknownError" or the code itself.
  if (!detail || detail === code || detail === "UnknownError") detail = status ? `HTTP ${status}` : "no details";
  const bodiless = detail === `HTTP ${status}`;
  if (bodiless && status !== undefined && BODILESS_HINTS[status]) detail += ` (${BODILESS_HINTS[status]})`;
  if (/wrong version number|WRONG_VERSION_NUMBER|packet length too long/i.test(detail)) {
    detail = `the endpoint answered TLS with plain HTTP: it speaks plain HTTP, so set \`insecure: true\` (or use its HTTPS port)`;
  }
  const codePart = code && code !== "Error" ? `${code}: ` : "";
  const kind = isNotFound(e) ? "not-found" : "storage";
  // No answer at all (reset, timeout) or the store's own failure (5xx, throttling): another attempt may work.
  const retryable = status === undefined || status >= 500 || status === 429;
  return new PluginError(kind, `${op} ${location(w)} failed: ${codePart}${detail}`, { cause: e, retryable });
}
