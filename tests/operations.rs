//! What a RHEL admin meets around the daemon (issue 11): `config --check` for the unit's
//! `ExecReload=`, fatal errors at journal priority err, warnings about password files and
//! files the unit cannot see, flags alone running `monitor` as the Python daemons did, and
//! pcocc's `batch.yaml` without etcd settings. (Exit status 5 for refused credentials is
//! checked where each command's authentication is: `ufm_cli.rs`, `etcd_cli.rs`,
//! `sync_engine.rs`; the unit's use of all this by `make systemd-test`.)

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::{Command, Stdio};

use support::*;

fn config_check(rig: &Rig, extra: &[&str]) -> Run {
    rig.pkeyd("config", &[&["--check"], extra].concat()).run()
}

#[test]
fn config_check_accepts_a_configuration_that_would_start_the_daemon() {
    let rig = Rig::new(Api::V3);
    let run = config_check(&rig, &[]);
    run.assert_ok();
    assert!(
        run.stdout.starts_with("configuration OK: etcd ") && run.stdout.contains("UFM "),
        "{run:?}"
    );
    assert!(!run.reveals(rig.sim.password()), "no secret: {run:?}");
}

#[test]
fn config_check_exits_2_naming_what_would_stop_the_daemon() {
    let rig = Rig::new(Api::V3);
    let broken = rig.dir.write("broken.yaml", "etcd-api: [v2\n");
    let run = config_check(&rig, &["--config", &path_text(&broken)]);
    run.assert_code(2);
    assert!(run.stderr.contains(&path_text(&broken)), "{run:?}");

    let run = config_check(&rig, &["--ufm-password-file", "/nonexistent/ufm-password"]);
    run.assert_code(2);
    assert!(run.stderr.contains("/nonexistent/ufm-password"), "{run:?}");

    let run = config_check(&rig, &["--ufm-ca-cert", "/nonexistent/ca.pem"]);
    run.assert_code(2);
    assert!(run.stderr.contains("/nonexistent/ca.pem"), "{run:?}");

    let run = config_check(&rig, &["--state-file", "/nonexistent/dir/state.json"]);
    run.assert_code(2);
    assert!(run.stderr.contains("/nonexistent/dir"), "{run:?}");
}

#[test]
fn config_check_warns_about_a_password_file_anyone_can_read_and_files_the_unit_cannot_see() {
    let rig = Rig::new(Api::V3);
    let open = rig
        .dir
        .write("open-password", &format!("{}\n", rig.sim.password()));
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let run = config_check(
        &rig,
        &[
            "--ufm-password-file",
            &path_text(&open),
            "--metrics-file",
            "/root/ufm_pkeyd.prom",
        ],
    );
    run.assert_ok();
    assert!(
        run.stderr.contains("readable by every user") && run.stderr.contains("chmod 0600"),
        "{run:?}"
    );
    assert!(
        run.stderr.contains("/root/ufm_pkeyd.prom") && run.stderr.contains("ProtectHome"),
        "{run:?}"
    );
    assert!(run.stdout.contains("2 warnings"), "{run:?}");

    // A private file: no warning.
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let run = config_check(&rig, &["--ufm-password-file", &path_text(&open)]);
    run.assert_ok();
    assert!(!run.stderr.contains("warn"), "{run:?}");
}

/// Runs ufm-pkeyd with stderr going to a file named by `JOURNAL_STREAM` (device:inode), as
/// systemd connects a service's stderr to the journal; returns the lines written.
fn run_as_under_journal(args: &[&str]) -> (i32, Vec<String>) {
    let dir = TempDir::new("journal");
    let path = dir.join("stderr");
    let file = std::fs::File::create(&path).expect("creating the stderr file");
    let meta = file.metadata().expect("its metadata");
    let status = Command::new(env!("CARGO_BIN_EXE_ufm-pkeyd"))
        .args(args)
        .env_clear()
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(file))
        .status()
        .expect("running ufm-pkeyd");
    let text = std::fs::read_to_string(&path).expect("reading its stderr");
    (
        status.code().unwrap_or(-1),
        text.lines().map(str::to_string).collect(),
    )
}

#[test]
fn a_fatal_error_reaches_the_journal_at_priority_err_and_warnings_at_warning() {
    let (code, lines) = run_as_under_journal(&[
        "sync",
        "--no-pcocc",
        "--ufm-host",
        "127.0.0.1:9",
        "--http",
        "--ufm-password",
        "on-the-command-line",
        "--state-file",
        "/nonexistent/dir/state.json",
    ]);
    assert_ne!(code, 0);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("<4>") && l.contains("ps")),
        "the password-on-the-command-line warning at priority warning: {lines:?}"
    );
    let last = lines.last().expect("an error line");
    assert!(
        last.starts_with("<3>error: "),
        "the fatal line at priority err: {lines:?}"
    );
    assert!(
        lines.iter().all(|l| !l.contains("on-the-command-line")),
        "no secret: {lines:?}"
    );
}

