// Argo stops an artifact plugin's sidecar by writing a signal number into
// /var/run/argo/ctr/<container>/signal (the wait container, once it has saved
// everything: emissary's Kill), then polls every second for the container's
// exitcode file. argoexec's wrapper around the plugin reads that file and
// signals the plugin, but Argo v4.0's wrapper looks only every 2 s, so every
// step with plugin outputs waited up to 2 s more for nothing. Watching the same
// file (inotify) lets the plugin stop as soon as it is asked; the wrapper, which
// waits on the plugin's process, then writes the exit code at once.
import { type FSWatcher, readFileSync, watch } from "node:fs";
import { join } from "node:path";

/**
 * Calls `onSignal` once, with the signal number, when `dir/signal` holds one (now or later).
 * Returns a function that stops watching, or undefined when the folder cannot be watched
 * (missing, or inotify exhausted): Argo's own wrapper still delivers the stop then.
 */
export function watchSignalFile(dir: string, onSignal: (signal: number) => void): (() => void) | undefined {
  let fired = false;
  let watcher: FSWatcher | undefined;
  const stop = () => watcher?.close();
  const check = () => {
    if (fired) return;
    let text: string;
    try {
      text = readFileSync(join(dir, "signal"), "utf8");
    } catch {
      return;
    }
    // Created empty, then written: only a whole positive number counts.
    if (!/^\s*\d+\s*$/.test(text)) return;
    const n = Number.parseInt(text, 10);
    if (n <= 0) return;
    fired = true;
    stop();
    onSignal(n);
  };
  try {
    watcher = watch(dir, { persistent: false }, (_event, name) => {
      if (name === null || name === "signal") check();
    });
  } catch {
    return undefined;
  }
  watcher.on("error", stop);
  check();
  return stop;
}
