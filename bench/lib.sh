# Shared by the benchmarks (sourced; sets no shell options). The measuring is done by the
# programs in e2e/src/bin (bench-*, coldstart, soak, operator-bench); this sets up what they
# need.
# shellcheck shell=bash

log() { printf '%s\n' "$*" >&2; }

# need_tools TOOL...: installs each missing TOOL from its Debian package (as root), or exits.
need_tools() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 && continue
    [ "$(id -u)" = 0 ] || { log "$tool is missing and this is not root: apt-get install $tool"; exit 1; }
    log "installing $tool (Debian package)"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$tool" >/dev/null
  done
}

# build_model_server: the static release model-server the programs measure (unless
# SKIP_BUILD is set; BINARY then names another one). The programs run a private copy, so a
# concurrent build into the same target directory cannot swap it mid-run.
build_model_server() {
  [ -z "${SKIP_BUILD:-}" ] || return 0
  log "building the static release binary (first build takes minutes: fat LTO)"
  RUSTFLAGS='-C target-feature=+crt-static' cargo build -q --release -p model-server --target x86_64-unknown-linux-gnu
}

# cluster_with_chart SCRIPT: selects the project's cluster (KUBECONFIG and PATH from its
# env.sh), exits naming SCRIPT when none answers, and installs the chart with our images when
# it is not installed yet. Run from the repository root.
cluster_with_chart() {
  # shellcheck source=../e2e/select-cluster.sh
  . e2e/select-cluster.sh
  # shellcheck source=/dev/null
  . "$CLUSTER_DIR/env.sh"
  kubectl get --raw /readyz >/dev/null 2>&1 || { echo "$1: no $CLUSTER cluster: run 'make cluster-up' (or make up)" >&2; exit 1; }
  if ! helm status iris-operator -n iris-system >/dev/null 2>&1; then
    bash "$CLUSTER_DIR/load-images.sh" .build/images/model-server.tar .build/images/operator.tar
    helm upgrade --install iris-operator charts/iris-operator -n iris-system --create-namespace --wait
  fi
}

# with_load_average CMD...: runs CMD between two lines with the load average (the machine may
# be shared, and the figures go with its load); returns CMD's status.
with_load_average() {
  local rc=0
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  "$@" || rc=$?
  echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg) ($(date -u +%H:%M) UTC)"
  return "$rc"
}
