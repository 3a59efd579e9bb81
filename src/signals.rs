//! How a one-shot command (`sync`, `ufm`, `etcd`, `state`, `config`) treats signals. The
//! daemon does not install this: `monitor` keeps its own flags (SIGTERM finishes the request
//! in flight and exits 0, SIGHUP reloads).
//!
//! - SIGINT or SIGTERM ends the command at once with 130 or 143 (128 + the signal, as a shell
//!   reports a command a signal ended): a read cut short changes nothing.
//! - During a UFM write, the first one lets that request finish (bounded by `ufm-timeout`),
//!   says so on stderr, and the command exits with the same code as soon as the write
//!   returns; a second one ends it at once.
//! - On a terminal, a request still unanswered after 2 s says so once ("waiting for UFM at
//!   URL…"), rather than leaving the user with silence until the timeout.
//!
//! There is no thread: the handlers run on the main thread in signal context, so they touch
//! only atomics, `write(2)` a message prepared before the request, and `_exit(2)`
//! (`signal_hook::low_level::exit`), all async-signal-safe.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

/// The one-shot handlers are installed (never in the daemon).
static INSTALLED: AtomicBool = AtomicBool::new(false);
/// A UFM write is in flight.
static WRITING: AtomicBool = AtomicBool::new(false);
/// The exit code a signal asked for while a write was in flight; 0 when none came.
static INTERRUPTED: AtomicI32 = AtomicI32::new(0);
/// Slow requests are announced (stderr is a terminal).
static NOTICE: AtomicBool = AtomicBool::new(false);

/// How long a request may be silent before it is announced.
const NOTICE_AFTER_SECONDS: u32 = 2;

/// What the interrupt handler says when it lets a write finish.
static WRITE_TEXT: SignalText = SignalText::new();
/// What the alarm handler says about a slow request.
static WAIT_TEXT: SignalText = SignalText::new();

/// Installs the handlers of a one-shot command: SIGINT and SIGTERM as above, and the
/// slow-request notice when stderr is a terminal.
pub(crate) fn install_one_shot() -> Result<(), String> {
    use signal_hook::consts::{SIGALRM, SIGINT, SIGTERM};
    use std::io::IsTerminal;
    let failed = |e: std::io::Error| format!("cannot install signal handlers: {e}");
    for signal in [SIGINT, SIGTERM] {
        // SAFETY: `on_interrupt` uses only atomics, write(2) and _exit(2).
        unsafe { signal_hook::low_level::register(signal, move || on_interrupt(signal)) }
            .map_err(failed)?;
    }
    if std::io::stderr().is_terminal() {
        // SAFETY: `emit` uses only atomics and write(2).
        unsafe { signal_hook::low_level::register(SIGALRM, || WAIT_TEXT.emit()) }
            .map_err(failed)?;
        NOTICE.store(true, SeqCst);
    }
    INSTALLED.store(true, SeqCst);
    Ok(())
}

/// SIGINT or SIGTERM (in signal context).
fn on_interrupt(signal: i32) {
    let code = 128 + signal;
    let first = INTERRUPTED
        .compare_exchange(0, code, SeqCst, SeqCst)
        .is_ok();
    if first && WRITING.load(SeqCst) {
        WRITE_TEXT.emit();
        return;
    }
    signal_hook::low_level::exit(code);
}

/// A UFM write in flight, from [`write_in_flight`] until [`WriteInFlight::done`].
pub(crate) struct WriteInFlight(());

/// The UFM client is about to send a write to `target` (method and URL), which takes at most
/// `bound`: an interrupt now lets it finish.
pub(crate) fn write_in_flight(target: &str, bound: Duration) -> WriteInFlight {
    if INSTALLED.load(SeqCst) {
        WRITE_TEXT.set(&format!(
            "ufm-pkeyd: interrupted: finishing the write in flight to {target} (at most {} s; interrupt again to abort it)\n",
            bound.as_secs_f64()
        ));
    }
    WRITING.store(true, SeqCst);
    WriteInFlight(())
}

