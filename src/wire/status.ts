// The one place a thrown value becomes what the client sees. Argo's client
// treats a gRPC error and an answer with `error` set alike, but a malformed
// request is the caller's mistake (INVALID_ARGUMENT) and a cancellation is
// reported as such (CANCELLED); everything else travels in the RPC's own
// error field (or OpenStream's error frame), in words that name what failed.
import { status } from "@grpc/grpc-js";
import { PluginError, describeError } from "../errors.js";

export type Outcome =
  { status: status.INVALID_ARGUMENT | status.CANCELLED; details: string } | { status: undefined; message: string };

export function outcomeOf(e: unknown): Outcome {
  if (e instanceof PluginError && e.kind === "invalid-argument")
    return { status: status.INVALID_ARGUMENT, details: e.message };
  if (e instanceof PluginError && e.kind === "cancelled") return { status: status.CANCELLED, details: e.message };
  return { status: undefined, message: describeError(e) };
}

/**
 * The gRPC status code an RPC's outcome (a PluginError kind, "ok" or "error") answers with:
 * outcomeOf's table as a number, for the trace spans.
 */
export function grpcCodeOf(outcome: string): number {
  return outcome === "invalid-argument"
    ? status.INVALID_ARGUMENT
    : outcome === "cancelled"
      ? status.CANCELLED
      : status.OK;
}

export function invalid(message: string): PluginError {
  return new PluginError("invalid-argument", message);
}
