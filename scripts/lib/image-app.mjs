// @ts-check
// The image's /app without a Docker engine: the Dockerfile's final stage
// replayed into a folder, its COPY lines as written (the build stage's /src is
// this checkout after `npm run build`, the deps stage's /app a production-only
// install) and its RUN lines (the compile cache) with the image's Node. The
// image-recipe test runs the plugin from it; `npm run bench` times its start.
import { execFile } from "node:child_process";
import { cpSync, readdirSync, statSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { promisify } from "node:util";
import { finalStage, imageEntrypoint, imageEnv } from "./image-env.mjs";
import { ROOT, launcherBinary } from "./tools.mjs";

const run = promisify(execFile);

/** The final stage's COPY lines: stage ("context" for the build context), source, destination under WORKDIR /app. */
export function finalStageCopies() {
  return [...finalStage().matchAll(/^COPY (?:--from=(\S+) )?(\S+) (\S+)\s*$/gm)].map((m) => ({
    from: m[1] ?? "context",
    src: /** @type {string} */ (m[2]),
    dest: /** @type {string} */ (m[3]),
  }));
}

/** The final stage's RUN lines. */
export const finalStageRuns = () => [...finalStage().matchAll(/^RUN (.*)$/gm)].map((m) => /** @type {string} */ (m[1]));

/**
 * @param {string} app an empty folder standing for /app
 * @param {string} node the image's Node binary (the compile cache is per Node version)
 * @param {string} depsRoot the deps stage's /app: a folder with node_modules from `npm ci --omit=dev`
 */
export async function stageImageApp(app, node, depsRoot) {
  for (const { from, src, dest } of finalStageCopies()) {
    const source =
      from === "deps"
        ? join(depsRoot, src.replace(/^\/app\//, ""))
        : from === "build"
          ? join(ROOT, src.replace(/^\/src\//, ""))
          : from === "launcher"
            ? await launcherBinary()
            : join(ROOT, src);
    const target = dest.endsWith("/") ? join(app, dest, basename(src)) : join(app, dest);
    cpSync(source, target, { recursive: true });
  }
  // The RUN lines that run node in /app (the compile cache); the others act on the image's root (chmod /tmp), not on /app.
  for (const line of finalStageRuns().filter((l) => l.startsWith("node "))) {
    await run("sh", ["-c", line], {
      cwd: app,
      env: { PATH: `${dirname(node)}:${process.env["PATH"] ?? ""}`, ...imageEnv(app) },
    });
  }
}

/**
 * The ENTRYPOINT as it runs outside the image: /app is `app`, the image's node is `node`.
 * @param {string} app @param {string} node @returns {string[]}
 */
export function entrypointAt(app, node) {
  return imageEntrypoint().map((a) =>
    a === "/usr/local/bin/node" ? node : a.startsWith("/app/") ? join(app, a.slice("/app/".length)) : a,
  );
}

/** Bytes under a folder (regular files). @param {string} dir */
export function treeBytes(dir) {
  let n = 0;
  for (const e of readdirSync(dir, { recursive: true, withFileTypes: true }))
    if (e.isFile()) n += statSync(join(e.parentPath, e.name)).size;
  return n;
}
