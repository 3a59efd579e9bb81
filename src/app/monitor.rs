//! `ufm-pkeyd monitor`, the daemon. The loop is thin and single-threaded: it asks the
//! [`Schedule`] what to do next (a full or targeted pass, a drift check, a probe of a service
//! that does not answer, or a wait on etcd's watch) and does it.
//!
//! Signals only set flags (signal-hook); every blocking wait looks at them at least every
//! quarter second. SIGTERM and SIGINT finish the UFM request in flight and exit 0; SIGHUP
//! re-reads the configuration and runs a full pass.

mod heartbeat;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::metrics::Metrics;
use super::schedule::{Next, Schedule};
use super::view::View;
use super::{Output, engine, etcd_client, report, ufm_client};
use crate::cli::Invocation;
use crate::config::{self, Settings};
use crate::engine::election::Election;
use crate::engine::{Drift, Engine, Gate, MOVED, PassError, PassReport, Scope};
use crate::error::{EXIT_OK, Error, Result};
use crate::net::etcd::{EtcdClient, EtcdError, Watched};
use crate::net::ufm::{UfmClient, UfmError};
use crate::plan::Plan;
use crate::systemd::{self, Watchdog};
use heartbeat::Heartbeat;

static STOP: AtomicBool = AtomicBool::new(false);
static RELOAD: AtomicBool = AtomicBool::new(false);

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
    let mut engine = engine(settings, dry_run)?;
    engine.track_drift();
    check_ufm_credentials(engine.ufm())?;
    let election = settings
        .election
        .clone()
        .map(|election| Election::new(election, engine.etcd().clone()));
    log::info!(
        "monitoring {} ({} keyspace): changes as etcd reports them, UFM checked for changes made by hand every {} s, everything read again every {} s; {} owned{}{}",
        engine.settings().prefix,
        engine.etcd().api(),
        settings.poll_interval.as_secs_f64(),
        settings.resync_interval.as_secs_f64(),
        crate::text::count(engine.owned().len(), "partition"),
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
    let now = Instant::now();
    let mut monitor = Monitor {
        invocation,
        out: Output {
            json: invocation.json,
        },
        poll_interval: settings.poll_interval,
        resync_interval: settings.resync_interval,
        metrics_file: settings.metrics_file.clone(),
        engine,
        dry_run,
        election,
        watchdog: Watchdog::from_env(),
        first_pass: true,
        last_plan: None,
        next_standby_check: now,
        was_leader: false,
        metrics: Metrics::default(),
        schedule: Schedule::new(settings.poll_interval, settings.resync_interval, now),
        watch_from: None,
        watch_ended: None,
        view: View::default(),
        quorum_checked: None,
        other_writer: OtherWriter::default(),
        last_full_reason: None,
        heartbeat: Heartbeat::new(dry_run),
    };
    // Before READY=1: a `status` right after `systemctl start` sees this daemon, not the last.
    monitor.write_status();
    systemd::notify("READY=1");
    let result = monitor.run();
    let clean = !monitor.engine.writes_may_land();
    if let Some(election) = &mut monitor.election {
        election.resign(clean);
    }
    systemd::notify("STOPPING=1");
    if result.is_ok() {
        monitor.heartbeat_stopped();
    }
    log::info!(
        "stopping: {} owned",
        crate::text::count(monitor.engine.owned().len(), "partition")
    );
    result
}

/// The daemon's state between iterations.
struct Monitor<'a> {
    invocation: &'a Invocation,
    out: Output,
    poll_interval: Duration,
    resync_interval: Duration,
    metrics_file: Option<std::path::PathBuf>,
    engine: Engine,
    dry_run: bool,
    election: Option<Election>,
    watchdog: Watchdog,
    first_pass: bool,
    /// The last plan printed in dry-run mode, so an unchanged plan is not printed again.
    last_plan: Option<Plan>,
    /// When a standby next checks that it could take over (reads etcd and UFM).
    next_standby_check: Instant,
    /// Whether this instance led in the previous iteration.
    was_leader: bool,
    metrics: Metrics,
    /// What to do next (pure rules, in `schedule`).
    schedule: Schedule,
    /// The revision (v3) or index (v2) the watch goes on from; `None` until a full pass has
    /// read etcd, and again after a gap in the watch.
    watch_from: Option<i64>,
    /// When a watch stream was last closed early by etcd or a proxy: it is not reopened
    /// sooner than a second later.
    watch_ended: Option<Instant>,
    /// What the whole fabric looks like, and what of it was logged.
    view: View,
    /// When the etcd member in use last proved it is part of a quorum.
    quorum_checked: Option<Instant>,
    /// Whether UFM keeps being changed, by someone else, into what etcd says.
    other_writer: OtherWriter,
    /// Why the last full pass ran, so that a reason repeated every poll interval (a UFM
    /// without `last_updated`) is logged once.
    last_full_reason: Option<String>,
    /// What the status file says beyond the metrics (in `heartbeat`).
    heartbeat: Heartbeat,
}

