#!/usr/bin/env bash
# OIP v2 gRPC benchmark: single-row ModelInfer with ghz against our model server and against
# MLServer (scikit-learn runtime, the same Iris LogisticRegression) as the peer, plus the
# single-row OIP REST figure of each (wrk), so both the ours/MLServer and the gRPC/REST ratios
# come out of one run. Loopback traffic only, every run bounded in time. Prints the machine,
# the figures and a markdown table for BENCHMARKS.md.
#
#   bench/grpc.sh                        # build the static release binary, run everything
#   DURATION=5 bench/grpc.sh             # shorter runs (default 15 s each)
#   SKIP_BUILD=1 BINARY=path bench/grpc.sh   # use an existing model-server binary
#   SPLIT_CORES=1 bench/grpc.sh          # servers pinned to CPU 0 (1 worker), load to CPU 1
#   SKIP_OURS=1 / SKIP_MLSERVER=1        # one side only
#
# Load: ghz --concurrency 64 --connections 4 (CONCURRENCY, GRPC_CONNECTIONS), ModelInfer with
# one FP32 [1,4] row as typed contents; wrk -t2 -c64 POST /v2/models/iris/infer with the same
# row as JSON. Tools: ghz (built from the Go module proxy at GHZ_VERSION into GHZ_BIN, see
# e2e/tools/versions.env), wrk (Debian), MLServer (pinned venv from bench/mlserver/requirements.*,
# made by e2e/clients/setup.sh). The proto: model-server/proto/open_inference_grpc.proto; while
# that is absent, a protoset made from MLServer's compiled dataplane proto (the same
# `inference.GRPCInferenceService`).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=/dev/null  # e2e/tools/versions.env: GHZ_VERSION, GHZ_BIN
. e2e/tools/versions.env

TARGET=x86_64-unknown-linux-gnu
TARGET_DIR=${CARGO_TARGET_DIR:-target}
BINARY=${BINARY:-$TARGET_DIR/$TARGET/release/model-server}
PORT=${PORT:-5099}
GRPC_PORT=${GRPC_PORT:-5098}
MLS_HTTP_PORT=${MLS_HTTP_PORT:-5097}
MLS_GRPC_PORT=${MLS_GRPC_PORT:-5096}
MLS_METRICS_PORT=${MLS_METRICS_PORT:-5095}
DURATION=${DURATION:-15}
WARMUP=${WARMUP:-2}
CONCURRENCY=${CONCURRENCY:-64}
GRPC_CONNECTIONS=${GRPC_CONNECTIONS:-4}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-64}
WORKERS=${WORKERS:-0}          # our server's worker threads; 0 = one per CPU
# MLServer's parallel_workers (inference worker processes) when set; its default (1 worker
# process behind the HTTP/gRPC front process) otherwise. 0 = inference in the front process.
MLS_PARALLEL_WORKERS=${MLS_PARALLEL_WORKERS:-}
READY_TIMEOUT=${READY_TIMEOUT:-120}  # seconds for a server to become ready (MLServer: several)
SPLIT_CORES=${SPLIT_CORES:-0}
SERVER_PIN=()
LOAD_PIN=()
GHZ_CPUS=$(nproc)
if [ "$SPLIT_CORES" = 1 ]; then
  WORKERS=1 THREADS=1 GHZ_CPUS=1 SERVER_PIN=(taskset -c 0) LOAD_PIN=(taskset -c 1)
fi
PROTO_FILE=model-server/proto/open_inference_grpc.proto
WORK=$(mktemp -d)
PIDS=()

# Each server runs under setsid, so its pid is also its process group's id and stop() ends the
# whole group: MLServer's inference-pool workers and multiprocessing tracker included.
stop() {
  kill -TERM -- "-$1" 2>/dev/null || return 0
  timeout 30 tail --pid="$1" -f /dev/null 2>/dev/null || true
  kill -KILL -- "-$1" 2>/dev/null || true
}

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do stop "$pid"; done
  rm -rf "$WORK"
}
trap cleanup EXIT

log() { printf '%s\n' "$*" >&2; }

# --- tools -------------------------------------------------------------------------------
if ! command -v wrk >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    log "installing wrk (Debian package)"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
  else
    log "wrk is missing and this is not root: apt-get install wrk"; exit 1
  fi
fi
for c in curl python3 go; do
  command -v "$c" >/dev/null || { log "$c is needed"; exit 1; }
done

