//! Applying a plan to UFM: the rules that keep a partition safe while its actions go out one
//! request at a time, apart from the HTTP client so that they are tested on their own.
//!
//! - Actions are applied in the plan's order (the planner puts adds before removes).
//! - Before every write request the [`Gate`] is asked: it says no on SIGTERM, and when etcd
//!   does not show this instance's leadership. The remaining writes wait for the next pass.
//!   Before each partition's first action the gate may also make the pass end there, so that
//!   newer changes go first (the daemon's slices).
//! - One log line per action as it is applied; whether UFM holds it is the engine's read-back. One operation may be several requests (a route
//!   and its `/actions/*` fallback; a delete as one remove per batch of GUIDs), so the gate
//!   goes down into the client with each operation, which asks it before each of them. A
//!   delete stopped half-way is neither deleted nor failed: it is finished next pass.
//! - An add that UFM refuses because it does not know a GUID is split until the GUIDs UFM
//!   knows are in; each rejected GUID is reported with UFM's reason and tried again next pass.
//! - Before a remove, the partition is read back: the GUIDs it must keep have to be there (an
//!   add answered 2xx may not have been applied), and the remove must leave at least one
//!   member, since UFM deletes a partition whose last member is removed.
//! - A request whose connection is refused or reset, or answered 502/503/504 (UFM restarting
//!   or overloaded), is sent again twice after a short, jittered pause (every PKey operation
//!   is idempotent); each try goes through the gate. A request that timed out is not sent
//!   again. A try that timed out, or whose connection was cut once made, may still be applied
//!   later: its partition is reported in [`Applied::unknown`]. If there is still no answer, one cheap request asks whether UFM answers at all:
//!   if it does, only this partition failed (it waits for its own retry, the others go on);
//!   if not, the pass stops writing and the rest waits until UFM answers again, instead of
//!   each partition waiting out a timeout.
//! - After a failed action, the partition's later actions are skipped; the others go on.
//! - Deleting a partition that is already gone is what was wanted, but only the single-PKey
//!   read says it is gone: a "not found" from the delete itself may be about a route this
//!   UFM does not serve, and the partition stays owned until the read confirms it.
//!
//! Which UFM routes carry each request (the documented ones or `/actions/*`, a delete as a
//! removal of the last GUIDs) is the client's business: this module sees only [`UfmOps`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::model::{Guid, Join, PKey, Partition};
use crate::net::ufm::{PartitionList, REMOVE_BATCH, UfmClient, UfmError, WriteGate};
use crate::plan::Action;

