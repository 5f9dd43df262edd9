// The shared sidecar's fair shares (issue #34 case 1): what one author can hold
// of a slot pool, whatever number of buckets, ports and hosts they spread over.
import { describe, expect, it } from "vitest";
import { type Tenant, sharedPolicy, tenantOf } from "../../src/admission/shared-policy.js";
import { parseConfig } from "../../src/config/parse.js";
import { readSettings, type Settings } from "../../src/settings.js";
import { Slots, slotGroups } from "../../src/util/slots.js";

const MiB = 1024 * 1024;

function policyWith(env: Record<string, string>) {
  const s = readSettings(["/tmp/plugin.sock"], { ARGO_S3_PLUGIN_SHARED: "true", ...env }, 256 * MiB, true) as Settings;
  return { policy: sharedPolicy(s), transfers: s.maxConcurrentTransfers };
}

const tenant = (host: string, port: number, bucket = "b"): Tenant => ({
  host,
  endpoint: `${host}:${port}`,
  tenant: `${host}:${port} ${bucket} default chain`,
});

/** Takes slots for `tenants` in turn until one would wait; how many were taken. */
async function fill(
  pool: Slots,
  shares: (t: Tenant) => readonly { key: string; fraction: number }[],
  tenants: Tenant[],
): Promise<number> {
  const ac = new AbortController();
  let taken = 0;
  for (let i = 0; i < pool.limit * 2; i++) {
    const t = tenants[i % tenants.length]!;
    const take = pool.take(ac.signal, slotGroups(shares(t), pool.limit));
    take.catch(() => undefined); // the one left waiting is ended by the abort below
    const got = await Promise.race([take, new Promise<"waits">((r) => setTimeout(() => r("waits"), 20))]);
    if (got === "waits") break;
    taken++;
  }
  ac.abort();
  return taken;
}

describe("shared-mode fair shares", () => {
  it("one host on two ports, a bucket per call, holds three quarters of the transfer slots, not all of them", async () => {
    const { policy, transfers } = policyWith({});
    expect(transfers).toBe(19);
    const pool = new Slots(transfers);
    const author = Array.from({ length: 8 }, (_, i) => tenant("hostile.example", 9000 + (i % 2), `b${i}`));
    expect(await fill(pool, policy.shares, author)).toBe(14);
    // The rest stays for a store on another host.
    expect(await fill(pool, policy.shares, [tenant("minio", 9000)])).toBe(5);
  });

  it("with the operator's stores named, an author's stores on any number of hosts together hold half; the operator's store keeps the rest", async () => {
    const { policy, transfers } = policyWith({ ARGO_S3_PLUGIN_OPERATOR_ENDPOINTS: "minio:9000" });
    const pool = new Slots(transfers);
    const author = Array.from({ length: 12 }, (_, i) => tenant(`10.0.0.${i}`, 9000 + i, `b${i}`));
    expect(await fill(pool, policy.shares, author)).toBe(9);
    expect(await fill(pool, policy.shares, [tenant("minio", 9000, "repo")])).toBe(10);
    // Listed by host, any port is the operator's; AWS S3 itself (no endpoint) is never an author's store.
    const byHost = policyWith({ ARGO_S3_PLUGIN_OPERATOR_ENDPOINTS: "minio" }).policy;
    expect(byHost.shares(tenant("minio", 9001)).map((g) => g.key)).toEqual(["tenant minio:9001 b default chain"]);
    expect(
      byHost.shares({ host: "aws", endpoint: "aws:443", tenant: "aws:443 b default chain" }).map((g) => g.key),
    ).toEqual(["tenant aws:443 b default chain"]);
    expect(byHost.shares(tenant("evil", 9000)).map((g) => g.key)).toEqual([
      "tenant evil:9000 b default chain",
      "host evil",
      "authors",
    ]);
    // Written as an operator might: a scheme, capitals, a trailing dot, a bracketed IPv6 address.
    const spelled = policyWith({ ARGO_S3_PLUGIN_OPERATOR_ENDPOINTS: "http://MinIO.:9000/, [fd00::5]:9000" }).policy;
    expect(spelled.shares(tenant("minio", 9000)).map((g) => g.key)).toEqual(["tenant minio:9000 b default chain"]);
    expect(spelled.shares(tenant("fd00::5", 9000)).map((g) => g.key)).toEqual(["tenant fd00::5:9000 b default chain"]);
  });

  it("a tenant is what the connection sees: case, trailing dot and default port folded; credentials apart", () => {
    const of = (text: string) => tenantOf({ cfg: parseConfig(`bucket: b\n${text}`) });
    expect(of("endpoint: MINIO.:9000\ninsecure: true")).toEqual({
      host: "minio",
      endpoint: "minio:9000",
      tenant: "minio:9000 b default chain",
    });
    expect(of("endpoint: minio\ninsecure: true").endpoint).toBe("minio:80");
    expect(of("endpoint: minio").endpoint).toBe("minio:443");
    expect(of("").host).toBe("aws");
    expect(
      of("endpoint: minio:9000\naccessKeySecret: {name: s, key: a}\nsecretKeySecret: {name: s, key: b}").tenant,
    ).toBe("minio:9000 b secret s");
    const { policy } = policyWith({});
    expect(policy.sharesOf({ cfg: parseConfig("bucket: b\nendpoint: Evil.Example:9001") }).map((g) => g.key)).toEqual([
      "tenant evil.example:9001 b default chain",
      "host evil.example",
    ]);
  });

  it("a workflow pod (not shared) caps no one", () => {
    const s = readSettings(
      ["/tmp/plugin.sock"],
      { ARGO_S3_PLUGIN_SHARED: "false", ARGO_S3_PLUGIN_OPERATOR_ENDPOINTS: "minio" },
      256 * MiB,
      true,
    ) as Settings;
    expect(sharedPolicy(s).shares(tenant("evil", 9000))).toEqual([]);
  });
});
