// A minimal HTTP/1.1 client for the data path's two exchanges: a bodiless
// request whose answer body is poured into buffers the caller hands out (GET),
// and a request with its body in one buffer and a small answer (PUT). It exists for the
// data path of GetObject, where Node's general client costs a fresh 64 KiB
// Buffer, a stream event and a promise per chunk, and the engine then copies
// every byte once more into its write batch. Here, on plain TCP, the kernel
// reads straight into the caller's buffer (net's `onread`), so a downloaded
// byte is copied once (socket → batch) before it is written to the file. Over
// TLS, Node decrypts into its own chunks and they are copied into the buffers.
//
// Everything else (status line, headers, keep-alive, Content-Length, chunked
// bodies, timeouts, cancellation) is what an S3 answer needs and no more.
import { type Socket, connect as netConnect } from "node:net";
import { type LookupFunction } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { Slots } from "../util/slots.js";

/** Where an answer's body goes: space for the next bytes, and notice of what arrived there. */
export interface BodySink {
  /** A buffer to receive the next bytes (at least one byte long). */
  space(): Buffer;
  /** `n` bytes were placed at the start of the last space(); a promise pauses reading until it settles. */
  took(n: number): void | Promise<void>;
}

export interface ResponseHead {
  status: number;
  /** Header names in lower case; repeated headers joined with ", ". */
  headers: Record<string, string>;
}

/** What the caller does with an answer once its head is read: a sink for the body, or "collect" it (capped). */
export type OnHead = (head: ResponseHead) => BodySink | "collect";

export interface ExchangeResult {
  head: ResponseHead;
  /** The body, when the caller chose to collect it. */
  body?: Buffer;
  /** Body bytes received. */
  received: number;
}

export interface PoolOptions {
  host: string;
  port: number;
  tls: { ca?: string[] | undefined; servername?: string } | undefined;
  lookup: LookupFunction;
  maxSockets: number;
  connectTimeoutMs: number;
  idleTimeoutMs: number;
}

/** Largest head accepted (Node's own default limit; S3 heads are a few KiB), and largest body collected (error answers are a few hundred bytes). */
const MAX_HEAD = 16 * 1024;
const MAX_COLLECTED = 256 * 1024;

/** A network failure, said the way Node says it, with `code` for the caller's retry decision. */
export class HttpError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
  }
}

type Phase =
  | { kind: "idle" }
  | { kind: "head" }
  | { kind: "body"; sink: BodySink; remaining: number }
  | { kind: "chunked"; sink: BodySink; state: ChunkState }
  | { kind: "collect"; parts: Buffer[]; remaining: number; chunked: ChunkState | undefined; size: number };

interface ChunkState {
  /** Bytes left in the current chunk's data; -1 while a size line is expected; 0 after the last chunk (trailers). */
  left: number;
  line: string;
  /** After a chunk's data, its CRLF still has to pass. */
  crlf: number;
  done: boolean;
}

/** One keep-alive connection; at most one exchange at a time. */
class Connection {
  private phase: Phase = { kind: "idle" };
  private readonly headBuf = Buffer.allocUnsafe(MAX_HEAD);
  private headLen = 0;
  private head: ResponseHead | undefined;
  private received = 0;
  private settle: ((e: Error | undefined, body?: Buffer) => void) | undefined;
  private closeAfter = false;
  private paused = false;
  dead = false;
  /** An exchange has been started on it before (it comes from the idle list). */
  used = false;
  /** Bytes of the current exchange's answer have arrived. */
  answered = false;
  readonly socket: Socket;

  constructor(opts: PoolOptions, onDead: (c: Connection) => void) {
    const common = { host: opts.host, port: opts.port, lookup: opts.lookup, noDelay: true };
    if (opts.tls) {
      this.socket = tlsConnect({ ...common, ca: opts.tls.ca, servername: opts.tls.servername ?? (isIp(opts.host) ? undefined : opts.host) });
      this.socket.on("data", (chunk: Buffer) => this.feedCopy(chunk));
    } else {
      this.socket = netConnect({
        ...common,
        onread: { buffer: () => this.space(), callback: (n: number, buf: Uint8Array) => this.arrived(n, buf) },
      });
    }
    this.socket.setTimeout(opts.connectTimeoutMs);
    const fail = (e: Error) => {
      this.dead = true;
      onDead(this);
      this.finish(e);
    };
    this.socket.on("timeout", () => {
      const e = new HttpError(this.phase.kind === "idle" ? "idle" : `no data from ${opts.host}:${opts.port} for ${Math.round(this.timeoutMs / 1000)} s`, "ETIMEDOUT");
      this.socket.destroy(e);
    });
    this.socket.on("error", fail);
    this.socket.on("close", () => {
      const p = this.phase;
      const what =
        p.kind === "body" ? `the answer was truncated: the connection closed after ${this.received} of ${this.received + p.remaining} body bytes` : p.kind === "idle" ? "idle connection closed" : "the connection closed before the answer was complete";
      fail(new HttpError(`${what} (${opts.host}:${opts.port})`, "ECONNRESET"));
    });
    this.timeoutMs = opts.idleTimeoutMs;
  }

