//! `ufm-pkeyd status`: a monitoring check (Nagios, Icinga, Sensu…) from the status file the
//! daemon and `sync` write beside the state file. It reads that one file: no etcd, no UFM, no
//! secret, so it runs as an unprivileged monitoring user, even one that cannot read the
//! configuration (it then looks beside the default state file, or the one `--state-file`
//! names, and says so).
//!
//! Exit codes follow the monitoring-plugin convention: 0 OK, 1 WARNING (changes pending or
//! refused, GUIDs rejected, an ownership problem, the last pass failed, an outage shorter than
//! `--max-age`), 2 CRITICAL (the last check is older than `--max-age`, or the daemon that wrote
//! the file is not running), 3 UNKNOWN (no status file, unreadable, corrupt, bad flags). The
//! first line is the summary with perfdata; detail lines follow.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use super::metrics::unix_time;
use super::print_stdout;
use super::status_file::{self, ReadError, Status};
use crate::cli::Invocation;
use crate::config::{self, keys::DEFAULT_STATE_FILE};

pub(crate) use crate::error::{
    STATUS_CRITICAL as CRITICAL, STATUS_OK as OK, STATUS_UNKNOWN as UNKNOWN,
    STATUS_WARNING as WARNING,
};

/// The default `--max-age`, in poll intervals of the writer.
const MAX_AGE_POLLS: f64 = 3.0;
/// The default `--max-age` when the file gives no poll interval: 3 × the default 30 s.
const DEFAULT_MAX_AGE: f64 = 90.0;

/// Runs the check and returns its exit code; every problem is an UNKNOWN, said on stdout.
pub(crate) fn run(invocation: &Invocation, max_age: Option<Duration>) -> i32 {
    let json = invocation.json;
    let (state_file, config_note) = state_file(invocation);
    let path = status_file::path_for(&state_file);
    let check = match Status::read(&path) {
        Ok(status) => {
            let max_age = max_age.map_or_else(|| default_max_age(&status), |d| d.as_secs_f64());
            let running = (status.writer == status_file::MONITOR)
                .then(|| status.stopped.is_none() && status_file::pid_running(status.pid));
            let verdict = judge(&status, unix_time(), max_age, running);
            Check {
                verdict,
                status: Some(status),
                max_age,
                running,
            }
        }
        Err(e) => {
            let summary = match e {
                ReadError::Missing => format!(
                    "no status file {}: ufm-pkeyd monitor (or sync) has not run with the state file {}{}",
                    path.display(),
                    state_file.display(),
                    if config_note.is_some() {
                        "; give --state-file"
                    } else {
                        ""
                    }
                ),
                ReadError::Unreadable(why) => why,
            };
            Check {
                verdict: Verdict::new(UNKNOWN, summary, Vec::new()),
                status: None,
                max_age: max_age.map_or(DEFAULT_MAX_AGE, |d| d.as_secs_f64()),
                running: None,
            }
        }
    };
    let text = if json {
        let mut value = check.json(&path);
        value["config_error"] = json!(config_note);
        format!(
            "{}\n",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        )
    } else {
        let mut text = check.text(&path);
        if let Some(note) = &config_note {
            text.push_str(&format!("config:     {note}\n"));
        }
        text
    };
    match print_stdout(&text) {
        Ok(()) => check.verdict.code,
        Err(e) => {
            eprintln!("ufm-pkeyd: error: {e}");
            UNKNOWN
        }
    }
}

/// Arguments that do not parse: UNKNOWN, said in the plugin's way.
pub(crate) fn usage_error(message: &str, json: bool) -> i32 {
    let text = if json {
        let value = json!({"status": "UNKNOWN", "code": UNKNOWN, "summary": message});
        format!(
            "{}\n",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        )
    } else {
        format!("UFM-PKEYD UNKNOWN - {message}\n")
    };
    let _ = print_stdout(&text);
    UNKNOWN
}

