//! The PKey writes (add GUIDs, remove GUIDs, delete a partition, create an empty one) through
//! the routes the host serves, as its [`RouteSet`] says. Each write tries its routes in
//! order. An answer that a route is missing is believed only once the host's version endpoint
//! answers under the same REST root (so the base URL and auth mode are right) and, for a change
//! to an existing partition, once the single-PKey read shows the partition there; then the
//! next route is tried. When every route fails, the error names them and the next attempt asks
//! UFM again.
//!
//! A 404 or 405 on a remove or a delete never means "the partition is gone" on its own: the
//! single-PKey read decides, and only its "not there" becomes [`UfmError::NotFound`].
//! Removing a partition's last GUIDs, which makes UFM delete it, is done only by
//! [`UfmClient::delete`], for a UFM without `DELETE /resources/pkeys/{pkey}`.
//!
//! One write here may be several requests: a route, then its fallback; a delete as a read,
//! one remove per [`REMOVE_BATCH`] GUIDs and a read back. Each write request waits for the
//! caller's [`WriteGate`] (reads do not): when it closes, the write ends there with
//! [`UfmError::Stopped`], leaving what was sent done and the rest for the next pass.

use serde_json::json;

use super::routes::{Creating, Deleting, Route, RouteSet, Serving};
use super::{REMOVE_BATCH, UfmClient, UfmError, WriteGate};
use crate::model::{Guid, Join, Membership, PKey};

/// How a partition was deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Deletion {
    /// With `DELETE /resources/pkeys/{pkey}`.
    Deleted,
    /// By removing its last GUIDs (this many): UFM deletes a partition left without members.
    ByRemovingGuids(usize),
}

/// What a write does to its partition, which says how to read a "no such route" answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    /// It changes a partition that must exist (a remove): the answer may be about the PKey,
    /// so the single-PKey read must show the partition before the route is taken as missing.
    Existing,
    /// It may create the partition (an add).
    Any,
}

impl UfmClient {
    /// Adds GUIDs to a partition, creating it when missing, in one request: `POST
    /// /resources/pkeys`, else `POST /actions/add_guids_to_pkey`.
    pub(crate) fn add_guids(
        &self,
        pkey: PKey,
        guids: &[Guid],
        join: Join,
        ip_over_ib: bool,
        gate: &mut WriteGate<'_>,
    ) -> Result<(), UfmError> {
        if guids.is_empty() {
            return Ok(());
        }
        self.through(RouteSet::adds, "add GUIDs to", pkey, Target::Any, |route| {
            self.send_add(gate, route, pkey, guids, join, ip_over_ib)
        })
        .map(|_| ())
    }

    /// Removes GUIDs from a partition in one request: `DELETE
    /// /resources/pkeys/{pkey}/guids/{guids}` (the GUIDs go in the URL, so a caller sends at
    /// most [`REMOVE_BATCH`] at a time), else `POST /actions/remove_guids_from_pkey`. UFM
    /// deletes a partition whose last member is removed.
    pub(crate) fn remove_guids(
        &self,
        pkey: PKey,
        guids: &[Guid],
        gate: &mut WriteGate<'_>,
    ) -> Result<(), UfmError> {
        self.remove_through(gate, pkey, guids, "remove GUIDs from")
    }

