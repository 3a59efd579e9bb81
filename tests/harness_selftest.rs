//! Proves the test harness against real processes: each etcd flavour starts, its data helpers
//! work, auth and TLS are really enforced, a restart keeps data, and the simulator starts and
//! really produces each fault and variant it offers (delays, expiring rules, no-op writes,
//! dropped connections, outages, NVIDIA's mock routes, IPoIB and `last_updated` modes, byte
//! counters), as a client sees them through curl.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

/// A pkey entry as pcocc writes it.
const KEY: &str = "/pcocc/global/opensm/pkeys/0x2000";
/// Its value, a Python dict repr (pcocc stores `str(dict)`).
const VALUE: &str = "{'host_guids': ['0x0002c903000e4c31'], 'vf_guids': ['0xc0cc200000000100']}";

#[test]
fn plain_etcd_stores_v3_data() {
    let etcd = Etcd::plain();
    assert_eq!(etcd.get_v3(KEY), None);
    etcd.put_v3(KEY, VALUE);
    assert_eq!(etcd.get_v3(KEY).as_deref(), Some(VALUE));
    etcd.delete_v3(KEY);
    assert_eq!(etcd.get_v3(KEY), None);
    // Without --enable-v2 the v2 API is not there.
    assert_eq!(etcd.curl(&[&etcd.url("/v2/keys/")]).status, 404);
}

#[test]
fn v2_data_is_form_encoded_like_python_etcd_and_invisible_to_v3() {
    let etcd = Etcd::with_v2();
    etcd.put_v2(KEY, VALUE);
    assert_eq!(etcd.get_v2(KEY).as_deref(), Some(VALUE));
    assert_eq!(etcd.get_v3(KEY), None, "v2 and v3 keyspaces are separate");
    etcd.put_v3("/only/in/v3", "x");
    assert_eq!(etcd.get_v2("/only/in/v3"), None);
    etcd.delete_v2(KEY);
    assert_eq!(etcd.get_v2(KEY), None);
    assert_eq!(
        form_urlencode("{'a': ['0x1']}"),
        "%7B%27a%27%3A+%5B%270x1%27%5D%7D"
    );
}

#[test]
fn auth_etcd_rejects_anonymous_requests_and_accepts_the_users() {
    let etcd = Etcd::start(EtcdOptions {
        v2: true,
        auth: Some(EtcdAuth::default()),
        ..EtcdOptions::default()
    });
    etcd.put_v3(KEY, VALUE);
    etcd.put_v2(KEY, VALUE);
    assert_eq!(etcd.get_v3(KEY).as_deref(), Some(VALUE));
    assert_eq!(etcd.get_v2(KEY).as_deref(), Some(VALUE));

    // v3: no token → 400 "user name is empty"; reader's token reads the prefix only.
    let range = json!({"key": b64(KEY)}).to_string();
    let anonymous = etcd.curl(&["-X", "POST", &etcd.url("/v3/kv/range"), "-d", &range]);
    assert_eq!(anonymous.status, 400, "{anonymous:?}");
    assert!(
        anonymous.body.contains("user name is empty"),
        "{anonymous:?}"
    );
    let login = json!({"name": READER_USER, "password": etcd.reader_password()}).to_string();
    let token = etcd
        .curl(&[
            "-X",
            "POST",
            &etcd.url("/v3/auth/authenticate"),
            "-d",
            &login,
        ])
        .json()["token"]
        .as_str()
        .expect("a token for reader")
        .to_string();
    let auth = format!("Authorization: {token}");
    let read = etcd.curl(&[
        "-H",
        &auth,
        "-X",
        "POST",
        &etcd.url("/v3/kv/range"),
        "-d",
        &range,
    ]);
    assert_eq!(read.status, 200, "{read:?}");
    assert!(read.body.contains(&b64(VALUE)), "{read:?}");
    let outside = json!({"key": b64("/elsewhere")}).to_string();
    let denied = etcd.curl(&[
        "-H",
        &auth,
        "-X",
        "POST",
        &etcd.url("/v3/kv/range"),
        "-d",
        &outside,
    ]);
    assert_eq!(denied.status, 403, "{denied:?}");

    // v2: anonymous → 401 (guest role removed); reader may read below the prefix.
    let key_url = etcd.url(&format!("/v2/keys{KEY}"));
    assert_eq!(etcd.curl(&[&key_url]).status, 401);
    let reader = format!("{READER_USER}:{}", etcd.reader_password());
    let read = etcd.curl(&["-u", &reader, &key_url]);
    assert_eq!(read.status, 200, "{read:?}");
    let write = etcd.curl(&["-u", &reader, "-X", "PUT", &key_url, "-d", "value=x"]);
    assert_eq!(write.status, 401, "reader must not write: {write:?}");

    let file = std::fs::read_to_string(etcd.root_password_file()).expect("root password file");
    assert_eq!(file, format!("{}\n", etcd.root_password()));
}

