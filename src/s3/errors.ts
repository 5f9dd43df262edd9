// Turns whatever the SDK (or the lean client) threw into an S3Error: the
// operation, bucket, key, endpoint, S3's code, the HTTP status and whether
// another attempt may help, as fields for code and as one sentence for people.
// The store (store.ts) is the one caller; everything above it reads fields.
// Credentials never appear: SDK error messages don't carry them, and we add none.
import { type PluginError, describeError, isPluginError } from "../errors.js";
import { StoreError } from "../store/port.js";
import { isAbort } from "../util/abortable.js";

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

function s3ErrorCode(e: unknown): string | undefined {
  if (typeof e !== "object" || e === null) return undefined;
  const x = e as SdkErrorShape;
  return x.Code ?? (x.name && x.name !== "Error" ? x.name : undefined) ?? x.code;
}

function httpStatus(e: unknown): number | undefined {
  if (typeof e !== "object" || e === null) return undefined;
  return (e as SdkErrorShape).$metadata?.httpStatusCode;
}

function isNotFound(e: unknown): boolean {
  const code = s3ErrorCode(e);
  return code === "NoSuchKey" || code === "NotFound" || httpStatus(e) === 404;
}

export { isAbort };

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

/** S3's bucket naming rule (a store answers a bodiless 400 to a HEAD of a name that breaks it). */
const S3_BUCKET_NAME = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

/** What a status without a body (every HEAD answer) most likely means, in words. */
const BODILESS_HINTS: Record<number, string> = {
  400: "the answer has no body; most often the wrong region for this bucket: set region to the bucket's, or leave it empty to follow S3's redirect",
  301: "the answer has no body; the bucket is in another region: set region to the bucket's, or leave it empty",
  403: "the answer has no body; most often a wrong access key or secret key, a clock far off, or no permission for this bucket/key",
};

/** A failed S3 request, described (the port's StoreError, built from where it went). */
export class S3Error extends StoreError {
  constructor(
    kind: "not-found" | "storage" | "cancelled",
    message: string,
    f: {
      operation: string;
      where: S3Where;
      code: string | undefined;
      status: number | undefined;
      retryable: boolean;
      cause: unknown;
    },
  ) {
    super(kind, message, {
      operation: f.operation,
      bucket: f.where.bucket,
      key: f.where.key,
      endpoint: f.where.endpointLabel,
      code: f.code,
      status: f.status,
      retryable: f.retryable,
      cause: f.cause,
    });
    this.name = "S3Error";
  }
}

/**
 * Worth another attempt: no answer at all (reset, timeout, refused) or the
 * store's own failure (5xx, throttling); never a cancellation.
 */
export function mayRetry(e: unknown, signal?: AbortSignal): boolean {
  if (isAbort(e, signal)) return false;
  const status = httpStatus(e);
  return status === undefined || status >= 500 || status === 429;
}

/** `op` at `w` ended by cancellation; `reason` (the signal's) is kept as the cause. */
export function cancelledRequest(op: string, w: S3Where, reason: unknown): S3Error {
  return new S3Error("cancelled", `${op} ${location(w)}: cancelled`, {
    operation: op,
    where: w,
    code: undefined,
    status: undefined,
    retryable: false,
    cause: reason,
  });
}

/** Wrap a failure of `op` (e.g. "GetObject") at `w`; our own errors pass through unchanged. */
export function storageError(op: string, w: S3Where, e: unknown, signal?: AbortSignal): PluginError {
  if (isPluginError(e)) return e;
  const status = httpStatus(e);
  if (isAbort(e, signal)) return cancelledRequest(op, w, e);
  let code = s3ErrorCode(e);
  // Bodiless answers (every HEAD) come back as "Unknown"; the status still says what happened.
  if ((code === undefined || code === "Unknown" || code === "UnknownError") && status !== undefined)
    code = STATUS_CODES[status] ?? code;
  let detail = describeError(e);
  // SDK messages for bodiless errors (HEAD) are just "UnknownError" or the code itself.
  if (!detail || detail === code || detail === "UnknownError") detail = status ? `HTTP ${status}` : "no details";
  const bodiless = detail === `HTTP ${status}`;
  if (bodiless && status === 400 && !S3_BUCKET_NAME.test(w.bucket))
    detail += ` (the answer has no body; "${w.bucket}" is not a valid S3 bucket name, which stores refuse this way: 3 to 63 lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit)`;
  else if (bodiless && status !== undefined && BODILESS_HINTS[status]) detail += ` (${BODILESS_HINTS[status]})`;
  // A store that names the region it expects (AWS and MinIO do, in the error body) says what to configure.
  const expected = (e as { Region?: unknown }).Region;
  if (
    code === "AuthorizationHeaderMalformed" &&
    typeof expected === "string" &&
    /^[A-Za-z0-9-]{1,64}$/.test(expected)
  ) {
    detail += ` (the store expects region "${expected}": set \`region: ${expected}\` in the configuration)`;
  }
  if (/wrong version number|WRONG_VERSION_NUMBER|packet length too long/i.test(detail)) {
    detail = `the endpoint answered TLS with plain HTTP: it speaks plain HTTP, so set \`insecure: true\` (or use its HTTPS port)`;
  }
  // The SDK's endpoint rules refuse a configured endpoint with these switches, in words that name neither.
  if ((e as { name?: string }).name === "EndpointError") {
    if (/FIPS/i.test(detail))
      detail +=
        " (AWS_USE_FIPS_ENDPOINT is set in the plugin's environment: unset it, or remove `endpoint` from the configuration to use AWS's FIPS endpoints)";
    else if (/dual-?stack/i.test(detail))
      detail +=
        " (AWS_USE_DUALSTACK_ENDPOINT is set in the plugin's environment: unset it, or remove `endpoint` from the configuration to use AWS's dual-stack endpoints)";
  }
  const codePart = code && code !== "Error" ? `${code}: ` : "";
  const kind = isNotFound(e) ? "not-found" : "storage";
  return new S3Error(kind, `${op} ${location(w)} failed: ${codePart}${detail}`, {
    operation: op,
    where: w,
    code,
    status,
    retryable: mayRetry(e),
    cause: e,
  });
}
