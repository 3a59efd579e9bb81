//! The sync engine: one level-triggered pass reads both sides into an [`Evidence`] (all of
//! them, or some partitions: [`evidence`]), plans (pure, in `plan`), records ownership of what
//! it is about to touch ([`ownership`]), applies ([`apply`]), reads back what it wrote, and
//! keeps every change that no read shows done in the work set ([`work`]) until one does. The
//! daemon loop around it lives in `app::monitor`; `ufm-pkeyd sync` runs one pass. Leader
//! election ([`election`]) decides which instance of an HA pair may run passes; [`removals`]
//! tells job ends from accidents for the deletion guard; [`stamp`] follows UFM's
//! `last_updated` to notice changes made by others.
//!
//! What the engine promises (ufm-pkeyd(8), GUARANTEES):
//! - a partition is deleted only if this instance owns it, its key is gone from a linearizable
//!   read, the key left in a way pcocc removes keys (or the count guard agrees, or the
//!   operator confirmed), and the ownership record belongs to this etcd and UFM;
//! - a partition is recorded as owned before the request that creates or adopts it, and stays
//!   owned until a read shows it gone;
//! - a remove never takes a partition's last member unless the partition is meant to go;
//! - a change is done when a read shows UFM holding it, not when UFM answered 2xx: until then
//!   it stays in the work set, and is tried again.

pub(crate) mod apply;
pub(crate) mod election;
mod evidence;
pub(crate) mod ownership;
pub(crate) mod removals;
mod stamp;
mod work;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::model::{PKey, Partition};
use crate::net::etcd::{Change, EtcdClient, EtcdError};
use crate::net::ufm::{UfmClient, UfmError};
use crate::plan::{self, Action, DeleteGuard, Plan, Policy, Removal};
pub(crate) use apply::{Counts, Gate, Rejected, UfmOps};
use evidence::Sides;
pub(crate) use evidence::{EtcdReads, Evidence};
pub(crate) use ownership::RecordView;
use ownership::{Ownership, Place, SaveError, TermError};
pub(crate) use stamp::{Drift, MOVED};
use stamp::{Read, Stamp};
pub(crate) use work::Why;
use work::{Outcome, Work};

/// What the engine syncs and how.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// The etcd prefix holding one key per partition, ending with `/`.
    pub prefix: String,
    /// The local state file (with leader election: this host's copy of the shared record).
    pub state_file: PathBuf,
    /// With leader election, ownership is shared through this etcd key.
    pub state_key: Option<String>,
    pub guard: DeleteGuard,
    pub policy: Policy,
    /// How long after a UFM request's own time bound a write whose outcome is unknown may
    /// still be applied: its partition takes no write until then.
    pub late_write_margin: Duration,
}

impl Settings {
    /// Where the ownership record lives.
    pub(crate) fn place(&self) -> Place {
        Place {
            state_file: self.state_file.clone(),
            state_key: self.state_key.clone(),
        }
    }
}

/// What a pass covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Every key under the prefix (one read) and every partition in UFM (one list).
    Full,
    /// The partitions of the work set that are due (new changes first), each read on its own:
    /// a change costs what it changes, not what the fabric holds.
    Due,
}

/// At most this many partitions in one pass over the work set; the rest wait for the next.
const DUE_PER_PASS: usize = 64;

/// A watch batch touching more partitions than this is read as a whole (one etcd and one UFM
/// request) rather than partition by partition (two requests each).
const CHANGES_FOR_A_FULL_PASS: usize = 64;

/// What stopped a pass before it could plan.
#[derive(Debug)]
pub(crate) enum PassError {
    /// etcd could not be read: nothing was changed in UFM.
    Etcd(EtcdError),
    /// UFM's partitions could not be read: nothing was changed.
    Ufm(UfmError),
    /// The shared ownership record could not be read or written: nothing was changed.
    Ownership(String),
    /// Another instance wrote the shared record, or took the leadership: this one stops.
    LostLeadership(String),
}

impl PassError {
    /// Whether etcd or UFM refused our credentials: retrying will not help.
    pub(crate) fn is_auth(&self) -> bool {
        matches!(
            self,
            PassError::Etcd(EtcdError::Auth(_)) | PassError::Ufm(UfmError::Auth(_))
        )
    }
}

impl From<TermError> for PassError {
    fn from(e: TermError) -> PassError {
        match e {
            TermError::Lost(e) => PassError::LostLeadership(e),
            TermError::Unreadable(e) => PassError::Ownership(e),
        }
    }
}

