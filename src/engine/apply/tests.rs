//! The apply rules against a fake UFM that keeps partitions in memory and records each request.

use super::*;
use crate::engine::fake::{FakeUfm, guid, guids, join, pk};

fn add(pkey: &str, guids: Vec<Guid>, creates: bool) -> Action {
    Action::Add {
        pkey: pk(pkey),
        guids,
        join: join(),
        ip_over_ib: true,
        creates,
    }
}

fn remove(pkey: &str, guids: Vec<Guid>, keep: Vec<Guid>) -> Action {
    Action::Remove {
        pkey: pk(pkey),
        guids,
        keep,
    }
}

fn open() -> impl FnMut() -> Result<(), String> {
    || Ok(())
}

#[test]
fn applies_in_plan_order_and_counts_what_was_done() {
    let ufm = FakeUfm::with(&[("0x10", &[9])]);
    let actions = [
        add("0x10", guids(1..=2), false),
        remove("0x10", vec![guid(9)], guids(1..=2)),
        add("0x20", guids(1..=3), true),
    ];
    let applied = apply(&actions, &ufm, &mut open());
    assert_eq!(
        ufm.calls(),
        ["add 0x10 2", "get 0x10", "remove 0x10 1", "add 0x20 3"]
    );
    assert_eq!(
        applied.counts,
        Counts {
            created: 1,
            guids_added: 5,
            guids_removed: 1,
            deleted: 0
        }
    );
    assert!(applied.failures.is_empty());
    assert_eq!(applied.succeeded, [pk("0x10"), pk("0x20")].into());
    assert_eq!(ufm.members("0x10"), Some(guids(1..=2)));
}

#[test]
fn a_failed_add_skips_the_partitions_remove_but_not_other_partitions() {
    let ufm = FakeUfm {
        fail: vec!["add 0x10 2".into()],
        ..FakeUfm::with(&[("0x10", &[9])])
    };
    let actions = [
        add("0x10", guids(1..=2), false),
        remove("0x10", vec![guid(9)], guids(1..=2)),
        add("0x20", guids(1..=1), true),
    ];
    let applied = apply(&actions, &ufm, &mut open());
    assert_eq!(ufm.calls(), ["add 0x10 2", "add 0x20 1"]);
    assert_eq!(applied.skipped, 1);
    assert_eq!(applied.failed, [pk("0x10")].into());
    assert_eq!(applied.succeeded, [pk("0x20")].into());
    assert_eq!(ufm.members("0x10"), Some(vec![guid(9)]), "0x10 never empty");
}

#[test]
fn an_add_answered_2xx_but_not_applied_does_not_let_the_remove_empty_the_partition() {
    let ufm = FakeUfm {
        noop_adds: true,
        ..FakeUfm::with(&[("0x10", &[9])])
    };
    let actions = [
        add("0x10", guids(1..=1), false),
        remove("0x10", vec![guid(9)], guids(1..=1)),
    ];
    let applied = apply(&actions, &ufm, &mut open());
    assert_eq!(
        ufm.calls(),
        ["add 0x10 1", "get 0x10"],
        "no remove was sent"
    );
    assert_eq!(ufm.members("0x10"), Some(vec![guid(9)]));
    assert_eq!(applied.failures.len(), 1);
    assert!(
        applied.failures[0]
            .1
            .contains("does not hold 1 of the GUIDs")
    );
}

#[test]
fn a_remove_goes_out_in_batches_each_behind_the_gate() {
    let all = guids(1..=451);
    let ufm = FakeUfm::with(&[("0x10", &(1..=451).collect::<Vec<u64>>())]);
    let actions = [remove("0x10", all[1..].to_vec(), vec![all[0]])];
    let applied = apply(&actions, &ufm, &mut open());
    assert_eq!(
        ufm.calls(),
        [
            "get 0x10",
            "remove 0x10 200",
            "remove 0x10 200",
            "remove 0x10 50"
        ]
    );
    assert_eq!(applied.counts.guids_removed, 450);

    // The gate closes after the first batch: no other batch goes out.
    let ufm = FakeUfm::with(&[("0x10", &(1..=451).collect::<Vec<u64>>())]);
    let mut opened = 0;
    let mut gate = || {
        opened += 1;
        if opened > 1 {
            Err("the leadership claim may lapse".to_string())
        } else {
            Ok(())
        }
    };
    let actions = [
        remove("0x10", all[1..].to_vec(), vec![all[0]]),
        add("0x20", guids(1..=1), true),
    ];
    let applied = apply(&actions, &ufm, &mut gate);
    assert_eq!(ufm.calls(), ["get 0x10", "remove 0x10 200"]);
    assert_eq!(
        applied.stopped.as_deref(),
        Some("the leadership claim may lapse")
    );
    assert_eq!(
        applied.skipped, 2,
        "the rest of the remove and the add wait"
    );
}

