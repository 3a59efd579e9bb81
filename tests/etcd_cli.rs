//! `ufm-pkeyd etcd …` (and `config`) as an operator uses them, against real etcd: reading and
//! writing keys through v3 and v2, cross-checked with the harness's own client; endpoints and
//! fail-over; passwords and TLS; and settings layered from pcocc's files, the tool's own file
//! and systemd credentials.

mod support;

use std::io::ErrorKind;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use support::*;

/// A pkey entry as the old tool's manual writes it.
const KEY: &str = "/pcocc/global/opensm/pkeys/0x3000";
const VALUE: &str = r#"{"host_guids": ["0x043f720300f55176"], "vf_guids": ["0xc0cc300000000000"]}"#;
/// A pkey entry as pcocc writes it: a Python dict literal.
const PCOCC_KEY: &str = "/pcocc/global/opensm/pkeys/0x2000";
const PCOCC_VALUE: &str = "{'host_guids': ['0x0002c903000e4c31'], 'vf_guids': []}";

/// `ufm-pkeyd etcd --no-pcocc --etcd-endpoints <etcd>` followed by `args`.
fn etcd_cmd(etcd: &Etcd, args: &[&str]) -> Pkeyd {
    Pkeyd::new(&["etcd", "--no-pcocc", "--etcd-endpoints", &etcd.endpoint()]).args(args)
}

/// Runs [`etcd_cmd`].
fn tool(etcd: &Etcd, args: &[&str]) -> Run {
    etcd_cmd(etcd, args).run()
}

