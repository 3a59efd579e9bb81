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
