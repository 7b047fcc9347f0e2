#!/usr/bin/env bash
# Runs in a container of the node's Debian base image; writes to stdout a tar of what the
# kube-proxy image needs besides kube-proxy: iptables (nf_tables and legacy), ip6tables,
# conntrack and the shared libraries they load, with an ld.so cache. iptables/ip6tables and
# their -save/-restore point at the nf_tables variant, which the kind node selects on this
# kernel (its entrypoint counts the rules of both); the -legacy names are there too.
set -euo pipefail
out=/tmp/kube-proxy-root
mkdir -p "$out"
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)
files=(/usr/sbin/xtables-nft-multi /usr/sbin/xtables-legacy-multi /usr/sbin/conntrack)
files+=(/usr/lib/"$multiarch"/xtables/*.so)
# the binaries, the extension modules (some are symlinks: libxt_MASQUERADE.so -> libxt_NAT.so),
# and every shared library they need: each under its name (in the canonical directory, as /lib
# is a symlink to usr/lib), and the file a symlink points to
copy() { mkdir -p "$out$(dirname "$1")" && cp -a "$1" "$out$1"; }
declare -A seen=()
for f in "${files[@]}"; do
  for p in "$f" $(ldd "$f" 2>/dev/null | grep -o '/[^ ]*'); do
    [ -e "$p" ] || continue
    for q in "$(readlink -f "$(dirname "$p")")/$(basename "$p")" "$(readlink -f "$p")"; do
      [ -n "${seen[$q]:-}" ] && continue
      seen[$q]=1
      copy "$q"
    done
  done
done
# the dynamic loader where binaries look for it (/lib64 -> usr/lib64 on merged-/usr Debian)
for d in lib lib64 bin sbin; do [ -L "/$d" ] && ln -sfn "usr/$d" "$out/$d"; done
mkdir -p "$out/usr/lib64"
ln -sfn "/usr/lib/$multiarch/ld-linux-x86-64.so.2" "$out/usr/lib64/ld-linux-x86-64.so.2"
cd "$out/usr/sbin"
for t in iptables ip6tables; do
  for s in "" -save -restore; do
    ln -sf xtables-nft-multi "$t$s"
    ln -sf xtables-nft-multi "$t-nft$s"
    ln -sf xtables-legacy-multi "$t-legacy$s"
  done
done
mkdir -p "$out/etc" "$out/tmp" "$out/run" "$out/var/run" "$out/var/lib/kube-proxy"
chmod 1777 "$out/tmp"
cp -a /etc/ld.so.conf /etc/ld.so.conf.d "$out/etc/"
ldconfig -r "$out"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n' >"$out/etc/passwd"
printf 'root:x:0:\nnobody:x:65534:\n' >"$out/etc/group"
printf 'hosts: files dns\n' >"$out/etc/nsswitch.conf"
tar -C "$out" --numeric-owner -cf - .
