#!/usr/bin/env bash
# OIP v2 gRPC, ours against MLServer, standalone or via `make bench`:
# e2e/src/bin/bench-grpc.rs (what it measures and its settings: its header). This gets its
# tools: wrk (Debian), ghz (built from the Go module proxy at GHZ_VERSION, e2e/tools/versions.env)
# and MLServer's pinned venv (bench/mlserver/requirements.*, made by e2e/clients/setup.sh).
#   bench/grpc.sh                          # build the static release binary, run everything
#   DURATION=5 bench/grpc.sh               # shorter runs (default 15 s each)
#   SKIP_BUILD=1 BINARY=path bench/grpc.sh; SKIP_OURS=1 / SKIP_MLSERVER=1: one side only
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib.sh
. bench/lib.sh
# shellcheck source=../e2e/tools/versions.env
. e2e/tools/versions.env
need_tools wrk
bash e2e/tools/build-tools.sh ghz
if [ -z "${SKIP_MLSERVER:-}" ]; then
  MLS_VENV=$(e2e/clients/setup.sh --requirements bench/mlserver/requirements.txt --prefix mlserver)
  export MLS_VENV
fi
[ -n "${SKIP_OURS:-}" ] || build_model_server
GHZ=$GHZ_BIN/ghz cargo run -q -p e2e --bin bench-grpc
