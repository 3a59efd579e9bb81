//! systemd integration without libsystemd: `sd_notify` datagrams to `$NOTIFY_SOCKET`
//! (`READY=1`, `STATUS=…`, `WATCHDOG=1`, `RELOADING=1`, `STOPPING=1`) and the watchdog
//! interval from `$WATCHDOG_USEC`. Outside systemd every call is a no-op.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

/// Sends one notification; does nothing when not started by systemd with `Type=notify`.
/// Assignments are separated by newlines: one in a `STATUS=` text (a UFM error) would be
/// another assignment (`MAINPID=`, `READY=1`), so control characters are escaped.
pub(crate) fn notify(state: &str) {
    let state = crate::text::escape(state);
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(socket) = UnixDatagram::unbound() else {
        return;
    };
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str());
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|addr| socket.send_to_addr(state.as_bytes(), &addr))
    } else {
        socket.send_to(state.as_bytes(), &path)
    };
    if let Err(e) = sent {
        log::debug!("sd_notify failed: {e}");
    }
}

/// Pings the systemd watchdog at half its interval.
pub(crate) struct Watchdog {
    interval: Option<Duration>,
    last: Instant,
}

impl Watchdog {
    /// Reads `$WATCHDOG_USEC`; without it the watchdog is off.
    pub(crate) fn from_env() -> Watchdog {
        let interval = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|usec| *usec > 0)
            .map(|usec| Duration::from_micros(usec / 2));
        Watchdog {
            interval,
            last: Instant::now(),
        }
    }

    /// Sends `WATCHDOG=1` when half the interval has passed.
    pub(crate) fn tick(&mut self) {
        if let Some(interval) = self.interval {
            if self.last.elapsed() >= interval {
                notify("WATCHDOG=1");
                self.last = Instant::now();
            }
        }
    }
}
