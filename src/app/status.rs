//! `ufm-pkeyd status`: in one screen (or one JSON object), whether UFM is in step with etcd,
//! what is pending, unmanaged and invalid, who leads, and when the daemon last completed a pass.

use serde_json::json;

use super::metrics::{read_sample, unix_time};
use super::report::{plan_json, plan_pending, plan_text};
use super::{Output, engine};
use crate::config::Settings;
use crate::error::{EXIT_OK, EXIT_PENDING, Error, Result};

/// Exit 0 in sync, 4 not in sync, 1 when etcd or UFM cannot be read.
pub(super) fn run_status(settings: &Settings, out: &Output) -> Result<i32> {
    let mut engine = engine(settings, true)?;
    let (plan, _) = engine.plan().map_err(|e| Error::failed(e.to_string()))?;
    let leader = match &settings.election {
        Some(e) => Some(engine.etcd().get(&e.key)?.map_or_else(
            || "none".to_string(),
            |kv| String::from_utf8_lossy(&kv.value).into_owned(),
        )),
        None => None,
    };
    let metrics = settings
        .metrics_file
        .as_ref()
        .and_then(|path| std::fs::read_to_string(path).ok())
        .unwrap_or_default();
    let last_success = read_sample(&metrics, "ufm_pkeyd_last_success_timestamp_seconds");
    let ago = last_success.map(|t| (unix_time() - t).max(0.0));
    let unsaved = read_sample(&metrics, "ufm_pkeyd_state_unsaved") == Some(1.0);
    let in_sync = !plan_pending(&plan) && plan.locked.is_none() && !unsaved;
    if out.json {
        let mut value = plan_json(&plan, engine.owned());
        value["leader"] = json!(leader);
        value["leader_election"] = json!(settings.election.is_some());
        value["last_success_seconds_ago"] = json!(ago);
        value["in_sync"] = json!(in_sync);
        value["record_unsaved"] = json!(unsaved);
        out.print_json(&value)?;
    } else {
        let pending = plan.actions.len() + plan.refused_deletes.len();
        let mut text = format!(
            "in sync:   {}\n",
            if in_sync {
                "yes".to_string()
            } else {
                format!("no, {pending} changes pending")
            }
        );
        text.push_str(&format!(
            "etcd:      {} keyspace, prefix {}\n",
            engine.etcd().api(),
            engine.settings().prefix
        ));
        text.push_str(&format!(
            "owned:     {} partitions; {} unmanaged, {} invalid entries\n",
            engine.owned().len(),
            plan.unmanaged.len(),
            plan.invalid.len()
        ));
        match &leader {
            Some(holder) => text.push_str(&format!("leader:    {holder}\n")),
            None => text.push_str("leader:    (leader election off)\n"),
        }
        match ago {
            Some(seconds) => text.push_str(&format!("last pass: succeeded {seconds:.0} s ago\n")),
            None => text.push_str("last pass: unknown (set metrics-file to record it)\n"),
        }
        if let Some(why) = &plan.locked {
            text.push_str(&format!("ownership: {why}\n"));
        }
        if unsaved {
            text.push_str(
                "ownership: the daemon cannot save its ownership record (see its log); it retries every pass\n",
            );
        }
        if !in_sync || !plan.unmanaged.is_empty() || !plan.invalid.is_empty() {
            text.push('\n');
            text.push_str(&plan_text(&plan));
        }
        out.print(&text)?;
    }
    Ok(if in_sync { EXIT_OK } else { EXIT_PENDING })
}
