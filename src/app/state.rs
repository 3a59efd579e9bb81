//! `ufm-pkeyd state`: the ownership record, and what an operator does when it belongs to
//! another etcd or UFM: adopt it (the etcd or UFM was replaced, the partitions are still ours)
//! or reset it (start afresh; the partitions then count as unmanaged, never deleted); and
//! confirm deletions the guard refused. While the daemon holds the record (or with leader
//! election, for a confirmation), the operator's word is left beside the record as a request
//! that the daemon carries out at its next full pass, and logs.

use serde_json::json;

use super::{Output, engine, etcd_client};
use crate::cli::StateOp;
use crate::config::Settings;
use crate::engine::RecordView;
use crate::engine::ownership::{Lock, Request, RequestOp, leave_request};
use crate::error::{EXIT_OK, Error, Result};

/// Shows, adopts or resets the record, or confirms refused deletions.
pub(super) fn run_state(settings: &Settings, op: StateOp, out: &Output) -> Result<i32> {
    let request = match &op {
        StateOp::Show => None,
        StateOp::Confirm(pkeys) => Some(Request::new(
            RequestOp::ConfirmDeletions,
            pkeys.clone(),
            crate::utc::unix_now(),
        )),
        // The daemon holds the state file: it is asked, instead of stopped.
        StateOp::Adopt | StateOp::Reset
            if settings.engine.state_key.is_none()
                && Lock::held_elsewhere(&settings.engine.state_file) =>
        {
            let op = if op == StateOp::Reset {
                RequestOp::Reset
            } else {
                RequestOp::Adopt
            };
            Some(Request::new(op, None, crate::utc::unix_now()))
        }
        StateOp::Adopt | StateOp::Reset => None,
    };
    if let Some(request) = request {
        return leave(settings, &request, out);
    }
    let mut engine = engine(settings, op == StateOp::Show)?;
    let failed = Error::from;
    let view = match op {
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
        _ => engine.record_view().map_err(failed)?,
    };
    if out.json {
        out.print_json(&view_json(&view))?;
    } else {
        out.print(&view_text(&view))?;
    }
    Ok(EXIT_OK)
}

/// Leaves `request` beside the record, and says what happens next.
fn leave(settings: &Settings, request: &Request, out: &Output) -> Result<i32> {
    let etcd = etcd_client(settings)?;
    let place = settings.engine.place();
    let left = leave_request(&place, &etcd, request).map_err(Error::Failed)?;
    let what = match (&request.op, &request.pkeys) {
        (RequestOp::ConfirmDeletions, None) => "every deletion refused".to_string(),
        (RequestOp::ConfirmDeletions, Some(pkeys)) => {
            format!("the deletion of {}", crate::text::pkey_list(pkeys))
        }
        (RequestOp::Adopt, _) => "adopting the ownership record".to_string(),
        (RequestOp::Reset, _) => "resetting the ownership record".to_string(),
    };
    let line = format!(
        "{what}: left in {left} for the daemon (or the next `ufm-pkeyd sync`), which carries it out at its next full pass (the daemon looks every poll interval; full passes are at least 5 s apart) and logs it; it is used once, and expires unused in an hour"
    );
    out.done(
        &line,
        json!({"request": request.op.command(), "left_in": left, "expires_in_seconds": 3600}),
    )?;
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
        crate::text::pkey_list(&record.owned)
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
