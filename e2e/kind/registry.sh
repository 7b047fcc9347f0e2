#!/usr/bin/env bash
# Wires a kind cluster to the local registry of e2e/tools/registry.sh, the way kind documents a
# local registry: containerd's registry host configuration (/etc/containerd/certs.d/<host>/
# hosts.toml, read at each pull; the cluster must have been created with containerd's
# config_path, which test-config.sh adds when KIND_REGISTRY=1) and the `local-registry-hosting`
# ConfigMap in kube-public (KEP-1755) that tells tools where to push.
#
# The registry runs on this host, not in a container: the nodes reach it at their Docker
# network's gateway. Two names work in image references:
#   <gateway>:<port>/...   what the nodes pull directly (plain HTTP); pull Secrets for this name
#                          are sent as they are (the e2e path uses it)
#   localhost:<port>/...   the name on this host, mirrored to the gateway inside the nodes
# Usage: e2e/kind/registry.sh            (as root; after up.sh, with the registry running)
# Env:   KIND_CLUSTER_NAME, IRIS_KIND_DIR as for up.sh; REGISTRY_PORT (default 5000)
# Prints REGISTRY_NODE_HOST=<gateway>:<port>.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
kind_need_root registry.sh
kind_path
port=${REGISTRY_PORT:-5000}
export KUBECONFIG=$KIND_KUBECONFIG

network=$(docker inspect -f '{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}' "$KIND_CLUSTER_NAME-control-plane" | awk '{print $1}')
[ -n "$network" ] || kind_die "no node $KIND_CLUSTER_NAME-control-plane (start the cluster first: e2e/kind/up.sh)"
gateway=$(docker network inspect "$network" -f '{{range .IPAM.Config}}{{.Gateway}} {{end}}' | tr ' ' '\n' | grep -E '^[0-9]+(\.[0-9]+){3}$' | head -1)
[ -n "$gateway" ] || kind_die "no IPv4 gateway on Docker network $network"
node_host=$gateway:$port

for node in $(kind get nodes --name "$KIND_CLUSTER_NAME"); do
  docker exec "$node" grep -q 'config_path *= *"/etc/containerd/certs.d"' /etc/containerd/config.toml ||
    kind_die "$node: containerd has no config_path: recreate the cluster with KIND_REGISTRY=1 (e2e/kind/test-config.sh adds it)"
  # The same upstream for both names. containerd 1.6 needs the [host] table ("invalid `host`
  # tree" otherwise), and http:// there for plain HTTP.
  for name in "$node_host" "localhost:$port"; do
    docker exec -i "$node" sh -c "mkdir -p '/etc/containerd/certs.d/$name' && cat >'/etc/containerd/certs.d/$name/hosts.toml'" <<EOF
server = "http://$node_host"

[host."http://$node_host"]
  capabilities = ["pull", "resolve"]
EOF
  done
  kind_log "$node: pulls $node_host and localhost:$port from http://$node_host"
done

kubectl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: ConfigMap
metadata:
  name: local-registry-hosting
  namespace: kube-public
data:
  localRegistryHosting.v1: |
    host: "localhost:$port"
    hostFromContainerRuntime: "$node_host"
    help: "https://kind.sigs.k8s.io/docs/user/local-registry/"
EOF
kind_log "ConfigMap kube-public/local-registry-hosting: host localhost:$port, from the nodes $node_host"
echo "REGISTRY_NODE_HOST=$node_host"
