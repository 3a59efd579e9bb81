//! The fabric-scale engine (issue 10), against a real etcd (v2 and v3) and the simulator: a
//! change costs what it changes (a targeted pass, no full listing), drift made by hand is
//! found by UFM's `last_updated`, gaps in the watch cost one full pass, no trigger causes a
//! storm, and the daemon converges within seconds after UFM or etcd comes back.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::json;
use support::{
    Api, Notify, PKEYS_PREFIX, Rig, TcpProxy, guid_text, host, metric, partition, path_text, secs,
    vf, wait_until,
};

/// Full listings of UFM's partitions since the last stats reset: one per full pass.
fn listings(rig: &Rig) -> u64 {
    rig.ufm_requests()
        .get("GET /resources/pkeys")
        .copied()
        .unwrap_or(0)
}

fn requests(rig: &Rig, route: &str) -> u64 {
    rig.ufm_requests().get(route).copied().unwrap_or(0)
}

/// One sample of a metrics file (`name{labels}` as written).
fn sample(path: &std::path::Path, series: &str) -> Option<f64> {
    metric(&std::fs::read_to_string(path).ok()?, series)
}

/// Starts the daemon and waits for its first (full) pass and its watch.
fn started(rig: &Rig, extra: &[&str], notify: &Notify) -> support::Daemon {
    let daemon = rig.monitor(extra, notify);
    notify.wait(&daemon, "STATUS=", 1, secs(10));
    rig.wait_watching(&daemon);
    daemon
}

