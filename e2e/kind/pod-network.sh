#!/usr/bin/env bash
# Pod networking across the nodes of a kind cluster of several nodes. The node image has a static
# bridge CNI configuration (no kindnetd offline: see docs/clusters.md) whose host-local range is the
# whole 10.244.0.0/16 on every node, so two nodes would hand out the same pod IPs and no node
# knows the way to another's pods. This gives each node's bridge its own range, the podCIDR the
# controller-manager allocated to it, and routes every other node's podCIDR via that node's IP.
# Idempotent; a single-node cluster is left as it is. Run it again after a node container was
# restarted (`docker start` gives it a new network namespace, without the routes).
#
# Usage: e2e/kind/pod-network.sh        (as root; KIND_CLUSTER_NAME, IRIS_KIND_DIR as for up.sh)
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
kind_path
export KUBECONFIG=$KIND_KUBECONFIG
conf=/etc/cni/net.d/10-iris-bridge.conflist

mapfile -t nodes < <(kind get nodes --name "$KIND_CLUSTER_NAME" | sort)
if [ "${#nodes[@]}" -lt 2 ]; then
  kind_log "pod network: one node, the baked-in bridge range is enough"
  exit 0
fi
declare -A ip cidr
for n in "${nodes[@]}"; do
  ip[$n]=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$n")
  cidr[$n]=$(kubectl get node "$n" -o jsonpath='{.spec.podCIDR}')
  if [ -z "${ip[$n]}" ] || [ -z "${cidr[$n]}" ]; then kind_die "node $n: no IP or podCIDR yet"; fi
done
changed=0
for n in "${nodes[@]}"; do
  want="\"subnet\": \"${cidr[$n]}\""
  if ! docker exec "$n" grep -qF "$want" "$conf"; then
    docker exec "$n" sed -i -E "s#\"subnet\": \"[^\"]*\"#$want#" "$conf"
    changed=1
  fi
  for m in "${nodes[@]}"; do
    [ "$m" = "$n" ] || docker exec "$n" ip route replace "${cidr[$m]}" via "${ip[$m]}"
  done
  kind_log "pod network: $n ${ip[$n]} pods ${cidr[$n]}"
done
if [ "$changed" = 1 ]; then
  # Pods started before the change have addresses from the old range: start them anew.
  kubectl -n kube-system rollout restart deployment/coredns >/dev/null
  kubectl -n kube-system rollout status deployment/coredns --timeout=120s >/dev/null
fi
