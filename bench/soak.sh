#!/usr/bin/env bash
# A 10-minute soak (SOAK_SECONDS) on a running cluster with our images (make cluster-up; the
# chart is installed if needed): two models under a steady client loop through the API
# server's Service proxy (the local cluster only), one changed every 2 minutes; no failed
# request, memory within 10% of the warm-up figure, no growth of open file descriptors.
# Prints the figures for BENCHMARKS.md; exits non-zero on a miss.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=../e2e/select-cluster.sh
. e2e/select-cluster.sh
# shellcheck source=/dev/null
. "$CLUSTER_DIR/env.sh"
kubectl get --raw /readyz >/dev/null 2>&1 || { echo "bench/soak.sh: no $CLUSTER cluster: run 'make cluster-up' (or make up)" >&2; exit 1; }
if ! helm status iris-operator -n iris-system >/dev/null 2>&1; then
  bash "$CLUSTER_DIR/load-images.sh" .build/images/model-server.tar .build/images/operator.tar
  helm upgrade --install iris-operator charts/iris-operator -n iris-system --create-namespace --wait
fi
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; $(date -u "+%F %H:%M") UTC"
# The machine is shared (other builds): the load average goes with the figures.
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
rc=0
cargo run -q -p e2e --bin soak || rc=$?
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg) ($(date -u +%H:%M) UTC)"
exit "$rc"
