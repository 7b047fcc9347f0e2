#!/usr/bin/env bash
# Runs the end-to-end suite (cargo test -p e2e) on a cluster with our images loaded.
#   run-suite.sh           on the running cluster (make cluster-up)
#   run-suite.sh --fresh   on a new cluster, torn down afterwards (KEEP_CLUSTER=1 keeps it)
# E2E_REGISTRY=1: through registries instead of `kind load` (e2e/registry-setup.sh): the chart
# is installed from oci://<registry>/iris/charts/iris-operator and the cluster pulls every
# image; tests/registry.rs runs against a private (htpasswd) one. The cluster needs containerd's
# registry config_path: a fresh one gets it (KIND_REGISTRY=1).
# E2E_LANES=1 runs the test binaries one after another (default: two lanes side by side, then
# the disruptive tests/zz_*.rs alone); E2E_THREADS is the tests per binary at once (4).
set -euo pipefail
cd "$(dirname "$0")/.."
fresh=0
[ "${1:-}" = --fresh ] && fresh=1
t0=$SECONDS
summary=""
log=$(mktemp)
registry_env=$(mktemp)
[ "${E2E_REGISTRY:-0}" != 1 ] || export KIND_REGISTRY=1
# On exit: tear a fresh cluster down (unless KEEP_CLUSTER=1), then print the suite's count
# as the last line, so the run ends on what it tested.
# shellcheck disable=SC2317 # invoked by the EXIT trap
finish() {
  if [ "$fresh" = 1 ] && [ "${KEEP_CLUSTER:-0}" != 1 ]; then
    echo "run-suite: tearing the cluster down"
    bash "$CLUSTER_DIR/down.sh" >/dev/null 2>&1 || true
  fi
  [ "${E2E_REGISTRY:-0}" != 1 ] || bash e2e/registry-setup.sh --stop >/dev/null 2>&1 || true
  rm -f "$log" "$log.1" "$log.2" "$registry_env"
  [ -z "$summary" ] || echo "$summary"
}
trap finish EXIT
# shellcheck source=select-cluster.sh
. e2e/select-cluster.sh
if [ $fresh = 1 ]; then
  bash "$CLUSTER_DIR/down.sh" >/dev/null 2>&1 || true
  bash "$CLUSTER_DIR/up.sh"
fi
# shellcheck source=/dev/null
. "$CLUSTER_DIR/env.sh"
kubectl get --raw /readyz >/dev/null 2>&1 ||
  { echo "run-suite: no $CLUSTER cluster answers at $KUBECONFIG: run 'make cluster-up' (or make e2e-fresh)" >&2; exit 1; }
if [ "${E2E_REGISTRY:-0}" = 1 ]; then
  bash e2e/registry-setup.sh "$registry_env"
  # shellcheck source=/dev/null
  . "$registry_env"
else
  bash "$CLUSTER_DIR/load-images.sh" .build/images/model-server.tar .build/images/operator.tar
fi
# The Prometheus of e2e/tests/monitoring.rs: the server from its Go module (Kubernetes service
# discovery only; cached by version), in a FROM-scratch image of our own, loaded as a test tool
# (never pushed: it is not ours to ship).
# shellcheck source=tools/versions.env
. e2e/tools/versions.env
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
t1=$SECONDS
status=0
threads=${E2E_THREADS:-4}
if [ "${E2E_LANES:-2}" = 1 ]; then
  cargo test -p e2e -- --test-threads "$threads" --nocapture 2>&1 | tee "$log" || status=$?
else
  # Two lanes of test binaries side by side (each test works in its own namespace), then the
  # disruptive ones (tests/zz_*.rs: they drain and stop nodes and the API server) alone.
  # The first lane takes the binaries that mostly wait (certificate and token rotation,
  # Prometheus, idle times before scale to zero); the second every other one, so a new test
  # file runs too.
  cargo test -p e2e --no-run 2>&1 | tail -1
  # The shortest binary first, alone: it installs the chart (and restarts the operator on the
  # images just loaded); the lanes then share that release (E2E_OPERATOR_READY=1).
  first=registry
  cargo test -p e2e --test "$first" -- --test-threads "$threads" --nocapture 2>&1 | tee "$log" || status=1
  export E2E_OPERATOR_READY=1
  waiting=(security monitoring scale_to_zero)
  others=()
  for f in e2e/tests/*.rs; do
    t=$(basename "$f" .rs)
    case " $first ${waiting[*]} " in *" $t "*) continue ;; esac
    case $t in zz_*) continue ;; esac
    others+=("$t")
  done
  lane() {
    local out=$1 t rc=0
    shift
    for t in "$@"; do
      if [ "$t" = --own ]; then
        cargo test -p e2e --lib --bins -- --nocapture >>"$out" 2>&1 || rc=1
      else
        cargo test -p e2e --test "$t" -- --test-threads "$threads" --nocapture >>"$out" 2>&1 || rc=1
      fi
    done
    return $rc
  }
  echo "run-suite: $first, then lanes [${waiting[*]}] and [--own ${others[*]}] side by side, then the zz_ tests alone"
  lane "$log.1" "${waiting[@]}" & lane1=$!
  lane "$log.2" --own "${others[@]}" & lane2=$!
  wait "$lane1" || status=1
  wait "$lane2" || status=1
  cat "$log.1" "$log.2" | tee -a "$log"
  rm -f "$log.1" "$log.2"
  for f in e2e/tests/zz_*.rs; do
    t=$(basename "$f" .rs)
    cargo test -p e2e --test "$t" -- --test-threads "$threads" --nocapture 2>&1 | tee -a "$log" || status=1
  done
fi
count() { grep -E '^test result:' "$log" | grep -oE "[0-9]+ $1" | awk '{n += $1} END {print n + 0}'; }
echo "run-suite: suite took $((SECONDS - t1)) s, total $((SECONDS - t0)) s"
summary="e2e: $(count passed) passed, $(count failed) failed"
exit "$status"
