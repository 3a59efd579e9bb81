//! HA pairs, shared by the fencing tests (`tests/fenced.rs`) and the HA benchmark
//! (`tests/benchmark/ha_bench.rs`): instances of `ufm-pkeyd monitor --leader-election` that the
//! simulator's request log tells apart (each reaches UFM with a token of its own: `who` is
//! `token:<token>`), the election key as etcd holds it, ending a leader's claim behind its back,
//! and [`DeposedMidBatch`], the scenario of issue 16's second finding: a leader whose election
//! key leaves etcd early, in the middle of a long removal.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use super::{
    Api, Daemon, Etcd, PKEYS_PREFIX, Pkeyd, SimOptions, TempDir, UfmSim, host, json_value,
    path_text, pcocc_value, tail_lines, wait_for,
};

/// The election key (`--election-key` default).
pub const ELECTION_KEY: &str = "/ufm-pkeyd/leader";
/// The shared ownership record (`--state-key` default).
pub const STATE_KEY: &str = "/ufm-pkeyd/owned";
/// The UFM access tokens of up to three instances; [`pair_sim`] accepts them all.
pub const TOKENS: [&str; 3] = ["instance-a-token", "instance-b-token", "instance-c-token"];

/// Milliseconds since the Unix epoch: the clock of the simulator's request log (`at_ms`).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A simulator over http that accepts every token of [`TOKENS`] (and basic auth), with more
/// simulator flags (`--site-name NAME`…).
pub fn pair_sim(extra: &[&str]) -> UfmSim {
    let mut extra_args: Vec<String> = Vec::new();
    for token in &TOKENS[1..] {
        extra_args.extend(["--token".to_string(), token.to_string()]);
    }
    extra_args.extend(extra.iter().map(|a| a.to_string()));
    UfmSim::start(SimOptions {
        token: Some(TOKENS[0].to_string()),
        extra_args,
        ..SimOptions::default()
    })
}

/// An etcd for `api`: v3 only, or with the v2 API on.
pub fn etcd_for(api: Api) -> Etcd {
    match api {
        Api::V2 => Etcd::with_v2(),
        Api::V3 => Etcd::plain(),
    }
}

/// `who` in the request log for an instance using `token`.
pub fn who(token: &str) -> String {
    format!("token:{token}")
}

/// One instance's command line: `monitor --leader-election` reaching UFM at `ufm_host` (as an
/// operator writes it: `127.0.0.1:PORT`, `localhost:PORT`…) over http with `token`, etcd at
/// `endpoints` in the `api` keyspace, pcocc's files ignored, its state file
/// `<dir>/<name>.json`; `extra` comes last (timeouts, intervals).
pub struct Instance<'a> {
    pub dir: &'a TempDir,
    pub name: &'a str,
    pub token: &'a str,
    pub ufm_host: &'a str,
    pub endpoints: &'a str,
    pub api: Api,
}

impl Instance<'_> {
    /// Its state file (with leader election: its copy of the shared record).
    pub fn state_file(&self) -> PathBuf {
        self.dir.join(&format!("{}.json", self.name))
    }

    /// Its UFM token file (written on each call, 0600 as the daemon wants a secret file).
    fn token_file(&self) -> String {
        use std::os::unix::fs::PermissionsExt as _;
        let file = self.dir.write(
            &format!("{}.token", self.name),
            &format!("{}\n", self.token),
        );
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
            .expect("making the token file 0600");
        path_text(&file)
    }

    /// The command line, `extra` last.
    pub fn pkeyd(&self, extra: &[&str]) -> Pkeyd {
        self.command("monitor", extra)
    }

    /// `ufm-pkeyd state` (the ownership record as this instance sees it), with `extra`.
    pub fn state_command(&self, extra: &[&str]) -> Pkeyd {
        self.command("state", extra)
    }

    /// `ufm-pkeyd SUBCOMMAND` with this instance's UFM, etcd and state options, `extra` last.
    fn command(&self, subcommand: &str, extra: &[&str]) -> Pkeyd {
        let state = path_text(&self.state_file());
        let token_file = self.token_file();
        let mut args = vec![
            subcommand,
            "--no-pcocc",
            "--ufm-host",
            self.ufm_host,
            "--http",
            "--ufm-token-file",
            &token_file,
            "--etcd-endpoints",
            self.endpoints,
            "--etcd-api",
            self.api.flag(),
            "--state-file",
            &state,
            "--leader-election",
        ];
        args.extend_from_slice(extra);
        Pkeyd::new(&args)
    }
}

