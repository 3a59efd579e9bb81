//! The etcd client: one interface over two backends, the v3 JSON gateway ([`v3`]) and the v2
//! keys API ([`v2`]), with fail-over between endpoints.
//!
//! pcocc writes through v2, and the v2 and v3 keyspaces of one etcd are separate, so both are
//! needed. The client returns typed data and errors; it prints nothing.

mod v2;
mod v3;

use std::cell::RefCell;
use std::fmt;
use std::time::Duration;

use crate::net::http::{Endpoints, HttpClient, HttpError, HttpOptions, Response, TlsOptions};
use crate::secret::Secret;

/// Which etcd API (and so which keyspace) to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Api {
    V2,
    V3,
}

impl Api {
    /// The other API, for "nothing here, but the other keyspace has keys" hints.
    pub(crate) fn other(self) -> Api {
        match self {
            Api::V2 => Api::V3,
            Api::V3 => Api::V2,
        }
    }

    /// What this API calls the position of its store: "index" (v2) or "revision" (v3).
    pub(crate) fn revision_name(self) -> &'static str {
        match self {
            Api::V2 => "index",
            Api::V3 => "revision",
        }
    }

    /// The implementation behind this API: the one place that tells v2 from v3.
    fn keyspace(self) -> &'static dyn Keyspace {
        match self {
            Api::V2 => &v2::V2,
            Api::V3 => &v3::V3,
        }
    }
}

impl fmt::Display for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Api::V2 => "v2",
            Api::V3 => "v3",
        })
    }
}

/// The keyspace the configuration asks for (`etcd-api`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ApiChoice {
    /// The one that holds keys under the prefix, found out before a client is built.
    Auto,
    Fixed(Api),
}

impl fmt::Display for ApiChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiChoice::Auto => f.write_str("auto"),
            ApiChoice::Fixed(api) => api.fmt(f),
        }
    }
}

/// Resolved etcd settings.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// Full base URLs, tried in order.
    pub endpoints: Vec<String>,
    pub api: ApiChoice,
    pub tls: TlsOptions,
    pub user: Option<String>,
    pub password: Option<Secret>,
    pub timeout: Duration,
    pub proxy: Option<String>,
}

/// What one keyspace does over HTTP, for one base URL; [`EtcdClient`] adds fail-over. The v2
/// keys API ([`v2::V2`]) and the v3 JSON gateway ([`v3::V3`]) implement it.
trait Keyspace {
    fn list(&self, client: &EtcdClient, base: &str, prefix: &str) -> Result<Listing, EtcdError>;
    fn get(
        &self,
        client: &EtcdClient,
        base: &str,
        key: &str,
    ) -> Result<Option<KeyValue>, EtcdError>;
    fn put(
        &self,
        client: &EtcdClient,
        base: &str,
        key: &str,
        value: &[u8],
        ttl: Option<u64>,
    ) -> Result<(), EtcdError>;
    fn delete(&self, client: &EtcdClient, base: &str, key: &str) -> Result<(), EtcdError>;
    /// Where the answering member's store stands (revision or index, cluster), from one small
    /// read under `prefix` (where the user may read); `linearizable`: one that a member cut
    /// off from its peers cannot answer.
    fn position(
        &self,
        client: &EtcdClient,
        base: &str,
        prefix: &str,
        linearizable: bool,
    ) -> Result<Position, EtcdError>;
    /// Like `get`, answered by the member from its own copy (not linearizable, no quorum):
    /// for reads that decide nothing, so that they cost no Raft round.
    fn peek(
        &self,
        client: &EtcdClient,
        base: &str,
        key: &str,
    ) -> Result<Option<KeyValue>, EtcdError>;
    /// Writes `key` only if it is as `expect` says (and, with v3, the election key still holds
    /// `fence`'s identity); `Some(revision)` of the write, `None` when the condition failed.
    fn put_if(
        &self,
        client: &EtcdClient,
        base: &str,
        key: &str,
        value: &[u8],
        expect: &Expect,
        fence: Option<(&str, &str)>,
    ) -> Result<Option<i64>, EtcdError>;
    /// The deletions under `prefix` after `revision`, read from etcd's history until `enough`
    /// says so or the history is exhausted. v2 keeps no such history.
    fn deletions_since(
        &self,
        client: &EtcdClient,
        base: &str,
        prefix: &str,
        revision: i64,
        enough: &mut dyn FnMut(&[Deletion]) -> bool,
    ) -> Result<Option<History>, EtcdError>;
    fn watch(
        &self,
        client: &EtcdClient,
        base: &str,
        prefix: &str,
        revision: i64,
        keep_waiting: &mut dyn FnMut() -> bool,
    ) -> Result<Watched, EtcdError>;
    /// Takes the election key if it is absent, or, with `over`, if it holds exactly that
    /// value (the mark a leader that resigned left).
    fn campaign(
        &self,
        client: &EtcdClient,
        base: &str,
        key: &str,
        candidate: (&str, Option<&str>),
        ttl: u64,
    ) -> Result<Option<Claim>, EtcdError>;
    fn refresh(
        &self,
        client: &EtcdClient,
        base: &str,
        election: (&str, &str),
        claim: &Claim,
        ttl: u64,
    ) -> Result<bool, EtcdError>;
    /// Whether a linearizable read shows the election key held by this identity and claim.
    fn holds(
        &self,
        client: &EtcdClient,
        base: &str,
        election: (&str, &str),
        claim: &Claim,
    ) -> Result<bool, EtcdError>;
    /// Gives the key up: leaves `mark` in it (a clean hand-over: the successor need not wait
    /// for this instance's requests), or with no mark deletes it.
    fn resign(
        &self,
        client: &EtcdClient,
        base: &str,
        election: (&str, &str),
        claim: &Claim,
        mark: Option<&str>,
    ) -> Result<(), EtcdError>;
}

