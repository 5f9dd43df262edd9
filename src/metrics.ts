// Prometheus metrics, opt-in (ARGO_S3_PLUGIN_METRICS_PORT; deploy/ turns them
// on for the long-lived argo-server sidecar). prom-client keeps the counters
// and writes the exposition; this module only names what is counted. Labels
// are methods, outcomes, S3 operations and status codes: never a bucket, key
// or endpoint, which any workflow author chooses (unbounded cardinality, and
// other tenants' names on a shared scrape).
import type { S3RequestEnded } from "./s3/events.js";
import { createServer, type Server } from "node:http";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import { listen } from "./util/listen.js";

const PREFIX = "argo_s3_plugin_";

/**
 * HTTP statuses S3 and its look-alikes answer with, and 0 for no answer: the only
 * values of the status label. A hostile store may answer anything; every other
 * status is counted as "other", so no store can add series.
 */
const S3_STATUSES = new Set([
  0, 200, 204, 206, 301, 304, 307, 400, 401, 403, 404, 405, 409, 411, 412, 416, 429, 500, 501, 502, 503, 504,
]);

/** What the metrics server holds for its scrapers: a few connections, none for long. */
export const METRICS_SERVER_LIMITS: { maxConnections: number; idleMs: number; headersMs: number; requestMs: number } = {
  maxConnections: 16,
  idleMs: 10_000,
  headersMs: 5_000,
  requestMs: 10_000,
};

export interface Observed {
  /** Buffer budget: bytes lent out, the limit, and requests waiting for a buffer. */
  budget: () => { inUse: number; limit: number; waiting: number };
  /** Slot pools: in use and waiting, per pool; and the tenants holding slots. */
  slots: () => { pool: string; used: number; waiting: number; limit: number }[];
  tenants: () => number;
}

export class Metrics {
  readonly registry = new Registry();
  private readonly rpcs = new Counter({
    name: `${PREFIX}rpcs_total`,
    help: "RPCs served, by method and outcome (ok, cancelled, storage, not-found, credentials, invalid-config, local, ...)",
    labelNames: ["method", "outcome"],
    registers: [this.registry],
  });
  private readonly rpcSeconds = new Histogram({
    name: `${PREFIX}rpc_duration_seconds`,
    help: "Time from an RPC's start to its answer, by method",
    labelNames: ["method"],
    buckets: [0.005, 0.025, 0.1, 0.25, 1, 2.5, 10, 30, 60, 300, 900],
    registers: [this.registry],
  });
  private readonly bytes = new Counter({
    name: `${PREFIX}transferred_bytes_total`,
    help: "Artifact bytes moved by RPCs that completed, by method",
    labelNames: ["method"],
    registers: [this.registry],
  });
  private readonly s3 = new Counter({
    name: `${PREFIX}s3_requests_total`,
    help: "S3 requests, by operation and HTTP status (0: no answer; other: a status S3 does not use)",
    labelNames: ["operation", "status"],
    registers: [this.registry],
  });
  private readonly retries = new Counter({
    name: `${PREFIX}s3_retries_total`,
    help: "Extra attempts S3 requests took, by operation",
    labelNames: ["operation"],
    registers: [this.registry],
  });

  constructor(observed: Observed) {
    collectDefaultMetrics({ register: this.registry, prefix: PREFIX });
    const r = [this.registry];
    new Gauge({
      name: `${PREFIX}buffer_bytes_in_use`,
      help: "Transfer buffer budget lent out",
      registers: r,
      collect() {
        this.set(observed.budget().inUse);
      },
    });
    new Gauge({
      name: `${PREFIX}buffer_bytes_limit`,
      help: "Transfer buffer budget",
      registers: r,
      collect() {
        this.set(observed.budget().limit);
      },
    });
    new Gauge({
      name: `${PREFIX}buffer_waiting`,
      help: "Buffer requests waiting because the budget (or the caller's fair share of it) is spent",
      registers: r,
      collect() {
        this.set(observed.budget().waiting);
      },
    });
    const slotGauge = (what: "used" | "waiting" | "limit", help: string) =>
      new Gauge({
        name: `${PREFIX}slots_${what === "used" ? "in_use" : what}`,
        help,
        labelNames: ["pool"],
        registers: r,
        collect() {
          for (const p of observed.slots()) this.set({ pool: p.pool }, p[what]);
        },
      });
    slotGauge("used", "Slots held, by pool (transfers, listings)");
    slotGauge("waiting", "Calls waiting for a slot, by pool");
    slotGauge("limit", "Slots a pool has");
    new Gauge({
      name: `${PREFIX}tenants_active`,
      help: "Tenants (endpoint, bucket, credential source) holding slots now",
      registers: r,
      collect() {
        this.set(observed.tenants());
      },
    });
  }

  rpc(method: string, outcome: string, seconds: number, bytes: number | undefined): void {
    this.rpcs.inc({ method, outcome });
    this.rpcSeconds.observe({ method }, seconds);
    if (bytes !== undefined && outcome === "ok") this.bytes.inc({ method }, bytes);
  }

  s3Request(e: Pick<S3RequestEnded, "s3" | "status" | "attempts">): void {
    // Labels from a fixed set: a hostile store chooses statuses, and operation names are checked all the same.
    const operation = /^[A-Za-z]{1,40}$/.test(e.s3) ? e.s3 : "other";
    const code = e.status ?? 0; // no answer (a reset, a timeout) is 0
    const status = S3_STATUSES.has(code) ? String(code) : "other";
    this.s3.inc({ operation, status });
    const attempts = e.attempts ?? 1;
    if (attempts > 1) this.retries.inc({ operation }, attempts - 1);
  }

  /**
   * Serves GET /metrics on `port` at `host` (undefined: every address, as Prometheus
   * scrapes the pod's IP). At most METRICS_SERVER_LIMITS.maxConnections at once (more are
   * closed on accept), and a connection that sends nothing for idleMs is closed: an idle
   * flood cannot hold the process's memory or descriptors.
   */
  async serve(
    port: number,
    host: string | undefined,
    onError: (e: Error) => void,
    limits: typeof METRICS_SERVER_LIMITS = METRICS_SERVER_LIMITS,
  ): Promise<Server> {
    const server = createServer((req, res) => {
      if (req.method !== "GET" || (req.url ?? "").split("?")[0] !== "/metrics") {
        res.writeHead(404).end();
        return;
      }
      this.registry.metrics().then(
        (text) => res.writeHead(200, { "content-type": this.registry.contentType }).end(text),
        (e: unknown) => res.writeHead(500).end(String(e)),
      );
    });
    server.maxConnections = limits.maxConnections;
    server.headersTimeout = limits.headersMs;
    server.requestTimeout = limits.requestMs;
    server.keepAliveTimeout = limits.idleMs;
    server.setTimeout(limits.idleMs, (socket) => socket.destroy());
    await listen(server, { port, host }, onError);
    server.unref();
    return server;
  }
}
