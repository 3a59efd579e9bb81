//! The engine's rules over both sides in memory ([`super::fake`]): one observation path, a
//! change done only when a read shows it, nothing dropped. The integration tests check the
//! same behaviour against real etcd and the UFM simulator.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::fake::{FakeEtcd, FakeUfm, guid, pk};
use super::*;

const PREFIX: &str = "/pcocc/global/opensm/pkeys/";

fn key(name: &str) -> String {
    format!("{PREFIX}{name}")
}

/// pcocc's value for host GUIDs `hosts` (index0 off, as the fake UFM reports every member).
fn entry(hosts: &[u64]) -> String {
    let guids: Vec<String> = hosts.iter().map(|g| format!("'0x{g:016x}'")).collect();
    format!("{{'host_guids': [{}], 'vf_guids': []}}", guids.join(", "))
}

fn engine(etcd: FakeEtcd, ufm: FakeUfm, owned: &[&str]) -> Engine<FakeEtcd, FakeUfm> {
    let settings = Settings {
        prefix: PREFIX.to_string(),
        state_file: PathBuf::from("/nonexistent/state.json"),
        state_key: None,
        guard: DeleteGuard::default(),
        policy: Policy::default(),
        late_write_margin: Duration::from_secs(10),
    };
    let owned: BTreeSet<PKey> = owned.iter().map(|p| pk(p)).collect();
    let mut engine = Engine::with(etcd, ufm, settings, Ownership::in_memory(owned));
    engine.track_drift();
    engine
}

/// A gate that always opens.
fn open() -> impl FnMut() -> Result<(), String> {
    || Ok(())
}

/// A pass over what is due, as if its time had come.
fn due_pass(engine: &mut Engine<FakeEtcd, FakeUfm>) -> PassReport {
    engine.work.make_all_due();
    engine.pass(&mut open(), Scope::Due).expect("pass")
}

fn members(ufm: &FakeUfm, pkey: &str) -> Vec<u64> {
    let guids = ufm.members(pkey).unwrap_or_default();
    (1..=64).filter(|n| guids.contains(&guid(*n))).collect()
}

#[test]
fn an_add_answered_2xx_but_not_applied_stays_pending_until_a_read_shows_it() {
    let etcd = FakeEtcd::default();
    let ufm = FakeUfm {
        noop_adds: true,
        ..FakeUfm::default()
    };
    let mut engine = engine(etcd, ufm, &[]);
    let change = engine.etcd.put(&key("0x10"), &entry(&[1]));
    engine.changes(&[change], Instant::now());
    let report = due_pass(&mut engine);
    assert_eq!(report.counts.guids_added, 1, "UFM answered 2xx");
    assert!(
        report.unconfirmed.contains_key(&pk("0x10")),
        "but the read-back does not show it: {report:?}"
    );
    assert!(!report.complete());
    assert_eq!(engine.pending_len(), 1, "the change is not dropped");
    assert!(engine.owned().contains(&pk("0x10")), "owned throughout");
    engine.ufm.noop_adds = false;
    let report = due_pass(&mut engine);
    assert!(report.complete(), "{report:?}");
    assert_eq!(members(&engine.ufm, "0x10"), [1]);
    assert_eq!(engine.pending_len(), 0);
}

#[test]
fn a_delete_answered_2xx_but_not_applied_keeps_the_partition_owned_and_is_sent_again() {
    let etcd = FakeEtcd::default();
    let ufm = FakeUfm::with(&[("0x10", &[1])]);
    let mut engine = engine(etcd, ufm, &["0x10"]);
    let put = engine.etcd.put(&key("0x10"), &entry(&[1]));
    engine.changes(&[put], Instant::now());
    due_pass(&mut engine);
    engine.ufm.noop_deletes = true;
    let gone = engine.etcd.delete(&[&key("0x10")]);
    engine.changes(&gone, Instant::now());
    let report = due_pass(&mut engine);
    assert_eq!(report.counts.deleted, 1, "UFM answered 2xx");
    assert!(engine.owned().contains(&pk("0x10")), "still owned");
    assert_eq!(engine.pending_len(), 1);
    engine.ufm.noop_deletes = false;
    let report = due_pass(&mut engine);
    assert!(report.complete(), "{report:?}");
    assert_eq!(engine.ufm.members("0x10"), None, "deleted");
    assert!(!engine.owned().contains(&pk("0x10")), "and no longer owned");
}

