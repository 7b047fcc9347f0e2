#!/usr/bin/env bash
# HTTPS against plain HTTP, in the same run, on loopback only, bounded durations:
#   - POST /predict_iris single row over keep-alive connections (wrk -t2 -c64):
#     plain HTTP, HTTPS, and HTTPS with a bearer token (--auth-tokens)
#   - new connections: wrk with `Connection: close` (one TCP connection, and one full TLS
#     handshake, per request) on GET /v2/health/live, plain and HTTPS
#   - sequential full handshakes from one client: openssl s_time -new (its -reuse is left
#     out: without reading, s_time never receives a TLS 1.3 ticket, so it resumes nothing)
# The certificate is a throwaway ECDSA P-256 one made here with openssl.
#
#   bench/https.sh                         # build the static release binary, run everything
#   DURATION=3 ROUNDS=1 bench/https.sh     # a quick check
#   SKIP_BUILD=1 BINARY=path bench/https.sh
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=x86_64-unknown-linux-gnu
TARGET_DIR=${CARGO_TARGET_DIR:-target}
BINARY=${BINARY:-$TARGET_DIR/$TARGET/release/model-server}
PORT=${PORT:-5199}        # plain; PORT+1 HTTPS; PORT+2 HTTPS with tokens
DURATION=${DURATION:-10}  # seconds per wrk run
ROUNDS=${ROUNDS:-3}       # alternating rounds; the median run of each is reported
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-64}
WORKERS=${WORKERS:-0}
HANDSHAKE_SECONDS=${HANDSHAKE_SECONDS:-5}
HERE=bench/model-server
WORK=$(mktemp -d)
PIDS=()

cleanup() {
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

log() { printf '%s\n' "$*" >&2; }

# --- tools -------------------------------------------------------------------------------
for tool in wrk openssl; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] || { log "$tool is missing: apt-get install $tool"; exit 1; }
    log "installing $tool (Debian package)"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$tool" >/dev/null
  fi
done
command -v python3 >/dev/null || { log "python3 is needed"; exit 1; }
command -v curl >/dev/null || { log "curl is needed"; exit 1; }

# --- build -------------------------------------------------------------------------------
# shellcheck source=lib.sh
. bench/lib.sh
private_binary

# --- certificate, token, body --------------------------------------------------------------
mkdir "$WORK/tls"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj /CN=localhost -addext 'subjectAltName=DNS:localhost,IP:127.0.0.1' \
  -keyout "$WORK/tls/tls.key" -out "$WORK/tls/tls.crt" 2>/dev/null
TOKEN=$(openssl rand -hex 32)
printf '# bench token\n%s\n' "$TOKEN" > "$WORK/tokens"
printf '%s' '{"features":[5.1,3.5,1.4,0.2]}' > "$WORK/single.json"

# --- servers -------------------------------------------------------------------------------
start() { # PORT EXTRA_ARGS...
  local port=$1
  shift
  RUST_LOG=warn "$BINARY" serve --host 127.0.0.1 --port "$port" --grpc-port 0 \
    --worker-threads "$WORKERS" "$@" &
  PIDS+=("$!")
}
TLS_ARGS=(--tls-cert "$WORK/tls/tls.crt" --tls-key "$WORK/tls/tls.key")
start "$PORT"
start "$((PORT + 1))" "${TLS_ARGS[@]}"
start "$((PORT + 2))" "${TLS_ARGS[@]}" --auth-tokens "$WORK/tokens"
CURL=(curl -sf --max-time 2 --cacert "$WORK/tls/tls.crt")
wait_ready() { # URL
  for _ in $(seq 1 200); do
    "${CURL[@]}" "$1" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  log "not ready: $1"
  exit 1
}
wait_ready "http://127.0.0.1:$PORT/v2/health/ready"
wait_ready "https://127.0.0.1:$((PORT + 1))/v2/health/ready"
wait_ready "https://127.0.0.1:$((PORT + 2))/v2/health/ready"
# The TLS port refuses plain HTTP, and the token is needed where it is set.
if curl -sf --max-time 2 "http://127.0.0.1:$((PORT + 1))/v2/health/ready" >/dev/null 2>&1; then
  log "plain HTTP was answered on the TLS port"; exit 1
fi
code=$("${CURL[@]}" -o /dev/null -w '%{http_code}' "https://127.0.0.1:$((PORT + 2))/v2" || true)
[ "$code" = 401 ] || { log "expected 401 without a token, got $code"; exit 1; }

CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)
echo "## model-server HTTPS benchmark"
echo "date:     $(date -u '+%F %H:%M UTC')"
echo "machine:  $(nproc) cores, $CPU; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "binary:   $BINARY_SHOWN"
echo "wrk:      -t$THREADS -c$CONNECTIONS -d${DURATION}s; server workers: $WORKERS (0 = per CPU); $(openssl version)"
echo

