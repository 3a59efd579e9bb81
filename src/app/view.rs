//! The fabric-wide view that logs, metrics and the status file report: unmanaged partitions,
//! invalid entries, partitions UFM lists in a form that cannot be read, deletions refused and
//! GUIDs UFM refused. A full pass sees all of it; a pass over some partitions replaces only
//! what it saw of them. The view also remembers what it has logged, so that an unchanged list
//! is not logged again every pass (a refusal, which needs an operator, is).

use std::collections::{BTreeMap, BTreeSet};

use crate::engine::PassReport;
use crate::model::{Guid, PKey};
use crate::plan::Invalid;
use crate::text::count;
use crate::text::pkey_list;

/// What the whole fabric looks like, as far as the passes so far saw it.
#[derive(Debug, Default)]
pub(crate) struct View {
    unmanaged: BTreeSet<PKey>,
    invalid: Vec<Invalid>,
    unreadable: BTreeMap<PKey, String>,
    refused: BTreeSet<PKey>,
    rejected: BTreeSet<(PKey, Guid)>,
    /// What was last logged.
    logged_rejected: BTreeSet<(PKey, Guid)>,
    logged_unmanaged: Option<BTreeSet<PKey>>,
    logged_invalid: Vec<Invalid>,
    logged_unreadable: BTreeMap<PKey, String>,
    logged_refusal: Option<String>,
    logged_hold: Option<String>,
}

impl View {
    /// Takes in what a pass saw, and makes the report's lists the whole view (a pass over
    /// some partitions saw only those), so that everything after it reports the fabric.
    pub(crate) fn merge(&mut self, report: &mut PassReport) {
        let plan = &mut report.plan;
        let seen = |pkey: &PKey| report.covered.as_ref().is_none_or(|c| c.contains(pkey));
        self.unmanaged.retain(|p| !seen(p));
        self.unmanaged.extend(plan.unmanaged.iter().copied());
        self.invalid
            .retain(|i| report.covered.is_some() && i.pkey.is_none_or(|p| !seen(&p)));
        self.invalid.extend(plan.invalid.iter().cloned());
        self.invalid.sort();
        self.invalid.dedup();
        self.unreadable.retain(|p, _| !seen(p));
        self.unreadable.extend(plan.unreadable.iter().cloned());
        self.refused.retain(|p| !seen(p));
        self.refused.extend(plan.refused_deletes.iter().copied());
        plan.refused_deletes = self.refused.iter().copied().collect();
        self.rejected.retain(|(p, _)| !seen(p));
        self.rejected
            .extend(report.rejected.iter().map(|r| (r.pkey, r.guid)));
        plan.unmanaged = self.unmanaged.iter().copied().collect();
        plan.invalid = self.invalid.clone();
        plan.unreadable = self
            .unreadable
            .iter()
            .map(|(p, r)| (*p, r.clone()))
            .collect();
    }

    /// Deletions refused, across the fabric.
    pub(crate) fn refused(&self) -> &BTreeSet<PKey> {
        &self.refused
    }

    /// Logs the unmanaged list when it changes, each new invalid entry, unreadable partition
    /// and rejected GUID once, and the guard's refusal every pass (it needs an operator).
    pub(crate) fn log(&mut self, report: &PassReport) {
        self.log_unmanaged();
        for invalid in &self.invalid {
            if !self.logged_invalid.contains(invalid) {
                log::warn!(
                    "invalid entry {}: {}; its partition is left as it is",
                    invalid.key,
                    invalid.reason
                );
            }
        }
        self.logged_invalid = self.invalid.clone();
        for (pkey, why) in &self.unreadable {
            if self.logged_unreadable.get(pkey) != Some(why) {
                log::warn!(
                    "UFM lists partition {pkey} in a form that cannot be read ({why}): it is left as it is"
                );
            }
        }
        self.logged_unreadable = self.unreadable.clone();
        for r in &report.rejected {
            if self.logged_rejected.contains(&(r.pkey, r.guid)) {
                continue;
            }
            log::warn!(
                "{}: UFM refused GUID {}: {}; the other GUIDs are in, this one is tried again with its partition",
                r.pkey,
                r.guid,
                r.reason
            );
        }
        self.logged_rejected = self.rejected.clone();
        self.log_refusal(report);
        self.log_hold(report);
    }

