//! What a pass knows before it plans: one [`Evidence`] value, built by one of two readers and
//! consumed by one planning path.
//!
//! - [`Sides::read_everything`]: the whole prefix (one linearizable etcd read) and UFM's whole
//!   list (one request); judges from etcd's history or directory how the keys of owned
//!   partitions left; checks that the ownership record belongs to this etcd and UFM.
//! - [`Sides::read_named`]: only some partitions. For each, every key under the prefix known
//!   to name it (from the last complete read and the watch since: `0x5b9`, `0x05b9` and
//!   `0X5B9` are one PKey) is read again linearizably, and its partition with UFM's single-PKey
//!   read. Two spellings of one PKey, an invalid entry, a partition UFM lists oddly: the same
//!   rules as the whole prefix, since the same function builds the desired state from the keys
//!   read. How a key left is what the watch said (recorded in the ownership record); a
//!   partition with no verdict is left for the next complete read to judge.
//!
//! A single read that UFM answers with something unreadable is a failed read of that
//! partition: it is left as it is and tried again, never taken as "nothing to do".
//!
//! The etcd side is behind [`EtcdReads`] and UFM behind [`UfmOps`], so the engine is tested
//! with recorded answers.

use std::collections::{BTreeMap, BTreeSet};

use super::PassError;
use super::apply::{UfmOps, with_retries};
use super::ownership::{Binding, Ownership, Request, RequestOp};
use super::removals::{self, pkey_of};
use super::stamp::Read;
use crate::model::{PKey, Partition};
use crate::net::etcd::{Api, Deletion, EtcdClient, EtcdError, History, KeyValue, Listing};
use crate::net::ufm::UfmError;
use crate::plan::{self, Actual, Desired, Policy, Removal, Removals};

/// The etcd reads a pass makes. [`EtcdClient`] is the real one.
pub(crate) trait EtcdReads {
    /// Every key under `prefix`, linearizably.
    fn list(&self, prefix: &str) -> Result<Listing, EtcdError>;
    /// One key, linearizably.
    fn get(&self, key: &str) -> Result<Option<KeyValue>, EtcdError>;
    /// v3: deletions under `prefix` after `from`, until `enough` (v2: `None`).
    fn deletions_since(
        &self,
        prefix: &str,
        from: i64,
        enough: &mut dyn FnMut(&[Deletion]) -> bool,
    ) -> Result<Option<History>, EtcdError>;
    /// How many keys the other keyspace holds under `prefix`, if it can be read.
    fn keys_in_other_keyspace(&self, prefix: &str) -> Option<usize>;
    fn api(&self) -> Api;
}

impl EtcdReads for EtcdClient {
    fn list(&self, prefix: &str) -> Result<Listing, EtcdError> {
        EtcdClient::list(self, prefix)
    }

    fn get(&self, key: &str) -> Result<Option<KeyValue>, EtcdError> {
        EtcdClient::get(self, key)
    }

    fn deletions_since(
        &self,
        prefix: &str,
        from: i64,
        enough: &mut dyn FnMut(&[Deletion]) -> bool,
    ) -> Result<Option<History>, EtcdError> {
        EtcdClient::deletions_since(self, prefix, from, enough)
    }

    fn keys_in_other_keyspace(&self, prefix: &str) -> Option<usize> {
        self.other_keyspace().list(prefix).ok().map(|l| l.kvs.len())
    }

    fn api(&self) -> Api {
        EtcdClient::api(self)
    }
}

/// The keys under the prefix that name each partition, as the last complete read and the
/// watch since have seen them; each with whether it was there when last seen.
#[derive(Debug, Default)]
pub(crate) struct Spellings {
    keys: BTreeMap<PKey, BTreeMap<String, bool>>,
}

