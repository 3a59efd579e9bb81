//! `ufm-pkeyd status` as a monitoring check (issue 11, item 5), against a real etcd, the UFM
//! simulator and the real daemon: it reads the status file that `monitor` and `sync` write
//! beside the state file and answers in the monitoring-plugin way (0 OK, 1 WARNING,
//! 2 CRITICAL, 3 UNKNOWN) with one summary line and perfdata first. It needs no secret and
//! works as user `nobody` with a configuration file it cannot read.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use support::*;

/// How long a change in etcd, or a pass, may take to show while the daemon runs.
const PROPAGATION: Duration = Duration::from_secs(10);

/// The status file the daemon writes for the rig's state file.
fn status_path(rig: &Rig) -> PathBuf {
    rig.dir.join("status.json")
}

/// `ufm-pkeyd status --no-pcocc --state-file STATE EXTRA…`: only what the check needs.
fn status(rig: &Rig, extra: &[&str]) -> Run {
    let state = path_text(&rig.state_file());
    let mut args = vec!["status", "--no-pcocc", "--state-file", state.as_str()];
    args.extend_from_slice(extra);
    Pkeyd::new(&args).timeout(secs(20)).run()
}

/// Waits until `status EXTRA…` exits with `code` and its first line starts with `start`;
/// returns that run.
fn wait_status(rig: &Rig, extra: &[&str], code: i32, start: &str, daemon: Option<&Daemon>) -> Run {
    let last = std::cell::RefCell::new(None);
    wait_for(
        &format!("status to exit {code} with {start:?}"),
        PROPAGATION,
        || {
            format!(
                "last status run: {:?}\n--- ufm-pkeyd stderr ---\n{}",
                last.borrow(),
                daemon
                    .map(|d| tail_lines(&d.stderr(), 30))
                    .unwrap_or_default()
            )
        },
        || {
            let run = status(rig, extra);
            if run.code == code && run.stdout.starts_with(start) {
                return Some(run);
            }
            *last.borrow_mut() = Some(run);
            None
        },
    )
}

/// The first line, split at ` | ` into the summary and the perfdata.
fn summary_and_perf(run: &Run) -> (String, Vec<(String, String)>) {
    let first = run.stdout.lines().next().unwrap_or_default().to_string();
    let (summary, perf) = first
        .split_once(" | ")
        .unwrap_or_else(|| panic!("no perfdata in the first line: {first:?}\n{run:?}"));
    let perf = perf
        .split(' ')
        .map(|item| {
            let (k, v) = item
                .split_once('=')
                .unwrap_or_else(|| panic!("perfdata item {item:?} is not label=value"));
            (k.to_string(), v.to_string())
        })
        .collect();
    (summary.to_string(), perf)
}

fn perf_value<'a>(perf: &'a [(String, String)], label: &str) -> &'a str {
    perf.iter()
        .find(|(k, _)| k == label)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {label} in perfdata {perf:?}"))
}

/// `last check N s ago` → N, from a summary.
fn seconds_ago(summary: &str) -> u64 {
    let rest = summary
        .split("last check ")
        .nth(1)
        .unwrap_or_else(|| panic!("no 'last check' in {summary:?}"));
    let n = rest.split(' ').next().unwrap_or_default();
    assert!(
        rest.starts_with(&format!("{n} s ago")),
        "the age is in seconds: {summary:?}"
    );
    n.parse()
        .unwrap_or_else(|_| panic!("no number of seconds in {summary:?}"))
}

