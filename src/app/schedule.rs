//! What the daemon does next: the rules of its one loop, as plain data and decisions with no
//! I/O (the loop in `monitor` carries them out), so that they are tested on their own.
//!
//! - A change seen by the watch waits in the engine's work set until a read shows it done;
//!   a pass over the work set reads only the partitions due (new changes first). Changes that
//!   arrive while a pass runs wait for the next one.
//! - A pass that made way for newer changes (its slice of writes took long enough, and etcd
//!   moved on) is followed by a short look at the watch, then by the rest of the work.
//! - A full pass (all of etcd's prefix, UFM's whole list) runs at start, after SIGHUP, after a
//!   gap in the watch (history compacted or cleared, another etcd member, a key that is not a
//!   PKey, etcd's revision going backwards), when UFM's `last_updated` says someone else
//!   changed it, after an outage, and at least every `resync-interval`; never more often than
//!   every [`MIN_FULL_GAP`], whatever asks for it (a watch answering "index cleared" forever
//!   costs one full pass per 5 s).
//! - Every `poll-interval`, one small request (`last_updated`) checks for changes made by hand
//!   in UFM; a UFM that does not serve it gets a full pass instead (asked again each time).
//! - While UFM does not answer, one cheap request probes it every second and the watch goes
//!   on collecting changes; when it answers, those changes are applied at once and a full pass
//!   follows. The same for etcd, without the watch.

use std::time::{Duration, Instant};

