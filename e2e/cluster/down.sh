#!/usr/bin/env bash
# `make cluster-down`: stops the cluster that up.sh started and removes all its state.
# Stops only our own processes (by their PID files under the state dir, TERM then KILL), the
# pods through containerd's CRI (so the CNI plugins release their addresses and rules), unmounts
# what is mounted under the state dir, removes our bridge and the iptables chains of kube-proxy,
# kubelet and our CNI network, then the state dir itself.
#
# Usage: e2e/cluster/down.sh     (as root; IRIS_CLUSTER_DIR as for up.sh)
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

t_start=$(now_ns)
[ "$(id -u)" = 0 ] || die "run as root (it stops root processes and changes iptables)"
lock_cluster
if [ ! -d "$S" ]; then
  log "no cluster state at $S: nothing to stop"
  exit 0
fi

crictl_() { "$CRICTL" --config "$CONF/crictl.yaml" --runtime-endpoint "unix://$CTRD_SOCK" --timeout 30s "$@"; }

stop_pods() {
  if ! pid_of containerd >/dev/null || ! ctr_ version >/dev/null 2>&1; then
    log "containerd is not running: no pods to stop through it"
    return
  fi
  if [ -x "$CRICTL" ]; then
    # Stop and remove every pod sandbox: the CNI DEL releases the address and portmap rules.
    crictl_ rmp --all --force >/dev/null 2>&1 || log "crictl rmp reported errors (continuing)"
  fi
  # Whatever is left (e.g. no crictl): kill the tasks and remove the containers.
  local ns id
  for ns in $(ctr_ namespaces ls -q 2>/dev/null); do
    for id in $(ctr_ -n "$ns" tasks ls -q 2>/dev/null); do
      ctr_ -n "$ns" tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
    done
    for id in $(ctr_ -n "$ns" tasks ls -q 2>/dev/null); do
      ctr_ -n "$ns" tasks delete -f "$id" >/dev/null 2>&1 || true
    done
    for id in $(ctr_ -n "$ns" containers ls -q 2>/dev/null); do
      ctr_ -n "$ns" containers delete "$id" >/dev/null 2>&1 || true
    done
  done
}

