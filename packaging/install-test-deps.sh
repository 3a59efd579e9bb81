#!/usr/bin/env bash
# install-test-deps.sh [systemd]: installs what the tests and the demo need from Debian's
# packages when it is missing: a real etcd server and client (the tests start their own on
# loopback ports), openssl to make test certificates, curl for the harness's independent
# checks, mandoc for man-lint, zsh and fish (tests/docs_consistency.rs runs the completions in
# them), and socat, iproute2 (ip) and util-linux (unshare, nsenter) for the etcd member the
# cluster tests isolate in a network namespace, jq (tests/ufm_cli.rs runs the jq the docs give),
# and promtool from Debian's prometheus package (tests/alert_rules.rs checks and tests the alert
# rules with it). With `systemd` (make systemd-test) also
# debootstrap and systemd-container (systemd-nspawn).
set -euo pipefail

missing=()
command -v etcd >/dev/null || missing+=(etcd-server)
command -v etcdctl >/dev/null || missing+=(etcd-client)
command -v openssl >/dev/null || missing+=(openssl)
command -v curl >/dev/null || missing+=(curl)
command -v mandoc >/dev/null || missing+=(mandoc)
command -v socat >/dev/null || missing+=(socat)
command -v ip >/dev/null || missing+=(iproute2)
{ command -v unshare && command -v nsenter; } >/dev/null || missing+=(util-linux)
command -v zsh >/dev/null || missing+=(zsh)
command -v fish >/dev/null || missing+=(fish)
command -v jq >/dev/null || missing+=(jq)
command -v promtool >/dev/null || missing+=(prometheus)
if [ "${1:-}" = systemd ]; then
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    command -v systemd-nspawn >/dev/null || missing+=(systemd-container)
fi
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null; then
    echo "install-test-deps: missing ${missing[*]} and no apt-get: install them with your package manager" >&2
    exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "install-test-deps: need root to install ${missing[*]}" >&2; exit 1; }
    sudo=sudo
fi
echo "install-test-deps: installing ${missing[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
