#!/usr/bin/env bash
# sources.sh [--vendor] DIR: the Sources of packaging/rpm/ufm-pkeyd.spec, into DIR.
#   ufm-pkeyd-VERSION.tar.gz         the files git tracks (and untracked ones it does not ignore),
#                                    as they are in the work tree, under ufm-pkeyd-VERSION/
#   ufm-pkeyd.sysusers               Source2, read by %sysusers_create_compat at parse time
#   ufm-pkeyd-VERSION-vendor.tar.xz  with --vendor: every crate of Cargo.lock (`cargo vendor
#                                    --locked`) in vendor/, and .cargo/config.toml pointing
#                                    crates-io at it, so that `cargo build --frozen` needs no
#                                    network; no top directory (%setup -a 1 unpacks it inside
#                                    the package's). Made again only when Cargo.lock changed.
# The tarballs are reproducible: sorted, numeric owner 0, mtime of the last commit.
set -euo pipefail
vendor=false
if [ "${1:-}" = --vendor ]; then vendor=true; shift; fi
[ $# -eq 1 ] || { echo "usage: $0 [--vendor] DIR" >&2; exit 2; }
root=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$1"
out=$(cd "$1" && pwd)
cd "$root"
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
spec_version=$(sed -n 's/^Version: *//p' packaging/rpm/ufm-pkeyd.spec)
if [ "$version" != "$spec_version" ]; then
    echo "sources: Cargo.toml says $version, packaging/rpm/ufm-pkeyd.spec $spec_version: make them agree" >&2
    exit 2
fi
name=ufm-pkeyd-$version
mtime=@$(git log -1 --format=%ct 2>/dev/null || echo 0)
tar_opts=(--sort=name --mtime="$mtime" --owner=0 --group=0 --numeric-owner --format=gnu)

git ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
    tar -c "${tar_opts[@]}" --null -T - --transform "s|^|$name/|" |
    gzip -9 -n >"$out/$name.tar.gz.tmp"
mv "$out/$name.tar.gz.tmp" "$out/$name.tar.gz"
install -m 0644 packaging/ufm-pkeyd.sysusers "$out/ufm-pkeyd.sysusers"
echo "sources: $out/$name.tar.gz"

if $vendor; then
    stamp=$out/$name-vendor.lock
    if [ -f "$out/$name-vendor.tar.xz" ] && cmp -s Cargo.lock "$stamp"; then
        echo "sources: $out/$name-vendor.tar.xz (Cargo.lock unchanged)"
        exit 0
    fi
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    mkdir -p "$work/$name/.cargo"
    # The printed configuration is the source replacement; its directory is relative to the
    # package root, where %prep unpacks this tarball.
    cargo vendor --locked --versioned-dirs "$work/$name/vendor" >"$work/config.toml" 2>"$work/vendor.log" || { cat "$work/vendor.log" >&2; exit 1; }
    sed "s|^directory = .*|directory = \"vendor\"|" "$work/config.toml" >"$work/$name/.cargo/config.toml"
    grep -q '^replace-with = "vendored-sources"' "$work/$name/.cargo/config.toml" || {
        echo "sources: cargo vendor printed no source replacement:" >&2
        cat "$work/config.toml" >&2
        exit 1
    }
    (cd "$work/$name" && tar -c "${tar_opts[@]}" .cargo vendor) | xz -T0 -6 >"$out/$name-vendor.tar.xz.tmp"
    mv "$out/$name-vendor.tar.xz.tmp" "$out/$name-vendor.tar.xz"
    cp Cargo.lock "$stamp"
    echo "sources: $out/$name-vendor.tar.xz ($(du -h "$out/$name-vendor.tar.xz" | cut -f1), $(ls "$work/$name/vendor" | wc -l) crates)"
fi
