//! A real single-member etcd on loopback, in the flavours the tests need (v2 API, auth, TLS),
//! and direct v2/v3 data access through `curl`, independent of the code under test.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use super::{CurlReply, Proc, TempDir, TlsFiles, curl, form_urlencode, free_port, tail, wait_for};

/// Where pcocc keeps the pkeys; the reader role may read below it and nowhere else.
pub const PKEYS_PREFIX: &str = "/pcocc/global/opensm/pkeys/";
/// The all-powerful user of the auth setup (v3 role `root`, v2 role `root`).
pub const ROOT_USER: &str = "root";
/// The read-only user of the auth setup.
pub const READER_USER: &str = "reader";
/// The reader's role: v3 read on the prefix `PKEYS_PREFIX`, v2 read on `PKEYS_PREFIX*`
/// (i.e. `/pcocc/global/opensm/pkeys/*`, which allows `GET …/pkeys/` but not `GET …/pkeys`).
pub const READER_ROLE: &str = "pkeyreader";

/// How long a start (process launch to `/health` true, plus auth setup) may take.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How many times a start is retried with new ports when a port was taken meanwhile.
const START_ATTEMPTS: u32 = 5;

/// What kind of etcd to start. `EtcdOptions::default()` is a plain v3-only etcd over http.
#[derive(Debug, Clone, Default)]
pub struct EtcdOptions {
    /// Serve the v2 API (`--enable-v2`), as pcocc needs.
    pub v2: bool,
    /// Turn on authentication (see [`EtcdAuth`]).
    pub auth: Option<EtcdAuth>,
    /// Serve https only and require a client certificate signed by the test CA
    /// (`--client-cert-auth`); see [`Etcd::tls`]. Peers stay on http.
    pub tls: bool,
    /// More etcd flags, e.g. `--experimental-watch-progress-notify-interval=1s`.
    pub extra_args: Vec<String>,
}

/// Authentication setup. v3: users `root` (role root) and `reader` (role `pkeyreader`, read on
/// the `PKEYS_PREFIX` prefix), then `auth enable`. When v2 is on, the same users and role in the
/// separate v2 auth store, v2 auth enabled and the `guest` role deleted (as pcocc's production
/// guide does), so anonymous v2 requests get 401. Passwords are hashed with `--bcrypt-cost 4`
/// for v3 (v2 auth always uses cost 10: each v2 request with basic auth costs ~50 ms).
#[derive(Debug, Clone)]
pub struct EtcdAuth {
    /// Password of `root`.
    pub root_password: String,
    /// Password of `reader`.
    pub reader_password: String,
}

impl Default for EtcdAuth {
    fn default() -> Self {
        EtcdAuth {
            root_password: "root-pw".to_string(),
            reader_password: "reader-pw".to_string(),
        }
    }
}

/// A running single-member etcd on 127.0.0.1 with its own data dir, ports and cluster token.
/// Dropping it kills etcd and removes its directory (data, logs, certificates, password files).
pub struct Etcd {
    proc: Option<Proc>,
    opts: EtcdOptions,
    name: String,
    client_port: u16,
    peer_port: u16,
    tls: Option<TlsFiles>,
    root_password_file: Option<PathBuf>,
    reader_password_file: Option<PathBuf>,
    /// Cached v3 token of root (auth only); dropped on 401 and on restart.
    token: Mutex<Option<String>>,
    dir: TempDir,
}

