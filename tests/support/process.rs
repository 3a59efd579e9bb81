//! One child process with its output in log files: start it, signal it, read its logs, and
//! make sure it is killed and reaped when the owner goes away.

use std::fs::{File, OpenOptions};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use super::{POLL, tail};

/// A running child whose stdout and stderr are appended to `<dir>/<name>.stdout|.stderr`.
/// `Drop` kills it (SIGKILL) and reaps it if it is still running.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Child,
    status: Option<ExitStatus>,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Proc {
    /// Spawns `cmd` with stdout/stderr going to log files in `log_dir` (appended, so a restarted
    /// server keeps one log). The caller sets stdin, args and env on `cmd`.
    pub fn spawn(name: &str, mut cmd: Command, log_dir: &Path) -> Proc {
        let stdout = log_dir.join(format!("{name}.stdout"));
        let stderr = log_dir.join(format!("{name}.stderr"));
        cmd.stdout(append(&stdout)).stderr(append(&stderr));
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name} ({cmd:?}): {e}"));
        Proc {
            name: name.to_string(),
            child,
            status: None,
            stdout,
            stderr,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(status)` once the process has exited (it is reaped then), `None` while it runs.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self
                .child
                .try_wait()
                .unwrap_or_else(|e| panic!("checking on {}: {e}", self.name));
        }
        self.status
    }

    /// Sends a signal by name (`"TERM"`, `"HUP"`, `"INT"`, `"KILL"`…) if the process still runs.
    /// It has not been reaped yet then, so its pid cannot have been reused.
    pub fn signal(&mut self, sig: &str) {
        if self.exited().is_some() {
            return;
        }
        let ok = Command::new("kill")
            .args(["-s", sig, &self.pid().to_string()])
            .status()
            .expect("running kill")
            .success();
        assert!(
            ok || self.exited().is_some(),
            "kill -s {sig} {} failed",
            self.name
        );
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if start.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(POLL);
        }
    }

    /// SIGKILL, then reap. Returns the exit status.
    pub fn kill(&mut self) -> ExitStatus {
        if let Some(status) = self.exited() {
            return status;
        }
        let _ = self.child.kill();
        let status = self
            .child
            .wait()
            .unwrap_or_else(|e| panic!("reaping {}: {e}", self.name));
        self.status = Some(status);
        status
    }

    /// SIGTERM, wait up to `timeout`, then SIGKILL. Returns the status and whether the SIGKILL
    /// was needed.
    pub fn terminate(&mut self, timeout: Duration) -> (ExitStatus, bool) {
        self.signal("TERM");
        match self.wait_exit(timeout) {
            Some(status) => (status, false),
            None => (self.kill(), true),
        }
    }

    /// Everything the process wrote to stdout so far.
    pub fn stdout(&self) -> String {
        read_lossy(&self.stdout)
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        read_lossy(&self.stderr)
    }

    /// Path of the stderr log file.
    pub fn stderr_path(&self) -> &Path {
        &self.stderr
    }

    /// A block for panic messages: the process name, whether it runs, and the last 30 lines
    /// of its stderr and stdout.
    pub fn log_tail(&self) -> String {
        let state = match self.status {
            Some(s) => format!("exited with {}", exit_code(s)),
            None => "running (as last seen)".to_string(),
        };
        format!(
            "--- {} (pid {}, {state}) stderr tail ---\n{}\n--- stdout tail ---\n{}\n---",
            self.name,
            self.pid(),
            tail(&self.stderr(), 30),
            tail(&self.stdout(), 30)
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A shell-style exit code: the code, or 128 + signal number when killed by a signal.
pub fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Opens a log file for appending, creating it.
fn append(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("opening log {}: {e}", path.display()))
}

/// The file as text (lossy UTF-8), empty when it does not exist.
fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}
