#!/usr/bin/env bash
# tests/systemd/run.sh [DIST]: ufm-pkeyd under a real systemd (make systemd-test).
#
# Boots a minimal Debian bookworm (tests/systemd/rootfs.sh, cached in target/systemd-test/)
# with systemd-nspawn --boot --private-network --volatile=overlay: the container has only its
# own loopback, and everything it writes goes to a tmpfs, so the cached tree stays clean. In it:
# an etcd (v2 API, v2 authentication for user root, loopback) and the UFM simulator (HTTPS with
# a self-signed certificate, loopback); then the .deb from DIST is installed and configured by
# running the README's first-run block as written (only the package file name, the hosts and the
# passwords are substituted), and the unit is checked. One line per check, then
# "N passed, N failed". Everything started is stopped on exit, Ctrl-C included.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

# Checks that need behaviour the binary does not have yet (the interface agreed in issue 11).
# They run and are reported as "pending", not counted; one that passes says so, to be taken
# off this list. A pending behaviour the other checks depend on gets a test-only drop-in:
#   empty-credential   an empty credential (the unit's SetCredential= fallback) counts as not
#                      given (workaround: the drop-in lists only the credential files present)
#   config-check       `ufm-pkeyd config --check` for ExecReload= (workaround: the drop-in
#                      reloads with kill -HUP alone)
#   root-reads-secrets run as root, the CLI reads /etc/ufm-pkeyd/{ufm,etcd}-password itself
#   exit-5             authentication failures exit 5 (not restarted)
#   journal-priority   a fatal error reaches the journal with priority err
#   credential-message a missing password names /etc/ufm-pkeyd/ufm-password
#   status-plugin      `ufm-pkeyd status` as an unprivileged user: exit 0, "UFM-PKEYD OK - …"
PENDING=(${SYSTEMD_TEST_PENDING-})

