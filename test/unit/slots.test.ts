// Transfer slots between tenants: a group at its cap waits while others go.
import { describe, expect, it } from "vitest";
import { Slots } from "../../src/util/slots.js";

const g = (tenant: string, endpoint: string) => [
  { key: `t ${tenant}`, cap: 2 },
  { key: `e ${endpoint}`, cap: 3 },
];
const never = new AbortController().signal;

describe("Slots", () => {
  it("caps a tenant and an endpoint, lets others through, and hands freed slots to the oldest waiter that fits", async () => {
    const slots = new Slots(6);
    const a1 = await slots.take(never, g("a", "x"));
    await slots.take(never, g("a", "x"));
    let a3 = false;
    const third = slots.take(never, g("a", "x")).then((r) => ((a3 = true), r)); // tenant a at its cap
    await slots.take(never, g("b", "x")); // endpoint x: 3 of 3
    let b2 = false;
    void slots.take(never, g("b", "x")).then(() => (b2 = true)); // endpoint at its cap
    const c = await slots.take(never, g("c", "y")); // another endpoint: goes at once
    expect(slots.stats).toEqual({ used: 4, waiting: 2 });
    await new Promise((r) => setTimeout(r, 10));
    expect([a3, b2]).toEqual([false, false]);
    c();
    await new Promise((r) => setTimeout(r, 10));
    expect([a3, b2]).toEqual([false, false]); // c's slot does not lift a's or x's cap
    a1();
    await third;
    expect([a3, b2]).toEqual([true, false]); // the oldest waiter that fits: a's third call
    expect(slots.stats).toEqual({ used: 3, waiting: 1 });
  });

  it("the overall limit holds for calls without groups (a workflow's pod), FIFO; a cancelled wait leaves the queue", async () => {
    const slots = new Slots(1);
    const first = await slots.take(never);
    const ac = new AbortController();
    const cancelled = slots.take(ac.signal);
    let second = false;
    const next = slots.take(never).then((r) => ((second = true), r));
    ac.abort(new Error("gone"));
    await expect(cancelled).rejects.toThrow("gone");
    first();
    first(); // twice: no effect
    (await next)();
    expect(second).toBe(true);
    expect(slots.stats).toEqual({ used: 0, waiting: 0 });
  });
});