#[test]
fn a_removal_answered_2xx_but_not_applied_stays_pending() {
    let etcd = FakeEtcd::default();
    let ufm = FakeUfm::with(&[("0x10", &[1, 2])]);
    let mut engine = engine(etcd, ufm, &["0x10"]);
    engine.ufm.noop_removes = true;
    let change = engine.etcd.put(&key("0x10"), &entry(&[1]));
    engine.changes(&[change], Instant::now());
    let report = due_pass(&mut engine);
    assert!(report.unconfirmed.contains_key(&pk("0x10")), "{report:?}");
    engine.ufm.noop_removes = false;
    assert!(due_pass(&mut engine).complete());
    assert_eq!(members(&engine.ufm, "0x10"), [1]);
}

#[test]
fn a_pass_over_some_partitions_reads_every_key_that_names_them() {
    let etcd = FakeEtcd::default();
    let ufm = FakeUfm::with(&[("0x5b9", &[1, 2, 3, 4])]);
    let mut engine = engine(etcd, ufm, &["0x5b9"]);
    engine.etcd.put(&key("0x5b9"), &entry(&[1, 2, 3, 4]));
    engine.etcd.put(&key("0x05b9"), &entry(&[1, 2, 3, 4]));
    let full = engine.pass(&mut open(), Scope::Full).expect("full pass");
    assert_eq!(full.plan.invalid.len(), 1, "two spellings: left alone");
    // A write to the second spelling: the partition is still named twice.
    let change = engine.etcd.put(&key("0x05b9"), &entry(&[1]));
    engine.changes(&[change], Instant::now());
    let report = due_pass(&mut engine);
    assert!(report.plan.actions.is_empty(), "{:?}", report.plan);
    assert_eq!(members(&engine.ufm, "0x5b9"), [1, 2, 3, 4]);
    assert!(engine.etcd.gets.borrow().contains(&key("0x5b9")));
    // Deleting one spelling leaves the other: the partition follows it, nothing is deleted.
    let gone = engine.etcd.delete(&[&key("0x05b9")]);
    engine.changes(&gone, Instant::now());
    due_pass(&mut engine);
    assert_eq!(members(&engine.ufm, "0x5b9"), [1, 2, 3, 4]);
}

#[test]
fn an_unreadable_single_read_is_a_failed_read_tried_again_not_a_consumed_change() {
    let etcd = FakeEtcd::default();
    let ufm = FakeUfm::default();
    ufm.odd_reads.borrow_mut().insert(pk("0x10"), 1);
    let mut engine = engine(etcd, ufm, &[]);
    let change = engine.etcd.put(&key("0x10"), &entry(&[1]));
    engine.changes(&[change], Instant::now());
    let report = due_pass(&mut engine);
    assert!(report.plan.actions.is_empty(), "left as it is this time");
    assert_eq!(engine.pending_len(), 1, "not consumed");
    let waiting = engine.pending().next().map(|(_, why, _)| why.clone());
    assert!(matches!(waiting, Some(Why::Unread(_))), "{waiting:?}");
    let report = due_pass(&mut engine);
    assert!(report.complete(), "{report:?}");
    assert_eq!(members(&engine.ufm, "0x10"), [1]);
}

#[test]
fn changes_a_closed_gate_kept_from_ufm_stay_pending_and_are_said_so() {
    let etcd = FakeEtcd::default();
    let ufm = FakeUfm::default();
    let mut engine = engine(etcd, ufm, &[]);
    let changes: Vec<Change> = (1..=3)
        .map(|n| engine.etcd.put(&key(&format!("0x{n:x}0")), &entry(&[n])))
        .collect();
    engine.changes(&changes, Instant::now());
    let mut writes = 0;
    let mut gate = || {
        writes += 1;
        if writes > 1 {
            Err("leadership not confirmed".to_string())
        } else {
            Ok(())
        }
    };
    let report = engine.pass(&mut gate, Scope::Due).expect("pass");
    assert_eq!(report.counts.created, 1);
    assert_eq!(report.not_sent.len(), 2, "{report:?}");
    assert_eq!(engine.pending_len(), 2, "nothing dropped");
    let (due, _) = engine.due(Instant::now());
    assert_eq!(due, 2, "due again at once");
    assert!(due_pass(&mut engine).complete());
}

