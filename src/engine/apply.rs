//! Applying a plan to UFM: the rules that keep a partition safe while its actions go out one
//! by one, apart from the HTTP client so that they are tested on their own.
//!
//! - Actions are applied in the plan's order (the planner puts adds before removes).
//! - After a failed action, the partition's later actions are skipped: a remove after a failed
//!   add could take the partition's last GUID, and UFM deletes a partition left empty.
//! - A failure on one partition does not stop the others.
//! - Deleting a partition that is already gone is what was wanted.
//! - `stop` is asked before each action: on SIGTERM or a lost leadership the rest waits.

use std::collections::BTreeSet;

use crate::model::{Guid, Join, PKey};
use crate::net::ufm::{UfmClient, UfmError};
use crate::plan::Action;

/// The UFM writes a plan is made of. [`UfmClient`] is the real one; the tests record calls.
pub(crate) trait UfmWrites {
    fn add(&self, pkey: PKey, guids: &[Guid], join: Join, ip_over_ib: bool)
    -> Result<(), UfmError>;
    fn remove(&self, pkey: PKey, guids: &[Guid]) -> Result<(), UfmError>;
    fn delete(&self, pkey: PKey) -> Result<(), UfmError>;
}

impl UfmWrites for UfmClient {
    fn add(
        &self,
        pkey: PKey,
        guids: &[Guid],
        join: Join,
        ip_over_ib: bool,
    ) -> Result<(), UfmError> {
        self.add_guids(pkey, guids, join, ip_over_ib)
    }

    fn remove(&self, pkey: PKey, guids: &[Guid]) -> Result<(), UfmError> {
        self.remove_guids(pkey, guids)
    }

    fn delete(&self, pkey: PKey) -> Result<(), UfmError> {
        UfmClient::delete(self, pkey)
    }
}

/// Changes applied, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub created: usize,
    pub guids_added: usize,
    pub guids_removed: usize,
    pub deleted: usize,
}

impl Counts {
    fn add(&mut self, action: &Action) {
        match action {
            Action::Add { guids, creates, .. } => {
                self.guids_added += guids.len();
                self.created += usize::from(*creates);
            }
            Action::Remove { guids, .. } => self.guids_removed += guids.len(),
            Action::Delete { .. } => self.deleted += 1,
        }
    }
}

/// What applying a plan did.
#[derive(Debug, Default)]
pub(crate) struct Applied {
    pub counts: Counts,
    /// Actions that failed, with UFM's reason; their partitions are retried next pass.
    pub failures: Vec<(Action, String)>,
    /// Actions not tried: after a failure on their partition, or after `stop`.
    pub skipped: usize,
    /// Partitions with at least one successful action.
    pub succeeded: BTreeSet<PKey>,
    /// Partitions deleted (or found already gone).
    pub deleted: BTreeSet<PKey>,
    /// Partitions with a failed action.
    pub failed: BTreeSet<PKey>,
}

/// Applies `actions` in order through `ufm`, following the rules in the module comment.
pub(crate) fn apply(
    actions: &[Action],
    ufm: &dyn UfmWrites,
    stop: &mut dyn FnMut() -> bool,
) -> Applied {
    let mut applied = Applied::default();
    for action in actions {
        let pkey = action.pkey();
        if applied.failed.contains(&pkey) || stop() {
            applied.skipped += 1;
            continue;
        }
        match apply_one(action, ufm) {
            Ok(()) => {
                applied.counts.add(action);
                applied.succeeded.insert(pkey);
                if matches!(action, Action::Delete { .. }) {
                    applied.deleted.insert(pkey);
                }
            }
            Err(e) => {
                log::error!("{pkey}: {} failed: {e}", action.describe());
                applied.failed.insert(pkey);
                applied.failures.push((action.clone(), e.to_string()));
            }
        }
    }
    applied
}

