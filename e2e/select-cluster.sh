# Sourced by the Makefile's scripts: sets CLUSTER_DIR, the directory with the cluster's
# up.sh, down.sh, load-images.sh and env.sh. The project's clusters are kind on a Docker engine
# (e2e/kind/docker.sh starts Debian's engine when none runs), as users run them.
# shellcheck shell=bash
_iris_e2e=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
case "${CLUSTER:-kind}" in
  kind | auto) CLUSTER=kind ;;
  *) echo "CLUSTER must be kind (the host-process cluster was removed), not '$CLUSTER'" >&2; return 1 ;;
esac
CLUSTER_DIR=$_iris_e2e/kind
export CLUSTER CLUSTER_DIR
echo "cluster: $CLUSTER ($CLUSTER_DIR)" >&2
unset _iris_e2e
