//! Which CA certificates verify UFM's and etcd's certificates, over real TLS: the system's
//! store as OpenSSL finds it (`SSL_CERT_FILE`, `SSL_CERT_DIR`, else the distribution's bundle)
//! when no CA file is given, the CA file alone when one is, and one clear line naming where it
//! looked and the fix when the store has nothing usable.
//!
//! Every run sets `SSL_CERT_FILE` (and where it matters `SSL_CERT_DIR`), so what the machine's
//! own store holds, or the variables of the shell that runs the tests, change nothing here.

mod support;

use std::path::Path;

use support::*;

/// `ufm-pkeyd ufm --no-pcocc` for `sim` with its password file, then `args` (no CA flag).
fn ufm(sim: &UfmSim, args: &[&str]) -> Pkeyd {
    Pkeyd::new(&[
        "ufm",
        "--no-pcocc",
        "--ufm-host",
        &sim.host_port(),
        "--ufm-user",
        sim.user(),
        "--ufm-password-file",
        &path_text(sim.password_file()),
    ])
    .args(args)
}

/// A CA (with its certificates) that signed nothing the simulator serves.
fn other_ca(dir: &TempDir) -> TlsFiles {
    TlsFiles::generate(dir.path())
}

/// The simulator's CA certificate.
fn sim_ca(sim: &UfmSim) -> &Path {
    &sim.tls().expect("an https simulator").ca
}

/// The version `--check` prints when it reached the simulator.
const SIM_VERSION: &str = "6.19.1-4";

/// Asserts that `text` names every fix for an untrusted UFM certificate.
fn assert_names_the_fixes(text: &str) {
    for fix in [
        "--ufm-ca-cert FILE",
        "update-ca-trust",
        "ufm-ssl-verify: false",
    ] {
        assert!(text.contains(fix), "the message names {fix:?}:\n{text}");
    }
}

/// The stderr line that says why the check failed (the one naming UFM's URL).
fn failure_line(stderr: &str) -> &str {
    stderr
        .lines()
        .find(|l| l.contains("cannot reach UFM"))
        .unwrap_or_else(|| panic!("a 'cannot reach UFM' line:\n{stderr}"))
}

#[test]
fn a_ca_given_only_through_ssl_cert_file_is_trusted_without_ufm_ca_cert() {
    let sim = UfmSim::https();
    let run = ufm(&sim, &["--check"])
        .env("SSL_CERT_FILE", &path_text(sim_ca(&sim)))
        .run();
    run.assert_ok();
    assert!(run.stdout.contains(SIM_VERSION), "{}", run.stdout);
}

#[test]
fn a_ca_in_ssl_cert_dir_is_trusted_under_any_file_name_and_a_broken_file_there_is_no_failure() {
    let sim = UfmSim::https();
    let store = TempDir::new("cert-dir");
    // Not an OpenSSL hash name (`abcd1234.0`): every file of the directory is read.
    std::fs::copy(sim_ca(&sim), store.path().join("site-ca.pem")).expect("copying the CA");
    store.write(
        "broken.pem",
        "-----BEGIN CERTIFICATE-----\n!!! not base64 !!!\n-----END CERTIFICATE-----\n",
    );
    std::os::unix::fs::symlink("/nonexistent/ca.pem", store.path().join("dangling.pem"))
        .expect("a dangling symlink");
    let empty_file = TempDir::new("empty-bundle");
    let empty = empty_file.write("none.pem", "");

    let run = ufm(&sim, &["--check", "--debug"])
        .env("SSL_CERT_FILE", &path_text(&empty))
        .env("SSL_CERT_DIR", &path_text(store.path()))
        .run();
    run.assert_ok();
    assert!(run.stdout.contains(SIM_VERSION), "{}", run.stdout);
    let debug = run
        .stderr
        .lines()
        .find(|l| l.contains("failed to read PEM"))
        .unwrap_or_else(|| panic!("the broken file is logged:\n{}", run.stderr));
    assert!(
        log_message(debug).starts_with("ufm-pkeyd: debug: UFM: CA store SSL_CERT_FILE="),
        "at debug, not higher, naming the store: {debug}"
    );
    // Other warnings (a password file readable by others) are not the store's business.
    let above_debug = run.stderr.lines().map(log_message).find(|l| {
        (l.starts_with("ufm-pkeyd: warn: ") || l.starts_with("ufm-pkeyd: error: "))
            && (l.contains("CA store") || l.contains("SSL_CERT") || l.contains("PEM"))
    });
    assert_eq!(
        above_debug, None,
        "nothing above debug for a store that still has a usable CA:\n{}",
        run.stderr
    );
}