    /// Deletes a partition with all its members: `DELETE /resources/pkeys/{pkey}`, else by
    /// removing its GUIDs and reading back that UFM deleted it. [`UfmError::NotFound`] when
    /// the single-PKey read says it is not there. [`UfmError::Stopped`] when the gate closes,
    /// maybe between two removes: the GUIDs removed so far stay removed, the partition stays.
    pub(crate) fn delete(
        &self,
        pkey: PKey,
        gate: &mut WriteGate<'_>,
    ) -> Result<Deletion, UfmError> {
        if self.routes().deleting() == Deleting::Route {
            let path = format!("/resources/pkeys/{pkey}");
            match self.write(gate, "DELETE", &path, None) {
                Ok(_) => {
                    self.learn(Route::Delete, Serving::Served);
                    return Ok(Deletion::Deleted);
                }
                Err(UfmError::NoRoute { status, message }) => {
                    self.check_base()?;
                    self.confirm_there(pkey, &message)?;
                    self.learn_missing(Route::Delete, status);
                }
                Err(e @ UfmError::Api { status: 404, .. }) => {
                    self.confirm_there(pkey, &e.to_string())?;
                    return Err(UfmError::Incomplete(format!(
                        "{e}; yet GET /resources/pkeys/{pkey} shows it: {pkey} is not deleted"
                    )));
                }
                Err(e) => return Err(e),
            }
        }
        let deleted = self.delete_by_removing_guids(gate, pkey);
        if matches!(deleted, Err(UfmError::Unsupported(_))) {
            // Nothing worked: ask for the route again next time too.
            self.learned().routes.forget(&[Route::Delete]);
        }
        deleted
    }

    /// Creates an empty partition: `POST /resources/pkeys/add`, else an add without GUIDs,
    /// read back. [`UfmError::AlreadyExists`] when it is there already.
    pub(crate) fn create(
        &self,
        pkey: PKey,
        index0: bool,
        ip_over_ib: bool,
        gate: &mut WriteGate<'_>,
    ) -> Result<(), UfmError> {
        if self.routes().creating() == Creating::Route {
            let body =
                json!({"pkey": pkey.to_string(), "index0": index0, "ip_over_ib": ip_over_ib});
            match self.write(gate, "POST", "/resources/pkeys/add", Some(&body)) {
                Ok(_) => {
                    self.learn(Route::CreateEmpty, Serving::Served);
                    return Ok(());
                }
                Err(UfmError::Api { status, reason, .. })
                    if status == 409
                        || (status == 400 && reason.to_ascii_lowercase().contains("exist")) =>
                {
                    return Err(already_exists(pkey));
                }
                Err(UfmError::NoRoute { status, .. }) => {
                    self.check_base()?;
                    self.learn_missing(Route::CreateEmpty, status);
                }
                Err(e) => return Err(e),
            }
        }
        self.create_by_empty_add(gate, pkey, index0, ip_over_ib)
    }

    fn remove_through(
        &self,
        gate: &mut WriteGate<'_>,
        pkey: PKey,
        guids: &[Guid],
        what: &str,
    ) -> Result<(), UfmError> {
        if guids.is_empty() {
            return Ok(());
        }
        self.through(RouteSet::removes, what, pkey, Target::Existing, |route| {
            self.send_remove(gate, route, pkey, guids)
        })
        .map(|_| ())
    }

    /// For a UFM without `DELETE /resources/pkeys/{pkey}`: removes every GUID of the
    /// partition (UFM then deletes it) and reads back that it is gone. Each remove asks the
    /// gate: a delete of 128,000 GUIDs is 640 requests, time enough for a claim to lapse.
    fn delete_by_removing_guids(
        &self,
        gate: &mut WriteGate<'_>,
        pkey: PKey,
    ) -> Result<Deletion, UfmError> {
        let base = self.base();
        let Some(partition) = self.get(pkey)? else {
            return Err(UfmError::NotFound(format!(
                "PKey {pkey} not found in UFM: GET /resources/pkeys/{pkey} at {base} says it does not exist"
            )));
        };
        if partition.members.is_empty() {
            return Err(UfmError::Unsupported(format!(
                "UFM at {base} cannot delete {pkey}: it has no {}, and {pkey} has no GUID whose removal would make UFM delete it; delete it in UFM itself",
                Route::Delete
            )));
        }
        let guids: Vec<Guid> = partition.members.iter().map(|m| m.guid).collect();
        let what = format!(
            "delete (it has no {}) by removing the GUIDs of",
            Route::Delete
        );
        for batch in guids.chunks(REMOVE_BATCH) {
            self.remove_through(gate, pkey, batch, &what)?;
        }
        match self.get(pkey)? {
            None => Ok(Deletion::ByRemovingGuids(guids.len())),
            Some(left) if left.members.is_empty() => Err(UfmError::Unsupported(format!(
                "UFM at {base} removed the {} GUIDs of {pkey} but kept the empty partition, and it has no {}: this UFM cannot delete a partition through its REST API",
                guids.len(),
                Route::Delete
            ))),
            Some(left) => Err(UfmError::Incomplete(format!(
                "UFM at {base} removed the {} GUIDs of {pkey}, yet it still holds {} (added meanwhile?): {pkey} is not deleted",
                guids.len(),
                left.members.len()
            ))),
        }
    }

