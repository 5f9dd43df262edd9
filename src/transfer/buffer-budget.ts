// One process-wide budget for transfer buffers (upload parts, download write
// batches, OpenStream read-ahead). Concurrency settings multiply — files in
// flight × parts in flight × part size — so without a shared cap a directory
// of large files, or many RPCs at once, could hold gigabytes. Every transfer
// buffer is taken from here; when the budget is spent, takers wait in FIFO
// order until buffers come back. Freed buffers are kept for reuse (by size),
// which spares the GC from churning through hundreds of megabytes; kept plus
// handed-out stays within the budget, except that small requests may overrun it
// by an eighth rather than evict a kept multi-MiB buffer. Once nothing has been
// handed out for a while, the kept buffers are let go, so an idle plugin gives
// the memory back instead of holding the budget for ever.
//
// Fair share: each RPC takes its buffers through a share of its own
// (BufferBudget.share(), opened per job by the engine). While several RPCs
// hold or wait for buffers, one holding more than budget ÷ active RPCs waits
// for its own buffers to come back before it gets more, so a single call (or
// a client that stalls) cannot take the whole budget from the rest. Within a
// share, and among requests that are within their share, order is FIFO.
import { PluginError } from "../errors.js";
import type { ShareGroup } from "../util/slots.js";

const MiB = 1024 * 1024;

/** Requests from this size up are "large": they may evict kept buffers of other sizes. */
const LARGE = 4 * MiB;

/** One RPC's standing with the budget, and the groups it counts in (the shared sidecar's fair shares). */
class BudgetShare {
  held = 0;
  waiting = 0;
  constructor(readonly groups: readonly ShareGroup[] = []) {}
}

/** What the engine takes transfer buffers from: the budget as one RPC sees it. */
export interface Buffers {
  /** The whole budget, in bytes (no one buffer should be near it). */
  readonly limitBytes: number;
  /** A buffer of exactly `size` bytes; waits while the budget (or this caller's fair share) is spent. */
  acquire(size: number, signal?: AbortSignal): Promise<Buffer>;
  /**
   * Gives `buf` back. `reuse: false`: something may still read it (a write the transport has
   * not finished), so it is not handed out again; the GC frees it once nothing refers to it.
   */
  release(buf: Buffer, reuse?: boolean): void;
  /** Bytes this caller holds now. */
  heldBytes(): number;
  /** This caller's fair share now: the budget ÷ the calls holding or waiting for buffers (itself included). */
  fairShareBytes(): number;
}

interface Waiter {
  size: number;
  share: BudgetShare | undefined;
  resolve: (b: Buffer) => void;
  reject: (e: unknown) => void;
  signal: AbortSignal | undefined;
  onAbort: () => void;
}

export class BufferBudget implements Buffers {
  private outstanding = 0;
  private readonly free = new Map<number, Buffer[]>();
  private freeBytes = 0;
  private readonly waiters: Waiter[] = [];
  private idleTimer: NodeJS.Timeout | undefined;
  /** Which share each handed-out buffer is charged to. */
  private readonly owners = new WeakMap<Buffer, BudgetShare>();
  /** Shares holding or waiting for buffers. */
  private readonly active = new Set<BudgetShare>();
  /** Bytes held by each group of shares, by key. */
  private readonly groupHeld = new Map<string, number>();

  /** `idleMs`: how long nothing must be handed out before kept buffers are let go. */
  constructor(
    readonly limitBytes: number,
    private readonly idleMs = 10_000,
  ) {}

  /** Bytes currently handed out. */
  get inUse(): number {
    return this.outstanding;
  }

  /** The budget as a caller outside any share sees it: all of it is its share. */
  heldBytes(): number {
    return this.outstanding;
  }

  fairShareBytes(): number {
    return this.limitBytes;
  }

  /** Bytes kept for reuse. */
  get kept(): number {
    return this.freeBytes;
  }

  /** Requests waiting for a buffer now (callers held up by the budget, not just using it). */
  get waiting(): number {
    return this.waiters.length;
  }

