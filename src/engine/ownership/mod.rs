//! Ownership: which partitions ufm-pkeyd owns, where that is recorded, and whether the record
//! belongs to the etcd and UFM in use. [`Ownership`] is the one owner of the record: the engine
//! asks it what is owned, tells it what a pass is about to create or found gone, and asks it
//! why deletions are refused (the operator's refusal text lives here, written once).
//!
//! The record itself, its on-disk format and where it lives (the state file, or with leader
//! election an etcd key with a local copy) are in [`record`].

mod record;
mod request;

use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::model::PKey;
use crate::net::etcd::EtcdClient;
use crate::plan::Removal;
use record::Store;
pub(crate) use record::{Binding, Lock, Record, SaveError};
pub(crate) use request::{Op as RequestOp, Request};

/// Where the record lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Place {
    /// The state file (with leader election: this host's copy of the shared record).
    pub state_file: PathBuf,
    /// With leader election, the record is shared through this etcd key.
    pub state_key: Option<String>,
}

/// The record as recorded, and the etcd and UFM configured now.
pub(crate) struct RecordView {
    pub record: Record,
    pub now: Binding,
    /// Why the record does not belong to them, if it does not.
    pub mismatch: Option<String>,
}

/// The ownership record and its store.
pub(crate) struct Ownership {
    /// Where it is recorded; `None` in a dry run (nothing is written or locked).
    store: Option<Store>,
    record: Record,
    /// The record in memory differs from the one recorded (a save failed): saved next pass.
    dirty: bool,
    /// The shared record must be read (again) before the next pass: at the start of each
    /// leadership term, since another instance may have changed it.
    stale: bool,
    /// The shared record vanished from etcd although this host had a copy.
    missing: Option<String>,
    /// Where operators leave requests for this record; `None` in a dry run.
    mailbox: Option<Mailbox>,
    /// What was last said of a request that cannot be used, so that it is said once.
    unusable: Option<String>,
}

impl Ownership {
    /// Opens the record: the state file, read and locked; or with a shared record in etcd,
    /// read before the first pass of each leadership term. In a dry run nothing is locked and
    /// a missing state directory is tolerated; a corrupt state file never is.
    pub(crate) fn open(place: &Place, etcd: &EtcdClient, dry_run: bool) -> Result<Self, String> {
        let mailbox = (!dry_run).then(|| Mailbox::of(place, etcd));
        let ownership = |store, record, stale, missing| Ownership {
            store,
            record,
            dirty: false,
            stale,
            missing,
            mailbox: mailbox.clone(),
            unusable: None,
        };
        match &place.state_key {
            Some(key) => {
                let mut store = Store::etcd(etcd.clone(), key.clone(), place.state_file.clone());
                if dry_run {
                    let loaded = store.load()?;
                    Ok(ownership(None, loaded.record, false, loaded.missing))
                } else {
                    Ok(ownership(Some(store), Record::default(), true, None))
                }
            }
            None => match Store::open_file(&place.state_file, !dry_run) {
                Ok((store, record)) => Ok(ownership(
                    Some(store).filter(|_| !dry_run),
                    record,
                    false,
                    None,
                )),
                Err(e) if dry_run && !place.state_file.exists() => {
                    log::warn!("{e}; planning as if nothing were owned");
                    Ok(ownership(None, Record::default(), false, None))
                }
                Err(e) => Err(e),
            },
        }
    }

    /// A record kept in memory only (tests).
    #[cfg(test)]
    pub(crate) fn in_memory(owned: BTreeSet<PKey>) -> Self {
        Ownership {
            store: Some(Store::Memory),
            record: Record {
                owned,
                ..Record::default()
            },
            dirty: false,
            stale: false,
            missing: None,
            mailbox: None,
            unusable: None,
        }
    }

    /// The partitions owned now.
    pub(crate) fn owned(&self) -> &BTreeSet<PKey> {
        &self.record.owned
    }

    /// Whether a change is recorded anywhere (not a dry run).
    pub(crate) fn records(&self) -> bool {
        self.store.is_some()
    }

