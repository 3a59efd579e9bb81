//! The ownership record and where it lives: which partitions ufm-pkeyd owns, kept across
//! restarts so that a key deleted while the daemon was down still has its partition removed,
//! and a partition it never owned is never removed.
//!
//! The record is bound to the etcd cluster (its ID), keyspace and prefix, and the UFM it was
//! made against, and remembers how far etcd's Raft log had got (revision or index, and term). A
//! record that belongs to another etcd or UFM, or an etcd whose log went backwards (wiped or
//! restored), deletes nothing until an operator adopts or resets it (`ufm-pkeyd state`).
//!
//! Without leader election the record is the state file, replaced atomically
//! ([`crate::atomic_file`]) and locked while a process may write it, so two instances never
//! both act on it. A missing directory, an unreadable or corrupt file is an error at start-up,
//! never a silent empty ownership. With leader election the instances share the record in etcd
//! ([`Store::Etcd`]); every write compares the record's revision (and, with v3, that the
//! election key still names this instance), so an old leader cannot overwrite it. The state
//! file then keeps a copy, so that a wiped etcd does not silently reset ownership.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::PKey;
use crate::net::etcd::{EtcdClient, Expect};
use crate::plan::Removal;

/// What is recorded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Record {
    pub owned: BTreeSet<PKey>,
    /// `None` for a record written before bindings existed: bound at the next pass.
    pub binding: Option<Binding>,
    /// How the keys of owned partitions still in UFM left etcd, once judged.
    pub removals: BTreeMap<PKey, Removal>,
    /// The etcd key last seen naming each owned partition, recorded with its ownership: the
    /// evidence that the partition came from etcd, without which its key's absence deletes
    /// nothing (a restored or edited record may claim partitions made by hand).
    pub keys: BTreeMap<PKey, String>,
    /// Why the record was found not to belong to the etcd and UFM it was used with. Kept
    /// until an operator adopts or resets the record: a wiped etcd's revision soon passes the
    /// old one again, and must not make the doubt go away.
    pub held: Option<String>,
}

/// The etcd and UFM a record belongs to, and how far etcd's log had got.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Binding {
    /// etcd's cluster ID, as its answers carry it: hexadecimal from v2's header, decimal in
    /// v3's (compared and shown in hexadecimal, [`cluster_hex`]).
    pub cluster_id: Option<String>,
    /// `v2` or `v3`.
    pub api: String,
    pub prefix: String,
    /// The UFM base URLs.
    pub ufm: Vec<String>,
    /// UFM's own name for its fabric (`site_name`), when it says it: it identifies UFM
    /// whatever name or address each instance reaches it by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ufm_site: Option<String>,
    /// The store revision (v3) or index (v2) of the last complete read.
    pub revision: i64,
    /// The Raft term of that read.
    pub raft_term: u64,
    /// v2: the createdIndex of the prefix's directory.
    #[serde(default)]
    pub dir_created_index: Option<i64>,
}

impl Binding {
    /// Why `now` is not the etcd and UFM this record belongs to, if it is not: every field
    /// that differs, each as "field then (now …)", in one notation.
    pub(crate) fn mismatch(&self, now: &Binding) -> Option<String> {
        let mut differs: Vec<String> = Vec::new();
        let then_cluster = self
            .cluster_id
            .as_deref()
            .map(|c| cluster_hex(c, &self.api));
        let now_cluster = now.cluster_id.as_deref().map(|c| cluster_hex(c, &now.api));
        let same_cluster = match (&then_cluster, &now_cluster) {
            (Some(then), Some(id)) if then != id => {
                differs.push(format!("etcd cluster {then} (now {id})"));
                false
            }
            _ => true,
        };
        if self.api != now.api {
            differs.push(format!("the {} keyspace (now {})", self.api, now.api));
        }
        if self.prefix != now.prefix {
            differs.push(format!("prefix {} (now {})", self.prefix, now.prefix));
        }
        if !self.same_ufm(now) {
            differs.push(format!("UFM {} (now {})", self.ufm_name(), now.ufm_name()));
        }
        if !differs.is_empty() {
            return Some(format!("it was made with {}", differs.join(", ")));
        }
        if same_cluster && now.revision < self.revision {
            return Some(format!(
                "etcd's {} went back from {} to {}: a wiped or restored etcd?",
                if self.api == "v2" {
                    "index"
                } else {
                    "revision"
                },
                self.revision,
                now.revision
            ));
        }
        // 0: the answer did not say (a v2 404 carries no term).
        if now.raft_term != 0 && now.raft_term < self.raft_term {
            return Some(format!(
                "etcd's Raft term went back from {} to {}: a wiped or restored etcd?",
                self.raft_term, now.raft_term
            ));
        }
        None
    }

