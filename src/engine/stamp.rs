//! Following UFM's `GET /resources/pkeys/last_updated`, to notice changes made by someone else
//! (an operator, another tool, a UFM fail-over to a standby with an older database) with one
//! small request instead of reading every partition.
//!
//! The value is opaque: only "the same as before" or "different" counts. What is trusted:
//! - The value read just before a full list is the list's: a later different value means a
//!   change after it.
//! - Before a pass's first write the value is read again: if it moved since the last trusted
//!   value, someone else changed UFM, and a full pass follows. After the pass's last write (and
//!   its read-back) it is read once more and becomes the trusted value, so the daemon's own
//!   writes do not count as drift. A change by someone else *between* those two reads is not
//!   told apart from ours: that window is as long as the pass's writes.
//! - A value that did not move although the read-back shows that UFM applied writes is not a
//!   stamp UFM keeps: every check lists everything from then on, until the value is seen to
//!   move with writes again (a UFM whose stamp is frozen, or an object that never changes, is
//!   followed as one that does not serve it).
//! - A UFM that answers 404 or something odd is asked again at the next check; meanwhile each
//!   check is a full list. Nothing is believed for ever.
//!
//! Pure rules; the engine reads the value and says what happened.

/// One read of `last_updated`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Read {
    /// The value, as text.
    Value(String),
    /// UFM does not serve it (404), or answered something that is not a stamp: why.
    Unusable(String),
}

/// What a drift check concludes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Drift {
    /// Nothing changed since the last trusted value.
    Unchanged,
    /// The value moved: someone else changed UFM; a full pass.
    Moved,
    /// Nothing trusted to compare with: a full pass, and why.
    FullPass(String),
}

/// Why a full pass follows a stamp that moved.
pub(crate) const MOVED: &str = "UFM's partitions changed outside ufm-pkeyd (last_updated moved)";

/// The last trusted value.
#[derive(Debug, Default)]
pub(crate) struct Stamp {
    trusted: Option<String>,
    /// Why the last value could not be trusted, for the full pass's reason.
    distrust: Option<String>,
    /// The value was seen not to move with applied writes: why; every check lists in full
    /// until it moves with writes again.
    frozen: Option<String>,
}

impl Stamp {
    /// A full list was read, with `read` taken just before it.
    pub(crate) fn full_read(&mut self, read: Option<Read>) {
        self.trust(read);
    }

    /// Every poll interval: has UFM changed since the last trusted value?
    pub(crate) fn check(&mut self, read: Read) -> Drift {
        if let Some(why) = &self.frozen {
            return Drift::FullPass(format!("poll-interval ({why})"));
        }
        match (read, &self.trusted) {
            (Read::Value(now), Some(then)) if now == *then => Drift::Unchanged,
            (Read::Value(_), Some(_)) => {
                self.trusted = None;
                Drift::Moved
            }
            (Read::Value(_), None) => Drift::FullPass(self.distrust.clone().unwrap_or_else(|| {
                "UFM's last_updated not known since the last full read".to_string()
            })),
            (Read::Unusable(why), _) => {
                self.trusted = None;
                Drift::FullPass(format!("poll-interval ({why})"))
            }
        }
    }

    /// Read just before a pass's first write: `Some(reason)` when UFM changed since the last
    /// trusted value (a full pass must follow).
    pub(crate) fn before_writes(&mut self, read: &Option<Read>) -> Option<String> {
        let moved = match (read, &self.trusted) {
            (Some(Read::Value(now)), Some(then)) => now != then,
            _ => false,
        };
        if moved {
            self.trusted = None;
            self.distrust = Some(
                "UFM's partitions changed outside ufm-pkeyd just before its writes (last_updated moved)"
                    .to_string(),
            );
            return self.distrust.clone();
        }
        None
    }

