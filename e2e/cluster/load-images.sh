#!/usr/bin/env bash
# Imports image archives (docker-archive or OCI tarballs: `docker save`, or
# e2e/tools/image-archive.sh) into the cluster's containerd, namespace k8s.io, where the kubelet
# finds them: use them with imagePullPolicy IfNotPresent or Never. No registry involved.
#
# Usage: e2e/cluster/load-images.sh FILE.tar...     (as root; IRIS_CLUSTER_DIR as for up.sh)
# Prints the name of each image imported.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

[ $# -gt 0 ] || { sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
if [ ! -S "$CTRD_SOCK" ] || ! pid_of containerd >/dev/null; then
  die "the cluster's containerd is not running ($CTRD_SOCK); start the cluster with e2e/cluster/up.sh"
fi
command -v ctr >/dev/null || die "ctr (from Debian's containerd package) is not installed; run e2e/cluster/up.sh"
for f in "$@"; do
  [ -f "$f" ] || die "no such image archive: $f"
done
for f in "$@"; do
  t0=$(now_ns)
  if ! out=$(ctr_ -n k8s.io images import "$f" 2>&1); then
    printf '%s\n' "$out" >&2
    die "ctr images import $f failed (containerd log: $LOGS/containerd.log)"
  fi
  # ctr prints "unpacking NAME (sha256:...)...done" for each image.
  names=$(sed -n 's/^unpacking \(.*\) (sha256:.*/\1/p' <<<"$out")
  [ -n "$names" ] || names=$(printf '%s\n' "$out" | head -n 3)
  while read -r n; do
    printf '%s\n' "$n"
    log "imported $n from $f in $(since "$t0") s"
  done <<<"$names"
done
