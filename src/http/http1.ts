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
// What an answer must look like is http1-framing.ts (strict RFC 9112). Here:
// a sink never receives a byte beyond the space it gives (an answer longer
// than that fails), the whole head has a deadline and the body a minimum
// rate (a server that drips bytes cannot hold a call), and a connection is
// kept only after a clean, complete answer that allows it and with nothing
// unasked-for behind it.
import { type Socket, connect as netConnect } from "node:net";
import { type LookupFunction } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { Slots } from "../util/slots.js";
import {
  type ChunkState,
  type Framing,
  MAX_HEAD,
  MAX_INTERIM,
  type ResponseHead,
  chunkState,
  chunkStep,
  framingOf,
  keepsAlive,
  parseHead,
  scanHead,
} from "./http1-framing.js";
import { rateWindowMs, tooSlow } from "./pace.js";

export { type ResponseHead, chunkStep };

/** Where an answer's body goes: space for the next bytes, and notice of what arrived there. */
export interface BodySink {
  /** A buffer to receive the next bytes; empty when the sink takes no more (a longer answer fails). */
  space(): Buffer;
  /** `n` bytes were placed at the start of the last space(); a promise pauses reading until it settles. */
  took(n: number): void | Promise<void>;
}

/** What the caller does with an answer once its head is read: a sink for the body, or "collect" it (capped). */
export type OnHead = (head: ResponseHead, framing: Framing) => BodySink | "collect";

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
  /** Judges the address a new socket connected to; a problem ends the connection before any request is written (endpoint-guard.ts). */
  checkPeer?: ((address: string | undefined) => string | undefined) | undefined;
  maxSockets: number;
  connectTimeoutMs: number;
  idleTimeoutMs: number;
  /** Slowest answer body accepted, bytes/s (pace.ts; default MIN_BODY_RATE). */
  minBodyRate?: number | undefined;
}

/** Largest body collected (error answers are a few hundred bytes). */
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

/** One keep-alive connection; at most one exchange at a time. */
class Connection {
  private phase: Phase = { kind: "idle" };
  private readonly headBuf = Buffer.allocUnsafe(MAX_HEAD);
  private headLen = 0;
  /** Where scanning for the head's end resumes. */
  private scanned = 0;
  /** 1xx heads skipped in this exchange. */
  private interim = 0;
  private head: ResponseHead | undefined;
  private received = 0;
  private settle: ((e: Error | undefined, body?: Buffer) => void) | undefined;
  private closeAfter = false;
  private paused = false;
  /** When reading was last held back by our side, and for how long in all (that time is ours, not the server's). */
  private pausedAt = 0;
  private heldMs = 0;
  private timer: NodeJS.Timeout | undefined;
  private timeoutMs: number;
  private readonly where: string;
  dead = false;
  /** An exchange has been started on it before (it comes from the idle list). */
  used = false;
  /** Bytes of the current exchange's answer have arrived. */
  answered = false;
  readonly socket: Socket;

  constructor(
    private readonly opts: PoolOptions,
    onDead: (c: Connection) => void,
  ) {
    this.where = `${opts.host}:${opts.port}`;
    const common = { host: opts.host, port: opts.port, lookup: opts.lookup, noDelay: true };
    if (opts.tls) {
      this.socket = tlsConnect({
        ...common,
        ca: opts.tls.ca,
        servername: opts.tls.servername ?? (isIp(opts.host) ? undefined : opts.host),
      });
      this.socket.on("data", (chunk: Buffer) => this.feedCopy(chunk));
    } else {
      this.socket = netConnect({
        ...common,
        onread: { buffer: () => this.space(), callback: (n: number, buf: Uint8Array) => this.arrived(n, buf) },
      });
    }
    this.socket.setTimeout(opts.connectTimeoutMs);
    if (opts.checkPeer) {
      const check = opts.checkPeer;
      this.socket.once("connect", () => {
        const problem = check(this.socket.remoteAddress);
        if (problem) this.socket.destroy(new HttpError(`endpoint ${this.where}: ${problem}`, "EADDRNOTAVAIL"));
      });
    }
    const fail = (e: Error) => {
      this.dead = true;
      onDead(this);
      this.finish(e);
    };
    this.socket.on("timeout", () => {
      const e = new HttpError(
        this.phase.kind === "idle" ? "idle" : `no data from ${this.where} for ${Math.round(this.timeoutMs / 1000)} s`,
        "ETIMEDOUT",
      );
      this.socket.destroy(e);
    });
    this.socket.on("error", fail);
    this.socket.on("close", () => {
      const p = this.phase;
      const what =
        p.kind === "body"
          ? `the answer was truncated: the connection closed after ${this.received} of ${this.received + p.remaining} body bytes`
          : p.kind === "idle"
            ? "idle connection closed"
            : "the connection closed before the answer was complete";
      fail(new HttpError(`${what} (${this.where})`, "ECONNRESET"));
    });
    this.timeoutMs = opts.idleTimeoutMs;
  }