impl WriteInFlight {
    /// The write returned: when a signal came meanwhile, the command ends here, with its code.
    pub(crate) fn done(self) {
        drop(self);
        let code = INTERRUPTED.load(SeqCst);
        if code != 0 {
            let _ = writeln!(
                std::io::stderr(),
                "ufm-pkeyd: interrupted: the write finished; nothing more is sent"
            );
            std::process::exit(code);
        }
    }
}

impl Drop for WriteInFlight {
    fn drop(&mut self) {
        WRITING.store(false, SeqCst);
    }
}

/// Whether a signal asked the command to end once its write is done: a write that would go
/// on to the next UFM host is not sent.
pub(crate) fn interrupted() -> bool {
    INTERRUPTED.load(SeqCst) != 0
}

/// A request that is announced if it stays unanswered (see [`waiting`]).
pub(crate) struct Waiting(bool);

/// A request to `service` at `url` starts: on a terminal, if it is still unanswered after
/// 2 s, stderr says so (once). The notice is cancelled when the value is dropped.
pub(crate) fn waiting(service: &str, url: &str) -> Waiting {
    if !NOTICE.load(SeqCst) {
        return Waiting(false);
    }
    let shown = url.split('?').next().unwrap_or(url);
    WAIT_TEXT.set(&format!("ufm-pkeyd: waiting for {service} at {shown}…\n"));
    // SAFETY: alarm(2) only sets the process's timer; SIGALRM has a handler (above).
    unsafe { libc::alarm(NOTICE_AFTER_SECONDS) };
    Waiting(true)
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if self.0 {
            // SAFETY: cancels the timer set in `waiting`.
            unsafe { libc::alarm(0) };
            WAIT_TEXT.clear();
        }
    }
}

/// The longest message a handler writes, in bytes.
const TEXT_CAPACITY: usize = 512;

/// A message a signal handler may write: bytes in atomics, so that the handler reads it
/// without a lock. Its length is set last, and to 0 first when it changes, so a handler sees
/// either no message or a whole one.
struct SignalText {
    bytes: [AtomicU8; TEXT_CAPACITY],
    len: AtomicUsize,
}

impl SignalText {
    const fn new() -> SignalText {
        SignalText {
            bytes: [const { AtomicU8::new(0) }; TEXT_CAPACITY],
            len: AtomicUsize::new(0),
        }
    }

    /// Prepares `text` (cut to the capacity, still ending with a newline).
    fn set(&self, text: &str) {
        self.len.store(0, SeqCst);
        let mut end = text.len().min(TEXT_CAPACITY - 1);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let mut bytes = text.as_bytes()[..end].to_vec();
        if bytes.last() != Some(&b'\n') {
            bytes.push(b'\n');
        }
        for (slot, byte) in self.bytes.iter().zip(&bytes) {
            slot.store(*byte, SeqCst);
        }
        self.len.store(bytes.len(), SeqCst);
    }

    fn clear(&self) {
        self.len.store(0, SeqCst);
    }

    /// Writes the message to stderr, if there is one (in signal context: no allocation).
    fn emit(&self) {
        let len = self.len.load(SeqCst).min(TEXT_CAPACITY);
        if len == 0 {
            return;
        }
        let mut buffer = [0u8; TEXT_CAPACITY];
        for (out, slot) in buffer.iter_mut().zip(&self.bytes).take(len) {
            *out = slot.load(SeqCst);
        }
        // SAFETY: write(2) of `len` initialised bytes of a local buffer to stderr.
        let _ = unsafe { libc::write(2, buffer.as_ptr().cast(), len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_message_is_cut_on_a_character_and_still_ends_its_line() {
        let text = SignalText::new();
        let long = format!("{}é tail\n", "x".repeat(TEXT_CAPACITY - 3));
        text.set(&long);
        let len = text.len.load(SeqCst);
        assert!(len <= TEXT_CAPACITY);
        let bytes: Vec<u8> = text
            .bytes
            .iter()
            .take(len)
            .map(|b| b.load(SeqCst))
            .collect();
        let shown = String::from_utf8(bytes).expect("cut on a character boundary");
        assert!(shown.ends_with('\n'), "{shown:?}");
        text.set("short\n");
        assert_eq!(text.len.load(SeqCst), 6);
    }
}
