#!/usr/bin/env bash
# Builds the image archives of model-server and operator from the static binaries in
# .build/bin (made by `make binaries`): with `docker build` when a Docker engine answers,
# otherwise with our own docker-archive writer (e2e/tools/image-archive.sh), no engine needed.
# Writes .build/images/{model-server,operator}.tar and prints their sizes.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${MODEL_SERVER_IMAGE:?}" "${OPERATOR_IMAGE:?}"
mkdir -p .build/images
for bin in model-server iris-operator; do
  [ -x .build/bin/$bin ] || { echo "build-images: .build/bin/$bin is missing: run 'make binaries'" >&2; exit 1; }
done

# name image dockerfile binary entrypoint... port
build() {
  local name=$1 image=$2 dockerfile=$3 binary=$4 port=$5
  shift 5
  local out=.build/images/$name.tar
  if [ "${USE_DOCKER:-auto}" != no ] && docker info >/dev/null 2>&1; then
    echo "build-images: $image with docker build ($dockerfile)"
    DOCKER_BUILDKIT=${DOCKER_BUILDKIT:-0} docker build -q -f "$dockerfile" -t "$image" . >/dev/null
    docker save -o "$out" "$image"
  else
    echo "build-images: $image without a Docker engine (e2e/tools/image-archive.sh)"
    local ep
    ep=$(printf "'%s'," "$@"); ep=${ep%,}
    bash e2e/tools/image-archive.sh --binary ".build/bin/$binary" --name "$image" --out "$out" \
      --user 65532:65532 --entrypoint "$ep" --port "$port"
  fi
  printf 'build-images: %-40s %s (%s bytes)\n' "$image" "$out" "$(stat -c %s "$out")"
}
build model-server "$MODEL_SERVER_IMAGE" model-server/Dockerfile model-server 5001 /model-server serve
build operator "$OPERATOR_IMAGE" operator/Dockerfile iris-operator 8080 /iris-operator
