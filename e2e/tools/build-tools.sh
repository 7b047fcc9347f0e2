#!/usr/bin/env bash
# Builds the Kubernetes components, etcd and helm from their Go modules (and cargo-nextest from
# crates.io) at pinned versions into a cache outside the repo:
# ${IRIS_CACHE:-~/.cache/iris-operator}/<tool>-<version>/bin.
# A tool already in the cache is not rebuilt. Each binary is linked under a temporary name and
# renamed when complete, so an interrupted build never leaves a half-written "cached" binary.
# Usage: build-tools.sh [k8s] [etcd] [helm] [crictl] [kind] [promtool] [prometheus] [metrics_server]
#        [registry] [crane] [actionlint] [ghz] [nextest]   (default: helm etcd k8s crictl)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"
cache=${IRIS_CACHE:-$HOME/.cache/iris-operator}
# GOFLAGS from the caller (e.g. -p=1 on a shared machine) are kept.
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-buildvcs=false" CGO_ENABLED=${CGO_ENABLED:-1}

step() { printf '[build-tools] %s\n' "$*" >&2; }
# Every tool but nextest is a Go build.
[ "$*" = nextest ] || command -v go >/dev/null || { step "error: the Go toolchain (go) is not on PATH"; exit 1; }
# One build at a time per cache (make -j, or a second `make cluster-up` while one builds).
mkdir -p "$cache"
exec 9>"$cache/.build-tools.lock"
if ! flock -n 9; then
  step "another build-tools.sh is running; waiting for it ($cache/.build-tools.lock)"
  flock 9
fi
timed() { local t0=$SECONDS; "$@"; step "  done in $((SECONDS - t0)) s"; }

k8s_commands=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl kube-proxy kubeadm)

