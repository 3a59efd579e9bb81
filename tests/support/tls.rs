//! Test certificates made with `openssl`: a CA, a server certificate for 127.0.0.1/localhost and
//! client certificates, all EC P-256 (fast to make: the whole set takes ~0.1 s).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A fresh CA and the certificates and keys signed by it (PEM files, keys in PKCS#8).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA certificate (`/CN=ufm-pkeyd-test-ca`): what clients trust.
    pub ca: PathBuf,
    /// Server certificate, SAN `IP:127.0.0.1, DNS:localhost`, usages serverAuth + clientAuth
    /// (etcd's gateway dials its own gRPC port with it).
    pub server_cert: PathBuf,
    /// The server certificate's key.
    pub server_key: PathBuf,
    /// Client certificate with an EMPTY common name (subject `/O=pkeyd`): the one that works with
    /// etcd's gateway when auth is on.
    pub client_cert: PathBuf,
    /// The client certificate's key.
    pub client_key: PathBuf,
    /// A client certificate for the same key but with `CN=reader`: etcd's gateway with auth
    /// answers 400 "CommonName of client sending a request against gateway will be ignored…".
    pub client_cert_with_cn: PathBuf,
    /// A valid key that does NOT match `client_cert` (for the mismatched-pair test).
    pub other_key: PathBuf,
}

impl TlsFiles {
    /// Makes a new CA and certificate set in `dir` (which must exist).
    pub fn generate(dir: &Path) -> TlsFiles {
        let p = |name: &str| dir.join(name);
        let files = TlsFiles {
            ca: p("ca.crt"),
            server_cert: p("server.crt"),
            server_key: p("server.key"),
            client_cert: p("client.crt"),
            client_key: p("client.key"),
            client_cert_with_cn: p("client-cn.crt"),
            other_key: p("other.key"),
        };
        let ca_key = p("ca.key");
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        let mut ca_args = vec!["req", "-x509"];
        ca_args.extend_from_slice(&ec);
        ca_args.extend_from_slice(&["-keyout", s(&ca_key), "-out", s(&files.ca)]);
        ca_args.extend_from_slice(&["-days", "3650", "-subj", "/CN=ufm-pkeyd-test-ca"]);
        openssl(dir, &ca_args);
        // `req -x509 -CA` signs with the CA in one step (OpenSSL ≥ 3.0).
        let signed = |key: &Path, cert: &Path, subj: &str, exts: &[&str], new_key: bool| {
            let mut args = vec!["req", "-x509", "-CA", s(&files.ca), "-CAkey", s(&ca_key)];
            if new_key {
                args.extend_from_slice(&ec);
                args.extend_from_slice(&["-keyout", s(key)]);
            } else {
                args.extend_from_slice(&["-key", s(key)]);
            }
            args.extend_from_slice(&["-out", s(cert), "-days", "365", "-subj", subj]);
            args.extend_from_slice(&["-addext", "basicConstraints=critical,CA:FALSE"]);
            for ext in exts {
                args.extend_from_slice(&["-addext", ext]);
            }
            openssl(dir, &args);
        };
        signed(
            &files.server_key,
            &files.server_cert,
            "/CN=localhost",
            &[
                "subjectAltName=IP:127.0.0.1,DNS:localhost",
                "extendedKeyUsage=serverAuth,clientAuth",
            ],
            true,
        );
        let client_ext = ["extendedKeyUsage=clientAuth"];
        signed(
            &files.client_key,
            &files.client_cert,
            "/O=pkeyd",
            &client_ext,
            true,
        );
        signed(
            &files.client_key,
            &files.client_cert_with_cn,
            "/O=pkeyd/CN=reader",
            &client_ext,
            false,
        );
        let curve = "ec_paramgen_curve:P-256";
        let other = [
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            curve,
            "-out",
            s(&files.other_key),
        ];
        openssl(dir, &other);
        files
    }

    /// curl arguments that trust the CA and present the (empty-CN) client certificate.
    pub fn curl_args(&self) -> Vec<String> {
        [
            ("--cacert", &self.ca),
            ("--cert", &self.client_cert),
            ("--key", &self.client_key),
        ]
        .into_iter()
        .flat_map(|(flag, path)| [flag.to_string(), s(path).to_string()])
        .collect()
    }
}

/// A temp path as `&str` (they are always UTF-8).
fn s(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

/// Runs `openssl ARGS…` in `dir`; panics with its stderr on failure.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("running openssl (is it installed?)");
    assert!(
        out.status.success(),
        "openssl {} failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}
