//! `ufm-pkeyd ufm …` as an operator uses it, against the UFM simulator: listing, reading,
//! creating and deleting PKeys, adding and removing GUIDs, the UFM quirks the client must
//! handle, authentication failures that must not leak the secret, and unreachable hosts.

mod support;

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use support::*;

const G1: &str = "0002c903000e0b72";
const G2: &str = "0002c903000e0b73";
const G3: &str = "0002c903000e0b74";

/// `ufm-pkeyd ufm --no-pcocc` logged in to `sim` as its user with its password file, trusting
/// its CA on https and with `--http` on http, followed by `args`.
fn ufm(sim: &UfmSim, args: &[&str]) -> Run {
    let password_file = path_text(sim.password_file());
    let mut all = vec![
        "ufm",
        "--no-pcocc",
        "--ufm-host",
        &sim.host_port(),
        "--ufm-user",
        sim.user(),
        "--ufm-password-file",
        &password_file,
    ]
    .into_iter()
    .map(String::from)
    .collect::<Vec<_>>();
    match sim.tls() {
        Some(tls) => all.extend(["--ufm-ca-cert".to_string(), path_text(&tls.ca)]),
        None => all.push("--http".to_string()),
    }
    all.extend(args.iter().map(|a| a.to_string()));
    pkeyd(&all.iter().map(String::as_str).collect::<Vec<_>>())
}

/// The partition `pkey` as the simulator holds it (`None` when it does not exist).
fn partition(sim: &UfmSim, pkey: &str) -> Option<Value> {
    sim.state().get(pkey).cloned()
}

/// The members of `pkey` in the simulator as (guid, membership, index0), sorted by GUID.
fn members(sim: &UfmSim, pkey: &str) -> Vec<(String, String, bool)> {
    let partition = partition(sim, pkey).unwrap_or_else(|| panic!("{pkey} missing in UFM"));
    let mut members: Vec<_> = partition["guids"]
        .as_array()
        .expect("guids is an array")
        .iter()
        .map(|m| {
            (
                m["guid"].as_str().expect("guid").to_string(),
                m["membership"].as_str().expect("membership").to_string(),
                m["index0"].as_bool().expect("index0"),
            )
        })
        .collect();
    members.sort();
    members
}

fn member(guid: &str, membership: &str, index0: bool) -> (String, String, bool) {
    (guid.to_string(), membership.to_string(), index0)
}

/// A seeded member.
fn seeded(guid: &str, membership: &str) -> Value {
    json!({"guid": guid, "membership": membership, "index0": true})
}

/// How many requests of `key` (`"DELETE /resources/pkeys/{pkey}/guids"`) the simulator saw.
fn requests(sim: &UfmSim, key: &str) -> u64 {
    sim.stats()["requests"][key].as_u64().unwrap_or(0)
}

#[test]
fn list_shows_every_partition_with_its_members_as_a_table_and_as_json() {
    let sim = UfmSim::https();
    sim.seed(json!({
        "0x2fb": {"guids": [seeded(G1, "full")], "ip_over_ib": true},
        "0x10": {"guids": [seeded(G2, "limited"), seeded(G3, "full")], "ip_over_ib": false},
    }));

    let table = ufm(&sim, &["--list"]);
    table.assert_ok();
    let rows: Vec<Vec<&str>> = table
        .stdout
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        [
            vec!["0x10", "api_pkey_0x10", "no", "2"],
            vec!["0x2fb", "api_pkey_0x2fb", "yes", "1"],
            vec!["0x7fff", "management", "yes", "0"],
        ],
        "sorted by PKey, with the member counts only ?guids_data=true gives:\n{}",
        table.stdout
    );

    let run = ufm(&sim, &["--list", "--json"]);
    run.assert_ok();
    let list: Value = serde_json::from_str(&run.stdout).expect("--list --json prints JSON");
    let p10 = list
        .as_array()
        .expect("a JSON array")
        .iter()
        .find(|p| p["pkey"] == "0x10")
        .expect("0x10 is listed");
    assert_eq!(p10["ip_over_ib"], false);
    assert_eq!(
        p10["guids"],
        json!([
            {"guid": G2, "membership": "limited", "index0": true},
            {"guid": G3, "membership": "full", "index0": true},
        ])
    );
}

