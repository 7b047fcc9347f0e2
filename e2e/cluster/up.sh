#!/usr/bin/env bash
# `make cluster-up`: a single-node Kubernetes cluster as host processes, offline (like
# Kubernetes' hack/local-up-cluster.sh): etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, a containerd of our own, kubelet, kube-proxy, a CNI bridge network and a
# locally built pause image. Idempotent: what already runs unchanged is left running.
#
# Usage: e2e/cluster/up.sh            (as root)
# Env:   IRIS_CLUSTER_DIR  all state: certs, etcd data, logs, pids, containerd, kubelet
#                          (default /var/lib/iris-operator/cluster)
#        IRIS_CACHE        built tools (default ~/.cache/iris-operator)
#        IRIS_NODE_NAME    node name (default: the host name, lower case)
#        IRIS_NODE_IP      the address the API server advertises (default: the host's primary IPv4)
#        IRIS_RUNC         the OCI runtime binary containerd runs (default: runc on PATH)
# Then:  . e2e/cluster/env.sh   (KUBECONFIG, PATH with kubectl/helm/crictl, CONTAINERD_ADDRESS)
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

t_start=$(now_ns)
[ "$(id -u)" = 0 ] || die "run as root: the cluster runs containerd and kubelet and sets up iptables and a bridge"
lock_cluster

# ---------------------------------------------------------------------------------------------
# Tools and host packages

build_tools() { bash "$repo_root/e2e/tools/build-tools.sh" k8s etcd helm crictl; }