# ghz from the Go module proxy, once per version (linked under a temporary name, then renamed).
GHZ=$GHZ_BIN/ghz
if [ ! -x "$GHZ" ]; then
  log "building ghz $GHZ_VERSION into $GHZ_BIN"
  mkdir -p "$GHZ_BIN"
  gobin=$(mktemp -d)
  GOFLAGS=-buildvcs=false CGO_ENABLED=0 GOBIN=$gobin timeout 1200 \
    go install "github.com/bojand/ghz/cmd/ghz@$GHZ_VERSION"
  mv "$gobin/ghz" "$GHZ.tmp" && mv "$GHZ.tmp" "$GHZ"
  rm -rf "$gobin"
fi

# MLServer's pinned venv: the peer, and the proto fallback below.
MLS_VENV=$(e2e/clients/setup.sh --requirements bench/mlserver/requirements.txt --prefix mlserver)

# The service definition ghz encodes requests with.
if [ -f "$PROTO_FILE" ]; then
  PROTO_ARGS=(--proto "$ROOT/$PROTO_FILE" --import-paths "$ROOT/$(dirname "$PROTO_FILE")")
  PROTO_SHOWN=$PROTO_FILE
else
  log "note: $PROTO_FILE is not there (yet); using a protoset of MLServer's compiled dataplane proto (the same inference.GRPCInferenceService)"
  "$MLS_VENV/bin/python" - "$WORK/oip.protoset" <<'PY'
import sys
from google.protobuf import descriptor_pb2
from mlserver.grpc import dataplane_pb2
fds, seen = descriptor_pb2.FileDescriptorSet(), set()
def add(fd):  # dependencies first, each file once
    if fd.name in seen:
        return
    seen.add(fd.name)
    for dep in fd.dependencies:
        add(dep)
    fd.CopyToProto(fds.file.add())
add(dataplane_pb2.DESCRIPTOR)
open(sys.argv[1], "wb").write(fds.SerializeToString())
PY
  PROTO_ARGS=(--protoset "$WORK/oip.protoset")
  PROTO_SHOWN="protoset from mlserver.grpc.dataplane_pb2 (no $PROTO_FILE)"
fi

# --- machine -----------------------------------------------------------------------------
CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)
MEM=$(free -g | awk '/Mem:/{print $2}')
echo "## OIP v2 gRPC benchmark (ours vs MLServer)"
echo "date:     $(date -u '+%F %H:%M UTC')"
echo "machine:  $(nproc) cores, $CPU, ${MEM} GiB RAM; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "ghz:      $GHZ_VERSION, --concurrency $CONCURRENCY --connections $GRPC_CONNECTIONS --cpus $GHZ_CPUS, ${DURATION}s (after ${WARMUP}s warm-up); proto: $PROTO_SHOWN"
echo "wrk:      $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2), -t$THREADS -c$CONNECTIONS -d${DURATION}s; split cores: $SPLIT_CORES"
echo

# --- request bodies -------------------------------------------------------------------------
ROW='[5.1,3.5,1.4,0.2]'
GRPC_BODY='{"model_name":"iris","inputs":[{"name":"input-0","datatype":"FP32","shape":[1,4],"contents":{"fp32_contents":'$ROW'}}]}'
printf '%s' '{"inputs":[{"name":"input-0","shape":[1,4],"datatype":"FP32","data":'"$ROW"'}]}' > "$WORK/rest.json"

# wait_ready URL PID: poll until URL answers 2xx (bounded by READY_TIMEOUT), fail if PID died.
wait_ready() {
  local url=$1 pid=$2 deadline=$((SECONDS + READY_TIMEOUT))
  while [ $SECONDS -lt $deadline ]; do
    curl -sf -m 2 "$url" >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || { log "server exited before becoming ready"; return 1; }
    sleep 0.2
  done
  log "not ready within ${READY_TIMEOUT}s: $url"; return 1
}

# wait_port PORT PID: poll until 127.0.0.1:PORT accepts TCP connections (a gRPC listener may
# come up after the REST one that wait_ready saw), bounded by READY_TIMEOUT.
wait_port() {
  local deadline=$((SECONDS + READY_TIMEOUT))
  while [ $SECONDS -lt $deadline ]; do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || { log "server exited"; return 1; }
    sleep 0.2
  done
  log "nothing listens on 127.0.0.1:$1 within ${READY_TIMEOUT}s"; return 1
}

# free_ports PORT...: fail if something already listens there (a leftover server would be measured).
free_ports() {
  local p
  for p in "$@"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      log "port $p on 127.0.0.1 is in use (a leftover server?): stop it or set the *_PORT variables"
      exit 1
    fi
  done
}