impl From<PassError> for crate::error::Error {
    /// Refused credentials exit 5, a missing key 3, anything else 1.
    fn from(e: PassError) -> crate::error::Error {
        match e {
            PassError::Etcd(e) => e.into(),
            PassError::Ufm(e) => e.into(),
            other => crate::error::Error::Failed(other.to_string()),
        }
    }
}

impl std::fmt::Display for PassError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PassError::Etcd(e) => write!(f, "{e}"),
            PassError::Ufm(e) => write!(f, "{e}"),
            PassError::Ownership(e) | PassError::LostLeadership(e) => f.write_str(e),
        }
    }
}

/// What one pass did.
#[derive(Debug, Default)]
pub(crate) struct PassReport {
    /// The plan, for the partitions the pass covered.
    pub plan: Plan,
    /// The partitions the pass covered; `None`: every one (a full pass).
    pub covered: Option<BTreeSet<PKey>>,
    /// The etcd revision (v3) or index (v2) of a full read: the watch starts after it.
    pub revision: i64,
    /// UFM's `last_updated` moved just before the pass's writes: someone else changed UFM.
    pub moved_before_writes: bool,
    /// Actions that failed, with the reason; their partitions are tried again on their own.
    pub failures: Vec<(Action, String)>,
    /// Actions not tried: after a failure on their partition, after the gate closed, when
    /// their partition waits for its own retry, or because their ownership could not be
    /// recorded first.
    pub skipped: usize,
    pub counts: Counts,
    /// GUIDs UFM refused to add (tried again with their partition).
    pub rejected: Vec<Rejected>,
    /// Why the pass stopped writing early (SIGTERM, leadership in doubt).
    pub stopped: Option<String>,
    /// The ownership record could not be saved: retried every pass until it is.
    pub state_error: Option<String>,
    /// Another instance took over during the pass: this one must stand down.
    pub lost_leadership: Option<String>,
    /// UFM stopped answering during the pass: the rest waits until it answers again.
    pub ufm_down: Option<String>,
    /// UFM requests sent again after a transient failure.
    pub retries: u64,
    /// Partitions written that the read-back does not show as planned, with what is missing.
    pub unconfirmed: BTreeMap<PKey, String>,
    /// Partitions whose planned changes were not sent, with why (the pass stopped or made
    /// way for newer changes): they are due again at once.
    pub not_sent: BTreeMap<PKey, String>,
    /// The pass ended early so that newer changes go first.
    pub made_way: bool,
    /// Why a full pass should follow, if one should (UFM changed by someone else just before
    /// the writes; a deletion this pass could not judge).
    pub want_full: Option<String>,
    /// Changes a read showed done, with how long each waited since the daemon learned of it.
    pub done: Vec<(PKey, Duration)>,
    /// Partitions waiting in the work set after the pass.
    pub pending: usize,
    /// Deletions an operator's confirmation allowed in this pass.
    pub confirmed: usize,
}

impl PassReport {
    /// Whether the pass did everything it planned and a read shows it: also no GUID that UFM
    /// refused to add, nothing left unsent.
    pub(crate) fn complete(&self) -> bool {
        self.succeeded()
            && self.rejected.is_empty()
            && self.unconfirmed.is_empty()
            && self.not_sent.is_empty()
    }

    /// Whether every planned change went through (refused deletions count as not; GUIDs UFM
    /// does not know do not: they wait for UFM, not for ufm-pkeyd).
    pub(crate) fn succeeded(&self) -> bool {
        self.failures.is_empty()
            && self.plan.refusal.is_none()
            && self.state_error.is_none()
            && self.stopped.is_none()
            && self.lost_leadership.is_none()
    }

    /// How many planned changes went through.
    pub(crate) fn applied(&self) -> usize {
        self.plan
            .actions
            .len()
            .saturating_sub(self.failures.len() + self.skipped)
    }
}

/// The engine: both sides, settings, ownership, and the changes not yet seen done.
pub(crate) struct Engine<E = EtcdClient, U = UfmClient> {
    etcd: E,
    ufm: U,
    settings: Settings,
    ownership: Ownership,
    /// Partitions UFM is not yet seen to hold as etcd wants them.
    work: Work,
    /// The keys naming each partition, as the last full read and the watch since saw them.
    spellings: evidence::Spellings,
    /// UFM's `last_updated` as last trusted.
    stamp: Stamp,
    /// Whether `last_updated` is followed at all (the daemon does; one-shot commands do not).
    tracks_drift: bool,
    /// UFM requests sent again after a transient failure, since start.
    retried: u64,
}

