#!/usr/bin/env bash
# Installs what `make rpm`, `make deb` and `make package-check` need, each only when missing,
# and prints how long each install took (CI has a time budget):
#   ziglang (pip)                   the zig linker behind cargo-zigbuild (glibc 2.28 target)
#   cargo-zigbuild, cargo-generate-rpm, cargo-deb   (cargo install --locked)
#   rpm rpm2cpio cpio rpmlint lintian binutils systemd mandoc man-db (Debian packages, apt-get)
# Versions are pinned so that a fresh CI machine builds the same packages as the last release.
set -euo pipefail

ZIGLANG_VERSION=${ZIGLANG_VERSION:-0.17.1}
CARGO_ZIGBUILD_VERSION=${CARGO_ZIGBUILD_VERSION:-0.24.1}
CARGO_GENERATE_RPM_VERSION=${CARGO_GENERATE_RPM_VERSION:-0.21.1}
CARGO_DEB_VERSION=${CARGO_DEB_VERSION:-3.8.0}

timed() { # timed LABEL CMD... : run CMD, report its wall time on stderr
    local label=$1 start=$SECONDS
    shift
    echo "install-build-deps: installing $label" >&2
    "$@"
    echo "install-build-deps: $label installed in $((SECONDS - start)) s" >&2
}

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "install-build-deps: need root for apt-get" >&2; exit 1; }
    sudo=sudo
fi

# Debian packages: rpm (rpm, rpm2cpio), rpmlint, lintian, binutils (objdump), systemd
# (systemd-analyze), mandoc, man-db (man -l).
apt_missing=()
command -v rpm >/dev/null || apt_missing+=(rpm)
command -v rpm2cpio >/dev/null || apt_missing+=(rpm2cpio)
command -v cpio >/dev/null || apt_missing+=(cpio)
command -v rpmlint >/dev/null || apt_missing+=(rpmlint)
command -v lintian >/dev/null || apt_missing+=(lintian)
command -v objdump >/dev/null || apt_missing+=(binutils)
command -v systemd-analyze >/dev/null || apt_missing+=(systemd)
command -v mandoc >/dev/null || apt_missing+=(mandoc)
command -v man >/dev/null || apt_missing+=(man-db)
if ! command -v zig >/dev/null && ! python3 -m pip --version >/dev/null 2>&1; then
    apt_missing+=(python3-pip)
fi
if [ ${#apt_missing[@]} -gt 0 ]; then
    command -v apt-get >/dev/null || {
        echo "install-build-deps: missing ${apt_missing[*]} and no apt-get" >&2
        exit 1
    }
    timed "apt: ${apt_missing[*]}" bash -c "$sudo apt-get update -qq && \
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends ${apt_missing[*]} >/dev/null"
fi

# zig, found by cargo-zigbuild as `zig` on PATH or as `python3 -m ziglang`.
# A system Python that refuses pip (PEP 668, Debian 12) gets it in the user's site instead.
pip_ziglang() {
    python3 -m pip install --quiet --disable-pip-version-check "ziglang==$ZIGLANG_VERSION" ||
        python3 -m pip install --quiet --disable-pip-version-check --user \
            --break-system-packages "ziglang==$ZIGLANG_VERSION"
}
if ! command -v zig >/dev/null && ! python3 -m ziglang version >/dev/null 2>&1; then
    timed "ziglang $ZIGLANG_VERSION (pip)" pip_ziglang
fi

cargo_tool() { # cargo_tool CRATE VERSION COMMAND
    if ! command -v "$3" >/dev/null; then
        timed "$1 $2 (cargo install)" cargo install --quiet --locked "$1" --version "$2"
    fi
}
cargo_tool cargo-zigbuild "$CARGO_ZIGBUILD_VERSION" cargo-zigbuild
cargo_tool cargo-generate-rpm "$CARGO_GENERATE_RPM_VERSION" cargo-generate-rpm
cargo_tool cargo-deb "$CARGO_DEB_VERSION" cargo-deb

# The glibc-2.28 target needs the Rust std of the host triple only (zig provides the libc stubs).
rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-gnu ||
    rustup target add x86_64-unknown-linux-gnu