/// The pause before trying again credentials that were refused after they had worked.
const AUTH_RETRY: Duration = Duration::from_secs(60);

/// How long the daemon sleeps at most between looks at its signals and its watchdog.
const TICK: Duration = Duration::from_millis(100);

/// A dry run plans everything again on each change, at most this often.
const DRY_RUN_GAP: Duration = Duration::from_secs(1);

/// Another writer syncing the same partitions (a second ufm-pkeyd without leader election, on
/// its own state file): UFM's `last_updated` moves just before this instance's writes (both
/// act on the same change at once), or moves while this instance wrote nothing and the full
/// pass that follows finds UFM already as etcd wants it. Said once an hour when seen
/// [`OTHER_WRITER_SEEN`] times within an hour; it costs no request.
#[derive(Debug, Default)]
struct OtherWriter {
    /// The last drift check found `last_updated` moved: the next full pass tells.
    moved: bool,
    /// When a full pass after such a move found nothing to do.
    mirrored: Vec<Instant>,
    warned: Option<Instant>,
}

const OTHER_WRITER_SEEN: usize = 3;
const HOUR: Duration = Duration::from_secs(3600);

impl OtherWriter {
    /// After a full pass: one that followed a move and found nothing to do counts.
    fn full_pass(&mut self, report: &PassReport, now: Instant) {
        if std::mem::take(&mut self.moved) && report.plan.actions.is_empty() {
            self.seen(now);
        }
    }

    /// After any pass: a move just before its writes counts.
    fn pass(&mut self, report: &PassReport, now: Instant) {
        if report.moved_before_writes {
            self.seen(now);
        }
    }

    fn seen(&mut self, now: Instant) {
        self.mirrored.retain(|t| now.duration_since(*t) < HOUR);
        self.mirrored.push(now);
        let due = self.warned.is_none_or(|t| now.duration_since(t) >= HOUR);
        if self.mirrored.len() >= OTHER_WRITER_SEEN && due {
            self.warned = Some(now);
            log::warn!(
                "UFM was changed {} times within an hour by someone else, each time into what etcd says: is a second ufm-pkeyd, on its own state file and without leader election, syncing the same partitions? Two such daemons each delete only what they own and report the other's partitions as unmanaged: stop one, or run both with leader-election",
                self.mirrored.len()
            );
        }
    }
}

/// With several etcd members, how often the member in use is asked whether it is part of a
/// quorum (a watch on one cut off from its peers would wait in silence).
const QUORUM_CHECK: Duration = Duration::from_secs(3);

/// The shortest time between two watch requests after etcd (or a proxy) closed one early.
const WATCH_REOPEN: Duration = Duration::from_secs(1);

