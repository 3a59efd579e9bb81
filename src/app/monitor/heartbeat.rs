//! The daemon's status file (`super::super::status_file`): what the loop saw, written after
//! every pass, every drift check and every standby check, for `ufm-pkeyd status`. The loop
//! calls these hooks; the metrics it keeps anyway feed most of the file.

use std::time::Instant;

use super::Monitor;
use crate::app::metrics::unix_time;
use crate::app::report::failure_summary;
use crate::app::status_file::{self, Counts, Status};
use crate::engine::PassReport;
use crate::engine::election::Election;
use crate::net::http::redact_userinfo;

/// What the status file needs beyond the metrics.
pub(super) struct Heartbeat {
    /// A dry run writes no status file: it would stand in for the daemon that owns the state.
    enabled: bool,
    started: f64,
    /// Why the last pass or standby check failed.
    last_error: Option<String>,
    /// Why the ownership record does not match, as of the last pass.
    mismatch: Option<String>,
    /// Whether the last pass applied everything; `None` before the first.
    complete: Option<bool>,
    stopped: Option<f64>,
    /// The last failed write, logged once until a write succeeds.
    write_failed: Option<String>,
}

impl Heartbeat {
    pub(super) fn new(dry_run: bool) -> Heartbeat {
        Heartbeat {
            enabled: !dry_run,
            started: unix_time(),
            last_error: None,
            mismatch: None,
            complete: None,
            stopped: None,
            write_failed: None,
        }
    }
}

impl Monitor<'_> {
    /// After a pass that read both sides (its lists made fabric-wide by the view).
    pub(super) fn heartbeat_pass(&mut self, report: &PassReport) {
        let h = &mut self.heartbeat;
        let plan = &report.plan;
        h.mismatch = plan.locked.as_deref().map(redact_userinfo);
        h.complete = Some(report.complete());
        h.last_error = (!report.complete()).then(|| redact_userinfo(&failure_summary(report)));
    }

    /// A pass that could not read etcd or UFM, or a standby check that UFM did not answer.
    pub(super) fn heartbeat_failed(&mut self, error: &str) {
        self.heartbeat.last_error = Some(redact_userinfo(error));
    }

    /// A check that UFM answered (a drift check, a standby's check).
    pub(super) fn heartbeat_checked(&mut self) {
        self.metrics.last_check_seconds = Some(unix_time());
    }

    /// A standby's check: UFM answered, or why not.
    pub(super) fn heartbeat_standby(&mut self, ufm_error: Option<&str>) {
        match ufm_error {
            None => {
                self.heartbeat_checked();
                self.heartbeat.last_error = None;
            }
            Some(e) => self.heartbeat_failed(e),
        }
    }

    /// SIGTERM or SIGINT: the daemon stops, and says so.
    pub(super) fn heartbeat_stopped(&mut self) {
        self.heartbeat.stopped = Some(unix_time());
        self.write_status();
    }

    /// Writes the status file beside the state file (not in a dry run).
    pub(super) fn write_status(&mut self) {
        if !self.heartbeat.enabled {
            return;
        }
        let path = status_file::path_for(&self.engine.settings().state_file);
        let status = self.status();
        match status.write(&path) {
            Ok(()) => self.heartbeat.write_failed = None,
            Err(e) => {
                if self.heartbeat.write_failed.as_ref() != Some(&e) {
                    log::warn!("{e}; `ufm-pkeyd status` cannot tell how the daemon is doing");
                }
                self.heartbeat.write_failed = Some(e);
            }
        }
    }

    fn status(&self) -> Status {
        let now = unix_time();
        let since = |at: Instant| now - at.elapsed().as_secs_f64();
        let m = &self.metrics;
        let h = &self.heartbeat;
        let counts = Counts {
            owned: self.engine.owned().len(),
            pending: self.engine.pending_len(),
            refused_deletions: self.view.refused().len(),
            unmanaged: m.unmanaged,
            invalid: m.invalid,
            rejected_guids: m.guids_rejected,
        };
        let in_sync = h.complete.map(|complete| {
            complete
                && counts.pending == 0
                && counts.refused_deletions == 0
                && counts.rejected_guids == 0
                && h.mismatch.is_none()
                && !m.state_unsaved
        });
        let role = match &self.election {
            None => "single",
            Some(e) if e.is_leader() => "leader",
            Some(_) => "standby",
        };
        Status {
            format: status_file::FORMAT,
            writer: status_file::MONITOR.to_string(),
            pid: status_file::own_pid(),
            started: h.started,
            written: now,
            stopped: h.stopped,
            last_success: m.last_success_seconds,
            last_check: m.last_check_seconds,
            poll_interval_seconds: self.poll_interval.as_secs_f64(),
            etcd_prefix: self.engine.settings().prefix.clone(),
            in_sync,
            counts,
            ownership_mismatch: h.mismatch.clone(),
            state_unsaved: m.state_unsaved,
            leader_election: self.election.is_some(),
            role: role.to_string(),
            leader: self
                .election
                .as_ref()
                .and_then(Election::holder)
                .map(str::to_string),
            last_error: h.last_error.clone(),
            etcd_unreachable_since: self.schedule.etcd_down.as_ref().map(|o| since(o.since)),
            ufm_unreachable_since: self.schedule.ufm_down.as_ref().map(|o| since(o.since)),
            keyspaces: crate::app::keyspace::seen(),
        }
    }
}
