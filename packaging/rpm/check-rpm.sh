#!/usr/bin/env bash
# check-rpm.sh RPM [SRPM]: checks a binary RPM of ufm-pkeyd, from `make rpm` (prebuilt binary)
# or from `rpmbuild --rebuild` of the SRPM (make rpm-rebuild), and the SRPM when given. One
# line per check; exit 1 after all of them when one failed.
#   - file list with modes, owners and RPM flags against packaging/expected/rpm-files.txt;
#   - every directory above a packaged file is the package's (%dir) or the system's;
#   - /etc/ufm-pkeyd/ufm-pkeyd.yaml: the only %config, noreplace, 0640 root:ufm-pkeyd, and an
#     edited copy survives a reinstall and is saved on erase (rpm --root, no scripts);
#   - scriptlets: the user in %pre; preset, disable --now and restart for EL8 (systemctl) and
#     EL9 (systemd-update-helper), instances of the template included;
#   - digests, and rpmlint (packaging/rpmlint.toml) with no error;
#   - the SRPM: the spec, the sources and vendored crates for every package of Cargo.lock with
#     the .cargo/config.toml source replacement, rpmlint with no error.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
[ $# -ge 1 ] && [ $# -le 2 ] || { echo "usage: $0 RPM [SRPM]" >&2; exit 2; }
rpm_file=$(realpath -e "$1" 2>/dev/null || echo "$1") srpm=${2:+$(realpath -e "$2" 2>/dev/null || echo "$2")}
[ -f "$rpm_file" ] || { echo "check-rpm: $rpm_file: no such file: run make rpm" >&2; exit 2; }
for tool in rpm rpmlint cpio rpm2cpio; do
    command -v "$tool" >/dev/null || { echo "check-rpm: $tool missing: run packaging/install-build-deps.sh check" >&2; exit 2; }
done
export LC_ALL=C
failures=0
ok() { echo "check-rpm: ok: $*"; }
bad() {
    echo "check-rpm: FAIL: $*" >&2
    failures=$((failures + 1))
}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "check-rpm: $rpm_file"

# --- Files, directories, modes ------------------------------------------------------------------
grep -v '^#' "$here/expected/rpm-files.txt" >"$work/expected.txt"
rpm -qp --qf '[%{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILEFLAGS:fflags} %{FILENAMES}\n]' \
    "$rpm_file" | sed 's/  */ /g' >"$work/files.txt"
if diff -u "$work/expected.txt" "$work/files.txt" >"$work/diff"; then
    ok "file list, modes, owners and flags match packaging/expected/rpm-files.txt"
else
    bad "file list differs from packaging/expected/rpm-files.txt (- expected, + built):"
    sed 's/^/  /' "$work/diff" >&2
fi
# Directories owned by filesystem, systemd, man-db and the like on EL: not this package's.
system_dirs=" / /etc /usr /usr/bin /usr/lib /usr/lib/systemd /usr/lib/systemd/system
 /usr/lib/sysusers.d /usr/share /usr/share/doc /usr/share/licenses /usr/share/man
 /usr/share/man/man5 /usr/share/man/man8 /var /var/lib "
system_dirs=" $(echo $system_dirs) "
rpm -qpl "$rpm_file" >"$work/paths.txt"
unowned=()
while read -r path; do
    dir=$(dirname "$path")
    while [ "$dir" != / ]; do
        if [[ $system_dirs != *" $dir "* ]] && ! grep -qx -- "$dir" "$work/paths.txt"; then
            unowned+=("$dir")
        fi
        dir=$(dirname "$dir")
    done
done <"$work/paths.txt"
if [ ${#unowned[@]} -eq 0 ]; then
    ok "every directory of the package is owned (%dir), the others are the system's"
else
    bad "directories neither owned nor the system's: $(printf '%s\n' "${unowned[@]}" | sort -u | paste -sd' ' -)"
fi

# --- Configuration file -------------------------------------------------------------------------
conf=/etc/ufm-pkeyd/ufm-pkeyd.yaml
if [ "$(rpm -qp --configfiles "$rpm_file")" = "$conf" ] &&
    grep -qx -- "-rw-r----- root:ufm-pkeyd cn $conf" "$work/files.txt"; then
    ok "$conf is the only %config, noreplace, 0640 root:ufm-pkeyd"
else
    bad "$conf is not the only %config(noreplace) file with mode 0640 root:ufm-pkeyd"
fi
root="$work/rpmroot"
mkdir -p "$root"
rpm_q() { rpm --root "$root" --dbpath /var/lib/rpm --nodeps --noscripts "$@" 2>&1 | grep -v 'does not exist - using root' || true; }
rpm_q -i "$rpm_file" >/dev/null
echo "etcd-host: edited.example.org" >>"$root$conf"
rpm_q -U --replacepkgs "$rpm_file" >/dev/null
if grep -q edited.example.org "$root$conf" && [ "$(stat -c %a "$root$conf")" = 640 ] &&
    [ -x "$root/usr/bin/ufm-pkeyd" ] && [ -f "$root/usr/lib/systemd/system/ufm-pkeyd@.service" ] &&
    [ "$(stat -c %a "$root/var/lib/ufm-pkeyd")" = 755 ]; then
    ok "rpm --root: files in place, /var/lib/ufm-pkeyd 0755, an edited $conf survives a reinstall"
else
    bad "rpm --root: an edited $conf was not kept across a reinstall, or files are missing"
fi
rpm_q -e ufm-pkeyd >/dev/null
if [ -f "$root$conf.rpmsave" ] && [ ! -e "$root/usr/bin/ufm-pkeyd" ]; then
    ok "rpm --root: erase keeps the edited configuration as $conf.rpmsave"
else
    bad "rpm --root: erase did not save the edited configuration as .rpmsave"
fi

# --- Scriptlets ---------------------------------------------------------------------------------
rpm -qp --scripts "$rpm_file" >"$work/scripts.txt"
missing=()
instances="list-units --all --type=service --no-legend --plain 'ufm-pkeyd@*.service'"
for needle in 'preinstall scriptlet' 'groupadd -r ufm-pkeyd' 'useradd -r -g ufm-pkeyd -d /var/lib/ufm-pkeyd' \
    'postinstall scriptlet' 'systemd-update-helper install-system-units ufm-pkeyd.service' \
    'systemctl --no-reload preset ufm-pkeyd.service' \
    'preuninstall scriptlet' 'systemd-update-helper remove-system-units ufm-pkeyd.service $instances' \
    'systemctl --no-reload disable --now ufm-pkeyd.service $instances' \
    'postuninstall scriptlet' 'systemd-update-helper mark-restart-system-units ufm-pkeyd.service $instances' \
    'systemctl try-restart ufm-pkeyd.service $instances' "$instances"; do
    grep -qF -- "$needle" "$work/scripts.txt" || missing+=("$needle")
done
if [ ${#missing[@]} -eq 0 ]; then
    ok "scriptlets: user in %pre; preset, disable --now, restart (EL8 and EL9), template instances too"
else
    bad "scriptlets lack: ${missing[*]}"
fi
# Each scriptlet is valid sh.
awk '/scriptlet \(using \/bin\/sh\):$/ { n++; f = sprintf("%s/scriptlet%d.sh", dir, n); next } n { print > f }' \
    dir="$work" "$work/scripts.txt"
syntax=$(for f in "$work"/scriptlet*.sh; do sh -n "$f" 2>&1; done)
if [ -z "$syntax" ]; then ok "scriptlets parse with sh -n"; else bad "scriptlets: $syntax"; fi
if rpm -K --nosignature "$rpm_file" >/dev/null; then ok "digests (rpm -K)"; else bad "digests (rpm -K)"; fi

# --- rpmlint ------------------------------------------------------------------------------------
lint() { # lint FILE LABEL
    if rpmlint -c "$here/rpmlint.toml" "$1" >"$work/rpmlint.txt" 2>&1; then
        ok "rpmlint $2: $(tail -n 1 "$work/rpmlint.txt" | sed 's/^ *//; s/ has taken.*//')"
        grep -E '^ufm-pkeyd[^:]*: [WE]:' "$work/rpmlint.txt" | sed 's/^/  /'
    else
        bad "rpmlint $2 reports errors:"
        sed 's/^/  /' "$work/rpmlint.txt" >&2
    fi
}
lint "$rpm_file" RPM

# --- SRPM ---------------------------------------------------------------------------------------
if [ -n "$srpm" ]; then
    version=$(rpm -qp --qf '%{VERSION}' "$srpm")
    mkdir -p "$work/srpm"
    (cd "$work/srpm" && rpm2cpio "$srpm" | cpio -idm --quiet)
    expected_files="ufm-pkeyd-$version-vendor.tar.xz ufm-pkeyd-$version.tar.gz ufm-pkeyd.spec ufm-pkeyd.sysusers"
    if [ "$(ls "$work/srpm" | paste -sd' ' -)" = "$expected_files" ]; then
        ok "SRPM: $expected_files"
    else
        bad "SRPM holds $(ls "$work/srpm" | paste -sd' ' -), not $expected_files"
    fi
    mkdir -p "$work/vendor"
    tar -xJf "$work/srpm/ufm-pkeyd-$version-vendor.tar.xz" -C "$work/vendor" 2>/dev/null
    crates=$(ls "$work/vendor/vendor" 2>/dev/null | wc -l)
    locked=$(tar -xzOf "$work/srpm/ufm-pkeyd-$version.tar.gz" "ufm-pkeyd-$version/Cargo.lock" | grep -c '^source = "registry+')
    if grep -q '^replace-with = "vendored-sources"' "$work/vendor/.cargo/config.toml" 2>/dev/null &&
        grep -q '^directory = "vendor"' "$work/vendor/.cargo/config.toml" && [ "$crates" -eq "$locked" ]; then
        ok "SRPM: $crates vendored crates (every registry package of Cargo.lock), .cargo/config.toml replaces crates-io"
    else
        bad "SRPM: $crates vendored crates for $locked in Cargo.lock, or no source replacement in .cargo/config.toml"
    fi
    lint "$srpm" SRPM
fi

if [ "$failures" -gt 0 ]; then
    echo "check-rpm: $failures checks failed" >&2
    exit 1
fi
echo "check-rpm: all checks passed"