impl Spellings {
    /// A complete read of the prefix saw these keys and no others.
    pub(crate) fn replace<'a>(&mut self, prefix: &str, keys: impl IntoIterator<Item = &'a str>) {
        self.keys.clear();
        for key in keys {
            if let Some(pkey) = pkey_of(prefix, key) {
                self.seen(pkey, key, true);
            }
        }
    }

    /// `key`, which names `pkey`, was seen there or gone.
    pub(crate) fn seen(&mut self, pkey: PKey, key: &str, present: bool) {
        self.keys
            .entry(pkey)
            .or_default()
            .insert(key.to_string(), present);
    }

    /// Every key known to name `pkey`, with whether it was there when last seen.
    fn keys_of(&self, pkey: PKey) -> Vec<(String, bool)> {
        self.keys
            .get(&pkey)
            .map(|keys| keys.iter().map(|(k, p)| (k.clone(), *p)).collect())
            .unwrap_or_default()
    }
}

/// What a pass read of both sides, restricted to the partitions it covers.
#[derive(Debug, Default)]
pub(crate) struct Evidence {
    /// The partitions covered; `None`: every partition (a complete read).
    pub covered: Option<BTreeSet<PKey>>,
    pub desired: Desired,
    pub actual: Actual,
    /// Covered partitions whose single read failed (an odd answer): left as they are, tried
    /// again, with the reason.
    pub unread: BTreeMap<PKey, String>,
    /// Covered partitions one of whose keys left etcd after the watch last reported it: the
    /// watch will report how (a bulk removal must be judged as one), so they wait for it.
    pub raced: BTreeSet<PKey>,
    /// The owned partitions among those covered.
    pub owned: BTreeSet<PKey>,
    pub removals: Removals,
    /// A key under the prefix that names each partition etcd wants (or names invalidly), as
    /// read: recorded with the partition's ownership.
    pub keys: BTreeMap<PKey, String>,
    /// The revision (v3) or index (v2) of a complete read: the watch goes on after it.
    pub revision: i64,
    /// UFM's `last_updated`, read just before its list (a complete read by the daemon).
    pub stamp: Option<Read>,
}

impl Evidence {
    /// Every partition this evidence says something about.
    pub(crate) fn pkeys(&self) -> BTreeSet<PKey> {
        let mut all: BTreeSet<PKey> = self.covered.clone().unwrap_or_default();
        all.extend(self.desired.partitions.keys());
        all.extend(self.actual.partitions.keys());
        all.extend(self.actual.unreadable.keys());
        all.extend(self.desired.invalid.iter().filter_map(|i| i.pkey));
        all.extend(self.owned.iter());
        all
    }
}

/// Both sides of a pass, and what a read needs to know.
pub(crate) struct Sides<'a, E, U> {
    pub etcd: &'a E,
    pub ufm: &'a U,
    pub prefix: &'a str,
    pub policy: &'a Policy,
    /// UFM requests sent again after a transient failure (counted for the metrics).
    pub retried: &'a mut u64,
    /// Whether UFM's `last_updated` is read with the list (the daemon follows it).
    pub stamp: bool,
}

impl<'a, E: EtcdReads, U: UfmOps> Sides<'a, E, U> {
    /// Both sides with what a read needs of `settings`; `stamp`: read UFM's `last_updated`
    /// with its list.
    pub(crate) fn new(
        (etcd, ufm): (&'a E, &'a U),
        settings: &'a super::Settings,
        retried: &'a mut u64,
        stamp: bool,
    ) -> Self {
        Sides {
            etcd,
            ufm,
            prefix: &settings.prefix,
            policy: &settings.policy,
            retried,
            stamp,
        }
    }