    /// Whether the last save failed (it is retried every pass).
    pub(crate) fn unsaved(&self) -> bool {
        self.dirty
    }

    /// The binding recorded with the last complete read, if any.
    pub(crate) fn binding(&self) -> Option<&Binding> {
        self.record.binding.as_ref()
    }

    /// The etcd key last seen naming `pkey`, recorded with its ownership.
    pub(crate) fn key_of(&self, pkey: PKey) -> Option<&str> {
        self.record.keys.get(&pkey).map(String::as_str)
    }

    /// The keys a read saw naming owned partitions (kept in memory, saved with the record).
    pub(crate) fn saw_keys(&mut self, keys: &std::collections::BTreeMap<PKey, String>) {
        for (pkey, key) in keys {
            if self.record.owned.contains(pkey) && self.record.keys.get(pkey) != Some(key) {
                self.record.keys.insert(*pkey, key.clone());
            }
        }
    }

    /// How `pkey`'s key left etcd, if that was judged.
    pub(crate) fn verdict(&self, pkey: PKey) -> Option<&Removal> {
        self.record.removals.get(&pkey)
    }

    /// Records how keys left etcd (kept until their partitions are gone or their keys back).
    pub(crate) fn judged(&mut self, verdicts: impl IntoIterator<Item = (PKey, Removal)>) {
        self.record.removals.extend(verdicts);
    }

    /// `pkey`'s key is in etcd again: how it left before no longer counts.
    pub(crate) fn key_back(&mut self, pkey: PKey) {
        self.record.removals.remove(&pkey);
    }

    /// A new leadership term: the shared record is read again before the next pass, and its
    /// writes compare the election key with this identity (`fence`: key, identity).
    pub(crate) fn new_term(&mut self, fence: Option<(String, String)>) {
        if let Some(store) = &mut self.store {
            if store.is_shared() {
                store.set_fence(fence);
                self.stale = true;
            }
        }
    }

    /// A standby keeps a copy of the shared record in its state file (see
    /// [`Store::copy_shared`]); nothing without a shared record.
    pub(crate) fn copy_shared(&mut self) -> Result<bool, String> {
        match &mut self.store {
            Some(store) => store.copy_shared(),
            None => Ok(false),
        }
    }

    /// At the start of a leadership term: reads the shared record, then writes it back at
    /// once. The write proves this instance may write it, and moves the record's revision on,
    /// so that an old leader's next write (comparing the revision it knew) fails.
    pub(crate) fn start_term(&mut self) -> Result<(), TermError> {
        if !self.stale {
            return Ok(());
        }
        let Some(store) = &mut self.store else {
            return Ok(());
        };
        let loaded = store.load().map_err(TermError::Unreadable)?;
        if let Some(missing) = &loaded.missing {
            log::error!(
                "{missing}: etcd was wiped or restored? Nothing is deleted until an operator adopts or resets the record (ufm-pkeyd state --adopt | --reset)"
            );
        }
        self.record = loaded.record;
        self.missing = loaded.missing;
        match store.save(&self.record) {
            Ok(()) => {}
            Err(SaveError::Lost(e)) => return Err(TermError::Lost(e)),
            Err(SaveError::Failed(e) | SaveError::Changed(e)) => {
                return Err(TermError::Unreadable(e));
            }
        }
        self.stale = false;
        self.dirty = false;
        Ok(())
    }

    /// Before a pass acts: a state file changed on disk by another writer holds the record
    /// (nothing created or deleted until an operator decides), said once.
    pub(crate) fn check_disk(&mut self) {
        let Some(changed) = self.store.as_ref().and_then(Store::changed_on_disk) else {
            return;
        };
        if self.record.held.is_none() {
            log::error!(
                "{changed}; nothing is created or deleted until an operator decides: `ufm-pkeyd state --adopt` takes the file on disk as it is, `--reset` starts afresh"
            );
            self.record.held = Some(REPLACED.to_string());
        }
    }

