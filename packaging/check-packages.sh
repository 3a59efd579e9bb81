#!/usr/bin/env bash
# check-packages.sh [DIST]: checks the RPM and the .deb that `make rpm deb` left in DIST
# (default target/dist). Fails on the first broken property of a package, after running every
# check, and prints one line per check:
#   - the RPM alone: packaging/rpm/check-rpm.sh (file list, owned directories, %config,
#     scriptlets for EL8 and EL9, rpmlint), also run on the RPM rebuilt from the SRPM;
#   - the .deb's file list with modes and owners against packaging/expected/deb-files.txt;
#   - configuration file: 0640, a conffile in the .deb, given its group by postinst;
#   - maintainer scripts: user creation and the systemd handling, template instances included;
#   - the binary: the same in both packages, its version, glibc symbols <= 2.28, dependencies;
#   - lintian (overrides shipped in the .deb): no errors;
#   - both units (packaging/check-unit.sh: verify, exposure <= 2.0), man pages (mandoc -Tlint),
#     the bash, zsh and fish completions, the alert rules and the example configuration, from
#     the packages.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dist=${1:-$here/../target/dist}
dist=$(cd "$dist" 2>/dev/null && pwd) || { echo "check-packages: no ${1:-target/dist}: run make rpm deb" >&2; exit 2; }
GLIBC_MAX=${GLIBC_MAX:-2.28}
MAX_EXPOSURE=${MAX_EXPOSURE:-2.0}
export LC_ALL=C

failures=0
ok() { echo "check-packages: ok: $*"; }
bad() {
    echo "check-packages: FAIL: $*" >&2
    failures=$((failures + 1))
}

