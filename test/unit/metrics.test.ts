// The metrics endpoint is reachable by anyone who can reach the pod, and its
// labels are fed by stores that workflow authors choose: every label takes
// values from a fixed set, and the server holds few connections, none for long.
import { connect, type Socket } from "node:net";
import type { AddressInfo } from "node:net";
import { afterEach, expect, it } from "vitest";
import { METRICS_SERVER_LIMITS, Metrics } from "../../src/metrics.js";
import { until, within } from "../support/bounded.js";

const observed = { budget: () => ({ inUse: 0, limit: 1, waiting: 0 }), slots: () => [], tenants: () => 0 };
const open: Socket[] = [];
afterEach(() => {
  for (const s of open.splice(0)) s.destroy();
});

it("a store answering hundreds of distinct statuses adds no series: unknown statuses and operations are 'other'", async () => {
  const m = new Metrics(observed);
  for (let status = 100; status < 900; status++) m.s3Request({ s3: "HeadObject", status, attempts: 1 });
  m.s3Request({ s3: "x".repeat(500), status: 200, attempts: 1 });
  m.s3Request({ s3: "Get Object\n", status: 200, attempts: 1 });
  m.s3Request({ s3: "GetObject", status: undefined, attempts: 3 });
  const series = (await m.registry.getSingleMetric("argo_s3_plugin_s3_requests_total")!.get()).values;
  const statuses = new Set(series.map((v) => String(v.labels["status"])));
  expect(statuses.size).toBeLessThanOrEqual(23);
  expect(statuses.has("other")).toBe(true);
  expect(statuses.has("404")).toBe(true);
  expect(statuses.has("799")).toBe(false);
  expect(new Set(series.map((v) => v.labels["operation"]))).toEqual(new Set(["HeadObject", "GetObject", "other"]));
  // No answer at all (a reset, a timeout) is status 0, as the README says.
  expect(series.find((v) => v.labels["operation"] === "GetObject")?.labels["status"]).toBe("0");
  const other = series.find((v) => v.labels["status"] === "other" && v.labels["operation"] === "HeadObject")!;
  expect(other.value).toBe(800 - 21); // every status outside S3's set, counted once each
});

it("binds where told, holds at most maxConnections, closes idle ones, and still serves a scrape afterwards", async () => {
  const limits = { ...METRICS_SERVER_LIMITS, maxConnections: 4, idleMs: 600 };
  const server = await new Metrics(observed).serve(0, "127.0.0.1", () => undefined, limits);
  try {
    expect((server.address() as AddressInfo).address).toBe("127.0.0.1");
    const port = (server.address() as AddressInfo).port;
    const closed: boolean[] = [];
    for (let i = 0; i < 40; i++) {
      const s = connect(port, "127.0.0.1");
      s.on("error", () => undefined);
      const idx = closed.push(false) - 1;
      s.on("close", () => (closed[idx] = true));
      open.push(s);
    }
    await until(
      "the connections past the cap are closed",
      () => closed.filter((c) => !c).length <= limits.maxConnections,
      10_000,
    );
    await until("idle connections are closed", () => closed.every(Boolean), 10_000);
    const res = await within(fetch(`http://127.0.0.1:${port}/metrics`), 10_000, "a scrape after the idle flood");
    expect(res.status).toBe(200);
    expect(await res.text()).toContain("argo_s3_plugin_buffer_bytes_limit 1");
  } finally {
    server.close();
  }
});
