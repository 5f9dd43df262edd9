// The small pieces every RPC runs inside (server.ts's track composes them):
// its cancellation, its overall deadline, its progress lines, its slot, and
// its trace span. Each owns one concern and hands back how to end it.
import { setMaxListeners } from "node:events";
import { PluginError } from "../errors.js";
import type { Logger } from "../log.js";
import type { StoreTarget } from "../store/port.js";
import { type ShareGroup, type Slots, slotGroups } from "../util/slots.js";
import type { RpcLog, RpcSpan, RpcTracer, TrackedCall } from "./rpc.js";

/** The call's signal, aborted when the client cancels; registered in `inflight` until `done`. */
export function cancellation(method: string, call: TrackedCall, inflight: Set<AbortController>): AbortController {
  const controller = new AbortController();
  setMaxListeners(0, controller.signal);
  call.on("cancelled", () => controller.abort(new PluginError("cancelled", `${method}: cancelled by the client`)));
  inflight.add(controller);
  return controller;
}

export interface CallDeadline {
  /** The deadline fired: whatever the abort surfaced as, the call failed for this. */
  late(): boolean;
  overdue(): PluginError;
  clear(): void;
}

/** A bound on the whole call (the shared sidecar's listings, every page): past it, the call is aborted. */
export function callDeadline(
  method: string,
  deadlineMs: number | undefined,
  controller: AbortController,
  fields: RpcLog,
): CallDeadline {
  let late = false;
  const overdue = () =>
    new PluginError(
      "storage",
      `${method}${fields.key !== undefined ? ` of key "${fields.key}"` : ""} in bucket ${fields.bucket ?? "?"} (endpoint ${fields.endpoint ?? "?"}) did not finish within ${(deadlineMs ?? 0) / 1000} s, the bound the operator set for it (ARGO_S3_PLUGIN_SHARED_LISTING_SECONDS): the store answers too slowly or its listing does not end`,
    );
  const timer = deadlineMs
    ? setTimeout(() => {
        late = true;
        controller.abort(overdue());
      }, deadlineMs)
    : undefined;
  timer?.unref();
  return { late: () => late, overdue, clear: () => clearTimeout(timer) };
}

/** A progress line every `intervalMs` while a long call runs; returns the stop. */
export function progressLines(
  method: string,
  fields: RpcLog,
  progress: { bytes: number },
  logger: Logger,
  intervalMs: number,
): () => void {
  const started = process.hrtime.bigint();
  const ticker = setInterval(() => {
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const mibPerSec = Math.round((progress.bytes / 1048576 / seconds) * 10) / 10;
    const { bucket, key } = fields;
    logger.info({ method, bucket, key, bytes: progress.bytes, seconds: Math.round(seconds), mibPerSec }, "progress");
  }, intervalMs);
  ticker.unref();
  return () => clearInterval(ticker);
}

export interface Admission {
  /** Takes the call's slot for its target (once per call), answering the target's share groups. */
  take(target: StoreTarget): Promise<readonly ShareGroup[]>;
  /** Gives the slot back, if one was taken. */
  release(): void;
}

/** A slot of `pool` for the call, capped by the share groups of its target; no pool: no slot. */
export function admission(
  pool: Slots | undefined,
  sharesOf: ((t: StoreTarget) => readonly ShareGroup[]) | undefined,
  signal: AbortSignal,
): Admission {
  let release: (() => void) | undefined;
  let taking: Promise<readonly ShareGroup[]> | undefined;
  const take = (target: StoreTarget) => {
    const shares = sharesOf?.(target) ?? [];
    if (!pool) return Promise.resolve(shares);
    return (taking ??= pool.take(signal, slotGroups(shares, pool.limit)).then((r) => {
      release = r;
      return shares;
    }));
  };
  return { take, release: () => release?.() };
}

/** Where the call goes, in its log fields as soon as its target is known (a failure's line names it too). */
export function noteWhere(fields: RpcLog, target: StoreTarget): void {
  fields.bucket ??= target.bucket;
  fields.endpoint ??= target.endpointLabel;
}

/** The call's metadata as text headers (binary ones, "-bin", are left out): where W3C trace context travels. */
function metadataOf(call: TrackedCall): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(call.metadata?.getMap() ?? {})) if (typeof v === "string") out[k] = v;
  return out;
}

/**
 * The body inside the RPC's span when traces are on, so the S3 requests it makes are its
 * children. Starting the span may wait for the services (bin/plugin.ts): inside the promise, so a
 * failure there is this RPC's.
 */
export function traced<T>(
  tracer: RpcTracer | undefined,
  method: string,
  call: TrackedCall,
  run: () => Promise<T>,
): { result: Promise<T>; span: () => RpcSpan | undefined } {
  let span: RpcSpan | undefined;
  const result = tracer
    ? (async () => {
        span = await tracer.start(method, metadataOf(call));
        return span ? span.run(run) : run();
      })()
    : run();
  return { result, span: () => span };
}
