#!/usr/bin/env bash
# Ensures a Docker engine that can run kind nodes on this machine.
#
#   docker.sh [start]   if `docker info` answers, leaves that engine alone (and warns when its
#                       default runtime cannot run privileged containers here); otherwise
#                       installs Debian's docker.io when dockerd is missing and starts dockerd
#                       in the background with our runtime wrapper as the default runtime
#   docker.sh stop      stops the dockerd that `docker.sh start` started (by its PID), and
#                       nothing else
#   docker.sh status    says which engine runs and who started it
#
# Why a wrapper runtime: this VM's capability bounding set lacks CAP_SYS_RESOURCE, so runc
# refuses every --privileged container ("unable to apply caps: operation not permitted").
# e2e/kind/runc-wrapper removes the capabilities the machine cannot grant from the OCI spec
# and then runs runc (dockerd --add-runtime wrap=<wrapper> --default-runtime wrap).
#
# Containers' traffic to private address ranges out of the external interface is rejected in
# DOCKER-USER, the chain Docker evaluates first and never flushes (see docker_user_rules).
#
# State: $IRIS_DOCKER_DIR (default /var/lib/iris-operator/docker): dockerd.pid, dockerd.log,
# daemon.json, runc-wrapper. Images and containers stay in Docker's default /var/lib/docker, so a later
# engine (ours or a system one) sees them.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

pidfile=$IRIS_DOCKER_DIR/dockerd.pid
logfile=$IRIS_DOCKER_DIR/dockerd.log

