// @ts-check
// The environment the image's final stage sets (its `ENV` lines), read from
// the Dockerfile itself, so the tests and the load test run the plugin the way
// the image does without a second copy of those values.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "./tools.mjs";

/**
 * @param {string} [app] where the image's /app is: values under /app (the
 *   compile cache's folder) are moved there when the plugin runs outside the image.
 * @returns {Record<string, string>}
 */
export function imageEnv(app = "/app") {
  const final = finalStage();
  /** @type {Record<string, string>} */
  const env = {};
  for (const m of final.matchAll(/^ENV (\S+)=(\S+)\s*$/gm)) {
    const value = /** @type {string} */ (m[2]);
    env[/** @type {string} */ (m[1])] =
      value === "/app" || value.startsWith("/app/") ? app + value.slice("/app".length) : value;
  }
  return env;
}

/** The Dockerfile's final stage: from its last FROM line on. */
export function finalStage() {
  const text = readFileSync(join(ROOT, "Dockerfile"), "utf8");
  return text.slice(text.lastIndexOf("\nFROM "));
}

/** The final stage's ENTRYPOINT (exec form). @returns {string[]} */
export function imageEntrypoint() {
  const m = /^ENTRYPOINT (\[.*\])\s*$/m.exec(finalStage());
  if (!m?.[1]) throw new Error("the Dockerfile's final stage has no exec-form ENTRYPOINT");
  return JSON.parse(m[1]);
}

/** The final stage's USER, numeric "uid:gid". */
export function imageUser() {
  const m = [...finalStage().matchAll(/^USER (\d+:\d+)\s*$/gm)].at(-1);
  if (!m?.[1]) throw new Error("the Dockerfile's final stage has no numeric USER uid:gid");
  return m[1];
}
