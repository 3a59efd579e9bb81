//! What the daemon does next: the rules of its one loop, as plain data and decisions with no
//! I/O (the loop in `monitor` carries them out), so that they are tested on their own.
//!
//! - A change seen by the watch is applied by a targeted pass: only the partitions whose keys
//!   changed, each read from UFM on its own. Changes that arrive while a pass runs wait for
//!   the next one; a key changed twice is applied once, as it is when the pass reads it.
//! - A full pass (all of etcd's prefix, UFM's whole list) runs at start, after SIGHUP, after a
//!   gap in the watch (history compacted or cleared, another etcd member, a key that is not a
//!   PKey), when UFM's `last_updated` says someone else changed it, after an outage, and at
//!   least every `resync-interval`; never more often than every [`MIN_FULL_GAP`], whatever
//!   asks for it (a watch answering "index cleared" forever costs one full pass per 5 s).
//! - Every `poll-interval`, one small request (`last_updated`) checks for changes made by hand
//!   in UFM; a UFM that does not serve it gets a full pass instead.
//! - While UFM does not answer, one cheap request probes it every second and the watch goes
//!   on collecting changes; when it answers, those changes are applied at once and a full pass
//!   follows. The same for etcd, without the watch.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::engine::KeyChange;
use crate::engine::removals::pkey_of;
use crate::model::PKey;
use crate::net::etcd::Change;

/// The shortest time between two full passes.
pub(crate) const MIN_FULL_GAP: Duration = Duration::from_secs(5);
/// How often a service that does not answer is asked again.
pub(crate) const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// The pause after a failed pass that was not an outage, doubling up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(60);

/// What to do next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// Ask etcd whether it answers again.
    ProbeEtcd,
    /// Ask UFM whether it answers again.
    ProbeUfm,
    /// A full pass, and why.
    FullPass(String),
    /// A targeted pass over these partitions.
    TargetedPass(BTreeMap<PKey, KeyChange>),
    /// Ask UFM whether it changed (`last_updated`).
    CheckDrift,
    /// Watch etcd until this time (or a change).
    Watch(Instant),
    /// Wait until this time (etcd does not answer: no watch).
    Sleep(Instant),
}

/// A service that stopped answering: since when, and when to ask again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Outage {
    pub since: Instant,
    pub next_probe: Instant,
}

/// The daemon's agenda.
#[derive(Debug)]
pub(crate) struct Schedule {
    poll: Duration,
    resync: Duration,
    /// The shortest time between two full passes: `floor` ([`MIN_FULL_GAP`] unless said
    /// otherwise), or the resync interval if an operator set it shorter.
    floor: Duration,
    min_gap: Duration,
    /// Changes waiting for a targeted pass, the last one of each PKey.
    pending: BTreeMap<PKey, KeyChange>,
    /// Why a full pass is wanted, if one is.
    full: Option<String>,
    /// When the last full pass started (done or not).
    last_full: Option<Instant>,
    /// After a failure that is not an outage (a refused request, an odd answer): nothing but
    /// the watch until then, and the pause before the next such retry.
    hold: Option<Instant>,
    retry_delay: Duration,
    next_drift: Instant,
    next_resync: Instant,
    /// UFM has no `last_updated`: drift is found by a full pass every poll interval.
    drift_by_full_pass: bool,
    pub etcd_down: Option<Outage>,
    pub ufm_down: Option<Outage>,
}

impl Schedule {
    /// A new agenda: a full pass first.
    pub(crate) fn new(poll: Duration, resync: Duration, now: Instant) -> Schedule {
        Schedule {
            poll,
            resync,
            floor: MIN_FULL_GAP,
            min_gap: MIN_FULL_GAP.min(resync),
            pending: BTreeMap::new(),
            full: Some("start".to_string()),
            last_full: None,
            hold: None,
            retry_delay: FIRST_RETRY,
            next_drift: now + poll,
            next_resync: now + resync,
            drift_by_full_pass: false,
            etcd_down: None,
            ufm_down: None,
        }
    }

    /// Full passes may come every `gap` (a dry run, which writes nothing and shows its plan
    /// at once).
    pub(crate) fn with_min_gap(mut self, gap: Duration) -> Schedule {
        self.floor = gap;
        self.min_gap = gap.min(self.resync);
        self
    }

