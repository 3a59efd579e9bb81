//! The one-shot sub-commands: `ufm`, `etcd` and `config` run one operation through a client
//! and print its result; `sync` and `status` run or show one sync pass. Data goes to stdout
//! (a table for people, JSON with `--json`); logs and errors go to stderr.

mod config;
mod etcd;
mod sync;
mod ufm;

use std::io::Write;

use serde_json::json;

use crate::cli::{Command, Invocation};
use crate::config::RawConfig;
use crate::daemon;
use crate::error::{EXIT_OK, Result};

/// Runs a parsed sub-command with its configuration and returns the exit code.
pub fn run(invocation: &Invocation, config: &RawConfig) -> Result<i32> {
    let out = Output {
        json: invocation.json,
    };
    let done = match &invocation.command {
        Command::Ufm(op) => ufm::run(op, config, &out),
        Command::Etcd(op) => etcd::run(op, config, &out),
        Command::Config => config::run(config, &out),
        Command::Monitor { dry_run } => return daemon::run_monitor(invocation, config, *dry_run),
        Command::Sync { dry_run } => return sync::run_sync(invocation, config, *dry_run),
        Command::Status => return sync::run_status(invocation, config),
        Command::Help(_) | Command::Version => Ok(()),
    };
    done.map(|()| EXIT_OK)
}

/// Where results go, and in which form.
pub(crate) struct Output {
    json: bool,
}

impl Output {
    pub(crate) fn print(&self, text: &str) -> Result<()> {
        let mut stdout = std::io::stdout().lock();
        // A closed pipe (`| head`) is not an error worth reporting.
        let _ = stdout.write_all(text.as_bytes());
        let _ = stdout.flush();
        Ok(())
    }

    pub(crate) fn print_json(&self, value: &serde_json::Value) -> Result<()> {
        let text = serde_json::to_string_pretty(value).unwrap_or_default();
        self.print(&format!("{text}\n"))
    }

    /// Prints a confirmation: a line for people, `{"ok": true, …}` for scripts.
    pub(crate) fn done(&self, line: &str, detail: serde_json::Value) -> Result<()> {
        if self.json {
            let mut value = json!({"ok": true, "message": line});
            if let (Some(target), serde_json::Value::Object(extra)) =
                (value.as_object_mut(), detail)
            {
                target.extend(extra);
            }
            self.print_json(&value)
        } else {
            self.print(&format!("{line}\n"))
        }
    }
}
