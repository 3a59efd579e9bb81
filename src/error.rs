//! The error every command ends with, and the exit code it maps to.
//!
//! Lower layers (http, ufm, etcd, config) keep their own error types with the detail a caller
//! may act on; at the command boundary each becomes one of these five kinds, shown to the user
//! as a single line that names the input and the fix.

use std::fmt;

/// Exit code: success.
pub(crate) const EXIT_OK: i32 = 0;
/// Exit code: the operation failed (network, authentication, API error).
pub(crate) const EXIT_FAILED: i32 = 1;
/// Exit code: usage or configuration error; nothing was attempted.
pub(crate) const EXIT_USAGE: i32 = 2;
/// Exit code: the PKey, GUID or etcd key asked for does not exist.
pub(crate) const EXIT_NOT_FOUND: i32 = 3;

/// Exit code of `sync --dry-run` and `monitor --dry-run`'s first pass: UFM differs from etcd
/// and a real run would change it.
pub(crate) const EXIT_PENDING: i32 = 4;
/// Exit code: UFM or etcd refused the credentials. The unit does not restart on it
/// (`RestartPreventExitStatus=`): retrying a wrong password locks accounts.
pub(crate) const EXIT_AUTH: i32 = 5;
/// Exit codes of a one-shot command ended by SIGINT or SIGTERM: 128 + the signal, as a shell
/// reports it (a UFM write in flight is finished first).
pub(crate) const EXIT_SIGINT: i32 = 130;
pub(crate) const EXIT_SIGTERM: i32 = 143;

/// The monitoring plugins' codes, which `status` returns instead of the codes above.
pub(crate) const STATUS_OK: i32 = 0;
pub(crate) const STATUS_WARNING: i32 = 1;
pub(crate) const STATUS_CRITICAL: i32 = 2;
pub(crate) const STATUS_UNKNOWN: i32 = 3;

/// One exit status, and what it means.
#[derive(Debug)]
pub(crate) struct Exit {
    pub code: i32,
    pub meaning: &'static str,
}

const fn exit(code: i32, meaning: &'static str) -> Exit {
    Exit { code, meaning }
}

/// What each code means for every command but `status` (`ufm-pkeyd --help`).
pub(crate) const EXIT_CODES: &[Exit] = &[
    exit(EXIT_OK, "success"),
    exit(
        EXIT_FAILED,
        "the operation failed: network or API error, a change that failed",
    ),
    exit(
        EXIT_USAGE,
        "usage or configuration error: nothing was attempted",
    ),
    exit(
        EXIT_NOT_FOUND,
        "not found: the PKey or etcd key asked for does not exist",
    ),
    exit(EXIT_PENDING, "changes pending (sync --dry-run)"),
    exit(EXIT_AUTH, "UFM or etcd refused the credentials"),
];