    /// Reads the whole prefix and UFM's whole list, checks that the ownership record belongs
    /// to them, and judges how the keys of owned partitions left.
    ///
    /// An operator's request (`request`) is carried out here: `state --adopt` or `--reset`
    /// before the record is checked against what was read, `state --confirm-deletions` on the
    /// deletions it names (recorded as one-by-one removals, so that a retry needs no new
    /// confirmation).
    pub(crate) fn read_everything(
        &mut self,
        ownership: &mut Ownership,
        spellings: &mut Spellings,
        request: Option<&Request>,
    ) -> Result<Evidence, PassError> {
        let listing = self.etcd.list(self.prefix).map_err(PassError::Etcd)?;
        let now = self.binding_of(&listing);
        let entries = listing
            .kvs
            .iter()
            .map(|kv| (kv.key.as_str(), &kv.value[..]));
        let desired = plan::desired_from_listing(self.prefix, entries, self.policy);
        spellings.replace(self.prefix, listing.kvs.iter().map(|kv| kv.key.as_str()));
        let keys = keys_of(self.prefix, listing.kvs.iter().map(|kv| kv.key.as_str()));
        // The raw listing is not needed any more: free it before UFM's list arrives.
        drop(listing);
        // Read before the list: a change made after it moves the stamp on, so it is seen.
        let stamp = if self.stamp {
            self.read_stamp().ok()
        } else {
            None
        };
        let list = self.retrying(|ufm| ufm.list()).map_err(PassError::Ufm)?;
        let actual = Actual {
            partitions: list.partitions.into_iter().map(|p| (p.pkey, p)).collect(),
            unreadable: list.unreadable.into_iter().collect(),
        };
        if let Some(request) = request.filter(|r| r.op != RequestOp::ConfirmDeletions) {
            adopt_or_reset(ownership, &now, request);
        }
        let locked = ownership.lock_for(&now);
        let mut removals = Removals {
            locked: locked.clone(),
            ..Removals::default()
        };
        let candidates = plan::deletion_candidates(&desired, &actual, ownership.owned());
        if locked.is_none() && !candidates.is_empty() {
            self.judge(ownership, &candidates, &now, &mut removals);
            if desired.keys_read == 0 {
                removals.suspect = self.wrong_keyspace();
            }
            if let Some(request) = request {
                removals.confirmed = candidates
                    .iter()
                    .filter(|p| request.covers(**p))
                    .copied()
                    .collect();
                let confirmed = removals.confirmed.iter().map(|p| (*p, Removal::OneByOne));
                ownership.judged(confirmed);
            }
        }
        if locked.is_none() {
            ownership.progressed(now.clone());
        }
        Ok(Evidence {
            covered: None,
            owned: ownership.owned().clone(),
            desired,
            actual,
            removals,
            keys,
            revision: now.revision,
            stamp,
            ..Evidence::default()
        })
    }

    /// Reads the partitions `pkeys` only: each key known to name them from etcd (one
    /// linearizable read each) and each partition from UFM on its own.
    pub(crate) fn read_named(
        &mut self,
        pkeys: &BTreeSet<PKey>,
        ownership: &Ownership,
        spellings: &mut Spellings,
    ) -> Result<Evidence, PassError> {
        let mut evidence = Evidence {
            covered: Some(pkeys.clone()),
            ..Evidence::default()
        };
        let mut read: Vec<(String, Vec<u8>)> = Vec::new();
        for pkey in pkeys {
            for (key, was_there) in spellings.keys_of(*pkey) {
                let found = self.etcd.get(&key).map_err(PassError::Etcd)?;
                if was_there && found.is_none() {
                    evidence.raced.insert(*pkey);
                }
                spellings.seen(*pkey, &key, found.is_some());
                if let Some(kv) = found {
                    read.push((key, kv.value));
                }
            }
        }
        let listed = read
            .iter()
            .filter(|(key, _)| {
                pkey_of(self.prefix, key).is_some_and(|p| !evidence.raced.contains(&p))
            })
            .map(|(k, v)| (k.as_str(), &v[..]));
        evidence.desired = plan::desired_from_listing(self.prefix, listed, self.policy);
        evidence.keys = keys_of(self.prefix, read.iter().map(|(k, _)| k.as_str()));
        for pkey in pkeys.difference(&evidence.raced) {
            match self.retrying(|ufm| ufm.get(*pkey)) {
                Ok(Some(partition)) => {
                    evidence.actual.partitions.insert(*pkey, partition);
                }
                Ok(None) => {}
                Err(UfmError::BadAnswer(reason)) => {
                    evidence.actual.unreadable.insert(*pkey, reason.clone());
                    evidence.unread.insert(*pkey, reason);
                }
                Err(e) => return Err(PassError::Ufm(e)),
            }
        }
        evidence.owned = ownership
            .owned()
            .iter()
            .filter(|p| pkeys.contains(p) && !evidence.raced.contains(p))
            .copied()
            .collect();
        evidence.removals.locked = ownership.refusal();
        let candidates =
            plan::deletion_candidates(&evidence.desired, &evidence.actual, &evidence.owned);
        for pkey in candidates {
            match ownership.verdict(pkey) {
                Some(verdict) => {
                    evidence.removals.verdicts.insert(pkey, verdict.clone());
                }
                None => {
                    evidence.removals.deferred.insert(pkey);
                }
            }
        }
        Ok(evidence)
    }