#[test]
fn without_the_ca_in_the_store_the_tls_error_names_the_store_and_the_fix() {
    let sim = UfmSim::https();
    let other_dir = TempDir::new("other-ca");
    let other = other_ca(&other_dir);
    let run = ufm(&sim, &["--check"])
        .env("SSL_CERT_FILE", &path_text(&other.ca))
        .env("SSL_CERT_DIR", "")
        .run();
    run.assert_code(1);
    let line = failure_line(&run.stderr);
    assert!(
        line.contains("TLS error: invalid peer certificate"),
        "{line}"
    );
    assert!(
        line.contains(&format!(
            "signed by no CA in SSL_CERT_FILE={}",
            path_text(&other.ca)
        )),
        "names the store it looked in: {line}"
    );
    assert_names_the_fixes(line);
    assert_eq!(
        run.stderr.matches("cannot reach UFM").count(),
        1,
        "{}",
        run.stderr
    );
}

#[test]
fn an_explicit_ufm_ca_cert_replaces_the_store_whatever_ssl_cert_file_says() {
    let sim = UfmSim::https();
    let other_dir = TempDir::new("other-ca");
    let other = other_ca(&other_dir);

    // The right CA file; SSL_CERT_FILE names another CA, and a file that does not exist.
    for elsewhere in [
        path_text(&other.ca),
        "/nonexistent/ca-bundle.crt".to_string(),
    ] {
        let run = ufm(
            &sim,
            &["--check", "--ufm-ca-cert", &path_text(sim_ca(&sim))],
        )
        .env("SSL_CERT_FILE", &elsewhere)
        .env("SSL_CERT_DIR", "/nonexistent/certs")
        .run();
        run.assert_ok();
        assert!(run.stdout.contains(SIM_VERSION), "{}", run.stdout);
    }

    // The wrong CA file is not helped by a store that holds the right CA: the file replaces it.
    let run = ufm(&sim, &["--check", "--ufm-ca-cert", &path_text(&other.ca)])
        .env("SSL_CERT_FILE", &path_text(sim_ca(&sim)))
        .run();
    run.assert_code(1);
    let line = failure_line(&run.stderr);
    assert!(line.contains("invalid peer certificate"), "{line}");
    assert!(
        line.contains(&format!("signed by no CA in {}", path_text(&other.ca))),
        "names the CA file it checked against: {line}"
    );
    assert!(
        !line.contains("SSL_CERT_FILE"),
        "the store played no part: {line}"
    );
}

#[test]
fn an_ssl_cert_file_that_does_not_exist_is_named_with_the_fix() {
    let sim = UfmSim::https();
    let missing = "/nonexistent/site-bundle.pem";
    // Alone (an empty SSL_CERT_DIR counts as unset): nothing usable is left.
    let run = ufm(&sim, &["--check"])
        .env("SSL_CERT_FILE", missing)
        .env("SSL_CERT_DIR", "")
        .run();
    run.assert_code(1);
    let line = failure_line(&run.stderr);
    assert!(
        line.contains(&format!(
            "no usable CA certificate in SSL_CERT_FILE={missing} ({missing}: No such file or directory"
        )),
        "names the variable, its value and the error: {line}"
    );
    assert!(line.contains("correct or unset SSL_CERT_FILE"), "{line}");
    assert_names_the_fixes(line);
    assert_eq!(
        run.stderr.lines().filter(|l| l.contains(missing)).count(),
        1,
        "one line:\n{}",
        run.stderr
    );

    // Next to a directory that holds the CA: a warning, and the check passes.
    let store = TempDir::new("cert-dir");
    std::fs::copy(sim_ca(&sim), store.path().join("ca.pem")).expect("copying the CA");
    let run = ufm(&sim, &["--check"])
        .env("SSL_CERT_FILE", missing)
        .env("SSL_CERT_DIR", &path_text(store.path()))
        .run();
    run.assert_ok();
    let warning = run
        .stderr
        .lines()
        .find(|l| l.contains(missing))
        .unwrap_or_else(|| panic!("the missing file is named:\n{}", run.stderr));
    assert!(
        log_message(warning).starts_with("ufm-pkeyd: warn: UFM: CA store SSL_CERT_FILE=")
            && warning.contains("No such file or directory"),
        "{warning}"
    );
}

