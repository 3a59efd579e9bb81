#!/usr/bin/env bash
# check-glibc.sh BINARY MAX: fails when BINARY needs a glibc symbol version newer than MAX
# (2.28 for RHEL 8), reading its dynamic symbol table with objdump -T.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 BINARY MAX_GLIBC_VERSION (e.g. 2.28)" >&2; exit 2; }
binary=$1 max=$2
[ -f "$binary" ] || { echo "check-glibc: $binary: no such file" >&2; exit 2; }
versions=$(objdump -T "$binary" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/^GLIBC_//' | sort -u -V)
[ -n "$versions" ] || { echo "check-glibc: $binary has no GLIBC_ symbol versions (static or not ELF?)" >&2; exit 1; }
highest=$(tail -n 1 <<<"$versions")
if [ "$(printf '%s\n%s\n' "$highest" "$max" | sort -V | tail -n 1)" != "$max" ]; then
    echo "check-glibc: FAIL: $binary needs GLIBC_$highest > $max; symbols:" >&2
    objdump -T "$binary" | awk -v max="$max" '
        match($0, /GLIBC_[0-9.]+/) { v = substr($0, RSTART + 6, RLENGTH - 6)
            split(v, a, "."); split(max, b, ".")
            if (a[1] > b[1] || (a[1] == b[1] && a[2] + 0 > b[2] + 0)) print "  " $NF " GLIBC_" v }' >&2
    exit 1
fi
echo "check-glibc: ok: $binary needs at most GLIBC_$highest (limit $max)"
