//! Nothing is done until UFM shows it (issue 15): each test replays one of the issue's
//! numbered findings against the real daemon, a real etcd 3.4 (v2 and v3 where the keyspace
//! matters) and the UFM simulator, and checks that the change is applied all the same, soon,
//! with the partition owned throughout.
//!
//! 1. A write answered 2xx but not applied (create, add, remove, delete) is sent again until a
//!    read shows it; meanwhile it counts as pending.
//! 2. The daemon's own writes do not hide changes made by others in UFM; a `last_updated` that
//!    never moves, is an object, or answers 404 once does not hide them either.
//! 3. A pass over some partitions reads every key naming each of them; an odd single-PKey
//!    answer is a failed read, not a consumed change.
//! 4. A pass stopped by the write gate keeps what it did not send; an etcd whose revision or
//!    index went back (rebuilt, restored) is a gap in the watch, at once.
//! 5. No change waits behind a long queue of slow writes; a bulk delete is one full pass.
//! 6. A write that timed out and lands late never empties the partition (issue 16).
//!
//! Every wait has a deadline; where the deadline is the promise under test (two poll
//! intervals, a few seconds), the test's comment says so. Each test failed on the engine
//! before the rework (8dce2d6).

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use support::*;

/// How long a change made in etcd may take to show in UFM while the daemon watches.
const PROPAGATION: Duration = Duration::from_secs(5);

/// The poll interval of the tests that count in poll intervals.
const POLL_SECS: u64 = 3;

/// `--poll-interval` and `--resync-interval` for `poll` seconds: the resync is far away, so
/// nothing in a test is found by it.
fn intervals(poll: u64) -> Vec<String> {
    vec![
        "--poll-interval".to_string(),
        poll.to_string(),
        "--resync-interval".to_string(),
        "600".to_string(),
    ]
}

fn refs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// Writes every `(name, hosts)` under the prefix as JSON in one v3 transaction per 100 keys
/// (one revision each, as one watch event batch), straight to etcd.
fn put_together_v3(rig: &Rig, entries: &[(String, Vec<u64>)]) {
    for chunk in entries.chunks(100) {
        let puts: Vec<Value> = chunk
            .iter()
            .map(|(name, hosts)| {
                let key = format!("{PKEYS_PREFIX}{name}");
                json!({"request_put": {
                    "key": B64.encode(key),
                    "value": B64.encode(json_value(hosts, &[])),
                }})
            })
            .collect();
        let reply = rig.etcd.v3("kv/txn", json!({ "success": puts }));
        assert_eq!(reply["succeeded"], true, "etcd transaction: {reply}");
    }
}

/// How many API requests the simulator counted for `"METHOD route"`.
fn requests(rig: &Rig, key: &str) -> u64 {
    rig.ufm_requests().get(key).copied().unwrap_or(0)
}

