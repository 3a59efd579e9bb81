//! Prometheus metrics in the text exposition format, written atomically to a file after each
//! pass (`--metrics-file`) for node_exporter's textfile collector. No listening socket: the
//! daemon stays a client only. `sync` writes it too, after its pass.
//!
//! Names follow Prometheus conventions: the `ufm_pkeyd_` prefix, units in names, `_total` for
//! counters.

use std::path::Path;

use crate::engine::{Counts, PassReport};
use crate::net::http::RequestCounts;

/// What the metrics say, accumulated by the daemon.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Metrics {
    /// Unix time of the last pass that read both sides and applied its plan without error.
    pub last_success_seconds: Option<f64>,
    /// Unix time of the last pass that read both sides, or drift check that UFM answered:
    /// the heartbeat of an idle daemon, which runs a full pass only every resync-interval.
    pub last_check_seconds: Option<f64>,
    pub last_pass_duration_seconds: f64,
    pub passes_ok: u64,
    pub passes_failed: u64,
    pub owned: usize,
    pub unmanaged: usize,
    pub invalid: usize,
    /// Partitions waiting for a read to show their change done, and deletions refused.
    pub pending: usize,
    /// How long the longest-waiting of them has waited, in seconds (0 when none waits).
    pub oldest_pending_seconds: f64,
    /// Changes applied since start.
    pub applied: Counts,
    pub change_failures: u64,
    pub etcd: RequestCounts,
    pub ufm: RequestCounts,
    /// `None` without leader election.
    pub leader: Option<bool>,
    /// GUIDs UFM refused to add in the last pass.
    pub guids_rejected: usize,
    /// Partitions whose deletion stands refused (the deletion guard, or an ownership record
    /// held), across the fabric (see `view`).
    pub deletions_refused: usize,
    /// The ownership record could not be saved (retried every pass).
    pub state_unsaved: bool,
    /// The ownership record belongs to another etcd or UFM: nothing is deleted.
    pub ownership_mismatch: bool,
    /// Passes over the whole prefix and UFM's whole list.
    pub passes_full: u64,
    /// Passes over the partitions the watch reported (or due for a retry) only.
    pub passes_targeted: u64,
    /// Checks of UFM's `last_updated`, by what they found.
    pub drift_checks: DriftChecks,
    /// UFM requests sent again after a transient failure.
    pub ufm_retries: u64,
    /// Seconds from the watch delivering a change to a read showing UFM holding it.
    pub change_latency: Histogram,
}

/// Checks of UFM's `last_updated`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct DriftChecks {
    pub unchanged: u64,
    pub changed: u64,
    pub failed: u64,
}

/// The upper bounds of the latency histogram, in seconds. 16 s is how long pcocc gives a VF
/// to see its PKey.
const LATENCY_BUCKETS: [f64; 11] = [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 16.0, 30.0, 60.0, 120.0];

/// A Prometheus histogram over [`LATENCY_BUCKETS`].
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Histogram {
    /// Observations at or under each bound (not cumulative; summed when rendered).
    counts: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    /// Adds one observation.
    pub(crate) fn observe(&mut self, seconds: f64) {
        if let Some(i) = LATENCY_BUCKETS.iter().position(|bound| seconds <= *bound) {
            self.counts[i] += 1;
        }
        self.count += 1;
        self.sum += seconds;
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} histogram\n"));
        let mut cumulative = 0;
        for (bound, n) in LATENCY_BUCKETS.iter().zip(self.counts) {
            cumulative += n;
            out.push_str(&format!("{name}_bucket{{le=\"{bound}\"}} {cumulative}\n"));
        }
        out.push_str(&format!("{name}_bucket{{le=\"+Inf\"}} {}\n", self.count));
        out.push_str(&format!(
            "{name}_sum {}\n{name}_count {}\n",
            self.sum, self.count
        ));
    }
}

impl Metrics {
    /// Counts a pass that read both sides: its outcome and what it saw, with the partitions
    /// owned after it and whether the ownership record is still unsaved.
    pub(crate) fn pass(&mut self, report: &PassReport, owned: usize, state_unsaved: bool) {
        let plan = &report.plan;
        let now = unix_time();
        self.last_check_seconds = Some(now);
        if report.succeeded() {
            self.passes_ok += 1;
            self.last_success_seconds = Some(now);
        } else {
            self.passes_failed += 1;
        }
        self.owned = owned;
        self.unmanaged = plan.unmanaged.len();
        self.invalid = plan.invalid.len();
        self.pending = report.pending + plan.refused_deletes.len();
        self.guids_rejected = report.rejected.len();
        // The view made the report's lists fabric-wide (a pass over some partitions judged
        // only those).
        self.deletions_refused = plan.refused_deletes.len();
        self.state_unsaved = state_unsaved;
        self.ownership_mismatch = plan.locked.is_some();
        self.applied.created += report.counts.created;
        self.applied.guids_added += report.counts.guids_added;
        self.applied.guids_removed += report.counts.guids_removed;
        self.applied.deleted += report.counts.deleted;
        self.change_failures += report.failures.len() as u64;
    }

