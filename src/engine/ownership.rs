//! The state file: which partitions ufm-pkeyd owns, kept across restarts so that a key deleted
//! while the daemon was down still has its partition removed, and a partition it never owned is
//! never removed.
//!
//! Written atomically ([`crate::atomic_file`]): a crash leaves the old file or the new one,
//! never half of one. A missing
//! directory, an unreadable file or a corrupt one is an error at start-up, never a silent empty
//! ownership that would turn owned partitions into unmanaged ones.
//!
//! With leader election the instances of an HA pair must share what they own, so ownership
//! is kept in etcd instead ([`Record::Etcd`]), read when an instance becomes leader.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::PKey;
use crate::net::etcd::EtcdClient;

/// The on-disk format.
#[derive(Serialize, Deserialize)]
struct OnDisk {
    version: u32,
    owned: Vec<String>,
}

const FORMAT_VERSION: u32 = 1;

/// The state file at a path.
#[derive(Clone, Debug)]
pub(crate) struct StateFile {
    path: PathBuf,
}

impl StateFile {
    /// Opens the state file and reads the owned partitions; a file that does not exist yet
    /// means nothing is owned (first start), but its directory must exist.
    pub(crate) fn open(path: &Path) -> Result<(StateFile, BTreeSet<PKey>), String> {
        let dir = parent_dir(path);
        if !dir.is_dir() {
            return Err(format!(
                "the directory of state file {} does not exist: create {} or give --state-file",
                path.display(),
                dir.display()
            ));
        }
        let owned = match std::fs::read(path) {
            Ok(bytes) => parse(&bytes).map_err(|e| {
                format!(
                    "state file {} is corrupt ({e}): restore it from a backup, or remove it to start with no owned partitions (they will then be reported as unmanaged, not deleted)",
                    path.display()
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
            Err(e) => return Err(format!("cannot read state file {}: {e}", path.display())),
        };
        Ok((
            StateFile {
                path: path.to_path_buf(),
            },
            owned,
        ))
    }

    /// Replaces the file with this ownership, atomically.
    pub(crate) fn save(&self, owned: &BTreeSet<PKey>) -> Result<(), String> {
        crate::atomic_file::replace(&self.path, &render(owned))
            .map_err(|e| format!("state file not saved: {e}"))
    }
}

/// Where ownership is recorded.
pub(crate) enum Record {
    /// A local state file (one daemon).
    File(StateFile),
    /// An etcd key shared by the instances of a leader election, in the keyspace of the
    /// configured API.
    Etcd { etcd: Box<EtcdClient>, key: String },
}

impl Record {
    /// Reads the ownership recorded in etcd; a missing key means nothing is owned yet.
    pub(crate) fn load_from_etcd(etcd: &EtcdClient, key: &str) -> Result<BTreeSet<PKey>, String> {
        match etcd.get(key) {
            Ok(Some(kv)) => parse(&kv.value).map_err(|e| {
                format!("ownership record {key} in etcd is corrupt ({e}): fix or delete it (partitions then count as unmanaged, not deleted)")
            }),
            Ok(None) => Ok(BTreeSet::new()),
            Err(e) => Err(format!("cannot read the ownership record {key}: {e}")),
        }
    }

    /// Records the ownership.
    pub(crate) fn save(&self, owned: &BTreeSet<PKey>) -> Result<(), String> {
        match self {
            Record::File(file) => file.save(owned),
            Record::Etcd { etcd, key } => etcd
                .put(key, &render(owned), None)
                .map_err(|e| format!("cannot save the ownership record {key}: {e}")),
        }
    }
}

fn render(owned: &BTreeSet<PKey>) -> Vec<u8> {
    let data = OnDisk {
        version: FORMAT_VERSION,
        owned: owned.iter().map(PKey::to_string).collect(),
    };
    let mut text = serde_json::to_vec_pretty(&data).unwrap_or_default();
    text.push(b'\n');
    text
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn parse(bytes: &[u8]) -> Result<BTreeSet<PKey>, String> {
    let data: OnDisk = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if data.version != FORMAT_VERSION {
        return Err(format!("unknown format version {}", data.version));
    }
    data.owned
        .iter()
        .map(|p| p.parse::<PKey>().map_err(|e| e.to_string()))
        .collect()
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

    #[test]
    fn saves_and_reads_back_ownership() {
        let dir = temp_dir("roundtrip");
        let path = dir.join("state.json");
        let (state, owned) = StateFile::open(&path).expect("open");
        assert!(owned.is_empty());
        let keys: BTreeSet<PKey> = ["0x2000", "0x1a"]
            .iter()
            .map(|k| k.parse().expect("pkey"))
            .collect();
        state.save(&keys).expect("save");
        let (_, again) = StateFile::open(&path).expect("reopen");
        assert_eq!(again, keys);
        let leftovers: Vec<_> = std::fs::read_dir(&dir).expect("dir").collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn corrupt_file_is_an_error_not_empty_ownership() {
        let dir = temp_dir("corrupt");
        let path = dir.join("state.json");
        std::fs::write(&path, "{\"version\": 1, \"owned\": [\"0x2000\"").expect("write");
        let err = StateFile::open(&path).expect_err("corrupt");
        assert!(err.contains("corrupt"), "{err}");
        std::fs::write(&path, "{\"version\": 1, \"owned\": [\"nope\"]}").expect("write");
        assert!(StateFile::open(&path).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn missing_directory_is_an_error() {
        let err = StateFile::open(Path::new("/nonexistent/ufm-pkeyd/state.json")).expect_err("dir");
        assert!(err.contains("does not exist"), "{err}");
    }
}