# ghz_run NAME ADDR: warm-up, then one measured run; appends "NAME rps p50_ms p99_ms errors count"
# to $WORK/results.
ghz_run() {
  local name=$1 addr=$2 out="$WORK/$1.json"
  # --duration-stop ignore: the calls still in flight when the time is up are not counted (by
  # default ghz cancels them and reports each as an error).
  local args=(--insecure "${PROTO_ARGS[@]}" --call inference.GRPCInferenceService/ModelInfer --duration-stop ignore
    -d "$GRPC_BODY" --concurrency "$CONCURRENCY" --connections "$GRPC_CONNECTIONS" --cpus "$GHZ_CPUS")
  log "ghz $name ($addr, ${DURATION}s)"
  "${LOAD_PIN[@]}" timeout $((WARMUP + 30)) "$GHZ" "${args[@]}" --duration "${WARMUP}s" "$addr" >/dev/null 2>&1 || true
  "${LOAD_PIN[@]}" timeout $((DURATION + 60)) "$GHZ" "${args[@]}" --duration "${DURATION}s" \
    --format json "$addr" > "$out"
  python3 - "$name" "$out" <<'PY' | tee -a "$WORK/results" >&2
import json, sys
name, path = sys.argv[1], sys.argv[2]
r = json.load(open(path))
lat = {d["percentage"]: d["latency"] / 1e6 for d in (r.get("latencyDistribution") or [])}
codes = r.get("statusCodeDistribution") or {}
errors = sum(n for c, n in codes.items() if c != "OK")
if r["count"] == 0:  # nothing answered within the run: not a figure
    errors = max(errors, 1)
    print(f"# {name}: no call completed within the run", file=sys.stderr)
if errors:
    print(f"# {name}: status codes {codes}, errors {r.get('errorDistribution')}", file=sys.stderr)
print(f"{name} {r['rps']:.0f} {lat.get(50, float('nan')):.3f} {lat.get(99, float('nan')):.3f} {errors} {r['count']}")
PY
}

# wrk_run NAME URL: one measured wrk run (after a warm-up), same result line format.
wrk_run() {
  local name=$1 url=$2 out="$WORK/$1.wrk"
  log "wrk $name ($url, ${DURATION}s)"
  WRK_BODY_FILE=$WORK/rest.json "${LOAD_PIN[@]}" timeout $((WARMUP + 30)) \
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"${WARMUP}s" -s bench/model-server/post.lua "$url" >/dev/null
  WRK_BODY_FILE=$WORK/rest.json "${LOAD_PIN[@]}" timeout $((DURATION + 60)) \
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --timeout 10s --latency -s bench/model-server/post.lua "$url" > "$out"
  python3 - "$name" "$out" <<'PY' | tee -a "$WORK/results" >&2
import re, sys
name, text = sys.argv[1], open(sys.argv[2]).read()
def ms(v):
    n, unit = re.match(r"([\d.]+)(us|ms|s)", v).groups()
    return float(n) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
p50 = ms(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))
p99 = ms(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))
bad = int(re.search(r"non-2xx: (\d+)", text).group(1))
# Socket errors (connect/read/write, timeout: no answer within wrk's --timeout) count as errors.
errs = re.search(r"Socket errors: (.*)", text)
socket = sum(int(n) for n in re.findall(r"\d+", errs.group(1))) if errs else 0
if errs:
    print(f"# {name}: socket errors: {errs.group(1)}", file=sys.stderr)
count = int(re.search(r"(\d+) requests in", text).group(1))
print(f"{name} {rps:.0f} {p50:.3f} {p99:.3f} {bad + socket} {count}")
PY
}

# --- our model server ------------------------------------------------------------------------
OURS_GRPC=no
MLS_VERSION=
if [ -z "${SKIP_OURS:-}" ]; then
  # shellcheck source=lib.sh
  . bench/lib.sh
  private_binary
  echo "binary:   $BINARY_SHOWN ($(stat -c %s "$BINARY") bytes)"
  ours_args=(serve --host 127.0.0.1 --port "$PORT" --worker-threads "$WORKERS" --task multiclass)
  if "$WORK/model-server" serve --help 2>/dev/null | grep -q -- '--grpc-port'; then
    OURS_GRPC=yes
    ours_args+=(--grpc-port "$GRPC_PORT")
  else
    echo "note:     this model-server has no --grpc-port (OIP gRPC not built in yet): REST figure only"
  fi
  free_ports "$PORT" "$GRPC_PORT"
  RUST_LOG=warn setsid "${SERVER_PIN[@]}" "$WORK/model-server" "${ours_args[@]}" > "$WORK/ours.log" 2>&1 &
  ours_pid=$!
  PIDS+=("$ours_pid")
  wait_ready "http://127.0.0.1:$PORT/v2/models/iris/ready" "$ours_pid" || { cat "$WORK/ours.log" >&2; exit 1; }
  wrk_run ours_rest "http://127.0.0.1:$PORT/v2/models/iris/infer"
  if [ "$OURS_GRPC" = yes ]; then
    wait_port "$GRPC_PORT" "$ours_pid" || { cat "$WORK/ours.log" >&2; exit 1; }
    ghz_run ours_grpc "127.0.0.1:$GRPC_PORT"
  fi
  stop "$ours_pid"
