#!/usr/bin/env bash
# Pushes both image archives (.build/images/*.tar, from `make images`) and the chart (as an OCI
# artifact) to a registry, and prints their digests.
#
# Usage: REGISTRY=host[:port][/prefix] push.sh
#   images: $REGISTRY/model-server:$VERSION, $REGISTRY/operator:$VERSION (then checked by digest)
#   chart:  oci://$REGISTRY/charts/iris-operator:$VERSION
# Env:  VERSION            tag (default: the workspace version in Cargo.toml)
#       PUSH_TOOL          crane (default: pushes the archives' exact bytes, no engine needed) or
#                          docker (docker load + docker push, for an engine's credential helpers)
#       REGISTRY_USER / REGISTRY_PASSWORD   log in with these (into a private, temporary
#                          credentials file); otherwise the credentials of `docker login`,
#                          `crane auth login` and `helm registry login` are used
#       REGISTRY_PLAIN_HTTP 1 to talk plain HTTP (default: 1 for localhost and 127.x, else 0)
#       PUSH_OUT           where the digests go (default .build/push): digests.env, digests.txt
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/../.."
# shellcheck source=versions.env
. e2e/tools/versions.env
say() { printf '[push] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

registry=${REGISTRY:-}
[ -n "$registry" ] || die "set REGISTRY=host[:port][/prefix], e.g. REGISTRY=localhost:5000/iris or REGISTRY=ghcr.io/OWNER"
registry=${registry%/}
case $registry in *://*) die "REGISTRY is host[:port][/prefix] without a scheme, not '$registry'" ;; esac
host=${registry%%/*}
[[ $host =~ ^[A-Za-z0-9.-]+(:[0-9]+)?$ ]] || die "REGISTRY host '$host' is not host[:port]"
version=${VERSION:-$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)}
tool=${PUSH_TOOL:-crane}
case $tool in crane | docker) ;; *) die "PUSH_TOOL must be crane or docker, not '$tool'" ;; esac
case $host in localhost | localhost:* | 127.* ) plain_default=1 ;; *) plain_default=0 ;; esac
plain=${REGISTRY_PLAIN_HTTP:-$plain_default}
out=${PUSH_OUT:-.build/push}
for name in model-server operator; do
  [ -s .build/images/$name.tar ] || die ".build/images/$name.tar is missing: run 'make images'"
done
t0=$SECONDS

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
crane_flags=() helm_flags=()
[ "$plain" != 1 ] || { crane_flags+=(--insecure); helm_flags+=(--plain-http); }
if [ -n "${REGISTRY_USER:-}" ]; then
  [ -n "${REGISTRY_PASSWORD:-}" ] || die "REGISTRY_USER is set without REGISTRY_PASSWORD"
  # A credentials file of this run only: the user's own logins are left alone.
  export DOCKER_CONFIG=$tmp/docker
  mkdir -p "$DOCKER_CONFIG"
  helm_flags+=(--username "$REGISTRY_USER" --password "$REGISTRY_PASSWORD")
fi

[ "$tool" != crane ] || [ -x "$CRANE_BIN/crane" ] || bash e2e/tools/build-tools.sh crane >&2
crane() { "$CRANE_BIN/crane" "$@"; }
if [ -n "${REGISTRY_USER:-}" ] && [ "$tool" = crane ]; then
  printf '%s' "$REGISTRY_PASSWORD" | crane auth login "$host" -u "$REGISTRY_USER" --password-stdin >/dev/null 2>&1 ||
    die "crane auth login $host failed"
fi

# push NAME: prints the pushed image's digest reference.
push() {
  local name=$1 archive=.build/images/$1.tar ref=$registry/$1:$version digest
  case $tool in
    crane)
      # crane logs each blob: shown only when the push fails.
      crane push "${crane_flags[@]}" "$archive" "$ref" >/dev/null 2>"$tmp/crane.log" ||
        { cat "$tmp/crane.log" >&2; die "crane push $ref failed (logged in? set REGISTRY_USER and REGISTRY_PASSWORD, or docker login $host)"; }
      digest=$(crane digest "${crane_flags[@]}" "$ref") ;;
    docker)
      [ -z "${REGISTRY_USER:-}" ] || printf '%s' "$REGISTRY_PASSWORD" | docker login "$host" -u "$REGISTRY_USER" --password-stdin >/dev/null
      local loaded
      loaded=$(docker load -q -i "$archive" | sed -n 's/^Loaded image: //p' | head -1)
      docker tag "$loaded" "$ref"
      docker push -q "$ref" >/dev/null
      digest=$(docker inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' "$ref" | sed -n "s|^${registry}/$name@||p" | head -1) ;;
  esac
  [[ $digest == sha256:* ]] || die "no digest for $ref"
  # The manifest must also answer by digest: that is the reference to pin (spec.image, values).
  if [ "$tool" = crane ]; then
    crane manifest "${crane_flags[@]}" "$registry/$name@$digest" >/dev/null || die "$registry/$name@$digest does not answer"
  fi
  printf '%s\n' "$digest"
}

mkdir -p "$out"
model_digest=$(push model-server)
say "$registry/model-server:$version  $model_digest"
operator_digest=$(push operator)
say "$registry/operator:$version  $operator_digest"

[ -x "$HELM_BIN/helm" ] || bash e2e/tools/build-tools.sh helm >&2
helm=$HELM_BIN/helm
rm -rf "$tmp/chart" && mkdir -p "$tmp/chart/files"
"$helm" package charts/iris-operator --version "$version" --app-version "$version" -d "$tmp/chart" >/dev/null
chart=$tmp/chart/iris-operator-$version.tgz
# helm package stamps each file with the time of packaging: packed again with fixed time
# stamps, owners and order (gzip -n: no name or time), the same chart gives the same digest.
tar -xzf "$chart" -C "$tmp/chart/files"
tar -C "$tmp/chart/files" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=gnu -cf - iris-operator |
  gzip -n -9 >"$chart"
# helm push writes the archive's modification time into the manifest (image.created).
touch -d @0 "$chart"
cp "$chart" "$out/"
export HELM_REGISTRY_CONFIG=$tmp/helm-registry.json
"$helm" push "$chart" "oci://$registry/charts" "${helm_flags[@]}" >"$tmp/helm-push.log" 2>&1 || {
  cat "$tmp/helm-push.log" >&2
  die "helm push to oci://$registry/charts failed"
}
chart_digest=$(sed -n 's/^Digest: //p' "$tmp/helm-push.log" | head -1)
[[ $chart_digest == sha256:* ]] || { cat "$tmp/helm-push.log" >&2; die "helm push printed no digest"; }
say "oci://$registry/charts/iris-operator:$version  $chart_digest"

cat >"$out/digests.env" <<EOF
REGISTRY=$registry
VERSION=$version
MODEL_SERVER_IMAGE=$registry/model-server:$version
MODEL_SERVER_DIGEST=$model_digest
OPERATOR_IMAGE=$registry/operator:$version
OPERATOR_DIGEST=$operator_digest
CHART=oci://$registry/charts/iris-operator
CHART_DIGEST=$chart_digest
EOF
{
  echo "$registry/model-server:$version@$model_digest"
  echo "$registry/operator:$version@$operator_digest"
  echo "oci://$registry/charts/iris-operator:$version@$chart_digest"
} | tee "$out/digests.txt"
say "pushed in $((SECONDS - t0)) s ($tool); digests in $out/digests.env. Install with:"
say "  helm install iris-operator oci://$registry/charts/iris-operator --version $version \\"
say "    --set image.repository=$registry/operator --set modelServer.image.repository=$registry/model-server"