impl Monitor<'_> {
    fn run(&mut self) -> Result<i32> {
        while !stopping() {
            if RELOAD.swap(false, Ordering::SeqCst) {
                self.reload();
            }
            self.watchdog.tick();
            let leader = self.election.as_mut().is_none_or(|e| e.tick());
            if leader && !self.was_leader {
                self.start_leading();
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

    /// A new term (or the start): the record is read again and everything is read in full.
    fn start_leading(&mut self) {
        self.engine
            .new_term(self.election.as_ref().map(Election::fence));
        let schedule = Schedule::new(self.poll_interval, self.resync_interval, Instant::now());
        self.schedule = if self.dry_run {
            schedule.with_min_gap(DRY_RUN_GAP)
        } else {
            schedule
        };
        self.watch_from = None;
    }

    /// Does the next thing on the agenda.
    fn lead(&mut self) -> Result<()> {
        let now = Instant::now();
        // A new leader reads nothing before an old leader's last request is over: a plan
        // made from a read taken meanwhile could undo what that request does.
        let bound = self.engine.ufm().request_bound();
        if let Some(until) = self
            .election
            .as_ref()
            .and_then(|e| e.first_write_at(bound))
            .filter(|t| now < *t)
        {
            log::debug!(
                "new leader: first read and write in {:.1} s, once the old leader's last request is over",
                until.saturating_duration_since(now).as_secs_f64()
            );
            self.sleep(until.saturating_duration_since(now));
            return Ok(());
        }
        let (due, next_due) = self.engine.due(now);
        match self.schedule.next(now, due, next_due) {
            Next::ProbeEtcd => self.probe_etcd(),
            Next::ProbeUfm => self.probe_ufm(),
            Next::FullPass(why) => return self.full_pass(&why),
            Next::TargetedPass => return self.targeted_pass(),
            Next::CheckDrift => self.check_drift(),
            Next::Watch(until) => self.watch(until),
            Next::Sleep(until) => self.sleep(until.saturating_duration_since(now)),
        }
        Ok(())
    }

    /// A pass over all of etcd's prefix and UFM's list.
    fn full_pass(&mut self, why: &str) -> Result<()> {
        let routine = why == "start" || why == "resync-interval";
        if routine || self.last_full_reason.as_deref() == Some(why) {
            log::debug!("full pass: {why}");
        } else {
            log::info!("full pass: {why}");
        }
        self.last_full_reason = Some(why.to_string());
        self.metrics.passes_full += 1;
        if self.dry_run {
            return match self.dry_pass() {
                Ok(revision) => {
                    self.first_pass = false;
                    self.full_read(revision);
                    Ok(())
                }
                Err(e) => self.pass_failed(e, Some(why)),
            };
        }
        let started = Instant::now();
        match self.run_pass(Scope::Full) {
            Ok(mut report) => {
                self.view.merge(&mut report);
                self.record(Some(&report), started.elapsed());
                if report.ufm_down.is_none() {
                    self.full_read(report.revision);
                } else {
                    self.schedule.want_full(why.to_string());
                }
                self.other_writer.full_pass(&report, Instant::now());
                self.passed(report);
                Ok(())
            }
            Err(e) => {
                self.record(None, started.elapsed());
                self.pass_failed(e, Some(why))
            }
        }
    }

    /// A full pass read etcd at `revision`: the watch goes on from there.
    fn full_read(&mut self, revision: i64) {
        self.schedule.full_done(Instant::now());
        self.watch_from = Some(self.watch_from.map_or(revision, |from| from.max(revision)));
    }

    /// A pass over the partitions of the work set that are due (new changes first).
    fn targeted_pass(&mut self) -> Result<()> {
        self.metrics.passes_targeted += 1;
        let started = Instant::now();
        match self.run_pass(Scope::Due) {
            Ok(mut report) => {
                self.view.merge(&mut report);
                self.record(Some(&report), started.elapsed());
                self.passed(report);
                Ok(())
            }
            Err(e) => {
                self.record(None, started.elapsed());
                self.pass_failed(e, None)
            }
        }
    }

    /// Runs one pass through the gate.
    fn run_pass(&mut self, scope: Scope) -> std::result::Result<PassReport, PassError> {
        let etcd = self.engine.etcd().clone();
        let mut gate = DaemonGate {
            watchdog: &mut self.watchdog,
            election: &mut self.election,
            bound: self.engine.ufm().request_bound(),
            slice: Slice {
                etcd: &etcd,
                prefix: self.engine.settings().prefix.clone(),
                watched: self.watch_from,
                since: Instant::now(),
            },
        };
        self.engine.pass(&mut gate, scope)
    }

    /// After a pass that read both sides: the latency of what a read showed done, what waits,
    /// logs and status.
    fn passed(&mut self, report: PassReport) {
        self.first_pass = false;
        if let Some(why) = &report.lost_leadership {
            self.step_down(why);
            return;
        }
        if let Some(why) = &report.want_full {
            self.schedule.want_full(why.clone());
        }
        if report.made_way {
            self.schedule.made_way();
        }
        match (&report.ufm_down, &report.stopped) {
            (Some(e), _) => self.ufm_unreachable(e, Instant::now()),
            // The gate closed (a leadership that etcd did not confirm in time): what was not
            // sent waits a pause, not a tight loop of passes.
            (None, Some(why)) if !stopping() => {
                let pause = self.schedule.failed(Instant::now());
                log::warn!("{why}; trying again in {} s", pause.as_secs());
            }
            (None, _) => self.schedule.succeeded(),
        }
        for (_, waited) in &report.done {
            self.metrics.change_latency.observe(waited.as_secs_f64());
        }
        self.other_writer.pass(&report, Instant::now());
        self.view.log(&report);
        report::log_pass(&report);
        self.write_metrics();
        systemd::notify(&format!(
            "STATUS={}",
            report::status_line(&report, self.engine.owned())
        ));
    }

    /// After a pass that could not read etcd or UFM (nothing was changed): an outage is
    /// probed every second, any other failure waits a doubling pause. Changes wait.
    fn pass_failed(&mut self, e: PassError, full: Option<&str>) -> Result<()> {
        if let PassError::LostLeadership(why) = &e {
            self.step_down(why);
            return Ok(());
        }
        self.heartbeat_failed(&e.to_string());
        if self.first_pass && e.is_auth() {
            // Wrong credentials from the start: exit 5, which the unit does not restart.
            self.write_status();
            return Err(Error::from(e));
        }
        if let Some(why) = full {
            self.schedule.want_full(why.to_string());
        }
        let now = Instant::now();
        match &e {
            PassError::Etcd(EtcdError::Unreachable(m)) => self.etcd_unreachable(m, now),
            PassError::Ufm(u) if u.is_no_answer() => self.ufm_unreachable(&u.to_string(), now),
            _ if e.is_auth() => {
                // Credentials that worked were refused (changed, expired): a minute between
                // tries, so that the daemon does not lock the account.
                let pause = self.schedule.failed_for(now, AUTH_RETRY);
                log::error!(
                    "{e}; nothing changed in UFM; trying again in {} s (fix the credentials and reload)",
                    pause.as_secs()
                );
                systemd::notify(&format!("STATUS=credentials refused: {e}"));
            }
            _ => {
                let pause = self.schedule.failed(now);
                log::error!(
                    "{e}; nothing changed in UFM; trying again in {} s",
                    pause.as_secs()
                );
                systemd::notify(&format!("STATUS=retrying: {e}"));
            }
        }
        self.write_status();
        Ok(())
    }

    fn step_down(&mut self, why: &str) {
        if let Some(election) = &mut self.election {
            election.step_down(why, !self.engine.writes_may_land());
        }
    }

    /// etcd stopped answering: said once per outage; no UFM change until it answers.
    fn etcd_unreachable(&mut self, e: &str, now: Instant) {
        let new = self.schedule.etcd_down.is_none();
        if new {
            log::error!("{e}; nothing is changed in UFM until etcd answers (asked every second)");
            systemd::notify(&format!("STATUS=etcd unreachable: {e}"));
        }
        self.schedule.etcd_unreachable(now);
        if new {
            self.heartbeat_failed(e);
            self.write_status();
        }
    }

    /// UFM stopped answering: said once per outage; the watch goes on collecting changes.
    fn ufm_unreachable(&mut self, e: &str, now: Instant) {
        let new = self.schedule.ufm_down.is_none();
        if new {
            log::error!(
                "{e}; changes wait until UFM answers (asked every second), then are applied at once"
            );
            systemd::notify(&format!("STATUS=UFM unreachable: {e}"));
        }
        self.schedule.ufm_unreachable(now);
        if new {
            self.heartbeat_failed(e);
            self.write_status();
        }
    }

    /// One cheap request to etcd while it does not answer.
    fn probe_etcd(&mut self) {
        match self.engine.etcd().version() {
            Ok(_) => {
                if let Some(down) = self.schedule.etcd_back() {
                    log::info!("etcd reachable again after {} s", down.as_secs());
                }
            }
            Err(e) => {
                log::debug!("etcd still unreachable: {e}");
                self.schedule.probe_failed(Instant::now());
            }
        }
    }

    /// One cheap request to UFM while it does not answer: any answer but "overloaded" or
    /// "restarting" will do.
    fn probe_ufm(&mut self) {
        match self.engine.ufm().version() {
            Err(e) if e.is_no_answer() => {
                log::debug!("UFM still unreachable: {e}");
                self.schedule.probe_failed(Instant::now());
            }
            _ => {
                if let Some(down) = self.schedule.ufm_back() {
                    log::info!(
                        "UFM reachable again after {} s; applying the {} changes that waited",
                        down.as_secs(),
                        self.engine.pending_len()
                    );
                }
            }
        }
    }

    /// Every poll interval: did someone change UFM by hand? One small request. And did an
    /// operator leave a request (`ufm-pkeyd state --confirm-deletions`)? A look beside the
    /// record; a full pass carries it out.
    fn check_drift(&mut self) {
        if self.engine.request_waiting() {
            self.schedule
                .want_full("an operator's request waits (ufm-pkeyd state)".to_string());
        }
        match self.engine.check_drift() {
            Ok(Drift::Unchanged) => {
                self.metrics.drift_checks.unchanged += 1;
                self.heartbeat_checked();
            }
            Ok(Drift::Moved) => {
                self.metrics.drift_checks.changed += 1;
                self.heartbeat_checked();
                self.schedule.want_full(MOVED.to_string());
                self.other_writer.moved = true;
            }
            Ok(Drift::FullPass(why)) => {
                self.metrics.drift_checks.changed += 1;
                self.heartbeat_checked();
                self.schedule.want_full(why);
            }
            Err(e) => {
                self.metrics.drift_checks.failed += 1;
                self.ufm_unreachable(&e.to_string(), Instant::now());
            }
        }
        self.write_metrics();
    }

    /// Updates the metrics after a pass (`None`: it could not read etcd or UFM) and writes
    /// them when a metrics file is configured, and the status file.
    fn record(&mut self, report: Option<&PassReport>, duration: Duration) {
        let m = &mut self.metrics;
        m.last_pass_duration_seconds = duration.as_secs_f64();
        match report {
            Some(report) => {
                let (owned, unsaved) = (self.engine.owned().len(), self.engine.record_unsaved());
                m.pass(report, owned, unsaved);
                self.heartbeat_pass(report);
            }
            None => m.passes_failed += 1,
        }
        self.write_metrics();
    }

    fn write_metrics(&mut self) {
        self.write_status();
        let Some(path) = &self.metrics_file else {
            return;
        };
        self.metrics.etcd = self.engine.etcd().request_counts();
        self.metrics.ufm = self.engine.ufm().request_counts();
        self.metrics.ufm_retries = self.engine.retried();
        self.metrics.oldest_pending_seconds = self
            .engine
            .pending()
            .map(|(_, _, since)| since.elapsed().as_secs_f64())
            .fold(0.0, f64::max);
        self.metrics.leader = self.election.as_ref().map(Election::is_leader);
        if let Err(e) = self.metrics.write(path) {
            log::warn!("{e}");
        }
    }

    /// Plans the whole prefix and prints the plan when it changed; returns etcd's revision.
    fn dry_pass(&mut self) -> std::result::Result<i64, PassError> {
        let (plan, revision) = self.engine.plan()?;
        if self.last_plan.as_ref() != Some(&plan) {
            let printed = if self.out.json {
                self.out
                    .print_json_line(&report::plan_json(&plan, self.engine.owned()))
            } else {
                self.out.print(&report::plan_text(&plan))
            };
            if let Err(e) = printed {
                log::warn!("{e}");
            }
        }
        self.last_plan = Some(plan);
        Ok(revision)
    }

    /// A standby checks every poll interval that UFM answers (so that it could take over) and
    /// keeps its copy of the shared ownership record up to date, and asks for the leadership
    /// twice a second (in `Election::tick`, a read of the election key). Every read comes from
    /// the member's own store: at rest a standby costs etcd no Raft proposal.
    fn stand_by(&mut self) {
        if Instant::now() >= self.next_standby_check {
            self.next_standby_check = Instant::now() + self.poll_interval;
            let leader = self
                .election
                .as_ref()
                .and_then(|e| e.holder())
                .unwrap_or("unknown")
                .to_string();
            let answer = self.engine.ufm().version();
            self.engine.copy_shared_record();
            self.heartbeat_standby(answer.as_ref().err().map(ToString::to_string).as_deref());
            self.write_metrics();
            match answer {
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
    /// settings, the prefix, policy and guard, the ownership record's location, the poll and
    /// resync intervals, the metrics file, leader election and debug logging; then reads
    /// everything again. A configuration that does not load changes nothing.
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
                election.resign(!self.engine.writes_may_land());
            }
            self.election = settings
                .election
                .clone()
                .map(|e| Election::new(e, self.engine.etcd().clone()));
            self.was_leader = false;
        }
        self.poll_interval = settings.poll_interval;
        self.resync_interval = settings.resync_interval;
        self.schedule
            .reconfigure(self.poll_interval, self.resync_interval, Instant::now());
        // The prefix or the etcd may have changed: the watch starts again after a full read.
        self.watch_from = None;
        self.metrics_file = settings.metrics_file.clone();
        crate::logging::set_debug(settings.debug);
        Ok(())
    }

    /// Blocks on the etcd watch until a change, `until`, a signal, or the loss of the
    /// leadership; the election's claim is refreshed while waiting. Without a revision to go
    /// on from (a full pass is due) it only waits.
    fn watch(&mut self, until: Instant) {
        let now = Instant::now();
        let Some(from) = self.watch_from else {
            self.sleep(until.saturating_duration_since(now));
            return;
        };
        if let Some(reopen) = self
            .watch_ended
            .map(|t| t + WATCH_REOPEN)
            .filter(|t| now < *t)
        {
            self.sleep(reopen.min(until).saturating_duration_since(now));
            return;
        }
        let prefix = self.engine.settings().prefix.clone();
        let until = match self.member_in_quorum(&prefix, now) {
            Ok(next_check) => next_check.min(until),
            Err(e) => return self.etcd_unreachable(&e.to_string(), now),
        };
        let watchdog = &mut self.watchdog;
        let election = &mut self.election;
        let mut keep_waiting = || {
            watchdog.tick();
            let leader = election.as_mut().is_none_or(|e| e.tick());
            leader && !stopping() && !RELOAD.load(Ordering::SeqCst) && Instant::now() < until
        };
        let watched = self.engine.etcd().watch(&prefix, from, &mut keep_waiting);
        let now = Instant::now();
        match watched {
            Ok(Watched::Changes { changes, revision }) => {
                log::debug!("watch: {} changes under {prefix}", changes.len());
                self.watch_from = Some(revision);
                if self.dry_run {
                    // A dry run plans the whole prefix: its output is the whole plan.
                    self.schedule.want_full(format!("changes under {prefix}"));
                } else if let Some(why) = self.engine.changes(&changes, now) {
                    self.schedule.want_full(why);
                }
            }
            Ok(Watched::Stopped { revision }) => self.watch_from = Some(revision),
            Ok(Watched::Ended { revision }) => {
                log::debug!("etcd closed the watch stream; reopening it");
                self.watch_from = Some(revision);
                self.watch_ended = Some(now);
            }
            Ok(Watched::Gap(why)) => {
                log::info!("{why}: reading all of {prefix} again");
                self.watch_from = None;
                self.schedule.want_full(why);
            }
            Err(EtcdError::Unreachable(m)) => self.etcd_unreachable(&m, now),
            Err(e) => {
                log::warn!("etcd watch failed: {e}; reading all of {prefix} again");
                self.watch_from = None;
                self.schedule.want_full(format!("the watch failed: {e}"));
            }
        }
    }

    /// With several etcd members, a watch on a member cut off from its peers would wait in
    /// silence while the others go on: every [`QUORUM_CHECK`] the member is asked one
    /// linearizable question, and one that cannot answer is left for the next (every copy of
    /// the client follows). Returns how long the next watch may last before the next check.
    fn member_in_quorum(
        &mut self,
        prefix: &str,
        now: Instant,
    ) -> std::result::Result<Instant, EtcdError> {
        let etcd = self.engine.etcd();
        if etcd.endpoint_count() < 2 {
            return Ok(now + self.poll_interval.max(QUORUM_CHECK));
        }
        if self.quorum_checked.is_none_or(|t| now >= t + QUORUM_CHECK) {
            etcd.check_quorum(prefix)?;
            self.quorum_checked = Some(now);
        }
        Ok(now + QUORUM_CHECK)
    }

    /// Sleeps in short slices, waking for signals and keeping the watchdog fed.
    ///
    /// A leader's claim is refreshed meanwhile (a sleep may outlast two thirds of the TTL:
    /// the gap before a full pass is 5 s), and a leader that lost it stops sleeping.
    fn sleep(&mut self, duration: Duration) {
        let end = Instant::now() + duration;
        let leading = self.was_leader;
        while !stopping() && !RELOAD.load(Ordering::SeqCst) {
            self.watchdog.tick();
            if leading && self.election.as_mut().is_some_and(|e| !e.tick()) {
                break;
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(TICK));
        }
    }
}

/// Asked before each UFM write of a pass: keeps systemd's watchdog fed through a long sync,
/// stops on SIGTERM, and with leader election lets a request go only once etcd has shown the
/// claim (and a new leader's first write only once the old leader's last request is over);
/// before each partition, makes way for newer changes (the daemon's slices).
struct DaemonGate<'a> {
    watchdog: &'a mut Watchdog,
    election: &'a mut Option<Election>,
    /// The longest one UFM request may take.
    bound: Duration,
    slice: Slice<'a>,
}

/// How long a pass writes before it asks whether newer changes wait: with a slow UFM (1–2 s
/// per write), a change written meanwhile then waits for about one write, not for the whole
/// pass.
const SLICE: Duration = Duration::from_secs(1);

/// The daemon's slices of writes: after [`SLICE`] of writes, a pass makes way for newer
/// changes if etcd moved on past what the watch has seen (one small read of where etcd
/// stands; no read at all while writes are quick).
struct Slice<'a> {
    etcd: &'a EtcdClient,
    prefix: String,
    /// The revision or index the watch has seen; `None`: no watch yet (a full pass).
    watched: Option<i64>,
    since: Instant,
}

