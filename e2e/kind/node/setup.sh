#!/usr/bin/env bash
# Runs inside the node image's build container (from e2e/kind/build-node-image.sh), after the
# files were copied in: what kind's images/base/Dockerfile and `kind build node-image` do once
# the packages are installed, then the import of the images kubeadm expects.
# Usage (in the container): setup.sh IMAGES.tar
set -euo pipefail
images=$1

chmod 755 /kind /kind/bin /kind/bin/* /usr/local/bin/* /usr/local/sbin/*
# systemd in a container: only what kind enables (as kind's base Dockerfile)
find /lib/systemd/system/sysinit.target.wants/ -name "systemd-tmpfiles-setup.service" -delete
rm -f /lib/systemd/system/multi-user.target.wants/* \
  /etc/systemd/system/*.wants/* \
  /lib/systemd/system/local-fs.target.wants/* \
  /lib/systemd/system/sockets.target.wants/*udev* \
  /lib/systemd/system/sockets.target.wants/*initctl* \
  /lib/systemd/system/basic.target.wants/*
grep -q '^ReadKMsg=no' /etc/systemd/journald.conf || echo "ReadKMsg=no" >>/etc/systemd/journald.conf
ln -sf /usr/lib/systemd/systemd /sbin/init
# kind's containerd.service starts /usr/local/bin/containerd; Debian's is /usr/bin/containerd
ln -sf /usr/bin/containerd /usr/local/bin/containerd
systemctl enable kubelet.service containerd.service undo-mount-hacks.service 2>&1
systemctl mask systemd-binfmt.service 2>&1
mkdir -p /etc/kubernetes/manifests

# containerd's base OCI spec for pods (kind: "ctr oci spec" + the product-files hook, no rlimits)
ctr oci spec |
  jq '.hooks.createContainer[.hooks.createContainer | length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' |
  jq 'del(.process.rlimits)' >/etc/containerd/cri-base.json

# Import the images (as kind's imageimporter: a containerd started for the purpose, images not
# unpacked, pinned so the kubelet never removes them).
nohup containerd >/tmp/containerd-build.log 2>&1 &
ctrd=$!
for _ in $(seq 50); do
  [ -S /run/containerd/containerd.sock ] && ctr version >/dev/null 2>&1 && break
  sleep 0.2
done
ctr version >/dev/null || { cat /tmp/containerd-build.log; exit 1; }
ctr -n k8s.io images import --all-platforms --no-unpack "$images" >/tmp/import.log 2>&1 || {
  cat /tmp/import.log /tmp/containerd-build.log
  exit 1
}
for ref in $(ctr -n k8s.io images ls -q | grep -v '^sha256:'); do
  ctr -n k8s.io images label "$ref" io.cri-containerd.pinned=pinned >/dev/null
  echo "imported $ref"
done
kill "$ctrd"
wait "$ctrd" 2>/dev/null || true
rm -f "$images" /tmp/containerd-build.log /tmp/import.log
rm -rf /var/log/journal/* /var/cache/apt/archives/*.deb
