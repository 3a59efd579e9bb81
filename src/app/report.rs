//! How plans and pass results are shown: text for people (one line per change), JSON for
//! scripts (`--json`), and the one-line summary sent to systemd as `STATUS=`. Used by
//! `sync`, `status` and `monitor --dry-run` alike.

use std::collections::BTreeSet;

use serde_json::json;

use crate::engine::PassReport;
use crate::model::PKey;
use crate::plan::{Action, Plan};
use crate::text::count;
use crate::text::escape;

/// Whether a plan would change UFM (refused deletions count: they wait for an operator).
pub(crate) fn plan_pending(plan: &Plan) -> bool {
    !plan.actions.is_empty() || !plan.refused_deletes.is_empty()
}

/// Why a `sync` did not fully succeed, in one line.
pub(crate) fn failure_summary(report: &PassReport) -> String {
    let mut parts = Vec::new();
    if !report.failures.is_empty() {
        parts.push(format!("{} UFM changes failed", report.failures.len()));
    }
    if let Some(reason) = &report.plan.refusal {
        if report.plan.locked.is_some() {
            parts.push(format!("deletions refused: {reason}"));
        } else {
            parts.push(format!(
                "deletions refused ({reason}): confirm with --allow-mass-delete"
            ));
        }
    }
    if !report.rejected.is_empty() {
        let first = &report.rejected[0];
        parts.push(format!(
            "UFM refused {} GUIDs (e.g. {} for {}: {})",
            report.rejected.len(),
            first.guid,
            first.pkey,
            first.reason
        ));
    }
    if let Some(e) = &report.state_error {
        parts.push(e.clone());
    }
    if let Some(e) = &report.stopped {
        parts.push(format!("stopped early: {e}"));
    }
    parts.join("; ")
}

/// The one-line summary of a pass for systemd's `STATUS=`, with the partitions owned after it.
pub(crate) fn status_line(report: &PassReport, owned: &BTreeSet<PKey>) -> String {
    let plan = &report.plan;
    let state = if report.complete() {
        "in sync"
    } else {
        "not in sync"
    };
    format!(
        "{state}: {} owned, {} unmanaged, {} invalid; last pass applied {} changes, {} failed",
        owned.len(),
        plan.unmanaged.len(),
        plan.invalid.len(),
        report.applied(),
        report.failures.len()
    )
}

/// The pass summary, logged after the line each change got as it was applied; nothing for a
/// pass that had nothing to do.
pub(crate) fn log_pass(report: &PassReport) {
    if report.plan.actions.is_empty() && report.unconfirmed.is_empty() {
        return;
    }
    let c = report.counts;
    let pending = if report.pending == 0 {
        String::new()
    } else {
        format!("; {} pending", count(report.pending, "partition"))
    };
    log::info!(
        "pass: {} created, {} added, {} removed, {} deleted, {} failed{pending}; {} unmanaged, {} invalid",
        c.created,
        count(c.guids_added, "GUID"),
        count(c.guids_removed, "GUID"),
        c.deleted,
        report.failures.len() + report.unconfirmed.len(),
        report.plan.unmanaged.len(),
        report.plan.invalid.len()
    );
    for (pkey, why) in &report.unconfirmed {
        log::warn!("{pkey}: not done yet: {why}; tried again on its own");
    }
}

/// One planned change as JSON.
fn action_json(action: &Action) -> serde_json::Value {
    match action {
        Action::Add {
            pkey,
            guids,
            join,
            ip_over_ib,
            creates,
        } => json!({
            "pkey": pkey.to_string(),
            "action": if *creates { "create" } else { "add" },
            "guids": guids.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "membership": join.membership.as_str(),
            "index0": join.index0,
            "ip_over_ib": ip_over_ib,
        }),
        Action::Remove { pkey, guids, .. } => json!({
            "pkey": pkey.to_string(),
            "action": "remove",
            "guids": guids.iter().map(ToString::to_string).collect::<Vec<_>>(),
        }),
        Action::Delete { pkey } => json!({"pkey": pkey.to_string(), "action": "delete"}),
    }
}