/// A gate that makes way after the first partition.
struct MakeWayOnce(bool);

impl Gate for MakeWayOnce {
    fn before_write(&mut self) -> Result<(), String> {
        Ok(())
    }

    fn make_way(&mut self) -> bool {
        std::mem::replace(&mut self.0, true)
    }
}

#[test]
fn a_pass_that_makes_way_leaves_the_rest_due_and_new_changes_go_first() {
    let etcd = FakeEtcd::default();
    let ufm = FakeUfm::default();
    let mut engine = engine(etcd, ufm, &[]);
    let old: Vec<Change> = (1..=3)
        .map(|n| engine.etcd.put(&key(&format!("0x{n:x}0")), &entry(&[n])))
        .collect();
    engine.changes(&old, Instant::now());
    let report = engine
        .pass(&mut MakeWayOnce(false), Scope::Due)
        .expect("pass");
    assert!(report.made_way);
    assert_eq!(report.counts.created, 1);
    let new = engine.etcd.put(&key("0x40"), &entry(&[4]));
    engine.changes(&[new], Instant::now());
    let report = engine
        .pass(&mut MakeWayOnce(false), Scope::Due)
        .expect("pass");
    assert_eq!(report.counts.created, 1);
    assert_eq!(
        members(&engine.ufm, "0x40"),
        [4],
        "the new change went first"
    );
    assert!(due_pass(&mut engine).complete());
    assert_eq!(engine.pending_len(), 0);
}

#[test]
fn our_own_writes_are_not_drift_but_a_change_just_before_them_is() {
    let etcd = FakeEtcd::default();
    let ufm = FakeUfm::with(&[("0x99", &[9])]);
    let mut engine = engine(etcd, ufm, &[]);
    engine.pass(&mut open(), Scope::Full).expect("full pass");
    assert_eq!(engine.check_drift().ok(), Some(Drift::Unchanged));
    let change = engine.etcd.put(&key("0x10"), &entry(&[1]));
    engine.changes(&[change], Instant::now());
    let report = due_pass(&mut engine);
    assert_eq!(report.want_full, None);
    assert_eq!(engine.check_drift().ok(), Some(Drift::Unchanged), "ours");
    // Someone deletes 0x99 by hand just before the next change is written.
    engine.ufm.partitions.borrow_mut().remove(&pk("0x99"));
    engine.ufm.stamp.set(engine.ufm.stamp.get() + 1);
    let change = engine.etcd.put(&key("0x20"), &entry(&[2]));
    engine.changes(&[change], Instant::now());
    let report = due_pass(&mut engine);
    assert!(report.want_full.is_some(), "{report:?}");
    assert!(matches!(engine.check_drift(), Ok(Drift::FullPass(_))));
}

#[test]
fn a_last_updated_that_does_not_move_after_applied_writes_is_not_trusted() {
    let etcd = FakeEtcd::default();
    let ufm = FakeUfm {
        stamp_frozen: true,
        ..FakeUfm::default()
    };
    let mut engine = engine(etcd, ufm, &[]);
    engine.pass(&mut open(), Scope::Full).expect("full pass");
    let change = engine.etcd.put(&key("0x10"), &entry(&[1]));
    engine.changes(&[change], Instant::now());
    assert!(due_pass(&mut engine).complete());
    assert!(matches!(engine.check_drift(), Ok(Drift::FullPass(_))));
}

