//! The one HTTP layer that the UFM and etcd clients share: a configured `ureq` agent (rustls,
//! CA file or the system's CA store, client certificate, timeouts, proxy), requests that keep
//! every status and body as a value, and errors that say in one line what went wrong with which
//! URL.
//!
//! Nothing here knows UFM or etcd beyond the names of their CA options, for messages; nothing
//! here logs secrets. The agent is built without a global or per-call timeout on purpose: ureq
//! resolves names on a spawned thread when one is set, and the daemon is single-threaded.
//! Connect and per-read timeouts bound every call.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine;
use ureq::tls::{ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};

use crate::secret::Secret;

mod trust;

/// The most a response body read whole may hold (the UFM partition list is streamed and has
/// its own limit).
const MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;

/// The longest line of a streamed answer (one etcd watch message, one v2 event).
const MAX_LINE_BYTES: u64 = 16 * 1024 * 1024;

/// How to set up TLS for one server.
#[derive(Clone, Debug, Default)]
pub(crate) struct TlsOptions {
    /// PEM file of CA certificates to trust instead of the system's CA store.
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain and key (PEM), for servers that require mutual TLS.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// Skip certificate and host name checks (UFM ships a self-signed certificate).
    pub insecure: bool,
}

/// How to set up one HTTP client.
#[derive(Clone, Debug)]
pub(crate) struct HttpOptions {
    /// What the client talks to, for messages ("UFM", "etcd").
    pub service: &'static str,
    pub tls: TlsOptions,
    /// Bounds the TCP and TLS connect, and each wait for response bytes.
    pub timeout: Duration,
    /// Proxy URL; `None` means direct, whatever `HTTPS_PROXY` says.
    pub proxy: Option<String>,
}

/// A failure to get any HTTP answer at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HttpError {
    pub kind: HttpErrorKind,
    /// One line: what failed, with which URL.
    pub message: String,
}

/// What kind of failure, so callers can decide to fail over or retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HttpErrorKind {
    /// Could not connect: refused, unreachable, unknown host.
    Connect,
    /// No answer within the timeout.
    Timeout,
    /// The connection was cut after it was made (reset, closed early): a request may have
    /// reached the server.
    Cut,
    /// TLS handshake or certificate problem.
    Tls,
    /// Anything else (malformed response, body too large, bad URL).
    Other,
}

impl HttpError {
    /// Whether another endpoint of the same service might answer.
    pub(crate) fn is_unreachable(&self) -> bool {
        matches!(
            self.kind,
            HttpErrorKind::Connect | HttpErrorKind::Timeout | HttpErrorKind::Cut
        )
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// An HTTP answer of any status, with its body.
#[derive(Clone, Debug)]
pub(crate) struct Response {
    pub status: u16,
    pub content_type: String,
    /// Headers with lowercase names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// 2xx.
    pub(crate) fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Whether the server sent a web page instead of an API answer (a login or error page).
    pub(crate) fn is_html(&self) -> bool {
        is_html(&self.content_type, &self.body)
    }

    /// Whether the body may be a JSON document: its first non-blank byte can start one. An
    /// empty body, plain text or a page cannot.
    pub(crate) fn starts_like_json(&self) -> bool {
        self.body
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| can_start_json(*b))
    }

    /// The body as text, lossily, trimmed and cut to one short line for messages.
    pub(crate) fn snippet(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if line.chars().count() > 200 {
            format!("{}…", line.chars().take(200).collect::<String>())
        } else {
            line
        }
    }

    /// The value of a header, by lowercase name.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Parses the body as JSON.
    pub(crate) fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

/// Whether an answer is a web page (a login or error page) instead of an API answer: by its
/// content type, or by a `<` as the first non-blank byte of its body.
fn is_html(content_type: &str, body: &[u8]) -> bool {
    content_type.to_ascii_lowercase().contains("html")
        || body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'<')
}

/// Whether `byte` can be the first of a JSON document.
fn can_start_json(byte: u8) -> bool {
    matches!(
        byte,
        b'{' | b'[' | b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n'
    )
}

/// How a request authenticates.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Auth<'a> {
    None,
    /// HTTP Basic with user and password.
    Basic(&'a str, &'a Secret),
    /// A raw `Authorization` header value (UFM and etcd v3 tokens).
    Header(&'a Secret),
}

/// One request to send.
#[derive(Debug)]
pub(crate) struct Request<'a> {
    pub method: &'a str,
    pub url: &'a str,
    pub auth: Auth<'a>,
    /// Body and its content type.
    pub body: Option<(&'a str, Vec<u8>)>,
}

impl<'a> Request<'a> {
    /// A GET without a body.
    pub(crate) fn get(url: &'a str, auth: Auth<'a>) -> Request<'a> {
        Request {
            method: "GET",
            url,
            auth,
            body: None,
        }
    }

