#!/usr/bin/env bash
# The registry path of the e2e suite (run-suite.sh with E2E_REGISTRY=1): images and chart go
# through registries the cluster pulls from, not `kind load`.
#   public   registry on localhost:$E2E_REGISTRY_PORT (default 5000), no authentication: both
#            images and the chart (oci://<node host>/iris/charts/iris-operator), as a user's
#            registry would hold them
#   private  registry on port +1, htpasswd: the model-server image only (for tests/registry.rs)
# Both are wired into the kind cluster (e2e/kind/registry.sh). Writes the suite's environment
# to $1 (sourced by run-suite.sh): the chart reference, the images, the private registry.
# Usage: e2e/registry-setup.sh OUT.env     (after up.sh; KIND_CLUSTER_NAME etc. as for up.sh)
#        e2e/registry-setup.sh --stop      stops both registries
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
# shellcheck source=tools/versions.env
. e2e/tools/versions.env
public_port=${E2E_REGISTRY_PORT:-5000}
private_port=$((public_port + 1))
state=${E2E_REGISTRY_DIR:-/var/lib/iris-operator/e2e-registry}
say() { printf '[registry-setup] %s\n' "$*" >&2; }
registry() { # PORT AUTH ACTION
  REGISTRY_PORT=$1 REGISTRY_AUTH=$2 REGISTRY_DIR=$state/$1 REGISTRY_USER=e2e bash e2e/tools/registry.sh "$3"
}
if [ "${1:-}" = --stop ]; then
  registry "$public_port" none stop
  registry "$private_port" htpasswd stop
  exit 0
fi
out=${1:?usage: registry-setup.sh OUT.env | --stop}
t0=$SECONDS

registry "$public_port" none start
registry "$private_port" htpasswd start
# The private one first: the local-registry-hosting ConfigMap names the last, the public one.
private_host=$(REGISTRY_PORT=$private_port bash e2e/kind/registry.sh | sed -n 's/^REGISTRY_NODE_HOST=//p')
public_host=$(REGISTRY_PORT=$public_port bash e2e/kind/registry.sh | sed -n 's/^REGISTRY_NODE_HOST=//p')
t_start=$((SECONDS - t0))

# Pushed under the name the nodes pull (<gateway>:<port>), plain HTTP.
REGISTRY=$public_host/iris REGISTRY_PLAIN_HTTP=1 PUSH_OUT=.build/push-e2e bash e2e/tools/push.sh >/dev/null
# shellcheck source=/dev/null
. .build/push-e2e/digests.env

eval "$(registry "$private_port" htpasswd env | sed 's/^/private_/')"
# shellcheck disable=SC2154 # set by the eval
user=$private_REGISTRY_USER password=$private_REGISTRY_PASSWORD
creds=$(mktemp -d)
trap 'rm -rf "$creds"' EXIT
export DOCKER_CONFIG=$creds
printf '%s' "$password" | "$CRANE_BIN/crane" auth login "$private_host" -u "$user" --password-stdin >/dev/null 2>&1
private_image=$private_host/private/model-server:$VERSION
"$CRANE_BIN/crane" push --insecure .build/images/model-server.tar "$private_image" >/dev/null 2>"$creds/push.log" ||
  { cat "$creds/push.log" >&2; exit 1; }
private_digest=$("$CRANE_BIN/crane" digest --insecure "$private_image")
say "registries up and wired in ${t_start} s; pushed in $((SECONDS - t0 - t_start)) s"

cat >"$out" <<EOF
export E2E_CHART=$CHART E2E_CHART_VERSION=$VERSION
export OPERATOR_IMAGE=$OPERATOR_IMAGE MODEL_SERVER_IMAGE=$MODEL_SERVER_IMAGE
export E2E_PRIVATE_REGISTRY=$private_host E2E_PRIVATE_REGISTRY_USER=$user E2E_PRIVATE_REGISTRY_PASSWORD=$password
export E2E_PRIVATE_IMAGE=$private_image E2E_PRIVATE_DIGEST=$private_digest E2E_CRANE=$CRANE_BIN/crane
EOF
say "chart $CHART:$VERSION ($CHART_DIGEST), images $OPERATOR_IMAGE, $MODEL_SERVER_IMAGE; private $private_image@$private_digest"
