// @ts-check
// The cluster tier's machinery: a real one-node Kubernetes on this machine,
// built from the Go module proxy (Kubernetes, Argo) and Debian's packages
// (etcd, containerd, runc, CNI plugins), with images made here instead of
// pulled from a registry. Needs Linux and root.
//
// Isolation. Everything with an address or iptables rules lives in a network
// namespace made for the cluster; every daemon also shares one private mount
// namespace (a supervisor process made by `unshare --mount`), where /run,
// /var/lib and /var/log are fresh tmpfs mounts (and etcd's data directory).
// So the kubelet's volume mounts, containerd's snapshot mounts, shim sockets,
// pod network namespaces and libcni's cache never reach the host and vanish
// with the last process. Volumes, images and snapshots themselves stay on disk
// in the cluster's temp dir (an emptyDir on tmpfs would be charged to the
// pod's memory limit, which a real node does not do), removed at teardown. Every process is placed in a cgroup subtree of its own
// (the kubelet's cgroupRoot too), so teardown kills exactly the cluster's
// processes, containers included. Teardown is one shell script written at
// start-up: stop() runs it, the process's exit and signals run it, and a
// watchdog runs it if this process dies without doing so.
//
// Split by concern under cluster/: common.mjs (addresses, versions, helpers),
// host.mjs (packages, kernel state), binaries.mjs (Kubernetes, Argo, containerd),
// images.mjs (OCI images made here), pki.mjs (certificates), node.mjs (start and stop).
// This file is what the tests and benches import.
export {
  argoSource,
  argoLayout,
  containerd2,
  ARGO_RUN_VERSION,
  clusterBinariesDir,
  clusterBinaries,
  argoModuleDir,
} from "./cluster/binaries.mjs";
export {
  IMAGES,
  PLUGIN_IMAGE_NAME,
  normalizeRef,
  buildImage,
  pauseImage,
  busyboxImage,
  argoexecImage,
  workflowControllerImage,
  argoCliImage,
  splitRef,
  pluginImage,
  clusterImages,
} from "./cluster/images.mjs";
export { HOST_PACKAGES, INSTALL_OPT_IN, missingHostPackages, cannotRun, ensureHostPackages } from "./cluster/host.mjs";
export { startCluster } from "./cluster/node.mjs";
