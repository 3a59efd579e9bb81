//! The listening socket and the connections: the accept loop and the per-connection loop
//! (one thread per connection, keep-alive, plain TCP or rustls). Request handling is
//! [`crate::api`]'s.

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use log::{LevelFilter, debug, error, warn};
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

/// Accepts connections until the process ends, each served on its own thread.
pub fn run(listener: TcpListener, sim: Arc<Sim>, config: ConnConfig) -> Result<(), String> {
    for incoming in listener.incoming() {
        let tcp = match incoming {
            Ok(tcp) => tcp,
            Err(e) => {
                warn!("accept failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let sim = Arc::clone(&sim);
        let config = config.clone();
        let spawned = std::thread::Builder::new()
            .name("ufm-sim-conn".into())
            .spawn(move || handle_connection(tcp, &sim, &config));
        if let Err(e) = spawned {
            error!("cannot start a connection thread: {e}");
        }
    }
    Ok(())
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

fn handle_connection(tcp: TcpStream, sim: &Sim, config: &ConnConfig) {
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
        None => serve(tcp, sim, peer),
        Some(tls) => match ServerConnection::new(Arc::clone(tls)) {
            Ok(conn) => serve(StreamOwned::new(conn, tcp), sim, peer),
            Err(e) => warn!("{peer}: TLS session setup failed: {e}"),
        },
    }
}

/// Reads one request, or the error page that answers a request that could not be read.
fn next_request<S: Transport>(
    reader: &mut BufReader<S>,
    sim: &Sim,
    peer: SocketAddr,
) -> Option<(Request, Response)> {
    let request = http::read_request(reader, |r| {
        r.get_mut().write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        r.get_mut().flush()
    });
    Some(match request {
        Ok(request) => {
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
fn serve<S: Transport>(stream: S, sim: &Sim, peer: SocketAddr) {
    let mut reader = BufReader::new(stream);
    loop {
        let Some((request, response)) = next_request(&mut reader, sim, peer) else {
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
