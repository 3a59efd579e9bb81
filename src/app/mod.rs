//! The sub-commands, and the composition root: this is where the configuration becomes clients,
//! an engine and output. `ufm`, `etcd` and `config` run one operation through a client and print
//! its result; `sync` runs one sync pass; `monitor` is the daemon; `status` is a monitoring
//! check that reads the status file they write. Data goes to stdout (a table for people, JSON
//! with `--json`); logs and errors go to stderr.

mod config;
mod etcd;
mod keyspace;
mod metrics;
mod monitor;
mod report;
mod schedule;
mod state;
mod status;
mod status_file;
mod sync;
mod ufm;
mod view;

use std::io::Write;

use serde_json::json;

use crate::cli::{Command, Invocation};
use crate::config::{Config, Settings};
use crate::engine::Engine;
use crate::error::{EXIT_OK, Error, Result};
use crate::net::etcd::EtcdClient;
use crate::net::ufm::UfmClient;
use keyspace::{Count, Patience};

/// Runs a parsed sub-command with its configuration and returns the exit code.
pub(crate) fn run(invocation: &Invocation, config: &Config) -> Result<i32> {
    let out = Output {
        json: invocation.json,
    };
    let settings = &config.settings;
    if is_one_shot(&invocation.command) {
        crate::signals::install_one_shot().map_err(Error::Failed)?;
    }
    let done = match &invocation.command {
        Command::Ufm(op) => ufm::run(op, settings, &out),
        Command::Etcd(op) => etcd::run(op, settings, &out),
        Command::Config { check: false } => config::run(config, &out),
        Command::Config { check: true } => config::check(config, &out),
        Command::Monitor { dry_run } => {
            monitor::register_signals()?;
            let Some(settings) = with_keyspace_counted(settings, Patience::Daemon)? else {
                log::info!("stopping before etcd answered");
                return Ok(EXIT_OK);
            };
            return monitor::run_monitor(invocation, &settings, *dry_run);
        }
        Command::Sync { dry_run } => {
            let settings = with_keyspace_counted(settings, Patience::None)?.ok_or_else(stopped)?;
            return sync::run_sync(&settings, &out, *dry_run);
        }
        Command::Status { max_age } => return Ok(status::run(invocation, *max_age)),
        Command::State(op) => return state::run_state(settings, op.clone(), &out),
        Command::Help(_) | Command::Version => Ok(()),
    };
    done.map(|()| EXIT_OK)
}

/// Whether the command ends by itself and talks to etcd or UFM: it gets the one-shot signal
/// handling (`crate::signals`). The daemon keeps its own; `status` reads one file.
fn is_one_shot(command: &Command) -> bool {
    matches!(
        command,
        Command::Ufm(_)
            | Command::Etcd(_)
            | Command::Sync { .. }
            | Command::State(_)
            | Command::Config { .. }
    )
}

/// `ufm-pkeyd status`: it loads the configuration itself, and does without it when it cannot
/// be read. Returns the exit code (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN).
pub(crate) fn run_status(invocation: &Invocation, max_age: Option<std::time::Duration>) -> i32 {
    status::run(invocation, max_age)
}

/// Arguments of `ufm-pkeyd status` that do not parse: UNKNOWN (exit 3), on stdout.
pub(crate) fn status_usage_error(error: &Error, json: bool) -> i32 {
    status::usage_error(&error.to_string(), json)
}

/// The settings of a writer of the status file (`monitor`, `sync`), with the etcd keyspace
/// decided and the keys of both counted for the status file (`keyspace`); `None` when the
/// daemon was stopped while it waited for etcd.
fn with_keyspace_counted(settings: &Settings, patience: Patience) -> Result<Option<Settings>> {
    // A configuration error is said before etcd is asked anything (or waited for).
    ufm_client(settings)?;
    let etcd = settings.etcd()?;
    let api = keyspace::resolve(etcd, &settings.engine.prefix, Count::Always, patience)?;
    Ok(api.map(|api| settings.with_etcd_api(api)))
}

/// A one-shot command never waits for etcd (only the daemon does, and may be stopped then).
fn stopped() -> Error {
    Error::failed("stopped before etcd answered")
}

/// The etcd client of the configuration, in the keyspace `etcd-api` says (`auto`: the one
/// holding keys under the prefix, found out here).
fn etcd_client(settings: &Settings) -> Result<EtcdClient> {
    let etcd = settings.etcd()?;
    let prefix = &settings.engine.prefix;
    let api =
        keyspace::resolve(etcd, prefix, Count::IfAuto, Patience::None)?.ok_or_else(stopped)?;
    EtcdClient::new(etcd, api).map_err(Error::Usage)
}

/// The UFM client of the configuration.
fn ufm_client(settings: &Settings) -> Result<UfmClient> {
    UfmClient::new(settings.ufm()?).map_err(Error::Usage)
}

/// The sync engine of the configuration, with both clients.
fn engine(settings: &Settings, dry_run: bool) -> Result<Engine> {
    let etcd = etcd_client(settings)?;
    let ufm = ufm_client(settings)?;
    Engine::open(etcd, ufm, settings.engine.clone(), dry_run).map_err(|e| {
        // A corrupt or unreadable state file is a configuration problem; an unreadable
        // shared record in etcd is an operational one.
        if settings.engine.state_key.is_some() {
            Error::Failed(e)
        } else {
            Error::Usage(e)
        }
    })
}

/// Where results go, and in which form.
pub(crate) struct Output {
    json: bool,
}

/// Writes `text` to stdout. A reader that went away (`| head`, `| true`) is not an error: the
/// rest is dropped quietly and the command keeps its exit code. Any other failure (`> /dev/full`,
/// a disk full) is one: the data did not arrive, and the command must not exit 0.
pub(crate) fn print_stdout(text: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Error::failed(format!(
            "cannot write to standard output: {e}"
        ))),
    }
}

impl Output {
    pub(crate) fn print(&self, text: &str) -> Result<()> {
        print_stdout(text)
    }

    pub(crate) fn print_json(&self, value: &serde_json::Value) -> Result<()> {
        let text = serde_json::to_string_pretty(value).unwrap_or_default();
        self.print(&format!("{text}\n"))
    }

    /// One compact JSON document on one line (JSON Lines), for output that goes on.
    pub(crate) fn print_json_line(&self, value: &serde_json::Value) -> Result<()> {
        let text = serde_json::to_string(value).unwrap_or_default();
        self.print(&format!("{text}\n"))
    }

    /// Prints a confirmation: a line for people (escaped: it may name an etcd key), `{"ok":
    /// true, …}` for scripts.
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
            self.print(&format!("{}\n", crate::text::escape(line)))
        }
    }
}
