// A counting semaphore with FIFO waiters whose cancellation ends the wait.
// Used for admission of RPCs that move data (memory outside the buffer budget
// grows with the number of transfers running at once), and for the ranged
// GETs all files of one directory Load share.
export class Slots {
  private used = 0;
  private readonly queue: (() => void)[] = [];

  constructor(readonly limit: number) {}

  async take(signal: AbortSignal): Promise<() => void> {
    signal.throwIfAborted();
    if (this.used < this.limit && this.queue.length === 0) {
      this.used++;
      return this.releaser();
    }
    await new Promise<void>((resolve, reject) => {
      const go = () => {
        signal.removeEventListener("abort", onAbort);
        resolve();
      };
      const onAbort = () => {
        const i = this.queue.indexOf(go);
        if (i >= 0) this.queue.splice(i, 1);
        reject(signal.reason);
      };
      signal.addEventListener("abort", onAbort, { once: true });
      this.queue.push(go);
    });
    return this.releaser();
  }

  /** Hands the slot straight to the next waiter, if any; safe to call twice. */
  private releaser(): () => void {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const next = this.queue.shift();
      if (next) next();
      else this.used--;
    };
  }
}
