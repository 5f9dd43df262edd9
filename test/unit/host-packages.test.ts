// The cluster tier's Debian packages: found through dpkg, and never installed
// without the opt-in (scripts/lib/cluster.mjs).
import { execFileSync } from "node:child_process";
import { expect, it } from "vitest";
import { HOST_PACKAGES, INSTALL_OPT_IN, missingHostPackages } from "../../scripts/lib/cluster.mjs";

const hasDpkg = (() => {
  try {
    execFileSync("dpkg-query", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
})();
if (!hasDpkg) process.stdout.write("host-packages: skipped, no dpkg-query on this machine (not Debian)\n");

it.skipIf(!hasDpkg)("names exactly the packages dpkg does not have installed", () => {
  expect(missingHostPackages(["dpkg", "no-such-package-argo-s3-test"])).toEqual(["no-such-package-argo-s3-test"]);
  expect(missingHostPackages(["dpkg"])).toEqual([]);
});

it("asks for the tier's packages by name, and the opt-in is one variable", () => {
  expect(HOST_PACKAGES).toEqual(expect.arrayContaining(["etcd-server", "containerd", "runc"]));
  expect(INSTALL_OPT_IN).toBe("ARGO_S3_PLUGIN_TEST_INSTALL_PACKAGES");
});
