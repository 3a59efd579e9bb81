//! Running the built `ufm-pkeyd` binary the way a user would: a command that finishes
//! ([`Run`]), or a daemon left running in the background ([`Daemon`]).

use std::fs::File;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::process::exit_code;
use super::{Proc, TempDir, wait_for};

/// Environment variables removed before running `ufm-pkeyd`, so the developer's shell or a
/// systemd/CI environment cannot change what a test sees. Tests set what they need with
/// [`Pkeyd::env`].
pub const CLEARED_ENV: &[&str] = &[
    "RUST_LOG",
    "RUST_LOG_STYLE",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "NOTIFY_SOCKET",
    "CREDENTIALS_DIRECTORY",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_FDS",
    "LISTEN_PID",
];

/// Default limit for [`Pkeyd::run`].
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// How a finished `ufm-pkeyd` run ended.
#[derive(Debug, Clone)]
pub struct Run {
    /// Exit code; 128 + N when killed by signal N.
    pub code: i32,
    /// Everything written to stdout.
    pub stdout: String,
    /// Everything written to stderr (plus a harness note when it was killed on timeout).
    pub stderr: String,
    /// True when the harness killed it because it ran past its timeout.
    pub timed_out: bool,
}

impl Run {
    /// True when `secret` can be read from the output: in stdout or stderr as it is, or in the
    /// bytes of a wire-level hex dump (`trace: 4745 5420 …` lines, as HTTP libraries log
    /// requests), where it would be split across lines.
    pub fn reveals(&self, secret: &str) -> bool {
        let text = format!("{}\n{}", self.stdout, self.stderr);
        text.contains(secret) || String::from_utf8_lossy(&hex_dump_bytes(&text)).contains(secret)
    }

    /// Panics, showing stdout and stderr, unless the exit code is 0. Returns `self` for chaining.
    pub fn assert_ok(&self) -> &Run {
        self.assert_code(0)
    }

    /// Panics, showing stdout and stderr, unless the exit code is `code`.
    pub fn assert_code(&self, code: i32) -> &Run {
        assert!(
            self.code == code && !self.timed_out,
            "ufm-pkeyd exited with {} (expected {code}){}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code,
            if self.timed_out {
                ", killed on timeout"
            } else {
                ""
            },
            self.stdout,
            self.stderr
        );
        self
    }
}

/// Runs `ufm-pkeyd ARGS…` to completion (timeout 60 s) with a cleaned environment and no stdin.
pub fn pkeyd(args: &[&str]) -> Run {
    Pkeyd::new(args).run()
}

/// A `ufm-pkeyd` command line being prepared: arguments, environment, stdin, timeout.
#[derive(Debug, Clone)]
pub struct Pkeyd {
    args: Vec<String>,
    env: Vec<(String, String)>,
    stdin: Option<String>,
    timeout: Duration,
    new_session: bool,
    wrapper: Vec<String>,
}

impl Pkeyd {
    /// `ufm-pkeyd ARGS…` (nothing else is added: no `--no-pcocc`, no config path).
    pub fn new(args: &[&str]) -> Pkeyd {
        Pkeyd {
            args: args.iter().map(|a| a.to_string()).collect(),
            env: Vec::new(),
            stdin: None,
            timeout: RUN_TIMEOUT,
            new_session: false,
            wrapper: Vec::new(),
        }
    }