    /// The etcd and UFM it names, for logs and `ufm-pkeyd state`.
    pub(crate) fn describe(&self) -> String {
        format!(
            "etcd cluster {} ({} keyspace, prefix {}, {} {}) and UFM {}",
            self.cluster_id
                .as_deref()
                .map_or("(unknown)".to_string(), |c| cluster_hex(c, &self.api)),
            self.api,
            self.prefix,
            if self.api == "v2" {
                "index"
            } else {
                "revision"
            },
            self.revision,
            self.ufm_name()
        )
    }

    /// Whether `now` names the same UFM: by its site name when both know it, else by one
    /// host in common (an HA host added is the same UFM).
    fn same_ufm(&self, now: &Binding) -> bool {
        match (&self.ufm_site, &now.ufm_site) {
            (Some(then), Some(site)) => then == site,
            _ => self
                .ufm
                .iter()
                .any(|u| now.ufm.iter().any(|n| n.eq_ignore_ascii_case(u))),
        }
    }

    /// How UFM is named in messages: its site, else its hosts.
    fn ufm_name(&self) -> String {
        match &self.ufm_site {
            Some(site) => format!("site {site}"),
            None => self.ufm.join(","),
        }
    }
}

/// An etcd cluster ID in hexadecimal, as v2 sends it (v3 sends it in decimal).
pub(crate) fn cluster_hex(id: &str, api: &str) -> String {
    match (api, id.parse::<u64>()) {
        ("v3", Ok(decimal)) => format!("{decimal:x}"),
        _ => id.to_ascii_lowercase(),
    }
}

/// Why a record could not be saved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SaveError {
    /// Another instance wrote the shared record (or took the leadership) since this one read
    /// it: this instance no longer leads.
    Lost(String),
    /// The file or etcd could not be written.
    Failed(String),
    /// The state file changed on disk since this process read or wrote it (another writer, a
    /// restore): it is not overwritten.
    Changed(String),
}

impl std::fmt::Display for SaveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SaveError::Lost(m) | SaveError::Failed(m) | SaveError::Changed(m) => f.write_str(m),
        }
    }
}

/// A record read, and what its reading noticed.
pub(crate) struct Loaded {
    pub record: Record,
    /// The shared record is gone from etcd but this host's copy has one: etcd was wiped or
    /// restored. Says so, for the deletion guard.
    pub missing: Option<String>,
}

/// Where the record lives.
pub(crate) enum Store {
    /// The state file (one daemon), locked while it is open; `seen`: how it looked when this
    /// process last read or wrote it.
    File {
        path: PathBuf,
        _lock: Option<Lock>,
        seen: Option<Fingerprint>,
    },
    /// An etcd key shared by the instances of a leader election, with a copy in the state file.
    Etcd {
        etcd: Box<EtcdClient>,
        key: String,
        /// The key's revision when last read or written: the next write expects it.
        revision: Option<i64>,
        /// The election key and this instance's identity (v3 compares them in the write).
        fence: Option<(String, String)>,
        copy: PathBuf,
    },
    /// Kept in memory only (unit tests).
    #[cfg(test)]
    Memory,
}

impl Store {
    /// The state file at `path`, read and locked. A file that does not exist yet means nothing
    /// is owned (first start), but its directory must exist. Without `lock` (a dry run) the
    /// file is only read.
    pub(crate) fn open_file(path: &Path, lock: bool) -> Result<(Store, Record), String> {
        let dir = parent_dir(path);
        if !dir.is_dir() {
            return Err(format!(
                "the directory of state file {} does not exist: create {} or give --state-file",
                path.display(),
                dir.display()
            ));
        }
        let lock = if lock { Some(Lock::take(path)?) } else { None };
        let record = read_file(path)?.unwrap_or_default();
        Ok((
            Store::File {
                path: path.to_path_buf(),
                _lock: lock,
                seen: fingerprint(path),
            },
            record,
        ))
    }

