// Runs in a worker thread (see isolated-http1.ts): the lean HTTP client of
// src/http/http1.ts doing the exchanges it is told to, reporting each outcome.
// A client that spins or never settles cannot stall the test's own thread.
import { lookup } from "node:dns";
import { parentPort } from "node:worker_threads";
import { type BodySink, Http1Pool } from "../../src/http/http1.js";

export interface DriverRequest {
  /** Body capacity the sink offers; "collect" for an error-answer style read. */
  capacity: number | "collect";
  timeoutMs: number;
  head?: string;
  /** The sink holds reading back on every n-th hand-over (default 3; 1: every one, the last included). */
  pauseEvery?: number;
  /** Wait this long before sending the request (a connection at rest meanwhile). */
  delayMs?: number;
}

export interface DriverOutcome {
  ok: boolean;
  status?: number;
  headers?: Record<string, string>;
  body?: string; // base64
  code?: string;
  message?: string;
}

function sinkOf(capacity: number, pauseEvery: number): BodySink & { bytes(): Buffer } {
  const buf = Buffer.alloc(capacity);
  let filled = 0;
  let calls = 0;
  return {
    // Uneven spaces, so every split point of the body is met.
    space: () => buf.subarray(filled, Math.min(capacity, filled + 1 + ((filled * 7 + calls) % 3000))),
    took(n) {
      filled += n;
      calls++;
      if (calls % pauseEvery === 0) return new Promise<void>((r) => setImmediate(r));
    },
    bytes: () => buf.subarray(0, filled),
  };
}

const GET = "GET /b/k HTTP/1.1\r\nhost: x\r\n\r\n";

async function drive(m: { id: number; port: number; requests: DriverRequest[] }): Promise<void> {
  const pool = new Http1Pool({
    host: "127.0.0.1",
    port: m.port,
    tls: undefined,
    lookup,
    maxSockets: 1,
    connectTimeoutMs: 5000,
    idleTimeoutMs: 5000,
  });
  const outcomes: DriverOutcome[] = [];
  for (const r of m.requests) {
    if (r.delayMs) await new Promise((ok) => setTimeout(ok, r.delayMs));
    const sink = r.capacity === "collect" ? undefined : sinkOf(r.capacity, r.pauseEvery ?? 3);
    try {
      const x = await pool.request(r.head ?? GET, () => sink ?? "collect", undefined, r.timeoutMs);
      outcomes.push({
        ok: true,
        status: x.head.status,
        headers: x.head.headers,
        body: (sink ? sink.bytes() : (x.body ?? Buffer.alloc(0))).toString("base64"),
      });
    } catch (e) {
      const err = e as { code?: string; message?: string };
      outcomes.push({ ok: false, code: err.code, message: err.message });
    }
  }
  pool.close();
  parentPort!.postMessage({ id: m.id, outcomes });
}

parentPort!.on("message", (m: { id: number; port: number; requests: DriverRequest[] }) => void drive(m));
