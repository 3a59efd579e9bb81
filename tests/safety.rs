//! ufm-pkeyd never deletes or empties a live partition, and never leaves an ended job's
//! partition behind: each test reproduces a fault a real site met (an add answered 2xx but not
//! applied, a crash mid-create, a wiped or another etcd, an incomplete UFM answer, a GUID UFM
//! does not know, a state file that cannot be written...) against a real etcd and the UFM
//! simulator, and checks what the daemon promises in ufm-pkeyd(8), GUARANTEES. The HA and
//! cluster faults are in `safety_ha.rs`.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::*;

/// How long a change made in etcd may take to show in UFM while the daemon watches.
const PROPAGATION: Duration = Duration::from_secs(5);

/// Runs `ufm-pkeyd ARGS… | true` (stdout a pipe nobody reads) in bash and returns the exit
/// code of ufm-pkeyd and its stderr.
fn run_into_closed_pipe(args: &[String]) -> (i32, String) {
    let dir = TempDir::new("pipe");
    let err = dir.join("stderr");
    let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
    let script = format!(
        "{} {} 2>'{}' | true; exit ${{PIPESTATUS[0]}}",
        env!("CARGO_BIN_EXE_ufm-pkeyd"),
        quoted.join(" "),
        err.display()
    );
    let status = std::process::Command::new("bash")
        .args(["-c", &script])
        .env_remove("RUST_LOG")
        .status()
        .expect("running bash");
    let code = status.code().unwrap_or(128);
    (code, std::fs::read_to_string(&err).unwrap_or_default())
}

// ------------------------------------------------------------------------------------------
// Verified writes
// ------------------------------------------------------------------------------------------

#[test]
fn an_add_answered_2xx_but_not_applied_never_lets_the_remove_empty_the_partition() {
    let rig = Rig::new(Api::V2);
    rig.put("0x10", &[host(1)], &[]);
    rig.sync(&[]).assert_ok();
    // The job's GUID is replaced; UFM (or a proxy) answers the add 200 without applying it.
    rig.sim.add_faults(json!([
        {"method": "POST", "route": "/resources/pkeys", "noop": true, "count": 1}
    ]));
    rig.put("0x10", &[host(2)], &[]);
    let run = rig.sync(&[]);
    run.assert_code(1);
    assert!(
        run.stderr
            .contains("does not hold 1 of the GUIDs 0x10 keeps"),
        "the remove is held back, saying why:\n{}",
        run.stderr
    );
    assert_eq!(
        rig.partition("0x10"),
        Some(partition(&[host(1)], &[])),
        "0x10 was not emptied (UFM would have deleted it)"
    );
    // UFM applies adds again: the next pass converges.
    rig.sync(&[]).assert_ok();
    assert_eq!(rig.partition("0x10"), Some(partition(&[host(2)], &[])));
}

// ------------------------------------------------------------------------------------------
// Write-ahead ownership
// ------------------------------------------------------------------------------------------

#[test]
fn a_partition_created_by_a_request_in_flight_when_the_daemon_was_killed_is_deleted_after_its_job_ended()
 {
    let rig = Rig::new(Api::V3);
    // The create takes two seconds in UFM; the daemon is killed while it waits.
    rig.sim.add_faults(json!([
        {"method": "POST", "route": "/resources/pkeys", "delay_ms": 2000, "count": 1}
    ]));
    rig.put("0x10", &[host(1)], &[]);
    let notify = Notify::new();
    let mut daemon = rig.monitor(&["--poll-interval", "60"], &notify);
    wait_until("the create to reach UFM", PROPAGATION, || {
        rig.ufm_requests()
            .get("POST /resources/pkeys")
            .is_some_and(|n| *n >= 1)
    });
    daemon.signal("KILL");
    wait_until("UFM to finish the create", PROPAGATION, || {
        rig.partition("0x10").is_some()
    });
    // The job ends while the daemon is down.
    rig.delete("0x10");
    let notify = Notify::new();
    let daemon = rig.monitor(&["--poll-interval", "60"], &notify);
    rig.wait_partition(&daemon, "0x10", None, PROPAGATION);
    // The record is saved once the pass is over, just after the delete.
    wait_until("0x10 no longer owned", secs(5), || rig.owned().is_empty());
    daemon.stop().assert_ok();
}

