#!/usr/bin/env bash
# Checks a running cluster the way the end-to-end suite will use it, in a namespace of its own
# that enforces the `restricted` Pod Security Standard:
#   - an image from an archive (busybox from Debian's busybox-static, FROM scratch, written by
#     e2e/tools/image-archive.sh) is loaded with the cluster's load-images.sh and runs as a
#     restricted pod (non-root, no capabilities, read-only root, RuntimeDefault seccomp)
#   - `kubectl port-forward` to its Service answers
#   - a pod reaches the API server through the kubernetes Service (10.96.0.1 on kind) and
#     resolves Service names through CoreDNS
#   - kube-proxy and CoreDNS run
# Usage: e2e/kind/smoke-test.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cluster_dir=$repo/e2e/kind
# shellcheck source=env.sh
. "$cluster_dir/env.sh"
ns=iris-smoke-$$
img=iris-operator/smoke-busybox:1
t0=$SECONDS
pass=0 fail=0
ok() { pass=$((pass + 1)); printf 'ok   %s\n' "$*"; }
bad() { fail=$((fail + 1)); printf 'FAIL %s\n' "$*"; }
work=$(mktemp -d)
pf=""
cleanup() {
  [ -z "$pf" ] || kill "$pf" 2>/dev/null || true
  kubectl delete namespace "$ns" --wait=false >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

busybox=$(command -v busybox || true)
if [ -z "$busybox" ] || ! file -L "$busybox" | grep -q 'statically linked'; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends busybox-static >/dev/null
  busybox=/bin/busybox
fi
bash "$repo/e2e/tools/image-archive.sh" --binary "$busybox" --name "$img" --out "$work/busybox.tar" \
  --user 65532:65532 --entrypoint '/busybox' >/dev/null
if bash "$cluster_dir/load-images.sh" "$work/busybox.tar" >/dev/null; then ok "image archive loaded ($img)"; else bad "load-images.sh"; fi

kubectl create namespace "$ns" >/dev/null
kubectl label namespace "$ns" pod-security.kubernetes.io/enforce=restricted >/dev/null
# restricted INDENT: the securityContext of a container under the restricted standard
restricted() {
  local p=$1
  printf 'securityContext:\n'
  printf '%s  %s\n' "$p" "runAsNonRoot: true" "$p" "runAsUser: 65532" "$p" "allowPrivilegeEscalation: false" \
    "$p" "readOnlyRootFilesystem: true" "$p" "capabilities: { drop: [ALL] }" "$p" "seccompProfile: { type: RuntimeDefault }"
}
kubectl -n "$ns" apply -f - >/dev/null <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: { name: web }
spec:
  replicas: 1
  selector: { matchLabels: { app: web } }
  template:
    metadata: { labels: { app: web } }
    spec:
      containers:
      - name: web
        image: $img
        imagePullPolicy: Never
        command: ["/busybox", "sh", "-c", "mkdir -p /tmp/www && echo hello-from-\$(/busybox hostname) > /tmp/www/index.html && exec /busybox httpd -f -p 8080 -h /tmp/www"]
        ports: [{ containerPort: 8080 }]
        readinessProbe: { tcpSocket: { port: 8080 }, periodSeconds: 1 }
        $(restricted "        ")
        volumeMounts: [{ name: tmp, mountPath: /tmp }]
      volumes: [{ name: tmp, emptyDir: {} }]
---
apiVersion: v1
kind: Service
metadata: { name: web }
spec:
  selector: { app: web }
  ports: [{ port: 80, targetPort: 8080 }]
EOF
if kubectl -n "$ns" rollout status deployment/web --timeout=120s >/dev/null; then
  ok "restricted pod from the loaded image is Ready"
else
  bad "restricted pod not Ready"; kubectl -n "$ns" get pods -o wide; kubectl -n "$ns" describe pods | tail -20
fi

kubectl -n "$ns" port-forward service/web 18080:80 >"$work/pf.log" 2>&1 &
pf=$!
iris_port_forward_wait "$work/pf.log" || true
if out=$(curl -fsS --max-time 10 http://127.0.0.1:18080/) && [[ $out == hello-from-* ]]; then
  ok "kubectl port-forward service/web answers: $out"
else
  bad "port-forward: ${out:-no answer}"; cat "$work/pf.log"
fi
kill "$pf" 2>/dev/null || true
pf=""

# A restricted client pod: the API server through the kubernetes Service, and DNS.
api=$(kubectl get service kubernetes -o jsonpath='{.spec.clusterIP}')
kubectl -n "$ns" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: { name: client }
spec:
  restartPolicy: Never
  containers:
  - name: client
    image: $img
    imagePullPolicy: Never
    command: ["/busybox", "sleep", "300"]
    $(restricted "    ")
EOF
kubectl -n "$ns" wait pod/client --for=condition=Ready --timeout=60s >/dev/null
cx() { kubectl -n "$ns" exec client -- /busybox "$@"; }
# (busybox's wget, statically linked with glibc, crashes in a scratch image: raw HTTP over nc)
get() { cx sh -c "printf 'GET / HTTP/1.0\r\nHost: x\r\n\r\n' | /busybox nc -w 5 $1 $2"; }
# Go's TLS server answers a plain HTTP request with a 400: proof that the API server answered.
if get "$api" 443 | grep -q 'Client sent an HTTP request to an HTTPS server'; then
  ok "pod reaches the API server via the kubernetes Service ($api:443)"
else
  bad "pod cannot reach the API server at $api:443"
fi
if cx nslookup kubernetes.default.svc.cluster.local 2>/dev/null | grep -q "$api"; then
  ok "nslookup kubernetes.default.svc.cluster.local -> $api (CoreDNS)"
else
  bad "nslookup kubernetes.default.svc.cluster.local"
fi
web_ip=$(cx nslookup "web.$ns.svc.cluster.local" 2>/dev/null | sed -n 's/^Address: *\([0-9.]*\)$/\1/p' | tail -1)
if [ -n "$web_ip" ] && get "$web_ip" 80 | grep -q hello-from; then
  ok "pod resolves web.$ns.svc.cluster.local ($web_ip) and gets an answer through the Service"
else
  bad "DNS name of the Service (${web_ip:-not resolved}) or the Service from a pod"
fi

for sel in k8s-app=kube-proxy k8s-app=kube-dns; do
  if kubectl -n kube-system get pods -l "$sel" -o jsonpath='{range .items[*]}{.status.phase}{"\n"}{end}' | grep -q Running; then
    ok "kube-system $sel running"
  else
    bad "kube-system $sel not running"
  fi
done

printf 'smoke test (kind) in %d s\n' "$((SECONDS - t0))"
printf '%d passed, %d failed\n' "$pass" "$fail"
[ "$fail" -eq 0 ]
