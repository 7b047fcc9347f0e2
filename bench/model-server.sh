#!/usr/bin/env bash
# model-server benchmarks, standalone or via `make bench`: e2e/src/bin/bench-model-server.rs
# (what it measures and its settings, DURATION, ROUNDS, SPLIT_CORES=1, ...: its header), then
# the in-process prediction rows/s (cargo bench --bench predict).
#   bench/model-server.sh                  # build the static release binary, run everything
#   DURATION=5 bench/model-server.sh       # shorter wrk runs
#   SKIP_BUILD=1 BINARY=path ...           # an existing binary
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib.sh
. bench/lib.sh
need_tools wrk
build_model_server
cargo run -q -p e2e --bin bench-model-server
log "in-process prediction (cargo bench --bench predict)"
RUSTFLAGS='-C target-feature=+crt-static' cargo bench -q -p model-server --bench predict --target x86_64-unknown-linux-gnu 2>/dev/null