/// The plan as JSON: in sync or not, changes, unmanaged, invalid, refusals, ownership.
pub(crate) fn plan_json(plan: &Plan, owned: &BTreeSet<PKey>) -> serde_json::Value {
    let keys = |v: &[PKey]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
    json!({
        "in_sync": !plan_pending(plan),
        "actions": plan.actions.iter().map(action_json).collect::<Vec<_>>(),
        "unmanaged": keys(&plan.unmanaged),
        "invalid": plan.invalid.iter().map(|i| json!({
            "key": i.key,
            "pkey": i.pkey.map(|p| p.to_string()),
            "reason": i.reason,
        })).collect::<Vec<_>>(),
        "refused_deletes": keys(&plan.refused_deletes),
        "refusal": plan.refusal,
        "ownership_mismatch": plan.locked,
        "unreadable": plan.unreadable.iter().map(|(p, reason)| json!({
            "pkey": p.to_string(), "reason": reason,
        })).collect::<Vec<_>>(),
        "owned": owned.iter().map(ToString::to_string).collect::<Vec<_>>(),
    })
}

/// The plan for people: one line per change, then unmanaged, invalid and refusals. Keys and
/// reasons come from etcd and UFM and are escaped.
pub(crate) fn plan_text(plan: &Plan) -> String {
    let mut text = String::new();
    for action in &plan.actions {
        text.push_str(&format!(
            "{:<8} {}\n",
            action.pkey().to_string(),
            action.describe()
        ));
    }
    let list = |v: &[PKey]| {
        v.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !plan.unmanaged.is_empty() {
        text.push_str(&format!(
            "unmanaged (left alone): {}\n",
            list(&plan.unmanaged)
        ));
    }
    for invalid in &plan.invalid {
        text.push_str(&format!(
            "invalid (left alone): {}: {}\n",
            escape(&invalid.key),
            escape(&invalid.reason)
        ));
    }
    if let Some(reason) = &plan.refusal {
        let way_out = if plan.locked.is_some() {
            ""
        } else {
            "; confirm with --allow-mass-delete"
        };
        text.push_str(&format!(
            "refused: deleting {} ({}){way_out}\n",
            list(&plan.refused_deletes),
            escape(reason)
        ));
    }
    for (pkey, reason) in &plan.unreadable {
        text.push_str(&format!(
            "unreadable in UFM (left alone): {pkey}: {}\n",
            escape(reason)
        ));
    }
    if plan_pending(plan) {
        text.push_str(&format!(
            "{} changes pending\n",
            plan.actions.len() + plan.refused_deletes.len()
        ));
    } else {
        text.push_str("in sync\n");
    }
    text
}

/// What a pass applied, as JSON: the plan, the changes applied and the failures.
pub(crate) fn report_json(report: &PassReport, owned: &BTreeSet<PKey>) -> serde_json::Value {
    let c = report.counts;
    let mut value = plan_json(&report.plan, owned);
    value["in_sync"] = json!(report.complete());
    value["applied"] = json!({
        "created": c.created, "guids_added": c.guids_added,
        "guids_removed": c.guids_removed, "deleted": c.deleted,
    });
    value["failures"] = json!(
        report
            .failures
            .iter()
            .map(|(a, e)| json!({
                "pkey": a.pkey().to_string(), "action": a.describe(), "error": e,
            }))
            .collect::<Vec<_>>()
    );
    value
}

/// What a pass applied, for people: one line.
pub(crate) fn report_text(report: &PassReport) -> String {
    let c = report.counts;
    if report.plan.actions.is_empty() && report.complete() {
        "in sync: nothing to change\n".to_string()
    } else {
        format!(
            "applied: {} created, {} added, {} removed, {} deleted; {} failed\n",
            c.created,
            count(c.guids_added, "GUID"),
            count(c.guids_removed, "GUID"),
            c.deleted,
            report.failures.len() + report.unconfirmed.len()
        )
    }
}