/// Runs `jq -c PROGRAM` on `input` and parses what it prints.
fn jq(program: &str, input: &str) -> Value {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let mut child = Command::new("jq")
        .args(["-c", program])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run jq (make test-deps installs it)");
    child
        .stdin
        .take()
        .expect("jq's stdin")
        .write_all(input.as_bytes())
        .expect("feed jq");
    let output = child.wait_with_output().expect("wait for jq");
    assert!(
        output.status.success(),
        "jq {program:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("jq prints JSON")
}

/// README.md and ufm-pkeyd(8) tell scripts written for UFM's own answer (an object keyed by
/// PKey, which the older tool printed) how to read `ufm --list --json` with jq: those programs
/// give what UFM's answer gave.
#[test]
fn the_documented_jq_reads_list_json_as_scripts_read_ufms_own_answer() {
    const ONE_PKEY: &str = r#".[] | select(.pkey == "0x5000") | .guids"#;
    const UFM_SHAPE: &str =
        "map(select(.guids) | {(.pkey): {partition: .name, ip_over_ib, guids}}) | add";
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for doc in ["README.md", "man/ufm-pkeyd.8"] {
        let text = std::fs::read_to_string(root.join(doc)).expect("read the doc");
        for program in [ONE_PKEY, UFM_SHAPE] {
            assert!(
                text.replace("\\-", "-")
                    .contains(&format!("jq '{program}'")),
                "{doc} no longer gives `jq '{program}'`: update this test with it"
            );
        }
    }
    let sim = UfmSim::http();
    sim.seed(json!({
        "0x5000": {"guids": [seeded(G1, "full"), seeded(G2, "limited")], "ip_over_ib": true},
        "0x10": {"guids": [seeded(G3, "full")], "ip_over_ib": false},
    }));
    let run = ufm(&sim, &["--list", "--json"]);
    run.assert_ok();
    let reply = sim.api("GET", "/ufmRest/resources/pkeys?guids_data=true", None);
    assert_eq!(reply.status, 200, "{reply:?}");
    let mut ufm_answer: Value = serde_json::from_str(&reply.body).expect("UFM answers JSON");

    assert_eq!(
        jq(ONE_PKEY, &run.stdout),
        jq(r#"."0x5000".guids"#, &reply.body)
    );
    // UFM gives its default partition's own membership and index0 too; nothing else differs.
    if let Some(default) = ufm_answer["0x7fff"].as_object_mut() {
        default.remove("membership");
        default.remove("index0");
    }
    assert_eq!(jq(UFM_SHAPE, &run.stdout), ufm_answer);
}

#[test]
fn get_pkey_shows_the_partition_with_its_members() {
    let sim = UfmSim::http();
    sim.seed(json!({"0x5000": {"guids": [seeded(G1, "full"), seeded(G2, "limited")]}}));

    let run = ufm(&sim, &["--get-pkey", "0x5000"]);
    run.assert_ok();
    assert!(run.stdout.contains("api_pkey_0x5000"), "{}", run.stdout);
    let guid_lines: Vec<Vec<&str>> = run
        .stdout
        .lines()
        .filter(|l| l.contains("0002c903"))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        guid_lines,
        [vec![G1, "full", "index0"], vec![G2, "limited", "index0"]]
    );

    let run = ufm(&sim, &["--get-pkey", "0x5000", "--json"]);
    run.assert_ok();
    let value: Value = serde_json::from_str(&run.stdout).expect("--json prints JSON");
    assert_eq!(value["pkey"], "0x5000");
    assert_eq!(value["guids"][1]["membership"], "limited");
}

#[test]
fn missing_pkey_exits_3_whether_ufm_answers_an_empty_object_or_404() {
    let sim = UfmSim::http();
    for mode in ["empty200", "404"] {
        sim.set_mode(json!({"missing_pkey": mode}));
        assert_eq!(sim.config()["missing_pkey"], mode);
        let run = ufm(&sim, &["--get-pkey", "0x123"]);
        run.assert_code(3);
        assert!(
            run.stderr.contains("0x123 not found"),
            "mode {mode}: {}",
            run.stderr
        );
        assert_eq!(run.stdout, "", "mode {mode}: nothing on stdout");
    }
}

#[test]
fn create_pkey_makes_an_empty_partition_and_creating_it_again_fails_with_exit_1() {
    let sim = UfmSim::https();
    let run = ufm(&sim, &["--create-pkey", "0x6000"]);
    run.assert_ok();
    assert!(run.stdout.contains("created PKey 0x6000"), "{}", run.stdout);
    assert_eq!(members(&sim, "0x6000"), []);

    let again = ufm(&sim, &["--create-pkey", "0x6000"]);
    again.assert_code(1);
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);

    // With GUIDs too: nothing is added to the existing partition.
    let with_guids = ufm(&sim, &["--create-pkey", "0x6000", "--guids", G1]);
    with_guids.assert_code(1);
    assert!(
        with_guids.stderr.contains("already exists"),
        "{}",
        with_guids.stderr
    );
    assert_eq!(members(&sim, "0x6000"), []);
}

