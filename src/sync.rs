//! The sync engine: one level-triggered pass is read etcd (one request), read UFM (one
//! request), plan (pure, in `plan`), apply, record ownership. The daemon loop around it lives
//! in `daemon`; `ufm-pkeyd sync` runs one pass.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::{RawConfig, SyncSettings};
use crate::error::Error;
use crate::etcd::{EtcdClient, EtcdError};
use crate::model::PKey;
use crate::plan::{self, Action, Invalid, Plan};
use crate::state::Ownership;
use crate::state::StateFile;
use crate::ufm::{JoinOptions, UfmClient, UfmError};

/// What stopped a pass before it could plan.
#[derive(Debug)]
pub enum PassError {
    /// etcd could not be read: nothing was changed in UFM.
    Etcd(EtcdError),
    /// UFM's partitions could not be read: nothing was changed.
    Ufm(UfmError),
    /// The shared ownership record could not be read: nothing was changed.
    Ownership(String),
}

impl std::fmt::Display for PassError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PassError::Etcd(e) => write!(f, "{e}"),
            PassError::Ufm(e) => write!(f, "{e}"),
            PassError::Ownership(e) => f.write_str(e),
        }
    }
}

/// What one pass did.
#[derive(Debug, Default)]
pub struct PassReport {
    pub plan: Plan,
    /// The etcd revision (v3) or index (v2) of the listing: the watch starts after it.
    pub revision: i64,
    /// Actions that failed, with the reason; their partitions are retried next pass.
    pub failures: Vec<(Action, String)>,
    /// Actions not tried because an earlier action on the same partition failed.
    pub skipped: usize,
    pub counts: Counts,
    /// The state file could not be written (the pass's changes stand; ownership is kept in
    /// memory and saved again next pass).
    pub state_error: Option<String>,
}

/// Changes applied in one pass.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub created: usize,
    pub guids_added: usize,
    pub guids_removed: usize,
    pub deleted: usize,
}

impl PassReport {
    /// Whether every planned change went through (refused deletions count as not).
    pub fn succeeded(&self) -> bool {
        self.failures.is_empty() && self.plan.refusal.is_none() && self.state_error.is_none()
    }
}

/// The engine: clients, settings and the ownership it keeps.
pub struct Engine {
    pub etcd: EtcdClient,
    pub ufm: UfmClient,
    pub settings: SyncSettings,
    /// Where ownership is recorded; `None` in a dry run.
    state: Option<Ownership>,
    /// Ownership kept in etcd must be read (again) before the next pass: at start and
    /// whenever this instance becomes leader, since another instance may have changed it.
    ownership_stale: bool,
    owned: BTreeSet<PKey>,
    /// What was last reported, so that unchanged lists are not logged every pass.
    last_unmanaged: Vec<PKey>,
    last_invalid: Vec<Invalid>,
    last_refusal: Option<String>,
}

impl Engine {
    /// An engine with this ownership, recorded in `state` (or nowhere for a dry run).
    pub fn new(
        etcd: EtcdClient,
        ufm: UfmClient,
        settings: SyncSettings,
        state: Option<Ownership>,
        owned: BTreeSet<PKey>,
    ) -> Engine {
        let ownership_stale = matches!(state, Some(Ownership::Etcd { .. }));
        Engine {
            etcd,
            ufm,
            settings,
            state,
            ownership_stale,
            owned,
            last_unmanaged: Vec::new(),
            last_invalid: Vec::new(),
            last_refusal: None,
        }
    }

