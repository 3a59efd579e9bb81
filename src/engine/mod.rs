//! The sync engine: one level-triggered pass reads etcd (one linearizable request) and UFM
//! (one request), plans (pure, in `plan`), records ownership of what it is about to touch,
//! applies ([`apply`]), and records the outcome ([`ownership`]). The daemon loop around it
//! lives in `app::monitor`; `ufm-pkeyd sync` runs one pass. Leader election ([`election`])
//! decides which instance of an HA pair may run passes; [`removals`] tells job ends from
//! accidents for the deletion guard.
//!
//! What the engine promises (ufm-pkeyd(8), GUARANTEES):
//! - a partition is deleted only if this instance owns it, its key is gone from a linearizable
//!   read of the prefix, the key left in a way pcocc removes keys (or the count guard agrees,
//!   or the operator confirmed), and the ownership record belongs to this etcd and UFM;
//! - a partition is recorded as owned before the request that creates or adopts it;
//! - a remove never takes a partition's last member unless the partition is meant to go.

pub(crate) mod apply;
mod cooling;
pub(crate) mod election;
pub(crate) mod ownership;
pub(crate) mod removals;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Instant;

use crate::model::{Guid, PKey};
use crate::net::etcd::{EtcdClient, EtcdError, Listing};
use crate::net::ufm::{UfmClient, UfmError};
use crate::plan::{self, Action, Actual, DeleteGuard, Invalid, Plan, Policy, Removals};
pub(crate) use apply::{Counts, Gate, Rejected};
use cooling::Cooling;
pub(crate) use cooling::Retries;
use ownership::{Binding, Record, SaveError, Store};

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
}

/// What a pass covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Every key under the prefix (one read) and every partition in UFM (one list).
    Full,
    /// Only these partitions, as etcd's watch reported their keys: each read from UFM with a
    /// single-PKey request. A change costs what it changes, not what the fabric holds.
    Keys(BTreeMap<PKey, KeyChange>),
}

/// What the watch (or the last read) said of one partition's key. Only which key and how it
/// left count: a targeted pass reads the key's value again, linearizably.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct KeyChange {
    /// The etcd key, as written.
    pub key: String,
    /// Whether the key was there; `false` when it was deleted (or expired).
    pub present: bool,
    /// How many keys under the prefix the request that deleted it deleted (1 for pcocc's
    /// per-job deletes; more for a range delete).
    pub deleted_together: usize,
    /// The revision (v3) or index (v2) of the change.
    pub revision: i64,
}

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
    pub plan: Plan,
    /// The etcd revision (v3) or index (v2) of the listing: the watch starts after it.
    pub revision: i64,
    /// Actions that failed, with the reason; their partitions are retried next pass.
    pub failures: Vec<(Action, String)>,
    /// Actions not tried: after a failure on their partition, after the gate closed, or
    /// because their ownership could not be recorded first.
    pub skipped: usize,
    pub counts: Counts,
    /// GUIDs UFM refused to add (retried next pass).
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
    /// When each partition written got its last write.
    pub written: BTreeMap<PKey, Instant>,
}