#[test]
fn a_state_file_that_cannot_be_saved_holds_creations_back_and_is_retried_and_reported() {
    let rig = Rig::new(Api::V2);
    let metrics = rig.dir.join("ufm_pkeyd.prom");
    let metrics_flag = path_text(&metrics);
    rig.put("0x10", &[host(1)], &[]);
    let notify = Notify::new();
    let mut daemon = rig.monitor(
        &["--poll-interval", "0.5", "--metrics-file", &metrics_flag],
        &notify,
    );
    wait_until("0x10 owned", PROPAGATION, || rig.owned() == ["0x10"]);
    // The record is saved again at the end of the pass: block it only after that.
    notify.wait(&daemon, "STATUS=", 1, PROPAGATION);
    // The state file cannot be replaced any more: a directory stands in its way.
    let state = rig.state_file();
    std::fs::remove_file(&state).expect("removing the state file");
    std::fs::create_dir_all(state.join("in-the-way")).expect("blocking the state file");
    rig.put("0x11", &[host(2)], &[]);
    daemon.wait_for_stderr("not creating or adopting 1 partition until", PROPAGATION);
    assert_eq!(
        rig.partition("0x11"),
        None,
        "no create before its ownership is recorded"
    );
    wait_until(
        "the metrics to show the unsaved record",
        PROPAGATION,
        || {
            std::fs::read_to_string(&metrics)
                .is_ok_and(|t| metric(&t, "ufm_pkeyd_state_unsaved") == Some(1.0))
        },
    );
    let state = path_text(&rig.state_file());
    let status = wait_for(
        "status to warn about the unsaved record",
        PROPAGATION,
        String::new,
        || {
            let run = pkeyd(&["status", "--no-pcocc", "--state-file", &state]);
            (run.code == 1).then_some(run)
        },
    );
    assert!(
        status.stdout.starts_with("UFM-PKEYD WARNING - ")
            && status
                .stdout
                .lines()
                .next()
                .is_some_and(|l| l.contains("the ownership record is not saved")),
        "status does not say all is well:\n{}{}",
        status.stdout,
        status.stderr
    );
    // The way is clear again: the next pass saves and creates.
    std::fs::remove_dir_all(&state).expect("unblocking the state file");
    rig.wait_partition(
        &daemon,
        "0x11",
        Some(&partition(&[host(2)], &[])),
        PROPAGATION,
    );
    wait_until("both owned, on disk", PROPAGATION, || {
        rig.owned() == ["0x10", "0x11"]
    });
    daemon.wait_for_stderr("ownership record saved again", PROPAGATION);
    daemon.stop().assert_ok();
}

#[test]
fn a_second_daemon_on_the_same_state_file_stops_at_start_up() {
    let rig = Rig::new(Api::V3);
    let notify = Notify::new();
    let first = rig.monitor(&["--poll-interval", "60"], &notify);
    notify.wait(&first, "STATUS=", 1, PROPAGATION);
    let second = rig.pkeyd("monitor", &["--poll-interval", "60"]).run();
    second.assert_code(2);
    assert!(
        second.stderr.contains("another ufm-pkeyd process holds"),
        "{}",
        second.stderr
    );
    let sync = rig.sync(&[]);
    sync.assert_code(2);
    rig.sync(&["--dry-run"]).assert_ok();
    first.stop().assert_ok();
    rig.sync(&[]).assert_ok();
}

// ------------------------------------------------------------------------------------------
// The ownership record belongs to one etcd and one UFM
// ------------------------------------------------------------------------------------------