/// The status file the daemon writes next to its state file.
fn status(rig: &Rig) -> Option<Value> {
    let text = std::fs::read_to_string(rig.dir.join("status.json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// Active fault rules in the simulator (spent ones are dropped).
fn active_rules(rig: &Rig) -> usize {
    rig.sim.faults()["rules"].as_array().map_or(0, Vec::len)
}

/// Reads UFM every 100 ms on a thread of its own while a scenario runs, and keeps every
/// sample in which `pkey` was missing or had no member (a partition etcd wants must never be
/// absent, not even for a moment), and the members it went through.
struct Watcher {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Looks>>,
}

/// What a [`Watcher`] saw.
#[derive(Debug, Default)]
struct Looks {
    samples: usize,
    /// When the partition was missing or empty, and what UFM said of it.
    missing: Vec<String>,
    /// The members it had, in order, each time they changed.
    members: Vec<Value>,
}

impl Watcher {
    fn start(sim_url: String, pkey: &str) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        let pkey = pkey.to_string();
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let start = Instant::now();
                let mut looks = Looks::default();
                while !stop.load(Ordering::Relaxed) {
                    let reply = curl(&[format!("{sim_url}/_sim/state")]);
                    if reply.status == 200 {
                        looks.samples += 1;
                        let state = reply.json();
                        let members = &state[&pkey]["guids"];
                        if members.as_array().is_none_or(Vec::is_empty) {
                            looks.missing.push(format!(
                                "{:.1} s: {}",
                                start.elapsed().as_secs_f64(),
                                state[&pkey]
                            ));
                        }
                        if looks.members.last() != Some(members) {
                            looks.members.push(members.clone());
                        }
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                looks
            })
        };
        Watcher {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops reading; returns what it saw.
    fn finish(mut self) -> Looks {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Sends SIGCONT to a process stopped with SIGSTOP when dropped (also when a test panics), so
/// that it can be stopped cleanly.
struct Resume(u32);

impl Drop for Resume {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-CONT", &self.0.to_string()])
            .status();
    }
}

// ------------------------------------------------------------------------------------------
// 1. A 2xx is not taken as applied
// ------------------------------------------------------------------------------------------

/// A create, an add, a GUID removal and a delete each answered 2xx without being applied
/// (one `noop` rule each) are sent again and converge within two poll intervals; every
/// partition in UFM stays owned meanwhile (no orphan), and the status file and the metrics
/// count the changes as pending until a read shows them.
#[test]
fn a_create_add_remove_or_delete_answered_2xx_but_not_applied_is_sent_again_until_ufm_shows_it() {
    let rig = Rig::new(Api::V2);
    let metrics = rig.dir.join("ufm_pkeyd.prom");
    rig.put("0x20", &[host(1)], &[]);
    rig.put("0x21", &[host(2), host(3)], &[]);
    rig.put("0x22", &[host(4)], &[]);
    let mut args = intervals(POLL_SECS);
    args.extend(["--metrics-file".to_string(), path_text(&metrics)]);
    let notify = Notify::new();
    let daemon = rig.monitor(&refs(&args), &notify);
    notify.wait(&daemon, "STATUS=", 1, PROPAGATION);
    wait_until("the three partitions owned and in UFM", PROPAGATION, || {
        rig.owned() == ["0x20", "0x21", "0x22"] && rig.pkeys().len() == 3
    });
    rig.wait_watching(&daemon);

    // UFM answers one write to each partition 200 without applying it.
    rig.sim.add_faults(json!([
        {"method": "WRITE", "pkey": "0x1f", "noop": true, "count": 1},
        {"method": "WRITE", "pkey": "0x20", "noop": true, "count": 1},
        {"method": "WRITE", "pkey": "0x21", "noop": true, "count": 1},
        {"method": "WRITE", "pkey": "0x22", "noop": true, "count": 1},
    ]));
    rig.put("0x1f", &[host(5)], &[]); // a new job: create
    rig.put("0x20", &[host(1), host(6)], &[]); // add
    rig.put("0x21", &[host(2)], &[]); // remove
    rig.delete("0x22"); // the job ended: delete
    let changed = Instant::now();

    let want: BTreeMap<&str, Value> = BTreeMap::from([
        ("0x1f", partition(&[host(5)], &[])),
        ("0x20", partition(&[host(1), host(6)], &[])),
        ("0x21", partition(&[host(2)], &[])),
    ]);
    let (mut status_pending, mut metrics_pending) = (0u64, 0.0f64);
    let mut orphans: Vec<String> = Vec::new();
    let (mut looks, mut created_owned) = (0, false);
    wait_for(
        "UFM to show all four changes, owned, with nothing pending",
        Duration::from_secs(2 * POLL_SECS),
        || {
            format!(
                "UFM: {}\nowned: {:?}\nstatus counts: {}\n{}",
                rig.sim.state(),
                rig.owned(),
                status(&rig).map_or(Value::Null, |s| s["counts"].clone()),
                tail_lines(&daemon.stderr(), 40)
            )
        },
        || {
            // Owned before and after the look at UFM: a partition UFM holds in between is
            // owned in at least one of them (ownership starts before the create and ends
            // after the read that shows the partition gone).
            let before = rig.owned();
            let state = rig.sim.state();
            let after = rig.owned();
            looks += 1;
            for pkey in state.as_object().into_iter().flat_map(|m| m.keys()) {
                let owned = before.contains(pkey) || after.contains(pkey);
                if pkey != "0x7fff" && !owned {
                    orphans.push(format!("{pkey} in UFM but not owned"));
                }
            }
            for kept in ["0x20", "0x21"] {
                if !before.iter().any(|p| p == kept) {
                    orphans.push(format!("{kept} not owned"));
                }
            }
            // The new job's partition: owned from before its create on, never let go.
            let owns_new = before.iter().any(|p| p == "0x1f");
            if created_owned && !owns_new {
                orphans.push("0x1f no longer owned".to_string());
            }
            created_owned |= owns_new;
            if let Some(s) = status(&rig) {
                status_pending = status_pending.max(s["counts"]["pending"].as_u64().unwrap_or(0));
            }
            if let Some(n) = std::fs::read_to_string(&metrics)
                .ok()
                .and_then(|t| metric(&t, "ufm_pkeyd_changes_pending"))
            {
                metrics_pending = metrics_pending.max(n);
            }
            let shown = want
                .iter()
                .all(|(p, w)| rig.partition(p).as_ref() == Some(w))
                && rig.partition("0x22").is_none();
            let settled = rig.owned() == ["0x1f", "0x20", "0x21"]
                && status(&rig).is_some_and(|s| s["counts"]["pending"] == 0);
            (shown && settled).then_some(())
        },
    );
    eprintln!(
        "converged {:.1} s after the changes ({looks} looks at UFM)",
        changed.elapsed().as_secs_f64()
    );
    assert!(orphans.is_empty(), "ownership lapsed: {orphans:?}");
    assert_eq!(
        active_rules(&rig),
        0,
        "each write was answered once without being applied"
    );
    assert!(
        status_pending >= 1 && metrics_pending >= 1.0,
        "the changes UFM did not show counted as pending meanwhile (status file: {status_pending}, metrics: {metrics_pending})"
    );
    assert_eq!(rig.pkeys(), ["0x1f", "0x20", "0x21"], "no orphan");
    let stderr = daemon.stop().stderr;
    assert!(
        !stderr.contains("unmanaged (left alone)"),
        "the ended job's partition never became unmanaged:\n{stderr}"
    );
}

// ------------------------------------------------------------------------------------------
// 2. The daemon's own writes do not hide other changes
// ------------------------------------------------------------------------------------------

/// UFM loses 30 owned partitions (a fail-over to a standby with an older database) just
/// before a job's write: `last_updated` read before the write has moved, so a full pass
/// follows and restores them within two poll intervals, instead of taking the new value as
/// the daemon's own.
#[test]
fn partitions_lost_in_ufm_just_before_a_jobs_write_are_restored_within_two_poll_intervals() {
    const POLL: u64 = 5;
    let rig = Rig::new(Api::V3);
    let jobs: Vec<(String, Vec<u64>)> = (0..30u64)
        .map(|i| (format!("0x{:x}", 0x100 + i), vec![host(100 + i)]))
        .collect();
    put_together_v3(&rig, &jobs);
    let notify = Notify::new();
    let daemon = rig.monitor(&refs(&intervals(POLL)), &notify);
    notify.wait(&daemon, "STATUS=", 1, secs(10));
    wait_until("the 30 partitions in UFM and owned", secs(10), || {
        rig.pkeys().len() == 30 && rig.owned().len() == 30
    });
    rig.wait_watching(&daemon);

    // UFM fails over to a database without them; a new job starts at once.
    rig.seed(&[]);
    rig.put("0x300", &[host(300)], &[]);
    let lost = Instant::now();
    rig.wait_partition(
        &daemon,
        "0x300",
        Some(&partition(&[host(300)], &[])),
        PROPAGATION,
    );
    wait_for(
        "the 30 lost partitions to be restored",
        Duration::from_secs(2 * POLL),
        || {
            format!(
                "UFM has {} partitions\n{}",
                rig.pkeys().len(),
                tail_lines(&daemon.stderr(), 30)
            )
        },
        || (rig.pkeys().len() == 31).then_some(()),
    );
    eprintln!(
        "restored {:.1} s after the loss",
        lost.elapsed().as_secs_f64()
    );
    for (name, hosts) in &jobs {
        assert_eq!(rig.partition(name), Some(partition(hosts, &[])), "{name}");
    }
    daemon.stop().assert_ok();
}

/// UFM answers `last_updated` with `stamp`, whatever it does. A partition deleted by hand is
/// restored within about two poll intervals once a job's write shows that the value does not
/// move when UFM changes: it is not followed until the next full read.
fn a_stamp_that_never_moves_hides_no_hand_change(stamp: Value) {
    let rig = Rig::new(Api::V3);
    rig.sim.add_faults(json!([
        {"method": "GET", "route": "/resources/pkeys/last_updated",
         "body": {"last_updated": stamp}}
    ]));
    // UFM already holds the job's partition: the first pass adopts it without a write.
    rig.seed(&[("0x30", partition(&[host(1)], &[]))]);
    rig.put("0x30", &[host(1)], &[]);
    let notify = Notify::new();
    let daemon = rig.monitor(&refs(&intervals(POLL_SECS)), &notify);
    notify.wait(&daemon, "STATUS=", 1, PROPAGATION);
    wait_until("0x30 owned", PROPAGATION, || rig.owned() == ["0x30"]);
    rig.wait_watching(&daemon);

    // Someone deletes 0x30 by hand; last_updated does not tell. Then a job starts.
    rig.seed(&[]);
    rig.put("0x31", &[host(2)], &[]);
    let written = Instant::now();
    rig.wait_partition(
        &daemon,
        "0x31",
        Some(&partition(&[host(2)], &[])),
        PROPAGATION,
    );
    rig.wait_partition(
        &daemon,
        "0x30",
        Some(&partition(&[host(1)], &[])),
        Duration::from_secs(2 * POLL_SECS + 2),
    );
    eprintln!(
        "{stamp}: 0x30 restored {:.1} s after the job's write",
        written.elapsed().as_secs_f64()
    );
    daemon.stop().assert_ok();
}

#[test]
fn a_last_updated_that_never_moves_hides_no_hand_change_once_writes_show_it_frozen() {
    a_stamp_that_never_moves_hides_no_hand_change(json!("x"));
}

#[test]
fn a_last_updated_that_is_an_object_hides_no_hand_change_once_writes_show_it_frozen() {
    a_stamp_that_never_moves_hides_no_hand_change(json!({"when": 1}));
}

/// A `last_updated` once seen not to move after the daemon's own applied writes is not a stamp
/// UFM keeps: a hand change made later, while no job writes, is still found within a couple of
/// poll intervals (every check lists in full until the stamp moves with writes again).
#[test]
fn a_last_updated_seen_frozen_stays_distrusted_for_hand_changes_made_later() {
    let rig = Rig::new(Api::V3);
    rig.sim.add_faults(json!([
        {"method": "GET", "route": "/resources/pkeys/last_updated",
         "body": {"last_updated": "x"}}
    ]));
    rig.put("0x30", &[host(1)], &[]);
    let notify = Notify::new();
    let daemon = rig.monitor(&refs(&intervals(POLL_SECS)), &notify);
    rig.wait_partition(
        &daemon,
        "0x30",
        Some(&partition(&[host(1)], &[])),
        PROPAGATION,
    );
    // The create showed the value frozen: the full pass that follows reads UFM's list.
    wait_until("the full pass after the frozen value", secs(10), || {
        requests(&rig, "GET /resources/pkeys") >= 2
    });
    rig.seed(&[]);
    rig.wait_partition(
        &daemon,
        "0x30",
        Some(&partition(&[host(1)], &[])),
        Duration::from_secs(2 * POLL_SECS + 2),
    );
    daemon.stop().assert_ok();
}

/// One 404 on `last_updated` (UFM restarting) costs one full list, not one every poll for
/// ever: later checks use the value again, and a hand change is still found by it.
#[test]
fn one_404_on_last_updated_is_asked_again_at_the_next_check_not_believed_for_ever() {
    const POLL: u64 = 1;
    const STAMP: &str = "GET /resources/pkeys/last_updated";
    const LIST: &str = "GET /resources/pkeys";
    let rig = Rig::new(Api::V3);
    rig.put("0x40", &[host(1)], &[]);
    let notify = Notify::new();
    let daemon = rig.monitor(&refs(&intervals(POLL)), &notify);
    rig.wait_partition(
        &daemon,
        "0x40",
        Some(&partition(&[host(1)], &[])),
        PROPAGATION,
    );
    notify.wait(&daemon, "STATUS=", 1, PROPAGATION);

    rig.sim.add_faults(json!([
        {"method": "GET", "route": "/resources/pkeys/last_updated", "status": 404, "count": 1}
    ]));
    wait_until("a drift check to meet the 404", secs(5), || {
        active_rules(&rig) == 0
    });
    // The full list the 404 asks for (not sooner than five seconds after the last one).
    let lists = requests(&rig, LIST);
    wait_for(
        "the full pass the 404 asks for",
        secs(8),
        || tail_lines(&daemon.stderr(), 20),
        || (requests(&rig, LIST) > lists).then_some(()),
    );
    let (lists, stamps) = (requests(&rig, LIST), requests(&rig, STAMP));
    wait_for(
        "six more drift checks",
        secs(6 * POLL + 6),
        || {
            format!(
                "{:?}\n{}",
                rig.ufm_requests(),
                tail_lines(&daemon.stderr(), 20)
            )
        },
        || (requests(&rig, STAMP) >= stamps + 6).then_some(()),
    );
    assert_eq!(
        requests(&rig, LIST),
        lists,
        "drift checks after the 404 use last_updated again, without listing everything: {:?}",
        rig.ufm_requests()
    );

    // And it still tells a hand change.
    rig.seed(&[]);
    rig.wait_partition(
        &daemon,
        "0x40",
        Some(&partition(&[host(1)], &[])),
        Duration::from_secs(2 * POLL + 5),
    );
    daemon.stop().assert_ok();
}

// ------------------------------------------------------------------------------------------
// 3. A pass over some partitions reads every key naming them
// ------------------------------------------------------------------------------------------

/// Two keys naming one PKey (`0x5b9` and `0x05b9`, then `0X05B9` too): writing or deleting
/// the second key leaves the live partition exactly as it is, as a full pass would.
fn a_second_key_naming_a_live_pkey_leaves_its_partition_as_it_is(api: Api) {
    let rig = Rig::new(api);
    let four = [host(1), host(2), host(3), host(4)];
    let live = partition(&four, &[]);
    rig.put("0x5b9", &four, &[]);
    let notify = Notify::new();
    let daemon = rig.monitor(&refs(&intervals(60)), &notify);
    rig.wait_partition(&daemon, "0x5b9", Some(&live), PROPAGATION);
    wait_until("0x5b9 owned", PROPAGATION, || rig.owned() == ["0x5b9"]);
    rig.wait_watching(&daemon);
    let mut passes = notify.count("STATUS=");

    let watcher = Watcher::start(rig.sim.url(), "0x5b9");
    let steps: [(&str, Option<u64>); 4] = [
        ("0x05b9", Some(5)),
        ("0X05B9", Some(6)),
        ("0x05b9", None),
        ("0X05B9", None),
    ];
    for (name, guid) in steps {
        match guid {
            Some(n) => rig.put(name, &[host(n)], &[]),
            None => rig.delete(name),
        }
        notify.next_pass(&daemon, &mut passes, PROPAGATION);
        assert_eq!(
            rig.partition("0x5b9").as_ref(),
            Some(&live),
            "{api:?}: after {} {name}, 0x5b9 is as it was\n{}",
            if guid.is_some() {
                "writing"
            } else {
                "deleting"
            },
            tail_lines(&daemon.stderr(), 30)
        );
        assert_eq!(rig.owned(), ["0x5b9"], "{api:?}: after {name}");
    }
    let looks = watcher.finish();
    assert!(
        looks.missing.is_empty() && looks.members.len() == 1,
        "{api:?}: 0x5b9 changed or went missing meanwhile: {looks:?}"
    );
    let mut daemon = daemon;
    daemon.wait_for_stderr("also names PKey 0x5b9", PROPAGATION);

    // One key again: it is followed as usual.
    rig.put("0x5b9", &four[..3], &[]);
    rig.wait_partition(
        &daemon,
        "0x5b9",
        Some(&partition(&four[..3], &[])),
        PROPAGATION,
    );
    daemon.stop().assert_ok();
}

#[test]
fn a_second_key_naming_a_live_pkey_leaves_its_partition_as_it_is_v2() {
    a_second_key_naming_a_live_pkey_leaves_its_partition_as_it_is(Api::V2);
}

#[test]
fn a_second_key_naming_a_live_pkey_leaves_its_partition_as_it_is_v3() {
    a_second_key_naming_a_live_pkey_leaves_its_partition_as_it_is(Api::V3);
}

/// A single-PKey answer that is `{}`, garbage or truncated JSON (twice each) does not consume
/// the change (a job losing a node): it is applied once UFM answers sanely, well before the
/// resync interval, and no GUID lingers.
#[test]
fn an_odd_single_pkey_answer_is_a_failed_read_and_the_change_is_applied_once_ufm_answers() {
    let rig = Rig::new(Api::V3);
    let pkeys = ["0x30", "0x31", "0x32"];
    for (n, pkey) in (1u64..).zip(pkeys) {
        rig.put(pkey, &[host(n), host(10 + n)], &[]);
    }
    let notify = Notify::new();
    let daemon = rig.monitor(&refs(&intervals(60)), &notify);
    notify.wait(&daemon, "STATUS=", 1, PROPAGATION);
    wait_until("the three partitions in UFM", PROPAGATION, || {
        rig.pkeys().len() == 3
    });
    rig.wait_watching(&daemon);

    let route = "/resources/pkeys/{pkey}";
    rig.sim.add_faults(json!([
        {"method": "GET", "route": route, "pkey": "0x30", "body": {}, "count": 2},
        {"method": "GET", "route": route, "pkey": "0x31", "body": "<<garbage>>", "count": 2},
        {"method": "GET", "route": route, "pkey": "0x32",
         "body": "{\"partition\": \"api_pkey_0x32\", \"guids\": [{\"guid\": \"0002c9", "count": 2},
    ]));
    let changed = Instant::now();
    for (n, pkey) in (1u64..).zip(pkeys) {
        rig.put(pkey, &[host(n)], &[]);
    }
    for (n, pkey) in (1u64..).zip(pkeys) {
        rig.wait_partition(&daemon, pkey, Some(&partition(&[host(n)], &[])), secs(20));
    }
    eprintln!(
        "applied {:.1} s after the change",
        changed.elapsed().as_secs_f64()
    );
    assert_eq!(active_rules(&rig), 0, "every odd answer was served");
    daemon.stop().assert_ok();
}

// ------------------------------------------------------------------------------------------
// 4. Changes are not dropped
// ------------------------------------------------------------------------------------------

/// With leader election, etcd stops answering in the middle of 30 removals, long enough for
/// one renewal of the claim to fail: the write gate stops the pass. What it did not send is
/// sent once etcd is back, and the log says how many partitions were pending.
#[test]
fn removals_a_pass_stopped_by_the_write_gate_did_not_send_are_sent_once_etcd_is_back() {
    let mut rig = Rig::new(Api::V3);
    let count = 30u64;
    let both: Vec<(String, Vec<u64>)> = (0..count)
        .map(|i| {
            let n = 0x100 + i;
            (format!("0x{n:x}"), vec![host(2 * n), host(2 * n + 1)])
        })
        .collect();
    put_together_v3(&rig, &both);
    let mut args = intervals(60);
    // Renewed every 3 s; a UFM write goes out only while the claim is sure for more than
    // the 2 s a request may take, so one failed renewal closes the gate, and the next one,
    // a second later, keeps the leadership.
    args.extend(
        [
            "--leader-election",
            "--election-ttl",
            "9",
            "--etcd-timeout",
            "1",
            "--ufm-timeout",
            "2",
        ]
        .map(String::from),
    );
    let notify = Notify::new();
    let mut daemon = rig.monitor(&refs(&args), &notify);
    notify.wait(&daemon, "STATUS=", 1, secs(10));
    wait_until("the 30 partitions in UFM", secs(10), || {
        rig.pkeys().len() == count as usize
    });
    rig.wait_watching(&daemon);

    // 30 jobs lose a node each, in one etcd request; each removal takes UFM 250 ms.
    let removes = "DELETE /resources/pkeys/{pkey}/guids";
    rig.sim.add_faults(json!([
        {"method": "DELETE", "route": "/resources/pkeys/{pkey}/guids", "delay_ms": 250}
    ]));
    let one: Vec<(String, Vec<u64>)> = both
        .iter()
        .map(|(name, hosts)| (name.clone(), hosts[..1].to_vec()))
        .collect();
    put_together_v3(&rig, &one);
    wait_until("the removals to start", secs(10), || {
        requests(&rig, removes) >= 3
    });
    // etcd stops answering until a renewal of the claim has failed.
    let pid = rig.etcd.process().expect("etcd runs").pid();
    let resume = Resume(pid);
    std::process::Command::new("kill")
        .args(["-STOP", &pid.to_string()])
        .status()
        .expect("kill -STOP");
    daemon.wait_for_stderr("cannot refresh the claim", secs(10));
    drop(resume);
    let sent_while_stopped = requests(&rig, removes);

    wait_for(
        "every GUID etcd no longer wants to be removed",
        secs(15),
        || tail_lines(&daemon.stderr(), 30),
        || {
            one.iter()
                .all(|(name, hosts)| rig.partition(name) == Some(partition(hosts, &[])))
                .then_some(())
        },
    );
    let stderr = daemon.stop().stderr;
    let stopped = stderr
        .lines()
        .find(|l| l.contains("pass stopped after"))
        .unwrap_or_else(|| panic!("the stop is logged:\n{stderr}"));
    eprintln!("{sent_while_stopped} removals sent before the gate closed; {stopped}");
    let figures = stop_figures(stopped);
    assert!(
        figures.is_some_and(|(done, of, pending)| of == count
            && done + pending == count
            && pending > 0),
        "the log says how many of the {count} partitions were done and how many pending: {stopped}"
    );
    assert!(
        sent_while_stopped < count,
        "the gate closed in the middle of the removals: {sent_while_stopped} of {count} sent"
    );
}

/// The figures of "pass stopped after DONE of ALL partitions: why; PENDING partitions pending".
fn stop_figures(line: &str) -> Option<(u64, u64, u64)> {
    let (_, after) = line.split_once("pass stopped after ")?;
    let (done, rest) = after.split_once(" of ")?;
    let (all, _) = rest.split_once(' ')?;
    let pending = line
        .strip_suffix(" partitions pending")?
        .rsplit(' ')
        .next()?;
    Some((done.parse().ok()?, all.parse().ok()?, pending.parse().ok()?))
}

/// etcd crashes and is rebuilt from nothing (or restored from an old snapshot) while the
/// daemon watches it: its revision (v3) or index (v2) goes back. The daemon reads it again
/// once it answers, and its watch calls the position that went back a gap at once and says
/// so; a job started afterwards gets its partition within seconds, and nothing is deleted.
fn an_etcd_that_went_back_is_a_gap_in_the_watch_and_new_jobs_get_their_partition(api: Api) {
    let mut rig = Rig::new(api);
    // Move etcd's revision or index well past where a fresh one starts.
    for n in 0..20 {
        rig.put("0x1", &[host(1 + n % 2)], &[]);
    }
    rig.put("0x1", &[host(1)], &[]);
    let notify = Notify::new();
    let mut daemon = rig.monitor(&refs(&intervals(60)), &notify);
    rig.wait_partition(
        &daemon,
        "0x1",
        Some(&partition(&[host(1)], &[])),
        PROPAGATION,
    );
    rig.wait_watching(&daemon);
    let passes = notify.count("STATUS=");

    rig.etcd.kill();
    std::fs::remove_dir_all(rig.etcd.dir().join("data")).expect("removing etcd's data");
    rig.etcd.restart();
    // Whatever the daemon does when etcd answers again, a job started after it is seen.
    wait_for(
        "a pass once etcd answers again",
        secs(15),
        || tail_lines(&daemon.stderr(), 20),
        || (notify.count("STATUS=") > passes).then_some(()),
    );
    rig.put("0x50", &[host(50)], &[]);
    let started = Instant::now();
    rig.wait_partition(&daemon, "0x50", Some(&partition(&[host(50)], &[])), secs(8));
    eprintln!(
        "{api:?}: the new job's partition {:.1} s after its key",
        started.elapsed().as_secs_f64()
    );
    daemon.wait_for_stderr("went back from", secs(5));
    assert_eq!(rig.pkeys(), ["0x1", "0x50"], "{api:?}: nothing deleted");
    daemon.stop().assert_ok();
}

#[test]
fn a_v2_etcd_whose_index_went_back_is_a_gap_in_the_watch_and_new_jobs_get_their_partition() {
    an_etcd_that_went_back_is_a_gap_in_the_watch_and_new_jobs_get_their_partition(Api::V2);
}

#[test]
fn a_v3_etcd_whose_revision_went_back_is_a_gap_in_the_watch_and_new_jobs_get_their_partition() {
    an_etcd_that_went_back_is_a_gap_in_the_watch_and_new_jobs_get_their_partition(Api::V3);
}

// ------------------------------------------------------------------------------------------
// 5. One slow pass does not block everything
// ------------------------------------------------------------------------------------------

/// 50 new jobs queue 50 writes on a UFM that takes 1.5 s per write (75 s of work): an
/// unrelated job started while they go out gets its partition after a few writes, not after
/// the queue (the bench measures the 6 s target; 8 s leaves room for a loaded machine).
#[test]
fn a_new_job_behind_50_slow_writes_gets_its_partition_within_seconds() {
    let rig = Rig::new(Api::V3);
    let notify = Notify::new();
    let daemon = rig.monitor(&refs(&intervals(60)), &notify);
    notify.wait(&daemon, "STATUS=", 1, PROPAGATION);
    rig.wait_watching(&daemon);

    rig.sim
        .add_faults(json!([{"method": "WRITE", "delay_ms": 1500}]));
    let queued: Vec<(String, Vec<u64>)> = (0..50u64)
        .map(|i| (format!("0x{:x}", 0x100 + i), vec![host(100 + i)]))
        .collect();
    put_together_v3(&rig, &queued);
    wait_until("the queued writes to start", PROPAGATION, || {
        rig.ufm_writes() >= 1
    });
    rig.put("0x300", &[host(300)], &[]);
    let started = Instant::now();
    rig.wait_partition(
        &daemon,
        "0x300",
        Some(&partition(&[host(300)], &[])),
        secs(8),
    );
    let took = started.elapsed();
    let created = rig.pkeys().len() - 1;
    eprintln!(
        "the new job's partition after {:.1} s, with {created} of the 50 queued created",
        took.as_secs_f64()
    );
    assert!(created < 50, "the queue was not simply finished first");
    daemon.stop().assert_ok();
}

/// `etcdctl del --prefix` of 300 keys (one request) is read as one full pass: the refusal to
/// delete comes within seconds, and a job started right after gets its partition within
/// seconds, even where each single-PKey read takes UFM 40 ms (as on a large fabric). The
/// deadline is the bench's for 1,500 keys, 10 s: full passes come at most every 5 s.
#[test]
fn a_range_delete_of_300_keys_is_one_full_pass_refused_within_seconds_while_new_jobs_go_on() {
    let rig = Rig::new(Api::V3);
    let jobs: Vec<(String, Vec<u64>)> = (0..300u64)
        .map(|i| (format!("0x{:x}", 0x100 + i), vec![host(100 + i)]))
        .collect();
    put_together_v3(&rig, &jobs);
    let notify = Notify::new();
    let mut daemon = rig.monitor(&refs(&intervals(60)), &notify);
    notify.wait(&daemon, "STATUS=", 1, secs(20));
    wait_until("the 300 partitions in UFM and owned", secs(20), || {
        rig.owned().len() == 300 && rig.pkeys().len() == 300
    });
    rig.wait_watching(&daemon);

    rig.sim.add_faults(json!([
        {"method": "GET", "route": "/resources/pkeys/{pkey}", "delay_ms": 40}
    ]));
    assert_eq!(rig.etcd.delete_prefix_v3(PKEYS_PREFIX), 300);
    rig.put("0x500", &[host(500)], &[]);
    let deleted = Instant::now();
    daemon.wait_for_stderr("deleted by one request", secs(10));
    let refused = deleted.elapsed();
    rig.wait_partition(
        &daemon,
        "0x500",
        Some(&partition(&[host(500)], &[])),
        secs(10),
    );
    eprintln!(
        "refusal logged after {:.1} s, the new job's partition after {:.1} s",
        refused.as_secs_f64(),
        deleted.elapsed().as_secs_f64()
    );
    assert_eq!(rig.pkeys().len(), 301, "nothing deleted");
    daemon.stop().assert_ok();
}

// ------------------------------------------------------------------------------------------
// 6. A write that timed out may land late (issue 16, finding 1)
// ------------------------------------------------------------------------------------------

/// etcd: `0x900 = [a, b]`, then `[b]`: the removal of `a` gets no answer (the client gives up
/// after 2 s) and UFM applies it 12 s later. Meanwhile etcd goes back to `[a]`. The partition
/// is held (no write) until the late removal can no longer land, so it never passes through
/// empty, and it ends as `[a]`.
#[test]
fn a_removal_that_timed_out_and_lands_late_never_empties_the_partition() {
    const LATE_MS: u64 = 12_000;
    let rig = Rig::new(Api::V3);
    let (a, b) = (host(1), host(2));
    rig.put("0x900", &[a, b], &[]);
    let mut args = intervals(60);
    args.extend(["--ufm-timeout", "2"].map(String::from));
    let notify = Notify::new();
    let daemon = rig.monitor(&refs(&args), &notify);
    rig.wait_partition(
        &daemon,
        "0x900",
        Some(&partition(&[a, b], &[])),
        PROPAGATION,
    );
    rig.wait_watching(&daemon);

    let watcher = Watcher::start(rig.sim.url(), "0x900");
    rig.sim.add_faults(json!([
        {"method": "DELETE", "route": "/resources/pkeys/{pkey}/guids", "pkey": "0x900",
         "apply_after_ms": LATE_MS, "count": 1}
    ]));
    let removes = "DELETE /resources/pkeys/{pkey}/guids";
    rig.put("0x900", &[b], &[]);
    wait_until("the removal of a to reach UFM", PROPAGATION, || {
        requests(&rig, removes) >= 1
    });
    let sent = Instant::now();
    // The job gets its node back while the removal is on its way.
    rig.put("0x900", &[a], &[]);
    let want = partition(&[a], &[]);
    // Until the late removal has landed and UFM holds [a]; the looks at UFM are judged first.
    let deadline = Duration::from_millis(LATE_MS) + secs(15);
    let ended_as_a = loop {
        let landed = sent.elapsed() > Duration::from_millis(LATE_MS + 500);
        if landed && rig.partition("0x900").as_ref() == Some(&want) {
            break true;
        }
        if sent.elapsed() > deadline {
            break false;
        }
        std::thread::sleep(POLL);
    };
    let looks = watcher.finish();
    assert!(
        looks.samples >= 50,
        "UFM was looked at every 100 ms ({} looks)",
        looks.samples
    );
    assert!(
        looks.missing.is_empty(),
        "0x900 was absent or empty in {} of {} looks: {:?}\n{}",
        looks.missing.len(),
        looks.samples,
        looks.missing,
        tail_lines(&daemon.stderr(), 30)
    );
    assert!(
        looks.members.contains(&partition(&[b], &[])["guids"]),
        "the late removal of a landed (0x900 was [b] for a while): {:?}",
        looks.members
    );
    assert!(
        ended_as_a,
        "0x900 ends as [a], as etcd wants; UFM has {:?}\n{}",
        rig.partition("0x900"),
        tail_lines(&daemon.stderr(), 30)
    );
    assert_eq!(rig.owned(), ["0x900"]);
    daemon.stop().assert_ok();
}
