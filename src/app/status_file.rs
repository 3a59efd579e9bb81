//! The status file: what the daemon (and `sync`) last saw, written after every pass and every
//! drift check for `ufm-pkeyd status`, which reads it as an unprivileged monitoring user. It
//! holds no secret and no partition list: counts, times, the writer's pid and the last error.
//!
//! It lives beside the state file: `status.json` for a state file called `state.json` (the
//! default `/var/lib/ufm-pkeyd/state.json`, and the template unit's
//! `/var/lib/ufm-pkeyd/FABRIC/state.json`), `NAME.status.json` for a state file `NAME.json`
//! (or `NAME`), so that two state files in one directory never share a status file. It is
//! replaced atomically, mode 0644.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The version of the format. A reader refuses a file of a newer major format (UNKNOWN).
pub(crate) const FORMAT: u32 = 1;

/// Who writes the file.
pub(crate) const MONITOR: &str = "monitor";
pub(crate) const SYNC: &str = "sync";

/// Everything `ufm-pkeyd status` needs. Times are Unix seconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Status {
    pub format: u32,
    /// `monitor` (the daemon) or `sync` (a one-shot pass, e.g. from cron).
    pub writer: String,
    pub pid: u32,
    /// When the writer started.
    pub started: f64,
    /// When this file was written.
    pub written: f64,
    /// When the daemon stopped (SIGTERM or SIGINT); `None` while it runs.
    pub stopped: Option<f64>,
    /// The last pass that read both sides and applied everything it planned.
    pub last_success: Option<f64>,
    /// The last time UFM and etcd were known to be in the state this file describes: a pass
    /// that read both sides, or a drift check that found UFM's `last_updated`. The heartbeat
    /// that staleness is judged on.
    pub last_check: Option<f64>,
    /// The writer's poll interval: the daemon checks for drift this often.
    pub poll_interval_seconds: f64,
    pub etcd_prefix: String,
    /// Whether UFM matched etcd after the last pass; `None` before the first one.
    pub in_sync: Option<bool>,
    pub counts: Counts,
    /// Why the ownership record does not belong to this etcd and UFM; nothing is deleted.
    pub ownership_mismatch: Option<String>,
    /// The ownership record could not be saved (retried every pass).
    pub state_unsaved: bool,
    pub leader_election: bool,
    /// `leader`, `standby`, or `single` without leader election.
    pub role: String,
    /// Who holds the election key, when known.
    pub leader: Option<String>,
    /// Why the last pass (or a standby's check of UFM) failed; `None` when it did not.
    pub last_error: Option<String>,
    /// Since when etcd does not answer (an outage in progress).
    pub etcd_unreachable_since: Option<f64>,
    /// Since when UFM does not answer.
    pub ufm_unreachable_since: Option<f64>,
    /// The etcd keyspaces when the writer started: which one it follows and how many keys
    /// each held under the prefix. `None` when they could not be counted.
    #[serde(default)]
    pub keyspaces: Option<Keyspaces>,
}

/// What the writer saw of etcd's two keyspaces under the prefix when it started.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Keyspaces {
    /// The keyspace followed: `v2` or `v3`.
    pub followed: String,
    /// What the configuration asked for: `auto`, `v2` or `v3`.
    pub asked: String,
    /// Keys under the prefix in the v2 keyspace; `None` where it could not be read (an etcd
    /// that does not serve the v2 API).
    pub v2_keys: Option<usize>,
    /// Keys under the prefix in the v3 keyspace.
    pub v3_keys: Option<usize>,
}

impl Keyspaces {
    /// Keys in the keyspace followed and in the other one.
    pub(crate) fn followed_and_other(&self) -> (Option<usize>, Option<usize>) {
        if self.followed == "v2" {
            (self.v2_keys, self.v3_keys)
        } else {
            (self.v3_keys, self.v2_keys)
        }
    }

    /// The other keyspace's name.
    pub(crate) fn other(&self) -> &'static str {
        if self.followed == "v2" { "v3" } else { "v2" }
    }
}

/// The counts of the last pass.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Counts {
    /// Partitions ufm-pkeyd owns.
    pub owned: usize,
    /// Partitions with changes not applied yet (failed, or waiting for their retry).
    pub pending: usize,
    /// Deletions the guard (or an ownership mismatch) refused: they wait for an operator.
    pub refused_deletions: usize,
    /// Partitions in UFM that ufm-pkeyd does not own and etcd does not name.
    pub unmanaged: usize,
    /// etcd entries that cannot be used.
    pub invalid: usize,
    /// GUIDs UFM refused to add (unknown ports).
    pub rejected_guids: usize,
}

/// The status file that goes with `state_file`.
pub(crate) fn path_for(state_file: &Path) -> PathBuf {
    let name = state_file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let file = match name.as_str() {
        "state.json" | "" => "status.json".to_string(),
        other => format!(
            "{}.status.json",
            other.strip_suffix(".json").unwrap_or(other)
        ),
    };
    match state_file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(file),
        _ => PathBuf::from(file),
    }
}

