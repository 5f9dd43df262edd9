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

const MiB = 1024 * 1024;

/** Requests from this size up are "large": they may evict kept buffers of other sizes. */
const LARGE = 4 * MiB;

interface Waiter {
  size: number;
  resolve: (b: Buffer) => void;
  reject: (e: unknown) => void;
  signal: AbortSignal | undefined;
  onAbort: () => void;
}

export class BufferBudget {
  private outstanding = 0;
  private readonly free = new Map<number, Buffer[]>();
  private freeBytes = 0;
  private readonly waiters: Waiter[] = [];
  private idleTimer: NodeJS.Timeout | undefined;

  /** `idleMs`: how long nothing must be handed out before kept buffers are let go. */
  constructor(
    readonly limitBytes: number,
    private readonly idleMs = 10_000,
  ) {}

  /** Bytes currently handed out. */
  get inUse(): number {
    return this.outstanding;
  }

  /** Bytes kept for reuse. */
  get kept(): number {
    return this.freeBytes;
  }

  /** A buffer of exactly `size` bytes; waits while the budget is spent. */
  acquire(size: number, signal?: AbortSignal): Promise<Buffer> {
    signal?.throwIfAborted();
    if (this.waiters.length === 0 && this.fits(size)) return Promise.resolve(this.take(size));
    return new Promise<Buffer>((resolve, reject) => {
      const waiter: Waiter = {
        size,
        resolve,
        reject,
        signal,
        onAbort: () => {
          const i = this.waiters.indexOf(waiter);
          if (i >= 0) this.waiters.splice(i, 1);
          reject(signal?.reason);
          this.wake();
        },
      };
      signal?.addEventListener("abort", waiter.onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  release(buf: Buffer): void {
    // A buffer may be a view of a larger pooled block (see take): account for, and keep, the block.
    const block = buf.byteOffset === 0 && buf.length === buf.buffer.byteLength ? buf : Buffer.from(buf.buffer, 0, buf.buffer.byteLength);
    this.outstanding -= block.length;
    // Keep it for reuse while what is kept plus what is out stays within the budget.
    if (this.outstanding + this.freeBytes + block.length <= this.limitBytes) {
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
    return Buffer.allocUnsafeSlow(size);
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

  private wake(): void {
    while (this.waiters.length > 0 && this.fits(this.waiters[0]!.size)) {
      const w = this.waiters.shift()!;
      w.signal?.removeEventListener("abort", w.onAbort);
      w.resolve(this.take(w.size));
    }
  }
}

/** ARGO_S3_PLUGIN_BUFFER_MIB in bytes (default 96 MiB); throws a readable error when malformed. */
export function bufferBudgetFromEnv(env: NodeJS.ProcessEnv = process.env): number {
  const v = env["ARGO_S3_PLUGIN_BUFFER_MIB"];
  if (!v) return 96 * MiB;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 8) throw new Error(`ARGO_S3_PLUGIN_BUFFER_MIB: "${v}" is not a whole number of MiB ≥ 8`);
  return n * MiB;
}

let shared: BufferBudget | undefined;

/** The process's budget, sized from the environment on first use (main validates it at start-up). */
export function transferBuffers(): BufferBudget {
  shared ??= new BufferBudget(bufferBudgetFromEnv());
  return shared;
}