    /// A request with a JSON body.
    pub(crate) fn json(
        method: &'a str,
        url: &'a str,
        auth: Auth<'a>,
        body: &serde_json::Value,
    ) -> Self {
        Request {
            method,
            url,
            auth,
            body: Some(("application/json", body.to_string().into_bytes())),
        }
    }
}

/// Requests sent by one client (and its clones), by outcome, for the metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RequestCounts {
    /// Answered with 2xx.
    pub success: u64,
    /// Answered with another status.
    pub error_status: u64,
    /// Not answered: connection, TLS or timeout failure.
    pub no_answer: u64,
    /// Bytes of answer bodies read, streams included.
    pub bytes: u64,
}

#[derive(Default)]
struct Counters {
    success: AtomicU64,
    error_status: AtomicU64,
    no_answer: AtomicU64,
    bytes: AtomicU64,
}

/// A reader that adds what it reads to the client's byte counter.
struct Counted {
    inner: Box<dyn Read + Send>,
    counters: Arc<Counters>,
}

impl Read for Counted {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counters.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// A configured HTTP client for one service.
#[derive(Clone)]
pub(crate) struct HttpClient {
    /// Sends every request, except https ones when the CA certificates are the system's.
    agent: ureq::Agent,
    /// With no CA file and verification on: the agent for https requests, made with the
    /// system's CA store at the first one (a plain-http site never reads the store).
    system_tls: Option<Arc<SystemTls>>,
    /// What the certificate of the server was checked against, for a certificate error.
    unknown_issuer_hint: Arc<str>,
    service: &'static str,
    timeout: Duration,
    counters: Arc<Counters>,
}

/// What makes the https agent that trusts the system's CA store, and the agent once made.
struct SystemTls {
    service: &'static str,
    timeout: Duration,
    proxy: Option<ureq::Proxy>,
    client_cert: Option<ClientCert>,
    /// The agent and what its certificates came from. Stays empty while the store has nothing
    /// usable, so that the next request looks again (after `update-ca-trust`, say).
    made: Mutex<Option<(ureq::Agent, Arc<str>)>>,
}

impl SystemTls {
    /// The https agent, and the hint for a certificate signed by no CA of the store; or the
    /// line that says the store has nothing usable.
    fn agent(&self) -> Result<(ureq::Agent, Arc<str>), String> {
        let mut made = self.made.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(made) = &*made {
            return Ok(made.clone());
        }
        let store = trust::load(self.service)?;
        let roots = RootCerts::new_with_certs(&store.certs);
        let tls = tls_config(roots, self.client_cert.clone(), false);
        let agent = new_agent(tls, self.proxy.clone(), self.timeout);
        let hint: Arc<str> = format!(
            "{}'s certificate is signed by no CA in {}: {}",
            self.service,
            store.origin,
            trust::fix(self.service, store.from_env)
        )
        .into();
        *made = Some((agent.clone(), Arc::clone(&hint)));
        Ok((agent, hint))
    }
}

impl HttpClient {
    /// Builds the client, reading and checking the CA and client certificate files now, so a
    /// wrong file is reported at start-up and not at the first request. Without a CA file the
    /// system's CA store is read at the first https request.
    pub(crate) fn new(options: &HttpOptions) -> Result<HttpClient, String> {
        let service = options.service;
        // A CA file replaces the system's store, and is read (and checked) even when
        // verification is off.
        let ca_file = match &options.tls.ca_file {
            Some(path) => Some((path, read_certificates(service, "CA file", path)?)),
            None => None,
        };
        let client_cert = read_client_cert(service, &options.tls)?;
        let proxy = match &options.proxy {
            Some(url) => Some(ureq::Proxy::new(url).map_err(|e| {
                redact_userinfo(&format!(
                    "invalid {service} proxy {url:?}: {e}: use http://host:port"
                ))
            })?),
            None => None,
        };
        let (roots, system_tls, hint) = match ca_file {
            Some((path, certs)) => (
                RootCerts::new_with_certs(&certs),
                None,
                format!(
                    "{service}'s certificate is signed by no CA in {}: {}",
                    path.display(),
                    trust::file_fix(service)
                ),
            ),
            None if options.tls.insecure => (RootCerts::new_with_certs(&[]), None, String::new()),
            // No roots at all: this agent sends plain http only.
            None => (
                RootCerts::new_with_certs(&[]),
                Some(Arc::new(SystemTls {
                    service,
                    timeout: options.timeout,
                    proxy: proxy.clone(),
                    client_cert: client_cert.clone(),
                    made: Mutex::new(None),
                })),
                String::new(),
            ),
        };
        let tls = tls_config(roots, client_cert, options.tls.insecure);
        Ok(HttpClient {
            agent: new_agent(tls, proxy, options.timeout),
            system_tls,
            unknown_issuer_hint: hint.into(),
            service,
            timeout: options.timeout,
            counters: Arc::default(),
        })
    }