  /** Send `request` (a complete head, then `body` if any) and read the answer. */
  exchange(request: string, onHead: OnHead, timeoutMs: number, body?: Buffer): Promise<ExchangeResult> {
    this.timeoutMs = timeoutMs;
    // Until connected, the connect timeout applies; then the idle limit of the exchange.
    // The whole head (1xx heads included) within the exchange's timeout from the request's
    // sending, however it trickles in.
    const headDeadline = () =>
      this.arm(timeoutMs, () => {
        if (this.phase.kind === "head")
          this.fail(
            new HttpError(
              `no complete answer head from ${this.where} within ${Math.round(timeoutMs / 1000)} s`,
              "ETIMEDOUT",
            ),
          );
      });
    if (this.socket.connecting) {
      this.socket.once("connect", () => {
        this.socket.setTimeout(timeoutMs);
        if (this.phase.kind === "head") headDeadline();
      });
    } else {
      this.socket.setTimeout(timeoutMs);
      headDeadline();
    }
    this.phase = { kind: "head" };
    this.headLen = 0;
    this.scanned = 0;
    this.interim = 0;
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

  private arm(ms: number, fire: () => void): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(fire, Math.max(1, ms));
    this.timer.unref();
  }

  /** Body rate checks, one per timeout window, from the end of the head to the end of the body. */
  private watchRate(): void {
    const windowMs = rateWindowMs(this.timeoutMs);
    let mark = this.received;
    let heldMark = this.held();
    const check = () => {
      if (this.phase.kind === "idle" || this.phase.kind === "head") return;
      const held = this.held();
      const slow = tooSlow(this.received - mark, windowMs, held - heldMark, this.opts.minBodyRate);
      mark = this.received;
      heldMark = held;
      if (slow) {
        this.fail(new HttpError(`the answer's body from ${this.where} came at ${slow}`, "ETIMEDOUT"));
        return;
      }
      this.arm(windowMs, check);
    };
    this.arm(windowMs, check);
  }

  get reusable(): boolean {
    return !this.dead && !this.closeAfter && this.phase.kind === "idle" && this.pending === undefined;
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
    // Chunked or collected bodies, a full sink, stray bytes: a scratch area, then judged by feed().
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
        // Bytes nobody asked for (after an answer, or on a connection at rest): the
        // connection cannot be trusted for another exchange.
        this.closeAfter = true;
        this.socket.destroy();
        return false;
      }
      if (p.kind === "head") {
        const n = Math.min(chunk.length - off, MAX_HEAD - this.headLen);
        chunk.copy(this.headBuf, this.headLen, off, off + n);
        this.headLen += n;
        off += n;
        if (!this.afterHeadBytes()) {
          if (this.settle && off < chunk.length) return this.feedLater(chunk.subarray(off));
          return false;
        }
        continue;
      }
      if (p.kind === "body") {
        const dest = p.sink.space();
        const n = Math.min(dest.length, chunk.length - off, p.remaining);
        if (n === 0) return this.fail(longer());
        chunk.copy(dest, 0, off, off + n);
        off += n;
        if (!this.bodyBytes(p, n)) {
          if (this.settle && off < chunk.length) return this.feedLater(chunk.subarray(off));
          return false;
        }
        continue;
      }
      const next = p.kind === "chunked" ? this.chunkedBytes(p, chunk, off) : this.collectBytes(p, chunk, off);
      if (next === undefined) return false;
      off = next;
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

  /** Reading held back by our side (the sink is busy); `hold`/`unhold` keep the time it takes. */
  private hold(): void {
    if (this.paused) return;
    this.paused = true;
    this.pausedAt = performance.now();
  }

  private unhold(): void {
    if (!this.paused) return;
    this.paused = false;
    this.heldMs += performance.now() - this.pausedAt;
  }

  /** Time held back so far, the current hold included. */
  private held(): number {
    return this.heldMs + (this.paused ? performance.now() - this.pausedAt : 0);
  }

  private pause(): void {
    this.hold();
    this.socket.pause();
  }

  private resume(): void {
    this.unhold();
    const rest = this.pending;
    this.pending = undefined;
    if (rest && rest.length > 0 && !this.feed(rest)) return;
    if (!this.paused) this.socket.resume();
  }