/// `--etcd-user root --etcd-password-file <root's file>`.
fn as_root(etcd: &Etcd) -> Vec<String> {
    vec![
        "--etcd-user".into(),
        ROOT_USER.into(),
        "--etcd-password-file".into(),
        path_text(etcd.root_password_file()),
    ]
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The lines of stdout.
fn lines(run: &Run) -> Vec<&str> {
    run.stdout.lines().collect()
}

/// An operator's session through `api` (`--etcd-api v3|v2`): put, get, list, delete, with the
/// harness's own `read`/`write` for that API as the independent other side.
fn put_get_list_delete_session(
    etcd: &Etcd,
    api: &str,
    read: impl Fn(&str) -> Option<String>,
    write: impl Fn(&str, &str),
) {
    let run = |args: &[&str]| tool(etcd, &[&["--etcd-api", api], args].concat());

    run(&["--put", KEY, "--value", VALUE]).assert_ok();
    assert_eq!(
        read(KEY).as_deref(),
        Some(VALUE),
        "an independent reader sees the put"
    );
    let get = run(&["--get", KEY]);
    get.assert_ok();
    assert_eq!(get.stdout, format!("{VALUE}\n"));
    let get = run(&["--get", KEY, "--json"]);
    get.assert_ok();
    let value: Value = serde_json::from_str(&get.stdout).expect("--get --json prints JSON");
    assert_eq!(
        (value["key"].as_str(), value["value"].as_str()),
        (Some(KEY), Some(VALUE))
    );

    write(PCOCC_KEY, PCOCC_VALUE);
    write("/other/key", "x");
    let get = run(&["--get", PCOCC_KEY]);
    get.assert_ok();
    assert_eq!(
        get.stdout,
        format!("{PCOCC_VALUE}\n"),
        "pcocc's value, byte for byte"
    );

    let list = run(&["--list", "--prefix", "/pcocc/global/opensm/pkeys/"]);
    list.assert_ok();
    assert_eq!(
        lines(&list),
        [PCOCC_KEY, KEY],
        "only keys under the prefix, sorted"
    );
    let list = run(&["--list"]);
    list.assert_ok();
    assert_eq!(lines(&list), ["/other/key", PCOCC_KEY, KEY]);

    run(&["--delete", KEY]).assert_ok();
    assert_eq!(read(KEY), None);
    let gone = run(&["--get", KEY]);
    gone.assert_code(3);
    assert!(gone.stderr.contains("not found"), "{}", gone.stderr);
    run(&["--delete", KEY]).assert_code(3);
    assert_eq!(
        read(PCOCC_KEY).as_deref(),
        Some(PCOCC_VALUE),
        "other keys stay"
    );
}

#[test]
fn v3_put_get_list_delete_agree_with_an_independent_client() {
    let etcd = Etcd::plain();
    put_get_list_delete_session(&etcd, "v3", |k| etcd.get_v3(k), |k, v| etcd.put_v3(k, v));
}

#[test]
fn v2_put_get_list_delete_agree_with_an_independent_client() {
    let etcd = Etcd::with_v2();
    put_get_list_delete_session(&etcd, "v2", |k| etcd.get_v2(k), |k, v| etcd.put_v2(k, v));
}

#[test]
fn v3_put_with_ttl_attaches_the_key_to_a_lease() {
    let etcd = Etcd::plain();
    tool(
        &etcd,
        &[
            "--put",
            "/temp/test-key",
            "--value",
            "temporary value",
            "--ttl",
            "3600",
        ],
    )
    .assert_ok();
    let range = etcd.v3("kv/range", json!({"key": B64.encode("/temp/test-key")}));
    let lease = range["kvs"][0]["lease"]
        .as_str()
        .expect("the key has a lease")
        .to_string();
    let ttl = etcd.v3("lease/timetolive", json!({"ID": lease}))["TTL"]
        .as_str()
        .and_then(|t| t.parse::<i64>().ok())
        .expect("the lease has a TTL");
    assert!((1..=3600).contains(&ttl), "TTL {ttl}");

    tool(&etcd, &["--put", "/temp/forever", "--value", "v"]).assert_ok();
    let range = etcd.v3("kv/range", json!({"key": B64.encode("/temp/forever")}));
    assert_eq!(
        range["kvs"][0].get("lease"),
        None,
        "no --ttl, no lease: {range}"
    );
}

#[test]
fn v2_put_with_ttl_sets_the_node_ttl() {
    let etcd = Etcd::with_v2();
    tool(
        &etcd,
        &[
            "--etcd-api",
            "v2",
            "--put",
            "/temp/test-key",
            "--value",
            "t",
            "--ttl",
            "3600",
        ],
    )
    .assert_ok();
    let node = etcd.v2(&[], "/temp/test-key").json()["node"].clone();
    let ttl = node["ttl"].as_i64().expect("the node has a ttl");
    assert!((1..=3600).contains(&ttl), "ttl {ttl}: {node}");
    assert!(node["expiration"].is_string(), "{node}");
}

#[test]
fn check_prints_the_etcd_version_through_either_api() {
    let etcd = Etcd::with_v2();
    for api in ["v3", "v2"] {
        let run = tool(&etcd, &["--etcd-api", api, "--check"]);
        run.assert_ok();
        assert!(
            run.stdout.starts_with("etcd 3.4.") && run.stdout.contains("connected"),
            "{api}: {}",
            run.stdout
        );
        assert!(
            run.stdout.contains(&format!("the {api} keyspace")),
            "{}",
            run.stdout
        );
    }
}

#[test]
fn v3_listing_of_data_that_only_v2_has_suggests_etcd_api_v2() {
    let etcd = Etcd::with_v2();
    etcd.put_v2(PCOCC_KEY, PCOCC_VALUE);
    let run = tool(
        &etcd,
        &["--etcd-api", "v3", "--list", "--prefix", "/pcocc/"],
    );
    run.assert_ok();
    assert_eq!(run.stdout, "", "the v3 keyspace is empty");
    assert!(run.stderr.contains("--etcd-api v2"), "{}", run.stderr);
    // Without --etcd-api, the keyspace holding pcocc's keys is found.
    let run = tool(&etcd, &["--list", "--prefix", "/pcocc/"]);
    run.assert_ok();
    assert_eq!(lines(&run), [PCOCC_KEY], "{run:?}");
}

#[test]
fn list_sorts_pkey_names_by_number_as_ufm_list_does() {
    let etcd = Etcd::plain();
    let prefix = "/pcocc/global/opensm/pkeys/";
    for name in ["0x200e", "0x3", "0x1a", "0x7ffe", "note"] {
        etcd.put_v3(&format!("{prefix}{name}"), VALUE);
    }
    etcd.put_v3("/pcocc/global/other", "x");
    let run = tool(
        &etcd,
        &["--etcd-api", "v3", "--list", "--prefix", "/pcocc/"],
    );
    run.assert_ok();
    let names: Vec<String> = [
        "/pcocc/global/other",
        "/pcocc/global/opensm/pkeys/note",
        "/pcocc/global/opensm/pkeys/0x3",
        "/pcocc/global/opensm/pkeys/0x1a",
        "/pcocc/global/opensm/pkeys/0x200e",
        "/pcocc/global/opensm/pkeys/0x7ffe",
    ]
    .map(String::from)
    .into();
    assert_eq!(lines(&run), names);
    let run = tool(
        &etcd,
        &["--etcd-api", "v3", "--list", "--prefix", prefix, "--json"],
    );
    let listed: Vec<Value> = serde_json::from_str(&run.stdout).expect("--json");
    let keys: Vec<&str> = listed.iter().filter_map(|kv| kv["key"].as_str()).collect();
    assert_eq!(keys, names[1..]);
}

#[test]
fn etcd_host_and_port_flags_select_the_endpoint() {
    let etcd = Etcd::plain();
    etcd.put_v3(KEY, VALUE);
    let port = etcd
        .host_port()
        .rsplit(':')
        .next()
        .expect("a port")
        .to_string();
    let run = pkeyd(&[
        "etcd",
        "--no-pcocc",
        "--etcd-host",
        "127.0.0.1",
        "--etcd-port",
        &port,
        "--get",
        KEY,
    ]);
    run.assert_ok();
    assert_eq!(run.stdout, format!("{VALUE}\n"));
}

#[test]
fn dead_first_endpoint_fails_over_to_the_next_and_all_dead_exits_1() {
    let etcd = Etcd::plain();
    etcd.put_v3(KEY, VALUE);
    let endpoints = format!("{},{}", dead_endpoint(), etcd.endpoint());
    let run = pkeyd(&[
        "etcd",
        "--no-pcocc",
        "--etcd-endpoints",
        &endpoints,
        "--get",
        KEY,
    ]);
    run.assert_ok();
    assert_eq!(run.stdout, format!("{VALUE}\n"));

    let all_dead = format!("{},{}", dead_endpoint(), dead_endpoint());
    let run = pkeyd(&[
        "etcd",
        "--no-pcocc",
        "--etcd-endpoints",
        &all_dead,
        "--get",
        KEY,
    ]);
    run.assert_code(1);
    assert!(
        run.stderr.contains("no etcd endpoint answered"),
        "{}",
        run.stderr
    );
}

/// etcd with RBAC and v2 auth, as pcocc's production guide sets it up.
fn auth_etcd() -> Etcd {
    Etcd::start(EtcdOptions {
        v2: true,
        auth: Some(EtcdAuth::default()),
        ..EtcdOptions::default()
    })
}

#[test]
fn root_with_a_password_file_reads_and_writes_through_v3_and_v2() {
    let etcd = auth_etcd();
    let root = as_root(&etcd);
    for api in ["v3", "v2"] {
        let read = |key: &str| match api {
            "v3" => etcd.get_v3(key),
            _ => etcd.get_v2(key),
        };
        let run = |args: &[&str]| {
            etcd_cmd(&etcd, &strs(&root))
                .args(&["--etcd-api", api])
                .args(args)
                .run()
        };
        run(&["--put", KEY, "--value", api]).assert_ok();
        assert_eq!(read(KEY).as_deref(), Some(api));
        let get = run(&["--get", KEY]);
        get.assert_ok();
        assert_eq!(get.stdout, format!("{api}\n"));
        let list = run(&["--list", "--prefix", "/pcocc/"]);
        list.assert_ok();
        assert_eq!(lines(&list), [KEY]);
    }
}

/// `--list` through `api` as root with `password` given by flag, then `extra` args.
fn list_as_root_with(etcd: &Etcd, api: &str, password: &str, extra: &[&str]) -> Pkeyd {
    etcd_cmd(
        etcd,
        &[
            "--etcd-api",
            api,
            "--etcd-user",
            ROOT_USER,
            "--etcd-password",
            password,
            "--list",
        ],
    )
    .args(extra)
}

#[test]
fn wrong_etcd_password_fails_with_exit_5_and_no_secret() {
    let etcd = auth_etcd();
    let wrong = "Wr0ng-Passw0rd";
    let encoded = B64.encode(format!("{ROOT_USER}:{wrong}"));
    for api in ["v3", "v2"] {
        for extra in [&[][..], &["--debug"][..]] {
            let run = list_as_root_with(&etcd, api, wrong, extra).run();
            run.assert_code(5);
            assert!(
                run.stderr.contains("check --etcd-user and the password"),
                "{api} {extra:?}: the message names the cause: {}",
                run.stderr
            );
            assert!(
                !run.reveals(wrong) && !run.reveals(&encoded),
                "{api} {extra:?}: {run:?}"
            );
        }
    }
}

#[test]
fn wrong_etcd_password_is_not_in_trace_logs() {
    let etcd = auth_etcd();
    let wrong = "Wr0ng-Passw0rd";
    for api in ["v3", "v2"] {
        let run = list_as_root_with(&etcd, api, wrong, &["--debug"])
            .env("RUST_LOG", "trace")
            .run();
        run.assert_code(5);
        // The control: trace logging was on, and a request carrying the password went out.
        assert!(
            run.stderr.contains("trace: etcd request headers:"),
            "{api}: no trace output, so this test would prove nothing:\n{}",
            run.stderr
        );
        assert!(
            !run.reveals(wrong),
            "{api}: the password can be read from the log"
        );
        assert!(
            !run.reveals(&B64.encode(format!("{ROOT_USER}:{wrong}"))),
            "{api}: the Authorization header can be read from the log"
        );
    }
}

#[test]
fn etcd_user_without_a_password_exits_2_naming_the_fix() {
    let etcd = auth_etcd();
    let run = tool(&etcd, &["--etcd-user", ROOT_USER, "--list"]);
    run.assert_code(2);
    assert!(
        run.stderr.contains("--etcd-password-file"),
        "{}",
        run.stderr
    );
}

#[test]
fn prompt_password_without_a_terminal_exits_2() {
    let etcd = auth_etcd();
    let run = etcd_cmd(
        &etcd,
        &["--etcd-user", ROOT_USER, "--etcd-prompt-password", "--list"],
    )
    .without_terminal()
    .timeout(Duration::from_secs(15))
    .run();
    run.assert_code(2);
    assert!(run.stderr.contains("needs a terminal"), "{}", run.stderr);
}

/// etcd over https that requires a client certificate.
fn tls_etcd() -> Etcd {
    Etcd::start(EtcdOptions {
        tls: true,
        ..EtcdOptions::default()
    })
}

#[test]
fn tls_with_the_client_certificate_works_and_without_it_fails_with_exit_1() {
    let etcd = tls_etcd();
    let tls = etcd.tls().expect("tls files");
    let ca = ["--etcd-ca-cert".to_string(), path_text(&tls.ca)];
    let cert = [
        "--etcd-cert-file".to_string(),
        path_text(&tls.client_cert),
        "--etcd-key-file".to_string(),
        path_text(&tls.client_key),
    ];
    etcd_cmd(&etcd, &strs(&ca))
        .args(&strs(&cert))
        .args(&["--put", KEY, "--value", VALUE])
        .run()
        .assert_ok();
    assert_eq!(etcd.get_v3(KEY).as_deref(), Some(VALUE));

    let run = etcd_cmd(&etcd, &strs(&ca)).args(&["--get", KEY]).run();
    run.assert_code(1);
    assert!(run.stderr.contains(&etcd.endpoint()), "{}", run.stderr);
}

#[test]
fn client_key_that_does_not_match_the_certificate_exits_2_before_any_request() {
    let tls_dir = TempDir::new("tls");
    let tls = TlsFiles::generate(tls_dir.path());
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a listener");
    let endpoint = format!(
        "https://{}",
        listener.local_addr().expect("listener address")
    );
    let run = pkeyd(&[
        "etcd",
        "--no-pcocc",
        "--etcd-endpoints",
        &endpoint,
        "--etcd-ca-cert",
        &path_text(&tls.ca),
        "--etcd-cert-file",
        &path_text(&tls.client_cert),
        "--etcd-key-file",
        &path_text(&tls.other_key),
        "--list",
    ]);
    run.assert_code(2);
    assert!(
        run.stderr.contains(&path_text(&tls.other_key)),
        "{}",
        run.stderr
    );
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    let connection = listener.accept().map(|_| ()).map_err(|e| e.kind());
    assert_eq!(connection, Err(ErrorKind::WouldBlock), "nothing connected");
}

#[test]
fn unreachable_endpoint_exits_1() {
    let run = pkeyd(&[
        "etcd",
        "--no-pcocc",
        "--etcd-endpoints",
        &dead_endpoint(),
        "--list",
    ]);
    run.assert_code(1);
    assert!(run.stderr.contains("cannot reach etcd"), "{}", run.stderr);
}

#[test]
fn endpoint_that_never_answers_fails_with_exit_1_after_the_timeout() {
    // A dead peer: the kernel completes the handshake, nobody ever reads or answers.
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a listener");
    let endpoint = format!(
        "http://{}",
        listener.local_addr().expect("listener address")
    );
    let start = Instant::now();
    let run = Pkeyd::new(&[
        "etcd",
        "--no-pcocc",
        "--etcd-endpoints",
        &endpoint,
        "--etcd-timeout",
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
    drop(listener);
}

#[test]
fn malformed_command_lines_exit_2() {
    for (args, needle) in [
        (&["--put", KEY][..], "--value"),
        (&["--list", "--delete", KEY][..], "exactly one"),
        (&["--list", "--no-such-flag"][..], "--no-such-flag"),
    ] {
        let run = pkeyd(&[&["etcd", "--no-pcocc"], args].concat());
        run.assert_code(2);
        assert!(run.stderr.contains(needle), "{args:?}: {}", run.stderr);
    }
}

/// A pcocc configuration directory for `etcd`: batch.yaml with password auth, and
/// etcd-password holding root's password.
fn pcocc_dir(etcd: &Etcd) -> TempDir {
    let dir = TempDir::new("pcocc");
    let port = etcd
        .host_port()
        .rsplit(':')
        .next()
        .expect("a port")
        .to_string();
    dir.write(
        "batch.yaml",
        &format!(
            "type: slurm\nsettings:\n  etcd-servers: ['127.0.0.1']\n  etcd-client-port: {port}\n  etcd-protocol: http\n  etcd-auth-type: password\n"
        ),
    );
    dir.write("etcd-password", &format!("{}\n", etcd.root_password()));
    dir
}

#[test]
fn pcocc_batch_yaml_selects_its_etcd_with_v2_and_root() {
    let etcd = auth_etcd();
    etcd.put_v2(PCOCC_KEY, PCOCC_VALUE);
    let dir = pcocc_dir(&etcd);
    let run = pkeyd(&[
        "etcd",
        "--pcocc-dir",
        &path_text(dir.path()),
        "--list",
        "--prefix",
        "/pcocc/",
    ]);
    run.assert_ok();
    assert_eq!(lines(&run), [PCOCC_KEY]);
}

#[test]
fn config_says_where_each_value_comes_from_and_never_prints_a_password() {
    let etcd = auth_etcd();
    let dir = pcocc_dir(&etcd);
    let run = pkeyd(&["config", "--pcocc-dir", &path_text(dir.path()), "--json"]);
    run.assert_ok();
    let config: Value = serde_json::from_str(&run.stdout).expect("config --json prints JSON");
    let key = |name: &str| &config["keys"][name];
    assert_eq!(key("etcd-api")["value"], "v2");
    let source = key("etcd-api")["source"].as_str().expect("a source");
    assert!(
        source.starts_with("pcocc") && source.ends_with("batch.yaml"),
        "{source}"
    );
    assert_eq!(key("etcd-user")["value"], ROOT_USER);
    assert_eq!(config["etcd"]["endpoints"], json!([etcd.endpoint()]));
    assert!(!run.reveals(etcd.root_password()), "{run:?}");

    let run = pkeyd(&[
        "config",
        "--pcocc-dir",
        &path_text(dir.path()),
        "--etcd-password",
        "flag-secret-4711",
    ]);
    run.assert_ok();
    let line = run
        .stdout
        .lines()
        .find(|l| l.starts_with("etcd-password "))
        .expect("an etcd-password line");
    assert!(line.contains("<redacted>"), "{line}");
    assert!(!run.reveals("flag-secret-4711"), "{run:?}");
    assert!(!run.reveals(etcd.root_password()), "{run:?}");
}

#[test]
fn unknown_key_in_the_config_file_exits_2_naming_it() {
    let dir = TempDir::new("config");
    let file = dir.write(
        "ufm-pkeyd.yaml",
        "etcd-endpoints: [127.0.0.1]\netcd-endpoint: x\n",
    );
    let run = pkeyd(&[
        "etcd",
        "--no-pcocc",
        "--config",
        &path_text(&file),
        "--list",
    ]);
    run.assert_code(2);
    assert!(run.stderr.contains("\"etcd-endpoint\""), "{}", run.stderr);
}

#[test]
fn systemd_credential_supplies_the_etcd_password() {
    let etcd = auth_etcd();
    etcd.put_v3(KEY, VALUE);
    let credentials = TempDir::new("credentials");
    credentials.write("etcd-password", etcd.root_password());
    let run = etcd_cmd(&etcd, &["--etcd-user", ROOT_USER, "--get", KEY])
        .env("CREDENTIALS_DIRECTORY", &path_text(credentials.path()))
        .run();
    run.assert_ok();
    assert_eq!(run.stdout, format!("{VALUE}\n"));
}

#[test]
fn tls_with_client_certificate_and_password_works_through_v2_and_v3() {
    // pcocc's production shape: https with client certificates, the v2 API, user root.
    let etcd = Etcd::start(EtcdOptions {
        tls: true,
        v2: true,
        auth: Some(EtcdAuth::default()),
        ..EtcdOptions::default()
    });
    let tls = etcd.tls().expect("tls files");
    let connection: Vec<String> = [
        "--etcd-ca-cert".to_string(),
        path_text(&tls.ca),
        "--etcd-cert-file".to_string(),
        path_text(&tls.client_cert),
        "--etcd-key-file".to_string(),
        path_text(&tls.client_key),
    ]
    .into_iter()
    .chain(as_root(&etcd))
    .collect();
    for api in ["v2", "v3"] {
        etcd_cmd(&etcd, &strs(&connection))
            .args(&["--etcd-api", api, "--put", KEY, "--value", VALUE])
            .run()
            .assert_ok();
        let run = etcd_cmd(&etcd, &strs(&connection))
            .args(&["--etcd-api", api, "--get", KEY])
            .run();
        run.assert_ok();
        assert_eq!(run.stdout.trim(), VALUE, "{api}");
    }
    assert_eq!(etcd.get_v2(KEY).as_deref(), Some(VALUE));
    assert_eq!(etcd.get_v3(KEY).as_deref(), Some(VALUE));
}