# The runc shims of our containerd (each started with -address <our socket>): they outlive
# containerd by design, so stop them explicitly once their containers are gone.
our_shims() {
  local pid args
  # The kernel's process name is cut to 15 characters: containerd-shim(-runc-v2).
  for pid in $(pgrep -x containerd-shim 2>/dev/null || true); do
    args=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || continue
    case " $args " in *" -address $CTRD_SOCK "*) printf '%s\n' "$pid" ;; esac
  done
}
stop_shims() {
  local pids n i
  pids=$(our_shims)
  [ -n "$pids" ] || return 0
  n=$(wc -w <<<"$pids")
  # shellcheck disable=SC2086
  kill -TERM $pids 2>/dev/null || true
  for ((i = 0; i < 30; i++)); do
    [ -n "$(our_shims)" ] || break
    sleep 0.1
  done
  pids=$(our_shims)
  # shellcheck disable=SC2086
  [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
  log "stopped $n containerd shim(s)"
}

# Container processes left without their shim (a shim killed from outside, or containerd gone):
# every process in our kubelet's cgroup tree (cgroupRoot $CGROUP_ROOT, ours alone).
cgroup_procs() {
  local d
  for d in /sys/fs/cgroup/*"$CGROUP_ROOT" /sys/fs/cgroup"$CGROUP_ROOT"; do
    [ -d "$d" ] || continue
    find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null
  done | sort -un
}
kill_orphans() {
  local pids i
  pids=$(cgroup_procs)
  [ -n "$pids" ] || return 0
  log "killing $(wc -w <<<"$pids") container process(es) left in $CGROUP_ROOT"
  # shellcheck disable=SC2086
  kill -KILL $pids 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    [ -n "$(cgroup_procs)" ] || break
    sleep 0.1
  done
}

cleanup_kube_proxy() {
  [ -x "$K8S_BIN/kube-proxy" ] || return 0
  "$K8S_BIN/kube-proxy" --cleanup >>"$LOGS/kube-proxy.log" 2>&1 ||
    log "kube-proxy --cleanup reported errors (see $LOGS/kube-proxy.log)"
}

# Mounts under the state dir (kubelet volumes, containerd rootfs/shm, netns), deepest first.
unmount_all() {
  local m n=0
  while read -r m; do
    umount -l "$m" 2>/dev/null || umount -f "$m" 2>/dev/null || log "could not unmount $m"
    n=$((n + 1))
  done < <(findmnt -rn -o TARGET | awk -v s="$S/" 'index($0, s) == 1' | sort -r)
  log "unmounted $n mount(s) under $S"
}

# iptables: the chains our CNI network (bridge ipMasq: comment name "iris"), the kubelet and
# kube-proxy left, and our FORWARD chain.
cleanup_iptables() {
  local ipt rule chain
  for ipt in iptables ip6tables; do
    command -v "$ipt" >/dev/null || continue
    "$ipt" -w -S >/dev/null 2>&1 || continue
    # Bridge plugin masquerade rules of our network: -A POSTROUTING -s 10.88.x.x -m comment
    # --comment "name: \"iris\" id: \"...\"" -j CNI-xxxx
    while read -r rule; do
      chain=$(sed -n 's/.* -j \(CNI-[0-9a-f]*\)\( .*\)\{0,1\}$/\1/p' <<<"$rule")
      eval "$ipt -w -t nat ${rule/-A /-D }" 2>/dev/null || true
      if [ -n "$chain" ]; then
        "$ipt" -w -t nat -F "$chain" 2>/dev/null || true
        "$ipt" -w -t nat -X "$chain" 2>/dev/null || true
      fi
    done < <("$ipt"-save -t nat 2>/dev/null | grep -F -- "name: \\\"$CNI_NETWORK\\\"" | grep '^-A POSTROUTING' || true)
    # Chains the kubelet and kube-proxy create (canaries, hints, the kubelet's localnet
    # firewall), with the jumps to them from the built-in chains.
    local t
    for t in mangle nat filter; do
      for chain in KUBE-FIREWALL KUBE-KUBELET-CANARY KUBE-PROXY-CANARY KUBE-IPTABLES-HINT; do
        "$ipt" -w -t "$t" -S "$chain" >/dev/null 2>&1 || continue
        while read -r rule; do
          eval "$ipt -w -t $t ${rule/-A /-D }" 2>/dev/null || true
        done < <("$ipt" -w -t "$t" -S 2>/dev/null | grep -E -- "^-A [A-Z]+ .*-j $chain( |\$)" || true)
        "$ipt" -w -t "$t" -F "$chain" 2>/dev/null || true
        "$ipt" -w -t "$t" -X "$chain" 2>/dev/null || true
      done
    done
  done
  while iptables -w -D FORWARD -j "$FWD_CHAIN" 2>/dev/null; do :; done
  iptables -w -F "$FWD_CHAIN" 2>/dev/null || true
  iptables -w -X "$FWD_CHAIN" 2>/dev/null || true
}

cleanup_network() {
  if ip link show "$CNI_BRIDGE" >/dev/null 2>&1; then
    ip link delete "$CNI_BRIDGE" && log "removed bridge $CNI_BRIDGE"
  fi
  cleanup_iptables
  # libcni's result cache for our network (containerd uses the default /var/lib/cni/results).
  rm -f /var/lib/cni/results/"$CNI_NETWORK"-* 2>/dev/null || true
  # The kubelet's per-container log links that pointed into our state dir.
  [ ! -d /var/log/containers ] || find /var/log/containers -maxdepth 1 -type l -lname "$S/*" -delete 2>/dev/null || true
  # /var/lib/kubelet/device-plugins, which the kubelet makes at a fixed path, when we made it.
  if [ -e "$S/var-lib-kubelet-ours" ]; then
    rm -rf --one-file-system /var/lib/kubelet/device-plugins
    rmdir /var/lib/kubelet 2>/dev/null || true
  fi
}

# The (now empty) cgroups of our kubelet, deepest first, in each hierarchy.
cleanup_cgroups() {
  local d
  for d in /sys/fs/cgroup/*"$CGROUP_ROOT" /sys/fs/cgroup"$CGROUP_ROOT"; do
    [ -d "$d" ] || continue
    find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    [ ! -d "$d" ] || log "could not remove cgroup $d (processes left in it?)"
  done
}

remove_state() {
  if findmnt -rn -o TARGET | awk -v s="$S/" 'index($0, s) == 1' | grep -q .; then
    findmnt -rn -o TARGET | awk -v s="$S/" 'index($0, s) == 1' >&2
    die "mounts remain under $S (listed above); not removing it"
  fi
  rm -rf --one-file-system "$S"
  log "removed $S"
}

step "stop kubelet" stop_proc kubelet 30
step "stop pods (crictl rmp, ctr)" stop_pods
step "stop kube-proxy" stop_proc kube-proxy
step "kube-proxy --cleanup (iptables rules)" cleanup_kube_proxy
step "stop containerd" stop_proc containerd 30
step "stop containerd shims" stop_shims
step "container processes left over" kill_orphans
for c in kube-scheduler kube-controller-manager kube-apiserver etcd; do
  step "stop $c" stop_proc "$c" 30
done
step "unmount" unmount_all
step "network (bridge, iptables)" cleanup_network
step "cgroups" cleanup_cgroups
step "remove $S" remove_state
log "cluster down in $(since "$t_start") s"