fi

# --- MLServer ----------------------------------------------------------------------------
if [ -z "${SKIP_MLSERVER:-}" ]; then
  MLS_VERSION=$("$MLS_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("mlserver"))')
  echo "mlserver: $("$MLS_VENV/bin/python" -c 'import importlib.metadata as m; print(", ".join(f"{p} {m.version(p)}" for p in ("mlserver", "mlserver-sklearn", "scikit-learn", "uvloop")))');" \
    "default settings but host and ports${MLS_PARALLEL_WORKERS:+, parallel_workers $MLS_PARALLEL_WORKERS}"
  mkdir -p "$WORK/mlserver"
  "$MLS_VENV/bin/python" bench/mlserver/train_iris.py "$WORK/mlserver/iris" >&2
  cat > "$WORK/mlserver/settings.json" <<JSON
{"host": "127.0.0.1", "http_port": $MLS_HTTP_PORT, "grpc_port": $MLS_GRPC_PORT,
 "metrics_port": $MLS_METRICS_PORT, "debug": false${MLS_PARALLEL_WORKERS:+, \"parallel_workers\": $MLS_PARALLEL_WORKERS}}
JSON
  free_ports "$MLS_HTTP_PORT" "$MLS_GRPC_PORT" "$MLS_METRICS_PORT"
  (cd "$WORK/mlserver" && exec setsid "${SERVER_PIN[@]}" "$MLS_VENV/bin/mlserver" start .) > "$WORK/mlserver.log" 2>&1 &
  mls_pid=$!
  PIDS+=("$mls_pid")
  wait_ready "http://127.0.0.1:$MLS_HTTP_PORT/v2/models/iris/ready" "$mls_pid" || { tail -40 "$WORK/mlserver.log" >&2; exit 1; }
  # Sanity: MLServer answers the REST body with the setosa class.
  curl -sf -m 5 -H 'Content-Type: application/json' --data-binary @"$WORK/rest.json" \
    "http://127.0.0.1:$MLS_HTTP_PORT/v2/models/iris/infer" >&2 && log ""
  wrk_run mlserver_rest "http://127.0.0.1:$MLS_HTTP_PORT/v2/models/iris/infer"
  wait_port "$MLS_GRPC_PORT" "$mls_pid" || { tail -40 "$WORK/mlserver.log" >&2; exit 1; }
  ghz_run mlserver_grpc "127.0.0.1:$MLS_GRPC_PORT"
  stop "$mls_pid"
fi

# --- summary ------------------------------------------------------------------------------
col() { awk -v n="$1" -v c="$2" '$1==n{print $c}' "$WORK/results"; }
ratio() {
  local a b; a=$(col "$1" 2); b=$(col "$2" 2)
  if [ -n "$a" ] && [ -n "$b" ]; then python3 -c "print(f'{$a / $b:.2f}x')"; else echo n/a; fi
}
row() {  # row NAME LABEL
  if [ -n "$(col "$1" 2)" ]; then
    echo "| $2 | $(col "$1" 2) | $(col "$1" 3) | $(col "$1" 4) | $(col "$1" 5) |"
  fi
}
echo
echo "| single-row OIP v2 infer, 127.0.0.1 | req/s | p50 ms | p99 ms | errors |"
echo "|---|---|---|---|---|"
row ours_grpc "model-server gRPC ModelInfer (ghz -c$CONCURRENCY, $GRPC_CONNECTIONS conns)"
row ours_rest "model-server REST /v2/models/iris/infer (wrk -t$THREADS -c$CONNECTIONS)"
row mlserver_grpc "MLServer $MLS_VERSION gRPC ModelInfer (ghz -c$CONCURRENCY, $GRPC_CONNECTIONS conns)"
row mlserver_rest "MLServer REST /v2/models/iris/infer (wrk -t$THREADS -c$CONNECTIONS)"
echo
echo "ratios (req/s): ours/MLServer gRPC $(ratio ours_grpc mlserver_grpc), ours/MLServer REST $(ratio ours_rest mlserver_rest);" \
  "gRPC/REST ours $(ratio ours_grpc ours_rest), MLServer $(ratio mlserver_grpc mlserver_rest)"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
# Errors from our server fail the run; the peer's are reported in its row only.
errors=$(awk '$1 ~ /^ours_/ {s+=$5} END{print s+0}' "$WORK/results")
[ "$errors" = 0 ] || { log "error answers from model-server in the runs: $errors"; exit 1; }