    /// A held ownership record is said when it is first seen, also with nothing to delete
    /// (a refusal says it again at every pass), and when it is no longer held.
    fn log_hold(&mut self, report: &PassReport) {
        let locked = &report.plan.locked;
        if *locked == self.logged_hold || report.covered.is_some() && locked.is_none() {
            return;
        }
        match locked {
            Some(why) if report.plan.refusal.is_none() => log::error!("{why}"),
            Some(_) => {}
            None => log::info!("the ownership record is no longer held"),
        }
        self.logged_hold = locked.clone();
    }

    fn log_unmanaged(&mut self) {
        if self.logged_unmanaged.as_ref() == Some(&self.unmanaged) {
            return;
        }
        if self.unmanaged.is_empty() {
            if self.logged_unmanaged.is_some() {
                log::info!("no unmanaged partitions in UFM");
            }
        } else {
            log::info!(
                "{} in UFM (not in etcd, never owned; left alone): {}",
                count(self.unmanaged.len(), "unmanaged partition"),
                pkey_list(&self.unmanaged)
            );
        }
        self.logged_unmanaged = Some(self.unmanaged.clone());
    }

    fn log_refusal(&mut self, report: &PassReport) {
        let plan = &report.plan;
        if let Some(reason) = &plan.refusal {
            let refused: BTreeSet<PKey> = plan.refused_deletes.iter().copied().collect();
            let way_out = if plan.locked.is_some() {
                ""
            } else {
                "; if this is intended, confirm with `ufm-pkeyd state --confirm-deletions all` (or the PKeys), also while the daemon runs"
            };
            log::error!(
                "refusing to delete {}: {reason}{way_out}: {}",
                count(refused.len(), "partition"),
                pkey_list(&refused)
            );
        } else if self.logged_refusal.is_some() && report.covered.is_none() {
            log::info!("the deletion guard no longer blocks deletions");
        }
        if report.covered.is_none() || plan.refusal.is_some() {
            self.logged_refusal = plan.refusal.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pk(text: &str) -> PKey {
        text.parse().expect("a PKey")
    }

    fn pass(covered: Option<&[&str]>, refused: &[&str], unmanaged: &[&str]) -> PassReport {
        let mut report = PassReport {
            covered: covered.map(|c| c.iter().map(|p| pk(p)).collect()),
            ..PassReport::default()
        };
        report.plan.refused_deletes = refused.iter().map(|p| pk(p)).collect();
        report.plan.unmanaged = unmanaged.iter().map(|p| pk(p)).collect();
        report
    }

    #[test]
    fn a_pass_over_some_partitions_replaces_only_what_it_saw_of_the_fabric() {
        let mut view = View::default();
        let mut full = pass(None, &["0x10", "0x11", "0x12"], &["0x300"]);
        view.merge(&mut full);
        assert_eq!(view.refused().len(), 3);
        // A job starts: a pass over its partition refuses nothing and judges no other.
        let mut job = pass(Some(&["0x20"]), &[], &[]);
        view.merge(&mut job);
        assert_eq!(
            job.plan.refused_deletes.len(),
            3,
            "the report says the fabric's"
        );
        assert_eq!(job.plan.unmanaged, [pk("0x300")]);
        // 0x11's key comes back: a pass over it refuses it no more.
        let mut back = pass(Some(&["0x11"]), &[], &[]);
        view.merge(&mut back);
        assert_eq!(view.refused().len(), 2);
        // A full pass that refuses nothing (confirmed): none.
        view.merge(&mut pass(None, &[], &[]));
        assert!(view.refused().is_empty());
    }
}