impl Etcd {
    /// Starts etcd and returns once `/health` says true and the auth setup (if any) is done.
    /// Retries with new ports when one was taken between picking and binding.
    pub fn start(opts: EtcdOptions) -> Etcd {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = TempDir::new("etcd");
        let tls = opts.tls.then(|| {
            let tls_dir = dir.join("tls");
            std::fs::create_dir(&tls_dir).expect("creating the etcd tls dir");
            TlsFiles::generate(&tls_dir)
        });
        let (root_password_file, reader_password_file) = match &opts.auth {
            Some(auth) => (
                Some(dir.write("root-password", &format!("{}\n", auth.root_password))),
                Some(dir.write("reader-password", &format!("{}\n", auth.reader_password))),
            ),
            None => (None, None),
        };
        let mut etcd = Etcd {
            proc: None,
            opts,
            name: format!("etcd-{}-{n}", std::process::id()),
            client_port: 0,
            peer_port: 0,
            tls,
            root_password_file,
            reader_password_file,
            token: Mutex::new(None),
            dir,
        };
        for attempt in 1..=START_ATTEMPTS {
            etcd.client_port = free_port();
            etcd.peer_port = free_port();
            while etcd.peer_port == etcd.client_port {
                etcd.peer_port = free_port();
            }
            if etcd.launch() {
                etcd.setup_auth();
                return etcd;
            }
            let proc = etcd.proc.take().expect("launch keeps the exited process");
            assert!(
                port_taken(&proc) && attempt < START_ATTEMPTS,
                "etcd {} exited during start-up (attempt {attempt}):\n{}",
                etcd.name,
                proc.log_tail()
            );
            // Start the next attempt from scratch: no data, no log.
            let _ = std::fs::remove_dir_all(etcd.dir.join("data"));
            let _ = std::fs::remove_file(proc.stderr_path());
            let _ = std::fs::remove_file(etcd.dir.join("etcd.stdout"));
        }
        unreachable!("the loop above returns or panics")
    }

    /// A plain v3-only etcd over http, no auth.
    pub fn plain() -> Etcd {
        Etcd::start(EtcdOptions::default())
    }

    /// An etcd over http serving the v2 API too (`--enable-v2`), no auth.
    pub fn with_v2() -> Etcd {
        Etcd::start(EtcdOptions {
            v2: true,
            ..EtcdOptions::default()
        })
    }

    /// `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT` (the client URL).
    pub fn endpoint(&self) -> String {
        let scheme = if self.opts.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// `127.0.0.1:PORT` (the client port).
    pub fn host_port(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// `endpoint() + path`, e.g. `etcd.url("/v2/keys/a")`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.endpoint())
    }

    /// The options it was started with.
    pub fn options(&self) -> &EtcdOptions {
        &self.opts
    }

    /// The certificates (CA, client cert with empty CN, its key, a non-matching key…) when
    /// started with `tls: true`.
    pub fn tls(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }

    /// The password of `root` (panics when auth is off).
    pub fn root_password(&self) -> &str {
        &self.auth().root_password
    }

    /// The password of `reader` (panics when auth is off).
    pub fn reader_password(&self) -> &str {
        &self.auth().reader_password
    }

    /// A file holding root's password followed by a newline, like `/etc/pcocc/etcd-password`.
    pub fn root_password_file(&self) -> &Path {
        self.root_password_file
            .as_deref()
            .expect("root_password_file: this etcd was started without auth")
    }

    /// A file holding reader's password followed by a newline.
    pub fn reader_password_file(&self) -> &Path {
        self.reader_password_file
            .as_deref()
            .expect("reader_password_file: this etcd was started without auth")
    }

    /// The temporary directory of this instance (data in `data/`, log in `etcd.stderr`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// etcd's log so far (it logs to stderr).
    pub fn log(&self) -> String {
        self.proc.as_ref().map(Proc::stderr).unwrap_or_default()
    }

    /// The process, while it runs (for `pid()`, `signal()`…).
    pub fn process(&mut self) -> Option<&mut Proc> {
        self.proc.as_mut()
    }

    /// Stops etcd gracefully (SIGTERM, SIGKILL after 10 s). The data dir and ports stay
    /// reserved for [`Etcd::restart`]. Does nothing when it is not running.
    pub fn stop(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            proc.terminate(Duration::from_secs(10));
        }
    }

