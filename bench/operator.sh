#!/usr/bin/env bash
# Operator benchmarks on a running cluster with our images (make cluster-up; the script
# installs the chart if needed): apply-to-Ready, zero writes on an unchanged reconcile,
# 5,000 IrisModels at once (BENCH_MODELS) with a full resync and one change among them,
# operator memory (BENCH_SKIP_CANARIES=1 leaves the canary measures out). Prints the figures
# for BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib.sh
. bench/lib.sh
cluster_with_chart bench/operator.sh
# A fresh operator process in a cluster without an earlier run's objects, so "idle" is idle.
# BENCH_EXISTING=1 keeps the models of an earlier run that ran out of time and measures on them.
if [ -z "${BENCH_EXISTING:-}" ]; then
  kubectl delete namespace iris-bench --ignore-not-found --wait --timeout=300s >/dev/null
  kubectl -n iris-system rollout restart deployment/iris-operator >/dev/null
  kubectl -n iris-system rollout status deployment/iris-operator --timeout=120s >/dev/null
fi
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/{print $2}') GiB; $(date -u "+%F %H:%M") UTC"
with_load_average cargo run -q -p e2e --bin operator-bench
