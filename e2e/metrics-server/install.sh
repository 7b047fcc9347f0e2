#!/usr/bin/env bash
# Installs metrics-server (the resource metrics API: `kubectl top`, the CPU autoscaler) in the
# cluster that KUBECONFIG names: builds it from its Go module at the pinned version
# (e2e/tools/build-tools.sh metrics_server, cached), packs it into a FROM scratch image archive
# (e2e/tools/image-archive.sh, cached beside the binary), loads that into the cluster
# ($CLUSTER_DIR/load-images.sh) and applies e2e/metrics-server/metrics-server.yaml.
# Idempotent. Waits until the metrics API answers for the nodes.
# Usage: e2e/metrics-server/install.sh    (after . e2e/select-cluster.sh and . "$CLUSTER_DIR/env.sh")
# METRICS_SERVER_IMAGE=<image> uses that image instead of building one.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=../tools/versions.env
. "$repo/e2e/tools/versions.env"
: "${CLUSTER_DIR:?source e2e/select-cluster.sh first}" "${KUBECONFIG:?source the env.sh of the cluster first}"
step() { printf '[metrics-server] %s\n' "$*" >&2; }
t0=$SECONDS

if [ -n "${METRICS_SERVER_IMAGE:-}" ]; then
  # An image you have (e.g. registry.k8s.io/metrics-server/metrics-server:v0.8.0): used as it
  # is (the nodes pull it, or you load it), nothing built.
  image=$METRICS_SERVER_IMAGE
  step "image $image (METRICS_SERVER_IMAGE): used as it is"
else
  bash "$repo/e2e/tools/build-tools.sh" metrics_server
  image=iris-operator/metrics-server:$METRICS_SERVER_VERSION
  archive=$(dirname "$METRICS_SERVER_BIN")/image.tar
  if [ ! -s "$archive" ] || [ "$archive" -ot "$METRICS_SERVER_BIN/metrics-server" ]; then
    bash "$repo/e2e/tools/image-archive.sh" --binary "$METRICS_SERVER_BIN/metrics-server" --name "$image" \
      --out "$archive.tmp" --user 65534:65534 --port 10250
    mv "$archive.tmp" "$archive"
  fi
  step "image $image: $archive ($(stat -c %s "$archive") bytes)"
  bash "$CLUSTER_DIR/load-images.sh" "$archive" >/dev/null
fi
sed "s|image: IMAGE|image: $image|" "$here/metrics-server.yaml" | kubectl apply -f - >/dev/null
kubectl -n kube-system rollout status deployment/metrics-server --timeout=120s >/dev/null
kubectl wait apiservice/v1beta1.metrics.k8s.io --for=condition=Available --timeout=120s >/dev/null
# The first scrape of the kubelets comes one resolution (15 s) after the start.
for _ in $(seq 60); do
  kubectl get --raw /apis/metrics.k8s.io/v1beta1/nodes 2>/dev/null | grep -q '"usage"' && break
  sleep 1
done
kubectl get --raw /apis/metrics.k8s.io/v1beta1/nodes | grep -q '"usage"' ||
  { step "error: the metrics API does not report node usage after 60 s"; exit 1; }
step "metrics API serving (kubectl top works) after $((SECONDS - t0)) s"
