// One error type for everything the plugin reports to Argo. The `kind` decides
// how the wire layer answers (gRPC status vs. success=false); the message is
// what a workflow author reads, so it always names what failed and why.

export type ErrorKind =
  /** The request itself is malformed (no artifact, no plugin block, ...). */
  | "invalid-argument"
  /** plugin.configuration does not parse or does not validate. */
  | "invalid-config"
  /** Neither an object nor a prefix exists at the key. */
  | "not-found"
  /** A local file system problem (path missing, unreadable, unsafe key). */
  | "local"
  /** Credentials could not be obtained. */
  | "credentials"
  /** S3 answered with an error or could not be reached. */
  | "storage"
  /** The caller cancelled or the deadline passed. */
  | "cancelled";

export class PluginError extends Error {
  readonly kind: ErrorKind;
  /** Worth another attempt: the store or the connection failed, not the request. */
  readonly retryable: boolean;

  constructor(kind: ErrorKind, message: string, options?: { cause?: unknown; retryable?: boolean }) {
    super(message, options);
    this.kind = kind;
    this.retryable = options?.retryable ?? false;
    this.name = "PluginError";
  }
}

export function isPluginError(e: unknown): e is PluginError {
  return e instanceof PluginError;
}

/** Best-effort text of an unknown thrown value, for wrapping. */
export function describeError(e: unknown): string {
  if (e instanceof Error) return e.message;
  return String(e);
}
