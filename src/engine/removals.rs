//! Telling job ends from accidents: how the keys of owned partitions left etcd, judged from
//! what etcd keeps (pure functions; the engine fetches the evidence).
//!
//! pcocc deletes one key per job end, each with a request of its own. An operator's mistake
//! removes many at once: a v3 range delete gives every key the same revision; a v2 recursive
//! delete removes the directory itself (pcocc's per-key deletes leave it, even empty). So:
//! - v3: etcd's history after the last pass shows each deletion with its revision; a revision
//!   that deleted two keys or more under the prefix is a bulk removal.
//! - v2: the directory still there, created at the same index as before, means the keys went
//!   one by one; the directory gone, or created again, means a bulk removal.
//!
//! A partition without a verdict (history compacted, nothing recorded to compare with) is left
//! to the count guard.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::PKey;
use crate::net::etcd::{Dir, History};
use crate::plan::Removal;

/// Verdicts, and why the candidates without one have none.
pub(crate) type Judged = (BTreeMap<PKey, Removal>, Option<String>);

/// v2: judged by the prefix's directory, now and as last recorded.
pub(crate) fn by_directory(
    candidates: &BTreeSet<PKey>,
    prefix: &str,
    now: Option<Dir>,
    recorded: Option<i64>,
) -> Judged {
    let all = |removal: Removal| candidates.iter().map(|p| (*p, removal.clone())).collect();
    match (now, recorded) {
        (None, _) => (
            all(Removal::Bulk(format!(
                "the directory {prefix} is gone from etcd: it was deleted as a whole (a recursive delete), which pcocc's per-key deletes never do"
            ))),
            None,
        ),
        (Some(dir), Some(then)) if dir.created_index != then => (
            all(Removal::Bulk(format!(
                "the directory {prefix} was deleted as a whole and created again (created at index {then}, now at {}): a recursive delete, not pcocc's per-key deletes",
                dir.created_index
            ))),
            None,
        ),
        (Some(_), Some(_)) => (all(Removal::OneByOne), None),
        (Some(_), None) => (
            BTreeMap::new(),
            Some("no earlier read of the directory to compare with".to_string()),
        ),
    }
}

/// v3: judged by the deletions etcd's history shows after revision `from`.
pub(crate) fn by_history(
    candidates: &BTreeSet<PKey>,
    prefix: &str,
    from: i64,
    history: &History,
) -> Judged {
    let mut per_revision: BTreeMap<i64, usize> = BTreeMap::new();
    for deletion in &history.deletions {
        *per_revision.entry(deletion.revision).or_default() += 1;
    }
    let mut last_deletion: BTreeMap<PKey, i64> = BTreeMap::new();
    for deletion in &history.deletions {
        if let Some(pkey) = pkey_of(prefix, &deletion.key) {
            last_deletion.insert(pkey, deletion.revision);
        }
    }
    let mut verdicts = BTreeMap::new();
    let mut without = 0;
    for pkey in candidates {
        match last_deletion.get(pkey) {
            Some(revision) => {
                let together = per_revision.get(revision).copied().unwrap_or(1);
                let verdict = if together >= 2 {
                    Removal::Bulk(format!(
                        "{together} keys under {prefix} were deleted by one request at revision {revision} (a range delete), which pcocc's per-key deletes never do"
                    ))
                } else {
                    Removal::OneByOne
                };
                verdicts.insert(*pkey, verdict);
            }
            None => without += 1,
        }
    }
    let unknown = (without > 0).then(|| match history.compacted {
        Some(compacted) => format!(
            "etcd compacted its history up to revision {compacted}, past revision {from}: how {without} keys left cannot be told"
        ),
        None => format!(
            "etcd's history after revision {from} does not show how {without} keys left"
        ),
    });
    (verdicts, unknown)
}