impl Engine {
    /// Opens the engine over the real clients: reads the ownership record (see
    /// [`Ownership::open`]).
    pub(crate) fn open(
        etcd: EtcdClient,
        ufm: UfmClient,
        settings: Settings,
        dry_run: bool,
    ) -> Result<Engine, String> {
        let ownership = Ownership::open(&settings.place(), &etcd, dry_run)?;
        Ok(Engine::with(etcd, ufm, settings, ownership))
    }

    /// Takes new clients and settings (the configuration was reloaded). The ownership record
    /// stays as it is in memory when it lives where it did; otherwise the new one is opened.
    pub(crate) fn reconfigure(
        &mut self,
        etcd: EtcdClient,
        ufm: UfmClient,
        settings: Settings,
    ) -> Result<(), String> {
        if settings.place() != self.settings.place() {
            let dry_run = !self.ownership.records();
            self.ownership = Ownership::open(&settings.place(), &etcd, dry_run)?;
        }
        self.etcd = etcd;
        self.ufm = ufm;
        self.settings = settings;
        Ok(())
    }
}

impl<E: EtcdReads, U: UfmOps> Engine<E, U> {
    /// An engine over these sides and this ownership record.
    pub(crate) fn with(etcd: E, ufm: U, settings: Settings, ownership: Ownership) -> Self {
        Engine {
            etcd,
            ufm,
            settings,
            ownership,
            work: Work::default(),
            spellings: evidence::Spellings::default(),
            stamp: Stamp::default(),
            tracks_drift: false,
            retried: 0,
        }
    }

    /// The etcd side.
    pub(crate) fn etcd(&self) -> &E {
        &self.etcd
    }

    /// The UFM side.
    pub(crate) fn ufm(&self) -> &U {
        &self.ufm
    }

    /// The settings.
    pub(crate) fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The partitions owned now.
    pub(crate) fn owned(&self) -> &BTreeSet<PKey> {
        self.ownership.owned()
    }

    /// Whether the last save of the ownership record failed (it is retried every pass).
    pub(crate) fn record_unsaved(&self) -> bool {
        self.ownership.unsaved()
    }

    /// UFM requests sent again after a transient failure, since start.
    pub(crate) fn retried(&self) -> u64 {
        self.retried
    }

    /// Follows UFM's `last_updated` from now on, to tell changes made by others (the daemon).
    pub(crate) fn track_drift(&mut self) {
        self.tracks_drift = true;
    }

    /// A new leadership term: the shared record is read again before the next pass, and its
    /// writes compare the election key with this identity (`fence`: key, identity).
    pub(crate) fn new_term(&mut self, fence: Option<(String, String)>) {
        self.ownership.new_term(fence);
    }

    /// A standby's copy of the shared ownership record, kept up to date (see
    /// [`Ownership::copy_shared`]).
    pub(crate) fn copy_shared_record(&mut self) {
        match self.ownership.copy_shared() {
            Ok(true) => log::debug!("standby: local copy of the ownership record updated"),
            Ok(false) => {}
            Err(e) => log::warn!("standby: {e}"),
        }
    }

