// What every RPC handler shares: turning Argo's artifact message into the
// service's reference, and the per-call tracker (cancellation signal, budget
// share, transfer slot, one log line) that PluginServer provides.
import type { ArtifactRef, Call } from "../artifacts/service.js";
import type { ArtifactMsg } from "./messages.js";
import { invalid } from "./status.js";

/** Fields of the one log line per RPC. */
export interface RpcLog {
  bucket?: string;
  key?: string;
  bytes?: number;
  files?: number;
  [k: string]: unknown;
}

/** One RPC's trace span (tracing.ts); the server runs the body inside it and ends it with the outcome. */
export interface RpcSpan {
  run<T>(body: () => Promise<T>): Promise<T>;
  /** Ends the span; a promise when the span must be sent before the reply goes (see tracing.ts). */
  end(outcome: string, fields: RpcLog, error?: string): void | Promise<void>;
}

/** Starts RPC spans from the call's metadata (W3C trace context headers among them). */
export interface RpcTracer {
  start(method: string, metadata: Record<string, string | undefined>): RpcSpan | undefined | Promise<RpcSpan | undefined>;
}

/** What the tracker needs of a grpc-js call: its cancellation, and its metadata for the trace context. */
export interface TrackedCall {
  on(ev: "cancelled", fn: () => void): unknown;
  metadata?: { getMap(): Record<string, unknown> };
}

/** Runs one RPC body with the call's context (cancellation, byte counter) and its log line. */
export type Track = <T>(method: string, call: TrackedCall, body: (rpc: Call, log: RpcLog) => Promise<T>) => Promise<T>;

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