one() { # one GLOB: the single file matching GLOB
    local matches=()
    for f in $1; do [ -e "$f" ] && matches+=("$f"); done
    if [ ${#matches[@]} -ne 1 ]; then
        echo "check-packages: expected one $1, found ${#matches[@]}: run make rpm deb" >&2
        exit 2
    fi
    echo "${matches[0]}"
}
rpm_file=$(one "$dist/ufm-pkeyd-*.x86_64.rpm") || exit 2
deb_file=$(one "$dist/ufm-pkeyd_*_amd64.deb") || exit 2
for tool in rpm rpm2cpio cpio rpmlint dpkg-deb lintian objdump mandoc systemd-analyze zsh fish; do
    command -v "$tool" >/dev/null || {
        echo "check-packages: $tool missing: run packaging/install-build-deps.sh check" >&2
        exit 2
    }
done
echo "check-packages: $rpm_file"
echo "check-packages: $deb_file"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --- File lists, modes, owners, flags ---------------------------------------------------------
expected() { grep -v '^#' "$here/expected/$1"; }
if out=$("$here/rpm/check-rpm.sh" "$rpm_file" 2>&1); then
    grep -v '^check-rpm: all checks passed' <<<"$out" | sed 's/^check-rpm: ok: /check-packages: ok: RPM: /'
else
    bad "RPM: packaging/rpm/check-rpm.sh:"
    sed 's/^/  /' <<<"$out" >&2
fi
dpkg-deb -c "$deb_file" | awk '$1 !~ /^d/ {print $1, $2, $6}' | sort -k3 >"$work/deb-files.txt"
if diff -u <(expected deb-files.txt) "$work/deb-files.txt" >"$work/diff"; then
    ok ".deb file list, modes and owners match packaging/expected/deb-files.txt"
else
    bad ".deb file list differs from packaging/expected/deb-files.txt (- expected, + built):"
    sed 's/^/  /' "$work/diff" >&2
fi

# --- Configuration file -------------------------------------------------------------------------
conf=/etc/ufm-pkeyd/ufm-pkeyd.yaml
mkdir -p "$work/ctl"
dpkg-deb -e "$deb_file" "$work/ctl"
if [ "$(cat "$work/ctl/conffiles" 2>/dev/null)" = "$conf" ] &&
    grep -qx -- "-rw-r----- 0/0 .$conf" "$work/deb-files.txt" &&
    grep -q 'chgrp ufm-pkeyd "$conf"' "$work/ctl/postinst"; then
    ok ".deb: $conf is the only conffile, 0640, given group ufm-pkeyd by postinst"
else
    bad ".deb: $conf is not the only conffile with mode 0640 and a postinst chgrp"
fi
# --- Maintainer scripts -------------------------------------------------------------------------
missing=()
for needle in 'postinst:useradd --system' 'postinst:deb-systemd-helper update-state ufm-pkeyd.service' \
    'postinst:deb-systemd-invoke try-restart ufm-pkeyd.service' \
    'prerm:deb-systemd-invoke stop ufm-pkeyd.service' \
    'postrm:deb-systemd-helper purge ufm-pkeyd.service' \
    "postinst:systemctl try-restart 'ufm-pkeyd@*.service'" "prerm:systemctl stop 'ufm-pkeyd@*.service'"; do
    grep -qF -- "${needle#*:}" "$work/ctl/${needle%%:*}" 2>/dev/null || missing+=("$needle")
done
if [ ${#missing[@]} -eq 0 ]; then
    ok ".deb maintainer scripts: user, systemd enable state, restart on upgrade, stop on removal, template instances too"
else
    bad ".deb maintainer scripts lack: ${missing[*]}"
fi
# --- The binary ---------------------------------------------------------------------------------
mkdir -p "$work/rpm" "$work/deb"
(cd "$work/rpm" && rpm2cpio "$rpm_file" | cpio -idm --quiet)
dpkg-deb -x "$deb_file" "$work/deb"
if cmp -s "$work/rpm/usr/bin/ufm-pkeyd" "$work/deb/usr/bin/ufm-pkeyd"; then
    ok "the RPM and the .deb carry the same binary"
else
    bad "the RPM and the .deb carry different binaries"
fi
for pkg in rpm deb; do
    if out=$("$here/check-glibc.sh" "$work/$pkg/usr/bin/ufm-pkeyd" "$GLIBC_MAX" 2>&1); then
        ok "$pkg: ${out#check-glibc: ok: $work/$pkg}"
    else
        bad "$pkg: $out"
    fi
done
rpm_glibc=$(rpm -qp --requires "$rpm_file" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -n 1)
if [ "$(printf '%s\n%s\n' "$rpm_glibc" "$GLIBC_MAX" | sort -V | tail -n 1)" = "$GLIBC_MAX" ]; then
    ok "RPM requires at most libc.so.6(GLIBC_$rpm_glibc)"
else
    bad "RPM requires GLIBC_$rpm_glibc > $GLIBC_MAX"
fi
deb_depends=$(dpkg-deb -f "$deb_file" Depends)
if grep -qF "libc6 (>= $GLIBC_MAX)" <<<"$deb_depends"; then
    ok ".deb depends: $deb_depends"
else
    bad ".deb depends on '$deb_depends', not libc6 (>= $GLIBC_MAX)"
fi
version=$("$work/deb/usr/bin/ufm-pkeyd" --version 2>&1)
rpm_version=$(rpm -qp --qf '%{VERSION}' "$rpm_file")
deb_version=$(dpkg-deb -f "$deb_file" Version)
if [ "$version" = "ufm-pkeyd $rpm_version" ] && [ "${deb_version%-*}" = "$rpm_version" ]; then
    ok "packaged binary runs: $version (RPM $rpm_version, .deb $deb_version)"
else
    bad "versions differ: binary '$version', RPM $rpm_version, .deb $deb_version"
fi

# --- Linters ------------------------------------------------------------------------------------
# Overrides ship in the package (usr/share/lintian/overrides). As root lintian only says on
# stderr that it would rather not run as root.
if lintian --fail-on error "$deb_file" >"$work/lintian.txt" 2>"$work/lintian.err"; then
    ok "lintian: no errors; $(grep -c '^W:' "$work/lintian.txt") warnings, $(lintian --show-overrides "$deb_file" 2>/dev/null | grep -c '^O:') overridden"
    grep '^[WE]:' "$work/lintian.txt" | sed 's/^/  /'
else
    bad "lintian reports errors:"
    sed 's/^/  /' "$work/lintian.txt" "$work/lintian.err" >&2
fi

# --- Unit, man pages, completion, example configuration -----------------------------------------
for unit in ufm-pkeyd.service ufm-pkeyd@.service; do
    if cmp -s "$work/rpm/usr/lib/systemd/system/$unit" "$work/deb/usr/lib/systemd/system/$unit"; then
        ok "the RPM and the .deb carry the same $unit"
    else
        bad "the RPM and the .deb carry different (or no) $unit"
    fi
    if out=$("$here/check-unit.sh" "$work/deb/usr/lib/systemd/system/$unit" \
        "$MAX_EXPOSURE" "$work/deb/usr/bin/ufm-pkeyd" 2>&1); then
        sed 's/^check-unit: ok: /check-packages: ok: unit: /' <<<"$out"
    else
        bad "unit $unit: $out"
    fi
done
for page in usr/share/man/man8/ufm-pkeyd.8.gz usr/share/man/man5/ufm-pkeyd.yaml.5.gz; do
    for pkg in rpm deb; do
        if out=$(zcat "$work/$pkg/$page" | mandoc -Tlint -W warning 2>&1) && [ -z "$out" ]; then
            :
        else
            bad "$pkg: mandoc -Tlint -W warning /$page: $out"
            continue 2
        fi
    done
    ok "/$page: gzip, mandoc -Tlint -W warning clean (both packages)"
done
if out=$(bash -c 'source "$1" && complete -p ufm-pkeyd' _ \
    "$work/deb/usr/share/bash-completion/completions/ufm-pkeyd" 2>&1) &&
    [ "$out" = "complete -F _ufm_pkeyd ufm-pkeyd" ]; then
    ok "bash completion: $out"
else
    bad "bash completion does not register: $out"
fi
# zsh and fish: the files parse (tests/docs_consistency.rs checks what they offer).
if zsh -n "$work/rpm/usr/share/zsh/site-functions/_ufm-pkeyd" 2>"$work/zsh.err" &&
    cmp -s "$work/rpm/usr/share/zsh/site-functions/_ufm-pkeyd" "$work/deb/usr/share/zsh/vendor-completions/_ufm-pkeyd" &&
    head -n 1 "$work/deb/usr/share/zsh/vendor-completions/_ufm-pkeyd" | grep -qx '#compdef ufm-pkeyd'; then
    ok "zsh completion: #compdef ufm-pkeyd, zsh -n clean, the same in both packages"
else
    bad "zsh completion: $(cat "$work/zsh.err")"
fi
if out=$(fish --no-config -c 'source $argv[1]; and complete -C"ufm-pkeyd "' \
    "$work/deb/usr/share/fish/vendor_completions.d/ufm-pkeyd.fish" 2>&1) && grep -q '^monitor' <<<"$out" &&
    cmp -s "$work/rpm/usr/share/fish/vendor_completions.d/ufm-pkeyd.fish" "$work/deb/usr/share/fish/vendor_completions.d/ufm-pkeyd.fish"; then
    ok "fish completion: loads and offers the sub-commands, the same in both packages"
else
    bad "fish completion: $out"
fi
# The alert rules: the same file in both packages, and valid (tests/alert_rules.rs tests them).
rules=usr/share/doc/ufm-pkeyd/ufm-pkeyd-alerts.yml
if ! cmp -s "$work/rpm/$rules" "$work/deb/$rules"; then
    bad "/$rules: missing from a package, or not the same in both"
elif ! command -v promtool >/dev/null; then
    ok "/$rules: the same in both packages (promtool not installed: make test-deps; not checked)"
elif out=$(promtool check rules "$work/deb/$rules" 2>&1); then
    ok "/$rules: the same in both packages, promtool check rules clean"
else
    bad "/$rules: promtool check rules: $out"
fi
example="$work/deb$conf"
if grep -q '^[a-z]' "$example"; then
    bad "$conf sets keys: every key of the example must be commented out"
elif ! "$work/deb/usr/bin/ufm-pkeyd" config --no-pcocc --config "$example" >/dev/null 2>&1; then
    bad "the packaged binary rejects the packaged $conf"
else
    sed -n 's/^#\([a-z][a-z0-9-]*:\)/\1/p' "$example" >"$work/uncommented.yaml"
    if "$work/deb/usr/bin/ufm-pkeyd" config --no-pcocc --config "$work/uncommented.yaml" \
        >"$work/config.txt" 2>&1; then
        ok "$conf: every key commented out; uncommented, the binary accepts all $(wc -l <"$work/uncommented.yaml") keys"
    else
        bad "$conf with its keys uncommented is rejected: $(cat "$work/config.txt")"
    fi
fi

if [ "$failures" -gt 0 ]; then
    echo "check-packages: $failures checks failed" >&2
    exit 1
fi
echo "check-packages: all checks passed"