#[test]
fn tls_etcd_requires_the_client_certificate() {
    let etcd = Etcd::start(EtcdOptions {
        tls: true,
        ..EtcdOptions::default()
    });
    assert!(etcd.endpoint().starts_with("https://127.0.0.1:"));
    etcd.put_v3(KEY, VALUE);
    assert_eq!(etcd.get_v3(KEY).as_deref(), Some(VALUE));

    let tls = etcd.tls().expect("tls files");
    let ca = tls.ca.to_str().expect("utf-8 path");
    let health = etcd.url("/health");
    let no_cert = curl(&["--cacert", ca, &health]);
    assert_eq!(no_cert.status, 0, "the handshake must fail: {no_cert:?}");
    assert_ne!(no_cert.rc, 0);
    let with_cert = etcd.curl(&[&health]);
    assert_eq!(with_cert.status, 200, "{with_cert:?}");
    let cert = tls.client_cert.to_str().expect("utf-8 path");
    let wrong_key = tls.other_key.to_str().expect("utf-8 path");
    let mismatched = curl(&["--cacert", ca, "--cert", cert, "--key", wrong_key, &health]);
    assert_ne!(
        mismatched.rc, 0,
        "a key that does not match the cert: {mismatched:?}"
    );
}

#[test]
fn tls_with_auth_rejects_client_certificates_with_a_common_name() {
    let etcd = Etcd::start(EtcdOptions {
        tls: true,
        auth: Some(EtcdAuth::default()),
        ..EtcdOptions::default()
    });
    etcd.put_v3(KEY, VALUE);
    assert_eq!(etcd.get_v3(KEY).as_deref(), Some(VALUE));
    let tls = etcd.tls().expect("tls files");
    let login = json!({"name": READER_USER, "password": etcd.reader_password()}).to_string();
    let with_cn = curl(&[
        "--cacert",
        tls.ca.to_str().expect("utf-8 path"),
        "--cert",
        tls.client_cert_with_cn.to_str().expect("utf-8 path"),
        "--key",
        tls.client_key.to_str().expect("utf-8 path"),
        "-X",
        "POST",
        &etcd.url("/v3/auth/authenticate"),
        "-d",
        &login,
    ]);
    assert_eq!(with_cn.status, 400, "{with_cn:?}");
    assert!(with_cn.body.contains("CommonName"), "{with_cn:?}");
}

#[test]
fn restart_keeps_data_ports_and_users() {
    let mut etcd = Etcd::start(EtcdOptions {
        v2: true,
        auth: Some(EtcdAuth::default()),
        ..EtcdOptions::default()
    });
    let endpoint = etcd.endpoint();
    etcd.put_v3(KEY, "v3 value");
    etcd.put_v2(KEY, "v2 value");
    etcd.stop();
    assert_eq!(
        etcd.curl(&[&etcd.url("/health")]).rc,
        7,
        "connection refused while stopped"
    );
    etcd.restart();
    assert_eq!(etcd.endpoint(), endpoint);
    assert_eq!(etcd.get_v3(KEY).as_deref(), Some("v3 value"));
    assert_eq!(etcd.get_v2(KEY).as_deref(), Some("v2 value"));
    etcd.kill();
    etcd.restart();
    assert_eq!(etcd.get_v3(KEY).as_deref(), Some("v3 value"));
}

