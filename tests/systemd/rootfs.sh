#!/usr/bin/env bash
# rootfs.sh DIR: a minimal Debian bookworm with systemd for tests/systemd/run.sh, made once with
# debootstrap from deb.debian.org and kept in DIR (target/systemd-test/rootfs): a second run
# finds DIR/.complete and returns at once. The container runs with --private-network, so
# everything the test needs inside is installed here: systemd and dbus (to boot), etcd (the
# server and etcdctl), curl, ca-certificates, procps (pgrep/kill in checks), passwd and
# adduser (the .deb's postinst creates its user), man-db is left out (nothing reads man pages).
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
dir=$1
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PACKAGES=systemd,systemd-sysv,dbus,etcd-server,etcd-client,curl,ca-certificates,procps,passwd,iproute2
if [ -e "$dir/.complete" ] && [ "$(cat "$dir/.complete")" = "$PACKAGES" ]; then
    echo "rootfs: reusing $dir" >&2
    exit 0
fi
command -v debootstrap >/dev/null || { echo "rootfs: debootstrap missing: apt-get install debootstrap" >&2; exit 2; }
rm -rf "$dir" "$dir.partial"
mkdir -p "$(dirname "$dir")"
start=$SECONDS
echo "rootfs: debootstrap bookworm into $dir (about 2 minutes, once)" >&2
debootstrap --variant=minbase --include="$PACKAGES" bookworm "$dir.partial" "$MIRROR" \
    >"$dir.log" 2>&1 || { echo "rootfs: debootstrap failed, see $dir.log" >&2; exit 1; }
# No etcd started by the package at boot: the test starts its own with the flags it needs.
rm -f "$dir.partial/etc/systemd/system/multi-user.target.wants/etcd.service"
# A container needs no getty, no time sync and no network configuration.
rm -f "$dir.partial"/etc/systemd/system/getty.target.wants/* \
    "$dir.partial"/etc/systemd/system/sysinit.target.wants/systemd-timesyncd.service
echo ufm-pkeyd-test >"$dir.partial/etc/hostname"
apt_cache=$dir.partial/var/cache/apt/archives
rm -f "$apt_cache"/*.deb
mv "$dir.partial" "$dir"
echo "$PACKAGES" >"$dir/.complete"
echo "rootfs: ready in $((SECONDS - start)) s" >&2
