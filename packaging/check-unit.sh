#!/usr/bin/env bash
# check-unit.sh [UNIT [MAX_EXPOSURE [BINARY]]]: checks a systemd unit of ufm-pkeyd
# (ufm-pkeyd.service, or the template ufm-pkeyd@.service through an instance of it).
#  - `systemd-analyze verify` of the unit alone and, for ufm-pkeyd.service, with the RHEL 8
#    drop-in (packaging/el8-credentials.conf) is silent: any message (unknown key, bad value)
#    fails;
#  - `systemd-analyze security --offline=yes` scores it at most MAX_EXPOSURE (default 2.0).
# The unit's /usr/bin/ufm-pkeyd is pointed at BINARY (default: the release or packaged binary
# in target/, else /bin/true) so that verify can check ExecStart on a machine without the
# package installed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
unit=${1:-$here/ufm-pkeyd.service}
max=${2:-2.0}
binary=${3:-}
if [ -z "$binary" ]; then
    for candidate in "$here/../target/x86_64-unknown-linux-gnu/release/ufm-pkeyd" \
        "$here/../target/release/ufm-pkeyd" /bin/true; do
        [ -x "$candidate" ] && { binary=$(cd "$(dirname "$candidate")" && pwd)/$(basename "$candidate"); break; }
    done
fi
command -v systemd-analyze >/dev/null || { echo "check-unit: systemd-analyze missing (apt-get install systemd)" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
file=$(basename "$unit")
name=$file
case $file in *@.service) name=${file%@.service}@check.service ;; esac
mkdir -p "$work/units/$file.d"
sed "s|/usr/bin/ufm-pkeyd|$binary|g" "$unit" > "$work/units/$file"
status=0

verify() { # verify LABEL: systemd-analyze verify must print nothing
    local out
    out=$(SYSTEMD_UNIT_PATH="$work/units:" systemd-analyze verify --man=no "$name" 2>&1) || true
    if [ -n "$out" ]; then
        echo "check-unit: FAIL: systemd-analyze verify ($1):" >&2
        sed 's/^/  /' <<<"$out" >&2
        status=1
    else
        echo "check-unit: ok: systemd-analyze verify ($1) is silent"
    fi
}
verify "$name"
if [ "$file" = ufm-pkeyd.service ]; then
    sed "s|/usr/bin/ufm-pkeyd|$binary|g" "$here/el8-credentials.conf" \
        > "$work/units/$file.d/el8-credentials.conf"
    verify "$name + el8-credentials.conf drop-in"
    rm "$work/units/$file.d/el8-credentials.conf"
fi

# A UTF-8 locale, or the table marks open items with ASCII instead of ✗.
# An instance of a template is scored through a copy named after it.
[ "$name" = "$file" ] || cp "$work/units/$file" "$work/units/$name"
report=$(LC_ALL=C.UTF-8 systemd-analyze security --offline=yes --no-pager \
    "$work/units/$name" 2>&1) || true
score=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' <<<"$report")
if [ -z "$score" ]; then
    echo "check-unit: FAIL: no exposure level in systemd-analyze security output:" >&2
    echo "$report" >&2
    exit 1
fi
if awk -v s="$score" -v m="$max" 'BEGIN { exit !(s + 0 > m + 0) }'; then
    echo "check-unit: FAIL: exposure $score > $max; not covered:" >&2
    grep '✗' <<<"$report" >&2 || true
    status=1
else
    echo "check-unit: ok: $name: exposure $score <= $max ($(grep -c '✗' <<<"$report" || true) items open:" \
        "$(grep '✗' <<<"$report" | awk '{print $2}' | paste -sd' ' -))"
fi
exit $status