    /// The partitions waiting for a read to show their change done, with why.
    pub(crate) fn pending(&self) -> impl Iterator<Item = (PKey, &Why, Instant)> + '_ {
        self.work.items().map(|(p, i)| (p, &i.why, i.since))
    }

    /// Whether a write of this instance whose outcome is unknown may still land in UFM.
    pub(crate) fn writes_may_land(&self) -> bool {
        let now = Instant::now();
        self.work
            .items()
            .any(|(_, i)| matches!(i.why, Why::Unsettled(_)) && i.due > now)
    }

    /// How many partitions wait.
    pub(crate) fn pending_len(&self) -> usize {
        self.work.len()
    }

    /// How many partitions are due for a pass at `now`, and when the next one is otherwise.
    pub(crate) fn due(&self, now: Instant) -> (usize, Option<Instant>) {
        let due = self.work.due(now, DUE_PER_PASS);
        (due.pkeys.len() + due.more, due.next)
    }

    /// What the watch delivered: each partition whose key changed waits for a pass that reads
    /// its keys again. A deleted key of an owned partition is judged now, from how it left
    /// (alone, as pcocc ends a job, or with others by one request). Returns why a full pass is
    /// needed instead, if one is: a key that does not name a partition directly under the
    /// prefix (or a v2 directory), or a batch touching too many partitions.
    pub(crate) fn changes(&mut self, changes: &[Change], now: Instant) -> Option<String> {
        let prefix = self.settings.prefix.clone();
        let mut deleted_at: BTreeMap<i64, usize> = BTreeMap::new();
        for change in changes.iter().filter(|c| c.value.is_none()) {
            *deleted_at.entry(change.revision).or_default() += 1;
        }
        let mut full = None;
        let mut touched: Vec<(PKey, &Change)> = Vec::new();
        for change in changes {
            match removals::pkey_of(&prefix, &change.key).filter(|_| !change.dir) {
                Some(pkey) => touched.push((pkey, change)),
                None => full = Some(format!("the watch saw {} change", change.key)),
            }
        }
        let partitions: BTreeSet<PKey> = touched.iter().map(|(p, _)| *p).collect();
        if partitions.len() > CHANGES_FOR_A_FULL_PASS {
            full = Some(format!(
                "{} partitions' keys changed at once under {prefix}",
                partitions.len()
            ));
        }
        for (pkey, change) in touched {
            let present = change.value.is_some();
            self.spellings.seen(pkey, &change.key, present);
            if present {
                self.ownership.key_back(pkey);
            } else if self.ownership.owned().contains(&pkey) {
                let together = deleted_at.get(&change.revision).copied().unwrap_or(1);
                let verdict = if together >= 2 {
                    Removal::Bulk(format!(
                        "{together} keys under {prefix} were deleted by one request at revision {} (a range or recursive delete), which pcocc's per-key deletes never do",
                        change.revision
                    ))
                } else {
                    Removal::OneByOne
                };
                self.ownership.judged([(pkey, verdict)]);
            }
            if full.is_none() {
                self.work.changed(pkey, now);
            }
        }
        full
    }

    /// Every poll interval: has someone changed UFM since this instance last read all of it
    /// or wrote to it? One small request (`last_updated`); no answer is an error.
    pub(crate) fn check_drift(&mut self) -> Result<Drift, UfmError> {
        let read = self.sides().read_stamp()?;
        Ok(self.stamp.check(read))
    }

    /// Reads both sides in full and plans, changing nothing in UFM.
    pub(crate) fn plan(&mut self) -> Result<(Plan, i64), PassError> {
        let evidence = self.read(Scope::Full, Instant::now(), None)?;
        Ok((self.plan_from(&evidence), evidence.revision))
    }

    /// The ownership record, read again, and how it compares with the etcd and UFM configured
    /// now (one etcd read).
    pub(crate) fn record_view(&mut self) -> Result<RecordView, PassError> {
        let now = self.now_binding()?;
        self.ownership.view(now).map_err(PassError::Ownership)
    }

    /// Binds the ownership record to the etcd and UFM configured now: keeping what it owns
    /// (adopt), or emptied (reset, its partitions then count as unmanaged).
    pub(crate) fn rebind(&mut self, reset: bool) -> Result<RecordView, PassError> {
        self.record_view()?;
        let now = self.now_binding()?;
        self.ownership
            .rebind(now, reset)
            .map_err(PassError::Ownership)
    }

    fn now_binding(&mut self) -> Result<ownership::Binding, PassError> {
        let listing = self
            .etcd
            .list(&self.settings.prefix)
            .map_err(PassError::Etcd)?;
        Ok(self.sides().binding_of(&listing))
    }

    /// Both sides, for one read.
    fn sides(&mut self) -> Sides<'_, E, U> {
        Sides::new(
            (&self.etcd, &self.ufm),
            &self.settings,
            &mut self.retried,
            self.tracks_drift,
        )
    }

    /// One pass over `scope`: read, plan, record what it will own, apply, read back what it
    /// wrote, keep what is not shown done, record the outcome. The gate is asked before each
    /// UFM write (SIGTERM, leadership in doubt) and before each partition (newer changes
    /// first): what is not sent stays in the work set, due at once.
    pub(crate) fn pass(
        &mut self,
        gate: &mut dyn Gate,
        scope: Scope,
    ) -> Result<PassReport, PassError> {
        self.ownership.start_term()?;
        self.ownership.check_disk();
        let now = Instant::now();
        // An operator's request is carried out by a pass that reads everything.
        let request = match scope {
            Scope::Full => self.ownership.request(),
            Scope::Due => None,
        };
        let evidence = self.read(scope, now, request.as_ref())?;
        if request
            .as_ref()
            .is_some_and(|r| r.op != ownership::RequestOp::ConfirmDeletions)
        {
            // Adopted or reset: what waited on the record goes now, not after its pause.
            self.work.retry_now(now);
        }
        let plan = self.plan_from(&evidence);
        let report = self.carry_out(evidence, plan, gate, now)?;
        if let Some(request) = request {
            self.request_carried_out(&request, &report);
        }
        Ok(report)
    }

    /// An operator's request was carried out by a full pass: it is removed, and a confirmation
    /// says what it confirmed.
    fn request_carried_out(&mut self, request: &ownership::Request, report: &PassReport) {
        if request.op == ownership::RequestOp::ConfirmDeletions {
            let refused = report.plan.refused_deletes.len();
            log::info!(
                "`ufm-pkeyd {}` by {} carried out: {} deletions confirmed{}",
                request.op.command(),
                request.by,
                report.confirmed,
                if refused > 0 {
                    format!(", {refused} still refused (not named, or the record is held)")
                } else {
                    String::new()
                }
            );
        }
        self.ownership.request_done();
    }

    /// Whether an operator's request waits for a full pass.
    pub(crate) fn request_waiting(&mut self) -> bool {
        self.ownership.request_waiting()
    }

    fn read(
        &mut self,
        scope: Scope,
        now: Instant,
        request: Option<&ownership::Request>,
    ) -> Result<Evidence, PassError> {
        // The sides borrow other fields than the ownership record and the spellings.
        let mut sides = Sides::new(
            (&self.etcd, &self.ufm),
            &self.settings,
            &mut self.retried,
            self.tracks_drift,
        );
        let evidence = match scope {
            Scope::Full => {
                sides.read_everything(&mut self.ownership, &mut self.spellings, request)?
            }
            Scope::Due => {
                let due = self.work.due(now, DUE_PER_PASS).pkeys.into_iter().collect();
                sides.read_named(&due, &self.ownership, &mut self.spellings)?
            }
        };
        if scope == Scope::Full && self.tracks_drift {
            self.stamp.full_read(evidence.stamp.clone());
        }
        Ok(evidence)
    }

    fn plan_from(&self, evidence: &Evidence) -> Plan {
        plan::plan(
            &evidence.desired,
            &evidence.actual,
            &evidence.owned,
            &self.settings.guard,
            &evidence.removals,
        )
    }

    /// Everything after planning: see [`Engine::pass`].
    fn carry_out(
        &mut self,
        evidence: Evidence,
        plan: Plan,
        gate: &mut dyn Gate,
        now: Instant,
    ) -> Result<PassReport, PassError> {
        let mut report = PassReport {
            revision: evidence.revision,
            covered: evidence.covered.clone(),
            confirmed: evidence.removals.confirmed.len(),
            ..PassReport::default()
        };
        let unrecorded = self.record_ahead(&plan, &evidence.keys, &mut report)?;
        self.ownership.saw_keys(&evidence.keys);
        let actions = self.in_order(&plan, &unrecorded, now, &mut report);
        let before = self.stamp_before(&actions, &mut report);
        let applied = apply::apply(&actions, &self.ufm, gate);
        self.retried += applied.retries;
        let shown = self.read_back(&actions, &evidence, &applied);
        self.stamp_after(before, &applied, &shown);
        let finished = Instant::now();
        self.settle(
            &evidence,
            &plan,
            &applied,
            &shown,
            &unrecorded,
            finished,
            &mut report,
        );
        self.end_ownership(&evidence, &plan, &applied, &shown);
        self.save(&mut report);
        if !evidence.removals.deferred.is_empty() {
            report.want_full.get_or_insert_with(|| {
                format!(
                    "{} owned partitions' keys left etcd with no verdict on how",
                    evidence.removals.deferred.len()
                )
            });
        }
        report.failures = applied.failures;
        report.skipped += applied.skipped;
        report.counts = applied.counts;
        report.rejected = applied.rejected;
        report.stopped = applied.stopped;
        report.ufm_down = applied.ufm_down;
        report.retries = applied.retries;
        report.made_way = applied.made_way;
        report.pending = self.work.len();
        report.plan = plan;
        Ok(report)
    }

    /// Records as owned, before any request, every partition this pass may create or adopt.
    /// Returns those whose ownership could not be recorded: their changes wait.
    fn record_ahead(
        &mut self,
        plan: &Plan,
        keys: &BTreeMap<PKey, String>,
        report: &mut PassReport,
    ) -> Result<BTreeMap<PKey, String>, PassError> {
        // Every partition etcd lists is owned from then on: those the pass changes, and
        // those already as etcd wants them.
        let touched = plan
            .actions
            .iter()
            .filter(|a| !matches!(a, Action::Delete { .. }))
            .map(Action::pkey)
            .chain(plan.in_sync.iter().copied());
        // Partitions already as etcd wants them, owned from now on: said, so that a fresh
        // state file's take-over of a running fabric is in the log.
        let adopted: BTreeSet<PKey> = plan
            .in_sync
            .iter()
            .filter(|p| !self.ownership.owned().contains(p))
            .copied()
            .collect();
        let unrecorded = match self.ownership.record_ahead(touched, keys) {
            Ok(unrecorded) => unrecorded,
            Err(lost) => return Err(PassError::LostLeadership(lost.to_string())),
        };
        let Some(why) = unrecorded.why else {
            if !adopted.is_empty() && self.ownership.records() {
                log::info!(
                    "adopting {} already as etcd wants them (owned from now on): {}",
                    crate::text::count(adopted.len(), "partition"),
                    crate::text::pkey_list(&adopted)
                );
            }
            return Ok(BTreeMap::new());
        };
        log::error!(
            "{why}; not creating or adopting {} until it is saved",
            crate::text::count(unrecorded.pkeys.len(), "partition")
        );
        let reason = format!("its ownership could not be recorded first ({why})");
        report.state_error = Some(why);
        Ok(unrecorded
            .pkeys
            .into_iter()
            .map(|p| (p, reason.clone()))
            .collect())
    }

    /// The actions that may go now, partition by partition in priority order: new changes
    /// first, then the longest waiting, then what a full pass found, smaller changes before
    /// bigger ones. Left out: partitions whose ownership is not recorded, partitions waiting
    /// for their own retry, partitions held for a write with an unknown outcome.
    fn in_order(
        &self,
        plan: &Plan,
        unrecorded: &BTreeMap<PKey, String>,
        now: Instant,
        report: &mut PassReport,
    ) -> Vec<Action> {
        let mut by_partition: BTreeMap<PKey, Vec<Action>> = BTreeMap::new();
        for action in &plan.actions {
            let pkey = action.pkey();
            let waits = unrecorded.contains_key(&pkey)
                || !self.work.may_try(pkey, now)
                || !self.work.may_write(pkey, now);
            if waits {
                report.skipped += 1;
            } else {
                by_partition.entry(pkey).or_default().push(action.clone());
            }
        }
        let mut partitions: Vec<(PKey, Vec<Action>)> = by_partition.into_iter().collect();
        partitions.sort_by_key(|(pkey, actions)| {
            let item = self.work.get(*pkey);
            let class = match item.map(|i| &i.why) {
                Some(Why::Changed) => 0,
                Some(_) => 1,
                None => 2,
            };
            (class, item.map(|i| i.since), actions.len(), *pkey)
        });
        partitions.into_iter().flat_map(|(_, a)| a).collect()
    }

    /// Before the first write: UFM's `last_updated`, to tell whether someone changed UFM since
    /// it was last trusted (then a full pass follows the writes).
    fn stamp_before(&mut self, actions: &[Action], report: &mut PassReport) -> Option<Read> {
        if !self.tracks_drift || actions.is_empty() {
            return None;
        }
        let read = self.sides().read_stamp().ok();
        if let Some(why) = self.stamp.before_writes(&read) {
            report.want_full = Some(why);
            report.moved_before_writes = true;
        }
        read
    }

    /// After the read-back: `last_updated` again, trusted as the value after our own writes
    /// (unless it did not move although UFM shows them applied).
    fn stamp_after(
        &mut self,
        before: Option<Read>,
        applied: &apply::Applied,
        shown: &BTreeMap<PKey, Result<(), String>>,
    ) {
        if !self.tracks_drift || applied.tried.is_empty() {
            return;
        }
        let after = self.sides().read_stamp().ok();
        let changed_ufm = applied
            .succeeded
            .iter()
            .any(|p| shown.get(p).is_some_and(Result::is_ok));
        self.stamp.after_writes(before, after, changed_ufm);
    }

    /// Reads back every partition an action was tried for, and says for each whether UFM
    /// shows what the pass planned for it (`Err`: what is missing).
    fn read_back(
        &mut self,
        actions: &[Action],
        evidence: &Evidence,
        applied: &apply::Applied,
    ) -> BTreeMap<PKey, Result<(), String>> {
        if applied.tried.is_empty() {
            return BTreeMap::new();
        }
        let full = evidence.covered.is_none();
        let back = self.sides().read_back(&applied.tried, full);
        back.into_iter()
            .map(|(pkey, read)| {
                let planned: Vec<Action> = actions
                    .iter()
                    .filter(|a| a.pkey() == pkey)
                    .cloned()
                    .collect();
                let shown = read.and_then(|have: Option<Partition>| {
                    plan::confirmed(
                        pkey,
                        &planned,
                        evidence.desired.partitions.get(&pkey),
                        have.as_ref(),
                    )
                });
                (pkey, shown)
            })
            .collect()
    }

    /// Updates the work set with what the pass found for each partition it covered, and the
    /// report with what is pending and why.
    #[allow(clippy::too_many_arguments)]
    fn settle(
        &mut self,
        evidence: &Evidence,
        plan: &Plan,
        applied: &apply::Applied,
        shown: &BTreeMap<PKey, Result<(), String>>,
        unrecorded: &BTreeMap<PKey, String>,
        now: Instant,
        report: &mut PassReport,
    ) {
        let window = self.ufm.request_bound() + self.settings.late_write_margin;
        let findings = Findings {
            evidence,
            applied,
            shown,
            unrecorded,
            planned: plan.actions.iter().map(Action::pkey).collect(),
            hold_until: now + window,
        };
        let mut seen = evidence.pkeys();
        if evidence.covered.is_none() {
            // A full pass saw everything: what waits and is not in it needs nothing.
            seen.extend(self.work.items().map(|(p, _)| p));
        }
        for pkey in seen {
            match findings.of(pkey) {
                Found::Forget => self.work.forget(pkey),
                Found::Keep => {}
                Found::Outcome(outcome) => {
                    self.note(pkey, &outcome, applied, window, now, report);
                    self.work.settle(pkey, outcome, now);
                }
            }
        }
        log_stop(applied, report);
    }

    /// Says in the report (and for a held partition, in the log) what the pass found.
    fn note(
        &self,
        pkey: PKey,
        outcome: &Outcome,
        applied: &apply::Applied,
        window: Duration,
        now: Instant,
        report: &mut PassReport,
    ) {
        match outcome {
            Outcome::Done => {
                if let Some(item) = self.work.get(pkey) {
                    let waited = now.saturating_duration_since(item.since);
                    report.done.push((pkey, waited));
                }
            }
            Outcome::Hold(why, _) => {
                log::warn!(
                    "{pkey}: {}; holding writes to {pkey} for {} s",
                    why.describe(),
                    window.as_secs()
                );
                report.unconfirmed.insert(pkey, why.describe().to_string());
            }
            Outcome::Again(Why::NotSent(why)) => {
                report.not_sent.insert(pkey, why.clone());
            }
            Outcome::Again(why) if applied.tried.contains(&pkey) => {
                report.unconfirmed.insert(pkey, why.describe().to_string());
            }
            Outcome::Again(_) => {}
        }
    }

    /// Ownership ends where a read shows a partition gone: deleted by this pass (its delete
    /// answered and the read-back shows it gone), or, in a full pass, missing from UFM's list
    /// and from a single read, with its key gone. A delete answered "not found" is not enough
    /// with the single read alone: the next complete list decides.
    fn end_ownership(
        &mut self,
        evidence: &Evidence,
        plan: &Plan,
        applied: &apply::Applied,
        shown: &BTreeMap<PKey, Result<(), String>>,
    ) {
        for pkey in evidence.desired.partitions.keys().chain(
            evidence
                .desired
                .invalid
                .iter()
                .filter_map(|i| i.pkey.as_ref()),
        ) {
            self.ownership.key_back(*pkey);
        }
        let mut gone: BTreeSet<PKey> = applied
            .deleted
            .iter()
            .filter(|p| !applied.deleted_unseen.contains(p))
            .filter(|p| shown.get(p).is_some_and(Result::is_ok))
            .copied()
            .collect();
        if evidence.covered.is_none() {
            gone.extend(self.confirmed_gone(&plan.forget));
        }
        self.ownership.gone(&gone);
    }

    /// The owned partitions the plan would forget (gone from etcd and from UFM's list) that a
    /// single read confirms are gone: a list can be incomplete.
    fn confirmed_gone(&mut self, forget: &[PKey]) -> Vec<PKey> {
        forget
            .iter()
            .filter(|p| match self.ufm.get(**p) {
                Ok(None) => true,
                Ok(Some(_)) => {
                    log::warn!("{p} was missing from UFM's list but is there: still owned");
                    false
                }
                Err(e) => {
                    log::warn!("{p}: cannot confirm it is gone ({e}): still owned");
                    false
                }
            })
            .copied()
            .collect()
    }

    /// Saves the record if it changed or an earlier save failed.
    fn save(&mut self, report: &mut PassReport) {
        // Lost, or already failed in this pass (recording ahead): it is tried next pass.
        if report.lost_leadership.is_some() || report.state_error.is_some() {
            return;
        }
        match self.ownership.save() {
            Ok(()) => {}
            Err(SaveError::Lost(e)) => report.lost_leadership = Some(e),
            Err(SaveError::Failed(e) | SaveError::Changed(e)) => {
                report.state_error.get_or_insert(e);
            }
        }
    }
}

