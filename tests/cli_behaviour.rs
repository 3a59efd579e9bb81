//! How the command line behaves for an operator (issue 18): the etcd keyspace found out
//! rather than silently wrong (`etcd-api: auto`), Ctrl-C that works during `sync` without
//! cutting a UFM write in half, timestamps on logs that go to a file, a notice when UFM is
//! silent on a terminal, the password prompt for UFM, "did you mean", options that do not
//! apply refused, typed `config --json`, and `monitor --dry-run --json` as JSON Lines.
//!
//! Against a real etcd and the UFM simulator; terminals are real pseudo-terminals
//! (util-linux `script`).

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

/// The status check for the rig's state file.
fn status(rig: &Rig) -> Run {
    pkeyd(&[
        "status",
        "--no-pcocc",
        "--state-file",
        &path_text(&rig.state_file()),
    ])
}

// ---- The etcd keyspace --------------------------------------------------------------------

#[test]
fn sync_without_etcd_api_follows_the_v2_keyspace_that_holds_pcocc_keys() {
    let rig = Rig::new(Api::V2);
    rig.put("0x1a", &[host(1)], &[vf(1)]);
    rig.put("0x200e", &[host(2)], &[]);
    let run = rig.pkeyd_default_api("sync", &[]).run();
    run.assert_ok();
    assert_eq!(rig.pkeys(), ["0x1a", "0x200e"], "{run:?}");
    assert_eq!(rig.partition("0x1a"), Some(partition(&[host(1)], &[vf(1)])));
}

#[test]
fn with_keys_in_both_keyspaces_auto_refuses_to_guess_and_exits_2_naming_both_counts() {
    let rig = Rig::new(Api::V2);
    rig.put("0x1a", &[host(1)], &[]);
    rig.put("0x1b", &[host(2)], &[]);
    rig.etcd.put_v3(
        &format!("{PKEYS_PREFIX}0x300"),
        &json_value(&[host(3)], &[]),
    );
    for args in [&["sync"][..], &["sync", "--dry-run"], &["monitor"]] {
        let run = rig
            .pkeyd_default_api(args[0], &args[1..])
            .timeout(secs(30))
            .run();
        run.assert_code(2);
        let errors: Vec<&str> = run
            .stderr
            .lines()
            .filter(|l| !l.contains("ufm-pkeyd: warn: "))
            .collect();
        assert_eq!(errors.len(), 1, "{args:?}: one line: {run:?}");
        assert!(
            errors[0].contains("v2: 2, v3: 1") && errors[0].contains("--etcd-api v2|v3"),
            "{args:?}: {run:?}"
        );
    }
    assert!(rig.pkeys().is_empty(), "nothing was changed in UFM");
}

#[test]
fn with_no_key_in_either_keyspace_the_keyspace_followed_is_said_once() {
    let rig = Rig::new(Api::V2);
    let run = rig.pkeyd_default_api("sync", &["--dry-run"]).run();
    run.assert_ok();
    let said = format!(
        "no key under {PKEYS_PREFIX} in either etcd keyspace yet: following v2 (the keyspace pcocc writes"
    );
    assert_eq!(run.stderr.matches(&said).count(), 1, "{run:?}");

    // An etcd without the v2 API (etcd 3.4's default): v3.
    let rig = Rig::new(Api::V3);
    let run = rig.pkeyd_default_api("sync", &["--dry-run"]).run();
    run.assert_ok();
    assert!(
        run.stderr
            .contains("following v3 (this etcd does not serve the v2 API)"),
        "{run:?}"
    );
}

#[test]
fn status_warns_when_the_daemon_follows_an_empty_keyspace_while_the_other_holds_keys() {
    let rig = Rig::new(Api::V2);
    rig.put("0x1a", &[host(1)], &[]);
    // The daemon told to follow v3, where nothing is.
    let daemon = rig
        .pkeyd_default_api("monitor", &["--etcd-api", "v3"])
        .spawn();
    let run = wait_for(
        "the daemon's first pass in the status file",
        secs(20),
        || daemon.stderr(),
        || {
            let run = status(&rig);
            (run.code != 3 && run.stdout.contains("last check")).then_some(run)
        },
    );
    assert_eq!(run.code, 1, "WARNING: {run:?}");
    assert!(
        run.stdout.starts_with(&format!(
            "UFM-PKEYD WARNING - the v3 keyspace followed was empty under {PKEYS_PREFIX} at the start while v2 held 1 keys (set etcd-api: v2 or auto)"
        )),
        "{run:?}"
    );
    daemon.stop().assert_ok();

    // Left to find out, it follows v2 and all is well (with an ownership record of its own:
    // the daemon's belongs to the v3 keyspace).
    let state = rig.dir.join("auto.json");
    let state = path_text(&state);
    rig.pkeyd_default_api("sync", &["--state-file", &state])
        .run()
        .assert_ok();
    let run = pkeyd(&["status", "--no-pcocc", "--state-file", &state]);
    run.assert_ok();
    assert!(
        run.stdout
            .contains("etcd:       v2 keyspace followed (etcd-api auto)"),
        "{run:?}"
    );
}

