# Source this file (`. e2e/cluster/env.sh`) to use the cluster that e2e/cluster/up.sh starts:
# exports KUBECONFIG, CONTAINERD_ADDRESS and CONTAINERD_NAMESPACE (for ctr),
# CONTAINER_RUNTIME_ENDPOINT and CRI_CONFIG_FILE (for crictl), IRIS_CLUSTER_DIR, and puts the cached kubectl, helm,
# crictl and etcd on PATH. It sets no shell options (it runs in the caller's shell), and works
# from bash and from POSIX sh (sh: source it from the repository root, or set IRIS_REPO).
# shellcheck shell=sh

if [ -n "${BASH_SOURCE:-}" ]; then
  # shellcheck disable=SC3028,SC3054
  _iris_cluster=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
else
  _iris_cluster=${IRIS_REPO:-$PWD}/e2e/cluster
fi
# shellcheck source=../tools/versions.env
. "$_iris_cluster/../tools/versions.env"

IRIS_CLUSTER_DIR=${IRIS_CLUSTER_DIR:-/var/lib/iris-operator/cluster}
KUBECONFIG=$IRIS_CLUSTER_DIR/kubeconfig
CONTAINERD_ADDRESS=$IRIS_CLUSTER_DIR/containerd/containerd.sock
CONTAINERD_NAMESPACE=k8s.io
CONTAINER_RUNTIME_ENDPOINT=unix://$CONTAINERD_ADDRESS
CRI_CONFIG_FILE=$IRIS_CLUSTER_DIR/config/crictl.yaml
export IRIS_CLUSTER_DIR KUBECONFIG CONTAINERD_ADDRESS CONTAINERD_NAMESPACE CONTAINER_RUNTIME_ENDPOINT CRI_CONFIG_FILE

for _iris_bin in "$ETCD_BIN" "$CRICTL_BIN" "$HELM_BIN" "$K8S_BIN"; do
  case ":$PATH:" in
    *":$_iris_bin:"*) ;;
    *) PATH=$_iris_bin:$PATH ;;
  esac
done
export PATH
unset _iris_cluster _iris_bin
