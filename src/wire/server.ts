// The gRPC face of the plugin: binds the unix socket and runs each RPC under
// one tracker (an AbortSignal tied to the call's lifetime, a byte counter the
// transfers add to, a transfer slot, progress lines and one log line). The
// handlers live beside it: unary.ts, open-stream.ts, save-stream.ts; status.ts
// is the one place a failure becomes what the client sees.
import { chmod, unlink } from "node:fs/promises";
import type { Server as NetServer, Socket } from "node:net";
import { Server } from "@grpc/grpc-js";
import type { ArtifactOps } from "../artifacts/ops.js";
import type { StoreTarget } from "../store/port.js";
import { PluginError, describeError } from "../errors.js";
import type { Logger } from "../log.js";
import { Discovery } from "./discovery.js";
import { prepareSocket, serveOn } from "./socket.js";
import { ClientGoneWatch } from "./client-gone.js";
import { CONNECTION_LIMITS, ClientConnections, type ConnectionLimits } from "./connections.js";
import { type ShareGroup, Slots } from "../util/slots.js";
import {
  type CallDeadline,
  admission,
  callDeadline,
  cancellation,
  noteWhere,
  progressLines,
  traced,
} from "./call-wrappers.js";
import { watchSessions, widenConnectionWindow, widenStreamWindow } from "./flow-control.js";
import { loadArtifactService } from "./proto.js";
import type { ArtifactServiceHandlers } from "./messages.js";
import { openStreamHandler } from "./open-stream.js";
import type { RpcLog, RpcSpan, RpcTracer, Tracked, TrackedCall } from "./rpc.js";
import { saveStreamHandler } from "./save-stream.js";
import { unaryHandlers } from "./unary.js";
import { publishRpcEnded } from "./events.js";

/** RPCs that move data: they take a transfer slot. */
const TRANSFERS = new Set(["Load", "Save", "SaveStream", "OpenStream", "Delete"]);
/** RPCs that read listings whole: they take a listing slot (parsed pages cost memory outside the buffer budget). */
const LISTINGS = new Set(["ListObjects", "IsDirectory"]);

/** Bigger than Argo's 2 MiB SaveStream chunks with room to spare, small enough to refuse abuse. */
const MAX_RECEIVE_BYTES = 8 * 1024 * 1024;

/** How long Health and reflection wait at most for start-up calls to end, and for a quiet spell (see serving()). */
const DISCOVERY_DEFER_MS = 2_000;
const QUIET_MS = 100;

export interface ServerOptions {
  socketPath: string;
  service: ArtifactOps;
  logger: Logger;
  /** File mode of the socket; default: follow the folder's sharing (see socket.ts). */
  socketMode?: number | undefined;
  /** A listening descriptor already bound to socketPath (the image's launcher): served as it is. */
  listenFd?: number | undefined;
  /** Client connections at most, and how long one may sit without a call (default CONNECTION_LIMITS). */
  connectionLimits?: ConnectionLimits;
  /** RPCs moving data at once (Load, Save, SaveStream, OpenStream, Delete); later ones wait. */
  maxConcurrentTransfers?: number;
  /** Starts each RPC's trace span (tracing.ts); undefined: traces off, no per-call work. */
  tracer?: RpcTracer | undefined;
  /** ListObjects and IsDirectory at once (default 8); later ones wait. */
  maxConcurrentListings?: number;
  /**
   * The groups a call to a tenant counts in, each capped at its fraction of either pool (and of
   * the buffer budget): the shared sidecar's fair shares (admission/shared-policy.ts); unset: none.
   */
  shares?: (t: StoreTarget) => readonly ShareGroup[];
  /**
   * A bound on the whole of a call, by method (the shared sidecar's listings: every page of a
   * ListObjects, an IsDirectory), whatever pace the store keeps; unset: none.
   */
  callDeadlinesMs?: Partial<Record<string, number>>;
  /** How often a long RPC logs a progress line (default 10 s). */
  progressIntervalMs?: number;
  /**
   * How long an OpenStream client may take no data, or a SaveStream client send
   * none, before the call is ended (default 60 s): a stalled peer holds budget buffers.
   */
  streamIdleMs?: number;
  /**
   * A workflow pod's plugin: once a Save was served, leave (call `leave`) when no client has been
   * connected and no call has run for `ms` (client-gone.ts); unset: never.
   */
  leaveWhenClientGone?: { ms: number; leave: () => void } | undefined;
}