    /// The record shared in etcd under `key`, with a copy in `copy`. Nothing is read yet:
    /// [`Store::load`] reads it at the start of each leadership term.
    pub(crate) fn etcd(etcd: EtcdClient, key: String, copy: PathBuf) -> Store {
        Store::Etcd {
            etcd: Box::new(etcd),
            key,
            revision: None,
            fence: None,
            copy,
        }
    }

    /// Whether the state file was changed on disk since this process read or wrote it
    /// (another writer, a restore), and how it is said; `None` for a shared record or an
    /// unchanged file.
    pub(crate) fn changed_on_disk(&self) -> Option<String> {
        match self {
            Store::File { path, seen, .. } => changed_file(path, *seen),
            _ => None,
        }
    }

    /// Whether the record is shared in etcd between the instances of a leader election.
    pub(crate) fn is_shared(&self) -> bool {
        matches!(self, Store::Etcd { .. })
    }

    /// A standby's copy of the shared record: reads it from the member's own store (no quorum
    /// round, no Raft proposal) and writes the state file when its revision moved since the
    /// copy was made, so that whichever instance leads next tells a wiped or restored etcd
    /// (record gone, copy not) from a first start. Returns whether it wrote the copy.
    pub(crate) fn copy_shared(&mut self) -> Result<bool, String> {
        let Store::Etcd {
            etcd, key, copy, ..
        } = self
        else {
            return Ok(false);
        };
        let Some(kv) = etcd
            .peek(key)
            .map_err(|e| format!("cannot read the ownership record {key}: {e}"))?
        else {
            return Ok(false);
        };
        let copied = read_file(copy).ok().flatten();
        let shared = parse(&kv.value)
            .map_err(|e| format!("ownership record {key} in etcd is corrupt ({e})"))?;
        if copied.as_ref() == Some(&shared) {
            return Ok(false);
        }
        crate::atomic_file::replace(copy, &kv.value)
            .map_err(|e| format!("copy of the ownership record not saved: {e}"))?;
        Ok(true)
    }

    /// Sets the election key and identity the next writes compare (v3), for a new term.
    pub(crate) fn set_fence(&mut self, fence: Option<(String, String)>) {
        if let Store::Etcd { fence: f, .. } = self {
            *f = fence;
        }
    }

    /// Reads the record (linearizably, from etcd) again.
    pub(crate) fn load(&mut self) -> Result<Loaded, String> {
        match self {
            #[cfg(test)]
            Store::Memory => Ok(Loaded {
                record: Record::default(),
                missing: None,
            }),
            Store::File { path, seen, .. } => {
                let record = read_file(path)?.unwrap_or_default();
                *seen = fingerprint(path);
                Ok(Loaded {
                    record,
                    missing: None,
                })
            }
            Store::Etcd {
                etcd,
                key,
                revision,
                copy,
                ..
            } => {
                let found = etcd
                    .get(key)
                    .map_err(|e| format!("cannot read the ownership record {key}: {e}"))?;
                if let Some(kv) = found {
                    *revision = Some(kv.mod_revision);
                    let record = parse(&kv.value).map_err(|e| {
                        format!("ownership record {key} in etcd is corrupt ({e}): fix it, or reset it with `ufm-pkeyd state --reset` (its partitions then count as unmanaged, not deleted)")
                    })?;
                    return Ok(Loaded {
                        record,
                        missing: None,
                    });
                }
                *revision = None;
                // Gone from etcd: this host's copy says whether there was one.
                let cached = read_file(copy).ok().flatten().unwrap_or_default();
                let missing = (!cached.owned.is_empty()).then(|| {
                    format!(
                        "the ownership record {key} is gone from etcd, though this instance last saw it with {} partitions",
                        cached.owned.len()
                    )
                });
                Ok(Loaded {
                    record: cached,
                    missing,
                })
            }
        }
    }

