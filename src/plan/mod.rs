//! The sync planner: from what etcd wants, what UFM has and what ufm-pkeyd owns, the list of
//! UFM changes that makes them agree. Pure functions over plain data, no I/O, so that every
//! branch is unit-tested and its invariants are checked on random states.
//!
//! Rules, in the order a reader needs them:
//! - A valid etcd entry is the truth for its partition: missing GUIDs are added, GUIDs with the
//!   wrong index0 or membership re-added (UFM overwrites them), extra GUIDs removed. Adds come
//!   before removes, so a partition never passes through empty (UFM deletes a partition whose
//!   last GUID is removed).
//! - A partition is deleted only when ufm-pkeyd owns it and its key is absent from a complete
//!   read of the prefix, and the mass-deletion guard agrees.
//! - A partition that was never owned and has no entry is reported as unmanaged, never changed.
//! - An invalid entry (bad key name, bad value, no valid GUID) leaves its partition exactly as
//!   it is. 0x7fff, UFM's default partition, is never touched.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::{Guid, Join, Membership, PKey, Partition, PcoccEntry};

/// How entries become UFM members: pcocc's own OpenSM writer puts VFs at index 0 (a VF needs
/// its partition there) and keeps host ports' index 0 for the default partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Policy {
    pub host_index0: bool,
    pub vf_index0: bool,
    pub membership: Membership,
    pub ip_over_ib: bool,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            host_index0: false,
            vf_index0: true,
            membership: Membership::Full,
            ip_over_ib: true,
        }
    }
}

/// One partition as etcd wants it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DesiredPartition {
    pub members: BTreeMap<Guid, Join>,
    pub ip_over_ib: bool,
}

/// An etcd key under the prefix that cannot be used, and why.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Invalid {
    pub key: String,
    /// The partition it names, when the name is a PKey: that partition is left untouched.
    pub pkey: Option<PKey>,
    pub reason: String,
}

/// What etcd wants, read from one complete listing of the prefix.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Desired {
    pub partitions: BTreeMap<PKey, DesiredPartition>,
    pub invalid: Vec<Invalid>,
    /// How many keys the listing held, valid or not.
    pub keys_read: usize,
}

/// Builds the desired state from every key under `prefix`, given as (key, value) pairs.
pub(crate) fn desired_from_listing<'a>(
    prefix: &str,
    entries: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    policy: &Policy,
) -> Desired {
    let mut desired = Desired::default();
    for (key, value) in entries {
        desired.keys_read += 1;
        let name = key.strip_prefix(prefix).unwrap_or(key);
        match desired_entry(name, value, policy) {
            Ok((pkey, partition)) => {
                if desired.partitions.insert(pkey, partition).is_some() {
                    // Two spellings of one key (0x1a and 0x001a): neither can be trusted.
                    desired.partitions.remove(&pkey);
                    desired.invalid.push(Invalid {
                        key: key.to_string(),
                        pkey: Some(pkey),
                        reason: format!("another key under the prefix also names PKey {pkey}"),
                    });
                }
            }
            Err((pkey, reason)) => desired.invalid.push(Invalid {
                key: key.to_string(),
                pkey,
                reason,
            }),
        }
    }
    // A PKey named by an invalid key is left untouched, even if another spelling was valid.
    for pkey in desired.invalid.iter().filter_map(|i| i.pkey) {
        desired.partitions.remove(&pkey);
    }
    desired.invalid.sort();
    desired
}

type EntryResult = Result<(PKey, DesiredPartition), (Option<PKey>, String)>;

fn desired_entry(name: &str, value: &[u8], policy: &Policy) -> EntryResult {
    if let Some((_, last)) = name.rsplit_once('/') {
        // Not an entry, but if it names a PKey, that partition is left alone all the same.
        return Err((
            last.parse::<PKey>().ok(),
            "not directly under the prefix".to_string(),
        ));
    }
    let pkey = name.parse::<PKey>().map_err(|e| (None, e.to_string()))?;
    if !pkey.is_writable() {
        return Err((
            Some(pkey),
            format!("PKey {pkey} cannot be managed: use a key from 0x1 to 0x7ffe"),
        ));
    }
    let entry = PcoccEntry::parse(value).map_err(|e| (Some(pkey), e.to_string()))?;
    if entry.host_guids.is_empty() && entry.vf_guids.is_empty() {
        return Err((Some(pkey), "no GUID in host_guids or vf_guids".to_string()));
    }
    let mut members = BTreeMap::new();
    let join = |index0| Join {
        membership: policy.membership,
        index0,
    };
    for guid in &entry.host_guids {
        members.insert(*guid, join(policy.host_index0));
    }
    // A GUID listed as both host and VF is a VF: a VF's partition must sit at index 0.
    for guid in &entry.vf_guids {
        members.insert(*guid, join(policy.vf_index0));
    }
    Ok((
        pkey,
        DesiredPartition {
            members,
            ip_over_ib: policy.ip_over_ib,
        },
    ))
}

