// The lean HTTP/1.1 client of GetObject's data path (src/http/http1.ts) against
// a scripted server on loopback: bodies split at every odd place, chunked
// bodies, pauses, keep-alive reuse, early close, timeouts, cancellation.
import { type AddressInfo, type Server, type Socket, createServer } from "node:net";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createServer as createTlsServer } from "node:tls";
import { selfSignedCert } from "../../scripts/lib/minio.mjs";
import { randomBytes } from "node:crypto";
import { lookup } from "node:dns";
import { Agent as HttpAgent, get as httpGet } from "node:http";
import { checkingPeers } from "../../src/s3/targets.js";
import { peerCheck } from "../../src/s3/endpoint-guard.js";
import { afterEach, describe, expect, it } from "vitest";
import { type BodySink, Http1Pool, chunkStep } from "../../src/http/http1.js";
import { chunkState } from "../../src/http/http1-framing.js";
import { s3Error } from "../../src/s3/lean-requests.js";
import { within } from "../support/bounded.js";

type Script = (sock: Socket, request: string, n: number) => void;

let server: Server | undefined;
let connections = 0;

async function serve(script: Script): Promise<number> {
  connections = 0;
  let requests = 0;
  server = createServer((sock) => {
    connections++;
    let buf = "";
    sock.on("data", (d) => {
      buf += d.toString("latin1");
      while (buf.includes("\r\n\r\n")) {
        const end = buf.indexOf("\r\n\r\n") + 4;
        const req = buf.slice(0, end);
        buf = buf.slice(end);
        script(sock, req, requests++);
      }
    });
    sock.on("error", () => undefined);
  });
  await new Promise<void>((r) => server!.listen(0, "127.0.0.1", r));
  return (server.address() as AddressInfo).port;
}

afterEach(async () => {
  await new Promise((r) => (server ? server.close(r) : r(undefined)));
  server = undefined;
});

function pool(port: number, over: Partial<ConstructorParameters<typeof Http1Pool>[0]> = {}): Http1Pool {
  return new Http1Pool({
    host: "127.0.0.1",
    port,
    tls: undefined,
    lookup,
    maxSockets: 4,
    connectTimeoutMs: 2000,
    idleTimeoutMs: 2000,
    ...over,
  });
}

/** A sink with small, uneven spaces that pauses on every other hand-over. */
function collector(size: number, opts: { slow?: boolean } = {}): BodySink & { bytes(): Buffer } {
  const buf = Buffer.alloc(size);
  let filled = 0;
  let calls = 0;
  return {
    space: () => buf.subarray(filled, Math.min(buf.length, filled + 1 + ((filled * 7) % 5000))),
    took(n) {
      filled += n;
      calls++;
      if (opts.slow && calls % 2 === 0) return new Promise<void>((r) => setTimeout(r, 1));
    },
    bytes: () => buf.subarray(0, filled),
  };
}

/** Writes `data` in pieces of varying size with pauses between, so every boundary is exercised. */
async function dribble(sock: Socket, data: Buffer): Promise<void> {
  for (let off = 0, i = 0; off < data.length; i++) {
    const n = Math.min(data.length - off, [1, 7, 100, 4096, 65536, 3][i % 6]!);
    sock.write(data.subarray(off, off + n));
    off += n;
    if (i % 5 === 0) await new Promise((r) => setTimeout(r, 1));
  }
}

const GET = "GET /b/k HTTP/1.1\r\nhost: x\r\n\r\n";
const answer = <T>(p: Promise<T>, ms = 10_000) => within(p, ms, "the answer");