/// One key and its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// The v3 mod_revision or the v2 modifiedIndex of the key.
    pub mod_revision: i64,
}

/// Every key under a prefix, and what the read says about the store it came from.
#[derive(Clone, Debug, Default)]
pub(crate) struct Listing {
    pub kvs: Vec<KeyValue>,
    /// The store revision (v3) or index (v2) the read saw.
    pub revision: i64,
    pub store: Store,
    /// v2 only: the directory the prefix names, if it exists. A recursive delete of the
    /// directory removes it; pcocc's per-key deletes leave it (even empty).
    pub dir: Option<Dir>,
}

/// Which etcd cluster answered, and where its Raft log stood: a different cluster ID, or a
/// term or revision going backwards, means another or a wiped or restored etcd.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Store {
    /// `header.cluster_id` (v3) or the `X-Etcd-Cluster-Id` header (v2).
    pub cluster_id: Option<String>,
    /// `header.raft_term` (v3) or the `X-Raft-Term` header (v2); 0 when not sent.
    pub raft_term: u64,
}

/// The gap of a watch whose etcd stands before where the watch goes on from.
fn went_back(api: Api, from: i64, now: i64) -> Watched {
    Watched::Gap(format!(
        "etcd's {} went back from {from} to {now} (a wiped or restored etcd?)",
        api.revision_name()
    ))
}

/// Where an etcd member's store stands.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Position {
    /// The store revision (v3) or index (v2).
    pub revision: i64,
    pub store: Store,
}

/// A v2 directory node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Dir {
    /// Its createdIndex: it changes when the directory is deleted and created again.
    pub created_index: i64,
}

/// One key deletion seen in etcd's history (v3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Deletion {
    pub key: String,
    /// The revision of the deletion; one request deleting several keys gives them one revision.
    pub revision: i64,
}

/// What etcd's history says about deletions under a prefix after a revision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct History {
    pub deletions: Vec<Deletion>,
    /// The history before this revision is compacted: what happened there is unknown.
    pub compacted: Option<i64>,
}

/// What a conditional write expects of the key it writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Expect {
    /// The key does not exist.
    Absent,
    /// The key was last written at this revision (v3 mod_revision, v2 modifiedIndex).
    Revision(i64),
}

/// How long one read of a watch stream may block before the caller's flags are checked.
const WATCH_POLL: Duration = Duration::from_millis(250);

