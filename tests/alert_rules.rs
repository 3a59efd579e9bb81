//! The Prometheus alert rules shipped beside the metrics (`packaging/ufm-pkeyd-alerts.yml`),
//! checked with `promtool check rules` and tested with `promtool test rules` against metrics
//! the daemon really wrote: the real daemon against a real etcd and the UFM simulator is
//! brought into each state an alert is about (a healthy daemon, a UFM outage, a restart while
//! UFM is down, changes UFM keeps failing, a refused mass deletion, an ownership record made
//! with another etcd, an HA pair whose leader election someone else holds), its metrics file
//! is read, and its samples become promtool's input series.
//!
//! promtool's clock starts at 0: a metrics file read at Unix time T is placed at [`NOW`] (the
//! Unix times in its samples moved by the same offset) and stays as it was for an hour, as a
//! daemon whose state does not change keeps writing it. Each check names every alert that
//! fires some minutes after [`NOW`] (with its labels and annotations, rendered from the rules
//! file) and expects every other alert of the file not to fire.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use support::{
    Api, Daemon, Etcd, Notify, PKEYS_PREFIX, Rig, TempDir, UfmSim, host, metric, path_text, secs,
    tail_lines, wait_for,
};

const RULES: &str = "packaging/ufm-pkeyd-alerts.yml";

/// Where a metrics file read now is placed on promtool's clock, in minutes.
const NOW: u64 = 120;

/// How long after [`NOW`] the input series last, in minutes.
const LATER: u64 = 60;

/// The job label node_exporter's scrape gives the series.
const JOB: &str = "node";

fn rules_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(RULES)
}

/// Runs `promtool ARGS`; fails the test with the fix when promtool is not installed.
fn promtool(args: &[&str]) -> (bool, String) {
    let output = Command::new("promtool")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run promtool ({e}): install Debian's prometheus package (make test-deps)"
            )
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A metrics file as the daemon wrote it, read at `read_at` (Unix seconds), and the instance
/// label its scrape would carry.
#[derive(Clone, Debug)]
struct Scrape {
    instance: &'static str,
    text: String,
    read_at: f64,
}

impl Scrape {
    /// Waits (15 s at most) until the metrics file at `path` satisfies `ready`, and reads it.
    fn wait(
        instance: &'static str,
        path: &Path,
        daemon: &Daemon,
        what: &str,
        ready: impl Fn(&str) -> bool,
    ) -> Scrape {
        let text = wait_for(
            &format!("{instance}'s metrics file to show {what}"),
            secs(15),
            || {
                format!(
                    "--- metrics ---\n{}\n--- ufm-pkeyd stderr ---\n{}",
                    std::fs::read_to_string(path).unwrap_or_default(),
                    tail_lines(&daemon.stderr(), 30)
                )
            },
            || {
                std::fs::read_to_string(path)
                    .ok()
                    .filter(|text| ready(text))
            },
        );
        Scrape {
            instance,
            text,
            read_at: unix_now(),
        }
    }

    fn sample(&self, series: &str) -> Option<f64> {
        metric(&self.text, series)
    }