  private timeoutMs: number;

  /** Send `request` (a complete head, then `body` if any) and read the answer. */
  exchange(request: string, onHead: OnHead, timeoutMs: number, body?: Buffer): Promise<ExchangeResult> {
    this.timeoutMs = timeoutMs;
    // Until connected, the connect timeout applies; then the idle limit of the exchange.
    if (this.socket.connecting) this.socket.once("connect", () => this.socket.setTimeout(timeoutMs));
    else this.socket.setTimeout(timeoutMs);
    this.phase = { kind: "head" };
    this.headLen = 0;
    this.head = undefined;
    this.received = 0;
    this.onHead = onHead;
    this.answered = false;
    return new Promise((resolve, reject) => {
      this.settle = (e, body) => {
        if (e) reject(e);
        else resolve({ head: this.head as ResponseHead, received: this.received, ...(body ? { body } : {}) });
      };
      this.socket.write(request);
      if (body && body.length > 0) this.socket.write(body);
      this.used = true;
    });
  }

  private onHead: OnHead = () => "collect";

  get reusable(): boolean {
    return !this.dead && !this.closeAfter && this.phase.kind === "idle";
  }

  /**
   * The buffer the kernel reads into next (onread). Node asks for it right
   * after each read, so it must stay right for the next read, even one that
   * happens only after a pause or in the next exchange; never empty (libuv
   * fails an empty read buffer with ENOBUFS).
   */
  private space(): Uint8Array {
    const p = this.phase;
    // Bytes still waiting to be copied in go first: the sink's space now would be stale by then.
    if (this.pending) return this.headBuf;
    if (p.kind === "body" && p.remaining > 0) {
      const s = p.sink.space();
      if (s.length > 0) return s.length > p.remaining ? s.subarray(0, p.remaining) : s;
    }
    if (p.kind === "head" && this.headLen < MAX_HEAD) return this.headBuf.subarray(this.headLen);
    // (A full head buffer has already failed the exchange; see afterHeadBytes.)
    // Chunked or collected bodies, stray bytes: a scratch area, then copied.
    return this.headBuf;
  }

  /**
   * onread callback: `n` bytes are at the start of `buf`, which space()
   * returned. Body and head bytes are already in place; anything else was read
   * into the scratch buffer and is fed from there. Returning false pauses.
   */
  private arrived(n: number, buf: Uint8Array): boolean {
    this.answered = true;
    const p = this.phase;
    if (p.kind === "body" && buf !== this.headBuf) return this.bodyBytes(p, n);
    if (p.kind === "head" && buf !== this.headBuf) {
      this.headLen += n;
      return this.afterHeadBytes();
    }
    return this.feed(Buffer.from(buf.buffer, buf.byteOffset, n));
  }

  /** TLS (and anything not read in place): bytes in Node's own chunk. */
  private feedCopy(chunk: Buffer): void {
    this.answered = true;
    if (!this.feed(chunk)) this.pause();
  }

  /** Bytes that are not already where they belong. Returns false to pause reading. */
  private feed(chunk: Buffer): boolean {
    let off = 0;
    while (off < chunk.length) {
      const p = this.phase;
      if (p.kind === "idle") {
        // Bytes nobody asked for: the connection cannot be trusted for another exchange.
        this.closeAfter = true;
        this.socket.destroy();
        return false;
      }
      if (p.kind === "head") {
        const n = Math.min(chunk.length - off, MAX_HEAD - this.headLen);
        if (n === 0) return this.afterHeadBytes();
        chunk.copy(this.headBuf, this.headLen, off, off + n);
        this.headLen += n;
        off += n;
        if (!this.afterHeadBytes()) {
          if (off < chunk.length) return this.feedLater(chunk.subarray(off));
          return false;
        }
        continue;
      }
      if (p.kind === "body") {
        const dest = p.sink.space();
        const n = Math.min(dest.length, chunk.length - off, p.remaining);
        chunk.copy(dest, 0, off, off + n);
        off += n;
        if (!this.bodyBytes(p, n)) {
          if (off < chunk.length) return this.feedLater(chunk.subarray(off));
          return false;
        }
        continue;
      }
      off = p.kind === "chunked" ? this.chunkedBytes(p, chunk, off) : this.collectBytes(p, chunk, off);
    }
    return !this.paused;
  }

