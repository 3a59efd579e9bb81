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
# Every process the demo starts, by name, so that the end can say what it stopped. Each is
# started directly with `&` (never a shell function), so that $! is the process itself.
declare -A started=()
cleanup() {
    local status=$? pid stopped=()
    trap - EXIT INT TERM
    for pid in "${!started[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            stopped+=("${started[$pid]} (pid $pid)")
        fi
    done
    for pid in "${!started[@]}"; do
        local deadline=$((SECONDS + 10))
        while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
    if [ ${#stopped[@]} -gt 0 ]; then
        echo "demo: stopped $(printf '%s, ' "${stopped[@]}" | sed 's/, $//')" >&2
    fi
    local left
    left=$(pgrep -f "$work" || true)
    [ -z "$left" ] || echo "demo: WARNING: processes still running from $work: $left" >&2
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A loopback port nothing listens on (bash's /dev/tcp: a refused connection), for etcd; the
# simulator takes a port of its own choosing and prints it.
free_port() {
    local port
    for _ in $(seq 100); do
        port=$((20000 + RANDOM % 30000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    echo "demo: no free loopback port found" >&2
    return 1
}
wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
    local deadline=$((SECONDS + $1)) what=$2; shift 2
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || { echo "demo: timed out waiting for $what" >&2; exit 1; }
        sleep 0.1
    done
}
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*" | sed "s#$bin/##; s#$work#\$WORK#g"; "$@"; }

client=$(free_port); peer=$(free_port)
while [ "$peer" = "$client" ]; do peer=$(free_port); done
step "start etcd on 127.0.0.1:$client (v2 API enabled, as pcocc writes through it)"
etcd --name demo --data-dir "$work/etcd" --initial-cluster-token "demo-$$" \
    --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
    --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "demo=http://127.0.0.1:$peer" --enable-v2 >"$work/etcd.log" 2>&1 &
started[$!]=etcd
wait_for 20 "etcd" curl -fs "http://127.0.0.1:$client/health"

step "start the UFM simulator on 127.0.0.1 over HTTPS (self-signed certificate, like UFM)"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
    -addext subjectAltName=IP:127.0.0.1,DNS:localhost \
    -keyout "$work/ufm.key" -out "$work/ufm.crt" 2>/dev/null
# Mode 0600, as an admin keeps a password file (ufm-pkeyd warns about one anyone can read).
(umask 077 && printf 'demo-password\n' >"$work/ufm-password")
"$bin/ufm-sim" --listen 127.0.0.1:0 --tls-cert "$work/ufm.crt" --tls-key "$work/ufm.key" \
    --password-file "$work/ufm-password" >"$work/sim.out" 2>"$work/sim.log" &
started[$!]=ufm-sim
wait_for 20 "the simulator" grep -q listening "$work/sim.out"
ufm=$(sed -n 's#^listening on https://\(.*\)$#\1#p' "$work/sim.out" | sed 's#.*:##')
echo "listening on https://127.0.0.1:$ufm"

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
"$bin/ufm-pkeyd" monitor --no-pcocc --config "$work/ufm-pkeyd.yaml" >"$work/monitor.out" 2>"$work/monitor.log" &
monitor=$!
started[$monitor]=ufm-pkeyd
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
unset "started[$monitor]"
sed 's/^/    /' "$work/monitor.log"
echo
echo "demo: done"
