#!/usr/bin/env bash
# Loads image archives (docker-archive or OCI tarballs: `docker save`, or
# e2e/tools/image-archive.sh) into the kind cluster's node (its containerd, namespace k8s.io),
# where the kubelet finds them: use them with imagePullPolicy IfNotPresent or Never. No
# registry involved (kind load image-archive).
#
# Usage: e2e/kind/load-images.sh FILE.tar...     (KIND_CLUSTER_NAME as for up.sh)
# Prints the name of each image loaded.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
kind_path
[ $# -gt 0 ] || { sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
for f in "$@"; do [ -f "$f" ] || kind_die "no such image archive: $f"; done
kind get clusters 2>/dev/null | grep -qx "$KIND_CLUSTER_NAME" ||
  kind_die "no kind cluster named '$KIND_CLUSTER_NAME'; start it with e2e/kind/up.sh"

# The image names in an archive: RepoTags of a docker-archive, or the
# io.containerd.image.name / org.opencontainers.image.ref.name annotations of an OCI layout.
names_in() {
  local m
  if m=$(tar -xOf "$1" manifest.json 2>/dev/null) && [ -n "$m" ]; then
    grep -o '"RepoTags":\[[^]]*\]' <<<"$m" | grep -o '"[^"]*"' | grep -v RepoTags | tr -d '"'
  elif m=$(tar -xOf "$1" index.json 2>/dev/null) && [ -n "$m" ]; then
    grep -o '"io.containerd.image.name":"[^"]*"' <<<"$m" | cut -d'"' -f4
  fi
}
for f in "$@"; do
  t0=$SECONDS
  kind load image-archive "$f" --name "$KIND_CLUSTER_NAME" >&2 || kind_die "kind load image-archive $f failed"
  n=$(names_in "$f" || true)
  [ -n "$n" ] || n=$f
  printf '%s\n' "$n"
  kind_log "loaded $(tr '\n' ' ' <<<"$n")from $f in $((SECONDS - t0)) s"
done
