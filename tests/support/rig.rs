//! A test rig for the sync engine: one etcd (v2 keyspace with pcocc's Python-literal values, or
//! v3 with JSON), one UFM simulator, a state directory, and the `ufm-pkeyd` command lines that
//! tie them together; plus a `$NOTIFY_SOCKET` that records the daemon's sd_notify messages (a
//! `STATUS=` ends every pass) and the entry and partition shapes both sides use.

use std::collections::BTreeMap;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{
    Daemon, Etcd, PKEYS_PREFIX, POLL, Pkeyd, Run, TempDir, UfmSim, secs, wait_for, wait_until,
};

/// Which etcd keyspace the daemon follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    /// pcocc's keyspace: written with `put_v2`, values are Python dict literals.
    V2,
    /// The v3 keyspace: written with `put_v3`, values are JSON.
    V3,
}

impl Api {
    pub fn flag(self) -> &'static str {
        match self {
            Api::V2 => "v2",
            Api::V3 => "v3",
        }
    }
}

/// A host port GUID (index0 off in UFM).
pub fn host(n: u64) -> u64 {
    0x0002_c903_000e_0000 + n
}

/// A virtual function GUID (index0 on in UFM).
pub fn vf(n: u64) -> u64 {
    0xc0cc_2000_0000_0000 + n
}

/// A GUID as pcocc writes it: `0x` and 16 hex digits.
pub fn guid_text(guid: u64) -> String {
    format!("0x{guid:016x}")
}

