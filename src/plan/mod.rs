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
    /// Remove GUIDs that etcd no longer lists.
    Remove { pkey: PKey, guids: Vec<Guid> },
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

/// When one pass may delete partitions.
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
    pub(crate) fn refusal(&self, deletes: usize, owned: usize, keys_read: usize) -> Option<String> {
        if self.allow_mass_delete || deletes == 0 {
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
    /// Deletions the guard refused, and why.
    pub refused_deletes: Vec<PKey>,
    pub refusal: Option<String>,
    /// Owned partitions gone from both etcd and UFM: ownership is dropped.
    pub forget: Vec<PKey>,
}

/// Plans one pass. `actual` holds every partition UFM reported, 0x7fff included.
pub(crate) fn plan(
    desired: &Desired,
    actual: &BTreeMap<PKey, Partition>,
    owned: &BTreeSet<PKey>,
    guard: &DeleteGuard,
) -> Plan {
    let mut result = Plan {
        invalid: desired.invalid.clone(),
        ..Plan::default()
    };
    for (pkey, want) in &desired.partitions {
        let actions = sync_partition(*pkey, want, actual.get(pkey));
        if actions.is_empty() {
            result.in_sync.push(*pkey);
        }
        result.actions.extend(actions);
    }
    let untouchable: BTreeSet<PKey> = desired.invalid.iter().filter_map(|i| i.pkey).collect();
    let mut deletes = Vec::new();
    for pkey in actual.keys() {
        let listed = desired.partitions.contains_key(pkey) || untouchable.contains(pkey);
        if listed || !pkey.is_writable() {
            continue;
        }
        if owned.contains(pkey) {
            deletes.push(*pkey);
        } else {
            result.unmanaged.push(*pkey);
        }
    }
    result.forget = owned
        .iter()
        .filter(|p| {
            !actual.contains_key(p)
                && !desired.partitions.contains_key(p)
                && !untouchable.contains(p)
        })
        .copied()
        .collect();
    match guard.refusal(deletes.len(), owned.len(), desired.keys_read) {
        Some(reason) => {
            result.refusal = Some(reason);
            result.refused_deletes = deletes;
        }
        None => result
            .actions
            .extend(deletes.into_iter().map(|pkey| Action::Delete { pkey })),
    }
    result
}

/// Turns every planned deletion into a refused one, for a reason found outside the planner
/// (the prefix is empty here but not in the other etcd keyspace).
pub(crate) fn refuse_deletions(plan: &mut Plan, reason: String) {
    let (deletes, others): (Vec<Action>, Vec<Action>) = plan
        .actions
        .drain(..)
        .partition(|a| matches!(a, Action::Delete { .. }));
    plan.actions = others;
    if deletes.is_empty() {
        return;
    }
    plan.refused_deletes
        .extend(deletes.iter().map(Action::pkey));
    plan.refusal = Some(reason);
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
        });
    }
    actions
}

/// Ownership after a pass: partitions synced or created from etcd are owned; deleted and
/// forgotten ones are not. `succeeded` and `failed` list the partitions whose actions did or
/// did not all go through; a partition with any successful change is owned (we touched it).
pub(crate) fn next_owned(
    owned: &BTreeSet<PKey>,
    plan: &Plan,
    succeeded: &BTreeSet<PKey>,
    deleted: &BTreeSet<PKey>,
) -> BTreeSet<PKey> {
    let mut next = owned.clone();
    next.extend(plan.in_sync.iter().copied());
    next.extend(succeeded.iter().copied());
    for pkey in deleted.iter().chain(plan.forget.iter()) {
        next.remove(pkey);
    }
    next
}

#[cfg(test)]
mod tests;