fn a_wiped_etcd_deletes_nothing_until_the_operator_decides(api: Api) {
    let mut rig = Rig::new(api);
    for (n, name) in (1u64..).zip(["0x1", "0x2", "0x3", "0x4", "0x5", "0x6", "0x7", "0x8"]) {
        rig.put(name, &[host(n)], &[]);
    }
    rig.sync(&[]).assert_ok();
    assert_eq!(rig.owned().len(), 8);
    rig.etcd.wipe();
    // pcocc starts one job on the new, empty etcd.
    rig.put("0x50", &[host(50)], &[]);
    let run = rig.sync(&[]);
    run.assert_code(1);
    assert!(
        run.stderr.contains("went back") && run.stderr.contains("ufm-pkeyd state --adopt"),
        "the mismatch and the way out are given:\n{}",
        run.stderr
    );
    assert_eq!(
        rig.pkeys().len(),
        9,
        "nothing deleted, the new job's partition created"
    );
    // The guard's override is no way out of a foreign record.
    rig.sync(&["--allow-mass-delete"]).assert_code(1);
    assert_eq!(rig.pkeys().len(), 9);
    let state = rig.pkeyd("state", &[]).run();
    state.assert_ok();
    assert!(state.stdout.contains("matches:  no"), "{}", state.stdout);

    // Start afresh: the old partitions become unmanaged, never deleted.
    rig.pkeyd("state", &["--reset"]).run().assert_ok();
    let run = rig.sync(&[]);
    run.assert_ok();
    assert_eq!(rig.pkeys().len(), 9);
    let dry = rig.sync(&["--dry-run"]);
    dry.assert_ok();
    assert!(
        dry.stdout.contains("unmanaged (left alone): 0x1, 0x2"),
        "{}",
        dry.stdout
    );
}

#[test]
fn a_wiped_v2_etcd_deletes_nothing_until_the_operator_decides() {
    a_wiped_etcd_deletes_nothing_until_the_operator_decides(Api::V2);
}

#[test]
fn a_wiped_v3_etcd_deletes_nothing_until_the_operator_decides() {
    a_wiped_etcd_deletes_nothing_until_the_operator_decides(Api::V3);
}

#[test]
fn another_etcd_with_the_same_state_file_deletes_nothing_and_adopting_binds_the_record() {
    let rig = Rig::new(Api::V3);
    for (n, name) in (1u64..).zip(["0x1", "0x2", "0x3", "0x4", "0x5"]) {
        rig.put(name, &[host(n)], &[]);
    }
    rig.sync(&[]).assert_ok();
    // The admin points the daemon at another etcd cluster, keeping the state file.
    let other = Rig::with(Api::V3, Etcd::plain(), UfmSim::http());
    other.put("0x60", &[host(60)], &[]);
    let against_other = |extra: &[&str]| {
        let endpoints = other.etcd.endpoint();
        let mut args = vec!["--etcd-endpoints", endpoints.as_str()];
        args.extend_from_slice(extra);
        rig.pkeyd("sync", &args).run()
    };
    let run = against_other(&[]);
    run.assert_code(1);
    assert!(
        run.stderr.contains("it was made with etcd cluster"),
        "{}",
        run.stderr
    );
    assert_eq!(rig.pkeys(), ["0x1", "0x2", "0x3", "0x4", "0x5", "0x60"]);
    // This etcd really replaces the old one: adopt, and its view applies (the five are gone).
    let endpoints = other.etcd.endpoint();
    let adopt = rig
        .pkeyd("state", &["--adopt", "--etcd-endpoints", &endpoints])
        .run();
    adopt.assert_ok();
    assert!(adopt.stdout.contains("matches:  yes"), "{}", adopt.stdout);
    against_other(&["--allow-mass-delete"]).assert_ok();
    assert_eq!(rig.pkeys(), ["0x60"]);
}

#[test]
fn with_leader_election_a_wiped_etcd_does_not_reset_ownership_silently() {
    let mut rig = Rig::new(Api::V3);
    for (n, name) in (1u64..).zip(["0x1", "0x2", "0x3"]) {
        rig.put(name, &[host(n)], &[]);
    }
    let ha = [
        "--leader-election",
        "--election-ttl",
        "3",
        "--poll-interval",
        "60",
    ];
    let notify = Notify::new();
    let daemon = rig.monitor(&ha, &notify);
    // The record is written ahead of the creations: wait for UFM too, or the stop may come
    // between the two.
    wait_until("the three owned and in UFM", PROPAGATION, || {
        rig.etcd
            .get_v3("/ufm-pkeyd/owned")
            .is_some_and(|v| v.contains("0x3"))
            && rig.pkeys() == ["0x1", "0x2", "0x3"]
    });
    daemon.stop().assert_ok();
    rig.etcd.wipe();
    rig.put("0x50", &[host(50)], &[]);
    let notify = Notify::new();
    let mut daemon = rig.monitor(&ha, &notify);
    daemon.wait_for_stderr(
        "is gone from etcd, though this instance last saw it with 3",
        PROPAGATION,
    );
    rig.wait_partition(
        &daemon,
        "0x50",
        Some(&partition(&[host(50)], &[])),
        PROPAGATION,
    );
    assert_eq!(
        rig.pkeys(),
        ["0x1", "0x2", "0x3", "0x50"],
        "nothing deleted"
    );
    let state = path_text(&rig.state_file());
    let value = wait_for(
        "status to report the ownership mismatch",
        PROPAGATION,
        String::new,
        || {
            let run = pkeyd(&["status", "--no-pcocc", "--state-file", &state, "--json"]);
            let value: Value = serde_json::from_str(&run.stdout).expect("status JSON");
            value["ownership_mismatch"].is_string().then_some(value)
        },
    );
    assert_eq!(value["status"], "WARNING", "{value:#}");
    assert_eq!(
        value["counts"]["unmanaged"], 0,
        "the three still count as owned, not unmanaged: {value:#}"
    );
    daemon.stop().assert_ok();
}

