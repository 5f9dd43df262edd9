#!/bin/sh
# Helm post-renderer for the S3 artifact plugin: reads the chart's rendered
# manifests on stdin and writes them to stdout with the plugin's
# `artifactDrivers` entry added at the top of the chart's own controller config
# (the `config` text of the ConfigMap that deploy/helm/values.yaml annotates).
# Everything else the chart rendered passes through unchanged; the entry comes
# from the ArtifactDriverEntry object deploy/helm/values.yaml adds, which is
# dropped from the output.
#
# Needs kustomize 5 or kubectl 1.27 (or later) on PATH.
set -eu

here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
trap 'exit 1' HUP INT TERM

cp "$here/kustomization.yaml" "$work/kustomization.yaml"
cat > "$work/rendered.yaml"

fail() {
  echo "argo-s3-artifact-plugin post-renderer: $*" >&2
  # Helm 4 keeps a post-renderer plugin's stderr to itself (it says only "exited with
  # error"); an operator at a terminal still gets the reason there.
  [ -t 2 ] || { echo "argo-s3-artifact-plugin post-renderer: $*" > /dev/tty; } 2> /dev/null || true
  exit 1
}

grep -q '^kind: ArtifactDriverEntry$' "$work/rendered.yaml" ||
  fail "the chart's output has no ArtifactDriverEntry: add deploy/helm/values.yaml (helm -f) to this release"

# kustomize's own words go into the failure line: Helm 4 drops a post-renderer's stderr.
if command -v kustomize > /dev/null 2>&1; then
  kustomize build "$work" > "$work/out.yaml" 2> "$work/err" ||
    fail "kustomize build failed: $(tr '\n' ' ' < "$work/err")"
elif command -v kubectl > /dev/null 2>&1; then
  kubectl kustomize "$work" > "$work/out.yaml" 2> "$work/err" ||
    fail "kubectl kustomize failed: $(tr '\n' ' ' < "$work/err")"
else
  fail "needs kustomize or kubectl on PATH"
fi

# The replacement selects the controller ConfigMap by the annotation the values
# set; a values file without it would leave Argo without the driver, silently.
grep -q 'artifactDrivers:' "$work/out.yaml" ||
  fail "no controller ConfigMap carries the annotation argo-s3-artifact-plugin/artifact-drivers: keep controller.configMap.annotations from deploy/helm/values.yaml (and controller.configMap.create: true)"

cat "$work/out.yaml"
