#!/usr/bin/env bash
# A 10-minute soak (SOAK_SECONDS) on a running cluster with our images (make cluster-up; the
# chart is installed if needed): two models under a steady client loop through the API
# server's Service proxy (the local cluster only), one changed every 2 minutes; no failed
# request, memory within 10% of the warm-up figure, no growth of open file descriptors.
# Prints the figures for BENCHMARKS.md; exits non-zero on a miss.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib.sh
. bench/lib.sh
cluster_with_chart bench/soak.sh
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; $(date -u "+%F %H:%M") UTC"
with_load_average cargo run -q -p e2e --bin soak
