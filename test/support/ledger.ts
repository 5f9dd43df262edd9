// The reliability ledger: what the fault, cancellation, hostile-input and
// identity suites did and what they found, so `npm run bench:reliability` can
// print one summary. Each record is a JSON line appended to the file named by
// RELIABILITY_LEDGER; without it (a plain `npm test`) nothing is written. The
// suites still assert everything themselves: a record is written only after
// the check it counts has run, so a failing check shows up as "injected but
// not survived" (and as a failed test).
import { appendFileSync } from "node:fs";
import { afterEach, beforeEach, expect } from "vitest";
import type { PluginProcess } from "./plugin.js";

export interface Tally {
  /** The suite and what it did, e.g. "faults: Save (MinIO killed / frozen)". */
  suite: string;
  faultsInjected?: number;
  /** The RPC succeeded with the right bytes, or failed cleanly with nothing left behind. */
  faultsSurvived?: number;
  hostileTried?: number;
  /** Refused with a clear error, or (for links and fuzz) contained: nothing followed, process still serving. */
  hostileRefused?: number;
  /** Bytes whose integrity a check covered (transferred, or pre-existing data that must survive a failure). */
  bytesChecked?: number;
  bytesLost?: number;
  /** Multipart uploads the plugin left behind. */
  orphanUploads?: number;
  /** Uploads the store created after the plugin's CreateMultipartUpload had timed out (no id to abort them with). */
  lateCreates?: number;
  /** Secret values looked for, bytes of output searched, and occurrences found. */
  secretsSought?: number;
  logBytesScanned?: number;
  secretsFound?: number;
}

export function tally(t: Tally): void {
  const file = process.env["RELIABILITY_LEDGER"];
  if (file) appendFileSync(file, `${JSON.stringify(t)}\n`);
}

/**
 * Searches `texts` (the plugin's whole output, error strings handed to clients)
 * for every secret value, records the search in the ledger and returns the
 * labels of the secrets found, for the caller to assert empty.
 */
export function scanForSecrets(suite: string, texts: string[], secrets: Record<string, string | undefined>): string[] {
  const values = Object.entries(secrets).filter(
    (e): e is [string, string] => typeof e[1] === "string" && e[1].length >= 8,
  );
  const found: string[] = [];
  let occurrences = 0;
  for (const [label, value] of values) {
    let n = 0;
    for (const t of texts) for (let i = t.indexOf(value); i >= 0; i = t.indexOf(value, i + 1)) n++;
    if (n > 0) found.push(label);
    occurrences += n;
  }
  tally({
    suite,
    secretsSought: values.length,
    logBytesScanned: texts.reduce((s, t) => s + Buffer.byteLength(t), 0),
    secretsFound: occurrences,
  });
  return found;
}

/** Stops the plugin (it must exit 0), then finds none of `secrets` in all it printed, nor in `extra` texts. */
export async function stopAndScan(
  suite: string,
  plugin: PluginProcess | undefined,
  secrets: Record<string, string | undefined>,
  extra: string[] = [],
): Promise<void> {
  if (!plugin) return; // set-up failed before it started; that failure is reported already
  expect(await plugin.stop()).toBe(0);
  expect(scanForSecrets(suite, [plugin.output(), ...extra], secrets)).toEqual([]);
}

/**
 * For a file whose tests inject faults through a proxy: counts, per test, the
 * faults injected, and counts them survived when the test (which checks the
 * outcome: right bytes, or a clean error and nothing left behind) passed.
 */
export function countInjectedFaults(suite: string, injected: () => number): void {
  let mark = 0;
  beforeEach(() => {
    mark = injected();
  });
  afterEach((ctx) => {
    const n = injected() - mark;
    if (n > 0) tally({ suite, faultsInjected: n, faultsSurvived: ctx.task.result?.state === "pass" ? n : 0 });
  });
}
