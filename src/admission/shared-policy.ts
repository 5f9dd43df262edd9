// The one shared-mode policy: everything the plugin does differently as the
// argo-server sidecar that serves every UI user (any workflow author controls
// a call's configuration, key and paths there), decided once from the settings
// and handed to the wire (slot pools, caps, call deadlines) and to the S3
// layer (secrets, roles, endpoints, clamps). In a workflow pod the same
// object says "not shared" and changes nothing. Security in the README is
// this file in prose.
import type { StoreTarget } from "../store/port.js";
import { canonicalHost, endpointPort } from "../util/endpoints.js";
import { SHARED_MIN_BODY_RATE } from "../http/pace.js";
import type { AllowedSecret, Settings } from "../settings.js";
import type { ShareGroup } from "../util/slots.js";

/**
 * What a configuration points at: the unit the shared sidecar keeps apart.
 * `endpoint` (host:port) and `host` alone too, as an author may vary bucket,
 * credentials and port freely.
 */
export interface Tenant {
  tenant: string;
  endpoint: string;
  /** "aws" when the configuration names no endpoint (AWS S3 itself). */
  host: string;
}

/** A target's tenant, as the connection will see it ("MINIO:9000", "minio.:9000" and "minio:9000" are one endpoint). */
export function tenantOf(t: Pick<StoreTarget, "cfg">): Tenant {
  const c = t.cfg;
  const host = c.endpoint ? canonicalHost(c.endpoint).replace(/\.$/, "").toLowerCase() : "aws";
  const endpoint = `${host}:${(c.endpoint && endpointPort(c.endpoint)) ?? (c.insecure ? 80 : 443)}`;
  const creds = c.accessKeySecret
    ? `secret ${c.accessKeySecret.name}`
    : c.roleARN
      ? `role ${c.roleARN}`
      : "default chain";
  return { endpoint, host, tenant: `${endpoint} ${c.bucket} ${creds}` };
}

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
  /**
   * The groups a call to this tenant counts in, each holding at most its fraction of every slot
   * pool and of the buffer budget together (shared mode; elsewhere none).
   */
  shares: (t: Tenant) => readonly ShareGroup[];
  /** The same for a call's target (its tenant first). */
  sharesOf: (t: Pick<StoreTarget, "cfg">) => readonly ShareGroup[];
  /** A bound on the whole of a call, by method (shared mode: every page of a listing). */
  callDeadlinesMs: Partial<Record<string, number>> | undefined;
}

/**
 * The shared sidecar's clamp of a configuration's tuning: an unanswering store frees a UI call in
 * minutes, and a range's body (16 MiB at most with the default part size) at 64 KiB/s or faster
 * ends within about four minutes after its head.
 */
const SHARED_CLAMP = { requestTimeoutMs: 60_000, maxAttempts: 3, minBodyRate: SHARED_MIN_BODY_RATE };

/**
 * An ARGO_S3_PLUGIN_OPERATOR_ENDPOINTS entry in the form tenantOf gives an endpoint: its host as
 * the connection sees it ("MinIO.", "[::1]" and a scheme folded), with its port when it has one.
 */
function asTenantForm(entry: string): string {
  const bare = entry.replace(/^[a-z][a-z0-9+.-]*:\/\//i, "").replace(/\/.*$/, "");
  const host = canonicalHost(bare).replace(/\.$/, "").toLowerCase();
  const port = endpointPort(bare);
  return port === undefined ? host : `${host}:${port}`;
}

/** One tenant (endpoint, bucket, credential source) and one host (any port) hold at most this. */
const TENANT_FRACTION = 3 / 4;
/** The calls to every store that is not the operator's, together (ARGO_S3_PLUGIN_OPERATOR_ENDPOINTS). */
const AUTHORS_FRACTION = 1 / 2;

/**
 * Fair shares in the shared sidecar. An author chooses endpoint, bucket and credentials freely,
 * so a cap per tenant alone is multiplied by buckets, and a cap per endpoint by ports: a host
 * (whatever port) is capped too. Names and addresses cost an author little more, so once the
 * operator names their own stores, the calls to every other store share one cap between them,
 * and the operator's stores keep the other half whatever any number of authors' hosts do.
 */
function sharesIn(listed: readonly string[]): (t: Tenant) => readonly ShareGroup[] {
  const operatorEndpoints = listed.map(asTenantForm);
  return (t) => {
    const groups: ShareGroup[] = [{ key: `tenant ${t.tenant}`, fraction: TENANT_FRACTION }];
    // AWS S3 itself (no endpoint) is nobody's to slow down.
    const operators = t.host === "aws" || operatorEndpoints.includes(t.endpoint) || operatorEndpoints.includes(t.host);
    if (operators) return groups;
    groups.push({ key: `host ${t.host}`, fraction: TENANT_FRACTION });
    if (operatorEndpoints.length > 0) groups.push({ key: "authors", fraction: AUTHORS_FRACTION });
    return groups;
  };
}

function sharesFor(shares: (t: Tenant) => readonly ShareGroup[]): Pick<SharedPolicy, "shares" | "sharesOf"> {
  return { shares, sharesOf: (t) => shares(tenantOf(t)) };
}

export function sharedPolicy(s: Settings): SharedPolicy {
  const shared = s.shared;
  return {
    shared,
    allowedSecrets: shared ? s.allowedSecrets : undefined,
    allowedRoles: shared ? s.allowedRoles : undefined,
    endpoints: { allowed: s.allowedEndpoints, refuseLoopback: shared },
    clamp: shared ? SHARED_CLAMP : undefined,
    maxConcurrentListings: shared ? 4 : 8,
    ...sharesFor(shared ? sharesIn(s.operatorEndpoints) : () => []),
    callDeadlinesMs: shared ? { ListObjects: s.sharedListingMs, IsDirectory: s.sharedListingMs } : undefined,
  };
}
