//! The one-shot sync sub-commands: `sync` (one pass, or its plan with `--dry-run`) and
//! `status` (in sync or not, and why).

use serde_json::json;

use crate::cli::Invocation;
use crate::config::RawConfig;
use crate::daemon::{register_signals, stopping};
use crate::error::{EXIT_OK, EXIT_PENDING, Error, Result};
use crate::metrics::unix_time;
use crate::report::{
    failure_summary, plan_json, plan_pending, plan_text, print_plan, print_report,
};
use crate::sync::{Engine, PassError};

/// `ufm-pkeyd sync`: one pass. Exit 0 when in sync or applied, 1 when a change failed; with
/// `--dry-run`, 0 when in sync and 4 when changes are pending.
pub(super) fn run_sync(invocation: &Invocation, config: &RawConfig, dry_run: bool) -> Result<i32> {
    let mut engine = Engine::from_config(config, dry_run)?;
    if dry_run {
        let (plan, _) = engine.plan().map_err(pass_error)?;
        print_plan(&plan, &engine, invocation.json);
        return Ok(if plan_pending(&plan) {
            EXIT_PENDING
        } else {
            EXIT_OK
        });
    }
    register_signals()?;
    let report = engine.pass(&mut stopping).map_err(pass_error)?;
    print_report(&report, &engine, invocation.json);
    if report.succeeded() {
        Ok(EXIT_OK)
    } else {
        Err(Error::failed(failure_summary(&report)))
    }
}

/// `ufm-pkeyd status`: one screen (or one JSON object) saying whether UFM is in step with
/// etcd, what is pending, unmanaged and invalid, who leads, and when the daemon last
/// completed a pass. Exit 0 in sync, 4 not in sync, 1 when etcd or UFM cannot be read.
pub(super) fn run_status(invocation: &Invocation, config: &RawConfig) -> Result<i32> {
    let engine = Engine::from_config(config, true)?;
    let (plan, _) = engine.plan().map_err(pass_error)?;
    let election = config.election()?;
    let leader = match &election {
        Some(e) => Some(engine.etcd.get(&e.key).map_err(Error::from)?.map_or_else(
            || "none".to_string(),
            |kv| String::from_utf8_lossy(&kv.value).into_owned(),
        )),
        None => None,
    };
    let last_success = engine.settings.metrics_file.as_ref().and_then(|path| {
        let text = std::fs::read_to_string(path).ok()?;
        crate::metrics::read_sample(&text, "ufm_pkeyd_last_success_timestamp_seconds")
    });
    let ago = last_success.map(|t| (unix_time() - t).max(0.0));
    let in_sync = !plan_pending(&plan);
    if invocation.json {
        let mut value = plan_json(&plan, &engine);
        value["leader"] = json!(leader);
        value["leader_election"] = json!(election.is_some());
        value["last_success_seconds_ago"] = json!(ago);
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
    } else {
        let pending = plan.actions.len() + plan.refused_deletes.len();
        println!(
            "in sync:   {}",
            if in_sync {
                "yes".to_string()
            } else {
                format!("no, {pending} changes pending")
            }
        );
        println!(
            "etcd:      {} keyspace, prefix {}",
            engine.etcd.api(),
            engine.settings.prefix
        );
        println!(
            "owned:     {} partitions; {} unmanaged, {} invalid entries",
            engine.owned().len(),
            plan.unmanaged.len(),
            plan.invalid.len()
        );
        match &leader {
            Some(holder) => println!("leader:    {holder}"),
            None => println!("leader:    (leader election off)"),
        }
        match ago {
            Some(seconds) => println!("last pass: succeeded {seconds:.0} s ago"),
            None => println!("last pass: unknown (set metrics-file to record it)"),
        }
        if !in_sync || !plan.unmanaged.is_empty() || !plan.invalid.is_empty() {
            print!("\n{}", plan_text(&plan));
        }
    }
    Ok(if in_sync { EXIT_OK } else { EXIT_PENDING })
}

fn pass_error(error: PassError) -> Error {
    Error::failed(error.to_string())
}
