// Waits of the streaming RPCs, each bounded: by the call's cancellation (a
// dead call never runs its write callbacks) and by the idle limit (a peer
// that stops reading or sending holds budget buffers).
import { once } from "node:events";
import type { EventEmitter } from "node:events";
import type { PluginError } from "../errors.js";

/** `p`, or the signal's reason once the call is cancelled. */
export function abortable(p: Promise<void>, signal: AbortSignal): Promise<void> {
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
export function withIdleLimit<T>(p: Promise<T>, ms: number, onIdle: () => PluginError): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(onIdle()), ms);
  });
  return Promise.race([p, limit]).finally(() => clearTimeout(timer));
}

export async function waitDrain(call: EventEmitter, signal: AbortSignal): Promise<void> {
  await once(call, "drain", { signal });
}