/// The PKey a key directly under `prefix` names.
pub(crate) fn pkey_of(prefix: &str, key: &str) -> Option<PKey> {
    let name = key.strip_prefix(prefix)?;
    if name.contains('/') {
        return None;
    }
    name.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::etcd::Deletion;

    const PREFIX: &str = "/pcocc/global/opensm/pkeys/";

    fn pkeys(names: &[&str]) -> BTreeSet<PKey> {
        names.iter().map(|n| n.parse().expect("pkey")).collect()
    }

    fn deletion(name: &str, revision: i64) -> Deletion {
        Deletion {
            key: format!("{PREFIX}{name}"),
            revision,
        }
    }

    #[test]
    fn keys_deleted_one_request_each_are_job_ends() {
        let history = History {
            deletions: vec![
                deletion("0x10", 20),
                deletion("0x11", 21),
                deletion("0x0012", 22),
            ],
            compacted: None,
        };
        let (verdicts, unknown) =
            by_history(&pkeys(&["0x10", "0x11", "0x12"]), PREFIX, 19, &history);
        assert!(
            verdicts.values().all(|v| *v == Removal::OneByOne),
            "{verdicts:?}"
        );
        assert_eq!(verdicts.len(), 3, "padded spellings count");
        assert_eq!(unknown, None);
    }

    #[test]
    fn keys_deleted_by_one_request_are_a_bulk_removal() {
        let history = History {
            deletions: vec![
                deletion("0x10", 30),
                deletion("0x11", 30),
                deletion("0x12", 31),
            ],
            compacted: None,
        };
        let (verdicts, _) = by_history(&pkeys(&["0x10", "0x11", "0x12"]), PREFIX, 29, &history);
        assert!(
            matches!(verdicts.get(&"0x10".parse().expect("pkey")), Some(Removal::Bulk(why)) if why.contains("2 keys") && why.contains("revision 30"))
        );
        assert_eq!(
            verdicts.get(&"0x12".parse().expect("pkey")),
            Some(&Removal::OneByOne)
        );
    }

    #[test]
    fn a_key_deleted_again_after_it_came_back_is_judged_by_its_last_deletion() {
        let history = History {
            deletions: vec![
                deletion("0x10", 30),
                deletion("0x11", 30),
                deletion("0x10", 40),
            ],
            compacted: None,
        };
        let (verdicts, _) = by_history(&pkeys(&["0x10"]), PREFIX, 29, &history);
        assert_eq!(
            verdicts.get(&"0x10".parse().expect("pkey")),
            Some(&Removal::OneByOne)
        );
    }

    #[test]
    fn compacted_history_leaves_the_count_guard_to_decide_and_says_why() {
        let history = History {
            deletions: Vec::new(),
            compacted: Some(90),
        };
        let (verdicts, unknown) = by_history(&pkeys(&["0x10", "0x11"]), PREFIX, 50, &history);
        assert!(verdicts.is_empty());
        assert!(unknown.is_some_and(|u| u.contains("compacted") && u.contains("2 keys")));
    }

    #[test]
    fn v2_the_directory_tells_job_ends_from_a_recursive_delete() {
        let candidates = pkeys(&["0x10", "0x11"]);
        let dir = |created_index| Some(Dir { created_index });
        let (same, _) = by_directory(&candidates, PREFIX, dir(7), Some(7));
        assert!(same.values().all(|v| *v == Removal::OneByOne));
        let (gone, _) = by_directory(&candidates, PREFIX, None, Some(7));
        assert!(
            gone.values()
                .all(|v| matches!(v, Removal::Bulk(w) if w.contains("recursive")))
        );
        let (again, _) = by_directory(&candidates, PREFIX, dir(90), Some(7));
        assert!(
            again
                .values()
                .all(|v| matches!(v, Removal::Bulk(w) if w.contains("created again")))
        );
        let (none, unknown) = by_directory(&candidates, PREFIX, dir(7), None);
        assert!(none.is_empty() && unknown.is_some());
    }
}