impl PassReport {
    /// Whether the pass did everything it planned and UFM now matches etcd: also no GUID that
    /// UFM refused to add.
    pub(crate) fn complete(&self) -> bool {
        self.succeeded() && self.rejected.is_empty()
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
}

/// The ownership record as recorded, and the etcd and UFM configured now.
pub(crate) struct RecordView {
    pub record: Record,
    pub now: Binding,
    /// Why the record does not belong to them, if it does not.
    pub mismatch: Option<String>,
}

/// What one read of both sides gives: the plan and what it was made from.
struct Observed {
    plan: Plan,
    /// The revision of the etcd read (a full pass); 0 for a targeted pass.
    listing_revision: i64,
    /// The PKeys this pass is about (every PKey read, for a full pass).
    scope: BTreeSet<PKey>,
    /// The etcd entry of each partition in scope etcd wants, to try it again later on its own.
    entries: BTreeMap<PKey, KeyChange>,
    /// The binding of what was read, to record once the pass is done (`None`: the record
    /// belongs elsewhere and keeps its binding).
    binding: Option<Binding>,
    /// UFM's `last_updated`, read just before its list (a full pass).
    stamp: Option<String>,
}

/// The engine: clients, settings and the ownership it keeps.
pub(crate) struct Engine {
    etcd: EtcdClient,
    ufm: UfmClient,
    settings: Settings,
    /// Where ownership is recorded; `None` in a dry run.
    store: Option<Store>,
    record: Record,
    /// The record in memory differs from the one recorded (a save failed): saved next pass.
    dirty: bool,
    /// The shared record must be read (again) before the next pass: at the start of each
    /// leadership term, since another instance may have changed it.
    record_stale: bool,
    /// The shared record vanished from etcd although this host had a copy.
    missing: Option<String>,
    /// What was last reported, so that unchanged lists are not logged every pass.
    last_unmanaged: Vec<PKey>,
    last_invalid: Vec<Invalid>,
    last_unreadable: Vec<(PKey, String)>,
    last_refusal: Option<String>,
    last_rejected: BTreeSet<(PKey, Guid)>,
    /// Partitions whose writes failed, each tried again on its own schedule.
    cooling: Cooling,
    /// UFM's `last_updated` as of the last full read or this instance's last writes: a
    /// different value later means someone else changed UFM. `None`: not known.
    stamp: Option<String>,
    /// UFM answered that it does not serve `last_updated`: it is not asked again.
    stamp_unserved: bool,
    /// Whether `last_updated` is followed at all (the daemon does; one-shot commands do not).
    tracks_drift: bool,
    /// UFM requests sent again after a transient failure, since start.
    retried: u64,
    /// The fabric-wide lists as of the last full pass, kept up to date by targeted passes
    /// (which see only their partitions): what status, metrics and logs report.
    view: View,
}

/// Unmanaged partitions, invalid entries and unreadable partitions across the whole prefix
/// and fabric.
#[derive(Debug, Default)]
struct View {
    unmanaged: BTreeSet<PKey>,
    invalid: Vec<Invalid>,
    unreadable: BTreeMap<PKey, String>,
}

impl View {
    /// A full pass saw everything: its lists are the view.
    fn replace(&mut self, plan: &Plan) {
        self.unmanaged = plan.unmanaged.iter().copied().collect();
        self.invalid = plan.invalid.clone();
        self.unreadable = plan.unreadable.iter().cloned().collect();
    }

    /// A targeted pass saw the partitions of `scope` (and the keys `keys`): their entries
    /// are replaced by what it saw, and the plan's lists become the whole view again.
    fn update(&mut self, scope: &BTreeSet<PKey>, keys: &BTreeSet<&str>, plan: &mut Plan) {
        self.unmanaged.retain(|p| !scope.contains(p));
        self.unmanaged.extend(plan.unmanaged.iter().copied());
        self.invalid.retain(|i| {
            !keys.contains(i.key.as_str()) && i.pkey.is_none_or(|p| !scope.contains(&p))
        });
        self.invalid.extend(plan.invalid.iter().cloned());
        self.invalid.sort_by(|a, b| a.key.cmp(&b.key));
        self.unreadable.retain(|p, _| !scope.contains(p));
        self.unreadable.extend(plan.unreadable.iter().cloned());
        plan.unmanaged = self.unmanaged.iter().copied().collect();
        plan.invalid = self.invalid.clone();
        plan.unreadable = self
            .unreadable
            .iter()
            .map(|(p, r)| (*p, r.clone()))
            .collect();
    }
}

impl Engine {
    /// Opens the engine: reads the ownership record (the state file, locked; with a shared
    /// record in etcd, before the first pass of each leadership term). In a dry run nothing is
    /// recorded or locked, and a missing state directory is tolerated; a corrupt state file
    /// never is.
    pub(crate) fn open(
        etcd: EtcdClient,
        ufm: UfmClient,
        settings: Settings,
        dry_run: bool,
    ) -> Result<Engine, String> {
        let (store, record, record_stale, missing) = match &settings.state_key {
            Some(key) => {
                let mut store = Store::etcd(etcd.clone(), key.clone(), settings.state_file.clone());
                if dry_run {
                    let loaded = store.load()?;
                    (None, loaded.record, false, loaded.missing)
                } else {
                    (Some(store), Record::default(), true, None)
                }
            }
            None => match Store::open_file(&settings.state_file, !dry_run) {
                Ok((store, record)) => (Some(store).filter(|_| !dry_run), record, false, None),
                Err(e) if dry_run && !settings.state_file.exists() => {
                    log::warn!("{e}; planning as if nothing were owned");
                    (None, Record::default(), false, None)
                }
                Err(e) => return Err(e),
            },
        };
        Ok(Engine {
            etcd,
            ufm,
            settings,
            store,
            record,
            dirty: false,
            record_stale,
            missing,
            last_unmanaged: Vec::new(),
            last_invalid: Vec::new(),
            last_unreadable: Vec::new(),
            last_refusal: None,
            last_rejected: BTreeSet::new(),
            cooling: Cooling::default(),
            stamp: None,
            stamp_unserved: false,
            tracks_drift: false,
            retried: 0,
            view: View::default(),
        })
    }