    /// New intervals (the configuration was reloaded); a full pass follows at once.
    pub(crate) fn reconfigure(&mut self, poll: Duration, resync: Duration, now: Instant) {
        self.poll = poll;
        self.resync = resync;
        self.min_gap = self.floor.min(resync);
        self.next_drift = now + poll;
        self.next_resync = now + resync;
        self.full = Some("the configuration was reloaded".to_string());
        self.last_full = None;
    }

    /// What to do now. `cooled` are partitions whose own retry is due.
    pub(crate) fn next(
        &mut self,
        now: Instant,
        cooled: Option<BTreeMap<PKey, KeyChange>>,
        next_cooled: Option<Instant>,
    ) -> Next {
        if let Some(down) = self.etcd_down {
            return if now >= down.next_probe {
                Next::ProbeEtcd
            } else {
                Next::Sleep(down.next_probe)
            };
        }
        if let Some(down) = self.ufm_down {
            return if now >= down.next_probe {
                Next::ProbeUfm
            } else {
                Next::Watch(down.next_probe)
            };
        }
        if let Some(until) = self.hold.filter(|until| now < *until) {
            return Next::Watch(until);
        }
        if now >= self.next_resync && self.full.is_none() {
            self.full = Some("resync-interval".to_string());
        }
        // Changes the watch delivered go first, even when a full pass is due (UFM answering
        // again, a gap): each is one or two small requests, the full pass follows at once.
        if !self.pending.is_empty() {
            return Next::TargetedPass(std::mem::take(&mut self.pending));
        }
        let full_allowed = self.last_full.is_none_or(|t| now >= t + self.min_gap);
        if full_allowed && let Some(why) = self.full.take() {
            self.last_full = Some(now);
            return Next::FullPass(why);
        }
        if let Some(cooled) = cooled {
            return Next::TargetedPass(cooled);
        }
        if now >= self.next_drift {
            self.next_drift = now + self.poll;
            if self.drift_by_full_pass {
                self.full = Some("poll-interval (UFM has no last_updated)".to_string());
                return self.next(now, None, next_cooled);
            }
            return Next::CheckDrift;
        }
        let mut until = self.next_drift.min(self.next_resync);
        if let Some(at) = next_cooled {
            until = until.min(at);
        }
        if self.full.is_some() {
            if let Some(last) = self.last_full {
                until = until.min(last + self.min_gap);
            }
        }
        Next::Watch(until.max(now))
    }

    /// Changes the watch delivered: each PKey's last change waits for the next targeted pass.
    /// A key that does not name a PKey directly under the prefix (or a v2 directory) asks for
    /// a full pass, which reports it or judges the removal.
    pub(crate) fn changes(&mut self, prefix: &str, changes: &[Change]) {
        let mut deleted_at: BTreeMap<i64, usize> = BTreeMap::new();
        for change in changes.iter().filter(|c| c.value.is_none()) {
            *deleted_at.entry(change.revision).or_default() += 1;
        }
        for change in changes {
            let pkey = pkey_of(prefix, &change.key).filter(|_| !change.dir);
            let Some(pkey) = pkey else {
                self.want_full(format!("the watch saw {} change", change.key));
                continue;
            };
            let present = change.value.is_some();
            let deleted_together = match present {
                false => deleted_at.get(&change.revision).copied().unwrap_or(1),
                true => 0,
            };
            let change = KeyChange {
                key: change.key.clone(),
                present,
                deleted_together,
                revision: change.revision,
            };
            self.pending.insert(pkey, change);
        }
    }

    /// Puts changes back: their pass could not run them.
    pub(crate) fn requeue(&mut self, changes: BTreeMap<PKey, KeyChange>) {
        for (pkey, change) in changes {
            // A newer change that arrived meanwhile wins.
            self.pending.entry(pkey).or_insert(change);
        }
    }

    /// A pass failed in a way that is not an outage: wait (1 s, doubling up to 60 s) before
    /// the next pass; returns the pause.
    pub(crate) fn failed(&mut self, now: Instant) -> Duration {
        let delay = self.retry_delay;
        self.hold = Some(now + delay);
        self.retry_delay = (delay * 2).min(MAX_RETRY);
        delay
    }

