// Which hosts an S3 endpoint may be. Any workflow author chooses `endpoint`,
// and OpenStream returns whatever the host answers, so link-local and cloud
// metadata addresses (169.254.0.0/16, fe80::/10, fd00:ec2::/32: instance
// metadata, ECS/EKS credential agents) are refused always: as literals in the
// configuration, and after DNS resolution at every connection (a name that
// resolves there, or starts to, is refused too). In the shared argo-server
// sidecar an operator can also limit endpoints to a list.
import { canonicalHost, endpointHost, endpointPort } from "../util/endpoints.js";
import { type LookupAddress, type LookupAllOptions, type LookupOneOptions, lookup as dnsLookup } from "node:dns";
import { isIP } from "node:net";
import { PluginError } from "../errors.js";

export interface EndpointPolicy {
  /** host[:port] entries; empty: any endpoint that is not a forbidden address. */
  allowed: readonly string[];
  /**
   * The shared argo-server sidecar: loopback (argo-server's own ports, in the
   * same pod) is refused unless the endpoint is in `allowed`.
   */
  refuseLoopback?: boolean;
}

function v6Words(ip: string): number[] | undefined {
  let s = ip.toLowerCase().split("%")[0]!;
  // An embedded IPv4 tail becomes two 16-bit words.
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (v4) {
    const o = v4[1]!.split(".").map(Number);
    s = s.slice(0, -v4[1]!.length) + `${((o[0]! << 8) | o[1]!).toString(16)}:${((o[2]! << 8) | o[3]!).toString(16)}`;
  }
  const [head, tail] = s.split("::") as [string, string | undefined];
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  const fill = tail === undefined ? [] : Array(8 - h.length - t.length).fill("0");
  const words = [...h, ...fill, ...t].map((w) => Number.parseInt(w, 16));
  return words.length === 8 && words.every((w) => Number.isInteger(w)) ? words : undefined;
}

/**
 * The IPv4 address an IPv6 one carries to an IPv4 host, as its two high and low words: the
 * IPv4-mapped (::ffff:a.b.c.d) and IPv4-compatible (::a.b.c.d) forms, and NAT64's well-known
 * prefix (64:ff9b::a.b.c.d, RFC 6052), which a NAT64 gateway turns into a.b.c.d.
 */
function embeddedV4(w: number[]): [number, number] | undefined {
  const mapped = w.slice(0, 5).every((x) => x === 0) && (w[5] === 0xffff || w[5] === 0);
  const nat64 = w[0] === 0x64 && w[1] === 0xff9b && w.slice(2, 6).every((x) => x === 0);
  return mapped || nat64 ? [w[6]!, w[7]!] : undefined;
}

/** Link-local or cloud metadata: never an S3 endpoint. */
export function isForbiddenAddress(ip: string): boolean {
  if (isIP(ip) === 4) return ip.startsWith("169.254.");
  if (isIP(ip.split("%")[0]!) !== 6) return false;
  const w = v6Words(ip);
  if (!w) return false;
  if ((w[0]! & 0xffc0) === 0xfe80) return true; // fe80::/10
  if (w[0] === 0xfd00 && w[1] === 0x0ec2) return true; // fd00:ec2::/32
  // 169.254/16 carried in an IPv6 address.
  const v4 = embeddedV4(w);
  return v4 !== undefined && v4[0] >> 8 === 169 && (v4[0] & 0xff) === 254;
}

/** This host itself: 127/8, 0/8 (Linux connects it locally), ::1, ::, and their IPv4-mapped forms. */
export function isLoopbackAddress(ip: string): boolean {
  if (isIP(ip) === 4) return ip.startsWith("127.") || ip.startsWith("0.");
  if (isIP(ip.split("%")[0]!) !== 6) return false;
  const w = v6Words(ip);
  if (!w) return false;
  if (w.slice(0, 7).every((x) => x === 0) && (w[7] === 0 || w[7] === 1)) return true; // :: and ::1
  const v4 = embeddedV4(w);
  // (Not :: and ::1 as IPv4-compatible forms, handled above.)
  return v4 !== undefined && (v4[0] >> 8 === 127 || v4[0] >> 8 === 0) && !(w[5] === 0 && v4[0] === 0 && w[0] === 0);
}

const isLocalName = (host: string) =>
  /^(localhost|localhost\.localdomain|[^.]+\.localhost|ip6-localhost|ip6-loopback)\.?$/i.test(host);