  /** Shares that currently hold or wait for buffers. */
  get activeShares(): number {
    return this.active.size;
  }

  /**
   * One RPC's view of the budget: what it takes is charged to its own fair share. With groups
   * (the shared sidecar: the call's tenant, host, and the authors' stores together), each
   * group's shares together hold at most its fraction of the budget, so calls to a store that
   * sends slowly (or never) leave the rest to everyone else, however many of them there are.
   */
  share(groups: readonly ShareGroup[] = []): Buffers {
    const share = new BudgetShare(groups);
    return {
      limitBytes: this.limitBytes,
      acquire: (size, signal) => this.acquire(size, signal, share),
      release: (buf, reuse) => this.release(buf, reuse),
      heldBytes: () => share.held,
      fairShareBytes: () => this.limitBytes / Math.max(1, this.active.size + (this.active.has(share) ? 0 : 1)),
    };
  }

  /** A buffer of exactly `size` bytes, charged to `share` (none: outside any share). */
  acquire(size: number, signal?: AbortSignal, share?: BudgetShare): Promise<Buffer> {
    signal?.throwIfAborted();
    if (
      !this.waiters.some((w) => this.eligible(w.share, w.size) || w.share === share) &&
      this.fits(size) &&
      this.eligible(share, size)
    ) {
      try {
        return Promise.resolve(this.grant(size, share));
      } catch (e) {
        return Promise.reject(e);
      }
    }
    return new Promise<Buffer>((resolve, reject) => {
      const waiter: Waiter = {
        size,
        share,
        resolve,
        reject,
        signal,
        onAbort: () => {
          const i = this.waiters.indexOf(waiter);
          if (i >= 0) this.waiters.splice(i, 1);
          this.unwait(share);
          reject(signal?.reason);
          this.wake();
        },
      };
      signal?.addEventListener("abort", waiter.onAbort, { once: true });
      if (share) {
        share.waiting++;
        this.active.add(share);
      }
      this.waiters.push(waiter);
    });
  }

  release(buf: Buffer, reuse = true): void {
    const share = this.owners.get(buf);
    if (share) {
      this.owners.delete(buf);
      share.held -= buf.length;
      this.chargeGroups(share, -buf.length);
      this.settleShare(share);
    }
    // A buffer may be a view of a larger pooled block (see take): account for, and keep, the block.
    const block =
      buf.byteOffset === 0 && buf.length === buf.buffer.byteLength
        ? buf
        : Buffer.from(buf.buffer, 0, buf.buffer.byteLength);
    this.outstanding -= block.length;
    // Keep it for reuse while what is kept plus what is out stays within the budget.
    if (reuse && this.outstanding + this.freeBytes + block.length <= this.limitBytes) {
      let list = this.free.get(block.length);
      if (!list) this.free.set(block.length, (list = []));
      list.push(block);
      this.freeBytes += block.length;
    }
    this.wake();
    if (this.outstanding === 0 && this.freeBytes > 0) {
      clearTimeout(this.idleTimer);
      this.idleTimer = setTimeout(() => this.letGoWhenIdle(), this.idleMs).unref();
    }
  }

  /** Within its fair share: holds nothing yet, or stays within budget ÷ active shares; and each of its groups within its cap. */
  private eligible(share: BudgetShare | undefined, size: number): boolean {
    // Keyed by name, not by object: a group emptied and forgotten is the same group when its calls take again.
    // One that holds nothing is always served, so no part size can wedge it.
    for (const g of share?.groups ?? []) {
      const held = this.groupHeld.get(g.key) ?? 0;
      if (held > 0 && held + size > this.limitBytes * g.fraction) return false;
    }
    if (!share || share.held === 0) return true;
    const n = Math.max(1, this.active.size + (this.active.has(share) ? 0 : 1));
    return share.held + size <= this.limitBytes / n;
  }

  private unwait(share: BudgetShare | undefined): void {
    if (!share) return;
    share.waiting--;
    this.settleShare(share);
  }