    /// Why nothing may be deleted: the record belongs to another etcd or UFM, or etcd went
    /// back in time, now (`now`, from a complete read) or since it was first noticed (the
    /// record keeps the doubt until an operator adopts or resets it). A record with no binding
    /// yet is bound to `now`. Returns the operator's text, with the fix.
    pub(crate) fn lock_for(&mut self, now: &Binding) -> Option<String> {
        if self.record.held.is_none() {
            self.record.held = match (&self.missing, &self.record.binding) {
                (Some(missing), _) => Some(missing.clone()),
                (None, Some(binding)) => binding.mismatch(now),
                (None, None) => {
                    if self.records() {
                        log::info!("ownership record bound to {}", now.describe());
                    }
                    self.record.binding = Some(now.clone());
                    None
                }
            };
        }
        self.refusal()
    }

    /// The operator's text when the record is held (see [`Ownership::lock_for`]), without a
    /// new read of etcd: for passes that read only some keys.
    pub(crate) fn refusal(&self) -> Option<String> {
        let why = self.record.held.as_ref()?;
        let adopt = if why == REPLACED {
            "if the file on disk is the right one, take it with `ufm-pkeyd state --adopt`"
        } else {
            "if this etcd and UFM replace the old ones, adopt the record with `ufm-pkeyd state --adopt`"
        };
        Some(format!(
            "the ownership record is held ({why}): nothing is deleted; {adopt}, or start afresh with `ufm-pkeyd state --reset` (its {} then count as unmanaged)",
            crate::text::count(self.record.owned.len(), "partition")
        ))
    }

    /// After a complete read: the binding to record, keeping what the new read does not say
    /// (the last known v2 directory while it is gone, the term and cluster when not sent).
    pub(crate) fn progressed(&mut self, mut now: Binding) {
        if self.record.held.is_some() {
            return;
        }
        let recorded = self.record.binding.as_ref();
        if now.dir_created_index.is_none() {
            now.dir_created_index = recorded.and_then(|b| b.dir_created_index);
        }
        if now.raft_term == 0 {
            now.raft_term = recorded.map_or(0, |b| b.raft_term);
        }
        if now.cluster_id.is_none() {
            now.cluster_id = recorded.and_then(|b| b.cluster_id.clone());
        }
        if now.ufm_site.is_none() {
            // Not asked this time (a one-shot command reads no version): UFM is the one the
            // binding check just accepted.
            now.ufm_site = recorded.and_then(|b| b.ufm_site.clone());
        }
        self.record.binding = Some(now);
    }

    /// Records as owned, before any request, the partitions a pass may create or adopt.
    /// Returns those whose ownership could not be recorded: their changes wait.
    /// With each, the key that names it (`keys`): the evidence that it came from etcd.
    pub(crate) fn record_ahead(
        &mut self,
        pkeys: impl IntoIterator<Item = PKey>,
        keys: &std::collections::BTreeMap<PKey, String>,
    ) -> Result<Unrecorded, SaveError> {
        let new: BTreeSet<PKey> = pkeys
            .into_iter()
            .filter(|p| !self.record.owned.contains(p))
            .collect();
        if new.is_empty() || !self.records() {
            return Ok(Unrecorded::default());
        }
        self.record.owned.extend(new.iter().copied());
        self.saw_keys(keys);
        match self.save() {
            Ok(()) => Ok(Unrecorded::default()),
            Err(SaveError::Failed(e) | SaveError::Changed(e)) => {
                for p in &new {
                    self.record.owned.remove(p);
                }
                Ok(Unrecorded {
                    pkeys: new,
                    why: Some(e),
                })
            }
            Err(lost) => Err(lost),
        }
    }

    /// Partitions a read showed gone from UFM and from etcd: owned no more.
    pub(crate) fn gone(&mut self, pkeys: &BTreeSet<PKey>) {
        for pkey in pkeys {
            self.record.owned.remove(pkey);
            self.record.removals.remove(pkey);
            self.record.keys.remove(pkey);
        }
    }

