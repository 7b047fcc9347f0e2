#!/usr/bin/env bash
# model-server benchmarks, standalone or via `make bench`. Loopback traffic only, bounded
# durations. Prints the machine, the figures and a markdown table for BENCHMARKS.md.
#
#   bench/model-server.sh            # build the static release binary, run everything
#   DURATION=5 bench/model-server.sh # shorter wrk runs
#   SKIP_BUILD=1 BINARY=path ...     # use an existing binary
#   SPLIT_CORES=1 bench/model-server.sh  # server pinned to CPU 0 (1 worker), wrk to CPU 1
#
# Measures (targets from issue 2):
#   - POST /predict_iris single row, wrk -t2 -c64        (>= 50,000 req/s, p99 < 2 ms)
#   - POST /constant, same body, same settings           (predict within 15% of it)
#   - POST /v2/models/iris/infer, 1,000-row FP64 batch   (rows/s)
#   - process start to ready, builtin source (training)  (< 50 ms)
#   - idle RSS from /proc/<pid>/status                   (< 10 MB)
#   - in-process prediction rows/s (cargo bench --bench predict)
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=x86_64-unknown-linux-gnu
TARGET_DIR=${CARGO_TARGET_DIR:-target}
BINARY=${BINARY:-$TARGET_DIR/$TARGET/release/model-server}
PORT=${PORT:-5099}
DURATION=${DURATION:-10}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-64}
BATCH_CONNECTIONS=${BATCH_CONNECTIONS:-8}
WORKERS=${WORKERS:-0}  # server worker threads; 0 = one per CPU
STARTS=${STARTS:-20}
ROUNDS=${ROUNDS:-3}     # alternating constant/predict rounds; the median run is reported
# SPLIT_CORES=1: the server on CPU 0 with one worker (as in a 1-CPU pod) and wrk on CPU 1 with
# one thread, so neither waits for the other's time slice; the default lets all four threads
# share both cores.
SPLIT_CORES=${SPLIT_CORES:-0}
SERVER_PIN=()
WRK_PIN=()
if [ "$SPLIT_CORES" = 1 ]; then
  WORKERS=1 THREADS=1 SERVER_PIN=(taskset -c 0) WRK_PIN=(taskset -c 1)
fi
HERE=bench/model-server
WORK=$(mktemp -d)
SERVER_PID=

cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

log() { printf '%s\n' "$*" >&2; }

# --- tools -------------------------------------------------------------------------------
if ! command -v wrk >/dev/null 2>&1; then
  log "installing wrk (Debian package)"
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
  else
    log "wrk is missing and this is not root: apt-get install wrk"; exit 1
  fi
fi
command -v python3 >/dev/null || { log "python3 is needed for the start-to-ready poller"; exit 1; }
command -v curl >/dev/null || { log "curl is needed"; exit 1; }

# --- build -------------------------------------------------------------------------------
# shellcheck source=lib.sh
. bench/lib.sh
private_binary

# --- machine -----------------------------------------------------------------------------
CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)
MEM=$(free -g | awk '/Mem:/{print $2}')
echo "## model-server benchmark"
echo "date:     $(date -u '+%F %H:%M UTC')"
echo "machine:  $(nproc) cores, $CPU, ${MEM} GiB RAM; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "binary:   $BINARY_SHOWN ($(stat -c %s "$BINARY") bytes, $(file -b "$BINARY" 2>/dev/null | cut -d, -f1-2 || echo '?'))"
echo "wrk:      $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2), -t$THREADS -c$CONNECTIONS -d${DURATION}s; server workers: ${WORKERS} (0 = per CPU)"
echo

# --- start to ready ------------------------------------------------------------------------
log "start-to-ready ($STARTS runs)"
python3 "$HERE/start_to_ready.py" "$BINARY" "$PORT" "$STARTS" --worker-threads "$WORKERS" | tee "$WORK/start.txt"
START_MS=$(sed -n 's/.*median=\([0-9.]*\).*/\1/p' "$WORK/start.txt")
START_MAX=$(sed -n 's/.*max=\([0-9.]*\).*/\1/p' "$WORK/start.txt")