#[test]
fn a_watch_batch_touching_many_partitions_asks_for_a_full_pass_instead() {
    let etcd = FakeEtcd::default();
    let mut engine = engine(etcd, FakeUfm::default(), &[]);
    let keys: Vec<String> = (1..=100).map(|n| key(&format!("0x{n:x}"))).collect();
    let names: Vec<&str> = keys.iter().map(String::as_str).collect();
    let changes = engine.etcd.delete(&names);
    assert!(engine.changes(&changes, Instant::now()).is_some());
    assert_eq!(engine.pending_len(), 0, "the full pass reads them all");
}

#[test]
fn a_deletion_with_no_verdict_in_a_partial_pass_is_left_for_a_full_pass() {
    let etcd = FakeEtcd::default();
    let ufm = FakeUfm::with(&[("0x10", &[1])]);
    // Owned, but its key's deletion was never seen by the watch (no verdict recorded).
    let mut engine = engine(etcd, ufm, &["0x10"]);
    engine.work.settle(
        pk("0x10"),
        work::Outcome::Again(Why::NotSent("test".into())),
        Instant::now(),
    );
    let report = due_pass(&mut engine);
    assert!(report.plan.actions.is_empty(), "{:?}", report.plan);
    assert!(report.plan.refused_deletes.is_empty(), "not refused either");
    assert!(report.want_full.is_some());
    assert_eq!(members(&engine.ufm, "0x10"), [1]);
}

#[test]
fn a_failing_partition_waits_for_its_own_retry_and_the_others_go_on() {
    let etcd = FakeEtcd::default();
    let ufm = FakeUfm {
        fail: vec!["add 0x10 1".to_string()],
        ..FakeUfm::default()
    };
    let mut engine = engine(etcd, ufm, &[]);
    let a = engine.etcd.put(&key("0x10"), &entry(&[1]));
    let b = engine.etcd.put(&key("0x20"), &entry(&[2]));
    engine.changes(&[a, b], Instant::now());
    let report = engine.pass(&mut open(), Scope::Due).expect("pass");
    assert_eq!(report.failures.len(), 1);
    assert_eq!(members(&engine.ufm, "0x20"), [2]);
    let (due, next) = engine.due(Instant::now());
    assert_eq!(due, 0, "0x10 waits");
    assert!(next.is_some_and(|t| t > Instant::now() + Duration::from_secs(1)));
}

#[test]
fn a_write_whose_outcome_is_unknown_holds_its_partition_and_only_it() {
    let etcd = FakeEtcd::default();
    let ufm = FakeUfm::with(&[("0x900", &[1, 2]), ("0x901", &[1])]);
    let mut engine = engine(etcd, ufm, &["0x900", "0x901"]);
    engine.ufm.faults.borrow_mut().push((
        "remove 0x900 1".to_string(),
        UfmError::TimedOut("no answer within 2 s".into()),
        1,
    ));
    let change = engine.etcd.put(&key("0x900"), &entry(&[2]));
    engine.changes(&[change], Instant::now());
    let report = engine.pass(&mut open(), Scope::Due).expect("pass");
    assert!(report.unconfirmed.contains_key(&pk("0x900")), "{report:?}");
    // etcd goes back to [1]: a write to 0x900 now could be undone by the late DELETE.
    let back = engine.etcd.put(&key("0x900"), &entry(&[1]));
    let other = engine.etcd.put(&key("0x901"), &entry(&[1, 3]));
    engine.changes(&[back, other], Instant::now());
    let calls = engine.ufm.calls().len();
    let report = engine.pass(&mut open(), Scope::Due).expect("pass");
    let sent: Vec<String> = engine.ufm.calls()[calls..].to_vec();
    assert!(
        sent.iter().all(|c| !c.contains("0x900")),
        "nothing for the held partition: {sent:?}"
    );
    assert_eq!(members(&engine.ufm, "0x901"), [1, 3], "the others go on");
    assert!(report.unconfirmed.is_empty(), "{report:?}");
    // Once UFM can no longer apply the late request, the partition is read and synced.
    engine.work.make_all_due();
    assert!(
        engine
            .pass(&mut open(), Scope::Due)
            .expect("pass")
            .complete()
    );
    assert_eq!(members(&engine.ufm, "0x900"), [1]);
}