describe("lean HTTP/1.1 client", () => {
  it("receives a Content-Length body split at odd places, through a pausing sink, byte for byte", async () => {
    const body = randomBytes(300_000);
    const port = await serve(
      (sock) =>
        void dribble(
          sock,
          Buffer.concat([
            Buffer.from(`HTTP/1.1 206 Partial Content\r\nContent-Length: ${body.length}\r\nETag: "abc"\r\n\r\n`),
            body,
          ]),
        ),
    );
    const p = pool(port);
    const sink = collector(body.length, { slow: true });
    const r = await answer(p.request(GET, () => sink, undefined, 5000));
    expect(r.head.status).toBe(206);
    expect(r.head.headers["etag"]).toBe('"abc"');
    expect(r.received).toBe(body.length);
    expect(Buffer.compare(sink.bytes(), body)).toBe(0);
    p.close();
  });

  it("decodes a chunked body with extensions and trailers", async () => {
    const body = randomBytes(70_000);
    const parts = [body.subarray(0, 1), body.subarray(1, 40_000), body.subarray(40_000)];
    const wire = Buffer.concat([
      Buffer.from("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
      ...parts.flatMap((p, i) => [
        Buffer.from(`${p.length.toString(16)}${i === 1 ? ";ext=1" : ""}\r\n`),
        p,
        Buffer.from("\r\n"),
      ]),
      Buffer.from("0\r\nx-trailer: 1\r\n\r\n"),
    ]);
    const port = await serve((sock) => void dribble(sock, wire));
    const p = pool(port);
    const sink = collector(body.length, { slow: true });
    const r = await answer(p.request(GET, () => sink, undefined, 5000));
    expect(r.received).toBe(body.length);
    expect(Buffer.compare(sink.bytes(), body)).toBe(0);
    // and the connection is reused afterwards
    const again = await answer(p.request(GET, () => "collect", undefined, 5000));
    expect(Buffer.compare(again.body!, body)).toBe(0);
    expect(connections).toBe(1);
    p.close();
  });

  it("reuses a connection after an answer whose last bytes paused the sink", async () => {
    const body = randomBytes(10_000);
    const port = await serve((sock) =>
      sock.write(Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n`), body])),
    );
    const p = pool(port);
    for (let i = 0; i < 5; i++) {
      const buf = Buffer.alloc(body.length);
      let filled = 0;
      const sink: BodySink = {
        space: () => buf.subarray(filled),
        took: (n) => ((filled += n), new Promise<void>((r) => setTimeout(r, 2))),
      };
      await answer(p.request(GET, () => sink, undefined, 2000));
      expect(Buffer.compare(buf, body)).toBe(0);
    }
    expect(connections).toBe(1);
    p.close();
  });

  it("sends a request again on a new connection when a kept one was closed under it, before any answer", async () => {
    const port = await serve((sock, _req, n) => {
      if (n === 1)
        sock.destroy(); // the idle connection the server had given up on
      else sock.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    });
    const p = pool(port);
    await answer(p.request(GET, () => "collect", undefined, 2000));
    const again = await answer(p.request(GET, () => "collect", undefined, 2000));
    expect(again.body?.toString()).toBe("ok");
    expect(connections).toBe(2);
    p.close();
  });

  it("a request waiting for a connection slot ends at once when cancelled", async () => {
    const port = await serve(() => undefined); // never answers
    const p = pool(port, { maxSockets: 1 });
    const holder = new AbortController();
    const first = p
      .request(GET, () => "collect", holder.signal, 60_000)
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    const ac = new AbortController();
    const second = p
      .request(GET, () => "collect", ac.signal, 60_000)
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    setTimeout(() => ac.abort(new Error("cancelled")), 50);
    expect(await answer(second, 2000)).toBeInstanceOf(Error);
    holder.abort(); // the first one still held the only slot
    expect(await answer(first, 2000)).toBeInstanceOf(Error);
    p.close();
  });

  it("skips 100 Continue and collects an error answer, capped", async () => {
    const xml = "<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>";
    const port = await serve((sock, _req, n) => {
      if (n === 0)
        sock.write(
          `HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: ${xml.length}\r\n\r\n${xml}`,
        );
      else sock.write(`HTTP/1.1 500 Internal\r\nContent-Length: ${10_000_000}\r\n\r\n${"x".repeat(1_000_000)}`);
    });
    const p = pool(port);
    const r = await answer(p.request(GET, () => "collect", undefined, 5000));
    expect(r.head.status).toBe(404);
    const e = s3Error(r.head, r.body) as Error & { $metadata: { httpStatusCode: number } };
    expect(e.name).toBe("NoSuchKey");
    expect(e.message).toBe("The specified key does not exist.");
    expect(e.$metadata.httpStatusCode).toBe(404);
    const big = await answer(p.request(GET, () => "collect", undefined, 5000));
    expect(big.head.status).toBe(500);
    expect(big.body!.length).toBeLessThanOrEqual(256 * 1024);
    p.close();
  });

  it("fails a body cut short by the server, and uses a new connection next", async () => {
    const port = await serve((sock, _req, n) => {
      if (n === 0) {
        sock.write("HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n");
        sock.end(Buffer.alloc(5000));
      } else sock.write("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc");
    });
    const p = pool(port);
    const err = await answer(
      p
        .request(GET, () => collector(100_000), undefined, 5000)
        .then(
          () => undefined,
          (e: unknown) => e,
        ),
    );
    expect((err as { code?: string }).code).toBe("ECONNRESET");
    const sink = collector(3);
    await answer(p.request(GET, () => sink, undefined, 5000));
    expect(sink.bytes().toString()).toBe("abc");
    expect(connections).toBe(2);
    p.close();
  });

  it("refuses oversized heads, heads without framing and non-HTTP answers", async () => {
    for (const head of [
      `HTTP/1.1 200 OK\r\nx: ${"a".repeat(20_000)}\r\n\r\n`,
      "HTTP/1.1 200 OK\r\n\r\nabc",
      "SSH-2.0-OpenSSH\r\n\r\n",
    ]) {
      const port = await serve((sock) => sock.write(head));
      const p = pool(port);
      const err = await answer(
        p
          .request(GET, () => collector(10), undefined, 5000)
          .then(
            () => undefined,
            (e: unknown) => e,
          ),
      );
      expect((err as { code?: string }).code).toBe("EPROTO");
      p.close();
      await new Promise((r) => server!.close(r));
      server = undefined;
    }
  });

  it("gives up on a silent server after the idle limit, and on cancellation at once", async () => {
    const port = await serve((sock) => sock.write("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"));
    const p = pool(port);
    const err = await answer(
      p
        .request(GET, () => collector(10), undefined, 300)
        .then(
          () => undefined,
          (e: unknown) => e,
        ),
    );
    expect((err as { code?: string }).code).toBe("ETIMEDOUT");
    const ac = new AbortController();
    const pending = p
      .request(GET, () => collector(10), ac.signal, 60_000)
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    setTimeout(() => ac.abort(), 50);
    const aborted = await answer(pending, 2000);
    expect((aborted as Error).name).toBe("AbortError");
    p.close();
  });

  it("resolves host names through the pool's lookup (where the endpoint guard sits), and fails with what it refuses", async () => {
    const port = await serve((sock) => sock.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"));
    const asked: string[] = [];
    const spy = ((host: string, opts: object, cb: (...a: unknown[]) => void) => {
      asked.push(host);
      lookup(host, opts, cb as never);
    }) as unknown as typeof lookup;
    const p = pool(port, { host: "localhost", lookup: spy });
    expect((await answer(p.request(GET, () => "collect", undefined, 2000))).body?.toString()).toBe("ok");
    expect(asked).toEqual(["localhost"]);
    p.close();
    const refusing = ((_h: string, _o: object, cb: (e: Error) => void) =>
      cb(
        Object.assign(new Error("refused: resolves to 169.254.170.23"), { code: "EREFUSED" }),
      )) as unknown as typeof lookup;
    const q = pool(port, { host: "metadata.test", lookup: refusing });
    const err = await answer(
      q
        .request(GET, () => "collect", undefined, 2000)
        .then(
          () => undefined,
          (e: unknown) => e,
        ),
    );
    expect(String(err)).toContain("169.254.170.23");
    q.close();
  });

  it("chunk framing: sizes in hex, bad sizes refused", () => {
    const s = chunkState();
    expect(chunkStep(s, Buffer.from("1A\r\n"), 0)).toEqual({ off: 4 });
    expect([s.at, s.left]).toEqual(["data", 26]);
    expect(chunkStep(chunkState(), Buffer.from("zz\r\n"), 0).error).toMatch(/bad chunk size/);
  });

  it("over TLS, a head that ends inside a later chunk keeps every body byte when the sink pauses", async () => {
    // TLS answers arrive as Node's decrypted chunks (copied, not read in place): the head's
    // first bytes alone, then a 16 KiB chunk holding the head's end, the body's start and
    // more than the head buffer takes; the sink pauses while that is being handed over.
    const dir = mkdtempSync(join(tmpdir(), "http1-tls-"));
    try {
      const { cert, key } = await selfSignedCert(dir);
      const body = randomBytes(300_000);
      const head = Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\nETag: "abc"\r\n\r\n`);
      const tlsServer = createTlsServer({ cert: readFileSync(cert), key: readFileSync(key) }, (sock) => {
        sock.on("error", () => undefined);
        sock.on("data", () => {
          sock.write(head.subarray(0, 10));
          setTimeout(() => sock.write(Buffer.concat([head.subarray(10), body])), 20);
        });
      });
      await new Promise<void>((r) => tlsServer.listen(0, "127.0.0.1", r));
      const port = (tlsServer.address() as AddressInfo).port;
      const p = pool(port, { tls: { ca: [readFileSync(cert, "utf8")] } });
      try {
        for (let round = 0; round < 3; round++) {
          const sink = collector(body.length, { slow: true });
          const r = await answer(p.request(GET, () => sink, undefined, 5000));
          expect([r.head.status, r.received]).toEqual([200, body.length]);
          expect(sink.bytes().equals(body)).toBe(true);
        }
      } finally {
        p.close();
        await new Promise((r) => tlsServer.close(r));
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("the connected peer", () => {
  it("is judged on every new socket: a refused address ends the connection before a request is written, whatever the lookup said", async () => {
    let requests = 0;
    const port = await serve((sock) => {
      requests++;
      sock.end("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
    });
    const refused = pool(port, { checkPeer: peerCheck({ allowed: [], refuseLoopback: true }, "store.example") });
    await expect(answer(refused.request(GET, () => "collect", undefined, 5000))).rejects.toThrow(
      /endpoint 127\.0\.0\.1:\d+: connected to 127\.0\.0\.1, a loopback address/,
    );
    expect(requests).toBe(0);
    const allowed = pool(port, { checkPeer: peerCheck({ allowed: [], refuseLoopback: false }, "store.example") });
    expect((await answer(allowed.request(GET, () => "collect", undefined, 5000))).head.status).toBe(200);
  });

  it("the SDK's agents judge theirs the same way", async () => {
    const port = await serve((sock) => sock.end("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"));
    const agent = checkingPeers(new HttpAgent(), peerCheck({ allowed: [], refuseLoopback: true }, "store.example"));
    const err = await new Promise<Error>((resolve) =>
      httpGet({ host: "127.0.0.1", port, agent }, () => resolve(new Error("answered"))).on("error", resolve),
    );
    expect(err.message).toMatch(/connected to 127\.0\.0\.1, a loopback address/);
    const plain = checkingPeers(new HttpAgent(), peerCheck({ allowed: [] }, "store.example"));
    const status = await new Promise<number>((resolve, reject) =>
      httpGet({ host: "127.0.0.1", port, agent: plain }, (res) => (res.resume(), resolve(res.statusCode ?? 0))).on(
        "error",
        reject,
      ),
    );
    expect(status).toBe(200);
  });
});
