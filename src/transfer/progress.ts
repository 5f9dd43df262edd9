// Bytes moved by the RPC currently running, without threading a counter
// through every layer: the wire layer opens a scope per RPC, the transfer
// engine adds to whatever scope it runs in. Used for the periodic progress
// log line of long transfers.
import { AsyncLocalStorage } from "node:async_hooks";

export interface Progress {
  bytes: number;
}

const scope = new AsyncLocalStorage<Progress>();

/** Run `fn` with a fresh byte counter that transfers inside it add to. */
export function withProgress<T>(progress: Progress, fn: () => T): T {
  return scope.run(progress, fn);
}

/** Count `n` bytes moved for the current RPC, if it is being tracked. */
export function addProgress(n: number): void {
  const p = scope.getStore();
  if (p) p.bytes += n;
}