    /// Read after a pass's last write and its read-back. `applied`: the read-back showed at
    /// least one change applied, so the value must have moved.
    pub(crate) fn after_writes(
        &mut self,
        before: Option<Read>,
        after: Option<Read>,
        applied: bool,
    ) {
        let before_trusted = self.trusted.is_some() || self.distrust.is_none();
        match (&before, &after) {
            (Some(Read::Value(b)), Some(Read::Value(a))) if applied && a == b => {
                self.trusted = None;
                self.frozen = Some(
                    "UFM's last_updated did not move although UFM applied ufm-pkeyd's writes: every check reads all partitions until it moves again".to_string(),
                );
            }
            (Some(Read::Value(b)), Some(Read::Value(a)))
                if applied && a != b && self.frozen.is_some() =>
            {
                self.frozen = None;
                self.trust(after);
            }
            _ if !before_trusted => {
                // A change by someone else was seen before the writes: keep distrusting until
                // a full read.
            }
            _ => self.trust(after),
        }
    }

    fn trust(&mut self, read: Option<Read>) {
        match read {
            Some(Read::Value(value)) => {
                self.trusted = Some(value);
                self.distrust = None;
            }
            Some(Read::Unusable(why)) => {
                self.trusted = None;
                self.distrust = Some(format!("poll-interval ({why})"));
            }
            None => {
                self.trusted = None;
                self.distrust = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Read {
        Read::Value(text.to_string())
    }

    fn full_pass(drift: Drift) -> bool {
        matches!(drift, Drift::FullPass(_) | Drift::Moved)
    }

    #[test]
    fn a_value_that_moved_since_the_full_read_asks_for_a_full_pass_once() {
        let mut stamp = Stamp::default();
        stamp.full_read(Some(v("t1")));
        assert_eq!(stamp.check(v("t1")), Drift::Unchanged);
        assert_eq!(stamp.check(v("t2")), Drift::Moved);
        stamp.full_read(Some(v("t2")));
        assert_eq!(stamp.check(v("t2")), Drift::Unchanged);
    }

    #[test]
    fn our_own_writes_are_not_drift_but_a_change_just_before_them_is() {
        let mut stamp = Stamp::default();
        stamp.full_read(Some(v("t1")));
        assert_eq!(stamp.before_writes(&Some(v("t1"))), None);
        stamp.after_writes(Some(v("t1")), Some(v("t2")), true);
        assert_eq!(stamp.check(v("t2")), Drift::Unchanged, "ours");
        // Someone deleted partitions by hand just before the next writes.
        let seen = stamp.before_writes(&Some(v("t3")));
        assert!(seen.is_some());
        stamp.after_writes(Some(v("t3")), Some(v("t4")), true);
        assert!(
            full_pass(stamp.check(v("t4"))),
            "the hand change is not absorbed by our writes"
        );
    }

    #[test]
    fn a_value_that_does_not_move_after_applied_writes_is_not_trusted_until_it_moves_again() {
        let mut stamp = Stamp::default();
        stamp.full_read(Some(v("frozen")));
        stamp.before_writes(&Some(v("frozen")));
        stamp.after_writes(Some(v("frozen")), Some(v("frozen")), true);
        assert!(full_pass(stamp.check(v("frozen"))));
        stamp.full_read(Some(v("frozen")));
        assert!(
            full_pass(stamp.check(v("frozen"))),
            "a full read does not make a frozen stamp trustworthy: hand changes made later count"
        );
        // UFM's stamp moves with writes again (restarted, fixed): followed again.
        stamp.after_writes(Some(v("frozen")), Some(v("t9")), true);
        assert_eq!(stamp.check(v("t9")), Drift::Unchanged);
    }

    #[test]
    fn writes_that_ufm_did_not_apply_need_not_move_it() {
        let mut stamp = Stamp::default();
        stamp.full_read(Some(v("t1")));
        stamp.after_writes(Some(v("t1")), Some(v("t1")), false);
        assert_eq!(stamp.check(v("t1")), Drift::Unchanged);
    }

    #[test]
    fn a_404_is_asked_again_at_the_next_check_not_believed_for_ever() {
        let mut stamp = Stamp::default();
        stamp.full_read(Some(v("t1")));
        assert!(full_pass(stamp.check(Read::Unusable("404".into()))));
        stamp.full_read(Some(v("t1")));
        assert_eq!(stamp.check(v("t1")), Drift::Unchanged, "served again");
    }
}
