// An HTTP proxy in front of a real MinIO that injects faults on demand: S3's
// own 503 SlowDown answer, a dropped connection, a damaged body, or an answer
// rewritten into one MinIO would never give (listings with keys that no real
// object can have here). Everything else is passed through byte for byte, so
// the plugin still talks to a real S3 server.
import { type IncomingMessage, type Server, createServer, request } from "node:http";

/**
 * 503: S3's SlowDown answer. reset: connection dropped. corrupt: one body byte flipped. truncate: body cut short.
 * lose-answer: the request reaches the store and is carried out, but the connection drops before its answer.
 * slow-answer: the store's answer is held back for 1.5 s.
 */
export type Fault = "503" | "reset" | "corrupt" | "truncate" | "lose-answer" | "slow-answer";

export interface FaultProxy {
  endpoint: string;
  /** Fail the next `count` requests matching `match` with `fault`. */
  inject(count: number, fault: Fault, match?: (req: IncomingMessage) => boolean): void;
  /** Drop these response headers (lower case) from every answer to a request matching `match`, as a store that ignores them would; no argument: stop. */
  dropHeaders(names?: string[], match?: (req: IncomingMessage) => boolean): void;
  /** Edit the response headers of every answer to a request matching `match`; no argument: stop. */
  editHeaders(
    edit?: (headers: Record<string, string | string[] | undefined>) => void,
    match?: (req: IncomingMessage) => boolean,
  ): void;
  /** Rewrite the (buffered) body of every answer to a request matching `match`; no argument: stop. */
  rewrite(edit?: (body: string, req: IncomingMessage) => string, match?: (req: IncomingMessage) => boolean): void;
  injected: number;
  requests: number;
  stop(): Promise<void>;
}

export async function startFaultProxy(upstreamPort: number): Promise<FaultProxy> {
  let pending: { count: number; fault: Fault; match: (req: IncomingMessage) => boolean } | undefined;
  let dropper: { names: string[]; match: (req: IncomingMessage) => boolean } | undefined;
  let editor:
    | {
        edit: (headers: Record<string, string | string[] | undefined>) => void;
        match: (req: IncomingMessage) => boolean;
      }
    | undefined;
  let rewriter:
    { edit: (body: string, req: IncomingMessage) => string; match: (req: IncomingMessage) => boolean } | undefined;
  const state = { injected: 0, requests: 0 };
  const server: Server = createServer((req, res) => {
    state.requests++;
    let tamper: Fault | undefined;
    if (
      pending &&
      pending.count > 0 &&
      pending.match(req) &&
      ["corrupt", "truncate", "lose-answer", "slow-answer"].includes(pending.fault)
    ) {
      pending.count--;
      state.injected++;
      tamper = pending.fault;
    } else if (pending && pending.count > 0 && pending.match(req)) {
      pending.count--;
      state.injected++;
      req.resume();
      if (pending.fault === "reset") {
        req.socket.destroy();
        return;
      }
      res.writeHead(503, { "content-type": "application/xml" });
      res.end(
        '<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>',
      );
      return;
    }
    const up = request(
      { host: "127.0.0.1", port: upstreamPort, method: req.method, path: req.url, headers: req.headers },
      (upRes) => {
        if (tamper === "lose-answer") {
          upRes.resume();
          upRes.on("end", () => res.socket?.destroy());
          return;
        }
        if (tamper === "slow-answer" || (!tamper && rewriter?.match(req))) {
          const edit = tamper ? (b: string) => b : rewriter!.edit;
          const parts: Buffer[] = [];
          upRes.on("data", (c: Buffer) => parts.push(c));
          upRes.on("end", () => {
            const body = Buffer.from(edit(Buffer.concat(parts).toString("utf8"), req));
            setTimeout(
              () => {
                if (res.destroyed) return;
                res.writeHead(upRes.statusCode ?? 502, { ...upRes.headers, "content-length": String(body.length) });
                res.end(body);
              },
              tamper ? 1500 : 0,
            );
          });
          return;
        }
        const headers = { ...upRes.headers };
        if (dropper?.match(req)) for (const n of dropper.names) delete headers[n];
        if (editor?.match(req)) editor.edit(headers);
        res.writeHead(upRes.statusCode ?? 502, headers);
        if (!tamper) {
          upRes.pipe(res);
          return;
        }
        let sent = 0;
        const total = Number(upRes.headers["content-length"] ?? 0);
        upRes.on("data", (chunk: Buffer) => {
          if (tamper === "corrupt" && sent === 0 && chunk.length > 0) {
            chunk = Buffer.from(chunk);
            chunk[0] = chunk[0]! ^ 0xff; // same length, different bytes
          }
          if (tamper === "truncate" && sent + chunk.length >= total / 2) {
            res.write(chunk.subarray(0, Math.max(0, Math.floor(total / 2) - sent)));
            upRes.destroy();
            res.socket?.destroy();
            return;
          }
          sent += chunk.length;
          res.write(chunk);
        });
        upRes.on("end", () => res.end());
      },
    );
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
    editHeaders(edit, match = () => true) {
      editor = edit ? { edit, match } : undefined;
    },
    dropHeaders(names, match = () => true) {
      dropper = names ? { names, match } : undefined;
    },
    rewrite(edit, match = () => true) {
      rewriter = edit ? { edit, match } : undefined;
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
