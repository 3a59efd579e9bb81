//! The listening socket and the connections: the accept loop (which stops listening during a
//! `refuse` outage and listens again on the same port afterwards), the registry of open
//! connections (so an outage can drop them), and the per-connection loop (one thread per
//! connection, keep-alive, plain TCP or rustls). Request handling is [`crate::api`]'s.

use std::collections::HashMap;
use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use log::{LevelFilter, debug, error, info, warn};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

use crate::api;
use crate::control::Sim;
use crate::http::{self, ReadError, Request, Response};

/// How a connection is served.
#[derive(Clone)]
pub struct ConnConfig {
    pub tls: Option<Arc<ServerConfig>>,
    pub idle_timeout: Duration,
}

/// Open connections, by id, so a `refuse` outage can drop them.
#[derive(Default)]
struct Registry {
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, TcpStream>>,
}

impl Registry {
    /// Registers a connection; it is deregistered when the guard drops.
    fn register(self: &Arc<Self>, tcp: &TcpStream) -> ConnGuard {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        match tcp.try_clone() {
            Ok(clone) => {
                self.lock().insert(id, clone);
            }
            Err(e) => debug!("connection {id}: cannot register it for outages: {e}"),
        }
        ConnGuard {
            id,
            registry: Arc::clone(self),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, TcpStream>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Shuts every open connection down but `except`; their threads then see end of file or
    /// a write error and exit.
    fn shutdown_all(&self, except: Option<u64>) -> usize {
        let open = self.lock();
        let mut n = 0;
        for (id, tcp) in open.iter() {
            if Some(*id) != except {
                let _ = tcp.shutdown(Shutdown::Both);
                n += 1;
            }
        }
        n
    }
}

struct ConnGuard {
    id: u64,
    registry: Arc<Registry>,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
    }
}

/// Binds `addr` again after a `refuse` outage, retrying for a while if the port is busy.
fn rebind(addr: SocketAddr) -> Result<TcpListener, String> {
    let mut last = String::new();
    for _ in 0..100 {
        match TcpListener::bind(addr) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("cannot listen on {addr} again: {last}"))
}

/// Accepts connections until the process ends. During a `refuse` outage the socket is closed
/// (new connections are refused) and open connections are dropped; afterwards it listens on
/// the same address again.
pub fn run(listener: TcpListener, sim: Arc<Sim>, config: ConnConfig) -> Result<(), String> {
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))?;
    sim.outages.set_listen_addr(addr);
    let registry = Arc::new(Registry::default());
    let mut listener = Some(listener);
    loop {
        let current = match listener.take() {
            Some(l) => l,
            None => {
                sim.outages.wait_while_refusing();
                let l = rebind(addr)?;
                info!("outage over: listening again on {addr}");
                l
            }
        };
        accept_until_refused(&current, &sim, &registry, &config);
        drop(current);
        let exempt = sim.outages.refusing().and_then(|o| o.exempt_conn);
        let dropped = registry.shutdown_all(exempt);
        info!("stopped listening on {addr}; dropped {dropped} open connection(s)");
    }
}