/// One change of a key under a watched prefix, as etcd delivered it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Change {
    pub key: String,
    /// The new value; `None` when the key was deleted (or expired).
    pub value: Option<Vec<u8>>,
    /// The revision (v3) or index (v2) of the change; one request changing several keys gives
    /// them one revision.
    pub revision: i64,
    /// v2: the change is to a directory (a recursive delete of the prefix's directory).
    pub dir: bool,
}

/// What ended a wait for changes under a prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Watched {
    /// Keys under the prefix changed; `revision` is the last one seen: the next wait starts
    /// after it.
    Changes { changes: Vec<Change>, revision: i64 },
    /// The watch cannot go on from where it was (history compacted or cleared, the stream
    /// ended): read the whole prefix again. The text says why.
    Gap(String),
    /// The caller stopped waiting (deadline or signal); the next wait starts after `revision`.
    Stopped { revision: i64 },
    /// etcd (or a proxy) closed the stream early: nothing was missed, the next wait starts
    /// after `revision`; the caller should not reopen it at once.
    Ended { revision: i64 },
}

/// What proves this instance holds the election key: the v3 lease it is attached to, or,
/// with v2, the TTL key itself (refreshed by comparing its value with our identity).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Claim {
    Lease(String),
    TtlKey,
}

/// Why an etcd call failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum EtcdError {
    /// No endpoint answered.
    Unreachable(String),
    /// etcd refused our credentials or our permissions.
    Auth(String),
    /// The key does not exist (delete, or a get that must find something).
    NotFound(String),
    /// etcd answered with an error, or with something we cannot read.
    Api(String),
}

impl fmt::Display for EtcdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EtcdError::Unreachable(m)
            | EtcdError::Auth(m)
            | EtcdError::NotFound(m)
            | EtcdError::Api(m) => f.write_str(m),
        }
    }
}

impl From<HttpError> for EtcdError {
    fn from(e: HttpError) -> EtcdError {
        if e.is_unreachable() {
            EtcdError::Unreachable(e.message)
        } else {
            EtcdError::Api(e.message)
        }
    }
}

impl From<EtcdError> for crate::error::Error {
    fn from(e: EtcdError) -> crate::error::Error {
        match e {
            EtcdError::NotFound(m) => crate::error::Error::NotFound(m),
            EtcdError::Auth(m) => crate::error::Error::Auth(m),
            other => crate::error::Error::Failed(other.to_string()),
        }
    }
}

/// A client for one etcd cluster through one API. A clone shares the connection pool and
/// keeps its own auth token.
#[derive(Clone)]
pub(crate) struct EtcdClient {
    http: HttpClient,
    endpoints: Endpoints,
    api: Api,
    user: Option<String>,
    password: Option<Secret>,
    /// The v3 auth token, acquired on first use and again when it expires.
    token: RefCell<Option<Secret>>,
}

impl EtcdClient {
    /// Builds a client speaking `api` (the keyspace is decided before: see `settings.api`);
    /// reads and checks the TLS files now.
    pub(crate) fn new(settings: &Settings, api: Api) -> Result<EtcdClient, String> {
        let http = HttpClient::new(&HttpOptions {
            service: "etcd",
            tls: settings.tls.clone(),
            timeout: settings.timeout,
            proxy: settings.proxy.clone(),
        })?;
        Ok(EtcdClient {
            http,
            endpoints: Endpoints::new("etcd", settings.endpoints.clone()),
            api,
            user: settings.user.clone(),
            password: settings.password.clone(),
            token: RefCell::new(None),
        })
    }

    /// The same cluster and credentials through the other API, for "nothing here, but the
    /// other keyspace has keys" checks.
    pub(crate) fn other_keyspace(&self) -> EtcdClient {
        EtcdClient {
            api: self.api.other(),
            ..self.clone()
        }
    }

    /// Requests sent so far (this client and its clones).
    pub(crate) fn request_counts(&self) -> crate::net::http::RequestCounts {
        self.http.counts()
    }

    /// The API this client speaks.
    pub(crate) fn api(&self) -> Api {
        self.api
    }