/// The value pcocc stores: `str(dict)` in Python.
pub fn pcocc_value(hosts: &[u64], vfs: &[u64]) -> String {
    let list = |guids: &[u64]| {
        guids
            .iter()
            .map(|g| format!("'{}'", guid_text(*g)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "{{'host_guids': [{}], 'vf_guids': [{}]}}",
        list(hosts),
        list(vfs)
    )
}

/// The same entry as JSON.
pub fn json_value(hosts: &[u64], vfs: &[u64]) -> String {
    let list = |guids: &[u64]| guids.iter().map(|g| guid_text(*g)).collect::<Vec<_>>();
    json!({"host_guids": list(hosts), "vf_guids": list(vfs)}).to_string()
}

/// What UFM should hold for an entry: host GUIDs without index0, VF GUIDs with it, all full
/// members, IP over IB on. The shape is the simulator's (`/_sim/state`), so it also seeds it.
pub fn partition(hosts: &[u64], vfs: &[u64]) -> Value {
    let mut members: BTreeMap<String, bool> = BTreeMap::new();
    for guid in hosts {
        members.insert(format!("{guid:016x}"), false);
    }
    for guid in vfs {
        members.insert(format!("{guid:016x}"), true);
    }
    let guids: Vec<Value> = members
        .into_iter()
        .map(|(guid, index0)| json!({"guid": guid, "index0": index0, "membership": "full"}))
        .collect();
    json!({"guids": guids, "ip_over_ib": true})
}

/// One etcd, one simulator, a state directory, and the command lines that tie them together.
pub struct Rig {
    pub etcd: Etcd,
    pub sim: UfmSim,
    pub api: Api,
    pub dir: TempDir,
}

impl Rig {
    /// A fresh etcd (with v2 for `Api::V2`) and an http simulator.
    pub fn new(api: Api) -> Rig {
        Rig::with_sim(api, UfmSim::http())
    }

    pub fn with_sim(api: Api, sim: UfmSim) -> Rig {
        let etcd = match api {
            Api::V2 => Etcd::with_v2(),
            Api::V3 => Etcd::plain(),
        };
        Rig::with(api, etcd, sim)
    }

    pub fn with(api: Api, etcd: Etcd, sim: UfmSim) -> Rig {
        Rig {
            etcd,
            sim,
            api,
            dir: TempDir::new("sync-engine"),
        }
    }

    pub fn state_file(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// `ufm-pkeyd COMMAND` with every connection flag, then `extra`.
    pub fn pkeyd(&self, command: &str, extra: &[&str]) -> Pkeyd {
        self.pkeyd_with_api(command, Some(self.api.flag()), extra)
    }

    /// Like [`Rig::pkeyd`], without `--etcd-api`: the keyspace is the default's (`auto`).
    pub fn pkeyd_default_api(&self, command: &str, extra: &[&str]) -> Pkeyd {
        self.pkeyd_with_api(command, None, extra)
    }

    fn pkeyd_with_api(&self, command: &str, api: Option<&str>, extra: &[&str]) -> Pkeyd {
        let state = self.state_file();
        let mut args: Vec<String> = vec![
            command.into(),
            "--no-pcocc".into(),
            "--ufm-host".into(),
            self.sim.url(),
            "--ufm-user".into(),
            self.sim.user().into(),
            "--ufm-password-file".into(),
            path_text(self.sim.password_file()),
            "--etcd-endpoints".into(),
            self.etcd.endpoint(),
            "--state-file".into(),
            path_text(&state),
        ];
        if let Some(api) = api {
            args.extend(["--etcd-api".into(), api.into()]);
        }
        match self.sim.tls() {
            Some(tls) => args.extend(["--ufm-ca-cert".into(), path_text(&tls.ca)]),
            None => args.push("--http".into()),
        }
        args.extend(extra.iter().map(|a| a.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        Pkeyd::new(&refs)
    }

    /// `ufm-pkeyd ufm` with the simulator's connection flags, then `extra`.
    pub fn ufm_cli(&self, extra: &[&str]) -> Pkeyd {
        let password = path_text(self.sim.password_file());
        let host = self.sim.url();
        let mut args = vec![
            "ufm",
            "--no-pcocc",
            "--ufm-host",
            host.as_str(),
            "--ufm-password-file",
            password.as_str(),
        ];
        let ca = self.sim.tls().map(|tls| path_text(&tls.ca));
        match &ca {
            Some(ca) => args.extend(["--ufm-ca-cert", ca.as_str()]),
            None => args.push("--http"),
        }
        args.extend_from_slice(extra);
        Pkeyd::new(&args)
    }

    /// `ufm-pkeyd sync EXTRA…`, run to completion.
    pub fn sync(&self, extra: &[&str]) -> Run {
        self.pkeyd("sync", extra).run()
    }

    /// `ufm-pkeyd monitor EXTRA…` in the background, notifying `notify`.
    pub fn monitor(&self, extra: &[&str], notify: &Notify) -> Daemon {
        self.pkeyd("monitor", extra)
            .env("NOTIFY_SOCKET", &path_text(&notify.path()))
            .spawn()
    }

    /// Writes the entry `PREFIX + name` the way this keyspace's writer does.
    pub fn put(&self, name: &str, hosts: &[u64], vfs: &[u64]) {
        match self.api {
            Api::V2 => self.put_raw(name, &pcocc_value(hosts, vfs)),
            Api::V3 => self.put_raw(name, &json_value(hosts, vfs)),
        }
    }

    /// Writes `PREFIX + name` = `value` as is.
    pub fn put_raw(&self, name: &str, value: &str) {
        let key = format!("{PKEYS_PREFIX}{name}");
        match self.api {
            Api::V2 => self.etcd.put_v2(&key, value),
            Api::V3 => self.etcd.put_v3(&key, value),
        }
    }

    pub fn delete(&self, name: &str) {
        let key = format!("{PKEYS_PREFIX}{name}");
        match self.api {
            Api::V2 => self.etcd.delete_v2(&key),
            Api::V3 => self.etcd.delete_v3(&key),
        }
    }

    /// Members and IPoIB flag of one partition in UFM, in the shape of [`partition`].
    pub fn partition(&self, pkey: &str) -> Option<Value> {
        let state = self.sim.state();
        let p = state.get(pkey)?;
        Some(json!({"guids": p["guids"], "ip_over_ib": p["ip_over_ib"]}))
    }

    /// The partitions in UFM but the default one.
    pub fn pkeys(&self) -> Vec<String> {
        let state = self.sim.state();
        let map = state.as_object().expect("/_sim/state is an object");
        map.keys().filter(|k| *k != "0x7fff").cloned().collect()
    }

    /// Replaces UFM's partitions (0x7fff stays).
    pub fn seed(&self, partitions: &[(&str, Value)]) {
        let state: serde_json::Map<String, Value> = partitions
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        self.sim.seed(Value::Object(state));
    }

    /// The partitions the state file says are owned (none while it does not exist).
    pub fn owned(&self) -> Vec<String> {
        let text = match std::fs::read_to_string(self.state_file()) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => panic!("reading the state file: {e}"),
        };
        let state: Value = serde_json::from_str(&text).expect("the state file is JSON");
        state["owned"]
            .as_array()
            .expect("the state file has an owned list")
            .iter()
            .map(|p| p.as_str().expect("owned PKeys are strings").to_string())
            .collect()
    }

    /// UFM API requests since the last stats reset, by `"METHOD route"`.
    pub fn ufm_requests(&self) -> BTreeMap<String, u64> {
        let stats = self.sim.stats();
        stats["requests"]
            .as_object()
            .expect("stats have requests")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_u64().expect("counts are numbers")))
            .collect()
    }

    /// UFM requests that change something (anything but GET) since the last stats reset.
    pub fn ufm_writes(&self) -> u64 {
        self.ufm_requests()
            .iter()
            .filter(|(k, _)| !k.starts_with("GET "))
            .map(|(_, n)| n)
            .sum()
    }

    /// Waits until UFM holds `want` for `pkey` (`None`: the partition is gone).
    pub fn wait_partition(
        &self,
        daemon: &Daemon,
        pkey: &str,
        want: Option<&Value>,
        timeout: Duration,
    ) {
        let what = match want {
            Some(v) => format!("UFM partition {pkey} to become {v}"),
            None => format!("UFM partition {pkey} to be deleted"),
        };
        wait_for(
            &what,
            timeout,
            || {
                format!(
                    "UFM has {pkey}: {:?}\n--- ufm-pkeyd stderr ---\n{}",
                    self.partition(pkey),
                    tail_lines(&daemon.stderr(), 40)
                )
            },
            || (self.partition(pkey).as_ref() == want).then_some(()),
        );
    }

    /// The sum of etcd's counters for the requests this keyspace serves: v2 key requests plus
    /// v2 watches (long polls), or v3 Range calls plus Watch streams. Read from `/metrics`, independent of the daemon.
    pub fn etcd_requests(&self) -> f64 {
        let metrics = self.etcd_metrics();
        metrics
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| match self.api {
                // Long polls are not in etcd_http_received_total: they have their own counter.
                Api::V2 => {
                    l.starts_with("etcd_http_received_total{")
                        || l.starts_with("etcd_debugging_store_watch_requests_total ")
                }
                Api::V3 => {
                    l.starts_with("grpc_server_started_total{")
                        && (l.contains("grpc_method=\"Range\"")
                            || l.contains("grpc_method=\"Watch\""))
                }
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// How many watchers etcd has on its store now (the daemon's blocking watch).
    pub fn etcd_watchers(&self) -> f64 {
        let name = match self.api {
            Api::V2 => "etcd_debugging_store_watchers ",
            Api::V3 => "etcd_debugging_mvcc_watcher_total ",
        };
        self.etcd_metrics()
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }

    pub fn etcd_metrics(&self) -> String {
        let reply = self.etcd.curl(&[&self.etcd.url("/metrics")]);
        assert_eq!(reply.status, 200, "etcd /metrics: {reply:?}");
        reply.body
    }

    /// Waits until the daemon sits in its etcd watch (etcd counts a watcher).
    pub fn wait_watching(&self, daemon: &Daemon) {
        wait_for(
            "the daemon to block on its etcd watch",
            secs(5),
            || tail_lines(&daemon.stderr(), 40),
            || (self.etcd_watchers() >= 1.0).then_some(()),
        );
    }
}

/// A path as text (temp paths are UTF-8).
pub fn path_text(path: &Path) -> String {
    path.to_str().expect("temp paths are UTF-8").to_string()
}

/// The last `n` lines of `text`.
pub fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The lines the daemon logged at info level or above (`ufm-pkeyd: info: …`, `warn`,
/// `error`), without the time they start with when stderr is a file.
pub fn info_lines(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .map(log_message)
        .filter(|l| {
            l.starts_with("ufm-pkeyd: info:")
                || l.starts_with("ufm-pkeyd: warn:")
                || l.starts_with("ufm-pkeyd: error:")
        })
        .map(str::to_string)
        .collect()
}

/// A log line without the UTC time it starts with when stderr is not a terminal
/// (`2026-12-07T21:19:23Z ufm-pkeyd: info: …` → `ufm-pkeyd: info: …`).
pub fn log_message(line: &str) -> &str {
    let stamped = line.len() > 21
        && line.as_bytes()[10] == b'T'
        && line.as_bytes()[19] == b'Z'
        && line.as_bytes()[20] == b' ';
    if stamped { &line[21..] } else { line }
}

/// A `$NOTIFY_SOCKET` for the daemon: a datagram socket bound in a temp directory, drained by
/// a thread that keeps every message. (Draining matters: a full socket queue would block the
/// daemon's next notification, as with a hung systemd.)
pub struct Notify {
    pub dir: TempDir,
    received: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
}

impl Notify {
    pub fn new() -> Notify {
        let dir = TempDir::new("notify");
        let socket = UnixDatagram::bind(dir.join("notify")).expect("binding the notify socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("setting a read timeout on the notify socket");
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let received = Arc::clone(&received);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(n) = socket.recv(&mut buf) {
                        let message = String::from_utf8_lossy(&buf[..n]).into_owned();
                        received.lock().expect("notify lock").push(message);
                    }
                }
            })
        };
        Notify {
            dir,
            received,
            stop,
            reader: Some(reader),
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join("notify")
    }

    /// Every message received so far.
    pub fn poll(&self) -> Vec<String> {
        self.received.lock().expect("notify lock").clone()
    }

    /// How many messages so far start with `prefix`.
    pub fn count(&self, prefix: &str) -> usize {
        self.poll().iter().filter(|m| m.starts_with(prefix)).count()
    }

    /// Waits until `count` messages starting with `prefix` have arrived (counting from the
    /// start); returns the last of them.
    pub fn wait(&self, daemon: &Daemon, prefix: &str, count: usize, timeout: Duration) -> String {
        let what = format!("{count} sd_notify message(s) starting with {prefix:?}");
        let stderr = || daemon.stderr();
        let start = Instant::now();
        loop {
            let matching: Vec<String> = self
                .poll()
                .into_iter()
                .filter(|m| m.starts_with(prefix))
                .collect();
            if matching.len() >= count {
                return matching[count - 1].clone();
            }
            assert!(
                start.elapsed() < timeout,
                "timed out after {:.1} s waiting for {what}; received {:?}\n--- ufm-pkeyd stderr ---\n{}",
                timeout.as_secs_f64(),
                self.poll(),
                tail_lines(&stderr(), 40)
            );
            std::thread::sleep(POLL);
        }
    }

    /// Waits (5 s at most) until a message matching `pred` has arrived.
    pub fn wait_message(&self, pred: impl Fn(&str) -> bool) {
        wait_until("an sd_notify message", secs(5), || {
            self.poll().iter().any(|m| pred(m))
        });
    }

    /// Waits for the next `STATUS=` (the end of a pass) after the `seen` ones already counted.
    pub fn next_pass(&self, daemon: &Daemon, seen: &mut usize, timeout: Duration) -> String {
        *seen += 1;
        self.wait(daemon, "STATUS=", *seen, timeout)
    }
}

impl Drop for Notify {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}