    /// Records `record`: the file atomically; in etcd only if nobody wrote it since.
    pub(crate) fn save(&mut self, record: &Record) -> Result<(), SaveError> {
        let text = render(record);
        match self {
            #[cfg(test)]
            Store::Memory => Ok(()),
            Store::File { path, seen, .. } => {
                if let Some(changed) = changed_file(path, *seen) {
                    return Err(SaveError::Changed(changed));
                }
                crate::atomic_file::replace(path, &text)
                    .map_err(|e| SaveError::Failed(format!("state file not saved: {e}")))?;
                *seen = fingerprint(path);
                Ok(())
            }
            Store::Etcd {
                etcd,
                key,
                revision,
                fence,
                copy,
            } => {
                let expect = revision.map_or(Expect::Absent, Expect::Revision);
                let fence = fence.as_ref().map(|(k, id)| (k.as_str(), id.as_str()));
                match etcd.put_if(key, &text, &expect, fence) {
                    Ok(Some(written)) => {
                        *revision = Some(written);
                        // The copy is for detecting a wiped etcd; failing to write it loses
                        // nothing the shared record does not have.
                        if let Err(e) = crate::atomic_file::replace(copy, &text) {
                            log::warn!("copy of the ownership record not saved: {e}");
                        }
                        Ok(())
                    }
                    Ok(None) => Err(SaveError::Lost(format!(
                        "the ownership record {key} was written by another instance, or this instance's leadership ended: it leads no more"
                    ))),
                    Err(e) => Err(SaveError::Failed(format!(
                        "cannot save the ownership record {key}: {e}"
                    ))),
                }
            }
        }
    }
}

/// How a lock held by another process is said.
const HELD: &str = "another ufm-pkeyd process holds";

/// How a file looked: another writer (a replace, an edit, a restore) changes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Fingerprint {
    /// A regular file (not a directory or anything else in the way).
    file: bool,
    dev: u64,
    ino: u64,
    len: u64,
    mtime: i64,
    mtime_nsec: i64,
}

/// Whether the file at `path` is another than the one `seen` (another writer, a restore), and
/// how it is said. A file gone is not (it is written again from memory), nor something else in
/// the way (it fails to be written).
fn changed_file(path: &Path, seen: Option<Fingerprint>) -> Option<String> {
    let now = fingerprint(path)?;
    (now.file && Some(now) != seen).then(|| {
        format!(
            "state file {} was changed on disk since this process read or wrote it (another writer, or a restore): not overwriting it",
            path.display()
        )
    })
}

/// How `path` looks now; `None` when it does not exist.
fn fingerprint(path: &Path) -> Option<Fingerprint> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(path).ok()?;
    Some(Fingerprint {
        file: m.is_file(),
        dev: m.dev(),
        ino: m.ino(),
        len: m.len(),
        mtime: m.mtime(),
        mtime_nsec: m.mtime_nsec(),
    })
}

/// A lock on the state file (`flock` on `<state file>.lock`), held while a process may change
/// UFM from it: a second daemon, or a `sync` while the daemon runs, stops at start-up instead of
/// acting on the same partitions.
pub(crate) struct Lock {
    _file: std::fs::File,
}

impl Lock {
    /// Whether another process holds the lock of the state file at `state` (the daemon): the
    /// lock is tried and, when free, let go at once.
    pub(crate) fn held_elsewhere(state: &Path) -> bool {
        matches!(Lock::take(state), Err(e) if e.starts_with(HELD))
    }

    fn take(state: &Path) -> Result<Lock, String> {
        use std::os::fd::AsRawFd;
        let mut name = state.as_os_str().to_os_string();
        name.push(".lock");
        let path = PathBuf::from(name);
        let file = crate::atomic_file::open_lock(&path)?;
        // SAFETY: flock on a file descriptor this function owns; no memory is involved.
        let taken = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        if !taken {
            return Err(format!(
                "{HELD} {} (the daemon?): one process at a time acts on a state file; stop it first (systemctl stop ufm-pkeyd), or use sync --dry-run; to confirm refused deletions while it runs, `ufm-pkeyd state --confirm-deletions`",
                path.display()
            ));
        }
        Ok(Lock { _file: file })
    }
}

/// The record as written to the state file or etcd.
#[derive(Serialize, Deserialize)]
struct OnDisk {
    version: u32,
    owned: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    binding: Option<Binding>,
    /// PKey → "one-by-one" or the reason they were removed together.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    removals: BTreeMap<String, String>,
    /// Why the record is held: it did not belong to the etcd and UFM it was used with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    held: Option<String>,
    /// PKey → the etcd key last seen naming it (version 3).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    keys: BTreeMap<String, String>,
}

/// The on-disk format: version 1 had `owned` only, 2 added the binding, the removals and the
/// hold, 3 the keys.
const FORMAT_VERSION: u32 = 3;
const ONE_BY_ONE: &str = "one-by-one";