    /// Takes new clients and settings (the configuration was reloaded). The ownership record
    /// stays as it is in memory when it lives where it did; otherwise the new one is opened.
    pub(crate) fn reconfigure(
        &mut self,
        etcd: EtcdClient,
        ufm: UfmClient,
        settings: Settings,
    ) -> Result<(), String> {
        let same_record = settings.state_file == self.settings.state_file
            && settings.state_key == self.settings.state_key;
        if !same_record {
            let dry_run = self.store.is_none();
            let fresh = Engine::open(etcd.clone(), ufm.clone(), settings.clone(), dry_run)?;
            self.store = fresh.store;
            self.record = fresh.record;
            self.record_stale = fresh.record_stale;
            self.missing = fresh.missing;
            self.dirty = false;
        }
        self.etcd = etcd;
        self.ufm = ufm;
        self.settings = settings;
        Ok(())
    }

    /// The etcd client.
    pub(crate) fn etcd(&self) -> &EtcdClient {
        &self.etcd
    }

    /// The UFM client.
    pub(crate) fn ufm(&self) -> &UfmClient {
        &self.ufm
    }

    /// The settings.
    pub(crate) fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The partitions owned now.
    pub(crate) fn owned(&self) -> &BTreeSet<PKey> {
        &self.record.owned
    }

    /// Whether the last save of the ownership record failed (it is retried every pass).
    pub(crate) fn record_unsaved(&self) -> bool {
        self.dirty
    }

    /// A new leadership term: the shared record is read again before the next pass, and its
    /// writes compare the election key with this identity (`fence`: key, identity).
    pub(crate) fn new_term(&mut self, fence: Option<(String, String)>) {
        if let Some(store @ Store::Etcd { .. }) = &mut self.store {
            store.set_fence(fence);
            self.record_stale = true;
        }
    }

    /// At the start of a leadership term: reads the shared record, then writes it back at
    /// once. The write proves this instance may write it, and moves the record's revision on,
    /// so that an old leader's next write (comparing the revision it knew) fails.
    fn start_term(&mut self) -> Result<(), PassError> {
        if !self.record_stale {
            return Ok(());
        }
        let Some(store) = &mut self.store else {
            return Ok(());
        };
        let loaded = store.load().map_err(PassError::Ownership)?;
        self.record = loaded.record;
        self.missing = loaded.missing;
        match store.save(&self.record) {
            Ok(()) => {}
            Err(SaveError::Lost(e)) => return Err(PassError::LostLeadership(e)),
            Err(SaveError::Failed(e)) => return Err(PassError::Ownership(e)),
        }
        self.record_stale = false;
        self.dirty = false;
        Ok(())
    }

    /// The ownership record, read again, and how it compares with the etcd and UFM configured
    /// now (one etcd read).
    pub(crate) fn record_view(&mut self) -> Result<RecordView, PassError> {
        if self.record_stale {
            if let Some(store) = &mut self.store {
                let loaded = store.load().map_err(PassError::Ownership)?;
                self.record = loaded.record;
                self.missing = loaded.missing;
                self.record_stale = false;
            }
        }
        let listing = self
            .etcd
            .list(&self.settings.prefix)
            .map_err(PassError::Etcd)?;
        let now = self.binding_of(&listing);
        let mismatch = self
            .record
            .held
            .clone()
            .or_else(|| self.missing.clone())
            .or_else(|| {
                self.record
                    .binding
                    .as_ref()
                    .and_then(|binding| binding.mismatch(&now))
            });
        Ok(RecordView {
            record: self.record.clone(),
            now,
            mismatch,
        })
    }

    /// Binds the ownership record to the etcd and UFM configured now: keeping what it owns
    /// (adopt), or emptied (reset, its partitions then count as unmanaged). What was judged
    /// about removals in the old etcd is dropped.
    pub(crate) fn rebind(&mut self, reset: bool) -> Result<RecordView, PassError> {
        let view = self.record_view()?;
        if reset {
            self.record.owned.clear();
        }
        self.record.removals.clear();
        self.record.binding = Some(view.now.clone());
        self.record.held = None;
        self.missing = None;
        if let Some(store) = &mut self.store {
            store
                .save(&self.record)
                .map_err(|e| PassError::Ownership(e.to_string()))?;
        }
        Ok(RecordView {
            record: self.record.clone(),
            now: view.now,
            mismatch: None,
        })
    }

    /// Reads both sides and plans, changing nothing in UFM.
    pub(crate) fn plan(&mut self) -> Result<(Plan, i64), PassError> {
        let observed = self.observe_all()?;
        Ok((observed.plan, observed.listing_revision))
    }

    fn observe(&mut self, scope: &Scope) -> Result<Observed, PassError> {
        match scope {
            Scope::Full => self.observe_all(),
            Scope::Keys(changes) => self.observe_keys(changes),
        }
    }

