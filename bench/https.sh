#!/usr/bin/env bash
# HTTPS against plain HTTP on loopback, standalone or via `make bench`:
# e2e/src/bin/bench-https.rs (what it measures and its settings: its header).
#   bench/https.sh                         # build the static release binary, run everything
#   DURATION=3 ROUNDS=1 bench/https.sh     # a quick check
#   SKIP_BUILD=1 BINARY=path bench/https.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib.sh
. bench/lib.sh
need_tools wrk openssl
build_model_server
cargo run -q -p e2e --bin bench-https