    /// Kills etcd at once (SIGKILL), like a crash.
    pub fn kill(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            proc.kill();
        }
    }

    /// Stops etcd if it runs, then starts it again on the same ports with the same data dir
    /// (so data, users and auth survive) and waits until it is healthy. v3 tokens from before
    /// do not survive a restart.
    pub fn restart(&mut self) {
        self.stop();
        self.token.lock().expect("etcd token lock").take();
        // The ports were ours a moment ago; if another test grabbed one meanwhile, keep trying
        // until the start deadline.
        let start = Instant::now();
        while !self.launch() {
            let proc = self.proc.take().expect("launch keeps the exited process");
            assert!(
                port_taken(&proc) && start.elapsed() < START_TIMEOUT,
                "etcd {} did not restart:\n{}",
                self.name,
                proc.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs curl with `args` (which include the URL, see [`Etcd::url`]), adding the CA and the
    /// client certificate when TLS is on. No credentials are added.
    pub fn curl(&self, args: &[&str]) -> CurlReply {
        let mut all: Vec<String> = self.tls.iter().flat_map(TlsFiles::curl_args).collect();
        all.extend(args.iter().map(|a| a.to_string()));
        curl(&all)
    }

    /// Writes `key` = `value` through the v3 API (as root when auth is on).
    pub fn put_v3(&self, key: &str, value: &str) {
        self.v3(
            "kv/put",
            json!({"key": B64.encode(key), "value": B64.encode(value)}),
        );
    }

    /// Reads `key` through the v3 API; `None` when absent.
    pub fn get_v3(&self, key: &str) -> Option<String> {
        let reply = self.v3("kv/range", json!({"key": B64.encode(key)}));
        let value = reply["kvs"].get(0)?.get("value").and_then(Value::as_str);
        // An empty value is omitted from the JSON.
        let bytes = B64
            .decode(value.unwrap_or(""))
            .expect("etcd sent bad base64");
        Some(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Deletes `key` through the v3 API (no error when absent).
    pub fn delete_v3(&self, key: &str) {
        self.v3("kv/deleterange", json!({"key": B64.encode(key)}));
    }

    /// Writes `key` = `value` through the v2 API exactly like python-etcd (pcocc) does:
    /// `PUT /v2/keys<key>` with the form body `value=<quote_plus(value)>`.
    pub fn put_v2(&self, key: &str, value: &str) {
        let body = format!("value={}", form_urlencode(value));
        let reply = self.v2(&["-X", "PUT", "--data-binary", &body], key);
        assert!(
            matches!(reply.status, 200 | 201),
            "v2 PUT {key} failed: {reply:?}"
        );
    }

    /// Reads `key` through the v2 API; `None` when absent (404).
    pub fn get_v2(&self, key: &str) -> Option<String> {
        let reply = self.v2(&[], key);
        match reply.status {
            404 => None,
            200 => Some(
                reply.json()["node"]["value"]
                    .as_str()
                    .unwrap_or_else(|| panic!("v2 GET {key}: not a value node: {reply:?}"))
                    .to_string(),
            ),
            _ => panic!("v2 GET {key} failed: {reply:?}"),
        }
    }

    /// Deletes `key` through the v2 API (no error when absent).
    pub fn delete_v2(&self, key: &str) {
        let reply = self.v2(&["-X", "DELETE"], key);
        assert!(
            matches!(reply.status, 200 | 404),
            "v2 DELETE {key} failed: {reply:?}"
        );
    }

    /// Deletes every key under `prefix` with one v3 `deleterange` request (as `etcdctl del
    /// --prefix` does); returns how many keys it removed.
    pub fn delete_prefix_v3(&self, prefix: &str) -> u64 {
        let reply = self.v3(
            "kv/deleterange",
            json!({"key": B64.encode(prefix), "range_end": B64.encode(prefix_end(prefix))}),
        );
        reply["deleted"]
            .as_str()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// Deletes the v2 directory `dir` with everything in it, in one request (as `etcdctl rm
    /// --recursive` does).
    pub fn delete_dir_v2(&self, dir: &str) {
        let dir = dir.trim_end_matches('/');
        let reply = self.v2(&["-X", "DELETE"], &format!("{dir}?recursive=true&dir=true"));
        assert!(
            matches!(reply.status, 200 | 404),
            "v2 recursive DELETE {dir} failed: {reply:?}"
        );
    }

    /// Compacts the v3 history up to the current revision (physically), as an operator's
    /// `etcdctl compact` or auto-compaction does; returns the revision.
    pub fn compact_v3(&self) -> i64 {
        let header = self.v3("kv/range", json!({"key": B64.encode("/"), "limit": 1}));
        let revision: i64 = header["header"]["revision"]
            .as_str()
            .and_then(|r| r.parse().ok())
            .expect("a revision in the range header");
        self.v3(
            "kv/compaction",
            json!({"revision": revision.to_string(), "physical": true}),
        );
        revision
    }

    /// Stops etcd, throws its data away and starts it again on the same ports: an etcd wiped
    /// (or rebuilt from nothing) by an operator. The auth setup, if any, is done again.
    pub fn wipe(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(self.dir.join("data"));
        self.restart();
        self.setup_auth();
    }

    /// A v3 gateway call as root (token cached, renewed once on 401); panics unless 200.
    pub fn v3(&self, rpc: &str, body: Value) -> Value {
        let body = body.to_string();
        let url = self.url(&format!("/v3/{rpc}"));
        for _ in 0..2 {
            let mut args = vec!["-X", "POST", &url, "-d", &body];
            let token = self.opts.auth.as_ref().map(|_| self.root_token());
            let header = token.map(|t| format!("Authorization: {t}"));
            if let Some(header) = &header {
                args.extend(["-H", header]);
            }
            let reply = self.curl(&args);
            if reply.status == 401 && header.is_some() {
                self.token.lock().expect("etcd token lock").take();
                continue;
            }
            assert_eq!(reply.status, 200, "etcd v3 {rpc} {body} failed: {reply:?}");
            return reply.json();
        }
        panic!("etcd v3 {rpc}: token refused twice")
    }

    /// A v2 request on `/v2/keys<key>` as root when auth is on; returns the raw reply.
    pub fn v2(&self, args: &[&str], key: &str) -> CurlReply {
        assert!(key.starts_with('/'), "v2 keys start with '/': {key:?}");
        let url = self.url(&format!("/v2/keys{key}"));
        let creds = self
            .opts
            .auth
            .as_ref()
            .map(|a| format!("{ROOT_USER}:{}", a.root_password));
        let mut all = args.to_vec();
        if let Some(creds) = &creds {
            all.extend(["-u", creds]);
        }
        all.push(&url);
        self.curl(&all)
    }

    /// The auth settings; panics when auth is off.
    fn auth(&self) -> &EtcdAuth {
        self.opts
            .auth
            .as_ref()
            .expect("this etcd was started without auth")
    }

    /// root's v3 token, authenticating first when none is cached.
    fn root_token(&self) -> String {
        let mut token = self.token.lock().expect("etcd token lock");
        if let Some(t) = token.as_ref() {
            return t.clone();
        }
        let body = json!({"name": ROOT_USER, "password": self.auth().root_password}).to_string();
        let reply = self.curl(&[
            "-X",
            "POST",
            &self.url("/v3/auth/authenticate"),
            "-d",
            &body,
        ]);
        assert_eq!(reply.status, 200, "etcd authenticate as root: {reply:?}");
        let t = reply.json()["token"]
            .as_str()
            .expect("authenticate reply has a token")
            .to_string();
        *token = Some(t.clone());
        t
    }

    /// Spawns etcd on the current ports and waits until healthy. Returns false if the process
    /// exited first (the caller reads the log); panics on deadline.
    fn launch(&mut self) -> bool {
        let endpoint = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let data = self.dir.join("data");
        let mut cmd = Command::new("etcd");
        cmd.args(["--name", &self.name, "--initial-cluster-token", &self.name])
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen-client-urls", &endpoint])
            .args(["--advertise-client-urls", &endpoint])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("{}={peer}", self.name)])
            .args(["--bcrypt-cost", "4"])
            // A single member always wins its election; short timeouts make (re)starts fast.
            .args(["--heartbeat-interval", "10", "--election-timeout", "100"])
            .env_remove("ETCD_CONFIG_FILE")
            .stdin(Stdio::null());
        if self.opts.v2 {
            cmd.arg("--enable-v2");
        }
        if let Some(tls) = &self.tls {
            cmd.arg("--cert-file")
                .arg(&tls.server_cert)
                .arg("--key-file")
                .arg(&tls.server_key)
                .arg("--trusted-ca-file")
                .arg(&tls.ca)
                .arg("--client-cert-auth");
        }
        cmd.args(&self.opts.extra_args);
        let mut proc = Proc::spawn("etcd", cmd, self.dir.path());
        let health = self.url("/health");
        let what = format!("etcd {} at {endpoint} to report healthy", self.name);
        let log_path = proc.stderr_path().to_path_buf();
        let log_tail = || {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            format!("--- etcd log tail ---\n{}", tail(&log, 30))
        };
        let tls = self.tls.clone();
        let healthy = wait_for(&what, START_TIMEOUT, log_tail, || {
            if proc.exited().is_some() {
                return Some(false);
            }
            let mut args: Vec<String> = tls.iter().flat_map(TlsFiles::curl_args).collect();
            args.extend(["--max-time".into(), "2".into(), health.clone()]);
            let reply = curl(&args);
            (reply.status == 200 && reply.body.contains(r#""health":"true""#)).then_some(true)
        });
        // When it exited, the caller decides between retrying and panicking with the log.
        self.proc = Some(proc);
        healthy
    }

    /// Creates the users and roles described on [`EtcdAuth`] and enables auth (v2 first, then v3).
    fn setup_auth(&self) {
        let Some(auth) = &self.opts.auth else { return };
        let root_creds = format!("{ROOT_USER}:{}", auth.root_password);
        let v2_read = format!("{PKEYS_PREFIX}*");
        if self.opts.v2 {
            let role = json!({"role": READER_ROLE,
                "permissions": {"kv": {"read": [v2_read], "write": []}}});
            let reader_role_path = format!("roles/{READER_ROLE}");
            let root = json!({"user": ROOT_USER, "password": auth.root_password});
            let reader = json!({"user": READER_USER, "password": auth.reader_password});
            let grant = json!({"user": READER_USER, "grant": [READER_ROLE]});
            // (method, path under /v2/auth/, body, as root)
            let steps = [
                ("PUT", "users/root", root.to_string(), false),
                ("PUT", reader_role_path.as_str(), role.to_string(), false),
                ("PUT", "users/reader", reader.to_string(), false),
                ("PUT", "users/reader", grant.to_string(), false),
                ("PUT", "enable", String::new(), false),
                ("DELETE", "roles/guest", String::new(), true),
            ];
            for (method, path, body, as_root) in &steps {
                let url = self.url(&format!("/v2/auth/{path}"));
                let mut args = vec!["-X", method, &url];
                if !body.is_empty() {
                    args.extend(["-d", body]);
                }
                if *as_root {
                    args.extend(["-u", &root_creds]);
                }
                let reply = self.curl(&args);
                assert!(
                    (200..300).contains(&reply.status),
                    "etcd v2 auth setup {method} {path} failed: {reply:?}"
                );
            }
        }
        let range_end = prefix_end(PKEYS_PREFIX);
        let steps = [
            (
                "user/add",
                json!({"name": ROOT_USER, "password": auth.root_password}),
            ),
            ("user/grant", json!({"user": ROOT_USER, "role": "root"})),
            ("role/add", json!({"name": READER_ROLE})),
            (
                "role/grant",
                json!({"name": READER_ROLE, "perm": {"permType": "READ",
                    "key": B64.encode(PKEYS_PREFIX), "range_end": B64.encode(range_end)}}),
            ),
            (
                "user/add",
                json!({"name": READER_USER, "password": auth.reader_password}),
            ),
            (
                "user/grant",
                json!({"user": READER_USER, "role": READER_ROLE}),
            ),
            ("enable", json!({})),
        ];
        for (rpc, body) in steps {
            let body = body.to_string();
            let reply = self.curl(&[
                "-X",
                "POST",
                &self.url(&format!("/v3/auth/{rpc}")),
                "-d",
                &body,
            ]);
            assert_eq!(
                reply.status, 200,
                "etcd v3 auth setup {rpc} {body} failed: {reply:?}"
            );
        }
    }
}

/// True when etcd's last words say one of its ports was taken (it then exits at once).
fn port_taken(proc: &Proc) -> bool {
    tail(&proc.stderr(), 3).contains("bind: address already in use")
}

/// The v3 `range_end` that selects every key starting with `prefix` (last byte + 1).
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while end.last() == Some(&0xff) {
        end.pop();
    }
    match end.last_mut() {
        Some(last) => *last += 1,
        None => end.push(0),
    }
    end
}
