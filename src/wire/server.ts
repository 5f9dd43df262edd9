// The gRPC face of the plugin: binds the unix socket, turns each RPC into a
// call on ArtifactService with an AbortSignal tied to the call's lifetime,
// maps failures to Argo's conventions (malformed request → INVALID_ARGUMENT,
// everything else → success=false / error text) and logs one line per RPC.
import { once, setMaxListeners } from "node:events";
import { chmod, unlink } from "node:fs/promises";
import {
  Server,
  ServerCredentials,
  type ServerReadableStream,
  type ServerUnaryCall,
  type ServerWritableStream,
  type UntypedServiceImplementation,
  status,
  type sendUnaryData,
} from "@grpc/grpc-js";
import type { ArtifactRef, ArtifactService } from "../artifacts/service.js";
import { PluginError, describeError } from "../errors.js";
import { onLateUpload } from "../transfer/late-uploads.js";
import type { Logger } from "../log.js";
import type {
  ArtifactMsg,
  ArtifactOnlyRequest,
  GetCapabilitiesResponse,
  IsDirectoryResponse,
  ListObjectsResponse,
  LoadArtifactRequest,
  OpenStreamResponse,
  SaveArtifactRequest,
  SaveStreamArtifactRequest,
  SuccessResponse,
} from "./messages.js";
import { Discovery } from "./discovery.js";
import { prepareSocket } from "./socket.js";
import { Slots } from "./slots.js";
import { limitReadAhead, widenConnectionWindow, widenStreamWindow } from "./flow-control.js";
import { loadArtifactService } from "./proto.js";
import { withProgress } from "../transfer/progress.js";
import { withBudgetShare } from "../transfer/buffer-budget.js";

/** OpenStream frame size: far below grpc-go's 4 MiB default receive limit. */
export const STREAM_FRAME_BYTES = 2 * 1024 * 1024;

/** OpenStream frames written but not yet taken by the transport, per call. */
const FRAMES_IN_FLIGHT = 2;

/** RPCs that move data: they take a transfer slot. */
const TRANSFERS = new Set(["Load", "Save", "SaveStream", "OpenStream", "Delete"]);

/** Bigger than Argo's 2 MiB SaveStream chunks with room to spare, small enough to refuse abuse. */
const MAX_RECEIVE_BYTES = 8 * 1024 * 1024;

export interface ServerOptions {
  socketPath: string;
  service: ArtifactService;
  logger: Logger;
  /** File mode of the socket; default: follow the folder's sharing (see socket.ts). */
  socketMode?: number | undefined;
  /** RPCs moving data at once (Load, Save, SaveStream, OpenStream, Delete); later ones wait. */
  maxConcurrentTransfers?: number;
  /** How often a long RPC logs a progress line (default 10 s). */
  progressIntervalMs?: number;
  /**
   * How long an OpenStream client may take no data, or a SaveStream client send
   * none, before the call is ended (default 60 s): a stalled peer holds budget buffers.
   */
  streamIdleMs?: number;
}

function invalid(message: string): PluginError {
  return new PluginError("invalid-argument", message);
}

/** The artifact fields the service needs; a missing piece is the caller's mistake. */
export function artifactRef(a: ArtifactMsg | null | undefined, field: string): ArtifactRef {
  if (!a) throw invalid(`request has no ${field}`);
  const label = a.name ? `artifact "${a.name}"` : "artifact";
  if (!a.plugin) throw invalid(`${label} has no plugin block (${field}.plugin)`);
  if (!a.plugin.configuration || a.plugin.configuration.trim() === "") {
    throw invalid(`${label}: plugin.configuration is empty; it must hold the S3 configuration (at least bucket)`);
  }
  return { name: a.name, configuration: a.plugin.configuration, key: a.plugin.key };
}

interface RpcLog {
  bucket?: string;
  key?: string;
  bytes?: number;
  files?: number;
  [k: string]: unknown;
}

export class PluginServer {
  private readonly server: Server;
  private readonly inflight = new Set<AbortController>();
  private readonly pending = new Set<Promise<unknown>>();
  private readonly discovery: Discovery;
  private readonly transfers: Slots;
  private bound = false;

