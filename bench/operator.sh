#!/usr/bin/env bash
# Operator benchmarks on a running cluster with our images (make cluster-up; the script
# installs the chart if needed): apply-to-Ready, zero writes on an unchanged reconcile,
# 5,000 IrisModels at once (BENCH_MODELS) with a full resync and one change among them,
# operator memory (BENCH_SKIP_CANARIES=1 leaves the canary measures out). Prints the figures
# for BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=../e2e/select-cluster.sh
. e2e/select-cluster.sh
# shellcheck source=/dev/null
. "$CLUSTER_DIR/env.sh"
kubectl get --raw /readyz >/dev/null 2>&1 || { echo "bench/operator.sh: no $CLUSTER cluster: run 'make cluster-up' (or make up)" >&2; exit 1; }
if ! helm status iris-operator -n iris-system >/dev/null 2>&1; then
  bash "$CLUSTER_DIR/load-images.sh" .build/images/model-server.tar .build/images/operator.tar
  helm upgrade --install iris-operator charts/iris-operator -n iris-system --create-namespace --wait
fi
# A fresh operator process in a cluster without an earlier run's objects, so "idle" is idle.
# BENCH_EXISTING=1 keeps the models of an earlier run that ran out of time and measures on them.
if [ -z "${BENCH_EXISTING:-}" ]; then
  kubectl delete namespace iris-bench --ignore-not-found --wait --timeout=300s >/dev/null
  kubectl -n iris-system rollout restart deployment/iris-operator >/dev/null
  kubectl -n iris-system rollout status deployment/iris-operator --timeout=120s >/dev/null
fi
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/{print $2}') GiB; $(date -u "+%F %H:%M") UTC"
# The machine is shared (other builds): the load average goes with the figures.
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
rc=0
cargo run -q -p e2e --bin operator-bench || rc=$?
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg) ($(date -u +%H:%M) UTC)"
exit "$rc"