impl Slice<'_> {
    fn make_way(&mut self) -> bool {
        if self.since.elapsed() < SLICE {
            return false;
        }
        self.since = Instant::now();
        let Some(watched) = self.watched else {
            return false;
        };
        match self.etcd.position(&self.prefix) {
            Ok(now) => now.revision > watched,
            Err(e) => {
                log::debug!("where etcd stands could not be read: {e}");
                false
            }
        }
    }
}

impl Gate for DaemonGate<'_> {
    fn before_write(&mut self) -> std::result::Result<(), String> {
        self.watchdog.tick();
        if stopping() {
            return Err("stopping (SIGTERM or SIGINT)".to_string());
        }
        let Some(election) = self.election.as_mut() else {
            return Ok(());
        };
        // A new leader waits until an old leader's last request can no longer reach UFM.
        while let Some(until) = election
            .first_write_at(self.bound)
            .filter(|t| Instant::now() < *t)
        {
            std::thread::sleep(until.saturating_duration_since(Instant::now()).min(TICK));
            self.watchdog.tick();
            if stopping() {
                return Err("stopping (SIGTERM or SIGINT)".to_string());
            }
            if !election.tick() {
                return Err("this instance does not lead".to_string());
            }
        }
        election.may_write()
    }

    fn make_way(&mut self) -> bool {
        self.slice.make_way()
    }
}