dist=$(cd "${1:-target/dist}" 2>/dev/null && pwd) || { echo "systemd-test: no ${1:-target/dist}: run make deb" >&2; exit 2; }
debs=("$dist"/ufm-pkeyd_*_amd64.deb)
[ ${#debs[@]} -eq 1 ] && [ -f "${debs[0]}" ] || { echo "systemd-test: expected one ufm-pkeyd_*_amd64.deb in $dist: run make deb" >&2; exit 2; }
deb=${debs[0]}
[ "$(id -u)" -eq 0 ] || { echo "systemd-test: systemd-nspawn needs root" >&2; exit 2; }
for tool in systemd-nspawn nsenter openssl debootstrap; do
    command -v "$tool" >/dev/null || { echo "systemd-test: $tool missing: run packaging/install-test-deps.sh systemd" >&2; exit 2; }
done

start_time=$SECONDS
cargo build --release --locked --quiet --bin ufm-sim
tests/systemd/rootfs.sh target/systemd-test/rootfs

work=$(mktemp -d /tmp/ufm-pkeyd-systemd-test.XXXXXX)
payload=$work/payload
mkdir -p "$payload"
nspawn_pid="" mounted_nspawn=false machine=ufm-pkeyd-test-$$
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
        # SIGTERM: systemd-nspawn asks the container's systemd to power off.
        kill -TERM "$nspawn_pid" 2>/dev/null || true
        local deadline=$((SECONDS + 20))
        while kill -0 "$nspawn_pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
        if kill -0 "$nspawn_pid" 2>/dev/null; then
            echo "systemd-test: the container did not power off in 20 s: killing it" >&2
            kill -KILL "$nspawn_pid" 2>/dev/null || true
        fi
        wait "$nspawn_pid" 2>/dev/null || true
    fi
    if $mounted_nspawn; then umount /run/systemd/nspawn 2>/dev/null || true; fi
    if [ $status -ne 0 ] && [ -s "$work/nspawn.log" ]; then
        echo "systemd-test: last lines of the container's console ($work/nspawn.log is removed):" >&2
        tail -n 15 "$work/nspawn.log" | sed 's/^/  /' >&2
    fi
    rm -rf "$work"
    exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- What goes into the container (read-only at /payload) ---------------------------------------
cp "$deb" "$payload/"
cp target/release/ufm-sim "$payload/ufm-sim"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
    -addext subjectAltName=IP:127.0.0.1,DNS:localhost \
    -keyout "$payload/ufm.key" -out "$payload/ufm.crt" 2>/dev/null
chmod 0644 "$payload/ufm.key"
UFM_PASSWORD=sim-password-$$
ETCD_PASSWORD=etcd-password-$$
UFM_TOKEN=sim-token-$$
printf '%s\n' "$UFM_PASSWORD" >"$payload/ufm-password"
# The README's first-run block, between the marker and the end of the next ```sh fence.
awk '/<!-- first-run: tests\/systemd\/run.sh/ { found = 1; next }
     found && /^```sh$/ { inblock = 1; next }
     inblock && /^```$/ { exit }
     inblock { print }' README.md >"$payload/first-run.txt"
[ -s "$payload/first-run.txt" ] || { echo "systemd-test: no first-run block in README.md (the <!-- first-run: tests/systemd/run.sh --> marker)" >&2; exit 1; }

# --- Boot ----------------------------------------------------------------------------------------
mkdir -p /run/systemd/nspawn
if ! mountpoint -q /run/systemd/nspawn; then
    mount -t tmpfs -o mode=0755 tmpfs /run/systemd/nspawn
    mounted_nspawn=true
fi
systemd-nspawn --boot --register=no --keep-unit --private-network --volatile=overlay \
    --console=passive --machine="$machine" -D target/systemd-test/rootfs \
    --bind-ro="$payload:/payload" >"$work/nspawn.log" 2>&1 &
nspawn_pid=$!
leader=""
deadline=$((SECONDS + 30))
until leader=$(pgrep -P "$nspawn_pid" -x systemd) && [ -n "$leader" ]; do
    kill -0 "$nspawn_pid" 2>/dev/null || { echo "systemd-test: systemd-nspawn exited" >&2; exit 1; }
    [ $SECONDS -lt $deadline ] || { echo "systemd-test: no systemd in the container after 30 s" >&2; exit 1; }
    sleep 0.1
done
# ct CMD...: run CMD inside the container (all its namespaces), as root, with a clean environment.
ct() { nsenter -t "$leader" -a -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 "$@"; }
# systemctl needs the manager's private socket, there a moment after PID 1 starts.
deadline=$((SECONDS + 30))
until ct test -S /run/systemd/private 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || { echo "systemd-test: no /run/systemd/private in the container after 30 s" >&2; exit 1; }
    sleep 0.1
done
state=$(ct timeout 60 systemctl is-system-running --wait 2>"$work/boot.err" || true)
case $state in running | degraded) ;; *)
    echo "systemd-test: the container's systemd did not come up (state '$state'): $(cat "$work/boot.err")" >&2
    exit 1
    ;;
esac

# --- Results -------------------------------------------------------------------------------------
passed=0 failed=0 pending_passed=() pending_failed=()
is_pending() { local p; for p in "${PENDING[@]}"; do [ "$p" = "$1" ] && return 0; done; return 1; }
# check NAME PENDING-KEY DESCRIPTION CMD...: run CMD (a function), print one line.
check() {
    local name=$1 key=$2 what=$3 out
    shift 3
    local t0=$SECONDS
    if out=$("$@" 2>&1); then
        if [ -n "$key" ] && is_pending "$key"; then
            echo "pending-ok  $name: $what (passes now: take '$key' off PENDING in $0)"
            pending_passed+=("$name")
        else
            echo "ok    $name: $what ($((SECONDS - t0)) s)${out:+: $(tail -n 1 <<<"$out")}"
            passed=$((passed + 1))
        fi
    else
        if [ -n "$key" ] && is_pending "$key"; then
            echo "pending     $name: $what (needs '$key' in the binary)${out:+: $(tail -n 1 <<<"$out")}"
            pending_failed+=("$name")
        else
            echo "FAIL  $name: $what ($((SECONDS - t0)) s)"
            sed 's/^/        /' <<<"$out"
            failed=$((failed + 1))
        fi
    fi
}
# wait_until SECONDS DESCRIPTION CMD...: poll CMD every 0.2 s until it succeeds or time is up.
wait_until() {
    local deadline=$((SECONDS + $1)) what=$2
    shift 2
    until "$@" >/dev/null 2>&1; do
        if [ $SECONDS -ge $deadline ]; then
            echo "timed out after $(($1 + 0)) s waiting for $what"
            return 1
        fi
        sleep 0.2
    done
}
prop() { ct systemctl show -P "$2" "$1"; }
# The daemon's own last journal line (not systemd's), for the reports.
daemon_log() { ct journalctl -t ufm-pkeyd --no-pager -o cat -n "${1:-1}"; }
start_unit() { # start_unit UNIT: systemctl start, or say why not
    ct systemctl start "$1" 2>/dev/null && return 0
    echo "systemctl start $1 failed: Result=$(prop "$1" Result), exit status $(prop "$1" ExecMainStatus): $(daemon_log)"
    return 1
}

