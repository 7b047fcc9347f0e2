#!/usr/bin/env bash
# Builds the kind node image kindest/node:$K8S_VERSION locally, with nothing pulled from a
# registry (`kind build node-image` fetches images unconditionally, so this assembles the image
# the way it does, by hand):
#   1. rootfs   Debian bookworm from Debian's packages (debootstrap --variant=minbase + systemd,
#               containerd, runc, CNI plugins, iptables, ...), `docker import`ed as a base image;
#               cached as a tarball in $IRIS_CACHE/kind-rootfs-<hash>/
#   2. images   the images `kubeadm config images list` names (kube-apiserver,
#               kube-controller-manager, kube-scheduler, kube-proxy, etcd, coredns, pause), built
#               FROM scratch out of our static binaries, tagged with the registry.k8s.io names
#               kubeadm expects, and `docker save`d into one archive
#   3. node     a container of the base image gets kind's base files (entrypoint, systemd units,
#               kubelet drop-ins, /kind/bin scripts, sysctls, crictl.yaml, from the
#               sigs.k8s.io/kind module), our containerd config, runc-wrapper, crictl, kubeadm,
#               kubelet, kubectl, /kind/version, a static bridge CNI configuration; the images
#               are imported into its containerd; `docker commit` makes the node image.
# The node image carries a label with a hash of all its inputs; when the image with that tag
# and label exists the build is skipped. Prints each step's time.
#
# Usage: e2e/kind/build-node-image.sh [--force]     (as root; starts a Docker engine if needed)
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
kind_need_root build-node-image.sh
force=0
[ "${1:-}" = --force ] && force=1

t_start=$SECONDS
export DOCKER_BUILDKIT=0 # the classic builder: Debian's docker 20.10 has no buildx
LABEL_KEY=dev.iris-operator.node-inputs
SUITE=bookworm
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
DEBIAN_SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
# What kind's base image installs (images/base/Dockerfile), from Debian: containerd, runc and the
# CNI plugins included. jq: for containerd's base spec and kind's mount-product-files.sh hook.
PACKAGES=(
  systemd systemd-sysv dbus libpam-systemd
  conntrack iptables nftables iproute2 ethtool util-linux mount kmod libseccomp2 pigz
  bash ca-certificates jq procps e2fsprogs
  containerd runc containernetworking-plugins
)

