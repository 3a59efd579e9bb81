//! The UFM simulator (`src/bin/ufm-sim`) as a child process, and its `/_sim/*` control API
//! (no auth) through `curl`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use super::{CurlReply, Proc, TempDir, TlsFiles, curl, tail, wait_for};

/// How long the simulator may take to print its listening line.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// How to start the simulator. The default: http, user `admin`, password `123456` (UFM's
/// factory default), no token.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Serve https with a certificate for 127.0.0.1/localhost signed by a fresh test CA
    /// (see [`UfmSim::tls`]).
    pub tls: bool,
    /// Basic-auth user (`--user`).
    pub user: String,
    /// Basic-auth password (`--password`); also written to [`UfmSim::password_file`].
    pub password: String,
    /// An API token the simulator accepts (`--token`).
    pub token: Option<String>,
    /// More simulator flags.
    pub extra_args: Vec<String>,
}

impl SimOptions {
    /// Options for the `nvidia-mock` route set (`--route-set nvidia-mock`): the routes NVIDIA's
    /// UFM mock serves, under `/ufmRestV3` only, authenticated by `token` alone. Its adds need
    /// known ports: see [`UfmSim::set_known_guids`].
    pub fn nvidia_mock(token: &str) -> SimOptions {
        SimOptions {
            token: Some(token.to_string()),
            extra_args: vec!["--route-set".to_string(), "nvidia-mock".to_string()],
            ..SimOptions::default()
        }
    }
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            tls: false,
            user: "admin".to_string(),
            password: "123456".to_string(),
            token: None,
            extra_args: Vec::new(),
        }
    }
}

/// A running simulator on 127.0.0.1. Dropping it kills it and removes its directory.
pub struct UfmSim {
    proc: Option<Proc>,
    opts: SimOptions,
    url: String,
    tls: Option<TlsFiles>,
    password_file: PathBuf,
    dir: TempDir,
}

impl UfmSim {
    /// Starts the simulator on a port the kernel picks and waits for its
    /// `listening on URL` line.
    pub fn start(opts: SimOptions) -> UfmSim {
        let dir = TempDir::new("ufm-sim");
        let tls = opts.tls.then(|| {
            let tls_dir = dir.join("tls");
            std::fs::create_dir(&tls_dir).expect("creating the simulator tls dir");
            TlsFiles::generate(&tls_dir)
        });
        let password_file = dir.write("ufm-password", &format!("{}\n", opts.password));
        let mut sim = UfmSim {
            proc: None,
            opts,
            url: String::new(),
            tls,
            password_file,
            dir,
        };
        sim.launch("127.0.0.1:0");
        sim
    }

    /// A simulator over http with the default options.
    pub fn http() -> UfmSim {
        UfmSim::start(SimOptions::default())
    }

    /// A simulator over https with the default options.
    pub fn https() -> UfmSim {
        UfmSim::start(SimOptions {
            tls: true,
            ..SimOptions::default()
        })
    }

    /// The base URL it printed, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// `127.0.0.1:PORT`.
    pub fn host_port(&self) -> String {
        self.url
            .split_once("://")
            .map(|(_, rest)| rest.trim_end_matches('/').to_string())
            .expect("the simulator URL has a scheme")
    }

    /// The options it was started with (user, password, token…).
    pub fn options(&self) -> &SimOptions {
        &self.opts
    }

    /// The basic-auth user.
    pub fn user(&self) -> &str {
        &self.opts.user
    }

    /// The basic-auth password.
    pub fn password(&self) -> &str {
        &self.opts.password
    }

    /// A file holding the password followed by a newline.
    pub fn password_file(&self) -> &Path {
        &self.password_file
    }

    /// The CA and certificates when started with `tls: true` (`ca` is what clients trust).
    pub fn tls(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }

    /// The simulator's log (stderr) so far.
    pub fn log(&self) -> String {
        self.proc.as_ref().map(Proc::stderr).unwrap_or_default()
    }

    /// The process, while it runs.
    pub fn process(&mut self) -> Option<&mut Proc> {
        self.proc.as_mut()
    }

