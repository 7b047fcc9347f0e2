#!/usr/bin/env bash
# Sets up the end-to-end suite's cluster (images, registries, test tools), then runs the suite
# with cargo-nextest (.config/nextest.toml's e2e profile: the chart installed once by a setup
# script, the tests side by side, the disruptive tests/zz_*.rs last and alone).
#   run-suite.sh [ARGS]           on the running cluster (make cluster-up)
#   run-suite.sh --fresh [ARGS]   on a new cluster, torn down afterwards (KEEP_CLUSTER=1 keeps it)
# ARGS go to `cargo nextest run` (e.g. -E 'binary(canary)'); NEXTEST_TEST_THREADS overrides the
# profile's tests at once. The JUnit report: .build/nextest/e2e/junit.xml.
# E2E_REGISTRY=1: through registries instead of `kind load` (e2e/registry-setup.sh): the chart
# is installed from oci://<registry>/iris/charts/iris-operator and the cluster pulls every
# image; tests/registry.rs runs against a private (htpasswd) one. The cluster needs containerd's
# registry config_path: a fresh one gets it (KIND_REGISTRY=1).
set -euo pipefail
cd "$(dirname "$0")/.."
# The Makefile's cargo target directory when run directly too (not a second copy in ./target).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${IRIS_CACHE:-$HOME/.cache/iris-operator}/target}"
fresh=0
[ "${1:-}" != --fresh ] || { fresh=1; shift; }
t0=$SECONDS
log=$(mktemp)
registry_env=$(mktemp)
[ "${E2E_REGISTRY:-0}" != 1 ] || export KIND_REGISTRY=1
# On exit: tear a fresh cluster down (unless KEEP_CLUSTER=1), then show nextest's summary
# again, so the run ends on what it tested.
# shellcheck disable=SC2317 # invoked by the EXIT trap
finish() {
  if [ "$fresh" = 1 ] && [ "${KEEP_CLUSTER:-0}" != 1 ]; then
    echo "run-suite: tearing the cluster down"
    bash "$CLUSTER_DIR/down.sh" >/dev/null 2>&1 || true
  fi
  [ "${E2E_REGISTRY:-0}" != 1 ] || bash e2e/registry-setup.sh --stop >/dev/null 2>&1 || true
  sed -n '/^ *Summary \[/,$p' "$log"
  rm -f "$log" "$registry_env"
}
trap finish EXIT
# shellcheck source=select-cluster.sh
. e2e/select-cluster.sh
# The runner, pinned and cached like the Go tools (built before any cluster waits on it).
# shellcheck source=tools/versions.env
. e2e/tools/versions.env
bash e2e/tools/build-tools.sh nextest
if [ $fresh = 1 ]; then
  bash "$CLUSTER_DIR/down.sh" >/dev/null 2>&1 || true
  bash "$CLUSTER_DIR/up.sh"
fi
# shellcheck source=/dev/null
. "$CLUSTER_DIR/env.sh"
kubectl get --raw /readyz >/dev/null 2>&1 ||
  { echo "run-suite: no $CLUSTER cluster answers at $KUBECONFIG: run 'make cluster-up' (or make e2e-fresh)" >&2; exit 1; }
if [ "${E2E_REGISTRY:-0}" = 1 ]; then
  # On a running cluster the nodes keep what they pulled before under the same tag
  # (IfNotPresent): a tag of this run's own (a SemVer pre-release) makes them pull what was
  # just built. A fresh cluster has pulled nothing and keeps the plain version.
  if [ "$fresh" = 0 ] && [ -z "${VERSION:-}" ]; then
    VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)-run$(date +%s)"
    export VERSION
  fi
  bash e2e/registry-setup.sh "$registry_env"
  # shellcheck source=/dev/null
  . "$registry_env"
else
  bash "$CLUSTER_DIR/load-images.sh" .build/images/model-server.tar .build/images/operator.tar
fi
# The Prometheus of e2e/tests/monitoring.rs: the server from its Go module (Kubernetes service
# discovery only; cached by version), in a FROM-scratch image of our own, loaded as a test tool
# (never pushed: it is not ours to ship).
bash e2e/tools/build-tools.sh prometheus
export PROMETHEUS_IMAGE=iris-e2e/prometheus:$PROMETHEUS_VERSION
bash e2e/tools/image-archive.sh --binary "$PROMETHEUS_BIN/prometheus" --name "$PROMETHEUS_IMAGE" \
  --user 65534:65534 --port 9090 --out .build/images/prometheus.tar
bash "$CLUSTER_DIR/load-images.sh" .build/images/prometheus.tar
# The hostile tenant of e2e/tests/tenants.rs (e2e/src/bin/hostile-model.rs: healthy probes, a
# /metrics page made to hurt its reader), static as the Makefile's binaries, in a FROM-scratch
# image of our own, loaded as a test tool (never pushed).
# The profile of the images (PROFILE: e2e under `make test`, release otherwise).
RUSTFLAGS='-C target-feature=+crt-static' cargo build --profile "${PROFILE:-release}" --locked \
  -p e2e --bin hostile-model --target x86_64-unknown-linux-gnu
export HOSTILE_IMAGE=iris-e2e/hostile-model:e2e
bash e2e/tools/image-archive.sh \
  --binary "${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-gnu/${PROFILE:-release}/hostile-model" \
  --name "$HOSTILE_IMAGE" --user 65532:65532 --port 5001 --out .build/images/hostile-model.tar
bash "$CLUSTER_DIR/load-images.sh" .build/images/hostile-model.tar
# The resource metrics API, which the autoscaling tests need (built once, cached).
bash e2e/metrics-server/install.sh
# The OIP clients users run (tritonclient, the kserve SDK), pinned, in a cached venv.
IRIS_PYCLIENTS=$(bash e2e/clients/setup.sh)
export IRIS_PYCLIENTS
echo "run-suite: cluster ready and images loaded after $((SECONDS - t0)) s; running the suite"
# nextest's report, kept in $log too for the summary at exit.
PATH=$NEXTEST_BIN:$PATH cargo nextest run --locked -p e2e --profile e2e "$@" 2>&1 | tee "$log"