/// Fails fast on wrong UFM credentials (exit 5) or a wrong URL or auth mode (exit 2): the
/// unit does not restart on either, an operator reads why. Credentials count as refused only
/// when a second try, a few seconds later, is refused too: a UFM in the middle of a restart or
/// an HA fail-over may refuse once. An unreachable UFM, or one that serves web pages instead
/// of its API, is only a warning: the loop retries.
fn check_ufm_credentials(ufm: &UfmClient) -> Result<()> {
    const CONFIRM_AFTER: Duration = Duration::from_secs(3);
    let mut answer = ufm.version();
    if let Err(UfmError::Auth(m)) = &answer {
        log::warn!(
            "{m}; asking again in {} s before giving up",
            CONFIRM_AFTER.as_secs()
        );
        let until = Instant::now() + CONFIRM_AFTER;
        while Instant::now() < until && !stopping() {
            std::thread::sleep(TICK);
        }
        answer = ufm.version();
    }
    match answer {
        Ok(version) => {
            log::info!("UFM {version}: connected");
            Ok(())
        }
        Err(UfmError::Auth(m)) => Err(Error::Auth(m)),
        // A wrong URL, UFM version or auth mode is a configuration error: retrying will not
        // help, and the unit does not restart on exit 2.
        Err(e @ UfmError::NoRoute { .. }) => Err(Error::Usage(e.to_string())),
        Err(e) => {
            log::warn!("{e}; will retry");
            Ok(())
        }
    }
}