    /// Reads etcd and UFM, checks that the ownership record belongs to them, judges how the
    /// keys of owned partitions left, and plans.
    fn observe_all(&mut self) -> Result<Observed, PassError> {
        let prefix = self.settings.prefix.clone();
        let listing = self.etcd.list(&prefix).map_err(PassError::Etcd)?;
        let now = self.binding_of(&listing);
        let entries = listing
            .kvs
            .iter()
            .map(|kv| (kv.key.as_str(), &kv.value[..]));
        let desired = plan::desired_from_listing(&prefix, entries, &self.settings.policy);
        // Which key each partition has, to read it again alone if its writes must be retried.
        let entries: BTreeMap<PKey, KeyChange> = listing
            .kvs
            .iter()
            .filter_map(|kv| {
                let change = KeyChange {
                    key: kv.key.clone(),
                    present: true,
                    deleted_together: 0,
                    revision: kv.mod_revision,
                };
                Some((removals::pkey_of(&prefix, &kv.key)?, change))
            })
            .collect();
        // The raw listing is not needed any more: free it before UFM's list arrives.
        drop(listing);
        // Read before the list: a change made after it moves the stamp on, so it is seen.
        let stamp = self.read_stamp();
        let list = self
            .retrying(|ufm| ufm.list_partitions())
            .map_err(PassError::Ufm)?;
        let actual = Actual {
            partitions: list.partitions.into_iter().map(|p| (p.pkey, p)).collect(),
            unreadable: list.unreadable.into_iter().collect(),
        };
        let locked = self.locked(&now);
        let recorded = self.record.binding.clone();
        let mut removals = Removals {
            locked: locked.clone(),
            ..Removals::default()
        };
        let candidates = plan::deletion_candidates(&desired, &actual, &self.record.owned);
        if locked.is_none() && !candidates.is_empty() {
            self.judge_removals(&candidates, recorded.as_ref(), &now, &mut removals);
            if desired.keys_read == 0 {
                removals.suspect = self.wrong_keyspace();
            }
        }
        let plan = plan::plan(
            &desired,
            &actual,
            &self.record.owned,
            &self.settings.guard,
            &removals,
        );
        let scope = desired
            .partitions
            .keys()
            .chain(actual.partitions.keys())
            .chain(self.record.owned.iter())
            .copied()
            .collect();
        Ok(Observed {
            plan,
            listing_revision: now.revision,
            scope,
            entries,
            binding: locked
                .is_none()
                .then(|| self.progressed(recorded.as_ref(), now)),
            stamp,
        })
    }

    /// Plans for the partitions the watch reported, reading each key again from etcd (a
    /// linearizable read: the watch may come from a member that lags, and only such a read
    /// may decide a deletion) and each partition from UFM on its own. How many keys the
    /// request that deleted a key deleted tells a job end from a bulk removal.
    fn observe_keys(&mut self, changes: &BTreeMap<PKey, KeyChange>) -> Result<Observed, PassError> {
        let prefix = self.settings.prefix.clone();
        let mut puts: Vec<(String, Vec<u8>)> = Vec::new();
        let mut entries = BTreeMap::new();
        let mut scope: BTreeSet<PKey> = changes.keys().copied().collect();
        for (pkey, change) in changes {
            let Some(kv) = self.etcd.get(&change.key).map_err(PassError::Etcd)? else {
                if change.present {
                    // Deleted since it was seen: how it left is for the watch to tell (a
                    // bulk removal must be judged as one), so this partition waits for it.
                    log::debug!(
                        "{} was deleted since it was read; waiting for the watch",
                        change.key
                    );
                    scope.remove(pkey);
                    self.cooling.forget(*pkey);
                }
                continue;
            };
            puts.push((change.key.clone(), kv.value));
            let entry = KeyChange {
                present: true,
                deleted_together: 0,
                revision: kv.mod_revision,
                ..change.clone()
            };
            entries.insert(*pkey, entry);
        }
        let listed = puts.iter().map(|(k, v)| (k.as_str(), &v[..]));
        let desired = plan::desired_from_listing(&prefix, listed, &self.settings.policy);
        let mut actual = Actual::default();
        for pkey in &scope {
            match self.retrying(|ufm| ufm.get(*pkey)) {
                Ok(Some(partition)) => {
                    actual.partitions.insert(*pkey, partition);
                }
                Ok(None) => {}
                Err(UfmError::BadAnswer(reason)) => {
                    actual.unreadable.insert(*pkey, reason);
                }
                Err(e) => return Err(PassError::Ufm(e)),
            }
        }
        let owned: BTreeSet<PKey> = self.record.owned.intersection(&scope).copied().collect();
        let locked = self.record.held.as_ref().map(|why| {
            format!(
                "the ownership record does not belong to this etcd and UFM ({why}): nothing is deleted; adopt it with `ufm-pkeyd state --adopt` or reset it with `ufm-pkeyd state --reset`"
            )
        });
        let candidates = plan::deletion_candidates(&desired, &actual, &owned);
        let verdicts = candidates
            .iter()
            .filter_map(|pkey| {
                let change = changes.get(pkey)?;
                let verdict = match self.record.removals.get(pkey) {
                    Some(known) => known.clone(),
                    None if change.deleted_together >= 2 => crate::plan::Removal::Bulk(format!(
                        "{} keys under {prefix} were deleted by one request at revision {} (a range or recursive delete), which pcocc's per-key deletes never do",
                        change.deleted_together, change.revision
                    )),
                    None => crate::plan::Removal::OneByOne,
                };
                Some((*pkey, verdict))
            })
            .collect::<BTreeMap<_, _>>();
        self.record.removals.extend(verdicts.clone());
        let removals = Removals {
            verdicts,
            locked,
            ..Removals::default()
        };
        let plan = plan::plan(&desired, &actual, &owned, &self.settings.guard, &removals);
        Ok(Observed {
            plan,
            listing_revision: 0,
            scope,
            entries,
            binding: None,
            stamp: None,
        })
    }