# --- 0. tools ---------------------------------------------------------------------------------
kind_timed "docker engine" bash "$KIND_DIR/docker.sh" start
kind_timed "tools (kubernetes, etcd, crictl)" bash "$REPO_DIR/e2e/tools/build-tools.sh" k8s etcd crictl
kind_timed "tools (runc-wrapper, pause, coredns)" bash "$KIND_DIR/build-bins.sh" wrapper pause coredns
command -v debootstrap >/dev/null || {
  kind_log "installing debootstrap (Debian package)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends debootstrap >&2 ||
    { DEBIAN_FRONTEND=noninteractive apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends debootstrap >&2; }
}
KIND_MOD=$(cd /tmp && go mod download -json "sigs.k8s.io/kind@$KIND_VERSION" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')
KIND_FILES=$KIND_MOD/images/base/files
[ -x "$KIND_FILES/usr/local/bin/entrypoint" ] || [ -f "$KIND_FILES/usr/local/bin/entrypoint" ] ||
  kind_die "kind's base files not found in the sigs.k8s.io/kind@$KIND_VERSION module ($KIND_FILES)"

# The images kubeadm expects, and where each binary comes from.
mapfile -t KUBEADM_IMAGES < <("$K8S_BIN/kubeadm" config images list --kubernetes-version "$K8S_VERSION")
image_for() { printf '%s\n' "${KUBEADM_IMAGES[@]}" | grep -E "/$1:" | head -1; }
IMG_PAUSE=$(image_for pause)
IMG_COREDNS=$(image_for coredns)
IMG_ETCD=$(image_for etcd)
PAUSE_BIN=$IRIS_CACHE/pause-${IMG_PAUSE##*:}/bin/pause
COREDNS_BIN=$IRIS_CACHE/coredns-${IMG_COREDNS##*:}/bin/coredns
for f in "$PAUSE_BIN" "$COREDNS_BIN" "$ETCD_BIN/etcd" "$CRICTL_BIN/crictl" "$RUNC_WRAPPER_BIN/runc-wrapper" \
  "$K8S_BIN"/{kubeadm,kubelet,kubectl,kube-apiserver,kube-controller-manager,kube-scheduler,kube-proxy}; do
  [ -x "$f" ] || kind_die "missing $f"
done

# --- inputs hash --------------------------------------------------------------------------------
rootfs_key=$(printf '%s\n' "$SUITE" "$DEBIAN_MIRROR" "${PACKAGES[@]}" "rootfs-v1" | sha256sum | cut -c1-12)
BASE_IMAGE=iris-operator/kind-base:$rootfs_key
inputs_hash=$(
  {
    echo "$rootfs_key $K8S_VERSION $KIND_VERSION ${KUBEADM_IMAGES[*]}"
    cat "$KIND_DIR/build-node-image.sh" "$KIND_DIR/lib.sh" "$KIND_DIR"/node/*
    (cd "$KIND_FILES" && find . -type f | sort | xargs sha256sum)
    sha256sum "$PAUSE_BIN" "$COREDNS_BIN" "$ETCD_BIN/etcd" "$CRICTL_BIN/crictl" "$RUNC_WRAPPER_BIN/runc-wrapper" \
      "$K8S_BIN"/{kubeadm,kubelet,kubectl,kube-apiserver,kube-controller-manager,kube-scheduler,kube-proxy} | cut -d' ' -f1
  } | sha256sum | cut -c1-16
)
have=$(docker image inspect "$KIND_NODE_IMAGE" --format "{{ index .Config.Labels \"$LABEL_KEY\" }}" 2>/dev/null || true)
if [ "$force" = 0 ] && [ "$have" = "$inputs_hash" ]; then
  kind_log "node image $KIND_NODE_IMAGE is up to date (inputs $inputs_hash): nothing to build ($((SECONDS - t_start)) s)"
  exit 0
fi
kind_log "building $KIND_NODE_IMAGE (inputs $inputs_hash${have:+, image has $have})"

work=$(mktemp -d "${TMPDIR:-/tmp}/iris-kind-build.XXXXXX")
build_ctr=""
cleanup() {
  [ -z "$build_ctr" ] || docker rm -f -v "$build_ctr" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# --- 1. rootfs ----------------------------------------------------------------------------------
rootfs_dir=$IRIS_CACHE/kind-rootfs-$rootfs_key
rootfs_tar=$rootfs_dir/rootfs.tar
make_rootfs() {
  local root=$rootfs_dir/tmp-root
  rm -rf "$root"
  mkdir -p "$root"
  local inc
  inc=$(IFS=,; echo "${PACKAGES[*]}")
  debootstrap --variant=minbase --include="$inc" "$SUITE" "$root" "$DEBIAN_MIRROR" >"$rootfs_dir/debootstrap.log" 2>&1 ||
    { tail -n 30 "$rootfs_dir/debootstrap.log" >&2; return 1; }
  # Debian's stable updates and security fixes, like the host.
  cat >"$root/etc/apt/sources.list" <<SRC
deb $DEBIAN_MIRROR $SUITE main
deb $DEBIAN_MIRROR $SUITE-updates main
deb $DEBIAN_SECURITY_MIRROR $SUITE-security main
SRC
  printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
  chmod +x "$root/usr/sbin/policy-rc.d"
  {
    chroot "$root" apt-get update &&
      DEBIAN_FRONTEND=noninteractive chroot "$root" apt-get -y -o Dpkg::Options::=--force-confold upgrade
  } >>"$rootfs_dir/debootstrap.log" 2>&1 || { tail -n 30 "$rootfs_dir/debootstrap.log" >&2; return 1; }
  chroot "$root" apt-get clean
  rm -f "$root/usr/sbin/policy-rc.d"
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/log/*.log "$root"/var/log/apt/* \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/tmp/*
  : >"$root/etc/resolv.conf"
  echo kind >"$root/etc/hostname"
  rm -f "$root/etc/machine-id"
  : >"$root/etc/machine-id"
  tar -C "$root" --numeric-owner -cf "$rootfs_tar.tmp" .
  mv "$rootfs_tar.tmp" "$rootfs_tar"
  rm -rf "$root"
}
if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  kind_log "1. rootfs: base image $BASE_IMAGE exists"
else
  mkdir -p "$rootfs_dir"
  if [ -f "$rootfs_tar" ]; then
    kind_log "1. rootfs: cached $rootfs_tar"
  else
    kind_timed "1. rootfs: debootstrap $SUITE (${#PACKAGES[@]} packages + dependencies)" make_rootfs
  fi
  kind_timed "1. rootfs: docker import as $BASE_IMAGE" docker import \
    -c 'ENV container=docker' -c 'ENTRYPOINT ["/sbin/init"]' "$rootfs_tar" "$BASE_IMAGE" >/dev/null
fi

# docker build, quietly (the classic builder's deprecation notice filtered out)
dbuild() {
  local err
  err=$(docker build -q "$@" 2>&1 >/dev/null) || { printf '%s\n' "$err" >&2; return 1; }
  printf '%s\n' "$err" | grep -v -e '^DEPRECATED' -e 'BuildKit is currently disabled' -e 'environment-variable' -e '^$' >&2 || true
}

# --- 2. component images ------------------------------------------------------------------------
# A context per image: the binary, a minimal /etc and /tmp, and a FROM-scratch Dockerfile.
skeleton() {
  local d=$1
  mkdir -p "$d/root/etc" "$d/root/tmp"
  chmod 1777 "$d/root/tmp"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$d/root/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' >"$d/root/etc/group"
  printf 'hosts: files dns\n' >"$d/root/etc/nsswitch.conf"
}
# scratch_image TAG BINARY DEST [extra Dockerfile lines...]
scratch_image() {
  local tag=$1 bin=$2 dest=$3
  shift 3
  local d
  d=$work/img/$(basename "$dest")
  mkdir -p "$d"
  skeleton "$d"
  mkdir -p "$d/root$(dirname "$dest")"
  cp "$bin" "$d/root$dest"
  chmod 0755 "$d/root$dest"
  {
    echo "FROM scratch"
    echo "COPY root/ /"
    echo "ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin"
    echo "LABEL org.opencontainers.image.source=iris-operator/e2e/kind $LABEL_KEY=$inputs_hash"
    printf '%s\n' "$@"
    echo "ENTRYPOINT [\"$dest\"]"
  } >"$d/Dockerfile"
  dbuild -t "$tag" "$d"
}
build_images() {
  local c
  for c in kube-apiserver kube-controller-manager kube-scheduler; do
    scratch_image "$(image_for "$c")" "$K8S_BIN/$c" "/usr/local/bin/$c"
  done
  scratch_image "$IMG_ETCD" "$ETCD_BIN/etcd" /usr/local/bin/etcd \
    "LABEL dev.iris-operator.etcd-version=$ETCD_VERSION"
  scratch_image "$IMG_COREDNS" "$COREDNS_BIN" /coredns "EXPOSE 53 53/udp"
  scratch_image "$IMG_PAUSE" "$PAUSE_BIN" /pause "USER 65535:65535"
  # kube-proxy runs iptables: its image gets iptables, conntrack and their libraries from the
  # node's Debian base.
  local d=$work/img/kube-proxy
  mkdir -p "$d/root/usr/local/bin"
  docker run --rm -i --entrypoint bash "$BASE_IMAGE" -s <"$KIND_DIR/node/kube-proxy-root.sh" >"$d/iptables-root.tar"
  cp "$K8S_BIN/kube-proxy" "$d/root/usr/local/bin/kube-proxy"
  cat >"$d/Dockerfile" <<DF
FROM scratch
ADD iptables-root.tar /
COPY root/ /
ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin
LABEL org.opencontainers.image.source=iris-operator/e2e/kind $LABEL_KEY=$inputs_hash
ENTRYPOINT ["/usr/local/bin/kube-proxy"]
DF
  dbuild -t "$(image_for kube-proxy)" "$d"
  # a smoke test: the iptables in the image loads the extensions kube-proxy's rules use
  local ipt=(docker run --rm --cap-add NET_ADMIN --entrypoint iptables-restore -i "$(image_for kube-proxy)" --test)
  "${ipt[@]}" <<'RULES' >&2
*nat
:KUBE-TEST - [0:0]
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-TEST
-A KUBE-TEST -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-TEST -j MARK --xor-mark 0x4000
-A KUBE-TEST -j MASQUERADE --random-fully
-A KUBE-TEST -m addrtype --dst-type LOCAL -j RETURN
-A KUBE-TEST -p tcp -m tcp -m statistic --mode random --probability 0.5 -j DNAT --to-destination 10.244.0.2:53
-A KUBE-TEST -m conntrack --ctstate INVALID -j RETURN
COMMIT
*filter
:KUBE-TEST - [0:0]
-A KUBE-TEST -m conntrack --ctstate NEW -m comment --comment "x" -j REJECT
-A KUBE-TEST -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A KUBE-TEST -m limit --limit 1/s -j ACCEPT
COMMIT
RULES
  docker run --rm --entrypoint iptables "$(image_for kube-proxy)" --version >&2
  docker save -o "$work/images.tar" "${KUBEADM_IMAGES[@]}"
  kind_log "   images: $(printf '%s ' "${KUBEADM_IMAGES[@]}")($(du -m "$work/images.tar" | cut -f1) MB)"
}
kind_timed "2. images: build ${#KUBEADM_IMAGES[@]} images FROM scratch and save them" build_images

# --- 3. node --------------------------------------------------------------------------------------
stage_files() {
  local o=$work/overlay
  mkdir -p "$o"
  # kind's base files (images/base/files in the sigs.k8s.io/kind module)
  cp -a "$KIND_FILES/." "$o/"
  chmod -R u+w "$o"
  find "$o" -type d -exec chmod 0755 {} +
  find "$o" -type f -exec chmod 0644 {} +
  chmod 0755 "$o"/usr/local/bin/* "$o"/kind/bin/*
  # ours
  mkdir -p "$o/usr/local/sbin" "$o/usr/bin" "$o/etc/cni/net.d" "$o/kind/manifests" "$o/etc/sysctl.d"
  sed "s|@PAUSE_IMAGE@|$IMG_PAUSE|" "$KIND_DIR/node/containerd-config.toml" >"$o/etc/containerd/config.toml"
  cp "$KIND_DIR/node/10-iris-bridge.conflist" "$o/etc/cni/net.d/"
  cp "$KIND_DIR/node/20-iris-bridge.conf" "$o/etc/sysctl.d/"
  cp "$KIND_DIR/node/default-cni.yaml" "$o/kind/manifests/default-cni.yaml"
  install -m 0755 "$RUNC_WRAPPER_BIN/runc-wrapper" "$o/usr/local/sbin/runc-wrapper"
  install -m 0755 "$CRICTL_BIN/crictl" "$o/usr/local/bin/crictl"
  install -m 0755 "$K8S_BIN/kubeadm" "$K8S_BIN/kubelet" "$K8S_BIN/kubectl" "$o/usr/bin/"
  printf '%s' "$K8S_VERSION" >"$o/kind/version"
  chmod 0644 "$o"/etc/containerd/config.toml "$o"/etc/cni/net.d/* "$o"/etc/sysctl.d/* "$o"/kind/manifests/* "$o/kind/version"
}
assemble() {
  stage_files
  build_ctr=iris-kind-build-$$
  docker run -d --name "$build_ctr" --entrypoint sleep --security-opt seccomp=unconfined "$BASE_IMAGE" infinity >/dev/null
  tar -C "$work/overlay" --numeric-owner --owner=0 --group=0 -cf - . | docker exec -i "$build_ctr" tar -C / --no-overwrite-dir -xpf -
  docker cp "$work/images.tar" "$build_ctr:/tmp/images.tar"
  docker exec -i "$build_ctr" bash -s /tmp/images.tar <"$KIND_DIR/node/setup.sh" | sed 's/^/   /' >&2
}
kind_timed "3. node: kind base files, binaries, containerd config, image import" assemble
commit() {
  local tmp=iris-operator/kind-node-build:$inputs_hash
  docker commit --change 'ENTRYPOINT [ "/usr/local/bin/entrypoint", "/sbin/init" ]' "$build_ctr" "$tmp" >/dev/null
  # `docker commit` takes no STOPSIGNAL; a one-line build adds it (no new layer) and the labels.
  mkdir -p "$work/final"
  cat >"$work/final/Dockerfile" <<DF
FROM $tmp
ENV container=docker
# systemd exits on SIGRTMIN+3 (SIGTERM makes it re-execute)
STOPSIGNAL SIGRTMIN+3
LABEL $LABEL_KEY=$inputs_hash dev.iris-operator.kubernetes-version=$K8S_VERSION
ENTRYPOINT [ "/usr/local/bin/entrypoint", "/sbin/init" ]
DF
  dbuild -t "$KIND_NODE_IMAGE" "$work/final"
  docker rmi "$tmp" >/dev/null
}
kind_timed "3. node: docker commit $KIND_NODE_IMAGE" commit
docker rm -f -v "$build_ctr" >/dev/null
build_ctr=""
# earlier builds of the node image and its images, now untagged, and base images of other
# package sets
docker image prune -f --filter "label=$LABEL_KEY" >/dev/null 2>&1 || true
for t in $(docker images iris-operator/kind-base --format '{{.Tag}}'); do
  [ "$t" = "$rootfs_key" ] || docker rmi "iris-operator/kind-base:$t" >/dev/null 2>&1 || true
done
kind_log "node image $KIND_NODE_IMAGE built ($(docker image inspect "$KIND_NODE_IMAGE" --format '{{.Size}}' | awk '{printf "%d MB", $1/1048576}')) in $((SECONDS - t_start)) s"
