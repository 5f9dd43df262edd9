// An endpoint as configurations write it ("host", "host:port", "[v6]:port"),
// taken apart: the S3 layer's endpoint guard and the shared sidecar's tenant
// rule both read hosts this one way.
import { isIP } from "node:net";

/** host of "host", "host:port", "[v6]:port" or a bare IPv6 literal. */
export function endpointHost(endpoint: string): string {
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(endpoint);
  if (bracketed) return bracketed[1]!;
  if (isIP(endpoint) === 6) return endpoint;
  return endpoint.replace(/:\d+$/, "");
}

/** port of "host:port" or "[v6]:port"; none for a bare host or IPv6 literal. */
export function endpointPort(endpoint: string): number | undefined {
  const m = /^\[[^\]]+\]:(\d+)$/.exec(endpoint) ?? (isIP(endpoint) === 6 ? null : /:(\d+)$/.exec(endpoint));
  return m ? Number(m[1]) : undefined;
}

/**
 * The host as the SDK's URL parser (WHATWG) reads the endpoint: decimal,
 * octal, hex and shortened IPv4 spellings ("2852039191", "0xa9feaa17",
 * "169.254.43543", a trailing dot) become the dotted address it connects to,
 * and Node calls no lookup for an address, so the guard must judge this form.
 */
export function canonicalHost(endpoint: string): string {
  try {
    const h = new URL(`http://${endpoint}`).hostname;
    return h.startsWith("[") ? h.slice(1, -1) : h;
  } catch {
    return endpointHost(endpoint);
  }
}
