//! Both sides in memory, for the engine's unit tests: a UFM that keeps partitions as sets of
//! GUIDs, records each request and has the faults real UFMs have (2xx not applied, odd answers,
//! refused GUIDs, no answer at all), and an etcd keyspace that keeps keys and a revision. The
//! integration tests use the real etcd and the UFM simulator instead.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};

use super::apply::UfmOps;
use super::evidence::EtcdReads;
use crate::model::{Guid, Join, Member, Membership, PKey, Partition};
use crate::net::etcd::{Api, Change, Deletion, EtcdError, History, KeyValue, Listing, Store};
use crate::net::ufm::{PartitionList, REMOVE_BATCH, UfmError, WriteGate};

/// A UFM in memory: partitions as sets of GUIDs, a log of requests, and faults.
#[derive(Default)]
pub(crate) struct FakeUfm {
    pub(crate) partitions: RefCell<BTreeMap<PKey, BTreeSet<Guid>>>,
    pub(crate) calls: RefCell<Vec<String>>,
    /// Requests answered with an error (by their log line).
    pub(crate) fail: Vec<String>,
    /// Adds answered 2xx but not applied.
    pub(crate) noop_adds: bool,
    /// GUIDs UFM does not know; `name_them` says whether its message names the GUID.
    pub(crate) unknown: BTreeSet<Guid>,
    pub(crate) name_them: bool,
    /// Requests answered with this error, each as many times as given (then they pass).
    pub(crate) faults: RefCell<Vec<(String, UfmError, usize)>>,
    /// UFM answers nothing at all (`answers` says no).
    pub(crate) down: bool,
    /// A delete answers "not found" without deleting (a client that took a route's 404 for
    /// the partition's).
    pub(crate) delete_says_not_found: bool,
    /// No delete route (NVIDIA's UFM mock): a delete is the refused `delete` request, then a
    /// read, one `remove` per [`REMOVE_BATCH`] GUIDs and a read back, as the client does.
    pub(crate) delete_by_removing: bool,
    /// No documented add route: an add is the refused `add` request, then `actions add`.
    pub(crate) add_by_fallback: bool,
    /// Removes answered 2xx but not applied.
    pub(crate) noop_removes: bool,
    /// Deletes answered 2xx but not applied.
    pub(crate) noop_deletes: bool,
    /// `last_updated`, moved by every change UFM applies (unless frozen).
    pub(crate) stamp: std::cell::Cell<u64>,
    pub(crate) stamp_frozen: bool,
    /// Single reads of these partitions answered with something unreadable, each as many
    /// times as given.
    pub(crate) odd_reads: RefCell<BTreeMap<PKey, usize>>,
}

impl FakeUfm {
    pub(crate) fn with(partitions: &[(&str, &[u64])]) -> FakeUfm {
        let ufm = FakeUfm::default();
        for (pkey, guids) in partitions {
            ufm.partitions
                .borrow_mut()
                .insert(pk(pkey), guids.iter().map(|g| guid(*g)).collect());
        }
        ufm
    }

    fn call(&self, call: String) -> Result<(), UfmError> {
        for (name, error, times) in self.faults.borrow_mut().iter_mut() {
            if *name == call && *times > 0 {
                *times -= 1;
                self.calls.borrow_mut().push(call);
                return Err(error.clone());
            }
        }
        let failing = self.fail.contains(&call);
        self.calls.borrow_mut().push(call);
        if failing {
            Err(UfmError::Api {
                status: 500,
                message: "HTTP 500".into(),
                reason: "an error page".into(),
            })
        } else {
            Ok(())
        }
    }

    /// A write request: sent only once the gate opens.
    fn write(&self, gate: &mut WriteGate<'_>, call: String) -> Result<(), UfmError> {
        gate().map_err(UfmError::Stopped)?;
        self.call(call)
    }

    /// The client's delete on a UFM without a delete route, after the refused `delete`.
    fn delete_by_removing_guids(
        &self,
        pkey: PKey,
        gate: &mut WriteGate<'_>,
    ) -> Result<(), UfmError> {
        let Some(partition) = self.get(pkey)? else {
            return Err(UfmError::NotFound(format!("{pkey} not found")));
        };
        let members: Vec<Guid> = partition.members.iter().map(|m| m.guid).collect();
        for batch in members.chunks(REMOVE_BATCH) {
            self.remove(pkey, batch, gate)?;
        }
        match self.get(pkey)? {
            None => Ok(()),
            Some(_) => Err(UfmError::Incomplete(format!("{pkey} is not deleted"))),
        }
    }

