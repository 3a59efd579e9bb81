//! Partitions waiting for their own retry: those whose writes failed, whose GUIDs UFM refused,
//! or whose ownership could not be recorded first. Each is tried again on its own schedule,
//! 2 s after its first failed pass and twice as long after each further one (up to 60 s),
//! without holding up the other partitions. Pure bookkeeping; the engine decides what failed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::KeyChange;
use crate::model::PKey;

/// The first pause before a failing partition is tried again, and the longest.
const FIRST: Duration = Duration::from_secs(2);
const LONGEST: Duration = Duration::from_secs(60);

/// The retries due, from [`Cooling::due`].
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Retries {
    /// Partitions due, with their keys, for a targeted pass.
    pub keys: Option<BTreeMap<PKey, KeyChange>>,
    /// A partition due has no key in etcd any more (a failed deletion): only a full pass, with
    /// its linearizable read of the whole prefix, may delete it.
    pub full: bool,
    /// When the next retry is due.
    pub next: Option<Instant>,
}

/// One partition waiting: when it is due, the pause that led there, and its etcd key.
#[derive(Clone, Debug)]
struct Waiting {
    due: Instant,
    pause: Duration,
    entry: Option<KeyChange>,
}

/// What one pass did, as far as retries care.
pub(crate) struct Settled<'a> {
    /// The partitions the pass looked at (every one, for a full pass).
    pub scope: &'a BTreeSet<PKey>,
    /// Those of them it planned actions for.
    pub planned: &'a BTreeSet<PKey>,
    /// Those that must wait again: failed, GUIDs refused, or not recorded first.
    pub again: &'a BTreeSet<PKey>,
    /// Those whose actions went through.
    pub succeeded: &'a BTreeSet<PKey>,
    /// The etcd key of each partition etcd wants, to read it again alone.
    pub entries: &'a BTreeMap<PKey, KeyChange>,
}

/// The partitions waiting.
#[derive(Debug, Default)]
pub(crate) struct Cooling {
    waiting: BTreeMap<PKey, Waiting>,
}