fn render(record: &Record) -> Vec<u8> {
    let data = OnDisk {
        version: FORMAT_VERSION,
        owned: record.owned.iter().map(PKey::to_string).collect(),
        binding: record.binding.clone(),
        removals: record
            .removals
            .iter()
            .map(|(p, r)| {
                let text = match r {
                    Removal::OneByOne => ONE_BY_ONE.to_string(),
                    Removal::Bulk(why) => why.clone(),
                };
                (p.to_string(), text)
            })
            .collect(),
        held: record.held.clone(),
        keys: record
            .keys
            .iter()
            .map(|(p, k)| (p.to_string(), k.clone()))
            .collect(),
    };
    let mut text = serde_json::to_vec_pretty(&data).unwrap_or_default();
    text.push(b'\n');
    text
}

fn parse(bytes: &[u8]) -> Result<Record, String> {
    let data: OnDisk = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if !(1..=FORMAT_VERSION).contains(&data.version) {
        return Err(format!("unknown format version {}", data.version));
    }
    let pkey = |p: &str| p.parse::<PKey>().map_err(|e| e.to_string());
    let owned = data
        .owned
        .iter()
        .map(|p| pkey(p))
        .collect::<Result<_, _>>()?;
    let removals = data
        .removals
        .iter()
        .map(|(p, r)| {
            let removal = if r == ONE_BY_ONE {
                Removal::OneByOne
            } else {
                Removal::Bulk(r.clone())
            };
            pkey(p).map(|p| (p, removal))
        })
        .collect::<Result<_, _>>()?;
    let keys = data
        .keys
        .iter()
        .map(|(p, k)| pkey(p).map(|p| (p, k.clone())))
        .collect::<Result<_, _>>()?;
    Ok(Record {
        keys,
        owned,
        binding: data.binding,
        removals,
        held: data.held,
    })
}

