//! The sync engine: one level-triggered pass is read etcd (one request), read UFM (one
//! request), plan (pure, in `plan`), apply ([`apply`]), record ownership ([`ownership`]). The
//! daemon loop around it lives in `app::monitor`; `ufm-pkeyd sync` runs one pass. Leader
//! election ([`election`]) decides which instance of an HA pair may run passes.

pub(crate) mod apply;
pub(crate) mod election;
pub(crate) mod ownership;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use crate::model::PKey;
use crate::net::etcd::{EtcdClient, EtcdError};
use crate::net::ufm::{UfmClient, UfmError};
use crate::plan::{self, Action, DeleteGuard, Invalid, Plan, Policy};
use apply::Applied;
pub(crate) use apply::Counts;
use ownership::{Record, StateFile};

/// What the engine syncs and how.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// The etcd prefix holding one key per partition, ending with `/`.
    pub prefix: String,
    /// The local state file.
    pub state_file: PathBuf,
    /// With leader election, ownership is shared through this etcd key instead.
    pub state_key: Option<String>,
    pub guard: DeleteGuard,
    pub policy: Policy,
}

/// What stopped a pass before it could plan.
#[derive(Debug)]
pub(crate) enum PassError {
    /// etcd could not be read: nothing was changed in UFM.
    Etcd(EtcdError),
    /// UFM's partitions could not be read: nothing was changed.
    Ufm(UfmError),
    /// The shared ownership record could not be read: nothing was changed.
    Ownership(String),
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
pub(crate) struct PassReport {
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

impl PassReport {
    /// Whether every planned change went through (refused deletions count as not).
    pub(crate) fn succeeded(&self) -> bool {
        self.failures.is_empty() && self.plan.refusal.is_none() && self.state_error.is_none()
    }
}

/// The engine: clients, settings and the ownership it keeps.
pub(crate) struct Engine {
    etcd: EtcdClient,
    ufm: UfmClient,
    settings: Settings,
    /// Where ownership is recorded; `None` in a dry run.
    record: Option<Record>,
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
    /// Opens the engine: reads the ownership record (the state file; with a shared record in
    /// etcd, before the first pass of each leadership term). In a dry run nothing is recorded
    /// and a missing state directory is tolerated; a corrupt state file never is.
    pub(crate) fn open(
        etcd: EtcdClient,
        ufm: UfmClient,
        settings: Settings,
        dry_run: bool,
    ) -> Result<Engine, String> {
        let (record, owned, ownership_stale) = match &settings.state_key {
            Some(key) if dry_run => (None, Record::load_from_etcd(&etcd, key)?, false),
            Some(key) => {
                let record = Record::Etcd {
                    etcd: Box::new(etcd.clone()),
                    key: key.clone(),
                };
                (Some(record), BTreeSet::new(), true)
            }
            None => match StateFile::open(&settings.state_file) {
                Ok((file, owned)) => (Some(Record::File(file)).filter(|_| !dry_run), owned, false),
                Err(e) if dry_run && !settings.state_file.exists() => {
                    log::warn!("{e}; planning as if nothing were owned");
                    (None, BTreeSet::new(), false)
                }
                Err(e) => return Err(e),
            },
        };
        Ok(Engine {
            etcd,
            ufm,
            settings,
            record,
            ownership_stale,
            owned,
            last_unmanaged: Vec::new(),
            last_invalid: Vec::new(),
            last_refusal: None,
        })
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
        &self.owned
    }

    /// Marks ownership kept in etcd to be read again before the next pass.
    pub(crate) fn ownership_may_have_changed(&mut self) {
        if matches!(self.record, Some(Record::Etcd { .. })) {
            self.ownership_stale = true;
        }
    }

    fn refresh_ownership(&mut self) -> Result<(), PassError> {
        if let (true, Some(Record::Etcd { etcd, key })) = (self.ownership_stale, &self.record) {
            self.owned = Record::load_from_etcd(etcd, key).map_err(PassError::Ownership)?;
            self.ownership_stale = false;
        }
        Ok(())
    }

    /// Reads both sides and plans, changing nothing.
    pub(crate) fn plan(&self) -> Result<(Plan, i64), PassError> {
        let prefix = &self.settings.prefix;
        let listing = self.etcd.list(prefix).map_err(PassError::Etcd)?;
        let entries = listing
            .kvs
            .iter()
            .map(|kv| (kv.key.as_str(), &kv.value[..]));
        let desired = plan::desired_from_listing(prefix, entries, &self.settings.policy);
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
    pub(crate) fn pass(&mut self, stop: &mut dyn FnMut() -> bool) -> Result<PassReport, PassError> {
        self.refresh_ownership()?;
        let (plan, revision) = self.plan()?;
        let applied = apply::apply(&plan.actions, &self.ufm, stop);
        log_changes(&plan, &applied);
        self.report_lists(&plan);
        let mut report = PassReport {
            revision,
            failures: applied.failures,
            skipped: applied.skipped,
            counts: applied.counts,
            ..PassReport::default()
        };
        let next = plan::next_owned(&self.owned, &plan, &applied.succeeded, &applied.deleted);
        if next != self.owned {
            if let Some(record) = &self.record {
                if let Err(e) = record.save(&next) {
                    log::error!("{e}");
                    report.state_error = Some(e);
                }
            }
            self.owned = next;
        }
        report.plan = plan;
        Ok(report)
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

fn join(pkeys: &[PKey]) -> String {
    pkeys
        .iter()
        .map(PKey::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// One summary line and one line per changed partition; nothing for an idle pass.
fn log_changes(plan: &Plan, applied: &Applied) {
    if plan.actions.is_empty() {
        return;
    }
    let mut per_partition: BTreeMap<PKey, Vec<String>> = BTreeMap::new();
    for action in &plan.actions {
        if !applied.failed.contains(&action.pkey()) {
            per_partition
                .entry(action.pkey())
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