  constructor(private readonly opts: ServerOptions) {
    this.server = new Server({
      "grpc.max_receive_message_length": MAX_RECEIVE_BYTES,
      "grpc.max_send_message_length": 4 * 1024 * 1024,
    });
    widenStreamWindow(this.server);
    this.server.addService(loadArtifactService(), this.handlers());
    this.discovery = new Discovery(this.server);
    this.transfers = new Slots(opts.maxConcurrentTransfers ?? 64);
    onLateUpload((e) => {
      const { event, ...fields } = e;
      if (event === "aborted") this.opts.logger.warn(fields, "aborted a multipart upload the store created after its CreateMultipartUpload had gone unanswered");
      else this.opts.logger.warn(fields, "could not check for a multipart upload created after an unanswered CreateMultipartUpload; a lifecycle rule has to reclaim it if there is one");
    });
  }

  async listen(): Promise<void> {
    const path = this.opts.socketPath;
    const mode = await prepareSocket(path, this.opts.socketMode);
    await new Promise<void>((resolve, reject) => {
      this.server.bindAsync(`unix:${path}`, ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve()));
    });
    this.bound = true;
    widenConnectionWindow(this.server);
    await chmod(path, mode);
    this.discovery.serving();
  }

  /**
   * Stop accepting calls, let in-flight ones finish for up to `graceMs`, then
   * cancel the rest (their uploads are aborted) and wait for their cleanup.
   */
  async shutdown(graceMs: number): Promise<{ cancelled: number }> {
    this.discovery.stopping();
    const drained = new Promise<void>((resolve) => this.server.tryShutdown(() => resolve()));
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

  /** Run one RPC body with a cancellation signal and one log line. */
  private async track<T>(method: string, call: { on(ev: "cancelled", fn: () => void): unknown }, body: (signal: AbortSignal, log: RpcLog) => Promise<T>): Promise<T> {
    const controller = new AbortController();
    setMaxListeners(0, controller.signal);
    call.on("cancelled", () => controller.abort(new PluginError("cancelled", `${method}: cancelled by the client`)));
    this.inflight.add(controller);
    const started = process.hrtime.bigint();
    const fields: RpcLog = {};
    const progress = { bytes: 0 };
    // Long transfers say how far they are at a fixed interval.
    const ticker = setInterval(() => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      this.opts.logger.info(
        { method, bucket: fields.bucket, key: fields.key, bytes: progress.bytes, seconds: Math.round(seconds), mibPerSec: Math.round((progress.bytes / 1048576 / seconds) * 10) / 10 },
        "progress",
      );
    }, this.opts.progressIntervalMs ?? 10_000);
    ticker.unref();
    const run = async () => {
      const release = TRANSFERS.has(method) ? await this.transfers.take(controller.signal) : undefined;
      try {
        return await body(controller.signal, fields);
      } finally {
        release?.();
      }
    };
    const p = withProgress(progress, () => withBudgetShare(run));
    this.pending.add(p);
    try {
      const result = await p;
      this.logRpc(method, started, fields, "ok");
      return result;
    } catch (e) {
      this.logRpc(method, started, fields, e instanceof PluginError ? e.kind : "error", describeError(e));
      throw e;
    } finally {
      clearInterval(ticker);
      this.inflight.delete(controller);
      this.pending.delete(p);
    }
  }

  private logRpc(method: string, started: bigint, f: RpcLog, outcome: string, error?: string): void {
    const durationMs = Number(process.hrtime.bigint() - started) / 1e6;
    const line: Record<string, unknown> = { method, ...f, durationMs: Math.round(durationMs * 10) / 10, outcome };
    if (f.bytes !== undefined && durationMs > 0) line["mibPerSec"] = Math.round((f.bytes / 1048576 / (durationMs / 1000)) * 10) / 10;
    if (error !== undefined) line["error"] = error;
    if (outcome === "ok") this.opts.logger.info(line, "rpc");
    else this.opts.logger.warn(line, "rpc");
  }

  private handlers(): UntypedServiceImplementation {
    const svc = this.opts.service;
    const idleMs = this.opts.streamIdleMs ?? 60_000;
    const idle = <T>(p: Promise<T>, onIdle: () => PluginError): Promise<T> => withIdleLimit(p, idleMs, onIdle);

    /** Unary RPC answering success/error; malformed requests become INVALID_ARGUMENT. */
    const unary = <Req, Res>(
      method: string,
      run: (req: Req, signal: AbortSignal, log: RpcLog) => Promise<Res>,
      onError: (message: string) => Res,
    ) => {
      return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => {
        this.track(method, call, (signal, log) => run(call.request, signal, log)).then(
          (res) => callback(null, res),
          (e: unknown) => replyWithError(e, callback, onError),
        );
      };
    };
    const failed = (error: string): SuccessResponse => ({ success: false, error });

    return {
      Load: unary<LoadArtifactRequest, SuccessResponse>(
        "Load",
        async (req, signal, log) => {
          const ref = artifactRef(req.inputArtifact, "input_artifact");
          Object.assign(log, { key: ref.key });
          if (!req.path) throw invalid("Load request has no path");
          Object.assign(log, await svc.load(ref, req.path, signal));
          return { success: true, error: "" };
        },
        failed,
      ),
      Save: unary<SaveArtifactRequest, SuccessResponse>(
        "Save",
        async (req, signal, log) => {
          const ref = artifactRef(req.outputArtifact, "output_artifact");
          Object.assign(log, { key: ref.key });
          if (!req.path) throw invalid("Save request has no path");
          Object.assign(log, await svc.save(ref, req.path, signal));
          return { success: true, error: "" };
        },
        failed,
      ),
      Delete: unary<ArtifactOnlyRequest, SuccessResponse>(
        "Delete",
        async (req, signal, log) => {
          const ref = artifactRef(req.artifact, "artifact");
          Object.assign(log, await svc.delete(ref, signal));
          return { success: true, error: "" };
        },
        failed,
      ),
      ListObjects: unary<ArtifactOnlyRequest, ListObjectsResponse>(
        "ListObjects",
        async (req, signal, log) => {
          const ref = artifactRef(req.artifact, "artifact");
          Object.assign(log, { key: ref.key });
          const objects = await svc.listObjects(ref, signal);
          log.files = objects.length;
          return { objects, error: "" };
        },
        (error) => ({ objects: [], error }),
      ),
      IsDirectory: unary<ArtifactOnlyRequest, IsDirectoryResponse>(
        "IsDirectory",
        async (req, signal, log) => {
          const ref = artifactRef(req.artifact, "artifact");
          Object.assign(log, { key: ref.key });
          return { isDirectory: await svc.isDirectory(ref, signal), error: "" };
        },
        (error) => ({ isDirectory: false, error }),
      ),
      GetCapabilities: (_call: ServerUnaryCall<unknown, GetCapabilitiesResponse>, callback: sendUnaryData<GetCapabilitiesResponse>) => {
        callback(null, { supportsSaveStream: true });
      },
      OpenStream: (call: ServerWritableStream<ArtifactOnlyRequest, OpenStreamResponse>) => {
        this.track("OpenStream", call, async (signal, log) => {
          const ref = artifactRef(call.request.artifact, "artifact");
          Object.assign(log, { key: ref.key });
          const { bucket, chunks } = await svc.openStream(ref, signal);
          log.bucket = bucket;
          const stalled = () =>
            new PluginError("cancelled", `OpenStream s3://${bucket}/${ref.key}: the client took no data for ${idleMs / 1000} s; stream ended to free its buffers`);
          let bytes = 0;
          // Frames wait in the call's queue as views of a range's buffer, which goes
          // back to the budget once the next range is pulled; and every queued frame
          // is memory outside the budget. So at most FRAMES_IN_FLIGHT frames are
          // outstanding per call, and a range's frames are all taken before the next
          // range is pulled. A slow reader thus stops us reading S3.
          const inFlight: Promise<void>[] = [];
          for await (const range of chunks) {
            for (let off = 0; off < range.length; off += STREAM_FRAME_BYTES) {
              const data = range.subarray(off, off + STREAM_FRAME_BYTES);
              bytes += data.length;
              if (inFlight.length >= FRAMES_IN_FLIGHT) await idle(abortable(inFlight.shift()!, signal), stalled);
              inFlight.push(new Promise<void>((resolve) => call.write({ data }, () => resolve())));
              if (call.writableNeedDrain) await idle(waitDrain(call, signal), stalled);
            }
            while (inFlight.length > 0) await idle(abortable(inFlight.shift()!, signal), stalled);
          }
          log.bytes = bytes;
          call.write({ isEnd: true });
        }).then(
          () => call.end(),
          (e: unknown) => {
            if (e instanceof PluginError && e.kind === "invalid-argument") {
              // emit, not destroy: grpc-js sends the status from its 'error' handler; a destroyed call never sends one.
              call.emit("error", Object.assign(new Error(e.message), { code: status.INVALID_ARGUMENT, details: e.message }));
              return;
            }
            if (!call.cancelled) {
              call.write({ error: describeError(e) });
              call.end();
            }
          },
        );
      },
      SaveStream: (call: ServerReadableStream<SaveStreamArtifactRequest, SuccessResponse>, callback: sendUnaryData<SuccessResponse>) => {
        this.track("SaveStream", call, async (signal, log) => {
          limitReadAhead(call, 1);
          const it = (call as AsyncIterable<SaveStreamArtifactRequest>)[Symbol.asyncIterator]();
          const first = await idle(it.next(), () => new PluginError("cancelled", `SaveStream: no first frame within ${idleMs / 1000} s`));
          if (first.done) throw invalid("SaveStream: the stream ended before its first (metadata) frame");
          const ref = artifactRef(first.value.outputArtifact, "output_artifact (first SaveStream frame)");
          Object.assign(log, { key: ref.key });
          const head = first.value.chunk;
          const stalled = () =>
            new PluginError("cancelled", `SaveStream to key "${ref.key}": the client sent no data for ${idleMs / 1000} s; upload aborted`);
          async function* chunks(): AsyncGenerator<Buffer> {
            if (head && head.length > 0) yield head;
            for (;;) {
              let next: IteratorResult<SaveStreamArtifactRequest>;
              try {
                next = await idle(it.next(), stalled);
              } catch (e) {
                // A client that cancels (or hits its deadline) mid-stream surfaces here as a
                // premature close of the call: report it as the cancellation it is.
                if (signal.aborted || call.cancelled || (e as { code?: string }).code === "ERR_STREAM_PREMATURE_CLOSE") {
                  throw new PluginError("cancelled", "SaveStream: cancelled by the client");
                }
                throw e;
              }
              if (next.done) break;
              if (next.value.chunk && next.value.chunk.length > 0) yield next.value.chunk;
            }
            // A cancelled client stream can look like a clean end: never complete a truncated upload.
            if (signal.aborted || call.cancelled) throw new PluginError("cancelled", "SaveStream: cancelled by the client");
          }
          Object.assign(log, await svc.saveStream(ref, chunks(), signal));
          return { success: true, error: "" };
        }).then(
          (res) => callback(null, res),
          (e: unknown) => replyWithError(e, callback, failed),
        );
      },
    };
  }
}

/** Malformed request → INVALID_ARGUMENT, cancelled → CANCELLED, anything else → the RPC's own error field. */
function replyWithError<Res>(e: unknown, callback: sendUnaryData<Res>, onError: (message: string) => Res): void {
  if (e instanceof PluginError && e.kind === "invalid-argument") callback({ code: status.INVALID_ARGUMENT, details: e.message });
  else if (e instanceof PluginError && e.kind === "cancelled") callback({ code: status.CANCELLED, details: e.message });
  else callback(null, onError(describeError(e)));
}

/** `p`, or the signal's reason once the call is cancelled (a dead call never runs its write callbacks). */
function abortable(p: Promise<void>, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    });
  });
}

/** `p`, or `onIdle()` thrown when it has not settled within `ms`. */
function withIdleLimit<T>(p: Promise<T>, ms: number, onIdle: () => PluginError): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(onIdle()), ms);
  });
  return Promise.race([p, limit]).finally(() => clearTimeout(timer));
}

async function waitDrain(call: ServerWritableStream<ArtifactOnlyRequest, OpenStreamResponse>, signal: AbortSignal): Promise<void> {
  await once(call, "drain", { signal });
}