export class PluginServer {
  private readonly server: Server;
  private readonly inflight = new Set<AbortController>();
  /** Told when the last call in flight ends (shutdown's drain). */
  private readonly idleWaiters: (() => void)[] = [];
  private readonly pending = new Set<Promise<unknown>>();
  private readonly discovery: Discovery;
  private readonly transfers: Slots;
  private readonly listings: Slots;
  private bound = false;
  private listener: NetServer | undefined;
  private readonly connections: ClientConnections;
  private readonly clientGone: ClientGoneWatch | undefined;

  constructor(private readonly opts: ServerOptions) {
    const gone = opts.leaveWhenClientGone;
    this.clientGone = gone && new ClientGoneWatch(gone.ms, gone.leave);
    // Closing idle connections would end a live wait container's too, and with them the sign it is gone.
    const limits = opts.connectionLimits ?? (gone ? { ...CONNECTION_LIMITS, idleMs: undefined } : CONNECTION_LIMITS);
    this.server = new Server({
      "grpc.max_receive_message_length": MAX_RECEIVE_BYTES,
      "grpc.max_send_message_length": 4 * 1024 * 1024,
      ...(limits.idleMs === undefined ? {} : { "grpc.max_connection_idle_ms": limits.idleMs }),
    });
    this.connections = new ClientConnections(
      limits.max,
      this.clientGone && {
        opened: () => this.clientGone!.connectionOpened(),
        closed: () => this.clientGone!.connectionClosed(),
      },
    );
    widenStreamWindow(this.server);
    this.server.addService(loadArtifactService(), this.handlers());
    this.discovery = new Discovery(this.server);
    this.transfers = new Slots(opts.maxConcurrentTransfers ?? 64);
    this.listings = new Slots(opts.maxConcurrentListings ?? 8);
  }

  async listen(): Promise<void> {
    const path = this.opts.socketPath;
    const onError = (e: Error) => this.opts.logger.warn({ error: describeError(e) }, "accepting a connection failed");
    const admit = (socket: Socket) => this.connections.admit(socket);
    if (this.opts.listenFd !== undefined) {
      // Bound, mode set and listening since before Node started (launcher/launch.c): clients
      // already queued on it get their HTTP/2 handshake as soon as the descriptor is served.
      this.listener = await serveOn(this.server, { fd: this.opts.listenFd }, admit, onError);
      this.bound = true;
    } else {
      const mode = await prepareSocket(path, this.opts.socketMode);
      this.listener = await serveOn(this.server, { path }, admit, onError);
      this.bound = true;
      await chmod(path, mode);
    }
    widenConnectionWindow(this.server);
    watchSessions(this.server, (session) => this.connections.watch(session));
    // Connections already queued (the launcher's socket: argoexec dialled before Node started)
    // are taken in now, so their HTTP/2 handshake is done while the services load, which
    // holds the event loop; their first call is then waiting when serving() looks.
    await new Promise((resolve) => setImmediate(resolve));
  }