/// Runs `ufm-pkeyd ARGS…` in an empty environment, so with neither `SSL_CERT_FILE` nor
/// `SSL_CERT_DIR` (the harness can set variables, not remove them); returns (exit code, stderr).
fn without_store_variables(args: &[&str]) -> (Option<i32>, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_ufm-pkeyd"));
    command
        .args(args)
        .env_clear()
        .stdin(std::process::Stdio::null());
    let out = command.output().expect("running ufm-pkeyd");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn with_neither_variable_the_distributions_store_is_read_and_named() {
    let sim = UfmSim::https();
    let password_file = path_text(sim.password_file());
    let (host, user) = (sim.host_port(), sim.user().to_string());
    let base = [
        "ufm",
        "--no-pcocc",
        "--ufm-host",
        &host,
        "--ufm-user",
        &user,
        "--ufm-password-file",
        &password_file,
        "--check",
    ];
    // The simulator's fresh CA is in no distribution's store.
    let (code, stderr) = without_store_variables(&base);
    assert_eq!(code, Some(1), "{stderr}");
    let line = failure_line(&stderr);
    assert!(line.contains("the system store ("), "{line}");
    assert!(!line.contains("SSL_CERT"), "no variable was set: {line}");
    assert_names_the_fixes(line);

    let mut trusted = base.to_vec();
    let ca = path_text(sim_ca(&sim));
    trusted.extend(["--ufm-ca-cert", &ca]);
    let (code, stderr) = without_store_variables(&trusted);
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn an_empty_store_is_reported_when_https_needs_it_and_never_for_plain_http() {
    let store = TempDir::new("empty-store");
    let empty = store.write("none.pem", "");
    let empty_dir = store.path().join("certs");
    std::fs::create_dir(&empty_dir).expect("an empty certificate directory");
    let with_empty_store = |pkeyd: Pkeyd| {
        pkeyd
            .env("SSL_CERT_FILE", &path_text(&empty))
            .env("SSL_CERT_DIR", &path_text(&empty_dir))
    };

    let plain = UfmSim::http();
    let run = with_empty_store(ufm(&plain, &["--check", "--http", "--debug"])).run();
    run.assert_ok();
    assert!(
        !run.stderr.contains("CA certificate") && !run.stderr.contains("SSL_CERT"),
        "a plain-http site never hears of the store:\n{}",
        run.stderr
    );

    let sim = UfmSim::https();
    let run = with_empty_store(ufm(&sim, &["--check"])).run();
    run.assert_code(1);
    let line = failure_line(&run.stderr);
    assert!(line.contains("no usable CA certificate"), "{line}");
    assert!(
        line.contains(&format!("SSL_CERT_FILE={}", path_text(&empty)))
            && line.contains(&format!("SSL_CERT_DIR={}", path_text(&empty_dir))),
        "names where it looked: {line}"
    );
    assert_names_the_fixes(line);

    // Verification off needs no store.
    let run = with_empty_store(ufm(&sim, &["--check", "--no-ssl-verify"])).run();
    run.assert_ok();
}

#[test]
fn etcd_over_tls_trusts_a_ca_given_through_ssl_cert_file() {
    let etcd = Etcd::start(EtcdOptions {
        tls: true,
        ..EtcdOptions::default()
    });
    let tls = etcd.tls().expect("tls files").clone();
    etcd.put_v3("/trust-store/key", "value");
    let base = [
        "etcd",
        "--no-pcocc",
        "--etcd-endpoints",
        &etcd.endpoint(),
        "--etcd-cert-file",
        &path_text(&tls.client_cert),
        "--etcd-key-file",
        &path_text(&tls.client_key),
        "--get",
        "/trust-store/key",
    ];
    let run = Pkeyd::new(&base)
        .env("SSL_CERT_FILE", &path_text(&tls.ca))
        .run();
    run.assert_ok();
    assert!(run.stdout.contains("value"), "{}", run.stdout);

    let other_dir = TempDir::new("other-ca");
    let other = other_ca(&other_dir);
    let run = Pkeyd::new(&base)
        .env("SSL_CERT_FILE", &path_text(&other.ca))
        .run();
    run.assert_code(1);
    assert!(
        run.stderr.contains("--etcd-ca-cert FILE") && run.stderr.contains("update-ca-trust"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("ufm-ssl-verify"), "{}", run.stderr);
}