    /// The agent for `url`, and the hint for a certificate signed by no trusted CA. An https
    /// URL with the system's store reads the store first (once), and fails with a TLS error
    /// naming where it looked and the fix when the store has nothing usable.
    fn agent_for(&self, url: &str) -> Result<(ureq::Agent, Arc<str>), HttpError> {
        let https = url
            .get(..8)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"));
        match &self.system_tls {
            Some(system) if https => system.agent().map_err(|message| {
                self.count(None);
                HttpError {
                    kind: HttpErrorKind::Tls,
                    message: redact_userinfo(&format!(
                        "cannot reach {} at {url}: {message}",
                        self.service
                    )),
                }
            }),
            _ => Ok((self.agent.clone(), Arc::clone(&self.unknown_issuer_hint))),
        }
    }

    /// Requests sent so far by this client and its clones.
    pub(crate) fn counts(&self) -> RequestCounts {
        RequestCounts {
            success: self.counters.success.load(Ordering::Relaxed),
            error_status: self.counters.error_status.load(Ordering::Relaxed),
            no_answer: self.counters.no_answer.load(Ordering::Relaxed),
            bytes: self.counters.bytes.load(Ordering::Relaxed),
        }
    }

    fn count(&self, status: Option<u16>) {
        let counter = match status {
            Some(s) if (200..300).contains(&s) => &self.counters.success,
            Some(_) => &self.counters.error_status,
            None => &self.counters.no_answer,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The configured timeout: also the longest one request may take, from connect to the last
    /// byte of its answer (streams excepted).
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends a request and reads the whole answer, whatever its status.
    pub(crate) fn send(&self, request: &Request<'_>) -> Result<Response, HttpError> {
        log::debug!("{} {} {}", self.service, request.method, request.url);
        let (agent, hint) = self.agent_for(request.url)?;
        let waiting = crate::signals::waiting(self.service, request.url);
        let mut response = agent.run(self.build(request)?).map_err(|e| {
            self.count(None);
            self.error(request.url, &e, &hint)
        })?;
        drop(waiting);
        let status = response.status().as_u16();
        self.count(Some(status));
        let headers = header_list(response.headers());
        let content_type = headers
            .iter()
            .find(|(n, _)| n == "content-type")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_BODY_BYTES)
            .read_to_vec()
            .map_err(|e| self.error(request.url, &e, ""))?;
        self.counters
            .bytes
            .fetch_add(body.len() as u64, Ordering::Relaxed);
        log::debug!("{} answered {status} ({} bytes)", self.service, body.len());
        Ok(Response {
            status,
            content_type,
            headers,
            body,
        })
    }

    /// Sends a request whose answer is a stream (etcd watch and long poll, UFM's partition
    /// list) and returns it once the status line and headers have arrived. Reads on the stream
    /// wait at most `poll` each, so a caller can check its signal flags while the stream is
    /// quiet. A `long_lived` stream (a watch) has no bound on its whole duration.
    pub(crate) fn open_stream(
        &self,
        request: &Request<'_>,
        poll: Duration,
        long_lived: bool,
    ) -> Result<Stream, HttpError> {
        log::debug!(
            "{} {} {} (stream)",
            self.service,
            request.method,
            request.url
        );
        let whole = (!long_lived).then_some(self.timeout);
        let (agent, hint) = self.agent_for(request.url)?;
        let configured = agent
            .configure_request(self.build(request)?)
            .timeout_per_call(whole)
            .timeout_recv_response(Some(self.timeout))
            .timeout_per_read(Some(poll))
            .build();
        let waiting = crate::signals::waiting(self.service, request.url);
        let response = agent.run(configured).map_err(|e| {
            self.count(None);
            self.error(request.url, &e, &hint)
        })?;
        drop(waiting);
        self.count(Some(response.status().as_u16()));
        let headers = header_list(response.headers());
        let content_type = headers
            .iter()
            .find(|(n, _)| n == "content-type")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        Ok(Stream {
            status: response.status().as_u16(),
            content_type,
            headers,
            reader: std::io::BufReader::new(Box::new(Counted {
                inner: Box::new(response.into_body().into_reader()),
                counters: Arc::clone(&self.counters),
            })),
            pending: Vec::new(),
            service: self.service,
            url: request.url.to_string(),
        })
    }

    fn build(&self, request: &Request<'_>) -> Result<ureq::http::Request<Vec<u8>>, HttpError> {
        let mut builder = ureq::http::Request::builder()
            .method(request.method)
            .uri(request.url)
            .header("Accept", "application/json");
        match request.auth {
            Auth::None => {}
            Auth::Basic(user, password) => {
                builder = builder.header("Authorization", basic_auth_header(user, password));
            }
            Auth::Header(value) => builder = builder.header("Authorization", value.expose()),
        }
        let body = match &request.body {
            Some((content_type, bytes)) => {
                builder = builder.header("Content-Type", *content_type);
                bytes.clone()
            }
            None => Vec::new(),
        };
        let built = builder.body(body).map_err(|e| HttpError {
            kind: HttpErrorKind::Other,
            message: format!("invalid {} URL {}: {e}", self.service, request.url),
        })?;
        // Header names only: their values may be credentials.
        log::trace!(
            "{} request headers: {}",
            self.service,
            built
                .headers()
                .keys()
                .map(|name| name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        Ok(built)
    }

    /// `hint`: what to do about a certificate signed by no trusted CA.
    fn error(&self, url: &str, error: &ureq::Error, hint: &str) -> HttpError {
        describe_error(self.service, url, self.timeout, error, hint)
    }
}

/// Name resolution in the calling thread. With a whole-exchange timeout set, ureq's own
/// resolver runs every lookup on a new thread to bound it; the daemon is single-threaded, and
/// the lookup is bounded by the resolver's own timeouts (`/etc/resolv.conf`) anyway. IP
/// addresses and `/etc/hosts` names resolve at once.
#[derive(Debug, Default)]
struct ResolveInline(ureq::unversioned::resolver::DefaultResolver);

impl ureq::unversioned::resolver::Resolver for ResolveInline {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        let unbounded = ureq::unversioned::transport::NextTimeout {
            after: ureq::unversioned::transport::time::Duration::NotHappening,
            ..timeout
        };
        self.0.resolve(uri, config, unbounded)
    }
}

/// Headers as (lowercase name, value), dropping values that are not text.
fn header_list(headers: &ureq::http::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter_map(|(name, value)| {
            let value = value.to_str().ok()?;
            Some((name.as_str().to_ascii_lowercase(), value.to_string()))
        })
        .collect()
}

/// A streamed answer read line by line.
pub(crate) struct Stream {
    pub status: u16,
    pub content_type: String,
    /// Headers with lowercase names.
    headers: Vec<(String, String)>,
    reader: std::io::BufReader<Box<dyn Read + Send>>,
    /// Bytes of a line not yet complete when a read timed out.
    pending: Vec<u8>,
    service: &'static str,
    url: String,
}

/// What one read of a stream gave.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum StreamRead {
    /// A complete line (or the last bytes before the end), without its newline.
    Line(Vec<u8>),
    /// Nothing arrived within the poll time; the stream is still open.
    Idle,
    /// The server ended the answer.
    End,
}

impl Stream {
    /// The value of a header, by lowercase name.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Reads the next line, or says the stream was idle for one poll time or has ended.
    pub(crate) fn next_line(&mut self) -> Result<StreamRead, HttpError> {
        use std::io::BufRead;
        let room = MAX_LINE_BYTES.saturating_sub(self.pending.len() as u64);
        let read = (&mut self.reader)
            .take(room)
            .read_until(b'\n', &mut self.pending);
        if self.pending.len() as u64 >= MAX_LINE_BYTES && self.pending.last() != Some(&b'\n') {
            return Err(HttpError {
                kind: HttpErrorKind::Other,
                message: format!(
                    "{} at {} sent a line longer than {MAX_LINE_BYTES} bytes",
                    self.service, self.url
                ),
            });
        }
        match read {
            Ok(0) if self.pending.is_empty() => Ok(StreamRead::End),
            Ok(_) => {
                let mut line = std::mem::take(&mut self.pending);
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                Ok(StreamRead::Line(line))
            }
            Err(io) => {
                let error = ureq::Error::from(io);
                if matches!(error, ureq::Error::Timeout(_)) {
                    Ok(StreamRead::Idle)
                } else {
                    Err(describe_error(
                        self.service,
                        &self.url,
                        Duration::ZERO,
                        &error,
                        "",
                    ))
                }
            }
        }
    }

