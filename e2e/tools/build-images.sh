#!/usr/bin/env bash
# Builds the image archives of model-server and operator from the static binaries in
# .build/bin (made by `make binaries`), each as its Dockerfile defines it: with `docker build`
# when a Docker engine answers, otherwise with our own docker-archive writer reading the same
# Dockerfile (e2e/tools/image-archive.sh --dockerfile), no engine needed.
# Writes .build/images/{model-server,operator}.tar and prints their sizes.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${MODEL_SERVER_IMAGE:?}" "${OPERATOR_IMAGE:?}"
mkdir -p .build/images
for bin in model-server iris-operator; do
  [ -x .build/bin/$bin ] || { echo "build-images: .build/bin/$bin is missing: run 'make binaries'" >&2; exit 1; }
done

# name image dockerfile
build() {
  local name=$1 image=$2 dockerfile=$3
  local out=.build/images/$name.tar
  if [ "${USE_DOCKER:-auto}" != no ] && docker info >/dev/null 2>&1; then
    echo "build-images: $image with docker build ($dockerfile)"
    DOCKER_BUILDKIT=${DOCKER_BUILDKIT:-0} docker build -q -f "$dockerfile" -t "$image" . >/dev/null
    docker save -o "$out" "$image"
  else
    echo "build-images: $image from $dockerfile without a Docker engine (e2e/tools/image-archive.sh)"
    bash e2e/tools/image-archive.sh --dockerfile "$dockerfile" --name "$image" --out "$out"
  fi
  printf 'build-images: %-40s %s (%s bytes)\n' "$image" "$out" "$(stat -c %s "$out")"
}
build model-server "$MODEL_SERVER_IMAGE" model-server/Dockerfile
build operator "$OPERATOR_IMAGE" operator/Dockerfile