fn apply_one(action: &Action, ufm: &dyn UfmWrites) -> Result<(), UfmError> {
    match action {
        Action::Add {
            pkey,
            guids,
            join,
            ip_over_ib,
            ..
        } => ufm.add(*pkey, guids, *join, *ip_over_ib),
        Action::Remove { pkey, guids } => ufm.remove(*pkey, guids),
        Action::Delete { pkey } => match ufm.delete(*pkey) {
            Err(UfmError::NotFound(_)) => Ok(()),
            other => other,
        },
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;
    use crate::model::Membership;

    /// Records every call and fails the ones its rule says.
    struct Recorder {
        calls: RefCell<Vec<String>>,
        fail: fn(&str) -> Option<UfmError>,
    }

    impl Recorder {
        fn new(fail: fn(&str) -> Option<UfmError>) -> Recorder {
            Recorder {
                calls: RefCell::new(Vec::new()),
                fail,
            }
        }

        fn call(&self, call: String) -> Result<(), UfmError> {
            let result = (self.fail)(&call).map_or(Ok(()), Err);
            self.calls.borrow_mut().push(call);
            result
        }

        fn calls(&self) -> Vec<String> {
            self.calls.borrow().clone()
        }
    }

    impl UfmWrites for Recorder {
        fn add(&self, pkey: PKey, guids: &[Guid], _: Join, _: bool) -> Result<(), UfmError> {
            self.call(format!("add {pkey} {}", guids.len()))
        }
        fn remove(&self, pkey: PKey, guids: &[Guid]) -> Result<(), UfmError> {
            self.call(format!("remove {pkey} {}", guids.len()))
        }
        fn delete(&self, pkey: PKey) -> Result<(), UfmError> {
            self.call(format!("delete {pkey}"))
        }
    }

    fn pk(text: &str) -> PKey {
        text.parse().expect("pkey")
    }

    fn guids(n: u64) -> Vec<Guid> {
        (1..=n)
            .map(|i| format!("{i:016x}").parse().expect("guid"))
            .collect()
    }

    fn add(pkey: &str, n: u64, creates: bool) -> Action {
        Action::Add {
            pkey: pk(pkey),
            guids: guids(n),
            join: Join {
                membership: Membership::Full,
                index0: false,
            },
            ip_over_ib: true,
            creates,
        }
    }

    fn remove(pkey: &str, n: u64) -> Action {
        Action::Remove {
            pkey: pk(pkey),
            guids: guids(n),
        }
    }

    fn api_error(status: u16) -> UfmError {
        UfmError::Api {
            status,
            message: format!("HTTP {status}"),
        }
    }

    fn never_stop() -> impl FnMut() -> bool {
        || false
    }

    #[test]
    fn applies_in_plan_order_and_counts_what_was_done() {
        let ufm = Recorder::new(|_| None);
        let actions = [
            add("0x10", 2, true),
            remove("0x10", 1),
            add("0x20", 3, false),
        ];
        let applied = apply(&actions, &ufm, &mut never_stop());
        assert_eq!(ufm.calls(), ["add 0x10 2", "remove 0x10 1", "add 0x20 3"]);
        assert_eq!(
            applied.counts,
            Counts {
                created: 1,
                guids_added: 5,
                guids_removed: 1,
                deleted: 0
            }
        );
        assert!(applied.failures.is_empty());
        assert_eq!(applied.succeeded, [pk("0x10"), pk("0x20")].into());
    }

    #[test]
    fn a_failed_add_skips_the_partitions_remove_but_not_other_partitions() {
        let ufm = Recorder::new(|call| (call == "add 0x10 2").then(|| api_error(500)));
        let actions = [
            add("0x10", 2, false),
            remove("0x10", 5),
            add("0x20", 1, true),
        ];
        let applied = apply(&actions, &ufm, &mut never_stop());
        assert_eq!(
            ufm.calls(),
            ["add 0x10 2", "add 0x20 1"],
            "no remove after the failed add"
        );
        assert_eq!(applied.skipped, 1);
        assert_eq!(applied.failures.len(), 1);
        assert_eq!(applied.failed, [pk("0x10")].into());
        assert_eq!(applied.succeeded, [pk("0x20")].into());
        assert_eq!(applied.counts.guids_removed, 0);
    }

    #[test]
    fn deleting_a_partition_already_gone_counts_as_deleted() {
        let ufm = Recorder::new(|call| {
            (call == "delete 0x30").then(|| UfmError::NotFound("gone".into()))
        });
        let applied = apply(
            &[Action::Delete { pkey: pk("0x30") }],
            &ufm,
            &mut never_stop(),
        );
        assert!(applied.failures.is_empty());
        assert_eq!(applied.deleted, [pk("0x30")].into());
        assert_eq!(applied.counts.deleted, 1);
    }

    #[test]
    fn stop_leaves_the_remaining_actions_for_later() {
        let ufm = Recorder::new(|_| None);
        let mut asked = 0;
        let mut stop = || {
            asked += 1;
            asked > 1
        };
        let actions = [
            add("0x10", 1, true),
            add("0x20", 1, true),
            add("0x30", 1, true),
        ];
        let applied = apply(&actions, &ufm, &mut stop);
        assert_eq!(ufm.calls(), ["add 0x10 1"]);
        assert_eq!(applied.skipped, 2);
    }
}