    /// Every key whose name starts with `prefix` ("" for all keys), sorted by key.
    pub(crate) fn list(&self, prefix: &str) -> Result<Listing, EtcdError> {
        let keyspace = self.api.keyspace();
        let mut listing = self.with_failover(|base| keyspace.list(self, base, prefix))?;
        listing.kvs.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(listing)
    }

    /// One key, or `None` when it does not exist; a linearizable read.
    pub(crate) fn get(&self, key: &str) -> Result<Option<KeyValue>, EtcdError> {
        let keyspace = self.api.keyspace();
        self.with_failover(|base| keyspace.get(self, base, key))
    }

    /// One key as the member answering has it, without a quorum round: for reads that decide
    /// nothing (who leads, for logs; whether the election key looks free).
    pub(crate) fn peek(&self, key: &str) -> Result<Option<KeyValue>, EtcdError> {
        let keyspace = self.api.keyspace();
        self.with_failover(|base| keyspace.peek(self, base, key))
    }

    /// Writes `key` if it is as `expect` says and, with v3, the election key `fence.0` still
    /// holds identity `fence.1`. `Some(revision)` of the write; `None` when the condition
    /// failed (another instance wrote the key, or took the leadership).
    pub(crate) fn put_if(
        &self,
        key: &str,
        value: &[u8],
        expect: &Expect,
        fence: Option<(&str, &str)>,
    ) -> Result<Option<i64>, EtcdError> {
        let keyspace = self.api.keyspace();
        self.with_failover(|base| keyspace.put_if(self, base, key, value, expect, fence))
    }

    /// Deletions under `prefix` after `revision`, from etcd's history (v3; `None` with v2),
    /// read until `enough` is satisfied or etcd has nothing more to replay.
    pub(crate) fn deletions_since(
        &self,
        prefix: &str,
        revision: i64,
        enough: &mut dyn FnMut(&[Deletion]) -> bool,
    ) -> Result<Option<History>, EtcdError> {
        let keyspace = self.api.keyspace();
        self.with_failover(|base| keyspace.deletions_since(self, base, prefix, revision, enough))
    }

    /// Writes a key, with a time to live in seconds if given.
    pub(crate) fn put(&self, key: &str, value: &[u8], ttl: Option<u64>) -> Result<(), EtcdError> {
        let keyspace = self.api.keyspace();
        self.with_failover(|base| keyspace.put(self, base, key, value, ttl))
    }

    /// Deletes a key; `NotFound` when it did not exist.
    pub(crate) fn delete(&self, key: &str) -> Result<(), EtcdError> {
        let keyspace = self.api.keyspace();
        self.with_failover(|base| keyspace.delete(self, base, key))
    }

    /// Blocks until keys under `prefix` change after `revision` (the revision or index of the
    /// last complete listing or of the last change seen), and returns those changes, with
    /// those already in etcd's history that follow them; or until `keep_waiting` returns false.
    /// An etcd whose store stands before `revision` (wiped, or restored from a snapshot) is a
    /// gap, said at once: such a watch would wait in silence for what never comes.
    /// `keep_waiting` is called at least every quarter second, so a signal or deadline is
    /// noticed quickly. Moving to another member is a gap: events may have been missed.
    pub(crate) fn watch(
        &self,
        prefix: &str,
        revision: i64,
        keep_waiting: &mut dyn FnMut() -> bool,
    ) -> Result<Watched, EtcdError> {
        let before = self.endpoints.current();
        let keyspace = self.api.keyspace();
        let watched =
            self.with_failover(|base| keyspace.watch(self, base, prefix, revision, keep_waiting))?;
        if self.endpoints.current() != before {
            return Ok(Watched::Gap(format!(
                "the watch moved to another etcd member ({})",
                self.endpoints.urls()[self.endpoints.current()]
            )));
        }
        Ok(watched)
    }

    /// Tries to take the election `key` for `identity` with a time to live of `ttl` seconds.
    /// `None` when another instance holds it. One read when the key is taken, so a standby
    /// asking every second costs one small request.
    pub(crate) fn campaign(
        &self,
        key: &str,
        (identity, over): (&str, Option<&str>),
        ttl: u64,
    ) -> Result<Option<Claim>, EtcdError> {
        let keyspace = self.api.keyspace();
        self.with_failover(|base| keyspace.campaign(self, base, key, (identity, over), ttl))
    }