    /// Reads back the partitions `pkeys` after writes: each with the single-PKey read, or,
    /// after a full pass (which read the list anyway) that wrote more than a few, with one
    /// list. `Err` for a partition whose read failed.
    pub(crate) fn read_back(
        &mut self,
        pkeys: &BTreeSet<PKey>,
        full: bool,
    ) -> BTreeMap<PKey, Result<Option<Partition>, String>> {
        if full && pkeys.len() > READ_BACK_BY_LIST {
            match self.retrying(|ufm| ufm.list()) {
                Ok(list) => {
                    let mut back: BTreeMap<PKey, Result<Option<Partition>, String>> =
                        pkeys.iter().map(|p| (*p, Ok(None))).collect();
                    for partition in list.partitions {
                        if let Some(slot) = back.get_mut(&partition.pkey) {
                            *slot = Ok(Some(partition));
                        }
                    }
                    for (pkey, reason) in list.unreadable {
                        if let Some(slot) = back.get_mut(&pkey) {
                            *slot = Err(reason);
                        }
                    }
                    return back;
                }
                Err(e) => {
                    let why = format!("UFM's list could not be read back: {e}");
                    return pkeys.iter().map(|p| (*p, Err(why.clone()))).collect();
                }
            }
        }
        pkeys
            .iter()
            .map(|pkey| {
                let back = self
                    .retrying(|ufm| ufm.get(*pkey))
                    .map_err(|e| format!("{pkey} could not be read back: {e}"));
                (*pkey, back)
            })
            .collect()
    }

    /// UFM's `last_updated`; `Err` only when UFM gave no answer at all (the caller deals with
    /// UFM being down). A 404 or an odd answer is a read that cannot be used, asked again next
    /// time.
    pub(crate) fn read_stamp(&mut self) -> Result<Read, UfmError> {
        match self.retrying(|ufm| ufm.last_updated()) {
            Ok(Some(value)) => Ok(Read::Value(value)),
            Ok(None) => Ok(Read::Unusable(
                "UFM does not serve /resources/pkeys/last_updated".to_string(),
            )),
            Err(e) if e.is_no_answer() => Err(e),
            Err(e) => Ok(Read::Unusable(format!(
                "UFM's last_updated could not be read: {e}"
            ))),
        }
    }

    /// One UFM read, sent again after a transient failure (see [`with_retries`]).
    fn retrying<T>(&mut self, op: impl Fn(&U) -> Result<T, UfmError>) -> Result<T, UfmError> {
        let ufm = self.ufm;
        match with_retries(self.retried, || Ok(()), || op(ufm)) {
            Ok(result) => result,
            // The gate given always opens.
            Err(reason) => Err(UfmError::Stopped(reason)),
        }
    }

    /// What this listing says about the etcd and UFM being synced.
    pub(crate) fn binding_of(&self, listing: &Listing) -> Binding {
        Binding {
            cluster_id: listing.store.cluster_id.clone(),
            api: self.etcd.api().to_string(),
            prefix: self.prefix.to_string(),
            ufm: self.ufm.hosts(),
            ufm_site: self.ufm.site(),
            revision: listing.revision,
            raft_term: listing.store.raft_term,
            dir_created_index: listing.dir.map(|d| d.created_index),
        }
    }

