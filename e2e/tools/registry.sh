#!/usr/bin/env bash
# A local image registry: the CNCF distribution registry (built by build-tools.sh registry),
# plain HTTP, filesystem storage, optionally htpasswd (bcrypt) authentication.
#
# Usage: registry.sh start | stop | status | env
# Env:   REGISTRY_PORT     port (default 5000); images are named localhost:$REGISTRY_PORT/...
#        REGISTRY_LISTEN   address to listen on (default 0.0.0.0: a kind node reaches it at its
#                          Docker network's gateway, see e2e/kind/registry.sh)
#        REGISTRY_DIR      state: config, storage, htpasswd, log, pid
#                          (default /var/lib/iris-operator/registry-$REGISTRY_PORT)
#        REGISTRY_AUTH     none (default) or htpasswd
#        REGISTRY_USER / REGISTRY_PASSWORD   the one htpasswd user (default iris / a random
#                          password kept in $REGISTRY_DIR/password)
# `env` prints REGISTRY=..., REGISTRY_USER=..., REGISTRY_PASSWORD=... lines to eval.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"
port=${REGISTRY_PORT:-5000}
listen=${REGISTRY_LISTEN:-0.0.0.0}
dir=${REGISTRY_DIR:-/var/lib/iris-operator/registry-$port}
auth=${REGISTRY_AUTH:-none}
user=${REGISTRY_USER:-iris}

say() { printf '[registry] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }
[[ $port =~ ^[0-9]{1,5}$ ]] || die "REGISTRY_PORT must be a port number, not '$port'"
case $auth in none | htpasswd) ;; *) die "REGISTRY_AUTH must be none or htpasswd, not '$auth'" ;; esac
[[ $user =~ ^[A-Za-z0-9._-]+$ ]] || die "REGISTRY_USER must be letters, digits, '.', '_' or '-', not '$user'"

pid() { [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null && cat "$dir/pid"; }

# HTTP status of GET /v2/ (200 open, 401 with authentication), 000 when nothing answers.
probe() { curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port/v2/" || true; }

password() {
  if [ -n "${REGISTRY_PASSWORD:-}" ]; then printf '%s' "$REGISTRY_PASSWORD"; return; fi
  if [ ! -s "$dir/password" ]; then
    mkdir -p "$dir"
    (umask 077 && head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$dir/password")
  fi
  cat "$dir/password"
}

start() {
  if [ -n "$(pid)" ]; then
    say "already running (pid $(pid), $dir): answers $(probe) on localhost:$port"
    return
  fi
  local code
  code=$(probe)
  [ "$code" = 000 ] || die "something else answers on port $port (HTTP $code): set REGISTRY_PORT"
  local t0=$SECONDS
  bash "$here/build-tools.sh" registry >/dev/null
  mkdir -p "$dir/storage"
  local auth_yaml=""
  if [ "$auth" = htpasswd ]; then
    password | "$REGISTRY_BIN/htpasswd" "$user" >"$dir/htpasswd.tmp"
    mv "$dir/htpasswd.tmp" "$dir/htpasswd"
    auth_yaml=$(printf 'auth:\n  htpasswd:\n    realm: iris-registry\n    path: %s\n' "$dir/htpasswd")
  fi
  cat >"$dir/config.yml" <<EOF
# Written by e2e/tools/registry.sh.
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
http:
  addr: $listen:$port
$auth_yaml
EOF
  # A clean environment: the registry reads every REGISTRY_* variable as a configuration
  # override (REGISTRY_AUTH=htpasswd would replace the auth section). OTEL_TRACES_EXPORTER=none:
  # it would otherwise look for an OTLP endpoint.
  env -i PATH=/usr/bin:/bin OTEL_TRACES_EXPORTER=none \
    nohup "$REGISTRY_BIN/registry" serve "$dir/config.yml" >"$dir/log" 2>&1 &
  echo $! >"$dir/pid"
  for _ in $(seq 1 100); do
    code=$(probe)
    case $code in 200 | 401) break ;; esac
    kill -0 "$(cat "$dir/pid")" 2>/dev/null || { tail -20 "$dir/log" >&2; die "the registry exited (log: $dir/log)"; }
    sleep 0.1
  done
  case $code in 200 | 401) ;; *) tail -20 "$dir/log" >&2; die "no answer on port $port after 10 s (log: $dir/log)" ;; esac
  say "started in $((SECONDS - t0)) s: localhost:$port (listening on $listen, auth $auth, pid $(cat "$dir/pid"), state $dir)"
}

stop() {
  local p
  p=$(pid) || true
  if [ -z "$p" ]; then say "not running ($dir)"; rm -f "$dir/pid"; return; fi
  kill "$p"
  for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  rm -f "$dir/pid"
  say "stopped (pid $p); images stay in $dir/storage"
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  status)
    if [ -n "$(pid)" ]; then say "running: pid $(pid), localhost:$port answers HTTP $(probe), auth $auth"; else say "not running"; exit 1; fi ;;
  env)
    echo "REGISTRY=localhost:$port"
    if [ "$auth" = htpasswd ]; then
      echo "REGISTRY_USER=$user"
      echo "REGISTRY_PASSWORD=$(password)"
    fi ;;
  *) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