/// The state file whose status file is read: the configured one, or, when the configuration
/// cannot be read (a monitoring user may not read a 0640 file), the one `--state-file` gives
/// or the default, with a note saying so.
fn state_file(invocation: &Invocation) -> (PathBuf, Option<String>) {
    let flags = &invocation.flags;
    match config::state_file(flags) {
        Ok(path) => (path, None),
        Err(e) => {
            let (path, which) = match flags.values.get("state-file") {
                Some((value, typed)) => (PathBuf::from(value), format!("the state file {typed}")),
                None => (
                    PathBuf::from(DEFAULT_STATE_FILE),
                    "the default state file".to_string(),
                ),
            };
            let note = format!("not read ({e}); using {which} {}", path.display());
            (path, Some(note))
        }
    }
}

/// 3 poll intervals of the writer.
fn default_max_age(status: &Status) -> f64 {
    if status.poll_interval_seconds > 0.0 {
        MAX_AGE_POLLS * status.poll_interval_seconds
    } else {
        DEFAULT_MAX_AGE
    }
}

/// A check's result: the code, the summary (without the status word) and the reasons for a
/// WARNING or CRITICAL.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Verdict {
    pub code: i32,
    pub summary: String,
    pub reasons: Vec<String>,
    /// Seconds since the last check (since the start for a daemon that has not checked yet).
    pub age: Option<f64>,
}

impl Verdict {
    fn new(code: i32, summary: String, reasons: Vec<String>) -> Verdict {
        Verdict {
            code,
            summary,
            reasons,
            age: None,
        }
    }

    pub(crate) fn word(&self) -> &'static str {
        match self.code {
            OK => "OK",
            WARNING => "WARNING",
            CRITICAL => "CRITICAL",
            _ => "UNKNOWN",
        }
    }
}