#[test]
fn create_pkey_with_guids_creates_the_partition_with_those_members() {
    let sim = UfmSim::http();
    ufm(
        &sim,
        &[
            "--create-pkey",
            "0x6001",
            "--guids",
            &format!("{G1},0x{G2}"),
        ],
    )
    .assert_ok();
    assert_eq!(
        members(&sim, "0x6001"),
        [member(G1, "full", true), member(G2, "full", true)]
    );
}

#[test]
fn delete_pkey_removes_the_partition_and_deleting_a_missing_one_exits_3() {
    let sim = UfmSim::http();
    sim.seed(json!({"0x6000": {"guids": [seeded(G1, "full")]}}));
    ufm(&sim, &["--delete-pkey", "0x6000"]).assert_ok();
    assert_eq!(partition(&sim, "0x6000"), None);

    let again = ufm(&sim, &["--delete-pkey", "0x6000"]);
    again.assert_code(3);
    assert!(
        again.stderr.contains("0x6000 not found"),
        "{}",
        again.stderr
    );
}

#[test]
fn added_guids_get_the_requested_membership_index0_and_ip_over_ib() {
    let sim = UfmSim::https();
    let ipoib = |sim: &UfmSim| partition(sim, "0x5000").expect("0x5000")["ip_over_ib"].clone();
    // The old tool's defaults: full membership, index0 on; a new partition gets UFM's
    // documented IPoIB default (on).
    let run = ufm(
        &sim,
        &["--pkey", "0x5000", "--guids", &format!("{G1},{G2}")],
    );
    run.assert_ok();
    assert!(
        run.stdout
            .contains("ip_over_ib on: UFM's default for a new partition"),
        "{}",
        run.stdout
    );
    assert_eq!(
        members(&sim, "0x5000"),
        [member(G1, "full", true), member(G2, "full", true)]
    );
    assert_eq!(ipoib(&sim), true);

    let run = ufm(
        &sim,
        &[
            "--pkey",
            "0x5000",
            "--guids",
            G3,
            "--membership",
            "limited",
            "--no-index0",
            "--no-ip-over-ib",
        ],
    );
    run.assert_ok();
    assert_eq!(
        members(&sim, "0x5000"),
        [
            member(G1, "full", true),
            member(G2, "full", true),
            member(G3, "limited", false)
        ]
    );
    assert_eq!(ipoib(&sim), false, "--no-ip-over-ib turns it off");

    // Without a flag, the partition's setting is kept, whichever it is.
    let run = ufm(&sim, &["--pkey", "0x5000", "--guids", G1]);
    run.assert_ok();
    assert!(
        run.stdout.contains("ip_over_ib off: kept"),
        "{}",
        run.stdout
    );
    assert_eq!(ipoib(&sim), false);
    ufm(&sim, &["--pkey", "0x5000", "--guids", G1, "--ip-over-ib"]).assert_ok();
    assert_eq!(ipoib(&sim), true, "--ip-over-ib turns it on");
}

