//! A TCP proxy on 127.0.0.1 that a test can cut and restore: put it between one client (say
//! one ufm-pkeyd of an HA pair) and a server (etcd) to take the server away from that client
//! only. Plain std threads in the test process: one accepts, two copy each connection.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::wait_for;

/// How long connecting to the target may take (it is on loopback: refused or accepted at once).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long `restore` may wait for the port to be free again.
const REBIND_TIMEOUT: Duration = Duration::from_secs(5);

/// Forwards every connection to its port on 127.0.0.1 to `target`, both ways, each chunk as
/// soon as it is read (no buffering, `TCP_NODELAY`), so keep-alive connections, long-polls and
/// chunked streams (etcd v2 `?wait=true`, the v3 watch) pass as they are; a half-close is
/// passed on. When the target refuses, the client's connection is closed without data.
/// Dropping the proxy cuts it and joins all its threads.
pub struct TcpProxy {
    port: u16,
    shared: Arc<Shared>,
    /// The accepting thread; `None` while cut.
    acceptor: Option<JoinHandle<()>>,
}

/// What the accepting thread and the proxy share.
struct Shared {
    target: SocketAddr,
    /// Set by `cut` before it wakes the acceptor: it then drops the listener and stops.
    cutting: AtomicBool,
    accepted: AtomicUsize,
    conns: Mutex<Vec<Conn>>,
}

/// One forwarded connection: both sockets (to shut them down) and the two copying threads.
struct Conn {
    client: TcpStream,
    upstream: TcpStream,
    pumps: [JoinHandle<()>; 2],
}

impl TcpProxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `target` (`"127.0.0.1:PORT"`, a
    /// loopback address: panics otherwise).
    pub fn start(target: &str) -> TcpProxy {
        let target: SocketAddr = target
            .parse()
            .unwrap_or_else(|e| panic!("proxy target {target:?} is not IP:PORT: {e}"));
        assert!(
            target.ip().is_loopback(),
            "proxy target {target} is not loopback"
        );
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the proxy's port");
        let port = listener.local_addr().expect("the proxy's address").port();
        let shared = Arc::new(Shared {
            target,
            cutting: AtomicBool::new(false),
            accepted: AtomicUsize::new(0),
            conns: Mutex::new(Vec::new()),
        });
        let acceptor = Some(spawn_acceptor(listener, &shared));
        TcpProxy {
            port,
            shared,
            acceptor,
        }
    }

    /// `http://127.0.0.1:PORT`, the same before and after a cut.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.host_port())
    }

    /// `127.0.0.1:PORT`.
    pub fn host_port(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Cuts the proxy; returns when done. Every open connection is shut down both ways at once
    /// (the client reads end-of-file: a response under way stops short, e.g. curl exit 18, a
    /// waiting long-poll or watch ends, an idle keep-alive connection is closed), and the port
    /// stops listening, so new connections are refused (ECONNREFUSED, curl exit 7). Nothing
    /// reaches the target through the proxy until [`TcpProxy::restore`]. Cutting twice is a
    /// no-op.
    pub fn cut(&mut self) {
        if let Some(acceptor) = self.acceptor.take() {
            self.shared.cutting.store(true, Ordering::SeqCst);
            // Closing a listener does not wake a thread blocked in accept(): a connection of
            // our own does, and the acceptor then drops the listener and returns.
            let _ = TcpStream::connect(("127.0.0.1", self.port));
            let _ = acceptor.join();
        }
        let conns = std::mem::take(&mut *self.shared.conns.lock().expect("proxy conns lock"));
        for conn in &conns {
            let _ = conn.client.shutdown(Shutdown::Both);
            let _ = conn.upstream.shutdown(Shutdown::Both);
        }
        for conn in conns {
            for pump in conn.pumps {
                let _ = pump.join();
            }
        }
    }

    /// Listens again on the same port (waiting up to 5 s for it to be free) and forwards new
    /// connections. Connections cut before stay closed. A no-op when not cut.
    pub fn restore(&mut self) {
        if self.acceptor.is_some() {
            return;
        }
        let what = format!("re-binding the proxy's port {}", self.port);
        let listener = wait_for(&what, REBIND_TIMEOUT, String::new, || {
            TcpListener::bind(("127.0.0.1", self.port)).ok()
        });
        self.shared.cutting.store(false, Ordering::SeqCst);
        self.acceptor = Some(spawn_acceptor(listener, &self.shared));
    }

    /// How many connections it accepted since it started (e.g. to check that a client reuses
    /// a keep-alive connection).
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// How many forwarded connections are still open in at least one direction.
    pub fn open_connections(&self) -> usize {
        let conns = self.shared.conns.lock().expect("proxy conns lock");
        conns.iter().filter(|c| !c.finished()).count()
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
    }
}

impl Conn {
    fn finished(&self) -> bool {
        self.pumps.iter().all(JoinHandle::is_finished)
    }
}

impl Shared {
    /// Connects `client` to the target and starts copying both ways.
    fn forward(&self, client: TcpStream) {
        // On failure `client` is dropped: the client sees its connection closed.
        let Ok(upstream) = TcpStream::connect_timeout(&self.target, CONNECT_TIMEOUT) else {
            return;
        };
        let clone = |stream: &TcpStream| stream.try_clone().ok();
        let clones = (
            clone(&client),
            clone(&client),
            clone(&upstream),
            clone(&upstream),
        );
        let (
            Some(client_reader),
            Some(client_writer),
            Some(upstream_reader),
            Some(upstream_writer),
        ) = clones
        else {
            return;
        };
        let _ = client.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
        let pumps = [
            spawn_pump("proxy-up", client_reader, upstream_writer),
            spawn_pump("proxy-down", upstream_reader, client_writer),
        ];
        let mut conns = self.conns.lock().expect("proxy conns lock");
        conns.retain(|c| !c.finished());
        conns.push(Conn {
            client,
            upstream,
            pumps,
        });
    }
}

/// The accepting thread: forwards each connection until `cutting` is set, then drops the
/// listener (the port refuses connections from then on).
fn spawn_acceptor(listener: TcpListener, shared: &Arc<Shared>) -> JoinHandle<()> {
    let shared = Arc::clone(shared);
    std::thread::Builder::new()
        .name("proxy-accept".into())
        .spawn(move || {
            for client in listener.incoming() {
                if shared.cutting.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(client) = client {
                    shared.accepted.fetch_add(1, Ordering::SeqCst);
                    shared.forward(client);
                }
            }
        })
        .expect("spawning the proxy's accepting thread")
}

/// A thread copying `from` to `to` until end-of-file or an error, then passing the half-close
/// on (`shutdown(Write)` of `to`).
fn spawn_pump(name: &str, mut from: TcpStream, mut to: TcpStream) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let mut buf = [0u8; 16 * 1024];
            loop {
                match from.read(&mut buf) {
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = to.shutdown(Shutdown::Write);
        })
        .expect("spawning a proxy copying thread")
}