# --- server for the load tests ------------------------------------------------------------
RUST_LOG=warn "${SERVER_PIN[@]}" "$BINARY" serve --host 127.0.0.1 --port "$PORT" --worker-threads "$WORKERS" &
SERVER_PID=$!
for _ in $(seq 1 500); do
  curl -sf "http://127.0.0.1:$PORT/v2/health/ready" >/dev/null 2>&1 && break
done
curl -sf "http://127.0.0.1:$PORT/v2/health/ready" >/dev/null || { log "server not ready"; exit 1; }
rss_kb() { awk '/VmRSS/{print $2}' "/proc/$SERVER_PID/status"; }
IDLE_RSS_KB=$(rss_kb)
echo "idle RSS after start: ${IDLE_RSS_KB} kB"

# --- bodies ---------------------------------------------------------------------------------
printf '%s' '{"features":[5.1,3.5,1.4,0.2]}' > "$WORK/single.json"
python3 - "$WORK/batch.json" <<'PY'
import json, sys
rows = [[5.1, 3.5, 1.4, 0.2], [5.9, 2.8, 4.3, 1.3], [6.2, 3.4, 5.4, 2.3], [4.9, 3.0, 1.4, 0.2]]
data = [v for i in range(1000) for v in rows[i % 4]]
body = {"inputs": [{"name": "input-0", "shape": [1000, 4], "datatype": "FP64", "data": data}]}
open(sys.argv[1], "w").write(json.dumps(body, separators=(",", ":")))
PY

# run NAME URL BODY_FILE CONNECTIONS: one wrk run; appends
# "NAME rps p50 p99 non2xx requests server_cpu_us_per_request" to $WORK/results.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$SERVER_PID/stat"; }
run() {
  local name=$1 url=$2 body=$3 conns=$4 out="$WORK/$1.wrk"
  log "wrk $name ($url, -c$conns, ${DURATION}s)"
  local t0 t1
  t0=$(cpu_ticks)
  WRK_BODY_FILE=$body "${WRK_PIN[@]}" wrk -t"$THREADS" -c"$conns" -d"${DURATION}s" --latency -s "$HERE/post.lua" "$url" > "$out"
  t1=$(cpu_ticks)
  cat "$out" >&2
  local rps p50 p99 bad reqs cpu
  rps=$(awk '/^Requests\/sec:/{print $2}' "$out")
  p50=$(awk '$1=="50%"{print $2}' "$out")
  p99=$(awk '$1=="99%"{print $2}' "$out")
  bad=$(awk '/^non-2xx:/{print $2}' "$out")
  reqs=$(awk '/requests in/{print $1}' "$out")
  cpu=$(python3 -c "print(f'{($t1 - $t0) / $(getconf CLK_TCK) * 1e6 / $reqs:.2f}')")
  echo "$name $rps $p50 $p99 ${bad:-?} $reqs $cpu" | tee -a "$WORK/results" >&2
}

# Warm up (connections, allocator, caches), not measured.
WRK_BODY_FILE="$WORK/single.json" "${WRK_PIN[@]}" wrk -t"$THREADS" -c"$CONNECTIONS" -d2s -s "$HERE/post.lua" \
  "http://127.0.0.1:$PORT/predict_iris" >/dev/null

# The two single-row routes alternate, ROUNDS times each, and the median run of each counts:
# background load on a shared machine then hits both alike.
for _ in $(seq 1 "$ROUNDS"); do
  run constant "http://127.0.0.1:$PORT/constant" "$WORK/single.json" "$CONNECTIONS"
  run predict_iris "http://127.0.0.1:$PORT/predict_iris" "$WORK/single.json" "$CONNECTIONS"
done
run v2_infer_1000 "http://127.0.0.1:$PORT/v2/models/iris/infer" "$WORK/batch.json" "$BATCH_CONNECTIONS"

