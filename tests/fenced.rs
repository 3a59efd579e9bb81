//! Fenced in time (issue 16), against a real etcd 3.4 (v2 and v3) and the UFM simulator:
//!
//! 1. leadership is proven by etcd at each write: a leader whose election key leaves etcd
//!    early, in the middle of a long removal, sends nothing once its successor is elected, and
//!    UFM ends holding what etcd wants;
//! 2. an etcd wiped under leader election is recognised by the standby that takes over (its
//!    copy of the shared ownership record): nothing deleted, nothing turned unmanaged;
//! 3. instances that name one UFM differently fail over without a hold; one pointed at another
//!    UFM (another site) holds, and says which;
//! 4. every copy of the etcd client follows the members in a quorum: a member cut off from its
//!    peers, or hung, delays a job's partition by a few seconds at most;
//! 5. a clean stop hands over at once, a crash only after the old leader's last request is over,
//!    and inside pcocc's window.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;

use support::ha::{
    self, DeposedMidBatch, Instance, STATE_KEY, TOKENS, delete_entry, etcd_for, put_hosts, terms,
    wait_term, writes_by,
};
use support::{
    Api, Daemon, EtcdCluster, PKEYS_PREFIX, TempDir, UfmSim, host, partition, pcocc_value, secs,
    tail_lines, wait_for, wait_until,
};

/// pcocc gives a job's VFs about this long to find their partition.
const PCOCC_WINDOW: Duration = Duration::from_secs(10);

/// `ufm-timeout` with leader election by default: a new leader's first write waits this
/// plus half a second after a crash.
const ELECTION_UFM_TIMEOUT_MS: u64 = 3_000;

fn log_tail(daemon: &Daemon) -> String {
    format!(
        "--- ufm-pkeyd stderr tail ---\n{}",
        tail_lines(&daemon.stderr(), 40)
    )
}

fn ufm_has(sim: &UfmSim, pkey: &str) -> bool {
    sim.state().get(pkey).is_some()
}