impl Cooling {
    /// The partitions waiting for a retry, for the status file's pending count.
    pub(crate) fn waiting(&self) -> impl Iterator<Item = PKey> + '_ {
        self.waiting.keys().copied()
    }

    /// Whether `pkey` waits for its own retry.
    pub(crate) fn is_waiting(&self, pkey: PKey) -> bool {
        self.waiting.contains_key(&pkey)
    }

    /// Whether `pkey`'s actions may be tried now: it does not wait, or its time came.
    pub(crate) fn may_try(&self, pkey: PKey, now: Instant) -> bool {
        self.waiting.get(&pkey).is_none_or(|w| w.due <= now)
    }

    /// `pkey` needs nothing from its retry any more (its key is gone: the watch will tell).
    pub(crate) fn forget(&mut self, pkey: PKey) {
        self.waiting.remove(&pkey);
    }

    /// After a pass: a partition it saw that needs nothing leaves; one that must wait again
    /// waits twice as long as last time (once per pass, however many actions it had); one
    /// that went through leaves.
    pub(crate) fn settle(&mut self, pass: &Settled<'_>, now: Instant) {
        self.waiting
            .retain(|pkey, _| !pass.scope.contains(pkey) || pass.planned.contains(pkey));
        for pkey in pass.again {
            let pause = self
                .waiting
                .get(pkey)
                .map_or(FIRST, |w| (w.pause * 2).min(LONGEST));
            let waiting = Waiting {
                due: now + pause,
                pause,
                // A partition with no key (a failed deletion) waits for a full pass.
                entry: pass.entries.get(pkey).cloned(),
            };
            self.waiting.insert(*pkey, waiting);
        }
        for pkey in pass.succeeded.difference(pass.again) {
            self.waiting.remove(pkey);
        }
    }

    /// The partitions whose retry is due at `now`, and when the next one is due otherwise.
    pub(crate) fn due(&self, now: Instant) -> Retries {
        let mut due = Retries::default();
        let mut keys = BTreeMap::new();
        for (pkey, waiting) in &self.waiting {
            if waiting.due > now {
                due.next = Some(due.next.map_or(waiting.due, |n| n.min(waiting.due)));
                continue;
            }
            match &waiting.entry {
                Some(entry) => {
                    keys.insert(*pkey, entry.clone());
                }
                None => due.full = true,
            }
        }
        due.keys = (!keys.is_empty()).then_some(keys);
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pk(text: &str) -> PKey {
        text.parse().expect("pkey")
    }

    fn set(pkeys: &[&str]) -> BTreeSet<PKey> {
        pkeys.iter().map(|p| pk(p)).collect()
    }

    fn entry(pkey: &str) -> (PKey, KeyChange) {
        let change = KeyChange {
            key: format!("/pcocc/global/opensm/pkeys/{pkey}"),
            present: true,
            deleted_together: 0,
            revision: 7,
        };
        (pk(pkey), change)
    }

    /// One pass over `scope` with actions for `planned`, of which `again` must wait again.
    fn pass(cooling: &mut Cooling, now: Instant, scope: &[&str], again: &[&str], ok: &[&str]) {
        let scope = set(scope);
        let again = set(again);
        let succeeded = set(ok);
        let planned: BTreeSet<PKey> = again.union(&succeeded).copied().collect();
        let entries: BTreeMap<PKey, KeyChange> =
            scope.iter().map(|p| entry(&p.to_string())).collect();
        let settled = Settled {
            scope: &scope,
            planned: &planned,
            again: &again,
            succeeded: &succeeded,
            entries: &entries,
        };
        cooling.settle(&settled, now);
    }

    #[test]
    fn a_failing_partition_waits_2_s_then_4_s_then_8_s_once_per_pass() {
        let t0 = Instant::now();
        let mut cooling = Cooling::default();
        pass(&mut cooling, t0, &["0x10", "0x11"], &["0x10"], &["0x11"]);
        assert!(!cooling.may_try(pk("0x10"), t0 + Duration::from_millis(1999)));
        assert!(cooling.may_try(pk("0x10"), t0 + FIRST));
        assert!(cooling.may_try(pk("0x11"), t0), "the others go on");
        let t1 = t0 + FIRST;
        pass(&mut cooling, t1, &["0x10"], &["0x10"], &[]);
        assert_eq!(cooling.due(t1).next, Some(t1 + Duration::from_secs(4)));
        let t2 = t1 + Duration::from_secs(4);
        pass(&mut cooling, t2, &["0x10"], &["0x10"], &[]);
        assert_eq!(cooling.due(t2).next, Some(t2 + Duration::from_secs(8)));
    }

    #[test]
    fn the_pause_stops_growing_at_a_minute() {
        let mut now = Instant::now();
        let mut cooling = Cooling::default();
        for _ in 0..10 {
            pass(&mut cooling, now, &["0x10"], &["0x10"], &[]);
            now += LONGEST;
        }
        let last = now - LONGEST;
        assert_eq!(cooling.due(last).next, Some(last + LONGEST));
    }

    #[test]
    fn a_partition_that_went_through_or_needs_nothing_leaves() {
        let t0 = Instant::now();
        let mut cooling = Cooling::default();
        pass(&mut cooling, t0, &["0x10", "0x11"], &["0x10", "0x11"], &[]);
        pass(&mut cooling, t0 + FIRST, &["0x10"], &[], &["0x10"]);
        assert!(!cooling.is_waiting(pk("0x10")), "went through");
        // Seen in sync: no action planned.
        pass(&mut cooling, t0 + FIRST, &["0x11"], &[], &[]);
        assert!(!cooling.is_waiting(pk("0x11")), "needs nothing");
    }

    #[test]
    fn a_pass_that_did_not_see_a_partition_leaves_it_waiting() {
        let t0 = Instant::now();
        let mut cooling = Cooling::default();
        pass(&mut cooling, t0, &["0x10"], &["0x10"], &[]);
        pass(&mut cooling, t0, &["0x20"], &[], &["0x20"]);
        assert!(cooling.is_waiting(pk("0x10")));
    }

    #[test]
    fn due_partitions_come_with_their_keys_and_one_without_a_key_asks_for_a_full_pass() {
        let t0 = Instant::now();
        let mut cooling = Cooling::default();
        pass(&mut cooling, t0, &["0x10"], &["0x10"], &[]);
        // A failed deletion: the key is gone, so there is no entry.
        let scope = set(&["0x20"]);
        let settled = Settled {
            scope: &scope,
            planned: &scope,
            again: &scope,
            succeeded: &BTreeSet::new(),
            entries: &BTreeMap::new(),
        };
        cooling.settle(&settled, t0);
        let due = cooling.due(t0 + FIRST);
        assert_eq!(
            due.keys.map(|k| k.into_keys().collect::<Vec<_>>()),
            Some(vec![pk("0x10")])
        );
        assert!(due.full);
        assert_eq!(cooling.due(t0).next, Some(t0 + FIRST));
    }
}
