// Runs once before the suite: makes sure the pinned MinIO, kustomize and Argo binaries exist (they are
// built with `go install` on a new machine, which takes minutes) so no test
// file races another to build it.
import {
  argoTools,
  kustomizeBinary,
  minioBinary,
  motoServerBinary,
  versitygwBinary,
} from "../../scripts/lib/tools.mjs";

export default async function setup(): Promise<void> {
  // Built (or installed) once here, so no test file races another to build them.
  await Promise.all([minioBinary(), argoTools(), kustomizeBinary(), versitygwBinary(), motoServerBinary()]);
}