    /// Builds the engine from the configuration. In a dry run a missing state directory is
    /// tolerated (nothing is written); a corrupt state file never is.
    pub fn from_config(config: &RawConfig, dry_run: bool) -> Result<Engine, Error> {
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

    /// The partitions owned now.
    pub fn owned(&self) -> &BTreeSet<PKey> {
        &self.owned
    }

    /// Marks ownership kept in etcd to be read again before the next pass.
    pub fn ownership_may_have_changed(&mut self) {
        if matches!(self.state, Some(Ownership::Etcd { .. })) {
            self.ownership_stale = true;
        }
    }

    fn refresh_ownership(&mut self) -> Result<(), PassError> {
        if let (true, Some(Ownership::Etcd { key })) = (self.ownership_stale, &self.state) {
            self.owned =
                Ownership::load_from_etcd(&self.etcd, key).map_err(PassError::Ownership)?;
            self.ownership_stale = false;
        }
        Ok(())
    }

    /// Reads both sides and plans, changing nothing.
    pub fn plan(&self) -> Result<(Plan, i64), PassError> {
        let listing = self
            .etcd
            .list(&self.settings.prefix)
            .map_err(PassError::Etcd)?;
        let desired =
            plan::desired_from_listing(&self.settings.prefix, &listing.kvs, &self.settings.policy);
        let revision = listing.revision;
        // The raw listing is not needed any more: free it before UFM's list arrives.
        drop(listing);
        let actual: BTreeMap<PKey, _> = self
            .ufm
            .list_partitions()
            .map_err(PassError::Ufm)?
            .into_iter()
            .map(|p| (p.pkey, p))
            .collect();
        let mut plan = plan::plan(&desired, &actual, &self.owned, &self.settings.guard);
        if desired.keys_read == 0 && !self.settings.guard.allow_mass_delete {
            self.guard_against_wrong_keyspace(&mut plan);
        }
        Ok((plan, revision))
    }

    /// An empty prefix whose keys are all in the other keyspace is a configuration mistake
    /// (`--etcd-api`), not the end of every job: deleting would empty UFM of live partitions.
    /// One extra etcd request, only when the prefix is empty and something would be deleted.
    fn guard_against_wrong_keyspace(&self, plan: &mut Plan) {
        if !plan
            .actions
            .iter()
            .any(|a| matches!(a, Action::Delete { .. }))
        {
            return;
        }
        let other = self.etcd.other_keyspace();
        if let Ok(listing) = other.list(&self.settings.prefix) {
            if !listing.kvs.is_empty() {
                plan::refuse_deletions(
                    plan,
                    format!(
                        "{} is empty in the {} keyspace but has {} keys in the {} keyspace: check --etcd-api",
                        self.settings.prefix,
                        self.etcd.api(),
                        listing.kvs.len(),
                        other.api()
                    ),
                );
            }
        }
    }

    /// One full pass: plan, apply, record ownership, report. `stop` is asked between UFM
    /// requests: on SIGTERM the request in flight finishes and the rest waits for next start.
    pub fn pass(&mut self, stop: &mut dyn FnMut() -> bool) -> Result<PassReport, PassError> {
        self.refresh_ownership()?;
        let (plan, revision) = self.plan()?;
        let mut report = PassReport {
            revision,
            ..PassReport::default()
        };
        let mut failed: BTreeSet<PKey> = BTreeSet::new();
        let mut succeeded: BTreeSet<PKey> = BTreeSet::new();
        let mut deleted: BTreeSet<PKey> = BTreeSet::new();
        for action in &plan.actions {
            let pkey = action.pkey();
            // Never remove after a failed add: the partition could pass through empty.
            if failed.contains(&pkey) || stop() {
                report.skipped += 1;
                continue;
            }
            match self.apply(action) {
                Ok(()) => {
                    count(&mut report.counts, action);
                    succeeded.insert(pkey);
                    if matches!(action, Action::Delete { .. }) {
                        deleted.insert(pkey);
                    }
                }
                Err(e) => {
                    log::error!("{pkey}: {} failed: {e}", describe(action));
                    failed.insert(pkey);
                    report.failures.push((action.clone(), e.to_string()));
                }
            }
        }
        log_changes(&plan, &report, &failed);
        self.report_lists(&plan);
        let next = plan::next_owned(&self.owned, &plan, &succeeded, &deleted);
        if next != self.owned {
            if let Some(state) = &self.state {
                if let Err(e) = state.save(&self.etcd, &next) {
                    log::error!("{e}");
                    report.state_error = Some(e);
                }
            }
            self.owned = next;
        }
        report.plan = plan;
        Ok(report)
    }

    fn apply(&self, action: &Action) -> Result<(), UfmError> {
        match action {
            Action::Add {
                pkey,
                guids,
                spec,
                ip_over_ib,
                ..
            } => self.ufm.add_guids(
                *pkey,
                guids,
                JoinOptions {
                    membership: spec.membership,
                    index0: spec.index0,
                    ip_over_ib: *ip_over_ib,
                },
            ),
            Action::Remove { pkey, guids } => self.ufm.remove_guids(*pkey, guids),
            // Already gone is what we wanted.
            Action::Delete { pkey } => match self.ufm.delete(*pkey) {
                Err(UfmError::NotFound(_)) => Ok(()),
                other => other,
            },
        }
    }

    /// Logs the unmanaged list when it changes, each new invalid entry once, and the guard's
    /// refusal every pass (it needs an operator).
    fn report_lists(&mut self, plan: &Plan) {
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
        if let Some(reason) = &plan.refusal {
            log::error!(
                "refusing to delete {} partitions ({}): {reason}; confirm with --allow-mass-delete (or allow-mass-delete: true) if this is intended",
                plan.refused_deletes.len(),
                join(&plan.refused_deletes)
            );
        } else if self.last_refusal.is_some() {
            log::info!("the mass-deletion guard no longer blocks deletions");
        }
        self.last_refusal = plan.refusal.clone();
    }
}

fn count(counts: &mut Counts, action: &Action) {
    match action {
        Action::Add { guids, creates, .. } => {
            counts.guids_added += guids.len();
            counts.created += usize::from(*creates);
        }
        Action::Remove { guids, .. } => counts.guids_removed += guids.len(),
        Action::Delete { .. } => counts.deleted += 1,
    }
}

/// A short description of an action, for logs and the dry-run output.
pub fn describe(action: &Action) -> String {
    match action {
        Action::Add {
            guids,
            spec,
            creates,
            ..
        } => format!(
            "{} {} GUID{} ({}, index0 {})",
            if *creates { "create with" } else { "add" },
            guids.len(),
            plural(guids.len()),
            spec.membership,
            if spec.index0 { "on" } else { "off" }
        ),
        Action::Remove { guids, .. } => {
            format!("remove {} GUID{}", guids.len(), plural(guids.len()))
        }
        Action::Delete { .. } => "delete partition".to_string(),
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn join(pkeys: &[PKey]) -> String {
    pkeys
        .iter()
        .map(PKey::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// One summary line and one line per changed partition; nothing for an idle pass.
fn log_changes(plan: &Plan, report: &PassReport, failed: &BTreeSet<PKey>) {
    if plan.actions.is_empty() {
        return;
    }
    let mut per_partition: BTreeMap<PKey, Vec<String>> = BTreeMap::new();
    for action in &plan.actions {
        if !failed.contains(&action.pkey()) {
            per_partition
                .entry(action.pkey())
                .or_default()
                .push(describe(action));
        }
    }
    let c = report.counts;
    log::info!(
        "pass: {} created, {} GUIDs added, {} GUIDs removed, {} deleted, {} failed; {} unmanaged, {} invalid",
        c.created,
        c.guids_added,
        c.guids_removed,
        c.deleted,
        report.failures.len(),
        plan.unmanaged.len(),
        plan.invalid.len()
    );
    for (pkey, changes) in per_partition {
        log::info!("{pkey}: {}", changes.join(", "));
    }
}