engine_up() { timeout 20 docker info >/dev/null 2>&1; }
our_pid() {
  local pid
  [ -f "$pidfile" ] || return 1
  pid=$(cat "$pidfile" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -d "/proc/$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ] && echo "$pid"
}

install_docker() {
  command -v apt-get >/dev/null || kind_die "dockerd is missing and there is no apt-get to install Debian's docker.io"
  kind_log "installing Debian's docker.io (dockerd is missing)"
  # Keep the package from starting its service (we start dockerd ourselves, with our flags).
  local guard=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    guard=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' >"$guard"
    chmod +x "$guard"
  fi
  local rc=0
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends docker.io >&2 || {
    DEBIAN_FRONTEND=noninteractive apt-get update >&2 &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends docker.io >&2
  } || rc=$?
  [ -z "$guard" ] || rm -f "$guard"
  [ "$rc" -eq 0 ] || kind_die "apt-get install docker.io failed"
}

# The wrapper dockerd runs, at a fixed path ($IRIS_DOCKER_DIR/runc-wrapper), replaced
# atomically when its source changes: a running engine picks the new one up with its next
# container.
wrapper=$IRIS_DOCKER_DIR/runc-wrapper
install_wrapper() {
  bash "$KIND_DIR/build-bins.sh" wrapper
  if ! cmp -s "$RUNC_WRAPPER_BIN/runc-wrapper" "$wrapper"; then
    install -m 0755 "$RUNC_WRAPPER_BIN/runc-wrapper" "$wrapper.tmp"
    mv -f "$wrapper.tmp" "$wrapper"
  fi
}

# Our rules at the top of DOCKER-USER (the chain Docker jumps to first from FORWARD and never
# flushes), rewritten on every start:
#  - reject traffic from containers (docker0, br-*) to private address ranges leaving through
#    the host's external interface: nothing of ours is out there, and a kind node whose Service
#    rules are not (yet) in place would otherwise send e.g. 10.96.0.1:443 out of the machine.
docker_user_rules() {
  iptables -w -nL DOCKER-USER >/dev/null 2>&1 || return 0
  local ext rules=() r
  ext=$(ip -4 route show default 2>/dev/null | awk '{for (i = 1; i < NF; i++) if ($i == "dev") {print $(i + 1); exit}}')
  if [ -n "$ext" ]; then
    for r in 10.0.0.0/8 172.16.0.0/12 192.168.0.0/16 100.64.0.0/10; do
      rules+=("-i docker0 -o $ext -d $r -m comment --comment iris-no-private-egress -j REJECT")
      rules+=("-i br-+ -o $ext -d $r -m comment --comment iris-no-private-egress -j REJECT")
    done
  fi
  # remove earlier copies (ours only), then insert in order at the top
  for r in "${rules[@]}"; do
    # shellcheck disable=SC2086 # each rule is a list of arguments
    while iptables -w -D DOCKER-USER $r 2>/dev/null; do :; done
  done
  local i=1
  for r in "${rules[@]}"; do
    # shellcheck disable=SC2086
    iptables -w -I DOCKER-USER "$i" $r
    i=$((i + 1))
  done
}

start() {
  if engine_up; then
    if our_pid >/dev/null; then
      kind_log "Docker engine running (started by docker.sh, pid $(our_pid))"
      install_wrapper
      docker_user_rules
    else
      kind_log "Docker engine already running (not ours): leaving it alone"
      local rt bnd
      rt=$(docker info --format '{{.DefaultRuntime}}' 2>/dev/null || true)
      bnd=$(sed -n 's/^CapBnd:[[:space:]]*//p' /proc/self/status)
      # Bit 24 of the bounding set: CAP_SYS_RESOURCE.
      if [ -n "$bnd" ] && [ $(((0x$bnd >> 24) & 1)) = 0 ]; then
        [ "$rt" = wrap ] || kind_log "warning: this machine lacks CAP_SYS_RESOURCE and the engine's default runtime is '$rt': privileged containers (kind nodes) may fail with 'unable to apply caps'; see e2e/kind/docker.sh"
      fi
    fi
    return 0
  fi
  kind_need_root docker.sh
  command -v dockerd >/dev/null || install_docker
  command -v docker >/dev/null || kind_die "the docker CLI is missing"
  mkdir -p "$IRIS_DOCKER_DIR"
  install_wrapper
  if pid=$(our_pid); then
    kind_log "our dockerd (pid $pid) does not answer; stopping it first"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do [ -d "/proc/$pid" ] || break; sleep 0.2; done
  fi
  # Our own (empty) daemon.json: a /etc/docker/daemon.json that set a runtime would conflict
  # with the flags below.
  [ -f "$IRIS_DOCKER_DIR/daemon.json" ] || echo '{}' >"$IRIS_DOCKER_DIR/daemon.json"
  kind_log "starting dockerd (log: $logfile)"
  local t0=$SECONDS
  setsid nohup dockerd \
    --config-file "$IRIS_DOCKER_DIR/daemon.json" \
    --pidfile "$pidfile" \
    --add-runtime "wrap=$wrapper" --default-runtime wrap \
    --exec-opt native.cgroupdriver=cgroupfs \
    --iptables=true \
    >>"$logfile" 2>&1 </dev/null &
  local launched=$!
  for _ in $(seq 120); do
    engine_up && break
    [ -d "/proc/$launched" ] || { tail -n 30 "$logfile" >&2; kind_die "dockerd exited (log: $logfile)"; }
    sleep 0.5
  done
  engine_up || { tail -n 30 "$logfile" >&2; kind_die "dockerd did not answer within 60 s (log: $logfile)"; }
  docker_user_rules
  kind_log "dockerd up (pid $(our_pid || echo "$launched"), default runtime $(docker info --format '{{.DefaultRuntime}}'), $(docker version --format '{{.Server.Version}}')) in $((SECONDS - t0)) s"
}

stop() {
  local pid
  if ! pid=$(our_pid); then
    kind_log "no dockerd started by docker.sh is running: nothing to stop"
    return 0
  fi
  kind_need_root docker.sh
  kind_log "stopping dockerd (pid $pid)"
  kill "$pid"
  for _ in $(seq 150); do [ -d "/proc/$pid" ] || break; sleep 0.2; done
  if [ -d "/proc/$pid" ]; then kind_log "dockerd still running after 30 s; sending SIGKILL"; kill -9 "$pid" 2>/dev/null || true; fi
  rm -f "$pidfile"
}

status() {
  if engine_up; then
    if pid=$(our_pid); then echo "running: started by e2e/kind/docker.sh (pid $pid, log $logfile)"; else echo "running: not started by e2e/kind/docker.sh"; fi
  else
    echo "not running"
    return 1
  fi
}

case ${1:-start} in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
