//! The work set: every partition that UFM is not yet seen to hold as etcd wants it. A partition
//! enters when the watch reports a change to one of its keys, or when a pass plans a change it
//! does not confirm; it leaves only when a read (the pass's own, or the read-back after its
//! writes) shows nothing left to do. A change is never dropped because a pass touched it.
//!
//! Each partition is tried again on its own schedule: at once when nothing failed (a new change,
//! or a change the pass did not get to: its slice was over, the write gate closed, UFM stopped
//! answering), 2 s after a first failure and twice as long after each further one, up to 60 s,
//! without holding up the others. A partition whose write has an unknown outcome (timed out,
//! reset mid-request) is held for a settle window: no write goes out for it until then, since a
//! late arrival of the first request could undo it.
//!
//! Pure bookkeeping, no I/O and no clock reads: the engine says what a pass saw and when.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::model::PKey;

/// The first pause before a failing partition is tried again, and the longest.
pub(crate) const FIRST_PAUSE: Duration = Duration::from_secs(2);
pub(crate) const LONGEST_PAUSE: Duration = Duration::from_secs(60);

/// Why a partition is in the work set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Why {
    /// The watch reported a change to one of its keys: its keys are read again.
    Changed,
    /// Planned, not sent: the pass stopped before it (slice over, gate closed, UFM down).
    NotSent(String),
    /// Its writes failed or were refused, or UFM does not show them: the reason.
    Unconfirmed(String),
    /// Its partition or its keys could not be read (an odd answer): the reason.
    Unread(String),
    /// A write's outcome is unknown (it timed out or was cut off mid-request): nothing is
    /// written to it until the settle window is over and a read shows its state.
    Unsettled(String),
}

impl Why {
    /// A short phrase for logs and `status`.
    pub(crate) fn describe(&self) -> &str {
        match self {
            Why::Changed => "changed in etcd",
            Why::NotSent(why) | Why::Unconfirmed(why) | Why::Unread(why) | Why::Unsettled(why) => {
                why
            }
        }
    }

    /// Whether this is a failure, which doubles the pause before the next try.
    fn failed(&self) -> bool {
        matches!(self, Why::Unconfirmed(_) | Why::Unread(_))
    }
}

/// One partition waiting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Item {
    /// When the oldest change it stands for reached the daemon.
    pub since: Instant,
    /// Not tried again before this.
    pub due: Instant,
    /// The pause that led to `due` after failures; `None` while nothing failed.
    pause: Option<Duration>,
    pub why: Why,
}

/// What a pass found for one partition it looked at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A read shows UFM as etcd wants it (or as the rules want it left): done.
    Done,
    /// Still to do, for this reason; `settle` holds writes until then (an unknown outcome).
    Again(Why),
    /// Held until this time: a write with an unknown outcome may still land.
    Hold(Why, Instant),
}

/// The partitions waiting, by PKey.
#[derive(Debug, Default)]
pub(crate) struct Work {
    items: BTreeMap<PKey, Item>,
}

/// What is due now, from [`Work::due`].
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Due {
    /// Partitions due, new changes first, then the oldest: at most the limit asked for.
    pub pkeys: Vec<PKey>,
    /// How many more are due than were taken.
    pub more: usize,
    /// When the next one not due yet will be.
    pub next: Option<Instant>,
}

