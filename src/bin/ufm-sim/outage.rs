//! Timed outages (`/_sim/outage`): UFM stops for a while and then comes back with its state.
//!
//! This module owns the outage state and its clock: which outage runs and until when, a
//! timer thread per outage that ends it (and logs so), and the waits built on one condition
//! variable, so nobody polls:
//! - `refuse`: the accept loop in [`crate::server`] closes the listening socket, drops every
//!   open connection and waits in [`Outages::wait_while_refusing`] before listening again
//!   on the same port. Starting one connects once to the listening address to wake the
//!   blocked `accept`. The control API is unreachable until the outage ends.
//! - `503`: [`Outages::gate`] answers [`Gate::Unavailable`] for every API request.
//! - `hang`: [`Outages::gate`] holds API requests until the outage ends; they are then
//!   handled normally.

use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use log::{info, warn};
use serde_json::{Value, json};

/// Longest outage (one day).
pub const MAX_SECONDS: f64 = 86_400.0;

/// How UFM is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The process is stopped: connections are refused.
    Refuse,
    /// Apache is up but UFM behind it is not: 503 for every API request.
    Unavailable,
    /// Requests are accepted but not answered until the outage ends.
    Hang,
}

impl Mode {
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "refuse" => Ok(Self::Refuse),
            "503" => Ok(Self::Unavailable),
            "hang" => Ok(Self::Hang),
            other => Err(format!("outage mode '{other}' is not refuse, 503 or hang")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Refuse => "refuse",
            Self::Unavailable => "503",
            Self::Hang => "hang",
        }
    }
}

/// One running outage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outage {
    pub id: u64,
    pub mode: Mode,
    pub until: Instant,
    pub seconds: Duration,
    /// The connection that asked for a `refuse` outage: it is not dropped, so it gets its
    /// answer (which closes it).
    pub exempt_conn: Option<u64>,
}

impl Outage {
    fn to_json(self, now: Instant) -> Value {
        json!({
            "active": true,
            "mode": self.mode.as_str(),
            "seconds": self.seconds.as_secs_f64(),
            "seconds_left": (self.until.saturating_duration_since(now).as_secs_f64() * 1000.0).round() / 1000.0,
        })
    }
}

/// What an API request may do under the current outage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Open,
    Unavailable,
}

#[derive(Debug, Default)]
struct State {
    current: Option<Outage>,
    next_id: u64,
    /// Where the simulator listens, to wake its accept loop.
    listen_addr: Option<SocketAddr>,
}

/// The outage state shared by the accept loop, the connection threads and the timers.
#[derive(Debug, Default)]
pub struct Outages {
    state: Mutex<State>,
    changed: Condvar,
}

impl Outages {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tells the outages where the simulator listens (for waking the accept loop).
    pub fn set_listen_addr(&self, addr: SocketAddr) {
        self.lock().listen_addr = Some(addr);
    }

    /// Starts an outage of `seconds`, replacing any running one, and a timer thread that
    /// ends it. A `refuse` outage also wakes the accept loop.
    pub fn start(
        self: &Arc<Self>,
        mode: Mode,
        seconds: Duration,
        exempt_conn: Option<u64>,
    ) -> Outage {
        let (outage, wake) = {
            let mut state = self.lock();
            state.next_id += 1;
            let outage = Outage {
                id: state.next_id,
                mode,
                until: Instant::now() + seconds,
                seconds,
                exempt_conn,
            };
            state.current = Some(outage);
            (outage, state.listen_addr.filter(|_| mode == Mode::Refuse))
        };
        self.changed.notify_all();
        info!(
            "outage started: mode {} for {:.3} s",
            mode.as_str(),
            seconds.as_secs_f64()
        );
        let timer = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("ufm-sim-outage".into())
            .spawn(move || timer.run_timer(outage.id));
        if let Err(e) = spawned {
            warn!("cannot start the outage timer ({e}); the outage ends on the next request");
        }
        if let Some(addr) = wake {
            // Wakes the blocked accept(); the accept loop sees the outage and stops listening.
            if let Err(e) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
                warn!("cannot wake the accept loop at {addr}: {e}");
            }
        }
        outage
    }

    /// Waits until outage `id` is over or replaced, then ends it if it is still current.
    fn run_timer(&self, id: u64) {
        let mut state = self.lock();
        loop {
            let Some(outage) = state.current.filter(|o| o.id == id) else {
                return; // cleared or replaced
            };
            let now = Instant::now();
            if now >= outage.until {
                state.current = None;
                drop(state);
                self.changed.notify_all();
                info!("outage ended: mode {}", outage.mode.as_str());
                return;
            }
            state = self
                .changed
                .wait_timeout(state, outage.until - now)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }

    /// The running outage, if any (one whose time is up counts as over).
    pub fn current(&self) -> Option<Outage> {
        let state = self.lock();
        state.current.filter(|o| Instant::now() < o.until)
    }

    /// Ends any outage at once.
    pub fn clear(&self) {
        let cleared = self.lock().current.take();
        self.changed.notify_all();
        if let Some(outage) = cleared {
            info!("outage ended (cleared): mode {}", outage.mode.as_str());
        }
    }

    /// `GET /_sim/outage`.
    pub fn to_json(&self) -> Value {
        match self.current() {
            Some(outage) => outage.to_json(Instant::now()),
            None => json!({ "active": false }),
        }
    }

    /// Whether a `refuse` outage runs (the accept loop must stop listening).
    pub fn refusing(&self) -> Option<Outage> {
        self.current().filter(|o| o.mode == Mode::Refuse)
    }

    /// Blocks while a `refuse` outage runs.
    pub fn wait_while_refusing(&self) {
        self.wait_while(Mode::Refuse);
    }

    /// For an API request: holds it while a `hang` outage runs, then says whether it may go on.
    pub fn gate(&self) -> Gate {
        self.wait_while(Mode::Hang);
        match self.current() {
            Some(o) if o.mode == Mode::Unavailable => Gate::Unavailable,
            _ => Gate::Open,
        }
    }

    fn wait_while(&self, mode: Mode) {
        let mut state = self.lock();
        loop {
            let now = Instant::now();
            let Some(outage) = state.current.filter(|o| o.mode == mode && now < o.until) else {
                return;
            };
            state = self
                .changed
                .wait_timeout(state, outage.until - now)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse() {
        assert_eq!(Mode::parse("refuse"), Ok(Mode::Refuse));
        assert_eq!(Mode::parse("503"), Ok(Mode::Unavailable));
        assert_eq!(Mode::parse("hang").map(Mode::as_str), Ok("hang"));
        assert!(Mode::parse("down").is_err());
    }

    #[test]
    fn an_outage_ends_by_itself_and_releases_waiters() {
        let outages = Arc::new(Outages::default());
        assert_eq!(outages.gate(), Gate::Open);
        outages.start(Mode::Unavailable, Duration::from_secs(60), None);
        assert_eq!(outages.gate(), Gate::Unavailable);
        assert_eq!(outages.to_json()["mode"], "503");
        outages.clear();
        assert_eq!(outages.gate(), Gate::Open);

        let started = Instant::now();
        outages.start(Mode::Hang, Duration::from_millis(200), None);
        assert_eq!(outages.gate(), Gate::Open);
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert_eq!(outages.to_json(), json!({"active": false}));
    }
}