# --- etcd and the UFM simulator in the container -------------------------------------------------
etcd_url=http://127.0.0.1:2379
ufm_host=127.0.0.1:8443
ct systemd-run --quiet --unit=test-etcd -p Type=notify -p TimeoutStartSec=30 \
    etcd --name test --data-dir /var/lib/test-etcd --enable-v2 \
    --listen-client-urls "$etcd_url" --advertise-client-urls "$etcd_url" \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster test=http://127.0.0.1:2380
# v2 authentication as on a pcocc site: user root, and no access for anonymous (guest) requests.
ct curl -fsS -o /dev/null -X PUT "$etcd_url/v2/auth/users/root" -d "{\"user\":\"root\",\"password\":\"$ETCD_PASSWORD\"}"
ct curl -fsS -o /dev/null -X PUT "$etcd_url/v2/auth/enable"
ct curl -fsS -o /dev/null -u "root:$ETCD_PASSWORD" -X PUT "$etcd_url/v2/auth/roles/guest" \
    -d '{"role":"guest","revoke":{"kv":{"read":["/*"],"write":["/*"]}}}'
ct systemd-run --quiet --unit=test-ufm-sim /payload/ufm-sim --listen "$ufm_host" \
    --tls-cert /payload/ufm.crt --tls-key /payload/ufm.key --password-file /payload/ufm-password \
    --token "$UFM_TOKEN"
wait_until 20 "the UFM simulator" ct curl -fsk "https://$ufm_host/_sim/state" ||
    { echo "systemd-test: the UFM simulator did not answer; its journal:" >&2; ct journalctl -u test-ufm-sim --no-pager -n 20 >&2; exit 1; }

etcd_put() { # etcd_put KEY VALUE: through the v2 API, as pcocc writes
    ct curl -fsS -o /dev/null -u "root:$ETCD_PASSWORD" -X PUT "$etcd_url/v2/keys$1" --data-urlencode "value=$2"
}
sim_has() { # sim_has PKEY GUID: the simulator's UFM has GUID in partition PKEY
    ct curl -fsk "https://$ufm_host/_sim/state" | tr -d ' \n' | grep -qi "\"$1\".*${2#0x}"
}

# --- Test-only drop-ins for pending behaviours ---------------------------------------------------
dropins=/etc/systemd/system/ufm-pkeyd.service.d
ct mkdir -p "$dropins"
if is_pending empty-credential; then
    ct sh -c "cat >$dropins/50-pending-empty-credential.conf" <<'EOF'
# systemd-test: the binary does not yet take an empty credential as absent.
[Service]
LoadCredential=
SetCredential=
LoadCredential=ufm-password:/etc/ufm-pkeyd/ufm-password
LoadCredential=etcd-password:/etc/ufm-pkeyd/etcd-password
EOF
fi
if is_pending config-check; then
    ct sh -c "cat >$dropins/50-pending-config-check.conf" <<'EOF'
# systemd-test: the binary has no `config --check` yet.
[Service]
ExecReload=
ExecReload=/bin/kill -HUP $MAINPID
EOF
fi

