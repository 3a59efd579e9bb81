//! ufm-pkeyd keeps InfiniBand partition keys in NVIDIA UFM Enterprise in step with the PKey
//! definitions that pcocc writes into etcd.
//!
//! Module map: `model` (PKey, GUID, pcocc entries; no I/O), `config` (layered settings),
//! `http` (the shared HTTP/TLS layer), `etcd` and `ufm` (typed clients), `plan` (the pure sync
//! planner), `sync` (one pass), `state` (ownership file), `daemon` (monitor loop, signals),
//! `systemd` (sd_notify), `election`, `metrics`, `report` (how plans are shown), `cli` (flags
//! and help), `commands` (the sub-commands other than `monitor`),
//! `logging`, `secret`, `error` (exit codes).

pub mod cli;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod election;
pub mod error;
pub mod etcd;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod plan;
pub mod report;
pub mod secret;
pub mod state;
pub mod sync;
pub mod systemd;
pub mod ufm;

use std::ffi::OsString;

use error::Error;

/// Runs the tool with these arguments (without the program name) and returns the exit code.
pub fn main_with_args(args: Vec<OsString>) -> i32 {
    let invocation = match cli::parse(args) {
        Ok(invocation) => invocation,
        Err(e) => return report(&e),
    };
    match &invocation.command {
        cli::Command::Help(topic) => {
            print!("{}", cli::help(*topic));
            return error::EXIT_OK;
        }
        cli::Command::Version => {
            println!("ufm-pkeyd {}", env!("CARGO_PKG_VERSION"));
            return error::EXIT_OK;
        }
        _ => {}
    }
    let credentials = std::env::var_os("CREDENTIALS_DIRECTORY").map(std::path::PathBuf::from);
    let config = match config::RawConfig::load(&invocation.flags, credentials.as_deref()) {
        Ok(config) => config,
        Err(e) => {
            logging::init(false);
            return report(&e);
        }
    };
    logging::init(config.debug());
    for warning in &config.warnings {
        log::warn!("{warning}");
    }
    match commands::run(&invocation, &config) {
        Ok(code) => code,
        Err(e) => report(&e),
    }
}

fn report(error: &Error) -> i32 {
    eprintln!("ufm-pkeyd: error: {error}");
    error.exit_code()
}
