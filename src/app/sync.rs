//! `ufm-pkeyd sync`: one pass, or with `--dry-run` only its plan.

use super::report::{
    failure_summary, plan_json, plan_pending, plan_text, report_json, report_text,
};
use super::{Output, engine};
use crate::config::Settings;
use crate::error::{EXIT_OK, EXIT_PENDING, Error, Result};

/// `ufm-pkeyd sync`: one pass. Exit 0 when in sync or applied, 1 when a change failed; with
/// `--dry-run`, 0 when in sync and 4 when changes are pending.
pub(super) fn run_sync(settings: &Settings, out: &Output, dry_run: bool) -> Result<i32> {
    let mut engine = engine(settings, dry_run)?;
    if dry_run {
        let (plan, _) = engine.plan().map_err(|e| Error::failed(e.to_string()))?;
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
    super::monitor::register_signals()?;
    let report = engine
        .pass(&mut super::monitor::stopping)
        .map_err(|e| Error::failed(e.to_string()))?;
    if out.json {
        out.print_json(&report_json(&report, engine.owned()))?;
    } else {
        out.print(&report_text(&report))?;
    }
    if report.succeeded() {
        Ok(EXIT_OK)
    } else {
        Err(Error::failed(failure_summary(&report)))
    }
}
