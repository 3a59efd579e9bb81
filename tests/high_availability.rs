//! High availability: two daemons with leader election against one etcd and one UFM (exactly
//! one writes; the standby takes over after a crash within the TTL and after a clean stop
//! within 2 s), and one daemon against a three-member etcd cluster losing the member it talks
//! to.

mod support;

use std::time::{Duration, Instant};

use support::{Daemon, Etcd, EtcdCluster, Pkeyd, TempDir, UfmSim, secs, wait_until};

const PREFIX: &str = "/pcocc/global/opensm/pkeys";
/// The election TTL the tests use: short, so a crash is noticed quickly.
const TTL: u64 = 3;

fn entry(host_guid: u64) -> String {
    format!("{{'host_guids': ['0x{host_guid:016x}'], 'vf_guids': []}}")
}

/// Whether the simulated UFM has the partition.
fn ufm_has(sim: &UfmSim, pkey: &str) -> bool {
    sim.state().get(pkey).is_some()
}

fn start_member(etcd: &Etcd, sim: &UfmSim, api: &str, dir: &TempDir, name: &str) -> Daemon {
    let password = sim.password_file().display().to_string();
    let state = dir.join(&format!("{name}.json")).display().to_string();
    let ttl = TTL.to_string();
    Pkeyd::new(&[
        "monitor",
        "--no-pcocc",
        "--etcd-endpoints",
        &etcd.endpoint(),
        "--etcd-api",
        api,
        "--ufm-host",
        &sim.host_port(),
        "--http",
        "--ufm-password-file",
        &password,
        "--state-file",
        &state,
        "--leader-election",
        "--election-ttl",
        &ttl,
        "--poll-interval",
        "60",
    ])
    .spawn()
}

fn put(etcd: &Etcd, api: &str, pkey: &str, value: &str) {
    let key = format!("{PREFIX}/{pkey}");
    match api {
        "v2" => etcd.put_v2(&key, value),
        _ => etcd.put_v3(&key, value),
    }
}

fn delete(etcd: &Etcd, api: &str, pkey: &str) {
    let key = format!("{PREFIX}/{pkey}");
    match api {
        "v2" => etcd.delete_v2(&key),
        _ => etcd.delete_v3(&key),
    }
}

fn leader_election_hands_over(api: &str) {
    let etcd = Etcd::with_v2();
    let sim = UfmSim::http();
    let dir = TempDir::new("ha");
    let mut first = start_member(&etcd, &sim, api, &dir, "first");
    first.wait_for_stderr("is now the leader", secs(10));
    let mut second = start_member(&etcd, &sim, api, &dir, "second");
    second.wait_for_stderr("standing by", secs(10));

    put(&etcd, api, "0x2001", &entry(1));
    wait_until("0x2001 in UFM", secs(5), || ufm_has(&sim, "0x2001"));
    first.wait_for_stderr("0x2001: create", secs(5));
    assert!(
        !second.stderr().contains("0x2001"),
        "the standby changed UFM too:\n{}",
        second.stderr()
    );

    // A crash: the standby takes over once the claim expires (within the TTL, plus its one
    // second between campaigns and one pass).
    first.signal("KILL");
    let crashed = Instant::now();
    put(&etcd, api, "0x2002", &entry(2));
    wait_until("the standby to apply 0x2002", secs(TTL + 3), || {
        ufm_has(&sim, "0x2002")
    });
    let takeover = crashed.elapsed();
    assert!(
        takeover < Duration::from_secs(TTL + 2),
        "takeover after a crash took {takeover:?}"
    );
    second.wait_for_stderr("is now the leader", secs(1));

    // Ownership is shared: the new leader deletes what the old one created.
    delete(&etcd, api, "0x2001");
    wait_until("0x2001 deleted by the new leader", secs(5), || {
        !ufm_has(&sim, "0x2001")
    });

    // A clean stop: the leader resigns and the standby acts within 2 s.
    let mut third = start_member(&etcd, &sim, api, &dir, "third");
    third.wait_for_stderr("standing by", secs(10));
    let run = second.stop();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("resigned"), "{}", run.stderr);
    let stopped = Instant::now();
    put(&etcd, api, "0x2003", &entry(3));
    wait_until("the standby to apply 0x2003", secs(5), || {
        ufm_has(&sim, "0x2003")
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
    leader_election_hands_over("v3");
}

#[test]
fn leader_election_v2_exactly_one_writes_and_the_standby_takes_over() {
    leader_election_hands_over("v2");
}

#[test]
fn election_ttl_shorter_than_three_timeouts_is_refused() {
    let run = support::pkeyd(&[
        "monitor",
        "--no-pcocc",
        "--ufm-host",
        "127.0.0.1:1",
        "--ufm-password",
        "x",
        "--leader-election",
        "--election-ttl",
        "15",
        "--ufm-timeout",
        "30",
    ]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("ufm-timeout"), "{}", run.stderr);
}

#[test]
fn daemon_goes_on_when_the_etcd_member_it_talks_to_stops() {
    let mut cluster = EtcdCluster::start();
    let sim = UfmSim::http();
    let dir = TempDir::new("failover");
    let password = sim.password_file().display().to_string();
    let state = dir.join("state.json").display().to_string();
    let endpoints = cluster.endpoints();
    let mut daemon = Pkeyd::new(&[
        "monitor",
        "--no-pcocc",
        "--etcd-endpoints",
        &endpoints,
        "--etcd-api",
        "v2",
        "--etcd-timeout",
        "2",
        "--ufm-host",
        &sim.host_port(),
        "--http",
        "--ufm-password-file",
        &password,
        "--state-file",
        &state,
        "--poll-interval",
        "60",
    ])
    .spawn();
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
