//! The NVIDIA UFM Enterprise REST client for partition keys (`/resources/pkeys`), following
//! `shared/reference/ufm-api.md`.
//!
//! UFM's answers vary between versions, so the client is liberal in what it reads: a list is
//! an array of keys or an object keyed by key; a missing PKey is a 404 or a 200 with `{}`; the
//! body of a mutation is ignored. It is strict in what it sends: keys as `0x{:x}`, GUIDs as 16
//! lowercase digits, no unknown fields. An answer is classified by what it is, never taken
//! for data when it is not JSON: 401 and 403, and UFM's login page, are refused credentials; a 404
//! or 405 may be a missing route; any other web page or text where JSON was due (Apache's pages
//! while UFM restarts or its HA pair fails over, often with status 200) is a UFM that does not
//! serve the API right now, handled like one that does not answer
//! ([`UfmError::is_no_answer`]).
//!
//! This module owns the requests, the reads (version, list, one partition) and how each answer
//! becomes a [`UfmError`]; [`routes`] decides which write routes a host serves, and [`writes`]
//! sends the writes through them. A 404 or 405 that says the server has no such route is
//! told apart from UFM's own 404 about a PKey or a GUID, and neither is taken as proof that a
//! partition is gone: only the single-PKey read says that.
//!
//! Every write request (each POST and DELETE) waits for a [`WriteGate`] to open, the one the
//! caller's pass uses: an operation such as a delete may take several write requests, and
//! with leader election each must go out only while this instance is sure it still leads.
//! Reads are never gated.

mod routes;
mod writes;

pub(crate) use writes::Deletion;

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::Deserialize;

use crate::model::{Guid, Join, Member, Membership, PKey, Partition};
use crate::net::http::TlsOptions;
use crate::net::http::{
    self, Endpoints, HttpClient, HttpError, HttpErrorKind, HttpOptions, Request, Response, Stream,
};
use crate::secret::Secret;
use routes::{RouteSet, is_route_answer};

/// GUIDs per remove request: the GUIDs go in the URL, and UFM sits behind Apache, whose
/// request line limit (8190 bytes) fits about 470 of them.
pub(crate) const REMOVE_BATCH: usize = 200;

/// Why a UFM call failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum UfmError {
    /// No UFM host could be reached (refused, no route).
    Unreachable(String),
    /// The connection was cut after it was made (reset, closed before the answer): the
    /// request may have reached UFM, and may still be applied.
    Cut(String),
    /// UFM did not answer within the timeout (it may still apply the request).
    TimedOut(String),
    /// Wrong credentials, token or role (401, 403, or UFM's login page).
    Auth(String),
    /// A web page or text where JSON was due, with a status that is not an error: UFM (behind
    /// Apache) restarting or failing over, not serving its API right now.
    NotServing(String),
    /// The PKey does not exist, as the single-PKey read says (a 404 with UFM's own message,
    /// or 200 with `{}`); after a write answered 404 or 405, only once that read confirmed it.
    NotFound(String),
    /// The PKey already exists (create).
    AlreadyExists(String),
    /// UFM answered with an error status; `reason` is UFM's own text (its JSON `error`,
    /// `detail` or `message`, or the body), `message` the whole line with the URL.
    Api {
        status: u16,
        message: String,
        reason: String,
    },
    /// The server has no such route, or not with this method: a 405, or a 404 without a
    /// message of UFM's own (a wrong base URL or auth mode, or a route this UFM lacks).
    NoRoute { status: u16, message: String },
    /// This UFM serves no route left that could do the operation.
    Unsupported(String),
    /// UFM accepted the requests, but reading back shows another result than asked for.
    Incomplete(String),
    /// UFM answered 2xx with something we cannot read.
    BadAnswer(String),
    /// The write gate closed before a write request (the reason): that request and the rest
    /// of the operation were not sent, what went before stays done.
    Stopped(String),
}

impl fmt::Display for UfmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UfmError::Unreachable(m)
            | UfmError::Cut(m)
            | UfmError::TimedOut(m)
            | UfmError::Auth(m)
            | UfmError::NotServing(m)
            | UfmError::NotFound(m)
            | UfmError::AlreadyExists(m)
            | UfmError::Unsupported(m)
            | UfmError::Incomplete(m)
            | UfmError::BadAnswer(m)
            | UfmError::Stopped(m) => f.write_str(m),
            UfmError::Api { message, .. } | UfmError::NoRoute { message, .. } => {
                f.write_str(message)
            }
        }
    }
}

impl From<HttpError> for UfmError {
    fn from(e: HttpError) -> UfmError {
        if e.kind == HttpErrorKind::Timeout {
            UfmError::TimedOut(e.message)
        } else if e.kind == HttpErrorKind::Cut {
            UfmError::Cut(e.message)
        } else if e.is_unreachable() {
            UfmError::Unreachable(e.message)
        } else {
            UfmError::BadAnswer(e.message)
        }
    }
}