#[test]
fn a_fatal_error_on_a_terminal_or_file_is_a_plain_line() {
    let run = pkeyd(&["sync", "--no-pcocc", "--ufm-host", "127.0.0.1:9", "--http"]);
    run.assert_code(2);
    // Written to a file, the line starts with its time (`2026-12-07T21:19:23Z `), no priority.
    assert!(
        log_message(&run.stderr).starts_with("ufm-pkeyd: error: no UFM password")
            && run.stderr.contains("/etc/ufm-pkeyd/ufm-password"),
        "names the file the unit loads and how to fill it: {run:?}"
    );
}

#[test]
fn flags_alone_run_monitor_as_the_python_daemons_did() {
    let rig = Rig::new(Api::V3);
    rig.put("0x10", &[host(1)], &[]);
    let password = path_text(rig.sim.password_file());
    let state = path_text(&rig.state_file());
    let notify = Notify::new();
    let url = rig.sim.url();
    let endpoint = rig.etcd.endpoint();
    let daemon = Pkeyd::new(&[
        "--no-pcocc",
        "--ufm-host",
        &url,
        "--http",
        "--ufm-user",
        rig.sim.user(),
        "--ufm-password-file",
        &password,
        "--etcd-endpoints",
        &endpoint,
        "--state-file",
        &state,
        "--poll-interval",
        "60",
    ])
    .env("NOTIFY_SOCKET", &path_text(&notify.path()))
    .spawn();
    rig.wait_partition(&daemon, "0x10", Some(&partition(&[host(1)], &[])), secs(10));
    daemon.stop().assert_ok();

    // A flag that is not the monitor's: no guessing.
    let run = pkeyd(&["--list", "--no-pcocc"]);
    run.assert_code(2);
    assert!(run.stderr.contains("no command given"), "{run:?}");
}

#[test]
fn a_pcocc_batch_yaml_without_etcd_settings_is_reported() {
    let dir = TempDir::new("pcocc");
    dir.write("batch.yaml", "settings:\n  etcd-protocol: http\n");
    let run = pkeyd(&["config", "--pcocc-dir", &path_text(dir.path())]);
    run.assert_ok();
    assert!(
        run.stderr
            .contains("batch.yaml has no etcd settings under `settings:`"),
        "{run:?}"
    );
    // pcocc's own file, with its servers: no warning.
    dir.write(
        "batch.yaml",
        "settings:\n  etcd-servers: [127.0.0.1]\n  etcd-client-port: 2379\n",
    );
    let run = pkeyd(&["config", "--pcocc-dir", &path_text(dir.path())]);
    run.assert_ok();
    assert!(!run.stderr.contains("no etcd settings"), "{run:?}");
}

#[test]
fn monitor_with_the_wrong_auth_mode_exits_2_at_start_and_names_the_fix() {
    let sim = UfmSim::start(SimOptions::nvidia_mock("a-token"));
    let rig = Rig::with_sim(Api::V3, sim);
    let run = rig
        .pkeyd("monitor", &["--poll-interval", "60"])
        .timeout(secs(20))
        .run();
    run.assert_code(2);
    assert!(run.stderr.contains("--ufm-token-file"), "{run:?}");
}

#[test]
fn as_the_units_reload_check_a_secret_only_the_credentials_hold_is_not_required() {
    // systemd runs ExecReload= without the unit's credentials (systemd#35227); the daemon
    // keeps those it started with, so the check must not fail for want of them.
    let base = [
        "config",
        "--check",
        "--no-pcocc",
        "--ufm-host",
        "127.0.0.1:9",
        "--http",
        "--state-file",
        "/tmp/state.json",
    ];
    let run = Pkeyd::new(&base)
        .env("INVOCATION_ID", "0123456789abcdef")
        .run();
    run.assert_ok();
    assert!(run.stdout.contains("not checked"), "{run:?}");
    // By hand, a missing password is an error.
    let run = Pkeyd::new(&base).run();
    run.assert_code(2);
    // Under systemd, with $CREDENTIALS_DIRECTORY set but not mounted for the reload command.
    let run = Pkeyd::new(&base)
        .env("INVOCATION_ID", "0123456789abcdef")
        .env(
            "CREDENTIALS_DIRECTORY",
            "/run/credentials/ufm-pkeyd.service",
        )
        .run();
    run.assert_ok();
    // Anything else wrong still fails the reload.
    let run = Pkeyd::new(&[&base[..], &["--ufm-ca-cert", "/nonexistent/ca.pem"]].concat())
        .env("INVOCATION_ID", "0123456789abcdef")
        .run();
    run.assert_code(2);
}