#[test]
fn dead_endpoint_refuses_connections() {
    let reply = curl(&[&format!("{}/health", dead_endpoint())]);
    assert_eq!(reply.rc, 7, "{reply:?}");
}

#[test]
fn pkeyd_runs_in_a_clean_environment() {
    let run = Pkeyd::new(&["--help"]).env("RUST_LOG", "debug").run();
    run.assert_ok();
    assert!(!run.stdout.is_empty(), "--help prints something: {run:?}");
}

#[test]
fn temp_dir_is_removed_on_drop() {
    let dir = TempDir::new("selftest");
    dir.write("file", "x");
    let path = dir.path().to_path_buf();
    drop(dir);
    assert!(!path.exists(), "TempDir removes itself");
}

#[test]
fn simulator_serves_its_control_api_over_http_and_https() {
    for mut sim in [UfmSim::http(), UfmSim::https()] {
        assert_eq!(sim.url(), format!("{}://{}", scheme(&sim), sim.host_port()));
        let version = format!("{}/ufmRest/app/ufm_version", sim.url());
        let creds = format!("{}:{}", sim.user(), sim.password());
        assert_eq!(sim.curl(&["-u", &creds, &version]).status, 200);
        sim.fail_next(1, 503);
        assert_eq!(sim.curl(&["-u", &creds, &version]).status, 503);
        assert_eq!(sim.stats()["total"], 2, "stats: {}", sim.stats());
        sim.reset_stats();
        assert_eq!(sim.stats()["total"], 0);
        sim.seed(sim.state());

        let url = sim.url();
        sim.stop();
        assert_eq!(
            curl(&["-k", &version]).rc,
            7,
            "connection refused while stopped"
        );
        sim.restart();
        assert_eq!(sim.url(), url, "same port after restart");
        assert_eq!(sim.curl(&["-u", &creds, &version]).status, 200);
    }
}

/// The URL scheme the simulator should use.
fn scheme(sim: &UfmSim) -> &'static str {
    if sim.tls().is_some() { "https" } else { "http" }
}

/// Standard base64, as the etcd v3 gateway wants keys and values.
fn b64(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// Two port GUIDs as UFM prints them.
const G1: &str = "946dae03005975c8";
const G2: &str = "946dae03005985c8";

/// Runs `f` and says how long it took.
fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let value = f();
    (value, start.elapsed())
}

/// A simulator holding PKey 0x5 with member G1.
fn seeded_sim() -> UfmSim {
    let sim = UfmSim::http();
    sim.seed(json!({"0x5": {"guids": [{"guid": G1, "membership": "full"}]}}));
    sim
}

fn add_body(pkey: &str, guid: &str) -> Value {
    json!({"pkey": pkey, "guids": [guid], "membership": "full", "index0": false})
}

fn last_updated(sim: &UfmSim) -> Value {
    let reply = sim.api("GET", "/ufmRest/resources/pkeys/last_updated", None);
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.json()["last_updated"].clone()
}

fn version_status(sim: &UfmSim) -> u16 {
    sim.api("GET", "/ufmRest/app/ufm_version", None).status
}

#[test]
fn sim_delay_rule_slows_only_its_route_and_holds_no_lock() {
    let sim = UfmSim::http();
    let delay = Duration::from_millis(800);
    sim.add_faults(json!([{"method": "GET", "route": "/resources/pkeys",
                            "query": {"guids_data": "true"}, "delay_ms": 800}]));
    std::thread::scope(|scope| {
        let slow = scope
            .spawn(|| timed(|| sim.api("GET", "/ufmRest/resources/pkeys?guids_data=true", None)));
        // Once the slow request is counted it is sleeping: the others must not wait for it.
        wait_until("the slow listing to arrive", secs(5), || {
            sim.stats()["requests"]["GET /resources/pkeys"] == 1
        });
        let (names, names_took) = timed(|| sim.api("GET", "/ufmRest/resources/pkeys", None));
        let (version, version_took) = timed(|| sim.api("GET", "/ufmRest/app/ufm_version", None));
        assert_eq!((names.status, version.status), (200, 200));
        assert!(
            names_took < delay / 2,
            "the listing without guids_data took {names_took:?}"
        );
        assert!(
            version_took < delay / 2,
            "ufm_version took {version_took:?}"
        );
        let (listing, took) = slow.join().expect("the slow request");
        assert_eq!(listing.status, 200, "{listing:?}");
        assert!(took >= delay, "the guids_data listing took only {took:?}");
    });
    assert_eq!(sim.faults()["rules"][0]["hits"], 1, "{}", sim.faults());
}

