//! `ufm-pkeyd monitor` (the daemon) and `ufm-pkeyd sync` (one pass). The loop is thin and
//! single-threaded: pass, then block on an etcd watch until something changes under the prefix,
//! the poll interval ends (a full pass repairs drift made by hand in UFM), or a signal arrives.
//!
//! Signals only set flags (signal-hook); every blocking wait looks at them at least every
//! quarter second. SIGTERM and SIGINT finish the UFM request in flight and exit 0; SIGHUP
//! re-reads the configuration and runs a full pass.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::cli::Invocation;
use crate::config::RawConfig;
use crate::error::{EXIT_OK, EXIT_PENDING, Error, Result};
use crate::etcd::{EtcdClient, EtcdError, WaitOutcome};
use crate::plan::{Action, Plan};
use crate::state::StateFile;
use crate::sync::{Engine, PassError, PassReport, describe};
use crate::systemd::{self, Watchdog};
use crate::ufm::{UfmClient, UfmError};

static STOP: AtomicBool = AtomicBool::new(false);
static RELOAD: AtomicBool = AtomicBool::new(false);

/// The longest wait between retries while etcd or UFM is down.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

fn stopping() -> bool {
    STOP.load(Ordering::SeqCst)
}

fn register_signals() -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let failed = |e: std::io::Error| Error::failed(format!("cannot install signal handlers: {e}"));
    signal_hook::flag::register(SIGTERM, &STOP).map_err(failed)?;
    signal_hook::flag::register(SIGINT, &STOP).map_err(failed)?;
    signal_hook::flag::register(SIGHUP, &RELOAD).map_err(failed)?;
    Ok(())
}

/// Builds the engine from the configuration. In a dry run a missing state directory is
/// tolerated (nothing is written); a corrupt state file never is.
fn build_engine(config: &RawConfig, dry_run: bool) -> Result<Engine> {
    let settings = config.sync()?;
    let etcd = EtcdClient::new(&config.etcd()?).map_err(Error::Usage)?;
    let ufm = UfmClient::new(&config.ufm()?).map_err(Error::Usage)?;
    let (state, owned) = match StateFile::open(&settings.state_file) {
        Ok((state, owned)) => (Some(state).filter(|_| !dry_run), owned),
        Err(e) if dry_run && !settings.state_file.exists() => {
            log::warn!("{e}; planning as if nothing were owned");
            (None, Default::default())
        }
        Err(e) => return Err(Error::Usage(e)),
    };
    Ok(Engine::new(etcd, ufm, settings, state, owned))
}

/// `ufm-pkeyd sync`: one pass. Exit 0 when in sync or applied, 1 when a change failed; with
/// `--dry-run`, 0 when in sync and 4 when changes are pending.
pub fn run_sync(invocation: &Invocation, config: &RawConfig, dry_run: bool) -> Result<i32> {
    let mut engine = build_engine(config, dry_run)?;
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
    let report = engine.pass(&stopping).map_err(pass_error)?;
    print_report(&report, &engine, invocation.json);
    if report.succeeded() {
        Ok(EXIT_OK)
    } else {
        Err(Error::failed(failure_summary(&report)))
    }
}