    /// Saves the record if it changed or an earlier save failed; a failure is logged and
    /// saved again next pass.
    pub(crate) fn save(&mut self) -> Result<(), SaveError> {
        let Some(store) = &mut self.store else {
            return Ok(());
        };
        match store.save(&self.record) {
            Ok(()) => {
                if self.dirty {
                    log::info!("ownership record saved again");
                }
                self.dirty = false;
                Ok(())
            }
            Err(SaveError::Failed(e)) => {
                log::error!("{e}; ownership is kept in memory and saved again next pass");
                self.dirty = true;
                Err(SaveError::Failed(e))
            }
            Err(SaveError::Changed(e)) => {
                self.check_disk();
                self.dirty = true;
                Err(SaveError::Changed(e))
            }
            Err(lost) => Err(lost),
        }
    }

    /// The operator's request waiting for this record, if one does and may be used: an
    /// expired one is removed, and said so.
    pub(crate) fn request(&mut self) -> Option<Request> {
        let mailbox = self.mailbox.as_ref()?;
        let request = match mailbox.read() {
            Ok(request) => {
                self.unusable = None;
                request?
            }
            Err(e) => {
                // Said once; it costs no full pass (see `request_waiting`).
                if self.unusable.as_ref() != Some(&e) {
                    log::warn!("{e}");
                    self.unusable = Some(e);
                }
                return None;
            }
        };
        if request.expired(crate::utc::unix_now()) {
            log::warn!(
                "the request `ufm-pkeyd {}` by {} expired unused after an hour: removed",
                request.op.command(),
                request.by
            );
            mailbox.clear();
            return None;
        }
        Some(request)
    }

    /// Whether an operator's request that may be used waits (a small read, for the daemon's
    /// loop): one that cannot be used is said once and asks for nothing.
    pub(crate) fn request_waiting(&mut self) -> bool {
        if !self.mailbox.as_ref().is_some_and(Mailbox::waiting) {
            self.unusable = None;
            return false;
        }
        self.request().is_some()
    }

    /// A request was carried out: it is removed (used once).
    pub(crate) fn request_done(&self) {
        if let Some(mailbox) = &self.mailbox {
            mailbox.clear();
        }
    }

    /// An operator's `state --adopt` or `--reset` made while this process held the record:
    /// the record as it is now on disk (or in etcd) is taken, or emptied, and bound to `now`.
    pub(crate) fn adopt_or_reset(&mut self, now: &Binding, reset: bool) -> Result<(), String> {
        if let Some(store) = &mut self.store {
            let loaded = store.load()?;
            self.record = loaded.record;
        }
        self.rebind(now.clone(), reset).map(|_| ())
    }

    /// The record, read again, and how it compares with `now` (the etcd and UFM configured
    /// now, from a read of the prefix).
    pub(crate) fn view(&mut self, now: Binding) -> Result<RecordView, String> {
        if self.stale {
            if let Some(store) = &mut self.store {
                let loaded = store.load()?;
                self.record = loaded.record;
                self.missing = loaded.missing;
                self.stale = false;
            }
        }
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

    /// Binds the record to `now`: keeping what it owns (adopt), or emptied (reset: its
    /// partitions then count as unmanaged). What was judged about removals in the old etcd is
    /// dropped.
    pub(crate) fn rebind(&mut self, now: Binding, reset: bool) -> Result<RecordView, String> {
        if reset {
            self.record.owned.clear();
            self.record.keys.clear();
        }
        self.record.removals.clear();
        self.record.binding = Some(now.clone());
        self.record.held = None;
        self.missing = None;
        if let Some(store) = &mut self.store {
            store.save(&self.record).map_err(|e| e.to_string())?;
        }
        Ok(RecordView {
            record: self.record.clone(),
            now,
            mismatch: None,
        })
    }
}

/// Why a record is held when its state file was replaced under the process.
const REPLACED: &str =
    "the state file was changed on disk by another writer while this process held it";

/// Where operators leave requests for a record: a file beside the state file, or an etcd key
/// beside the shared record.
#[derive(Clone)]
enum Mailbox {
    File(PathBuf),
    Etcd { etcd: Box<EtcdClient>, key: String },
}

impl Mailbox {
    fn of(place: &Place, etcd: &EtcdClient) -> Mailbox {
        match &place.state_key {
            Some(key) => Mailbox::Etcd {
                etcd: Box::new(etcd.clone()),
                key: format!("{key}.request"),
            },
            None => {
                let mut name = place.state_file.as_os_str().to_os_string();
                name.push(".request");
                Mailbox::File(PathBuf::from(name))
            }
        }
    }

