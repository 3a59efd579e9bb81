//! What an operator asks a running daemon, and what the daemon does with a record it did not
//! write (issues 17 and 18): a refused deletion confirmed with `ufm-pkeyd state
//! --confirm-deletions` while the daemon runs (used once, only for what it names, expiring
//! unused, ignored when left by another user, through etcd with leader election); `state
//! --adopt` left for the daemon; a state file replaced under the daemon; a restored record
//! claiming a partition made by hand; the record of a v2 run used with the v3 keyspace; and a
//! second daemon writing the same partitions.
//!
//! Every test runs against a real etcd 3.4 and the UFM simulator, with the daemon at
//! `--poll-interval 1` where it matters, and waits on conditions with deadlines. Five of them
//! found defects that were fixed after (the state file checked before a pass acts, held work
//! due again at adoption, an unusable request said once and costing no full pass, the refusal
//! naming `state --confirm-deletions`, the second writer seen before its writes).

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use support::*;

/// How long a change made in etcd may take to show in UFM while the daemon watches.
const PROPAGATION: Duration = Duration::from_secs(5);

/// How long a request left with `ufm-pkeyd state` may take to be carried out by a daemon
/// polling every second: it is seen within the poll interval, and carried out by the next
/// full pass, which comes at most every 5 s (the schedule's floor between full passes); plus
/// room for a loaded machine.
const CARRIED_OUT: Duration = Duration::from_secs(8);

