// The workflow pod's leave-when-the-saving-client-is-gone rule (src/wire/client-gone.ts), on
// fake timers: what arms it, what holds it, and that it fires once.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { ClientGoneWatch } from "../../../src/wire/client-gone.js";

const MS = 300_000;

describe("ClientGoneWatch", () => {
  let left: number;
  let watch: ClientGoneWatch;
  beforeEach(() => {
    vi.useFakeTimers();
    left = 0;
    watch = new ClientGoneWatch(MS, () => left++);
  });
  afterEach(() => vi.useRealTimers());

  /** One client connection that runs one call of `method` and closes. */
  const oneCall = (method: string) => {
    watch.connectionOpened();
    watch.callStarted(method);
    watch.callEnded();
    watch.connectionClosed();
  };

  it("does not arm on Loads: an init container's or an init-less supervisor's connections come and go before main runs", () => {
    oneCall("Load");
    oneCall("OpenStream");
    oneCall("ListObjects");
    vi.advanceTimersByTime(10 * MS);
    expect(left).toBe(0);
  });

  it("after a Save, leaves once no connection and no call for the whole bound, and only once", () => {
    oneCall("Save");
    vi.advanceTimersByTime(MS - 1);
    expect(left).toBe(0);
    vi.advanceTimersByTime(1);
    expect(left).toBe(1);
    vi.advanceTimersByTime(10 * MS);
    expect(left).toBe(1);
  });

  it("SaveStream arms it too", () => {
    oneCall("SaveStream");
    vi.advanceTimersByTime(MS);
    expect(left).toBe(1);
  });

  it("an open connection holds it however long (a live wait container between outputs)", () => {
    watch.connectionOpened();
    watch.callStarted("Save");
    watch.callEnded();
    vi.advanceTimersByTime(100 * MS);
    expect(left).toBe(0);
    watch.connectionClosed();
    vi.advanceTimersByTime(MS);
    expect(left).toBe(1);
  });

  it("a call in flight holds it even with no connection counted; a new connection restarts the bound", () => {
    oneCall("Save");
    vi.advanceTimersByTime(MS - 10);
    watch.connectionOpened(); // the next output's NewDriver
    vi.advanceTimersByTime(MS);
    watch.callStarted("Save");
    watch.connectionClosed();
    vi.advanceTimersByTime(10 * MS);
    expect(left).toBe(0);
    watch.callEnded();
    vi.advanceTimersByTime(MS - 1);
    expect(left).toBe(0);
    vi.advanceTimersByTime(1);
    expect(left).toBe(1);
  });

  it("stop() (a shutdown under way) disarms it", () => {
    oneCall("Save");
    watch.stop();
    vi.advanceTimersByTime(10 * MS);
    expect(left).toBe(0);
  });
});
