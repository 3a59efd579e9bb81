//! Proves the partition harness against real processes: an etcd cluster member cut off from
//! its peers while it serves clients (stale reads, failing quorum reads, catching up after it
//! is reconnected), a paused member, per-member data access, and the cuttable TCP proxy
//! carrying keep-alive connections, long-polls and watch streams.
//! `cargo test --test harness_cluster_selftest -- --nocapture` shows the measured timings.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::json;
use support::*;

/// A pkey entry as pcocc writes it, and its value.
const KEY: &str = "/pcocc/global/opensm/pkeys/0x2000";
const VALUE: &str = "{'host_guids': ['0x0002c903000e4c31'], 'vf_guids': ['0xc0cc200000000100']}";

/// Runs `f` and says how long it took.
fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let value = f();
    (value, start.elapsed())
}

#[test]
fn proxy_forwards_reuses_connections_and_refuses_while_cut() {
    let etcd = Etcd::with_v2();
    etcd.put_v2(KEY, VALUE);
    let mut proxy = TcpProxy::start(&etcd.host_port());
    assert!(proxy.endpoint().starts_with("http://127.0.0.1:"));
    let url = format!("{}/v2/keys{KEY}", proxy.endpoint());
    let reply = curl(&[&url]);
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json()["node"]["value"], VALUE);

    // Two requests in one curl run share one keep-alive connection through the proxy.
    let accepted = proxy.accepted();
    let reply = curl(&[&url, &url]);
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        reply.body.matches(r#""action":"get""#).count(),
        2,
        "{reply:?}"
    );
    assert_eq!(
        proxy.accepted(),
        accepted + 1,
        "keep-alive connection reused"
    );

    proxy.cut();
    let (reply, took) = timed(|| curl(&["--max-time", "5", &url]));
    assert_eq!(reply.rc, 7, "connection refused while cut: {reply:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert_eq!(
        etcd.get_v2(KEY).as_deref(),
        Some(VALUE),
        "etcd itself is fine"
    );

    proxy.restore();
    let reply = curl(&[&url]);
    assert_eq!(reply.status, 200, "{reply:?}");
}

/// `curl -sS -N --max-time 30 ARGS…` running in the background, output in `dir`.
fn spawn_curl(dir: &TempDir, name: &str, args: &[&str]) -> Proc {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-N", "--noproxy", "*", "--max-time", "30"])
        .args(args)
        .stdin(Stdio::null());
    Proc::spawn(name, cmd, dir.path())
}

/// curl's exit code once it exits (within 5 s).
fn curl_exit(curl: &mut Proc) -> i32 {
    let status = curl.wait_exit(secs(5));
    let status = status.unwrap_or_else(|| panic!("curl still runs:\n{}", curl.log_tail()));
    status.code().expect("curl exited by a signal")
}

