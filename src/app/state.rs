//! `ufm-pkeyd state`: the ownership record, and what an operator does when it belongs to
//! another etcd or UFM: adopt it (the etcd or UFM was replaced, the partitions are still ours)
//! or reset it (start afresh; the partitions then count as unmanaged, never deleted).

use serde_json::json;

use super::{Output, engine};
use crate::cli::StateOp;
use crate::config::Settings;
use crate::engine::RecordView;
use crate::error::{EXIT_OK, Error, Result};

/// Shows, adopts or resets the record. Adopting and resetting take the state file's lock, so
/// they refuse while the daemon runs.
pub(super) fn run_state(settings: &Settings, op: StateOp, out: &Output) -> Result<i32> {
    let mut engine = engine(settings, op == StateOp::Show)?;
    let failed = Error::from;
    let view = match op {
        StateOp::Show => engine.record_view().map_err(failed)?,
        StateOp::Adopt | StateOp::Reset => {
            let before = engine.record_view().map_err(failed)?;
            let after = engine.rebind(op == StateOp::Reset).map_err(failed)?;
            log::info!(
                "ownership record {}: {} partitions owned before, {} now; bound to {}",
                if op == StateOp::Reset {
                    "reset"
                } else {
                    "adopted"
                },
                before.record.owned.len(),
                after.record.owned.len(),
                after.now.describe()
            );
            after
        }
    };
    if out.json {
        out.print_json(&view_json(&view))?;
    } else {
        out.print(&view_text(&view))?;
    }
    Ok(EXIT_OK)
}

fn view_json(view: &RecordView) -> serde_json::Value {
    let record = &view.record;
    json!({
        "owned": record.owned.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "binding": record.binding,
        "now": view.now,
        "matches": view.mismatch.is_none(),
        "mismatch": view.mismatch,
        "removals": record
            .removals
            .iter()
            .map(|(p, r)| {
                let text = match r {
                    crate::plan::Removal::OneByOne => "one by one".to_string(),
                    crate::plan::Removal::Bulk(why) => why.clone(),
                };
                (p.to_string(), json!(text))
            })
            .collect::<serde_json::Map<_, _>>(),
    })
}

fn view_text(view: &RecordView) -> String {
    let record = &view.record;
    let mut text = format!(
        "owned:    {} partitions{}{}\n",
        record.owned.len(),
        if record.owned.is_empty() { "" } else { ": " },
        super::report::pkey_list(&record.owned)
    );
    match &record.binding {
        Some(b) => text.push_str(&format!("bound to: {}\n", b.describe())),
        None => text.push_str("bound to: nothing yet (bound at the next pass)\n"),
    }
    match &view.mismatch {
        None => text.push_str("matches:  yes, the etcd and UFM configured now\n"),
        Some(why) => text.push_str(&format!(
            "matches:  no: {why}\n          nothing is deleted until `ufm-pkeyd state --adopt` (keep what it owns) or `--reset` (own nothing)\n"
        )),
    }
    text
}