fn read_json(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

#[test]
fn a_running_daemon_in_sync_is_ok_with_one_summary_line_and_perfdata() {
    let rig = Rig::new(Api::V3);
    rig.seed(&[("0x300", partition(&[host(30)], &[]))]);
    rig.put("0x10", &[host(1)], &[vf(1)]);
    let notify = Notify::new();
    let daemon = rig.monitor(&[], &notify);
    rig.wait_partition(
        &daemon,
        "0x10",
        Some(&partition(&[host(1)], &[vf(1)])),
        PROPAGATION,
    );
    let run = wait_status(&rig, &[], 0, "UFM-PKEYD OK - in sync", Some(&daemon));
    let (summary, perf) = summary_and_perf(&run);
    assert!(
        summary.starts_with(
            "UFM-PKEYD OK - in sync: 1 owned, 0 pending, 1 unmanaged, 0 invalid; last check "
        ),
        "{summary:?}"
    );
    let age = seconds_ago(&summary);
    assert!(age < 60, "{summary:?}");
    let labels: Vec<&str> = perf.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        labels,
        [
            "owned",
            "pending",
            "refused",
            "unmanaged",
            "invalid",
            "rejected",
            "age"
        ]
    );
    assert_eq!(perf_value(&perf, "owned"), "1");
    assert_eq!(perf_value(&perf, "pending"), "0");
    assert_eq!(perf_value(&perf, "unmanaged"), "1");
    // The age in seconds with the CRITICAL threshold: 3 poll intervals (30 s by default).
    let age_perf = perf_value(&perf, "age");
    assert!(age_perf.ends_with("s;;90"), "{age_perf:?}");
    // Detail lines follow: who wrote it, and that it runs.
    let details: Vec<&str> = run.stdout.lines().skip(1).collect();
    assert!(
        details
            .iter()
            .any(|l| l.starts_with("writer:     monitor, pid ")
                && l.contains(&format!("pid {} running", daemon.pid()))),
        "{}",
        run.stdout
    );
    assert!(
        details
            .iter()
            .any(|l| l.starts_with("role:       single instance")),
        "{}",
        run.stdout
    );

    // --json: the same verdict, with the status word and code.
    let run = status(&rig, &["--json"]);
    run.assert_ok();
    let value: Value = serde_json::from_str(&run.stdout).expect("status --json is JSON");
    assert_eq!(value["status"], "OK", "{value:#}");
    assert_eq!(value["code"], 0);
    assert_eq!(value["in_sync"], true);
    assert_eq!(value["daemon_running"], true);
    assert_eq!(value["max_age_seconds"], 90.0);
    assert_eq!(
        value["counts"],
        json!({"owned": 1, "pending": 0, "refused_deletions": 0, "unmanaged": 1, "invalid": 0, "rejected_guids": 0})
    );
    assert_eq!(value["written_by"]["writer"], "monitor");
    assert_eq!(value["written_by"]["pid"], daemon.pid());
    assert!(
        value["summary_line"]
            .as_str()
            .is_some_and(|l| l.starts_with("UFM-PKEYD OK - in sync: 1 owned")),
        "{value:#}"
    );

    // The file: beside the state file, 0644, no secret in it.
    let path = status_path(&rig);
    let mode = std::fs::metadata(&path)
        .expect("status.json")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o644, "status.json is readable by anyone");
    let text = std::fs::read_to_string(&path).expect("status.json");
    assert!(!text.contains(rig.sim.password()), "no secret: {text}");
    assert_eq!(read_json(&path)["format"], 1);
    daemon.stop().assert_ok();
}

#[test]
fn ufm_failing_writes_to_one_partition_is_a_warning_until_it_recovers() {
    let rig = Rig::new(Api::V3);
    rig.put("0x10", &[host(1)], &[]);
    let notify = Notify::new();
    let daemon = rig.monitor(&[], &notify);
    rig.wait_partition(
        &daemon,
        "0x10",
        Some(&partition(&[host(1)], &[])),
        PROPAGATION,
    );
    wait_status(&rig, &[], 0, "UFM-PKEYD OK - in sync", Some(&daemon));
    rig.sim
        .add_faults(json!([{"method": "WRITE", "pkey": "0x11", "status": 500}]));
    rig.put("0x11", &[host(2)], &[]);
    let run = wait_status(&rig, &[], 1, "UFM-PKEYD WARNING", Some(&daemon));
    let (summary, perf) = summary_and_perf(&run);
    assert!(
        summary.starts_with("UFM-PKEYD WARNING - 1 changes pending: "),
        "{summary:?}"
    );
    assert_eq!(perf_value(&perf, "pending"), "1");
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with("last error: 1 UFM changes failed")),
        "{}",
        run.stdout
    );
    let value: Value = serde_json::from_str(&status(&rig, &["--json"]).stdout).expect("JSON");
    assert_eq!(value["status"], "WARNING", "{value:#}");
    assert_eq!(value["code"], 1);
    assert_eq!(value["in_sync"], false);
    // UFM takes the writes again: the retry applies them and the check is OK again.
    rig.sim.clear_faults();
    rig.wait_partition(
        &daemon,
        "0x11",
        Some(&partition(&[host(2)], &[])),
        Duration::from_secs(30),
    );
    wait_status(&rig, &[], 0, "UFM-PKEYD OK - in sync", Some(&daemon));
    daemon.stop().assert_ok();
}

