#!/usr/bin/env bash
# `make up`: cluster, images, the chart, examples/iris-binary.yaml, and one prediction.
# `make images` has run before this (the Makefile's `up` depends on it).
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\n==> %s\n' "$*"; }
# shellcheck source=select-cluster.sh
. e2e/select-cluster.sh
step "Cluster: $CLUSTER ($CLUSTER_DIR/up.sh; tools are built once into ${IRIS_CACHE:-~/.cache/iris-operator})"
bash "$CLUSTER_DIR/up.sh"
# shellcheck source=/dev/null
. "$CLUSTER_DIR/env.sh"
step "Images into the cluster"
bash "$CLUSTER_DIR/load-images.sh" .build/images/model-server.tar .build/images/operator.tar
step "metrics-server (the resource metrics API: kubectl top, CPU autoscaling)"
bash e2e/metrics-server/install.sh
step "helm install iris-operator"
ms=${MODEL_SERVER_IMAGE:?}; op=${OPERATOR_IMAGE:?}
helm upgrade --install iris-operator charts/iris-operator --namespace iris-system --create-namespace \
  --set image.repository="${op%:*}" --set image.tag="${op##*:}" \
  --set modelServer.image.repository="${ms%:*}" --set modelServer.image.tag="${ms##*:}" \
  --wait --timeout 180s
step "kubectl apply -f examples/iris-binary.yaml"
kubectl apply -f examples/iris-binary.yaml
kubectl wait irismodel/iris --for=condition=Ready --timeout=120s
kubectl get irismodels
step "kubectl port-forward service/iris 5001:5001, then a prediction"
log=$(mktemp)
kubectl port-forward service/iris 5001:5001 >"$log" 2>&1 &
pf=$!
trap 'kill $pf 2>/dev/null || true; rm -f "$log"' EXIT
iris_port_forward_wait "$log"
set -x
curl -sS localhost:5001/predict_iris -H 'content-type: application/json' -d '{"features":[5.1,3.5,1.4,0.2]}'
{ set +x; } 2>/dev/null
echo
cat <<EOT

The model is up. To use this cluster from your shell:
  export KUBECONFIG=$KUBECONFIG PATH=$(dirname "$(command -v kubectl)"):\$PATH
  kubectl port-forward service/iris 5001:5001
Remove everything with: make down
EOT