    /// One UFM read, sent again after a transient failure (see [`apply::with_retries`]).
    fn retrying<T>(
        &mut self,
        op: impl Fn(&UfmClient) -> Result<T, UfmError>,
    ) -> Result<T, UfmError> {
        let ufm = &self.ufm;
        match apply::with_retries(&mut self.retried, || Ok(()), || op(ufm)) {
            Ok(result) => result,
            Err(_) => unreachable_gate(),
        }
    }

    /// UFM's `last_updated`, or `None` when it cannot be read (a later check then asks for a
    /// full pass) or this UFM does not serve it (not asked again).
    fn read_stamp(&mut self) -> Option<String> {
        if self.stamp_unserved || !self.tracks_drift {
            return None;
        }
        match self.retrying(UfmClient::last_updated) {
            Ok(Some(stamp)) => Some(stamp),
            Ok(None) => {
                log::info!(
                    "UFM does not serve /resources/pkeys/last_updated: changes made by hand are found by reading all its partitions every poll interval"
                );
                self.stamp_unserved = true;
                None
            }
            Err(e) => {
                log::debug!("UFM's last_updated not read: {e}");
                None
            }
        }
    }

    /// What this listing says about the etcd and UFM being synced.
    fn binding_of(&self, listing: &Listing) -> Binding {
        Binding {
            cluster_id: listing.store.cluster_id.clone(),
            api: self.etcd.api().to_string(),
            prefix: self.settings.prefix.clone(),
            ufm: self.ufm.hosts().to_vec(),
            revision: listing.revision,
            raft_term: listing.store.raft_term,
            dir_created_index: listing.dir.map(|d| d.created_index),
        }
    }

    /// The binding to record after a pass: the new read, keeping the last known directory
    /// while the directory is gone (it is judged against it when it comes back).
    fn progressed(&self, recorded: Option<&Binding>, mut now: Binding) -> Binding {
        if now.dir_created_index.is_none() {
            now.dir_created_index = recorded.and_then(|b| b.dir_created_index);
        }
        if now.raft_term == 0 {
            now.raft_term = recorded.map_or(0, |b| b.raft_term);
        }
        if now.cluster_id.is_none() {
            now.cluster_id = recorded.and_then(|b| b.cluster_id.clone());
        }
        now
    }

    /// Why nothing may be deleted: the record belongs to another etcd or UFM, or etcd went
    /// back in time, now or since it was first noticed (the record keeps the doubt until an
    /// operator adopts or resets it). With the fix for the operator.
    fn locked(&mut self, now: &Binding) -> Option<String> {
        if self.record.held.is_none() {
            self.record.held = match (&self.missing, &self.record.binding) {
                (Some(missing), _) => Some(missing.clone()),
                (None, Some(binding)) => binding.mismatch(now),
                (None, None) => {
                    if self.store.is_some() {
                        log::info!(
                            "ownership record bound to etcd cluster {} ({} keyspace, prefix {}) and UFM {}",
                            now.cluster_id.as_deref().unwrap_or("(unknown)"),
                            now.api,
                            now.prefix,
                            now.ufm.join(",")
                        );
                    }
                    self.record.binding = Some(now.clone());
                    None
                }
            };
        }
        let why = self.record.held.as_ref()?;
        Some(format!(
            "the ownership record does not belong to this etcd and UFM ({why}): nothing is deleted; if this etcd and UFM replace the old ones, adopt the record with `ufm-pkeyd state --adopt`, or start afresh with `ufm-pkeyd state --reset` (its {} partitions then count as unmanaged)",
            self.record.owned.len()
        ))
    }

