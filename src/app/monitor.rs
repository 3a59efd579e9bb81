//! `ufm-pkeyd monitor`, the daemon. The loop is thin and single-threaded: pass, then block on
//! an etcd watch until something changes under the prefix, the poll interval ends (a full pass
//! repairs drift made by hand in UFM), or a signal arrives.
//!
//! Signals only set flags (signal-hook); every blocking wait looks at them at least every
//! quarter second. SIGTERM and SIGINT finish the UFM request in flight and exit 0; SIGHUP
//! re-reads the configuration and runs a full pass.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::metrics::Metrics;
use super::{Output, engine, etcd_client, report, ufm_client};
use crate::cli::Invocation;
use crate::config::{self, Settings};
use crate::engine::election::Election;
use crate::engine::{Engine, Gate, PassError, PassReport};
use crate::error::{EXIT_OK, Error, Result};
use crate::net::etcd::WaitOutcome;
use crate::net::ufm::{UfmClient, UfmError};
use crate::plan::Plan;
use crate::systemd::{self, Watchdog};

static STOP: AtomicBool = AtomicBool::new(false);
static RELOAD: AtomicBool = AtomicBool::new(false);

/// The longest wait between retries while etcd or UFM is down.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Whether SIGTERM or SIGINT arrived.
pub(crate) fn stopping() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Installs the signal flags: SIGTERM and SIGINT stop, SIGHUP reloads.
pub(crate) fn register_signals() -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let failed = |e: std::io::Error| Error::failed(format!("cannot install signal handlers: {e}"));
    signal_hook::flag::register(SIGTERM, &STOP).map_err(failed)?;
    signal_hook::flag::register(SIGINT, &STOP).map_err(failed)?;
    signal_hook::flag::register(SIGHUP, &RELOAD).map_err(failed)?;
    Ok(())
}

