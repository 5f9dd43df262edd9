// Every wait in a test has its own bound, so a hang fails fast and says what
// it was waiting for (the runner's per-test timeout is only the last resort).

/** Resolves with `p`'s value, or rejects naming `what` when `ms` pass first. */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>(
    (_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)),
  );
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

/** Polls `ok` every 20 ms until it holds, or rejects naming `what` after `ms`. */
export async function until(what: string, ok: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A child process's exit code, within `ms`. */
export function exitOf(
  proc: { exitCode: number | null; once(ev: "exit", f: (code: number | null) => void): unknown },
  ms: number,
  what = "process exit",
): Promise<number | null> {
  if (proc.exitCode !== null) return Promise.resolve(proc.exitCode);
  return within(new Promise<number | null>((r) => proc.once("exit", r)), ms, what);
}

/** Polls a check that may talk to a server (shared with the cluster scripts). */
export { eventually } from "../../scripts/lib/eventually.mjs";