    /// Renders the text exposition format.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        let mut gauge = |name: &str, help: &str, samples: &[(&str, f64)]| {
            metric(&mut out, name, "gauge", help, samples);
        };
        if let Some(time) = self.last_success_seconds {
            gauge(
                "ufm_pkeyd_last_success_timestamp_seconds",
                "Unix time of the last pass that completed without error.",
                &[("", time)],
            );
        }
        if let Some(time) = self.last_check_seconds {
            gauge(
                "ufm_pkeyd_last_check_timestamp_seconds",
                "Unix time of the last pass that read etcd and UFM, or drift check UFM answered.",
                &[("", time)],
            );
        }
        gauge(
            "ufm_pkeyd_pass_duration_seconds",
            "Duration of the last pass.",
            &[("", self.last_pass_duration_seconds)],
        );
        gauge(
            "ufm_pkeyd_partitions",
            "Partitions in UFM by how ufm-pkeyd sees them; invalid counts etcd entries that cannot be used.",
            &[
                ("state=\"owned\"", self.owned as f64),
                ("state=\"unmanaged\"", self.unmanaged as f64),
                ("state=\"invalid\"", self.invalid as f64),
            ],
        );
        gauge(
            "ufm_pkeyd_changes_pending",
            "Partitions whose change UFM is not yet seen to hold (waiting, failing, held), and deletions refused.",
            &[("", self.pending as f64)],
        );
        gauge(
            "ufm_pkeyd_oldest_pending_seconds",
            "How long the longest-waiting change has waited for UFM to show it, in seconds.",
            &[("", self.oldest_pending_seconds)],
        );
        gauge(
            "ufm_pkeyd_deletions_refused",
            "Deletions refused across the fabric: they wait for an operator (--allow-mass-delete, or state --adopt/--reset while ownership_mismatch is 1).",
            &[("", self.deletions_refused as f64)],
        );
        gauge(
            "ufm_pkeyd_guids_rejected",
            "GUIDs UFM refused to add in the last pass (unknown ports); tried again every pass.",
            &[("", self.guids_rejected as f64)],
        );
        gauge(
            "ufm_pkeyd_state_unsaved",
            "1 while the ownership record could not be saved; it is retried every pass.",
            &[("", f64::from(u8::from(self.state_unsaved)))],
        );
        gauge(
            "ufm_pkeyd_ownership_mismatch",
            "1 while the ownership record belongs to another etcd or UFM: nothing is deleted until an operator adopts or resets it.",
            &[("", f64::from(u8::from(self.ownership_mismatch)))],
        );
        if let Some(leader) = self.leader {
            gauge(
                "ufm_pkeyd_leader",
                "1 when this instance is the elected leader.",
                &[("", f64::from(u8::from(leader)))],
            );
        }
        let mut counter = |name: &str, help: &str, samples: &[(&str, f64)]| {
            metric(&mut out, name, "counter", help, samples);
        };
        counter(
            "ufm_pkeyd_passes_total",
            "Sync passes by outcome.",
            &[
                ("outcome=\"success\"", self.passes_ok as f64),
                ("outcome=\"failure\"", self.passes_failed as f64),
            ],
        );
        counter(
            "ufm_pkeyd_passes_by_kind_total",
            "Sync passes by kind: full (all of etcd's prefix and UFM's list) or targeted (the partitions that changed).",
            &[
                ("kind=\"full\"", self.passes_full as f64),
                ("kind=\"targeted\"", self.passes_targeted as f64),
            ],
        );
        let d = self.drift_checks;
        counter(
            "ufm_pkeyd_drift_checks_total",
            "Checks of UFM's last_updated for changes made outside ufm-pkeyd, by result.",
            &[
                ("result=\"unchanged\"", d.unchanged as f64),
                ("result=\"changed\"", d.changed as f64),
                ("result=\"failed\"", d.failed as f64),
            ],
        );
        counter(
            "ufm_pkeyd_ufm_retries_total",
            "UFM requests sent again after no answer or a 502/503/504.",
            &[("", self.ufm_retries as f64)],
        );
        counter(
            "ufm_pkeyd_response_bytes_total",
            "Bytes of answers read from etcd and UFM.",
            &[
                ("service=\"etcd\"", self.etcd.bytes as f64),
                ("service=\"ufm\"", self.ufm.bytes as f64),
            ],
        );
        let a = self.applied;
        counter(
            "ufm_pkeyd_changes_applied_total",
            "Changes applied to UFM, by kind.",
            &[
                ("kind=\"partition_created\"", a.created as f64),
                ("kind=\"guid_added\"", a.guids_added as f64),
                ("kind=\"guid_removed\"", a.guids_removed as f64),
                ("kind=\"partition_deleted\"", a.deleted as f64),
            ],
        );
        counter(
            "ufm_pkeyd_change_failures_total",
            "UFM changes that failed (retried next pass).",
            &[("", self.change_failures as f64)],
        );
        let requests = |service: &str, c: RequestCounts| {
            [
                (
                    format!("service=\"{service}\",outcome=\"success\""),
                    c.success as f64,
                ),
                (
                    format!("service=\"{service}\",outcome=\"error_status\""),
                    c.error_status as f64,
                ),
                (
                    format!("service=\"{service}\",outcome=\"no_answer\""),
                    c.no_answer as f64,
                ),
            ]
        };
        let samples: Vec<(String, f64)> = requests("etcd", self.etcd)
            .into_iter()
            .chain(requests("ufm", self.ufm))
            .collect();
        let samples: Vec<(&str, f64)> = samples.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        counter(
            "ufm_pkeyd_requests_total",
            "HTTP requests to etcd and UFM by outcome.",
            &samples,
        );
        self.change_latency.render(
            &mut out,
            "ufm_pkeyd_change_latency_seconds",
            "Time from the etcd watch delivering a change to a read showing UFM holding it.",
        );
        out
    }

    /// Writes the metrics to `path` atomically, so the collector never reads half a file; mode
    /// 0644, for node_exporter.
    pub(crate) fn write(&self, path: &Path) -> Result<(), String> {
        use crate::atomic_file::{READABLE, replace_with_mode};
        replace_with_mode(path, self.render().as_bytes(), READABLE)
            .map_err(|e| format!("metrics file not written: {e}"))
    }
}