    /// One partition as UFM would answer it, every member joined the same way.
    fn partition(&self, pkey: PKey) -> Option<Partition> {
        let partitions = self.partitions.borrow();
        partitions.get(&pkey).map(|members| Partition {
            pkey,
            name: format!("api_pkey_{pkey}"),
            ip_over_ib: true,
            members: members
                .iter()
                .map(|g| Member {
                    guid: *g,
                    join: join(),
                })
                .collect(),
        })
    }

    /// A change applied: `last_updated` moves, unless frozen.
    fn moved(&self) {
        if !self.stamp_frozen {
            self.stamp.set(self.stamp.get() + 1);
        }
    }

    pub(crate) fn calls(&self) -> Vec<String> {
        self.calls.borrow().clone()
    }

    pub(crate) fn members(&self, pkey: &str) -> Option<Vec<Guid>> {
        let partitions = self.partitions.borrow();
        partitions
            .get(&pk(pkey))
            .map(|s| s.iter().copied().collect())
    }
}

impl UfmOps for FakeUfm {
    fn add(
        &self,
        pkey: PKey,
        guids: &[Guid],
        _: Join,
        _: bool,
        gate: &mut WriteGate<'_>,
    ) -> Result<(), UfmError> {
        self.write(gate, format!("add {pkey} {}", guids.len()))?;
        if self.add_by_fallback {
            // The first route answered "no such route": the next one.
            self.write(gate, format!("actions add {pkey} {}", guids.len()))?;
        }
        if let Some(bad) = guids.iter().find(|g| self.unknown.contains(g)) {
            let (status, reason) = if self.name_them {
                (404, format!("InfiniBand port {bad} does not exist"))
            } else {
                (400, "unknown port GUID in request".to_string())
            };
            return Err(UfmError::Api {
                status,
                message: format!(
                    "UFM at http://ufm/ufmRest/actions/add_guids_to_pkey refused the request (HTTP {status}): {reason}"
                ),
                reason,
            });
        }
        if !self.noop_adds {
            let mut partitions = self.partitions.borrow_mut();
            partitions.entry(pkey).or_default().extend(guids);
            self.moved();
        }
        Ok(())
    }

    fn remove(&self, pkey: PKey, guids: &[Guid], gate: &mut WriteGate<'_>) -> Result<(), UfmError> {
        assert!(
            guids.len() <= REMOVE_BATCH,
            "one request carries a batch at most"
        );
        self.write(gate, format!("remove {pkey} {}", guids.len()))?;
        if self.noop_removes {
            return Ok(());
        }
        self.moved();
        let mut partitions = self.partitions.borrow_mut();
        if let Some(members) = partitions.get_mut(&pkey) {
            for g in guids {
                members.remove(g);
            }
            if members.is_empty() {
                // UFM deletes a partition whose last member is removed.
                partitions.remove(&pkey);
            }
        }
        Ok(())
    }

    fn delete(&self, pkey: PKey, gate: &mut WriteGate<'_>) -> Result<(), UfmError> {
        self.write(gate, format!("delete {pkey}"))?;
        if self.delete_by_removing {
            return self.delete_by_removing_guids(pkey, gate);
        }
        if self.delete_says_not_found {
            return Err(UfmError::NotFound(format!(
                "UFM at http://ufm/ufmRest/resources/pkeys/{pkey} answered HTTP 404"
            )));
        }
        if self.noop_deletes {
            return Ok(());
        }
        let removed = self.partitions.borrow_mut().remove(&pkey);
        match removed {
            Some(_) => {
                self.moved();
                Ok(())
            }
            None => Err(UfmError::NotFound(format!("{pkey} not found"))),
        }
    }

    fn answers(&self) -> bool {
        !self.down
    }

    fn get(&self, pkey: PKey) -> Result<Option<Partition>, UfmError> {
        self.call(format!("get {pkey}"))?;
        if let Some(n) = self
            .odd_reads
            .borrow_mut()
            .get_mut(&pkey)
            .filter(|n| **n > 0)
        {
            *n -= 1;
            return Err(UfmError::BadAnswer(format!(
                "UFM sent an unreadable partition {pkey}: truncated"
            )));
        }
        Ok(self.partition(pkey))
    }