/// `ufm-pkeyd monitor`: the daemon loop.
pub(crate) fn run_monitor(
    invocation: &Invocation,
    settings: &Settings,
    dry_run: bool,
) -> Result<i32> {
    register_signals()?;
    let engine = engine(settings, dry_run)?;
    check_ufm_credentials(engine.ufm())?;
    let election = settings
        .election
        .clone()
        .map(|election| Election::new(election, engine.etcd().clone()));
    log::info!(
        "monitoring {} ({} keyspace) every {} s at most; {} partitions owned{}{}",
        engine.settings().prefix,
        engine.etcd().api(),
        settings.poll_interval.as_secs_f64(),
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
        out: Output {
            json: invocation.json,
        },
        poll_interval: settings.poll_interval,
        metrics_file: settings.metrics_file.clone(),
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
    out: Output,
    poll_interval: Duration,
    metrics_file: Option<std::path::PathBuf>,
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
                self.engine
                    .new_term(self.election.as_ref().map(Election::fence));
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
            let mut gate = DaemonGate {
                watchdog: &mut self.watchdog,
                election: &mut self.election,
                bound: self.engine.ufm().request_bound(),
            };
            let result = self.engine.pass(&mut gate);
            self.record(result.as_ref().ok(), started.elapsed());
            result.map(|report| {
                if let (Some(why), Some(election)) = (&report.lost_leadership, &mut self.election) {
                    election.step_down(why);
                }
                systemd::notify(&format!(
                    "STATUS={}",
                    report::status_line(&report, self.engine.owned())
                ));
                (report.revision, !report.failures.is_empty())
            })
        };
        match outcome {
            Ok((revision, had_failures)) => {
                self.first_pass = false;
                let next_full_pass = if had_failures {
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                    Instant::now() + self.backoff.min(self.poll_interval)
                } else {
                    self.backoff = Duration::from_secs(1);
                    Instant::now() + self.poll_interval
                };
                self.wait_for_change(revision, next_full_pass);
            }
            Err(PassError::LostLeadership(why)) => {
                if let Some(election) = &mut self.election {
                    election.step_down(&why);
                }
            }
            Err(e) => {
                if self.first_pass && e.is_auth() {
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
                    m.last_success_seconds = Some(crate::app::metrics::unix_time());
                } else {
                    m.passes_failed += 1;
                }
                m.owned = self.engine.owned().len();
                m.unmanaged = plan.unmanaged.len();
                m.invalid = plan.invalid.len();
                m.pending = report.failures.len()
                    + report.skipped
                    + plan.refused_deletes.len()
                    + report.rejected.len();
                m.guids_rejected = report.rejected.len();
                m.state_unsaved = self.engine.record_unsaved();
                m.ownership_mismatch = plan.locked.is_some();
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
        let Some(path) = &self.metrics_file else {
            return;
        };
        self.metrics.etcd = self.engine.etcd().request_counts();
        self.metrics.ufm = self.engine.ufm().request_counts();
        self.metrics.leader = self.election.as_ref().map(Election::is_leader);
        if let Err(e) = self.metrics.write(path) {
            log::warn!("{e}");
        }
    }

    fn dry_pass(&mut self) -> std::result::Result<(i64, bool), PassError> {
        let (plan, revision) = self.engine.plan()?;
        if self.last_plan.as_ref() != Some(&plan) {
            let printed = if self.out.json {
                self.out
                    .print_json(&report::plan_json(&plan, self.engine.owned()))
            } else {
                self.out.print(&report::plan_text(&plan))
            };
            if let Err(e) = printed {
                log::warn!("{e}");
            }
        }
        let retry = plan.refusal.is_some();
        self.last_plan = Some(plan);
        Ok((revision, retry))
    }

    /// A standby checks every poll interval that UFM answers (so that it could take over),
    /// and asks for the leadership about every second (in `Election::tick`, a read of the
    /// election key). It reads nothing else: at rest it costs etcd no Raft proposal.
    fn stand_by(&mut self) {
        if Instant::now() >= self.next_standby_check {
            self.next_standby_check = Instant::now() + self.poll_interval;
            let leader = self
                .election
                .as_ref()
                .and_then(|e| e.holder())
                .unwrap_or("unknown")
                .to_string();
            self.write_metrics();
            match self.engine.ufm().version() {
                Ok(version) => systemd::notify(&format!(
                    "STATUS=standby (leader: {leader}); UFM {version} answers"
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

    /// SIGHUP: reads every configuration source again and applies it all: etcd and UFM
    /// settings, the prefix, policy and guard, the ownership record's location, the poll
    /// interval, the metrics file, leader election and debug logging. A configuration that does
    /// not load changes nothing.
    fn reload(&mut self) {
        systemd::notify("RELOADING=1");
        let credentials = std::env::var_os("CREDENTIALS_DIRECTORY").map(std::path::PathBuf::from);
        let reloaded = config::load(&self.invocation.flags, credentials.as_deref())
            .and_then(|c| self.apply_settings(&c.settings));
        match reloaded {
            Ok(()) => log::info!("configuration reloaded"),
            Err(e) => log::error!("configuration not reloaded, keeping the old one: {e}"),
        }
        systemd::notify("READY=1");
    }

    fn apply_settings(&mut self, settings: &Settings) -> Result<()> {
        let etcd = etcd_client(settings)?;
        let ufm = ufm_client(settings)?;
        let election_changed =
            settings.election.as_ref() != self.election.as_ref().map(Election::settings);
        self.engine
            .reconfigure(etcd, ufm, settings.engine.clone())
            .map_err(Error::Usage)?;
        if election_changed {
            if let Some(election) = &mut self.election {
                election.resign();
            }
            self.election = settings
                .election
                .clone()
                .map(|e| Election::new(e, self.engine.etcd().clone()));
            self.was_leader = false;
        }
        self.poll_interval = settings.poll_interval;
        self.metrics_file = settings.metrics_file.clone();
        crate::logging::set_debug(settings.debug);
        Ok(())
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
        let prefix = &self.engine.settings().prefix;
        match self
            .engine
            .etcd()
            .wait_for_change(prefix, revision, &mut keep_waiting)
        {
            Ok(WaitOutcome::Changed) => log::debug!("change under {prefix}"),
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

/// Asked before each UFM write of a pass: keeps systemd's watchdog fed through a long sync,
/// stops on SIGTERM, and with leader election lets a request go only while the claim is sure
/// to outlast it.
struct DaemonGate<'a> {
    watchdog: &'a mut Watchdog,
    election: &'a mut Option<Election>,
    /// The longest one UFM request may take.
    bound: Duration,
}

impl Gate for DaemonGate<'_> {
    fn before_write(&mut self) -> std::result::Result<(), String> {
        self.watchdog.tick();
        if stopping() {
            return Err("stopping (SIGTERM or SIGINT)".to_string());
        }
        match self.election {
            Some(election) => election.may_write(self.bound),
            None => Ok(()),
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