#[test]
fn sim_rules_expire_after_count_requests_or_seconds() {
    let sim = UfmSim::http();
    sim.add_faults(json!([{"route": "/app/ufm_version", "status": 503, "count": 2}]));
    assert_eq!(sim.faults()["rules"][0]["remaining"], 2);
    let first = sim.api("GET", "/ufmRest/app/ufm_version", None);
    assert_eq!(first.status, 503);
    assert!(
        first.body.contains("Service Temporarily Unavailable"),
        "{first:?}"
    );
    assert_eq!(version_status(&sim), 503);
    assert_eq!(version_status(&sim), 200, "two requests used the rule up");
    assert_eq!(sim.faults()["rules"], json!([]));

    let added = Instant::now();
    sim.add_faults(json!([{"status": 500, "seconds": 1}]));
    assert_eq!(version_status(&sim), 500);
    let left = sim.faults()["rules"][0]["seconds_left"]
        .as_f64()
        .unwrap_or(-1.0);
    assert!((0.0..=1.0).contains(&left), "seconds_left {left}");
    wait_until("the 1 s rule to expire", secs(5), || {
        version_status(&sim) == 200
    });
    assert!(
        added.elapsed() >= Duration::from_millis(900),
        "expired after {:?}",
        added.elapsed()
    );
    assert_eq!(sim.faults()["rules"], json!([]));
}

#[test]
fn sim_noop_rule_answers_2xx_and_changes_nothing() {
    let sim = seeded_sim();
    let state = sim.state();
    let stamp = last_updated(&sim);
    assert!(stamp.is_string(), "seeding is a change: {stamp}");
    sim.add_faults(json!([{"method": "WRITE", "noop": true}]));

    let add = sim.api(
        "POST",
        "/ufmRest/resources/pkeys",
        Some(&add_body("0x5", G2)),
    );
    assert_eq!(add.status, 200, "{add:?}");
    assert_eq!(
        sim.api("DELETE", "/ufmRest/resources/pkeys/0x5", None)
            .status,
        200
    );
    let bad = sim.api(
        "POST",
        "/ufmRest/resources/pkeys",
        Some(&add_body("0x8000", G2)),
    );
    assert_eq!(
        bad.status, 400,
        "a no-op still answers as the real request would: {bad:?}"
    );
    assert_eq!(sim.state(), state, "nothing applied");
    assert_eq!(last_updated(&sim), stamp, "last_updated not bumped");
    assert_eq!(
        sim.faults()["rules"][0]["hits"],
        3,
        "reads never match a noop rule"
    );

    sim.clear_faults();
    let add = sim.api(
        "POST",
        "/ufmRest/resources/pkeys",
        Some(&add_body("0x5", G2)),
    );
    assert_eq!(add.status, 200, "{add:?}");
    assert_ne!(sim.state(), state);
    assert_ne!(last_updated(&sim), stamp);
}