#[test]
fn proxy_carries_long_polls_and_watch_streams_and_cut_breaks_them() {
    let etcd = Etcd::with_v2();
    let mut proxy = TcpProxy::start(&etcd.host_port());
    let dir = TempDir::new("proxy-streams");
    let via_proxy = |path: &str| format!("{}{path}", proxy.endpoint());

    // A v2 long-poll through the proxy gets the event it waits for.
    let index = etcd.v2(&[], "/polled").json()["index"]
        .as_u64()
        .expect("index");
    let poll_url = via_proxy(&format!(
        "/v2/keys/polled?wait=true&waitIndex={}",
        index + 1
    ));
    let mut poll = spawn_curl(&dir, "poll", &[&poll_url]);
    wait_until("the long-poll to connect", secs(5), || {
        proxy.open_connections() == 1
    });
    etcd.put_v2("/polled", "1");
    assert_eq!(curl_exit(&mut poll), 0, "{}", poll.log_tail());
    assert!(
        poll.stdout().contains(r#""value":"1""#),
        "{}",
        poll.log_tail()
    );

    // A v3 watch stream through the proxy delivers each event while it stays open.
    let create = json!({"create_request": {"key": B64.encode("/watched")}}).to_string();
    let watch_url = via_proxy("/v3/watch");
    let mut watch = spawn_curl(&dir, "watch", &["-X", "POST", &watch_url, "-d", &create]);
    wait_until("the watch to be created", secs(5), || {
        watch.stdout().contains(r#""created":true"#)
    });
    for (n, value) in ["a", "b"].into_iter().enumerate() {
        etcd.put_v3("/watched", value);
        wait_until("the watch event through the proxy", secs(5), || {
            watch.stdout().matches(r#""events""#).count() == n + 1
        });
    }

    // A cut breaks both a waiting long-poll and the open watch stream at once.
    let mut waiting = spawn_curl(&dir, "waiting", &[&via_proxy("/v2/keys/never?wait=true")]);
    wait_until("watch and long-poll connected", secs(5), || {
        proxy.open_connections() == 2
    });
    let ((), took) = timed(|| proxy.cut());
    let watch_rc = curl_exit(&mut watch);
    let waiting_rc = curl_exit(&mut waiting);
    eprintln!("proxy cut in {took:.2?}: watch curl rc {watch_rc}, long-poll curl rc {waiting_rc}");
    assert_eq!(watch_rc, 18, "watch stream cut short: {}", watch.log_tail());
    assert_eq!(
        waiting_rc,
        18,
        "long-poll cut short: {}",
        waiting.log_tail()
    );
    assert_eq!(proxy.open_connections(), 0);
}

/// A default (non-quorum) v2 GET through member `i`, which must answer.
fn local_v2(cluster: &EtcdCluster, i: usize, key: &str) -> Option<String> {
    cluster
        .get_v2_via(i, key, false)
        .unwrap_or_else(|reply| panic!("v2 GET {key} via member {i}: {reply:?}"))
}

#[test]
fn per_member_helpers_write_read_delete_and_name_the_leader() {
    let cluster = EtcdCluster::start();
    let leader = cluster.leader().expect("a healthy cluster has a leader");
    for i in 0..3 {
        let expected = if i == leader { 1.0 } else { 0.0 };
        assert_eq!(
            cluster.metric(i, "etcd_server_is_leader"),
            expected,
            "member {i}"
        );
    }
    assert!(cluster.metric(0, "etcd_server_leader_changes_seen_total") >= 1.0);

    let committed = cluster.metric(1, "etcd_server_proposals_committed_total");
    cluster.put_v2_via(1, KEY, VALUE);
    let quorum = cluster.get_v2_via(0, KEY, true).expect("quorum GET");
    assert_eq!(quorum.as_deref(), Some(VALUE));
    wait_until("member 2 to apply the write", secs(5), || {
        local_v2(&cluster, 2, KEY).as_deref() == Some(VALUE)
    });
    assert!(cluster.metric(1, "etcd_server_proposals_committed_total") > committed);
    cluster.delete_v2(KEY);
    cluster.delete_v2(KEY); // absent: no error
    assert_eq!(cluster.get_v2_via(1, KEY, true).expect("quorum GET"), None);

    cluster.put_v3(KEY, VALUE);
    let v3 = cluster
        .get_v3_via(2, KEY, false)
        .expect("linearizable range");
    assert_eq!(v3.as_deref(), Some(VALUE));
    assert_eq!(
        local_v2(&cluster, 2, KEY),
        None,
        "v2 and v3 keyspaces are separate"
    );
    cluster.delete_v3(KEY);
    assert_eq!(cluster.get_v3_via(0, KEY, false).expect("range"), None);
}

#[test]
fn paused_member_hangs_until_resumed_and_then_catches_up() {
    let mut cluster = EtcdCluster::start();
    cluster.make_leader(1);
    cluster.pause(1);
    assert!(
        matches!(cluster.leader(), Some(0 | 2)),
        "{:?}",
        cluster.leader()
    );
    let url = format!("{}/version", cluster.endpoint(1));
    let (reply, took) = timed(|| curl(&["--max-time", "1", &url]));
    assert_eq!(
        reply.rc, 28,
        "a paused member accepts but does not answer: {reply:?}"
    );
    assert!(took >= Duration::from_millis(900), "{took:?}");
    cluster.put_v2(KEY, VALUE); // through the others

    cluster.resume(1);
    wait_until("the resumed member to catch up", secs(10), || {
        local_v2(&cluster, 1, KEY).as_deref() == Some(VALUE)
    });
}

/// The first 200 characters of a reply body, on one line.
fn short(body: &str) -> String {
    body.trim().chars().take(200).collect()
}

/// A request on the cut-off member that needs its leader: what came back, and when.
fn report_failure(what: &str, (reply, took): (CurlReply, Duration)) {
    eprintln!(
        "{what} via the cut-off member: curl rc {} HTTP {} after {took:.2?}: {}",
        reply.rc,
        reply.status,
        short(&reply.body)
    );
    assert!(
        !(200..300).contains(&reply.status),
        "{what} succeeded: {reply:?}"
    );
}

#[test]
fn cut_off_follower_serves_stale_reads_fails_quorum_requests_and_catches_up() {
    let (mut cluster, took) = timed(|| EtcdCluster::start_isolatable(2));
    eprintln!("isolatable cluster healthy after {took:.2?}");
    cluster.make_leader(0);
    cluster.put_v2_via(0, KEY, "before");
    cluster.put_v3(KEY, "before");
    wait_until("member 2 to see the first write", secs(5), || {
        local_v2(&cluster, 2, KEY).as_deref() == Some("before")
    });
    let leader_changes = cluster.metric(0, "etcd_server_leader_changes_seen_total");

    let ((), took) = timed(|| cluster.cut_off(2));
    eprintln!("cut_off(2) of a follower: it reported no leader after {took:.2?}");
    assert_eq!(cluster.metric(2, "etcd_server_has_leader"), 0.0);
    assert_eq!(cluster.leader(), Some(0));

    // The majority goes on; the cut-off member still answers clients with what it had.
    cluster.put_v2_via(0, KEY, "after");
    cluster.put_v2_via(1, "/new", "x");
    cluster.put_v3(KEY, "after");
    assert_eq!(local_v2(&cluster, 0, KEY).as_deref(), Some("after"));
    assert_eq!(
        local_v2(&cluster, 2, KEY).as_deref(),
        Some("before"),
        "stale"
    );
    assert_eq!(local_v2(&cluster, 2, "/new"), None, "stale");
    let serializable = cluster
        .get_v3_via(2, KEY, true)
        .expect("serializable range");
    assert_eq!(serializable.as_deref(), Some("before"), "stale");

    // What needs the leader fails on the cut-off member after etcd's request timeout.
    let put_body = format!("value={}", form_urlencode("lost"));
    let put = ["-X", "PUT", "--data-binary", &put_body];
    let (quorum_get, v3_range, v2_put) = std::thread::scope(|s| {
        let quorum_get = s.spawn(|| timed(|| cluster.get_v2_via(2, KEY, true)));
        let v3_range = s.spawn(|| timed(|| cluster.get_v3_via(2, KEY, false)));
        let v2_put = s.spawn(|| timed(|| cluster.v2_via(2, &put, "/via-2")));
        (quorum_get.join(), v3_range.join(), v2_put.join())
    });
    let (quorum_get, took) = quorum_get.expect("quorum GET thread");
    let quorum_get = quorum_get.expect_err("a quorum GET on a cut-off member must fail");
    report_failure("quorum v2 GET", (quorum_get, took));
    let (v3_range, took) = v3_range.expect("v3 range thread");
    let v3_range = v3_range.expect_err("a linearizable range on a cut-off member must fail");
    report_failure("linearizable v3 range", (v3_range, took));
    report_failure("v2 PUT", v2_put.expect("v2 PUT thread"));

    let ((), took) = timed(|| cluster.reconnect(2));
    eprintln!("reconnect(2): it knew a leader again after {took:.2?}");
    let ((), took) = timed(|| {
        wait_until("member 2 to catch up", secs(10), || {
            local_v2(&cluster, 2, KEY).as_deref() == Some("after")
        })
    });
    eprintln!("member 2 served the missed write {took:.2?} after that");
    assert_eq!(local_v2(&cluster, 2, "/new").as_deref(), Some("x"));
    let quorum = cluster.get_v2_via(2, KEY, true).expect("quorum GET");
    assert_eq!(quorum.as_deref(), Some("after"));
    let v3 = cluster
        .get_v3_via(2, KEY, false)
        .expect("linearizable range");
    assert_eq!(v3.as_deref(), Some("after"));
    // A member without a leader drops proposals (a timed-out write may land in general).
    let lost = cluster.get_v2_via(0, "/via-2", true).expect("quorum GET");
    assert_eq!(lost, None, "the PUT that timed out on the cut-off member");
    eprintln!(
        "leader changes seen by member 0 over the cut-off and reconnect: {}",
        cluster.metric(0, "etcd_server_leader_changes_seen_total") - leader_changes
    );
}

#[test]
fn cut_off_leader_is_replaced_and_catches_up_after_reconnect() {
    let mut cluster = EtcdCluster::start_isolatable(2);
    cluster.make_leader(2);
    assert_eq!(cluster.leader(), Some(2));
    cluster.put_v2(KEY, "before");

    let ((), took) = timed(|| cluster.cut_off(2));
    eprintln!("cut_off(2) of the leader: the others had a new leader after {took:.2?}");
    assert!(
        matches!(cluster.leader(), Some(0 | 1)),
        "{:?}",
        cluster.leader()
    );
    assert_eq!(
        cluster.metric(2, "etcd_server_is_leader"),
        0.0,
        "stepped down"
    );
    cluster.put_v2(KEY, "after");
    assert_eq!(
        local_v2(&cluster, 2, KEY).as_deref(),
        Some("before"),
        "stale"
    );

    cluster.reconnect(2);
    wait_until("member 2 to catch up", secs(10), || {
        local_v2(&cluster, 2, KEY).as_deref() == Some("after")
    });
    // A restart keeps it in its namespace, with its data.
    cluster.restart(2);
    assert_eq!(local_v2(&cluster, 2, KEY).as_deref(), Some("after"));
    // Restarted while cut off, it does not answer clients until it is reconnected.
    cluster.cut_off(2);
    cluster.restart(2);
    let version = format!("{}/version", cluster.endpoint(2));
    let reply = curl(&["--max-time", "1", &version]);
    assert_eq!(
        reply.rc, 28,
        "a restarted cut-off member answers no client: {reply:?}"
    );
    cluster.reconnect(2);
    assert_eq!(curl(&[&version]).status, 200);
}
