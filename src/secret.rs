//! Secrets (passwords, tokens) that must never reach a log line, an error message or `--json`
//! output. The only way to see the text is [`Secret::expose`], which makes every use visible in
//! review.

use std::fmt;

/// Keeps this process's memory out of core dumps, `/proc/PID/mem` and other users' ptrace
/// (`PR_SET_DUMPABLE` 0), before any secret is read: the core of an aborted daemon would hold
/// the UFM password and its Basic header. `Err` says why the kernel refused, for a warning.
pub(crate) fn keep_out_of_core_dumps() -> Result<(), String> {
    // SAFETY: prctl with PR_SET_DUMPABLE takes an integer argument and touches no memory of
    // ours.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } == 0 {
        Ok(())
    } else {
        Err(format!(
            "secrets may end up in a core dump (prctl PR_SET_DUMPABLE: {}); set LimitCORE=0",
            std::io::Error::last_os_error()
        ))
    }
}

/// A password or token. `Debug` and `Display` print a placeholder.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(String);

impl Secret {
    /// Wraps a secret, dropping one trailing newline (files written by `echo` end with one).
    pub(crate) fn new(text: impl Into<String>) -> Secret {
        let mut text = text.into();
        if text.ends_with('\n') {
            text.pop();
            if text.ends_with('\r') {
                text.pop();
            }
        }
        Secret(text)
    }

    /// The secret text, for the one place that sends it.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is empty (an empty password file is a configuration mistake).
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints_its_text() {
        let secret = Secret::new("hunter2\n");
        assert_eq!(secret.expose(), "hunter2");
        assert!(!format!("{secret} {secret:?}").contains("hunter2"));
    }
}