#[test]
fn sim_reset_rules_drop_the_connection_before_or_after_applying() {
    let sim = UfmSim::http();
    sim.add_faults(json!([{"route": "/app/ufm_version", "reset": true, "count": 1}]));
    let dropped = sim.api("GET", "/ufmRest/app/ufm_version", None);
    assert_eq!(
        (dropped.rc, dropped.status),
        (52, 0),
        "empty reply: {dropped:?}"
    );
    assert_eq!(version_status(&sim), 200);

    sim.add_faults(
        json!([{"method": "POST", "route": "/resources/pkeys", "reset_after": true,
                            "count": 1}]),
    );
    let lost = sim.api(
        "POST",
        "/ufmRest/resources/pkeys",
        Some(&add_body("0x6", G1)),
    );
    assert_eq!((lost.rc, lost.status), (52, 0), "{lost:?}");
    assert!(
        sim.state().get("0x6").is_some(),
        "applied although unanswered: {}",
        sim.state()
    );
    assert_eq!(sim.bytes()["POST /resources/pkeys"], 0, "nothing was sent");
}

/// A keep-alive connection that has had one answer.
fn open_keep_alive(sim: &UfmSim) -> BufReader<TcpStream> {
    let stream = TcpStream::connect(sim.host_port()).expect("connecting to the simulator");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    let mut reader = BufReader::new(stream);
    let creds = b64(&format!("{}:{}", sim.user(), sim.password()));
    let request = format!(
        "GET /ufmRest/app/ufm_version HTTP/1.1\r\nHost: sim\r\nAuthorization: Basic {creds}\r\n\r\n"
    );
    reader
        .get_mut()
        .write_all(request.as_bytes())
        .expect("sending");
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("reading the answer");
        if let Some(n) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = n.trim().parse().expect("a length");
        }
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).expect("reading the body");
    reader
}

#[test]
fn sim_refuse_outage_closes_the_port_then_listens_again_with_its_state() {
    let sim = seeded_sim();
    let state = sim.state();
    let url = sim.url();
    let mut idle = open_keep_alive(&sim);

    sim.outage(1.0, "refuse");
    let mut rest = Vec::new();
    // End of file (or a reset), not the 5 s read timeout.
    let ended = idle.read_to_end(&mut rest).map_err(|e| e.kind());
    assert!(
        matches!(ended, Ok(0) | Err(std::io::ErrorKind::ConnectionReset)),
        "the open keep-alive connection is dropped: {ended:?}"
    );
    let refused = sim.api("GET", "/ufmRest/app/ufm_version", None);
    assert_eq!(refused.rc, 7, "connection refused: {refused:?}");
    assert_eq!(
        curl(&[&format!("{url}/_sim/outage")]).rc,
        7,
        "control API down too"
    );

    wait_until("the simulator to listen again", secs(5), || {
        version_status(&sim) == 200
    });
    assert_eq!(sim.url(), url, "same port");
    assert_eq!(sim.state(), state, "same state");
    assert_eq!(sim.outage_status(), json!({"active": false}));
    assert!(sim.log().contains("outage started"), "{}", sim.log());
}

#[test]
fn sim_503_and_hang_outages() {
    let sim = UfmSim::http();
    sim.outage(1.0, "503");
    let page = sim.api("GET", "/ufmRest/app/ufm_version", None);
    assert_eq!(page.status, 503);
    assert!(
        page.body
            .contains("<title>503 Service Temporarily Unavailable</title>"),
        "{page:?}"
    );
    assert_eq!(
        sim.outage_status()["mode"],
        "503",
        "the control API stays up"
    );
    wait_until("the 503 outage to end", secs(5), || {
        version_status(&sim) == 200
    });
    assert!(sim.log().contains("outage ended"), "{}", sim.log());

    let started = Instant::now();
    sim.outage(0.8, "hang");
    assert_eq!(version_status(&sim), 200, "answered once the hang ends");
    assert!(
        started.elapsed() >= Duration::from_millis(800),
        "{:?}",
        started.elapsed()
    );

    sim.outage(60.0, "503");
    assert_eq!(version_status(&sim), 503);
    sim.clear_faults();
    assert_eq!(
        version_status(&sim),
        200,
        "clearing the faults ends the outage"
    );
}

