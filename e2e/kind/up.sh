#!/usr/bin/env bash
# A kind cluster for this project, offline: `kind create cluster` with the user's
# kind-config.yaml (plus the test layer of e2e/kind/test-config.sh) and the node image built
# here. Idempotent: builds kind, starts a Docker engine and builds the node image only when
# needed, and leaves a healthy cluster of that name running as it is.
#
# Usage: e2e/kind/up.sh            (as root)
# Env:   KIND_CLUSTER_NAME  (default iris)      IRIS_KIND_DIR  kubeconfig, test config, logs
#        KIND_USER_CONFIG   (default kind-config.yaml at the repository root)
#        IRIS_CACHE         built tools (default ~/.cache/iris-operator)
#        NODE_IMAGE         a kind node image you have: used instead of building one
# Then:  . e2e/kind/env.sh   (KUBECONFIG, PATH with kind, kubectl and helm)
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
kind_need_root up.sh
t_start=$SECONDS
kind_path
mkdir -p "$IRIS_KIND_DIR"

# kind, kubectl and helm already on PATH at compatible versions are used as they are; with
# NODE_IMAGE (a node image you have) nothing of Kubernetes is built.
tools=()
for t in kind helm; do
  if kind_user_tool "$t"; then kind_log "$t: $(command -v "$t") (yours, compatible): not built"; else tools+=("$t"); fi
done
if [ -n "${NODE_IMAGE:-}" ]; then
  kind_log "node image $NODE_IMAGE (NODE_IMAGE): used as it is, not built"
  kind_user_tool kubectl && kind_log "kubectl: $(command -v kubectl) (yours, compatible): not built" || tools+=(k8s)
else
  tools+=(k8s etcd crictl)
fi
[ ${#tools[@]} = 0 ] || kind_timed "tools (${tools[*]})" bash "$REPO_DIR/e2e/tools/build-tools.sh" "${tools[@]}"
kind_timed "docker engine" bash "$KIND_DIR/docker.sh" start
# kind's known issue "Pod errors due to too many open files": every node's kubelet, kube-proxy
# and containerd take inotify instances, and 128 (this VM's default) runs out with several nodes
# or clusters (kube-proxy crash-loops). Raised to kind's documented values, never lowered.
for kv in fs.inotify.max_user_instances=512 fs.inotify.max_user_watches=524288; do
  key=${kv%=*} want=${kv#*=}
  have=$(sysctl -n "$key" 2>/dev/null || echo "$want")
  if [ "$have" -lt "$want" ]; then
    sysctl -qw "$key=$want" && kind_log "$key: $have -> $want (kind's known issue: too many open files)"
  fi
done
[ -n "${NODE_IMAGE:-}" ] || kind_timed "node image $KIND_NODE_IMAGE" bash "$KIND_DIR/build-node-image.sh"
bash "$KIND_DIR/test-config.sh" "$KIND_USER_CONFIG" "$KIND_TEST_CONFIG" >/dev/null
kind_log "config: $KIND_TEST_CONFIG (from $KIND_USER_CONFIG)"

export KUBECONFIG=$KIND_KUBECONFIG
healthy() {
  [ "$(docker inspect -f '{{.State.Running}}' "$KIND_CLUSTER_NAME-control-plane" 2>/dev/null)" = true ] &&
    kind export kubeconfig --name "$KIND_CLUSTER_NAME" --kubeconfig "$KIND_KUBECONFIG" >/dev/null 2>&1 &&
    kubectl get --raw /readyz >/dev/null 2>&1
}
if kind get clusters 2>/dev/null | grep -qx "$KIND_CLUSTER_NAME"; then
  if healthy; then
    kind_log "kind cluster '$KIND_CLUSTER_NAME' already running: leaving it as it is"
    bash "$KIND_DIR/pod-network.sh"
    kubectl get nodes -o wide
    exit 0
  fi
  kind_log "kind cluster '$KIND_CLUSTER_NAME' exists but does not answer: recreating it"
  kind delete cluster --name "$KIND_CLUSTER_NAME" --kubeconfig "$KIND_KUBECONFIG"
fi

create() {
  rm -rf "$IRIS_KIND_DIR/logs"
  kind create cluster --name "$KIND_CLUSTER_NAME" --config "$KIND_TEST_CONFIG" --image "$KIND_NODE_IMAGE" \
    --kubeconfig "$KIND_KUBECONFIG" --wait 180s --retain 2>&1 | tee "$IRIS_KIND_DIR/create.log" >&2
  local rc=${PIPESTATUS[0]}
  if [ "$rc" -ne 0 ]; then
    # --retain keeps the node for a look at its logs; export them, then remove it.
    kind export logs "$IRIS_KIND_DIR/logs" --name "$KIND_CLUSTER_NAME" >/dev/null 2>&1 || true
    kind delete cluster --name "$KIND_CLUSTER_NAME" --kubeconfig "$KIND_KUBECONFIG" >/dev/null 2>&1 || true
    kind_log "kind create cluster failed; node logs in $IRIS_KIND_DIR/logs"
    return "$rc"
  fi
}
kind_timed "kind create cluster --name $KIND_CLUSTER_NAME" create
ready() {
  kubectl wait node --all --for=condition=Ready --timeout=180s >/dev/null &&
    kubectl -n kube-system rollout status deployment/coredns --timeout=180s >/dev/null &&
    kubectl -n kube-system rollout status daemonset/kube-proxy --timeout=180s >/dev/null
}
kind_timed "node Ready, coredns and kube-proxy running" ready
kind_timed "pod network across the nodes" bash "$KIND_DIR/pod-network.sh"
kubectl get nodes -o wide
kind_log "kind cluster '$KIND_CLUSTER_NAME' up in $((SECONDS - t_start)) s; KUBECONFIG=$KIND_KUBECONFIG (or: . e2e/kind/env.sh)"