  private settleShare(share: BudgetShare): void {
    if (share.held <= 0 && share.waiting <= 0) this.active.delete(share);
    for (const g of share.groups) if ((this.groupHeld.get(g.key) ?? 0) <= 0) this.groupHeld.delete(g.key);
  }

  private chargeGroups(share: BudgetShare, bytes: number): void {
    for (const g of share.groups) this.groupHeld.set(g.key, (this.groupHeld.get(g.key) ?? 0) + bytes);
  }

  /** Take a buffer and charge it to `share`; an allocation that fails changes no count. */
  private grant(size: number, share: BudgetShare | undefined): Buffer {
    const buf = this.take(size);
    if (share) {
      this.owners.set(buf, share);
      share.held += buf.length;
      this.chargeGroups(share, buf.length);
      this.active.add(share);
    }
    return buf;
  }

  private letGoWhenIdle(): void {
    if (this.outstanding > 0) return; // busy again; the next idle moment re-arms the timer
    this.free.clear();
    this.freeBytes = 0;
  }

  /** A request larger than the whole budget is let through alone, or it would never run. */
  private fits(size: number): boolean {
    return this.outstanding + size <= this.limitBytes || this.outstanding === 0;
  }

  private take(size: number): Buffer {
    const reused = this.reuse(size);
    if (reused) return reused;
    let buf: Buffer;
    try {
      buf = Buffer.allocUnsafeSlow(size);
    } catch (e) {
      throw new PluginError(
        "local",
        `cannot allocate a ${Math.round(size / MiB)} MiB transfer buffer (${e instanceof Error ? e.message : String(e)}); lower tuning.partSizeMiB / tuning.multipartThresholdMiB`,
      );
    }
    this.outstanding += size;
    // Drop kept buffers if they would push memory past the budget. A small request
    // gets some slack instead of evicting a pooled multi-MiB block for a few KiB:
    // evicting is what turns the pool into churn (allocate, drop, wait for the GC).
    const ceiling = this.limitBytes + (size < LARGE ? Math.floor(this.limitBytes / 8) : 0);
    for (const [s, l] of this.free) {
      while (l.length > 0 && this.outstanding + this.freeBytes > ceiling) {
        l.pop();
        this.freeBytes -= s;
      }
    }
    return buf;
  }

  /**
   * A kept buffer for `size`: one of exactly that size, or else (for large
   * requests) one at most twice as large, lent as a view of its first `size`
   * bytes and charged in full: an 8 MiB OpenStream range can use a kept 16 MiB
   * part instead of dropping it and allocating anew.
   */
  private reuse(size: number): Buffer | undefined {
    let best: number | undefined;
    for (const [s, l] of this.free) {
      if (l.length === 0 || s < size || s > 2 * size || (best !== undefined && s >= best)) continue;
      if (s === size || (size >= LARGE && this.outstanding + s <= this.limitBytes)) best = s;
    }
    if (best === undefined) return undefined;
    const block = this.free.get(best)!.pop()!;
    this.freeBytes -= best;
    this.outstanding += best;
    return best === size ? block : block.subarray(0, size);
  }

  /**
   * Serve waiters in order, skipping those over their fair share (they wait for
   * their own buffers) and, within a share, never letting a later request pass.
   */
  private wake(): void {
    const passed = new Set<BudgetShare | undefined>();
    for (let i = 0; i < this.waiters.length;) {
      const w = this.waiters[i]!;
      if (passed.has(w.share) || !this.eligible(w.share, w.size)) {
        if (w.share) passed.add(w.share);
        i++;
        continue;
      }
      if (!this.fits(w.size)) break;
      this.waiters.splice(i, 1);
      w.signal?.removeEventListener("abort", w.onAbort);
      try {
        const buf = this.grant(w.size, w.share);
        this.unwait(w.share);
        w.resolve(buf);
      } catch (e) {
        this.unwait(w.share);
        w.reject(e);
      }
    }
  }
}
