#!/usr/bin/env bash
# install-build-deps.sh [zig|rpmbuild|deb|check|all]: what the packaging targets need, each
# tool only when missing, with the wall time of each install on stderr (CI has a time budget).
#   zig       make rpm, make deb: cargo-zigbuild (cargo install) and zig from PyPI's ziglang,
#             in a venv under target/ (never the system Python): a glibc-2.28 binary
#   rpmbuild  make rpm, make srpm: only checks that rpmbuild is there and says how to get it
#   deb       make deb: cargo-deb (cargo install)
#   check     make package-check: rpm, rpm2cpio, cpio, rpmlint, lintian, binutils (objdump),
#             systemd (systemd-analyze), mandoc, man-db, zsh, fish (Debian packages, apt-get)
#   all       (default, CI) all of the above, rpm's tools installed with apt-get
# Versions are pinned so that a fresh CI machine builds the same packages as the last release.
set -euo pipefail
mode=${1:-all}
case $mode in zig | rpmbuild | deb | check | all) ;; *)
    echo "usage: $0 [zig|rpmbuild|deb|check|all]" >&2
    exit 2
    ;;
esac
root=$(cd "$(dirname "$0")/.." && pwd)

ZIGLANG_VERSION=${ZIGLANG_VERSION:-0.17.1}
CARGO_ZIGBUILD_VERSION=${CARGO_ZIGBUILD_VERSION:-0.24.1}
CARGO_DEB_VERSION=${CARGO_DEB_VERSION:-3.8.0}
ZIG_VENV=$root/target/zig-venv

timed() { # timed LABEL CMD... : run CMD, report its wall time on stderr
    local label=$1 start=$SECONDS
    shift
    echo "install-build-deps: installing $label" >&2
    "$@"
    echo "install-build-deps: $label installed in $((SECONDS - start)) s" >&2
}

apt_install() { # apt_install PACKAGE...: with apt-get, as root (or sudo)
    local sudo=""
    command -v apt-get >/dev/null || {
        echo "install-build-deps: missing $*: install them with your package manager" >&2
        exit 1
    }
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || { echo "install-build-deps: need root to apt-get install $*" >&2; exit 1; }
        sudo=sudo
    fi
    timed "apt: $*" bash -c "$sudo apt-get update -qq && \
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $* >/dev/null"
}

cargo_tool() { # cargo_tool CRATE VERSION COMMAND
    command -v "$3" >/dev/null || timed "$1 $2 (cargo install)" cargo install --quiet --locked "$1" --version "$2"
}

zig() {
    cargo_tool cargo-zigbuild "$CARGO_ZIGBUILD_VERSION" cargo-zigbuild
    if [ "$("$ZIG_VENV/bin/python3" -m ziglang version 2>/dev/null)" != "${ZIGLANG_VERSION%%.post*}" ]; then
        python3 -m venv --help >/dev/null 2>&1 || {
            echo "install-build-deps: python3 with venv needed for zig: apt-get install python3-venv, or dnf install python3" >&2
            exit 1
        }
        rm -rf "$ZIG_VENV"
        timed "ziglang $ZIGLANG_VERSION (pip, venv $ZIG_VENV)" bash -c \
            "python3 -m venv '$ZIG_VENV' && '$ZIG_VENV/bin/pip' install --quiet --disable-pip-version-check 'ziglang==$ZIGLANG_VERSION'"
    fi
    # The glibc-2.28 target needs the Rust std of the host triple only (zig brings the libc stubs).
    if command -v rustup >/dev/null; then
        rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-gnu ||
            rustup target add x86_64-unknown-linux-gnu
    fi
}

rpmbuild_present() {
    command -v rpmbuild >/dev/null || {
        echo "install-build-deps: rpmbuild missing: dnf install rpm-build (RHEL), apt-get install rpm (Debian)" >&2
        exit 1
    }
}

check_tools() {
    local missing=() tool
    for tool in rpm:rpm rpmbuild:rpm rpm2cpio:rpm2cpio cpio:cpio rpmlint:rpmlint lintian:lintian \
        objdump:binutils systemd-analyze:systemd mandoc:mandoc man:man-db zsh:zsh fish:fish; do
        command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
        apt_install "${missing[@]}"
    fi
}

case $mode in
zig) zig ;;
rpmbuild) rpmbuild_present ;;
deb) cargo_tool cargo-deb "$CARGO_DEB_VERSION" cargo-deb ;;
check) check_tools ;;
all)
    check_tools
    zig
    cargo_tool cargo-deb "$CARGO_DEB_VERSION" cargo-deb
    ;;
esac