#[test]
fn sim_nvidia_mock_route_set_answers_as_nvidia_s_mock() {
    let sim = UfmSim::start(SimOptions::nvidia_mock("mocktoken0123456789abcdefghijk"));
    assert_eq!(sim.config()["route_set"], "nvidia-mock");
    assert_eq!(version_status(&sim), 404, "no /ufmRest prefix");
    let basic = sim.api("GET", "/ufmRestV3/app/ufm_version", None);
    assert_eq!(
        (basic.status, basic.body.as_str()),
        (401, "invalid UFM authorization token")
    );
    assert_eq!(
        sim.token_api("GET", "/ufmRestV3/app/ufm_version", None)
            .status,
        200
    );
    let call = |method: &str, path: &str, body: Option<&Value>| {
        sim.token_api(method, &format!("/ufmRestV3{path}"), body)
    };

    sim.set_known_guids(&[G1]);
    let mut add = add_body("0x5", G1);
    add["ip_over_ib"] = json!(false);
    let added = call("POST", "/resources/pkeys", Some(&add));
    assert_eq!(
        (added.status, added.body.as_str()),
        (200, "{}"),
        "{added:?}"
    );
    add["guids"] = json!([G2]);
    let unknown = call("POST", "/resources/pkeys", Some(&add));
    assert_eq!(unknown.status, 404);
    assert_eq!(
        unknown.json()["error"],
        format!("InfiniBand port {G2} does not exist")
    );
    let missing = call("POST", "/resources/pkeys", Some(&add_body("0x5", G1)));
    assert_eq!(missing.status, 422, "ip_over_ib is mandatory: {missing:?}");

    for (method, path, status) in [
        ("POST", "/resources/pkeys/add", 405),
        ("DELETE", "/resources/pkeys/0x5", 405),
        ("PUT", "/resources/pkeys", 405),
        ("GET", "/resources/pkeys/qos_conf", 405),
        ("GET", "/actions/remove_guids_from_pkey", 405),
        ("DELETE", &format!("/resources/pkeys/0x5/guids/{G1}"), 404),
        ("POST", "/actions/add_guids_to_pkey", 404),
        ("GET", "/app/tokens", 404),
        ("GET", "/resources/pkeys/", 404),
        ("GET", "/resources/pkeys/last_updated", 400),
        ("GET", "/resources/pkeys?guids_data=yes", 400),
    ] {
        let reply = call(method, path, None);
        assert_eq!(reply.status, status, "{method} {path}: {reply:?}");
    }

    let names = call("GET", "/resources/pkeys", None).json();
    assert_eq!(
        names["0x7fff"],
        json!({"partition": "management", "ip_over_ib": true,
                                       "membership": "limited"}),
        "{names}"
    );
    assert_eq!(
        names["0x5"],
        json!({"partition": "api_pkey_0x5", "ip_over_ib": false})
    );
    let full = call(
        "GET",
        "/resources/pkeys?guids_data=true&qos_conf=true",
        None,
    )
    .json();
    assert_eq!(
        full["0x5"]["guids"][0]["guid"], G1,
        "both flags work: {full}"
    );
    assert_eq!(call("GET", "/resources/pkeys/0x6", None).body, "{}");

    let remove = json!({"pkey": "0x5", "guids": [G1]});
    let removed = call("POST", "/actions/remove_guids_from_pkey", Some(&remove));
    assert_eq!((removed.status, removed.body.as_str()), (200, "{}"));
    assert_eq!(
        call("GET", "/resources/pkeys/0x5", None).body,
        "{}",
        "emptied: deleted"
    );
    let again = call("POST", "/actions/remove_guids_from_pkey", Some(&remove));
    assert_eq!(again.status, 200, "a missing PKey is a silent success");

    sim.set_mode(json!({"route_set": "full"}));
    assert_eq!(version_status(&sim), 200, "back to the full route set");
}