  /**
   * Bytes that arrived while the sink was busy: fed, in order, once reading
   * resumes. Appended, not replaced: a head completed inside a chunk may have
   * left some of its own bytes waiting before the rest of that chunk.
   */
  private pending: Buffer | undefined;
  private feedLater(rest: Buffer): boolean {
    this.pending = this.pending ? Buffer.concat([this.pending, rest]) : rest;
    this.pause();
    return false;
  }

  private pause(): void {
    this.paused = true;
    this.socket.pause();
  }

  private resume(): void {
    this.paused = false;
    const rest = this.pending;
    this.pending = undefined;
    if (rest && rest.length > 0 && !this.feed(rest)) return;
    if (!this.paused) this.socket.resume();
  }

  /** Parses the head once it is complete; leftover bytes go to the body. */
  private afterHeadBytes(): boolean {
    const end = this.headBuf.subarray(0, this.headLen).indexOf("\r\n\r\n");
    if (end < 0) {
      if (this.headLen >= MAX_HEAD) this.fail(new HttpError(`the answer's headers are larger than ${MAX_HEAD / 1024} KiB`, "EPROTO"));
      return true;
    }
    const head = parseHead(this.headBuf.toString("latin1", 0, end));
    if (!head) {
      this.fail(new HttpError("the answer is not HTTP/1.1 (bad status line)", "EPROTO"));
      return false;
    }
    if (head.status === 100) {
      // Informational: drop it and read the real head.
      this.headBuf.copy(this.headBuf, 0, end + 4, this.headLen);
      this.headLen -= end + 4;
      return this.afterHeadBytes();
    }
    this.head = head;
    this.closeAfter = /\bclose\b/i.test(head.headers["connection"] ?? "");
    const chunked = /\bchunked\b/i.test(head.headers["transfer-encoding"] ?? "");
    const lenText = head.headers["content-length"];
    const length = lenText !== undefined && /^\d+$/.test(lenText.trim()) ? Number(lenText) : undefined;
    if (!chunked && length === undefined) {
      this.fail(new HttpError("the answer has neither Content-Length nor chunked encoding", "EPROTO"));
      return false;
    }
    let target: BodySink | "collect";
    try {
      target = this.onHead(head);
    } catch (e) {
      this.fail(e as Error);
      return false;
    }
    const leftover = Buffer.from(this.headBuf.subarray(end + 4, this.headLen));
    this.headLen = 0;
    const fresh = (): ChunkState => ({ left: -1, line: "", crlf: 0, done: false });
    if (target === "collect") this.phase = { kind: "collect", parts: [], remaining: chunked ? Infinity : (length ?? 0), chunked: chunked ? fresh() : undefined, size: 0 };
    else if (chunked) this.phase = { kind: "chunked", sink: target, state: fresh() };
    else this.phase = { kind: "body", sink: target, remaining: length ?? 0 };
    if (this.phase.kind === "body" && this.phase.remaining === 0) {
      this.done();
      return true;
    }
    if (this.phase.kind === "collect" && this.phase.remaining === 0) {
      this.done();
      return true;
    }
    return leftover.length === 0 ? true : this.feed(leftover);
  }

  private bodyBytes(p: Extract<Phase, { kind: "body" }>, n: number): boolean {
    if (n <= 0) return true;
    p.remaining -= n;
    this.received += n;
    let pending: void | Promise<void>;
    try {
      pending = p.sink.took(n);
    } catch (e) {
      this.fail(e as Error);
      return false;
    }
    if (p.remaining === 0 && !pending) {
      this.done();
      return true;
    }
    if (pending) {
      this.paused = true;
      pending.then(
        () => (p.remaining === 0 ? this.done() : this.resume()),
        (e: Error) => this.fail(e),
      );
      return false;
    }
    return true;
  }