impl Status {
    /// Writes the file atomically, mode 0644 (it is read by a monitoring user).
    pub(crate) fn write(&self, path: &Path) -> Result<(), String> {
        let mut text = serde_json::to_string_pretty(self)
            .map_err(|e| format!("status file not written: {e}"))?;
        text.push('\n');
        crate::atomic_file::replace_with_mode(path, text.as_bytes(), crate::atomic_file::READABLE)
            .map_err(|e| format!("status file not written: {e}"))
    }

    /// Reads a status file; the error is one line naming the file.
    pub(crate) fn read(path: &Path) -> Result<Status, ReadError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ReadError::Missing);
            }
            Err(e) => {
                return Err(ReadError::Unreadable(format!(
                    "cannot read the status file {}: {e}",
                    path.display()
                )));
            }
        };
        let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            ReadError::Unreadable(format!(
                "the status file {} is not valid JSON: {e}",
                path.display()
            ))
        })?;
        match value.get("format").and_then(serde_json::Value::as_u64) {
            Some(n) if n == u64::from(FORMAT) => {}
            Some(n) => {
                return Err(ReadError::Unreadable(format!(
                    "the status file {} has format {n}; this ufm-pkeyd reads format {FORMAT}",
                    path.display()
                )));
            }
            None => {
                return Err(ReadError::Unreadable(format!(
                    "the status file {} has no format number: it was not written by ufm-pkeyd",
                    path.display()
                )));
            }
        }
        serde_json::from_value(value).map_err(|e| {
            ReadError::Unreadable(format!(
                "the status file {} is not a ufm-pkeyd status: {e}",
                path.display()
            ))
        })
    }
}

/// Why a status file could not be read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ReadError {
    /// No file: no daemon or sync has run with this state file.
    Missing,
    /// Unreadable or corrupt: one line saying why.
    Unreadable(String),
}

/// This process's id.
pub(crate) fn own_pid() -> u32 {
    std::process::id()
}

/// Whether process `pid` runs and is a ufm-pkeyd: it exists (`kill(pid, 0)` succeeds, or
/// fails with EPERM because it belongs to another user), and its command name, where this
/// user may read it, starts with `ufm-pkeyd` (a pid reused by another program is not it).
pub(crate) fn pid_running(pid: u32) -> bool {
    let Ok(raw) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if raw <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    let exists = unsafe { libc::kill(raw, 0) } == 0
        || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    if !exists {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/comm")) {
        Ok(comm) => comm.trim_end().starts_with("ufm-pkeyd"),
        // hidepid, or no /proc: the existence check is all there is.
        Err(_) => true,
    }
}

/// A Unix time as UTC, `2025-01-31T12:00:00Z`.
pub(crate) use crate::utc::utc;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_file_sits_beside_the_state_file() {
        let p = |s: &str| path_for(Path::new(s));
        assert_eq!(
            p("/var/lib/ufm-pkeyd/state.json"),
            Path::new("/var/lib/ufm-pkeyd/status.json")
        );
        assert_eq!(
            p("/var/lib/ufm-pkeyd/fabric2/state.json"),
            Path::new("/var/lib/ufm-pkeyd/fabric2/status.json")
        );
        assert_eq!(p("/srv/a.json"), Path::new("/srv/a.status.json"));
        assert_eq!(p("/srv/owned"), Path::new("/srv/owned.status.json"));
        assert_eq!(p("state.json"), Path::new("status.json"));
    }

    #[test]
    fn a_written_file_reads_back_and_a_foreign_one_is_refused() {
        let dir = std::env::temp_dir().join(format!("ufm-pkeyd-status-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("status.json");
        assert_eq!(Status::read(&path), Err(ReadError::Missing));
        let status = Status {
            format: FORMAT,
            writer: MONITOR.into(),
            pid: 42,
            last_check: Some(1.5),
            counts: Counts {
                owned: 3,
                ..Counts::default()
            },
            ..Status::default()
        };
        status.write(&path).expect("write");
        assert_eq!(Status::read(&path), Ok(status));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
        for (text, needle) in [
            ("{", "not valid JSON"),
            ("{\"format\": 9}", "has format 9"),
            ("{\"owned\": 1}", "no format number"),
            ("{\"format\": 1, \"pid\": \"x\"}", "not a ufm-pkeyd status"),
        ] {
            std::fs::write(&path, text).expect("write");
            match Status::read(&path) {
                Err(ReadError::Unreadable(e)) => assert!(e.contains(needle), "{text}: {e}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn this_process_runs_and_a_free_pid_does_not() {
        // The test binary's name does not start with ufm-pkeyd: only existence is checked
        // for pids whose comm is unreadable, so check the negative cases here.
        assert!(!pid_running(0));
        assert!(!pid_running(u32::MAX));
        assert!(
            !pid_running(own_pid()),
            "the unit-test binary is not a ufm-pkeyd"
        );
    }
}