/// The partitions a state file or record text lists as owned.
fn owned_in(text: &str) -> Vec<String> {
    let json: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    json["owned"]
        .as_array()
        .map(|owned| {
            owned
                .iter()
                .filter_map(|p| p.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The shared ownership record in etcd, as text; `None` while it does not exist.
fn shared_record(etcd: &support::Etcd, api: Api) -> Option<String> {
    match api {
        Api::V2 => etcd.get_v2(STATE_KEY),
        Api::V3 => etcd.get_v3(STATE_KEY),
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Leadership proven at each write
// ---------------------------------------------------------------------------------------------

/// Three leaders in a row (the roles swap each run) lose their key while a removal of 1,000
/// GUIDs in batches of 200 is under way; etcd then wants the GUIDs back.
fn a_leader_whose_key_leaves_etcd_early_writes_nothing_once_its_successor_is_elected(api: Api) {
    let mut pair = DeposedMidBatch::start(api);
    for run in 1..=3 {
        let d = pair.run(secs(30));
        eprintln!(
            "{api:?} run {run}: the deposed leader sent {} removal batches, {} after its successor's election ({} ms after the claim ended); the successor's first write {:?} ms after its election",
            d.deposed_batches, d.late_batches, d.election_ms, d.first_write_ms
        );
        assert!(
            d.late_writes.is_empty(),
            "run {run}: the deposed leader wrote to UFM after its successor's election: {:?}\n{}",
            d.late_writes,
            d.context
        );
        assert!(
            d.converged,
            "run {run}: UFM did not end holding what etcd wants ({} of the {} GUIDs of {}), or the deposed leader never said it lost the leadership\n{}",
            d.final_guids,
            ha::REMOVED + 1,
            ha::BIG,
            d.context
        );
    }
}

#[test]
fn a_leader_whose_v2_key_is_deleted_writes_nothing_once_its_successor_is_elected() {
    a_leader_whose_key_leaves_etcd_early_writes_nothing_once_its_successor_is_elected(Api::V2);
}

#[test]
fn a_leader_whose_v3_lease_is_revoked_writes_nothing_once_its_successor_is_elected() {
    a_leader_whose_key_leaves_etcd_early_writes_nothing_once_its_successor_is_elected(Api::V3);
}

/// The successor starts its term while etcd wants the removal; a moment later (before the
/// successor's first write, which waits for the old leader's last request) etcd wants every
/// GUID back. The successor must not send the removal it planned before that change.
#[test]
fn a_new_leader_sends_no_removal_that_etcd_took_back_during_its_first_write_wait() {
    let mut pair = DeposedMidBatch::start(Api::V3);
    let d = pair.run(secs(30));
    assert!(
        d.late_writes.is_empty(),
        "{:?}\n{}",
        d.late_writes,
        d.context
    );
    assert!(
        d.stale_removals.is_empty(),
        "the new leader removed GUIDs of {} more than a second after etcd wanted them back (a plan made before its first-write wait): {:?}\n{}",
        ha::BIG,
        d.stale_removals,
        d.context
    );
}

/// The deposed leader's last batch, sent before its claim ended, is held by UFM for 2 s: its
/// successor, elected within half a second, reads etcd (which wants every GUID again) and UFM
/// (which still has them all) before it lands. Once it has landed, UFM lacks 200 GUIDs that
/// etcd wants: the successor must read again before it calls the partition done.
#[test]
fn a_new_leader_reads_ufm_again_once_the_old_leaders_last_request_has_landed() {
    let mut pair = DeposedMidBatch::start(Api::V3);
    let d = pair.run_landing_after_successor_read(secs(20));
    eprintln!(
        "the deposed leader's batch landed after its successor's reads; UFM ended with {} of {} GUIDs",
        d.final_guids,
        ha::REMOVED + 1
    );
    assert!(
        d.late_writes.is_empty(),
        "{:?}\n{}",
        d.late_writes,
        d.context
    );
    assert!(
        d.converged,
        "UFM holds {} of the {} GUIDs of {} that etcd wants, 20 s after the take-over: the old leader's last batch landed after the new leader read UFM, and nothing read it again\n{}",
        d.final_guids,
        ha::REMOVED + 1,
        ha::BIG,
        d.context
    );
}

// ---------------------------------------------------------------------------------------------
// 2. An etcd wiped under leader election
// ---------------------------------------------------------------------------------------------

/// The running jobs owned before the wipe.
const JOBS: u64 = 12;
const FIRST_JOB: u64 = 0x3100;
/// A job pcocc starts on the wiped etcd.
const NEW_JOB: &str = "0x3150";

fn job(n: u64) -> String {
    format!("{:#x}", FIRST_JOB + n)
}

fn an_etcd_wiped_under_leader_election_is_recognised_by_the_standby_that_takes_over(api: Api) {
    let mut etcd = etcd_for(api);
    let sim = ha::pair_sim(&[]);
    let dir = TempDir::new("wiped-ha");
    let endpoint = etcd.endpoint();
    let ufm = sim.host_port();
    let instance = |i: usize| Instance {
        dir: &dir,
        name: ["a", "b"][i],
        token: TOKENS[i],
        ufm_host: &ufm,
        endpoints: &endpoint,
        api,
    };
    // A standby refreshes its copy of the shared record every poll interval.
    let flags = ["--poll-interval", "2"];
    let mut a = instance(0).pkeyd(&flags).spawn();
    a.wait_for_stderr("is now the leader", secs(15));
    let mut b = instance(1).pkeyd(&flags).spawn();
    b.wait_for_stderr("standing by", secs(15));
    for n in 0..JOBS {
        put_hosts(&etcd, api, &job(n), &[host(n)]);
    }
    let all_jobs: Vec<String> = (0..JOBS).map(job).collect();
    wait_for(
        "the leader to create the 12 partitions and record them",
        secs(30),
        || log_tail(&a),
        || {
            let owned = owned_in(&shared_record(&etcd, api)?);
            (all_jobs
                .iter()
                .all(|p| ufm_has(&sim, p) && owned.contains(p)))
            .then_some(())
        },
    );
    let b_state = instance(1).state_file();
    wait_for(
        "the standby to keep a copy of the record (12 partitions) in its state file",
        secs(10),
        || log_tail(&b),
        || {
            let text = std::fs::read_to_string(&b_state).ok()?;
            (owned_in(&text).len() == JOBS as usize).then_some(())
        },
    );

    // The leader dies and etcd is rebuilt from nothing; the standby is the one left to lead
    // (killed first, so that the old leader cannot win the key again after the wipe).
    a.signal("KILL");
    etcd.wipe();
    wait_term(&b, 1, secs(20));
    b.wait_for_stderr(
        "is gone from etcd, though this instance last saw it with 12 partitions",
        secs(5),
    );
    // pcocc starts a job on the new etcd: the new leader works, past its first-write wait.
    put_hosts(&etcd, api, NEW_JOB, &[host(0x50)]);
    wait_for(
        "the new leader to create the new job's partition",
        secs(15),
        || log_tail(&b),
        || ufm_has(&sim, NEW_JOB).then_some(()),
    );
    b.wait_for_stderr("refusing to delete 12 partitions", secs(10));
    let gone: Vec<&String> = all_jobs.iter().filter(|p| !ufm_has(&sim, p)).collect();
    assert!(
        gone.is_empty(),
        "partitions of running jobs deleted after the wipe: {gone:?}\n{}",
        log_tail(&b)
    );
    // Still owned (so deleted once their jobs end and an operator adopts), not unmanaged.
    let record = shared_record(&etcd, api).unwrap_or_default();
    let owned = owned_in(&record);
    assert!(
        all_jobs.iter().all(|p| owned.contains(p)),
        "the new leader's record does not own the 12 partitions: {record}"
    );
    let state = instance(1).state_command(&[]).run();
    state.assert_ok();
    assert!(
        state.stdout.contains("0x3100-0x310b") && state.stdout.contains("matches:  no"),
        "`ufm-pkeyd state` does not show the 12 partitions owned and the mismatch:\n{}\n{}",
        state.stdout,
        state.stderr
    );
    b.stop();
}

#[test]
fn an_etcd_v2_wiped_under_leader_election_is_recognised_by_the_standby_that_takes_over() {
    an_etcd_wiped_under_leader_election_is_recognised_by_the_standby_that_takes_over(Api::V2);
}

#[test]
fn an_etcd_v3_wiped_under_leader_election_is_recognised_by_the_standby_that_takes_over() {
    an_etcd_wiped_under_leader_election_is_recognised_by_the_standby_that_takes_over(Api::V3);
}

// ---------------------------------------------------------------------------------------------
// 3. One fabric, many names
// ---------------------------------------------------------------------------------------------

const SITE: &str = "fabric-a";
const ENDED_JOB: &str = "0x3201";
const RUNNING_JOB: &str = "0x3202";

/// Instance A (leading) reaches `sim_a` at `ufm_a`, instance B (standing by) `sim_b` at `ufm_b`;
/// A creates two jobs' partitions, then dies; once B leads, one job ends. Returns B, and
/// when the ended job's key was deleted.
fn fail_over_then_end_a_job(
    etcd: &support::Etcd,
    dir: &TempDir,
    (sim_a, ufm_a): (&UfmSim, &str),
    ufm_b: &str,
) -> (Daemon, Instant) {
    let api = Api::V3;
    let endpoint = etcd.endpoint();
    let instance = |i: usize, ufm_host: &str| {
        // The default TTL, given so that a take-over is as quick with the code before issue 16.
        let flags = ["--election-ttl", "4", "--poll-interval", "60"];
        Instance {
            dir,
            name: ["a", "b"][i],
            token: TOKENS[i],
            ufm_host,
            endpoints: &endpoint,
            api,
        }
        .pkeyd(&flags)
        .spawn()
    };
    let mut a = instance(0, ufm_a);
    a.wait_for_stderr("is now the leader", secs(15));
    let mut b = instance(1, ufm_b);
    b.wait_for_stderr("standing by", secs(15));
    put_hosts(etcd, api, ENDED_JOB, &[host(1)]);
    put_hosts(etcd, api, RUNNING_JOB, &[host(2)]);
    wait_for(
        "A to create both partitions and record them",
        secs(15),
        || log_tail(&a),
        || {
            let owned = owned_in(&shared_record(etcd, api)?);
            let done = [ENDED_JOB, RUNNING_JOB]
                .iter()
                .all(|p| ufm_has(sim_a, p) && owned.contains(&p.to_string()));
            done.then_some(())
        },
    );
    a.signal("KILL");
    wait_term(&b, 1, secs(15));
    delete_entry(etcd, api, ENDED_JOB);
    (b, Instant::now())
}

#[test]
fn instances_naming_one_ufm_differently_fail_over_and_delete_on_schedule() {
    let etcd = etcd_for(Api::V3);
    let sim = ha::pair_sim(&["--site-name", SITE]);
    let dir = TempDir::new("one-fabric");
    let port = sim
        .host_port()
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .to_string();
    let by_address = format!("127.0.0.1:{port}");
    let by_name = format!("localhost:{port}");
    let (b, ended) = fail_over_then_end_a_job(&etcd, &dir, (&sim, &by_address), &by_name);
    // The new leader's first write waits for the old leader's last request (ufm-timeout
    // 3 s and half a second); then the ended job's partition goes, as with a single daemon.
    wait_for(
        "the new leader to delete the ended job's partition",
        secs(10),
        || log_tail(&b),
        || (!ufm_has(&sim, ENDED_JOB)).then_some(()),
    );
    let took = ended.elapsed();
    assert!(
        took < Duration::from_secs(6),
        "the ended job's partition went {took:?} after its key"
    );
    assert!(ufm_has(&sim, RUNNING_JOB), "{}", log_tail(&b));
    let log = b.stderr();
    assert!(
        !log.contains("refusing to delete")
            && !log.contains("does not belong")
            && !log.contains("record is held"),
        "the new leader held deletions:\n{}",
        log_tail(&b)
    );
    let record: Value = serde_json::from_str(&shared_record(&etcd, Api::V3).unwrap_or_default())
        .unwrap_or_default();
    assert_eq!(
        record["binding"]["ufm_site"], SITE,
        "the record names UFM by its site: {record}"
    );
    b.stop();
}

#[test]
fn an_instance_pointed_at_another_ufm_holds_deletions_and_names_both_sites() {
    let etcd = etcd_for(Api::V3);
    let sim_a = ha::pair_sim(&["--site-name", SITE]);
    let sim_b = ha::pair_sim(&["--site-name", "fabric-b"]);
    // The other fabric happens to have the same partitions.
    sim_b.seed(serde_json::json!({
        ENDED_JOB: partition(&[host(1)], &[]),
        RUNNING_JOB: partition(&[host(2)], &[]),
    }));
    let dir = TempDir::new("other-fabric");
    let (mut b, _) = fail_over_then_end_a_job(
        &etcd,
        &dir,
        (&sim_a, &sim_a.host_port()),
        &sim_b.host_port(),
    );
    b.wait_for_stderr("refusing to delete 1 partition", secs(15));
    let refusal = b
        .stderr()
        .lines()
        .find(|l| l.contains("refusing to delete"))
        .unwrap_or_default()
        .to_string();
    assert!(
        refusal.contains(&format!("UFM site {SITE} (now site fabric-b)")),
        "the refusal does not name both UFM sites: {refusal}"
    );
    assert!(
        ufm_has(&sim_b, ENDED_JOB),
        "the other fabric's partition was deleted\n{}",
        log_tail(&b)
    );
    b.stop();
}

// ---------------------------------------------------------------------------------------------
// 5. A clean stop hands over at once; a crash waits out the old leader's last request
// ---------------------------------------------------------------------------------------------

/// When the first write request of the instance using `token` reached UFM.
fn first_write_at(sim: &UfmSim, token: &str) -> Option<u64> {
    writes_by(&sim.requests_log(), token).first().map(ha::at_ms)
}

fn a_clean_stop_hands_over_at_once_and_a_crash_after_the_old_leaders_last_request(api: Api) {
    let etcd = etcd_for(api);
    let sim = ha::pair_sim(&[]);
    let dir = TempDir::new("hand-over");
    let endpoint = etcd.endpoint();
    let ufm = sim.host_port();
    // The defaults with leader election (TTL 4 s, ufm-timeout 3 s); no drift checks.
    let start = |i: usize| {
        Instance {
            dir: &dir,
            name: ["a", "b", "c"][i],
            token: TOKENS[i],
            ufm_host: &ufm,
            endpoints: &endpoint,
            api,
        }
        .pkeyd(&["--poll-interval", "60"])
        .spawn()
    };
    let mut a = start(0);
    a.wait_for_stderr("is now the leader", secs(15));
    let mut b = start(1);
    b.wait_for_stderr("standing by", secs(15));
    put_hosts(&etcd, api, "0x3301", &[host(1)]);
    wait_until("A to create 0x3301", secs(10), || ufm_has(&sim, "0x3301"));

    // A crash: B may write only once A's last request is over (ufm-timeout and half a second
    // after its election), and the job written right after the crash gets its partition
    // inside pcocc's window.
    a.signal("KILL");
    let crashed = Instant::now();
    put_hosts(&etcd, api, "0x3302", &[host(2)]);
    let elected = wait_term(&b, 1, secs(20));
    wait_for(
        "B to create 0x3302",
        PCOCC_WINDOW + secs(5),
        || log_tail(&b),
        || ufm_has(&sim, "0x3302").then_some(()),
    );
    let takeover = crashed.elapsed();
    let waited = first_write_at(&sim, TOKENS[1]).map(|t| t.saturating_sub(elected));
    eprintln!(
        "{api:?}: after SIGKILL: partition {takeover:?} after the key, first write {waited:?} ms after the election"
    );
    assert!(
        waited.is_some_and(|w| w >= ELECTION_UFM_TIMEOUT_MS),
        "after a crash the new leader wrote {waited:?} ms after its election, before the old leader's last request (ufm-timeout {ELECTION_UFM_TIMEOUT_MS} ms) was over\n{}",
        log_tail(&b)
    );
    assert!(
        takeover < PCOCC_WINDOW,
        "the job written after the crash got its partition {takeover:?} after its key\n{}",
        log_tail(&b)
    );

    // A clean stop: B resigns, leaving the mark that nothing of its own is in flight; C takes
    // over within a second and writes at once.
    let mut c = start(2);
    c.wait_for_stderr("standing by", secs(15));
    sim.clear_requests_log();
    let run = b.stop();
    assert!(run.stderr.contains("resigned"), "{}", run.stderr);
    let stopped = Instant::now();
    put_hosts(&etcd, api, "0x3303", &[host(3)]);
    let elected = wait_term(&c, 1, secs(5));
    wait_for(
        "C to create 0x3303",
        secs(5),
        || log_tail(&c),
        || ufm_has(&sim, "0x3303").then_some(()),
    );
    let handover = stopped.elapsed();
    let waited = first_write_at(&sim, TOKENS[2]).map(|t| t.saturating_sub(elected));
    eprintln!(
        "{api:?}: after a clean stop: partition {handover:?} after the key, first write {waited:?} ms after the election"
    );
    assert!(
        waited.is_some_and(|w| w < ELECTION_UFM_TIMEOUT_MS / 3),
        "after a clean stop the new leader's first write came {waited:?} ms after its election: it waited for nothing\n{}",
        log_tail(&c)
    );
    assert!(
        handover < Duration::from_secs(2),
        "hand-over after a clean stop took {handover:?}"
    );
    c.stop();
}

#[test]
fn a_clean_stop_hands_over_at_once_and_a_crash_after_the_old_leaders_last_request_v2() {
    a_clean_stop_hands_over_at_once_and_a_crash_after_the_old_leaders_last_request(Api::V2);
}

#[test]
fn a_clean_stop_hands_over_at_once_and_a_crash_after_the_old_leaders_last_request_v3() {
    a_clean_stop_hands_over_at_once_and_a_crash_after_the_old_leaders_last_request(Api::V3);
}

// ---------------------------------------------------------------------------------------------
// 4. One view of the etcd members
// ---------------------------------------------------------------------------------------------

fn cluster_put(cluster: &EtcdCluster, pkey: &str, n: u64) {
    cluster.put_v2(
        &format!("{PKEYS_PREFIX}{pkey}"),
        &pcocc_value(&[host(n)], &[]),
    );
}

/// Writes a job through the members that can (not member 0) and returns how long its
/// partition took to appear in UFM.
fn partition_delay(cluster: &EtcdCluster, sim: &UfmSim, daemon: &Daemon, pkey: &str) -> Duration {
    let written = Instant::now();
    cluster_put(cluster, pkey, 0x40);
    wait_for(
        &format!("{pkey} in UFM"),
        secs(30),
        || log_tail(daemon),
        || ufm_has(sim, pkey).then_some(()),
    );
    written.elapsed()
}

#[test]
fn a_job_written_while_the_daemons_etcd_member_is_cut_off_gets_its_partition_within_10_s() {
    let mut cluster = EtcdCluster::start_isolatable(0);
    let sim = UfmSim::http();
    let dir = TempDir::new("cut-off-first");
    let daemon = cluster.monitor(&sim, &dir);
    cluster_put(&cluster, "0x3401", 1);
    wait_for(
        "0x3401 in UFM",
        secs(15),
        || log_tail(&daemon),
        || ufm_has(&sim, "0x3401").then_some(()),
    );
    // Member 0 still answers (from a store that no longer moves): its watch stays silent.
    cluster.cut_off(0);
    let took = partition_delay(&cluster, &sim, &daemon, "0x3402");
    eprintln!("a job written while member 0 is cut off: partition after {took:?}");
    assert!(
        took < PCOCC_WINDOW,
        "the partition of a job written while the daemon's etcd member was cut off came {took:?} after its key\n{}",
        log_tail(&daemon)
    );
    cluster.reconnect(0);
}

#[test]
fn a_hung_etcd_member_costs_the_daemon_one_timeout_at_most() {
    let mut cluster = EtcdCluster::start();
    let sim = UfmSim::http();
    let dir = TempDir::new("hung-first");
    let daemon = cluster.monitor(&sim, &dir);
    cluster_put(&cluster, "0x3501", 1);
    wait_for(
        "0x3501 in UFM",
        secs(15),
        || log_tail(&daemon),
        || ufm_has(&sim, "0x3501").then_some(()),
    );
    // SIGSTOP: connections to member 0 are accepted and never answered, as with a host that
    // hangs; every request to it costs the 2-s timeout.
    cluster.pause(0);
    let mark = daemon.stderr().len();
    let took = partition_delay(&cluster, &sim, &daemon, "0x3502");
    eprintln!("a job written while member 0 hangs: partition after {took:?}");
    let member0 = cluster.endpoint(0);
    let timeouts: Vec<String> = daemon.stderr()[mark..]
        .lines()
        .filter(|l| l.contains(&member0) && l.contains("no answer within"))
        .map(str::to_string)
        .collect();
    assert!(
        timeouts.len() <= 1,
        "the hung member cost more than one timeout:\n{}",
        timeouts.join("\n")
    );
    // The watch notices within the 3-s quorum check plus one timeout; then every copy of the
    // client has moved on.
    assert!(
        took < Duration::from_secs(6),
        "the partition of a job written while the daemon's etcd member hung came {took:?} after its key\n{}",
        log_tail(&daemon)
    );
    let again = partition_delay(&cluster, &sim, &daemon, "0x3503");
    assert!(
        again < Duration::from_secs(1),
        "the next job, once the daemon had moved on, took {again:?}\n{}",
        log_tail(&daemon)
    );
    cluster.resume(0);
}

/// The leader's watch moves to another member when the one it used stops; the full pass that
/// follows may come only 5 s after the last one. Meanwhile the leader must keep its claim
/// (renewed every third of the 4-s TTL): a needless take-over costs a job about 8 s.
#[test]
fn a_leader_keeps_its_claim_while_its_watch_moves_to_another_etcd_member() {
    // Member 0 in a namespace of its own: when it stops, the open watch breaks at once
    // (its bridge drops the connection), so the watch is the first to move.
    let mut cluster = EtcdCluster::start_isolatable(0);
    let sim = ha::pair_sim(&[]);
    let dir = TempDir::new("member-stops-under-leader");
    let endpoints = cluster.endpoints();
    let ufm = sim.host_port();
    let start = |i: usize| {
        Instance {
            dir: &dir,
            name: ["a", "b"][i],
            token: TOKENS[i],
            ufm_host: &ufm,
            endpoints: &endpoints,
            api: Api::V2,
        }
        .pkeyd(&["--poll-interval", "60"])
        .spawn()
    };
    let mut a = start(0);
    a.wait_for_stderr("is now the leader", secs(15));
    let mut b = start(1);
    b.wait_for_stderr("standing by", secs(15));
    cluster_put(&cluster, "0x3801", 1);
    wait_for(
        "0x3801 in UFM",
        secs(10),
        || log_tail(&a),
        || ufm_has(&sim, "0x3801").then_some(()),
    );
    // A full pass now (SIGHUP reads the configuration again, then everything), then member
    // 0, which both instances talk to (first in their lists), stops.
    a.signal("HUP");
    a.wait_for_stderr("full pass: the configuration was reloaded", secs(5));
    wait_for(
        "A to watch member 0 again after its full pass",
        secs(5),
        || log_tail(&a),
        || (cluster.metric(0, "etcd_debugging_store_watchers") >= 1.0).then_some(()),
    );
    cluster.stop(0);
    let took = partition_delay(&cluster, &sim, &a, "0x3802");
    eprintln!("a job written once member 0 stopped: partition after {took:?}");
    a.wait_for_stderr("the watch moved to another etcd member", secs(5));
    assert_eq!(
        (terms(&a), terms(&b)),
        (1, 0),
        "the leader's claim lapsed (a new term of A, or the standby took over) (the job's partition came {took:?} after its key)\n--- A ---\n{}\n--- B ---\n{}",
        tail_lines(&a.stderr(), 20),
        tail_lines(&b.stderr(), 20)
    );
    assert!(
        took < PCOCC_WINDOW,
        "the partition came {took:?} after its key\n{}",
        log_tail(&a)
    );
    cluster.restart(0);
}