    /// For a UFM without `POST /resources/pkeys/add`: an add without GUIDs (NVIDIA's UFM mock
    /// creates the partition so), read back.
    fn create_by_empty_add(
        &self,
        gate: &mut WriteGate<'_>,
        pkey: PKey,
        index0: bool,
        ip_over_ib: bool,
    ) -> Result<(), UfmError> {
        let base = self.base();
        if self.get(pkey)?.is_some() {
            return Err(already_exists(pkey));
        }
        let join = Join {
            membership: Membership::Full,
            index0,
        };
        let cannot = |why: String| {
            UfmError::Unsupported(format!(
                "UFM at {base} cannot create an empty partition {pkey}: it has no {}, and {why}: create it with --guids",
                Route::CreateEmpty
            ))
        };
        let added = self.through(RouteSet::adds, "create", pkey, Target::Any, |route| {
            self.send_add(gate, route, pkey, &[], join, ip_over_ib)
        });
        match added {
            Ok(_) => {}
            Err(UfmError::Api {
                status: 400..=499,
                reason,
                ..
            }) => {
                return Err(cannot(format!(
                    "it refused an add without GUIDs ({reason})"
                )));
            }
            Err(e) => return Err(e),
        }
        match self.get(pkey)? {
            Some(_) => Ok(()),
            None => Err(cannot("an add without GUIDs did not create it".to_string())),
        }
    }

    /// Sends a write through the first route of `candidates` this host serves, moving on
    /// while the answer is "no such route" (see the module comment); returns the route that
    /// took it. `what` and `pkey` name the write in messages ("add GUIDs to 0x10").
    fn through(
        &self,
        candidates: fn(&RouteSet) -> Vec<Route>,
        what: &str,
        pkey: PKey,
        target: Target,
        mut send: impl FnMut(Route) -> Result<(), UfmError>,
    ) -> Result<Route, UfmError> {
        let mut missing: Vec<(Route, u16)> = Vec::new();
        while let Some(route) = candidates(&self.routes())
            .into_iter()
            .find(|r| missing.iter().all(|(m, _)| m != r))
        {
            match send(route) {
                Ok(()) => {
                    self.learn(route, Serving::Served);
                    return Ok(route);
                }
                Err(UfmError::NoRoute { status, message }) => {
                    self.check_base()?;
                    if target == Target::Existing {
                        self.confirm_there(pkey, &message)?;
                    }
                    self.learn_missing(route, status);
                    missing.push((route, status));
                }
                // Nothing went out through this route: nothing to learn of it.
                Err(e @ UfmError::Stopped(_)) => return Err(e),
                Err(e) => return Err(self.refused(route, pkey, target, e)),
            }
        }
        let all = candidates(&RouteSet::default());
        self.learned().routes.forget(&all);
        Err(self.no_route_left(what, pkey, &all, &missing))
    }

    /// A write through `route` was refused, not for want of a route: the route exists. A 404
    /// about an existing partition is checked against the single-PKey read, which may say
    /// that the partition is gone.
    fn refused(&self, route: Route, pkey: PKey, target: Target, error: UfmError) -> UfmError {
        if let UfmError::Api { status, .. } = &error {
            if (400..500).contains(status) {
                self.learn(route, Serving::Served);
            }
            if *status == 404 && target == Target::Existing {
                if let Err(gone) = self.confirm_there(pkey, &error.to_string()) {
                    return gone;
                }
            }
        }
        error
    }