/// The UFM operations a plan is made of. [`UfmClient`] is the real one; the tests record
/// calls. Each write operation asks `gate` before each of its write requests, and ends with
/// [`UfmError::Stopped`] when it closes.
pub(crate) trait UfmOps {
    fn add(
        &self,
        pkey: PKey,
        guids: &[Guid],
        join: Join,
        ip_over_ib: bool,
        gate: &mut WriteGate<'_>,
    ) -> Result<(), UfmError>;
    /// At most [`REMOVE_BATCH`] GUIDs: one request, or one per route tried.
    fn remove(&self, pkey: PKey, guids: &[Guid], gate: &mut WriteGate<'_>) -> Result<(), UfmError>;
    /// Possibly many requests: on a UFM without `DELETE /resources/pkeys/{pkey}`, one remove
    /// per [`REMOVE_BATCH`] GUIDs.
    fn delete(&self, pkey: PKey, gate: &mut WriteGate<'_>) -> Result<(), UfmError>;
    fn get(&self, pkey: PKey) -> Result<Option<Partition>, UfmError>;
    /// Every partition with its members (one request).
    fn list(&self) -> Result<PartitionList, UfmError>;
    /// UFM's `last_updated`, opaque; `None` when this UFM does not serve it.
    fn last_updated(&self) -> Result<Option<String>, UfmError>;
    /// The UFM base URLs configured, for the ownership record's binding.
    fn hosts(&self) -> Vec<String>;
    /// UFM's own name for its fabric (`site_name`), when it exposes it.
    fn site(&self) -> Option<String>;
    /// The longest one request may take.
    fn request_bound(&self) -> Duration;
    /// Whether UFM answers a cheap request (its version) at all.
    fn answers(&self) -> bool;
}

impl UfmOps for UfmClient {
    fn add(
        &self,
        pkey: PKey,
        guids: &[Guid],
        join: Join,
        ip_over_ib: bool,
        gate: &mut WriteGate<'_>,
    ) -> Result<(), UfmError> {
        self.add_guids(pkey, guids, join, ip_over_ib, gate)
    }

    fn remove(&self, pkey: PKey, guids: &[Guid], gate: &mut WriteGate<'_>) -> Result<(), UfmError> {
        self.remove_guids(pkey, guids, gate)
    }

    fn delete(&self, pkey: PKey, gate: &mut WriteGate<'_>) -> Result<(), UfmError> {
        UfmClient::delete(self, pkey, gate).map(|_| ())
    }

    fn get(&self, pkey: PKey) -> Result<Option<Partition>, UfmError> {
        UfmClient::get(self, pkey)
    }

    fn list(&self) -> Result<PartitionList, UfmError> {
        self.list_partitions()
    }

    fn last_updated(&self) -> Result<Option<String>, UfmError> {
        UfmClient::last_updated(self)
    }

    fn hosts(&self) -> Vec<String> {
        UfmClient::hosts(self).to_vec()
    }

    fn request_bound(&self) -> Duration {
        UfmClient::request_bound(self)
    }

    fn site(&self) -> Option<String> {
        UfmClient::site(self)
    }

    fn answers(&self) -> bool {
        match self.version() {
            Ok(_) => true,
            Err(e) => !e.is_no_answer(),
        }
    }
}

/// Asked before each UFM write request.
pub(crate) trait Gate {
    /// `Err(reason)` stops the pass's remaining writes (SIGTERM, or a leadership this instance
    /// cannot be sure of for as long as a request may take).
    fn before_write(&mut self) -> Result<(), String>;

    /// Asked before the first action of each partition: `true` ends the pass here so that
    /// newer changes go first (the daemon's slices); the rest waits for the next pass.
    fn make_way(&mut self) -> bool {
        false
    }

    /// Told after each partition's actions: `done` of `total` partitions so far.
    fn progress(&mut self, _done: usize, _total: usize) {}
}

/// A gate that always opens (tests, one-shot commands without leader election).
impl<F: FnMut() -> Result<(), String>> Gate for F {
    fn before_write(&mut self) -> Result<(), String> {
        self()
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

/// A GUID UFM refused to add, with UFM's reason.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Rejected {
    pub pkey: PKey,
    pub guid: Guid,
    pub reason: String,
}

/// What applying a plan did.
#[derive(Debug, Default)]
pub(crate) struct Applied {
    pub counts: Counts,
    /// Actions that failed, with the reason; their partitions are retried next pass.
    pub failures: Vec<(Action, String)>,
    /// Actions not tried: after a failure on their partition, or after the gate closed.
    pub skipped: usize,
    /// Partitions with at least one successful request.
    pub succeeded: BTreeSet<PKey>,
    /// Partitions an action was tried for: what UFM holds of them is read back.
    pub tried: BTreeSet<PKey>,
    /// Partitions with actions not tried (the gate closed, UFM stopped answering, the pass
    /// made way for newer changes), with the reason.
    pub not_sent: BTreeMap<PKey, String>,
    /// Partitions deleted (or found already gone).
    pub deleted: BTreeSet<PKey>,
    /// Of those, the ones whose delete UFM answered "not found": only a complete list may
    /// end their ownership, not the single read alone.
    pub deleted_unseen: BTreeSet<PKey>,
    /// Partitions with a write whose outcome is unknown (it timed out, or its connection was
    /// cut once made): UFM may still apply it, later than any answer.
    pub unknown: BTreeMap<PKey, String>,
    /// Partitions with a failed action.
    pub failed: BTreeSet<PKey>,
    /// GUIDs UFM refused to add.
    pub rejected: Vec<Rejected>,
    /// Why the gate closed, if it did.
    pub stopped: Option<String>,
    /// UFM stopped answering (after retries): the pass stopped writing.
    pub ufm_down: Option<String>,
    /// Requests sent again after a transient failure.
    pub retries: u64,
    /// When each partition written got its last successful write.
    pub written: BTreeMap<PKey, Instant>,
    /// The pass made way for newer changes before these actions.
    pub made_way: bool,
}

impl Applied {
    /// Why the actions left over were not tried, if the pass stopped early.
    fn stop_reason(&self) -> Option<String> {
        if let Some(why) = &self.stopped {
            return Some(why.clone());
        }
        if let Some(e) = &self.ufm_down {
            return Some(format!("UFM stopped answering ({e})"));
        }
        self.made_way
            .then(|| "the pass made way for newer changes".to_string())
    }
}

/// Applies `actions` in order through `ufm`, following the rules in the module comment. One
/// log line per action as it is applied.
pub(crate) fn apply(actions: &[Action], ufm: &dyn UfmOps, gate: &mut dyn Gate) -> Applied {
    let mut applied = Applied::default();
    let mut previous: Option<PKey> = None;
    let total = actions
        .iter()
        .map(Action::pkey)
        .collect::<BTreeSet<PKey>>()
        .len();
    let mut done = 0;
    for action in actions {
        let pkey = action.pkey();
        let first_of_partition = previous != Some(pkey);
        if first_of_partition && previous.is_some() {
            done += 1;
            gate.progress(done, total);
        }
        previous = Some(pkey);
        if applied.stop_reason().is_none() && first_of_partition && gate.make_way() {
            applied.made_way = true;
        }
        if let Some(why) = applied.stop_reason() {
            applied.skipped += 1;
            applied.not_sent.entry(pkey).or_insert(why);
            continue;
        }
        if applied.failed.contains(&pkey) {
            applied.skipped += 1;
            continue;
        }
        applied.tried.insert(pkey);
        let mut run = Run {
            ufm,
            gate: &mut *gate,
            applied: &mut applied,
        };
        let result = run.action(action);
        if applied.succeeded.contains(&pkey) {
            applied.written.insert(pkey, Instant::now());
        }
        match result {
            Ok(()) => {
                log::info!("{pkey}: {}", action.describe());
                if matches!(action, Action::Delete { .. }) {
                    applied.deleted.insert(pkey);
                }
            }
            Err(Failure::Stopped(reason)) => {
                applied.skipped += 1;
                applied.not_sent.insert(pkey, reason.clone());
                applied.stopped = Some(reason);
            }
            Err(Failure::Down(e)) if ufm.answers() => {
                log::error!(
                    "{pkey}: {} failed: {e}; UFM answers other requests, so only {pkey} waits for its own retry",
                    action.describe()
                );
                applied.failed.insert(pkey);
                applied.failures.push((action.clone(), e));
            }
            Err(Failure::Down(e)) => {
                log::error!("{pkey}: {} not done: {e}", action.describe());
                applied.skipped += 1;
                applied
                    .not_sent
                    .insert(pkey, format!("UFM stopped answering ({e})"));
                applied.ufm_down = Some(e);
            }
            Err(Failure::Failed(e)) => {
                log::error!("{pkey}: {} failed: {e}", action.describe());
                applied.failed.insert(pkey);
                applied.failures.push((action.clone(), e));
            }
        }
    }
    applied
}

/// Why one action did not complete.
enum Failure {
    /// The gate closed before a request.
    Stopped(String),
    /// No answer, even after retries: UFM may be down.
    Down(String),
    /// UFM failed or refused it, or the check before a remove failed.
    Failed(String),
}

impl From<UfmError> for Failure {
    fn from(e: UfmError) -> Failure {
        match e {
            UfmError::Stopped(reason) => Failure::Stopped(reason),
            e if e.is_no_answer() => Failure::Down(e.to_string()),
            e => Failure::Failed(e.to_string()),
        }
    }
}

/// Tries after the first, for a request refused, reset or answered 502/503/504.
const RETRIES: u32 = 2;

/// The pause before retry `n` (1, 2): 100 ms then 300 ms, each between half and one and a
/// half times that, so that two clients do not retry in step.
pub(crate) fn retry_pause(n: u32) -> Duration {
    let base = if n <= 1 { 100 } else { 300 };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    // A cheap spread from the clock's nanoseconds; no cryptographic quality needed.
    let spread = u64::from(nanos.wrapping_mul(2_654_435_761) % 1000);
    Duration::from_millis(base / 2 + base * spread / 1000)
}

/// Runs `op`, and again after a pause when it failed in a way that may pass (at most
/// [`RETRIES`] more times), asking `before` first each time; counts the retries. A write
/// operation carries the gate itself (see [`Run::send`]): `before` is open for it.
pub(crate) fn with_retries<T>(
    retries: &mut u64,
    mut before: impl FnMut() -> Result<(), String>,
    mut op: impl FnMut() -> Result<T, UfmError>,
) -> Result<Result<T, UfmError>, String> {
    let mut tries = 0;
    loop {
        before()?;
        match op() {
            Err(e) if e.is_retryable() && tries < RETRIES => {
                tries += 1;
                *retries += 1;
                log::debug!("UFM: {e}; trying again");
                std::thread::sleep(retry_pause(tries));
            }
            result => return Ok(result),
        }
    }
}

/// One action on its way: the client, the gate, and the record of what went through.
struct Run<'a> {
    ufm: &'a dyn UfmOps,
    gate: &'a mut dyn Gate,
    applied: &'a mut Applied,
}

impl Run<'_> {
    fn action(&mut self, action: &Action) -> Result<(), Failure> {
        match action {
            Action::Add {
                pkey,
                guids,
                join,
                ip_over_ib,
                creates,
            } => {
                let added = self.add(*pkey, guids, *join, *ip_over_ib)?;
                if added > 0 {
                    self.applied.counts.guids_added += added;
                    self.applied.counts.created += usize::from(*creates);
                }
                Ok(())
            }
            Action::Remove { pkey, guids, keep } => self.remove(*pkey, guids, keep),
            Action::Delete { pkey } => self.delete(*pkey),
        }
    }

    /// Deletes a partition; a "not found" counts as deleted once the single-PKey read agrees.
    fn delete(&mut self, pkey: PKey) -> Result<(), Failure> {
        let ufm = self.ufm;
        match self.send(pkey, |gate| ufm.delete(pkey, gate))? {
            Ok(()) => {}
            Err(UfmError::NotFound(answer)) => {
                confirm_gone(self.ufm, pkey, &answer)?;
                self.applied.deleted_unseen.insert(pkey);
            }
            Err(e) => return Err(e.into()),
        }
        self.applied.counts.deleted += 1;
        self.applied.succeeded.insert(pkey);
        Ok(())
    }

    /// Sends one write operation, with retries. `op` gets the gate and asks it before each
    /// of its write requests, so every try and every request of a try waits for it; a closed
    /// gate ends the operation, whatever it had done, as [`Failure::Stopped`].
    ///
    /// A try that timed out, or whose connection was cut once made, may still be applied by
    /// UFM later: its partition is noted in [`Applied::unknown`], whatever the later tries did.
    fn send<T>(
        &mut self,
        pkey: PKey,
        mut op: impl FnMut(&mut WriteGate<'_>) -> Result<T, UfmError>,
    ) -> Result<Result<T, UfmError>, Failure> {
        let gate = &mut *self.gate;
        let mut ask = || gate.before_write();
        let mut unknown: Option<String> = None;
        let mut one_try = || {
            let sent = op(&mut ask);
            if let Err(e) = &sent {
                if e.outcome_unknown() {
                    unknown = Some(e.to_string());
                }
            }
            sent
        };
        let sent = with_retries(&mut self.applied.retries, || Ok(()), &mut one_try);
        if let Some(why) = unknown {
            self.applied.unknown.insert(pkey, why);
        }
        match sent {
            Ok(Err(UfmError::Stopped(reason))) | Err(reason) => Err(Failure::Stopped(reason)),
            Ok(sent) => Ok(sent),
        }
    }

    /// Sends one read request, with retries.
    fn read<T>(&mut self, op: impl FnMut() -> Result<T, UfmError>) -> Result<T, Failure> {
        with_retries(&mut self.applied.retries, || Ok(()), op)
            .map_err(Failure::Stopped)?
            .map_err(Failure::from)
    }

    /// Adds `guids`, leaving out the ones UFM says it does not know; returns how many went in.
    fn add(
        &mut self,
        pkey: PKey,
        guids: &[Guid],
        join: Join,
        ip_over_ib: bool,
    ) -> Result<usize, Failure> {
        if guids.is_empty() {
            return Ok(0);
        }
        let ufm = self.ufm;
        let error = match self.send(pkey, |gate| ufm.add(pkey, guids, join, ip_over_ib, gate))? {
            Ok(()) => {
                self.applied.succeeded.insert(pkey);
                return Ok(guids.len());
            }
            Err(e) if names_a_port(&e) => e,
            Err(e) => return Err(e.into()),
        };
        let reason = error.to_string();
        if let Some(named) = guids.iter().find(|g| mentions(&reason, **g)) {
            self.reject(pkey, *named, &reason);
            let rest: Vec<Guid> = guids.iter().filter(|g| *g != named).copied().collect();
            return self.add(pkey, &rest, join, ip_over_ib);
        }
        if let [only] = guids {
            self.reject(pkey, *only, &reason);
            return Ok(0);
        }
        let (left, right) = guids.split_at(guids.len() / 2);
        Ok(self.add(pkey, left, join, ip_over_ib)? + self.add(pkey, right, join, ip_over_ib)?)
    }

    fn reject(&mut self, pkey: PKey, guid: Guid, reason: &str) {
        self.applied.rejected.push(Rejected {
            pkey,
            guid,
            reason: reason.to_string(),
        });
    }

    /// Reads the partition back, then removes in batches what it holds of `guids`, provided it
    /// holds every GUID of `keep` (less those UFM rejected) and keeps at least one member.
    fn remove(&mut self, pkey: PKey, guids: &[Guid], keep: &[Guid]) -> Result<(), Failure> {
        let rejected: BTreeSet<Guid> = self
            .applied
            .rejected
            .iter()
            .filter(|r| r.pkey == pkey)
            .map(|r| r.guid)
            .collect();
        let ufm = self.ufm;
        let Some(current) = self.read(|| ufm.get(pkey))? else {
            return Err(Failure::Failed(format!(
                "{pkey} is not in UFM any more: nothing to remove, and its GUIDs are added again next pass"
            )));
        };
        let members: BTreeSet<Guid> = current.members.iter().map(|m| m.guid).collect();
        let missing: Vec<&Guid> = keep
            .iter()
            .filter(|g| !members.contains(g) && !rejected.contains(g))
            .collect();
        if let Some(first) = missing.first() {
            return Err(Failure::Failed(format!(
                "UFM does not hold {} of the GUIDs {pkey} keeps (e.g. {first}) although it accepted them: not removing others, which could empty the partition; trying again next pass",
                missing.len()
            )));
        }
        let to_remove: Vec<Guid> = guids
            .iter()
            .filter(|g| members.contains(g))
            .copied()
            .collect();
        if to_remove.len() == members.len() {
            return Err(Failure::Failed(format!(
                "removing {} GUIDs would leave {pkey} empty, and UFM would delete it: not removing",
                to_remove.len()
            )));
        }
        for batch in to_remove.chunks(REMOVE_BATCH) {
            self.send(pkey, |gate| ufm.remove(pkey, batch, gate))??;
            self.applied.counts.guids_removed += batch.len();
            self.applied.succeeded.insert(pkey);
        }
        Ok(())
    }
}

/// A delete answered "not found" (`answer`): the partition is gone only if the single-PKey
/// read says so too.
fn confirm_gone(ufm: &dyn UfmOps, pkey: PKey, answer: &str) -> Result<(), Failure> {
    match ufm.get(pkey) {
        Ok(None) => Ok(()),
        Ok(Some(partition)) => Err(Failure::Failed(format!(
            "{answer}; yet UFM still has {pkey} with {} GUIDs: still owned, deleting again next pass",
            partition.members.len()
        ))),
        Err(e) => Err(Failure::Failed(format!(
            "{answer}; cannot confirm that {pkey} is gone ({e}): still owned, deleting again next pass"
        ))),
    }
}

/// Whether UFM's refusal of an add is about a port it does not know (NVIDIA's UFM mock: 404
/// "InfiniBand port … does not exist"), as opposed to the request as a whole: UFM's own text
/// says so, not the URL (`/actions/add_guids_to_pkey` names GUIDs too).
fn names_a_port(error: &UfmError) -> bool {
    let UfmError::Api { status, reason, .. } = error else {
        return false;
    };
    let text = reason.to_ascii_lowercase();
    matches!(status, 400 | 404 | 422) && (text.contains("port") || text.contains("guid"))
}

/// Whether UFM's message names this GUID (in any case, with or without `0x`).
fn mentions(message: &str, guid: Guid) -> bool {
    message.to_ascii_lowercase().contains(&guid.to_string())
}

#[cfg(test)]
mod tests;