build_k8s() {
  local v=$K8S_VERSION out=$cache/k8s-$K8S_VERSION
  local missing=()
  for c in "${k8s_commands[@]}"; do [ -x "$out/bin/$c" ] || missing+=("$c"); done
  if [ ${#missing[@]} -eq 0 ]; then step "kubernetes $v: cached in $out/bin"; return; fi
  local minor=${v#v1.}; minor=${minor%%.*}; local staging=v0.${v#v1.}
  local mod=$out/src
  mkdir -p "$mod" "$out/bin"
  step "kubernetes $v: wrapper module in $mod"
  local gomod
  gomod=$(cd "$mod" && go mod download -json "k8s.io/kubernetes@$v" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
  {
    echo "module iris-operator.dev/k8s-tools"
    echo
    echo "go 1.24"
    echo
    echo "require k8s.io/kubernetes $v"
    echo
    # Every k8s.io staging module that k8s.io/kubernetes requires at v0.0.0 is replaced by
    # the published module of the matching version (the list comes from its own go.mod).
    awk '/^replace|^\)/{} /=> \.\/staging/{print $1}' "$gomod" | sort -u | while read -r m; do
      echo "replace $m => $m $staging"
    done
  } >"$mod/go.mod"
  cat >"$mod/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubeadm"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
GO
  step "kubernetes $v: resolving modules"
  timed bash -c "cd '$mod' && go mod tidy -e >/dev/null 2>&1 || true; go mod download all >/dev/null 2>&1 || true"
  local date; date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  local ld=""
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X '$pkg.gitVersion=$v' -X '$pkg.gitMajor=1' -X '$pkg.gitMinor=$minor'"
    ld+=" -X '$pkg.gitCommit=0000000000000000000000000000000000000000' -X '$pkg.gitTreeState=clean' -X '$pkg.buildDate=$date'"
  done
  for c in "${missing[@]}"; do
    step "kubernetes $v: building $c"
    timed bash -c "cd '$mod' && CGO_ENABLED=0 go build -tags tools -trimpath -ldflags \"-s -w $ld\" -o '$out/bin/.$c.tmp' k8s.io/kubernetes/cmd/$c"
    mv "$out/bin/.$c.tmp" "$out/bin/$c"
  done
}

build_etcd() {
  local out=$cache/etcd-$ETCD_VERSION
  if [ -x "$out/bin/etcd" ]; then step "etcd $ETCD_VERSION: cached in $out/bin"; return; fi
  mkdir -p "$out/src" "$out/bin"
  cat >"$out/src/go.mod" <<GOMOD
module iris-operator.dev/etcd-tools

go 1.24

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
GOMOD
  cat >"$out/src/main.go" <<'GO'
// The etcd binary: the same main as etcd's own (etcdmain.Main).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  step "etcd $ETCD_VERSION: building"
  timed bash -c "cd '$out/src' && go mod tidy >/dev/null && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o '$out/bin/.etcd.tmp' . && mv '$out/bin/.etcd.tmp' '$out/bin/etcd'"
}

# go_install NAME VERSION OUT PACKAGE@VERSION [LDFLAGS] [TAGS]: `go install` one command into
# OUT/bin (through OUT/tmp, so an interrupted build never leaves a half-written "cached"
# binary), unless it is already there.
go_install() {
  local name=$1 version=$2 out=$3 pkg=$4 ldflags=${5:-} tags=${6:-}
  if [ -x "$out/bin/$name" ]; then step "$name $version: cached in $out/bin"; return; fi
  mkdir -p "$out/bin" "$out/tmp"
  step "$name $version: building"
  timed env GOBIN="$out/tmp" CGO_ENABLED=0 go install -trimpath -tags "$tags" -ldflags "-s -w $ldflags" "$pkg"
  mv "$out/tmp/$name" "$out/bin/$name"
}

build_helm() {
  # Like helm's Makefile: the Kubernetes version `helm template` and `helm lint` assume
  # (otherwise v1.20, which charts with a kubeVersion constraint refuse).
  local ld="-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" kv=${HELM_K8S_VERSION#v}
  for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    ld+=" -X $pkg.k8sVersionMajor=${kv%%.*} -X $pkg.k8sVersionMinor=${kv#*.}"
  done
  go_install helm "$HELM_VERSION" "$cache/helm-$HELM_VERSION-k8s$HELM_K8S_VERSION" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" "$ld"
}

# crictl (the CRI client): installed in the kind node image, for debugging a node's containers.
build_crictl() {
  go_install crictl "$CRICTL_VERSION" "$cache/crictl-$CRICTL_VERSION" \
    "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION" "-X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION"
}

build_kind() {
  go_install kind "$KIND_VERSION" "$cache/kind-$KIND_VERSION" "sigs.k8s.io/kind@$KIND_VERSION"
}

# promtool and prometheus from the Prometheus module (its Go tag v0.3XX.Y is Prometheus v3.XX.Y);
# the version ldflags are those of Prometheus' own .promu.yml.
prometheus_ld() {
  local v=${PROMETHEUS_VERSION#v0.3}
  echo "-X github.com/prometheus/common/version.Version=3.${v}"
}
# promtool only checks and tests rule files here: built without the service-discovery plugins
# (Prometheus' own `remove_all_sd` tag), which more than halves its cold build (2 min 13 s of
# compiling, 54 MB, against 88 MB with every cloud SDK).
build_promtool() {
  go_install promtool "$PROMETHEUS_VERSION" "$(dirname "$PROMTOOL_BIN")" \
    "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_VERSION" "$(prometheus_ld)" remove_all_sd
}
# The server, for the e2e monitoring test: with Kubernetes service discovery only (the tag
# pair Prometheus' plugins/ provides), in a FROM-scratch image (e2e/monitoring).
build_prometheus() {
  go_install prometheus "$PROMETHEUS_VERSION" "$(dirname "$PROMETHEUS_BIN")" \
    "github.com/prometheus/prometheus/cmd/prometheus@$PROMETHEUS_VERSION" "$(prometheus_ld)" "remove_all_sd,enable_kubernetes_sd"
}

# The distribution registry as our own main: the upstream cmd/registry links every storage
# driver (Azure, GCS, S3 with their SDKs); a local test registry needs the filesystem and
# in-memory drivers and htpasswd auth. The same module builds `htpasswd`, a bcrypt entry writer
# (the only hash the registry's htpasswd accepts), so no apache2-utils is needed.
build_registry() {
  local out=$cache/registry-$DISTRIBUTION_VERSION
  if [ -x "$out/bin/registry" ] && [ -x "$out/bin/htpasswd" ]; then step "registry $DISTRIBUTION_VERSION: cached in $out/bin"; return; fi
  mkdir -p "$out/src/htpasswd" "$out/bin"
  cat >"$out/src/go.mod" <<GOMOD
module iris-operator.dev/registry-tools

go 1.24

require github.com/distribution/distribution/v3 $DISTRIBUTION_VERSION
GOMOD
  cat >"$out/src/main.go" <<'GO'
// The registry binary: upstream's cmd/registry with only the drivers a local registry uses.
package main

import (
	"os"

	"github.com/distribution/distribution/v3/registry"
	_ "github.com/distribution/distribution/v3/registry/auth/htpasswd"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
)

func main() {
	if err := registry.RootCmd.Execute(); err != nil {
		os.Exit(1)
	}
}
GO
  cat >"$out/src/htpasswd/main.go" <<'GO'
// htpasswd USER: reads the password from stdin, prints "USER:<bcrypt hash>".
package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

func main() {
	if len(os.Args) != 2 || os.Args[1] == "" || strings.Contains(os.Args[1], ":") {
		fmt.Fprintln(os.Stderr, "usage: htpasswd USER < password (USER without ':')")
		os.Exit(2)
	}
	pw, err := bufio.NewReader(os.Stdin).ReadString('\n')
	if err != nil && pw == "" {
		fmt.Fprintln(os.Stderr, "htpasswd: no password on stdin")
		os.Exit(2)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(strings.TrimRight(pw, "\r\n")), bcrypt.DefaultCost)
	if err != nil {
		fmt.Fprintln(os.Stderr, "htpasswd:", err)
		os.Exit(1)
	}
	fmt.Printf("%s:%s\n", os.Args[1], hash)
}
GO
  step "registry $DISTRIBUTION_VERSION: building registry and htpasswd"
  timed bash -c "cd '$out/src' && go mod tidy >/dev/null && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w -X github.com/distribution/distribution/v3/version.version=$DISTRIBUTION_VERSION' -o '$out/bin/.registry.tmp' . && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o '$out/bin/.htpasswd.tmp' ./htpasswd"
  mv "$out/bin/.registry.tmp" "$out/bin/registry"
  mv "$out/bin/.htpasswd.tmp" "$out/bin/htpasswd"
}

build_crane() {
  go_install crane "$CRANE_VERSION" "$(dirname "$CRANE_BIN")" \
    "github.com/google/go-containerregistry/cmd/crane@$CRANE_VERSION"
}

# ghz, the gRPC load generator of bench/grpc.sh.
build_ghz() {
  go_install ghz "$GHZ_VERSION" "$(dirname "$GHZ_BIN")" "github.com/bojand/ghz/cmd/ghz@$GHZ_VERSION"
}

build_actionlint() {
  go_install actionlint "$ACTIONLINT_VERSION" "$(dirname "$ACTIONLINT_BIN")" \
    "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION"
}

# metrics-server: the resource metrics API of our kind clusters, packed into a FROM scratch
# image by build-images.sh (the version ldflags are those of its own Makefile).
build_metrics_server() {
  go_install metrics-server "$METRICS_SERVER_VERSION" "$(dirname "$METRICS_SERVER_BIN")" \
    "sigs.k8s.io/metrics-server/cmd/metrics-server@$METRICS_SERVER_VERSION" \
    "-X k8s.io/client-go/pkg/version.gitVersion=$METRICS_SERVER_VERSION -X k8s.io/component-base/version.gitVersion=$METRICS_SERVER_VERSION"
}

# cargo-nextest, the e2e suite's runner: `cargo install --locked` of the pinned version, without
# self-update (fewer crates to build), in a build directory of its own that is removed after.
build_nextest() {
  local out
  out=$(dirname "$NEXTEST_BIN")
  if [ -x "$NEXTEST_BIN/cargo-nextest" ]; then step "cargo-nextest $NEXTEST_VERSION: cached in $NEXTEST_BIN"; return; fi
  step "cargo-nextest $NEXTEST_VERSION: building"
  timed cargo install --locked --quiet cargo-nextest --version "$NEXTEST_VERSION" \
    --no-default-features --features default-no-update --root "$out" --target-dir "$out/build"
  rm -rf "$out/build"
}

[ $# -gt 0 ] || set -- helm etcd k8s crictl
t_all=$SECONDS
for t in "$@"; do
  declare -F "build_$t" >/dev/null || { step "error: unknown tool '$t' (known: k8s etcd helm crictl kind promtool prometheus metrics_server registry crane actionlint ghz nextest)"; exit 2; }
  "build_$t"
done
step "tools ready ($*) in $((SECONDS - t_all)) s"