export { canonicalHost, endpointHost, endpointPort };

/** Refuse a configured endpoint before any connection is made. */
export function checkEndpoint(endpoint: string, policy: EndpointPolicy): void {
  if (endpoint === "") return; // AWS S3 itself
  const host = endpointHost(endpoint);
  if (isForbiddenAddress(host) || isForbiddenAddress(canonicalHost(endpoint))) {
    throw new PluginError(
      "invalid-config",
      `invalid plugin configuration: endpoint: "${endpoint}" is a link-local / cloud metadata address, never an S3 endpoint; refused`,
    );
  }
  const listed = isListed(policy, endpoint);
  if (policy.refuseLoopback && !listed) {
    const canonical = canonicalHost(endpoint);
    if (isLoopbackAddress(host) || isLoopbackAddress(canonical) || isLocalName(canonical)) {
      throw new PluginError(
        "invalid-config",
        `invalid plugin configuration: endpoint: "${endpoint}" is this pod's own loopback address; the shared argo-server sidecar does not reach it unless the operator lists it in ARGO_S3_PLUGIN_ALLOWED_ENDPOINTS`,
      );
    }
  }
  if (policy.allowed.length > 0 && !listed) {
    throw new PluginError(
      "invalid-config",
      `invalid plugin configuration: endpoint: "${endpoint}" is not one of the endpoints this shared plugin may reach (ARGO_S3_PLUGIN_ALLOWED_ENDPOINTS: ${policy.allowed.join(", ")}); ask the operator to add it`,
    );
  }
}

type LookupCb = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

/** The operator listed this endpoint (as host:port or host) in ARGO_S3_PLUGIN_ALLOWED_ENDPOINTS. */
function isListed(policy: EndpointPolicy, endpoint: string): boolean {
  return (
    policy.allowed.includes(endpoint.toLowerCase()) || policy.allowed.includes(endpointHost(endpoint).toLowerCase())
  );
}

/**
 * What is wrong with connecting to `address` for this endpoint, or undefined:
 * the one rule the lookup (what a name resolves to) and the peer check (what a
 * socket reached) both apply.
 */
function addressRule(policy: EndpointPolicy, endpoint: string): (address: string) => string | undefined {
  const refuseLoopback = policy.refuseLoopback === true && !isListed(policy, endpoint);
  return (address) => {
    if (isForbiddenAddress(address)) return "a link-local / cloud metadata address";
    if (refuseLoopback && isLoopbackAddress(address))
      return "a loopback address the shared sidecar does not reach (ARGO_S3_PLUGIN_ALLOWED_ENDPOINTS)";
    return undefined;
  };
}

/**
 * The last word on every S3 socket, SDK and lean alike: the address it is
 * actually connected to, whatever path led there (a literal the text checks
 * missed, a lookup that was bypassed), judged before any request is written
 * on it. Undefined when the peer is acceptable.
 */
export function peerCheck(
  policy: EndpointPolicy = { allowed: [] },
  endpoint = "",
): (address: string | undefined) => string | undefined {
  const rule = addressRule(policy, endpoint);
  return (address) => {
    if (address === undefined) return undefined; // not connected (yet): nothing to judge
    const what = rule(address);
    return what && `connected to ${address}, ${what}; refused`;
  };
}

/**
 * dns.lookup for the S3 sockets of one endpoint: a resolved forbidden address
 * fails the connection, and so does a loopback one when the policy refuses
 * loopback and the endpoint is not listed (a name that resolves to 127.0.0.1).
 */
export function guardedLookup(policy: EndpointPolicy = { allowed: [] }, endpoint = "") {
  const rule = addressRule(policy, endpoint);
  return (hostname: string, options: LookupOneOptions | LookupAllOptions | number, cb: LookupCb): void => {
    const opts = typeof options === "number" ? { family: options } : options;
    dnsLookup(hostname, { ...opts, all: true }, (err, addresses) => {
      if (err) return cb(err, []);
      for (const a of addresses) {
        const what = rule(a.address);
        if (what) {
          const e: NodeJS.ErrnoException = new Error(
            `endpoint host ${hostname} resolves to ${a.address}, ${what}; refused`,
          );
          e.code = "EADDRNOTAVAIL";
          return cb(e, []);
        }
      }
      if ((opts as LookupAllOptions).all) return cb(null, addresses);
      const first = addresses[0]!;
      cb(null, first.address, first.family);
    });
  };
}
