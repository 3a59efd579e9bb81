//! ufm-pkeyd facing hostile answers, hostile input and hostile neighbours (issue 17), each
//! against a real etcd, the UFM simulator and the built binary:
//! - a web page from UFM (Apache's, while UFM restarts or fails over) is an outage, not a
//!   password error: no exit, no minute-long stall; refused credentials at start-up exit 5 only
//!   when a second try confirms them;
//! - no file is written through a link planted by another account, and every file gets its
//!   mode whatever the umask;
//! - no etcd value, however deeply nested, stalls the daemon's only thread;
//! - text from UFM and etcd cannot drive a terminal or forge a log line;
//! - secrets stay out of core dumps.

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

/// How long a change made in etcd may take to show in UFM while the daemon watches.
const PROPAGATION: Duration = Duration::from_secs(5);

/// The unprivileged account that plays the neighbour (and, for the core dump test, the
/// daemon's user): `nobody`.
const NOBODY: u32 = 65534;

fn mode_of(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// A directory that another account (nobody) owns and may write, as node_exporter's textfile
/// directory is; and, outside it, a file only root may read or write.
fn neighbours_directory(rig: &Rig) -> (PathBuf, PathBuf) {
    let shared = rig.dir.join("textfile");
    std::fs::create_dir(&shared).expect("the shared directory");
    std::os::unix::fs::chown(&shared, Some(NOBODY), Some(NOBODY)).expect("chown to nobody");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let victim = rig.dir.write("root-only", "root's own data\n");
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    (shared, victim)
}

// ------------------------------------------------------------------------------------------
// 1. Web pages from UFM
// ------------------------------------------------------------------------------------------

#[test]
fn a_daemon_started_while_ufm_serves_web_pages_keeps_running_and_syncs() {
    let rig = Rig::new(Api::V3);
    rig.put("0x10", &[host(1)], &[]);
    // UFM's first answers are Apache's page, then a line of text, all with HTTP 200: it is
    // starting behind Apache.
    rig.sim.add_faults(json!([
        {"page": "apache", "count": 2},
        {"page": "text", "count": 2},
    ]));
    let notify = Notify::new();
    let mut daemon = rig.monitor(&["--poll-interval", "60"], &notify);
    rig.wait_partition(&daemon, "0x10", Some(&partition(&[host(1)], &[])), secs(10));
    assert!(daemon.is_running(), "{}", daemon.stderr());
    let log = daemon.stderr();
    assert!(
        log.contains("instead of its API") && !log.contains("rejected"),
        "the page is said to be UFM not serving its API, not a password error:\n{log}"
    );
    daemon.stop().assert_ok();
}

#[test]
fn web_pages_from_ufm_for_20_s_delay_a_change_by_the_outage_and_no_more() {
    let rig = Rig::new(Api::V3);
    rig.put("0x10", &[host(1)], &[]);
    let notify = Notify::new();
    let mut daemon = rig.monitor(&["--poll-interval", "60"], &notify);
    rig.wait_partition(
        &daemon,
        "0x10",
        Some(&partition(&[host(1)], &[])),
        PROPAGATION,
    );
    rig.wait_watching(&daemon);

    // An HA fail-over: for 20 s every API request gets Apache's page with HTTP 200.
    let outage = secs(20);
    let started = Instant::now();
    rig.sim
        .add_faults(json!([{"page": "apache", "seconds": outage.as_secs_f64()}]));
    rig.put("0x11", &[host(2)], &[]);
    let deadline = (outage + secs(2)).saturating_sub(started.elapsed());
    rig.wait_partition(&daemon, "0x11", Some(&partition(&[host(2)], &[])), deadline);
    assert!(daemon.is_running(), "{}", daemon.stderr());
    let log = daemon.stderr();
    assert_eq!(
        log.matches("instead of its API").count(),
        1,
        "the outage is logged once when it starts:\n{log}"
    );
    assert!(log.contains("UFM reachable again"), "{log}");
    daemon.stop().assert_ok();
}

#[test]
fn credentials_refused_once_at_start_are_asked_again_and_the_daemon_runs() {
    let rig = Rig::new(Api::V3);
    rig.put("0x10", &[host(1)], &[]);
    // UFM answers its first request with its page to log in, then serves the API.
    rig.sim.add_faults(json!([
        {"route": "/app/ufm_version", "page": "login", "count": 1},
    ]));
    let notify = Notify::new();
    let mut daemon = rig.monitor(&["--poll-interval", "60"], &notify);
    rig.wait_partition(&daemon, "0x10", Some(&partition(&[host(1)], &[])), secs(15));
    assert!(daemon.is_running(), "{}", daemon.stderr());
    assert!(
        daemon.stderr().contains("asking again in 3 s"),
        "{}",
        daemon.stderr()
    );
    daemon.stop().assert_ok();
}

#[test]
fn wrong_credentials_at_start_exit_5_once_a_second_try_a_few_seconds_later_confirms_them() {
    for auth_failure in ["401", "login200"] {
        let rig = Rig::new(Api::V3);
        rig.sim.set_mode(json!({"auth_failure": auth_failure}));
        let wrong = rig.dir.write("wrong-password", "Wr0ng-Passw0rd\n");
        let daemon = rig
            .pkeyd("monitor", &["--ufm-password-file", &path_text(&wrong)])
            .spawn();
        let run = daemon.wait(secs(30));
        run.assert_code(5);
        assert!(
            run.stderr.contains("asking again") && !run.reveals("Wr0ng-Passw0rd"),
            "{auth_failure}: {}",
            run.stderr
        );
        let tries: Vec<u64> = rig
            .sim
            .requests_log()
            .iter()
            .filter(|r| r["route"] == "/app/ufm_version")
            .filter_map(|r| r["at_ms"].as_u64())
            .collect();
        assert!(
            tries.len() == 2 && tries[1] - tries[0] >= 2500,
            "{auth_failure}: two tries, seconds apart: {tries:?}"
        );
    }
}

// ------------------------------------------------------------------------------------------
// 2. Files written through links, and file modes
// ------------------------------------------------------------------------------------------

#[test]
fn the_metrics_file_is_never_written_through_links_planted_in_its_directory() {
    let rig = Rig::new(Api::V3);
    rig.put("0x10", &[host(1)], &[]);
    let (shared, victim) = neighbours_directory(&rig);
    let metrics = shared.join("ufm_pkeyd.prom");
    // The neighbour plants a link to the root-only file at every name a temporary file could
    // have: the shell's process id is the one ufm-pkeyd runs with (exec), and those around it.
    let plant = format!(
        "for pid in $(seq $(($$ - 20)) $(($$ + 20))); do \
           ln -s {victim} {dir}/.ufm_pkeyd.prom.$pid.tmp; \
         done; ln -s {victim} {dir}/.ufm_pkeyd.prom.tmp; \
         chown -h {NOBODY}:{NOBODY} {dir}/.ufm_pkeyd*; exec \"$0\" \"$@\"",
        victim = path_text(&victim),
        dir = path_text(&shared),
    );
    let run = rig
        .pkeyd("sync", &["--metrics-file", &path_text(&metrics)])
        .through(&["sh", "-c", &plant])
        .run();
    run.assert_ok();
    assert_eq!(
        std::fs::read_to_string(&victim).expect("the root-only file"),
        "root's own data\n",
        "the root-only file was written through a link"
    );
    assert_eq!(mode_of(&victim), 0o600);
    let meta = std::fs::symlink_metadata(&metrics).expect("the metrics file");
    assert!(meta.file_type().is_file(), "a regular file, not a link");
    let text = std::fs::read_to_string(&metrics).expect("the metrics file");
    assert!(text.contains("ufm_pkeyd_"), "{text}");
}

#[test]
fn a_link_at_the_metrics_file_or_the_lock_file_is_refused_with_a_clear_error() {
    let rig = Rig::new(Api::V3);
    rig.put("0x10", &[host(1)], &[]);
    let (shared, victim) = neighbours_directory(&rig);

    let metrics = shared.join("ufm_pkeyd.prom");
    std::os::unix::fs::symlink(&victim, &metrics).expect("a link at the metrics file");
    let run = rig.sync(&["--metrics-file", &path_text(&metrics)]);
    let expected = format!("{} is a symbolic link", metrics.display());
    assert!(
        run.stderr.contains(&expected) && run.stderr.contains("remove it"),
        "one line naming the file and the fix:\n{}",
        run.stderr
    );
    assert_eq!(
        std::fs::read_to_string(&victim).expect("the root-only file"),
        "root's own data\n"
    );
    assert!(
        std::fs::symlink_metadata(&metrics)
            .expect("the link")
            .file_type()
            .is_symlink(),
        "the link is left for the operator to look at"
    );

    // The state file in that directory: a link at its lock file would have root create (or
    // open) whatever file the link names.
    let root_only_dir = rig.dir.join("root-only-dir");
    std::fs::create_dir(&root_only_dir).expect("a root-only directory");
    let target = root_only_dir.join("created-through-a-link");
    let state = shared.join("state.json");
    std::os::unix::fs::symlink(&target, shared.join("state.json.lock")).expect("a link");
    rig.put("0x11", &[host(2)], &[]);
    let run = rig.sync(&["--state-file", &path_text(&state)]);
    run.assert_code(2);
    assert!(
        run.stderr.contains("state.json.lock is a symbolic link"),
        "{}",
        run.stderr
    );
    assert!(!target.exists(), "a file was created through the link");
    assert_eq!(rig.partition("0x11"), None, "nothing was changed in UFM");
}

#[test]
fn files_the_daemon_writes_get_their_modes_whatever_the_umask() {
    let rig = Rig::new(Api::V3);
    rig.put("0x10", &[host(1)], &[]);
    let metrics = rig.dir.join("ufm_pkeyd.prom");
    let notify = Notify::new();
    let daemon = rig
        .pkeyd(
            "monitor",
            &[
                "--poll-interval",
                "60",
                "--metrics-file",
                &path_text(&metrics),
            ],
        )
        .env("NOTIFY_SOCKET", &path_text(&notify.path()))
        .through(&["sh", "-c", "umask 000; exec \"$0\" \"$@\""])
        .spawn();
    rig.wait_partition(
        &daemon,
        "0x10",
        Some(&partition(&[host(1)], &[])),
        PROPAGATION,
    );
    notify.wait(&daemon, "STATUS=", 1, PROPAGATION);
    let state = rig.state_file();
    let lock = rig.dir.join("state.json.lock");
    let status = rig.dir.join("status.json");
    wait_until("every file written", PROPAGATION, || {
        [&state, &lock, &status, &metrics]
            .iter()
            .all(|f| f.exists())
    });
    let modes: Vec<(String, u32)> = [&state, &lock, &status, &metrics]
        .iter()
        .map(|f| {
            (
                f.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
                mode_of(f),
            )
        })
        .collect();
    assert_eq!(
        modes,
        [
            ("state.json".to_string(), 0o600),
            ("state.json.lock".to_string(), 0o600),
            ("status.json".to_string(), 0o644),
            ("ufm_pkeyd.prom".to_string(), 0o644),
        ],
        "modes under umask 000 (octal: 0o600 = 384, 0o644 = 420)"
    );
    daemon.stop().assert_ok();
}

// ------------------------------------------------------------------------------------------
// 3. Deeply nested etcd values
// ------------------------------------------------------------------------------------------

/// Writes `PREFIX + name` = `value` through v2 as pcocc does, the body from a file: a value of
/// a megabyte does not fit in one command-line argument.
fn put_v2_large(rig: &Rig, name: &str, value: &str) {
    let body = rig.dir.write(
        &format!("{name}.body"),
        &format!("value={}", form_urlencode(value)),
    );
    let url = rig.etcd.url(&format!("/v2/keys{PKEYS_PREFIX}{name}"));
    let data = format!("@{}", path_text(&body));
    let reply = rig.etcd.curl(&["-X", "PUT", "--data-binary", &data, &url]);
    assert!(
        matches!(reply.status, 200 | 201),
        "v2 PUT {name}: {reply:?}"
    );
}

#[test]
fn a_deeply_nested_value_is_reported_with_its_key_and_does_not_stall_the_daemon() {
    let rig = Rig::new(Api::V2);
    rig.put("0x10", &[host(1)], &[]);
    let notify = Notify::new();
    let mut daemon = rig.monitor(&["--poll-interval", "60"], &notify);
    rig.wait_partition(
        &daemon,
        "0x10",
        Some(&partition(&[host(1)], &[])),
        PROPAGATION,
    );
    rig.wait_watching(&daemon);
    // 1.4 MB, under etcd's request limit: 700,000 levels of lists.
    let deep = format!("{{'host_guids': {}", "[".repeat(700_000));
    put_v2_large(&rig, "0x11", &deep);
    rig.put("0x12", &[host(2)], &[]);
    rig.wait_partition(
        &daemon,
        "0x12",
        Some(&partition(&[host(2)], &[])),
        PROPAGATION,
    );
    daemon.wait_for_stderr("0x11: value is nested deeper than 64 levels", secs(5));
    assert!(rig.partition("0x11").is_none());
    daemon.stop().assert_ok();
}

// ------------------------------------------------------------------------------------------
// 4. Control characters from outside
// ------------------------------------------------------------------------------------------

/// A name that sets the terminal's title and clears its screen when printed raw.
const HOSTILE_NAME: &str = "\u{1b}]0;title\u{7}evil\u{1b}[2J";
const HOSTILE_NAME_SHOWN: &str = "\\x1b]0;title\\x07evil\\x1b[2J";

#[test]
fn partition_names_with_terminal_escapes_are_printed_escaped_and_exact_in_json() {
    let rig = Rig::new(Api::V3);
    let entry = json!({"partition": HOSTILE_NAME, "ip_over_ib": true,
                       "guids": [{"guid": format!("{:016x}", host(1)), "membership": "full",
                                  "index0": false}]});
    let list = json!({"0x7fff": {"partition": "management", "ip_over_ib": true, "guids": []},
                      "0x20": entry});
    rig.sim.add_faults(json!([
        {"method": "GET", "route": "/resources/pkeys", "body": list},
        {"method": "GET", "route": "/resources/pkeys/{pkey}", "pkey": "0x20", "body": entry},
    ]));
    for args in [&["--list"][..], &["--get-pkey", "0x20"][..]] {
        let run = rig.ufm_cli(args).run();
        run.assert_ok();
        assert!(
            !run.stdout.contains(['\u{1b}', '\u{7}']) && run.stdout.contains(HOSTILE_NAME_SHOWN),
            "{args:?}: {:?}",
            run.stdout
        );
        let mut json_args = args.to_vec();
        json_args.push("--json");
        let run = rig.ufm_cli(&json_args).run();
        run.assert_ok();
        let value: Value = serde_json::from_str(&run.stdout).expect("JSON");
        let name = match &value {
            Value::Array(items) => items
                .iter()
                .find(|p| p["pkey"] == "0x20")
                .map(|p| p["name"].clone()),
            one => Some(one["name"].clone()),
        };
        assert_eq!(
            name,
            Some(json!(HOSTILE_NAME)),
            "--json keeps it exact: {value}"
        );
    }
}

/// No line of `log` starts as a record that `forged` would forge (`info: 0x570: …` under the
/// journal's format, `ufm-pkeyd: info: 0x570: …` under the plain one, or the text alone).
fn assert_not_forged(log: &str, forged: &str) {
    let line = forged.trim_start_matches("info: ");
    assert!(
        !log.lines().any(|l| l.starts_with(forged)
            || l.starts_with(line)
            || l.starts_with(&format!("ufm-pkeyd: {forged}"))),
        "a forged record:\n{log}"
    );
}

#[test]
fn an_etcd_key_with_a_newline_cannot_forge_a_log_line_or_an_output_line() {
    let rig = Rig::new(Api::V3);
    let forged = "info: 0x570: delete partition";
    rig.put_raw(&format!("0x30\n{forged}"), &json_value(&[host(1)], &[]));
    let notify = Notify::new();
    let mut daemon = rig.monitor(&["--poll-interval", "60"], &notify);
    daemon.wait_for_stderr("invalid entry", PROPAGATION);
    let run = daemon.stop();
    assert_not_forged(&run.stderr, forged);
    assert!(
        run.stderr.contains(&format!("0x30\\n{forged}")),
        "{}",
        run.stderr
    );

    let list = Pkeyd::new(&[
        "etcd",
        "--no-pcocc",
        "--etcd-endpoints",
        &rig.etcd.endpoint(),
        "--list",
        "--prefix",
        PKEYS_PREFIX,
    ])
    .run();
    list.assert_ok();
    assert_eq!(
        list.stdout,
        format!("{PKEYS_PREFIX}0x30\\n{forged}\n"),
        "one line per key"
    );
}

#[test]
fn a_ufm_error_text_with_a_newline_cannot_forge_a_log_line() {
    let rig = Rig::new(Api::V3);
    let forged = "info: 0x570: delete partition";
    rig.sim.add_faults(json!([
        {"method": "WRITE", "status": 400, "body": {"error": format!("bad request\n{forged}")}},
    ]));
    rig.put("0x10", &[host(1)], &[]);
    let notify = Notify::new();
    let mut daemon = rig.monitor(&["--poll-interval", "60"], &notify);
    daemon.wait_for_stderr("0x10: create with 1 GUID", PROPAGATION);
    daemon.wait_for_stderr("bad request", PROPAGATION);
    let run = daemon.stop();
    assert_not_forged(&run.stderr, forged);
    assert!(
        run.stderr.contains(&format!("bad request\\n{forged}")),
        "{}",
        run.stderr
    );
}

// ------------------------------------------------------------------------------------------
// 5. Secrets and core dumps
// ------------------------------------------------------------------------------------------

#[test]
fn the_daemon_keeps_its_memory_out_of_core_dumps() {
    let rig = Rig::new(Api::V3);
    rig.put("0x10", &[host(1)], &[]);
    // The daemon runs as nobody: the kernel gives the /proc files of a process that may not be
    // dumped to root, which shows the flag from outside.
    let home = TempDir::new("nobody-home");
    std::os::unix::fs::chown(home.path(), Some(NOBODY), Some(NOBODY)).expect("chown");
    let password = home.write("ufm-password", &format!("{}\n", rig.sim.password()));
    std::os::unix::fs::chown(&password, Some(NOBODY), Some(NOBODY)).expect("chown");
    std::fs::set_permissions(&password, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let state = home.join("state.json");
    let mut daemon = rig
        .pkeyd(
            "monitor",
            &[
                "--ufm-password-file",
                &path_text(&password),
                "--state-file",
                &path_text(&state),
            ],
        )
        .through(&[
            "setpriv",
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
        ])
        .spawn();
    daemon.wait_for_stderr("connected", PROPAGATION);
    let proc_status = PathBuf::from(format!("/proc/{}/status", daemon.pid()));
    let text = std::fs::read_to_string(&proc_status).expect("/proc/PID/status");
    assert!(
        text.lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("65534")),
        "the daemon runs as nobody:\n{text}"
    );
    let owner = std::fs::metadata(&proc_status).expect("stat").uid();
    assert_eq!(
        owner, 0,
        "the /proc files of a dumpable process belong to its user; those of one marked not dumpable (PR_SET_DUMPABLE 0) to root"
    );
    daemon.stop().assert_ok();
}
