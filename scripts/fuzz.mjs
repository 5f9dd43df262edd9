// npm run fuzz -- [--cases N] [--seed S]: the differential test of the lean HTTP
// client against llhttp (test/unit/http1-differential.test.ts) with more cases
// than the unit tier runs, or another seed.
import { spawnSync } from "node:child_process";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    cases: { type: "string", default: "50000" },
    seed: { type: "string", default: String(Date.now() % 2 ** 31) },
  },
});
for (const [name, v] of Object.entries(values))
  if (!/^\d+$/.test(v)) throw new Error(`--${name} must be a whole number, not ${JSON.stringify(v)}`);
console.log(`fuzz: ${values.cases} cases, seed ${values.seed} (repeat with --seed ${values.seed})`);
const r = spawnSync(
  "npx",
  ["vitest", "run", "--config", "vitest.unit.config.ts", "test/unit/http1-differential.test.ts"],
  {
    stdio: "inherit",
    env: { ...process.env, FUZZ_CASES: values.cases, FUZZ_SEED: values.seed },
  },
);
process.exit(r.status ?? 1);