  /** Parses the head once it is complete; leftover bytes go to the body. Returns false to stop reading. */
  private afterHeadBytes(): boolean {
    const scan = scanHead(this.headBuf, this.scanned - 3, this.headLen);
    if ("error" in scan) return this.fail(new HttpError(scan.error, "EPROTO"));
    if ("next" in scan) {
      this.scanned = scan.next;
      if (this.headLen >= MAX_HEAD)
        return this.fail(new HttpError(`the answer's headers are larger than ${MAX_HEAD / 1024} KiB`, "EPROTO"));
      return true;
    }
    const end = scan.end;
    const head = parseHead(this.headBuf.toString("latin1", 0, end - 4));
    if ("error" in head) return this.fail(new HttpError(head.error, "EPROTO"));
    if (head.status < 200) {
      if (head.status === 101)
        return this.fail(new HttpError("the answer switches protocols (101), which no S3 request asks for", "EPROTO"));
      // Informational (100 Continue, 103 Early Hints…): dropped, and the real head read next.
      if (++this.interim > MAX_INTERIM)
        return this.fail(new HttpError(`the answer sent more than ${MAX_INTERIM} informational (1xx) heads`, "EPROTO"));
      this.headBuf.copy(this.headBuf, 0, end, this.headLen);
      this.headLen -= end;
      this.scanned = 0;
      return this.afterHeadBytes();
    }
    const framing = framingOf(head);
    if ("error" in framing) return this.fail(new HttpError(framing.error, "EPROTO"));
    this.head = head;
    if (!keepsAlive(head)) this.closeAfter = true;
    let target: BodySink | "collect";
    try {
      target = this.onHead(head, framing);
    } catch (e) {
      return this.fail(e as Error);
    }
    const leftover = Buffer.from(this.headBuf.subarray(end, this.headLen));
    this.headLen = 0;
    const chunked = framing.kind === "chunked";
    const length = framing.kind === "length" ? framing.length : Infinity;
    if (target === "collect")
      this.phase = {
        kind: "collect",
        parts: [],
        remaining: length,
        chunked: chunked ? chunkState() : undefined,
        size: 0,
      };
    else if (chunked) this.phase = { kind: "chunked", sink: target, state: chunkState() };
    else this.phase = { kind: "body", sink: target, remaining: length };
    if (length === 0) {
      this.done();
      return leftover.length === 0 ? true : this.feed(leftover);
    }
    this.watchRate();
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
      return this.fail(e as Error);
    }
    if (p.remaining === 0 && !pending) {
      this.done();
      return true;
    }
    if (pending) {
      this.hold();
      pending.then(
        () => {
          if (this.phase !== p) return;
          if (p.remaining === 0) this.done();
          else this.resume();
        },
        (e: Error) => this.fail(e),
      );
      return false;
    }
    return true;
  }

  /**
   * Walks a chunked body from `off`, handing each piece of data to `take`,
   * which returns false to stop there. Returns the offset reached, or
   * undefined when reading stops (a framing error, which fails the exchange,
   * or `take` stopping); the exchange is done once the last chunk and its
   * trailers have passed.
   */
  private walkChunks(
    s: ChunkState,
    chunk: Buffer,
    off: number,
    take: (data: Buffer, next: number) => boolean,
  ): number | undefined {
    while (off < chunk.length && s.at !== "done") {
      const step = chunkStep(s, chunk, off);
      if (step.error) {
        this.fail(new HttpError(step.error, "EPROTO"));
        return undefined;
      }
      off = step.off;
      if (step.data && step.data.length > 0 && !take(step.data, off)) return undefined;
    }
    if (s.at === "done") this.done();
    return off;
  }

  /** Chunked body into the sink (copying); a busy sink pauses reading, the rest is fed on resume. */
  private chunkedBytes(p: Extract<Phase, { kind: "chunked" }>, chunk: Buffer, off: number): number | undefined {
    const s = p.state;
    return this.walkChunks(s, chunk, off, (data, next) => {
      for (let d = data; d.length > 0;) {
        const dest = p.sink.space();
        const n = Math.min(dest.length, d.length);
        if (n === 0) return this.fail(longer());
        d.copy(dest, 0, 0, n);
        d = d.subarray(n);
        this.received += n;
        let pending: void | Promise<void>;
        try {
          pending = p.sink.took(n);
        } catch (e) {
          return this.fail(e as Error);
        }
        if (!pending) continue;
        if (d.length > 0) {
          // Give back the part of this chunk's data not delivered yet: it is fed again on resume.
          s.left += d.length;
          s.at = "data";
        }
        this.feedLater(Buffer.concat([d, chunk.subarray(next)]));
        pending.then(
          () => {
            if (this.phase === p) this.resume();
          },
          (e: Error) => this.fail(e),
        );
        return false;
      }
      return true;
    });
  }

  private collectBytes(p: Extract<Phase, { kind: "collect" }>, chunk: Buffer, off: number): number | undefined {
    if (p.chunked) return this.walkChunks(p.chunked, chunk, off, (data) => this.keep(p, data));
    const n = Math.min(chunk.length - off, p.remaining);
    if (!this.keep(p, chunk.subarray(off, off + n))) return undefined;
    p.remaining -= n;
    if (p.remaining === 0) this.done();
    return off + n;
  }

  /** Keeps collected bytes up to the cap; past it, the exchange ends (false) and the connection is not reused. */
  private keep(p: Extract<Phase, { kind: "collect" }>, data: Buffer): boolean {
    this.received += data.length;
    const fits = Math.min(data.length, MAX_COLLECTED - p.size);
    p.parts.push(Buffer.from(data.subarray(0, fits)));
    p.size += fits;
    if (fits === data.length) return true;
    // Enough to say what went wrong; the rest is not read.
    this.closeAfter = true;
    this.done();
    this.socket.destroy();
    return false;
  }

  private done(): void {
    const p = this.phase;
    this.phase = { kind: "idle" };
    clearTimeout(this.timer);
    // Bytes behind the answer's end were not asked for: the connection is not kept.
    if (this.pending && this.pending.length > 0) this.closeAfter = true;
    this.pending = undefined;
    // A connection paused for the last bytes' sink must read again when it is reused.
    if (this.paused) {
      this.unhold();
      this.socket.resume();
    }
    this.finish(undefined, p.kind === "collect" ? Buffer.concat(p.parts) : undefined);
  }

  /** Ends the exchange with `e` and closes the connection; false, for callers that stop reading. */
  private fail(e: Error): false {
    this.closeAfter = true;
    this.finish(e);
    this.socket.destroy();
    return false;
  }

  private finish(e: Error | undefined, body?: Buffer): void {
    const settle = this.settle;
    this.settle = undefined;
    if (!settle) return;
    clearTimeout(this.timer);
    if (e) {
      this.phase = { kind: "idle" };
      this.pending = undefined;
      this.closeAfter = true;
    }
    settle(e, body);
  }

  destroy(reason?: Error): void {
    this.closeAfter = true;
    clearTimeout(this.timer);
    this.socket.destroy(reason);
  }
}