    /// The body as a buffered reader, to parse a large answer while it arrives instead of
    /// holding all of it.
    pub(crate) fn reader(&mut self) -> &mut impl std::io::BufRead {
        &mut self.reader
    }

    /// Whether the answer is a web page (by its type, or by a `<` first), looking at the
    /// first bytes without consuming them.
    pub(crate) fn looks_like_html(&mut self) -> bool {
        use std::io::BufRead;
        let head = self.reader.fill_buf().unwrap_or_default();
        is_html(&self.content_type, head)
    }

    /// Whether the answer may be JSON, by its first non-blank byte among those that arrived
    /// (when none has yet, the parser will tell).
    pub(crate) fn looks_like_json(&mut self) -> bool {
        use std::io::BufRead;
        let head = self.reader.fill_buf().unwrap_or_default();
        head.iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_none_or(|b| can_start_json(*b))
    }

    /// The whole (small) answer as a [`Response`], for error handling.
    pub(crate) fn into_response(mut self) -> Result<Response, HttpError> {
        let mut body = Vec::new();
        self.reader
            .by_ref()
            .take(1024 * 1024)
            .read_to_end(&mut body)
            .map_err(|io| {
                describe_error(
                    self.service,
                    &self.url,
                    Duration::ZERO,
                    &ureq::Error::from(io),
                    "",
                )
            })?;
        Ok(Response {
            status: self.status,
            content_type: self.content_type,
            headers: self.headers,
            body,
        })
    }

