// What every RPC handler shares: turning Argo's artifact message into the
// service's reference, and the per-call tracker (cancellation signal, budget
// share, transfer slot, one log line) that PluginServer provides.
import type { Admitted, ArtifactRef, Call } from "../artifacts/service.js";
import type { ArtifactMsg } from "./messages.js";
import { invalid } from "./status.js";

/** Fields of the one log line per RPC (and of its span's attributes): what the call named and moved. */
export interface RpcLog {
  bucket?: string;
  key?: string;
  /** The endpoint as logged, once the configuration is read. */
  endpoint?: string;
  kind?: "file" | "directory";
  bytes?: number;
  files?: number;
  skippedSymlinks?: number;
}

/** One RPC's trace span (tracing.ts); the server runs the body inside it and ends it with the outcome. */
export interface RpcSpan {
  run<T>(body: () => Promise<T>): Promise<T>;
  /** Ends the span; a promise when the span must be sent before the reply goes (see tracing.ts). */
  end(outcome: string, fields: RpcLog, error?: string): void | Promise<void>;
}

/** Starts RPC spans from the call's metadata (W3C trace context headers among them). */
export interface RpcTracer {
  start(
    method: string,
    metadata: Record<string, string | undefined>,
  ): RpcSpan | undefined | Promise<RpcSpan | undefined>;
}

/** What the tracker needs of a grpc-js call: its cancellation, and its metadata for the trace context. */
export interface TrackedCall {
  on(ev: "cancelled", fn: () => void): unknown;
  metadata?: { getMap(): Record<string, unknown> };
}

/** One RPC as its handler sees it: its cancellation, and the admission of its artifact. */
export interface Tracked {
  signal: AbortSignal;
  /**
   * Resolves the artifact's target (the service's config cache and target factory), takes the
   * call's slot with its tenant's fair shares, and answers what the service runs on and with.
   */
  admit(ref: ArtifactRef): Promise<{ on: Admitted; call: Call }>;
}

/** Runs one RPC body with the call's context (cancellation, admission) and its log line. */
export type Track = <T>(
  method: string,
  call: TrackedCall,
  body: (rpc: Tracked, log: RpcLog) => Promise<T>,
) => Promise<T>;

/** S3's longest object key, in UTF-8 bytes. */
export const MAX_KEY_BYTES = 1024;

/**
 * The artifact fields the service needs, its key recorded in the call's log line; a missing
 * piece, or a key no S3 store accepts, is the caller's mistake and refused before any request.
 */
export function artifactRef(a: ArtifactMsg | null | undefined, field: string, log: RpcLog): ArtifactRef {
  if (!a) throw invalid(`request has no ${field}`);
  const label = a.name ? `artifact "${a.name}"` : "artifact";
  if (!a.plugin) throw invalid(`${label} has no plugin block (${field}.plugin)`);
  // Logged whole up to a little past S3's limit; an over-long key's line says how long it was.
  const k = a.plugin.key;
  log.key = k.length > MAX_KEY_BYTES + 64 ? `${k.slice(0, MAX_KEY_BYTES + 64)}... (${Buffer.byteLength(k)} bytes)` : k;
  if (!a.plugin.configuration || a.plugin.configuration.trim() === "") {
    throw invalid(`${label}: plugin.configuration is empty; it must hold the S3 configuration (at least bucket)`);
  }
  const keyBytes = Buffer.byteLength(a.plugin.key);
  if (keyBytes > MAX_KEY_BYTES) {
    throw invalid(
      `${label}: plugin.key is ${keyBytes} bytes; S3 object keys are at most ${MAX_KEY_BYTES} bytes (UTF-8): shorten the key or its keyFormat`,
    );
  }
  return { name: a.name, configuration: a.plugin.configuration, key: a.plugin.key };
}