impl UfmError {
    /// Whether sending the request again soon may succeed: the connection was refused or
    /// reset, or UFM (or its Apache) said it is overloaded or restarting (502, 503, 504, or a
    /// web page instead of the API). Every PKey operation is idempotent, so such a request may
    /// be sent again. A request that timed out is not: it already cost a whole timeout.
    pub(crate) fn is_retryable(&self) -> bool {
        match self {
            UfmError::Unreachable(_) | UfmError::Cut(_) | UfmError::NotServing(_) => true,
            UfmError::Api { status, .. } => matches!(status, 502..=504),
            _ => false,
        }
    }

    /// Whether UFM gave no usable answer at all (retryable, or timed out): UFM, or the route
    /// to it, may be down, or it serves web pages instead of its API. A 500 is an answer: UFM
    /// failed that request.
    pub(crate) fn is_no_answer(&self) -> bool {
        self.is_retryable() || matches!(self, UfmError::TimedOut(_))
    }

    /// Whether a write that ended this way may still be applied by UFM (it timed out, or the
    /// connection was cut once made): its outcome is unknown.
    pub(crate) fn outcome_unknown(&self) -> bool {
        matches!(self, UfmError::TimedOut(_) | UfmError::Cut(_))
    }
}

impl From<UfmError> for crate::error::Error {
    fn from(e: UfmError) -> crate::error::Error {
        match e {
            UfmError::NotFound(m) => crate::error::Error::NotFound(m),
            UfmError::Auth(m) => crate::error::Error::Auth(m),
            other => crate::error::Error::Failed(other.to_string()),
        }
    }
}

/// Asked before each write request the client sends (see the module comment): `Err(reason)`
/// keeps it from going out, and the operation ends with [`UfmError::Stopped`].
pub(crate) type WriteGate<'a> = dyn FnMut() -> Result<(), String> + 'a;

/// The write gate of a one-shot command, which has no leadership to keep: always open.
pub(crate) fn open_gate() -> Result<(), String> {
    Ok(())
}

/// Resolved UFM settings.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// Base URLs (`https://host:port`), tried in order.
    pub urls: Vec<String>,
    pub auth: Auth,
    pub tls: TlsOptions,
    pub timeout: Duration,
    pub proxy: Option<String>,
}

/// How to authenticate to UFM.
#[derive(Clone, Debug)]
pub(crate) enum Auth {
    /// HTTP Basic on `/ufmRest`.
    Basic { user: String, password: Secret },
    /// An access token on `/ufmRestV3`.
    Token(Secret),
}

impl Auth {
    /// Who authenticates, for messages: the user name, never the secret.
    pub(crate) fn who(&self) -> String {
        match self {
            Auth::Basic { user, .. } => format!("user {user:?}"),
            Auth::Token(_) => "the access token".to_string(),
        }
    }
}

/// A client for one UFM (or an HA list of hosts tried in order). A clone shares the
/// connection pool.
#[derive(Clone)]
pub(crate) struct UfmClient {
    http: HttpClient,
    /// `https://host:port/ufmRest` or `…/ufmRestV3`, one per configured host.
    bases: Endpoints,
    /// `https://host:port`, one per configured host: which UFM this is, for the ownership
    /// record.
    hosts: Vec<String>,
    /// For a token, the whole `Authorization` header value.
    auth: Auth,
    /// `/ufmRest` (basic authentication) or `/ufmRestV3` (token).
    root: &'static str,
    /// What the host that answered last serves; shared by clones.
    learned: Arc<Mutex<Learned>>,
}

/// What the client knows of the UFM host that answered last.
#[derive(Debug, Default)]
struct Learned {
    /// Its base URL (`https://host:port/ufmRest`); another host answering starts over.
    base: Option<String>,
    /// Whether its version was read (and applied to `routes`).
    probed: bool,
    routes: RouteSet,
    /// Its `site_name`, when UFM exposes it (`expose_site_name=true` in gv.cfg).
    site: Option<String>,
}

/// The longest partition list read: 128,000 GUIDs make about 8 MB.
const MAX_LIST_BYTES: u64 = 256 * 1024 * 1024;

/// UFM's partitions, and the ones whose entry in the list could not be read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct PartitionList {
    /// Sorted by PKey.
    pub partitions: Vec<Partition>,
    /// A partition whose members could not be read (a GUID that is not 16 hex digits, an
    /// unknown membership), with the reason: it is reported and left alone.
    pub unreadable: Vec<(PKey, String)>,
}

