#!/usr/bin/env bash
# Smoke test of the running cluster (e2e/cluster/up.sh): an image made by
# e2e/tools/image-archive.sh from Debian's static busybox, loaded with load-images.sh, runs as a
# Pod under the restricted Pod Security profile (non-root 65532, read-only root, no
# capabilities, seccomp RuntimeDefault) behind a Service; then `kubectl port-forward` to the pod
# and to the Service, `kubectl logs`, `kubectl exec`, and a pod that reaches the API server
# through the kubernetes Service (10.0.0.1:443, kube-proxy).
#
# Usage: e2e/cluster/smoke.sh     (as root; KEEP=1 keeps the namespace iris-smoke afterwards)
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=env.sh
. "$cluster_here/env.sh"

t_start=$(now_ns)
ns=iris-smoke
image=iris-operator.local/smoke-busybox:1.35
tmp=$(mktemp -d)
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
  [ "${KEEP:-0}" = 1 ] || kubectl delete namespace "$ns" --wait=false >/dev/null 2>&1 || true
}
trap cleanup EXIT
fail() {
  log "FAILED: $*"
  kubectl -n "$ns" get pods -o wide >&2 || true
  kubectl -n "$ns" get events --sort-by=.lastTimestamp >&2 || true
  exit 1
}

busybox_bin() {
  if ! file -L /bin/busybox 2>/dev/null | grep -q 'statically linked'; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends busybox-static >/dev/null ||
      die "apt-get install busybox-static failed"
  fi
}

make_image() {
  bash "$repo_root/e2e/tools/image-archive.sh" --binary /bin/busybox --name "$image" --out "$tmp/busybox.tar" \
    --user 65532:65532 --entrypoint /busybox
  bash "$cluster_here/load-images.sh" "$tmp/busybox.tar"
}

deploy() {
  kubectl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Namespace
metadata:
  name: $ns
  labels:
    pod-security.kubernetes.io/enforce: restricted
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: $ns
spec:
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 8080
---
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: $ns
  labels: {app: web}
spec:
  terminationGracePeriodSeconds: 1
  securityContext:
    runAsNonRoot: true
    runAsUser: 65532
    runAsGroup: 65532
    seccompProfile: {type: RuntimeDefault}
  containers:
  - name: web
    image: $image
    imagePullPolicy: Never
    command: [/busybox, sh, -c, 'echo iris-smoke-ok > /www/index.html; exec /busybox httpd -f -v -p 8080 -h /www']
    ports: [{containerPort: 8080}]
    readinessProbe:
      tcpSocket: {port: 8080}
      periodSeconds: 1
    securityContext:
      allowPrivilegeEscalation: false
      readOnlyRootFilesystem: true
      capabilities: {drop: [ALL]}
    volumeMounts: [{name: www, mountPath: /www}]
  volumes: [{name: www, emptyDir: {}}]
EOF
}

# A pod that reaches the API server through the kubernetes Service and the web Service by IP.
run_client() {
  local svc_ip
  svc_ip=$(kubectl -n "$ns" get service web -o jsonpath='{.spec.clusterIP}')
  kubectl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: client
  namespace: $ns
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  securityContext:
    runAsNonRoot: true
    runAsUser: 65532
    seccompProfile: {type: RuntimeDefault}
  containers:
  - name: client
    image: $image
    imagePullPolicy: Never
    command:
    - /busybox
    - sh
    - -c
    - |
      set -e
      echo "apiserver healthz via https://\$KUBERNETES_SERVICE_HOST:\$KUBERNETES_SERVICE_PORT: \$(/busybox wget -q -O - --no-check-certificate https://\$KUBERNETES_SERVICE_HOST:\$KUBERNETES_SERVICE_PORT/healthz)"
      echo "web via service $svc_ip:80: \$(/busybox wget -q -O - http://$svc_ip/)"
    securityContext:
      allowPrivilegeEscalation: false
      readOnlyRootFilesystem: true
      capabilities: {drop: [ALL]}
EOF
  kubectl -n "$ns" wait pod/client --for=jsonpath='{.status.phase}'=Succeeded --timeout=60s >/dev/null ||
    { kubectl -n "$ns" logs client >&2 || true; fail "the client pod did not succeed"; }
  kubectl -n "$ns" logs client | tee "$tmp/client.log" >&2
  grep -q 'healthz.*: ok$' "$tmp/client.log" || fail "the pod did not reach the API server at 10.0.0.1:443"
  grep -q 'iris-smoke-ok' "$tmp/client.log" || fail "the pod did not reach the web Service"
}

# port_forward TARGET LOCAL:REMOTE: starts kubectl port-forward and curls through it.
port_forward() {
  local target=$1 ports=$2 out i
  kubectl -n "$ns" port-forward "$target" "$ports" >"$tmp/pf.log" 2>&1 &
  pids+=($!)
  for ((i = 0; i < 100; i++)); do grep -q 'Forwarding from' "$tmp/pf.log" && break; sleep 0.1; done
  out=$(curl -sS --max-time 5 "http://127.0.0.1:${ports%%:*}/") || { cat "$tmp/pf.log" >&2; fail "curl through port-forward $target"; }
  log "port-forward $target $ports -> $out"
  [ "$out" = iris-smoke-ok ] || fail "port-forward $target answered '$out'"
  kill "${pids[-1]}" 2>/dev/null || true
}

step "fresh namespace $ns" kubectl delete namespace "$ns" --ignore-not-found --wait=true --timeout=120s
step "busybox-static" busybox_bin
step "image archive + load" make_image
step "deploy Pod and Service (restricted)" deploy
step "pod Ready" kubectl -n "$ns" wait pod/web --for=condition=Ready --timeout=90s
step "kubectl port-forward pod/web" port_forward pod/web 18080:8080
step "kubectl port-forward svc/web" port_forward svc/web 18081:80
step "kubectl logs" bash -c "kubectl -n $ns logs web | tail -n 3 >&2; kubectl -n $ns logs web | grep -q 'response:200'"
step "kubectl exec" bash -c "[ \"\$(kubectl -n $ns exec web -- /busybox id -u)\" = 65532 ]"
step "pod -> API server (10.0.0.1:443) and -> Service" run_client
log "smoke test passed in $(since "$t_start") s"
echo "1 passed, 0 failed"