#[test]
fn a_remove_that_would_leave_the_partition_empty_is_not_sent() {
    // Every GUID the partition keeps was rejected by UFM in this pass: nothing would remain.
    let ufm = FakeUfm {
        unknown: [guid(1)].into(),
        name_them: true,
        ..FakeUfm::with(&[("0x10", &[9])])
    };
    let actions = [
        add("0x10", guids(1..=1), false),
        remove("0x10", vec![guid(9)], guids(1..=1)),
    ];
    let applied = apply(&actions, &ufm, &mut open());
    assert_eq!(ufm.members("0x10"), Some(vec![guid(9)]));
    assert!(applied.failures[0].1.contains("would leave 0x10 empty"));
}

#[test]
fn an_unknown_guid_named_by_ufm_is_left_out_and_the_others_go_in() {
    let ufm = FakeUfm {
        unknown: [guid(3)].into(),
        name_them: true,
        ..FakeUfm::default()
    };
    let applied = apply(&[add("0x10", guids(1..=5), true)], &ufm, &mut open());
    assert_eq!(ufm.calls(), ["add 0x10 5", "add 0x10 4"]);
    assert_eq!(
        ufm.members("0x10"),
        Some(vec![guid(1), guid(2), guid(4), guid(5)])
    );
    assert_eq!(applied.rejected.len(), 1);
    assert_eq!(applied.rejected[0].guid, guid(3));
    assert!(applied.rejected[0].reason.contains("does not exist"));
    assert!(applied.failures.is_empty());
    assert_eq!(applied.counts.guids_added, 4);
    assert_eq!(applied.counts.created, 1);
}

#[test]
fn an_unknown_guid_ufm_does_not_name_is_found_by_splitting_the_request() {
    let ufm = FakeUfm {
        unknown: [guid(6)].into(),
        name_them: false,
        ..FakeUfm::default()
    };
    let applied = apply(&[add("0x10", guids(1..=16), true)], &ufm, &mut open());
    assert_eq!(applied.rejected.len(), 1);
    assert_eq!(applied.rejected[0].guid, guid(6));
    assert_eq!(ufm.members("0x10").map(|m| m.len()), Some(15));
    // Halving: 1 + 2 per level for 4 levels, not one request per GUID.
    assert!(ufm.calls().len() <= 9, "{:?}", ufm.calls());
}

#[test]
fn deleting_a_partition_already_gone_counts_as_deleted_once_a_read_confirms_it() {
    let ufm = FakeUfm::default();
    let applied = apply(&[Action::Delete { pkey: pk("0x30") }], &ufm, &mut open());
    assert_eq!(ufm.calls(), ["delete 0x30", "get 0x30"]);
    assert!(applied.failures.is_empty());
    assert_eq!(applied.deleted, [pk("0x30")].into());
    assert_eq!(applied.counts.deleted, 1);
}

fn unavailable() -> UfmError {
    UfmError::Api {
        status: 503,
        message: "UFM refused the request (HTTP 503)".into(),
        reason: "Service Unavailable".into(),
    }
}

#[test]
fn a_503_is_sent_again_and_two_in_a_row_are_absorbed() {
    let ufm = FakeUfm::default();
    ufm.faults
        .borrow_mut()
        .push(("add 0x10 2".into(), unavailable(), 2));
    let applied = apply(&[add("0x10", guids(1..=2), true)], &ufm, &mut open());
    assert_eq!(ufm.calls(), ["add 0x10 2", "add 0x10 2", "add 0x10 2"]);
    assert_eq!(applied.retries, 2);
    assert!(applied.failures.is_empty());
    assert_eq!(ufm.members("0x10"), Some(guids(1..=2)));
}