/// One UFM change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Add (or re-add with new settings) GUIDs; creates the partition when it is missing.
    Add {
        pkey: PKey,
        guids: Vec<Guid>,
        join: Join,
        ip_over_ib: bool,
        creates: bool,
    },
    /// Remove GUIDs that etcd no longer lists; `keep` are the GUIDs the partition must still
    /// hold afterwards (checked in UFM first: a remove must never empty it).
    Remove {
        pkey: PKey,
        guids: Vec<Guid>,
        keep: Vec<Guid>,
    },
    /// Delete an owned partition whose key left etcd.
    Delete { pkey: PKey },
}

impl Action {
    /// The partition the action changes.
    pub(crate) fn pkey(&self) -> PKey {
        match self {
            Action::Add { pkey, .. } | Action::Remove { pkey, .. } | Action::Delete { pkey } => {
                *pkey
            }
        }
    }

    /// A short description, for logs and the dry-run output: "create with 2 GUIDs (full,
    /// index0 on)", "remove 1 GUID", "delete partition".
    pub(crate) fn describe(&self) -> String {
        let guid_count = |n: usize| format!("{n} GUID{}", if n == 1 { "" } else { "s" });
        match self {
            Action::Add {
                guids,
                join,
                creates,
                ..
            } => format!(
                "{} {} ({}, index0 {})",
                if *creates { "create with" } else { "add" },
                guid_count(guids.len()),
                join.membership,
                if join.index0 { "on" } else { "off" }
            ),
            Action::Remove { guids, .. } => format!("remove {}", guid_count(guids.len())),
            Action::Delete { .. } => "delete partition".to_string(),
        }
    }
}

/// When one pass may delete partitions whose keys left etcd in an unknown way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DeleteGuard {
    /// More deletions than this in one pass, and more than half of those owned, are refused.
    pub max_deletes: usize,
    /// The operator confirmed (`--allow-mass-delete`).
    pub allow_mass_delete: bool,
}

impl Default for DeleteGuard {
    fn default() -> DeleteGuard {
        DeleteGuard {
            max_deletes: 10,
            allow_mass_delete: false,
        }
    }
}

impl DeleteGuard {
    /// Why `deletes` deletions out of `owned` owned partitions are refused, if they are. An
    /// empty prefix that would delete several partitions looks like a wrong prefix or keyspace
    /// (`--etcd-api`), not like the end of every job at once.
    fn refusal(&self, deletes: usize, owned: usize, keys_read: usize) -> Option<String> {
        if deletes == 0 {
            return None;
        }
        if keys_read == 0 && deletes >= 2 {
            return Some(format!(
                "the prefix reads empty, which would delete all {deletes} owned partitions"
            ));
        }
        if deletes > self.max_deletes && deletes * 2 > owned {
            return Some(format!(
                "{deletes} of {owned} owned partitions would be deleted in one pass (more than {} and more than half)",
                self.max_deletes
            ));
        }
        None
    }
}

/// How an owned partition's key left etcd, as etcd's history or directory tells.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Removal {
    /// Removed by a request of its own, as pcocc ends a job: the partition goes.
    OneByOne,
    /// Removed together with other keys by one request (a range or recursive delete): an
    /// accident until the operator confirms. The text says what happened.
    Bulk(String),
}

/// What is known about how keys left etcd, for the deletion guard.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Removals {
    /// A verdict for each owned partition whose key is gone, where one could be reached.
    pub verdicts: BTreeMap<PKey, Removal>,
    /// Every deletion is refused and the override does not apply: the ownership record belongs
    /// to another etcd or UFM, or etcd went back in time. The text says how to adopt or reset.
    pub locked: Option<String>,
    /// Every deletion is refused unless the operator allows it: the configuration looks
    /// wrong (the prefix is empty here but not in the other keyspace).
    pub suspect: Option<String>,
    /// Why the partitions without a verdict have none; the count guard decides for them.
    pub unknown: Option<String>,
    /// Candidates left for a pass that reads the whole prefix to judge (a pass that read only
    /// some keys found no verdict for them): neither deleted nor refused now.
    pub deferred: BTreeSet<PKey>,
    /// Candidates an operator confirmed (`ufm-pkeyd state --confirm-deletions`): deleted
    /// whatever the guard says, unless the record is locked.
    pub confirmed: BTreeSet<PKey>,
}

