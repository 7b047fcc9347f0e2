#!/usr/bin/env bash
# Builds what the kind node image needs beyond e2e/tools/build-tools.sh, into the same cache
# layout ($IRIS_CACHE/<tool>-<version>/bin), once:
#   wrapper   runc-wrapper (e2e/kind/runc-wrapper, Go, static): drops capabilities this VM
#             cannot grant from OCI specs, then runs runc
#   coredns   CoreDNS from its Go module, at the version kubeadm $K8S_VERSION expects
#   pause     the pause container (pause.c from the k8s.io/kubernetes module), static
# Usage: build-bins.sh [wrapper] [coredns] [pause]     (default: all)
# Prints nothing on stdout; progress and timings on stderr.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
export GOFLAGS=-buildvcs=false
command -v go >/dev/null || kind_die "the Go toolchain (go) is not on PATH"
mkdir -p "$IRIS_CACHE"

# The image a kubeadm of K8S_VERSION expects for NAME (kube-apiserver, coredns, pause, etcd...).
kubeadm_image() {
  "$K8S_BIN/kubeadm" config images list --kubernetes-version "$K8S_VERSION" 2>/dev/null | grep -E "/$1:" | head -1
}

build_wrapper() {
  local out=$RUNC_WRAPPER_BIN
  if [ -x "$out/runc-wrapper" ]; then kind_log "runc-wrapper: cached in $out"; return; fi
  mkdir -p "$out"
  kind_timed "runc-wrapper: building" bash -c "cd '$KIND_DIR/runc-wrapper' && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o '$out/.runc-wrapper.tmp' ."
  mv "$out/.runc-wrapper.tmp" "$out/runc-wrapper"
}

build_coredns() {
  local img v out
  img=$(kubeadm_image coredns) || true
  [ -n "$img" ] || kind_die "kubeadm config images list names no coredns image"
  v=${img##*:}
  out=$IRIS_CACHE/coredns-$v
  if [ -x "$out/bin/coredns" ]; then kind_log "coredns $v: cached in $out/bin"; return; fi
  mkdir -p "$out/bin" "$out/tmp"
  kind_timed "coredns $v: building (github.com/coredns/coredns@$v)" env GOBIN="$out/tmp" CGO_ENABLED=0 \
    go install -trimpath -ldflags "-s -w -X github.com/coredns/coredns/coremain.GitCommit=$v" "github.com/coredns/coredns@$v"
  mv "$out/tmp/coredns" "$out/bin/coredns"
}

build_pause() {
  local img tag src out
  img=$(kubeadm_image pause) || true
  [ -n "$img" ] || kind_die "kubeadm config images list names no pause image"
  tag=${img##*:}
  out=$IRIS_CACHE/pause-$tag
  if [ -x "$out/bin/pause" ]; then kind_log "pause $tag: cached in $out/bin"; return; fi
  src=$(cd "$IRIS_CACHE" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" 2>/dev/null | sed -n 's/.*"Dir": "\(.*\)",/\1/p')
  [ -f "$src/build/pause/linux/pause.c" ] || kind_die "no build/pause/linux/pause.c in k8s.io/kubernetes@$K8S_VERSION ($src)"
  command -v cc >/dev/null || kind_die "a C compiler (cc) is needed for the pause container"
  mkdir -p "$out/bin"
  kind_timed "pause $tag: compiling (static)" cc -Os -Wall -static -DVERSION="v$tag" -o "$out/bin/.pause.tmp" "$src/build/pause/linux/pause.c"
  strip "$out/bin/.pause.tmp" 2>/dev/null || true
  mv "$out/bin/.pause.tmp" "$out/bin/pause"
}

[ $# -gt 0 ] || set -- wrapper pause coredns
for t in "$@"; do
  declare -F "build_$t" >/dev/null || kind_die "unknown tool '$t' (known: wrapper coredns pause)"
  # One build of a tool at a time (a second caller waits, then finds it cached).
  exec 8>"$IRIS_CACHE/.kind-build-$t.lock"
  flock 8
  "build_$t"
  exec 8>&-
done
