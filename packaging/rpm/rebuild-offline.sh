#!/usr/bin/env bash
# rebuild-offline.sh SRPM OUTDIR: `rpmbuild --rebuild SRPM` as mock or Koji would, with no
# network at all (a new network namespace: `unshare -n`, no interface but a loopback that is
# down), a fresh _topdir, and an empty CARGO_HOME (the spec sets it): the build may use only
# what the SRPM carries and the Rust toolchain. The binary RPM and rpmbuild.log land in OUTDIR.
# On a host whose rpm database does not know the build tools (Debian), BuildRequires cannot
# be checked: --nodeps then, and the check is that cargo builds from vendor/ alone.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 SRPM OUTDIR" >&2; exit 2; }
srpm=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
[ -f "$srpm" ] || { echo "rebuild-offline: $1: no such file: run make srpm" >&2; exit 2; }
mkdir -p "$2"
out=$(cd "$2" && pwd)
command -v rpmbuild >/dev/null || { echo "rebuild-offline: rpmbuild missing: dnf install rpm-build, apt-get install rpm" >&2; exit 2; }
command -v unshare >/dev/null || { echo "rebuild-offline: unshare missing (util-linux)" >&2; exit 2; }
nodeps=()
rpm -q rpm >/dev/null 2>&1 || nodeps=(--nodeps)

top=$(mktemp -d /tmp/ufm-pkeyd-rebuild.XXXXXX)
trap 'rm -rf "$top"' EXIT
rm -f "$out"/ufm-pkeyd-*.rpm
start=$SECONDS
# The proof that the network is cut, from inside the namespace the build runs in.
unshare -n -- sh -c 'if getent ahosts crates.io >/dev/null 2>&1 &&
        timeout 5 bash -c "exec 3<>/dev/tcp/crates.io/443" 2>/dev/null; then
    echo "rebuild-offline: the network is reachable inside unshare -n" >&2; exit 1; fi'
echo "rebuild-offline: rpmbuild --rebuild $(basename "$srpm") in a network namespace with no network" >&2
if ! unshare -n -- rpmbuild --rebuild "${nodeps[@]}" \
    --define "_topdir $top" --define "_rpmdir $out" \
    --define "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm" \
    "$srpm" >"$out/rpmbuild.log" 2>&1; then
    tail -n 40 "$out/rpmbuild.log" >&2
    echo "rebuild-offline: rpmbuild --rebuild failed (log above, full log $out/rpmbuild.log)" >&2
    exit 1
fi
tests=$(grep -h '^test result:' "$out/rpmbuild.log" | tail -n 1)
echo "rebuild-offline: %check: ${tests:-no test result in $out/rpmbuild.log}" >&2
echo "rebuild-offline: $(cd "$out" && ls ufm-pkeyd-*.rpm) in $((SECONDS - start)) s, offline (log $out/rpmbuild.log)" >&2