#[test]
fn a_killed_daemon_and_a_stopped_one_are_critical() {
    let rig = Rig::new(Api::V3);
    rig.put("0x10", &[host(1)], &[]);
    let notify = Notify::new();
    let mut daemon = rig.monitor(&[], &notify);
    notify.wait(&daemon, "STATUS=", 1, PROPAGATION);
    wait_status(&rig, &[], 0, "UFM-PKEYD OK - in sync", Some(&daemon));
    let pid = daemon.pid();
    daemon.signal("KILL");
    wait_until("the daemon to die", PROPAGATION, || !daemon.is_running());
    let run = status(&rig, &[]);
    run.assert_code(2);
    let (summary, _) = summary_and_perf(&run);
    assert!(
        summary.starts_with(&format!(
            "UFM-PKEYD CRITICAL - ufm-pkeyd (pid {pid}) is not running; last check "
        )),
        "{summary:?}"
    );
    let value: Value = serde_json::from_str(&status(&rig, &["--json"]).stdout).expect("JSON");
    assert_eq!(value["status"], "CRITICAL", "{value:#}");
    assert_eq!(value["daemon_running"], false);

    // A daemon stopped by SIGTERM says so, and is as critical for monitoring.
    let notify = Notify::new();
    let daemon = rig.monitor(&[], &notify);
    notify.wait(&daemon, "STATUS=", 1, PROPAGATION);
    wait_status(&rig, &[], 0, "UFM-PKEYD OK - in sync", Some(&daemon));
    let pid = daemon.pid();
    daemon.stop().assert_ok();
    let run = status(&rig, &[]);
    run.assert_code(2);
    assert!(
        run.stdout.starts_with(&format!(
            "UFM-PKEYD CRITICAL - ufm-pkeyd (pid {pid}) stopped "
        )),
        "{}",
        run.stdout
    );
}

#[test]
fn a_last_check_older_than_max_age_is_critical() {
    let rig = Rig::new(Api::V3);
    rig.put("0x10", &[host(1)], &[]);
    // An idle daemon checks for drift every poll interval: with 60 s, a --max-age of 1 s
    // is passed a second after its first pass, and nothing else changes meanwhile.
    let notify = Notify::new();
    let daemon = rig.monitor(&["--poll-interval", "60"], &notify);
    notify.wait(&daemon, "STATUS=", 1, PROPAGATION);
    wait_status(&rig, &[], 0, "UFM-PKEYD OK - in sync", Some(&daemon));
    let run = wait_status(
        &rig,
        &["--max-age", "1"],
        2,
        "UFM-PKEYD CRITICAL",
        Some(&daemon),
    );
    let (summary, perf) = summary_and_perf(&run);
    assert!(
        summary.starts_with("UFM-PKEYD CRITICAL - last check ")
            && summary.ends_with(" ago, more than --max-age 1 s"),
        "{summary:?}"
    );
    assert!(perf_value(&perf, "age").ends_with(";;1"), "{perf:?}");
    // Still OK by the default (3 × 60 s).
    status(&rig, &[]).assert_ok();
    daemon.stop().assert_ok();

    // A file written by sync, aged by hand: judged on its age alone (no pid: sync has ended).
    rig.sync(&[]).assert_ok();
    status(&rig, &[]).assert_ok();
    let path = status_path(&rig);
    let mut value = read_json(&path);
    assert_eq!(value["writer"], "sync");
    let checked = value["last_check"].as_f64().expect("last_check");
    value["last_check"] = json!(checked - 1000.0);
    std::fs::write(&path, value.to_string()).expect("aging status.json");
    let run = status(&rig, &[]);
    run.assert_code(2);
    assert!(
        run.stdout
            .starts_with("UFM-PKEYD CRITICAL - last check 16 min ago, more than --max-age 90 s |"),
        "{}",
        run.stdout
    );
    status(&rig, &["--max-age", "2000"]).assert_ok();
}