/// The shortest time between two full passes.
pub(crate) const MIN_FULL_GAP: Duration = Duration::from_secs(5);
/// How often a service that does not answer is asked again.
pub(crate) const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// How long the watch is looked at after a pass made way for newer changes: v2 answers at
/// once from its history, v3 brings a watch that starts behind up to date within 100 ms.
pub(crate) const PEEK: Duration = Duration::from_millis(150);
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
    /// A pass over the partitions of the work set that are due.
    TargetedPass,
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
    /// A pass made way for newer changes: look at the watch before going on.
    peek: bool,
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
            peek: false,
            full: Some("start".to_string()),
            last_full: None,
            hold: None,
            retry_delay: FIRST_RETRY,
            next_drift: now + poll,
            next_resync: now + resync,
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

    /// What to do now. `due`: how many partitions of the work set are due now; `next_due`:
    /// when the next one is otherwise.
    pub(crate) fn next(&mut self, now: Instant, due: usize, next_due: Option<Instant>) -> Next {
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
        if std::mem::take(&mut self.peek) {
            return Next::Watch(now + PEEK);
        }
        if now >= self.next_resync && self.full.is_none() {
            self.full = Some("resync-interval".to_string());
        }
        // Changes go first, even when a full pass is due (UFM answering again, a gap): each
        // is one or two small requests, the full pass follows at once.
        if due > 0 {
            return Next::TargetedPass;
        }
        let full_allowed = self.last_full.is_none_or(|t| now >= t + self.min_gap);
        if full_allowed && let Some(why) = self.full.take() {
            self.last_full = Some(now);
            return Next::FullPass(why);
        }
        if now >= self.next_drift {
            self.next_drift = now + self.poll;
            return Next::CheckDrift;
        }
        let mut until = self.next_drift.min(self.next_resync);
        if let Some(at) = next_due {
            until = until.min(at);
        }
        if self.full.is_some() {
            if let Some(last) = self.last_full {
                until = until.min(last + self.min_gap);
            }
        }
        Next::Watch(until.max(now))
    }

    /// A pass made way for newer changes: the watch is looked at before the rest.
    pub(crate) fn made_way(&mut self) {
        self.peek = true;
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

    /// A full pass read everything: the next drift check and resync count from now.
    pub(crate) fn full_done(&mut self, now: Instant) {
        self.next_resync = now + self.resync;
        self.next_drift = now + self.poll;
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(now: Instant) -> Schedule {
        Schedule::new(Duration::from_secs(30), Duration::from_secs(600), now)
    }

    /// A schedule whose first full pass ran at `now`.
    fn started(now: Instant) -> Schedule {
        let mut s = schedule(now);
        assert!(matches!(s.next(now, 0, None), Next::FullPass(_)));
        s.full_done(now);
        s
    }

    #[test]
    fn starts_with_a_full_pass_then_watches() {
        let t0 = Instant::now();
        let mut s = schedule(t0);
        assert_eq!(s.next(t0, 0, None), Next::FullPass("start".into()));
        s.full_done(t0);
        assert_eq!(
            s.next(t0, 0, None),
            Next::Watch(t0 + Duration::from_secs(30))
        );
    }

    #[test]
    fn due_work_goes_before_a_full_pass_and_the_watch_waits_for_the_next_due() {
        let t0 = Instant::now();
        let mut s = started(t0);
        let later = t0 + MIN_FULL_GAP;
        s.want_full("index cleared".into());
        assert_eq!(s.next(later, 2, None), Next::TargetedPass);
        assert!(matches!(s.next(later, 0, None), Next::FullPass(_)));
        s.full_done(later);
        let retry = later + Duration::from_secs(2);
        assert_eq!(s.next(later, 0, Some(retry)), Next::Watch(retry));
    }

    #[test]
    fn a_pass_that_made_way_is_followed_by_a_short_look_at_the_watch() {
        let t0 = Instant::now();
        let mut s = started(t0);
        s.made_way();
        assert_eq!(s.next(t0, 5, None), Next::Watch(t0 + PEEK));
        assert_eq!(s.next(t0, 5, None), Next::TargetedPass, "then the rest");
    }

    #[test]
    fn full_passes_come_no_more_often_than_every_five_seconds() {
        let t0 = Instant::now();
        let mut s = started(t0);
        s.want_full("index cleared".into());
        let soon = t0 + Duration::from_secs(1);
        assert_eq!(s.next(soon, 0, None), Next::Watch(t0 + MIN_FULL_GAP));
        // Changes still go through meanwhile.
        assert_eq!(s.next(soon, 1, None), Next::TargetedPass);
        assert_eq!(
            s.next(t0 + MIN_FULL_GAP, 0, None),
            Next::FullPass("index cleared".into())
        );
    }

    #[test]
    fn drift_is_checked_every_poll_interval_and_a_full_pass_runs_every_resync_interval() {
        let t0 = Instant::now();
        let mut s = started(t0);
        let poll = t0 + Duration::from_secs(30);
        assert_eq!(s.next(poll, 0, None), Next::CheckDrift);
        assert!(matches!(s.next(poll, 0, None), Next::Watch(_)));
        let resync = t0 + Duration::from_secs(600);
        assert_eq!(
            s.next(resync, 0, None),
            Next::FullPass("resync-interval".into())
        );
    }

    #[test]
    fn while_ufm_is_down_it_is_probed_every_second_and_changes_wait() {
        let t0 = Instant::now();
        let mut s = started(t0);
        s.ufm_unreachable(t0);
        assert_eq!(s.next(t0, 1, None), Next::Watch(t0 + PROBE_INTERVAL));
        let probe = t0 + PROBE_INTERVAL;
        assert_eq!(s.next(probe, 1, None), Next::ProbeUfm);
        s.probe_failed(probe);
        assert_eq!(s.next(probe, 1, None), Next::Watch(probe + PROBE_INTERVAL));
        assert!(s.ufm_back().is_some());
        let back = probe + PROBE_INTERVAL;
        assert_eq!(
            s.next(back, 1, None),
            Next::TargetedPass,
            "the changes that waited go first"
        );
        assert_eq!(
            s.next(back + MIN_FULL_GAP, 0, None),
            Next::FullPass("UFM answers again".into()),
            "then everything is read again"
        );
    }

    #[test]
    fn when_etcd_answers_again_a_full_pass_runs_at_once() {
        let t0 = Instant::now();
        let mut s = started(t0);
        s.etcd_unreachable(t0);
        assert_eq!(s.next(t0, 0, None), Next::Sleep(t0 + PROBE_INTERVAL));
        let back = t0 + MIN_FULL_GAP;
        assert_eq!(s.next(back, 0, None), Next::ProbeEtcd);
        assert!(s.etcd_back().is_some());
        assert!(matches!(s.next(back, 0, None), Next::FullPass(_)));
    }

    #[test]
    fn a_flapping_etcd_causes_no_more_than_one_full_pass_per_five_seconds() {
        let t0 = Instant::now();
        let mut s = started(t0);
        let mut full_passes = 0;
        let mut now = t0;
        // Down and back every 300 ms for 20 s.
        while now < t0 + Duration::from_secs(20) {
            now += Duration::from_millis(300);
            s.etcd_unreachable(now);
            s.next(now + PROBE_INTERVAL, 0, None);
            s.etcd_back();
            if let Next::FullPass(_) = s.next(now, 0, None) {
                full_passes += 1;
                s.full_done(now);
            }
        }
        assert_eq!(full_passes, 3, "at 5.1, 10.2 and 15.3 s: one per 5 s");
    }

    #[test]
    fn a_failed_pass_waits_a_doubling_pause_and_a_good_one_resets_it() {
        let t0 = Instant::now();
        let mut s = schedule(t0);
        assert!(matches!(s.next(t0, 0, None), Next::FullPass(_)));
        assert_eq!(s.failed(t0), Duration::from_secs(1));
        assert_eq!(
            s.next(t0, 1, None),
            Next::Watch(t0 + Duration::from_secs(1))
        );
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(s.next(t1, 1, None), Next::TargetedPass);
        assert_eq!(s.failed(t1), Duration::from_secs(2));
        s.succeeded();
        assert_eq!(s.failed(t1), Duration::from_secs(1));
    }
}
