//! ufm-pkeyd keeps InfiniBand partition keys in NVIDIA UFM Enterprise in step with the PKey
//! definitions that pcocc writes into etcd.
//!
//! Modules, from the bottom up (each depends only on those above it in this list):
//! - `model`: PKey, GUID, membership, partitions and pcocc entries; no I/O.
//! - `error`, `secret`, `utc`: the error every command ends with (and its exit code); secret
//!   text; RFC 3339 timestamps.
//! - `text`, `atomic_file`: outside text made safe to show; files replaced without following
//!   links.
//! - `signals`: how a one-shot command treats SIGINT and SIGTERM (a UFM write in flight is
//!   finished first) and says that a request is slow.
//! - `plan`: the pure sync planner, over the model only.
//! - `net`: the HTTP/TLS layer and the etcd and UFM clients, each with its own settings.
//! - `engine`: one sync pass (read, plan, apply, record), ownership, leader election.
//! - `config`: the configuration layers, resolved once into typed settings.
//! - `cli`: the flag table, parsing and `--help`.
//! - `app`: the sub-commands and the daemon loop; wires clients, engine and output together.
//! - `systemd`, `logging`: sd_notify and the log set-up.

mod app;
mod atomic_file;
mod cli;
mod config;
mod engine;
mod error;
mod logging;
mod model;
mod net;
mod plan;
mod secret;
mod signals;
mod systemd;
mod text;
mod utc;

use std::ffi::OsString;

use error::Error;

/// Runs the tool with these arguments (without the program name) and returns the exit code.
pub fn main_with_args(args: Vec<OsString>) -> i32 {
    let status_check = cli::command_word(&args) == Some("status");
    let json = args.iter().any(|a| a == "--json");
    let invocation = match cli::parse(args) {
        Ok(invocation) => invocation,
        // A monitoring check answers UNKNOWN (3) to bad arguments, not 2.
        Err(e) if status_check => return app::status_usage_error(&e, json),
        Err(e) => return report(&e),
    };
    let shown = match &invocation.command {
        cli::Command::Help(topic) => Some(cli::help(*topic)),
        cli::Command::Version => Some(format!("ufm-pkeyd {}\n", env!("CARGO_PKG_VERSION"))),
        _ => None,
    };
    if let Some(text) = shown {
        return match app::print_stdout(&text) {
            Ok(()) => error::EXIT_OK,
            Err(e) => report(&e),
        };
    }
    if let cli::Command::Status { max_age } = invocation.command {
        // No secret, no credential: only where the status file is. It copes with a
        // configuration it cannot read.
        let timestamps = invocation.flags.values.contains_key("log-timestamps");
        logging::init(false, timestamps.then_some(true));
        return app::run_status(&invocation, max_age);
    }
    // Every command from here on may read a password or token.
    let undumpable = secret::keep_out_of_core_dumps();
    let credentials = std::env::var_os("CREDENTIALS_DIRECTORY").map(std::path::PathBuf::from);
    let config = match config::load(&invocation.flags, credentials.as_deref()) {
        Ok(config) => config,
        Err(e) => {
            logging::init(false, None);
            return report(&e);
        }
    };
    logging::init(config.settings.debug, config.settings.log_timestamps);
    if let Err(warning) = undumpable {
        log::warn!("{warning}");
    }
    for warning in config.warnings() {
        log::warn!("{warning}");
    }
    match app::run(&invocation, &config) {
        Ok(code) => code,
        Err(e) => report(&e),
    }
}

fn report(error: &Error) -> i32 {
    use std::io::Write;
    // A closed stderr must not turn an error into a panic.
    let _ = writeln!(
        std::io::stderr(),
        "{}",
        logging::fatal_line(&error.to_string())
    );
    error.exit_code()
}