/// Judges a status file at `now`. `running`: for a file the daemon wrote, whether it still
/// runs; `None` for one `sync` wrote, which is judged by its age only.
pub(crate) fn judge(s: &Status, now: f64, max_age: f64, running: Option<bool>) -> Verdict {
    let monitor = running.is_some();
    let checked = s
        .last_check
        .or(if monitor { Some(s.started) } else { None });
    let age = checked.map(|t| (now - t).max(0.0));
    let ago = |t: f64| format_age((now - t).max(0.0));
    let last_check = match (s.last_check, age) {
        (Some(_), Some(a)) => format!("last check {} ago", format_age(a)),
        _ => "no check yet".to_string(),
    };
    let mut critical = Vec::new();
    if running == Some(false) {
        critical.push(match s.stopped {
            Some(t) => format!("ufm-pkeyd (pid {}) stopped {} ago", s.pid, ago(t)),
            None => format!("ufm-pkeyd (pid {}) is not running", s.pid),
        });
    }
    match age {
        None => critical.push("no pass has read etcd and UFM yet".to_string()),
        Some(a) if a > max_age => critical.push(match s.last_check {
            Some(_) => format!(
                "last check {} ago, more than --max-age {}",
                format_age(a),
                format_age(max_age)
            ),
            None => format!(
                "no check in the {} since the start, more than --max-age {}",
                format_age(a),
                format_age(max_age)
            ),
        }),
        Some(_) => {}
    }
    let mut outages = Vec::new();
    for (what, since) in [
        ("etcd", s.etcd_unreachable_since),
        ("UFM", s.ufm_unreachable_since),
    ] {
        if let Some(t) = since {
            let down = (now - t).max(0.0);
            let line = format!("{what} unreachable for {}", format_age(down));
            if down > max_age {
                critical.push(line);
            } else {
                outages.push(line);
            }
        }
    }
    let c = s.counts;
    let counts = format!(
        "{} owned, {} pending, {} unmanaged, {} invalid",
        c.owned, c.pending, c.unmanaged, c.invalid
    );
    let standby = s.role == "standby";
    let leader = s.leader.as_deref().unwrap_or("unknown");
    if !critical.is_empty() {
        let mut summary = critical.join(", ");
        if running == Some(false) && s.last_check.is_some() {
            summary.push_str(&format!("; {last_check}"));
        }
        if let Some(e) = &s.last_error {
            summary.push_str(&format!("; last error: {e}"));
        }
        return Verdict {
            code: CRITICAL,
            summary,
            reasons: critical,
            age,
        };
    }
    let mut warnings = outages;
    warnings.extend(wrong_keyspace(s));
    if !standby {
        for (n, what) in [
            (c.pending, "changes pending"),
            (c.refused_deletions, "deletions refused"),
            (c.rejected_guids, "GUIDs rejected by UFM"),
        ] {
            if n > 0 {
                warnings.push(format!("{n} {what}"));
            }
        }
        if s.ownership_mismatch.is_some() {
            warnings.push("the ownership record belongs to another etcd or UFM".to_string());
        }
        if s.state_unsaved {
            warnings.push("the ownership record is not saved".to_string());
        }
    }
    if let Some(e) = &s.last_error {
        if warnings.is_empty() {
            warnings.push(if standby {
                format!("standby check failed: {e}")
            } else {
                format!("last pass failed: {e}")
            });
        }
    }
    if !standby && warnings.is_empty() && s.in_sync == Some(false) {
        warnings.push("not in sync".to_string());
    }
    let (code, summary) = if !warnings.is_empty() {
        let what = if standby {
            format!("standby (leader: {leader})")
        } else {
            counts
        };
        (
            WARNING,
            format!("{}: {what}; {last_check}", warnings.join(", ")),
        )
    } else if standby {
        (
            OK,
            format!("standby (leader: {leader}): UFM answers; {last_check}"),
        )
    } else if s.in_sync.is_none() {
        (
            OK,
            format!(
                "starting: no pass completed yet (pid {}, started {} ago)",
                s.pid,
                ago(s.started)
            ),
        )
    } else {
        (OK, format!("in sync: {counts}; {last_check}"))
    };
    Verdict {
        code,
        summary,
        reasons: warnings,
        age,
    }
}

/// The keyspace followed was empty under the prefix at the start while the other one held
/// keys: the writer is most likely watching the wrong one, and would do nothing.
fn wrong_keyspace(s: &Status) -> Option<String> {
    let k = s.keyspaces.as_ref()?;
    match k.followed_and_other() {
        (Some(0), Some(other @ 1..)) => Some(format!(
            "the {} keyspace followed was empty under {} at the start while {} held {other} keys (set etcd-api: {} or auto)",
            k.followed,
            s.etcd_prefix,
            k.other(),
            k.other()
        )),
        _ => None,
    }
}

/// `4 s`, `12 min`, `3 h`, `2 d`: whole units, rounded down.
fn format_age(seconds: f64) -> String {
    let s = seconds.max(0.0).floor() as u64;
    match s {
        0..120 => format!("{s} s"),
        120..7200 => format!("{} min", s / 60),
        7200..172_800 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    }
}

/// What the check found, ready to print.
struct Check {
    verdict: Verdict,
    status: Option<Status>,
    max_age: f64,
    running: Option<bool>,
}

impl Check {
    /// The perfdata: counts, and the age with the CRITICAL threshold.
    fn perfdata(&self) -> Option<String> {
        let s = self.status.as_ref()?;
        let c = s.counts;
        let mut perf = format!(
            "owned={} pending={} refused={} unmanaged={} invalid={} rejected={}",
            c.owned, c.pending, c.refused_deletions, c.unmanaged, c.invalid, c.rejected_guids
        );
        if let Some(age) = self.verdict.age {
            perf.push_str(&format!(
                " age={}s;;{}",
                age.floor() as u64,
                self.max_age.floor() as u64
            ));
        }
        Some(perf)
    }

