//! Test harness shared by the integration tests: it starts and stops the real processes a test
//! talks to, and nothing else.
//!
//! * [`Etcd`]: a real single-member etcd 3.4 (optionally with the v2 API, RBAC + v2 auth, TLS with
//!   client certificates), plus direct v2/v3 data access through `curl` for assertions that do
//!   not depend on the code under test.
//! * [`UfmSim`]: the UFM simulator (`src/bin/ufm-sim`) and its `/_sim/*` control API.
//! * [`pkeyd`] / [`Pkeyd`]: runs the built `ufm-pkeyd` binary, to completion ([`Run`]) or in
//!   the background ([`Daemon`]).
//! * [`EtcdCluster`]: three etcd members, one of which can be cut off from its peers in a
//!   network namespace; [`TcpProxy`]: a TCP proxy a test can cut, between one client and etcd.
//! * [`Rig`]: one etcd, one simulator and the `ufm-pkeyd` command lines for them; [`Notify`],
//!   a `$NOTIFY_SOCKET` that records sd_notify messages; pcocc entry and UFM partition shapes.
//! * [`ha`]: HA pairs of `monitor --leader-election` instances that the simulator's request
//!   log tells apart, the election key as etcd holds it, and a leader deposed mid-batch.
//! * [`TempDir`], [`wait_until`], [`wait_for`], [`free_port`], [`dead_endpoint`], [`curl`]:
//!   the small pieces the above are built from.
//!
//! Rules it keeps for every test: servers bind 127.0.0.1 only, on ports picked at run time;
//! every process started is killed and reaped on `Drop` (also when the test panics) and every
//! temporary directory is removed; nothing sleeps and hopes: waits poll a condition every 20 ms
//! and panic after a deadline, naming what was awaited and showing the process log tail.

// Each test file uses only some helpers; the re-exports below are the public surface.
#![allow(dead_code, unused_imports)]

mod cluster; // EtcdCluster: three members, for fail-over and partitions
mod curl; // curl(), CurlReply, form_urlencode()
mod etcd; // Etcd and its options
pub mod ha; // HA pairs: instances told apart by token, the election key, a leader deposed mid-batch
mod pkeyd; // running the ufm-pkeyd binary
mod process; // Proc: a child process with log files
mod proxy; // TcpProxy: a cuttable TCP proxy
mod rig; // Rig: etcd + simulator + ufm-pkeyd command lines; Notify; entry shapes
mod sim; // UfmSim
mod tls; // TlsFiles: test certificates

pub use cluster::EtcdCluster;
pub use curl::{CurlReply, curl, form_urlencode};
pub use etcd::{
    Etcd, EtcdAuth, EtcdOptions, PKEYS_PREFIX, READER_ROLE, READER_USER, ROOT_USER, prefix_end,
};
pub use pkeyd::{Daemon, Pkeyd, Run, pkeyd};
pub use process::Proc;
pub use proxy::TcpProxy;
pub use rig::*;
pub use sim::{SimOptions, UfmSim};
pub use tls::TlsFiles;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often the `wait_*` helpers look at their condition.
pub const POLL: Duration = Duration::from_millis(20);

/// A fresh directory under `std::env::temp_dir()`, removed with its contents on `Drop`.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `<tmp>/ufm-pkeyd-test-<label>-<pid>-<n>-<nanos>`; the name is unique per call.
    pub fn new(label: &str) -> TempDir {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!("ufm-pkeyd-test-{label}-{}-{n}-{nanos}", std::process::id());
        let path = std::env::temp_dir().join(name);
        std::fs::create_dir(&path)
            .unwrap_or_else(|e| panic!("creating temp dir {}: {e}", path.display()));
        TempDir { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `self.path().join(name)`.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Writes `contents` to `name` inside the directory and returns the file's path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.join(name);
        std::fs::write(&path, contents)
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Polls `f` every 20 ms until it returns true; panics after `timeout`, naming `what`.
pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    wait_for(what, timeout, String::new, || f().then_some(()));
}

/// Polls `f` every 20 ms until it returns `Some(value)` and returns the value. After `timeout`
/// it panics, naming `what` and appending `context()` (e.g. a process log tail).
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    context: impl Fn() -> String,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = f() {
            return value;
        }
        if start.elapsed() > timeout {
            panic!(
                "timed out after {:.1} s waiting for: {what}\n{}",
                timeout.as_secs_f64(),
                context()
            );
        }
        std::thread::sleep(POLL);
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then released).
/// Another process may take it before we use it: callers that bind it must retry on failure.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0 to pick a port");
    listener
        .local_addr()
        .expect("local address of the port-picking listener")
        .port()
}

/// `http://127.0.0.1:PORT` where nothing listens: connections are refused.
pub fn dead_endpoint() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

/// A metrics sample from the daemon's textfile: `name{labels} value`.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Shorthand for `Duration::from_secs`.
pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// The last `n` lines of `text`.
pub(crate) fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
