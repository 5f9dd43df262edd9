// How long an S3 answer may take, one rule for both ways a GET goes (the
// lean client in http1.ts and the AWS SDK in store.ts): the head within the
// request timeout, and the body at least MIN_BODY_RATE, judged over windows
// of that timeout. Idle timers alone let a server that sends a byte now and
// then hold a call (and its transfer slot) for ever.

/**
 * Slowest body accepted, in bytes per second, judged over each window of the
 * exchange's timeout while our own sink is not holding reading back.
 */
export const MIN_BODY_RATE = 1024;

/** The window a body's rate is judged over: the request timeout, at least a second. */
export function rateWindowMs(timeoutMs: number): number {
  return Math.max(1000, timeoutMs);
}

/**
 * The judgement at the end of a window: `got` bytes arrived while `heldMs`
 * of the window was spent on our side. Returns a description of the rate when
 * it is too slow, undefined when it is fine or when the window was mostly
 * ours (a busy disk is not the server's fault).
 */
export function tooSlow(got: number, windowMs: number, heldMs: number, minRate = MIN_BODY_RATE): string | undefined {
  const serverMs = windowMs - heldMs;
  if (serverMs < windowMs / 2 || got >= (minRate * serverMs) / 1000) return undefined;
  return `${Math.round((got * 1000) / serverMs)} bytes/s, below the ${minRate} bytes/s accepted`;
}

/**
 * The shared argo-server sidecar's slowest body: with it a range of S3's largest
 * part size in this plugin's defaults (16 MiB) ends within ~4 minutes whatever
 * pace a store keeps, instead of hours at MIN_BODY_RATE.
 */
export const SHARED_MIN_BODY_RATE = 64 * 1024;