/// The record in a state file; `None` when the file does not exist.
fn read_file(path: &Path) -> Result<Option<Record>, String> {
    match std::fs::read(path) {
        Ok(bytes) => parse(&bytes).map(Some).map_err(|e| {
            format!(
                "state file {} is corrupt ({e}): restore it from a backup, or remove it to start with no owned partitions (they will then be reported as unmanaged, not deleted)",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read state file {}: {e}", path.display())),
    }
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("ufm-pkeyd-state-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    fn binding() -> Binding {
        Binding {
            cluster_id: Some("14841639068965178418".into()),
            api: "v2".into(),
            prefix: "/pcocc/global/opensm/pkeys/".into(),
            ufm: vec!["https://ufm1:443".into()],
            ufm_site: None,
            revision: 100,
            raft_term: 3,
            dir_created_index: Some(7),
        }
    }

    #[test]
    fn saves_and_reads_back_ownership_binding_and_verdicts() {
        let dir = temp_dir("roundtrip");
        let path = dir.join("state.json");
        let (mut store, record) = Store::open_file(&path, true).expect("open");
        assert_eq!(record, Record::default());
        let record = Record {
            owned: ["0x2000", "0x1a"]
                .iter()
                .map(|k| k.parse().expect("pkey"))
                .collect(),
            binding: Some(binding()),
            removals: [(
                "0x1a".parse().expect("pkey"),
                Removal::Bulk("together".into()),
            )]
            .into(),
            held: Some("another etcd".into()),
            keys: [(
                "0x1a".parse().expect("pkey"),
                "/pcocc/global/opensm/pkeys/0x1a".to_string(),
            )]
            .into(),
        };
        store.save(&record).expect("save");
        drop(store);
        let (_, again) = Store::open_file(&path, false).expect("reopen");
        assert_eq!(again, record);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_version_1_file_is_read_without_a_binding() {
        let dir = temp_dir("v1");
        let path = dir.join("state.json");
        std::fs::write(&path, "{\"version\": 1, \"owned\": [\"0x2000\"]}").expect("write");
        let (_, record) = Store::open_file(&path, false).expect("open");
        assert_eq!(record.owned.len(), 1);
        assert_eq!(record.binding, None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_second_process_cannot_open_a_locked_state_file() {
        let dir = temp_dir("lock");
        let path = dir.join("state.json");
        let (first, _) = Store::open_file(&path, true).expect("first");
        // flock locks belong to the open file: a second open, even here, is refused.
        let err = Store::open_file(&path, true)
            .err()
            .expect("second is refused");
        assert!(err.contains("another ufm-pkeyd process"), "{err}");
        assert!(
            Store::open_file(&path, false).is_ok(),
            "a dry run only reads"
        );
        drop(first);
        assert!(Store::open_file(&path, true).is_ok(), "free again");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn corrupt_file_is_an_error_not_empty_ownership() {
        let dir = temp_dir("corrupt");
        let path = dir.join("state.json");
        std::fs::write(&path, "{\"version\": 1, \"owned\": [\"0x2000\"").expect("write");
        let err = Store::open_file(&path, false).err().expect("corrupt");
        assert!(err.contains("corrupt"), "{err}");
        std::fs::write(&path, "{\"version\": 1, \"owned\": [\"nope\"]}").expect("write");
        assert!(Store::open_file(&path, false).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn missing_directory_is_an_error() {
        let err = Store::open_file(Path::new("/nonexistent/ufm-pkeyd/state.json"), true)
            .err()
            .expect("dir");
        assert!(err.contains("does not exist"), "{err}");
    }

    #[test]
    fn a_binding_names_what_differs() {
        let then = binding();
        assert_eq!(then.mismatch(&then), None);
        let later = Binding {
            revision: 250,
            raft_term: 4,
            ..binding()
        };
        assert_eq!(
            then.mismatch(&later),
            None,
            "a log that moved on is the same etcd"
        );
        let other = Binding {
            cluster_id: Some("99".into()),
            ..binding()
        };
        assert_eq!(
            then.mismatch(&other).as_deref(),
            Some("it was made with etcd cluster 14841639068965178418 (now 99)")
        );
        let wiped = Binding {
            revision: 5,
            ..binding()
        };
        assert!(
            then.mismatch(&wiped)
                .is_some_and(|m| m.contains("went back from 100 to 5"))
        );
        let term = Binding {
            raft_term: 2,
            revision: 500,
            ..binding()
        };
        assert!(
            then.mismatch(&term)
                .is_some_and(|m| m.contains("Raft term went back"))
        );
        let prefix = Binding {
            prefix: "/other/".into(),
            ..binding()
        };
        assert!(
            then.mismatch(&prefix)
                .is_some_and(|m| m.contains("/other/"))
        );
        let ufm_added = Binding {
            ufm: vec!["https://ufm1:443".into(), "https://ufm2:443".into()],
            ..binding()
        };
        assert_eq!(
            then.mismatch(&ufm_added),
            None,
            "an HA host added is the same UFM"
        );
        let ufm_other = Binding {
            ufm: vec!["https://ufm9:443".into()],
            ..binding()
        };
        assert!(
            then.mismatch(&ufm_other)
                .is_some_and(|m| m.contains("ufm9"))
        );
    }

    #[test]
    fn a_record_of_the_other_keyspace_names_the_keyspace_not_the_same_cluster_twice() {
        // v2 sends the cluster ID in hexadecimal, v3 in decimal: the same cluster.
        let v2 = Binding {
            cluster_id: Some("E379A6911E3383BB".into()),
            ..binding()
        };
        let v3 = Binding {
            cluster_id: Some(
                u64::from_str_radix("e379a6911e3383bb", 16)
                    .unwrap_or(0)
                    .to_string(),
            ),
            api: "v3".into(),
            revision: 3,
            ..binding()
        };
        assert_eq!(
            v2.mismatch(&v3).as_deref(),
            Some("it was made with the v2 keyspace (now v3)"),
            "one field differs, in one notation; revisions of two keyspaces are not compared"
        );
        let both = Binding {
            prefix: "/other/".into(),
            ufm: vec!["https://ufm9:443".into()],
            ..v3.clone()
        };
        assert_eq!(
            v2.mismatch(&both).as_deref(),
            Some(
                "it was made with the v2 keyspace (now v3), prefix /pcocc/global/opensm/pkeys/ (now /other/), UFM https://ufm1:443 (now https://ufm9:443)"
            )
        );
    }

    #[test]
    fn ufm_is_the_same_by_its_site_name_whatever_the_host_names() {
        let site = |name: &str, host: &str| Binding {
            ufm: vec![host.to_string()],
            ufm_site: Some(name.to_string()),
            ..binding()
        };
        let by_name = site("fabric-a", "https://ufm.example.org:443");
        let by_address = site("fabric-a", "https://10.0.0.5:443");
        assert_eq!(by_name.mismatch(&by_address), None);
        let other = site("fabric-b", "https://ufm.example.org:443");
        assert!(
            by_name
                .mismatch(&other)
                .is_some_and(|m| m.contains("UFM site fabric-a (now site fabric-b)"))
        );
    }
}
