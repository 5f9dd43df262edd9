// What the S3 layer tells observers: one typed event per S3 request once it
// has ended, published on a diagnostics channel (node:diagnostics_channel, as
// undici publishes its own). Both ways a request goes, the AWS SDK's
// middleware (targets.ts) and the lean client (store.ts), publish the same
// shape; the debug log line, the metrics and the trace spans subscribe
// (services.ts). With no subscriber, publishing costs one property read.
import { typedChannel } from "../util/events.js";

/** One S3 request, ended. Nothing in it is a credential. */
export interface S3RequestEnded {
  /** The S3 operation, e.g. "GetObject". */
  s3: string;
  bucket: string | undefined;
  key: string | undefined;
  /** The endpoint as logged (scheme, host and port; "AWS S3" when none was configured). */
  endpoint: string;
  range?: string | undefined;
  part?: number | undefined;
  /** The HTTP status of the last attempt, when an answer came. */
  status: number | undefined;
  attempts: number | undefined;
  /** Milliseconds from the request's start to its end, to 0.1 ms. */
  ms: number;
  /** "lean" for the plugin's own HTTP/1.1 client; absent for the SDK. */
  via?: "lean" | undefined;
  /** The error's name when it failed, and the start of its message (lean requests). */
  error?: string | undefined;
  detail?: string | undefined;
}

const ended = typedChannel<S3RequestEnded>("argo-s3-artifact-plugin:s3-request-ended");

/** Whether anyone listens: callers skip the timing and the event's object when no one does. */
export const s3RequestObserved = ended.observed;

export const publishS3Request = ended.publish;

/** Calls `fn` for every S3 request that ends from now on; returns the unsubscribe (see util/events.ts). */
export const onS3Request = ended.subscribe;