/// What a pass found for one partition, for the work set.
enum Found {
    Outcome(Outcome),
    /// One of its keys left etcd after the watch last said: the watch will report how.
    Forget,
    /// Not looked at this time (waiting for its own retry, or held): it keeps its place.
    Keep,
}

/// What one pass read, wrote and read back: what it found for each partition.
struct Findings<'a> {
    evidence: &'a Evidence,
    applied: &'a apply::Applied,
    shown: &'a BTreeMap<PKey, Result<(), String>>,
    unrecorded: &'a BTreeMap<PKey, String>,
    planned: BTreeSet<PKey>,
    /// Until when a partition whose write may still land takes no write.
    hold_until: Instant,
}

impl Findings<'_> {
    fn of(&self, pkey: PKey) -> Found {
        let again = |why| Found::Outcome(Outcome::Again(why));
        if let Some(why) = self.applied.unknown.get(&pkey) {
            let why = Why::Unsettled(format!("a write's outcome is unknown ({why})"));
            return Found::Outcome(Outcome::Hold(why, self.hold_until));
        }
        if self.evidence.raced.contains(&pkey) {
            return Found::Forget;
        }
        if let Some(why) = self.evidence.unread.get(&pkey) {
            return again(Why::Unread(why.clone()));
        }
        if let Some(why) = self.unrecorded.get(&pkey) {
            return again(Why::Unconfirmed(why.clone()));
        }
        match self.shown.get(&pkey) {
            Some(Ok(())) => return Found::Outcome(Outcome::Done),
            Some(Err(missing)) => return again(self.not_shown(pkey, missing)),
            None => {}
        }
        if let Some(why) = self.applied.not_sent.get(&pkey) {
            return again(Why::NotSent(why.clone()));
        }
        if self.planned.contains(&pkey) {
            return Found::Keep;
        }
        Found::Outcome(Outcome::Done)
    }

    /// Why a partition written is not shown done: what stopped its changes, or what failed,
    /// or what the read-back misses.
    fn not_shown(&self, pkey: PKey, missing: &str) -> Why {
        if let Some(why) = self.applied.not_sent.get(&pkey) {
            return Why::NotSent(why.clone());
        }
        let failure = self
            .applied
            .failures
            .iter()
            .find(|(a, _)| a.pkey() == pkey)
            .map(|(_, why)| why.as_str());
        Why::Unconfirmed(failure.unwrap_or(missing).to_string())
    }
}

/// A pass that stopped early says how far it got and what is pending.
fn log_stop(applied: &apply::Applied, report: &PassReport) {
    let Some(why) = applied.stopped.as_ref().or(applied.ufm_down.as_ref()) else {
        return;
    };
    if report.not_sent.is_empty() {
        return;
    }
    // The partition the gate stopped half-way was tried, but it is pending, not done.
    let done = applied
        .tried
        .iter()
        .filter(|p| !report.not_sent.contains_key(p))
        .count();
    log::warn!(
        "pass stopped after {done} of {} partitions: {why}; {} pending",
        done + report.not_sent.len(),
        crate::text::count(report.not_sent.len(), "partition")
    );
}

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;
