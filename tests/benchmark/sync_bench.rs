//! `make bench` (`cargo bench --bench sync`): ufm-pkeyd against a real etcd and the UFM
//! simulator, at pcocc's scale (issues #5, #10 and #15). It prints a table and writes
//! `target/bench/results.json`.
//!
//! 1. Initial sync of 2,000 partitions x 64 GUIDs (16 host + 48 VF, pcocc's Python-literal
//!    values written through etcd v2) into an empty UFM: wall time, UFM requests per partition,
//!    peak RSS. Then a VF-only shape (500 x 64 VF GUIDs) for its requests per partition.
//! 2. Idle full passes (`--resync-interval 5`, 12 of them): etcd and UFM requests per full
//!    pass, CPU per pass.
//! 3. Propagation latency of 200 single-entry changes (`--poll-interval 60`, so only the watch
//!    explains fast propagation), through v2 and v3: each is a targeted pass.
//! 4. One partition growing from 0 to 10,000 GUIDs and shrinking back, 1,000 at a time: time
//!    and UFM requests per step (removes are batched, never one request per GUID).
//! 5. Slow UFM (issue #10): the same 2,000 x 64 partitions, the listing delayed by 3 s and
//!    every write by 200 ms (persistent fault rules of the simulator), etcd v3, the daemon at
//!    its default settings: idle UFM bytes and requests per minute, single-change latency, a
//!    burst of 50 new partitions, recovery after 75 s UFM outages (connections refused, then
//!    503s) and 20 consecutive 503s on writes.
//! 6. Issue #15, on the same slow fabric and daemon: what a single change costs UFM now that
//!    every written partition is read back (also counted in rows 3); an unrelated new job
//!    behind 50 queued writes of 1.5 s each; 1,500 keys deleted by one v3 range delete (the
//!    guard's refusal, and a new job written 1 s later).
//!
//! The benchmark's own reads of UFM go through `/ufmRestV3` with an access token, so the
//! simulator's request log tells them (`who` = `token:...`) from the daemon's (`admin`).
//!
//! A missed target prints FAIL and the program still exits 0; a broken benchmark (a process
//! that does not start, a sync that never completes, wrong data in UFM) panics and exits
//! non-zero. Every process started is killed on the way out (the harness's `Drop`s).

#[path = "../support/mod.rs"]
mod support;
mod table;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use support::{Daemon, Etcd, PKEYS_PREFIX, Pkeyd, SimOptions, TempDir, UfmSim, form_urlencode};
use table::Table;

/// The main data set: partitions, host GUIDs and VF GUIDs per partition.
const PARTITIONS: usize = 2_000;
const HOSTS: usize = 16;
const VFS: usize = 48;
/// The VF-only shape.
const VF_ONLY_PARTITIONS: usize = 500;
const VF_ONLY_GUIDS: usize = 64;
/// First PKey used; the partitions are FIRST_PKEY.. FIRST_PKEY + n.
const FIRST_PKEY: u16 = 0x1000;
/// Single-entry changes per latency run.
const LATENCY_CHANGES: usize = 200;
/// The growing partition.
const GROW_PKEY: u16 = 0x7000;
const GROW_MAX: usize = 10_000;
const GROW_STEP: usize = 1_000;
/// Idle measurement: resync interval (a full pass every 5 s) and full passes measured.
const IDLE_RESYNC: &str = "5";
const IDLE_PASSES: u64 = 12;
/// Loader threads writing into etcd.
const LOADERS: usize = 4;

/// Targets of issue #5.
const TARGET_SYNC_REQ_PER_PARTITION: f64 = 2.05;
const TARGET_VF_REQ_PER_PARTITION: f64 = 1.05;
const TARGET_IDLE_ETCD_PER_PASS: f64 = 2.0;
/// A full pass reads UFM's list once, and `last_updated` just before it (issue #10: the stamp
/// the drift checks compare with).
const TARGET_IDLE_UFM_PER_PASS: f64 = 2.0;
const TARGET_IDLE_LISTS_PER_PASS: f64 = 1.0;
const TARGET_P99_MS: f64 = 1_000.0;
const TARGET_RSS_MB: f64 = 20.0;
/// "No request per GUID": a shrinking partition's removes carry at least this many GUIDs per
/// request on average. A target, not ufm-pkeyd's batch size (which is larger).
const TARGET_GUIDS_PER_REMOVE: usize = 100;
/// The reads of a targeted pass besides its writes (issue #15): the partition, `last_updated`
/// before the first write, the partition read back, `last_updated` after it.
const TARGETED_PASS_READS: u64 = 4;
/// Issue #15: the read-back costs at most one single-PKey GET per written partition per pass.
const TARGET_READ_BACKS_PER_WRITTEN_PARTITION: u64 = 1;

/// The slow UFM of issue #10: the listing with GUIDs delayed by this much, every write by
/// that much.
const SLOW_LIST_MS: u64 = 3_000;
const SLOW_WRITE_MS: u64 = 200;
/// The daemon's defaults (`--poll-interval`, `--resync-interval`), for the idle figures.
const DEFAULT_POLL_SECONDS: f64 = 30.0;
const DEFAULT_RESYNC_SECONDS: f64 = 600.0;
/// Single-entry changes on the slow UFM.
const SLOW_CHANGES: usize = 20;
/// New partitions written at once (1 host + 1 VF GUID each).
const BURST: usize = 50;
/// New partitions written during each outage, and while writes answer 503.
const OUTAGE_PARTITIONS: usize = 5;
const OUTAGE_SECONDS: f64 = 75.0;
const CONSECUTIVE_503: u64 = 20;
/// PKeys of the partitions the slow-UFM rows create (past the 2,000 of the data set).
const SLOW_FIRST_PKEY: u16 = 0x6000;
/// The access token the benchmark reads UFM with (`/ufmRestV3`), not the daemon.
const BENCH_TOKEN: &str = "bench-token";

/// Issue #15: single-GUID changes queued ahead of an unrelated new job, and how long each
/// write takes then (a fault rule adds to the slow fabric's 200 ms).
const QUEUED_WRITES: usize = 50;
const QUEUED_WRITE_MS: u64 = 1_500;
/// Issue #15: keys deleted by one request (a v3 range delete), the first of the data set, and
/// how long after it a new job is written.
const BULK_DELETED: usize = 1_500;
const BULK_JOB_AFTER: Duration = Duration::from_secs(1);

/// Targets of issue #15 (the read-back's is above, with the request counts).
/// "The write in flight plus its own two writes": the floor is 3 writes, 4.5 s.
const TARGET_HEAD_OF_LINE_SECONDS: f64 = 6.0;
const TARGET_BULK_SECONDS: f64 = 10.0;

/// Targets of issue #10.
const TARGET_IDLE_UFM_BYTES_PER_MINUTE: f64 = 1_000_000.0;
const TARGET_SLOW_P99_MS: f64 = 1_000.0;
const TARGET_BURST_SECONDS: f64 = 25.0;
const TARGET_RECOVERY_SECONDS: f64 = 5.0;
const TARGET_OUTAGE_REQUESTS_PER_SECOND: f64 = 2.0;
/// "Well under a minute".
const TARGET_503_SECONDS: f64 = 30.0;

fn main() {
    let started = Instant::now();
    let binary = env!("CARGO_BIN_EXE_ufm-pkeyd");
    let sim_binary = env!("CARGO_BIN_EXE_ufm-sim");
    println!("ufm-pkeyd benchmark (issues #5, #10 and #15)");
    println!("daemon binary:    {binary}");
    println!("simulator binary: {sim_binary}");
    if !binary.contains("/release/") {
        println!("warning: the daemon binary is not the optimized build");
    }
    if !cfg!(panic = "unwind") {
        println!("warning: panic=abort: a failing benchmark may leave processes behind");
    }
    let mut bench = Bench::new();
    let meta = &mut bench.table.meta;
    meta.insert("binary".into(), json!(binary));
    meta.insert("sim_binary".into(), json!(sim_binary));
    meta.insert("clock_ticks_per_second".into(), json!(bench.clk_tck));
    meta.insert(
        "cpus".into(),
        json!(std::thread::available_parallelism().map_or(0, |n| n.get())),
    );

    let etcd = Etcd::with_v2();
    println!("etcd:             {} (v2 enabled)", etcd.endpoint());
    println!();

    bench.vf_only(&etcd);
    bench.main_data_set(&etcd);
    bench.growth(&etcd);

    bench.table.meta.insert(
        "total_seconds".into(),
        json!(round(started.elapsed().as_secs_f64(), 1)),
    );
    bench
        .table
        .print_and_save("benchmark", "results.json", started.elapsed());
}

/// One partition as pcocc writes it.
#[derive(Clone, Debug)]
struct Entry {
    host: Vec<u64>,
    vf: Vec<u64>,
}