#[test]
fn a_timed_out_write_is_not_sent_again() {
    let ufm = FakeUfm::default();
    let timeout = UfmError::TimedOut("no answer within 30 s".into());
    ufm.faults
        .borrow_mut()
        .push(("add 0x10 2".into(), timeout, 1));
    let actions = [
        add("0x10", guids(1..=2), true),
        add("0x20", guids(1..=1), true),
    ];
    let applied = apply(&actions, &ufm, &mut open());
    assert_eq!(ufm.calls(), ["add 0x10 2", "add 0x20 1"]);
    assert_eq!(applied.retries, 0);
    assert_eq!(applied.failed, [pk("0x10")].into(), "only 0x10 waits");
    assert_eq!(applied.succeeded, [pk("0x20")].into());
    assert!(applied.ufm_down.is_none(), "UFM answers other requests");
}

#[test]
fn when_ufm_answers_nothing_the_pass_stops_writing_instead_of_timing_out_each_partition() {
    let ufm = FakeUfm {
        down: true,
        ..FakeUfm::default()
    };
    ufm.faults.borrow_mut().push((
        "add 0x10 2".into(),
        UfmError::Unreachable("connection refused".into()),
        9,
    ));
    let actions = [
        add("0x10", guids(1..=2), true),
        add("0x20", guids(1..=1), true),
    ];
    let applied = apply(&actions, &ufm, &mut open());
    assert_eq!(
        ufm.calls(),
        ["add 0x10 2"; 3],
        "three tries, then nothing more"
    );
    assert!(applied.ufm_down.is_some());
    assert_eq!(applied.skipped, 2);
    assert!(
        applied.failed.is_empty(),
        "no partition is blamed for an outage"
    );
}

#[test]
fn a_not_found_on_delete_while_the_partition_is_there_keeps_it_owned() {
    let ufm = FakeUfm {
        delete_says_not_found: true,
        ..FakeUfm::with(&[("0x30", &[1, 2])])
    };
    let applied = apply(&[Action::Delete { pkey: pk("0x30") }], &ufm, &mut open());
    assert_eq!(ufm.calls(), ["delete 0x30", "get 0x30"]);
    assert!(applied.deleted.is_empty(), "not forgotten: still owned");
    assert_eq!(applied.failed, [pk("0x30")].into());
    assert_eq!(applied.counts.deleted, 0);
    assert!(
        applied.failures[0]
            .1
            .contains("still has 0x30 with 2 GUIDs"),
        "{}",
        applied.failures[0].1
    );
    assert_eq!(ufm.members("0x30"), Some(guids(1..=2)));
}

#[test]
fn a_not_found_on_delete_that_cannot_be_confirmed_keeps_it_owned() {
    let ufm = FakeUfm {
        delete_says_not_found: true,
        fail: vec!["get 0x30".into()],
        ..FakeUfm::with(&[("0x30", &[1])])
    };
    let applied = apply(&[Action::Delete { pkey: pk("0x30") }], &ufm, &mut open());
    assert!(applied.deleted.is_empty());
    assert!(
        applied.failures[0]
            .1
            .contains("cannot confirm that 0x30 is gone"),
        "{}",
        applied.failures[0].1
    );
}

#[test]
fn the_gate_is_asked_before_every_retry() {
    let ufm = FakeUfm::default();
    ufm.faults
        .borrow_mut()
        .push(("delete 0x10".into(), unavailable(), 5));
    let mut asked = 0;
    let mut gate = || {
        asked += 1;
        if asked > 2 {
            Err("the claim could lapse".to_string())
        } else {
            Ok(())
        }
    };
    let applied = apply(&[Action::Delete { pkey: pk("0x10") }], &ufm, &mut gate);
    assert_eq!(ufm.calls(), ["delete 0x10", "delete 0x10"]);
    assert_eq!(applied.stopped.as_deref(), Some("the claim could lapse"));
}