/// Everything one pass should do and report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Changes in the order they must be applied.
    pub actions: Vec<Action>,
    /// Valid entries whose partitions are already as etcd wants: owned from now on.
    pub in_sync: Vec<PKey>,
    /// Partitions in UFM that ufm-pkeyd does not own and etcd does not list.
    pub unmanaged: Vec<PKey>,
    /// Entries that cannot be used.
    pub invalid: Vec<Invalid>,
    /// Partitions UFM listed in a form that cannot be read, with the reason: left alone.
    pub unreadable: Vec<(PKey, String)>,
    /// Deletions the guard refused, and why.
    pub refused_deletes: Vec<PKey>,
    pub refusal: Option<String>,
    /// The ownership record belongs to another etcd or UFM: why, and how to adopt or reset it.
    pub locked: Option<String>,
    /// Owned partitions gone from both etcd and UFM: ownership is dropped.
    pub forget: Vec<PKey>,
}

/// What UFM reported: every partition it listed (0x7fff included), and those it listed in a
/// form that cannot be read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Actual {
    pub partitions: BTreeMap<PKey, Partition>,
    pub unreadable: BTreeMap<PKey, String>,
}

/// The owned partitions whose keys are gone from etcd and which UFM still has: the deletions
/// a pass would make, for which the engine looks for a [`Removal`] verdict.
pub(crate) fn deletion_candidates(
    desired: &Desired,
    actual: &Actual,
    owned: &BTreeSet<PKey>,
) -> BTreeSet<PKey> {
    let untouchable = untouchable(desired, actual);
    owned
        .iter()
        .filter(|p| p.is_writable() && actual.partitions.contains_key(p))
        .filter(|p| !desired.partitions.contains_key(p) && !untouchable.contains(p))
        .copied()
        .collect()
}

/// Partitions left exactly as they are: named by an invalid entry, or unreadable in UFM.
fn untouchable(desired: &Desired, actual: &Actual) -> BTreeSet<PKey> {
    desired
        .invalid
        .iter()
        .filter_map(|i| i.pkey)
        .chain(actual.unreadable.keys().copied())
        .collect()
}

/// Plans one pass.
pub(crate) fn plan(
    desired: &Desired,
    actual: &Actual,
    owned: &BTreeSet<PKey>,
    guard: &DeleteGuard,
    removals: &Removals,
) -> Plan {
    let untouchable = untouchable(desired, actual);
    let mut result = Plan {
        invalid: desired.invalid.clone(),
        unreadable: actual
            .unreadable
            .iter()
            .map(|(p, reason)| (*p, reason.clone()))
            .collect(),
        locked: removals.locked.clone(),
        ..Plan::default()
    };
    for (pkey, want) in &desired.partitions {
        if actual.unreadable.contains_key(pkey) {
            continue;
        }
        let actions = sync_partition(*pkey, want, actual.partitions.get(pkey));
        if actions.is_empty() {
            result.in_sync.push(*pkey);
        }
        result.actions.extend(actions);
    }
    for pkey in actual.partitions.keys() {
        let listed = desired.partitions.contains_key(pkey) || untouchable.contains(pkey);
        if !listed && pkey.is_writable() && !owned.contains(pkey) {
            result.unmanaged.push(*pkey);
        }
    }
    result.forget = owned
        .iter()
        .filter(|p| {
            !actual.partitions.contains_key(p)
                && !desired.partitions.contains_key(p)
                && !untouchable.contains(p)
        })
        .copied()
        .collect();
    let candidates = deletion_candidates(desired, actual, owned);
    let (allowed, refused, reasons) =
        guard_deletions(&candidates, owned.len(), desired.keys_read, guard, removals);
    result
        .actions
        .extend(allowed.into_iter().map(|pkey| Action::Delete { pkey }));
    result.refused_deletes = refused;
    if !reasons.is_empty() {
        result.refusal = Some(reasons.join("; "));
    }
    result
}