impl Work {
    /// How many partitions wait.
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// The partitions waiting, with why.
    pub(crate) fn items(&self) -> impl Iterator<Item = (PKey, &Item)> + '_ {
        self.items.iter().map(|(p, i)| (*p, i))
    }

    pub(crate) fn get(&self, pkey: PKey) -> Option<&Item> {
        self.items.get(&pkey)
    }

    /// Whether `pkey` may be written now: it is not held for an unknown outcome.
    pub(crate) fn may_write(&self, pkey: PKey, now: Instant) -> bool {
        self.items
            .get(&pkey)
            .is_none_or(|i| !matches!(i.why, Why::Unsettled(_)) || i.due <= now)
    }

    /// Whether `pkey` may be tried now: it does not wait, or its time came.
    pub(crate) fn may_try(&self, pkey: PKey, now: Instant) -> bool {
        self.items.get(&pkey).is_none_or(|i| i.due <= now)
    }

    /// The watch reported a change to one of `pkey`'s keys: it is read again at once (a
    /// partition held for an unknown outcome stays held; its keys are read when it is due).
    pub(crate) fn changed(&mut self, pkey: PKey, now: Instant) {
        match self.items.get_mut(&pkey) {
            Some(item) if matches!(item.why, Why::Unsettled(_)) => {}
            Some(item) => {
                item.why = Why::Changed;
                item.due = now;
                item.pause = None;
            }
            None => {
                self.items.insert(
                    pkey,
                    Item {
                        since: now,
                        due: now,
                        pause: None,
                        why: Why::Changed,
                    },
                );
            }
        }
    }

    /// `pkey` needs nothing from this set any more (its key left etcd before it could be
    /// read: the watch will report how).
    pub(crate) fn forget(&mut self, pkey: PKey) {
        self.items.remove(&pkey);
    }

    /// What a pass found for a partition it looked at. A failure waits twice as long as the
    /// last one (2 s first, at most 60 s); a change not sent is due at once.
    pub(crate) fn settle(&mut self, pkey: PKey, outcome: Outcome, now: Instant) {
        let (why, hold) = match outcome {
            Outcome::Done => {
                self.items.remove(&pkey);
                return;
            }
            Outcome::Again(why) => (why, None),
            Outcome::Hold(why, until) => (why, Some(until)),
        };
        let item = self.items.entry(pkey).or_insert(Item {
            since: now,
            due: now,
            pause: None,
            why: why.clone(),
        });
        if let Some(until) = hold {
            item.due = until;
        } else if why.failed() {
            let pause = item
                .pause
                .map_or(FIRST_PAUSE, |p| (p * 2).min(LONGEST_PAUSE));
            item.pause = Some(pause);
            item.due = now + pause;
        } else {
            item.due = now;
        }
        item.why = why;
    }

    /// Every partition waiting after failures is tried at once (the operator just changed
    /// what held them); one held for a write of unknown outcome stays held.
    pub(crate) fn retry_now(&mut self, now: Instant) {
        for item in self.items.values_mut() {
            if !matches!(item.why, Why::Unsettled(_)) {
                item.due = item.due.min(now);
                item.pause = None;
            }
        }
    }

    /// Makes every partition due now (tests: as if their time had come).
    #[cfg(test)]
    pub(crate) fn make_all_due(&mut self) {
        let now = Instant::now();
        for item in self.items.values_mut() {
            item.due = item.due.min(now);
        }
    }

    /// Up to `limit` partitions due at `now`, new changes first, then the longest waiting;
    /// and when the next one is due otherwise.
    pub(crate) fn due(&self, now: Instant, limit: usize) -> Due {
        let mut due: Vec<(PKey, &Item)> = Vec::new();
        let mut next: Option<Instant> = None;
        for (pkey, item) in &self.items {
            if item.due <= now {
                due.push((*pkey, item));
            } else {
                next = Some(next.map_or(item.due, |n| n.min(item.due)));
            }
        }
        due.sort_by_key(|(pkey, item)| (item.why != Why::Changed, item.since, *pkey));
        let more = due.len().saturating_sub(limit);
        Due {
            pkeys: due.into_iter().take(limit).map(|(p, _)| p).collect(),
            more,
            next,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pk(text: &str) -> PKey {
        text.parse().expect("pkey")
    }

    fn failed() -> Outcome {
        Outcome::Again(Why::Unconfirmed("UFM does not show it".into()))
    }

    #[test]
    fn a_failing_partition_waits_2_s_then_4_s_then_8_s() {
        let t0 = Instant::now();
        let mut work = Work::default();
        work.settle(pk("0x10"), failed(), t0);
        assert!(!work.may_try(pk("0x10"), t0 + Duration::from_millis(1999)));
        assert!(work.may_try(pk("0x10"), t0 + FIRST_PAUSE));
        assert!(work.may_try(pk("0x11"), t0), "the others go on");
        let t1 = t0 + FIRST_PAUSE;
        work.settle(pk("0x10"), failed(), t1);
        assert_eq!(work.due(t1, 10).next, Some(t1 + Duration::from_secs(4)));
        let t2 = t1 + Duration::from_secs(4);
        work.settle(pk("0x10"), failed(), t2);
        assert_eq!(work.due(t2, 10).next, Some(t2 + Duration::from_secs(8)));
    }

    #[test]
    fn the_pause_stops_growing_at_a_minute() {
        let mut now = Instant::now();
        let mut work = Work::default();
        for _ in 0..10 {
            work.settle(pk("0x10"), failed(), now);
            now += LONGEST_PAUSE;
        }
        let last = now - LONGEST_PAUSE;
        assert_eq!(work.due(last, 10).next, Some(last + LONGEST_PAUSE));
    }

    #[test]
    fn a_change_stays_until_a_read_shows_it_done() {
        let t0 = Instant::now();
        let mut work = Work::default();
        work.changed(pk("0x10"), t0);
        work.settle(
            pk("0x10"),
            Outcome::Again(Why::NotSent("slice over".into())),
            t0,
        );
        assert_eq!(
            work.due(t0, 10).pkeys,
            vec![pk("0x10")],
            "not sent: due at once"
        );
        assert_eq!(
            work.get(pk("0x10")).map(|i| i.since),
            Some(t0),
            "keeps its age"
        );
        work.settle(pk("0x10"), Outcome::Done, t0);
        assert_eq!(work.len(), 0);
    }

    #[test]
    fn a_new_change_is_tried_at_once_even_while_cooling() {
        let t0 = Instant::now();
        let mut work = Work::default();
        work.settle(pk("0x10"), failed(), t0);
        work.changed(pk("0x10"), t0);
        assert_eq!(work.due(t0, 10).pkeys, vec![pk("0x10")]);
    }

    #[test]
    fn a_held_partition_takes_no_write_until_its_window_is_over_even_on_a_new_change() {
        let t0 = Instant::now();
        let until = t0 + Duration::from_secs(12);
        let mut work = Work::default();
        let why = Why::Unsettled("a DELETE timed out".into());
        work.settle(pk("0x900"), Outcome::Hold(why, until), t0);
        work.changed(pk("0x900"), t0 + Duration::from_secs(1));
        assert!(!work.may_write(pk("0x900"), t0 + Duration::from_secs(11)));
        assert!(work.due(t0 + Duration::from_secs(11), 10).pkeys.is_empty());
        assert!(work.may_write(pk("0x900"), until));
        assert_eq!(work.due(until, 10).pkeys, vec![pk("0x900")]);
    }

    #[test]
    fn new_changes_come_first_then_the_longest_waiting_up_to_the_limit() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(1);
        let mut work = Work::default();
        work.settle(pk("0x30"), Outcome::Again(Why::NotSent("slice".into())), t1);
        work.settle(pk("0x20"), Outcome::Again(Why::NotSent("slice".into())), t0);
        work.changed(pk("0x40"), t1);
        let due = work.due(t1, 2);
        assert_eq!(due.pkeys, vec![pk("0x40"), pk("0x20")]);
        assert_eq!(due.more, 1);
    }
}
