// One process-wide budget for transfer buffers (upload parts, download write
// batches, OpenStream read-ahead). Concurrency settings multiply — files in
// flight × parts in flight × part size — so without a shared cap a directory
// of large files, or many RPCs at once, could hold gigabytes. Every transfer
// buffer is taken from here; when the budget is spent, takers wait in FIFO
// order until buffers come back. Freed buffers are kept for reuse (by size),
// which spares the GC from churning through hundreds of megabytes.

const MiB = 1024 * 1024;

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

  constructor(readonly limitBytes: number) {}

  /** Bytes currently handed out. */
  get inUse(): number {
    return this.outstanding;
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
    this.outstanding -= buf.length;
    // Keep it for reuse while what is kept plus what is out stays within the budget.
    if (this.outstanding + this.freeBytes + buf.length <= this.limitBytes) {
      let list = this.free.get(buf.length);
      if (!list) this.free.set(buf.length, (list = []));
      list.push(buf);
      this.freeBytes += buf.length;
    }
    this.wake();
  }

  /** A request larger than the whole budget is let through alone, or it would never run. */
  private fits(size: number): boolean {
    return this.outstanding + size <= this.limitBytes || this.outstanding === 0;
  }

  private take(size: number): Buffer {
    this.outstanding += size;
    const list = this.free.get(size);
    const reused = list?.pop();
    if (reused) {
      this.freeBytes -= size;
      return reused;
    }
    // Drop kept buffers of other sizes if they would push memory past the budget.
    for (const [s, l] of this.free) {
      while (l.length > 0 && this.outstanding + this.freeBytes > this.limitBytes) {
        l.pop();
        this.freeBytes -= s;
      }
    }
    return Buffer.allocUnsafeSlow(size);
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
