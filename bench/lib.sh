# Shared by the benchmarks (sourced; sets no shell options).
# shellcheck shell=bash

# private_binary: builds the static release model-server (unless SKIP_BUILD is set), then
# runs from a private copy in $WORK, so a concurrent build into the same target directory
# cannot swap it. Reads TARGET, BINARY and WORK; sets BINARY_SHOWN (what was built) and
# BINARY (the copy). Needs log().
private_binary() {
  if [ -z "${SKIP_BUILD:-}" ]; then
    log "building the static release binary (first build takes minutes: fat LTO)"
    RUSTFLAGS='-C target-feature=+crt-static' cargo build -q --release -p model-server --target "$TARGET"
  fi
  [ -x "$BINARY" ] || { log "no binary at $BINARY"; exit 1; }
  cp "$BINARY" "$WORK/model-server"
  # shellcheck disable=SC2034 # read by the scripts that source this file
  BINARY_SHOWN=$BINARY
  BINARY=$WORK/model-server
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