ensure_packages() {
  local need=() c
  for c in containerd runc iptables conntrack openssl curl; do command -v "$c" >/dev/null || need+=("$c"); done
  command -v ctr >/dev/null || need+=(containerd)
  for c in bridge host-local portmap loopback; do
    [ -x "$CNI_BIN_DIR/$c" ] || { need+=(containernetworking-plugins); break; }
  done
  command -v ip >/dev/null && command -v ss >/dev/null || need+=(iproute2)
  command -v findmnt >/dev/null && command -v setsid >/dev/null && command -v flock >/dev/null || need+=(util-linux)
  if ! pause_cached; then
    command -v gcc >/dev/null || need+=(gcc)
    [ -f /usr/lib/x86_64-linux-gnu/libc.a ] || need+=(libc6-dev)
  fi
  if [ ${#need[@]} -eq 0 ]; then log "host packages: all present"; return; fi
  mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
  log "installing Debian packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${need[@]}" >"/tmp/iris-cluster-apt.log" 2>&1 || {
    log "apt-get install failed; running apt-get update and trying again"
    apt-get update >>"/tmp/iris-cluster-apt.log" 2>&1 &&
      apt-get install -y --no-install-recommends "${need[@]}" >>"/tmp/iris-cluster-apt.log" 2>&1
  } || { tail -n 20 /tmp/iris-cluster-apt.log >&2; die "apt-get install ${need[*]} failed; see /tmp/iris-cluster-apt.log"; }
}

# ---------------------------------------------------------------------------------------------
# Host facts and setup

host_ip() {
  if [ -n "${IRIS_NODE_IP:-}" ]; then printf '%s' "$IRIS_NODE_IP"; return; fi
  local dev ip=""
  dev=$(ip -4 route show default 2>/dev/null | awk '{for (i = 1; i < NF; i++) if ($i == "dev") {print $(i + 1); exit}}')
  [ -z "$dev" ] || ip=$(ip -4 -o addr show dev "$dev" scope global | awk '{split($4, a, "/"); print a[1]; exit}')
  [ -n "$ip" ] || ip=$(ip -4 -o addr show scope global | awk '$2 != "'"$CNI_BRIDGE"'" {split($4, a, "/"); print a[1]; exit}')
  [ -n "$ip" ] || die "no global IPv4 address on this host for the API server to advertise; set IRIS_NODE_IP"
  printf '%s' "$ip"
}

node_name() {
  local n=${IRIS_NODE_NAME:-$(hostname | tr '[:upper:]' '[:lower:]')}
  [[ $n =~ ^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$ ]] || n=iris-node
  printf '%s' "$n"
}

host_setup() {
  mkdir -p "$S" "$PKI" "$LOGS" "$PIDS" "$CONF" "$ETCD_DATA" "$CTRD_DIR" "$KUBELET_DIR" "$POD_LOGS" \
    "$CNI_CONF_DIR" "$CNI_IPAM_DIR"
  chmod 700 "$PKI" "$ETCD_DATA"
  # Bridged pod traffic must pass iptables (Services between pods on the bridge), and the host
  # routes pod traffic.
  [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ] || modprobe br_netfilter 2>/dev/null || true
  [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ] ||
    die "the kernel has no br_netfilter (/proc/sys/net/bridge/bridge-nf-call-iptables missing)"
  echo 1 >/proc/sys/net/bridge/bridge-nf-call-iptables
  [ ! -e /proc/sys/net/bridge/bridge-nf-call-ip6tables ] || echo 1 >/proc/sys/net/bridge/bridge-nf-call-ip6tables
  echo 1 >/proc/sys/net/ipv4/ip_forward
  # Accept forwarded traffic from and to the pod bridge even if the FORWARD policy is DROP
  # (as Docker sets it). down.sh removes the chain.
  iptables -w -N "$FWD_CHAIN" 2>/dev/null || true
  iptables -w -C FORWARD -j "$FWD_CHAIN" 2>/dev/null || iptables -w -I FORWARD -j "$FWD_CHAIN"
  iptables -w -C "$FWD_CHAIN" -i "$CNI_BRIDGE" -j ACCEPT 2>/dev/null || iptables -w -A "$FWD_CHAIN" -i "$CNI_BRIDGE" -j ACCEPT
  iptables -w -C "$FWD_CHAIN" -o "$CNI_BRIDGE" -j ACCEPT 2>/dev/null || iptables -w -A "$FWD_CHAIN" -o "$CNI_BRIDGE" -j ACCEPT
}

# Fails when a port we need is taken by a process that is not our component.
check_port() {
  local name=$1 port=$2
  pid_of "$name" >/dev/null && return 0
  if ss -Htln "sport = :$port" | grep -q .; then
    ss -Htlnp "sport = :$port" >&2 || true
    die "port $port (for $name) is already in use by another process; stop it, or run down.sh if it is a cluster left from an earlier run"
  fi
}

# ---------------------------------------------------------------------------------------------
# Certificates (openssl): one cluster CA for the API server, the kubelet and all clients; a
# front-proxy (request-header) CA; a service-account RSA key.

openssl_cnf() { printf '[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = unused\n'; }

new_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; chmod 600 "$1"; }

# new_ca NAME CN
new_ca() {
  local n=$1 cn=$2
  new_key "$PKI/$n.key"
  openssl req -x509 -new -key "$PKI/$n.key" -out "$PKI/$n.crt" -days 3650 -subj "/CN=$cn" -extensions v3_ca \
    -config <(openssl_cnf; printf '[v3_ca]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,digitalSignature,keyEncipherment,keyCertSign\nsubjectKeyIdentifier = hash\n')
}

# new_cert NAME CA SUBJECT USAGE [SAN]: USAGE is serverAuth, clientAuth or both.
new_cert() {
  local n=$1 ca=$2 subj=$3 usage=$4 san=${5:-}
  new_key "$PKI/$n.key"
  openssl req -new -key "$PKI/$n.key" -out "$PKI/$n.csr" -subj "$subj" -config <(openssl_cnf)
  {
    printf '[ext]\nbasicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature,keyEncipherment\n'
    printf 'extendedKeyUsage = %s\nauthorityKeyIdentifier = keyid\n' "$usage"
    [ -z "$san" ] || printf 'subjectAltName = %s\n' "$san"
  } >"$PKI/$n.ext"
  openssl x509 -req -in "$PKI/$n.csr" -CA "$PKI/$ca.crt" -CAkey "$PKI/$ca.key" -set_serial "0x$(openssl rand -hex 16)" \
    -days 365 -out "$PKI/$n.crt" -extfile "$PKI/$n.ext" -extensions ext 2>/dev/null
  rm -f "$PKI/$n.csr" "$PKI/$n.ext"
}

gen_pki() {
  # The certificates name the node and its address: regenerate all when either changes.
  local params="node=$NODE ip=$NODE_IP"
  if [ -f "$PKI/params" ] && [ "$(cat "$PKI/params")" = "$params" ] && [ -f "$PKI/sa.pub" ]; then
    log "certificates: present ($PKI)"
    return
  fi
  rm -rf "${PKI:?}"/*
  new_ca ca iris-operator-cluster-ca
  new_ca front-proxy-ca iris-operator-front-proxy-ca
  new_cert apiserver ca "/CN=kube-apiserver" serverAuth \
    "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,DNS:$NODE,IP:127.0.0.1,IP:$NODE_IP,IP:$API_SERVICE_IP"
  new_cert apiserver-kubelet-client ca "/CN=kube-apiserver-kubelet-client" clientAuth
  new_cert front-proxy-client front-proxy-ca "/CN=front-proxy-client" clientAuth
  new_cert admin ca "/O=system:masters/CN=iris-operator-admin" clientAuth
  new_cert kube-controller-manager ca "/CN=system:kube-controller-manager" clientAuth
  new_cert kube-scheduler ca "/CN=system:kube-scheduler" clientAuth
  new_cert kubelet ca "/O=system:nodes/CN=system:node:$NODE" clientAuth
  new_cert kubelet-serving ca "/CN=$NODE" serverAuth "DNS:$NODE,DNS:localhost,IP:$NODE_IP,IP:127.0.0.1"
  new_cert kube-proxy ca "/CN=system:kube-proxy" clientAuth
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$PKI/sa.key" 2>/dev/null
  openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub"
  chmod 600 "$PKI"/*.key
  printf '%s' "$params" >"$PKI/params"
}

# kubeconfig FILE USER CERTNAME
kubeconfig() {
  cat >"$1.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: iris-operator
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $(base64 -w0 "$PKI/$3.crt")
    client-key-data: $(base64 -w0 "$PKI/$3.key")
contexts:
- name: iris-operator
  context:
    cluster: iris-operator
    user: $2
current-context: iris-operator
EOF
  chmod 600 "$1.tmp"
  if cmp -s "$1.tmp" "$1"; then rm -f "$1.tmp"; else mv "$1.tmp" "$1"; fi
}

# write_file PATH: stdin to PATH, rewritten only when the content changed (keeps the mtime).
write_file() {
  cat >"$1.tmp"
  if cmp -s "$1.tmp" "$1"; then rm -f "$1.tmp"; else mv "$1.tmp" "$1"; fi
}

# ---------------------------------------------------------------------------------------------
# Configuration files

write_configs() {
  kubeconfig "$ADMIN_KUBECONFIG" iris-operator-admin admin
  kubeconfig "$CONF/kube-controller-manager.kubeconfig" system:kube-controller-manager kube-controller-manager
  kubeconfig "$CONF/kube-scheduler.kubeconfig" system:kube-scheduler kube-scheduler
  kubeconfig "$CONF/kubelet.kubeconfig" "system:node:$NODE" kubelet
  kubeconfig "$CONF/kube-proxy.kubeconfig" system:kube-proxy kube-proxy

  local runc_binary=""
  [ -z "${IRIS_RUNC:-}" ] || runc_binary=$'\n'"        BinaryName = \"$IRIS_RUNC\""
  # containerd of our own: root, state, socket and CNI config under the state dir, so it never
  # meets a system containerd. runc with cgroupfs (no systemd here), like the kubelet.
  write_file "$CONF/containerd.toml" <<EOF
version = 2
root = "$CTRD_DIR/root"
state = "$CTRD_DIR/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "$CTRD_SOCK"

[ttrpc]
  address = "$CTRD_SOCK.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$CTRD_DIR/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  netns_mounts_under_state_dir = true
  # This VM's capability bounding set lacks CAP_SYS_RESOURCE, so no process may lower its
  # oom_score_adj (runc fails "failed to update /proc/self/oom_score_adj: Permission denied"
  # for the sandbox's -998): keep containers' scores no lower than containerd's own.
  restrict_oom_score_adj = true
  enable_selinux = false
  max_container_log_line_size = 16384
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false$runc_binary
        Root = "$CTRD_DIR/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN_DIR"
    conf_dir = "$CNI_CONF_DIR"
    max_conf_num = 1
EOF

  write_file "$CONF/crictl.yaml" <<EOF
runtime-endpoint: unix://$CTRD_SOCK
image-endpoint: unix://$CTRD_SOCK
timeout: 30
EOF

  # The pod network: a bridge with host-local addresses; portmap for hostPort. containerd adds
  # the loopback plugin for each pod's lo itself (its CNI library loads it with the network).
  write_file "$CNI_CONF_DIR/10-$CNI_NETWORK.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "$CNI_NETWORK",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$CNI_BRIDGE",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$POD_GATEWAY"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$CNI_IPAM_DIR"
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF

  write_file "$CONF/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 0.0.0.0
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: $PKI/ca.crt
authorization:
  mode: Webhook
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
serverTLSBootstrap: false
rotateCertificates: false
cgroupDriver: cgroupfs
cgroupsPerQOS: true
# Pods go under /iris-operator/kubepods in each cgroup hierarchy: ours alone, so down.sh can
# find every container process of this cluster even when containerd is gone.
cgroupRoot: $CGROUP_ROOT
enforceNodeAllocatable: [pods]
containerRuntimeEndpoint: unix://$CTRD_SOCK
failSwapOn: false
clusterDNS: [$DNS_SERVICE_IP]
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
podLogsDir: $POD_LOGS
maxPods: 110
# A full-ish disk must not evict the test pods, and the images we import (never pullable
# here) must not be garbage-collected.
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
EOF

  write_file "$CONF/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clusterCIDR: $POD_CIDR
hostnameOverride: $NODE
bindAddress: 0.0.0.0
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
clientConnection:
  kubeconfig: $CONF/kube-proxy.kubeconfig
iptables:
  localhostNodePorts: false
  minSyncPeriod: 1s
# Leave the host's conntrack sysctls as they are.
conntrack:
  maxPerCore: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
EOF

  write_file "$CONF/rbac.yaml" <<EOF
# The API server reaches the kubelet (logs, exec, port-forward, stats) as this user.
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: system:kube-apiserver-to-kubelet
  labels:
    kubernetes.io/bootstrapping: rbac-defaults
rules:
- apiGroups: [""]
  resources: [nodes/proxy, nodes/stats, nodes/log, nodes/spec, nodes/metrics, nodes/healthz, nodes/pods, nodes/checkpoint, nodes/configz]
  verbs: ["*"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: system:kube-apiserver-to-kubelet
  labels:
    kubernetes.io/bootstrapping: rbac-defaults
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: system:kube-apiserver-to-kubelet
subjects:
- apiGroup: rbac.authorization.k8s.io
  kind: User
  name: kube-apiserver-kubelet-client
EOF
}

# ---------------------------------------------------------------------------------------------
# The pause image: our pause.c, static, in a FROM-scratch image archive (cached by source hash).

pause_dir() { printf '%s/pause-%s' "$IRIS_CACHE" "$(sha256sum "$cluster_here/pause/pause.c" | cut -c1-12)"; }
pause_cached() { [ -f "$(pause_dir)/pause.tar" ]; }
build_pause() {
  local d
  d=$(pause_dir)
  if pause_cached; then log "pause image: cached in $d"; return; fi
  mkdir -p "$d"
  gcc -Os -static -Wall -Wextra -o "$d/pause" "$cluster_here/pause/pause.c" ||
    die "gcc -static failed building the pause binary (needs gcc and libc6-dev)"
  strip "$d/pause"
  bash "$repo_root/e2e/tools/image-archive.sh" --binary "$d/pause" --name "$PAUSE_IMAGE" --out "$d/pause.tar.tmp" \
    --user 65535:65535 --entrypoint /pause
  mv "$d/pause.tar.tmp" "$d/pause.tar"
}

import_pause() {
  local out
  out=$(ctr_ -n k8s.io images import "$(pause_dir)/pause.tar" 2>&1) ||
    { printf '%s\n' "$out" >&2; die "importing the pause image into containerd failed; see $LOGS/containerd.log"; }
  # Pinned: the kubelet's image garbage collection never removes it.
  ctr_ -n k8s.io images label "$PAUSE_IMAGE" io.cri-containerd.pinned=pinned >/dev/null ||
    die "labelling $PAUSE_IMAGE pinned failed; see $LOGS/containerd.log"
}

# ---------------------------------------------------------------------------------------------
# Components

# ensure NAME BIN ARGS...: starts NAME unless it already runs with the same binary, arguments
# and config files (restarts it when one of them changed).
ensure() {
  local name=$1 bin=$2 spec
  shift 2
  spec=$( { readlink -f "$bin"; printf '%s\n' "$@"; for f in "${comp_files[@]}"; do cat "$f"; done; } | sha256sum | cut -c1-16)
  if pid_of "$name" >/dev/null; then
    if [ "$(spec_of "$name")" = "$spec" ]; then
      log "$name: already running (pid $(pid_of "$name"))"
      return
    fi
    log "$name: configuration changed, restarting"
    stop_proc "$name"
  fi
  start_proc "$name" "$spec" "$bin" "$@"
  log "$name: started (pid $(pid_of "$name" || echo ?), log $LOGS/$name.log)"
}

start_etcd() {
  check_port etcd 2379
  comp_files=()
  ensure etcd "$ETCD_BIN/etcd" --name iris --data-dir "$ETCD_DATA" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster iris=http://127.0.0.1:2380 --listen-metrics-urls http://127.0.0.1:2381 \
    --unsafe-no-fsync --log-level warn
}

start_containerd() {
  comp_files=("$CONF/containerd.toml")
  ensure containerd "$(command -v containerd)" --config "$CONF/containerd.toml"
}

start_apiserver() {
  check_port kube-apiserver "$API_PORT"
  comp_files=("$PKI/apiserver.crt" "$PKI/sa.pub")
  ensure kube-apiserver "$K8S_BIN/kube-apiserver" \
    --etcd-servers=http://127.0.0.1:2379 \
    --bind-address=0.0.0.0 --secure-port="$API_PORT" --advertise-address="$NODE_IP" \
    --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" \
    --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority="$PKI/ca.crt" --kubelet-preferred-address-types=InternalIP,Hostname \
    --requestheader-client-ca-file="$PKI/front-proxy-ca.crt" --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="$PKI/front-proxy-client.crt" --proxy-client-key-file="$PKI/front-proxy-client.key" \
    --service-account-issuer=https://kubernetes.default.svc \
    --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
    --allow-privileged=true
}

start_controller_manager() {
  comp_files=("$CONF/kube-controller-manager.kubeconfig")
  ensure kube-controller-manager "$K8S_BIN/kube-controller-manager" \
    --kubeconfig="$CONF/kube-controller-manager.kubeconfig" \
    --authentication-kubeconfig="$CONF/kube-controller-manager.kubeconfig" \
    --authorization-kubeconfig="$CONF/kube-controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --leader-elect=false --use-service-account-credentials=true \
    --controllers='*,bootstrapsigner,tokencleaner' \
    --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
    --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" --cluster-cidr="$POD_CIDR" --allocate-node-cidrs=false \
    --cluster-name=iris-operator
}

start_scheduler() {
  comp_files=("$CONF/kube-scheduler.kubeconfig")
  ensure kube-scheduler "$K8S_BIN/kube-scheduler" \
    --kubeconfig="$CONF/kube-scheduler.kubeconfig" \
    --authentication-kubeconfig="$CONF/kube-scheduler.kubeconfig" \
    --authorization-kubeconfig="$CONF/kube-scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --leader-elect=false
}

# The kubelet's cgroupRoot must exist in every hierarchy it uses (cgroup v1: one per
# controller, named ones too; cgroup v2: the unified root).
ensure_cgroup_root() {
  local h f
  if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    mkdir -p "/sys/fs/cgroup$CGROUP_ROOT"
    return
  fi
  for h in /sys/fs/cgroup/*; do
    if [ ! -f "$h/cgroup.procs" ] || [ "$h" = /sys/fs/cgroup/unified ]; then continue; fi
    mkdir -p "$h$CGROUP_ROOT"
    # A new cpuset cgroup starts with no CPUs and memory nodes: take the parent's.
    for f in cpuset.cpus cpuset.mems; do
      if [ -f "$h$CGROUP_ROOT/$f" ] && [ -z "$(cat "$h$CGROUP_ROOT/$f")" ]; then
        cat "$h/$f" >"$h$CGROUP_ROOT/$f"
      fi
    done
  done
}

start_kubelet() {
  ensure_cgroup_root
  check_port kubelet 10250
  # The kubelet always makes /var/lib/kubelet/device-plugins (a fixed path); down.sh removes
  # /var/lib/kubelet only when it was not there before the first start.
  [ -e /var/lib/kubelet ] || [ -e "$S/var-lib-kubelet-ours" ] || touch "$S/var-lib-kubelet-ours"
  comp_files=("$CONF/kubelet.yaml" "$CONF/kubelet.kubeconfig" "$PKI/kubelet-serving.crt")
  ensure kubelet "$K8S_BIN/kubelet" --config="$CONF/kubelet.yaml" --kubeconfig="$CONF/kubelet.kubeconfig" \
    --root-dir="$KUBELET_DIR" --hostname-override="$NODE" --node-ip="$NODE_IP" --v=1
}

start_kube_proxy() {
  comp_files=("$CONF/kube-proxy.yaml" "$CONF/kube-proxy.kubeconfig")
  ensure kube-proxy "$K8S_BIN/kube-proxy" --config="$CONF/kube-proxy.yaml"
}

# ---------------------------------------------------------------------------------------------
# Readiness checks

curl_admin() { curl -sf --max-time 3 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" "$@"; }
etcd_healthy() { curl -sf --max-time 2 http://127.0.0.1:2379/health | grep -q '"health":"true"'; }
apiserver_ready() { [ "$(curl_admin "https://127.0.0.1:$API_PORT/readyz")" = ok ]; }
containerd_up() { ctr_ version; }
healthz() { curl -skf --max-time 2 -o /dev/null "$1"; }
node_ready() {
  [ "$(kc get node "$NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]
}
default_sa() { kc -n default get serviceaccount default; }
apply_rbac() { kc apply -f "$CONF/rbac.yaml" >/dev/null; }

wait_control_plane() {
  wait_until kube-controller-manager "kube-controller-manager /healthz" 60 healthz https://127.0.0.1:10257/healthz
  wait_until kube-scheduler "kube-scheduler /healthz" 60 healthz https://127.0.0.1:10259/healthz
}

# ---------------------------------------------------------------------------------------------

log "state dir $S"

# State left by a cluster whose processes are all gone (a reboot, or a session that ended):
# start afresh rather than revive it half-way.
if [ -d "$PIDS" ]; then
  alive=0
  for f in "$PIDS"/*.pid; do
    [ -e "$f" ] || continue
    pid_of "$(basename "$f" .pid)" >/dev/null && alive=$((alive + 1))
  done
  if [ "$alive" = 0 ]; then
    log "found the state of a cluster none of whose processes runs: removing it first (down.sh)"
    step "clean up the stale cluster" bash "$cluster_here/down.sh"
  fi
fi

step "tools (e2e/tools/build-tools.sh)" build_tools
step "host packages" ensure_packages
NODE=$(node_name)
NODE_IP=$(host_ip)
log "node $NODE, address $NODE_IP"
step "host setup (dirs, sysctls, FORWARD chain)" host_setup
step "certificates" gen_pki
step "config files" write_configs
step "pause image ($PAUSE_IMAGE)" build_pause

t_comp=$(now_ns)
start_etcd
start_containerd
step "etcd healthy" wait_until etcd "etcd /health on 127.0.0.1:2379" 60 etcd_healthy
start_apiserver
step "kube-apiserver /readyz" wait_until kube-apiserver "kube-apiserver /readyz" 120 apiserver_ready
step "RBAC for the API server to reach the kubelet" apply_rbac
start_controller_manager
start_scheduler
step "containerd answers" wait_until containerd "containerd on $CTRD_SOCK" 60 containerd_up
step "import pause image" import_pause
start_kubelet
start_kube_proxy
step "controller-manager and scheduler healthy" wait_control_plane
step "kubelet /healthz" wait_until kubelet "kubelet /healthz on 127.0.0.1:10248" 60 healthz http://127.0.0.1:10248/healthz
step "kube-proxy /healthz" wait_until kube-proxy "kube-proxy /healthz on 127.0.0.1:10256" 60 healthz http://127.0.0.1:10256/healthz
step "node $NODE Ready" wait_until kubelet "node $NODE Ready" 120 node_ready
step "default ServiceAccount" wait_until kube-controller-manager "ServiceAccount default/default" 60 default_sa
log "components up in $(since "$t_comp") s"

kc get nodes -o wide >&2
printf 'cluster ready in %s s; export KUBECONFIG=%s\n' "$(since "$t_start")" "$ADMIN_KUBECONFIG"