  /**
   * What is behind the socket is built: Health reports SERVING, then
   * reflection is added. Both are for probes, people and tools, and take the
   * event loop for tens of milliseconds. A call already waiting (an init
   * container's Load comes with the plugin's start, and the pod waits for it)
   * must not wait behind them: then they are added after QUIET_MS without a
   * call in flight (an init container with several inputs sends the next Load
   * right after the last), or after DISCOVERY_DEFER_MS at the latest (a
   * sidecar's liveness probe asks Health, and a busy one may never be idle).
   * Neither failure stops a plugin that serves; each is logged.
   */
  async serving(): Promise<void> {
    // A call that came while the services were built is still unread on its connection: one turn
    // of the event loop takes it in and counts it.
    await new Promise((resolve) => setImmediate(resolve));
    if (this.inflight.size === 0) {
      await this.addDiscovery();
      return;
    }
    const since = Date.now();
    this.opts.logger.debug(
      { callsInFlight: this.inflight.size, latestMs: DISCOVERY_DEFER_MS },
      "Health and reflection deferred: calls in flight",
    );
    void this.quiet(since + DISCOVERY_DEFER_MS).then(async () => {
      if (await this.addDiscovery())
        this.opts.logger.debug({ deferredMs: Date.now() - since }, "Health and reflection added");
    });
  }

