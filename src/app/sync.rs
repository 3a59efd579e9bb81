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
    super::monitor::register_signals()?;
    let mut gate = || {
        if super::monitor::stopping() {
            Err("stopping (SIGTERM or SIGINT)".to_string())
        } else {
            Ok(())
        }
    };
    let report = engine
        .pass(&mut gate, &crate::engine::Scope::Full)
        .map_err(Error::from)?;
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
