// Why the plugin could not read a local path, in terms a workflow author can
// act on. The plugin runs as its image's uid (1000) while a step's main
// container often runs as root with a umask or a tool that writes 0600; the
// bare EACCES says neither who could not read what nor what to change.
import { type Stats, statSync } from "node:fs";
import { dirname } from "node:path";

const mode = (m: number) => `0${(m & 0o7777).toString(8).padStart(3, "0")}`;

/**
 * The text after "cannot save <path>: " for an error opening or listing
 * `path`. Permission errors name the plugin's uid, the path's owner and mode
 * (or the first parent it cannot enter) and what to set; others are passed on.
 */
export function localReadProblem(path: string, e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  if (err?.code !== "EACCES" && err?.code !== "EPERM") return err instanceof Error ? err.message : String(e);
  const uid = process.getuid?.();
  const gid = process.getgid?.();
  const who = uid === undefined ? "the plugin" : `the plugin (uid ${uid}, gid ${gid})`;
  let what: string;
  try {
    const st = statSync(path);
    what = `${path} is owned by uid ${st.uid} (gid ${st.gid}) with mode ${mode(st.mode)}`;
  } catch {
    // Not even stat-able: a parent directory is not searchable for this uid.
    let dir = dirname(path);
    let st: Stats | undefined;
    for (; ; dir = dirname(dir)) {
      try {
        st = statSync(dir);
        break;
      } catch {
        if (dir === dirname(dir)) break;
      }
    }
    what = st
      ? `a directory on its way (at or below ${dir}, uid ${st.uid}, mode ${mode(st.mode)}) cannot be entered`
      : "no directory on its way can be entered";
  }
  return (
    `permission denied (${err.code}): ${who} cannot read it; ${what}. ` +
    `Argo runs the plugin as its own user, not as the step's main container, so outputs must be readable by others: ` +
    `write them with umask 022 or chmod -R a+rX them at the end of the step, or run the main container as uid ${uid ?? 8737} (securityContext.runAsUser)`
  );
}