#[test]
fn config_shows_auto_and_what_it_resolves_to() {
    let rig = Rig::new(Api::V2);
    rig.put("0x1a", &[host(1)], &[]);
    let run = rig.pkeyd_default_api("config", &[]).run();
    run.assert_ok();
    assert!(
        run.stdout.contains(&format!(
            "api auto → v2 (keys under {PKEYS_PREFIX}: v2 1, v3 0)"
        )),
        "{run:?}"
    );
    let run = rig.pkeyd_default_api("config", &["--json"]).run();
    run.assert_ok();
    let config: Value = serde_json::from_str(&run.stdout).expect("config --json");
    assert_eq!(config["keys"]["etcd-api"]["value"], "auto");
    assert_eq!(config["etcd"]["api"], "auto");
    assert_eq!(config["etcd"]["resolved_api"], "v2");
}

// ---- Interrupts ---------------------------------------------------------------------------

/// Waits until the simulator has received a request matching `wanted`.
fn wait_for_request(rig: &Rig, what: &str, wanted: impl Fn(&Value) -> bool) {
    wait_until(what, secs(20), || {
        rig.sim.requests_log().iter().any(&wanted)
    });
}

fn is_list(entry: &Value) -> bool {
    entry["method"] == "GET" && entry["route"] == "/resources/pkeys"
}

fn is_write(entry: &Value) -> bool {
    entry["method"] != "GET" && entry["method"] != "HEAD"
}

#[test]
fn sync_interrupted_while_ufm_does_not_answer_a_read_exits_at_once_with_130_or_143() {
    let rig = Rig::new(Api::V3);
    rig.put("0x1a", &[host(1)], &[]);
    rig.sim.add_faults(json!([
        {"method": "GET", "route": "/resources/pkeys", "delay_ms": 60_000}
    ]));
    for (signal, code) in [("INT", 130), ("TERM", 143)] {
        rig.sim.clear_requests_log();
        let mut sync = rig.pkeyd("sync", &[]).spawn();
        wait_for_request(&rig, "sync to ask UFM for its partitions", is_list);
        let sent = Instant::now();
        sync.signal(signal);
        let run = sync.wait(secs(5));
        assert!(
            sent.elapsed() < Duration::from_secs(1),
            "SIG{signal}: exited after {:?}",
            sent.elapsed()
        );
        run.assert_code(code);
    }
    assert!(rig.pkeys().is_empty());
}

#[test]
fn sync_interrupted_during_a_write_finishes_that_write_then_exits_130() {
    let rig = Rig::new(Api::V3);
    rig.put("0x1a", &[host(1)], &[vf(1)]);
    rig.sim
        .add_faults(json!([{"method": "WRITE", "delay_ms": 1500}]));
    let mut sync = rig.pkeyd("sync", &[]).spawn();
    wait_for_request(&rig, "sync's first write to UFM", is_write);
    sync.signal("INT");
    let run = sync.wait(secs(10));
    run.assert_code(130);
    assert!(
        run.stderr
            .contains("interrupted: finishing the write in flight to POST http://"),
        "{run:?}"
    );
    assert_eq!(rig.pkeys(), ["0x1a"], "UFM holds the write: {run:?}");
    let writes = rig
        .sim
        .requests_log()
        .iter()
        .filter(|e| is_write(e))
        .count();
    assert_eq!(writes, 1, "nothing is sent after the interrupt");
}

#[test]
fn a_second_interrupt_aborts_the_write_in_flight() {
    let rig = Rig::new(Api::V3);
    rig.put("0x1a", &[host(1)], &[]);
    rig.sim
        .add_faults(json!([{"method": "WRITE", "delay_ms": 60_000}]));
    let mut sync = rig.pkeyd("sync", &[]).spawn();
    wait_for_request(&rig, "sync's write to UFM", is_write);
    sync.signal("INT");
    sync.wait_for_stderr("finishing the write in flight", secs(5));
    let sent = Instant::now();
    sync.signal("INT");
    let run = sync.wait(secs(5));
    assert!(
        sent.elapsed() < Duration::from_secs(1),
        "{:?}",
        sent.elapsed()
    );
    run.assert_code(130);
}

#[test]
fn ufm_list_interrupted_while_ufm_is_silent_exits_130() {
    let rig = Rig::new(Api::V3);
    rig.sim.add_faults(json!([
        {"method": "GET", "route": "/resources/pkeys", "delay_ms": 60_000}
    ]));
    let mut list = rig.ufm_cli(&["--list"]).spawn();
    wait_for_request(&rig, "ufm --list to ask UFM", is_list);
    list.signal("INT");
    list.wait(secs(1)).assert_code(130);
}