/// Splits the deletion candidates into allowed and refused ones, with the reasons for the
/// refusals. A verdict decides where there is one (one by one: delete; together: refuse); the
/// count guard decides for the rest; the operator's `--allow-mass-delete` overrides all but a
/// record that belongs to another etcd or UFM.
fn guard_deletions(
    candidates: &BTreeSet<PKey>,
    owned: usize,
    keys_read: usize,
    guard: &DeleteGuard,
    removals: &Removals,
) -> (Vec<PKey>, Vec<PKey>, Vec<String>) {
    let all: Vec<PKey> = candidates
        .iter()
        .filter(|p| !removals.deferred.contains(p))
        .copied()
        .collect();
    if all.is_empty() {
        return (all, Vec::new(), Vec::new());
    }
    if let Some(reason) = &removals.locked {
        return (Vec::new(), all, vec![reason.clone()]);
    }
    if guard.allow_mass_delete {
        return (all, Vec::new(), Vec::new());
    }
    let (mut allowed, all): (Vec<PKey>, Vec<PKey>) = all
        .into_iter()
        .partition(|p| removals.confirmed.contains(p));
    if let Some(reason) = &removals.suspect {
        return (allowed, all, vec![reason.clone()]);
    }
    let mut refused = Vec::new();
    let mut reasons: Vec<String> = Vec::new();
    let mut unknown = Vec::new();
    for pkey in all {
        match removals.verdicts.get(&pkey) {
            Some(Removal::OneByOne) => allowed.push(pkey),
            Some(Removal::Bulk(why)) => {
                refused.push(pkey);
                if !reasons.contains(why) {
                    reasons.push(why.clone());
                }
            }
            None => unknown.push(pkey),
        }
    }
    match guard.refusal(unknown.len(), owned, keys_read) {
        Some(reason) => {
            let because = removals
                .unknown
                .as_ref()
                .map(|u| format!(" ({u})"))
                .unwrap_or_default();
            reasons.push(format!("{reason}{because}"));
            refused.extend(unknown);
        }
        None => allowed.extend(unknown),
    }
    allowed.sort();
    refused.sort();
    (allowed, refused, reasons)
}

/// The actions that make one partition match its entry: adds grouped by how the GUIDs join
/// (index0 is set per request), then one remove of the extras.
fn sync_partition(pkey: PKey, want: &DesiredPartition, have: Option<&Partition>) -> Vec<Action> {
    let current: BTreeMap<Guid, Join> = have
        .map(|p| p.members.iter().map(|m| (m.guid, m.join)).collect())
        .unwrap_or_default();
    // A wrong IPoIB flag is corrected by re-adding the members: an add carries the flag.
    let flag_wrong = have.is_some_and(|p| p.ip_over_ib != want.ip_over_ib);
    let mut groups: BTreeMap<Join, Vec<Guid>> = BTreeMap::new();
    for (guid, join) in &want.members {
        if flag_wrong || current.get(guid) != Some(join) {
            groups.entry(*join).or_default().push(*guid);
        }
    }
    let mut actions: Vec<Action> = groups
        .into_iter()
        .enumerate()
        .map(|(i, (join, guids))| Action::Add {
            pkey,
            guids,
            join,
            ip_over_ib: want.ip_over_ib,
            creates: have.is_none() && i == 0,
        })
        .collect();
    let extras: Vec<Guid> = current
        .keys()
        .filter(|g| !want.members.contains_key(g))
        .copied()
        .collect();
    if !extras.is_empty() {
        actions.push(Action::Remove {
            pkey,
            guids: extras,
            keep: want.members.keys().copied().collect(),
        });
    }
    actions
}

/// Whether UFM, as read back after a pass's writes (`have`), shows what the pass planned for
/// one partition: deleted when it planned a deletion, else exactly as etcd wants it (`want`).
/// `Err` says what is still missing. A 2xx answer alone proves nothing: UFMs have answered
/// 2xx to writes they did not apply.
pub(crate) fn confirmed(
    pkey: PKey,
    planned: &[Action],
    want: Option<&DesiredPartition>,
    have: Option<&Partition>,
) -> Result<(), String> {
    if planned.iter().any(|a| matches!(a, Action::Delete { .. })) {
        return match have {
            None => Ok(()),
            Some(p) => Err(format!(
                "UFM still has {pkey} with {} GUIDs after its deletion",
                p.members.len()
            )),
        };
    }
    let Some(want) = want else {
        return Ok(());
    };
    let left = sync_partition(pkey, want, have);
    match left.first() {
        None => Ok(()),
        Some(_) if have.is_none() => Err(format!("UFM does not have {pkey} after its writes")),
        Some(_) => Err(format!(
            "UFM does not show every change to {pkey} after its writes ({} still to do: {})",
            left.len(),
            left.iter()
                .map(Action::describe)
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

#[cfg(test)]
mod tests;