/// The exit-code table: the codes each command can return, found by reading its code paths
/// (`src/app/*.rs`), each with what it means there. Every command's `--help` prints its part;
/// `tests/docs_consistency.rs` checks README.md's table and ufm-pkeyd(8)'s EXIT STATUS
/// against those `--help` texts. A command that starts returning another code adds it here.
#[rustfmt::skip]
pub(crate) const COMMAND_EXITS: &[(&str, &[Exit])] = &[
    ("monitor", &[
        exit(EXIT_OK, "stopped by SIGTERM or SIGINT"),
        exit(EXIT_FAILED, "could not start: signal handlers, or the shared ownership record (--dry-run with leader election)"),
        exit(EXIT_USAGE, "usage or configuration error, a corrupt or locked state file, a wrong UFM URL or auth mode: nothing was done"),
        exit(EXIT_AUTH, "UFM or etcd refused the credentials at start-up (the unit does not restart it)"),
    ]),
    ("sync", &[
        exit(EXIT_OK, "every change applied, or nothing to do (--dry-run: UFM is in step with etcd)"),
        exit(EXIT_FAILED, "a change failed, UFM refused a GUID, deletions were refused, or etcd or UFM could not be read"),
        exit(EXIT_USAGE, "usage or configuration error, the daemon holds the state file, or leader election is on: nothing was done"),
        exit(EXIT_PENDING, "--dry-run: changes pending"),
        exit(EXIT_AUTH, "UFM or etcd refused the credentials"),
        exit(EXIT_SIGINT, "interrupted by SIGINT (a UFM write in flight was finished first)"),
        exit(EXIT_SIGTERM, "ended by SIGTERM (a UFM write in flight was finished first)"),
    ]),
    ("ufm", &[
        exit(EXIT_OK, "success"),
        exit(EXIT_FAILED, "the operation failed: network or API error, the PKey exists (--create-pkey), a wrong URL or auth mode"),
        exit(EXIT_USAGE, "usage or configuration error: nothing was attempted"),
        exit(EXIT_NOT_FOUND, "the PKey does not exist, as UFM's single-PKey read says"),
        exit(EXIT_AUTH, "UFM refused the credentials"),
        exit(EXIT_SIGINT, "interrupted by SIGINT (a UFM write in flight was finished first)"),
        exit(EXIT_SIGTERM, "ended by SIGTERM (a UFM write in flight was finished first)"),
    ]),
    ("etcd", &[
        exit(EXIT_OK, "success"),
        exit(EXIT_FAILED, "the operation failed: network or API error"),
        exit(EXIT_USAGE, "usage or configuration error: nothing was attempted"),
        exit(EXIT_NOT_FOUND, "the key does not exist (--get, --delete)"),
        exit(EXIT_AUTH, "etcd refused the credentials"),
        exit(EXIT_SIGINT, "interrupted by SIGINT (a UFM write in flight was finished first)"),
        exit(EXIT_SIGTERM, "ended by SIGTERM (a UFM write in flight was finished first)"),
    ]),
    ("status", &[
        exit(STATUS_OK, "OK: UFM is in step with etcd"),
        exit(STATUS_WARNING, "WARNING: changes pending, deletions refused, GUIDs rejected, the ownership record held, a failed pass, a short outage"),
        exit(STATUS_CRITICAL, "CRITICAL: the last check is older than --max-age, or the daemon is not running"),
        exit(STATUS_UNKNOWN, "UNKNOWN: no status file, an unreadable one, or wrong options"),
    ]),
    ("state", &[
        exit(EXIT_OK, "success"),
        exit(EXIT_FAILED, "etcd could not be read, or the record could not be saved"),
        exit(EXIT_USAGE, "usage or configuration error, a corrupt state file: nothing was done"),
        exit(EXIT_AUTH, "etcd refused the credentials"),
        exit(EXIT_SIGINT, "interrupted by SIGINT (a UFM write in flight was finished first)"),
        exit(EXIT_SIGTERM, "ended by SIGTERM (a UFM write in flight was finished first)"),
    ]),
    ("config", &[
        exit(EXIT_OK, "printed (--check: the configuration would start the daemon)"),
        exit(EXIT_FAILED, "the output could not be written"),
        exit(EXIT_USAGE, "the configuration does not load (--check: or a file it names cannot be read)"),
        exit(EXIT_SIGINT, "interrupted by SIGINT (a UFM write in flight was finished first)"),
        exit(EXIT_SIGTERM, "ended by SIGTERM (a UFM write in flight was finished first)"),
    ]),
];

/// The exit statuses `command` can end with (none for an unknown command).
pub(crate) fn exits_of(command: &str) -> &'static [Exit] {
    COMMAND_EXITS
        .iter()
        .find(|(name, _)| *name == command)
        .map_or(&[], |(_, exits)| exits)
}

/// A failed command, as the user sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Error {
    /// Bad command line or configuration: exit 2.
    Usage(String),
    /// The operation was attempted and failed: exit 1.
    Failed(String),
    /// The thing asked for does not exist: exit 3.
    NotFound(String),
    /// UFM or etcd refused the credentials: exit 5.
    Auth(String),
}

impl Error {
    /// The documented exit code for this error.
    pub(crate) fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => EXIT_USAGE,
            Error::Failed(_) => EXIT_FAILED,
            Error::NotFound(_) => EXIT_NOT_FOUND,
            Error::Auth(_) => EXIT_AUTH,
        }
    }

    /// Shorthand for a usage or configuration error.
    pub(crate) fn usage(message: impl Into<String>) -> Error {
        Error::Usage(message.into())
    }

    /// Shorthand for a failed operation.
    pub(crate) fn failed(message: impl Into<String>) -> Error {
        Error::Failed(message.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(m) | Error::Failed(m) | Error::NotFound(m) | Error::Auth(m) => {
                f.write_str(m)
            }
        }
    }
}

impl std::error::Error for Error {}

impl From<lexopt::Error> for Error {
    fn from(e: lexopt::Error) -> Error {
        Error::Usage(format!("{e} (see --help)"))
    }
}

impl From<crate::model::ModelError> for Error {
    fn from(e: crate::model::ModelError) -> Error {
        Error::Usage(e.to_string())
    }
}

/// Result of a command.
pub(crate) type Result<T> = std::result::Result<T, Error>;
