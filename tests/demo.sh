#!/usr/bin/env bash
# The main job end to end, on this machine only: a real etcd (v2 API on, as pcocc needs), the
# UFM simulator over self-signed HTTPS, and `ufm-pkeyd monitor` keeping UFM in step while
# pcocc-style entries are written, changed and removed. Everything binds 127.0.0.1 and is
# stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked --bins --quiet
bin=$PWD/target/release
work=$(mktemp -d /tmp/ufm-pkeyd-demo.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
    local deadline=$((SECONDS + $1)) what=$2; shift 2
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || { echo "demo: timed out waiting for $what" >&2; exit 1; }
        sleep 0.1
    done
}
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*" | sed "s#$bin/##; s#$work#\$WORK#g"; "$@"; }

client=$(free_port); peer=$(free_port); ufm=$(free_port)
step "start etcd on 127.0.0.1:$client (v2 API enabled, as pcocc writes through it)"
etcd --name demo --data-dir "$work/etcd" --initial-cluster-token "demo-$$" \
    --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
    --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "demo=http://127.0.0.1:$peer" --enable-v2 >"$work/etcd.log" 2>&1 &
pids+=($!)
wait_for 20 "etcd" curl -fs "http://127.0.0.1:$client/health"

step "start the UFM simulator on https://127.0.0.1:$ufm (self-signed certificate, like UFM)"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
    -addext subjectAltName=IP:127.0.0.1,DNS:localhost \
    -keyout "$work/ufm.key" -out "$work/ufm.crt" 2>/dev/null
printf 'demo-password\n' >"$work/ufm-password"
"$bin/ufm-sim" --listen "127.0.0.1:$ufm" --tls-cert "$work/ufm.crt" --tls-key "$work/ufm.key" \
    --password-file "$work/ufm-password" >"$work/sim.out" 2>"$work/sim.log" &
pids+=($!)
wait_for 20 "the simulator" grep -q listening "$work/sim.out"

# One configuration file, as an admin would write /etc/ufm-pkeyd/ufm-pkeyd.yaml.
cat >"$work/ufm-pkeyd.yaml" <<EOF
etcd-endpoints: [127.0.0.1:$client]
etcd-api: v2
ufm-host: 127.0.0.1:$ufm
ufm-user: admin
ufm-password-file: $work/ufm-password
ufm-ssl-verify: false
state-file: $work/state.json
poll-interval: 60
EOF
pk() { "$bin/ufm-pkeyd" "$@" --no-pcocc --config "$work/ufm-pkeyd.yaml"; }
prefix=/pcocc/global/opensm/pkeys

step "pcocc writes two partitions (Python-literal values, unpadded key names); someone made 0x10 by hand in UFM"
show pk etcd --put $prefix/0x200e --value "{'host_guids': ['0x043f720300f55176'], 'vf_guids': ['0xc0cc200e00000000', '0xc0cc200e00000100']}"
show pk etcd --put $prefix/0x1a --value "{'host_guids': ['0x043f720300f55177'], 'vf_guids': []}"
show pk ufm --create-pkey 0x10 --guids 0002c903000e0b72

step "what would a sync do?"
set +e; show pk sync --dry-run; code=$?; set -e
echo "(exit code $code: 4 means changes pending)"

step "start the daemon"
pk monitor >"$work/monitor.out" 2>"$work/monitor.log" &
monitor=$!; pids+=($monitor)
wait_for 20 "0x200e in UFM" pk ufm --get-pkey 0x200e
show pk ufm --list
show pk ufm --get-pkey 0x200e

step "a VM joins partition 0x1a: the daemon applies it within a second (poll interval is 60 s)"
show pk etcd --put $prefix/0x1a --value "{'host_guids': ['0x043f720300f55177'], 'vf_guids': ['0xc0cc001a00000000']}"
start=$(date +%s%N)
wait_for 10 "the VF in 0x1a" sh -c "'$bin/ufm-pkeyd' ufm --no-pcocc --config '$work/ufm-pkeyd.yaml' --get-pkey 0x1a | grep -q c0cc001a00000000"
echo "applied after $(( ($(date +%s%N) - start) / 1000000 )) ms"

step "the job ends: pcocc deletes the key, the daemon deletes the partition; 0x10 (unmanaged) stays"
show pk etcd --delete $prefix/0x200e
wait_for 10 "0x200e gone" sh -c "! '$bin/ufm-pkeyd' ufm --no-pcocc --config '$work/ufm-pkeyd.yaml' --get-pkey 0x200e"
show pk ufm --list
show pk sync --dry-run

step "stop the daemon (SIGTERM) and read its log"
kill -TERM "$monitor"
wait "$monitor" && echo "monitor exited with 0"
sed 's/^/    /' "$work/monitor.log"
echo
echo "demo: done (everything it started is stopped)"