  /**
   * Walks a chunked body from `off`, handing each piece of data to `take`,
   * which returns false to stop there. Returns the offset reached (the chunk's
   * end after stopping, or after a framing error, which fails the exchange);
   * the exchange is done once the last chunk and its trailers have passed.
   */
  private walkChunks(s: ChunkState, chunk: Buffer, off: number, take: (data: Buffer, next: number) => boolean): number {
    while (off < chunk.length && !s.done) {
      const step = chunkStep(s, chunk, off);
      if (step.error) {
        this.fail(new HttpError(step.error, "EPROTO"));
        return chunk.length;
      }
      off = step.off;
      if (step.data && !take(step.data, off)) return chunk.length;
    }
    if (s.done) this.done();
    return off;
  }

  /** Chunked body into the sink (copying); a busy sink pauses reading, the rest is fed on resume. */
  private chunkedBytes(p: Extract<Phase, { kind: "chunked" }>, chunk: Buffer, off: number): number {
    const s = p.state;
    return this.walkChunks(s, chunk, off, (data, next) => {
      for (let d = data; d.length > 0; ) {
        const dest = p.sink.space();
        const n = Math.min(dest.length, d.length);
        d.copy(dest, 0, 0, n);
        d = d.subarray(n);
        this.received += n;
        const pending = p.sink.took(n);
        if (!pending) continue;
        if (d.length > 0) {
          // Give back the part of this chunk's data not delivered yet: it is fed again on resume.
          if (s.left === -1) s.crlf = 0;
          s.left = Math.max(s.left, 0) + d.length;
        }
        this.feedLater(Buffer.concat([d, chunk.subarray(next)]));
        pending.then(
          () => this.resume(),
          (e: Error) => this.fail(e),
        );
        return false;
      }
      return true;
    });
  }

  private collectBytes(p: Extract<Phase, { kind: "collect" }>, chunk: Buffer, off: number): number {
    if (p.chunked) {
      return this.walkChunks(p.chunked, chunk, off, (data) => {
        this.keep(p, data);
        return this.phase === p; // the cap may have ended the exchange
      });
    }
    const n = Math.min(chunk.length - off, p.remaining);
    this.keep(p, chunk.subarray(off, off + n));
    if (this.phase !== p) return chunk.length;
    p.remaining -= n;
    if (p.remaining === 0) this.done();
    return off + n;
  }

  private keep(p: Extract<Phase, { kind: "collect" }>, data: Buffer): void {
    this.received += data.length;
    const fits = Math.min(data.length, MAX_COLLECTED - p.size);
    p.parts.push(Buffer.from(data.subarray(0, fits)));
    p.size += fits;
    if (fits < data.length) {
      // Enough to say what went wrong; the rest is not read and the connection not reused.
      this.closeAfter = true;
      this.done();
      this.socket.destroy();
    }
  }

  private done(): void {
    const p = this.phase;
    this.phase = { kind: "idle" };
    // A connection paused for the last bytes' sink must read again when it is reused.
    if (this.paused) {
      this.paused = false;
      this.pending = undefined;
      this.socket.resume();
    }
    this.finish(undefined, p.kind === "collect" ? Buffer.concat(p.parts) : undefined);
  }

  private fail(e: Error): void {
    this.closeAfter = true;
    this.finish(e);
    this.socket.destroy();
  }

  private finish(e: Error | undefined, body?: Buffer): void {
    const settle = this.settle;
    this.settle = undefined;
    if (!settle) return;
    if (e) {
      this.phase = { kind: "idle" };
      this.closeAfter = true;
    }
    settle(e, body);
  }

  destroy(reason?: Error): void {
    this.closeAfter = true;
    this.socket.destroy(reason);
  }
}

function isIp(host: string): boolean {
  return /^[\d.]+$/.test(host) || host.includes(":");
}

/** Status line and headers, or undefined when the status line is not HTTP/1.x. */
export function parseHead(text: string): ResponseHead | undefined {
  const lines = text.split("\r\n");
  const m = /^HTTP\/1\.[01] (\d{3})(?: .*)?$/.exec(lines[0] ?? "");
  if (!m) return undefined;
  const headers: Record<string, string> = {};
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i] ?? "";
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
  }
  return { status: Number(m[1]), headers };
}

