// The one shared-mode policy: everything the plugin does differently as the
// argo-server sidecar that serves every UI user (any workflow author controls
// a call's configuration, key and paths there), decided once from the settings
// and handed to the wire (slot pools, caps, call deadlines) and to the S3
// layer (secrets, roles, endpoints, clamps). In a workflow pod the same
// object says "not shared" and changes nothing. Security in the README is
// this file in prose.
import { SHARED_MIN_BODY_RATE } from "../s3/pace.js";
import type { AllowedSecret, Settings } from "../settings.js";

export interface SharedPolicy {
  shared: boolean;
  /** Secrets a configuration may name (shared mode); undefined: any the pod's account can read. */
  allowedSecrets: readonly AllowedSecret[] | undefined;
  /** Roles (roleARN) a configuration may assume (shared mode); undefined: any. */
  allowedRoles: readonly string[] | undefined;
  /** Endpoints: the operator's list (empty: any), and whether loopback is refused (shared mode). */
  endpoints: { allowed: readonly string[]; refuseLoopback: boolean };
  /**
   * A configuration's requestTimeoutSeconds and maxAttempts held to these, and the slowest answer
   * body accepted (shared mode): each exchange, a ranged GET included, ends within a bound.
   */
  clamp: { requestTimeoutMs: number; maxAttempts: number; minBodyRate: number } | undefined;
  /** Listing calls at once (ListObjects, IsDirectory): their parsed pages cost memory outside the buffer budget. */
  maxConcurrentListings: number;
  /** No tenant and no endpoint holds more than three quarters of a slot pool (shared mode). */
  perTenantLimits: boolean;
  /** A bound on the whole of a call, by method (shared mode: every page of a listing). */
  callDeadlinesMs: Partial<Record<string, number>> | undefined;
}

/**
 * The shared sidecar's clamp of a configuration's tuning: an unanswering store frees a UI call in
 * minutes, and a range's body (16 MiB at most with the default part size) at 64 KiB/s or faster
 * ends within about four minutes after its head.
 */
const SHARED_CLAMP = { requestTimeoutMs: 60_000, maxAttempts: 3, minBodyRate: SHARED_MIN_BODY_RATE };

export function sharedPolicy(s: Settings): SharedPolicy {
  const shared = s.shared;
  return {
    shared,
    allowedSecrets: shared ? s.allowedSecrets : undefined,
    allowedRoles: shared ? s.allowedRoles : undefined,
    endpoints: { allowed: s.allowedEndpoints, refuseLoopback: shared },
    clamp: shared ? SHARED_CLAMP : undefined,
    maxConcurrentListings: shared ? 4 : 8,
    perTenantLimits: shared,
    callDeadlinesMs: shared ? { ListObjects: s.sharedListingMs, IsDirectory: s.sharedListingMs } : undefined,
  };
}