    fn list(&self) -> Result<PartitionList, UfmError> {
        self.call("list".to_string())?;
        let mut partitions: Vec<Partition> = self
            .partitions
            .borrow()
            .keys()
            .filter_map(|p| self.partition(*p))
            .collect();
        partitions.push(Partition {
            pkey: PKey::DEFAULT,
            name: "management".into(),
            ip_over_ib: true,
            members: Vec::new(),
        });
        Ok(PartitionList {
            partitions,
            unreadable: Vec::new(),
        })
    }

    fn last_updated(&self) -> Result<Option<String>, UfmError> {
        self.call("last_updated".to_string())?;
        Ok(Some(self.stamp.get().to_string()))
    }

    fn hosts(&self) -> Vec<String> {
        vec!["http://ufm".to_string()]
    }

    fn site(&self) -> Option<String> {
        None
    }

    fn request_bound(&self) -> std::time::Duration {
        std::time::Duration::from_secs(1)
    }
}

pub(crate) fn pk(text: &str) -> PKey {
    text.parse().expect("pkey")
}

pub(crate) fn guid(n: u64) -> Guid {
    format!("{n:016x}").parse().expect("guid")
}

/// An etcd keyspace in memory: keys, their revisions, and a store revision.
#[derive(Default)]
pub(crate) struct FakeEtcd {
    kvs: RefCell<BTreeMap<String, (Vec<u8>, i64)>>,
    revision: Cell<i64>,
    /// Keys read one by one, in order.
    pub(crate) gets: RefCell<Vec<String>>,
}

impl FakeEtcd {
    /// Writes `key`; returns the change the watch would deliver.
    pub(crate) fn put(&self, key: &str, value: &str) -> Change {
        let revision = self.revision.get() + 1;
        self.revision.set(revision);
        self.kvs
            .borrow_mut()
            .insert(key.to_string(), (value.as_bytes().to_vec(), revision));
        Change {
            key: key.to_string(),
            value: Some(value.as_bytes().to_vec()),
            revision,
            dir: false,
        }
    }

    /// Deletes `keys` with one request (one revision); returns the changes.
    pub(crate) fn delete(&self, keys: &[&str]) -> Vec<Change> {
        let revision = self.revision.get() + 1;
        self.revision.set(revision);
        keys.iter()
            .map(|key| {
                self.kvs.borrow_mut().remove(*key);
                Change {
                    key: key.to_string(),
                    value: None,
                    revision,
                    dir: false,
                }
            })
            .collect()
    }
}

impl EtcdReads for FakeEtcd {
    fn list(&self, prefix: &str) -> Result<Listing, EtcdError> {
        let kvs = self
            .kvs
            .borrow()
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, (v, r))| KeyValue {
                key: k.clone(),
                value: v.clone(),
                mod_revision: *r,
            })
            .collect();
        Ok(Listing {
            kvs,
            revision: self.revision.get(),
            store: Store {
                cluster_id: Some("c0ffee".into()),
                raft_term: 2,
            },
            dir: None,
        })
    }

    fn get(&self, key: &str) -> Result<Option<KeyValue>, EtcdError> {
        self.gets.borrow_mut().push(key.to_string());
        Ok(self.kvs.borrow().get(key).map(|(v, r)| KeyValue {
            key: key.to_string(),
            value: v.clone(),
            mod_revision: *r,
        }))
    }

    fn deletions_since(
        &self,
        _prefix: &str,
        _from: i64,
        _enough: &mut dyn FnMut(&[Deletion]) -> bool,
    ) -> Result<Option<History>, EtcdError> {
        Ok(None)
    }

    fn keys_in_other_keyspace(&self, _prefix: &str) -> Option<usize> {
        None
    }

    fn api(&self) -> Api {
        Api::V3
    }
}

pub(crate) fn guids(range: std::ops::RangeInclusive<u64>) -> Vec<Guid> {
    range.map(guid).collect()
}

/// How the fake UFM reports every member: a full member, index0 off.
pub(crate) fn join() -> Join {
    Join {
        membership: Membership::Full,
        index0: false,
    }
}