#[test]
fn removing_guids_keeps_the_others_and_removing_the_last_one_deletes_the_partition() {
    let sim = UfmSim::http();
    sim.seed(json!({"0x5000": {"guids": [seeded(G1, "full"), seeded(G2, "full")]}}));

    ufm(&sim, &["--pkey", "0x5000", "--guids", G1, "--remove-guids"]).assert_ok();
    assert_eq!(members(&sim, "0x5000"), [member(G2, "full", true)]);

    ufm(&sim, &["--pkey", "0x5000", "--guids", G2, "--remove-guids"]).assert_ok();
    assert_eq!(
        partition(&sim, "0x5000"),
        None,
        "UFM drops an emptied partition"
    );
    ufm(&sim, &["--get-pkey", "0x5000"]).assert_code(3);
}

#[test]
fn removing_more_guids_than_fit_in_one_url_takes_several_requests() {
    let sim = UfmSim::http();
    // 500 GUIDs make a DELETE URL of about 8,500 bytes: UFM's Apache answers 414 past 8,190.
    let guids: Vec<String> = (0..500u64)
        .map(|i| format!("{:016x}", 0x0002_c903_0010_0000 + i))
        .collect();
    let mut seed: Vec<Value> = guids.iter().map(|g| seeded(g, "full")).collect();
    seed.push(seeded(G1, "full"));
    sim.seed(json!({"0x5000": {"guids": seed}}));

    ufm(
        &sim,
        &[
            "--pkey",
            "0x5000",
            "--guids",
            &guids.join(","),
            "--remove-guids",
        ],
    )
    .assert_ok();
    assert_eq!(members(&sim, "0x5000"), [member(G1, "full", true)]);
    let deletes = requests(&sim, "DELETE /resources/pkeys/{pkey}/guids");
    assert!(
        deletes >= 3,
        "expected batches of at most 200 GUIDs, saw {deletes} DELETEs"
    );
}

#[test]
fn check_prints_the_ufm_version() {
    let sim = UfmSim::https();
    let run = ufm(&sim, &["--check"]);
    run.assert_ok();
    assert!(run.stdout.contains("UFM 6.19.1-4"), "{}", run.stdout);
}

#[test]
fn old_tool_flags_with_a_password_on_the_command_line_work_and_warn_about_ps() {
    let sim = UfmSim::start(SimOptions {
        password: "flag-pw-4711".to_string(),
        ..SimOptions::default()
    });
    let run = pkeyd(&[
        "ufm",
        "--no-pcocc",
        "--http",
        "--host",
        &sim.host_port(),
        "--username",
        "admin",
        "--password",
        "flag-pw-4711",
        "--list",
    ]);
    run.assert_ok();
    assert!(run.stdout.contains("0x7fff"), "{}", run.stdout);
    assert!(
        run.stderr.contains("--password shows the password in `ps`"),
        "{}",
        run.stderr
    );
    assert!(!run.reveals("flag-pw-4711"), "{run:?}");
}

#[test]
fn token_file_authenticates_on_the_token_api() {
    let token = "czQYeCfKIeXqlwSqtorunOPysaSp2r";
    let sim = UfmSim::start(SimOptions {
        token: Some(token.to_string()),
        ..SimOptions::default()
    });
    let dir = TempDir::new("ufm-token");
    let token_file = dir.write("ufm-token", &format!("{token}\n"));
    let base = [
        "ufm",
        "--no-pcocc",
        "--http",
        "--ufm-host",
        &sim.host_port(),
        "--ufm-token-file",
        token_file.to_str().expect("utf-8 path"),
    ];
    let check = Pkeyd::new(&base).args(&["--check"]).run();
    check.assert_ok();
    assert!(check.stdout.contains("access token"), "{}", check.stdout);
    Pkeyd::new(&base)
        .args(&["--pkey", "0x5000", "--guids", G1])
        .run()
        .assert_ok();
    assert_eq!(members(&sim, "0x5000"), [member(G1, "full", true)]);
    assert!(!check.reveals(token), "{check:?}");
}