    /// The plugin's first line; the summary may quote a UFM or etcd error, escaped.
    fn summary_line(&self) -> String {
        let mut line = format!(
            "UFM-PKEYD {} - {}",
            self.verdict.word(),
            crate::text::escape(&self.verdict.summary)
        );
        if let Some(perf) = self.perfdata() {
            line.push_str(&format!(" | {perf}"));
        }
        line
    }

    fn text(&self, path: &Path) -> String {
        let mut text = self.summary_line();
        text.push('\n');
        let Some(s) = &self.status else {
            text.push_str(&format!("file:       {}\n", path.display()));
            return text;
        };
        let now = unix_time();
        let ago = |t: f64| format_age((now - t).max(0.0));
        let state = match self.running {
            Some(true) => "running",
            Some(false) if s.stopped.is_some() => "stopped",
            Some(false) => "not running",
            None => "one-shot",
        };
        text.push_str(&format!(
            "writer:     {}, pid {} {state}, started {} ({} ago)\n",
            s.writer,
            s.pid,
            status_file::utc(s.started),
            ago(s.started)
        ));
        let role = match (s.leader_election, s.role.as_str()) {
            (false, _) => "single instance (leader election off)".to_string(),
            (true, role) => format!(
                "{role} (leader election on; leader: {})",
                s.leader.as_deref().unwrap_or("unknown")
            ),
        };
        text.push_str(&format!("role:       {role}\n"));
        if let Some(k) = &s.keyspaces {
            let keys =
                |n: Option<usize>| n.map_or_else(|| "unreadable".to_string(), |n| n.to_string());
            text.push_str(&format!(
                "etcd:       {} keyspace followed (etcd-api {}); keys under {} at the start: v2 {}, v3 {}\n",
                k.followed,
                k.asked,
                s.etcd_prefix,
                keys(k.v2_keys),
                keys(k.v3_keys)
            ));
        }
        let limit = format!("CRITICAL after {} (--max-age)", format_age(self.max_age));
        match s.last_check {
            Some(t) => text.push_str(&format!(
                "last check: {} ago ({}); {limit}\n",
                ago(t),
                status_file::utc(t)
            )),
            None => text.push_str(&format!("last check: none yet; {limit}\n")),
        }
        match s.last_success {
            Some(t) => text.push_str(&format!(
                "last pass:  succeeded {} ago ({})\n",
                ago(t),
                status_file::utc(t)
            )),
            None => text.push_str("last pass:  no pass has succeeded yet\n"),
        }
        let c = s.counts;
        text.push_str(&format!(
            "counts:     {} owned, {} pending, {} refused deletions, {} unmanaged, {} invalid, {} rejected GUIDs\n",
            c.owned, c.pending, c.refused_deletions, c.unmanaged, c.invalid, c.rejected_guids
        ));
        for (what, since) in [
            ("etcd", s.etcd_unreachable_since),
            ("UFM", s.ufm_unreachable_since),
        ] {
            if let Some(t) = since {
                text.push_str(&format!(
                    "outage:     {what} unreachable since {} ({} ago)\n",
                    status_file::utc(t),
                    ago(t)
                ));
            }
        }
        if let Some(why) = &s.ownership_mismatch {
            text.push_str(&format!("ownership:  {why}\n"));
        }
        if s.state_unsaved {
            text.push_str(
                "ownership:  the daemon cannot save its ownership record (see its log); it retries every pass\n",
            );
        }
        if let Some(e) = &s.last_error {
            text.push_str(&format!("last error: {}\n", crate::text::escape(e)));
        }
        text.push_str(&format!(
            "file:       {}, written {} ago\n",
            path.display(),
            ago(s.written)
        ));
        text
    }

