#!/usr/bin/env bash
# Scale to zero on a running cluster with our images (make cluster-up; the chart is installed
# if needed): the cold-start latency of a model with no pod (median and max of 10 requests,
# each after the model went back to zero pods), and warm latency with scale to zero enabled
# against disabled (2,000 requests each, through the models' NodePort Services at the node's
# own address). Prints the figures for BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib.sh
. bench/lib.sh
cluster_with_chart bench/coldstart.sh
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; $(date -u "+%F %H:%M") UTC"
with_load_average cargo run -q -p e2e --bin coldstart
