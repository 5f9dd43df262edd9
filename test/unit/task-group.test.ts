// TaskGroup is the backpressure and failure path for part and file transfers:
// a bounded number of tasks at once, a producer that cannot run ahead, and a
// first failure (or the parent's abort) that stops the siblings.
import { describe, expect, it } from "vitest";
import { TaskGroup } from "../../src/transfer/task-group.js";

interface Gate {
  promise: Promise<void>;
  open: () => void;
  fail: (e: unknown) => void;
}

function gate(): Gate {
  let open!: () => void;
  let fail!: (e: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    open = res;
    fail = rej;
  });
  return { promise, open, fail };
}

/** Let pending promise callbacks and I/O callbacks run (ordering only, no clock). */
const flush = async (rounds = 5): Promise<void> => {
  for (let i = 0; i < rounds; i++) await new Promise<void>((r) => setImmediate(r));
};

/** Resolves when `signal` aborts. */
const aborted = (signal: AbortSignal): Promise<void> =>
  signal.aborted ? Promise.resolve() : new Promise((r) => signal.addEventListener("abort", () => r(), { once: true }));

describe("TaskGroup", () => {
  it("names its own first failure as the cause of what its feeder caught meanwhile", async () => {
    const group = new TaskGroup(2);
    const boom = new Error("a file failed");
    await group.add(() => Promise.reject(boom));
    await aborted(group.signal);
    // The feeder (a listing on group.signal) was cut by that abort: report why, not "cancelled".
    expect(group.causeOf(new Error("listing cancelled"))).toBe(boom);
    await group.settle();
    const clean = new TaskGroup(2);
    const own = new Error("the listing itself failed");
    expect(clean.causeOf(own)).toBe(own);
  });

  it("never runs more than `limit` tasks at once, and reaches the limit", async () => {
    const group = new TaskGroup(3);
    let running = 0;
    let maxRunning = 0;
    let done = 0;
    for (let i = 0; i < 25; i++) {
      await group.add(async () => {
        running++;
        maxRunning = Math.max(maxRunning, running);
        // Uneven lengths so slots free up out of order.
        await flush(1 + (i % 4));
        running--;
        done++;
      });
      expect(running).toBeLessThanOrEqual(3);
    }
    await group.wait();
    expect(maxRunning).toBe(3);
    expect(done).toBe(25);
    expect(running).toBe(0);
  });

  it("add blocks while the group is full: the producer does not get ahead", async () => {
    const group = new TaskGroup(2);
    const gates = Array.from({ length: 6 }, gate);
    let started = 0;
    let added = 0;
    const producer = (async () => {
      for (const g of gates) {
        await group.add(async () => {
          started++;
          await g.promise;
        });
        added++;
      }
    })();

    await flush();
    expect(started).toBe(2);
    expect(added).toBe(2); // the third add is still waiting for a slot

    gates[0]!.open();
    await flush();
    expect(started).toBe(3);
    expect(added).toBe(3);

    // Freeing a slot that is not the oldest also unblocks the producer.
    gates[2]!.open();
    await flush();
    expect(started).toBe(4);
    expect(added).toBe(4);

    for (const g of gates) g.open();
    await producer;
    await group.wait();
    expect(started).toBe(6);
    expect(added).toBe(6);
  });

  it("wait() resolves only after every task has finished", async () => {
    const group = new TaskGroup(4);
    const g = gate();
    let finished = 0;
    for (let i = 0; i < 4; i++) {
      await group.add(async () => {
        await g.promise;
        finished++;
      });
    }
    let waited = false;
    const w = group.wait().then(() => (waited = true));
    await flush();
    expect(waited).toBe(false);
    g.open();
    await w;
    expect(finished).toBe(4);
  });

  it("throws the first failure from wait() and a later add(); siblings see the signal aborted", async () => {
    const group = new TaskGroup(3);
    const first = new Error("part 2 failed");
    const failGate = gate();
    const siblingSaw: { aborted: boolean; reason: unknown }[] = [];

    for (let i = 0; i < 2; i++) {
      await group.add(async (signal) => {
        await aborted(signal);
        siblingSaw.push({ aborted: signal.aborted, reason: signal.reason });
      });
    }
    await group.add(async () => {
      await failGate.promise;
    });
    expect(group.signal.aborted).toBe(false);

    failGate.fail(first);
    await expect(group.wait()).rejects.toBe(first);
    expect(group.signal.aborted).toBe(true);
    expect(group.signal.reason).toBe(first);
    expect(siblingSaw).toEqual([
      { aborted: true, reason: first },
      { aborted: true, reason: first },
    ]);

    let ranAfterFailure = false;
    await expect(
      group.add(async () => {
        ranAfterFailure = true;
      }),
    ).rejects.toBe(first);
    expect(ranAfterFailure).toBe(false);
  });

  it("keeps the first failure when several tasks fail", async () => {
    const group = new TaskGroup(3);
    const a = gate();
    const b = gate();
    await group.add(() => a.promise);
    await group.add(() => b.promise);
    const firstErr = new Error("first");
    b.fail(firstErr);
    await flush();
    a.fail(new Error("second"));
    await expect(group.wait()).rejects.toBe(firstErr);
  });

  it("an add() waiting for a slot throws the failure and does not start its task", async () => {
    const group = new TaskGroup(1);
    const g = gate();
    const boom = new Error("boom");
    await group.add(() => g.promise);
    let started = false;
    const blocked = group.add(async () => {
      started = true;
    });
    await flush();
    g.fail(boom);
    await expect(blocked).rejects.toBe(boom);
    expect(started).toBe(false);
    await expect(group.wait()).rejects.toBe(boom);
  });

  it("a parent abort aborts the group's signal and makes add() and wait() throw", async () => {
    const parent = new AbortController();
    const group = new TaskGroup(2, parent.signal);
    let taskSawAbort = false;
    await group.add(async (signal) => {
      await aborted(signal);
      taskSawAbort = signal.aborted;
    });
    expect(group.signal.aborted).toBe(false);

    const reason = new Error("client cancelled");
    parent.abort(reason);
    expect(group.signal.aborted).toBe(true);
    expect(group.signal.reason).toBe(reason);

    let started = false;
    await expect(
      group.add(async () => {
        started = true;
      }),
    ).rejects.toBe(reason);
    expect(started).toBe(false);
    await expect(group.wait()).rejects.toBe(reason);
    expect(taskSawAbort).toBe(true);
  });

  it("a parent already aborted at construction aborts the group at once", async () => {
    const parent = new AbortController();
    const reason = new Error("too late");
    parent.abort(reason);
    const group = new TaskGroup(2, parent.signal);
    expect(group.signal.aborted).toBe(true);
    let started = false;
    await expect(
      group.add(async () => {
        started = true;
      }),
    ).rejects.toBe(reason);
    expect(started).toBe(false);
  });

  it("a task failure does not abort the parent", async () => {
    const parent = new AbortController();
    const group = new TaskGroup(2, parent.signal);
    await group.add(async () => {
      throw new Error("x");
    });
    await expect(group.wait()).rejects.toThrow("x");
    expect(parent.signal.aborted).toBe(false);
  });

  it("settle() never throws: after a failure, after a parent abort, and with nothing to do", async () => {
    const failing = new TaskGroup(2);
    const g = gate();
    let siblingDone = false;
    await failing.add(() => g.promise);
    await failing.add(async (signal) => {
      await aborted(signal);
      siblingDone = true;
    });
    g.fail(new Error("fail"));
    await expect(failing.settle()).resolves.toBeUndefined();
    expect(siblingDone).toBe(true); // settle waits for the siblings too

    const parent = new AbortController();
    const cancelled = new TaskGroup(1, parent.signal);
    await cancelled.add((signal) => aborted(signal));
    parent.abort(new Error("cancel"));
    await expect(cancelled.settle()).resolves.toBeUndefined();

    await expect(new TaskGroup(1).settle()).resolves.toBeUndefined();
  });
});