    /// Reads the rest of the answer, waiting while `keep_waiting` says so.
    pub(crate) fn read_to_end(
        &mut self,
        mut keep_waiting: impl FnMut() -> bool,
    ) -> Result<Option<Vec<u8>>, HttpError> {
        let mut body = Vec::new();
        loop {
            match self.next_line()? {
                StreamRead::Line(line) => {
                    if (body.len() + line.len()) as u64 > MAX_LINE_BYTES {
                        return Err(HttpError {
                            kind: HttpErrorKind::Other,
                            message: format!(
                                "{} at {} sent an answer larger than {MAX_LINE_BYTES} bytes",
                                self.service, self.url
                            ),
                        });
                    }
                    body.extend_from_slice(&line);
                    body.push(b'\n');
                }
                StreamRead::End => return Ok(Some(body)),
                StreamRead::Idle if keep_waiting() => {}
                StreamRead::Idle => return Ok(None),
            }
        }
    }
}

/// The base URLs of one service (etcd members, UFM hosts), tried in order starting from the
/// one that answered last. Clones share which one that is and which failed lately (as ureq's
/// agent shares its pool): a dead etcd member costs one timeout, not one per copy of the client.
#[derive(Clone, Debug)]
pub(crate) struct Endpoints {
    service: &'static str,
    urls: Vec<String>,
    state: std::sync::Arc<std::sync::Mutex<Choice>>,
}

/// Which endpoint answered last, and when each last failed.
#[derive(Debug)]
struct Choice {
    current: usize,
    failed: Vec<Option<std::time::Instant>>,
}

/// An endpoint that failed this recently is tried after the others.
const FAILED_LATELY: Duration = Duration::from_secs(30);

impl Endpoints {
    /// The endpoints of `service`, in order of preference.
    pub(crate) fn new(service: &'static str, urls: Vec<String>) -> Endpoints {
        let failed = vec![None; urls.len()];
        Endpoints {
            service,
            urls,
            state: std::sync::Arc::new(std::sync::Mutex::new(Choice { current: 0, failed })),
        }
    }

    fn choice(&self) -> std::sync::MutexGuard<'_, Choice> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The URLs, in configured order.
    pub(crate) fn urls(&self) -> &[String] {
        &self.urls
    }

    /// The index of the URL tried first: the one that answered last.
    pub(crate) fn current(&self) -> usize {
        self.choice().current
    }

