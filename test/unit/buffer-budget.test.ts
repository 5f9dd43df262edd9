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

  it("a buffer given back with reuse false is accounted for but never handed out again", async () => {
    const b = new BufferBudget(100);
    const x = await b.acquire(40);
    x.fill(7);
    b.release(x, false);
    expect(b.inUse).toBe(0);
    expect(b.kept).toBe(0);
    const y = await b.acquire(40);
    expect(y.buffer).not.toBe(x.buffer);
    b.release(y);
    expect(b.kept).toBe(40);
    expect(await b.acquire(40)).toBe(y); // the usual way: kept and reused
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

it("a group of shares (one endpoint's calls in the shared sidecar) holds at most three quarters: a slow store's calls leave room for another's", async () => {
  const MiB = 1024 * 1024;
  const b = new BufferBudget(8 * MiB);
  // Three calls to one slow store, each holding its buffers for as long as the store trickles: 6 of 8 MiB, the group's cap.
  const slow = Array.from({ length: 3 }, () => b.share([{ key: "host slow", fraction: 3 / 4 }]));
  const held: Buffer[][] = [];
  for (const s of slow) held.push([await s.acquire(MiB), await s.acquire(MiB)]);
  // A fourth call to the same store waits, though the budget has room: the group is at its cap.
  const fourth = b.share([{ key: "host slow", fraction: 3 / 4 }]);
  let fourthGot = false;
  const pending = fourth.acquire(MiB).then((x) => ((fourthGot = true), x));
  // Another endpoint's call, arriving now, is served at once from the quarter left.
  const other = b.share([{ key: "host healthy", fraction: 3 / 4 }]);
  const got = await Promise.race([
    other.acquire(MiB),
    new Promise<"waited">((r) => setTimeout(() => r("waited"), 500)),
  ]);
  expect(got).not.toBe("waited");
  expect(fourthGot).toBe(false);
  expect(b.waiting).toBe(1);
  other.release(got as Buffer);
  // The slow group gets more only as its own buffers come back.
  await new Promise((r) => setTimeout(r, 50));
  expect(fourthGot, "another endpoint's release does not lift the group's cap").toBe(false);
  slow[0]!.release(held[0]![0]!);
  const fourthBuf = await pending;
  expect(fourthBuf.length).toBe(MiB);
  fourth.release(fourthBuf);
  slow[0]!.release(held[0]![1]!);
  for (const [i, s] of slow.entries()) if (i > 0) for (const x of held[i]!) s.release(x);
  expect(b.inUse).toBe(0);
  expect(b.waiting).toBe(0);
});

it("the authors' stores together hold at most half, however many hosts: two slow hosts leave the operator's store the other half", async () => {
  const MiB = 1024 * 1024;
  const b = new BufferBudget(8 * MiB);
  const author = (host: string) =>
    b.share([
      { key: `host ${host}`, fraction: 3 / 4 },
      { key: "authors", fraction: 1 / 2 },
    ]);
  // Two hosts of one author, two calls each: each host alone could hold 6 MiB, together they stop at 4.
  const calls = [author("a"), author("a"), author("b"), author("b")];
  const held: Buffer[] = [];
  for (const c of calls) held.push(await c.acquire(MiB));
  let moreGot = false;
  const more = author("c")
    .acquire(MiB)
    .then((x) => ((moreGot = true), x));
  // Other users' calls (one buffer each, within their fair shares) to the operator's store.
  const operator = b.share([{ key: "tenant repo", fraction: 3 / 4 }]);
  const users = [
    operator,
    b.share([{ key: "tenant repo", fraction: 3 / 4 }]),
    b.share([{ key: "tenant repo", fraction: 3 / 4 }]),
  ];
  const got = await Promise.race([
    Promise.all(users.map((u) => u.acquire(MiB))),
    new Promise<"waited">((r) => setTimeout(() => r("waited"), 500)),
  ]);
  expect(got, "the operator's store is served from the half the authors cannot take").not.toBe("waited");
  await new Promise((r) => setTimeout(r, 50));
  expect(moreGot, "a third host of the author's does not add to the authors' half").toBe(false);
  calls[0]!.release(held[0]!);
  const m = await more;
  author("c").release(m);
  for (const [i, x] of (got as Buffer[]).entries()) users[i]!.release(x);
  for (const [i, c] of calls.entries()) if (i > 0) c.release(held[i]!);
  expect(b.inUse).toBe(0);
  expect(b.waiting).toBe(0);
});

it("ungrouped shares (a workflow pod) may use the whole budget", async () => {
  const MiB = 1024 * 1024;
  const b = new BufferBudget(8 * MiB);
  const s = b.share();
  const bufs = [];
  for (let i = 0; i < 8; i++) bufs.push(await s.acquire(MiB));
  expect(b.inUse).toBe(8 * MiB);
  for (const x of bufs) s.release(x);
});