# --- The README's first-run block ----------------------------------------------------------------
# Each command of the block (a heredoc is one command) runs with bash in the container; a
# command passes with exit 0 or a status its comment names ("exit 4 = changes pending").
# Substituted: the package file name, the hosts and the passwords. Not run: dnf lines (this is
# Debian). Following the journal (-f) becomes the last lines.
first_run() {
    local cmd="" line terminator="" status ok=true n=0
    run_one() {
        local allowed
        allowed=$(grep -o 'exit [0-9]' <<<"$1" | awk '{print $2}' | paste -sd' ' -)
        cmd=$(sed -e "s|\./ufm-pkeyd_[^ ]*_amd64\.deb|/payload/$(basename "$deb")|" \
            -e "s|ufm\.example\.org|$ufm_host|g; s|etcd1\.example\.org:2379|127.0.0.1:2379|g" \
            -e "s|'the UFM password'|'$UFM_PASSWORD'|; s|'the etcd password'|'$ETCD_PASSWORD'|" \
            -e 's#journalctl \(.*\) -f\( \|$\)#journalctl \1 --no-pager -n 5\2#' <<<"$1")
        n=$((n + 1))
        status=0
        ct timeout 120 bash -c "$cmd" >"$work/step.out" 2>&1 </dev/null || status=$?
        if [ $status -eq 0 ] || [[ " $allowed " == *" $status "* ]]; then
            echo "      step $n ok (exit $status): $(head -n 1 <<<"$1")" >&3
        else
            echo "      step $n FAILED (exit $status): $(head -n 1 <<<"$1")" >&3
            sed 's/^/          /' "$work/step.out" | tail -n 5 >&3
            echo "step $n failed: $(head -n 1 <<<"$1")"
            ok=false
        fi
    }
    while IFS= read -r line || [ -n "$line" ]; do
        if [ -n "$terminator" ]; then
            cmd+=$'\n'$line
            if [ "$line" = "$terminator" ]; then
                run_one "$cmd"
                terminator="" cmd=""
            fi
            continue
        fi
        [[ $line =~ ^[[:space:]]*(#|$) ]] && continue
        [[ $line =~ ^dnf[[:space:]] ]] && continue
        if [[ $line =~ \<\<-?\'?([A-Z_]+)\'? ]]; then
            terminator=${BASH_REMATCH[1]} cmd=$line
            continue
        fi
        run_one "$line"
    done <"$payload/first-run.txt"
    $ok
}

exec 3>&1
echo "systemd-test: Debian bookworm with $(ct systemctl --version | head -n 1) in systemd-nspawn; the README's first-run block:"
check first-run root-reads-secrets "the README's first-run steps, as written, succeed" first_run
# Whatever the block did, the checks below need the daemon installed, configured and running.
ct test -x /usr/bin/ufm-pkeyd || { echo "systemd-test: the .deb is not installed: nothing else to check" >&2; exit 1; }

# --- Checks --------------------------------------------------------------------------------------
readiness() {
    start_unit ufm-pkeyd || return 1
    [ "$(ct systemctl is-active ufm-pkeyd)" = active ] || return 1
    echo "active; Status: $(prop ufm-pkeyd StatusText)"
}
check ready "" "systemctl start returns once the daemon said READY=1 (Type=notify): active" readiness

etcd_to_ufm() {
    etcd_put /pcocc/global/opensm/pkeys/0x1a "{'host_guids': ['0x0002c903000e0b72'], 'vf_guids': []}"
    local t0
    t0=$(date +%s%N)
    wait_until 10 "0x1a with 0002c903000e0b72 in UFM" sim_has 0x1a 0x0002c903000e0b72 || return 1
    echo "in UFM after $((($(date +%s%N) - t0) / 1000000)) ms"
}
check etcd-to-ufm "" "an entry written into etcd (v2) appears in UFM" etcd_to_ufm

reload_ok() {
    local pid
    pid=$(prop ufm-pkeyd MainPID)
    ct systemctl reload ufm-pkeyd || { echo "reload failed: $(daemon_log 3)"; return 1; }
    [ "$(ct systemctl is-active ufm-pkeyd)" = active ] && [ "$(prop ufm-pkeyd MainPID)" = "$pid" ] || return 1
    echo "reloaded, same process $pid"
}
check reload "" "systemctl reload succeeds with a good configuration" reload_ok

reload_broken() {
    local conf=/etc/ufm-pkeyd/ufm-pkeyd.yaml rc=0
    ct cp -a "$conf" "$conf.good"
    ct sh -c "echo 'poll-interval: [not a number' >>$conf"
    ct systemctl reload ufm-pkeyd || rc=$?
    ct mv "$conf.good" "$conf"
    [ $rc -ne 0 ] || { echo "systemctl reload succeeded with a broken configuration"; return 1; }
    [ "$(ct systemctl is-active ufm-pkeyd)" = active ] || { echo "the daemon stopped"; return 1; }
    echo "reload failed (exit $rc), the daemon runs on"
}
check reload-broken config-check "systemctl reload fails with a broken configuration file" reload_broken

stop_time() {
    local t0 ms
    t0=$(date +%s%N)
    ct systemctl stop ufm-pkeyd
    ms=$((($(date +%s%N) - t0) / 1000000))
    [ "$(prop ufm-pkeyd Result)" = success ] || { echo "Result=$(prop ufm-pkeyd Result)"; return 1; }
    [ $ms -lt 5000 ] || { echo "stop took $ms ms"; return 1; }
    echo "stopped in $ms ms, exit status $(prop ufm-pkeyd ExecMainStatus)"
}
check stop-time "" "systemctl stop: a clean exit within 5 s (TimeoutStopSec=90s)" stop_time

# A wrong UFM password: the daemon's start fails; it must not be retried in a loop.
wrong_password_setup() {
    ct cp -a /etc/ufm-pkeyd/ufm-password /etc/ufm-pkeyd/ufm-password.good
    ct sh -c 'printf "wrong\n" >/etc/ufm-pkeyd/ufm-password'
    # Faster restarts than the shipped 10 s, so that the start limit is reached in seconds.
    ct sh -c "printf '[Service]\nRestartSec=1s\n' >$dropins/60-test-restart.conf"
    ct systemctl daemon-reload
    ct systemctl reset-failed ufm-pkeyd 2>/dev/null || true
    ct systemctl start ufm-pkeyd 2>/dev/null || true
}
wrong_password_setup
settled() { # the unit no longer starts or restarts
    local s
    s=$(ct systemctl is-active ufm-pkeyd || true)
    [ "$s" = failed ] || [ "$s" = inactive ]
}
no_restart_loop() {
    wait_until 40 "the unit to give up" settled || { echo "still $(ct systemctl is-active ufm-pkeyd) after 40 s, NRestarts=$(prop ufm-pkeyd NRestarts)"; return 1; }
    local n result
    n=$(prop ufm-pkeyd NRestarts) result=$(prop ufm-pkeyd Result)
    # StartLimitBurst=5: five starts at most, the refused one counted in NRestarts.
    [ "$n" -le 5 ] || { echo "NRestarts=$n"; return 1; }
    echo "$(ct systemctl is-active ufm-pkeyd) ($result) after NRestarts=$n, exit status $(prop ufm-pkeyd ExecMainStatus): $(daemon_log)"
}
check no-restart-loop "" "a wrong UFM password: failed after at most StartLimitBurst starts, no loop" no_restart_loop
exit5() {
    [ "$(prop ufm-pkeyd ExecMainStatus)" = 5 ] && [ "$(prop ufm-pkeyd NRestarts)" = 0 ] ||
        { echo "exit status $(prop ufm-pkeyd ExecMainStatus), NRestarts=$(prop ufm-pkeyd NRestarts)"; return 1; }
    echo "exit status 5, not restarted (RestartPreventExitStatus=2 5)"
}
check auth-exit-5 exit-5 "a wrong UFM password: exit status 5, not restarted at all" exit5
journal_err() {
    local lines
    lines=$(ct journalctl -t ufm-pkeyd -p err --no-pager -o cat -n 20 || true)
    grep -qiE '401|reject|auth' <<<"$lines" || { echo "journalctl -p err shows no authentication error: ${lines:-nothing}"; return 1; }
    echo "$(tail -n 1 <<<"$lines")"
}
check journal-err journal-priority "the fatal error is in journalctl -p err -u ufm-pkeyd" journal_err
ct mv /etc/ufm-pkeyd/ufm-password.good /etc/ufm-pkeyd/ufm-password

# A missing password file: no 243/CREDENTIALS, no restart loop, a message naming the file.
missing_credential() {
    ct mv /etc/ufm-pkeyd/ufm-password /etc/ufm-pkeyd/ufm-password.away
    ct mv "$dropins/50-pending-empty-credential.conf" /root/ 2>/dev/null || true
    ct systemctl daemon-reload
    ct systemctl reset-failed ufm-pkeyd 2>/dev/null || true
    ct systemctl start ufm-pkeyd 2>/dev/null || true
    wait_until 20 "the unit to give up" settled || true
    local status n
    status=$(prop ufm-pkeyd ExecMainStatus) n=$(prop ufm-pkeyd NRestarts)
    daemon_log 3 >"$work/missing.log" 2>&1 || true
    [ "$status" != 243 ] || { echo "243/CREDENTIALS: $(grep -m1 -i credential "$work/missing.log")"; return 1; }
    [ "$status" = 2 ] && [ "$n" = 0 ] || { echo "exit status $status, NRestarts=$n"; return 1; }
    echo "exit status 2, not restarted: $(tail -n 1 "$work/missing.log")"
}
restore_credential() {
    ct mv /etc/ufm-pkeyd/ufm-password.away /etc/ufm-pkeyd/ufm-password
    ct mv /root/50-pending-empty-credential.conf "$dropins/" 2>/dev/null || true
    ct systemctl daemon-reload
    ct systemctl reset-failed ufm-pkeyd 2>/dev/null || true
}
check missing-credential "" "no /etc/ufm-pkeyd/ufm-password: exit 2 (not 243/CREDENTIALS), not restarted" missing_credential
credential_message() {
    grep -q '/etc/ufm-pkeyd/ufm-password' "$work/missing.log" || { echo "the journal does not name /etc/ufm-pkeyd/ufm-password: $(tail -n 1 "$work/missing.log")"; return 1; }
    grep -m1 '/etc/ufm-pkeyd/ufm-password' "$work/missing.log"
}
check missing-credential-message credential-message "the journal names /etc/ufm-pkeyd/ufm-password" credential_message
restore_credential

# A site with a UFM token and no password: the shipped unit as it is, no drop-in.
token_site() {
    ct mv /etc/ufm-pkeyd/ufm-password /etc/ufm-pkeyd/ufm-password.away
    ct sh -c "umask 077; printf '%s\n' '$UFM_TOKEN' >/etc/ufm-pkeyd/ufm-token"
    ct mv "$dropins/50-pending-empty-credential.conf" /root/ 2>/dev/null || true
    ct systemctl daemon-reload
    local rc=0
    ct systemctl start ufm-pkeyd 2>/dev/null || rc=$?
    local state
    state=$(ct systemctl is-active ufm-pkeyd || true)
    ct systemctl stop ufm-pkeyd
    ct rm -f /etc/ufm-pkeyd/ufm-token
    restore_credential
    [ $rc -eq 0 ] && [ "$state" = active ] || { echo "start: exit $rc, $state: $(ct journalctl -u ufm-pkeyd --no-pager -o cat -n 1)"; return 1; }
    echo "active with /etc/ufm-pkeyd/ufm-token only"
}
check token-no-dropin "" "a UFM token and no password file: the shipped unit starts, no drop-in" token_site

ct rm -f "$dropins/60-test-restart.conf"
ct sh -c "printf '[Service]\nWatchdogSec=3s\n' >$dropins/60-test-watchdog.conf"
ct systemctl daemon-reload
watchdog() {
    ct systemctl reset-failed ufm-pkeyd 2>/dev/null || true
    start_unit ufm-pkeyd || return 1
    local pid
    pid=$(prop ufm-pkeyd MainPID)
    [ "$pid" -gt 0 ] || { echo "not running"; return 1; }
    ct kill -STOP "$pid"
    new_pid() { local p; p=$(prop ufm-pkeyd MainPID); [ "$p" -gt 0 ] && [ "$p" != "$pid" ] && [ "$(ct systemctl is-active ufm-pkeyd)" = active ]; }
    wait_until 30 "a new daemon after the watchdog" new_pid || return 1
    ct journalctl -u ufm-pkeyd --no-pager -o cat | grep -m1 -i 'watchdog timeout' || { echo "no watchdog timeout in the journal"; return 1; }
}
check watchdog "" "a frozen daemon (SIGSTOP) is killed by the watchdog (WatchdogSec=3s) and restarted" watchdog
ct rm -f "$dropins/60-test-watchdog.conf"
ct systemctl daemon-reload
ct systemctl reset-failed ufm-pkeyd 2>/dev/null || true
ct systemctl restart ufm-pkeyd 2>/dev/null || true

state_readable() {
    [ "$(ct stat -c %a /var/lib/ufm-pkeyd)" = 755 ] || { echo "/var/lib/ufm-pkeyd is $(ct stat -c %a /var/lib/ufm-pkeyd)"; return 1; }
    wait_until 10 "state.json" ct test -s /var/lib/ufm-pkeyd/state.json || return 1
    wait_until 10 "status.json" ct test -s /var/lib/ufm-pkeyd/status.json || return 1
    ct runuser -u nobody -- cat /var/lib/ufm-pkeyd/status.json >/dev/null || return 1
    local modes
    modes=$(ct stat -c '%n %a' /var/lib/ufm-pkeyd/state.json /var/lib/ufm-pkeyd/state.json.lock /var/lib/ufm-pkeyd/status.json | tr '\n' ' ')
    [ "$modes" = "/var/lib/ufm-pkeyd/state.json 600 /var/lib/ufm-pkeyd/state.json.lock 600 /var/lib/ufm-pkeyd/status.json 644 " ] || { echo "modes: $modes"; return 1; }
    echo "/var/lib/ufm-pkeyd 0755, status.json readable by nobody; $modes"
}
check state-readable "" "the state directory lets an unprivileged user read the status file; state.json and its lock are 0600" state_readable
status_plugin() {
    local out rc=0
    out=$(ct runuser -u nobody -- ufm-pkeyd status 2>&1) || rc=$?
    [ $rc -eq 0 ] && [[ $(head -n 1 <<<"$out") == "UFM-PKEYD OK - "* ]] || { echo "exit $rc: $(head -n 1 <<<"$out")"; return 1; }
    head -n 1 <<<"$out"
}
check status-unprivileged status-plugin "ufm-pkeyd status as user nobody: exit 0, UFM-PKEYD OK" status_plugin

# One instance of the template: its own configuration, credentials and state directory.
template() {
    ct sh -c "cat >/etc/ufm-pkeyd/fabric2.yaml" <<EOF
ufm-host: $ufm_host
ufm-ssl-verify: false
etcd-endpoints: [127.0.0.1:2379]
etcd-api: v2
etcd-user: root
etcd-prefix: /pcocc/fabric2/opensm/pkeys/
EOF
    ct sh -c "umask 077; printf '%s\n' '$UFM_PASSWORD' >/etc/ufm-pkeyd/fabric2.ufm-password; printf '%s\n' '$ETCD_PASSWORD' >/etc/ufm-pkeyd/fabric2.etcd-password"
    ct mkdir -p /etc/systemd/system/ufm-pkeyd@.service.d
    for f in 50-pending-empty-credential.conf 50-pending-config-check.conf; do
        ct test -e "$dropins/$f" || continue
        ct sh -c "sed 's|/etc/ufm-pkeyd/\\(ufm\\|etcd\\)-password|/etc/ufm-pkeyd/%i.\\1-password|; s|^ExecReload=/bin/kill|ExecReload=/bin/kill|' $dropins/$f >/etc/systemd/system/ufm-pkeyd@.service.d/$f"
    done
    ct systemctl daemon-reload
    start_unit ufm-pkeyd@fabric2 || return 1
    etcd_put /pcocc/fabric2/opensm/pkeys/0x2b "{'host_guids': ['0x0002c903000e0b73'], 'vf_guids': []}"
    wait_until 10 "0x2b in UFM" sim_has 0x2b 0x0002c903000e0b73 || return 1
    wait_until 10 "the instance's state file" ct test -s /var/lib/ufm-pkeyd/fabric2/state.json || return 1
    [ "$(ct stat -c %a /var/lib/ufm-pkeyd/fabric2/state.json)" = 600 ] || return 1
    ct systemctl reload ufm-pkeyd@fabric2 || return 1
    ct systemctl stop ufm-pkeyd@fabric2
    echo "ufm-pkeyd@fabric2: /etc/ufm-pkeyd/fabric2.yaml, its credentials, /var/lib/ufm-pkeyd/fabric2/state.json"
}
check template "" "ufm-pkeyd@fabric2.service syncs its own prefix with its own files" template

ct systemctl stop ufm-pkeyd
echo "systemd-test: pending (need the binary's new behaviour): ${pending_failed[*]:-none}${pending_passed:+; passing now: ${pending_passed[*]}}"
echo "systemd-test: $((SECONDS - start_time)) s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
