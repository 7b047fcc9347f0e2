# Shared by up.sh, down.sh and load-images.sh (sourced, not run): where the cluster's state
# lives, and helpers to time steps and to start, find and stop the processes the cluster runs.
# shellcheck shell=bash disable=SC2034

cluster_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$cluster_here/../.." && pwd)
# shellcheck source=../tools/versions.env
. "$repo_root/e2e/tools/versions.env"

# Everything the cluster writes is under this one directory (down.sh removes it).
S=${IRIS_CLUSTER_DIR:-/var/lib/iris-operator/cluster}
case $S in /*) ;; *) S=$(pwd)/$S ;; esac
S=${S%/}
if [ -z "$S" ] || [ "$S" = / ]; then echo "IRIS_CLUSTER_DIR must not be /" >&2; exit 1; fi
PKI=$S/pki
LOGS=$S/logs
PIDS=$S/pids
CONF=$S/config
ETCD_DATA=$S/etcd
CTRD_DIR=$S/containerd
CTRD_SOCK=$CTRD_DIR/containerd.sock
KUBELET_DIR=$S/kubelet
POD_LOGS=$S/pod-logs
CNI_CONF_DIR=$S/cni/net.d
CNI_IPAM_DIR=$S/cni/networks
CNI_BIN_DIR=/usr/lib/cni
ADMIN_KUBECONFIG=$S/kubeconfig

API_PORT=6443
SERVICE_CIDR=10.0.0.0/24
API_SERVICE_IP=10.0.0.1
DNS_SERVICE_IP=10.0.0.10
POD_CIDR=10.88.0.0/16
POD_GATEWAY=10.88.0.1
CNI_NETWORK=iris
# Not cni0: a name of our own, so another CNI bridge on this host is never touched.
CNI_BRIDGE=iris-cni0
# Our own FORWARD-accept chain for the bridge (in case the host's FORWARD policy is DROP).
FWD_CHAIN=IRIS-CNI-FORWARD
PAUSE_IMAGE=iris-operator.local/pause:3.10
# The kubelet's cgroupRoot: pods live in <hierarchy>/iris-operator/kubepods/...
CGROUP_ROOT=/iris-operator

KUBECTL=$K8S_BIN/kubectl
CRICTL=$CRICTL_BIN/crictl

script_name=$(basename "$0" .sh)
log() { printf '[%s] %s\n' "$script_name" "$*" >&2; }
die() { printf '[%s] error: %s\n' "$script_name" "$*" >&2; exit 1; }

now_ns() { date +%s%N; }
# Seconds since a now_ns stamp, one decimal.
since() { local d=$((($(now_ns) - $1) / 100000000)); printf '%d.%d' $((d / 10)) $((d % 10)); }
# step "what" command...: runs the command and prints how long it took.
step() {
  local what=$1 t0
  shift
  t0=$(now_ns)
  log "$what ..."
  "$@"
  log "$what: done in $(since "$t0") s"
}

# Tail of a component's log, for error messages.
show_log() {
  local f=$LOGS/$1.log
  [ -f "$f" ] || return 0
  printf -- '----- last lines of %s -----\n' "$f" >&2
  tail -n "${2:-25}" "$f" >&2
  printf -- '-----\n' >&2
}

# PID files: $PIDS/NAME.pid holds "pid", "exe path" and a hash of what the process was
# started with (binary, arguments, config files), so an unchanged component is left running.
_exe_of() { local e; e=$(readlink "/proc/$1/exe" 2>/dev/null) || return 1; printf '%s' "${e% (deleted)}"; }
# pid_of NAME: prints the pid of our running NAME, or fails.
pid_of() {
  local f=$PIDS/$1.pid pid exe
  [ -f "$f" ] || return 1
  { read -r pid && read -r exe; } <"$f" || return 1
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [ "$(_exe_of "$pid")" = "$exe" ] || return 1
  # A zombie (exited, not yet reaped) does not count as running.
  [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ] || return 1
  printf '%s' "$pid"
}
spec_of() { sed -n 3p "$PIDS/$1.pid" 2>/dev/null; }

# start_proc NAME SPEC BIN ARGS...: starts BIN in its own session, output to $LOGS/NAME.log.
start_proc() {
  local name=$1 spec=$2 bin=$3 exe pid="" i
  shift 3
  exe=$(readlink -f "$bin")
  [ -x "$exe" ] || die "$name: $bin is not an executable"
  mkdir -p "$LOGS" "$PIDS"
  rm -f "$PIDS/$name.pid" "$PIDS/$name.pid.tmp"
  printf '\n===== %s: starting %s %s\n' "$(date -u +%FT%TZ)" "$exe" "$*" >>"$LOGS/$name.log"
  # The inner bash writes its own pid, then execs the program (same pid). setsid: a session of
  # its own, so the process outlives this script and its terminal or CI job.
  # shellcheck disable=SC2016
  # fds 8 and 9 (the cluster and tool-build locks) are closed: a daemon must not hold them.
  setsid bash -c 'echo $$ >"$0.tmp"; exec "$@"' "$PIDS/$name.pid" "$exe" "$@" \
    >>"$LOGS/$name.log" 2>&1 </dev/null 8>&- 9>&- &
  for ((i = 0; i < 100; i++)); do
    [ -s "$PIDS/$name.pid.tmp" ] && pid=$(cat "$PIDS/$name.pid.tmp") && break
    sleep 0.05
  done
  [ -n "$pid" ] || die "$name did not start; see $LOGS/$name.log"
  printf '%s\n%s\n%s\n' "$pid" "$exe" "$spec" >"$PIDS/$name.pid"
  rm -f "$PIDS/$name.pid.tmp"
}

# stop_proc NAME [TIMEOUT]: TERM, then KILL after TIMEOUT seconds; only our own process.
stop_proc() {
  local name=$1 timeout=${2:-20} pid i
  if ! pid=$(pid_of "$name"); then
    rm -f "$PIDS/$name.pid"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < timeout * 10; i++)); do
    _exe_of "$pid" >/dev/null || break
    sleep 0.1
  done
  if _exe_of "$pid" >/dev/null; then
    log "$name (pid $pid) did not stop within ${timeout} s of SIGTERM: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
  fi
  rm -f "$PIDS/$name.pid"
  log "stopped $name (pid $pid)"
}

# wait_until NAME WHAT TIMEOUT COMMAND...: polls COMMAND; fails with the tail of NAME's log when
# NAME's process dies or TIMEOUT seconds pass.
wait_until() {
  local name=$1 what=$2 timeout=$3 t0
  shift 3
  t0=$SECONDS
  until "$@" >/dev/null 2>&1; do
    if [ -f "$PIDS/$name.pid" ] && ! pid_of "$name" >/dev/null; then
      show_log "$name" 40
      die "$name exited while waiting for: $what; see $LOGS/$name.log"
    fi
    if ((SECONDS - t0 >= timeout)); then
      show_log "$name" 40
      die "timed out after ${timeout} s waiting for: $what; see $LOGS/$name.log"
    fi
    sleep 0.3
  done
}

# One up.sh or down.sh at a time per state dir (the lock file sits beside it, as down.sh
# removes the dir). A down.sh run by up.sh inherits the lock.
lock_cluster() {
  [ -z "${IRIS_CLUSTER_LOCKED:-}" ] || return 0
  mkdir -p "$(dirname "$S")"
  exec 8>"$S.lock"
  if ! flock -n 8; then
    log "waiting for another up.sh/down.sh on $S ($S.lock)"
    flock 8
  fi
  export IRIS_CLUSTER_LOCKED=1
}

kc() { "$KUBECTL" --kubeconfig "$ADMIN_KUBECONFIG" "$@"; }
ctr_() { ctr --address "$CTRD_SOCK" "$@"; }