// ---- Terminals and logs -------------------------------------------------------------------

/// Runs `ufm-pkeyd ARGS…` on a pseudo-terminal (stdin, stdout and stderr), feeding `input`;
/// returns its exit code and everything it wrote there.
fn on_terminal(args: &[String], input: &str) -> (i32, String) {
    let quote = |a: &str| format!("'{}'", a.replace('\'', r"'\''"));
    let line = std::iter::once(env!("CARGO_BIN_EXE_ufm-pkeyd").to_string())
        .chain(args.iter().cloned())
        .map(|a| quote(&a))
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("util-linux script");
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        stdin.write_all(input.as_bytes()).expect("terminal input");
        // Kept open until the command is done: `script` ends the session on end of input.
        let output = wait_with_timeout(child, secs(30));
        drop(stdin);
        return output;
    }
    wait_with_timeout(child, secs(30))
}

fn wait_with_timeout(mut child: std::process::Child, timeout: Duration) -> (i32, String) {
    use std::io::Read;
    let mut stdout = child.stdout.take().expect("stdout");
    let status = wait_for(
        "the command on the terminal to end",
        timeout,
        String::new,
        || child.try_wait().ok().flatten(),
    );
    let mut text = String::new();
    let _ = stdout.read_to_string(&mut text);
    (status.code().unwrap_or(-1), text.replace("\r\n", "\n"))
}

