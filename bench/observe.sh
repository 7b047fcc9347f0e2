#!/usr/bin/env bash
# What drift counting and payload logging cost /predict_iris, standalone or via `make bench`:
# e2e/src/bin/bench-observe.rs (what it measures and its settings: its header).
#   bench/observe.sh                       # build the static release binary, run everything
#   DURATION=3 ROUNDS=1 bench/observe.sh   # a quick check
#   SKIP_BUILD=1 BINARY=path bench/observe.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib.sh
. bench/lib.sh
need_tools wrk
build_model_server
cargo run -q -p e2e --bin bench-observe