#[test]
fn no_status_file_a_corrupt_one_and_bad_flags_are_unknown() {
    let rig = Rig::new(Api::V3);
    let run = status(&rig, &[]);
    run.assert_code(3);
    let expected = format!(
        "UFM-PKEYD UNKNOWN - no status file {}: ufm-pkeyd monitor (or sync) has not run with the state file {}",
        status_path(&rig).display(),
        rig.state_file().display()
    );
    assert_eq!(
        run.stdout.lines().next(),
        Some(expected.as_str()),
        "{run:?}"
    );
    let value: Value = serde_json::from_str(&status(&rig, &["--json"]).stdout).expect("JSON");
    assert_eq!(value["status"], "UNKNOWN", "{value:#}");
    assert_eq!(value["code"], 3);

    std::fs::write(status_path(&rig), "{\"format\": 1, \"writer\": ").expect("write");
    let run = status(&rig, &[]);
    run.assert_code(3);
    assert!(
        run.stdout
            .starts_with("UFM-PKEYD UNKNOWN - the status file ")
            && run
                .stdout
                .lines()
                .next()
                .is_some_and(|l| l.contains("is not valid JSON")),
        "{run:?}"
    );

    for (args, needle) in [
        (
            &["--max-age", "soon"][..],
            "--max-age \"soon\" is not valid",
        ),
        (&["--max-age", "0"][..], "--max-age \"0\" is not valid"),
        (&["--bogus"][..], "unknown option --bogus"),
        (
            &["--ufm-host", "ufm1"][..],
            "--ufm-host is not an option of `ufm-pkeyd status`",
        ),
    ] {
        let run = status(&rig, args);
        run.assert_code(3);
        assert!(
            run.stdout.starts_with("UFM-PKEYD UNKNOWN - ") && run.stdout.contains(needle),
            "{args:?}: {run:?}"
        );
    }
}