    /// Adds more arguments.
    pub fn args(mut self, args: &[&str]) -> Pkeyd {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// Sets an environment variable (after the cleaning, so it may set a cleared one).
    pub fn env(mut self, key: &str, value: &str) -> Pkeyd {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Feeds `input` on stdin (default: no stdin, i.e. `/dev/null`).
    pub fn stdin(mut self, input: &str) -> Pkeyd {
        self.stdin = Some(input.to_string());
        self
    }

    /// How long [`Pkeyd::run`] lets it run before killing it (default 60 s).
    pub fn timeout(mut self, timeout: Duration) -> Pkeyd {
        self.timeout = timeout;
        self
    }

    /// Runs it in a new session (through `setsid --wait`), so it has no controlling terminal
    /// and cannot open `/dev/tty`, even when the tests run in one.
    pub fn without_terminal(mut self) -> Pkeyd {
        self.new_session = true;
        self
    }

    /// Runs it through `wrapper`, a command line that ends by running (with `exec`, so that
    /// the process id stays the same) the program and arguments it is given after it:
    /// `["sh", "-c", "umask 000; exec \"$0\" \"$@\""]`, `["setpriv", "--reuid=65534", …]`.
    pub fn through(mut self, wrapper: &[&str]) -> Pkeyd {
        self.wrapper = wrapper.iter().map(|a| a.to_string()).collect();
        self
    }

    /// Runs to completion. Past the timeout it is killed: `timed_out` is set and a note ending
    /// stderr says so.
    pub fn run(self) -> Run {
        let timeout = self.timeout;
        let (mut proc, dir) = self.spawn_proc();
        let (code, timed_out) = match proc.wait_exit(timeout) {
            Some(status) => (exit_code(status), false),
            None => (exit_code(proc.kill()), true),
        };
        let mut stderr = proc.stderr();
        if timed_out {
            stderr.push_str(&format!(
                "\n[test harness: ufm-pkeyd killed after {:.1} s timeout]\n",
                timeout.as_secs_f64()
            ));
        }
        let run = Run {
            code,
            stdout: proc.stdout(),
            stderr,
            timed_out,
        };
        drop(proc);
        drop(dir);
        run
    }

    /// Starts it in the background (e.g. `daemon`), ignoring the timeout.
    pub fn spawn(self) -> Daemon {
        let (proc, dir) = self.spawn_proc();
        Daemon { proc, _dir: dir }
    }

    /// Starts the process with its logs (and stdin file) in a fresh temp dir.
    fn spawn_proc(self) -> (Proc, TempDir) {
        let dir = TempDir::new("pkeyd");
        let binary = env!("CARGO_BIN_EXE_ufm-pkeyd");
        let mut cmd = if self.new_session {
            let mut setsid = Command::new("setsid");
            setsid.args(["--wait", binary]);
            setsid
        } else if let Some((program, args)) = self.wrapper.split_first() {
            let mut wrapper = Command::new(program);
            wrapper.args(args).arg(binary);
            wrapper
        } else {
            Command::new(binary)
        };
        cmd.args(&self.args);
        for key in CLEARED_ENV {
            cmd.env_remove(key);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        match &self.stdin {
            Some(input) => {
                let path = dir.write("stdin", input);
                cmd.stdin(File::open(&path).expect("opening the stdin file"));
            }
            None => {
                cmd.stdin(Stdio::null());
            }
        }
        (Proc::spawn("ufm-pkeyd", cmd, dir.path()), dir)
    }
}

/// The bytes of the hex dumps in `text`, concatenated: on every line with `trace:`, the
/// groups of four hex digits (`--` marks a missing byte) that follow it.
fn hex_dump_bytes(text: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    for line in text.lines() {
        let Some((_, dump)) = line.split_once("trace:") else {
            continue;
        };
        let groups = dump
            .split_whitespace()
            .take_while(|w| w.len() == 4 && w.chars().all(|c| c.is_ascii_hexdigit() || c == '-'));
        for group in groups {
            for pair in [&group[..2], &group[2..]] {
                if let Ok(byte) = u8::from_str_radix(pair, 16) {
                    bytes.push(byte);
                }
            }
        }
    }
    bytes
}

/// `ufm-pkeyd` running in the background; killed on `Drop` if still running.
pub struct Daemon {
    proc: Proc,
    _dir: TempDir,
}

impl Daemon {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Its stdout so far.
    pub fn stdout(&self) -> String {
        self.proc.stdout()
    }

    /// Its stderr (the log) so far.
    pub fn stderr(&self) -> String {
        self.proc.stderr()
    }

    /// True while it runs.
    pub fn is_running(&mut self) -> bool {
        self.proc.exited().is_none()
    }

    /// Sends a signal by name (`"HUP"`, `"TERM"`…).
    pub fn signal(&mut self, sig: &str) {
        self.proc.signal(sig);
    }

    /// Waits until stderr contains `needle` (counting from the start of the log); panics with
    /// the log tail after `timeout` or if the daemon exits first.
    pub fn wait_for_stderr(&mut self, needle: &str, timeout: Duration) {
        self.wait_for_stderr_count(needle, 1, timeout);
    }

    /// Waits until `needle` occurs at least `count` times in stderr (e.g. the second
    /// "sync done" after a change); panics like [`Daemon::wait_for_stderr`].
    pub fn wait_for_stderr_count(&mut self, needle: &str, count: usize, timeout: Duration) {
        let what = format!("ufm-pkeyd stderr to contain {needle:?} {count} time(s)");
        let stderr_path = self.proc.stderr_path().to_path_buf();
        let proc = &mut self.proc;
        let context = || {
            let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            format!("--- ufm-pkeyd stderr tail ---\n{}", super::tail(&log, 40))
        };
        wait_for(&what, timeout, context, || {
            if proc.stderr().matches(needle).count() >= count {
                return Some(());
            }
            if proc.exited().is_some() && proc.stderr().matches(needle).count() < count {
                panic!(
                    "ufm-pkeyd exited while waiting for {what}\n{}",
                    proc.log_tail()
                );
            }
            None
        });
    }

    /// Waits up to `timeout` for it to exit by itself; panics with the log tail if it does not.
    pub fn wait(mut self, timeout: Duration) -> Run {
        match self.proc.wait_exit(timeout) {
            Some(status) => self.finish(exit_code(status)),
            None => panic!(
                "ufm-pkeyd still running after {:.1} s\n{}",
                timeout.as_secs_f64(),
                self.proc.log_tail()
            ),
        }
    }

    /// SIGTERM and wait up to 10 s for a clean exit; panics with the log tail if it needs a
    /// SIGKILL.
    pub fn stop(mut self) -> Run {
        self.proc.signal("TERM");
        self.wait(Duration::from_secs(10))
    }

    /// The [`Run`] of an exited daemon.
    fn finish(self, code: i32) -> Run {
        Run {
            code,
            stdout: self.proc.stdout(),
            stderr: self.proc.stderr(),
            timed_out: false,
        }
    }
}