    /// Verdicts for the deletion candidates: those already judged keep theirs; the others are
    /// judged from the v2 directory or the v3 history since the last pass, and recorded.
    fn judge_removals(
        &mut self,
        candidates: &BTreeSet<PKey>,
        recorded: Option<&Binding>,
        now: &Binding,
        removals: &mut Removals,
    ) {
        let unjudged: BTreeSet<PKey> = candidates
            .iter()
            .filter(|p| !self.record.removals.contains_key(p))
            .copied()
            .collect();
        let (verdicts, unknown) = match recorded {
            _ if unjudged.is_empty() => (BTreeMap::new(), None),
            None => (
                BTreeMap::new(),
                Some("no earlier read of etcd recorded to compare with".to_string()),
            ),
            Some(then) if now.api == "v2" => removals::by_directory(
                &unjudged,
                &self.settings.prefix,
                now.dir_created_index
                    .map(|created_index| crate::net::etcd::Dir { created_index }),
                then.dir_created_index,
            ),
            Some(then) => self.judge_by_history(&unjudged, then.revision),
        };
        self.record.removals.extend(verdicts);
        removals.verdicts = candidates
            .iter()
            .filter_map(|p| self.record.removals.get(p).map(|r| (*p, r.clone())))
            .collect();
        removals.unknown = unknown;
    }

    /// v3: reads the deletions since `from` until every candidate's shows up.
    fn judge_by_history(&self, candidates: &BTreeSet<PKey>, from: i64) -> removals::Judged {
        let prefix = &self.settings.prefix;
        let mut enough = |seen: &[crate::net::etcd::Deletion]| {
            let found: BTreeSet<PKey> = seen
                .iter()
                .filter_map(|d| removals::pkey_of(prefix, &d.key))
                .collect();
            candidates.is_subset(&found)
        };
        match self.etcd.deletions_since(prefix, from, &mut enough) {
            Ok(Some(history)) => removals::by_history(candidates, prefix, from, &history),
            Ok(None) => (BTreeMap::new(), Some("no history to read".to_string())),
            Err(e) => (
                BTreeMap::new(),
                Some(format!("etcd's history could not be read: {e}")),
            ),
        }
    }

    /// An empty prefix whose keys are all in the other keyspace is a configuration mistake
    /// (`--etcd-api`), not the end of every job: deleting would empty UFM of live partitions.
    fn wrong_keyspace(&self) -> Option<String> {
        let other = self.etcd.other_keyspace();
        let listing = other.list(&self.settings.prefix).ok()?;
        (!listing.kvs.is_empty()).then(|| {
            format!(
                "{} is empty in the {} keyspace but has {} keys in the {} keyspace: check --etcd-api",
                self.settings.prefix,
                self.etcd.api(),
                listing.kvs.len(),
                other.api()
            )
        })
    }

    /// One pass over `scope`: plan, record what it will own, apply, record the outcome,
    /// report. The gate is asked before each UFM write: on SIGTERM, or when the leadership is
    /// in doubt, the rest waits for the next pass. Partitions whose writes failed wait for
    /// their own time to be tried again.
    pub(crate) fn pass(
        &mut self,
        gate: &mut dyn Gate,
        scope: &Scope,
    ) -> Result<PassReport, PassError> {
        self.start_term()?;
        let observed = self.observe(scope)?;
        let mut plan = observed.plan;
        match scope {
            Scope::Full => self.view.replace(&plan),
            Scope::Keys(changes) => {
                let keys = changes.values().map(|c| c.key.as_str()).collect();
                self.view.update(&observed.scope, &keys, &mut plan);
            }
        }
        let mut report = PassReport {
            revision: observed.listing_revision,
            ..PassReport::default()
        };
        let unrecorded = self.record_ahead(&plan, &mut report)?;
        let now = Instant::now();
        let actions: Vec<Action> = plan
            .actions
            .iter()
            .filter(|a| !unrecorded.contains(&a.pkey()))
            .filter(|a| self.cooling.may_try(a.pkey(), now))
            .cloned()
            .collect();
        report.skipped += plan.actions.len() - actions.len();
        let applied = apply::apply(&actions, &self.ufm, gate);
        self.retried += applied.retries;
        let seen = (&observed.scope, &observed.entries);
        self.cool_down(seen, &plan, &unrecorded, &applied);
        if !applied.written.is_empty() {
            // Where UFM stands after our own writes, so that they do not count as drift. A
            // change by someone else between our last write and this read goes unnoticed
            // until the next full pass (resync-interval at the latest).
            self.stamp = self.read_stamp();
        } else if *scope == Scope::Full {
            self.stamp = observed.stamp;
        }
        plan.forget = self.confirmed_gone(&plan.forget);
        log_changes(&plan, &applied);
        self.report_lists(&plan, &applied);
        // Owned now: what was owned and recorded ahead, less what is gone.
        for pkey in applied.deleted.iter().chain(plan.forget.iter()) {
            self.record.owned.remove(pkey);
        }
        let still_missing: BTreeSet<PKey> = plan
            .refused_deletes
            .iter()
            .chain(applied.failed.iter())
            .copied()
            .collect();
        self.record
            .removals
            .retain(|p, _| !observed.scope.contains(p) || still_missing.contains(p));
        if let Some(binding) = observed.binding {
            self.record.binding = Some(binding);
        }
        self.save(&mut report);
        report.failures = applied.failures;
        report.skipped += applied.skipped;
        report.counts = applied.counts;
        report.rejected = applied.rejected;
        report.stopped = applied.stopped;
        report.ufm_down = applied.ufm_down;
        report.retries = applied.retries;
        report.written = applied.written;
        report.plan = plan;
        Ok(report)
    }

