// An HTTP proxy in front of a real MinIO that injects faults on demand: S3's
// own 503 SlowDown answer, or a dropped connection. Everything else is passed
// through byte for byte, so the plugin still talks to a real S3 server.
import { type IncomingMessage, type Server, createServer, request } from "node:http";

export type Fault = "503" | "reset";

export interface FaultProxy {
  endpoint: string;
  /** Fail the next `count` requests matching `match` with `fault`. */
  inject(count: number, fault: Fault, match?: (req: IncomingMessage) => boolean): void;
  injected: number;
  requests: number;
  stop(): Promise<void>;
}

export async function startFaultProxy(upstreamPort: number): Promise<FaultProxy> {
  let pending: { count: number; fault: Fault; match: (req: IncomingMessage) => boolean } | undefined;
  const state = { injected: 0, requests: 0 };
  const server: Server = createServer((req, res) => {
    state.requests++;
    if (pending && pending.count > 0 && pending.match(req)) {
      pending.count--;
      state.injected++;
      req.resume();
      if (pending.fault === "reset") {
        req.socket.destroy();
        return;
      }
      res.writeHead(503, { "content-type": "application/xml" });
      res.end('<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>');
      return;
    }
    const up = request({ host: "127.0.0.1", port: upstreamPort, method: req.method, path: req.url, headers: req.headers }, (upRes) => {
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      upRes.pipe(res);
    });
    up.on("error", () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const addr = server.address();
  const port = typeof addr === "object" && addr ? addr.port : 0;
  return {
    endpoint: `127.0.0.1:${port}`,
    inject(count, fault, match = () => true) {
      pending = { count, fault, match };
    },
    get injected() {
      return state.injected;
    },
    get requests() {
      return state.requests;
    },
    stop: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
