//! `ufm-pkeyd sync`: one pass, or with `--dry-run` only its plan. After a pass (not a dry run)
//! it writes the metrics file when one is configured, and the status file beside the state
//! file, as the daemon does: a site that runs `sync` from cron is monitored the same way.

use std::time::{Duration, Instant};

use super::metrics::{Metrics, read_sample, unix_time};
use super::report::{
    failure_summary, plan_json, plan_pending, plan_text, report_json, report_text,
};
use super::status_file::{self, Counts, Status};
use super::{Output, engine};
use crate::config::Settings;
use crate::engine::{Engine, PassReport};
use crate::error::{EXIT_OK, EXIT_PENDING, Error, Result};
use crate::net::http::redact_userinfo;

/// `ufm-pkeyd sync`: one pass. Exit 0 when in sync or applied, 1 when a change failed; with
/// `--dry-run`, 0 when in sync and 4 when changes are pending.
pub(super) fn run_sync(settings: &Settings, out: &Output, dry_run: bool) -> Result<i32> {
    if settings.election.is_some() && !dry_run {
        return Err(Error::usage(
            "leader election is on: only the elected daemon changes UFM, and a one-shot sync would write beside it; use sync --dry-run to see what the leader will do",
        ));
    }
    let mut engine = engine(settings, dry_run)?;
    if dry_run {
        let (plan, _) = engine.plan().map_err(Error::from)?;
        if out.json {
            out.print_json(&plan_json(&plan, engine.owned()))?;
        } else {
            out.print(&plan_text(&plan))?;
        }
        return Ok(if plan_pending(&plan) {
            EXIT_PENDING
        } else {
            EXIT_OK
        });
    }
    // No leadership to keep; SIGINT and SIGTERM are `crate::signals`' business: they end the
    // command at once, or after the UFM write in flight.
    let mut gate = Progress::on_terminal();
    let started = unix_time();
    let clock = Instant::now();
    let result = engine
        .pass(&mut gate, crate::engine::Scope::Full)
        .map(|mut report| {
            let mut view = super::view::View::default();
            view.merge(&mut report);
            view.log(&report);
            super::report::log_pass(&report);
            report
        });
    let failure = result.as_ref().err().map(ToString::to_string);
    let outcome = result
        .as_ref()
        .map_err(|_| failure.as_deref().unwrap_or_default());
    write_metrics(settings, &engine, outcome, clock.elapsed());
    write_status(settings, &engine, outcome, started);
    let report = result.map_err(Error::from)?;
    if out.json {
        out.print_json(&report_json(&report, engine.owned()))?;
    } else {
        out.print(&report_text(&report))?;
    }
    if report.complete() {
        Ok(EXIT_OK)
    } else {
        Err(Error::failed(failure_summary(&report)))
    }
}

/// `sync`'s write gate: always open; on a terminal, a pass with many partitions to change says
/// how far it got, every few seconds.
struct Progress {
    terminal: bool,
    said: Instant,
}

/// A pass changing more partitions than this says how far it got.
const PROGRESS_FROM: usize = 50;
/// At most this often.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

impl Progress {
    fn on_terminal() -> Progress {
        use std::io::IsTerminal;
        Progress {
            terminal: std::io::stderr().is_terminal(),
            said: Instant::now(),
        }
    }
}

impl crate::engine::Gate for Progress {
    fn before_write(&mut self) -> std::result::Result<(), String> {
        Ok(())
    }

    fn progress(&mut self, done: usize, total: usize) {
        if self.terminal && total > PROGRESS_FROM && self.said.elapsed() >= PROGRESS_EVERY {
            self.said = Instant::now();
            log::info!("progress: {done}/{total} partitions");
        }
    }
}

/// The outcome of the pass: its report, or why it could not read etcd or UFM.
type Outcome<'a> = std::result::Result<&'a PassReport, &'a str>;

/// Writes the metrics file, when one is configured. The times of the last success and the
/// last check are kept from the previous file when this pass did not set them, so a failed
/// run does not hide when the last good one was.
fn write_metrics(settings: &Settings, engine: &Engine, outcome: Outcome<'_>, took: Duration) {
    let Some(path) = &settings.metrics_file else {
        return;
    };
    let previous = std::fs::read_to_string(path).unwrap_or_default();
    let mut m = Metrics::default();
    match outcome {
        Ok(report) => {
            m.pass(report, engine.owned().len(), engine.record_unsaved());
            m.passes_full = 1;
        }
        Err(_) => m.passes_failed = 1,
    }
    m.last_success_seconds = m
        .last_success_seconds
        .or_else(|| read_sample(&previous, "ufm_pkeyd_last_success_timestamp_seconds"));
    m.last_check_seconds = m
        .last_check_seconds
        .or_else(|| read_sample(&previous, "ufm_pkeyd_last_check_timestamp_seconds"));
    m.last_pass_duration_seconds = took.as_secs_f64();
    m.etcd = engine.etcd().request_counts();
    m.ufm = engine.ufm().request_counts();
    m.ufm_retries = engine.retried();
    if let Err(e) = m.write(path) {
        log::warn!("{e}");
    }
}

/// Writes the status file beside the state file. A pass that could not read etcd or UFM
/// keeps the previous file's times and counts, and says why it failed.
fn write_status(settings: &Settings, engine: &Engine, outcome: Outcome<'_>, started: f64) {
    let path = status_file::path_for(&engine.settings().state_file);
    let previous = Status::read(&path).ok();
    let now = unix_time();
    let mut status = Status {
        format: status_file::FORMAT,
        writer: status_file::SYNC.to_string(),
        pid: status_file::own_pid(),
        started,
        written: now,
        poll_interval_seconds: settings.poll_interval.as_secs_f64(),
        etcd_prefix: engine.settings().prefix.clone(),
        leader_election: false,
        role: "single".to_string(),
        state_unsaved: engine.record_unsaved(),
        last_success: previous.as_ref().and_then(|p| p.last_success),
        last_check: previous.as_ref().and_then(|p| p.last_check),
        counts: previous.as_ref().map(|p| p.counts).unwrap_or_default(),
        keyspaces: super::keyspace::seen(),
        ..Status::default()
    };
    match outcome {
        Ok(report) => {
            let plan = &report.plan;
            status.last_check = Some(now);
            if report.succeeded() {
                status.last_success = Some(now);
            }
            status.counts = Counts {
                owned: engine.owned().len(),
                pending: engine.pending_len(),
                refused_deletions: plan.refused_deletes.len(),
                unmanaged: plan.unmanaged.len(),
                invalid: plan.invalid.len(),
                rejected_guids: report.rejected.len(),
            };
            status.ownership_mismatch = plan.locked.as_deref().map(redact_userinfo);
            let c = status.counts;
            status.in_sync = Some(
                report.complete()
                    && c.pending == 0
                    && c.refused_deletions == 0
                    && status.ownership_mismatch.is_none()
                    && !status.state_unsaved,
            );
            status.last_error =
                (!report.complete()).then(|| redact_userinfo(&failure_summary(report)));
        }
        Err(e) => status.last_error = Some(redact_userinfo(e)),
    }
    if let Err(e) = status.write(&path) {
        log::warn!("{e}");
    }
}
