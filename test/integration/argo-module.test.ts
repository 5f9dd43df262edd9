// argoexec in every test is Argo's own code. The Go module zip of
// argo-workflows drops the repository's symlinks; the test bed puts each back
// as a byte copy of its target (scripts/lib/argo-module.mjs), which the zip
// does hold. This holds that list to the module itself: each link is missing
// from the zip (else the copy would replace a real file), its target is there,
// and a restore gives exactly the target's bytes — so the built argoexec's
// process handling is the tag's, not a stand-in's.
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { ARGO_SYMLINKS, restoreArgoSymlinks } from "../../scripts/lib/argo-module.mjs";
import { argoModuleDir } from "../../scripts/lib/cluster.mjs";

let moduleDir: string;
let copy: string;

beforeAll(async () => {
  moduleDir = await argoModuleDir();
  copy = mkdtempSync(join(tmpdir(), "argo-module-"));
  for (const [link] of ARGO_SYMLINKS)
    cpSync(join(moduleDir, dirname(link)), join(copy, dirname(link)), { recursive: true });
}, 600_000);
afterAll(() => rmSync(copy, { recursive: true, force: true }));

it("every symlink the test bed restores is missing from Argo's module zip, and its target is there", () => {
  expect(ARGO_SYMLINKS.length).toBeGreaterThan(0);
  for (const [link, target] of ARGO_SYMLINKS) {
    expect(existsSync(join(moduleDir, link)), `${link} is not in the zip`).toBe(false);
    expect(existsSync(join(moduleDir, dirname(link), target)), `${target} is in the zip`).toBe(true);
  }
});

it("a restore makes each link a byte copy of its target: argoexec's Linux Wait is Argo's (Release, then reap with wait4)", () => {
  restoreArgoSymlinks(copy);
  for (const [link, target] of ARGO_SYMLINKS) {
    expect(readFileSync(join(copy, link)).equals(readFileSync(join(moduleDir, dirname(link), target)))).toBe(true);
  }
  const signal = readFileSync(join(copy, "workflow/executor/osspecific/signal_linux.go"), "utf8");
  expect(signal).toContain("process.Release()");
  expect(signal).toContain("syscall.Wait4(");
});