    /// Kills the simulator: UFM becomes unreachable (connection refused).
    pub fn stop(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            proc.kill();
        }
    }

    /// Starts it again on the same port (killing it first if it runs). Its in-memory state is
    /// lost: seed it again if the test needs it.
    pub fn restart(&mut self) {
        self.stop();
        let listen = self.host_port();
        self.launch(&listen);
    }

    /// Runs curl with `args` (which include the URL) trusting the simulator's CA when on https.
    pub fn curl(&self, args: &[&str]) -> CurlReply {
        let mut all: Vec<String> = Vec::new();
        if let Some(tls) = &self.tls {
            all.extend(["--cacert".to_string(), path_str(&tls.ca).to_string()]);
        }
        all.extend(args.iter().map(|a| a.to_string()));
        curl(&all)
    }

    /// `GET /_sim/stats`.
    pub fn stats(&self) -> Value {
        self.control("GET", "/_sim/stats", None)
    }

    /// `POST /_sim/stats/reset`.
    pub fn reset_stats(&self) {
        self.control("POST", "/_sim/stats/reset", None);
    }

    /// The next `count` API requests fail with HTTP `status` (`POST /_sim/fail`).
    pub fn fail_next(&self, count: u32, status: u16) {
        self.control(
            "POST",
            "/_sim/fail",
            Some(json!({"count": count, "status": status})),
        );
    }

    /// The next `count` API requests are delayed by `ms` milliseconds (`POST /_sim/stall`).
    pub fn stall_next(&self, count: u32, ms: u64) {
        self.control(
            "POST",
            "/_sim/stall",
            Some(json!({"count": count, "ms": ms})),
        );
    }

    /// Response body bytes sent per `"<METHOD> <route>"` key (`/_sim/stats` `bytes`), e.g.
    /// `bytes()["GET /resources/pkeys"]`.
    pub fn bytes(&self) -> Value {
        self.stats()["bytes"].clone()
    }

    /// All response body bytes sent since the start or the last [`UfmSim::reset_stats`].
    pub fn bytes_total(&self) -> u64 {
        self.stats()["bytes_total"].as_u64().unwrap_or(0)
    }

    /// Appends fault rules (`POST /_sim/faults {"rules": rules}`); `rules` is a JSON array of
    /// rule objects, e.g. `json!([{"route": "/resources/pkeys", "delay_ms": 500}])`. A rule
    /// selects by `method`, `route`, `pkey`, `query`, lives `count` requests or `seconds`, and
    /// does `delay_ms` and at most one of: `status` (Apache's error page), `page` (`"apache"`,
    /// `"login"` or `"text"` instead of the API, with `status` or 200), `noop`, `reset`,
    /// `reset_after`, `apply_after_ms` (no answer; the write is applied that late), `body`
    /// (with `status` or 200; see `src/bin/ufm-sim/faults.rs`). Returns the new rules' ids.
    /// Panics (with the simulator's one-line reason) on a bad rule.
    pub fn add_faults(&self, rules: Value) -> Vec<u64> {
        let reply = self.control("POST", "/_sim/faults", Some(json!({ "rules": rules })));
        reply["added"]
            .as_array()
            .map(|ids| ids.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default()
    }

    /// Every API request since the start or the last [`UfmSim::clear_requests_log`], oldest first:
    /// `{"at_ms", "method", "route", "pkey", "who"}` (`who`: the user, or `token:<token>`).
    pub fn requests_log(&self) -> Vec<Value> {
        match self.control("GET", "/_sim/log", None) {
            Value::Array(entries) => entries,
            other => panic!("/_sim/log is not a list: {other}"),
        }
    }

    /// Empties the request log (`DELETE /_sim/log`).
    pub fn clear_requests_log(&self) {
        self.control("DELETE", "/_sim/log", None);
    }

    /// The active fault rules (with `remaining`, `seconds_left`, `hits`), the outage and the
    /// `/_sim/fail` and `/_sim/stall` counters (`GET /_sim/faults`).
    pub fn faults(&self) -> Value {
        self.control("GET", "/_sim/faults", None)
    }

    /// Clears every fault: rules, the outage, and the [`UfmSim::fail_next`] and
    /// [`UfmSim::stall_next`] counters (`DELETE /_sim/faults`).
    pub fn clear_faults(&self) {
        self.control("DELETE", "/_sim/faults", None);
    }

    /// Starts an outage of `seconds` (`POST /_sim/outage`). `mode` is `"refuse"` (the port is
    /// closed, the control API included, and open connections are dropped; afterwards it
    /// listens on the same port with its state intact), `"503"` (Apache's 503 page for every
    /// API request) or `"hang"` (API requests are held until the end, then answered).
    pub fn outage(&self, seconds: f64, mode: &str) {
        self.control(
            "POST",
            "/_sim/outage",
            Some(json!({"seconds": seconds, "mode": mode})),
        );
    }

    /// The current outage (`GET /_sim/outage`): `{"active": false}` or `{"active": true,
    /// "mode", "seconds", "seconds_left"}`. Panics during a `refuse` outage (unreachable).
    pub fn outage_status(&self) -> Value {
        self.control("GET", "/_sim/outage", None)
    }

    /// Sets the port inventory (`POST /_sim/known_guids`): the GUIDs an add may name under
    /// `unknown_guid=reject404` and in the `nvidia-mock` route set.
    pub fn set_known_guids(&self, guids: &[&str]) {
        self.control("POST", "/_sim/known_guids", Some(json!(guids)));
    }

    /// UFM drops these GUIDs from every partition on its own, deleting partitions left
    /// empty (`POST /_sim/drop_guids`). Returns `{"removed": n, "deleted_partitions": [...]}`.
    pub fn drop_guids(&self, guids: &[&str]) -> Value {
        self.control("POST", "/_sim/drop_guids", Some(json!(guids)))
    }

    /// One UFM API call as a client makes it, with the basic-auth credentials: `method` on
    /// `path` (e.g. `/ufmRest/resources/pkeys`), `body` sent as JSON when given.
    pub fn api(&self, method: &str, path: &str, body: Option<&Value>) -> CurlReply {
        let creds = format!("{}:{}", self.opts.user, self.opts.password);
        self.api_call(&["-u", &creds], method, path, body)
    }

    /// [`UfmSim::api`] with the access token instead (`Authorization: Basic <token>`, for
    /// `/ufmRestV3`). Panics when the simulator was started without a token.
    pub fn token_api(&self, method: &str, path: &str, body: Option<&Value>) -> CurlReply {
        let token = self.opts.token.as_deref().expect("started with a token");
        let header = format!("Authorization: Basic {token}");
        self.api_call(&["-H", &header], method, path, body)
    }

    fn api_call(&self, auth: &[&str], method: &str, path: &str, body: Option<&Value>) -> CurlReply {
        let url = format!("{}{path}", self.url);
        let body = body.map(Value::to_string);
        let mut args: Vec<&str> = auth.to_vec();
        args.extend(["-X", method, &url]);
        if let Some(body) = &body {
            args.extend(["-H", "Content-Type: application/json", "-d", body]);
        }
        self.curl(&args)
    }

    /// The simulator's behaviour settings (`GET /_sim/config`).
    pub fn config(&self) -> Value {
        self.control("GET", "/_sim/config", None)
    }

    /// Changes the simulator's behaviour (`POST /_sim/config`), e.g. `{"route_set":
    /// "nvidia-mock"}`, `{"ipoib_on_add": "follow"}`, `{"last_updated_format": "ctime"}`.
    pub fn set_mode(&self, config: Value) {
        self.control("POST", "/_sim/config", Some(config));
    }

    /// The simulated UFM state (`GET /_sim/state`).
    pub fn state(&self) -> Value {
        self.control("GET", "/_sim/state", None)
    }

    /// Replaces the simulated UFM state (`POST /_sim/state`).
    pub fn seed(&self, state: Value) {
        self.control("POST", "/_sim/state", Some(state));
    }

    /// Back to the initial state, config and stats (`POST /_sim/reset`).
    pub fn reset(&self) {
        self.control("POST", "/_sim/reset", None);
    }

    /// One control API call; panics unless 2xx. Returns the JSON body (`Null` when empty).
    fn control(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.url);
        let body = body.map(|b| b.to_string());
        let mut args = vec!["-X", method, &url];
        if let Some(body) = &body {
            args.extend(["-H", "Content-Type: application/json", "-d", body]);
        }
        let reply = self.curl(&args);
        assert!(
            (200..300).contains(&reply.status),
            "simulator {method} {path} failed: {reply:?}\n{}",
            self.proc.as_ref().map(Proc::log_tail).unwrap_or_default()
        );
        if reply.body.trim().is_empty() {
            Value::Null
        } else {
            reply.json()
        }
    }

    /// Spawns the simulator on `listen` and waits for its listening line.
    fn launch(&mut self, listen: &str) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ufm-sim"));
        // `-v` logs every request (handy in failure tails). With `--exit-on-stdin-eof` and a
        // stdin pipe that the `Child` holds, the simulator also exits if the test process dies.
        cmd.args(["--listen", listen, "--user", &self.opts.user])
            .args(["--password", &self.opts.password])
            .args(["--verbose", "--exit-on-stdin-eof"])
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped());
        if let Some(tls) = &self.tls {
            cmd.arg("--tls-cert")
                .arg(&tls.server_cert)
                .arg("--tls-key")
                .arg(&tls.server_key);
        }
        if let Some(token) = &self.opts.token {
            cmd.args(["--token", token]);
        }
        cmd.args(&self.opts.extra_args);
        // stdout is appended across restarts: look only at lines written after this spawn.
        let seen = self.proc_stdout_lines();
        let mut proc = Proc::spawn("ufm-sim", cmd, self.dir.path());
        let stderr_path = proc.stderr_path().to_path_buf();
        let log_tail = || {
            let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            format!("--- ufm-sim stderr tail ---\n{}", tail(&log, 30))
        };
        let url = wait_for(
            "ufm-sim to print 'listening on URL'",
            START_TIMEOUT,
            log_tail,
            || {
                let out = proc.stdout();
                let line = out
                    .lines()
                    .skip(seen)
                    .find_map(|l| l.strip_prefix("listening on "))
                    .map(|u| u.trim().to_string());
                if line.is_none() && proc.exited().is_some() {
                    panic!("ufm-sim exited before listening:\n{}", proc.log_tail());
                }
                line
            },
        );
        self.url = url;
        self.proc = Some(proc);
    }

    /// How many lines the stdout log holds so far (it is appended across restarts).
    fn proc_stdout_lines(&self) -> usize {
        std::fs::read_to_string(self.dir.join("ufm-sim.stdout"))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }
}

/// A temp path as `&str` (they are always UTF-8).
fn path_str(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}
