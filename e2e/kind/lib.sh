# shellcheck shell=bash
# shellcheck disable=SC2034 # the variables are for the scripts that source this file
# Shared by the e2e/kind scripts (sourced; sets no shell options). Paths, versions, logging.
KIND_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$KIND_DIR/../.." && pwd)
# shellcheck source=../tools/versions.env
. "$REPO_DIR/e2e/tools/versions.env"
IRIS_CACHE=${IRIS_CACHE:-$HOME/.cache/iris-operator}

# The cluster: name, node image, where its kubeconfig and generated config go. NODE_IMAGE names
# a node image you already have (kindest/node:v1.33.x to v1.35.x): used as it is, not built.
KIND_CLUSTER_NAME=${KIND_CLUSTER_NAME:-iris}
KIND_NODE_IMAGE=${NODE_IMAGE:-${KIND_NODE_IMAGE:-kindest/node:$K8S_VERSION}}
IRIS_KIND_DIR=${IRIS_KIND_DIR:-/var/lib/iris-operator/kind}
KIND_KUBECONFIG=$IRIS_KIND_DIR/kubeconfig
# The user's kind config (repo root) and the test config layered on it by up.sh.
KIND_USER_CONFIG=${KIND_USER_CONFIG:-$REPO_DIR/kind-config.yaml}
KIND_TEST_CONFIG=$IRIS_KIND_DIR/test-config.yaml

# The Docker engine docker.sh starts when none runs (pidfile, log, our runtime wrapper).
IRIS_DOCKER_DIR=${IRIS_DOCKER_DIR:-/var/lib/iris-operator/docker}

# Tools built by e2e/kind/build-bins.sh (same layout as e2e/tools/build-tools.sh).
RUNC_WRAPPER_HASH=$(cat "$KIND_DIR/runc-wrapper/go.mod" "$KIND_DIR/runc-wrapper/main.go" | sha256sum | cut -c1-12)
RUNC_WRAPPER_BIN=$IRIS_CACHE/runc-wrapper-$RUNC_WRAPPER_HASH/bin

kind_log() { printf '[kind %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
kind_die() { printf '[kind] error: %s\n' "$*" >&2; exit 1; }
# kind_timed LABEL CMD...: runs CMD, then logs how long it took.
kind_timed() {
  local label=$1 t0=$SECONDS rc=0
  shift
  kind_log "$label ..."
  "$@" || rc=$?
  if [ "$rc" -eq 0 ]; then kind_log "$label: done in $((SECONDS - t0)) s"; else kind_log "$label: FAILED (exit $rc) after $((SECONDS - t0)) s"; fi
  return "$rc"
}
kind_need_root() { [ "$(id -u)" = 0 ] || kind_die "run as root (${1:-this script} manages a Docker engine and iptables)"; }

# Puts the cached kind, kubectl and helm first on PATH.
kind_path() {
  local d
  for d in "$HELM_BIN" "$K8S_BIN" "$KIND_BIN"; do
    case ":$PATH:" in *":$d:"*) ;; *) PATH=$d:$PATH ;; esac
  done
  export PATH
}

# kind_user_tool NAME: whether NAME (kind, kubectl or helm) is on PATH outside our cache at a
# version this project works with, so it is used as it is and not built:
#   kind v0.27 or later (v1alpha4 configs, containerd config patches, `kind load image-archive`);
#   kubectl within one minor version of K8S_VERSION (Kubernetes' version skew policy);
#   helm v3.8 or later (charts in OCI registries), or helm v4.
kind_user_tool() {
  local path version major minor want
  path=$(command -v "$1" 2>/dev/null) || return 1
  case $path in "$IRIS_CACHE"/*) return 1 ;; esac
  case $1 in
    kind) version=$("$path" version 2>/dev/null | awk '{print $2}') ;;
    kubectl) version=$("$path" version --client 2>/dev/null | awk '/^Client Version:/ {print $3}') ;;
    helm) version=$("$path" version --template '{{.Version}}' 2>/dev/null) ;;
    *) return 1 ;;
  esac
  version=${version#v}
  major=${version%%.*}
  minor=${version#*.}
  minor=${minor%%.*}
  case "$major$minor" in '' | *[!0-9]*) return 1 ;; esac
  case $1 in
    kind) [ "$major" -gt 0 ] || [ "$minor" -ge 27 ] ;;
    kubectl)
      want=${K8S_VERSION#v1.}
      want=${want%%.*}
      [ "$major" = 1 ] && [ "$minor" -ge $((want - 1)) ] && [ "$minor" -le $((want + 1)) ]
      ;;
    helm) [ "$major" -ge 4 ] || { [ "$major" = 3 ] && [ "$minor" -ge 8 ]; } ;;
  esac
}
