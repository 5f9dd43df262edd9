import { setMaxListeners } from "node:events";

// Bounded concurrency with one failure path, used for parts of one object and
// for files of one directory alike. `add` waits while the group is full, which
// is what gives the callers backpressure: whoever feeds the group (a file walk,
// an S3 listing, a gRPC stream) is not read further until a slot frees up.
// The first failure aborts the group's signal so siblings stop early.

export class TaskGroup {
  private readonly running = new Set<Promise<void>>();
  private readonly controller = new AbortController();
  private failure: { error: unknown } | undefined;
  private readonly onParentAbort: () => void;

  constructor(
    private readonly limit: number,
    private readonly parent?: AbortSignal,
  ) {
    // Every in-flight request listens on this signal; more than 10 is expected, not a leak.
    setMaxListeners(0, this.controller.signal);
    this.onParentAbort = () => this.controller.abort(parent?.reason);
    if (parent?.aborted) this.controller.abort(parent.reason);
    else parent?.addEventListener("abort", this.onParentAbort, { once: true });
  }

  /** Aborted when the parent is aborted or any task has failed. */
  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** Start `task` once a slot is free. Throws the group's first failure, if any. */
  async add(task: (signal: AbortSignal) => Promise<void>): Promise<void> {
    this.throwIfFailed();
    while (this.running.size >= this.limit) {
      await Promise.race(this.running);
      this.throwIfFailed();
    }
    this.throwIfAborted();
    const p: Promise<void> = task(this.controller.signal).then(
      () => undefined,
      (error: unknown) => {
        if (!this.failure) {
          this.failure = { error };
          this.controller.abort(error);
        }
      },
    );
    const tracked = p.finally(() => this.running.delete(tracked));
    this.running.add(tracked);
  }

  /** Wait for every started task; throws the first failure. */
  async wait(): Promise<void> {
    try {
      while (this.running.size > 0) await Promise.all(this.running);
      this.throwIfFailed();
      this.throwIfAborted();
    } finally {
      this.parent?.removeEventListener("abort", this.onParentAbort);
    }
  }

  /**
   * What to report for `e`, caught by whoever feeds the group: the group's own
   * first failure when there is one (a listing cut short because a file failed
   * would otherwise hide why), else `e`.
   */
  causeOf(e: unknown): unknown {
    return this.failure ? this.failure.error : e;
  }

  /** Wait for every started task to settle, ignoring failures (cleanup paths). */
  async settle(): Promise<void> {
    while (this.running.size > 0) await Promise.all(this.running);
    this.parent?.removeEventListener("abort", this.onParentAbort);
  }

  private throwIfFailed(): void {
    if (this.failure) throw this.failure.error;
  }

  private throwIfAborted(): void {
    if (this.controller.signal.aborted) throw this.controller.signal.reason ?? new Error("aborted");
  }
}