    /// Verdicts for the deletion candidates: those already judged keep theirs; the others are
    /// judged from the v2 directory or the v3 history since the last complete read, and
    /// recorded.
    fn judge(
        &self,
        ownership: &mut Ownership,
        candidates: &BTreeSet<PKey>,
        now: &Binding,
        removals: &mut Removals,
    ) {
        let unjudged: BTreeSet<PKey> = candidates
            .iter()
            .filter(|p| ownership.verdict(**p).is_none())
            .copied()
            .collect();
        // v3's history shows each key leaving: a verdict from it proves the key existed.
        let mut by_history = false;
        let (verdicts, unknown) = match ownership.binding() {
            _ if unjudged.is_empty() => (BTreeMap::new(), None),
            None => (
                BTreeMap::new(),
                Some("no earlier read of etcd recorded to compare with".to_string()),
            ),
            Some(then) if now.api == "v2" => removals::by_directory(
                &unjudged,
                self.prefix,
                now.dir_created_index
                    .map(|created_index| crate::net::etcd::Dir { created_index }),
                then.dir_created_index,
            ),
            Some(then) => {
                by_history = true;
                self.judge_by_history(&unjudged, then.revision)
            }
        };
        // A partition the record owns but whose key it never saw, nor etcd's history shows
        // leaving, may have been claimed by a restored or edited record: it is not deleted on
        // the absence of its key alone.
        let unproven: Vec<(PKey, Removal)> = unjudged
            .iter()
            .filter(|p| ownership.key_of(**p).is_none())
            .filter(|p| !(by_history && verdicts.contains_key(*p)))
            .map(|p| (*p, Removal::Bulk(UNPROVEN.to_string())))
            .collect();
        ownership.judged(verdicts);
        ownership.judged(unproven);
        removals.verdicts = candidates
            .iter()
            .filter_map(|p| ownership.verdict(*p).map(|r| (*p, r.clone())))
            .collect();
        removals.unknown = unknown;
    }

    /// v3: reads the deletions since `from` until every candidate's shows up.
    fn judge_by_history(&self, candidates: &BTreeSet<PKey>, from: i64) -> removals::Judged {
        let prefix = self.prefix;
        let mut enough = |seen: &[Deletion]| {
            let found: BTreeSet<PKey> = seen
                .iter()
                .filter_map(|d| pkey_of(prefix, &d.key))
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
        let count = self.etcd.keys_in_other_keyspace(self.prefix)?;
        (count > 0).then(|| {
            format!(
                "{} is empty in the {} keyspace but has {count} keys in the {} keyspace: check --etcd-api",
                self.prefix,
                self.etcd.api(),
                self.etcd.api().other()
            )
        })
    }
}

/// Why a deletion is refused for a partition the record claims with no evidence of its key.
const UNPROVEN: &str = "the ownership record claims them but never saw their keys in etcd, nor does etcd's history show the keys leaving (a restored or edited record?); confirm with `ufm-pkeyd state --confirm-deletions` if they are ufm-pkeyd's";

/// A key naming each partition among `keys` (the last one read of several spellings).
fn keys_of<'a>(prefix: &str, keys: impl IntoIterator<Item = &'a str>) -> BTreeMap<PKey, String> {
    keys.into_iter()
        .filter_map(|key| Some((pkey_of(prefix, key)?, key.to_string())))
        .collect()
}

/// Carries out an operator's `state --adopt` or `--reset`, and says so.
fn adopt_or_reset(ownership: &mut Ownership, now: &Binding, request: &Request) {
    let reset = request.op == RequestOp::Reset;
    match ownership.adopt_or_reset(now, reset) {
        Ok(()) => log::info!(
            "ownership record {} at the request of {} (`ufm-pkeyd {}`): {} partitions owned; bound to {}",
            if reset { "reset" } else { "adopted" },
            request.by,
            request.op.command(),
            ownership.owned().len(),
            now.describe()
        ),
        Err(e) => log::error!(
            "`ufm-pkeyd {}` by {} could not be carried out: {e}",
            request.op.command(),
            request.by
        ),
    }
}

/// A full pass that wrote more partitions than this reads them back with one list instead of
/// one read each.
const READ_BACK_BY_LIST: usize = 8;