/** One step of a chunked body: data bytes found at `off`, or the next offset after framing. */
export function chunkStep(s: ChunkState, chunk: Buffer, off: number): { off: number; data?: Buffer; error?: string } {
  if (s.crlf > 0) {
    const n = Math.min(s.crlf, chunk.length - off);
    s.crlf -= n;
    return { off: off + n };
  }
  if (s.left > 0) {
    const n = Math.min(s.left, chunk.length - off);
    s.left -= n;
    if (s.left === 0) {
      s.left = -1; // then its CRLF, then the next size line
      s.crlf = 2;
    }
    return { off: off + n, data: chunk.subarray(off, off + n) };
  }
  // A size line (or, after the last chunk, trailer lines up to an empty one).
  const nl = chunk.indexOf(10, off);
  const end = nl < 0 ? chunk.length : nl + 1;
  s.line += chunk.toString("latin1", off, end);
  if (s.line.length > 4096) return { off: end, error: "a chunk-size line of the answer is too long" };
  if (nl < 0) return { off: end };
  const line = s.line.trim();
  s.line = "";
  if (s.left === 0) {
    // Trailer section after the last chunk: ends with an empty line.
    if (line === "") s.done = true;
    return { off: end };
  }
  const size = Number.parseInt(line.split(";")[0] ?? "", 16);
  if (!Number.isFinite(size) || size < 0 || !/^[0-9a-fA-F]+/.test(line)) return { off: end, error: `bad chunk size ${JSON.stringify(line.slice(0, 20))} in the answer` };
  s.left = size; // 0: the last chunk; trailer lines follow
  return { off: end };
}

/** Keep-alive connections to one host, at most `maxSockets` busy at once. */
export class Http1Pool {
  private readonly idle: Connection[] = [];
  private readonly slots: Slots;
  private closed = false;

  constructor(private readonly opts: PoolOptions) {
    this.slots = new Slots(opts.maxSockets);
  }

  /**
   * One exchange on a pooled connection (a fresh one if none is idle). The
   * signal destroys the connection; a connection is reused only after a
   * complete, clean answer.
   */
  async request(head: string, onHead: OnHead, signal: AbortSignal | undefined, timeoutMs: number, body?: Buffer): Promise<ExchangeResult> {
    const leave = await this.slots.take(signal ?? NEVER);
    try {
      // A kept connection the server closed while it sat idle fails before any answer
      // arrives; the request is then sent once more on a new connection (nothing of it was
      // taken, and GET and PUT are idempotent), as Node's and Go's clients do.
      for (let attempt = 1; ; attempt++) {
        const conn = this.take();
        const reused = conn.used;
        try {
          return await this.exchange(conn, head, onHead, signal, timeoutMs, body);
        } catch (e) {
          const code = (e as { code?: string }).code;
          if (reused && attempt === 1 && !conn.answered && (code === "ECONNRESET" || code === "EPIPE") && !signal?.aborted) continue;
          throw e;
        }
      }
    } finally {
      leave();
    }
  }

  private async exchange(conn: Connection, head: string, onHead: OnHead, signal: AbortSignal | undefined, timeoutMs: number, body?: Buffer): Promise<ExchangeResult> {
    const onAbort = () => conn.destroy(abortError(signal));
    try {
      signal?.throwIfAborted();
      signal?.addEventListener("abort", onAbort, { once: true });
      return await conn.exchange(head, onHead, timeoutMs, body);
    } catch (e) {
      if (signal?.aborted) throw abortError(signal);
      throw e;
    } finally {
      signal?.removeEventListener("abort", onAbort);
      if (conn.reusable && !this.closed) {
        conn.socket.setTimeout(this.opts.idleTimeoutMs);
        this.idle.push(conn);
      } else conn.destroy();
    }
  }

  private take(): Connection {
    for (let c = this.idle.pop(); c; c = this.idle.pop()) if (!c.dead) return c;
    return new Connection(this.opts, (dead) => {
      const i = this.idle.indexOf(dead);
      if (i >= 0) this.idle.splice(i, 1);
    });
  }

  /** Idle connections closed now; busy ones when their exchange ends. */
  close(): void {
    this.closed = true;
    for (const c of this.idle.splice(0)) c.destroy();
  }
}

/** The signal of a request that has none: never aborted. */
const NEVER = new AbortController().signal;

function abortError(signal: AbortSignal | undefined): Error {
  const e = new Error(signal?.reason instanceof Error ? signal.reason.message : "aborted");
  e.name = "AbortError";
  return e;
}