#[test]
fn sim_ipoib_follow_mode_sets_the_flag_on_every_add() {
    let sim = UfmSim::http();
    let ipoib = |sim: &UfmSim| sim.state()["0x5"]["ip_over_ib"].clone();
    let mut add = add_body("0x5", G1);
    add["ip_over_ib"] = json!(false);
    assert_eq!(
        sim.api("POST", "/ufmRest/resources/pkeys", Some(&add))
            .status,
        200
    );
    assert_eq!(ipoib(&sim), false);
    let without = add_body("0x5", G2);
    assert_eq!(
        sim.api("POST", "/ufmRest/resources/pkeys", Some(&without))
            .status,
        200
    );
    assert_eq!(
        ipoib(&sim),
        false,
        "keep: an add without the field keeps the flag"
    );

    sim.set_mode(json!({"ipoib_on_add": "follow"}));
    let actions = json!({"pkey": "0x5", "guids": [G1]});
    let reply = sim.api("POST", "/ufmRest/actions/add_guids_to_pkey", Some(&actions));
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(ipoib(&sim), true, "follow: a missing field means true");
    assert_eq!(
        sim.api("POST", "/ufmRest/resources/pkeys", Some(&add))
            .status,
        200
    );
    assert_eq!(ipoib(&sim), false, "follow: the request's value");
}

#[test]
fn sim_last_updated_formats() {
    let sim = UfmSim::http();
    assert_eq!(
        last_updated(&sim),
        Value::Null,
        "null before the first change"
    );
    assert_eq!(
        sim.api(
            "POST",
            "/ufmRest/resources/pkeys",
            Some(&add_body("0x5", G1))
        )
        .status,
        200
    );
    let rfc = last_updated(&sim).as_str().unwrap_or_default().to_string();
    assert!(
        rfc.len() == 27 && rfc.ends_with('Z') && rfc.as_bytes()[10] == b'T',
        "{rfc}"
    );

    sim.set_mode(json!({"last_updated_format": "ctime"}));
    let ctime = last_updated(&sim).as_str().unwrap_or_default().to_string();
    let words: Vec<&str> = ctime.split_whitespace().collect();
    assert!(
        words.len() == 6 && words[4] == "UTC" && words[3].len() == 8,
        "{ctime}"
    );
    assert!(ctime.ends_with(&rfc[..4]), "same year: {ctime} {rfc}");

    sim.set_mode(json!({"last_updated_format": "dmy-local"}));
    let dmy = last_updated(&sim).as_str().unwrap_or_default().to_string();
    let expected = format!(
        "{}-{}-{}, {}",
        &rfc[8..10],
        &rfc[5..7],
        &rfc[..4],
        &rfc[11..19]
    );
    assert_eq!(dmy, expected);

    let flagged = UfmSim::start(SimOptions {
        extra_args: vec!["--last-updated-format".into(), "ctime".into()],
        ..SimOptions::default()
    });
    assert_eq!(flagged.config()["last_updated_format"], "ctime");
}

#[test]
fn sim_counts_response_bytes_per_route() {
    let sim = seeded_sim();
    let listing = sim.api("GET", "/ufmRest/resources/pkeys?guids_data=true", None);
    let version = sim.api("GET", "/ufmRest/app/ufm_version", None);
    let denied = sim.curl(&[&format!("{}/ufmRest/app/ufm_version", sim.url())]);
    assert_eq!(
        (listing.status, version.status, denied.status),
        (200, 200, 401)
    );
    let bytes = sim.bytes();
    assert_eq!(
        bytes["GET /resources/pkeys"],
        listing.body.len() as u64,
        "{bytes}"
    );
    let version_bytes = version.body.len() + denied.body.len();
    assert_eq!(bytes["GET /app/ufm_version"], version_bytes as u64);
    assert_eq!(
        sim.bytes_total(),
        (listing.body.len() + version_bytes) as u64
    );
    let stats = sim.stats();
    assert_eq!(stats["total"], 3);
    assert_eq!(
        stats["requests"],
        json!({"GET /app/ufm_version": 2, "GET /resources/pkeys": 1})
    );
    sim.reset_stats();
    assert_eq!((sim.bytes(), sim.bytes_total()), (json!({}), 0));
}

