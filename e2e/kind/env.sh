# Source this file (`. e2e/kind/env.sh`) to use the kind cluster that e2e/kind/up.sh creates:
# exports KUBECONFIG, KIND_CLUSTER_NAME and IRIS_KIND_DIR, and puts the cached kind, kubectl and
# helm on PATH. It sets no shell options (it runs in the caller's shell), and works from bash
# and from POSIX sh (sh: source it from the repository root, or set IRIS_REPO).
# shellcheck shell=sh

if [ -n "${BASH_SOURCE:-}" ]; then
  # shellcheck disable=SC3028,SC3054
  _iris_kind=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
else
  _iris_kind=${IRIS_REPO:-$PWD}/e2e/kind
fi
# shellcheck source=../tools/versions.env
. "$_iris_kind/../tools/versions.env"

IRIS_KIND_DIR=${IRIS_KIND_DIR:-/var/lib/iris-operator/kind}
KIND_CLUSTER_NAME=${KIND_CLUSTER_NAME:-iris}
KUBECONFIG=$IRIS_KIND_DIR/kubeconfig
export IRIS_KIND_DIR KIND_CLUSTER_NAME KUBECONFIG

for _iris_bin in "$HELM_BIN" "$K8S_BIN" "$KIND_BIN"; do
  case ":$PATH:" in
    *":$_iris_bin:"*) ;;
    *) PATH=$_iris_bin:$PATH ;;
  esac
done
export PATH
unset _iris_kind _iris_bin

# Waits up to 10 s for a `kubectl port-forward ... >"$1" 2>&1 &` to listen; fails, printing
# its output, if it does not. The one wait the scripts share (the Rust suite has its own).
iris_port_forward_wait() {
  _iris_i=0
  while [ "$_iris_i" -lt 100 ]; do
    if grep -q 'Forwarding from' "$1"; then unset _iris_i; return 0; fi
    _iris_i=$((_iris_i + 1))
    sleep 0.1
  done
  unset _iris_i
  cat "$1" >&2
  echo "kubectl port-forward did not start within 10 s" >&2
  return 1
}