/// Hands each accepted connection to a thread, until a `refuse` outage starts.
fn accept_until_refused(
    listener: &TcpListener,
    sim: &Arc<Sim>,
    registry: &Arc<Registry>,
    config: &ConnConfig,
) {
    for incoming in listener.incoming() {
        if sim.outages.refusing().is_some() {
            return; // this connection (perhaps the wake-up) is dropped with the listener
        }
        let tcp = match incoming {
            Ok(tcp) => tcp,
            Err(e) => {
                warn!("accept failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let guard = registry.register(&tcp);
        let sim = Arc::clone(sim);
        let config = config.clone();
        let spawned = std::thread::Builder::new()
            .name("ufm-sim-conn".into())
            .spawn(move || handle_connection(tcp, &sim, &config, guard));
        if let Err(e) = spawned {
            error!("cannot start a connection thread: {e}");
        }
    }
}

/// A connection the server can talk HTTP over.
trait Transport: Read + Write {
    /// Ends the session politely (TLS close_notify).
    fn finish(&mut self) {}
}

impl Transport for TcpStream {}

impl Transport for StreamOwned<ServerConnection, TcpStream> {
    fn finish(&mut self) {
        self.conn.send_close_notify();
        let _ = self.flush();
    }
}

fn handle_connection(tcp: TcpStream, sim: &Sim, config: &ConnConfig, guard: ConnGuard) {
    let peer = tcp
        .peer_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    if let Err(e) = tcp
        .set_read_timeout(Some(config.idle_timeout))
        .and_then(|()| tcp.set_write_timeout(Some(Duration::from_secs(60))))
        .and_then(|()| tcp.set_nodelay(true))
    {
        debug!("{peer}: socket setup failed: {e}");
        return;
    }
    match &config.tls {
        None => serve(tcp, sim, peer, guard.id),
        Some(tls) => match ServerConnection::new(Arc::clone(tls)) {
            Ok(conn) => serve(StreamOwned::new(conn, tcp), sim, peer, guard.id),
            Err(e) => warn!("{peer}: TLS session setup failed: {e}"),
        },
    }
}

/// Reads one request, or the error page that answers a request that could not be read.
fn next_request<S: Transport>(
    reader: &mut BufReader<S>,
    sim: &Sim,
    peer: SocketAddr,
    conn: u64,
) -> Option<(Request, Response)> {
    let request = http::read_request(reader, |r| {
        r.get_mut().write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        r.get_mut().flush()
    });
    Some(match request {
        Ok(mut request) => {
            request.conn = conn;
            let response = api::handle(sim, &request);
            (request, response)
        }
        Err(ReadError::Closed) => return None,
        Err(ReadError::Io(e)) => {
            debug!("{peer}: connection ended: {e}");
            return None;
        }
        Err(ReadError::Malformed(msg)) => {
            debug!("{peer}: bad request: {msg}");
            let page = api::apache_page(
                400,
                "Your browser sent a request that this server could not understand.",
            );
            (Request::default(), page.closing())
        }
        Err(ReadError::LineTooLong) => {
            let page = api::apache_page(
                414,
                "The requested URL's length exceeds the capacity\nlimit for this server.",
            );
            (Request::default(), page.closing())
        }
        Err(ReadError::BodyTooLarge) => {
            let page = api::apache_page(413, "The request body is too large.");
            (Request::default(), page.closing())
        }
    })
}

/// Answers requests on one connection until it closes, an error ends it, or a fault drops it.
fn serve<S: Transport>(stream: S, sim: &Sim, peer: SocketAddr, conn: u64) {
    let mut reader = BufReader::new(stream);
    loop {
        let Some((request, response)) = next_request(&mut reader, sim, peer, conn) else {
            return;
        };
        log_exchange(peer, &request, &response);
        if response.abort {
            return; // dropped without an answer (and without TLS close_notify)
        }
        let keep_alive = !response.close && !request.method.is_empty() && request.keep_alive();
        let head_only = request.method == "HEAD";
        if let Err(e) = http::write_response(reader.get_mut(), &response, head_only, keep_alive) {
            debug!("{peer}: write failed: {e}");
            return;
        }
        if !keep_alive {
            break;
        }
    }
    reader.get_mut().finish();
}

fn log_exchange(peer: SocketAddr, request: &Request, response: &Response) {
    if log::max_level() < LevelFilter::Debug {
        return;
    }
    let mut target: String = request.target.chars().take(200).collect();
    if target.len() < request.target.len() {
        target.push('…');
    }
    if response.abort {
        debug!("{peer} {} {target} -> connection dropped", request.method);
        return;
    }
    debug!(
        "{peer} {} {target} -> {} ({} bytes)",
        request.method,
        response.status,
        response.body.len()
    );
}