// ------------------------------------------------------------------------------------------
// Odd answers from UFM
// ------------------------------------------------------------------------------------------

#[test]
fn an_empty_partition_list_from_ufm_drops_no_ownership() {
    let rig = Rig::new(Api::V2);
    rig.put("0x10", &[host(1)], &[]);
    rig.sync(&[]).assert_ok();
    rig.delete("0x10");
    // One answer `{}` (a proxy, a restarting UFM) instead of the list.
    rig.sim.add_faults(json!([
        {"method": "GET", "route": "/resources/pkeys", "query": {"guids_data": "true"},
         "body": {}, "count": 1}
    ]));
    let run = rig.sync(&[]);
    run.assert_code(1);
    assert!(
        run.stderr.contains("without its default partition 0x7fff"),
        "{}",
        run.stderr
    );
    assert_eq!(rig.owned(), ["0x10"], "still owned");
    // The next complete answer: the ended job's partition goes.
    rig.sync(&[]).assert_ok();
    assert_eq!(rig.pkeys(), Vec::<String>::new());
}

#[test]
fn an_unreadable_guid_in_one_partition_is_reported_and_everything_else_goes_on() {
    let rig = Rig::new(Api::V3);
    rig.seed(&[("0x10", partition(&[host(1)], &[]))]);
    rig.put("0x10", &[host(1)], &[]);
    rig.put("0x11", &[host(2)], &[]);
    // UFM lists an unmanaged partition with a GUID that is not 16 hex digits.
    let list = json!({
        "0x7fff": {"guids": [], "ip_over_ib": true, "partition": "management"},
        "0x10": {"guids": [{"guid": format!("{:016x}", host(1)), "index0": false,
                            "membership": "full"}],
                 "ip_over_ib": true, "partition": "api_pkey_0x10"},
        "0x20": {"guids": [{"guid": "0xBAD", "index0": false, "membership": "full"}],
                 "ip_over_ib": true, "partition": "by_hand"},
    });
    rig.sim.add_faults(json!([
        {"method": "GET", "route": "/resources/pkeys", "query": {"guids_data": "true"},
         "body": list, "count": 3}
    ]));
    let dry = rig.sync(&["--dry-run"]);
    dry.assert_code(4);
    assert!(
        dry.stdout.contains("unreadable in UFM (left alone): 0x20") && dry.stdout.contains("0xBAD"),
        "{}",
        dry.stdout
    );
    assert!(
        dry.stdout.contains("0x11     create with 1 GUID"),
        "{}",
        dry.stdout
    );
    let list = rig.ufm_cli(&["--list"]).run();
    list.assert_ok();
    assert!(
        list.stdout.contains("0x20     unreadable"),
        "{}",
        list.stdout
    );
    rig.sync(&[]).assert_ok();
    assert_eq!(rig.partition("0x11"), Some(partition(&[host(2)], &[])));
}

// ------------------------------------------------------------------------------------------
// Secrets, output, configuration
// ------------------------------------------------------------------------------------------

