//! An operator's request to whichever process holds the ownership record: confirm deletions
//! the guard refused, or adopt or reset the record. `ufm-pkeyd state --confirm-deletions`
//! (and `--adopt` or `--reset` while the daemon runs) writes it beside the record — a file next
//! to the state file, or an etcd key next to the shared record — and the daemon, or the next
//! `sync`, carries it out at its next full pass, logs who asked, and removes it: it is used
//! once, and an unused one expires after [`LIFETIME`], so that it cannot confirm a later
//! accident.
//!
//! Only root or the daemon's own user may leave one in the state directory: a request file
//! owned by anyone else is ignored, and said so.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::model::PKey;

/// How long a request waits to be used.
pub(crate) const LIFETIME: u64 = 3600;

/// What is asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Op {
    /// Delete the refused partitions named (all of them without a list).
    ConfirmDeletions,
    /// Bind the record to the etcd and UFM configured now, keeping what it owns (the file on
    /// disk as it is, when it was changed by another writer).
    Adopt,
    /// Empty the record and bind it to the etcd and UFM configured now.
    Reset,
}

impl Op {
    /// The command line that made it, for logs.
    pub(crate) fn command(self) -> &'static str {
        match self {
            Op::ConfirmDeletions => "state --confirm-deletions",
            Op::Adopt => "state --adopt",
            Op::Reset => "state --reset",
        }
    }
}

/// One request, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Request {
    pub op: Op,
    /// The partitions a confirmation covers; `None`: every deletion refused at the time it
    /// is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pkeys: Option<BTreeSet<PKey>>,
    /// Who asked: `user@host`.
    pub by: String,
    /// When, in Unix seconds.
    pub at: u64,
}

impl Request {
    /// A request made now by the user running this process.
    pub(crate) fn new(op: Op, pkeys: Option<BTreeSet<PKey>>, now: u64) -> Request {
        Request {
            op,
            pkeys,
            by: asker(),
            at: now,
        }
    }

    /// Whether it is too old to be used at `now`.
    pub(crate) fn expired(&self, now: u64) -> bool {
        now >= self.at.saturating_add(LIFETIME)
    }

    /// Whether a confirmation covers `pkey`.
    pub(crate) fn covers(&self, pkey: PKey) -> bool {
        self.op == Op::ConfirmDeletions && self.pkeys.as_ref().is_none_or(|p| p.contains(&pkey))
    }

    /// The request as stored.
    pub(crate) fn render(&self) -> Vec<u8> {
        let mut text = serde_json::to_vec_pretty(self).unwrap_or_default();
        text.push(b'\n');
        text
    }

    /// A stored request; `Err` says what is wrong with it.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Request, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }
}

/// `user@host` of this process: the user sudo was run by, when it was.
fn asker() -> String {
    let user = std::env::var("SUDO_USER")
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
        // SAFETY: getuid has no preconditions and cannot fail.
        .unwrap_or_else(|| format!("uid {}", unsafe { libc::getuid() }));
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".to_string());
    format!("{user}@{host}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pk(text: &str) -> PKey {
        text.parse().expect("pkey")
    }

    #[test]
    fn a_confirmation_covers_what_it_names_and_expires_after_an_hour() {
        let named = Request::new(Op::ConfirmDeletions, Some([pk("0x10")].into()), 1000);
        assert!(named.covers(pk("0x10")));
        assert!(!named.covers(pk("0x11")));
        let all = Request::new(Op::ConfirmDeletions, None, 1000);
        assert!(all.covers(pk("0x11")));
        assert!(!all.expired(1000 + LIFETIME - 1));
        assert!(all.expired(1000 + LIFETIME));
        let adopt = Request::new(Op::Adopt, None, 1000);
        assert!(!adopt.covers(pk("0x10")), "only a confirmation confirms");
    }

    #[test]
    fn a_request_reads_back_as_written() {
        let request = Request::new(
            Op::ConfirmDeletions,
            Some([pk("0x10"), pk("0x7ffe")].into()),
            7,
        );
        let text = request.render();
        assert!(String::from_utf8_lossy(&text).contains("\"confirm-deletions\""));
        assert_eq!(Request::parse(&text), Ok(request));
        assert!(Request::parse(b"{\"op\": \"delete-everything\"}").is_err());
    }
}