    /// Where it is, for messages.
    fn name(&self) -> String {
        match self {
            Mailbox::File(path) => path.display().to_string(),
            Mailbox::Etcd { key, .. } => format!("etcd key {key}"),
        }
    }

    fn put(&self, request: &Request) -> Result<(), String> {
        let text = request.render();
        match self {
            Mailbox::File(path) => {
                crate::atomic_file::replace_with_mode(path, &text, crate::atomic_file::READABLE)
            }
            Mailbox::Etcd { etcd, key } => etcd
                .put(key, &text, None)
                .map_err(|e| format!("cannot write {key}: {e}")),
        }
    }

    /// The request, if one is there. A file owned by anyone but root or this process's user,
    /// or a link, is not a request.
    fn read(&self) -> Result<Option<Request>, String> {
        let bytes = match self {
            Mailbox::File(path) => {
                use std::os::unix::fs::MetadataExt;
                let meta = match std::fs::symlink_metadata(path) {
                    Ok(meta) => meta,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
                };
                // SAFETY: geteuid has no preconditions and cannot fail.
                let me = unsafe { libc::geteuid() };
                if !meta.is_file() || (meta.uid() != 0 && meta.uid() != me) {
                    return Err(format!(
                        "{} is not a regular file of root or of this process's user: ignored; remove it",
                        path.display()
                    ));
                }
                std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?
            }
            Mailbox::Etcd { etcd, key } => match etcd.get(key) {
                Ok(Some(kv)) => kv.value,
                Ok(None) => return Ok(None),
                Err(e) => return Err(format!("cannot read {key}: {e}")),
            },
        };
        Request::parse(&bytes)
            .map(Some)
            .map_err(|e| format!("{} is not a request ({e}): ignored", self.name()))
    }

    fn waiting(&self) -> bool {
        match self {
            Mailbox::File(path) => path.exists(),
            Mailbox::Etcd { etcd, key } => etcd.peek(key).is_ok_and(|kv| kv.is_some()),
        }
    }

    fn clear(&self) {
        let cleared = match self {
            Mailbox::File(path) => match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(format!("cannot remove {}: {e}", path.display()))
                }
                _ => Ok(()),
            },
            Mailbox::Etcd { etcd, key } => match etcd.delete(key) {
                Err(crate::net::etcd::EtcdError::NotFound(_)) | Ok(()) => Ok(()),
                Err(e) => Err(format!("cannot remove {key}: {e}")),
            },
        };
        if let Err(e) = cleared {
            log::warn!("{e}: the request may be carried out again");
        }
    }
}

/// Leaves an operator's request for the process that holds the record at `place`; returns
/// where it was left.
pub(crate) fn leave_request(
    place: &Place,
    etcd: &EtcdClient,
    request: &Request,
) -> Result<String, String> {
    let mailbox = Mailbox::of(place, etcd);
    mailbox.put(request)?;
    Ok(mailbox.name())
}

/// Partitions whose ownership could not be recorded before a pass would create or adopt
/// them, and why.
#[derive(Debug, Default)]
pub(crate) struct Unrecorded {
    pub pkeys: BTreeSet<PKey>,
    pub why: Option<String>,
}

/// Why a leadership term could not start.
#[derive(Debug)]
pub(crate) enum TermError {
    /// Another instance wrote the shared record, or took the leadership.
    Lost(String),
    /// The shared record could not be read or written.
    Unreadable(String),
}