/** A body longer than the space its receiver gave: never written past that space. */
function longer(): HttpError {
  return new HttpError("the answer's body is longer than what was asked for", "EPROTO");
}

function isIp(host: string): boolean {
  return /^[\d.]+$/.test(host) || host.includes(":");
}

/** Keep-alive connections to one host, at most `maxSockets` busy at once. */
export class Http1Pool {
  private readonly idle: Connection[] = [];
  /** Connections between their answer's end and the idle list (see rest), and who waits for one. */
  private resting = 0;
  private readonly waiting: (() => void)[] = [];
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
  async request(
    head: string,
    onHead: OnHead,
    signal: AbortSignal | undefined,
    timeoutMs: number,
    body?: Buffer,
  ): Promise<ExchangeResult> {
    const leave = await this.slots.take(signal ?? NEVER);
    try {
      // A kept connection the server closed while it sat idle fails before any answer
      // arrives; the request is then sent once more on a new connection (nothing of it was
      // taken, and GET and PUT are idempotent), as Node's and Go's clients do.
      for (let attempt = 1; ; attempt++) {
        // A connection that has just answered is kept for the next request once it has rested.
        if (this.idle.length === 0 && this.resting > 0) await new Promise<void>((r) => this.waiting.push(r));
        const conn = this.take();
        const reused = conn.used;
        try {
          return await this.exchange(conn, head, onHead, signal, timeoutMs, body);
        } catch (e) {
          const code = (e as { code?: string }).code;
          if (
            reused &&
            attempt === 1 &&
            !conn.answered &&
            (code === "ECONNRESET" || code === "EPIPE") &&
            !signal?.aborted
          )
            continue;
          throw e;
        }
      }
    } finally {
      leave();
    }
  }

  private async exchange(
    conn: Connection,
    head: string,
    onHead: OnHead,
    signal: AbortSignal | undefined,
    timeoutMs: number,
    body?: Buffer,
  ): Promise<ExchangeResult> {
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
      if (conn.reusable && !this.closed) this.rest(conn);
      else conn.destroy();
    }
  }

  /**
   * A connection goes back to the idle list only after the event loop has
   * polled it once more (two check phases have a poll phase between them):
   * bytes the server sent behind its answer (a stray second answer) are read
   * there and close it, instead of being taken as the next request's answer.
   */
  private rest(conn: Connection): void {
    conn.socket.setTimeout(this.opts.idleTimeoutMs);
    this.resting++;
    setImmediate(() =>
      setImmediate(() => {
        this.resting--;
        if (conn.reusable && !this.closed) this.idle.push(conn);
        else conn.destroy();
        for (const go of this.waiting.splice(0)) go();
      }),
    );
  }

  private take(): Connection {
    for (let c = this.idle.pop(); c; c = this.idle.pop()) if (c.reusable) return c;
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