  /** Resolves after QUIET_MS with no call in flight, or at `until` (ms since the epoch). */
  private async quiet(until: number): Promise<void> {
    const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)).unref());
    while (Date.now() < until) {
      await Promise.race([this.noneInFlight(), sleep(until - Date.now())]);
      await sleep(Math.min(QUIET_MS, until - Date.now()));
      if (this.inflight.size === 0) return;
    }
  }

  /** Health, then reflection; false when Health was not added (shutting down, or it failed). */
  private async addDiscovery(): Promise<boolean> {
    if (this.discovery.isStopped) return false;
    try {
      await this.discovery.serving();
    } catch (e) {
      this.opts.logger.error(
        { error: describeError(e) },
        "grpc.health.v1.Health unavailable: probes that ask it will fail",
      );
      return false;
    }
    await this.discovery
      .addReflection()
      .catch((e: unknown) => this.opts.logger.warn({ error: describeError(e) }, "server reflection unavailable"));
    return true;
  }

  /** Resolves once no call is in flight. */
  private noneInFlight(): Promise<void> {
    return this.inflight.size === 0 ? Promise.resolve() : new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * Stop accepting calls, let in-flight ones finish for up to `graceMs`, then
   * cancel the rest (their uploads are aborted) and wait for their cleanup.
   */
  async shutdown(graceMs: number): Promise<{ cancelled: number }> {
    this.clientGone?.stop();
    this.discovery.stopping();
    this.listener?.close();
    // Drained: grpc-js has closed its sessions and no call is in flight. grpc-js does not wait for
    // calls on connections handed to it (createConnectionInjector), so the calls are counted here.
    const drained = new Promise<void>((resolve) => this.server.tryShutdown(() => resolve())).then(() =>
      this.noneInFlight(),
    );
    const timer = new Promise<"timeout">((resolve) => setTimeout(() => resolve("timeout"), graceMs).unref());
    const outcome = await Promise.race([drained.then(() => "drained" as const), timer]);
    let cancelled = 0;
    if (outcome === "timeout") {
      cancelled = this.inflight.size;
      for (const c of this.inflight) c.abort(new PluginError("cancelled", "plugin shutting down"));
      this.server.forceShutdown();
    }
    // Cleanup (AbortMultipartUpload, temp files) runs on its own short deadlines.
    await Promise.race([Promise.allSettled([...this.pending]), new Promise((r) => setTimeout(r, 10_000).unref())]);
    // Only our own socket: a refused start must not remove the live one it found.
    if (this.bound) await unlink(this.opts.socketPath).catch(() => undefined);
    return { cancelled };
  }

  /**
   * Run one RPC body inside its wrappers (call-wrappers.ts): cancellation and shutdown, the call's
   * deadline, progress lines, its slot, its span; then its one log line and its span's end.
   */
  private async track<T>(
    method: string,
    call: TrackedCall,
    body: (rpc: Tracked, log: RpcLog) => Promise<T>,
  ): Promise<T> {
    const controller = cancellation(method, call, this.inflight);
    const started = process.hrtime.bigint();
    const fields: RpcLog = {};
    const deadline = callDeadline(method, this.opts.callDeadlinesMs?.[method], controller, fields);
    const progress = { bytes: 0 };
    const stopProgress = progressLines(method, fields, progress, this.opts.logger, this.progressMs);
    const slot = admission(this.poolFor(method), this.opts.shares, controller.signal);
    const rpc = this.tracked(controller.signal, fields, progress, slot);
    const run = () => body(rpc, fields).finally(() => slot.release());
    const { result, span } = traced(this.opts.tracer, method, call, run);
    // Counted from here to the finally below, with nothing in between that can throw.
    this.clientGone?.callStarted(method);
    this.pending.add(result);
    try {
      return await this.ended(method, started, fields, result, span, deadline);
    } finally {
      deadline.clear();
      stopProgress();
      this.inflight.delete(controller);
      if (this.inflight.size === 0) for (const w of this.idleWaiters.splice(0)) w();
      this.pending.delete(result);
      this.clientGone?.callEnded();
    }
  }

  /** How often a long transfer logs a progress line. */
  private get progressMs(): number {
    return this.opts.progressIntervalMs ?? 10_000;
  }

  /** What the RPC body sees: its signal, and admission (the target resolved, then its slot and shares taken). */
  private tracked(
    signal: AbortSignal,
    fields: RpcLog,
    progress: { bytes: number },
    slot: ReturnType<typeof admission>,
  ): Tracked {
    return {
      signal,
      admit: async (ref) => {
        const target = await this.opts.service.resolve(ref);
        noteWhere(fields, target);
        const shares = await slot.take(target);
        return { on: { target, key: ref.key }, call: { signal, progress, shares } };
      },
    };
  }

  /** The slot pool a method takes from: transfers, listings, or none (the discovery calls). */
  private poolFor(method: string): Slots | undefined {
    return TRANSFERS.has(method) ? this.transfers : LISTINGS.has(method) ? this.listings : undefined;
  }

  /** The call's outcome: its log line, metrics and span end; past its deadline, the failure says which bound. */
  private async ended<T>(
    method: string,
    started: bigint,
    fields: RpcLog,
    result: Promise<T>,
    span: () => RpcSpan | undefined,
    deadline: CallDeadline,
  ): Promise<T> {
    try {
      const r = await result;
      this.publishEnd(method, started, fields, "ok");
      await span()?.end("ok", fields);
      return r;
    } catch (caught) {
      const e = deadline.late() ? deadline.overdue() : caught;
      const outcome = e instanceof PluginError ? e.kind : "error";
      this.publishEnd(method, started, fields, outcome, describeError(e));
      await span()?.end(outcome, fields, describeError(e));
      throw e;
    }
  }

  /** The slot pools now, for the metrics. */
  slotStats(): { pool: string; used: number; waiting: number; limit: number }[] {
    return [
      { pool: "transfers", ...this.transfers.stats, limit: this.transfers.limit },
      { pool: "listings", ...this.listings.stats, limit: this.listings.limit },
    ];
  }

  /** Tenants holding a slot now (shared mode only; elsewhere calls name no tenant). */
  tenantsHolding(): number {
    return new Set([...this.transfers.holders("tenant "), ...this.listings.holders("tenant ")]).size;
  }

  private publishEnd(method: string, started: bigint, fields: RpcLog, outcome: string, error?: string): void {
    const durationMs = Number(process.hrtime.bigint() - started) / 1e6;
    publishRpcEnded({ method, ...fields, outcome, durationMs, ...(error !== undefined ? { error } : {}) });
  }

  private handlers(): ArtifactServiceHandlers {
    const svc = this.opts.service;
    const idleMs = this.opts.streamIdleMs ?? 60_000;
    const track = this.track.bind(this);
    return {
      ...unaryHandlers(svc, track),
      OpenStream: openStreamHandler(svc, track, idleMs),
      SaveStream: saveStreamHandler(svc, track, idleMs),
    };
  }
}