    /// Every route of a write is missing here.
    fn no_route_left(
        &self,
        what: &str,
        pkey: PKey,
        all: &[Route],
        missing: &[(Route, u16)],
    ) -> UfmError {
        let base = self.base();
        let answers: Vec<String> = missing
            .iter()
            .map(|(route, status)| format!("no {route} (HTTP {status})"))
            .collect();
        let why = if answers.is_empty() {
            let names: Vec<&str> = all.iter().map(|r| r.name()).collect();
            format!(
                "its version documents none of {}; ufm-pkeyd supports UFM 6.10 and later",
                names.join(", ")
            )
        } else {
            format!(
                "it has {}; asking again at the next attempt",
                answers.join(" and ")
            )
        };
        UfmError::Unsupported(format!("UFM at {base} cannot {what} {pkey}: {why}"))
    }

    /// A remove or a delete answered 404 or 405 (`answer`): unless the single-PKey read shows
    /// the partition, it is not there, and that is the answer.
    fn confirm_there(&self, pkey: PKey, answer: &str) -> Result<(), UfmError> {
        match self.get(pkey)? {
            Some(_) => Ok(()),
            None => Err(UfmError::NotFound(format!(
                "PKey {pkey} not found in UFM: {answer}, and GET /resources/pkeys/{pkey} says it does not exist"
            ))),
        }
    }

    /// Before a "no such route" answer is believed: the host's version endpoint must answer
    /// under the same root (asked once per host), else the base URL or auth mode is wrong and
    /// the error says so.
    fn check_base(&self) -> Result<(), UfmError> {
        if self.learned().probed {
            return Ok(());
        }
        match self.version() {
            Ok(_) => Ok(()),
            // It answered, with an odd body: the root is right, the version unknown.
            Err(UfmError::BadAnswer(_)) => {
                self.learned().probed = true;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn learn(&self, route: Route, serving: Serving) {
        self.learned().routes.learn(route, serving);
    }

    /// `route` answered "no such route" (HTTP `status`): logs the new set once.
    fn learn_missing(&self, route: Route, status: u16) {
        let mut learned = self.learned();
        if learned.routes.learn(route, Serving::Missing) {
            let base = learned.base.clone().unwrap_or_default();
            log::info!(
                "UFM at {base} has no {route} (HTTP {status}): PKey routes now: {}",
                learned.routes.summary()
            );
        }
    }

    fn send_add(
        &self,
        gate: &mut WriteGate<'_>,
        route: Route,
        pkey: PKey,
        guids: &[Guid],
        join: Join,
        ip_over_ib: bool,
    ) -> Result<(), UfmError> {
        let guids: Vec<String> = guids.iter().map(Guid::to_string).collect();
        // Every field is sent: NVIDIA's UFM mock refuses an add without one (422).
        let (path, body) = match route {
            Route::ActionsAdd => (
                "/actions/add_guids_to_pkey",
                json!({
                    "pkey": pkey.to_string(),
                    "guids": guids,
                    "default_membership": join.membership.as_str(),
                    "index0": join.index0,
                    "ip_over_ib": ip_over_ib,
                }),
            ),
            _ => (
                "/resources/pkeys",
                json!({
                    "pkey": pkey.to_string(),
                    "guids": guids,
                    "membership": join.membership.as_str(),
                    "index0": join.index0,
                    "ip_over_ib": ip_over_ib,
                }),
            ),
        };
        self.write(gate, "POST", path, Some(&body)).map(|_| ())
    }

    fn send_remove(
        &self,
        gate: &mut WriteGate<'_>,
        route: Route,
        pkey: PKey,
        guids: &[Guid],
    ) -> Result<(), UfmError> {
        let list: Vec<String> = guids.iter().map(Guid::to_string).collect();
        let sent = match route {
            Route::ActionsRemove => {
                let body = json!({"pkey": pkey.to_string(), "guids": list});
                self.write(gate, "POST", "/actions/remove_guids_from_pkey", Some(&body))
            }
            _ => {
                let path = format!("/resources/pkeys/{pkey}/guids/{}", list.join(","));
                self.write(gate, "DELETE", &path, None)
            }
        };
        sent.map(|_| ())
    }
}

fn already_exists(pkey: PKey) -> UfmError {
    UfmError::AlreadyExists(format!("PKey {pkey} already exists in UFM"))
}