/// PKey names `0x…` for the numbers in `range`.
fn names(range: std::ops::RangeInclusive<u64>) -> Vec<String> {
    range.map(|n| format!("0x{n:x}")).collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

fn ufm_set(rig: &Rig) -> BTreeSet<String> {
    rig.pkeys().into_iter().collect()
}

/// The request file the daemon looks for beside its state file.
fn request_file(rig: &Rig) -> PathBuf {
    rig.dir.join("state.json.request")
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs()
}

/// Writes `contents` to `path` the way an editor or a restore would: a new file renamed over
/// the old one, so that a reader never sees half of it.
fn replace_file(path: &Path, contents: &[u8]) {
    let tmp = path.with_extension("test-tmp");
    std::fs::write(&tmp, contents).unwrap_or_else(|e| panic!("writing {}: {e}", tmp.display()));
    std::fs::rename(&tmp, path).unwrap_or_else(|e| panic!("renaming over {}: {e}", path.display()));
}

/// The daemon's log from byte `from` on (what it said since a given moment).
fn log_since(daemon: &Daemon, from: usize) -> String {
    daemon.stderr().get(from..).unwrap_or_default().to_string()
}

/// Waits until the daemon's log, from byte `from` on, contains `needle`.
fn wait_for_new_stderr(daemon: &Daemon, from: usize, needle: &str, timeout: Duration) {
    wait_for(
        &format!("ufm-pkeyd stderr to contain {needle:?}"),
        timeout,
        || {
            format!(
                "--- ufm-pkeyd stderr ---\n{}",
                tail_lines(&daemon.stderr(), 40)
            )
        },
        || log_since(daemon, from).contains(needle).then_some(()),
    );
}

/// The log lines containing `needle`.
fn lines_with(text: &str, needle: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

/// Twelve jobs owned by a daemon polling every second, then `etcdctl del --prefix`: the
/// daemon refuses the twelve deletions. Returns the running daemon.
fn daemon_refusing_a_mass_deletion(rig: &Rig, notify: &Notify, extra: &[&str]) -> Daemon {
    for (n, name) in (1u64..).zip(names(1..=12)) {
        rig.put(&name, &[host(n)], &[]);
    }
    let mut args = vec!["--poll-interval", "1"];
    args.extend_from_slice(extra);
    let mut daemon = rig.monitor(&args, notify);
    wait_until("the 12 partitions in UFM", PROPAGATION, || {
        rig.pkeys().len() == 12
    });
    // Owned is recorded ahead of the creations; the pass's end is the moment the record is
    // complete.
    notify.wait(&daemon, "STATUS=", 1, PROPAGATION);
    assert_eq!(rig.etcd.delete_prefix_v3(PKEYS_PREFIX), 12);
    daemon.wait_for_stderr("refusing to delete 12 partitions", PROPAGATION);
    assert_eq!(rig.pkeys().len(), 12, "the guard deleted nothing");
    daemon
}

/// `ufm-pkeyd state EXTRA…` run by the operator `who` (through sudo, as the log says).
fn state_as(rig: &Rig, who: &str, extra: &[&str]) -> Run {
    rig.pkeyd("state", extra).env("SUDO_USER", who).run()
}

// ------------------------------------------------------------------------------------------
// Confirming refused deletions while the daemon runs (issue 18, item 5)
// ------------------------------------------------------------------------------------------

#[test]
fn a_refused_mass_deletion_confirmed_while_the_daemon_runs_is_carried_out_once_and_logged() {
    let rig = Rig::new(Api::V3);
    let notify = Notify::new();
    let mut daemon = daemon_refusing_a_mass_deletion(&rig, &notify, &[]);

    let asked = Instant::now();
    let confirm = state_as(&rig, "alice", &["--confirm-deletions", "all"]);
    confirm.assert_ok();
    assert!(
        confirm.stdout.contains(&path_text(&request_file(&rig))),
        "the operator is told where the request was left:\n{}",
        confirm.stdout
    );
    wait_for(
        "the 12 confirmed deletions",
        CARRIED_OUT,
        || tail_lines(&daemon.stderr(), 30),
        || rig.pkeys().is_empty().then_some(()),
    );
    let took = asked.elapsed();
    daemon.wait_for_stderr("by alice@", PROPAGATION);
    let said = lines_with(&daemon.stderr(), "by alice@");
    assert!(
        said.iter().any(
            |l| l.contains("state --confirm-deletions") && l.contains("12 deletions confirmed")
        ),
        "the log names who confirmed what: {said:#?}"
    );
    wait_until("the request file removed once used", PROPAGATION, || {
        !request_file(&rig).exists()
    });
    eprintln!("confirmed deletions carried out {took:.2?} after the request");

    // A second accident later is refused again: the confirmation was used once.
    for (n, name) in (0x21u64..).zip(names(0x21..=0x2c)) {
        rig.put(&name, &[host(n)], &[]);
    }
    wait_until("the 12 new partitions owned", PROPAGATION, || {
        rig.pkeys().len() == 12 && rig.owned().len() == 12
    });
    let from = daemon.stderr().len();
    assert_eq!(rig.etcd.delete_prefix_v3(PKEYS_PREFIX), 12);
    wait_for_new_stderr(
        &daemon,
        from,
        "refusing to delete 12 partitions",
        PROPAGATION,
    );
    assert_eq!(rig.pkeys().len(), 12, "the second mass deletion is refused");
    daemon.stop().assert_ok();
}

#[test]
fn a_confirmation_naming_pkeys_and_ranges_deletes_only_those() {
    let rig = Rig::new(Api::V3);
    let notify = Notify::new();
    let daemon = daemon_refusing_a_mass_deletion(&rig, &notify, &[]);
    let from = daemon.stderr().len();
    state_as(&rig, "bob", &["--confirm-deletions", "0x1-0x4,0x9"]).assert_ok();
    let left = set(&["0x5", "0x6", "0x7", "0x8", "0xa", "0xb", "0xc"]);
    wait_for(
        "0x1-0x4 and 0x9 deleted",
        CARRIED_OUT,
        || tail_lines(&daemon.stderr(), 30),
        || (ufm_set(&rig) == left).then_some(()),
    );
    wait_for_new_stderr(&daemon, from, "5 deletions confirmed", PROPAGATION);
    // The pass's refusal is logged after its report.
    wait_for_new_stderr(
        &daemon,
        from,
        "refusing to delete 7 partitions",
        PROPAGATION,
    );
    let log = log_since(&daemon, from);
    assert!(
        log.contains("by bob@") && log.contains("7 still refused"),
        "the log says who confirmed and what is still refused:\n{log}"
    );
    wait_until("the request file removed", PROPAGATION, || {
        !request_file(&rig).exists()
    });
    assert_eq!(ufm_set(&rig), left);
    daemon.stop().assert_ok();
}

#[test]
fn a_request_older_than_an_hour_is_removed_unused_and_said_so() {
    let rig = Rig::new(Api::V3);
    let notify = Notify::new();
    let mut daemon = daemon_refusing_a_mass_deletion(&rig, &notify, &[]);
    // Left two hours ago and never used (the daemon was stopped then, say).
    let old = json!({"op": "confirm-deletions", "by": "carol@old-host", "at": unix_now() - 7200});
    replace_file(&request_file(&rig), old.to_string().as_bytes());
    daemon.wait_for_stderr("expired unused", CARRIED_OUT);
    let said = lines_with(&daemon.stderr(), "expired unused");
    assert!(
        said.len() == 1 && said[0].contains("carol@old-host"),
        "said once, naming who left it: {said:#?}"
    );
    wait_until("the expired request removed", PROPAGATION, || {
        !request_file(&rig).exists()
    });
    assert_eq!(rig.pkeys().len(), 12, "an expired request confirms nothing");
    daemon.stop().assert_ok();
}

#[test]
fn a_request_file_owned_by_another_user_is_ignored_and_said_so() {
    let rig = Rig::new(Api::V3);
    let notify = Notify::new();
    let metrics = rig.dir.join("metrics.prom");
    let metrics_flag = path_text(&metrics);
    let mut daemon =
        daemon_refusing_a_mass_deletion(&rig, &notify, &["--metrics-file", &metrics_flag]);
    let path = request_file(&rig);
    let forged = json!({"op": "confirm-deletions", "by": "root@here", "at": unix_now()});
    replace_file(&path, forged.to_string().as_bytes());
    // `nobody` wrote it (a state directory another account can write to).
    std::os::unix::fs::chown(&path, Some(65534), Some(65534)).expect("chown nobody");
    daemon.wait_for_stderr(
        "not a regular file of root or of this process's user",
        CARRIED_OUT,
    );
    let said = lines_with(&daemon.stderr(), "of this process's user");
    assert!(
        said[0].contains(&path_text(&path)) && said[0].contains("ignored"),
        "the file is named and said to be ignored: {said:#?}"
    );
    // Six more poll intervals (more than the floor between full passes): nothing deleted.
    let checks = drift_checks(&metrics);
    wait_until("six more drift checks", secs(12), || {
        drift_checks(&metrics) >= checks + 6.0
    });
    assert_eq!(rig.pkeys().len(), 12, "a foreign request confirms nothing");
    daemon.stop().assert_ok();
}

/// The sum of the daemon's drift checks so far, from its metrics file (written after each).
fn drift_checks(metrics: &Path) -> f64 {
    let text = std::fs::read_to_string(metrics).unwrap_or_default();
    ["unchanged", "changed", "failed"]
        .iter()
        .filter_map(|r| {
            metric(
                &text,
                &format!("ufm_pkeyd_drift_checks_total{{result=\"{r}\"}}"),
            )
        })
        .sum()
}

#[test]
fn a_request_file_owned_by_another_user_is_said_once_and_costs_no_full_pass_every_poll() {
    let rig = Rig::new(Api::V3);
    let notify = Notify::new();
    let metrics = rig.dir.join("metrics.prom");
    let metrics_flag = path_text(&metrics);
    let mut daemon =
        daemon_refusing_a_mass_deletion(&rig, &notify, &["--metrics-file", &metrics_flag]);
    let path = request_file(&rig);
    let forged = json!({"op": "confirm-deletions", "by": "root@here", "at": unix_now()});
    replace_file(&path, forged.to_string().as_bytes());
    std::os::unix::fs::chown(&path, Some(65534), Some(65534)).expect("chown nobody");
    daemon.wait_for_stderr(
        "not a regular file of root or of this process's user",
        CARRIED_OUT,
    );
    // Eleven more poll intervals: two floors between full passes, and more.
    let checks = drift_checks(&metrics);
    wait_until("eleven more drift checks", secs(20), || {
        drift_checks(&metrics) >= checks + 11.0
    });
    let log = daemon.stderr();
    assert_eq!(
        lines_with(&log, "of this process's user").len(),
        1,
        "said once:\n{log}"
    );
    assert_eq!(
        lines_with(&log, "refusing to delete 12 partitions").len(),
        1,
        "the refusal of the pass that saw the keys go, and no full pass for the file:\n{log}"
    );
    daemon.stop().assert_ok();
}

#[test]
fn the_daemons_refusal_names_the_confirmation_that_works_while_it_runs() {
    let rig = Rig::new(Api::V3);
    let notify = Notify::new();
    let daemon = daemon_refusing_a_mass_deletion(&rig, &notify, &[]);
    let refusal = lines_with(&daemon.stderr(), "refusing to delete 12 partitions");
    assert!(
        refusal[0].contains("ufm-pkeyd state --confirm-deletions"),
        "{refusal:#?}"
    );
    daemon.stop().assert_ok();
}

#[test]
fn with_leader_election_the_confirmation_goes_through_etcd() {
    let rig = Rig::new(Api::V3);
    let notify = Notify::new();
    let ha = ["--leader-election", "--election-ttl", "3"];
    let mut daemon = daemon_refusing_a_mass_deletion(&rig, &notify, &ha);
    let confirm = state_as(
        &rig,
        "dave",
        &["--leader-election", "--confirm-deletions", "all"],
    );
    confirm.assert_ok();
    assert!(
        confirm.stdout.contains("etcd key /ufm-pkeyd/owned.request"),
        "{}",
        confirm.stdout
    );
    assert!(!request_file(&rig).exists(), "nothing left on this host");
    wait_for(
        "the 12 confirmed deletions",
        CARRIED_OUT,
        || tail_lines(&daemon.stderr(), 30),
        || rig.pkeys().is_empty().then_some(()),
    );
    daemon.wait_for_stderr("by dave@", PROPAGATION);
    wait_until("the request key removed once used", PROPAGATION, || {
        rig.etcd.get_v3("/ufm-pkeyd/owned.request").is_none()
    });
    daemon.stop().assert_ok();
}

// ------------------------------------------------------------------------------------------
// Adopting the record while the daemon runs (issue 18, item 5)
// ------------------------------------------------------------------------------------------

#[test]
fn adopting_a_record_of_another_etcd_while_the_daemon_runs_resumes_deletions() {
    let rig = Rig::new(Api::V3);
    for (n, name) in (1u64..).zip(names(1..=3)) {
        rig.put(&name, &[host(n)], &[]);
    }
    rig.sync(&[]).assert_ok();
    // etcd is rebuilt from nothing; pcocc writes its two running jobs again (0x3's ended).
    let fresh = Etcd::plain();
    for (n, name) in (1u64..).zip(names(1..=2)) {
        fresh.put_v3(
            &format!("{PKEYS_PREFIX}{name}"),
            &json_value(&[host(n)], &[]),
        );
    }
    let endpoint = fresh.endpoint();
    let notify = Notify::new();
    let mut daemon = rig.monitor(
        &["--poll-interval", "1", "--etcd-endpoints", &endpoint],
        &notify,
    );
    daemon.wait_for_stderr("refusing to delete 1 partition:", PROPAGATION);
    assert!(
        daemon.stderr().contains("it was made with etcd cluster"),
        "{}",
        daemon.stderr()
    );
    assert_eq!(rig.pkeys(), ["0x1", "0x2", "0x3"], "nothing deleted");

    let adopt = state_as(&rig, "erin", &["--adopt", "--etcd-endpoints", &endpoint]);
    adopt.assert_ok();
    daemon.wait_for_stderr(
        "ownership record adopted at the request of erin@",
        CARRIED_OUT,
    );
    wait_for(
        "0x3 deleted once the record is adopted",
        PROPAGATION,
        || tail_lines(&daemon.stderr(), 30),
        || (rig.pkeys() == ["0x1", "0x2"]).then_some(()),
    );
    // Jobs end as usual: their partitions go.
    fresh.delete_v3(&format!("{PKEYS_PREFIX}0x2"));
    rig.wait_partition(&daemon, "0x2", None, PROPAGATION);
    wait_until("the request file removed", PROPAGATION, || {
        !request_file(&rig).exists()
    });
    daemon.stop().assert_ok();
}

// ------------------------------------------------------------------------------------------
// A state file replaced under the daemon (issue 17, item 6)
// ------------------------------------------------------------------------------------------

/// A daemon owning 0x10, 0x11 and 0x12, whose state file an operator has just replaced with
/// an older copy (owning 0x10 and 0x11): a restore, or another writer. Returns the daemon and
/// the older copy.
fn daemon_under_a_replaced_state_file(rig: &Rig, notify: &Notify) -> (Daemon, Vec<u8>) {
    rig.put("0x10", &[host(1)], &[]);
    rig.put("0x11", &[host(2)], &[]);
    let daemon = rig.monitor(&["--poll-interval", "1"], notify);
    notify.wait(&daemon, "STATUS=", 1, PROPAGATION);
    wait_until("0x10 and 0x11 owned", PROPAGATION, || {
        rig.owned() == ["0x10", "0x11"]
    });
    let older = std::fs::read(rig.state_file()).expect("reading the state file");
    rig.put("0x12", &[host(3)], &[]);
    // The pass that created 0x12 is over (its record saved).
    wait_until("a pass ending with 3 owned", PROPAGATION, || {
        notify
            .poll()
            .iter()
            .any(|m| m.starts_with("STATUS=") && m.contains(" 3 owned"))
    });
    replace_file(&rig.state_file(), &older);
    (daemon, older)
}

#[test]
fn a_state_file_replaced_while_the_daemon_runs_is_kept_and_holds_changes_until_adopted() {
    let rig = Rig::new(Api::V2);
    let notify = Notify::new();
    let (mut daemon, older) = daemon_under_a_replaced_state_file(&rig, &notify);
    let state = rig.state_file();
    // A job starts: its creation would be recorded in the state file first.
    rig.put("0x13", &[host(4)], &[]);
    daemon.wait_for_stderr("was changed on disk", PROPAGATION);
    // Then a job ends.
    let from = daemon.stderr().len();
    rig.delete("0x11");
    wait_for_new_stderr(
        &daemon,
        from,
        "refusing to delete 1 partition:",
        PROPAGATION,
    );
    // Two more passes later (the held creation is retried after 2 s, then 4 s).
    let passes = notify.count("STATUS=");
    notify.wait(&daemon, "STATUS=", passes + 2, secs(12));
    let log = daemon.stderr();
    let fix = lines_with(
        &log,
        "`ufm-pkeyd state --adopt` takes the file on disk as it is",
    );
    assert_eq!(fix.len(), 1, "the error and its fix are said once:\n{log}");
    assert!(
        fix[0].contains("error:") && fix[0].contains(&path_text(&state)),
        "an error naming the file: {}",
        fix[0]
    );
    assert_eq!(
        std::fs::read(&state).expect("reading the state file"),
        older,
        "the restored file is not overwritten"
    );
    assert!(rig.partition("0x11").is_some(), "nothing deleted:\n{log}");
    assert!(rig.partition("0x13").is_none(), "nothing created:\n{log}");
    let state_flag = path_text(&state);
    let status = wait_for(
        "status to warn about the held record",
        PROPAGATION,
        String::new,
        || {
            let run = pkeyd(&["status", "--no-pcocc", "--state-file", &state_flag]);
            (run.code == 1).then_some(run)
        },
    );
    assert!(
        status.stdout.starts_with("UFM-PKEYD WARNING - ")
            && status.stdout.contains("ownership record"),
        "{}{}",
        status.stdout,
        status.stderr
    );

    // The operator takes the restored file as it is.
    state_as(&rig, "frank", &["--adopt"]).assert_ok();
    daemon.wait_for_stderr(
        "ownership record adopted at the request of frank@",
        CARRIED_OUT,
    );
    rig.wait_partition(&daemon, "0x11", None, PROPAGATION);
    // The held creation waits out the retry pause it reached while held (see the ignored
    // test below): up to 16 s after some 10 s held.
    rig.wait_partition(&daemon, "0x13", Some(&partition(&[host(4)], &[])), secs(20));
    wait_until(
        "the record saved again, from the adopted file",
        PROPAGATION,
        || {
            set(&rig.owned().iter().map(String::as_str).collect::<Vec<_>>())
                == set(&["0x10", "0x12", "0x13"])
        },
    );
    daemon.stop().assert_ok();
}

#[test]
fn a_creation_held_by_a_replaced_state_file_goes_at_the_pass_that_adopts_it() {
    let rig = Rig::new(Api::V2);
    let notify = Notify::new();
    let (mut daemon, _) = daemon_under_a_replaced_state_file(&rig, &notify);
    rig.put("0x13", &[host(4)], &[]);
    daemon.wait_for_stderr("was changed on disk", PROPAGATION);
    // Held for a while, as until an operator looks: the retry pause grows to 8 s.
    daemon.wait_for_stderr_count("not creating or adopting 1 partition ", 4, secs(15));
    state_as(&rig, "frank", &["--adopt"]).assert_ok();
    daemon.wait_for_stderr(
        "ownership record adopted at the request of frank@",
        CARRIED_OUT,
    );
    rig.wait_partition(
        &daemon,
        "0x13",
        Some(&partition(&[host(4)], &[])),
        PROPAGATION,
    );
    daemon.stop().assert_ok();
}

#[test]
fn a_job_ending_right_after_the_state_file_was_replaced_deletes_nothing() {
    let rig = Rig::new(Api::V2);
    let notify = Notify::new();
    let (mut daemon, older) = daemon_under_a_replaced_state_file(&rig, &notify);
    rig.delete("0x11");
    daemon.wait_for_stderr("was changed on disk", PROPAGATION);
    let log = daemon.stderr();
    assert!(
        rig.partition("0x11").is_some(),
        "nothing is deleted once the file was replaced:\n{log}"
    );
    assert_eq!(std::fs::read(rig.state_file()).expect("state file"), older);
    daemon.stop().assert_ok();
}

// ------------------------------------------------------------------------------------------
// A restored record claiming a partition made by hand (issue 17, item 6)
// ------------------------------------------------------------------------------------------

/// UFM holds 0x20, made by hand; it never was in etcd. A restored (or edited) record claims
/// it: its absence from etcd deletes nothing, while a job ending as usual deletes its own.
fn a_claim_without_evidence_deletes_nothing(api: Api) {
    let rig = Rig::new(api);
    rig.seed(&[("0x20", partition(&[host(20)], &[]))]);
    rig.put("0x10", &[host(1)], &[]);
    rig.put("0x11", &[host(2)], &[]);
    rig.sync(&[]).assert_ok();
    assert_eq!(rig.owned(), ["0x10", "0x11"]);
    let state = rig.state_file();
    let mut record: Value =
        serde_json::from_slice(&std::fs::read(&state).expect("the state file")).expect("JSON");
    record["owned"]
        .as_array_mut()
        .expect("an owned list")
        .push(json!("0x20"));
    replace_file(&state, record.to_string().as_bytes());

    rig.delete("0x11");
    let run = rig.sync(&[]);
    assert!(
        run.stderr
            .contains("claims them but never saw their keys in etcd"),
        "{api:?}: the refusal says why:\n{}",
        run.stderr
    );
    assert_eq!(run.code, 1, "{api:?}: a refused deletion is an error");
    assert_eq!(
        ufm_set(&rig),
        set(&["0x10", "0x20"]),
        "{api:?}: 0x11 deleted, 0x20 kept"
    );
    // It stays so.
    rig.sync(&[]).assert_code(1);
    assert!(rig.partition("0x20").is_some(), "{api:?}");
    // The way out the refusal gives.
    state_as(&rig, "grace", &["--confirm-deletions", "0x20"]).assert_ok();
    rig.sync(&[]).assert_ok();
    assert_eq!(rig.pkeys(), ["0x10"], "{api:?}");
}

#[test]
fn a_restored_record_claiming_a_partition_made_by_hand_deletes_nothing_v2() {
    a_claim_without_evidence_deletes_nothing(Api::V2);
}

#[test]
fn a_restored_record_claiming_a_partition_made_by_hand_deletes_nothing_v3() {
    a_claim_without_evidence_deletes_nothing(Api::V3);
}

// ------------------------------------------------------------------------------------------
// The record-mismatch message (issue 17, item 7)
// ------------------------------------------------------------------------------------------

#[test]
fn the_record_of_a_v2_run_used_with_the_v3_keyspace_names_the_keyspace_not_the_cluster_twice() {
    let rig = Rig::new(Api::V2);
    rig.put("0x10", &[host(1)], &[]);
    rig.sync(&[]).assert_ok();
    // The same etcd, read through the other keyspace (empty: pcocc writes v2).
    let run = rig.sync(&["--etcd-api", "v3"]);
    run.assert_code(1);
    assert!(
        run.stderr
            .contains("it was made with the v2 keyspace (now v3)"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("etcd cluster"),
        "the same cluster is not named as a difference:\n{}",
        run.stderr
    );
    let state = rig.pkeyd("state", &["--etcd-api", "v3"]).run();
    state.assert_ok();
    assert!(
        state.stdout.contains("the v2 keyspace (now v3)"),
        "{}",
        state.stdout
    );
}

// ------------------------------------------------------------------------------------------
// A second writer on the same UFM (issue 17, item 6)
// ------------------------------------------------------------------------------------------

const SECOND_WRITER: &str = "is a second ufm-pkeyd";

/// pcocc's churn: a job starts about every second, and the job three before it ends.
struct Churn {
    next: u64,
    last: Option<Instant>,
}

impl Churn {
    fn new() -> Churn {
        Churn {
            next: 0x100,
            last: None,
        }
    }

    /// Starts one job (and ends an old one), a second after the last.
    fn step(&mut self, rig: &Rig) {
        if let Some(last) = self.last {
            // Pacing the workload, not waiting for a result.
            std::thread::sleep(Duration::from_secs(1).saturating_sub(last.elapsed()));
        }
        rig.put(&format!("0x{:x}", self.next), &[host(self.next)], &[]);
        if self.next >= 0x103 {
            rig.delete(&format!("0x{:x}", self.next - 3));
        }
        self.next += 1;
        self.last = Some(Instant::now());
    }
}

#[test]
fn two_daemons_on_the_same_ufm_without_leader_election_are_warned_about() {
    let rig = Rig::new(Api::V3);
    let other_dir = TempDir::new("second-writer");
    let other_state = path_text(&other_dir.join("state.json"));
    let (first_notify, second_notify) = (Notify::new(), Notify::new());
    let first = rig.monitor(&["--poll-interval", "1"], &first_notify);
    let second = rig.monitor(
        &["--poll-interval", "1", "--state-file", &other_state],
        &second_notify,
    );
    first_notify.wait(&first, "STATUS=", 1, PROPAGATION);
    second_notify.wait(&second, "STATUS=", 1, PROPAGATION);
    let start = Instant::now();
    let mut churn = Churn::new();
    let warned = |d: &Daemon| d.stderr().contains(SECOND_WRITER);
    while !warned(&first) && !warned(&second) {
        assert!(
            start.elapsed() < secs(30),
            "no warning after {} jobs in {:.0?}\n--- first ---\n{}\n--- second ---\n{}",
            churn.next - 0x100,
            start.elapsed(),
            tail_lines(&first.stderr(), 20),
            tail_lines(&second.stderr(), 20)
        );
        churn.step(&rig);
    }
    eprintln!(
        "warned after {:.1?} and {} jobs (first: {}, second: {})",
        start.elapsed(),
        churn.next - 0x100,
        warned(&first),
        warned(&second)
    );
    let daemon = if warned(&first) { &first } else { &second };
    let said = lines_with(&daemon.stderr(), SECOND_WRITER);
    assert!(
        said.len() == 1 && said[0].contains("warn") && said[0].contains("leader-election"),
        "one warning, with the way out: {said:#?}"
    );
    second.stop().assert_ok();
    first.stop().assert_ok();
}

#[test]
fn a_single_daemon_under_the_same_churn_never_warns_of_a_second_writer() {
    let rig = Rig::new(Api::V3);
    let notify = Notify::new();
    let daemon = rig.monitor(&["--poll-interval", "1"], &notify);
    notify.wait(&daemon, "STATUS=", 1, PROPAGATION);
    let mut churn = Churn::new();
    for _ in 0..15 {
        churn.step(&rig);
    }
    // The last job's partition shows the daemon kept up.
    let last = format!("0x{:x}", churn.next - 1);
    rig.wait_partition(
        &daemon,
        &last,
        Some(&partition(&[host(churn.next - 1)], &[])),
        PROPAGATION,
    );
    let run = daemon.stop();
    run.assert_ok();
    assert!(
        !run.stderr.contains(SECOND_WRITER),
        "a daemon alone is not warned about itself:\n{}",
        run.stderr
    );
}
