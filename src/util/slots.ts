// A counting semaphore with FIFO waiters whose cancellation ends the wait.
// Used for admission of RPCs (memory outside the buffer budget grows with the
// number of transfers running at once), for the ranged GETs all files of one
// directory Load share, and for a connection pool's sockets.
//
// A taker may name groups it belongs to, each with a cap. In the shared
// argo-server sidecar every workflow author chooses the store a call goes to,
// so one author's calls to a store that never answers could hold every slot
// and stall every other user: there a call names its tenant (endpoint, bucket,
// credential source) and its endpoint, and no group holds more than its cap;
// what one group cannot take stays free for the others. Waiters are served in
// arrival order among those whose groups are below their caps.

export interface SlotGroup {
  key: string;
  cap: number;
}

/** A group a call counts in, with the fraction of a pool (or of the buffer budget) it may hold together. */
export interface ShareGroup {
  key: string;
  fraction: number;
}

/** Share groups as a pool of `limit` slots caps them: at least one slot each, what is left for others rounded up. */
export function slotGroups(shares: readonly ShareGroup[], limit: number): SlotGroup[] {
  return shares.map((g) => ({ key: g.key, cap: Math.max(1, limit - Math.ceil(limit * (1 - g.fraction))) }));
}

interface Waiter {
  groups: readonly SlotGroup[];
  go: () => void;
}

export class Slots {
  private used = 0;
  private readonly held = new Map<string, number>();
  private readonly queue: Waiter[] = [];

  constructor(readonly limit: number) {}

  /** Slots in use and calls waiting for one (for the ready line and tests). */
  get stats(): { used: number; waiting: number } {
    return { used: this.used, waiting: this.queue.length };
  }

  /** Keys of the groups starting with `prefix` that hold a slot now. */
  holders(prefix: string): string[] {
    return [...this.held.keys()].filter((k) => k.startsWith(prefix));
  }

  async take(signal: AbortSignal, groups: readonly SlotGroup[] = []): Promise<() => void> {
    signal.throwIfAborted();
    if (this.fits(groups) && !this.queue.some((w) => this.fits(w.groups))) {
      this.enter(groups);
      return this.releaser(groups);
    }
    await new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        groups,
        go: () => {
          signal.removeEventListener("abort", onAbort);
          resolve();
        },
      };
      const onAbort = () => {
        const i = this.queue.indexOf(waiter);
        if (i >= 0) this.queue.splice(i, 1);
        reject(signal.reason);
      };
      signal.addEventListener("abort", onAbort, { once: true });
      this.queue.push(waiter);
    });
    return this.releaser(groups);
  }

  private fits(groups: readonly SlotGroup[]): boolean {
    return this.used < this.limit && groups.every((g) => (this.held.get(g.key) ?? 0) < g.cap);
  }

  private enter(groups: readonly SlotGroup[]): void {
    this.used++;
    for (const g of groups) this.held.set(g.key, (this.held.get(g.key) ?? 0) + 1);
  }

  private leave(groups: readonly SlotGroup[]): void {
    this.used--;
    for (const g of groups) {
      const n = (this.held.get(g.key) ?? 1) - 1;
      if (n === 0) this.held.delete(g.key);
      else this.held.set(g.key, n);
    }
  }

  /** Gives the slot back and starts every waiter that now fits, oldest first; safe to call twice. */
  private releaser(groups: readonly SlotGroup[]): () => void {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.leave(groups);
      for (let i = 0; i < this.queue.length && this.used < this.limit;) {
        const w = this.queue[i]!;
        if (this.fits(w.groups)) {
          this.queue.splice(i, 1);
          this.enter(w.groups);
          w.go();
        } else i++;
      }
    };
  }
}
