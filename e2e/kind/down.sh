#!/usr/bin/env bash
# Deletes the kind cluster that e2e/kind/up.sh created (its node container and volumes), and
# its kubeconfig. The Docker engine keeps running (it holds the node image and is cheap to keep;
# the next up.sh reuses it): pass --stop-docker to also stop a dockerd that e2e/kind/docker.sh
# started (an engine it did not start is never stopped).
#
# Usage: e2e/kind/down.sh [--stop-docker]     (as root; KIND_CLUSTER_NAME as for up.sh)
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
t_start=$SECONDS
kind_path
stop_docker=0
[ "${1:-}" = --stop-docker ] && stop_docker=1

if ! timeout 20 docker info >/dev/null 2>&1; then
  kind_log "no Docker engine answers: no kind cluster to delete"
elif ! command -v kind >/dev/null; then
  kind_log "kind is not built ($KIND_BIN): no kind cluster to delete"
elif kind get clusters 2>/dev/null | grep -qx "$KIND_CLUSTER_NAME"; then
  kind_timed "kind delete cluster --name $KIND_CLUSTER_NAME" \
    kind delete cluster --name "$KIND_CLUSTER_NAME" --kubeconfig "$KIND_KUBECONFIG"
else
  kind_log "no kind cluster named '$KIND_CLUSTER_NAME'"
fi
rm -f "$KIND_KUBECONFIG"
[ "$stop_docker" = 0 ] || bash "$KIND_DIR/docker.sh" stop
kind_log "down in $((SECONDS - t_start)) s"
