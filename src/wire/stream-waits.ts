// Waits of the streaming RPCs, each bounded by the idle limit (a peer that
// stops reading or sending holds budget buffers); the call's cancellation
// bounds them too (util/abortable.ts: a dead call never runs its write callbacks).
import { once } from "node:events";
import type { EventEmitter } from "node:events";
import type { PluginError } from "../errors.js";

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