#[test]
fn sim_drops_members_on_its_own_and_lists_both_flags_either_way() {
    let sim = seeded_sim();
    let dropped = sim.drop_guids(&[G1]);
    assert_eq!(
        dropped,
        json!({"removed": 1, "deleted_partitions": ["0x5"]})
    );
    assert!(sim.state().get("0x5").is_none());

    let both = "/ufmRest/resources/pkeys?guids_data=true&qos_conf=true";
    assert_eq!(sim.api("GET", both, None).status, 400);
    sim.set_mode(json!({"list_guids_and_qos": "drop_guids"}));
    let qos_only = sim.api("GET", both, None);
    assert_eq!(qos_only.status, 200);
    assert!(
        qos_only.json()["0x7fff"].get("guids").is_none(),
        "{qos_only:?}"
    );
}

#[test]
fn sim_refuses_bad_control_input_with_a_one_line_reason() {
    let sim = UfmSim::http();
    let post = |path: &str, body: &str| {
        let url = format!("{}{path}", sim.url());
        sim.curl(&[
            "-X",
            "POST",
            &url,
            "-H",
            "Content-Type: application/json",
            "-d",
            body,
        ])
    };
    for (path, body, reason) in [
        (
            "/_sim/faults",
            r#"{"rules": [{"route": "/nope", "status": 503}]}"#,
            "route",
        ),
        (
            "/_sim/faults",
            r#"{"rules": [{"route": "*"}]}"#,
            "no effect",
        ),
        (
            "/_sim/faults",
            r#"{"rules": [{"delay_ms": 5, "colour": 1}]}"#,
            "unknown field",
        ),
        ("/_sim/faults", r#"[]"#, "Invalid body"),
        ("/_sim/outage", r#"{"seconds": 1, "mode": "down"}"#, "mode"),
        (
            "/_sim/outage",
            r#"{"seconds": 0, "mode": "503"}"#,
            "seconds",
        ),
        ("/_sim/config", r#"{"route_set": "ufm-6.9"}"#, "route_set"),
        (
            "/_sim/config",
            r#"{"last_updated_format": "iso"}"#,
            "last_updated_format",
        ),
        ("/_sim/drop_guids", r#"["xyz"]"#, "guid"),
    ] {
        let reply = post(path, body);
        assert_eq!(reply.status, 400, "{path} {body}: {reply:?}");
        let error = reply.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            error.contains(reason) && !error.contains('\n'),
            "{path} {body}: {error}"
        );
    }
    assert_eq!(sim.faults()["rules"], json!([]), "nothing was added");
}

#[test]
fn sim_body_rule_answers_what_it_is_given_and_applies_nothing() {
    let sim = seeded_sim();
    let state = sim.state();
    sim.add_faults(json!([
        {"method": "GET", "route": "/resources/pkeys", "body": {}, "count": 1},
    ]));
    let list = sim.api("GET", "/ufmRest/resources/pkeys?guids_data=true", None);
    assert_eq!((list.status, list.body.trim()), (200, "{}"), "{list:?}");
    let again = sim.api("GET", "/ufmRest/resources/pkeys?guids_data=true", None);
    assert!(
        again.body.contains("0x7fff"),
        "the rule was used up: {again:?}"
    );
    assert_eq!(sim.state(), state);
}

#[test]
fn sim_logs_each_request_with_its_time_and_sender() {
    let sim = UfmSim::start(SimOptions {
        token: Some("tok123".into()),
        ..SimOptions::default()
    });
    sim.clear_requests_log();
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    assert_eq!(sim.api("GET", "/ufmRest/app/ufm_version", None).status, 200);
    assert_eq!(
        sim.token_api("GET", "/ufmRestV3/resources/pkeys/0x10", None)
            .status,
        200
    );
    let log = sim.requests_log();
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(log[0]["who"], "admin");
    assert_eq!(log[0]["route"], "/app/ufm_version");
    assert_eq!(log[1]["who"], "token:tok123");
    assert_eq!(log[1]["pkey"], "0x10");
    assert!(
        log[0]["at_ms"].as_u64().is_some_and(|t| t >= before),
        "{log:?}"
    );
    sim.clear_requests_log();
    assert!(sim.requests_log().is_empty());
}
