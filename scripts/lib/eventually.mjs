// @ts-check
/**
 * Calls `check` (which may talk to a server) every `everyMs` until it returns
 * true, or rejects naming `what` and the last error after `ms`. Every wait has
 * its own bound, so a hang fails fast and says what it was waiting for.
 * @param {string} what @param {() => Promise<boolean>} check @param {number} ms @param {number} [everyMs]
 * @returns {Promise<void>}
 */
export async function eventually(what, check, ms, everyMs = 1000) {
  const end = Date.now() + ms;
  let last = "";
  for (;;) {
    try {
      if (await check()) return;
    } catch (e) {
      last = /** @type {Error} */ (e).message;
    }
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms${last ? ` (last error: ${last})` : ""}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