    /// Extends the claim by `ttl` seconds; `false` when it was lost (expired or taken).
    pub(crate) fn refresh_claim(
        &self,
        key: &str,
        identity: &str,
        claim: &Claim,
        ttl: u64,
    ) -> Result<bool, EtcdError> {
        let keyspace = self.api.keyspace();
        self.with_failover(|base| keyspace.refresh(self, base, (key, identity), claim, ttl))
    }

    /// Whether etcd shows the election `key` held by `identity` with this `claim` (v3: the
    /// same lease), from a linearizable read: the proof a leader asks for before each UFM
    /// write.
    pub(crate) fn holds_claim(
        &self,
        key: &str,
        identity: &str,
        claim: &Claim,
    ) -> Result<bool, EtcdError> {
        let keyspace = self.api.keyspace();
        self.with_failover(|base| keyspace.holds(self, base, (key, identity), claim))
    }

    /// Gives the election key up at once, so a standby need not wait for the TTL; with
    /// `mark`, leaves it in the key to say no request of this instance is in flight.
    pub(crate) fn resign(
        &self,
        key: &str,
        identity: &str,
        claim: &Claim,
        mark: Option<&str>,
    ) -> Result<(), EtcdError> {
        let keyspace = self.api.keyspace();
        self.with_failover(|base| keyspace.resign(self, base, (key, identity), claim, mark))
    }

    /// Where the member answering stands (revision or index, cluster): one small read under
    /// `prefix`, with no Raft round.
    pub(crate) fn position(&self, prefix: &str) -> Result<Position, EtcdError> {
        let keyspace = self.api.keyspace();
        self.with_failover(|base| keyspace.position(self, base, prefix, false))
    }

    /// Whether the member in use is part of a quorum: one small linearizable read, which a
    /// member cut off from its peers cannot answer; the next member is asked then, and used
    /// from now on by every copy of this client (the watch included).
    pub(crate) fn check_quorum(&self, prefix: &str) -> Result<(), EtcdError> {
        let keyspace = self.api.keyspace();
        self.with_failover(|base| keyspace.position(self, base, prefix, true))
            .map(|_| ())
    }

    /// How many endpoints are configured.
    pub(crate) fn endpoint_count(&self) -> usize {
        self.endpoints.urls().len()
    }

    /// The etcd server version (`GET /version`), as a connectivity check.
    pub(crate) fn version(&self) -> Result<String, EtcdError> {
        self.with_failover(|base| {
            let url = format!("{base}/version");
            let response = self.http.send(&crate::net::http::Request::get(
                &url,
                crate::net::http::Auth::None,
            ))?;
            let value: serde_json::Value = json_body(&response, &url)?;
            Ok(value
                .get("etcdserver")
                .and_then(|v| v.as_str())
                .unwrap_or("unknown")
                .to_string())
        })
    }

    /// Runs `call` against the current endpoint, moving on to the next ones when an endpoint
    /// cannot be reached (connection, timeout, or a member without quorum).
    fn with_failover<T>(
        &self,
        call: impl FnMut(&str) -> Result<T, EtcdError>,
    ) -> Result<T, EtcdError> {
        let result = self
            .endpoints
            .with_failover(call, |e| matches!(e, EtcdError::Unreachable(_)));
        match result {
            Err(EtcdError::Unreachable(message)) if self.endpoints.urls().len() > 1 => {
                Err(EtcdError::Unreachable(format!(
                    "no etcd endpoint answered ({}): {message}",
                    self.endpoints.urls().join(", ")
                )))
            }
            other => other,
        }
    }
}

/// Parses a JSON answer, turning HTML or other text into a clear error.
fn json_body<T: serde::de::DeserializeOwned>(
    response: &Response,
    url: &str,
) -> Result<T, EtcdError> {
    response.json().map_err(|_| {
        EtcdError::Api(format!(
            "etcd at {url} answered HTTP {} with something that is not JSON: {}",
            response.status,
            response.snippet()
        ))
    })
}