    /// A pass failed in a way that asks for a fixed pause (refused credentials): nothing but
    /// the watch for `pause`; returns it.
    pub(crate) fn failed_for(&mut self, now: Instant, pause: Duration) -> Duration {
        self.hold = Some(now + pause);
        pause
    }

    /// A pass went through: the next failure waits the shortest pause again.
    pub(crate) fn succeeded(&mut self) {
        self.hold = None;
        self.retry_delay = FIRST_RETRY;
    }

    /// Asks for a full pass.
    pub(crate) fn want_full(&mut self, why: String) {
        if self.full.is_none() {
            self.full = Some(why);
        }
    }

    /// A full pass read etcd at `revision`: the changes it saw are done.
    pub(crate) fn full_done(&mut self, revision: i64, now: Instant) {
        self.next_resync = now + self.resync;
        self.next_drift = now + self.poll;
        self.pending.retain(|_, change| change.revision > revision);
    }

    /// This UFM does not serve `last_updated`.
    pub(crate) fn drift_by_full_pass(&mut self) {
        self.drift_by_full_pass = true;
    }

    /// etcd stopped answering.
    pub(crate) fn etcd_unreachable(&mut self, now: Instant) {
        if self.etcd_down.is_none() {
            self.etcd_down = Some(Outage {
                since: now,
                next_probe: now + PROBE_INTERVAL,
            });
        }
    }

    /// UFM stopped answering.
    pub(crate) fn ufm_unreachable(&mut self, now: Instant) {
        if self.ufm_down.is_none() {
            self.ufm_down = Some(Outage {
                since: now,
                next_probe: now + PROBE_INTERVAL,
            });
        }
    }

    /// A probe got no answer: ask again in a second.
    pub(crate) fn probe_failed(&mut self, now: Instant) {
        for down in [&mut self.etcd_down, &mut self.ufm_down]
            .into_iter()
            .flatten()
        {
            if down.next_probe <= now {
                down.next_probe = now + PROBE_INTERVAL;
            }
        }
    }

    /// etcd answers again: the watch goes on from where it was, and a full pass follows
    /// (still no sooner than [`MIN_FULL_GAP`] after the last, so a flapping etcd cannot
    /// cause a storm of them).
    pub(crate) fn etcd_back(&mut self) -> Option<Duration> {
        let down = self.etcd_down.take()?;
        self.want_full("etcd answers again".to_string());
        Some(down.since.elapsed())
    }

    /// UFM answers again: the waiting changes go first, then a full pass.
    pub(crate) fn ufm_back(&mut self) -> Option<Duration> {
        let down = self.ufm_down.take()?;
        self.want_full("UFM answers again".to_string());
        Some(down.since.elapsed())
    }

    /// Whether a change of `pkey` waits for a targeted pass.
    pub(crate) fn is_pending(&self, pkey: PKey) -> bool {
        self.pending.contains_key(&pkey)
    }