fn metric(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(&str, f64)]) {
    out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
    for (labels, value) in samples {
        if labels.is_empty() {
            out.push_str(&format!("{name} {value}\n"));
        } else {
            out.push_str(&format!("{name}{{{labels}}} {value}\n"));
        }
    }
}

/// The current Unix time in seconds, as Prometheus timestamps are.
pub(crate) fn unix_time() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Reads one unlabelled sample from a metrics file written by [`Metrics::write`].
pub(crate) fn read_sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text_with_types_and_units() {
        let metrics = Metrics {
            last_success_seconds: Some(1_700_000_000.5),
            owned: 3,
            deletions_refused: 12,
            leader: Some(true),
            ufm: RequestCounts {
                success: 7,
                error_status: 1,
                no_answer: 2,
                bytes: 1234,
            },
            ..Metrics::default()
        };
        let text = metrics.render();
        assert!(text.contains("# TYPE ufm_pkeyd_last_success_timestamp_seconds gauge\n"));
        assert!(text.contains("ufm_pkeyd_partitions{state=\"owned\"} 3\n"));
        assert!(text.contains("ufm_pkeyd_leader 1\n"));
        assert!(text.contains(
            "# TYPE ufm_pkeyd_deletions_refused gauge\nufm_pkeyd_deletions_refused 12\n"
        ));
        assert!(
            text.contains("ufm_pkeyd_requests_total{service=\"ufm\",outcome=\"no_answer\"} 2\n")
        );
        assert!(text.contains("# TYPE ufm_pkeyd_passes_total counter\n"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap_or_default();
            assert!(name.starts_with("ufm_pkeyd_"), "{line}");
        }
        assert_eq!(
            read_sample(&text, "ufm_pkeyd_last_success_timestamp_seconds"),
            Some(1_700_000_000.5)
        );
    }

    #[test]
    fn the_latency_histogram_is_cumulative_with_an_inf_bucket() {
        let mut metrics = Metrics::default();
        for seconds in [0.05, 0.3, 0.3, 20.0, 500.0] {
            metrics.change_latency.observe(seconds);
        }
        let text = metrics.render();
        assert!(text.contains("# TYPE ufm_pkeyd_change_latency_seconds histogram\n"));
        assert!(text.contains("ufm_pkeyd_change_latency_seconds_bucket{le=\"0.1\"} 1\n"));
        assert!(text.contains("ufm_pkeyd_change_latency_seconds_bucket{le=\"0.5\"} 3\n"));
        assert!(text.contains("ufm_pkeyd_change_latency_seconds_bucket{le=\"16\"} 3\n"));
        assert!(text.contains("ufm_pkeyd_change_latency_seconds_bucket{le=\"120\"} 4\n"));
        assert!(text.contains("ufm_pkeyd_change_latency_seconds_bucket{le=\"+Inf\"} 5\n"));
        assert!(text.contains("ufm_pkeyd_change_latency_seconds_count 5\n"));
        assert!(text.contains("ufm_pkeyd_response_bytes_total{service=\"ufm\"} 0\n"));
    }

    #[test]
    fn no_leader_metric_without_election() {
        assert!(!Metrics::default().render().contains("ufm_pkeyd_leader"));
    }
}