    fn json(&self, path: &Path) -> serde_json::Value {
        let now = unix_time();
        let v = &self.verdict;
        let mut value = json!({
            "status": v.word(),
            "code": v.code,
            "summary": v.summary,
            "summary_line": self.summary_line(),
            "reasons": v.reasons,
            "perfdata": self.perfdata(),
            "status_file": path.display().to_string(),
            "age_seconds": v.age,
            "max_age_seconds": self.max_age,
            "daemon_running": self.running,
        });
        if let Some(s) = &self.status {
            value["in_sync"] = json!(s.in_sync);
            value["counts"] = json!(s.counts);
            value["leader_election"] = json!(s.leader_election);
            value["leader"] = json!(s.leader);
            value["record_unsaved"] = json!(s.state_unsaved);
            value["ownership_mismatch"] = json!(s.ownership_mismatch);
            value["last_success_seconds_ago"] = json!(s.last_success.map(|t| (now - t).max(0.0)));
            value["last_check_seconds_ago"] = json!(s.last_check.map(|t| (now - t).max(0.0)));
            value["written_by"] = json!(s);
        }
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::status_file::{Counts, FORMAT, MONITOR, SYNC};

    const NOW: f64 = 1_700_000_000.0;

    fn daemon() -> Status {
        Status {
            format: FORMAT,
            writer: MONITOR.into(),
            pid: 4321,
            started: NOW - 3600.0,
            written: NOW - 4.0,
            last_success: Some(NOW - 300.0),
            last_check: Some(NOW - 4.0),
            poll_interval_seconds: 30.0,
            in_sync: Some(true),
            counts: Counts {
                owned: 12,
                unmanaged: 2,
                ..Counts::default()
            },
            role: "single".into(),
            ..Status::default()
        }
    }

    #[test]
    fn an_in_sync_running_daemon_is_ok_with_counts_and_age() {
        let v = judge(&daemon(), NOW, 90.0, Some(true));
        assert_eq!(v.code, OK);
        assert_eq!(
            v.summary,
            "in sync: 12 owned, 0 pending, 2 unmanaged, 0 invalid; last check 4 s ago"
        );
        assert_eq!(default_max_age(&daemon()), 90.0);
    }

    #[test]
    fn pending_refused_rejected_and_ownership_problems_warn() {
        let mut s = daemon();
        s.in_sync = Some(false);
        s.counts.pending = 1;
        s.counts.refused_deletions = 2;
        s.counts.rejected_guids = 3;
        s.state_unsaved = true;
        s.ownership_mismatch = Some("bound to another etcd".into());
        s.last_error = Some("1 UFM changes failed".into());
        let v = judge(&s, NOW, 90.0, Some(true));
        assert_eq!(v.code, WARNING);
        assert_eq!(
            v.summary,
            "1 changes pending, 2 deletions refused, 3 GUIDs rejected by UFM, the ownership record belongs to another etcd or UFM, the ownership record is not saved: 12 owned, 1 pending, 2 unmanaged, 0 invalid; last check 4 s ago"
        );
        let mut s = daemon();
        s.in_sync = Some(false);
        s.last_error = Some("etcd answered 500".into());
        let v = judge(&s, NOW, 90.0, Some(true));
        assert_eq!(v.code, WARNING);
        assert!(
            v.summary
                .starts_with("last pass failed: etcd answered 500: ")
        );
    }

    #[test]
    fn an_empty_keyspace_followed_while_the_other_holds_keys_warns() {
        use crate::app::status_file::Keyspaces;
        let mut s = daemon();
        s.etcd_prefix = "/pcocc/global/opensm/pkeys/".into();
        s.keyspaces = Some(Keyspaces {
            followed: "v3".into(),
            asked: "v3".into(),
            v2_keys: Some(2045),
            v3_keys: Some(0),
        });
        let v = judge(&s, NOW, 90.0, Some(true));
        assert_eq!(v.code, WARNING);
        assert!(
            v.summary.starts_with(
                "the v3 keyspace followed was empty under /pcocc/global/opensm/pkeys/ at the start while v2 held 2045 keys (set etcd-api: v2 or auto)"
            ),
            "{}",
            v.summary
        );
        for (v2, v3) in [(Some(2045), Some(3)), (None, Some(0)), (Some(0), Some(0))] {
            s.keyspaces = Some(Keyspaces {
                followed: "v3".into(),
                asked: "auto".into(),
                v2_keys: v2,
                v3_keys: v3,
            });
            assert_eq!(judge(&s, NOW, 90.0, Some(true)).code, OK, "{v2:?} {v3:?}");
        }
    }

    #[test]
    fn a_short_outage_warns_and_a_long_one_is_critical() {
        let mut s = daemon();
        s.etcd_unreachable_since = Some(NOW - 10.0);
        let v = judge(&s, NOW, 90.0, Some(true));
        assert_eq!(v.code, WARNING, "{v:?}");
        assert!(
            v.summary.starts_with("etcd unreachable for 10 s: "),
            "{v:?}"
        );
        s.etcd_unreachable_since = Some(NOW - 100.0);
        assert_eq!(judge(&s, NOW, 90.0, Some(true)).code, CRITICAL);
    }

    #[test]
    fn a_dead_or_stopped_daemon_and_an_old_check_are_critical() {
        let v = judge(&daemon(), NOW, 90.0, Some(false));
        assert_eq!(v.code, CRITICAL);
        assert_eq!(
            v.summary,
            "ufm-pkeyd (pid 4321) is not running; last check 4 s ago"
        );
        let mut s = daemon();
        s.stopped = Some(NOW - 60.0);
        let v = judge(&s, NOW, 90.0, Some(false));
        assert!(
            v.summary
                .starts_with("ufm-pkeyd (pid 4321) stopped 60 s ago"),
            "{v:?}"
        );
        let mut s = daemon();
        s.last_check = Some(NOW - 91.0);
        let v = judge(&s, NOW, 90.0, Some(true));
        assert_eq!(v.code, CRITICAL);
        assert_eq!(v.summary, "last check 91 s ago, more than --max-age 90 s");
        // A sync is judged by age only: no pid check.
        let mut s = daemon();
        s.writer = SYNC.into();
        assert_eq!(judge(&s, NOW, 90.0, None).code, OK);
        s.last_check = None;
        assert_eq!(judge(&s, NOW, 90.0, None).code, CRITICAL);
    }

    #[test]
    fn a_starting_daemon_is_ok_until_max_age_and_a_standby_is_judged_on_ufm() {
        let mut s = daemon();
        s.started = NOW - 2.0;
        s.last_check = None;
        s.last_success = None;
        s.in_sync = None;
        let v = judge(&s, NOW, 90.0, Some(true));
        assert_eq!(v.code, OK);
        assert!(
            v.summary.starts_with("starting: no pass completed yet"),
            "{v:?}"
        );
        s.started = NOW - 200.0;
        assert_eq!(judge(&s, NOW, 90.0, Some(true)).code, CRITICAL);

        let mut s = daemon();
        s.role = "standby".into();
        s.leader_election = true;
        s.leader = Some("host-a".into());
        s.counts.pending = 5;
        let v = judge(&s, NOW, 90.0, Some(true));
        assert_eq!(v.code, OK, "a standby's counts are the leader's business");
        assert_eq!(
            v.summary,
            "standby (leader: host-a): UFM answers; last check 4 s ago"
        );
        s.last_error = Some("UFM did not answer".into());
        assert_eq!(judge(&s, NOW, 90.0, Some(true)).code, WARNING);
    }

    #[test]
    fn ages_are_shown_in_whole_units() {
        assert_eq!(format_age(4.7), "4 s");
        assert_eq!(format_age(119.0), "119 s");
        assert_eq!(format_age(600.0), "10 min");
        assert_eq!(format_age(3.0 * 3600.0), "3 h");
        assert_eq!(format_age(3.0 * 86_400.0), "3 d");
    }
}