fn owned(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

/// The arguments of `rig.ufm_cli(extra)`, for a terminal.
fn ufm_args(rig: &Rig, extra: &[&str]) -> Vec<String> {
    let mut args = owned(&["ufm", "--no-pcocc", "--http", "--ufm-host", &rig.sim.url()]);
    args.extend(owned(extra));
    args
}

fn is_timestamped(line: &str) -> bool {
    let b = line.as_bytes();
    line.len() > 21
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'Z'
        && b[20] == b' '
        && [0..4, 5..7, 8..10, 11..13, 14..16, 17..19]
            .into_iter()
            .all(|r| b[r].iter().all(u8::is_ascii_digit))
}

#[test]
fn log_lines_start_with_a_utc_timestamp_when_stderr_is_not_a_terminal() {
    let rig = Rig::new(Api::V3);
    // A password on the command line: a warning, and a failure: the fatal line.
    let password = rig.sim.password().to_string();
    let run = rig
        .pkeyd(
            "sync",
            &[
                "--ufm-password",
                &password,
                "--state-file",
                "/nonexistent/x",
            ],
        )
        .run();
    assert_ne!(run.code, 0);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert!(lines.len() >= 2, "{run:?}");
    for line in lines {
        assert!(is_timestamped(line), "{line:?}");
        assert!(line[21..].starts_with("ufm-pkeyd: "), "{line:?}");
    }
}

#[test]
fn on_a_terminal_logs_have_no_timestamp_unless_asked() {
    let rig = Rig::new(Api::V3);
    let password = rig.sim.password().to_string();
    let args = ufm_args(&rig, &["--password", &password, "--check"]);
    let (code, text) = on_terminal(&args, "");
    assert_eq!(code, 0, "{text}");
    let warning = text
        .lines()
        .find(|l| l.contains("shows the password in `ps`"))
        .unwrap_or_else(|| panic!("the warning: {text}"));
    assert!(warning.starts_with("ufm-pkeyd: warn"), "{warning:?}");

    let mut args = args;
    args.push("--log-timestamps".into());
    let (code, text) = on_terminal(&args, "");
    assert_eq!(code, 0, "{text}");
    let warning = text
        .lines()
        .find(|l| l.contains("shows the password in `ps`"))
        .unwrap_or_else(|| panic!("the warning: {text}"));
    assert!(is_timestamped(warning), "{warning:?}");
}

#[test]
fn on_a_terminal_a_silent_ufm_is_announced_after_2_s() {
    let rig = Rig::new(Api::V3);
    let password = path_text(rig.sim.password_file());
    rig.sim.add_faults(json!([
        {"method": "GET", "route": "/resources/pkeys", "delay_ms": 3500, "count": 1}
    ]));
    let args = ufm_args(&rig, &["--ufm-password-file", &password, "--list"]);
    let (code, text) = on_terminal(&args, "");
    assert_eq!(code, 0, "the list still comes: {text}");
    let notice = format!("ufm-pkeyd: waiting for UFM at {}", rig.sim.url());
    assert_eq!(text.matches(&notice).count(), 1, "{text}");

    // Not on a terminal (cron, scripts): no notice.
    rig.sim.add_faults(json!([
        {"method": "GET", "route": "/resources/pkeys", "delay_ms": 2500, "count": 1}
    ]));
    let run = rig
        .ufm_cli(&["--ufm-password-file", &password, "--list"])
        .run();
    run.assert_ok();
    assert!(!run.stderr.contains("waiting for"), "{run:?}");
}

#[test]
fn ufm_prompt_password_asks_on_the_terminal() {
    let rig = Rig::new(Api::V3);
    let args = ufm_args(
        &rig,
        &[
            "--ufm-user",
            rig.sim.user(),
            "--ufm-prompt-password",
            "--check",
        ],
    );
    let (code, text) = on_terminal(&args, &format!("{}\n", rig.sim.password()));
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(&format!("UFM password for {}: ", rig.sim.user()))
            && text.contains("connected and authenticated"),
        "{text}"
    );
    let (code, text) = on_terminal(&args, "not the password\n");
    assert_eq!(code, 5, "refused credentials: {text}");

    let run = Pkeyd::new(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .without_terminal()
        .run();
    run.assert_code(2);
    assert!(
        run.stderr
            .contains("--ufm-prompt-password needs a terminal: give --ufm-password-file"),
        "{run:?}"
    );
}

// ---- Mistakes on the command line ---------------------------------------------------------

#[test]
fn a_mistyped_command_or_flag_gets_a_suggestion() {
    let run = pkeyd(&["snyc", "--dry-run"]);
    run.assert_code(2);
    assert!(run.stderr.contains("did you mean sync?"), "{run:?}");
    let run = pkeyd(&["ufm", "--lsit"]);
    run.assert_code(2);
    assert!(run.stderr.contains("did you mean --list?"), "{run:?}");
    // The monitoring check answers UNKNOWN, with the same help.
    let run = pkeyd(&["status", "--max-aeg", "60"]);
    run.assert_code(3);
    assert!(run.stdout.contains("did you mean --max-age?"), "{run:?}");
}

#[test]
fn an_option_that_does_not_apply_to_the_operation_is_refused_before_any_request() {
    let rig = Rig::new(Api::V3);
    let password = path_text(rig.sim.password_file());
    for extra in [
        &["--list", "--remove-guids"][..],
        &["--list", "--guids", "0002c903000e0b72"],
        &["--get-pkey", "0x10", "--remove-guids"],
    ] {
        let run = rig
            .ufm_cli(&[&["--ufm-password-file", &password][..], extra].concat())
            .run();
        run.assert_code(2);
        let flag = extra[extra.len() - 1];
        let flag = if flag.starts_with("--") {
            flag
        } else {
            extra[extra.len() - 2]
        };
        assert!(
            run.stderr.contains(&format!("{flag} does not apply")),
            "{run:?}"
        );
    }
    assert!(rig.sim.requests_log().is_empty(), "no request reached UFM");
}

// ---- Output for scripts -------------------------------------------------------------------

#[test]
fn config_json_gives_values_of_their_kind() {
    let rig = Rig::new(Api::V3);
    let run = rig.pkeyd("config", &["--json"]).run();
    run.assert_ok();
    let config: Value = serde_json::from_str(&run.stdout).expect("config --json");
    let value = |key: &str| config["keys"][key]["value"].clone();
    assert_eq!(value("poll-interval"), json!(30));
    assert_eq!(value("etcd-port"), json!(2379));
    assert_eq!(value("max-deletes"), json!(10));
    assert_eq!(value("ufm-ssl-verify"), json!(true));
    assert_eq!(value("ufm-http"), json!(true));
    assert_eq!(value("etcd-endpoints"), json!([rig.etcd.endpoint()]));
    assert_eq!(value("etcd-api"), json!("v3"));
    assert_eq!(value("ufm-password"), Value::Null);
    let run = rig
        .pkeyd("config", &["--json", "--ufm-password", "hunter2"])
        .run();
    let config: Value = serde_json::from_str(&run.stdout).expect("config --json");
    assert_eq!(config["keys"]["ufm-password"]["value"], "<redacted>");
    assert!(!run.reveals("hunter2"), "{run:?}");
}

#[test]
fn monitor_dry_run_json_prints_one_compact_document_per_plan() {
    let rig = Rig::new(Api::V3);
    rig.put("0x1a", &[host(1)], &[]);
    let daemon = rig.pkeyd("monitor", &["--dry-run", "--json"]).spawn();
    let lines =
        |daemon: &Daemon| -> Vec<String> { daemon.stdout().lines().map(str::to_string).collect() };
    wait_until("the first plan", secs(20), || !lines(&daemon).is_empty());
    rig.put("0x1b", &[host(2)], &[]);
    wait_until("the plan after a change", secs(20), || {
        lines(&daemon).len() >= 2
    });
    let run = daemon.stop();
    run.assert_ok();
    let plans: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    assert_eq!(plans.len(), 2, "{run:?}");
    assert!(plans.iter().all(Value::is_object), "{run:?}");
}