#[test]
fn credentials_in_urls_are_refused_and_never_printed() {
    let secret = "S3cretInUrl";
    for (flag, url) in [
        ("--ufm-host", format!("https://admin:{secret}@127.0.0.1:1")),
        (
            "--etcd-endpoints",
            format!("http://root:{secret}@127.0.0.1:1"),
        ),
    ] {
        let run = pkeyd(&["config", "--no-pcocc", "--config", "/dev/null", flag, &url]);
        assert!(!run.reveals(secret), "{flag}: {run:?}");
        assert!(
            run.stdout.contains("carries credentials"),
            "config says why the setting is not usable: {run:?}"
        );
        let run = pkeyd(&["etcd", "--no-pcocc", "--list", "--etcd-endpoints", &url]);
        if flag == "--etcd-endpoints" {
            run.assert_code(2);
        }
        assert!(!run.reveals(secret), "{flag}: {run:?}");
    }
    let proxy = format!("http://user:{secret}@proxy.example:3128");
    let run = pkeyd(&[
        "config",
        "--no-pcocc",
        "--config",
        "/dev/null",
        "--ufm-proxy",
        &proxy,
    ]);
    run.assert_ok();
    assert!(!run.reveals(secret), "{run:?}");
    assert!(
        run.stdout.contains("http://<redacted>@proxy.example:3128"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_closed_pipe_ends_quietly_and_a_failed_write_is_an_error() {
    let rig = Rig::new(Api::V3);
    for n in 0..50u64 {
        rig.put(&format!("0x{:x}", 0x100 + n), &[host(n)], &[]);
    }
    let base: Vec<String> = vec![
        "--no-pcocc".into(),
        "--ufm-host".into(),
        rig.sim.url(),
        "--ufm-password-file".into(),
        path_text(rig.sim.password_file()),
        "--http".into(),
        "--etcd-endpoints".into(),
        rig.etcd.endpoint(),
        "--etcd-api".into(),
        "v3".into(),
        "--state-file".into(),
        path_text(&rig.state_file()),
    ];
    let state = path_text(&rig.state_file());
    for (command, expected) in [
        // No status file yet: UNKNOWN.
        (&["status", "--state-file", state.as_str()][..], 3),
        (&["sync", "--dry-run"], 4),
        (&["sync", "--dry-run", "--json"], 4),
    ] {
        let mut args: Vec<String> = command.iter().map(|s| s.to_string()).collect();
        if command[0] == "status" {
            args.push("--no-pcocc".into());
        } else {
            args.extend(base.iter().cloned());
        }
        let (code, stderr) = run_into_closed_pipe(&args);
        assert_eq!(
            code, expected,
            "{command:?}: the command's own exit code: {stderr}"
        );
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
            "{command:?}: {stderr}"
        );
    }
    let mut args = vec!["sync".to_string(), "--dry-run".to_string()];
    args.extend(base.iter().cloned());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let full = std::fs::File::create("/dev/full").expect("/dev/full");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ufm-pkeyd"))
        .args(&refs)
        .stdout(full)
        .env_remove("RUST_LOG")
        .output()
        .expect("running ufm-pkeyd");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot write to standard output"),
        "{stderr}"
    );
}

#[test]
fn sighup_applies_debug_and_leader_election_from_the_configuration_file() {
    let rig = Rig::new(Api::V3);
    let config = rig.dir.write("ufm-pkeyd.yaml", "debug: off\n");
    let config_flag = path_text(&config);
    let notify = Notify::new();
    let mut daemon = rig.monitor(
        &["--config", &config_flag, "--poll-interval", "60"],
        &notify,
    );
    notify.wait(&daemon, "STATUS=", 1, PROPAGATION);
    assert!(
        !daemon.stderr().contains("ufm-pkeyd: debug:"),
        "{}",
        daemon.stderr()
    );
    std::fs::write(
        &config,
        "debug: on\nleader-election: yes\nelection-ttl: 3\n",
    )
    .expect("rewriting the configuration");
    daemon.signal("HUP");
    daemon.wait_for_stderr("configuration reloaded", PROPAGATION);
    daemon.wait_for_stderr("debug logging on", PROPAGATION);
    daemon.wait_for_stderr("is now the leader", PROPAGATION);
    rig.put("0x10", &[host(1)], &[]);
    rig.wait_partition(
        &daemon,
        "0x10",
        Some(&partition(&[host(1)], &[])),
        PROPAGATION,
    );
    assert!(
        daemon.stderr().contains("ufm-pkeyd: debug:"),
        "{}",
        daemon.stderr()
    );
    let run = daemon.stop();
    run.assert_ok();
    assert!(run.stderr.contains("resigned"), "{}", run.stderr);
}