/// `ufm-pkeyd monitor`: the daemon loop.
pub fn run_monitor(invocation: &Invocation, config: &RawConfig, dry_run: bool) -> Result<i32> {
    register_signals()?;
    let mut config = config.clone();
    let mut engine = build_engine(&config, dry_run)?;
    check_ufm_credentials(&engine.ufm)?;
    log::info!(
        "monitoring {} ({} keyspace) every {} s at most; {} partitions owned{}",
        engine.settings.prefix,
        engine.etcd.api(),
        engine.settings.poll_interval.as_secs_f64(),
        engine.owned().len(),
        if dry_run {
            "; dry run: nothing will be changed"
        } else {
            ""
        }
    );
    systemd::notify("READY=1");
    let mut watchdog = Watchdog::from_env();
    let mut backoff = Duration::from_secs(1);
    let mut first_pass = true;
    let mut last_plan: Option<Plan> = None;
    while !stopping() {
        if RELOAD.swap(false, Ordering::SeqCst) {
            reload(invocation, &mut config, &mut engine, dry_run);
        }
        watchdog.tick();
        let outcome = if dry_run {
            engine.plan().map(|(plan, revision)| {
                if last_plan.as_ref() != Some(&plan) {
                    print_plan(&plan, &engine, invocation.json);
                }
                let retry = plan.refusal.is_some();
                last_plan = Some(plan);
                (revision, retry)
            })
        } else {
            engine.pass(&stopping).map(|report| {
                systemd::notify(&format!("STATUS={}", status_line(&report, &engine)));
                (report.revision, !report.failures.is_empty())
            })
        };
        match outcome {
            Ok((revision, had_failures)) => {
                first_pass = false;
                let next_full_pass = if had_failures {
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    Instant::now() + backoff.min(engine.settings.poll_interval)
                } else {
                    backoff = Duration::from_secs(1);
                    Instant::now() + engine.settings.poll_interval
                };
                wait_for_change(&engine, revision, next_full_pass, &mut watchdog, backoff);
            }
            Err(e) => {
                if first_pass && is_auth_error(&e) {
                    return Err(Error::failed(format!("{e}")));
                }
                log::error!(
                    "{e}; nothing changed in UFM; retrying in {} s",
                    backoff.as_secs()
                );
                systemd::notify(&format!("STATUS=retrying: {e}"));
                sleep_interruptibly(backoff, &mut watchdog);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
    systemd::notify("STOPPING=1");
    log::info!("stopping: {} partitions owned", engine.owned().len());
    Ok(EXIT_OK)
}

/// Fails fast on wrong UFM credentials (systemd restarts us, an operator reads why); an
/// unreachable UFM is only a warning, the loop retries.
fn check_ufm_credentials(ufm: &UfmClient) -> Result<()> {
    match ufm.version() {
        Ok(version) => {
            log::info!("UFM {version}: connected");
            Ok(())
        }
        Err(UfmError::Auth(m)) => Err(Error::failed(m)),
        Err(e) => {
            log::warn!("{e}; will retry");
            Ok(())
        }
    }
}

fn reload(invocation: &Invocation, config: &mut RawConfig, engine: &mut Engine, dry_run: bool) {
    systemd::notify("RELOADING=1");
    let credentials = std::env::var_os("CREDENTIALS_DIRECTORY").map(std::path::PathBuf::from);
    let reloaded = RawConfig::load(&invocation.flags, credentials.as_deref())
        .and_then(|c| build_engine(&c, dry_run).map(|e| (c, e)));
    match reloaded {
        Ok((new_config, new_engine)) => {
            *config = new_config;
            *engine = new_engine;
            log::info!("configuration reloaded");
        }
        Err(e) => log::error!("configuration not reloaded, keeping the old one: {e}"),
    }
    systemd::notify("READY=1");
}

/// Blocks on the etcd watch until a change, the deadline, or a signal.
fn wait_for_change(
    engine: &Engine,
    revision: i64,
    deadline: Instant,
    watchdog: &mut Watchdog,
    backoff: Duration,
) {
    let mut keep_waiting = || {
        watchdog.tick();
        !stopping() && !RELOAD.load(Ordering::SeqCst) && Instant::now() < deadline
    };
    match engine
        .etcd
        .wait_for_change(&engine.settings.prefix, revision, &mut keep_waiting)
    {
        Ok(WaitOutcome::Changed) => log::debug!("change under {}", engine.settings.prefix),
        Ok(WaitOutcome::Resync) | Ok(WaitOutcome::Stopped) => {}
        Err(e) => {
            log::warn!("etcd watch failed: {e}");
            let left = deadline.saturating_duration_since(Instant::now());
            sleep_interruptibly(backoff.min(left), watchdog);
        }
    }
}

fn sleep_interruptibly(duration: Duration, watchdog: &mut Watchdog) {
    let end = Instant::now() + duration;
    while !stopping() && !RELOAD.load(Ordering::SeqCst) {
        watchdog.tick();
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
}

fn is_auth_error(error: &PassError) -> bool {
    matches!(
        error,
        PassError::Etcd(EtcdError::Auth(_)) | PassError::Ufm(UfmError::Auth(_))
    )
}

fn pass_error(error: PassError) -> Error {
    Error::failed(error.to_string())
}

fn plan_pending(plan: &Plan) -> bool {
    !plan.actions.is_empty() || !plan.refused_deletes.is_empty()
}

fn failure_summary(report: &PassReport) -> String {
    let mut parts = Vec::new();
    if !report.failures.is_empty() {
        parts.push(format!("{} UFM changes failed", report.failures.len()));
    }
    if let Some(reason) = &report.plan.refusal {
        parts.push(format!(
            "deletions refused ({reason}): confirm with --allow-mass-delete"
        ));
    }
    if let Some(e) = &report.state_error {
        parts.push(e.clone());
    }
    parts.join("; ")
}

fn status_line(report: &PassReport, engine: &Engine) -> String {
    let plan = &report.plan;
    let state = if report.succeeded() {
        "in sync"
    } else {
        "not in sync"
    };
    format!(
        "{state}: {} owned, {} unmanaged, {} invalid; last pass applied {} changes, {} failed",
        engine.owned().len(),
        plan.unmanaged.len(),
        plan.invalid.len(),
        plan.actions.len() - report.failures.len() - report.skipped,
        report.failures.len()
    )
}

fn action_json(action: &Action) -> serde_json::Value {
    match action {
        Action::Add {
            pkey,
            guids,
            spec,
            ip_over_ib,
            creates,
        } => json!({
            "pkey": pkey.to_string(),
            "action": if *creates { "create" } else { "add" },
            "guids": guids.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "membership": spec.membership.as_str(),
            "index0": spec.index0,
            "ip_over_ib": ip_over_ib,
        }),
        Action::Remove { pkey, guids } => json!({
            "pkey": pkey.to_string(),
            "action": "remove",
            "guids": guids.iter().map(ToString::to_string).collect::<Vec<_>>(),
        }),
        Action::Delete { pkey } => json!({"pkey": pkey.to_string(), "action": "delete"}),
    }
}

fn plan_json(plan: &Plan, engine: &Engine) -> serde_json::Value {
    let keys = |v: &[crate::model::PKey]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
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
        "owned": engine.owned().iter().map(ToString::to_string).collect::<Vec<_>>(),
    })
}

fn plan_text(plan: &Plan) -> String {
    let mut text = String::new();
    for action in &plan.actions {
        text.push_str(&format!(
            "{:<8} {}\n",
            action.pkey().to_string(),
            describe(action)
        ));
    }
    let list = |v: &[crate::model::PKey]| {
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
            invalid.key, invalid.reason
        ));
    }
    if let Some(reason) = &plan.refusal {
        text.push_str(&format!(
            "refused: deleting {} ({reason}); confirm with --allow-mass-delete\n",
            list(&plan.refused_deletes)
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

fn print_plan(plan: &Plan, engine: &Engine, json: bool) {
    if json {
        let text = serde_json::to_string_pretty(&plan_json(plan, engine)).unwrap_or_default();
        println!("{text}");
    } else {
        print!("{}", plan_text(plan));
    }
}

fn print_report(report: &PassReport, engine: &Engine, json: bool) {
    let c = report.counts;
    if json {
        let mut value = plan_json(&report.plan, engine);
        value["in_sync"] = json!(report.succeeded());
        value["applied"] = json!({
            "created": c.created, "guids_added": c.guids_added,
            "guids_removed": c.guids_removed, "deleted": c.deleted,
        });
        value["failures"] = json!(
            report
                .failures
                .iter()
                .map(|(a, e)| json!({
                    "pkey": a.pkey().to_string(), "action": describe(a), "error": e,
                }))
                .collect::<Vec<_>>()
        );
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
    } else if report.plan.actions.is_empty() && report.succeeded() {
        println!("in sync: nothing to change");
    } else {
        println!(
            "applied: {} created, {} GUIDs added, {} GUIDs removed, {} deleted; {} failed",
            c.created,
            c.guids_added,
            c.guids_removed,
            c.deleted,
            report.failures.len()
        );
    }
}
