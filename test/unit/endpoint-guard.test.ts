// The endpoint guard's address rules, and its lookup: what a name resolves to
// is judged at every connection, so a name that points at a forbidden (or, in
// the shared sidecar, loopback) address is refused although its text passes.
import { describe, expect, it } from "vitest";
import { checkEndpoint, guardedLookup, isForbiddenAddress, isLoopbackAddress } from "../../src/s3/endpoint-guard.js";

const lookup = (policy: Parameters<typeof guardedLookup>[0], endpoint: string, host: string) =>
  new Promise<{ err: NodeJS.ErrnoException | null; address: unknown }>((resolve) =>
    guardedLookup(policy, endpoint)(host, {}, (err, address) => resolve({ err, address })),
  );

describe("endpoint guard", () => {
  it("knows loopback in every form and nothing else", () => {
    for (const ip of [
      "127.0.0.1",
      "127.255.0.9",
      "0.0.0.0",
      "::1",
      "::",
      "::ffff:127.0.0.1",
      "0:0:0:0:0:0:0:1",
      "::ffff:0.0.0.0",
    ])
      expect(isLoopbackAddress(ip), ip).toBe(true);
    for (const ip of ["10.0.0.1", "128.0.0.1", "::2", "fe80::1", "169.254.169.254", "::ffff:10.0.0.1", "2001:db8::1"])
      expect(isLoopbackAddress(ip), ip).toBe(false);
    expect(isForbiddenAddress("127.0.0.1")).toBe(false);
  });

  it("sees IPv4 inside NAT64's well-known prefix (64:ff9b::/96): metadata there is refused always, loopback in the shared sidecar", () => {
    for (const ip of ["64:ff9b::a9fe:a9fe", "64:ff9b::169.254.169.254", "64:ff9b:0:0:0:0:a9fe:1"])
      expect(isForbiddenAddress(ip), ip).toBe(true);
    for (const ip of ["64:ff9b::7f00:1", "64:ff9b::127.0.0.1"]) expect(isLoopbackAddress(ip), ip).toBe(true);
    for (const ip of ["64:ff9b::a00:1", "64:ff9b:1::a9fe:a9fe", "2001:db8::a9fe:a9fe"]) {
      expect(isForbiddenAddress(ip), ip).toBe(false);
      expect(isLoopbackAddress(ip), ip).toBe(false);
    }
    expect(() => checkEndpoint("[64:ff9b::a9fe:a9fe]:80", { allowed: [] })).toThrow();
    expect(() => checkEndpoint("[64:ff9b::7f00:1]:9000", { allowed: [], refuseLoopback: true })).toThrow(/loopback/);
  });

  it("refuses loopback only where the policy says so, and lets a listed endpoint through", () => {
    const shared = { allowed: [], refuseLoopback: true };
    for (const ep of [
      "127.0.0.1:9000",
      "localhost",
      "Localhost.:80",
      "foo.localhost",
      "[::1]:9000",
      "2130706433",
      "0x7f000001:1",
      "127.1",
      "0",
      "[::ffff:7f00:1]",
    ]) {
      expect(() => checkEndpoint(ep, shared), ep).toThrow(/loopback/);
      expect(() => checkEndpoint(ep, { allowed: [] }), ep).not.toThrow();
    }
    expect(() => checkEndpoint("127.0.0.1:9000", { allowed: ["127.0.0.1:9000"], refuseLoopback: true })).not.toThrow();
    expect(() => checkEndpoint("minio.argo.svc:9000", shared)).not.toThrow();
  });

  it("refuses a name that resolves to loopback in the shared sidecar at connection time, unless the endpoint is listed", async () => {
    const refused = await lookup({ allowed: [], refuseLoopback: true }, "store.example:9000", "localhost");
    expect(refused.err?.message).toMatch(/resolves to (127\.0\.0\.1|::1), a loopback address/);
    expect(
      (await lookup({ allowed: ["store.example:9000"], refuseLoopback: true }, "store.example:9000", "localhost")).err,
    ).toBeNull();
    expect((await lookup({ allowed: [] }, "", "localhost")).err).toBeNull();
  });
});