sleep 1  # let the connections close before measuring idle memory again
LOADED_RSS_KB=$(rss_kb)
echo "RSS after the load runs (idle again): ${LOADED_RSS_KB} kB"
# Server-side latency (routing to response head, from the server's own histogram): how much
# of the client-side p99 is the server's work and how much is waiting for a CPU.
curl -s "http://127.0.0.1:$PORT/metrics" > "$WORK/metrics.txt"
SERVER_P99=$(python3 - "$WORK/metrics.txt" <<'PY'
import re, sys
buckets = []
for line in open(sys.argv[1]):
    m = re.match(r'model_server_http_request_duration_seconds_bucket\{route="/predict_iris",code="200",le="([^"]+)"\} (\d+)', line)
    if m:
        buckets.append((float(m.group(1)), int(m.group(2))))
total = buckets[-1][1]
le = next(le for le, n in buckets if n >= 0.99 * total)
print(f"<= {le * 1e6:.0f} us" if le < 1 else f"<= {le} s")
PY
)
echo "server-side p99 of /predict_iris (histogram bucket): $SERVER_P99"

# --- in-process ---------------------------------------------------------------------------
log "in-process prediction (cargo bench --bench predict)"
RUSTFLAGS='-C target-feature=+crt-static' cargo bench -q -p model-server --bench predict --target "$TARGET" 2>/dev/null \
  | tee "$WORK/inproc.txt"

# --- summary ------------------------------------------------------------------------------
# median NAME COLUMN: the value of COLUMN in the median-throughput run of NAME
median() {
  awk -v n="$1" '$1==n' "$WORK/results" | sort -k2,2g | awk -v c="$2" '{v[NR]=$c} END{print v[int((NR+1)/2)]}'
}
to_ms() { python3 -c "
v='$1'
print(float(v[:-2]) if v.endswith('ms') else float(v[:-2])/1000 if v.endswith('us') else float(v[:-1])*1000)"; }
verdict() { if python3 -c "import sys; sys.exit(0 if ($1) else 1)"; then echo met; else echo MISSED; fi; }
C_RPS=$(median constant 2); P_RPS=$(median predict_iris 2); B_RPS=$(median v2_infer_1000 2)
P99_MS=$(to_ms "$(median predict_iris 4)")
ratio=$(python3 -c "print(f'{$P_RPS / $C_RPS * 100:.1f}')")
rows_s=$(python3 -c "print(f'{$B_RPS * 1000:,.0f}')")
all_runs() { awk -v n="$1" '$1==n{printf "%s%.0f", sep, $2; sep=", "}' "$WORK/results"; }
echo
echo "runs (req/s): constant [$(all_runs constant)], predict_iris [$(all_runs predict_iris)]"
echo
echo "| measure | result | target | |"
echo "|---|---|---|---|"
echo "| /predict_iris single row, -t$THREADS -c$CONNECTIONS (median of $ROUNDS) | $(printf "%.0f" "$P_RPS") req/s | >= 50,000 req/s | $(verdict "$P_RPS >= 50000") |"
echo "| /predict_iris latency p50 / p99 (same run) | $(median predict_iris 3) / $(median predict_iris 4) | p99 < 2 ms | $(verdict "$P99_MS < 2") |"
echo "| /predict_iris p99 inside the server (its own histogram) | $SERVER_P99 | | |"
echo "| /constant, same POST body and settings (median of $ROUNDS) | $(printf "%.0f" "$C_RPS") req/s, p50 / p99 $(median constant 3) / $(median constant 4) | (HTTP ceiling) | |"
echo "| predict / constant throughput | ${ratio}% | >= 85% | $(verdict "$P_RPS >= 0.85 * $C_RPS") |"
echo "| server CPU per request: predict / constant | $(median predict_iris 7) / $(median constant 7) us | | |"
echo "| OIP v2 infer, 1,000-row FP64 batch, -t$THREADS -c$BATCH_CONNECTIONS | $(printf "%.0f" "$B_RPS") req/s = $rows_s rows/s, p99 $(median v2_infer_1000 4) | | |"
echo "| start to ready (builtin source, trains at start), median of $STARTS | ${START_MS} ms (max ${START_MAX}) | < 50 ms | $(verdict "$START_MS < 50") |"
echo "| idle RSS after start / idle after the load runs | $(python3 -c "print(f'{$IDLE_RSS_KB/1024:.1f} MiB / {$LOADED_RSS_KB/1024:.1f} MiB')") | < 10 MB | $(verdict "$IDLE_RSS_KB * 1024 < 10e6") |"
echo "| non-2xx answers in all runs | $(awk '{s+=$5} END{print s}' "$WORK/results") | 0 | |"
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
