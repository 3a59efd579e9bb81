//! Logging set-up: `log` records to stderr through env_logger, suited to a terminal or to the
//! systemd journal.
//!
//! ureq and rustls log at wire level (headers included, so credentials); their records are
//! capped at `warn` whatever `RUST_LOG` or `--debug` say. Under systemd (stderr is the
//! journal stream named by `JOURNAL_STREAM`) lines carry a `<N>` syslog priority and no
//! timestamp, since the journal adds its own. Elsewhere a line starts with its RFC 3339 time
//! when stderr is not a terminal (`sync >> cron.log`), or with `log-timestamps`. Every record
//! is one line: control characters in it (from an etcd key, a UFM error text) are escaped
//! ([`crate::text::escape`]), so that no outside text can forge a record of its own or drive
//! the terminal.

use std::io::Write;

use std::sync::atomic::{AtomicBool, Ordering};

use log::{Level, LevelFilter, Log, Metadata, Record};

/// Targets whose records may carry secrets below `warn`: ureq, ureq_proto (which hex-dumps
/// requests, Authorization headers included) and rustls.
const WIRE_LEVEL_PREFIXES: &[&str] = &["ureq", "rustls"];

/// Whether ufm-pkeyd's own debug records are shown; SIGHUP may change it (`debug`).
static DEBUG: AtomicBool = AtomicBool::new(false);

/// Whether lines outside the journal start with a timestamp; decided once, in [`init`].
static TIMESTAMPS: AtomicBool = AtomicBool::new(false);

/// Installs the logger. `debug` raises ufm-pkeyd's own records to debug level; `RUST_LOG`
/// still applies on top, except to the wire-level targets. `timestamps` (`log-timestamps`):
/// `None` puts them on when stderr is neither the journal nor a terminal.
pub(crate) fn init(debug: bool, timestamps: Option<bool>) {
    use std::io::IsTerminal;
    let automatic = || !stderr_is_journal() && !std::io::stderr().is_terminal();
    TIMESTAMPS.store(timestamps.unwrap_or_else(automatic), Ordering::Relaxed);
    let plain = build(false);
    let verbose = build(true);
    let max = plain.filter().max(verbose.filter());
    DEBUG.store(debug, Ordering::Relaxed);
    if log::set_boxed_logger(Box::new(Redacting { plain, verbose })).is_ok() {
        log::set_max_level(max);
    }
}

/// Turns ufm-pkeyd's debug records on or off (the configuration was reloaded).
pub(crate) fn set_debug(debug: bool) {
    if DEBUG.swap(debug, Ordering::Relaxed) != debug {
        log::info!("debug logging {}", if debug { "on" } else { "off" });
    }
}

/// One logger: `RUST_LOG`, or info by default; with `debug`, ufm-pkeyd at debug at least
/// (`RUST_LOG=warn` does not hide its records, `RUST_LOG=trace` still shows trace).
fn build(debug: bool) -> env_logger::Logger {
    let default = if debug {
        "ufm_pkeyd=debug,info"
    } else {
        "info"
    };
    let env = || env_logger::Env::default().default_filter_or(default);
    let mut builder = env_logger::Builder::from_env(env());
    if debug
        && !env_logger::Builder::from_env(env())
            .build()
            .enabled(&own_debug())
    {
        builder.filter_module("ufm_pkeyd", LevelFilter::Debug);
    }
    if stderr_is_journal() {
        builder.format(|buf, record| {
            writeln!(
                buf,
                "<{}>{}",
                syslog_priority(record.level()),
                one_line(record.args())
            )
        });
    } else {
        builder.format(|buf, record| {
            writeln!(
                buf,
                "{}ufm-pkeyd: {}: {}",
                timestamp(),
                record.level().as_str().to_ascii_lowercase(),
                one_line(record.args())
            )
        });
    }
    builder.build()
}

/// A record's message as one line, its control characters escaped.
fn one_line(args: &std::fmt::Arguments<'_>) -> String {
    match args.as_str() {
        Some(text) => crate::text::escape(text).into_owned(),
        None => crate::text::escape(&args.to_string()).into_owned(),
    }
}

/// A debug record of this crate, to ask a filter whether it would pass.
fn own_debug() -> Metadata<'static> {
    Metadata::builder()
        .target("ufm_pkeyd")
        .level(Level::Debug)
        .build()
}

/// Drops wire-level records from HTTP and TLS libraries, and passes the others to the plain
/// or the debug logger as [`DEBUG`] says.
struct Redacting {
    plain: env_logger::Logger,
    verbose: env_logger::Logger,
}

impl Redacting {
    fn allowed(metadata: &Metadata<'_>) -> bool {
        let wire = WIRE_LEVEL_PREFIXES
            .iter()
            .any(|prefix| metadata.target().starts_with(prefix));
        !wire || metadata.level() <= Level::Warn
    }
}

impl Redacting {
    fn inner(&self) -> &env_logger::Logger {
        if DEBUG.load(Ordering::Relaxed) {
            &self.verbose
        } else {
            &self.plain
        }
    }
}

impl Log for Redacting {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        Self::allowed(metadata) && self.inner().enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if Self::allowed(record.metadata()) {
            self.inner().log(record);
        }
    }

    fn flush(&self) {
        self.inner().flush();
    }
}

fn syslog_priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// The line for an error that ends the program: under the journal with priority err (3), so
/// that `journalctl -p err` shows why the daemon stopped; otherwise `ufm-pkeyd: error: …`.
pub(crate) fn fatal_line(message: &str) -> String {
    let message = crate::text::escape(message);
    if stderr_is_journal() {
        format!("<{}>error: {message}", syslog_priority(Level::Error))
    } else {
        format!("{}ufm-pkeyd: error: {message}", timestamp())
    }
}

/// `2026-12-07T21:19:23Z ` when lines carry timestamps, else nothing.
fn timestamp() -> String {
    if TIMESTAMPS.load(Ordering::Relaxed) {
        format!("{} ", crate::utc::now())
    } else {
        String::new()
    }
}

/// Whether stderr is the journal stream systemd connected, by comparing its device and inode
/// with `JOURNAL_STREAM`, so that a redirected stderr under systemd gets plain lines.
fn stderr_is_journal() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.to_str().and_then(|v| v.split_once(':')) else {
        return false;
    };
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    let Ok(meta) = std::fs::File::from(fd).metadata() else {
        return false;
    };
    dev.parse() == Ok(meta.dev()) && ino.parse() == Ok(meta.ino())
}