    /// The order to try them in: the one that answered last, then the others in turn, those
    /// that failed lately last.
    fn order(&self) -> Vec<usize> {
        let choice = self.choice();
        let count = self.urls.len();
        let mut order: Vec<usize> = (0..count).map(|i| (choice.current + i) % count).collect();
        order.sort_by_key(|i| {
            choice.failed[*i].is_some_and(|at| at.elapsed() < FAILED_LATELY) && *i != choice.current
        });
        order
    }

    /// Runs `call` with one base URL after the other until it gets an answer: only errors
    /// for which `unreachable` holds move on to the next endpoint (another member would give
    /// the same answer to anything else). Returns the last error when none answered.
    pub(crate) fn with_failover<T, E: fmt::Display>(
        &self,
        mut call: impl FnMut(&str) -> Result<T, E>,
        unreachable: impl Fn(&E) -> bool,
    ) -> Result<T, E> {
        let count = self.urls.len();
        let start = self.current();
        let mut last = None;
        for index in self.order() {
            let base = &self.urls[index];
            match call(base) {
                Err(e) if unreachable(&e) => {
                    if count > 1 {
                        log::warn!("{e}");
                    }
                    self.choice().failed[index] = Some(std::time::Instant::now());
                    last = Some(e);
                }
                result => {
                    if index != start {
                        log::info!("{}: now using {base}", self.service);
                    }
                    let mut choice = self.choice();
                    choice.current = index;
                    choice.failed[index] = None;
                    return result;
                }
            }
        }
        // `count` is never 0: configuration refuses an empty endpoint list.
        match last {
            Some(e) => Err(e),
            None => call(""),
        }
    }
}

/// `text` with the credentials of every `scheme://user:password@host` in it replaced, and of a
/// bare `user:password@host`, for messages and `ufm-pkeyd config` (a proxy URL may carry them).
pub(crate) fn redact_userinfo(text: &str) -> String {
    if !text.contains("://") {
        return match text.split_once('@') {
            Some((_, host)) if !text.contains(['/', ' ']) => format!("<redacted>@{host}"),
            _ => text.to_string(),
        };
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("://") {
        let (head, tail) = rest.split_at(start + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c == '/' || c == '"' || c.is_whitespace())
            .unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(at) => {
                out.push_str("<redacted>");
                out.push_str(&tail[at..end]);
            }
            None => out.push_str(&tail[..end]),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// `Basic base64(user:password)`.
pub(crate) fn basic_auth_header(user: &str, password: &Secret) -> String {
    let pair = format!("{user}:{}", password.expose());
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// Turns a ureq error into one line naming the service, the URL and the likely fix; `hint`
/// says what to do about a certificate signed by no trusted CA (what it was checked against).
fn describe_error(
    service: &str,
    url: &str,
    timeout: Duration,
    error: &ureq::Error,
    hint: &str,
) -> HttpError {
    let (kind, detail) = match error {
        ureq::Error::Timeout(_) => (
            HttpErrorKind::Timeout,
            format!("no answer within {} s", timeout.as_secs_f64()),
        ),
        ureq::Error::HostNotFound => (HttpErrorKind::Connect, "host not found".to_string()),
        ureq::Error::ConnectionFailed => (HttpErrorKind::Connect, "connection failed".to_string()),
        ureq::Error::Io(io) => describe_io_error(io, hint),
        ureq::Error::BodyExceedsLimit(limit) => (
            HttpErrorKind::Other,
            format!("answer larger than {limit} bytes"),
        ),
        other => (HttpErrorKind::Other, other.to_string()),
    };
    HttpError {
        kind,
        message: redact_userinfo(&format!("cannot reach {service} at {url}: {detail}")),
    }
}

fn describe_io_error(io: &std::io::Error, hint: &str) -> (HttpErrorKind, String) {
    use std::io::ErrorKind;
    match io.kind() {
        ErrorKind::ConnectionRefused => (HttpErrorKind::Connect, "connection refused".into()),
        ErrorKind::TimedOut | ErrorKind::WouldBlock => (HttpErrorKind::Timeout, "timed out".into()),
        ErrorKind::InvalidData if !hint.is_empty() && is_unknown_issuer(io) => (
            HttpErrorKind::Tls,
            format!(
                "TLS error: {}: {hint}",
                io.get_ref().map(|e| e.to_string()).unwrap_or_default()
            ),
        ),
        ErrorKind::InvalidData if is_tls_error(io) => (
            HttpErrorKind::Tls,
            format!(
                "TLS error: {}: check the CA file, the client certificate, or use https/http as the server does",
                io.get_ref().map(|e| e.to_string()).unwrap_or_default()
            ),
        ),
        // A TLS server that requires a client certificate closes the connection this way.
        ErrorKind::BrokenPipe | ErrorKind::ConnectionReset => (
            HttpErrorKind::Cut,
            format!(
                "{io}: the server closed the connection; if it requires a client certificate, give one (--etcd-cert-file and --etcd-key-file for etcd)"
            ),
        ),
        ErrorKind::ConnectionAborted | ErrorKind::UnexpectedEof => {
            (HttpErrorKind::Cut, io.to_string())
        }
        ErrorKind::NotConnected
        | ErrorKind::HostUnreachable
        | ErrorKind::NetworkUnreachable
        | ErrorKind::AddrNotAvailable => (HttpErrorKind::Connect, io.to_string()),
        _ => (HttpErrorKind::Other, io.to_string()),
    }
}

fn is_tls_error(io: &std::io::Error) -> bool {
    io.get_ref()
        .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
}

/// Whether the server's certificate is signed by no trusted CA: none of that name
/// (`UnknownIssuer`), or one of that name but another key (`BadSignature`).
fn is_unknown_issuer(io: &std::io::Error) -> bool {
    use rustls::CertificateError::{BadSignature, UnknownIssuer};
    matches!(
        io.get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>()),
        Some(rustls::Error::InvalidCertificate(
            UnknownIssuer | BadSignature
        ))
    )
}

/// The rustls set-up of one agent: these roots (ignored when `insecure`), this client
/// certificate, and ring as the crypto provider (the one compiled in).
fn tls_config(roots: RootCerts, client_cert: Option<ClientCert>, insecure: bool) -> TlsConfig {
    TlsConfig::builder()
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .disable_verification(insecure)
        .root_certs(roots)
        .client_cert(client_cert)
        .build()
}

/// An agent with these TLS settings, proxy and timeouts.
fn new_agent(tls: TlsConfig, proxy: Option<ureq::Proxy>, timeout: Duration) -> ureq::Agent {
    // `timeout_per_call` bounds a whole exchange (connect, send, answer, body): a leader may
    // start a UFM write only if it ends before its claim could lapse.
    let config = ureq::Agent::config_builder()
        .tls_config(tls)
        .proxy(proxy)
        .http_status_as_error(false)
        .timeout_per_call(Some(timeout))
        .timeout_connect(Some(timeout))
        .timeout_recv_response(Some(timeout))
        .timeout_per_read(Some(timeout))
        .timeout_per_write(Some(timeout))
        .max_redirects(0)
        .user_agent(concat!("ufm-pkeyd/", env!("CARGO_PKG_VERSION")))
        .build();
    ureq::Agent::with_parts(
        config,
        ureq::unversioned::transport::DefaultConnector::default(),
        ResolveInline::default(),
    )
}

/// The client certificate and key, read and checked now.
fn read_client_cert(service: &str, options: &TlsOptions) -> Result<Option<ClientCert>, String> {
    let Some((cert_path, key_path)) = &options.client_cert else {
        return Ok(None);
    };
    check_client_pair(service, cert_path, key_path)?;
    let chain = read_certificates(service, "client certificate", cert_path)?;
    let key_pem = read_file(service, "client key", key_path)?;
    let key = PrivateKey::from_pem(&key_pem).map_err(|_| {
        format!(
            "{service} client key {}: no unencrypted PEM private key found",
            key_path.display()
        )
    })?;
    Ok(Some(ClientCert::new_with_certs(&chain, key)))
}

fn read_file(service: &str, what: &str, path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {service} {what} {}: {e}", path.display()))
}

fn read_certificates(
    service: &str,
    what: &str,
    path: &Path,
) -> Result<Vec<ureq::tls::Certificate<'static>>, String> {
    let certs = certificates_in(&read_file(service, what, path)?);
    if certs.is_empty() {
        return Err(format!(
            "{service} {what} {} holds no PEM certificate",
            path.display()
        ));
    }
    Ok(certs)
}

fn certificates_in(pem: &[u8]) -> Vec<ureq::tls::Certificate<'static>> {
    ureq::tls::parse_pem(pem)
        .filter_map(|item| match item {
            Ok(PemItem::Certificate(cert)) => Some(cert),
            _ => None,
        })
        .collect()
}

/// ureq panics at the first request when the client key does not match the certificate;
/// rustls reports it as an error, so ask rustls first.
fn check_client_pair(service: &str, cert_path: &Path, key_path: &Path) -> Result<(), String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let cert_pem = read_file(service, "client certificate", cert_path)?;
    let key_pem = read_file(service, "client key", key_path)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .filter_map(|c| c.ok())
        .collect();
    if chain.is_empty() {
        return Err(format!(
            "{service} client certificate {} holds no PEM certificate",
            cert_path.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| {
        format!(
            "{service} client key {}: no unencrypted PEM private key found",
            key_path.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up failed: {e}"))?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_client_auth_cert(chain, key)
        .map(|_| ())
        .map_err(|e| {
            format!(
                "{service} client key {} does not match certificate {} ({e}): give the key that belongs to the certificate",
                key_path.display(),
                cert_path.display()
            )
        })
}

/// Percent-encodes one URL path segment (RFC 3986 unreserved characters stay as they are).
pub(crate) fn encode_path_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Percent-encodes a path that may hold `/` separators, keeping them.
pub(crate) fn encode_path(path: &str) -> String {
    path.split('/')
        .map(encode_path_segment)
        .collect::<Vec<_>>()
        .join("/")
}

/// `application/x-www-form-urlencoded` encoding of one value.
pub(crate) fn encode_form_value(value: &str) -> String {
    encode_path_segment(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_header_is_standard_base64() {
        assert_eq!(
            basic_auth_header("admin", &Secret::new("123456")),
            "Basic YWRtaW46MTIzNDU2"
        );
    }

    #[test]
    fn html_is_recognised_by_type_or_content() {
        let page = |ct: &str, body: &str| Response {
            status: 200,
            content_type: ct.into(),
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
        };
        assert!(page("text/html; charset=utf-8", "{}").is_html());
        assert!(page("", "  \n<!DOCTYPE html><html>").is_html());
        assert!(!page("application/json", "{\"a\":1}").is_html());
    }

    #[test]
    fn paths_are_percent_encoded_but_keep_slashes() {
        assert_eq!(encode_path("/a b/0x1a"), "/a%20b/0x1a");
        assert_eq!(encode_form_value("{'a': 1}"), "%7B%27a%27%3A%201%7D");
    }

    #[test]
    fn credentials_in_urls_are_redacted_wherever_they_appear() {
        assert_eq!(
            redact_userinfo("http://u:p@proxy:3128/x"),
            "http://<redacted>@proxy:3128/x"
        );
        assert_eq!(
            redact_userinfo("via \"http://u:p@a:1\" and https://b:2/ and http://x@c"),
            "via \"http://<redacted>@a:1\" and https://b:2/ and http://<redacted>@c"
        );
        assert_eq!(redact_userinfo("http://proxy:3128"), "http://proxy:3128");
        assert_eq!(redact_userinfo("admin:pw@ufm1"), "<redacted>@ufm1");
    }

    fn stream_of(bytes: Vec<u8>) -> Stream {
        Stream {
            status: 200,
            content_type: String::new(),
            headers: Vec::new(),
            reader: std::io::BufReader::new(Box::new(std::io::Cursor::new(bytes))),
            pending: Vec::new(),
            service: "etcd",
            url: "http://etcd/v3/watch".into(),
        }
    }

    #[test]
    fn a_streamed_line_longer_than_the_limit_is_an_error_not_a_memory_blowup() {
        let mut stream = stream_of(b"{\"a\":1}\nnext\n".to_vec());
        assert_eq!(
            stream.next_line(),
            Ok(StreamRead::Line(b"{\"a\":1}".to_vec()))
        );
        assert_eq!(stream.next_line(), Ok(StreamRead::Line(b"next".to_vec())));
        assert_eq!(stream.next_line(), Ok(StreamRead::End));
        let huge = vec![b'x'; MAX_LINE_BYTES as usize + 10];
        let err = stream_of(huge).next_line().expect_err("too long");
        assert!(err.message.contains("longer than"), "{}", err.message);
    }

    #[test]
    fn snippet_is_one_short_line() {
        let response = Response {
            status: 500,
            content_type: String::new(),
            headers: Vec::new(),
            body: format!("line one\nline two {}", "x".repeat(500)).into_bytes(),
        };
        let snippet = response.snippet();
        assert!(!snippet.contains('\n'));
        assert!(snippet.chars().count() <= 201);
    }
}
