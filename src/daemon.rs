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
use crate::election::Election;
use crate::error::{EXIT_OK, EXIT_PENDING, Error, Result};
use crate::etcd::{EtcdClient, EtcdError, WaitOutcome};
use crate::metrics::Metrics;
use crate::plan::{Action, Plan};
use crate::state::{Ownership, StateFile};
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
    if config.election()?.is_some() {
        // The instances of an HA pair share ownership through etcd; it is read before the
        // first pass of each leadership term.
        let key = settings.state_key.clone();
        if dry_run {
            let owned = Ownership::load_from_etcd(&etcd, &key).map_err(Error::Failed)?;
            return Ok(Engine::new(etcd, ufm, settings, None, owned));
        }
        let state = Ownership::Etcd { key };
        return Ok(Engine::new(
            etcd,
            ufm,
            settings,
            Some(state),
            Default::default(),
        ));
    }
    let (state, owned) = match StateFile::open(&settings.state_file) {
        Ok((state, owned)) => (Some(Ownership::File(state)).filter(|_| !dry_run), owned),
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
pub fn run_status(invocation: &Invocation, config: &RawConfig) -> Result<i32> {
    let engine = build_engine(config, true)?;
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

/// `ufm-pkeyd monitor`: the daemon loop.
pub fn run_monitor(invocation: &Invocation, config: &RawConfig, dry_run: bool) -> Result<i32> {
    register_signals()?;
    let engine = build_engine(config, dry_run)?;
    check_ufm_credentials(&engine.ufm)?;
    let election = config
        .election()?
        .map(|settings| Election::new(settings, engine.etcd.clone()));
    log::info!(
        "monitoring {} ({} keyspace) every {} s at most; {} partitions owned{}{}",
        engine.settings.prefix,
        engine.etcd.api(),
        engine.settings.poll_interval.as_secs_f64(),
        engine.owned().len(),
        if election.is_some() {
            "; leader election on"
        } else {
            ""
        },
        if dry_run {
            "; dry run: nothing will be changed"
        } else {
            ""
        }
    );
    systemd::notify("READY=1");
    let mut monitor = Monitor {
        invocation,
        engine,
        dry_run,
        election,
        watchdog: Watchdog::from_env(),
        backoff: Duration::from_secs(1),
        first_pass: true,
        last_plan: None,
        next_standby_check: Instant::now(),
        was_leader: false,
        metrics: Metrics::default(),
    };
    let result = monitor.run();
    if let Some(election) = &mut monitor.election {
        election.resign();
    }
    systemd::notify("STOPPING=1");
    log::info!(
        "stopping: {} partitions owned",
        monitor.engine.owned().len()
    );
    result
}

/// The daemon's state between iterations.
struct Monitor<'a> {
    invocation: &'a Invocation,
    engine: Engine,
    dry_run: bool,
    election: Option<Election>,
    watchdog: Watchdog,
    backoff: Duration,
    first_pass: bool,
    /// The last plan printed in dry-run mode, so an unchanged plan is not printed again.
    last_plan: Option<Plan>,
    /// When a standby next checks that it could take over (reads etcd and UFM).
    next_standby_check: Instant,
    /// Whether this instance led in the previous iteration.
    was_leader: bool,
    metrics: Metrics,
}

impl Monitor<'_> {
    fn run(&mut self) -> Result<i32> {
        while !stopping() {
            if RELOAD.swap(false, Ordering::SeqCst) {
                self.reload();
            }
            self.watchdog.tick();
            let leader = self.election.as_mut().is_none_or(|e| e.tick());
            if leader && !self.was_leader {
                self.engine.ownership_may_have_changed();
            }
            self.was_leader = leader;
            if leader {
                self.lead()?;
            } else {
                self.stand_by();
            }
        }
        Ok(EXIT_OK)
    }

    /// One pass (or one plan in dry-run mode), then the wait for the next change.
    fn lead(&mut self) -> Result<()> {
        let outcome = if self.dry_run {
            self.dry_pass()
        } else {
            let started = Instant::now();
            let election = &mut self.election;
            let watchdog = &mut self.watchdog;
            // Between UFM requests: keep systemd's watchdog fed through a long initial sync,
            // refresh the leadership claim, and stop early on SIGTERM or a lost leadership.
            let mut stop = || {
                watchdog.tick();
                stopping() || !election.as_mut().is_none_or(|e| e.tick())
            };
            let result = self.engine.pass(&mut stop);
            self.record(result.as_ref().ok(), started.elapsed());
            result.map(|report| {
                systemd::notify(&format!("STATUS={}", status_line(&report, &self.engine)));
                (report.revision, !report.failures.is_empty())
            })
        };
        match outcome {
            Ok((revision, had_failures)) => {
                self.first_pass = false;
                let next_full_pass = if had_failures {
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                    Instant::now() + self.backoff.min(self.engine.settings.poll_interval)
                } else {
                    self.backoff = Duration::from_secs(1);
                    Instant::now() + self.engine.settings.poll_interval
                };
                self.wait_for_change(revision, next_full_pass);
            }
            Err(e) => {
                if self.first_pass && is_auth_error(&e) {
                    return Err(Error::failed(format!("{e}")));
                }
                log::error!(
                    "{e}; nothing changed in UFM; retrying in {} s",
                    self.backoff.as_secs()
                );
                systemd::notify(&format!("STATUS=retrying: {e}"));
                self.sleep(self.backoff);
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
            }
        }
        Ok(())
    }

    /// Updates the metrics after a pass (`None`: it could not read etcd or UFM) and writes
    /// them when a metrics file is configured.
    fn record(&mut self, report: Option<&PassReport>, duration: Duration) {
        let m = &mut self.metrics;
        m.last_pass_duration_seconds = duration.as_secs_f64();
        match report {
            Some(report) => {
                let plan = &report.plan;
                if report.succeeded() {
                    m.passes_ok += 1;
                    m.last_success_seconds = Some(unix_time());
                } else {
                    m.passes_failed += 1;
                }
                m.owned = self.engine.owned().len();
                m.unmanaged = plan.unmanaged.len();
                m.invalid = plan.invalid.len();
                m.pending = report.failures.len() + report.skipped + plan.refused_deletes.len();
                m.applied.created += report.counts.created;
                m.applied.guids_added += report.counts.guids_added;
                m.applied.guids_removed += report.counts.guids_removed;
                m.applied.deleted += report.counts.deleted;
                m.change_failures += report.failures.len() as u64;
            }
            None => m.passes_failed += 1,
        }
        self.write_metrics();
    }

    fn write_metrics(&mut self) {
        let Some(path) = &self.engine.settings.metrics_file else {
            return;
        };
        self.metrics.etcd = self.engine.etcd.request_counts();
        self.metrics.ufm = self.engine.ufm.request_counts();
        self.metrics.leader = self.election.as_ref().map(Election::is_leader);
        if let Err(e) = self.metrics.write(path) {
            log::warn!("{e}");
        }
    }

    fn dry_pass(&mut self) -> std::result::Result<(i64, bool), PassError> {
        let (plan, revision) = self.engine.plan()?;
        if self.last_plan.as_ref() != Some(&plan) {
            print_plan(&plan, &self.engine, self.invocation.json);
        }
        let retry = plan.refusal.is_some();
        self.last_plan = Some(plan);
        Ok((revision, retry))
    }

    /// A standby keeps checking that it could take over, and asks for the leadership about
    /// every second (in `Election::tick`).
    fn stand_by(&mut self) {
        if Instant::now() >= self.next_standby_check {
            self.next_standby_check = Instant::now() + self.engine.settings.poll_interval;
            let leader = self
                .election
                .as_ref()
                .and_then(|e| e.holder())
                .unwrap_or("unknown")
                .to_string();
            self.write_metrics();
            match self.engine.plan() {
                Ok((plan, _)) => systemd::notify(&format!(
                    "STATUS=standby (leader: {leader}); {} changes pending for the leader",
                    plan.actions.len()
                )),
                Err(e) => {
                    log::warn!("standby: {e}");
                    systemd::notify(&format!("STATUS=standby (leader: {leader}); {e}"));
                }
            }
        }
        let until = self
            .election
            .as_ref()
            .map_or_else(Instant::now, Election::next_due);
        self.sleep(until.saturating_duration_since(Instant::now()));
    }

    fn reload(&mut self) {
        systemd::notify("RELOADING=1");
        let credentials = std::env::var_os("CREDENTIALS_DIRECTORY").map(std::path::PathBuf::from);
        let reloaded = RawConfig::load(&self.invocation.flags, credentials.as_deref())
            .and_then(|c| build_engine(&c, self.dry_run).map(|e| (c, e)));
        match reloaded {
            Ok((_, engine)) => {
                self.engine = engine;
                log::info!("configuration reloaded");
            }
            Err(e) => log::error!("configuration not reloaded, keeping the old one: {e}"),
        }
        systemd::notify("READY=1");
    }

    /// Blocks on the etcd watch until a change, the deadline, a signal, or the loss of the
    /// leadership; the election's claim is refreshed while waiting.
    fn wait_for_change(&mut self, revision: i64, deadline: Instant) {
        let watchdog = &mut self.watchdog;
        let election = &mut self.election;
        let mut keep_waiting = || {
            watchdog.tick();
            let leader = election.as_mut().is_none_or(|e| e.tick());
            leader && !stopping() && !RELOAD.load(Ordering::SeqCst) && Instant::now() < deadline
        };
        match self.engine.etcd.wait_for_change(
            &self.engine.settings.prefix,
            revision,
            &mut keep_waiting,
        ) {
            Ok(WaitOutcome::Changed) => log::debug!("change under {}", self.engine.settings.prefix),
            Ok(WaitOutcome::Resync) | Ok(WaitOutcome::Stopped) => {}
            Err(e) => {
                log::warn!("etcd watch failed: {e}");
                let left = deadline.saturating_duration_since(Instant::now());
                self.sleep(self.backoff.min(left));
            }
        }
    }

    /// Sleeps in short slices, waking for signals and keeping the watchdog fed.
    fn sleep(&mut self, duration: Duration) {
        let end = Instant::now() + duration;
        while !stopping() && !RELOAD.load(Ordering::SeqCst) {
            self.watchdog.tick();
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(Duration::from_millis(100)));
        }
    }
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

fn unix_time() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
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
