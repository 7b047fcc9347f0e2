#!/usr/bin/env bash
# Runs the end-to-end suite (cargo test -p e2e) on a cluster with our images loaded.
#   run-suite.sh           on the running cluster (make cluster-up)
#   run-suite.sh --fresh   on a new cluster, torn down afterwards (KEEP_CLUSTER=1 keeps it)
set -euo pipefail
cd "$(dirname "$0")/.."
fresh=0
[ "${1:-}" = --fresh ] && fresh=1
t0=$SECONDS
summary=""
log=$(mktemp)
# On exit: tear a fresh cluster down (unless KEEP_CLUSTER=1), then print the suite's count
# as the last line, so the run ends on what it tested.
# shellcheck disable=SC2317 # invoked by the EXIT trap
finish() {
  if [ "$fresh" = 1 ] && [ "${KEEP_CLUSTER:-0}" != 1 ]; then
    echo "run-suite: tearing the cluster down"
    bash "$CLUSTER_DIR/down.sh" >/dev/null 2>&1 || true
  fi
  rm -f "$log"
  [ -z "$summary" ] || echo "$summary"
}
trap finish EXIT
# shellcheck source=select-cluster.sh
. e2e/select-cluster.sh
if [ $fresh = 1 ]; then
  bash "$CLUSTER_DIR/down.sh" >/dev/null 2>&1 || true
  bash "$CLUSTER_DIR/up.sh"
fi
# shellcheck source=/dev/null
. "$CLUSTER_DIR/env.sh"
kubectl get --raw /readyz >/dev/null 2>&1 ||
  { echo "run-suite: no $CLUSTER cluster answers at $KUBECONFIG: run 'make cluster-up' (or make e2e-fresh)" >&2; exit 1; }
bash "$CLUSTER_DIR/load-images.sh" .build/images/model-server.tar .build/images/operator.tar
# The resource metrics API, which the autoscaling tests need (built once, cached).
bash e2e/metrics-server/install.sh
# The OIP clients users run (tritonclient, the kserve SDK), pinned, in a cached venv.
IRIS_PYCLIENTS=$(bash e2e/clients/setup.sh)
export IRIS_PYCLIENTS
echo "run-suite: cluster ready and images loaded after $((SECONDS - t0)) s; running the suite"
t1=$SECONDS
status=0
cargo test -p e2e -- --test-threads "${E2E_THREADS:-4}" --nocapture 2>&1 | tee "$log" || status=$?
count() { grep -E '^test result:' "$log" | grep -oE "[0-9]+ $1" | awk '{n += $1} END {print n + 0}'; }
echo "run-suite: suite took $((SECONDS - t1)) s, total $((SECONDS - t0)) s"
summary="e2e: $(count passed) passed, $(count failed) failed"
exit "$status"