impl<'de> Deserialize<'de> for PartitionList {
    /// The keyed-object list, read entry by entry: keys that are PKeys become partitions,
    /// other keys (UFM may add `site_name`) are skipped. Each partition is read on its own, so
    /// one odd entry costs only that partition. An array of keys means this UFM ignored
    /// `guids_data`.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = PartitionList;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of partitions keyed by PKey")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<PartitionList, A::Error> {
                let mut list = PartitionList::default();
                while let Some(key) = map.next_key::<String>()? {
                    match key.parse::<PKey>() {
                        Ok(pkey) => {
                            let value: serde_json::Value = map.next_value()?;
                            match read_partition(pkey, value) {
                                Ok(partition) => list.partitions.push(partition),
                                Err(reason) => list.unreadable.push((pkey, reason)),
                            }
                        }
                        Err(_) => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(list)
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<PartitionList, A::Error> {
                if seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                    return Err(serde::de::Error::custom(
                        "a list of PKeys without members: this UFM ignored guids_data=true",
                    ));
                }
                Ok(PartitionList::default())
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// A member as UFM lists it, its values kept as UFM wrote them until checked.
#[derive(Deserialize)]
struct RawMember {
    guid: String,
    #[serde(default)]
    membership: Option<String>,
    #[serde(default)]
    index0: Option<bool>,
}

#[derive(Deserialize)]
struct RawPartition {
    #[serde(default)]
    partition: Option<String>,
    #[serde(default)]
    ip_over_ib: Option<bool>,
    #[serde(default)]
    guids: Vec<RawMember>,
}

impl UfmClient {
    /// Builds a client; reads and checks the TLS files now.
    pub(crate) fn new(settings: &Settings) -> Result<UfmClient, String> {
        let http = HttpClient::new(&HttpOptions {
            service: "UFM",
            tls: settings.tls.clone(),
            timeout: settings.timeout,
            proxy: settings.proxy.clone(),
        })?;
        let root = match settings.auth {
            Auth::Basic { .. } => "/ufmRest",
            Auth::Token(_) => "/ufmRestV3",
        };
        // UFM takes an access token as `Authorization: Basic <token>`: the raw token, not
        // base64 of user:password.
        let auth = match &settings.auth {
            Auth::Token(token) => Auth::Token(Secret::new(format!("Basic {}", token.expose()))),
            basic => basic.clone(),
        };
        Ok(UfmClient {
            http,
            hosts: settings.urls.clone(),
            bases: Endpoints::new(
                "UFM",
                settings.urls.iter().map(|u| format!("{u}{root}")).collect(),
            ),
            auth,
            root,
            learned: Arc::default(),
        })
    }

    /// The longest one request may take, from connect to the last byte of the answer.
    pub(crate) fn request_bound(&self) -> std::time::Duration {
        self.http.timeout()
    }

    /// UFM's own name for its fabric (`site_name`), when it exposes it, as its version answer
    /// said (the daemon reads the version at start; nothing is asked for it).
    pub(crate) fn site(&self) -> Option<String> {
        self.learned().site.clone()
    }

    /// The configured hosts (`https://host:port`).
    pub(crate) fn hosts(&self) -> &[String] {
        &self.hosts
    }

    /// Requests sent so far.
    pub(crate) fn request_counts(&self) -> crate::net::http::RequestCounts {
        self.http.counts()
    }

    /// When UFM's partitions last changed (`GET /resources/pkeys/last_updated`), as an opaque
    /// value to compare: UFMs answer in several formats, some in the subnet manager's local
    /// time with no zone and one-second resolution, and `null` before the first change. `None`
    /// when this UFM does not serve it (then drift is found by reading the whole list).
    pub(crate) fn last_updated(&self) -> Result<Option<String>, UfmError> {
        let path = "/resources/pkeys/last_updated";
        let response = match self.call("GET", path, None) {
            Ok(response) => response,
            Err(UfmError::NotFound(_) | UfmError::NoRoute { .. }) => return Ok(None),
            Err(UfmError::Api {
                status: 400 | 405, ..
            }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let value: serde_json::Value = self.json(&response, path)?;
        match value.get("last_updated") {
            Some(stamp) => Ok(Some(stamp.to_string())),
            None => Err(self.unexpected(path, &response)),
        }
    }

    /// UFM's release version (`GET /app/ufm_version`); also proves the credentials work, and
    /// says which PKey routes the host documents (logged once per host).
    pub(crate) fn version(&self) -> Result<String, UfmError> {
        let path = "/app/ufm_version";
        let response = self
            .call("GET", path, None)
            .map_err(|e| self.wrong_base(e))?;
        let value: serde_json::Value = self.json(&response, path)?;
        if let Some(site) = value.get("site_name").and_then(|v| v.as_str()) {
            self.learned().site = Some(site.to_string());
        }
        let version = value
            .get("ufm_release_version")
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .ok_or_else(|| {
                UfmError::BadAnswer(format!(
                    "UFM answered {path} without ufm_release_version: {}",
                    response.snippet()
                ))
            })?;
        self.learn_version(&version);
        Ok(version)
    }

    /// Every partition with its members (`?guids_data=true`), sorted by key. The answer
    /// (about 8 MB for 128,000 GUIDs) is parsed while it arrives, never held whole. A list
    /// without the default partition 0x7fff, which UFM always has, is not a complete answer
    /// (an empty `{}` from a proxy or a restarting UFM) and is refused: taken as the truth, it
    /// would make every owned partition look gone.
    pub(crate) fn list_partitions(&self) -> Result<PartitionList, UfmError> {
        let path = "/resources/pkeys?guids_data=true";
        let mut stream = self
            .call_stream(path)
            .map_err(|e| self.fixed_read_failed(e))?;
        let reader = std::io::Read::take(stream.reader(), MAX_LIST_BYTES);
        let mut deserializer = serde_json::Deserializer::from_reader(reader);
        let mut list = PartitionList::deserialize(&mut deserializer).map_err(|e| {
            let detail = if e.is_eof() {
                format!("it ended early, or is larger than {MAX_LIST_BYTES} bytes")
            } else {
                e.to_string()
            };
            UfmError::BadAnswer(format!(
                "UFM answered {path} with an unreadable list: {detail}"
            ))
        })?;
        let has_default = list.partitions.iter().any(|p| p.pkey == PKey::DEFAULT)
            || list.unreadable.iter().any(|(p, _)| *p == PKey::DEFAULT);
        if !has_default {
            return Err(UfmError::BadAnswer(format!(
                "UFM answered {path} without its default partition 0x7fff ({} partitions): not a complete list; nothing is changed until UFM answers in full",
                list.partitions.len()
            )));
        }
        list.partitions.sort_by_key(|p| p.pkey);
        Ok(list)
    }

    /// One partition with its members; `None` when UFM says it does not have it (a 404 with
    /// UFM's own message, or 200 `{}`). A 404 without one (no such route) is an error.
    pub(crate) fn get(&self, pkey: PKey) -> Result<Option<Partition>, UfmError> {
        let path = format!("/resources/pkeys/{pkey}?guids_data=true");
        let response = match self.call("GET", &path, None) {
            Err(UfmError::Api { status: 404, .. }) => return Ok(None),
            other => other.map_err(|e| self.fixed_read_failed(e))?,
        };
        let value: serde_json::Value = self.json(&response, &path)?;
        if value.as_object().is_some_and(|m| m.is_empty()) {
            return Ok(None);
        }
        read_partition(pkey, value).map(Some).map_err(|e| {
            UfmError::BadAnswer(format!("UFM sent an unreadable partition {pkey}: {e}"))
        })
    }

    /// What the client knows of the host's write routes now.
    fn routes(&self) -> RouteSet {
        self.learned().routes.clone()
    }

    fn learned(&self) -> MutexGuard<'_, Learned> {
        self.learned.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The base URL that answered last (the first configured one before any answer).
    fn base(&self) -> String {
        self.learned()
            .base
            .clone()
            .or_else(|| self.bases.urls().first().cloned())
            .unwrap_or_default()
    }

    /// A request was answered by `base`: when another host answered before, what was learned
    /// of that one does not hold here.
    fn answered_by(&self, base: &str) {
        let mut learned = self.learned();
        match learned.base.as_deref() {
            Some(known) if known == base => {}
            Some(known) => {
                log::info!(
                    "UFM: {base} answers instead of {known}: learning its PKey routes again"
                );
                *learned = Learned {
                    base: Some(base.to_string()),
                    ..Learned::default()
                };
            }
            None => learned.base = Some(base.to_string()),
        }
    }

    /// Applies what `version` documents to the host's routes, and logs the set once per host
    /// (at info level when the version rules a route out or cannot be read).
    fn learn_version(&self, version: &str) {
        let mut learned = self.learned();
        if learned.probed {
            return;
        }
        learned.probed = true;
        learned.routes.set_version(version);
        let base = learned.base.clone().unwrap_or_default();
        let (basis, level) = match learned.routes.version() {
            // Every route documented: nothing to say that the version does not.
            Some(_) if !learned.routes.lacks_any() => {
                ("as documented for this version", log::Level::Debug)
            }
            Some(_) => ("as documented for this version", log::Level::Info),
            None => (
                "version unknown, learned from the answers",
                log::Level::Info,
            ),
        };
        log::log!(
            level,
            "UFM {version} at {base}: PKey routes {basis}: {}; /actions/* where UFM has no such route",
            learned.routes.summary()
        );
    }

    /// A read that every supported UFM serves failed. A "no such route" there means a wrong
    /// base URL or auth mode, or a UFM too old, and the message says which.
    fn fixed_read_failed(&self, error: UfmError) -> UfmError {
        let UfmError::NoRoute { status, message } = error else {
            return error;
        };
        match self.version() {
            Ok(version) => UfmError::NoRoute {
                status,
                message: format!(
                    "{message}: UFM {version} answers /app/ufm_version but not this read; ufm-pkeyd needs the /resources/pkeys API (UFM 6.10 or later)"
                ),
            },
            Err(e) => e,
        }
    }

    /// `error` came from the version endpoint, which every UFM serves under its REST root: a
    /// "no such route" there means that this root is wrong. Asks the other root of the same
    /// host (without credentials) so that the message can say which one it answers.
    fn wrong_base(&self, error: UfmError) -> UfmError {
        let UfmError::NoRoute { status, message } = error else {
            return error;
        };
        let (other, fix) = match self.root {
            "/ufmRestV3" => (
                "/ufmRest",
                "use basic authentication (--ufm-user, --ufm-password-file) instead of the token",
            ),
            _ => (
                "/ufmRestV3",
                "authenticate with an access token (--ufm-token-file)",
            ),
        };
        let hint = if self.root_answers(other) {
            format!("this UFM answers {other} only: {fix}")
        } else {
            format!(
                "neither {} nor {other} answers there: check --ufm-host",
                self.root
            )
        };
        UfmError::NoRoute {
            status,
            message: format!("{message}: wrong URL, UFM version or auth mode? {hint}"),
        }
    }

    /// Whether the host that answered last serves the REST root `root` at all: its version
    /// endpoint answers something else than "no such route" (a 401 without credentials is
    /// an answer).
    fn root_answers(&self, root: &str) -> bool {
        let base = self.base();
        let Some(host) = base.strip_suffix(self.root) else {
            return false;
        };
        let url = format!("{host}{root}/app/ufm_version");
        match self.http.send(&Request::get(&url, http::Auth::None)) {
            Ok(response) => {
                response.status < 500 && !is_route_answer(response.status, &response.body)
            }
            Err(_) => false,
        }
    }

    fn auth(&self) -> http::Auth<'_> {
        match &self.auth {
            Auth::Basic { user, password } => http::Auth::Basic(user, password),
            Auth::Token(token) => http::Auth::Header(token),
        }
    }

    /// A GET whose successful JSON answer is returned as a stream to parse; any other
    /// answer goes through the same checks as [`UfmClient::call`].
    fn call_stream(&self, path: &str) -> Result<Stream, UfmError> {
        let auth = self.auth();
        let (url, base, mut stream) = self.bases.with_failover(
            |base| {
                let url = format!("{base}{path}");
                let stream =
                    self.http
                        .open_stream(&Request::get(&url, auth), self.http.timeout(), false);
                stream.map(|s| (url, base.to_string(), s))
            },
            HttpError::is_unreachable,
        )?;
        self.answered_by(&base);
        if (200..300).contains(&stream.status)
            && !stream.looks_like_html()
            && stream.looks_like_json()
        {
            return Ok(stream);
        }
        let response = stream.into_response()?;
        match self.check(&url, response) {
            Err(e) => Err(e),
            // A 2xx that is not JSON at all (a page check let through is not one).
            Ok(response) => Err(not_serving(&url, &response)),
        }
    }

    /// Sends one read request (see [`UfmClient::request`]).
    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Response, UfmError> {
        self.request(method, path, body, &mut open_gate)
    }

    /// Sends one write request once `gate` opens (see [`UfmClient::request`]). An interrupt
    /// of a one-shot command lets it finish, then ends the command (`crate::signals`).
    fn write(
        &self,
        gate: &mut WriteGate<'_>,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Response, UfmError> {
        let target = format!("{method} {}", shown_url(&format!("{}{path}", self.base())));
        let in_flight = crate::signals::write_in_flight(&target, self.http.timeout());
        let mut gate = || {
            if crate::signals::interrupted() {
                Err("interrupted".to_string())
            } else {
                gate()
            }
        };
        let result = self.request(method, path, body, &mut gate);
        in_flight.done();
        result
    }

    /// Sends one request, trying the next host when one cannot be reached, and maps every
    /// non-2xx answer to an error. `gate` is asked before the request goes to each host: a
    /// request that timed out on one host goes to the next a whole timeout later, by when a
    /// leadership claim may have lapsed.
    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
        gate: &mut WriteGate<'_>,
    ) -> Result<Response, UfmError> {
        let auth = self.auth();
        let (url, base, response) = self.bases.with_failover(
            |base| {
                gate().map_err(UfmError::Stopped)?;
                let url = format!("{base}{path}");
                let request = match body {
                    Some(body) => Request::json(method, &url, auth, body),
                    None => Request {
                        method,
                        url: &url,
                        auth,
                        body: None,
                    },
                };
                let response = self.http.send(&request)?;
                Ok((url.clone(), base.to_string(), response))
            },
            // The errors of `HttpError::is_unreachable`: this host did not answer, try the next.
            |e| {
                matches!(
                    e,
                    UfmError::Unreachable(_) | UfmError::Cut(_) | UfmError::TimedOut(_)
                )
            },
        )?;
        self.answered_by(&base);
        self.check(&url, response)
    }

    /// What an answer is: 2xx JSON (or a body for a write) is returned, anything else becomes
    /// the error that says what it is (see the module comment).
    fn check(&self, url: &str, response: Response) -> Result<Response, UfmError> {
        let who = self.auth.who();
        let url = shown_url(url);
        match response.status {
            401 => Err(UfmError::Auth(format!(
                "UFM at {url} rejected {who} (HTTP 401): check the user and password (or token)"
            ))),
            403 => Err(UfmError::Auth(format!(
                "UFM at {url} denied {who} (HTTP 403): the user needs a role that may manage PKeys"
            ))),
            status @ 300..=399 if redirects_to_login(&response) => Err(UfmError::Auth(format!(
                "UFM at {url} sent {who} to its page to log in (HTTP {status}) instead of answering: check the user and password (or token)"
            ))),
            status if status < 500 && is_login_page(&response) => Err(UfmError::Auth(format!(
                "UFM at {url} answered with its HTML page to log in (HTTP {status}) instead of the API: it did not accept {who}; check the user and password (or token)"
            ))),
            // A server error is UFM (or its Apache) in trouble, even when it comes as an HTML
            // page: retry later, do not blame the credentials.
            status if status >= 500 => {
                let reason = if response.is_html() {
                    "an error page".to_string()
                } else {
                    error_message(&response)
                };
                Err(UfmError::Api {
                    status,
                    message: format!(
                        "UFM at {url} failed (HTTP {status}): {reason}; UFM may be starting or overloaded"
                    ),
                    reason,
                })
            }
            status @ (404 | 405) if is_route_answer(status, &response.body) => {
                Err(UfmError::NoRoute {
                    status,
                    message: format!(
                        "UFM at {url} answered HTTP {status} with {}: no such route",
                        route_answer_text(&response)
                    ),
                })
            }
            414 => Err(UfmError::Api {
                status: 414,
                message: format!(
                    "UFM at {url} refused the request line as too long (HTTP 414): send fewer GUIDs per request"
                ),
                reason: "URL too long".to_string(),
            }),
            status @ 400..=499 if response.is_html() => Err(UfmError::Api {
                status,
                message: format!(
                    "UFM at {url} refused the request (HTTP {status}) with a web page: {}",
                    response.snippet()
                ),
                reason: "a web page".to_string(),
            }),
            _ if response.is_html() => Err(not_serving(&url, &response)),
            status if (200..300).contains(&status) => Ok(response),
            status => {
                let reason = error_message(&response);
                Err(UfmError::Api {
                    status,
                    message: format!("UFM at {url} refused the request (HTTP {status}): {reason}"),
                    reason,
                })
            }
        }
    }

    /// A read's answer as JSON. A body that is not JSON at all is no API answer (see
    /// [`UfmError::NotServing`]); JSON of another shape is [`UfmError::BadAnswer`].
    fn json<T: serde::de::DeserializeOwned>(
        &self,
        response: &Response,
        path: &str,
    ) -> Result<T, UfmError> {
        if !response.starts_like_json() {
            return Err(not_serving(&format!("{}{path}", self.base()), response));
        }
        response.json().map_err(|_| self.unexpected(path, response))
    }

    fn unexpected(&self, path: &str, response: &Response) -> UfmError {
        UfmError::BadAnswer(format!(
            "UFM answered {path} with something unexpected: {}",
            response.snippet()
        ))
    }
}

/// A web page or text where JSON was due, with a status that is not an error.
fn not_serving(url: &str, response: &Response) -> UfmError {
    let what = if response.is_html() {
        "a web page"
    } else if response.body.iter().all(u8::is_ascii_whitespace) {
        "an empty body"
    } else {
        "text that is not JSON"
    };
    UfmError::NotServing(format!(
        "UFM at {url} answered with {what} (HTTP {}, {:?}) instead of its API: UFM is restarting or failing over, or a proxy answers for it",
        response.status,
        page_title(response).unwrap_or_else(|| response.snippet())
    ))
}

/// The `<title>` of a web page, for messages.
fn page_title(response: &Response) -> Option<String> {
    let text = String::from_utf8_lossy(&response.body[..response.body.len().min(64 * 1024)]);
    let lower = text.to_ascii_lowercase();
    let start = lower.find("<title>")? + "<title>".len();
    let end = start + lower[start..].find("</title>")?;
    let title: Vec<&str> = text[start..end].split_whitespace().collect();
    Some(title.join(" ")).filter(|t| !t.is_empty())
}

/// Whether a redirect leads to a page to log in (Apache's form login sends there whoever
/// it did not authenticate).
fn redirects_to_login(response: &Response) -> bool {
    response
        .header("location")
        .is_some_and(|to| to.to_ascii_lowercase().contains("login"))
}

/// Whether an answer is a page to log in: a form with a password field, or the field names
/// and action of Apache's form login (`httpd_username`, `dologin`), which UFM's web server
/// uses. Told apart this way from Apache's other pages, which say nothing of credentials.
fn is_login_page(response: &Response) -> bool {
    if !response.is_html() {
        return false;
    }
    let head = &response.body[..response.body.len().min(64 * 1024)];
    let text = String::from_utf8_lossy(head).to_ascii_lowercase();
    ["httpd_username", "httpd_password", "dologin"]
        .iter()
        .any(|mark| text.contains(mark))
        || (text.contains("<form")
            && ["type=\"password\"", "type='password'", "type=password"]
                .iter()
                .any(|field| text.contains(field)))
}

/// A URL for messages: a remove's list of GUIDs is cut to its first one and a count.
fn shown_url(url: &str) -> String {
    let Some((head, list)) = url.split_once("/guids/") else {
        return url.to_string();
    };
    let guids: Vec<&str> = list.split(',').collect();
    match guids.as_slice() {
        [first, _, _, ..] => format!("{head}/guids/{first},… ({} GUIDs)", guids.len()),
        _ => url.to_string(),
    }
}

/// What a "no such route" answer carried, for messages.
fn route_answer_text(response: &Response) -> String {
    if response.body.iter().all(u8::is_ascii_whitespace) {
        "an empty body".to_string()
    } else if response.is_html() {
        "a web page".to_string()
    } else {
        format!("{:?}", response.snippet())
    }
}

/// The message of an error answer: `{"error": …}`, `{"detail": …}`, or the text itself.
fn error_message(response: &Response) -> String {
    if let Ok(value) = response.json::<serde_json::Value>() {
        for field in ["error", "detail", "message"] {
            if let Some(text) = value.get(field).and_then(|v| v.as_str()) {
                return text.to_string();
            }
        }
    }
    let snippet = response.snippet();
    if snippet.is_empty() {
        "no details".to_string()
    } else {
        snippet
    }
}

/// One partition of an answer, checked: every GUID 16 hex digits, every membership known.
fn read_partition(pkey: PKey, value: serde_json::Value) -> Result<Partition, String> {
    let raw: RawPartition = serde_json::from_value(value).map_err(|e| e.to_string())?;
    let mut members = Vec::with_capacity(raw.guids.len());
    for m in raw.guids {
        let guid: Guid = m
            .guid
            .parse()
            .map_err(|e: crate::model::ModelError| e.to_string())?;
        let membership = match m.membership.as_deref() {
            None => Membership::Full,
            Some(text) => text
                .parse()
                .map_err(|e: crate::model::ModelError| e.to_string())?,
        };
        members.push(Member {
            guid,
            join: Join {
                membership,
                index0: m.index0.unwrap_or(false),
            },
        });
    }
    members.sort_by_key(|m| m.guid);
    Ok(Partition {
        pkey,
        name: raw.partition.unwrap_or_default(),
        ip_over_ib: raw.ip_over_ib.unwrap_or(true),
        members,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> UfmClient {
        UfmClient::new(&Settings {
            urls: vec!["http://ufm1:80".to_string()],
            ..client_settings()
        })
        .expect("a client without TLS files")
    }

    fn answer(status: u16, content_type: &str, body: &str) -> Response {
        Response {
            status,
            content_type: content_type.to_string(),
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
        }
    }

    const URL: &str = "http://ufm1:80/ufmRest/resources/pkeys/0x10";

    #[test]
    fn a_404_for_the_route_says_so_with_the_url() {
        for (status, content_type, body, carried) in [
            (404, "", "", "an empty body"),
            (405, "", "", "an empty body"),
            (
                404,
                "text/html",
                "<html><h1>Not Found</h1></html>",
                "a web page",
            ),
            (
                404,
                "text/plain",
                "404 page not found",
                "\"404 page not found\"",
            ),
        ] {
            let error = client()
                .check(URL, answer(status, content_type, body))
                .expect_err("an error");
            assert_eq!(
                error,
                UfmError::NoRoute {
                    status,
                    message: format!(
                        "UFM at {URL} answered HTTP {status} with {carried}: no such route"
                    ),
                },
            );
        }
    }

    const APACHE_PAGE: &str = "<!DOCTYPE HTML PUBLIC \"-//IETF//DTD HTML 2.0//EN\">\n<html><head><title>Service Unavailable</title></head><body><h1>Service Unavailable</h1></body></html>";
    const LOGIN_PAGE: &str = "<html><head><title>UFM - Login</title></head><body><form method=\"post\" action=\"/dologin\"><input type=\"text\" name=\"httpd_username\"><input type=\"password\" name=\"httpd_password\"></form></body></html>";

    #[test]
    fn a_web_page_that_is_not_a_login_page_is_ufm_not_serving_not_a_refusal() {
        for status in [200, 204, 302] {
            let error = client()
                .check(URL, answer(status, "text/html", APACHE_PAGE))
                .expect_err("an error");
            assert!(
                matches!(&error, UfmError::NotServing(m) if m.contains(&format!("HTTP {status}")) && m.contains("Service Unavailable")),
                "{error:?}"
            );
            assert!(error.is_no_answer(), "handled as an outage: {error:?}");
            assert_eq!(
                crate::error::Error::from(error).exit_code(),
                crate::error::EXIT_FAILED
            );
        }
        // A read answered 200 with text that is not JSON at all.
        let text = answer(200, "text/plain", "UFM is starting, please wait\n");
        let error = client()
            .json::<serde_json::Value>(&text, "/app/ufm_version")
            .expect_err("not JSON");
        assert!(matches!(error, UfmError::NotServing(_)), "{error:?}");
        // JSON of another shape is not an outage.
        let odd = answer(200, "application/json", "{\"unexpected\": 1");
        let error = client()
            .json::<serde_json::Value>(&odd, "/app/ufm_version")
            .expect_err("bad JSON");
        assert!(matches!(error, UfmError::BadAnswer(_)), "{error:?}");
    }

    #[test]
    fn the_login_page_and_a_redirect_to_it_are_refused_credentials() {
        for status in [200, 403, 401] {
            let error = client()
                .check(URL, answer(status, "text/html", LOGIN_PAGE))
                .expect_err("an error");
            assert!(matches!(&error, UfmError::Auth(_)), "{error:?}");
            assert!(!error.is_no_answer());
        }
        let error = client()
            .check(URL, answer(200, "text/html", LOGIN_PAGE))
            .expect_err("an error");
        assert!(error.to_string().contains("HTML page to log in"), "{error}");
        let mut redirect = answer(302, "text/html", "<html><title>Found</title></html>");
        redirect.headers = vec![("location".into(), "https://ufm1/ufm_web/login.html".into())];
        let error = client().check(URL, redirect).expect_err("an error");
        assert!(matches!(error, UfmError::Auth(_)), "{error:?}");
    }

    #[test]
    fn server_errors_and_client_errors_keep_their_status_when_they_come_as_pages() {
        let error = client()
            .check(URL, answer(503, "text/html", APACHE_PAGE))
            .expect_err("an error");
        assert!(matches!(error, UfmError::Api { status: 503, .. }) && error.is_retryable());
        let error = client()
            .check(URL, answer(500, "text/html", APACHE_PAGE))
            .expect_err("an error");
        assert!(matches!(error, UfmError::Api { status: 500, .. }) && !error.is_no_answer());
        let error = client()
            .check(URL, answer(400, "text/html", "<html>Bad Request</html>"))
            .expect_err("an error");
        assert!(matches!(error, UfmError::Api { status: 400, .. }) && !error.is_no_answer());
    }

    #[test]
    fn ufms_own_404_keeps_the_url_and_its_text_and_is_not_a_not_found() {
        let error = client()
            .check(
                URL,
                answer(
                    404,
                    "application/json",
                    r#"{"error": "PKey 0x10 does not exist"}"#,
                ),
            )
            .expect_err("an error");
        assert_eq!(
            error,
            UfmError::Api {
                status: 404,
                message: format!(
                    "UFM at {URL} refused the request (HTTP 404): PKey 0x10 does not exist"
                ),
                reason: "PKey 0x10 does not exist".to_string(),
            }
        );
        assert_eq!(
            crate::error::Error::from(error).exit_code(),
            crate::error::EXIT_FAILED,
            "exit 3 is for a PKey the single-PKey read says is missing"
        );
    }

    /// A client for `hosts` base URLs on 127.0.0.1 where nothing listens: every request is
    /// refused at once, and counted as not answered.
    fn client_of_dead_hosts(hosts: usize) -> UfmClient {
        let urls = (0..hosts)
            .map(|_| {
                let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
                let port = listener.local_addr().expect("its address").port();
                format!("http://127.0.0.1:{port}")
            })
            .collect();
        UfmClient::new(&Settings {
            urls,
            ..client_settings()
        })
        .expect("a client without TLS files")
    }

    fn client_settings() -> Settings {
        Settings {
            urls: Vec::new(),
            auth: Auth::Basic {
                user: "admin".to_string(),
                password: Secret::new("123456"),
            },
            tls: TlsOptions::default(),
            timeout: Duration::from_secs(5),
            proxy: None,
        }
    }

    fn sent(client: &UfmClient) -> u64 {
        let counts = client.request_counts();
        counts.success + counts.error_status + counts.no_answer
    }

    #[test]
    fn a_closed_gate_keeps_every_write_from_going_out() {
        let client = client_of_dead_hosts(1);
        let pkey: PKey = "0x10".parse().expect("a pkey");
        let guid: Guid = "0002c903000e0b72".parse().expect("a guid");
        let join = Join {
            membership: Membership::Full,
            index0: false,
        };
        let mut closed = || Err("stopping".to_string());
        assert_eq!(
            client.add_guids(pkey, &[guid], join, true, &mut closed),
            Err(UfmError::Stopped("stopping".to_string()))
        );
        assert_eq!(
            client.remove_guids(pkey, &[guid], &mut closed),
            Err(UfmError::Stopped("stopping".to_string()))
        );
        assert_eq!(
            client.delete(pkey, &mut closed),
            Err(UfmError::Stopped("stopping".to_string()))
        );
        assert_eq!(
            client.create(pkey, false, true, &mut closed),
            Err(UfmError::Stopped("stopping".to_string()))
        );
        assert_eq!(sent(&client), 0, "no request sent");
    }

    #[test]
    fn a_write_goes_to_the_next_host_only_through_the_gate() {
        // The first host refuses: the write would go to the second, but the gate has closed
        // meanwhile (a request that timed out takes a whole timeout before moving on).
        let client = client_of_dead_hosts(2);
        let pkey: PKey = "0x10".parse().expect("a pkey");
        let mut asked = 0;
        let mut once = || {
            asked += 1;
            if asked > 1 {
                Err("the leadership claim may lapse".to_string())
            } else {
                Ok(())
            }
        };
        assert_eq!(
            client.delete(pkey, &mut once),
            Err(UfmError::Stopped(
                "the leadership claim may lapse".to_string()
            ))
        );
        assert_eq!(asked, 2, "asked before each host");
        assert_eq!(sent(&client), 1, "sent to the first host only");

        // With an open gate, the same write tries both hosts.
        let client = client_of_dead_hosts(2);
        assert!(matches!(
            client.delete(pkey, &mut open_gate),
            Err(UfmError::Unreachable(_))
        ));
        assert_eq!(sent(&client), 2);
    }

    #[test]
    fn a_remove_url_is_shortened_in_messages() {
        let guids: Vec<String> = (0..300).map(|i| format!("{i:016x}")).collect();
        let url = format!("{URL}/guids/{}", guids.join(","));
        assert_eq!(
            shown_url(&url),
            format!("{URL}/guids/0000000000000000,… (300 GUIDs)")
        );
        let two = format!("{URL}/guids/{},{}", guids[0], guids[1]);
        assert_eq!(shown_url(&two), two);
    }
}