#[test]
fn a_refusal_that_only_its_url_ties_to_guids_is_not_taken_for_an_unknown_port() {
    // The actions route's URL names GUIDs; UFM's text does not: no bisection.
    let error = UfmError::Api {
        status: 400,
        message: "UFM at http://ufm/ufmRest/actions/add_guids_to_pkey refused the request (HTTP 400): bad request".into(),
        reason: "bad request".into(),
    };
    assert!(!names_a_port(&error));
}

/// A gate that opens `times` times, then stays closed; counts how often it was asked.
fn opens(times: usize, asked: &mut usize) -> impl FnMut() -> Result<(), String> + '_ {
    move || {
        *asked += 1;
        if *asked > times {
            Err("the leadership claim may lapse".to_string())
        } else {
            Ok(())
        }
    }
}

#[test]
fn a_delete_of_many_requests_asks_the_gate_before_each_write() {
    let ufm = FakeUfm {
        delete_by_removing: true,
        ..FakeUfm::with(&[("0x30", &(1..=450).collect::<Vec<u64>>())])
    };
    let mut asked = 0;
    let applied = apply(
        &[Action::Delete { pkey: pk("0x30") }],
        &ufm,
        &mut opens(usize::MAX, &mut asked),
    );
    assert_eq!(
        ufm.calls(),
        [
            "delete 0x30",
            "get 0x30",
            "remove 0x30 200",
            "remove 0x30 200",
            "remove 0x30 50",
            "get 0x30"
        ]
    );
    assert_eq!(asked, 4, "once per write request, never for a read");
    assert_eq!(applied.deleted, [pk("0x30")].into());
    assert_eq!(applied.counts.deleted, 1);
}

#[test]
fn a_gate_closing_in_the_middle_of_a_delete_leaves_it_owned_unfailed_and_for_the_next_pass() {
    let ufm = FakeUfm {
        delete_by_removing: true,
        ..FakeUfm::with(&[("0x30", &(1..=450).collect::<Vec<u64>>())])
    };
    let actions = [
        Action::Delete { pkey: pk("0x30") },
        add("0x40", guids(1..=1), true),
    ];
    // Open for the delete request and the first batch, closed from the second batch on.
    let mut asked = 0;
    let applied = apply(&actions, &ufm, &mut opens(2, &mut asked));
    assert_eq!(
        ufm.calls(),
        ["delete 0x30", "get 0x30", "remove 0x30 200"],
        "no write after the gate closed"
    );
    assert_eq!(
        applied.stopped.as_deref(),
        Some("the leadership claim may lapse")
    );
    assert!(
        applied.deleted.is_empty(),
        "not reported deleted: not forgotten"
    );
    assert!(applied.failed.is_empty(), "a closed gate is no failure");
    assert!(applied.failures.is_empty());
    assert_eq!(applied.counts, Counts::default());
    assert_eq!(
        applied.skipped, 2,
        "the rest of the delete and the add wait"
    );
    assert_eq!(ufm.members("0x30").map(|m| m.len()), Some(250));

    // The next pass (this instance or the new leader) finishes it.
    let applied = apply(&actions[..1], &ufm, &mut open());
    assert_eq!(applied.deleted, [pk("0x30")].into());
    assert_eq!(ufm.members("0x30"), None);
}

#[test]
fn a_gate_closing_before_an_adds_fallback_route_stops_the_pass_without_a_failure() {
    let ufm = FakeUfm {
        add_by_fallback: true,
        ..FakeUfm::default()
    };
    let actions = [
        add("0x10", guids(1..=2), true),
        add("0x20", guids(1..=1), true),
    ];
    let mut asked = 0;
    let applied = apply(&actions, &ufm, &mut opens(1, &mut asked));
    assert_eq!(ufm.calls(), ["add 0x10 2"], "the fallback did not go out");
    assert_eq!(
        applied.stopped.as_deref(),
        Some("the leadership claim may lapse")
    );
    assert!(applied.failed.is_empty());
    assert!(applied.rejected.is_empty(), "no GUID blamed");
    assert_eq!(applied.skipped, 2);
    assert_eq!(applied.counts, Counts::default());
}