#[test]
fn user_nobody_reads_the_status_with_a_configuration_only_root_can_read() {
    let rig = Rig::new(Api::V3);
    rig.put("0x10", &[host(1)], &[]);
    // The daemon's configuration, 0640 root:root as the packages install it.
    let config = rig.dir.write(
        "ufm-pkeyd.yaml",
        &format!(
            "ufm-host: {}\nufm-http: true\nufm-password-file: {}\netcd-endpoints: [{}]\netcd-api: v3\nstate-file: {}\nuse-pcocc: false\n",
            rig.sim.url(),
            path_text(rig.sim.password_file()),
            rig.etcd.endpoint(),
            path_text(&rig.state_file()),
        ),
    );
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let config_text = path_text(&config);
    let notify = Notify::new();
    let daemon = Pkeyd::new(&["monitor", "--config", &config_text])
        .env("NOTIFY_SOCKET", &path_text(&notify.path()))
        .spawn();
    notify.wait(&daemon, "STATUS=", 1, PROPAGATION);
    rig.wait_partition(
        &daemon,
        "0x10",
        Some(&partition(&[host(1)], &[])),
        PROPAGATION,
    );
    // Root reads the configuration and finds the state file there.
    wait_for(
        "status OK as root",
        PROPAGATION,
        || tail_lines(&daemon.stderr(), 30),
        || (Pkeyd::new(&["status", "--config", &config_text]).run().code == 0).then_some(()),
    );

    let state = path_text(&rig.state_file());
    let as_nobody = |args: &[&str]| {
        let output = Command::new("timeout")
            .arg("30")
            .args([
                "setpriv",
                "--reuid=nobody",
                "--regid=nogroup",
                "--clear-groups",
                "--",
            ])
            .arg(env!("CARGO_BIN_EXE_ufm-pkeyd"))
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .output()
            .expect("running setpriv (util-linux)");
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    // nobody cannot read the configuration: really.
    let (code, _, stderr) = as_nobody(&["config", "--config", &config_text]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("Permission denied"), "{stderr}");

    let (code, stdout, stderr) =
        as_nobody(&["status", "--config", &config_text, "--state-file", &state]);
    assert_eq!(code, 0, "status as nobody:\n{stdout}\n{stderr}");
    assert!(
        stdout.starts_with(
            "UFM-PKEYD OK - in sync: 1 owned, 0 pending, 0 unmanaged, 0 invalid; last check "
        ),
        "{stdout}"
    );
    let note = stdout
        .lines()
        .find(|l| l.starts_with("config:"))
        .unwrap_or_else(|| {
            panic!("no config line saying the configuration was not read:\n{stdout}")
        });
    assert!(
        note.contains(&format!("cannot read configuration file {config_text}"))
            && note.contains("Permission denied")
            && note.contains(&format!("using the state file --state-file {state}")),
        "{note}"
    );
    assert!(!stdout.contains(rig.sim.password()) && !stderr.contains(rig.sim.password()));
    // Without --state-file it falls back to the default one, and says so.
    let (code, stdout, _) = as_nobody(&["status", "--config", &config_text, "--json"]);
    let value: Value = serde_json::from_str(&stdout).expect("status --json as nobody");
    assert!(
        value["config_error"].as_str().is_some_and(
            |n| n.contains("using the default state file /var/lib/ufm-pkeyd/state.json")
        ),
        "{value:#}"
    );
    assert_eq!(value["status_file"], "/var/lib/ufm-pkeyd/status.json");
    assert_eq!(code, value["code"].as_i64().map_or(-1, |c| c as i32));
    daemon.stop().assert_ok();
}

#[test]
fn sync_writes_the_metrics_and_status_files_and_a_refused_deletion_warns() {
    let rig = Rig::new(Api::V3);
    let metrics = rig.dir.join("metrics.prom");
    let metrics_flag = path_text(&metrics);
    for n in 0..3u64 {
        rig.put(&format!("0x{:x}", 0x10 + n), &[host(n)], &[]);
    }
    rig.sync(&["--metrics-file", &metrics_flag]).assert_ok();
    let text = std::fs::read_to_string(&metrics).expect("sync wrote the metrics file");
    for line in [
        "ufm_pkeyd_passes_total{outcome=\"success\"} 1\n",
        "ufm_pkeyd_partitions{state=\"owned\"} 3\n",
        "ufm_pkeyd_changes_applied_total{kind=\"partition_created\"} 3\n",
        "ufm_pkeyd_last_success_timestamp_seconds ",
        "ufm_pkeyd_last_check_timestamp_seconds ",
    ] {
        assert!(text.contains(line), "{line:?} in:\n{text}");
    }
    let file = read_json(&status_path(&rig));
    assert_eq!(file["writer"], "sync", "{file:#}");
    assert_eq!(file["in_sync"], true, "{file:#}");
    assert_eq!(file["counts"]["owned"], 3, "{file:#}");
    let run = status(&rig, &[]);
    run.assert_ok();
    assert!(
        run.stdout.starts_with(
            "UFM-PKEYD OK - in sync: 3 owned, 0 pending, 0 unmanaged, 0 invalid; last check "
        ),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("writer:     sync, pid ") && run.stdout.contains(" one-shot, "),
        "{}",
        run.stdout
    );

    // A sync that cannot reach etcd: the files say so and keep the last good times.
    let success = file["last_success"].as_f64().expect("last_success");
    let success_sample = text
        .lines()
        .find(|l| l.starts_with("ufm_pkeyd_last_success_timestamp_seconds "))
        .expect("the last success in the metrics")
        .to_string();
    let dead = dead_endpoint();
    let run = rig.sync(&["--metrics-file", &metrics_flag, "--etcd-endpoints", &dead]);
    run.assert_code(1);
    let file = read_json(&status_path(&rig));
    assert_eq!(file["last_success"].as_f64(), Some(success), "{file:#}");
    assert!(file["last_error"].is_string(), "{file:#}");
    let text = std::fs::read_to_string(&metrics).expect("metrics");
    assert!(
        text.contains("ufm_pkeyd_passes_total{outcome=\"failure\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!("{success_sample}\n")),
        "the last success is kept:\n{text}"
    );
    let run = status(&rig, &[]);
    run.assert_code(1);
    assert!(
        run.stdout
            .starts_with("UFM-PKEYD WARNING - last pass failed: "),
        "{}",
        run.stdout
    );

    // Every key gone from etcd: the guard refuses to delete all the partitions it owns.
    rig.etcd.delete_prefix_v3(PKEYS_PREFIX);
    let run = rig.sync(&["--metrics-file", &metrics_flag]);
    run.assert_code(1);
    assert_eq!(rig.pkeys().len(), 3, "nothing deleted");
    let run = status(&rig, &[]);
    run.assert_code(1);
    let (summary, perf) = summary_and_perf(&run);
    assert!(
        summary.starts_with("UFM-PKEYD WARNING - 3 deletions refused: 3 owned, 0 pending"),
        "{summary:?}"
    );
    assert_eq!(perf_value(&perf, "refused"), "3");
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with("last error: deletions refused")),
        "{}",
        run.stdout
    );
}