# run NAME PID URL [wrk args...]: one wrk run; appends "NAME rps p50 p99 non2xx cpu_us" to
# $WORK/results. cpu_us is the server's CPU time per request.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
run() {
  local name=$1 pid=$2 url=$3 out="$WORK/$1.wrk"
  shift 3
  log "wrk $name ($url, ${DURATION}s)"
  local t0 t1
  t0=$(cpu_ticks "$pid")
  WRK_BODY_FILE="$WORK/single.json" wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "$@" "$url" > "$out"
  t1=$(cpu_ticks "$pid")
  local rps p50 p99 bad reqs cpu
  rps=$(awk '/^Requests\/sec:/{print $2}' "$out")
  p50=$(awk '$1=="50%"{print $2}' "$out")
  p99=$(awk '$1=="99%"{print $2}' "$out")
  bad=$(awk '/^non-2xx:/{print $2} /Non-2xx/{print $4}' "$out" | head -1)
  reqs=$(awk '/requests in/{print $1}' "$out")
  cpu=$(python3 -c "print(f'{($t1 - $t0) / $(getconf CLK_TCK) * 1e6 / max($reqs, 1):.2f}')")
  echo "$name $rps $p50 $p99 ${bad:-0} $cpu" | tee -a "$WORK/results" >&2
}

POST=(-s "$HERE/post.lua")
AUTH=(-H "Authorization: Bearer $TOKEN")
CLOSE=(-H 'Connection: close')
# Warm-up, not measured.
WRK_BODY_FILE="$WORK/single.json" wrk -t"$THREADS" -c"$CONNECTIONS" -d1s "${POST[@]}" \
  "https://127.0.0.1:$((PORT + 1))/predict_iris" >/dev/null
for _ in $(seq 1 "$ROUNDS"); do
  run plain "${PIDS[0]}" "http://127.0.0.1:$PORT/predict_iris" "${POST[@]}"
  run https "${PIDS[1]}" "https://127.0.0.1:$((PORT + 1))/predict_iris" "${POST[@]}"
  run https_token "${PIDS[2]}" "https://127.0.0.1:$((PORT + 2))/predict_iris" "${POST[@]}" "${AUTH[@]}"
done
run plain_new_conn "${PIDS[0]}" "http://127.0.0.1:$PORT/v2/health/live" "${CLOSE[@]}"
run https_new_conn "${PIDS[1]}" "https://127.0.0.1:$((PORT + 1))/v2/health/live" "${CLOSE[@]}"

# Sequential handshakes from one client (latency-bound, not a server ceiling).
s_time() { # MODE: handshakes per wall-clock second
  local t0 t1 n
  t0=$(date +%s.%N)
  n=$(timeout $((HANDSHAKE_SECONDS + 10)) openssl s_time -connect "127.0.0.1:$((PORT + 1))" "$1" \
    -time "$HANDSHAKE_SECONDS" 2>/dev/null </dev/null | awk '/connections in .* real seconds/{print $1}')
  t1=$(date +%s.%N)
  if [ -n "$n" ]; then python3 -c "print(f'{$n / ($t1 - $t0):.0f}')"; else echo '?'; fi
}
log "openssl s_time -new (${HANDSHAKE_SECONDS}s)"
S_NEW=$(s_time -new)

# --- summary ------------------------------------------------------------------------------
median() { # NAME COLUMN
  awk -v n="$1" '$1==n' "$WORK/results" | sort -k2,2g | awk -v c="$2" '{v[NR]=$c} END{print v[int((NR+1)/2)]}'
}
row() { # NAME LABEL
  printf '| %s | %.0f req/s | %s / %s | %s us | %s |\n' "$2" "$(median "$1" 2)" \
    "$(median "$1" 3)" "$(median "$1" 4)" "$(median "$1" 6)" "$(median "$1" 5)"
}
all_runs() { awk -v n="$1" '$1==n{printf "%s%.0f", sep, $2; sep=", "}' "$WORK/results"; }
echo "runs (req/s): plain [$(all_runs plain)], https [$(all_runs https)], https_token [$(all_runs https_token)]"
echo
echo "| measure (median of $ROUNDS for keep-alive) | throughput | p50 / p99 | server CPU per request | non-2xx |"
echo "|---|---|---|---|---|"
row plain "POST /predict_iris, plain HTTP, keep-alive"
row https "POST /predict_iris, HTTPS, keep-alive"
row https_token "POST /predict_iris, HTTPS + bearer token, keep-alive"
row plain_new_conn "GET /v2/health/live, plain HTTP, new connection per request"
row https_new_conn "GET /v2/health/live, HTTPS, new connection (full handshake) per request"
echo
echo "HTTPS keep-alive / plain: $(python3 -c "print(f'{$(median https 2) / $(median plain 2) * 100:.1f}%')");" \
  "with token / without: $(python3 -c "print(f'{$(median https_token 2) / $(median https 2) * 100:.1f}%')")"
echo "openssl s_time -new, one client, sequential: ${S_NEW} full handshakes/s"
