// What the wire tells observers: one typed event per RPC once it has ended,
// published on a diagnostics channel by the tracker's outcome wrapper
// (server.ts). The log line and the metrics subscribe (bin/plugin.ts); the trace span
// is the RPC's context while it runs, so it stays a wrapper (call-wrappers.ts).
import type { Logger } from "../log.js";
import { typedChannel } from "../util/events.js";
import type { RpcLog } from "./rpc.js";

/** One RPC, ended: what it named and moved, how it ended, how long it took. */
export interface RpcEnded extends RpcLog {
  method: string;
  /** "ok", "cancelled", or the failure's kind (a PluginError kind, else "error"). */
  outcome: string;
  durationMs: number;
  /** The failure in words, as the caller got it. */
  error?: string | undefined;
}

const ended = typedChannel<RpcEnded>("argo-s3-artifact-plugin:rpc-ended");

export const publishRpcEnded = ended.publish;

/** Calls `fn` for every RPC that ends from now on (an observer that throws loses that event only); returns the unsubscribe. */
export const onRpcEnded = ended.subscribe;

/**
 * The one log line per RPC. A failed RPC fails the workflow step: error, as Argo logs it; a
 * cancelled one (the caller left) is a warning.
 */
export function logRpcLine(logger: Logger, e: RpcEnded): void {
  const { error, ...rest } = e;
  const line: Record<string, unknown> = { ...rest, durationMs: Math.round(e.durationMs * 10) / 10 };
  if (e.bytes !== undefined && e.durationMs > 0)
    line["mibPerSec"] = Math.round((e.bytes / 1048576 / (e.durationMs / 1000)) * 10) / 10;
  if (error !== undefined) line["error"] = error;
  if (e.outcome === "ok") logger.info(line, "rpc");
  else if (e.outcome === "cancelled") logger.warn(line, "rpc");
  else logger.error(line, "rpc");
}
