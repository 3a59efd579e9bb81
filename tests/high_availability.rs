//! High availability: two daemons with leader election against one etcd and one UFM (exactly
//! one writes; the standby takes over after a crash within the TTL and its first-write wait,
//! and after a clean stop within 2 s), and one daemon against a three-member etcd cluster
//! losing the member it talks to.

mod support;

use std::time::{Duration, Instant};

use support::{Api, Daemon, EtcdCluster, Rig, TempDir, UfmSim, path_text, secs, wait_until};

/// The election TTL the tests use: short, so a crash is noticed quickly.
const TTL: u64 = 3;

/// What a new leader waits before its first write after a crash: the UFM request bound with
/// leader election (3 s by default) and a second.
const FIRST_WRITE_WAIT: u64 = 4;

const PREFIX: &str = "/pcocc/global/opensm/pkeys";

fn entry(host_guid: u64) -> String {
    support::pcocc_value(&[host_guid], &[])
}

/// Whether the simulated UFM has the partition.
fn ufm_has(sim: &UfmSim, pkey: &str) -> bool {
    sim.state().get(pkey).is_some()
}

/// One member of the HA pair: `monitor` with leader election, its own state and metrics files.
fn start_member(rig: &Rig, name: &str) -> Daemon {
    let state = path_text(&rig.dir.join(&format!("{name}.json")));
    let metrics = path_text(&rig.dir.join(&format!("{name}.prom")));
    let ttl = TTL.to_string();
    rig.pkeyd(
        "monitor",
        &[
            "--state-file",
            &state,
            "--metrics-file",
            &metrics,
            "--leader-election",
            "--election-ttl",
            &ttl,
            "--poll-interval",
            "60",
        ],
    )
    .spawn()
}

/// The UFM changes a member says it applied (its metrics file).
fn changes_applied(rig: &Rig, name: &str) -> f64 {
    let text = std::fs::read_to_string(rig.dir.join(&format!("{name}.prom"))).unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("ufm_pkeyd_changes_applied_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn leader_election_hands_over(api: Api) {
    let rig = Rig::with(api, support::Etcd::with_v2(), UfmSim::http());
    let sim = &rig.sim;
    let mut first = start_member(&rig, "first");
    first.wait_for_stderr("is now the leader", secs(10));
    let mut second = start_member(&rig, "second");
    second.wait_for_stderr("standing by", secs(10));

    sim.reset_stats();
    rig.put_raw("0x2001", &entry(1));
    wait_until("0x2001 in UFM", secs(5), || ufm_has(sim, "0x2001"));
    first.wait_for_stderr("0x2001: create", secs(5));
    // Exactly one writes: every UFM write the simulator saw is one the leader reports.
    wait_until("the leader's metrics to count its change", secs(5), || {
        changes_applied(&rig, "first") >= 1.0
    });
    assert_eq!(rig.ufm_writes(), 1, "{:?}", rig.ufm_requests());
    assert_eq!(
        changes_applied(&rig, "second"),
        0.0,
        "the standby changed UFM"
    );

    // A crash: the standby takes over once the claim expires (within the TTL, plus its half
    // second between campaigns), and writes once the old leader's last request is over.
    first.signal("KILL");
    let crashed = Instant::now();
    rig.put_raw("0x2002", &entry(2));
    wait_until(
        "the standby to apply 0x2002",
        secs(TTL + FIRST_WRITE_WAIT + 4),
        || ufm_has(sim, "0x2002"),
    );
    let takeover = crashed.elapsed();
    assert!(
        takeover < Duration::from_secs(TTL + FIRST_WRITE_WAIT + 2),
        "takeover after a crash took {takeover:?}"
    );
    second.wait_for_stderr("is now the leader", secs(1));

    // Ownership is shared: the new leader deletes what the old one created.
    rig.delete("0x2001");
    wait_until("0x2001 deleted by the new leader", secs(5), || {
        !ufm_has(sim, "0x2001")
    });

    // A clean stop: the leader resigns and the standby acts within 2 s.
    let mut third = start_member(&rig, "third");
    third.wait_for_stderr("standing by", secs(10));
    let run = second.stop();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("resigned"), "{}", run.stderr);
    let stopped = Instant::now();
    rig.put_raw("0x2003", &entry(3));
    wait_until("the standby to apply 0x2003", secs(5), || {
        ufm_has(sim, "0x2003")
    });
    let handover = stopped.elapsed();
    assert!(
        handover < Duration::from_secs(2),
        "hand-over after a clean stop took {handover:?}"
    );
    third.stop();
}

#[test]
fn leader_election_v3_exactly_one_writes_and_the_standby_takes_over() {
    leader_election_hands_over(Api::V3);
}

#[test]
fn leader_election_v2_exactly_one_writes_and_the_standby_takes_over() {
    leader_election_hands_over(Api::V2);
}

#[test]
fn an_etcd_timeout_longer_than_half_the_election_ttl_is_refused() {
    let run = support::pkeyd(&[
        "monitor",
        "--no-pcocc",
        "--ufm-host",
        "127.0.0.1:1",
        "--ufm-password",
        "x",
        "--leader-election",
        "--election-ttl",
        "4",
        "--etcd-timeout",
        "30",
    ]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("etcd-timeout"), "{}", run.stderr);
}

#[test]
fn daemon_goes_on_when_the_etcd_member_it_talks_to_stops() {
    let mut cluster = EtcdCluster::start();
    let sim = UfmSim::http();
    let dir = TempDir::new("failover");
    let mut daemon = cluster.monitor(&sim, &dir);
    cluster.put_v2(&format!("{PREFIX}/0x2001"), &entry(1));
    wait_until("0x2001 in UFM", secs(10), || ufm_has(&sim, "0x2001"));

    // The daemon talks to the first endpoint: stop that member, then change etcd.
    cluster.stop(0);
    cluster.put_v2(&format!("{PREFIX}/0x2002"), &entry(2));
    wait_until("0x2002 applied through another member", secs(15), || {
        ufm_has(&sim, "0x2002")
    });
    cluster.put_v2(&format!("{PREFIX}/0x2003"), &entry(3));
    wait_until("0x2003 applied too", secs(10), || ufm_has(&sim, "0x2003"));
    assert!(daemon.is_running(), "{}", daemon.stderr());
    assert!(
        daemon.stderr().contains("now using"),
        "no fail-over logged:\n{}",
        daemon.stderr()
    );
    cluster.restart(0);
    daemon.stop();
}