    /// Puts the partitions whose actions failed, or that have GUIDs UFM refused, or whose
    /// ownership could not be recorded first, on their own retry schedule, and takes off it
    /// those that went through or need nothing any more.
    fn cool_down(
        &mut self,
        (scope, entries): (&BTreeSet<PKey>, &BTreeMap<PKey, KeyChange>),
        plan: &Plan,
        unrecorded: &BTreeSet<PKey>,
        applied: &apply::Applied,
    ) {
        let planned: BTreeSet<PKey> = plan.actions.iter().map(Action::pkey).collect();
        let again: BTreeSet<PKey> = applied
            .failed
            .iter()
            .copied()
            .chain(applied.rejected.iter().map(|r| r.pkey))
            .chain(unrecorded.iter().copied())
            .collect();
        let settled = cooling::Settled {
            scope,
            planned: &planned,
            again: &again,
            succeeded: &applied.succeeded,
            entries,
        };
        self.cooling.settle(&settled, Instant::now());
    }

    /// The partitions whose retry is due now, and when the next one is due otherwise.
    pub(crate) fn retries(&self) -> Retries {
        self.cooling.due(Instant::now())
    }

    /// Follows UFM's `last_updated` from now on, to tell changes made by others (the daemon).
    pub(crate) fn track_drift(&mut self) {
        self.tracks_drift = true;
    }

    /// The partitions waiting for their own retry: changes that failed, GUIDs UFM refused,
    /// partitions whose ownership could not be recorded first.
    pub(crate) fn awaiting_retry(&self) -> impl Iterator<Item = PKey> + '_ {
        self.cooling.waiting()
    }

    /// Whether a partition is waiting for its own retry after failed writes.
    pub(crate) fn cooling(&self, pkey: PKey) -> bool {
        self.cooling.is_waiting(pkey)
    }

    /// UFM requests sent again after a transient failure, since start.
    pub(crate) fn retried(&self) -> u64 {
        self.retried
    }

    /// Whether someone changed UFM since this instance last read all of it or wrote to it,
    /// by `last_updated`: `Some(true)` changed (or not known since), `Some(false)` not; `None`
    /// when this UFM does not serve it (then only a full list finds changes made by hand).
    pub(crate) fn ufm_changed(&mut self) -> Result<Option<bool>, UfmError> {
        if self.stamp_unserved {
            return Ok(None);
        }
        let Some(now) = self.retrying(UfmClient::last_updated)? else {
            self.stamp_unserved = true;
            return Ok(None);
        };
        Ok(Some(self.stamp.as_ref() != Some(&now)))
    }

    /// Records as owned, before any request, every partition this pass may create or adopt.
    /// Returns the partitions whose ownership could not be recorded: their actions wait.
    fn record_ahead(
        &mut self,
        plan: &Plan,
        report: &mut PassReport,
    ) -> Result<BTreeSet<PKey>, PassError> {
        let touched: BTreeSet<PKey> = plan
            .actions
            .iter()
            .filter(|a| matches!(a, Action::Add { .. }))
            .map(Action::pkey)
            .chain(plan.in_sync.iter().copied())
            .filter(|p| !self.record.owned.contains(p))
            .collect();
        if touched.is_empty() || self.store.is_none() {
            return Ok(BTreeSet::new());
        }
        self.record.owned.extend(touched.iter().copied());
        let record = self.record.clone();
        match self.store.as_mut().map(|s| s.save(&record)) {
            Some(Err(SaveError::Lost(e))) => Err(PassError::LostLeadership(e)),
            Some(Err(SaveError::Failed(e))) => {
                log::error!(
                    "{e}; not creating or adopting {} partitions until it is saved",
                    touched.len()
                );
                for p in &touched {
                    self.record.owned.remove(p);
                }
                self.dirty = true;
                report.state_error = Some(e);
                Ok(touched)
            }
            _ => {
                self.saved();
                Ok(BTreeSet::new())
            }
        }
    }