/// How many times `daemon` has said it became the leader.
pub fn terms(daemon: &Daemon) -> usize {
    daemon.stderr().matches("is now the leader").count()
}

/// How many times `daemon` has said it lost the leadership.
pub fn losses(daemon: &Daemon) -> usize {
    daemon.stderr().matches("lost the leadership").count()
}

/// Waits until `daemon` says it became the leader for the `term`-th time, looking every 5 ms;
/// returns [`now_ms`] when it was seen: the moment of the election, late by a few ms at most.
pub fn wait_term(daemon: &Daemon, term: usize, timeout: Duration) -> u64 {
    let start = Instant::now();
    loop {
        if terms(daemon) >= term {
            return now_ms();
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {:.1} s waiting for election #{term}\n--- ufm-pkeyd stderr tail ---\n{}",
            timeout.as_secs_f64(),
            tail_lines(&daemon.stderr(), 40)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The election key as etcd holds it: the holder's value and, with v3, its lease ID.
#[derive(Debug, Clone)]
pub struct Holder {
    pub value: String,
    pub lease: Option<String>,
}

impl Holder {
    /// Whether the key names the process `pid` (the identity is `<host>:<pid>`).
    pub fn is(&self, pid: u32) -> bool {
        self.value.ends_with(&format!(":{pid}"))
    }
}

/// Who holds the election key, read directly from etcd; `None` when the key is absent.
pub fn election_holder(etcd: &Etcd, api: Api) -> Option<Holder> {
    match api {
        Api::V2 => etcd
            .get_v2(ELECTION_KEY)
            .map(|value| Holder { value, lease: None }),
        Api::V3 => {
            let reply = etcd.v3("kv/range", json!({"key": B64.encode(ELECTION_KEY)}));
            let kv = reply["kvs"].get(0)?;
            let value = B64
                .decode(kv["value"].as_str().unwrap_or(""))
                .expect("etcd sent bad base64");
            Some(Holder {
                value: String::from_utf8_lossy(&value).into_owned(),
                lease: kv["lease"].as_str().map(str::to_string),
            })
        }
    }
}

/// Ends the leader's claim behind its back, as an etcd that expires a key early does: v2
/// deletes the election key, v3 revokes the lease attached to it (which deletes the key).
/// Returns what the key held.
pub fn end_claim(etcd: &Etcd, api: Api) -> Holder {
    let holder = election_holder(etcd, api).expect("ending a claim: nobody holds the key");
    match api {
        Api::V2 => etcd.delete_v2(ELECTION_KEY),
        Api::V3 => {
            let lease = holder.lease.as_deref().expect("a v3 claim has a lease");
            etcd.v3("lease/revoke", json!({ "ID": lease }));
        }
    }
    holder
}

/// Writes the pcocc entry `pkey` with `hosts` the way this keyspace's writer does.
pub fn put_hosts(etcd: &Etcd, api: Api, pkey: &str, hosts: &[u64]) {
    let key = format!("{PKEYS_PREFIX}{pkey}");
    match api {
        Api::V2 => etcd.put_v2(&key, &pcocc_value(hosts, &[])),
        Api::V3 => etcd.put_v3(&key, &json_value(hosts, &[])),
    }
}

/// Deletes the pcocc entry `pkey`.
pub fn delete_entry(etcd: &Etcd, api: Api, pkey: &str) {
    let key = format!("{PKEYS_PREFIX}{pkey}");
    match api {
        Api::V2 => etcd.delete_v2(&key),
        Api::V3 => etcd.delete_v3(&key),
    }
}

/// The GUIDs (16 hex digits) of `pkey` in UFM, sorted; `None` when UFM has no such partition.
pub fn ufm_guids(sim: &UfmSim, pkey: &str) -> Option<Vec<String>> {
    let state = sim.state();
    let guids = state.get(pkey)?.get("guids")?.as_array()?;
    let mut guids: Vec<String> = guids
        .iter()
        .filter_map(|g| g["guid"].as_str().map(str::to_string))
        .collect();
    guids.sort();
    Some(guids)
}

/// `hosts` as UFM lists them (16 hex digits), sorted.
pub fn guid_names(hosts: &[u64]) -> Vec<String> {
    let mut names: Vec<String> = hosts.iter().map(|g| format!("{g:016x}")).collect();
    names.sort();
    names
}

pub fn at_ms(entry: &Value) -> u64 {
    entry["at_ms"].as_u64().unwrap_or(0)
}

pub fn method(entry: &Value) -> &str {
    entry["method"].as_str().unwrap_or("")
}

/// One request log entry in a line, for messages.
pub fn show(entry: &Value) -> String {
    format!(
        "{} {} {} {} by {}",
        at_ms(entry),
        entry["method"].as_str().unwrap_or(""),
        entry["route"].as_str().unwrap_or(""),
        entry["pkey"].as_str().unwrap_or(""),
        entry["who"].as_str().unwrap_or("")
    )
}

/// The write requests (anything but GET) the instance using `token` sent, oldest first.
pub fn writes_by(log: &[Value], token: &str) -> Vec<Value> {
    let who = who(token);
    log.iter()
        .filter(|e| e["who"].as_str() == Some(who.as_str()) && method(e) != "GET")
        .cloned()
        .collect()
}

// ---------------------------------------------------------------------------------------------
// A leader deposed in the middle of a batch (issue 16, finding 2)
// ---------------------------------------------------------------------------------------------

/// The large partition: one host that stays and [`REMOVED`] that are removed in batches.
pub const BIG: &str = "0x1c00";
/// GUIDs removed: five batches of 200.
pub const REMOVED: u64 = 1_000;
/// How long the simulator holds each removal batch: the removal lasts a few seconds.
pub const BATCH_DELAY_MS: u64 = 600;
/// The instances' settings: a TTL long enough that a clock-based fence would let the deposed
/// leader go on for seconds (it renews every 3 s), UFM and etcd timeouts within what the code
/// before issue 16 allowed (a third of the TTL).
pub const DEPOSED_FLAGS: [&str; 8] = [
    "--election-ttl",
    "9",
    "--ufm-timeout",
    "3",
    "--etcd-timeout",
    "3",
    "--poll-interval",
    "60",
];

/// How long the simulator holds the batch that lands after the successor's first reads: more
/// than a standby needs to win a free key (half a second) and read, less than `ufm-timeout`.
pub const LANDS_LATE_MS: u64 = 2_000;

/// When etcd wants the removed GUIDs back in a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Regrowth {
    /// Once the successor is elected.
    OnceElected,
    /// While the deposed leader's first batch is in flight, before its claim ends.
    InFlight,
}

/// A new leader's first write waits `ufm-timeout` (3 s in [`DEPOSED_FLAGS`]) and a margin
/// (half a second, or a second) after its election: a run is settled only past this.
pub const FIRST_WRITE_WAIT_MS: u64 = 4_000;

/// What one run of [`DeposedMidBatch::run`] saw.
#[derive(Debug, Clone)]
pub struct Deposition {
    /// Removal batches the deposed leader sent in all.
    pub deposed_batches: usize,
    /// Its write requests that reached UFM after its successor was elected.
    pub late_writes: Vec<String>,
    /// Of them, removal batches.
    pub late_batches: usize,
    /// From the end of the claim to the successor's election, ms.
    pub election_ms: u64,
    /// From the successor's election to its first write, ms.
    pub first_write_ms: Option<u64>,
    /// The successor's removal batches of the large partition sent more than a second after
    /// etcd wanted its GUIDs back: a plan older than etcd's last change.
    pub stale_removals: Vec<String>,
    /// Whether UFM ended holding exactly what etcd wants (within the run's deadline), and
    /// what it held then.
    pub converged: bool,
    pub final_guids: usize,
    /// The deposed leader's and the successor's log tails, for messages.
    pub context: String,
}

/// Two instances, one etcd, one simulator and the large partition; each [`run`] deposes the
/// current leader in the middle of its removal, and the roles swap.
///
/// [`run`]: DeposedMidBatch::run
pub struct DeposedMidBatch {
    pub api: Api,
    pub etcd: Etcd,
    pub sim: UfmSim,
    pub members: Vec<Daemon>,
    pub leader: usize,
    _dir: TempDir,
}

impl DeposedMidBatch {
    /// Starts the pair (instance 0 first, so it leads) and waits until UFM holds the large
    /// partition with every member.
    pub fn start(api: Api) -> DeposedMidBatch {
        let etcd = etcd_for(api);
        let sim = pair_sim(&[]);
        let dir = TempDir::new("deposed");
        let endpoint = etcd.endpoint();
        let ufm = sim.host_port();
        let instance = |i: usize| Instance {
            dir: &dir,
            name: ["a", "b"][i],
            token: TOKENS[i],
            ufm_host: &ufm,
            endpoints: &endpoint,
            api,
        };
        let mut first = instance(0).pkeyd(&DEPOSED_FLAGS).spawn();
        first.wait_for_stderr("is now the leader", Duration::from_secs(15));
        let mut second = instance(1).pkeyd(&DEPOSED_FLAGS).spawn();
        second.wait_for_stderr("standing by", Duration::from_secs(15));
        let pair = DeposedMidBatch {
            api,
            etcd,
            sim,
            members: vec![first, second],
            leader: 0,
            _dir: dir,
        };
        put_hosts(&pair.etcd, api, BIG, &pair.all_hosts());
        pair.wait_full("the leader to create the large partition");
        pair
    }

    /// Every host of the large partition; the first stays.
    fn all_hosts(&self) -> Vec<u64> {
        (1..=REMOVED + 1).map(host).collect()
    }

    fn wait_full(&self, what: &str) {
        let want = guid_names(&self.all_hosts());
        wait_for(
            what,
            Duration::from_secs(60),
            || self.context(),
            || (ufm_guids(&self.sim, BIG).as_ref() == Some(&want)).then_some(()),
        );
    }

    /// Both instances' log tails.
    pub fn context(&self) -> String {
        self.members
            .iter()
            .zip(["A", "B"])
            .map(|(d, name)| format!("--- {name} ---\n{}", tail_lines(&d.stderr(), 30)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// One run: etcd asks for the removal of [`REMOVED`] GUIDs, every removal batch taking
    /// [`BATCH_DELAY_MS`]; once the leader's first batch has reached UFM its claim is ended
    /// (v2: key deleted, v3: lease revoked); once the standby is elected, etcd wants every
    /// GUID back (the job grew again), so that a late removal by the deposed leader would
    /// take away GUIDs the new leader just put back. Waits (up to `settle`) for UFM to hold
    /// exactly what etcd wants and for the deposed leader to say it lost the leadership.
    pub fn run(&mut self, settle: Duration) -> Deposition {
        self.run_with(settle, BATCH_DELAY_MS, Regrowth::OnceElected)
    }

    /// Like [`DeposedMidBatch::run`], but the job grows back while the leader's first batch
    /// is still held by UFM ([`LANDS_LATE_MS`]), before the claim ends: the successor reads
    /// etcd and UFM while that batch is still in flight, and it lands afterwards.
    pub fn run_landing_after_successor_read(&mut self, settle: Duration) -> Deposition {
        self.run_with(settle, LANDS_LATE_MS, Regrowth::InFlight)
    }

    fn run_with(&mut self, settle: Duration, delay_ms: u64, regrowth: Regrowth) -> Deposition {
        let (leader, standby) = (self.leader, 1 - self.leader);
        let (old_token, new_token) = (TOKENS[leader], TOKENS[standby]);
        let term = terms(&self.members[standby]) + 1;
        let lost = losses(&self.members[leader]) + 1;
        self.sim.clear_requests_log();
        self.sim.add_faults(json!([{
            "method": "DELETE", "route": "/resources/pkeys/{pkey}/guids",
            "delay_ms": delay_ms
        }]));
        put_hosts(&self.etcd, self.api, BIG, &self.all_hosts()[..1]);
        wait_for(
            "the leader's first removal batch",
            Duration::from_secs(20),
            || self.context(),
            || {
                let log = self.sim.requests_log();
                (writes_by(&log, old_token)
                    .iter()
                    .any(|e| method(e) == "DELETE"))
                .then_some(())
            },
        );
        if regrowth == Regrowth::InFlight {
            put_hosts(&self.etcd, self.api, BIG, &self.all_hosts());
        }
        let ended = now_ms();
        let holder = end_claim(&self.etcd, self.api);
        assert!(
            holder.is(self.members[leader].pid()),
            "the election key named {holder:?}, not the leader (pid {})",
            self.members[leader].pid()
        );
        let elected = wait_term(&self.members[standby], term, Duration::from_secs(15));
        self.sim.clear_faults();
        let mut regrown = ended;
        if regrowth == Regrowth::OnceElected {
            // Once the successor has started its first pass (it reads UFM after etcd), so
            // that its first plan is the removal etcd then wanted.
            wait_for(
                "the new leader to read UFM",
                Duration::from_secs(5),
                || self.context(),
                || {
                    let log = self.sim.requests_log();
                    log.iter()
                        .any(|e| {
                            e["who"].as_str() == Some(who(new_token).as_str())
                                && at_ms(e) >= elected
                        })
                        .then_some(())
                },
            );
            regrown = now_ms();
            put_hosts(&self.etcd, self.api, BIG, &self.all_hosts());
        }

        // Settled: the deposed leader said it lost the leadership, its last request has been
        // answered (each is held `delay_ms`), the successor's first-write wait is over,
        // and UFM holds what etcd wants.
        let want = guid_names(&self.all_hosts());
        let deadline = Instant::now() + settle;
        let mut converged = false;
        while Instant::now() < deadline {
            let log = self.sim.requests_log();
            let old_last = writes_by(&log, old_token).last().map_or(0, at_ms);
            let settled_at = (old_last + delay_ms).max(elected + FIRST_WRITE_WAIT_MS) + 200;
            let done = now_ms() >= settled_at
                && losses(&self.members[leader]) >= lost
                && ufm_guids(&self.sim, BIG).as_ref() == Some(&want);
            if done {
                converged = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let final_guids = ufm_guids(&self.sim, BIG).map_or(0, |g| g.len());
        let log = self.sim.requests_log();
        let old_writes = writes_by(&log, old_token);
        let late: Vec<&Value> = old_writes.iter().filter(|e| at_ms(e) >= elected).collect();
        let first_write_ms = writes_by(&log, new_token)
            .first()
            .map(|e| at_ms(e).saturating_sub(elected));
        // A pass asks every second of writes whether etcd moved on (and makes way if so).
        let stale_removals: Vec<String> = writes_by(&log, new_token)
            .iter()
            .filter(|e| method(e) == "DELETE" && at_ms(e) > regrown + 1_000)
            .map(show)
            .collect();
        let deletes = |entries: &mut dyn Iterator<Item = &Value>| {
            entries.filter(|e| method(e) == "DELETE").count()
        };
        let deposition = Deposition {
            deposed_batches: deletes(&mut old_writes.iter()),
            late_writes: late.iter().map(|e| show(e)).collect(),
            late_batches: deletes(&mut late.iter().copied()),
            election_ms: elected.saturating_sub(ended),
            first_write_ms,
            stale_removals,
            converged,
            final_guids,
            context: format!(
                "{}\n--- UFM requests of the run ---\n{}",
                self.context(),
                log.iter().map(show).collect::<Vec<_>>().join("\n")
            ),
        };
        self.leader = standby;
        deposition
    }
}