/// Writes `count` keys outside the prefix through etcd v2, pipelined on one connection (fast
/// enough to push an index out of v2's 1,000-event history in a second).
fn v2_flood(endpoint: &str, count: usize) {
    let host_port = endpoint.trim_start_matches("http://");
    let mut stream = TcpStream::connect(host_port).expect("connecting to etcd");
    let mut requests = String::new();
    for i in 0..count {
        let body = format!("value={i}");
        requests.push_str(&format!(
            "PUT /v2/keys/elsewhere/k{} HTTP/1.1\r\nHost: {host_port}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            i % 10,
            body.len()
        ));
    }
    stream
        .write_all(requests.as_bytes())
        .expect("sending the writes");
    // Read until every answer came back (each carries one X-Etcd-Index header).
    let deadline = Instant::now() + secs(30);
    let mut seen = Vec::new();
    let mut buf = [0u8; 65536];
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("read timeout");
    while count_answers(&seen) < count {
        assert!(
            Instant::now() < deadline,
            "etcd answered {} of {count} writes",
            count_answers(&seen)
        );
        match stream.read(&mut buf) {
            Ok(0) => panic!(
                "etcd closed the connection after {} writes",
                count_answers(&seen)
            ),
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("reading etcd's answers: {e}"),
        }
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn count_answers(bytes: &[u8]) -> usize {
    String::from_utf8_lossy(bytes)
        .matches("HTTP/1.1 20")
        .count()
}

// ------------------------------------------------------------------------------------------
// A change costs what it changes
// ------------------------------------------------------------------------------------------

fn a_change_costs_small_requests(api: Api) {
    let rig = Rig::new(api);
    for n in 1..=30u64 {
        rig.put(&format!("0x{:x}", 0x100 + n), &[host(n)], &[vf(n)]);
    }
    let notify = Notify::new();
    let mut daemon = started(&rig, &[], &notify);
    assert_eq!(rig.pkeys().len(), 30, "{api:?}");
    wait_until("0x101..0x11e to be owned", secs(5), || {
        rig.owned().len() == 30
    });

    rig.sim.reset_stats();
    rig.put("0x200", &[host(200)], &[vf(200)]); // a job starts
    rig.put("0x101", &[host(1), host(300)], &[vf(1)]); // a job grows
    rig.delete("0x102"); // a job ends
    rig.wait_partition(
        &daemon,
        "0x200",
        Some(&partition(&[host(200)], &[vf(200)])),
        secs(5),
    );
    rig.wait_partition(
        &daemon,
        "0x101",
        Some(&partition(&[host(1), host(300)], &[vf(1)])),
        secs(5),
    );
    rig.wait_partition(&daemon, "0x102", None, secs(5));
    assert_eq!(
        listings(&rig),
        0,
        "{api:?}: no full listing: {:?}",
        rig.ufm_requests()
    );
    let reads = requests(&rig, "GET /resources/pkeys/{pkey}");
    assert!(
        (3..=6).contains(&reads),
        "{api:?}: one read per changed partition (and its confirmations): {:?}",
        rig.ufm_requests()
    );
    // Per change: its partition read, last_updated before the write, the write(s), the
    // partition read back (a 2xx is not proof), last_updated after: about five small requests.
    let total: u64 = rig.ufm_requests().values().sum();
    assert!(
        total <= 18,
        "{api:?}: three changes took {total} UFM requests: {:?}",
        rig.ufm_requests()
    );
    daemon.signal("TERM");
    daemon.wait(secs(10)).assert_ok();
}

#[test]
fn a_change_is_applied_without_a_full_listing_v2() {
    a_change_costs_small_requests(Api::V2);
}

#[test]
fn a_change_is_applied_without_a_full_listing_v3() {
    a_change_costs_small_requests(Api::V3);
}

#[test]
fn fifty_keys_written_in_a_burst_are_all_applied_each_with_its_last_value() {
    let rig = Rig::new(Api::V3);
    let notify = Notify::new();
    let daemon = started(&rig, &[], &notify);
    rig.sim.reset_stats();
    for n in 0..50u64 {
        rig.put(&format!("0x{:x}", 0x400 + n), &[host(n)], &[vf(n)]);
    }
    // Ten of them change again at once: the last value wins.
    for n in 0..10u64 {
        rig.put(
            &format!("0x{:x}", 0x400 + n),
            &[host(n), host(100 + n)],
            &[],
        );
    }
    let want = |n: u64| {
        if n < 10 {
            partition(&[host(n), host(100 + n)], &[])
        } else {
            partition(&[host(n)], &[vf(n)])
        }
    };
    wait_until("the 50 partitions with their last values", secs(20), || {
        (0..50u64).all(|n| rig.partition(&format!("0x{:x}", 0x400 + n)) == Some(want(n)))
    });
    assert_eq!(
        listings(&rig),
        0,
        "coalesced in targeted passes: {:?}",
        rig.ufm_requests()
    );
    daemon.stop().assert_ok();
}

// ------------------------------------------------------------------------------------------
// Drift made by hand, and the resync interval
// ------------------------------------------------------------------------------------------

#[test]
fn a_hand_edit_is_found_by_last_updated_and_an_unchanged_one_costs_no_listing() {
    let rig = Rig::new(Api::V3);
    rig.put("0x10", &[host(1), host(2)], &[vf(1)]);
    let want = partition(&[host(1), host(2)], &[vf(1)]);
    let metrics = rig.dir.join("metrics.prom");
    let notify = Notify::new();
    let daemon = started(
        &rig,
        &[
            "--poll-interval",
            "1",
            "--metrics-file",
            &path_text(&metrics),
        ],
        &notify,
    );
    rig.wait_partition(&daemon, "0x10", Some(&want), secs(5));

    rig.sim.reset_stats();
    wait_until("three drift checks", secs(10), || {
        requests(&rig, "GET /resources/pkeys/last_updated") >= 3
    });
    assert_eq!(
        listings(&rig),
        0,
        "an unchanged last_updated costs no listing: {:?}",
        rig.ufm_requests()
    );
    assert!(
        sample(
            &metrics,
            "ufm_pkeyd_drift_checks_total{result=\"unchanged\"}"
        )
        .unwrap_or(0.0)
            >= 3.0
    );

    // By hand, through UFM's API: a GUID taken out.
    let path = format!("/ufmRest/resources/pkeys/0x10/guids/{}", guid_text(host(2)));
    assert!(rig.sim.api("DELETE", &path, None).status < 300);
    rig.wait_partition(&daemon, "0x10", Some(&want), secs(10));
    assert_eq!(
        listings(&rig),
        1,
        "one full pass repaired it: {:?}",
        rig.ufm_requests()
    );
    wait_until("the metrics to count the drift", secs(5), || {
        sample(&metrics, "ufm_pkeyd_drift_checks_total{result=\"changed\"}") == Some(1.0)
    });
    daemon.stop().assert_ok();
}

#[test]
fn a_full_pass_still_runs_every_resync_interval() {
    let rig = Rig::new(Api::V2);
    rig.put("0x10", &[host(1)], &[]);
    let notify = Notify::new();
    let daemon = started(&rig, &["--resync-interval", "1"], &notify);
    rig.sim.reset_stats();
    wait_until("two full passes", secs(10), || listings(&rig) >= 2);
    daemon.stop().assert_ok();
}

// ------------------------------------------------------------------------------------------
// Gaps in the watch: one full pass each
// ------------------------------------------------------------------------------------------

/// The daemon reaches etcd through a proxy; while it is cut, `make_gap` makes the daemon's
/// place in etcd's history disappear. After the proxy is back: the change written meanwhile is
/// in UFM, after exactly one full pass, and the log says why.
fn a_gap_costs_one_full_pass(api: Api, make_gap: impl FnOnce(&Rig), why: &str) {
    let rig = Rig::new(api);
    rig.put("0x10", &[host(1)], &[]);
    let mut proxy = TcpProxy::start(&rig.etcd.host_port());
    let endpoint = proxy.endpoint();
    let notify = Notify::new();
    let mut daemon = started(&rig, &["--etcd-endpoints", &endpoint], &notify);

    proxy.cut();
    daemon.wait_for_stderr("until etcd answers", secs(10));
    rig.put("0x11", &[host(2)], &[]);
    make_gap(&rig);
    rig.sim.reset_stats();
    proxy.restore();
    rig.wait_partition(&daemon, "0x11", Some(&partition(&[host(2)], &[])), secs(15));
    daemon.wait_for_stderr(why, secs(5));
    // Give a storm the time to show: the watch runs for a while after the pass.
    rig.put("0x12", &[host(3)], &[]);
    rig.wait_partition(&daemon, "0x12", Some(&partition(&[host(3)], &[])), secs(5));
    assert_eq!(
        listings(&rig),
        1,
        "{api:?}: exactly one full pass: {:?}",
        rig.ufm_requests()
    );
    daemon.stop().assert_ok();
}

#[test]
fn v3_compaction_costs_exactly_one_full_pass() {
    a_gap_costs_one_full_pass(
        Api::V3,
        |rig| {
            for n in 0..5 {
                rig.etcd.put_v3("/elsewhere/k", &n.to_string());
            }
            rig.etcd.compact_v3();
        },
        "compacted",
    );
}

#[test]
fn v2_index_cleared_costs_exactly_one_full_pass() {
    a_gap_costs_one_full_pass(
        Api::V2,
        |rig| v2_flood(&rig.etcd.endpoint(), 1_100),
        "no longer holds index",
    );
}

/// A proxy that closes every connection to etcd every 300 ms for `flapping`: watch streams,
/// long polls and requests under way all break.
fn flap(proxy: TcpProxy, flapping: Duration) -> std::thread::JoinHandle<TcpProxy> {
    std::thread::spawn(move || {
        let mut proxy = proxy;
        let end = Instant::now() + flapping;
        while Instant::now() < end {
            std::thread::sleep(Duration::from_millis(300));
            proxy.cut();
            proxy.restore();
        }
        proxy
    })
}

fn a_misbehaving_watch_causes_no_storm(api: Api) {
    let rig = Rig::new(api);
    rig.put("0x10", &[host(1)], &[]);
    let proxy = TcpProxy::start(&rig.etcd.host_port());
    let endpoint = proxy.endpoint();
    let notify = Notify::new();
    let daemon = started(&rig, &["--etcd-endpoints", &endpoint], &notify);
    rig.sim.reset_stats();

    let flapping = secs(12);
    let started_at = Instant::now();
    let flapper = flap(proxy, flapping);
    rig.put("0x11", &[host(2)], &[]);
    let proxy = flapper.join().expect("the flapping proxy");
    let elapsed = started_at.elapsed();
    let full = listings(&rig);
    // At most one full pass per 5 s, plus one at each end of the window.
    let allowed = (elapsed.as_secs_f64() / 5.0).ceil() as u64 + 1;
    assert!(
        full <= allowed,
        "{api:?}: {full} full passes in {:.1} s (at most {allowed}): {:?}",
        elapsed.as_secs_f64(),
        rig.ufm_requests()
    );
    // Calm again: changes flow.
    rig.wait_partition(&daemon, "0x11", Some(&partition(&[host(2)], &[])), secs(10));
    rig.put("0x12", &[host(3)], &[]);
    rig.wait_partition(&daemon, "0x12", Some(&partition(&[host(3)], &[])), secs(5));
    drop(proxy);
    daemon.stop().assert_ok();
}

#[test]
fn a_proxy_closing_etcd_connections_causes_at_most_one_full_pass_per_5_s_v2() {
    a_misbehaving_watch_causes_no_storm(Api::V2);
}

#[test]
fn a_proxy_closing_etcd_connections_causes_at_most_one_full_pass_per_5_s_v3() {
    a_misbehaving_watch_causes_no_storm(Api::V3);
}

// ------------------------------------------------------------------------------------------
// Deletions in targeted passes keep every guard
// ------------------------------------------------------------------------------------------

fn owned_twenty(api: Api) -> (Rig, Notify, support::Daemon) {
    let rig = Rig::new(api);
    for n in 0..20u64 {
        rig.put(&format!("0x{:x}", 0x500 + n), &[host(n)], &[]);
    }
    rig.put("0x600", &[host(99)], &[]);
    let notify = Notify::new();
    let daemon = started(&rig, &[], &notify);
    wait_until("21 partitions owned", secs(10), || rig.owned().len() == 21);
    (rig, notify, daemon)
}

#[test]
fn a_range_delete_of_twenty_keys_trips_the_guard_while_the_daemon_watches() {
    let (rig, _notify, mut daemon) = owned_twenty(Api::V3);
    // One request deletes 20 keys (not 0x600, outside the range).
    let end = format!("{PKEYS_PREFIX}0x6");
    let deleted = rig.etcd.v3(
        "kv/deleterange",
        json!({
            "key": B64.encode(format!("{PKEYS_PREFIX}0x5")),
            "range_end": B64.encode(&end),
        }),
    );
    assert_eq!(deleted["deleted"].as_str(), Some("20"), "{deleted}");
    daemon.wait_for_stderr("refusing to delete 20 partitions", secs(10));
    // A job ending alone still goes through, the 20 stay.
    rig.delete("0x600");
    rig.wait_partition(&daemon, "0x600", None, secs(5));
    assert_eq!(rig.pkeys().len(), 20, "nothing of the bulk removal deleted");
    daemon.stop().assert_ok();
}

#[test]
fn a_recursive_delete_of_twenty_keys_trips_the_guard_while_the_daemon_watches() {
    let (rig, _notify, mut daemon) = owned_twenty(Api::V2);
    rig.etcd.delete_dir_v2(PKEYS_PREFIX);
    daemon.wait_for_stderr("refusing to delete 21 partitions", secs(10));
    assert_eq!(rig.pkeys().len(), 21, "nothing deleted");
    daemon.stop().assert_ok();
}

// ------------------------------------------------------------------------------------------
// UFM outages: converge within 5 s after, never hammer during
// ------------------------------------------------------------------------------------------

/// UFM is out for `seconds` (`mode`: refused connections or 503s) while jobs start; after it
/// is back, they are all in UFM within 5 s, and during it the daemon asked at most twice a
/// second (counted by the simulator, when it answers at all).
fn ufm_outage_then_back(mode: &str, seconds: f64) {
    let rig = Rig::new(Api::V3);
    rig.put("0x10", &[host(1)], &[]);
    let notify = Notify::new();
    let mut daemon = started(&rig, &[], &notify);
    rig.sim.clear_requests_log();
    let start_ms = unix_ms();
    rig.sim.outage(seconds, mode);
    let outage_start = Instant::now();
    for n in 0..5u64 {
        rig.put(&format!("0x{:x}", 0x20 + n), &[host(20 + n)], &[vf(20 + n)]);
    }
    daemon.wait_for_stderr("changes wait until UFM answers", secs(10));
    // The end of the outage, as the simulator sees it.
    let outage_end = outage_start + Duration::from_secs_f64(seconds);
    wait_until(
        "the outage to end",
        Duration::from_secs_f64(seconds) + secs(5),
        || Instant::now() >= outage_end,
    );
    let converged = || {
        (0..5u64).all(|n| {
            rig.partition(&format!("0x{:x}", 0x20 + n))
                == Some(partition(&[host(20 + n)], &[vf(20 + n)]))
        })
    };
    wait_until(
        "the 5 jobs in UFM within 5 s after it is back",
        secs(5),
        converged,
    );
    let back_after = outage_end.elapsed();
    daemon.wait_for_stderr("UFM reachable again", secs(1));
    if mode == "503" {
        let end_ms = start_ms + (seconds * 1000.0) as u64;
        let during = rig
            .sim
            .requests_log()
            .iter()
            .filter_map(|e| e["at_ms"].as_u64())
            .filter(|at| (start_ms..end_ms).contains(at))
            .count();
        assert!(during >= 2, "the daemon kept asking: {during} requests");
        assert!(
            during as f64 <= 2.0 * seconds,
            "{during} UFM requests during a {seconds} s outage (at most 2 a second)"
        );
    }
    assert!(
        back_after <= secs(5),
        "converged {back_after:?} after the outage"
    );
    let stderr = daemon.stderr();
    assert_eq!(
        stderr.matches("changes wait until UFM answers").count(),
        1,
        "said once:\n{stderr}"
    );
    daemon.stop().assert_ok();
}

#[test]
fn ufm_refusing_connections_then_back_converges_within_5_s() {
    ufm_outage_then_back("refuse", 6.0);
}

#[test]
fn ufm_answering_503_then_back_converges_within_5_s() {
    ufm_outage_then_back("503", 6.0);
}

#[test]
fn twenty_503s_in_a_row_are_absorbed_in_seconds() {
    let rig = Rig::new(Api::V2);
    let notify = Notify::new();
    let daemon = started(&rig, &[], &notify);
    rig.sim
        .add_faults(json!([{"method": "WRITE", "status": 503, "count": 20}]));
    let started_at = Instant::now();
    for n in 0..4u64 {
        rig.put(&format!("0x{:x}", 0x30 + n), &[host(30 + n)], &[]);
    }
    wait_until("the 4 jobs in UFM", secs(30), || {
        (0..4u64).all(|n| rig.partition(&format!("0x{:x}", 0x30 + n)).is_some())
    });
    assert!(
        started_at.elapsed() < secs(20),
        "20 503s took {:?} to absorb",
        started_at.elapsed()
    );
    let retried: u64 = rig
        .ufm_requests()
        .iter()
        .filter(|(route, _)| !route.starts_with("GET "))
        .map(|(_, n)| n)
        .sum();
    assert!(
        retried >= 24,
        "the 20 503s were answered to writes: {retried} writes"
    );
    daemon.stop().assert_ok();
}