    /// The owned partitions the plan would forget (gone from etcd and from UFM's list) that a
    /// single read confirms are gone: a list can be incomplete.
    fn confirmed_gone(&self, forget: &[PKey]) -> Vec<PKey> {
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
        let Some(store) = &mut self.store else {
            return;
        };
        if report.state_error.is_none() {
            match store.save(&self.record) {
                Ok(()) => self.saved(),
                Err(SaveError::Lost(e)) => report.lost_leadership = Some(e),
                Err(SaveError::Failed(e)) => {
                    log::error!("{e}; ownership is kept in memory and saved again next pass");
                    self.dirty = true;
                    report.state_error = Some(e);
                }
            }
        }
    }

    /// The record was saved: says so if an earlier save had failed.
    fn saved(&mut self) {
        if self.dirty {
            log::info!("ownership record saved again");
        }
        self.dirty = false;
    }

    /// Logs the unmanaged list when it changes, each new invalid entry, unreadable partition
    /// and rejected GUID once, and the guard's refusal every pass (it needs an operator).
    fn report_lists(&mut self, plan: &Plan, applied: &apply::Applied) {
        if plan.unmanaged != self.last_unmanaged {
            if plan.unmanaged.is_empty() {
                log::info!("no unmanaged partitions in UFM");
            } else {
                log::info!(
                    "unmanaged partitions in UFM (not in etcd, never owned; left alone): {}",
                    join(&plan.unmanaged)
                );
            }
            self.last_unmanaged = plan.unmanaged.clone();
        }
        for invalid in &plan.invalid {
            if !self.last_invalid.contains(invalid) {
                log::warn!(
                    "invalid entry {}: {}; its partition is left as it is",
                    invalid.key,
                    invalid.reason
                );
            }
        }
        self.last_invalid = plan.invalid.clone();
        for unreadable in &plan.unreadable {
            if !self.last_unreadable.contains(unreadable) {
                log::warn!(
                    "UFM lists partition {} in a form that cannot be read ({}): it is left as it is",
                    unreadable.0,
                    unreadable.1
                );
            }
        }
        self.last_unreadable = plan.unreadable.clone();
        let rejected: BTreeSet<(PKey, Guid)> =
            applied.rejected.iter().map(|r| (r.pkey, r.guid)).collect();
        for r in &applied.rejected {
            if !self.last_rejected.contains(&(r.pkey, r.guid)) {
                log::warn!(
                    "{}: UFM refused GUID {}: {}; the other GUIDs are in, this one is tried again every pass",
                    r.pkey,
                    r.guid,
                    r.reason
                );
            }
        }
        self.last_rejected = rejected;
        if let Some(reason) = &plan.refusal {
            let way_out = if plan.locked.is_some() {
                ""
            } else {
                "; confirm with --allow-mass-delete (or allow-mass-delete: true) if this is intended"
            };
            log::error!(
                "refusing to delete {} partitions ({}): {reason}{way_out}",
                plan.refused_deletes.len(),
                join(&plan.refused_deletes)
            );
        } else if self.last_refusal.is_some() {
            log::info!("the deletion guard no longer blocks deletions");
        }
        self.last_refusal = plan.refusal.clone();
    }
}

/// `with_retries` with a gate that always opens never returns `Err`.
fn unreachable_gate() -> ! {
    unreachable!("an open gate never closes")
}

fn join(pkeys: &[PKey]) -> String {
    pkeys
        .iter()
        .map(PKey::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// One summary line and one line per changed partition; nothing for an idle pass.
fn log_changes(plan: &Plan, applied: &apply::Applied) {
    if plan.actions.is_empty() {
        return;
    }
    let mut per_partition: BTreeMap<PKey, Vec<String>> = BTreeMap::new();
    for action in &plan.actions {
        let pkey = action.pkey();
        if applied.succeeded.contains(&pkey) && !applied.failed.contains(&pkey) {
            per_partition
                .entry(pkey)
                .or_default()
                .push(action.describe());
        }
    }
    let c = applied.counts;
    log::info!(
        "pass: {} created, {} GUIDs added, {} GUIDs removed, {} deleted, {} failed; {} unmanaged, {} invalid",
        c.created,
        c.guids_added,
        c.guids_removed,
        c.deleted,
        applied.failures.len(),
        plan.unmanaged.len(),
        plan.invalid.len()
    );
    for (pkey, changes) in per_partition {
        log::info!("{pkey}: {}", changes.join(", "));
    }
}
