// util/signal-file.ts on a real folder: Argo's stop file read as soon as it is written, once,
// and only when it holds a signal number.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { watchSignalFile } from "../../src/util/signal-file.js";
import { until } from "../support/bounded.js";

const dirs: string[] = [];
const folder = () => {
  const d = mkdtempSync(join(tmpdir(), "argo-ctr-"));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe("watchSignalFile", () => {
  it("calls back once with the number the wait container writes (created empty, then written, as os.WriteFile does)", async () => {
    const dir = folder();
    const got: number[] = [];
    const stop = watchSignalFile(dir, (s) => got.push(s));
    expect(stop).toBeDefined();
    writeFileSync(join(dir, "signal"), "");
    writeFileSync(join(dir, "other"), "15");
    writeFileSync(join(dir, "signal"), "15");
    await until("the signal read", () => got.length > 0, 10_000);
    writeFileSync(join(dir, "signal"), "9");
    await new Promise((r) => setTimeout(r, 200));
    expect(got).toEqual([15]);
    stop!();
  });

  it("reads a signal already written before it started", () => {
    const dir = folder();
    writeFileSync(join(dir, "signal"), "15\n");
    const got: number[] = [];
    watchSignalFile(dir, (s) => got.push(s));
    expect(got).toEqual([15]);
  });

  it("ignores what is not a positive number, and a folder it cannot watch returns undefined", async () => {
    const dir = folder();
    const got: number[] = [];
    const stop = watchSignalFile(dir, (s) => got.push(s));
    writeFileSync(join(dir, "signal"), "stop");
    writeFileSync(join(dir, "signal"), "0");
    await new Promise((r) => setTimeout(r, 200));
    expect(got).toEqual([]);
    stop!();
    expect(watchSignalFile(join(dir, "missing"), () => undefined)).toBeUndefined();
  });
});