#[test]
fn wrong_token_fails_with_exit_5_and_is_not_shown() {
    let sim = UfmSim::start(SimOptions {
        token: Some("czQYeCfKIeXqlwSqtorunOPysaSp2r".to_string()),
        ..SimOptions::default()
    });
    let dir = TempDir::new("ufm-token");
    let wrong = "WrongTokenWrongTokenWrongToken";
    let token_file = dir.write("ufm-token", wrong);
    let run = pkeyd(&[
        "ufm",
        "--no-pcocc",
        "--http",
        "--ufm-host",
        &sim.host_port(),
        "--ufm-token-file",
        token_file.to_str().expect("utf-8 path"),
        "--list",
        "--debug",
    ]);
    run.assert_code(5);
    assert!(run.stderr.contains("access token"), "{}", run.stderr);
    assert!(!run.reveals(wrong), "{run:?}");
}

/// Runs `--list` as admin with `password` given by flag, then `extra` args, with `env` set.
fn list_with_password(sim: &UfmSim, password: &str, extra: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Pkeyd::new(&[
        "ufm",
        "--no-pcocc",
        "--http",
        "--host",
        &sim.host_port(),
        "--password",
        password,
        "--list",
    ])
    .args(extra);
    for (key, value) in env {
        cmd = cmd.env(key, value);
    }
    cmd.run()
}

#[test]
fn wrong_password_fails_with_exit_5_and_no_secret() {
    let sim = UfmSim::http();
    let wrong = "Wr0ng-Passw0rd";
    let encoded = B64.encode(format!("admin:{wrong}"));
    for extra in [&[][..], &["--debug"][..]] {
        let run = list_with_password(&sim, wrong, extra, &[]);
        run.assert_code(5);
        assert!(
            run.stderr.contains("HTTP 401") && run.stderr.contains("check the user and password"),
            "{extra:?}: {}",
            run.stderr
        );
        assert!(
            !run.reveals(wrong) && !run.reveals(&encoded),
            "{extra:?}: {run:?}"
        );
    }
}

#[test]
fn wrong_password_is_not_in_trace_logs() {
    let sim = UfmSim::http();
    let wrong = "Wr0ng-Passw0rd";
    let run = list_with_password(&sim, wrong, &["--debug"], &[("RUST_LOG", "trace")]);
    run.assert_code(5);
    // The control: trace logging was on, and the request with the password went out.
    assert!(
        run.stderr
            .contains("trace: UFM request headers: accept, authorization"),
        "no trace output, so this test would prove nothing:\n{}",
        run.stderr
    );
    assert!(run.stderr.contains("HTTP 401"), "{}", run.stderr);
    assert!(!run.reveals(wrong), "{run:?}");
    assert!(
        !run.reveals(&B64.encode(format!("admin:{wrong}"))),
        "the Authorization header can be read from the log:\n{}",
        run.stderr
    );
}

#[test]
fn html_login_page_instead_of_401_is_an_authentication_failure() {
    let sim = UfmSim::https();
    sim.set_mode(json!({"auth_failure": "login200"}));
    let run = pkeyd(&[
        "ufm",
        "--no-pcocc",
        "--no-ssl-verify",
        "--ufm-host",
        &sim.host_port(),
        "--ufm-password",
        "Wr0ng-Passw0rd",
        "--list",
    ]);
    run.assert_code(5);
    assert!(run.stderr.contains("HTML page"), "{}", run.stderr);
    assert!(!run.reveals("Wr0ng-Passw0rd"), "{run:?}");
}