impl Entry {
    /// pcocc's value: `str(dict)` of the two lists, GUIDs as `'0x' + 16 hex digits`.
    fn pcocc_value(&self) -> String {
        let list = |guids: &[u64]| {
            guids
                .iter()
                .map(|g| format!("'0x{g:016x}'"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "{{'host_guids': [{}], 'vf_guids': [{}]}}",
            list(&self.host),
            list(&self.vf)
        )
    }

    /// GUID -> index0 as UFM should hold them (hosts index0 off, VFs on).
    fn expected_members(&self) -> BTreeMap<u64, bool> {
        let mut members: BTreeMap<u64, bool> = self.host.iter().map(|g| (*g, false)).collect();
        members.extend(self.vf.iter().map(|g| (*g, true)));
        members
    }

    fn len(&self) -> usize {
        self.host.len() + self.vf.len()
    }
}

fn host_guid(partition: usize, i: usize) -> u64 {
    0x0002_c903_0000_0000 | ((partition as u64) << 12) | i as u64
}

fn vf_guid(partition: usize, i: usize) -> u64 {
    0xc0cc_2000_0000_0000 | ((partition as u64) << 12) | i as u64
}

fn pkey_name(pkey: u16) -> String {
    format!("0x{pkey:x}")
}

/// Measurements, the table and the JSON results.
struct Bench {
    http: ureq::Agent,
    clk_tck: f64,
    table: Table,
}

impl Bench {
    fn new() -> Bench {
        Bench {
            http: agent(),
            clk_tck: clock_ticks(),
            table: Table::default(),
        }
    }

    fn section(&mut self, title: &str) {
        self.table.section(title);
    }

    fn row(&mut self, label: &str, value: String, target: &str, result: Option<bool>) {
        self.table.row(label, value, target, result);
    }

    fn record(&mut self, section: &str, values: Value) {
        self.table.record(section, values);
    }

    // ---------------------------------------------------------------------------------------
    // 1b. VF-only initial sync

    fn vf_only(&mut self, etcd: &Etcd) {
        let prefix = "/bench/vf-only/pkeys/";
        let entries: Vec<(u16, Entry)> = (0..VF_ONLY_PARTITIONS)
            .map(|p| {
                let entry = Entry {
                    host: Vec::new(),
                    vf: (0..VF_ONLY_GUIDS).map(|i| vf_guid(p, i)).collect(),
                };
                (FIRST_PKEY + p as u16, entry)
            })
            .collect();
        let load = load_v2(etcd, prefix, &entries);
        eprintln!(
            "bench: loaded {VF_ONLY_PARTITIONS} VF-only entries in {:.1} s",
            load.as_secs_f64()
        );
        let sim = UfmSim::http();
        let dir = TempDir::new("bench-vf-only");
        let (daemon, start) =
            self.start_daemon(etcd, &sim, "v2", prefix, &dir, &["--poll-interval", "60"]);
        let sync = self.wait_adds(&sim, &daemon, VF_ONLY_PARTITIONS as u64, start);
        let stats = self.sim_stats(&sim);
        let hwm = proc_status_kb(daemon.pid(), "VmHWM");
        self.verify_state(&sim, &entries);
        let _ = daemon.stop();
        let total = stats["total"].as_u64().unwrap_or(0);
        let per = total as f64 / VF_ONLY_PARTITIONS as f64;
        let guids = VF_ONLY_PARTITIONS * VF_ONLY_GUIDS;
        self.section(&format!(
            "Initial sync, VF-only: {VF_ONLY_PARTITIONS} partitions x {VF_ONLY_GUIDS} VF GUIDs ({guids} GUIDs)"
        ));
        self.row(
            "wall time, daemon start -> UFM complete",
            format!("{:.2} s", sync.as_secs_f64()),
            "",
            None,
        );
        self.row(
            "UFM requests per partition",
            format!("{per:.3} ({total} total)"),
            &format!("<= {TARGET_VF_REQ_PER_PARTITION}"),
            Some(per <= TARGET_VF_REQ_PER_PARTITION),
        );
        self.row("daemon peak RSS (VmHWM)", mb(hwm), "", None);
        self.record(
            "initial_sync_vf_only",
            json!({
                "partitions": VF_ONLY_PARTITIONS, "guids": guids,
                "load_seconds": round(load.as_secs_f64(), 2),
                "sync_seconds": round(sync.as_secs_f64(), 3),
                "ufm_requests": stats["requests"], "ufm_requests_total": total,
                "ufm_requests_per_partition": round(per, 4),
                "target_ufm_requests_per_partition": TARGET_VF_REQ_PER_PARTITION,
                "pass": per <= TARGET_VF_REQ_PER_PARTITION,
                "peak_rss_kb": hwm,
            }),
        );
    }

    // ---------------------------------------------------------------------------------------
    // 1, 2, 3. The 2,000 x 64 data set: initial sync, idle minute, latency v2 and v3

    fn main_data_set(&mut self, etcd: &Etcd) {
        let prefix = PKEYS_PREFIX;
        let mut entries: Vec<(u16, Entry)> = (0..PARTITIONS)
            .map(|p| {
                let entry = Entry {
                    host: (0..HOSTS).map(|i| host_guid(p, i)).collect(),
                    vf: (0..VFS).map(|i| vf_guid(p, i)).collect(),
                };
                (FIRST_PKEY + p as u16, entry)
            })
            .collect();
        let guids: usize = entries.iter().map(|(_, e)| e.len()).sum();
        let load = load_v2(etcd, prefix, &entries);
        eprintln!(
            "bench: loaded {PARTITIONS} entries ({guids} GUIDs) through v2 in {:.1} s",
            load.as_secs_f64()
        );
        let sim = token_sim();
        let dir = TempDir::new("bench-main");

        // 1. Initial sync, then the idle full passes with the same daemon.
        let (mut daemon, start) = self.start_daemon(
            etcd,
            &sim,
            "v2",
            prefix,
            &dir,
            &["--resync-interval", IDLE_RESYNC],
        );
        // Two adds per partition: the host GUIDs (index0 off) and the VF GUIDs (index0 on).
        let sync = self.wait_adds(&sim, &daemon, 2 * PARTITIONS as u64, start);
        let stats = self.sim_stats(&sim);
        let hwm_sync = proc_status_kb(daemon.pid(), "VmHWM");
        let verify_started = Instant::now();
        let ufm_guids = self.verify_state(&sim, &entries);
        eprintln!(
            "bench: initial sync done in {:.1} s; UFM state verified ({ufm_guids} GUIDs) in {:.1} s",
            sync.as_secs_f64(),
            verify_started.elapsed().as_secs_f64()
        );
        let total = stats["total"].as_u64().unwrap_or(0);
        let per = total as f64 / PARTITIONS as f64;

        let idle = self.idle_full_passes(&sim, &mut daemon, &dir);
        let hwm = proc_status_kb(daemon.pid(), "VmHWM");
        let rss = proc_status_kb(daemon.pid(), "VmRSS");
        let etcd_listing = self.body_size(
            &etcd.url("/v2/keys/pcocc/global/opensm/pkeys/?recursive=true&sorted=true"),
            None,
        );
        let ufm_listing = self.body_size(
            &format!("{}/ufmRest/resources/pkeys?guids_data=true", sim.url()),
            Some(&sim),
        );
        let _ = daemon.stop();

        self.section(&format!(
            "Initial sync: {PARTITIONS} partitions x ({HOSTS} host + {VFS} VF) GUIDs ({guids} GUIDs), etcd v2"
        ));
        self.row(
            "wall time, daemon start -> UFM complete",
            format!("{:.2} s", sync.as_secs_f64()),
            "",
            None,
        );
        self.row(
            "UFM requests per partition",
            format!("{per:.3} ({total} total)"),
            &format!("<= {TARGET_SYNC_REQ_PER_PARTITION}"),
            Some(per <= TARGET_SYNC_REQ_PER_PARTITION),
        );
        self.row(
            "daemon peak RSS after the initial sync",
            mb(hwm_sync),
            "",
            None,
        );
        let rss_ok = (hwm as f64) / 1024.0 < TARGET_RSS_MB;
        self.row(
            &format!("daemon peak RSS after {IDLE_PASSES} full passes"),
            format!("{} (RSS now {})", mb(hwm), mb(rss)),
            &format!("< {TARGET_RSS_MB} MB"),
            Some(rss_ok),
        );
        self.row(
            "bodies: etcd v2 listing / UFM list",
            format!(
                "{:.1} MB / {:.1} MB",
                etcd_listing as f64 / 1e6,
                ufm_listing as f64 / 1e6
            ),
            "",
            None,
        );
        self.record(
            "initial_sync",
            json!({
                "partitions": PARTITIONS, "host_guids": HOSTS, "vf_guids": VFS, "guids": guids,
                "load_seconds": round(load.as_secs_f64(), 2),
                "sync_seconds": round(sync.as_secs_f64(), 3),
                "ufm_requests": stats["requests"], "ufm_requests_total": total,
                "ufm_requests_per_partition": round(per, 4),
                "target_ufm_requests_per_partition": TARGET_SYNC_REQ_PER_PARTITION,
                "pass": per <= TARGET_SYNC_REQ_PER_PARTITION,
                "peak_rss_kb_after_sync": hwm_sync,
            }),
        );
        self.record(
            "memory",
            json!({
                "peak_rss_kb": hwm, "rss_kb": rss,
                "target_peak_rss_mb": TARGET_RSS_MB, "pass": rss_ok,
                "etcd_v2_listing_bytes": etcd_listing, "ufm_list_bytes": ufm_listing,
            }),
        );
        self.report_idle(&idle);

        // 3. Latency through v2, then through v3 (same partitions copied into the v3 keyspace).
        let v2 = self.latency(etcd, &sim, "v2", prefix, &dir, &mut entries);
        self.report_latency("v2", &v2);
        let load3 = load_v3(etcd, prefix, &entries);
        eprintln!(
            "bench: copied {PARTITIONS} entries into the v3 keyspace in {:.1} s",
            load3.as_secs_f64()
        );
        let v3 = self.latency(etcd, &sim, "v3", prefix, &dir, &mut entries);
        self.report_latency("v3", &v3);
        self.verify_state(&sim, &entries);

        // 5. The same UFM made slow, the v3 keyspace (which it matches now).
        self.slow_ufm(etcd, &sim, &dir, &mut entries);
    }

    /// Starts `ufm-pkeyd monitor` against `etcd` and `sim`; returns it and when it started.
    fn start_daemon(
        &self,
        etcd: &Etcd,
        sim: &UfmSim,
        api: &str,
        prefix: &str,
        dir: &TempDir,
        extra: &[&str],
    ) -> (Daemon, Instant) {
        let state = dir.join("state.json");
        let metrics = dir.join("metrics.prom");
        let _ = std::fs::remove_file(&metrics);
        let mut args: Vec<String> = vec![
            "monitor".into(),
            "--no-pcocc".into(),
            "--http".into(),
            "--ufm-host".into(),
            sim.url(),
            "--ufm-user".into(),
            sim.user().into(),
            "--ufm-password-file".into(),
            path_text(sim.password_file()),
            "--etcd-endpoints".into(),
            etcd.endpoint(),
            "--etcd-api".into(),
            api.into(),
            "--etcd-prefix".into(),
            prefix.into(),
            "--state-file".into(),
            path_text(&state),
            "--metrics-file".into(),
            path_text(&metrics),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let start = Instant::now();
        (Pkeyd::new(&refs).spawn(), start)
    }

    /// Waits (polling `/_sim/stats` every 50 ms) until UFM has received `adds` add requests;
    /// returns the time since `start`.
    fn wait_adds(&self, sim: &UfmSim, daemon: &Daemon, adds: u64, start: Instant) -> Duration {
        let deadline = Duration::from_secs(240);
        loop {
            let stats = self.sim_stats(sim);
            let done = stats["requests"]["POST /resources/pkeys"]
                .as_u64()
                .unwrap_or(0);
            if done >= adds {
                return start.elapsed();
            }
            if start.elapsed() > deadline {
                panic!(
                    "the initial sync did not complete in {} s ({done} of {adds} adds)\n{}",
                    deadline.as_secs(),
                    tail(&daemon.stderr(), 30)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Reads `/_sim/state` once and checks that UFM holds exactly `entries` (members and
    /// index0), besides 0x7fff. Returns the number of GUIDs found.
    fn verify_state(&self, sim: &UfmSim, entries: &[(u16, Entry)]) -> usize {
        let body = self.get(&format!("{}/_sim/state", sim.url()), None).1;
        let state: Value = serde_json::from_slice(&body).expect("/_sim/state is JSON");
        let map = state.as_object().expect("/_sim/state is an object");
        let mut total = 0;
        let mut wanted: BTreeSet<String> = BTreeSet::new();
        for (pkey, entry) in entries {
            let name = pkey_name(*pkey);
            let partition = map
                .get(&name)
                .unwrap_or_else(|| panic!("UFM lacks partition {name}"));
            let members = members_of(partition);
            assert_eq!(
                members,
                entry.expected_members(),
                "UFM partition {name} does not match its etcd entry"
            );
            total += members.len();
            wanted.insert(name);
        }
        let extra: Vec<&String> = map
            .keys()
            .filter(|k| *k != "0x7fff" && !wanted.contains(*k))
            .collect();
        assert!(extra.is_empty(), "UFM has unexpected partitions: {extra:?}");
        total
    }

    // ---------------------------------------------------------------------------------------
    // 2. Idle full passes

    /// `IDLE_PASSES` full passes of a daemon started with `--resync-interval 5` (the default
    /// poll interval, 30 s, never comes: each full pass moves the next drift check on).
    fn idle_full_passes(&self, sim: &UfmSim, daemon: &mut Daemon, dir: &TempDir) -> Value {
        let metrics = dir.join("metrics.prom");
        let pid = daemon.pid();
        // Start on a pass boundary: the metrics file is written right after each pass, when
        // the daemon goes back to its watch until the next resync.
        let first = read_metrics(&metrics).map_or(0, |m| m.passes_full);
        let m0 = wait_metrics(daemon, &metrics, Duration::from_secs(30), |m| {
            m.passes_full > first
        });
        self.post(&format!("{}/_sim/stats/reset", sim.url()));
        let cpu0 = cpu_ticks(pid);
        let t0 = Instant::now();
        eprintln!(
            "bench: idle: {IDLE_PASSES} full passes at --resync-interval {IDLE_RESYNC} from full pass {}",
            m0.passes_full
        );
        let m1 = wait_metrics(daemon, &metrics, Duration::from_secs(120), |m| {
            m.passes_full >= m0.passes_full + IDLE_PASSES
        });
        let stats = self.sim_stats(sim);
        let cpu1 = cpu_ticks(pid);
        let elapsed = t0.elapsed();
        let passes = (m1.passes_full - m0.passes_full) as f64;
        let targeted = m1.passes_targeted - m0.passes_targeted;
        let etcd_requests = m1.etcd_requests - m0.etcd_requests;
        let ufm_daemon = m1.ufm_requests - m0.ufm_requests;
        let ufm_sim = stats["total"].as_u64().unwrap_or(0) as f64;
        let lists = stats["requests"]["GET /resources/pkeys"]
            .as_u64()
            .unwrap_or(0) as f64;
        let cpu_seconds = (cpu1 - cpu0) / self.clk_tck;
        let changes = m1.changes - m0.changes;
        let ok = etcd_requests / passes <= TARGET_IDLE_ETCD_PER_PASS
            && ufm_sim / passes <= TARGET_IDLE_UFM_PER_PASS
            && lists / passes <= TARGET_IDLE_LISTS_PER_PASS;
        json!({
            "resync_interval_seconds": IDLE_RESYNC.parse::<f64>().unwrap_or(0.0),
            "seconds": round(elapsed.as_secs_f64(), 2),
            "passes": passes,
            "targeted_passes": targeted,
            "changes_applied": changes,
            "etcd_requests": etcd_requests,
            "etcd_requests_per_pass": round(etcd_requests / passes, 3),
            "ufm_requests_sim": ufm_sim,
            "ufm_requests_daemon": ufm_daemon,
            "ufm_requests_per_pass": round(ufm_sim / passes, 3),
            "ufm_lists_per_pass": round(lists / passes, 3),
            "ufm_requests_by_route": stats["requests"],
            "ufm_bytes": stats["bytes_total"],
            "ufm_bytes_per_pass": round(stats["bytes_total"].as_f64().unwrap_or(0.0) / passes, 0),
            "cpu_seconds": round(cpu_seconds, 3),
            "cpu_ms_per_pass": round(cpu_seconds * 1000.0 / passes, 1),
            "last_pass_duration_ms": round(m1.pass_duration * 1000.0, 1),
            "target_etcd_requests_per_pass": TARGET_IDLE_ETCD_PER_PASS,
            "target_ufm_requests_per_pass": TARGET_IDLE_UFM_PER_PASS,
            "target_ufm_lists_per_pass": TARGET_IDLE_LISTS_PER_PASS,
            "pass": ok,
        })
    }

    fn report_idle(&mut self, idle: &Value) {
        let f = |k: &str| idle[k].as_f64().unwrap_or(f64::NAN);
        self.section(&format!(
            "Idle full passes: {} in {:.0} s at --resync-interval {IDLE_RESYNC}, {PARTITIONS} partitions in sync, fast UFM",
            f("passes"),
            f("seconds")
        ));
        let etcd = f("etcd_requests_per_pass");
        let ufm = f("ufm_requests_per_pass");
        let lists = f("ufm_lists_per_pass");
        self.row(
            "etcd requests per full pass (daemon metrics)",
            format!("{etcd:.2}"),
            &format!("<= {TARGET_IDLE_ETCD_PER_PASS}"),
            Some(etcd <= TARGET_IDLE_ETCD_PER_PASS),
        );
        self.row(
            "UFM requests per full pass (simulator)",
            format!("{ufm:.2} ({lists:.2} list + last_updated)"),
            &format!("<= {TARGET_IDLE_UFM_PER_PASS}, 1 list"),
            Some(ufm <= TARGET_IDLE_UFM_PER_PASS && lists <= TARGET_IDLE_LISTS_PER_PASS),
        );
        self.row(
            "UFM bytes per full pass (simulator)",
            format!("{:.1} MB", f("ufm_bytes_per_pass") / 1e6),
            "",
            None,
        );
        self.row(
            "CPU time per full pass (utime+stime)",
            format!(
                "{:.0} ms (pass takes {:.0} ms)",
                f("cpu_ms_per_pass"),
                f("last_pass_duration_ms")
            ),
            "",
            None,
        );
        self.row(
            "changes applied / targeted passes while idle",
            format!("{} / {}", f("changes_applied"), f("targeted_passes")),
            "0 / 0",
            Some(f("changes_applied") == 0.0 && f("targeted_passes") == 0.0),
        );
        self.record("idle", idle.clone());
    }

    // ---------------------------------------------------------------------------------------
    // 3. Propagation latency

    fn latency(
        &self,
        etcd: &Etcd,
        sim: &UfmSim,
        api: &str,
        prefix: &str,
        dir: &TempDir,
        entries: &mut [(u16, Entry)],
    ) -> Value {
        let metrics_path = dir.join("metrics.prom");
        let (mut daemon, _) =
            self.start_daemon(etcd, sim, api, prefix, dir, &["--poll-interval", "60"]);
        let m = wait_metrics(&mut daemon, &metrics_path, Duration::from_secs(60), |m| {
            m.passes >= 1
        });
        assert_eq!(
            m.changes, 0.0,
            "the {api} daemon found UFM out of step with the {api} keyspace at start"
        );
        let auth = token_auth();
        self.clear_log(sim);
        let mut written: Vec<(u16, u64)> = Vec::with_capacity(LATENCY_CHANGES);
        let mut latencies = Vec::with_capacity(LATENCY_CHANGES);
        let mut passes_ms = Vec::with_capacity(LATENCY_CHANGES);
        let mut timeouts = 0;
        let mut passes = m.passes;
        let mut last = m;
        for i in 0..LATENCY_CHANGES {
            // 37 is prime to 2,000: 200 different partitions.
            let index = (i * 37) % entries.len();
            let (pkey, entry) = &mut entries[index];
            let new_guid = 0x0002_c904_0000_0000 | (u64::from(api == "v3") << 20) | i as u64;
            entry.host[0] = new_guid;
            let value = entry.pcocc_value();
            let key = format!("{prefix}{}", pkey_name(*pkey));
            let url = bench_pkey_url(sim, *pkey);
            let needle = format!("{new_guid:016x}");
            written.push((*pkey, wall_ms()));
            let t0 = Instant::now();
            match api {
                "v2" => self.put_v2(etcd, &key, &value),
                _ => self.put_v3(etcd, &key, &value),
            }
            let seen = loop {
                let (_, body) = self.get(&url, Some(auth.as_str()));
                if contains(&body, needle.as_bytes()) {
                    break Some(t0.elapsed());
                }
                if t0.elapsed() > Duration::from_secs(10) {
                    break None;
                }
                std::thread::sleep(Duration::from_millis(2));
            };
            match seen {
                Some(d) => latencies.push(d.as_secs_f64() * 1000.0),
                None => {
                    timeouts += 1;
                    latencies.push(10_000.0);
                }
            }
            // Let the pass finish (the old GUID removed) before the next change.
            let m = wait_metrics(&mut daemon, &metrics_path, Duration::from_secs(30), |m| {
                m.passes > passes
            });
            passes = m.passes;
            passes_ms.push(m.pass_duration * 1000.0);
            last = m;
        }
        let full_passes = last.passes_full - m.passes_full;
        let targeted_passes = last.passes_targeted - m.passes_targeted;
        let cost = read_back_cost(&self.daemon_requests(sim), &written);
        let hwm = proc_status_kb(daemon.pid(), "VmHWM");
        let _ = daemon.stop();
        latencies.sort_by(f64::total_cmp);
        passes_ms.sort_by(f64::total_cmp);
        let p50 = percentile(&latencies, 50.0);
        let p99 = percentile(&latencies, 99.0);
        let max = latencies.last().copied().unwrap_or(f64::NAN);
        json!({
            "api": api, "changes": LATENCY_CHANGES, "timeouts": timeouts,
            "median_ms": round(p50, 2), "p99_ms": round(p99, 2), "max_ms": round(max, 2),
            "min_ms": round(latencies.first().copied().unwrap_or(f64::NAN), 2),
            "pass_duration_median_ms": round(percentile(&passes_ms, 50.0), 1),
            "pass_duration_max_ms": round(passes_ms.last().copied().unwrap_or(f64::NAN), 1),
            "full_passes": full_passes, "targeted_passes": targeted_passes,
            "ufm_per_change": cost,
            "peak_rss_kb": hwm,
            "target_p99_ms": TARGET_P99_MS,
            "pass": p99 < TARGET_P99_MS && timeouts == 0,
        })
    }

    fn report_latency(&mut self, api: &str, r: &Value) {
        let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
        self.section(&format!(
            "Latency, etcd {api}: {LATENCY_CHANGES} single-entry changes -> visible in UFM, --poll-interval 60, {PARTITIONS} partitions"
        ));
        self.row(
            "median / p99 / max",
            format!(
                "{:.0} / {:.0} / {:.0} ms",
                f("median_ms"),
                f("p99_ms"),
                f("max_ms")
            ),
            &format!("p99 < {TARGET_P99_MS:.0} ms"),
            Some(f("p99_ms") < TARGET_P99_MS && f("timeouts") == 0.0),
        );
        self.row(
            "targeted pass per change (median / max)",
            format!(
                "{:.0} / {:.0} ms",
                f("pass_duration_median_ms"),
                f("pass_duration_max_ms")
            ),
            "",
            None,
        );
        self.row(
            "passes: targeted / full",
            format!("{} / {}", f("targeted_passes"), f("full_passes")),
            "no full pass",
            Some(f("full_passes") == 0.0),
        );
        self.read_back_row(&r["ufm_per_change"]);
        self.row(
            "daemon peak RSS after the 200 passes",
            mb(r["peak_rss_kb"].as_u64().unwrap_or(0)),
            "",
            None,
        );
        self.record(&format!("latency_{api}"), r.clone());
    }

    // ---------------------------------------------------------------------------------------
    // 4. One partition growing to 10,000 GUIDs and shrinking back

    fn growth(&mut self, etcd: &Etcd) {
        let prefix = "/bench/grow/pkeys/";
        let sim = token_sim();
        let dir = TempDir::new("bench-grow");
        let metrics_path = dir.join("metrics.prom");
        let (mut daemon, _) =
            self.start_daemon(etcd, &sim, "v2", prefix, &dir, &["--poll-interval", "60"]);
        let mut m = wait_metrics(&mut daemon, &metrics_path, Duration::from_secs(60), |m| {
            m.passes >= 1
        });
        // A quarter host GUIDs, three quarters VF GUIDs, interleaved.
        let all: Vec<(u64, bool)> = (0..GROW_MAX)
            .map(|i| {
                if i % 4 == 0 {
                    (host_guid(3000 + i / 4096, i % 4096), false)
                } else {
                    (vf_guid(3000 + i / 4096, i % 4096), true)
                }
            })
            .collect();
        let mut sizes: Vec<usize> = (1..=GROW_MAX / GROW_STEP).map(|n| n * GROW_STEP).collect();
        sizes.extend((0..GROW_MAX / GROW_STEP).rev().map(|n| n * GROW_STEP));
        let key = format!("{prefix}{}", pkey_name(GROW_PKEY));
        let url = bench_pkey_url(&sim, GROW_PKEY);
        let auth = token_auth();
        let mut steps = Vec::new();
        let mut ok = true;
        let mut previous = 0usize;
        for &size in &sizes {
            let members: BTreeMap<u64, bool> = all[..size].iter().copied().collect();
            let entry = Entry {
                host: all[..size]
                    .iter()
                    .filter(|(_, vf)| !vf)
                    .map(|(g, _)| *g)
                    .collect(),
                vf: all[..size]
                    .iter()
                    .filter(|(_, vf)| *vf)
                    .map(|(g, _)| *g)
                    .collect(),
            };
            self.clear_log(&sim);
            let t0 = Instant::now();
            if size == 0 {
                etcd.delete_v2(&key);
            } else {
                self.put_v2(etcd, &key, &entry.pcocc_value());
            }
            let count_needle = b"\"guid\"";
            let visible = loop {
                let (_, body) = self.get(&url, Some(auth.as_str()));
                // Cheap check first: the number of members; then the exact set.
                if count(&body, count_needle) == size {
                    let value: Value = serde_json::from_slice(&body).expect("pkey JSON");
                    if members_of(&value) == members {
                        break t0.elapsed();
                    }
                }
                if t0.elapsed() > Duration::from_secs(60) {
                    panic!(
                        "UFM did not reach {size} members of {} in 60 s\n{}",
                        pkey_name(GROW_PKEY),
                        tail(&daemon.stderr(), 30)
                    );
                }
                std::thread::sleep(Duration::from_millis(5));
            };
            let before = m.passes;
            m = wait_metrics(&mut daemon, &metrics_path, Duration::from_secs(60), |m| {
                m.passes > before
            });
            // The daemon's requests (the benchmark reads with its token).
            let requests = self.daemon_requests(&sim);
            let by = |route: &str| requests.iter().filter(|r| route_key(r) == route).count() as u64;
            let adds = by("POST /resources/pkeys");
            let removes = by("DELETE /resources/pkeys/{pkey}/guids");
            let deletes = by("DELETE /resources/pkeys/{pkey}");
            let lists = by("GET /resources/pkeys");
            let reads = by("GET /resources/pkeys/{pkey}") + by("GET /resources/pkeys/last_updated");
            let kinds = Kinds::of(&requests.iter().collect::<Vec<_>>(), GROW_PKEY);
            let daemon_requests = requests.len() as u64;
            let removed = previous.saturating_sub(size);
            let added = size.saturating_sub(previous);
            // A targeted pass: no list; the partition read, `last_updated` before the first
            // write, at most two adds (host and VF groups), the check before the removes and
            // removes of many GUIDs each, one partition delete at 0, then the partition read
            // back once and `last_updated` after it (issue #15).
            let allowed = TARGETED_PASS_READS
                + 2
                + u64::from(removed > 0)
                + removed.div_ceil(TARGET_GUIDS_PER_REMOVE) as u64
                + u64::from(size == 0);
            let step_ok = daemon_requests <= allowed
                && lists == 0
                && kinds.read_backs <= TARGET_READ_BACKS_PER_WRITTEN_PARTITION;
            ok &= step_ok;
            steps.push(json!({
                "from": previous, "to": size, "added": added, "removed": removed,
                "seconds": round(visible.as_secs_f64(), 3),
                "pass_ms": round(m.pass_duration * 1000.0, 1),
                "ufm_requests": daemon_requests, "adds": adds, "remove_batches": removes,
                "partition_deletes": deletes, "lists": lists, "reads": reads,
                "read_backs": kinds.read_backs, "checks": kinds.checks, "allowed": allowed,
                "ok": step_ok,
            }));
            previous = size;
        }
        let hwm = proc_status_kb(daemon.pid(), "VmHWM");
        let _ = daemon.stop();

        let grow: Vec<&Value> = steps
            .iter()
            .filter(|s| s["added"].as_u64() > Some(0))
            .collect();
        let shrink: Vec<&Value> = steps
            .iter()
            .filter(|s| s["removed"].as_u64() > Some(0) && s["to"].as_u64() > Some(0))
            .collect();
        let last = steps.last().cloned().unwrap_or_default();
        let summary = |set: &[&Value]| {
            let secs: Vec<f64> = set.iter().filter_map(|s| s["seconds"].as_f64()).collect();
            let reqs: Vec<u64> = set
                .iter()
                .filter_map(|s| s["ufm_requests"].as_u64())
                .collect();
            (
                secs.iter().sum::<f64>() / secs.len().max(1) as f64,
                secs.iter().copied().fold(0.0, f64::max),
                reqs.iter().copied().min().unwrap_or(0),
                reqs.iter().copied().max().unwrap_or(0),
            )
        };
        let (g_avg, g_max, g_rmin, g_rmax) = summary(&grow);
        let (s_avg, s_max, s_rmin, s_rmax) = summary(&shrink);
        self.section(&format!(
            "One partition 0 -> {GROW_MAX} -> 0 GUIDs in steps of {GROW_STEP} (1/4 host, 3/4 VF), etcd v2"
        ));
        self.row(
            "grow step: time avg / max",
            format!("{:.0} / {:.0} ms", g_avg * 1000.0, g_max * 1000.0),
            "",
            None,
        );
        self.row(
            "grow step: UFM requests",
            format!("{g_rmin}-{g_rmax} (read + 2 stamps + adds + read back)"),
            "no request per GUID",
            Some(grow.iter().all(|s| s["ok"] == json!(true))),
        );
        self.row(
            "shrink step: time avg / max",
            format!("{:.0} / {:.0} ms", s_avg * 1000.0, s_max * 1000.0),
            "",
            None,
        );
        let batches: Vec<u64> = shrink
            .iter()
            .filter_map(|s| s["remove_batches"].as_u64())
            .collect();
        self.row(
            "shrink step: UFM requests",
            format!(
                "{s_rmin}-{s_rmax} (read + 2 stamps + check + {}-{} DELETEs + read back)",
                batches.iter().min().unwrap_or(&0),
                batches.iter().max().unwrap_or(&0)
            ),
            "no request per GUID",
            Some(shrink.iter().all(|s| s["ok"] == json!(true))),
        );
        self.row(
            "last step, key deleted: time, requests",
            format!(
                "{:.0} ms, {} (read + 2 stamps + {} partition DELETE + read back)",
                last["seconds"].as_f64().unwrap_or(f64::NAN) * 1000.0,
                last["ufm_requests"],
                last["partition_deletes"]
            ),
            "no request per GUID",
            Some(last["ok"] == json!(true)),
        );
        self.row("daemon peak RSS (VmHWM)", mb(hwm), "", None);
        self.record(
            "growth",
            json!({
                "pkey": pkey_name(GROW_PKEY), "max_guids": GROW_MAX, "step": GROW_STEP,
                "steps": steps, "peak_rss_kb": hwm, "pass": ok,
                "grow_step_seconds_avg": round(g_avg, 3), "shrink_step_seconds_avg": round(s_avg, 3),
            }),
        );
    }

    // ---------------------------------------------------------------------------------------
    // 5. Slow UFM (issue #10)

    /// The 2,000 x 64 partitions (in step with the v3 keyspace) behind a slow UFM: the listing
    /// +3 s, every write +200 ms, persistent. One daemon at its default settings runs through
    /// every row, each starting from a quiet daemon.
    fn slow_ufm(
        &mut self,
        etcd: &Etcd,
        sim: &UfmSim,
        dir: &TempDir,
        entries: &mut Vec<(u16, Entry)>,
    ) {
        let metrics = dir.join("metrics.prom");
        self.add_faults(sim, slow_rules());
        self.post(&format!("{}/_sim/stats/reset", sim.url()));
        self.clear_log(sim);
        let (mut daemon, start) = self.start_daemon(etcd, sim, "v3", PKEYS_PREFIX, dir, &[]);
        let m = wait_metrics(&mut daemon, &metrics, Duration::from_secs(60), |m| {
            m.passes_full >= 1
        });
        let startup = start.elapsed();
        assert_eq!(
            m.changes, 0.0,
            "the slow-UFM daemon found UFM out of step with the v3 keyspace at start"
        );
        // What the start-up full pass cost UFM (the version check, last_updated, the list).
        let full_pass = self.sim_stats(sim);
        eprintln!(
            "bench: slow UFM: daemon started, first full pass done in {:.1} s ({:.1} MB from UFM)",
            startup.as_secs_f64(),
            full_pass["bytes_total"].as_f64().unwrap_or(0.0) / 1e6
        );

        let idle = self.slow_idle(sim, &mut daemon, &metrics, &full_pass, startup);
        let latency = self.slow_latency(etcd, sim, &mut daemon, &metrics, entries);
        let burst = self.slow_burst(etcd, sim, &mut daemon, &metrics, entries);
        let refuse = self.slow_outage(etcd, sim, &mut daemon, &metrics, entries, "refuse");
        let unavailable = self.slow_outage(etcd, sim, &mut daemon, &metrics, entries, "503");
        let flaky = self.slow_503s(etcd, sim, &mut daemon, &metrics, entries);
        let queued = self.slow_head_of_line(etcd, sim, &mut daemon, &metrics, entries);
        let bulk = self.slow_bulk_delete(etcd, sim, &mut daemon, &metrics, entries);
        let log = daemon.stderr();
        let _ = daemon.stop();
        self.clear_faults(sim);
        self.verify_state(sim, entries);
        self.report_slow(&idle, &latency, &burst, &refuse, &unavailable, &flaky);
        self.report_slow_issue15(&latency, &queued, &bulk);
        let backs: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("reachable again"))
            .collect();
        self.record(
            "slow_ufm",
            json!({
                "partitions": PARTITIONS, "guids_per_partition": HOSTS + VFS, "etcd_api": "v3",
                "list_delay_ms": SLOW_LIST_MS, "write_delay_ms": SLOW_WRITE_MS,
                "daemon_flags": "defaults (--poll-interval 30, --resync-interval 600)",
                "idle": idle, "latency": latency, "burst": burst,
                "outage_refuse": refuse, "outage_503": unavailable, "consecutive_503": flaky,
                "head_of_line": queued, "bulk_delete": bulk,
                "daemon_log_reachable_again": backs,
            }),
        );
    }

    /// Idle at the default settings: the UFM requests and bytes of a measured minute (two
    /// `last_updated` checks at the default poll interval), and the same with the full pass
    /// the resync interval adds every 10 minutes (measured at start-up).
    fn slow_idle(
        &self,
        sim: &UfmSim,
        daemon: &mut Daemon,
        metrics: &Path,
        full_pass: &Value,
        startup: Duration,
    ) -> Value {
        let m0 = read_metrics(metrics).expect("the metrics file after the first pass");
        self.post(&format!("{}/_sim/stats/reset", sim.url()));
        let t0 = Instant::now();
        eprintln!("bench: slow UFM: idle at the default settings, two drift checks (60 s)");
        let m1 = wait_metrics(daemon, metrics, Duration::from_secs(120), |m| {
            m.drift_checks >= m0.drift_checks + 2
        });
        let stats = self.sim_stats(sim);
        let minutes = t0.elapsed().as_secs_f64() / 60.0;
        let requests = stats["total"].as_f64().unwrap_or(0.0);
        let bytes = stats["bytes_total"].as_f64().unwrap_or(0.0);
        let full_requests = full_pass["total"].as_f64().unwrap_or(0.0);
        let full_bytes = full_pass["bytes_total"].as_f64().unwrap_or(0.0);
        let per_resync = DEFAULT_RESYNC_SECONDS / 60.0;
        let bytes_per_minute = bytes / minutes;
        let amortized_bytes = bytes_per_minute + full_bytes / per_resync;
        let ok = amortized_bytes < TARGET_IDLE_UFM_BYTES_PER_MINUTE
            && m1.passes_full == m0.passes_full
            && m1.passes_targeted == m0.passes_targeted;
        json!({
            "poll_interval_seconds": DEFAULT_POLL_SECONDS,
            "resync_interval_seconds": DEFAULT_RESYNC_SECONDS,
            "startup_seconds": round(startup.as_secs_f64(), 2),
            "seconds": round(minutes * 60.0, 2),
            "drift_checks": m1.drift_checks - m0.drift_checks,
            "drift_checks_changed": m1.drift_changed - m0.drift_changed,
            "full_passes": m1.passes_full - m0.passes_full,
            "targeted_passes": m1.passes_targeted - m0.passes_targeted,
            "ufm_requests": requests, "ufm_requests_by_route": stats["requests"],
            "ufm_bytes": bytes, "ufm_bytes_by_route": stats["bytes"],
            "ufm_requests_per_minute": round(requests / minutes, 2),
            "ufm_bytes_per_minute": round(bytes_per_minute, 0),
            "etcd_requests_per_minute": round((m1.etcd_requests - m0.etcd_requests) / minutes, 2),
            "full_pass_ufm_requests": full_requests, "full_pass_ufm_bytes": full_bytes,
            "full_pass_ufm_by_route": full_pass["requests"],
            "ufm_requests_per_minute_with_resync": round(requests / minutes + full_requests / per_resync, 2),
            "ufm_bytes_per_minute_with_resync": round(amortized_bytes, 0),
            "target_ufm_bytes_per_minute": TARGET_IDLE_UFM_BYTES_PER_MINUTE,
            "pass": ok,
        })
    }

    /// `SLOW_CHANGES` single-entry changes, one at a time: one new host GUID in a partition
    /// (one UFM write). Latency: from the etcd write until the benchmark's read of the
    /// partition shows the GUID; also when the daemon's write reached UFM (request log).
    fn slow_latency(
        &self,
        etcd: &Etcd,
        sim: &UfmSim,
        daemon: &mut Daemon,
        metrics: &Path,
        entries: &mut [(u16, Entry)],
    ) -> Value {
        let m0 = read_metrics(metrics).expect("the metrics file");
        let mut m = m0;
        self.clear_log(sim);
        let auth = token_auth();
        let mut visible = Vec::with_capacity(SLOW_CHANGES);
        let mut written: Vec<(u16, u64)> = Vec::with_capacity(SLOW_CHANGES);
        let mut timeouts = 0;
        let mut streams = 0.0;
        eprintln!("bench: slow UFM: {SLOW_CHANGES} single-entry changes");
        for i in 0..SLOW_CHANGES {
            // Each change arrives while the daemon waits in its watch, as a lone change does:
            // a watch stream opened after the last change's, synced (a stream opened after a
            // change was made is caught up by etcd's 100 ms loop for lagging watchers).
            streams = self.wait_watch_stream(etcd, daemon, streams);
            // 53 is prime to 2,000: partitions the fast latency runs did not touch first.
            let index = (i * 53 + 11) % entries.len();
            let (pkey, entry) = &mut entries[index];
            let new_guid = 0x0002_c905_0000_0000 | i as u64;
            entry.host.push(new_guid);
            let key = format!("{PKEYS_PREFIX}{}", pkey_name(*pkey));
            let url = bench_pkey_url(sim, *pkey);
            let needle = format!("{new_guid:016x}");
            let value = entry.pcocc_value();
            let wall0 = wall_ms();
            let t0 = Instant::now();
            self.put_v3(etcd, &key, &value);
            let seen = loop {
                let (_, body) = self.get(&url, Some(auth.as_str()));
                if contains(&body, needle.as_bytes()) {
                    break Some(t0.elapsed());
                }
                if t0.elapsed() > Duration::from_secs(15) {
                    break None;
                }
                std::thread::sleep(Duration::from_millis(2));
            };
            match seen {
                Some(d) => visible.push(d.as_secs_f64() * 1000.0),
                None => {
                    timeouts += 1;
                    visible.push(15_000.0);
                }
            }
            written.push((*pkey, wall0));
            // Let the pass end (last_updated read, metrics written) before the next change.
            let before = m.guids_added;
            m = wait_metrics(daemon, metrics, Duration::from_secs(30), |s| {
                s.guids_added > before
            });
        }
        let log = self.daemon_requests(sim);
        // When each change's write reached UFM (before the 200 ms delay), after the etcd write.
        let mut reached: Vec<f64> = written
            .iter()
            .filter_map(|(pkey, wall0)| {
                log.iter()
                    .filter(|r| is_write(r) && r["pkey"] == json!(pkey_name(*pkey)))
                    .filter_map(|r| r["at_ms"].as_u64())
                    .find(|at| at >= wall0)
                    .map(|at| (at - wall0) as f64)
            })
            .collect();
        reached.sort_by(f64::total_cmp);
        visible.sort_by(f64::total_cmp);
        let writes = log.iter().filter(|r| is_write(r)).count();
        let lists = log
            .iter()
            .filter(|r| route_key(r) == "GET /resources/pkeys")
            .count();
        let p99 = percentile(&visible, 99.0);
        let visible_ms: Vec<f64> = visible.iter().map(|v| round(*v, 1)).collect();
        let full = m.passes_full - m0.passes_full;
        let histogram_mean = (m.latency_sum - m0.latency_sum)
            / (m.latency_count - m0.latency_count).max(1.0)
            * 1000.0;
        json!({
            "changes": SLOW_CHANGES, "timeouts": timeouts,
            "median_ms": round(percentile(&visible, 50.0), 1), "p99_ms": round(p99, 1),
            "max_ms": round(visible.last().copied().unwrap_or(f64::NAN), 1),
            "min_ms": round(visible.first().copied().unwrap_or(f64::NAN), 1),
            "write_reached_ufm_median_ms": round(percentile(&reached, 50.0), 1),
            "write_reached_ufm_max_ms": round(reached.last().copied().unwrap_or(f64::NAN), 1),
            "writes_seen": reached.len(), "visible_ms_sorted": visible_ms,
            "written_while_watching": true,
            "daemon_histogram_mean_ms": round(histogram_mean, 1),
            "ufm_requests": log.len(), "ufm_writes": writes, "ufm_lists": lists,
            "ufm_requests_per_change": round(log.len() as f64 / SLOW_CHANGES as f64, 2),
            "ufm_per_change": read_back_cost(&log, &written),
            "full_passes": full, "targeted_passes": m.passes_targeted - m0.passes_targeted,
            "target_p99_ms": TARGET_SLOW_P99_MS,
            "pass": p99 < TARGET_SLOW_P99_MS && timeouts == 0,
        })
    }

    /// `BURST` new partitions (1 host + 1 VF GUID each: two writes) written to etcd at once
    /// by the loader threads: the time from the first etcd write until UFM holds them all.
    fn slow_burst(
        &self,
        etcd: &Etcd,
        sim: &UfmSim,
        daemon: &mut Daemon,
        metrics: &Path,
        entries: &mut Vec<(u16, Entry)>,
    ) -> Value {
        let new = new_partitions(entries, BURST);
        let m0 = read_metrics(metrics).expect("the metrics file");
        self.clear_log(sim);
        eprintln!("bench: slow UFM: a burst of {BURST} new partitions");
        let t0 = Instant::now();
        let load = load_v3(etcd, PKEYS_PREFIX, &new);
        let done = self.wait_complete(sim, daemon, &new, t0, Duration::from_secs(120));
        let m = wait_metrics(daemon, metrics, Duration::from_secs(60), |s| {
            s.guids_added >= m0.guids_added + 2.0 * BURST as f64
        });
        let log = self.daemon_requests(sim);
        let writes = log.iter().filter(|r| is_write(r)).count();
        let lists = log
            .iter()
            .filter(|r| route_key(r) == "GET /resources/pkeys")
            .count();
        entries.extend(new);
        let seconds = done.as_secs_f64();
        json!({
            "partitions": BURST, "etcd_write_seconds": round(load.as_secs_f64(), 3),
            "seconds": round(seconds, 2),
            "floor_seconds": round(2.0 * BURST as f64 * SLOW_WRITE_MS as f64 / 1000.0, 1),
            "ufm_requests": log.len(), "ufm_writes": writes, "ufm_lists": lists,
            "full_passes": m.passes_full - m0.passes_full,
            "targeted_passes": m.passes_targeted - m0.passes_targeted,
            "target_seconds": TARGET_BURST_SECONDS,
            "pass": seconds < TARGET_BURST_SECONDS,
        })
    }

    /// A 75 s outage of UFM (`refuse`: the port closed; `503`: every API request answered
    /// 503), with `OUTAGE_PARTITIONS` new partitions written to etcd 2 s in. Measures the time
    /// from the outage's end until UFM holds them all, and the daemon's UFM requests during
    /// the outage: those the simulator logged then, plus the attempts it never saw (refused
    /// connections: the daemon's request count less what the simulator logged).
    fn slow_outage(
        &mut self,
        etcd: &Etcd,
        sim: &UfmSim,
        daemon: &mut Daemon,
        metrics: &Path,
        entries: &mut Vec<(u16, Entry)>,
        mode: &str,
    ) -> Value {
        let new = new_partitions(entries, OUTAGE_PARTITIONS);
        // A quiet start: the daemon's count is the same before and after the log is cleared
        // (a drift check every 30 s is its only request now).
        let mut tries = 0;
        let m0 = loop {
            let before = read_metrics(metrics).expect("the metrics file");
            self.clear_log(sim);
            let after = read_metrics(metrics).expect("the metrics file");
            if before.ufm_requests == after.ufm_requests {
                break after;
            }
            tries += 1;
            assert!(tries < 100, "the daemon never stops sending UFM requests");
        };
        eprintln!(
            "bench: slow UFM: {OUTAGE_SECONDS:.0} s outage ({mode}), {OUTAGE_PARTITIONS} new partitions meanwhile"
        );
        let wall_start = wall_ms();
        let t_start = Instant::now();
        let outage = json!({"seconds": OUTAGE_SECONDS, "mode": mode});
        self.post_json(&format!("{}/_sim/outage", sim.url()), &outage);
        // The changes arrive 2 s into the outage (a moment chosen, not a condition awaited).
        std::thread::sleep(Duration::from_secs(2).saturating_sub(t_start.elapsed()));
        let http = agent();
        for (pkey, entry) in &new {
            let key = format!("{PKEYS_PREFIX}{}", pkey_name(*pkey));
            put_v3_with(&http, &etcd.endpoint(), &key, &entry.pcocc_value());
        }
        let written_at = t_start.elapsed();
        // The end as the simulator reports it (its control API is closed too while it refuses).
        let status_url = format!("{}/_sim/outage", sim.url());
        let ended = loop {
            if let Some((200, body)) = try_get(&http, &status_url, None) {
                let status: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                if status["active"] == json!(false) {
                    break t_start.elapsed();
                }
            }
            if t_start.elapsed().as_secs_f64() > OUTAGE_SECONDS + 30.0 {
                panic!("the {mode} outage did not end\n{}", tail(&sim.log(), 20));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // The connections the outage dropped are not reused.
        self.http = agent();
        let done = self.wait_complete(sim, daemon, &new, t_start, Duration::from_secs(180));
        // Then the full pass that follows an outage ends, and the daemon is quiet again.
        let m1 = wait_metrics(daemon, metrics, Duration::from_secs(60), |s| {
            s.guids_added >= m0.guids_added + 2.0 * OUTAGE_PARTITIONS as f64
                && s.passes_full > m0.passes_full
        });
        let log = self.daemon_requests(sim);
        entries.extend(new);
        let wall_end = wall_start + (OUTAGE_SECONDS * 1000.0) as u64;
        let at = |r: &Value| r["at_ms"].as_u64().unwrap_or(0);
        let logged_during = log
            .iter()
            .filter(|r| (wall_start..wall_end).contains(&at(r)))
            .count() as f64;
        let attempts = m1.ufm_requests - m0.ufm_requests;
        let unseen = attempts - log.len() as f64;
        let during = logged_during + unseen;
        let per_second = during / OUTAGE_SECONDS;
        // From the nominal end (the outage started at the simulator after `t_start`, so this
        // counts a little more than the true time).
        let recovery = done.as_secs_f64() - OUTAGE_SECONDS;
        let after: Vec<&Value> = log.iter().filter(|r| at(r) >= wall_end).collect();
        // What the daemon sent once UFM was back, in ms after the outage's nominal end.
        let timeline: Vec<String> = after
            .iter()
            .map(|r| format!("+{} {}", at(r) - wall_end, route_key(r)))
            .collect();
        let lists_after = after
            .iter()
            .filter(|r| route_key(r) == "GET /resources/pkeys")
            .count();
        json!({
            "mode": mode, "seconds": OUTAGE_SECONDS, "partitions": OUTAGE_PARTITIONS,
            "changes_written_at_seconds": round(written_at.as_secs_f64(), 2),
            "end_seen_at_seconds": round(ended.as_secs_f64(), 3),
            "complete_at_seconds": round(done.as_secs_f64(), 3),
            "recovery_seconds": round(recovery, 2),
            "daemon_ufm_attempts": attempts,
            "simulator_logged": log.len(), "simulator_logged_during": logged_during,
            "never_reached_simulator": unseen,
            "requests_during": during, "requests_per_second_during": round(per_second, 3),
            "requests_after_by_route": count_routes(&after),
            "requests_after": timeline,
            "lists_after": lists_after,
            "full_passes": m1.passes_full - m0.passes_full,
            "targeted_passes": m1.passes_targeted - m0.passes_targeted,
            "ufm_retries": m1.ufm_retries - m0.ufm_retries,
            "target_recovery_seconds": TARGET_RECOVERY_SECONDS,
            "target_requests_per_second": TARGET_OUTAGE_REQUESTS_PER_SECOND,
            "pass": recovery < TARGET_RECOVERY_SECONDS
                && per_second <= TARGET_OUTAGE_REQUESTS_PER_SECOND,
        })
    }

    /// UFM answers the next `CONSECUTIVE_503` writes with 503 (as while it restarts under
    /// load); `OUTAGE_PARTITIONS` new partitions are written: the time until UFM holds them.
    fn slow_503s(
        &self,
        etcd: &Etcd,
        sim: &UfmSim,
        daemon: &mut Daemon,
        metrics: &Path,
        entries: &mut Vec<(u16, Entry)>,
    ) -> Value {
        let new = new_partitions(entries, OUTAGE_PARTITIONS);
        let m0 = read_metrics(metrics).expect("the metrics file");
        self.clear_log(sim);
        eprintln!(
            "bench: slow UFM: {CONSECUTIVE_503} consecutive 503s on writes, {OUTAGE_PARTITIONS} new partitions"
        );
        let rule = self.add_faults(
            sim,
            json!([{"method": "WRITE", "status": 503, "count": CONSECUTIVE_503}]),
        );
        let wall0 = wall_ms();
        let t0 = Instant::now();
        for (pkey, entry) in &new {
            let key = format!("{PKEYS_PREFIX}{}", pkey_name(*pkey));
            self.put_v3(etcd, &key, &entry.pcocc_value());
        }
        let done = self.wait_complete(sim, daemon, &new, t0, Duration::from_secs(300));
        let m = wait_metrics(daemon, metrics, Duration::from_secs(60), |s| {
            s.guids_added >= m0.guids_added + 2.0 * OUTAGE_PARTITIONS as f64
        });
        let faults = self.sim_faults(sim);
        let left = faults["rules"]
            .as_array()
            .map(|rules| {
                rules
                    .iter()
                    .filter(|r| rule.contains(&r["id"].as_u64().unwrap_or(0)))
                    .count()
            })
            .unwrap_or(0);
        assert_eq!(
            left, 0,
            "UFM holds the partitions but the 503 rule is not used up: {faults}"
        );
        let log = self.daemon_requests(sim);
        let writes = log.iter().filter(|r| is_write(r)).count();
        let timeline: Vec<String> = log
            .iter()
            .map(|r| {
                let at = r["at_ms"].as_u64().unwrap_or(0).saturating_sub(wall0);
                format!(
                    "+{at} {} {}",
                    route_key(r),
                    r["pkey"].as_str().unwrap_or("")
                )
            })
            .collect();
        entries.extend(new);
        let seconds = done.as_secs_f64();
        json!({
            "requests": timeline,
            "consecutive_503": CONSECUTIVE_503, "partitions": OUTAGE_PARTITIONS,
            "seconds": round(seconds, 2),
            "ufm_requests": log.len(), "ufm_writes": writes,
            "ufm_requests_by_route": count_routes(&log.iter().collect::<Vec<_>>()),
            "ufm_retries": m.ufm_retries - m0.ufm_retries,
            "full_passes": m.passes_full - m0.passes_full,
            "targeted_passes": m.passes_targeted - m0.passes_targeted,
            "target_seconds": TARGET_503_SECONDS,
            "pass": seconds < TARGET_503_SECONDS,
        })
    }

    /// Issue #15, head of line: `QUEUED_WRITES` single-GUID changes to partitions of the data
    /// set, written by one etcd request (so the daemon has them all at once), each one UFM
    /// write of `QUEUED_WRITE_MS`; as soon as the first of those writes reaches UFM, an
    /// unrelated new job (1 host + 1 VF GUID: two writes). Measures the time from the job's key
    /// to its partition complete in UFM. The slow fabric's rules are then put back and the
    /// queue drains at 200 ms a write.
    fn slow_head_of_line(
        &self,
        etcd: &Etcd,
        sim: &UfmSim,
        daemon: &mut Daemon,
        metrics: &Path,
        entries: &mut Vec<(u16, Entry)>,
    ) -> Value {
        let m0 = read_metrics(metrics).expect("the metrics file");
        self.clear_log(sim);
        eprintln!(
            "bench: slow UFM: a new job behind {QUEUED_WRITES} queued writes of {:.1} s",
            QUEUED_WRITE_MS as f64 / 1000.0
        );
        self.add_faults(
            sim,
            json!([{"method": "WRITE", "delay_ms": QUEUED_WRITE_MS - SLOW_WRITE_MS}]),
        );
        // 59 is prime to 2,000: QUEUED_WRITES different partitions of the data set.
        let mut queued: Vec<(u16, Entry)> = (0..QUEUED_WRITES)
            .map(|i| {
                let (pkey, entry) = &mut entries[(i * 59 + 23) % PARTITIONS];
                entry.host.push(0x0002_c906_0000_0000 | i as u64);
                (*pkey, entry.clone())
            })
            .collect();
        queued.sort_by_key(|(pkey, _)| *pkey);
        let job = new_partitions(entries, 1);
        let t_queue = Instant::now();
        put_all_v3(&self.http, &etcd.endpoint(), PKEYS_PREFIX, &queued);
        // The job comes once the first queued write is in flight: it waits for that one.
        loop {
            if self.daemon_requests(sim).iter().any(is_write) {
                break;
            }
            if t_queue.elapsed() > Duration::from_secs(60) {
                panic!(
                    "no queued write reached UFM in 60 s\n{}",
                    tail(&daemon.stderr(), 30)
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let job_wall = wall_ms();
        let t0 = Instant::now();
        self.put_v3(etcd, &job_key(&job), &job[0].1.pcocc_value());
        let done = self.wait_complete(sim, daemon, &job, t0, Duration::from_secs(120));
        let log = self.daemon_requests(sim);
        // Back to the slow fabric (200 ms a write) for the rest of the queue.
        self.clear_faults(sim);
        self.add_faults(sim, slow_rules());
        self.wait_complete(sim, daemon, &queued, t_queue, Duration::from_secs(180));
        let m = wait_metrics(daemon, metrics, Duration::from_secs(60), |s| {
            s.guids_added >= m0.guids_added + (QUEUED_WRITES + 2) as f64
        });
        let job_name = json!(pkey_name(job[0].0));
        let at = |r: &Value| r["at_ms"].as_u64().unwrap_or(0);
        let after_job: Vec<&Value> = log.iter().filter(|r| at(r) >= job_wall).collect();
        // Queued writes that reached UFM after the job's key and before the job's first write.
        let writes_ahead = after_job
            .iter()
            .take_while(|r| !(is_write(r) && r["pkey"] == job_name))
            .filter(|r| is_write(r))
            .count();
        let timeline: Vec<String> = after_job
            .iter()
            .map(|r| {
                format!(
                    "+{} {} {}",
                    at(r) - job_wall,
                    route_key(r),
                    r["pkey"].as_str().unwrap_or("")
                )
            })
            .collect();
        entries.extend(job);
        let seconds = done.as_secs_f64();
        json!({
            "queued_writes": QUEUED_WRITES, "write_ms": QUEUED_WRITE_MS,
            "seconds": round(seconds, 2),
            "floor_seconds": round(3.0 * QUEUED_WRITE_MS as f64 / 1000.0, 1),
            "writes_ahead_of_the_job": writes_ahead,
            "requests_after_the_job": timeline,
            "full_passes": m.passes_full - m0.passes_full,
            "targeted_passes": m.passes_targeted - m0.passes_targeted,
            "target_seconds": TARGET_HEAD_OF_LINE_SECONDS,
            "pass": seconds < TARGET_HEAD_OF_LINE_SECONDS,
        })
    }

    /// Issue #15, bulk delete: the first `BULK_DELETED` keys of the data set deleted by one v3
    /// range delete (as `etcdctl del --prefix` of part of the keyspace), and a new job written
    /// `BULK_JOB_AFTER` later. Measures the time until the guard's refusal is logged (from the
    /// delete) and until the job's partition is complete in UFM (from its key). No partition
    /// may be deleted. The keys are then written back, and the daemon reads them in full.
    fn slow_bulk_delete(
        &self,
        etcd: &Etcd,
        sim: &UfmSim,
        daemon: &mut Daemon,
        metrics: &Path,
        entries: &mut Vec<(u16, Entry)>,
    ) -> Value {
        let end = FIRST_PKEY + BULK_DELETED as u16;
        let deleted: Vec<(u16, Entry)> = entries
            .iter()
            .filter(|(pkey, _)| (FIRST_PKEY..end).contains(pkey))
            .cloned()
            .collect();
        assert_eq!(
            deleted.len(),
            BULK_DELETED,
            "the data set's first partitions"
        );
        let job = new_partitions(entries, 1);
        let m0 = read_metrics(metrics).expect("the metrics file");
        self.clear_log(sim);
        eprintln!(
            "bench: slow UFM: {BULK_DELETED} keys deleted by one request, a new job {} s later",
            BULK_JOB_AFTER.as_secs()
        );
        let refusal = format!("refusing to delete {BULK_DELETED} partitions");
        let refusals_before = daemon.stderr().matches(&refusal).count();
        let key = |pkey: u16| format!("{PKEYS_PREFIX}{}", pkey_name(pkey));
        let t0 = Instant::now();
        let reply = post_v3(
            &self.http,
            &etcd.endpoint(),
            "kv/deleterange",
            &json!({"key": B64.encode(key(FIRST_PKEY)), "range_end": B64.encode(key(end))}),
        );
        let removed = reply["deleted"]
            .as_str()
            .and_then(|n| n.parse::<usize>().ok());
        assert_eq!(removed, Some(BULK_DELETED), "the range delete: {reply}");
        // The job comes a moment later (a moment chosen, not a condition awaited).
        std::thread::sleep(BULK_JOB_AFTER.saturating_sub(t0.elapsed()));
        let t1 = Instant::now();
        self.put_v3(etcd, &job_key(&job), &job[0].1.pcocc_value());
        let auth = token_auth();
        let (mut refused_after, mut job_after) = (None, None);
        let deadline = Duration::from_secs(120);
        while (refused_after.is_none() || job_after.is_none()) && t0.elapsed() < deadline {
            if refused_after.is_none()
                && daemon.stderr().matches(&refusal).count() > refusals_before
            {
                refused_after = Some(t0.elapsed());
            }
            if job_after.is_none() {
                let complete = try_get(&self.http, &bench_pkey_url(sim, job[0].0), Some(&auth))
                    .filter(|(status, _)| *status == 200)
                    .and_then(|(_, body)| serde_json::from_slice::<Value>(&body).ok())
                    .is_some_and(|p| members_of(&p) == job[0].1.expected_members());
                if complete {
                    job_after = Some(t1.elapsed());
                }
            }
            if !daemon.is_running() {
                panic!("ufm-pkeyd exited\n{}", tail(&daemon.stderr(), 30));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let m = read_metrics(metrics).expect("the metrics file");
        let log = self.daemon_requests(sim);
        let partition_deletes = log
            .iter()
            .filter(|r| route_key(r) == "DELETE /resources/pkeys/{pkey}")
            .count();
        // The keys back (as an operator restores them), and a full read of them.
        let restored = load_v3(etcd, PKEYS_PREFIX, &deleted);
        let full = read_metrics(metrics).map_or(0, |s| s.passes_full);
        wait_metrics(daemon, metrics, Duration::from_secs(60), |s| {
            s.passes_full > full
        });
        entries.extend(job);
        let secs =
            |d: Option<Duration>| d.map_or(Value::Null, |d| json!(round(d.as_secs_f64(), 2)));
        let within = |d: Option<Duration>| d.is_some_and(|d| d.as_secs_f64() < TARGET_BULK_SECONDS);
        json!({
            "keys_deleted": BULK_DELETED, "job_written_after_seconds": BULK_JOB_AFTER.as_secs_f64(),
            "refusal_logged_seconds": secs(refused_after),
            "job_complete_seconds": secs(job_after),
            "partitions_deleted": partition_deletes,
            "ufm_requests": log.len(),
            "ufm_requests_by_route": count_routes(&log.iter().collect::<Vec<_>>()),
            "etcd_requests": m.etcd_requests - m0.etcd_requests,
            "full_passes": m.passes_full - m0.passes_full,
            "targeted_passes": m.passes_targeted - m0.passes_targeted,
            "restore_seconds": round(restored.as_secs_f64(), 2),
            "target_seconds": TARGET_BULK_SECONDS,
            "pass": within(refused_after) && within(job_after) && partition_deletes == 0,
        })
    }

    /// Waits until etcd has started more v3 watch streams than `seen` and holds a watcher,
    /// none of them lagging; returns the streams started.
    fn wait_watch_stream(&self, etcd: &Etcd, daemon: &mut Daemon, seen: f64) -> f64 {
        let start = Instant::now();
        loop {
            let (_, body) = self.get(&etcd.url("/metrics"), None);
            let text = String::from_utf8_lossy(&body);
            let sample = |prefix: &str| {
                text.lines()
                    .filter(|l| l.starts_with(prefix))
                    .find_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                    .unwrap_or(0.0)
            };
            let started = sample(
                "grpc_server_started_total{grpc_method=\"Watch\",grpc_service=\"etcdserverpb.Watch\"",
            );
            let watchers = sample("etcd_debugging_mvcc_watcher_total ");
            let lagging = sample("etcd_debugging_mvcc_slow_watcher_total ");
            if started > seen && watchers >= 1.0 && lagging == 0.0 {
                return started;
            }
            if !daemon.is_running() {
                panic!("ufm-pkeyd exited\n{}", tail(&daemon.stderr(), 30));
            }
            if start.elapsed() > Duration::from_secs(10) {
                panic!(
                    "the daemon opened no new etcd watch in 10 s (streams {started}, watchers {watchers}, lagging {lagging})\n{}",
                    tail(&daemon.stderr(), 30)
                );
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Polls the partitions `want` (ascending PKeys) with the benchmark's token every 20 ms,
    /// from the lowest one not complete yet, until UFM holds each exactly; returns the time
    /// since `t0`. A read that fails (UFM restarting) counts as not complete.
    fn wait_complete(
        &self,
        sim: &UfmSim,
        daemon: &mut Daemon,
        want: &[(u16, Entry)],
        t0: Instant,
        timeout: Duration,
    ) -> Duration {
        let auth = token_auth();
        let mut left = 0;
        loop {
            while let Some((pkey, entry)) = want.get(left) {
                let complete = try_get(&self.http, &bench_pkey_url(sim, *pkey), Some(&auth))
                    .filter(|(status, _)| *status == 200)
                    .and_then(|(_, body)| serde_json::from_slice::<Value>(&body).ok())
                    .is_some_and(|p| members_of(&p) == entry.expected_members());
                if !complete {
                    break;
                }
                left += 1;
            }
            if left == want.len() {
                return t0.elapsed();
            }
            if !daemon.is_running() {
                panic!("ufm-pkeyd exited\n{}", tail(&daemon.stderr(), 30));
            }
            if t0.elapsed() > timeout {
                panic!(
                    "UFM holds {left} of {} new partitions after {} s\n{}",
                    want.len(),
                    timeout.as_secs(),
                    tail(&daemon.stderr(), 30)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn report_slow(
        &mut self,
        idle: &Value,
        latency: &Value,
        burst: &Value,
        refuse: &Value,
        unavailable: &Value,
        flaky: &Value,
    ) {
        let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
        let ok = |v: &Value| v["pass"] == json!(true);
        self.section(&format!(
            "Slow UFM: {PARTITIONS} partitions x {} GUIDs, list +{:.0} s, every write +{SLOW_WRITE_MS} ms, etcd v3, default settings",
            HOSTS + VFS,
            SLOW_LIST_MS as f64 / 1000.0
        ));
        self.row(
            "daemon start -> first full pass done",
            format!("{:.1} s", f(idle, "startup_seconds")),
            "",
            None,
        );
        self.row(
            &format!(
                "idle, {:.0} s measured: UFM requests / bytes per minute",
                f(idle, "seconds")
            ),
            format!(
                "{:.1} / {:.0} B ({} drift checks, {} full passes)",
                f(idle, "ufm_requests_per_minute"),
                f(idle, "ufm_bytes_per_minute"),
                f(idle, "drift_checks"),
                f(idle, "full_passes")
            ),
            "",
            None,
        );
        self.row(
            "idle with the full pass every 600 s: UFM req / bytes per min",
            format!(
                "{:.2} / {:.2} MB (a full pass: {:.1} MB)",
                f(idle, "ufm_requests_per_minute_with_resync"),
                f(idle, "ufm_bytes_per_minute_with_resync") / 1e6,
                f(idle, "full_pass_ufm_bytes") / 1e6
            ),
            &format!("< {:.0} MB/min", TARGET_IDLE_UFM_BYTES_PER_MINUTE / 1e6),
            Some(ok(idle)),
        );
        self.row(
            &format!("{SLOW_CHANGES} single changes -> UFM shows it: median / p99 / max"),
            format!(
                "{:.0} / {:.0} / {:.0} ms",
                f(latency, "median_ms"),
                f(latency, "p99_ms"),
                f(latency, "max_ms")
            ),
            &format!("p99 < {TARGET_SLOW_P99_MS:.0} ms"),
            Some(ok(latency)),
        );
        self.row(
            "  etcd write -> the daemon's write reaches UFM: median / max",
            format!(
                "{:.0} / {:.0} ms (+{SLOW_WRITE_MS} ms write)",
                f(latency, "write_reached_ufm_median_ms"),
                f(latency, "write_reached_ufm_max_ms")
            ),
            "",
            None,
        );
        self.row(
            "  UFM requests per change; lists; full passes",
            format!(
                "{:.2} ({} writes); {}; {}",
                f(latency, "ufm_requests_per_change"),
                f(latency, "ufm_writes"),
                f(latency, "ufm_lists"),
                f(latency, "full_passes")
            ),
            "",
            None,
        );
        self.row(
            &format!("burst of {BURST} new partitions (1 host + 1 VF): last complete"),
            format!(
                "{:.1} s (floor {:.0} s)",
                f(burst, "seconds"),
                f(burst, "floor_seconds")
            ),
            &format!("< {TARGET_BURST_SECONDS:.0} s"),
            Some(ok(burst)),
        );
        self.row(
            "  UFM writes; lists; passes targeted / full",
            format!(
                "{}; {}; {} / {}",
                f(burst, "ufm_writes"),
                f(burst, "ufm_lists"),
                f(burst, "targeted_passes"),
                f(burst, "full_passes")
            ),
            "",
            None,
        );
        for (v, what) in [
            (refuse, "refusing connections"),
            (unavailable, "answering 503"),
        ] {
            self.row(
                &format!("UFM {what} {OUTAGE_SECONDS:.0} s: converged after it answers"),
                format!(
                    "{:.2} s ({OUTAGE_PARTITIONS} partitions written meanwhile)",
                    f(v, "recovery_seconds")
                ),
                &format!("< {TARGET_RECOVERY_SECONDS:.0} s"),
                Some(f(v, "recovery_seconds") < TARGET_RECOVERY_SECONDS),
            );
            self.row(
                "  UFM requests per second during the outage",
                format!(
                    "{:.2} ({} in {OUTAGE_SECONDS:.0} s)",
                    f(v, "requests_per_second_during"),
                    f(v, "requests_during")
                ),
                &format!("<= {TARGET_OUTAGE_REQUESTS_PER_SECOND:.0}/s"),
                Some(f(v, "requests_per_second_during") <= TARGET_OUTAGE_REQUESTS_PER_SECOND),
            );
        }
        self.row(
            &format!(
                "{CONSECUTIVE_503} consecutive 503s on writes ({OUTAGE_PARTITIONS} new partitions): converged"
            ),
            format!(
                "{:.1} s ({} retries, {} full passes)",
                f(flaky, "seconds"),
                f(flaky, "ufm_retries"),
                f(flaky, "full_passes")
            ),
            &format!("< {TARGET_503_SECONDS:.0} s"),
            Some(ok(flaky)),
        );
    }

    /// Issue #15's rows: the read-back's cost, head of line, bulk delete (same slow fabric).
    fn report_slow_issue15(&mut self, latency: &Value, queued: &Value, bulk: &Value) {
        let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
        self.section(
            "Slow UFM, issue #15: every write read back, head of line, bulk delete (same fabric, daemon)",
        );
        self.read_back_row(&latency["ufm_per_change"]);
        self.row(
            &format!(
                "new job behind {QUEUED_WRITES} queued writes of {:.1} s: complete",
                QUEUED_WRITE_MS as f64 / 1000.0
            ),
            format!(
                "{:.2} s (floor {:.1} s; {} queued writes went first)",
                f(queued, "seconds"),
                f(queued, "floor_seconds"),
                f(queued, "writes_ahead_of_the_job")
            ),
            &format!("< {TARGET_HEAD_OF_LINE_SECONDS:.0} s"),
            Some(queued["pass"] == json!(true)),
        );
        let shown = |v: &Value| {
            v.as_f64()
                .map_or("never".to_string(), |s| format!("{s:.2} s"))
        };
        let within = |v: &Value| v.as_f64().is_some_and(|s| s < TARGET_BULK_SECONDS);
        self.row(
            &format!("{BULK_DELETED} keys deleted by one request: refusal logged"),
            format!(
                "{} ({} partitions deleted)",
                shown(&bulk["refusal_logged_seconds"]),
                f(bulk, "partitions_deleted")
            ),
            &format!("< {TARGET_BULK_SECONDS:.0} s, none deleted"),
            Some(within(&bulk["refusal_logged_seconds"]) && f(bulk, "partitions_deleted") == 0.0),
        );
        self.row(
            &format!(
                "  a new job written {} s later: complete after its key",
                BULK_JOB_AFTER.as_secs()
            ),
            format!(
                "{} ({} UFM requests, passes targeted / full {} / {})",
                shown(&bulk["job_complete_seconds"]),
                f(bulk, "ufm_requests"),
                f(bulk, "targeted_passes"),
                f(bulk, "full_passes")
            ),
            &format!("< {TARGET_BULK_SECONDS:.0} s"),
            Some(within(&bulk["job_complete_seconds"])),
        );
    }

    /// Issue #15's row: the daemon's UFM requests per single change, by kind, and the most
    /// read-backs one change cost (see [`read_back_cost`]).
    fn read_back_row(&mut self, cost: &Value) {
        let f = |k: &str| cost[k].as_f64().unwrap_or(f64::NAN);
        let ok = cost["pass"] == json!(true);
        self.row(
            "UFM requests per change: read, stamps, writes, check, read back",
            format!(
                "{}: {} + {} + {} + {} + {} (max {} read back{})",
                short(f("requests")),
                short(f("reads")),
                short(f("stamps")),
                short(f("writes")),
                short(f("checks")),
                short(f("read_backs")),
                f("read_backs_max"),
                if f("lists") > 0.0 {
                    format!(", {:.2} lists", f("lists"))
                } else {
                    String::new()
                }
            ),
            &format!("<= {TARGET_READ_BACKS_PER_WRITTEN_PARTITION} read back per write"),
            Some(ok),
        );
    }

    // ---------------------------------------------------------------------------------------
    // HTTP helpers (a keep-alive agent of our own, not the code under test)

    fn get(&self, url: &str, auth: Option<&str>) -> (u16, Vec<u8>) {
        let mut request = self.http.get(url);
        if let Some(auth) = auth {
            request = request.header("Authorization", auth);
        }
        let mut response = request.call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(u64::MAX)
            .read_to_vec()
            .unwrap_or_else(|e| panic!("GET {url}: reading the body: {e}"));
        (status, body)
    }

    fn post(&self, url: &str) {
        let status = self
            .http
            .post(url)
            .send_empty()
            .unwrap_or_else(|e| panic!("POST {url}: {e}"))
            .status()
            .as_u16();
        assert!((200..300).contains(&status), "POST {url}: HTTP {status}");
    }

    fn post_json(&self, url: &str, body: &Value) -> Value {
        let mut response = self
            .http
            .post(url)
            .header("Content-Type", "application/json")
            .send(body.to_string().as_bytes())
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        assert!(
            (200..300).contains(&status),
            "POST {url}: HTTP {status}: {text}"
        );
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// Adds fault rules (`POST /_sim/faults`); returns their ids.
    fn add_faults(&self, sim: &UfmSim, rules: Value) -> Vec<u64> {
        let reply = self.post_json(
            &format!("{}/_sim/faults", sim.url()),
            &json!({ "rules": rules }),
        );
        reply["added"]
            .as_array()
            .map(|ids| ids.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default()
    }

    /// `GET /_sim/faults`.
    fn sim_faults(&self, sim: &UfmSim) -> Value {
        let (status, body) = self.get(&format!("{}/_sim/faults", sim.url()), None);
        assert_eq!(status, 200, "GET /_sim/faults");
        serde_json::from_slice(&body).expect("/_sim/faults is JSON")
    }

    /// Every fault rule and outage off (`DELETE /_sim/faults`).
    fn clear_faults(&self, sim: &UfmSim) {
        self.delete(&format!("{}/_sim/faults", sim.url()));
    }

    /// Empties the simulator's request log (`DELETE /_sim/log`).
    fn clear_log(&self, sim: &UfmSim) {
        self.delete(&format!("{}/_sim/log", sim.url()));
    }

    /// The daemon's requests in the simulator's log (`who` is its user; the benchmark reads
    /// with its token), oldest first.
    fn daemon_requests(&self, sim: &UfmSim) -> Vec<Value> {
        let (status, body) = self.get(&format!("{}/_sim/log", sim.url()), None);
        assert_eq!(status, 200, "GET /_sim/log");
        let log: Vec<Value> = serde_json::from_slice(&body).expect("/_sim/log is a JSON list");
        log.into_iter()
            .filter(|r| r["who"].as_str() == Some(sim.user()))
            .collect()
    }

    fn delete(&self, url: &str) {
        let status = self
            .http
            .delete(url)
            .call()
            .unwrap_or_else(|e| panic!("DELETE {url}: {e}"))
            .status()
            .as_u16();
        assert!((200..300).contains(&status), "DELETE {url}: HTTP {status}");
    }

    fn sim_stats(&self, sim: &UfmSim) -> Value {
        let (status, body) = self.get(&format!("{}/_sim/stats", sim.url()), None);
        assert_eq!(status, 200, "GET /_sim/stats");
        serde_json::from_slice(&body).expect("/_sim/stats is JSON")
    }

    fn body_size(&self, url: &str, sim: Option<&UfmSim>) -> usize {
        let auth = sim.map(basic_auth);
        let (status, body) = self.get(url, auth.as_deref());
        assert_eq!(status, 200, "GET {url}");
        body.len()
    }

    fn put_v2(&self, etcd: &Etcd, key: &str, value: &str) {
        put_v2_with(&self.http, &etcd.endpoint(), key, value);
    }

    fn put_v3(&self, etcd: &Etcd, key: &str, value: &str) {
        put_v3_with(&self.http, &etcd.endpoint(), key, value);
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .new_agent()
}

/// `PUT /v2/keys<key>` with `value=<quote_plus(value)>`, as python-etcd (pcocc) writes.
fn put_v2_with(http: &ureq::Agent, endpoint: &str, key: &str, value: &str) {
    let url = format!("{endpoint}/v2/keys{key}");
    let body = format!("value={}", form_urlencode(value));
    let status = http
        .put(&url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .send(body.as_bytes())
        .unwrap_or_else(|e| panic!("PUT {url}: {e}"))
        .status()
        .as_u16();
    assert!(matches!(status, 200 | 201), "PUT {url}: HTTP {status}");
}

/// `POST /v3/kv/put` through etcd's JSON gateway.
fn put_v3_with(http: &ureq::Agent, endpoint: &str, key: &str, value: &str) {
    let url = format!("{endpoint}/v3/kv/put");
    let body = json!({"key": B64.encode(key), "value": B64.encode(value)}).to_string();
    let status = http
        .post(&url)
        .header("Content-Type", "application/json")
        .send(body.as_bytes())
        .unwrap_or_else(|e| panic!("POST {url}: {e}"))
        .status()
        .as_u16();
    assert_eq!(status, 200, "POST {url} ({key})");
}

/// The slow fabric of issue #10 (persistent fault rules): the listing with GUIDs delayed by
/// `SLOW_LIST_MS`, every write by `SLOW_WRITE_MS`.
fn slow_rules() -> Value {
    json!([
        {"method": "GET", "route": "/resources/pkeys", "query": {"guids_data": "true"},
         "delay_ms": SLOW_LIST_MS},
        {"method": "WRITE", "delay_ms": SLOW_WRITE_MS},
    ])
}

/// A v3 request through etcd's JSON gateway; its answer.
fn post_v3(http: &ureq::Agent, endpoint: &str, rpc: &str, body: &Value) -> Value {
    let url = format!("{endpoint}/v3/{rpc}");
    let mut response = http
        .post(&url)
        .header("Content-Type", "application/json")
        .send(body.to_string().as_bytes())
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    assert_eq!(status, 200, "POST {url}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("POST {url}: {e}: {text}"))
}

/// Writes every entry by one v3 transaction: one revision, one watch event batch.
fn put_all_v3(http: &ureq::Agent, endpoint: &str, prefix: &str, entries: &[(u16, Entry)]) {
    let puts: Vec<Value> = entries
        .iter()
        .map(|(pkey, entry)| {
            let key = format!("{prefix}{}", pkey_name(*pkey));
            json!({"request_put": {"key": B64.encode(key), "value": B64.encode(entry.pcocc_value())}})
        })
        .collect();
    let reply = post_v3(http, endpoint, "kv/txn", &json!({"success": puts}));
    assert_eq!(
        reply["succeeded"],
        json!(true),
        "the v3 transaction: {reply}"
    );
}

/// The etcd key of the one partition in `job`.
fn job_key(job: &[(u16, Entry)]) -> String {
    format!("{PKEYS_PREFIX}{}", pkey_name(job[0].0))
}

/// Writes every entry through v2 with a few keep-alive clients in parallel.
fn load_v2(etcd: &Etcd, prefix: &str, entries: &[(u16, Entry)]) -> Duration {
    load(etcd, prefix, entries, put_v2_with)
}

/// Writes every entry through v3 with a few keep-alive clients in parallel.
fn load_v3(etcd: &Etcd, prefix: &str, entries: &[(u16, Entry)]) -> Duration {
    load(etcd, prefix, entries, put_v3_with)
}

fn load(
    etcd: &Etcd,
    prefix: &str,
    entries: &[(u16, Entry)],
    put: fn(&ureq::Agent, &str, &str, &str),
) -> Duration {
    let start = Instant::now();
    let endpoint = etcd.endpoint();
    let chunk = entries.len().div_ceil(LOADERS).max(1);
    std::thread::scope(|scope| {
        for part in entries.chunks(chunk) {
            let endpoint = &endpoint;
            scope.spawn(move || {
                let http = agent();
                for (pkey, entry) in part {
                    let key = format!("{prefix}{}", pkey_name(*pkey));
                    put(&http, endpoint, &key, &entry.pcocc_value());
                }
            });
        }
    });
    start.elapsed()
}

/// A simulator that also takes the benchmark's token under `/ufmRestV3`: the benchmark's reads
/// of UFM are then told from the daemon's in the request log.
fn token_sim() -> UfmSim {
    UfmSim::start(SimOptions {
        token: Some(BENCH_TOKEN.to_string()),
        ..SimOptions::default()
    })
}

/// The benchmark's `Authorization` header (`/ufmRestV3` takes `Basic <token>`).
fn token_auth() -> String {
    format!("Basic {BENCH_TOKEN}")
}

/// The single-PKey GET the benchmark reads a partition with (with its token).
fn bench_pkey_url(sim: &UfmSim, pkey: u16) -> String {
    format!(
        "{}/ufmRestV3/resources/pkeys/{}?guids_data=true",
        sim.url(),
        pkey_name(pkey)
    )
}

/// A GET that returns `None` instead of panicking when nothing answers.
fn try_get(http: &ureq::Agent, url: &str, auth: Option<&str>) -> Option<(u16, Vec<u8>)> {
    let mut request = http.get(url);
    if let Some(auth) = auth {
        request = request.header("Authorization", auth);
    }
    let mut response = request.call().ok()?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(u64::MAX)
        .read_to_vec()
        .ok()?;
    Some((status, body))
}

/// Milliseconds since the Unix epoch, the clock of the simulator's request log.
fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `"<METHOD> <route>"` of a request-log entry, as `/_sim/stats` keys them.
fn route_key(entry: &Value) -> String {
    format!(
        "{} {}",
        entry["method"].as_str().unwrap_or(""),
        entry["route"].as_str().unwrap_or("")
    )
}

fn is_write(entry: &Value) -> bool {
    !matches!(entry["method"].as_str(), Some("GET" | "HEAD"))
}

/// One pass's UFM requests for one partition, by kind (issue #15).
#[derive(Clone, Copy, Debug, Default)]
struct Kinds {
    total: u64,
    /// Reads of the partition before its first write: the pass's own.
    reads: u64,
    /// Reads of the partition right before a remove (the check that the remove keeps what it
    /// must and leaves a member; older than issue #15).
    checks: u64,
    /// Reads of the partition after a write, other than checks: the read-back.
    read_backs: u64,
    stamps: u64,
    writes: u64,
    lists: u64,
}

impl Kinds {
    /// Sorts `requests` (the daemon's, oldest first) about `pkey`.
    fn of(requests: &[&Value], pkey: u16) -> Kinds {
        let name = json!(pkey_name(pkey));
        let mut kinds = Kinds {
            total: requests.len() as u64,
            ..Kinds::default()
        };
        let mut written = false;
        for (i, r) in requests.iter().enumerate() {
            let route = route_key(r);
            let ours = r["pkey"] == name;
            match route.as_str() {
                "GET /resources/pkeys/{pkey}" if ours => {
                    let next = requests.get(i + 1);
                    let before_remove = next.is_some_and(|n| {
                        route_key(n) == "DELETE /resources/pkeys/{pkey}/guids" && n["pkey"] == name
                    });
                    match (before_remove, written) {
                        (true, _) => kinds.checks += 1,
                        (false, true) => kinds.read_backs += 1,
                        (false, false) => kinds.reads += 1,
                    }
                }
                "GET /resources/pkeys/{pkey}" => kinds.reads += 1,
                "GET /resources/pkeys/last_updated" => kinds.stamps += 1,
                "GET /resources/pkeys" => kinds.lists += 1,
                _ if is_write(r) => {
                    kinds.writes += 1;
                    written |= ours;
                }
                _ => {}
            }
        }
        kinds
    }

    fn add(&mut self, other: Kinds) {
        self.total += other.total;
        self.reads += other.reads;
        self.checks += other.checks;
        self.read_backs += other.read_backs;
        self.stamps += other.stamps;
        self.writes += other.writes;
        self.lists += other.lists;
    }
}

/// What single changes cost UFM (issue #15), from the daemon's requests while the changes
/// were made one at a time, each applied before the next: `changes` holds each change's
/// partition and when it was written to etcd (the log's clock, ms since the epoch), in order.
/// A change's requests are those until the next change ([`Kinds`] sorts them). Per change on
/// average: every request and each kind; the most read-backs of one change (one partition
/// written per change); one change's requests in order (the first with no drift check).
fn read_back_cost(log: &[Value], changes: &[(u16, u64)]) -> Value {
    let at = |r: &Value| r["at_ms"].as_u64().unwrap_or(0);
    let mut totals = Kinds::default();
    let mut read_backs_max = 0;
    let mut sample: Option<Vec<String>> = None;
    for (i, (pkey, from)) in changes.iter().enumerate() {
        let until = changes.get(i + 1).map_or(u64::MAX, |(_, t)| *t);
        let window: Vec<&Value> = log
            .iter()
            .filter(|r| (*from..until).contains(&at(r)))
            .collect();
        let kinds = Kinds::of(&window, *pkey);
        totals.add(kinds);
        read_backs_max = read_backs_max.max(kinds.read_backs);
        if sample.is_none() && kinds.stamps == 2 && kinds.lists == 0 {
            sample = Some(
                window
                    .iter()
                    .map(|r| {
                        let pkey = r["pkey"]
                            .as_str()
                            .map_or(String::new(), |p| format!(" {p}"));
                        format!("{}{pkey}", route_key(r))
                    })
                    .collect(),
            );
        }
    }
    let n = changes.len().max(1) as f64;
    let per = |total: u64| round(total as f64 / n, 2);
    json!({
        "changes": changes.len(),
        "requests": per(totals.total), "reads": per(totals.reads), "checks": per(totals.checks),
        "read_backs": per(totals.read_backs), "stamps": per(totals.stamps),
        "writes": per(totals.writes), "lists": per(totals.lists),
        "read_backs_max": read_backs_max,
        "one_change": sample,
        "target_read_backs_per_written_partition": TARGET_READ_BACKS_PER_WRITTEN_PARTITION,
        "pass": read_backs_max <= TARGET_READ_BACKS_PER_WRITTEN_PARTITION,
    })
}

/// Request-log entries counted by route.
fn count_routes(entries: &[&Value]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for entry in entries {
        *counts.entry(route_key(entry)).or_default() += 1;
    }
    counts
}

/// `n` new partitions of 1 host + 1 VF GUID, on the PKeys after the last one in `entries`
/// from `SLOW_FIRST_PKEY` on.
fn new_partitions(entries: &[(u16, Entry)], n: usize) -> Vec<(u16, Entry)> {
    let first = entries
        .iter()
        .map(|(pkey, _)| *pkey + 1)
        .filter(|pkey| *pkey > SLOW_FIRST_PKEY)
        .max()
        .unwrap_or(SLOW_FIRST_PKEY);
    (first..first + n as u16)
        .map(|pkey| {
            let p = usize::from(pkey);
            let entry = Entry {
                host: vec![host_guid(p, 0)],
                vf: vec![vf_guid(p, 0)],
            };
            (pkey, entry)
        })
        .collect()
}

fn basic_auth(sim: &UfmSim) -> String {
    format!(
        "Basic {}",
        B64.encode(format!("{}:{}", sim.user(), sim.password()))
    )
}

/// GUID -> index0 of a partition as the simulator shows it (`guids_data=true`).
fn members_of(partition: &Value) -> BTreeMap<u64, bool> {
    partition["guids"]
        .as_array()
        .map(|guids| {
            guids
                .iter()
                .map(|m| {
                    let text = m["guid"].as_str().expect("member guid");
                    let guid =
                        u64::from_str_radix(text.trim_start_matches("0x"), 16).expect("hex guid");
                    (guid, m["index0"].as_bool().unwrap_or(false))
                })
                .collect()
        })
        .unwrap_or_default()
}

// -------------------------------------------------------------------------------------------
// The daemon's metrics file and /proc

/// What the benchmark reads from the daemon's `--metrics-file`.
#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    /// Passes of either kind (`ufm_pkeyd_passes_total`).
    passes: u64,
    passes_full: u64,
    passes_targeted: u64,
    /// `last_updated` checks, any result, and those that found a change.
    drift_checks: u64,
    drift_changed: u64,
    etcd_requests: f64,
    /// Every UFM request the daemon sent, answered or not.
    ufm_requests: f64,
    ufm_retries: f64,
    changes: f64,
    guids_added: f64,
    pass_duration: f64,
    latency_count: f64,
    latency_sum: f64,
}

fn read_metrics(path: &Path) -> Option<Sample> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut sample = Sample::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        if name.starts_with("ufm_pkeyd_passes_total") {
            sample.passes += value as u64;
        } else if name == "ufm_pkeyd_passes_by_kind_total{kind=\"full\"}" {
            sample.passes_full = value as u64;
        } else if name == "ufm_pkeyd_passes_by_kind_total{kind=\"targeted\"}" {
            sample.passes_targeted = value as u64;
        } else if name.starts_with("ufm_pkeyd_drift_checks_total") {
            sample.drift_checks += value as u64;
            if name.contains("result=\"changed\"") {
                sample.drift_changed += value as u64;
            }
        } else if name == "ufm_pkeyd_ufm_retries_total" {
            sample.ufm_retries = value;
        } else if name == "ufm_pkeyd_change_latency_seconds_count" {
            sample.latency_count = value;
        } else if name == "ufm_pkeyd_change_latency_seconds_sum" {
            sample.latency_sum = value;
        } else if name.starts_with("ufm_pkeyd_requests_total{service=\"etcd\"") {
            sample.etcd_requests += value;
        } else if name.starts_with("ufm_pkeyd_requests_total{service=\"ufm\"") {
            sample.ufm_requests += value;
        } else if name.starts_with("ufm_pkeyd_changes_applied_total") {
            sample.changes += value;
            if name.contains("kind=\"guid_added\"") {
                sample.guids_added += value;
            }
        } else if name == "ufm_pkeyd_pass_duration_seconds" {
            sample.pass_duration = value;
        }
    }
    Some(sample)
}

/// Polls the metrics file every 2 ms until `done` holds; panics with the daemon's log after
/// `timeout` or if it exits.
fn wait_metrics(
    daemon: &mut Daemon,
    path: &Path,
    timeout: Duration,
    done: impl Fn(&Sample) -> bool,
) -> Sample {
    let start = Instant::now();
    loop {
        if let Some(sample) = read_metrics(path) {
            if done(&sample) {
                return sample;
            }
        }
        if !daemon.is_running() {
            panic!("ufm-pkeyd exited\n{}", tail(&daemon.stderr(), 30));
        }
        if start.elapsed() > timeout {
            panic!(
                "timed out after {} s waiting for a pass in {}\n{}",
                timeout.as_secs(),
                path.display(),
                tail(&daemon.stderr(), 30)
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A `kB` field of `/proc/<pid>/status` (`VmHWM`, `VmRSS`).
fn proc_status_kb(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/status: {e}"));
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/stat: {e}"));
    // Fields after the command name (which may hold spaces) start with field 3 (state);
    // utime and stime are fields 14 and 15.
    let rest = &text[text.rfind(')').expect("/proc/pid/stat has (comm)") + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields[11].parse().expect("utime");
    let stime: f64 = fields[12].parse().expect("stime");
    utime + stime
}

/// `getconf CLK_TCK` (100 when it cannot be asked).
fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

// -------------------------------------------------------------------------------------------
// Small things

fn path_text(path: &Path) -> String {
    path.to_str().expect("temp paths are UTF-8").to_string()
}

/// A count as it reads best: whole numbers without decimals, others with two.
fn short(value: f64) -> String {
    if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

fn mb(kb: u64) -> String {
    format!("{:.1} MB", kb as f64 / 1024.0)
}

fn round(value: f64, digits: i32) -> f64 {
    let factor = 10f64.powi(digits);
    (value * factor).round() / factor
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count()
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
