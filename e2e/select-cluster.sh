# Sourced by the Makefile's scripts: picks the cluster the project runs on and sets
#   CLUSTER      kind  - kind on a Docker engine (started here when none runs), as users run it
#                local - the single-node host-process cluster (no Docker engine needed)
#   CLUSTER_DIR  e2e/kind or e2e/cluster: each has up.sh, down.sh, load-images.sh and env.sh
# CLUSTER=kind or CLUSTER=local forces one; unset or "auto" chooses kind when a Docker engine
# answers or can be started, the host-process cluster otherwise.
# shellcheck shell=bash
_iris_e2e=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
case "${CLUSTER:-auto}" in
  kind | local) ;;
  auto) CLUSTER=$(bash "$_iris_e2e/kind/available.sh" 2>/dev/null || echo local) ;;
  *) echo "CLUSTER must be kind, local or auto, not '$CLUSTER'" >&2; return 1 ;;
esac
if [ "$CLUSTER" = kind ]; then CLUSTER_DIR=$_iris_e2e/kind; else CLUSTER_DIR=$_iris_e2e/cluster; fi
export CLUSTER CLUSTER_DIR
echo "cluster: $CLUSTER ($CLUSTER_DIR)" >&2
unset _iris_e2e