#[test]
fn pkey_0x7fff_is_never_written() {
    let sim = UfmSim::http();
    for args in [
        &["--delete-pkey", "0x7fff"][..],
        &["--create-pkey", "0x7fff"][..],
        &["--pkey", "0x7fff", "--guids", G1][..],
        &["--pkey", "0x7FFF", "--guids", G1, "--remove-guids"][..],
    ] {
        let run = ufm(&sim, args);
        run.assert_code(2);
        assert!(
            run.stderr
                .to_lowercase()
                .contains("\"0x7fff\" is ufm's read-only"),
            "{args:?}: {}",
            run.stderr
        );
    }
    assert_eq!(sim.stats()["total"], 0, "nothing was sent to UFM");
    // Reading it is fine.
    ufm(&sim, &["--get-pkey", "0x7fff"]).assert_ok();
}

#[test]
fn invalid_values_exit_2_naming_the_value_before_contacting_ufm() {
    let sim = UfmSim::http();
    for (args, value) in [
        (&["--get-pkey", "0x12345"][..], "0x12345"),
        (&["--pkey", "0x10", "--guids", "123"][..], "\"123\""),
        (
            &["--pkey", "0x10", "--guids", G1, "--membership", "both"][..],
            "both",
        ),
    ] {
        let run = ufm(&sim, args);
        run.assert_code(2);
        assert!(run.stderr.contains(value), "{args:?}: {}", run.stderr);
    }
    assert_eq!(sim.stats()["total"], 0, "nothing was sent to UFM");
}

#[test]
fn unreachable_host_fails_quickly_with_exit_1() {
    let dead = format!("127.0.0.1:{}", free_port());
    let start = Instant::now();
    let run = Pkeyd::new(&[
        "ufm",
        "--no-pcocc",
        "--http",
        "--ufm-host",
        &dead,
        "--ufm-password",
        "x",
        "--list",
    ])
    .timeout(Duration::from_secs(15))
    .run();
    run.assert_code(1);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert!(run.stderr.contains("cannot reach UFM"), "{}", run.stderr);
}

#[test]
fn host_that_never_answers_fails_with_exit_1_after_the_timeout() {
    let sim = UfmSim::http();
    sim.stall_next(5, 30_000);
    let start = Instant::now();
    let run = Pkeyd::new(&[
        "ufm",
        "--no-pcocc",
        "--http",
        "--ufm-host",
        &sim.host_port(),
        "--ufm-password-file",
        &path_text(sim.password_file()),
        "--ufm-timeout",
        "1",
        "--list",
    ])
    .timeout(Duration::from_secs(15))
    .run();
    run.assert_code(1);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert!(
        run.stderr.contains("no answer within 1 s"),
        "{}",
        run.stderr
    );
}

#[test]
fn second_host_is_used_when_the_first_is_down() {
    let sim = UfmSim::http();
    let hosts = format!("127.0.0.1:{},{}", free_port(), sim.host_port());
    let run = pkeyd(&[
        "ufm",
        "--no-pcocc",
        "--http",
        "--ufm-host",
        &hosts,
        "--ufm-password-file",
        &path_text(sim.password_file()),
        "--list",
    ]);
    run.assert_ok();
    assert!(run.stdout.contains("management"), "{}", run.stdout);
    assert!(
        run.stderr.contains("cannot reach UFM"),
        "the dead host is reported: {}",
        run.stderr
    );
}

#[test]
fn https_needs_the_ufm_ca_or_no_ssl_verify() {
    let sim = UfmSim::https();
    let base = [
        "ufm",
        "--no-pcocc",
        "--ufm-host",
        &sim.host_port(),
        "--ufm-password-file",
        &path_text(sim.password_file()),
        "--check",
    ];
    let untrusted = Pkeyd::new(&base).run();
    untrusted.assert_code(1);
    assert!(untrusted.stderr.contains("TLS"), "{}", untrusted.stderr);

    let unverified = Pkeyd::new(&base).args(&["--no-ssl-verify"]).run();
    unverified.assert_ok();
    assert!(
        unverified.stdout.contains("6.19.1-4"),
        "{}",
        unverified.stdout
    );

    let plain = Pkeyd::new(&base).args(&["--http"]).run();
    plain.assert_code(1);
}
