// @ts-check
// Argo's repository holds a few files as symlinks; Go module zips (what the
// proxy serves) drop symlinks. Each one is put back as a byte copy of its
// target, which the zip does hold: exactly the file a git checkout of the tag
// gives. Nothing of the test bed's own replaces Argo's code.
import { copyFileSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";

/** [path of the symlink, its target relative to the link's folder], as in Argo v4's repository. */
export const ARGO_SYMLINKS = Object.freeze([
  // argoexec's Linux process handling (Wait releases the child and reaps it with wait4).
  /** @type {const} */ (["workflow/executor/osspecific/signal_linux.go", "signal_darwin.go"]),
]);

/**
 * Restores every symlink the module zip lost under an unpacked (vendored,
 * writable) copy of Argo's module, and proves each copy equal to its target.
 * @param {string} moduleRoot the folder of github.com/argoproj/argo-workflows/v4
 */
export function restoreArgoSymlinks(moduleRoot) {
  for (const [link, target] of ARGO_SYMLINKS) {
    const to = join(moduleRoot, link);
    const from = join(dirname(to), target);
    copyFileSync(from, to);
    if (!readFileSync(from).equals(readFileSync(to)))
      throw new Error(`restoring Argo's ${link} from ${target}: the copy differs`);
  }
}
