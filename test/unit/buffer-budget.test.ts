// The process-wide transfer buffer budget: what bounds memory whatever the
// object size, file count or number of concurrent RPCs.
import { describe, expect, it } from "vitest";
import { bufferBudgetFromEnv } from "../../src/settings.js";
import { BufferBudget } from "../../src/transfer/buffer-budget.js";

const tick = () => new Promise((r) => setImmediate(r));

describe("BufferBudget", () => {
  it("never hands out more than the limit; waiters run in FIFO order as buffers return", async () => {
    const b = new BufferBudget(100);
    const first = await b.acquire(60);
    const order: number[] = [];
    const second = b.acquire(60).then((buf) => (order.push(2), buf));
    const third = b.acquire(30).then((buf) => (order.push(3), buf));
    await tick();
    // 30 would fit beside 60, but it queued behind a waiter: no overtaking.
    expect(order).toEqual([]);
    expect(b.inUse).toBe(60);
    b.release(first);
    const got2 = await second;
    const got3 = await third;
    expect(order).toEqual([2, 3]);
    expect(b.inUse).toBe(90);
    expect(got2.length).toBe(60);
    b.release(got2);
    b.release(got3);
    expect(b.inUse).toBe(0);
  });

  it("lets kept buffers go once nothing has been handed out for the idle time, not while busy", async () => {
    const b = new BufferBudget(100, 50);
    const x = await b.acquire(40);
    const y = await b.acquire(30);
    b.release(x);
    expect(b.kept).toBe(40);
    await new Promise((r) => setTimeout(r, 120));
    expect(b.kept).toBe(40); // y is still out: not idle
    b.release(y);
    expect(b.kept).toBe(70);
    await new Promise((r) => setTimeout(r, 120));
    expect(b.kept).toBe(0);
    expect(b.inUse).toBe(0);
    expect((await b.acquire(40)).length).toBe(40); // and it still works
  });

  it("reuses a returned buffer of the same size", async () => {
    const b = new BufferBudget(100);
    const a = await b.acquire(40);
    b.release(a);
    expect(await b.acquire(40)).toBe(a);
  });

  it("lets a request bigger than the whole budget through when nothing else is out", async () => {
    const b = new BufferBudget(10);
    const big = await b.acquire(50);
    expect(big.length).toBe(50);
    let done = false;
    const next = b.acquire(1).then(() => (done = true));
    await tick();
    expect(done).toBe(false);
    b.release(big);
    await next;
    expect(done).toBe(true);
  });

  it("an aborted waiter leaves the queue and the others still get served", async () => {
    const b = new BufferBudget(10);
    const held = await b.acquire(10);
    const ac = new AbortController();
    const aborted = b.acquire(5, ac.signal);
    const later = b.acquire(5);
    ac.abort(new Error("gone"));
    await expect(aborted).rejects.toThrow("gone");
    b.release(held);
    expect((await later).length).toBe(5);
    expect(b.inUse).toBe(5);
  });

  it("reads ARGO_S3_PLUGIN_BUFFER_MIB, refusing nonsense", () => {
    expect(bufferBudgetFromEnv({})).toBe(96 * 1024 * 1024);
    expect(bufferBudgetFromEnv({ ARGO_S3_PLUGIN_BUFFER_MIB: "64" })).toBe(64 * 1024 * 1024);
    expect(() => bufferBudgetFromEnv({ ARGO_S3_PLUGIN_BUFFER_MIB: "lots" })).toThrow(/ARGO_S3_PLUGIN_BUFFER_MIB/);
    expect(() => bufferBudgetFromEnv({ ARGO_S3_PLUGIN_BUFFER_MIB: "2" })).toThrow(/≥ 8/);
  });

  it("lets a newcomer pass a caller that is over its fair share, and serves that caller once it is alone", async () => {
    const b = new BufferBudget(100);
    // Caller A takes 80 while alone (allowed), then asks for 30 more: does not fit, waits.
    const shareA = b.share();
    const a = { held: [await shareA.acquire(40), await shareA.acquire(40)], more: shareA.acquire(30) };
    let aMore = false;
    void a.more.then(() => (aMore = true));
    // Caller B holds nothing: within its share (100 ÷ 2), and 20 fits, so it does not queue behind A.
    const got = await b.share().acquire(20);
    expect(got.length).toBe(20);
    expect(b.activeShares).toBe(2);
    b.release(a.held[0]!);
    await tick();
    expect(aMore).toBe(false); // A holds 40 and wants 30: over 50 while B is active
    b.release(got); // B is done: A is alone again
    await a.more;
    expect(b.inUse).toBe(70);
  });

  it("an allocation that fails is reported and changes no count", async () => {
    const b = new BufferBudget(100);
    await expect(b.acquire(2 ** 53)).rejects.toThrow(/cannot allocate/);
    expect(b.inUse).toBe(0);
    expect((await b.acquire(10)).length).toBe(10);
  });
});

it("counts the requests waiting for a buffer (the metrics' users-waiting signal), not those served", async () => {
  const b = new BufferBudget(8 * 1024 * 1024);
  const held = await b.acquire(8 * 1024 * 1024);
  expect(b.waiting).toBe(0);
  const later = b.acquire(1024 * 1024);
  expect(b.waiting).toBe(1);
  b.release(held);
  b.release(await later);
  expect(b.waiting).toBe(0);
});