    /// The samples as promtool input series: labelled with the scrape's instance and job, Unix
    /// times moved by `origin`, present from [`NOW`] on.
    fn input_series(&self, origin: f64) -> Vec<Value> {
        let mut series = Vec::new();
        for line in self.text.lines().filter(|l| !l.starts_with('#')) {
            let Some((selector, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let mut value: f64 = value
                .parse()
                .unwrap_or_else(|e| panic!("sample {line:?} in the metrics file: {e}"));
            let (name, labels) = match selector.split_once('{') {
                Some((name, labels)) => (name, labels.trim_end_matches('}')),
                None => (selector, ""),
            };
            if name.ends_with("_timestamp_seconds") {
                value -= origin;
            }
            let mut all = format!("instance=\"{}\",job=\"{JOB}\"", self.instance);
            if !labels.is_empty() {
                all = format!("{labels},{all}");
            }
            series.push(json!({
                "series": format!("{name}{{{all}}}"),
                "values": format!("_x{NOW} {value}x{LATER}"),
            }));
        }
        series
    }
}

/// Label or annotation names and their values (templates, for annotations).
type Strings = BTreeMap<String, String>;

/// The alerts of the rules file: name → (labels, annotations).
fn rules() -> BTreeMap<String, (Strings, Strings)> {
    let text = std::fs::read_to_string(rules_path()).expect("read the rules file");
    let file: serde_yaml::Value = serde_yaml::from_str(&text).expect("the rules file is YAML");
    let strings = |v: &serde_yaml::Value| -> Strings {
        v.as_mapping()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut alerts = BTreeMap::new();
    for group in file["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            if let Some(name) = rule["alert"].as_str() {
                alerts.insert(
                    name.to_string(),
                    (strings(&rule["labels"]), strings(&rule["annotations"])),
                );
            }
        }
    }
    alerts
}

/// Renders what the rules' annotations use: `{{ $labels.NAME }}` and `{{ $value }}`.
fn render(template: &str, labels: &BTreeMap<String, String>, value: f64) -> String {
    let mut text = template.replace("{{ $value }}", &value.to_string());
    for (name, label) in labels {
        text = text.replace(&format!("{{{{ $labels.{name} }}}}"), label);
    }
    assert!(
        !text.contains("{{"),
        "{RULES}: an annotation uses a template this test does not render: {template}"
    );
    text
}

/// An alert expected to fire: its name, the labels of its series, and its value.
struct Fires {
    alert: &'static str,
    labels: Vec<(&'static str, &'static str)>,
    value: f64,
}

/// `alert` firing for the series of one instance.
fn fires(alert: &'static str, instance: &'static str, value: f64) -> Fires {
    Fires {
        alert,
        labels: vec![("instance", instance), ("job", JOB)],
        value,
    }
}

/// Runs `promtool test rules` on `scrapes` evaluated `minutes` after [`NOW`]: exactly the
/// alerts of `firing` fire, every other alert of the rules file does not.
fn check(scrapes: &[&Scrape], minutes: u64, firing: &[Fires]) {
    let latest = scrapes.iter().map(|s| s.read_at).fold(0.0, f64::max);
    let origin = latest.floor() - (NOW * 60) as f64;
    let input: Vec<Value> = scrapes
        .iter()
        .flat_map(|s| s.input_series(origin))
        .collect();
    let eval_time = format!("{}m", NOW + minutes);
    let mut tests = Vec::new();
    let rules = rules();
    for f in firing {
        assert!(
            rules.contains_key(f.alert),
            "{RULES} has no alert {}",
            f.alert
        );
    }
    for (name, (rule_labels, annotations)) in &rules {
        let expected: Vec<Value> = firing
            .iter()
            .filter(|f| f.alert == name)
            .map(|f| {
                let mut labels: BTreeMap<String, String> = f
                    .labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                let shown = labels.clone();
                labels.extend(rule_labels.clone());
                let annotations: BTreeMap<String, String> = annotations
                    .iter()
                    .map(|(k, t)| (k.clone(), render(t, &shown, f.value)))
                    .collect();
                json!({"exp_labels": labels, "exp_annotations": annotations})
            })
            .collect();
        tests.push(json!({"eval_time": eval_time, "alertname": name, "exp_alerts": expected}));
    }
    let dir = TempDir::new("alert-rules");
    let test = json!({
        "rule_files": [path_text(&rules_path())],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": input, "alert_rule_test": tests}],
    });
    // YAML is a superset of JSON.
    let file = dir.write(
        "test.yml",
        &serde_json::to_string_pretty(&test).expect("JSON"),
    );
    let (ok, output) = promtool(&["test", "rules", &path_text(&file)]);
    let names: Vec<&str> = firing.iter().map(|f| f.alert).collect();
    assert!(
        ok,
        "at {NOW}m + {minutes}m, expected firing {names:?} and nothing else:\n{output}\n--- metrics ---\n{}",
        scrapes
            .iter()
            .map(|s| format!("[{}]\n{}", s.instance, s.text))
            .collect::<String>()
    );
}

/// The daemon of `rig` writing `metrics`, with `extra` flags.
fn monitor(rig: &Rig, metrics: &Path, extra: &[&str], notify: &Notify) -> Daemon {
    let metrics = path_text(metrics);
    let mut args = vec!["--metrics-file", metrics.as_str()];
    args.extend_from_slice(extra);
    rig.monitor(&args, notify)
}

fn names(range: std::ops::RangeInclusive<u64>) -> Vec<String> {
    range.map(|n| format!("0x{n:x}")).collect()
}

#[test]
fn the_alert_rules_pass_promtool_check() {
    let (ok, output) = promtool(&["check", "rules", &path_text(&rules_path())]);
    assert!(ok, "promtool check rules {RULES}:\n{output}");
    assert!(output.contains("SUCCESS"), "{output}");
}

/// A healthy daemon fires nothing; a UFM outage fires the stale-success alert once the last
/// success is 30 min old; a daemon restarted while UFM is still down has no last success
/// at all, and the alert for that fires after 30 min.
#[test]
fn no_alert_for_a_healthy_daemon_and_a_stale_last_success_for_one_cut_off_from_ufm() {
    let rig = Rig::new(Api::V3);
    for (n, name) in (1u64..).zip(names(0x10..=0x12)) {
        rig.put(&name, &[host(n)], &[]);
    }
    let metrics = rig.dir.join("metrics.prom");
    let notify = Notify::new();
    let daemon = monitor(&rig, &metrics, &[], &notify);
    let healthy = Scrape::wait("ufm1", &metrics, &daemon, "3 partitions in sync", |t| {
        metric(t, "ufm_pkeyd_partitions{state=\"owned\"}") == Some(3.0)
            && metric(t, "ufm_pkeyd_changes_pending") == Some(0.0)
            && metric(t, "ufm_pkeyd_last_success_timestamp_seconds").is_some()
    });
    check(&[&healthy], 0, &[]);
    // Every alert's `for` has passed, and 31 min is still within an idle daemon's passes.
    check(&[&healthy], 31, &[]);

    // UFM stops answering (its Apache says 503); a job starts, and its pass fails.
    rig.sim.outage(600.0, "503");
    rig.put("0x13", &[host(4)], &[]);
    let cut_off = Scrape::wait("ufm1", &metrics, &daemon, "a failed pass", |t| {
        metric(t, "ufm_pkeyd_passes_total{outcome=\"failure\"}").unwrap_or(0.0) >= 1.0
    });
    assert!(
        cut_off
            .sample("ufm_pkeyd_last_success_timestamp_seconds")
            .is_some()
    );
    check(&[&cut_off], 0, &[]);
    check(
        &[&cut_off],
        36,
        &[fires("UfmPkeydLastSuccessStale", "ufm1", 0.0)],
    );

    // Restarted while UFM is still down: its new metrics have no last success at all.
    daemon.stop();
    let daemon = monitor(&rig, &metrics, &[], &notify);
    let restarted = Scrape::wait(
        "ufm1",
        &metrics,
        &daemon,
        "a failed pass and no success",
        |t| {
            metric(t, "ufm_pkeyd_passes_total{outcome=\"failure\"}").unwrap_or(0.0) >= 1.0
                && metric(t, "ufm_pkeyd_last_success_timestamp_seconds").is_none()
        },
    );
    check(&[&restarted], 29, &[]);
    check(
        &[&restarted],
        31,
        &[fires("UfmPkeydNoSuccessSinceStart", "ufm1", 0.0)],
    );
    daemon.stop();
}

/// A partition UFM keeps refusing to write: pending for 15 min fires, and stops firing once
/// UFM takes the change.
#[test]
fn changes_ufm_keeps_failing_fire_the_pending_alert_after_15_minutes() {
    let rig = Rig::new(Api::V2);
    rig.sim
        .add_faults(json!([{"method": "WRITE", "pkey": "0x11", "status": 500}]));
    rig.put("0x10", &[host(1)], &[]);
    rig.put("0x11", &[host(2)], &[]);
    let metrics = rig.dir.join("metrics.prom");
    let notify = Notify::new();
    let daemon = monitor(&rig, &metrics, &[], &notify);
    let failing = Scrape::wait("ufm1", &metrics, &daemon, "a change pending", |t| {
        metric(t, "ufm_pkeyd_changes_pending").unwrap_or(0.0) >= 1.0
            && metric(t, "ufm_pkeyd_change_failures_total").unwrap_or(0.0) >= 1.0
    });
    check(&[&failing], 14, &[]);
    check(
        &[&failing],
        16,
        &[fires("UfmPkeydChangesPending", "ufm1", 0.0)],
    );

    rig.sim.clear_faults();
    let applied = Scrape::wait("ufm1", &metrics, &daemon, "nothing pending", |t| {
        metric(t, "ufm_pkeyd_changes_pending") == Some(0.0)
            && metric(t, "ufm_pkeyd_partitions{state=\"owned\"}") == Some(2.0)
            && metric(t, "ufm_pkeyd_last_success_timestamp_seconds").is_some()
    });
    check(&[&applied], 16, &[]);
    daemon.stop();
}

/// `etcdctl del --prefix`: the daemon refuses the 12 deletions; the alert fires and stays
/// while jobs go on starting (each a pass over its own partition), and the pending alert
/// leaves the refusal to it.
#[test]
fn a_refused_mass_deletion_fires_the_refused_deletions_alert_and_only_it() {
    let rig = Rig::new(Api::V3);
    for (n, name) in (1u64..).zip(names(1..=12)) {
        rig.put(&name, &[host(n)], &[]);
    }
    let metrics = rig.dir.join("metrics.prom");
    let notify = Notify::new();
    let daemon = monitor(&rig, &metrics, &[], &notify);
    Scrape::wait("ufm1", &metrics, &daemon, "12 partitions owned", |t| {
        metric(t, "ufm_pkeyd_partitions{state=\"owned\"}") == Some(12.0)
    });
    assert_eq!(rig.etcd.delete_prefix_v3(PKEYS_PREFIX), 12);
    let refused = Scrape::wait("ufm1", &metrics, &daemon, "12 deletions refused", |t| {
        metric(t, "ufm_pkeyd_deletions_refused") == Some(12.0)
    });
    assert_eq!(rig.pkeys().len(), 12, "the daemon deleted nothing");
    check(
        &[&refused],
        16,
        &[fires("UfmPkeydDeletionsRefused", "ufm1", 12.0)],
    );

    // A job starts: its pass judges its own partition only, and the refusal stands.
    rig.put("0x50", &[host(50)], &[]);
    let job_started = Scrape::wait("ufm1", &metrics, &daemon, "0x50 created", |t| {
        metric(
            t,
            "ufm_pkeyd_changes_applied_total{kind=\"partition_created\"}",
        ) == Some(13.0)
    });
    assert_eq!(
        job_started.sample("ufm_pkeyd_deletions_refused"),
        Some(12.0)
    );
    check(
        &[&job_started],
        16,
        &[fires("UfmPkeydDeletionsRefused", "ufm1", 12.0)],
    );
    daemon.stop();
}

/// The daemon is pointed at another etcd with the same state file: the record is held and
/// nothing is deleted. That alert fires; the refused-deletions one leaves it the word, since
/// confirming a deletion does not help there.
#[test]
fn an_ownership_record_made_with_another_etcd_fires_the_held_record_alert() {
    let rig = Rig::new(Api::V3);
    for (n, name) in (1u64..).zip(names(1..=5)) {
        rig.put(&name, &[host(n)], &[]);
    }
    rig.sync(&[]).assert_ok();
    let other = Etcd::plain();
    let endpoint = other.endpoint();
    let metrics = rig.dir.join("metrics.prom");
    let notify = Notify::new();
    let daemon = monitor(&rig, &metrics, &["--etcd-endpoints", &endpoint], &notify);
    let held = Scrape::wait("ufm1", &metrics, &daemon, "the record held", |t| {
        metric(t, "ufm_pkeyd_ownership_mismatch") == Some(1.0)
    });
    assert_eq!(held.sample("ufm_pkeyd_deletions_refused"), Some(5.0));
    assert_eq!(rig.pkeys().len(), 5, "the daemon deleted nothing");
    check(
        &[&held],
        2,
        &[fires("UfmPkeydOwnershipRecordHeld", "ufm1", 1.0)],
    );
    daemon.stop();
}

/// One member of an HA pair, as tests/high_availability.rs starts them, but checking UFM every
/// 2 s: a standby writes its metrics at each check, a leader that lost the leadership too.
fn ha_member(rig: &Rig, name: &str) -> (Daemon, PathBuf) {
    let state = path_text(&rig.dir.join(&format!("{name}.json")));
    let metrics = rig.dir.join(&format!("{name}.prom"));
    let daemon = rig
        .pkeyd(
            "monitor",
            &[
                "--state-file",
                &state,
                "--metrics-file",
                &path_text(&metrics),
                "--leader-election",
                "--election-ttl",
                "3",
                "--poll-interval",
                "2",
            ],
        )
        .spawn();
    (daemon, metrics)
}

/// An instance nobody monitors holds the election: both monitored members stand by, and the
/// no-leader alert fires (a standby's missing successes fire nothing). When it stops, one of
/// the pair takes over and the alert goes.
#[test]
fn an_ha_pair_in_which_no_instance_leads_fires_the_no_leader_alert() {
    let rig = Rig::with(Api::V2, Etcd::with_v2(), UfmSim::http());
    rig.put("0x2001", &[host(1)], &[]);
    let (mut outsider, _) = ha_member(&rig, "outsider");
    outsider.wait_for_stderr("is now the leader", secs(10));
    let (mut a, a_metrics) = ha_member(&rig, "a");
    let (mut b, b_metrics) = ha_member(&rig, "b");
    a.wait_for_stderr("standing by", secs(10));
    b.wait_for_stderr("standing by", secs(10));
    let stands_by = |t: &str| metric(t, "ufm_pkeyd_leader") == Some(0.0);
    let a_standby = Scrape::wait("ufm-a", &a_metrics, &a, "a standby", stands_by);
    let b_standby = Scrape::wait("ufm-b", &b_metrics, &b, "a standby", stands_by);
    let no_leader = Fires {
        alert: "UfmPkeydNoLeader",
        labels: vec![("job", JOB)],
        value: 0.0,
    };
    check(&[&a_standby, &b_standby], 1, &[]);
    check(&[&a_standby, &b_standby], 3, &[no_leader]);
    // 36 min on, standbys that never ran a pass still fire nothing else.
    let no_leader = Fires {
        alert: "UfmPkeydNoLeader",
        labels: vec![("job", JOB)],
        value: 0.0,
    };
    check(&[&a_standby, &b_standby], 36, &[no_leader]);

    // The outsider stops (it resigns): one of the pair leads within seconds.
    outsider.stop().assert_ok();
    let mut pair = [("ufm-a", a, a_metrics), ("ufm-b", b, b_metrics)];
    let leads = |t: &str| metric(t, "ufm_pkeyd_leader") == Some(1.0);
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    let first = wait_for(
        "a or b to lead",
        secs(10),
        || format!("a:\n{}\nb:\n{}", pair[0].1.stderr(), pair[1].1.stderr()),
        || pair.iter().position(|(_, _, m)| leads(&read(m))),
    );
    let second = 1 - first;
    let passed =
        |t: &str| leads(t) && metric(t, "ufm_pkeyd_last_success_timestamp_seconds").is_some();
    let (name, daemon, metrics) = &pair[first];
    let leading = Scrape::wait(name, metrics, daemon, "a successful pass as leader", passed);
    let (name, daemon, metrics) = &pair[second];
    let standing_by = Scrape::wait(name, metrics, daemon, "a standby", stands_by);
    check(&[&leading, &standing_by], 3, &[]);

    // The leader is paused past the TTL (a VM frozen): the other takes over, and the old
    // leader, resumed, stands by with its last success ageing. It fires nothing; the new
    // leader's last success, if it stayed as it is, would.
    pair[first].1.signal("STOP");
    let (name, daemon, metrics) = &pair[second];
    let new_leader = Scrape::wait(name, metrics, daemon, "a successful pass as leader", passed);
    pair[first].1.signal("CONT");
    let (name, daemon, metrics) = &pair[first];
    let old_leader = Scrape::wait(name, metrics, daemon, "a standby that once led", |t| {
        stands_by(t) && metric(t, "ufm_pkeyd_last_success_timestamp_seconds").is_some()
    });
    check(&[&new_leader, &old_leader], 3, &[]);
    check(
        &[&new_leader, &old_leader],
        36,
        &[fires("UfmPkeydLastSuccessStale", new_leader.instance, 0.0)],
    );
    for (_, daemon, _) in pair {
        daemon.stop();
    }
}