    /// Changes waiting, for the status line.
    pub(crate) fn pending_len(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFIX: &str = "/pcocc/global/opensm/pkeys/";

    fn put(name: &str, revision: i64) -> Change {
        Change {
            key: format!("{PREFIX}{name}"),
            value: Some(b"{}".to_vec()),
            revision,
            dir: false,
        }
    }

    fn delete(name: &str, revision: i64) -> Change {
        Change {
            value: None,
            ..put(name, revision)
        }
    }

    fn schedule(now: Instant) -> Schedule {
        Schedule::new(Duration::from_secs(30), Duration::from_secs(600), now)
    }

    /// A schedule whose first full pass ran at `now` and read etcd at revision 1.
    fn started(now: Instant) -> Schedule {
        let mut s = schedule(now);
        assert!(matches!(s.next(now, None, None), Next::FullPass(_)));
        s.full_done(1, now);
        s
    }

    fn pk(text: &str) -> PKey {
        text.parse().expect("pkey")
    }

    #[test]
    fn starts_with_a_full_pass_then_watches() {
        let t0 = Instant::now();
        let mut s = schedule(t0);
        assert_eq!(s.next(t0, None, None), Next::FullPass("start".into()));
        s.full_done(10, t0);
        assert_eq!(
            s.next(t0, None, None),
            Next::Watch(t0 + Duration::from_secs(30))
        );
    }

    #[test]
    fn changes_are_coalesced_per_pkey_the_last_value_winning() {
        let t0 = Instant::now();
        let mut s = started(t0);
        s.changes(PREFIX, &[put("0x10", 2), put("0x11", 3)]);
        let later = t0 + Duration::from_millis(50);
        s.changes(PREFIX, &[delete("0x10", 4)]);
        let Next::TargetedPass(changes) = s.next(later, None, None) else {
            panic!("a targeted pass")
        };
        assert_eq!(changes.len(), 2);
        assert!(!changes[&pk("0x10")].present, "the delete came last");
        assert_eq!(changes[&pk("0x10")].deleted_together, 1);
        assert!(
            matches!(s.next(later, None, None), Next::Watch(_)),
            "nothing left"
        );
    }

    #[test]
    fn keys_deleted_by_one_request_are_marked_together() {
        let t0 = Instant::now();
        let mut s = started(t0);
        s.changes(
            PREFIX,
            &[delete("0x10", 5), delete("0x11", 5), delete("0x12", 6)],
        );
        let Next::TargetedPass(changes) = s.next(t0, None, None) else {
            panic!("a targeted pass")
        };
        assert_eq!(changes[&pk("0x10")].deleted_together, 2);
        assert_eq!(changes[&pk("0x12")].deleted_together, 1);
    }

    #[test]
    fn full_passes_come_no_more_often_than_every_five_seconds() {
        let t0 = Instant::now();
        let mut s = schedule(t0);
        assert!(matches!(s.next(t0, None, None), Next::FullPass(_)));
        s.full_done(1, t0);
        s.want_full("index cleared".into());
        let soon = t0 + Duration::from_secs(1);
        assert_eq!(s.next(soon, None, None), Next::Watch(t0 + MIN_FULL_GAP));
        // Changes still go through meanwhile.
        s.changes(PREFIX, &[put("0x10", 2)]);
        assert!(matches!(s.next(soon, None, None), Next::TargetedPass(_)));
        assert_eq!(
            s.next(t0 + MIN_FULL_GAP, None, None),
            Next::FullPass("index cleared".into())
        );
    }

    #[test]
    fn drift_is_checked_every_poll_interval_and_a_full_pass_runs_every_resync_interval() {
        let t0 = Instant::now();
        let mut s = schedule(t0);
        s.next(t0, None, None);
        s.full_done(1, t0);
        let poll = t0 + Duration::from_secs(30);
        assert_eq!(s.next(poll, None, None), Next::CheckDrift);
        assert!(matches!(s.next(poll, None, None), Next::Watch(_)));
        let resync = t0 + Duration::from_secs(600);
        assert_eq!(
            s.next(resync, None, None),
            Next::FullPass("resync-interval".into())
        );
    }

    #[test]
    fn without_last_updated_drift_is_found_by_a_full_pass() {
        let t0 = Instant::now();
        let mut s = schedule(t0);
        s.next(t0, None, None);
        s.full_done(1, t0);
        s.drift_by_full_pass();
        assert!(matches!(
            s.next(t0 + Duration::from_secs(30), None, None),
            Next::FullPass(_)
        ));
    }

    #[test]
    fn a_key_that_is_not_a_pkey_or_a_directory_asks_for_a_full_pass() {
        let t0 = Instant::now();
        let mut s = schedule(t0);
        s.next(t0, None, None);
        s.full_done(1, t0);
        let dir = Change {
            key: PREFIX.trim_end_matches('/').to_string(),
            value: None,
            revision: 3,
            dir: true,
        };
        s.changes(PREFIX, &[dir]);
        assert!(matches!(
            s.next(t0 + MIN_FULL_GAP, None, None),
            Next::FullPass(_)
        ));
    }

    #[test]
    fn while_ufm_is_down_it_is_probed_every_second_and_changes_wait() {
        let t0 = Instant::now();
        let mut s = schedule(t0);
        s.next(t0, None, None);
        s.full_done(1, t0);
        s.ufm_unreachable(t0);
        s.changes(PREFIX, &[put("0x10", 2)]);
        assert_eq!(s.next(t0, None, None), Next::Watch(t0 + PROBE_INTERVAL));
        let probe = t0 + PROBE_INTERVAL;
        assert_eq!(s.next(probe, None, None), Next::ProbeUfm);
        s.probe_failed(probe);
        assert_eq!(
            s.next(probe, None, None),
            Next::Watch(probe + PROBE_INTERVAL)
        );
        assert!(s.ufm_back().is_some());
        let back = probe + PROBE_INTERVAL;
        assert!(
            matches!(s.next(back, None, None), Next::TargetedPass(_)),
            "the changes that waited go first"
        );
        assert_eq!(
            s.next(back + MIN_FULL_GAP, None, None),
            Next::FullPass("UFM answers again".into()),
            "then everything is read again"
        );
    }

    #[test]
    fn when_etcd_answers_again_a_full_pass_runs_at_once() {
        let t0 = Instant::now();
        let mut s = schedule(t0);
        s.next(t0, None, None);
        s.full_done(1, t0);
        s.etcd_unreachable(t0);
        assert_eq!(s.next(t0, None, None), Next::Sleep(t0 + PROBE_INTERVAL));
        let back = t0 + MIN_FULL_GAP;
        assert_eq!(s.next(back, None, None), Next::ProbeEtcd);
        assert!(s.etcd_back().is_some());
        assert!(matches!(s.next(back, None, None), Next::FullPass(_)));
    }

    #[test]
    fn a_flapping_etcd_causes_no_more_than_one_full_pass_per_five_seconds() {
        let t0 = Instant::now();
        let mut s = schedule(t0);
        assert!(matches!(s.next(t0, None, None), Next::FullPass(_)));
        s.full_done(1, t0);
        let mut full_passes = 0;
        let mut now = t0;
        // Down and back every 300 ms for 20 s.
        while now < t0 + Duration::from_secs(20) {
            now += Duration::from_millis(300);
            s.etcd_unreachable(now);
            s.next(now + PROBE_INTERVAL, None, None);
            s.etcd_back();
            if let Next::FullPass(_) = s.next(now, None, None) {
                full_passes += 1;
                s.full_done(1, now);
            }
        }
        assert_eq!(full_passes, 3, "at 5.1, 10.2 and 15.3 s: one per 5 s");
    }

    #[test]
    fn a_failed_pass_waits_a_doubling_pause_and_a_good_one_resets_it() {
        let t0 = Instant::now();
        let mut s = schedule(t0);
        assert!(matches!(s.next(t0, None, None), Next::FullPass(_)));
        assert_eq!(s.failed(t0), Duration::from_secs(1));
        s.changes(PREFIX, &[put("0x10", 2)]);
        assert_eq!(
            s.next(t0, None, None),
            Next::Watch(t0 + Duration::from_secs(1))
        );
        let t1 = t0 + Duration::from_secs(1);
        assert!(matches!(s.next(t1, None, None), Next::TargetedPass(_)));
        assert_eq!(s.failed(t1), Duration::from_secs(2));
        s.succeeded();
        assert_eq!(s.failed(t1), Duration::from_secs(1));
    }

    #[test]
    fn a_full_pass_settles_the_changes_it_read() {
        let t0 = Instant::now();
        let mut s = started(t0);
        let later = t0 + MIN_FULL_GAP;
        s.want_full("index cleared".into());
        s.changes(PREFIX, &[put("0x10", 5)]);
        // The change goes first; others come while the full pass (which read revision 7) runs.
        assert!(matches!(s.next(later, None, None), Next::TargetedPass(_)));
        assert!(matches!(s.next(later, None, None), Next::FullPass(_)));
        s.changes(PREFIX, &[put("0x12", 6), put("0x11", 9)]);
        s.full_done(7, later);
        let Next::TargetedPass(changes) = s.next(later, None, None) else {
            panic!("a targeted pass")
        };
        assert_eq!(changes.keys().copied().collect::<Vec<_>>(), [pk("0x11")]);
    }
}
