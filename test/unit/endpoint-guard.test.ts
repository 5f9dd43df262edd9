// The endpoint guard's address rules, and its lookup: what a name resolves to
// is judged at every connection, so a name that points at a forbidden (or, in
// the shared sidecar, loopback) address is refused although its text passes.
import { describe, expect, it } from "vitest";
import { checkEndpoint, guardedLookup, isForbiddenAddress, isLoopbackAddress } from "../../src/s3/endpoint-guard.js";

const lookup = (policy: Parameters<typeof guardedLookup>[0], endpoint: string, host: string) =>
  new Promise<{ err: NodeJS.ErrnoException | null; address: unknown }>((resolve) => guardedLookup(policy, endpoint)(host, {}, (err, address) => resolve({ err, address })));

describe("endpoint guard", () => {
  it("knows loopback in every form and nothing else", () => {
    for (const ip of ["127.0.0.1", "127.255.0.9", "0.0.0.0", "::1", "::", "::ffff:127.0.0.1", "0:0:0:0:0:0:0:1", "::ffff:0.0.0.0"]) expect(isLoopbackAddress(ip), ip).toBe(true);
    for (const ip of ["10.0.0.1", "128.0.0.1", "::2", "fe80::1", "169.254.169.254", "::ffff:10.0.0.1", "2001:db8::1"]) expect(isLoopbackAddress(ip), ip).toBe(false);
    expect(isForbiddenAddress("127.0.0.1")).toBe(false);
  });

  it("refuses loopback only where the policy says so, and lets a listed endpoint through", () => {
    const shared = { allowed: [], refuseLoopback: true };
    for (const ep of ["127.0.0.1:9000", "localhost", "Localhost.:80", "foo.localhost", "[::1]:9000", "2130706433", "0x7f000001:1", "127.1", "0", "[::ffff:7f00:1]"]) {
      expect(() => checkEndpoint(ep, shared), ep).toThrow(/loopback/);
      expect(() => checkEndpoint(ep, { allowed: [] }), ep).not.toThrow();
    }
    expect(() => checkEndpoint("127.0.0.1:9000", { allowed: ["127.0.0.1:9000"], refuseLoopback: true })).not.toThrow();
    expect(() => checkEndpoint("minio.argo.svc:9000", shared)).not.toThrow();
  });

  it("refuses a name that resolves to loopback in the shared sidecar at connection time, unless the endpoint is listed", async () => {
    const refused = await lookup({ allowed: [], refuseLoopback: true }, "store.example:9000", "localhost");
    expect(refused.err?.message).toMatch(/resolves to (127\.0\.0\.1|::1), a loopback address/);
    expect((await lookup({ allowed: ["store.example:9000"], refuseLoopback: true }, "store.example:9000", "localhost")).err).toBeNull();
    expect((await lookup({ allowed: [] }, "", "localhost")).err).toBeNull();
  });
});
