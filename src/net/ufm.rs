//! The NVIDIA UFM Enterprise REST client for partition keys (`/resources/pkeys`), following
//! `shared/reference/ufm-api.md`.
//!
//! UFM's answers vary between versions, so the client is liberal in what it reads: a list is
//! an array of keys or an object keyed by key; a missing PKey is a 404 or a 200 with `{}`; the
//! body of a mutation is ignored. It is strict in what it sends: keys as `0x{:x}`, GUIDs as 16
//! lowercase digits, no unknown fields. Any HTML answer on an API path is an authentication or
//! URL problem, never data.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use crate::model::{Guid, Join, Member, Membership, PKey, Partition};
use crate::net::http::TlsOptions;
use crate::net::http::{
    self, Endpoints, HttpClient, HttpError, HttpErrorKind, HttpOptions, Request, Response, Stream,
};
use crate::secret::Secret;

/// GUIDs per remove request: the GUIDs go in the URL, and UFM sits behind Apache, whose
/// request line limit (8190 bytes) fits about 470 of them.
pub(crate) const REMOVE_BATCH: usize = 200;

/// Why a UFM call failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum UfmError {
    /// No UFM host could be reached (refused, reset, no route).
    Unreachable(String),
    /// UFM did not answer within the timeout.
    TimedOut(String),
    /// Wrong credentials, token or role, or an HTML page where JSON was due.
    Auth(String),
    /// The PKey does not exist.
    NotFound(String),
    /// The PKey already exists (create).
    AlreadyExists(String),
    /// UFM answered with an error status.
    Api { status: u16, message: String },
    /// UFM answered 2xx with something we cannot read.
    BadAnswer(String),
}

impl fmt::Display for UfmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UfmError::Unreachable(m)
            | UfmError::TimedOut(m)
            | UfmError::Auth(m)
            | UfmError::NotFound(m)
            | UfmError::AlreadyExists(m)
            | UfmError::BadAnswer(m) => f.write_str(m),
            UfmError::Api { message, .. } => f.write_str(message),
        }
    }
}

impl From<HttpError> for UfmError {
    fn from(e: HttpError) -> UfmError {
        if e.kind == HttpErrorKind::Timeout {
            UfmError::TimedOut(e.message)
        } else if e.is_unreachable() {
            UfmError::Unreachable(e.message)
        } else {
            UfmError::BadAnswer(e.message)
        }
    }
}

impl UfmError {
    /// Whether sending the request again soon may succeed: the connection was refused or
    /// reset, or UFM (or its Apache) said it is overloaded or restarting (502, 503, 504).
    /// Every PKey operation is idempotent, so such a request may be sent again. A request that
    /// timed out is not: it already cost a whole timeout.
    pub(crate) fn is_retryable(&self) -> bool {
        match self {
            UfmError::Unreachable(_) => true,
            UfmError::Api { status, .. } => matches!(status, 502..=504),
            _ => false,
        }
    }

    /// Whether UFM gave no usable answer at all (retryable, or timed out): UFM, or the route
    /// to it, may be down. A 500 is an answer: UFM failed that request.
    pub(crate) fn is_no_answer(&self) -> bool {
        self.is_retryable() || matches!(self, UfmError::TimedOut(_))
    }
}

impl From<UfmError> for crate::error::Error {
    fn from(e: UfmError) -> crate::error::Error {
        match e {
            UfmError::NotFound(m) => crate::error::Error::NotFound(m),
            other => crate::error::Error::Failed(other.to_string()),
        }
    }
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
        })
    }

    /// The longest one request may take, from connect to the last byte of the answer.
    pub(crate) fn request_bound(&self) -> std::time::Duration {
        self.http.timeout()
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
            Err(UfmError::NotFound(_)) => return Ok(None),
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

    /// UFM's release version (`GET /app/ufm_version`); also proves the credentials work.
    pub(crate) fn version(&self) -> Result<String, UfmError> {
        let response = self.call("GET", "/app/ufm_version", None)?;
        let value: serde_json::Value = self.json(&response, "/app/ufm_version")?;
        value
            .get("ufm_release_version")
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .ok_or_else(|| {
                UfmError::BadAnswer(format!(
                    "UFM answered /app/ufm_version without ufm_release_version: {}",
                    response.snippet()
                ))
            })
    }

    /// Every partition with its members (`?guids_data=true`), sorted by key. The answer
    /// (about 8 MB for 128,000 GUIDs) is parsed while it arrives, never held whole. A list
    /// without the default partition 0x7fff, which UFM always has, is not a complete answer
    /// (an empty `{}` from a proxy or a restarting UFM) and is refused: taken as the truth, it
    /// would make every owned partition look gone.
    pub(crate) fn list_partitions(&self) -> Result<PartitionList, UfmError> {
        let path = "/resources/pkeys?guids_data=true";
        let mut stream = self.call_stream(path)?;
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

    /// One partition with its members; `None` when UFM does not have it (404, or 200 `{}`).
    pub(crate) fn get(&self, pkey: PKey) -> Result<Option<Partition>, UfmError> {
        let path = format!("/resources/pkeys/{pkey}?guids_data=true");
        let response = match self.call("GET", &path, None) {
            Err(UfmError::NotFound(_)) => return Ok(None),
            other => other?,
        };
        let value: serde_json::Value = self.json(&response, &path)?;
        if value.as_object().is_some_and(|m| m.is_empty()) {
            return Ok(None);
        }
        read_partition(pkey, value).map(Some).map_err(|e| {
            UfmError::BadAnswer(format!("UFM sent an unreadable partition {pkey}: {e}"))
        })
    }

    /// Creates an empty partition (`POST /resources/pkeys/add`).
    pub(crate) fn create(
        &self,
        pkey: PKey,
        index0: bool,
        ip_over_ib: bool,
    ) -> Result<(), UfmError> {
        let body = json!({"pkey": pkey.to_string(), "index0": index0, "ip_over_ib": ip_over_ib});
        match self.call("POST", "/resources/pkeys/add", Some(&body)) {
            Err(UfmError::Api { status, message })
                if status == 409 || (status == 400 && message.contains("exist")) =>
            {
                Err(UfmError::AlreadyExists(format!(
                    "PKey {pkey} already exists in UFM"
                )))
            }
            other => other.map(|_| ()),
        }
    }

    /// Adds GUIDs to a partition, creating it when missing (`POST /resources/pkeys`). One
    /// request for all GUIDs: the body has no length limit that matters here.
    pub(crate) fn add_guids(
        &self,
        pkey: PKey,
        guids: &[Guid],
        join: Join,
        ip_over_ib: bool,
    ) -> Result<(), UfmError> {
        if guids.is_empty() {
            return Ok(());
        }
        let body = json!({
            "pkey": pkey.to_string(),
            "guids": guids.iter().map(Guid::to_string).collect::<Vec<_>>(),
            "membership": join.membership.as_str(),
            "index0": join.index0,
            "ip_over_ib": ip_over_ib,
        });
        self.call("POST", "/resources/pkeys", Some(&body))
            .map(|_| ())
    }

    /// Removes GUIDs from a partition in one request; the GUIDs go in the URL, so a caller
    /// sends at most [`REMOVE_BATCH`] at a time. UFM deletes a partition whose last member is
    /// removed.
    pub(crate) fn remove_guids(&self, pkey: PKey, guids: &[Guid]) -> Result<(), UfmError> {
        let list: Vec<String> = guids.iter().map(Guid::to_string).collect();
        let path = format!("/resources/pkeys/{pkey}/guids/{}", list.join(","));
        self.call("DELETE", &path, None).map(|_| ())
    }

    /// Deletes a partition with all its members.
    pub(crate) fn delete(&self, pkey: PKey) -> Result<(), UfmError> {
        self.call("DELETE", &format!("/resources/pkeys/{pkey}"), None)
            .map(|_| ())
    }

    /// Sends one request, trying the next host when one cannot be reached, and maps every
    /// non-2xx answer to an error.
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
        let (url, mut stream) = self.bases.with_failover(
            |base| {
                let url = format!("{base}{path}");
                let stream =
                    self.http
                        .open_stream(&Request::get(&url, auth), self.http.timeout(), false);
                stream.map(|s| (url, s))
            },
            HttpError::is_unreachable,
        )?;
        if (200..300).contains(&stream.status) && !stream.looks_like_html() {
            return Ok(stream);
        }
        let response = stream.into_response()?;
        match self.check(&url, response) {
            Err(e) => Err(e),
            Ok(response) => Err(self.unexpected(path, &response)),
        }
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Response, UfmError> {
        let auth = self.auth();
        let (url, response) = self.bases.with_failover(
            |base| {
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
                self.http.send(&request).map(|r| (url.clone(), r))
            },
            HttpError::is_unreachable,
        )?;
        self.check(&url, response)
    }

    fn check(&self, url: &str, response: Response) -> Result<Response, UfmError> {
        let who = self.auth.who();
        match response.status {
            401 => Err(UfmError::Auth(format!(
                "UFM at {url} rejected {who} (HTTP 401): check the user and password (or token)"
            ))),
            403 => Err(UfmError::Auth(format!(
                "UFM at {url} denied {who} (HTTP 403): the user needs a role that may manage PKeys"
            ))),
            // A server error is UFM (or its Apache) in trouble, even when it comes as an HTML
            // page: retry later, do not blame the credentials.
            status if status >= 500 => Err(UfmError::Api {
                status,
                message: format!(
                    "UFM at {url} failed (HTTP {status}): {}; UFM may be starting or overloaded",
                    if response.is_html() {
                        "an error page".to_string()
                    } else {
                        error_message(&response)
                    }
                ),
            }),
            _ if response.is_html() => Err(UfmError::Auth(format!(
                "UFM at {url} answered with an HTML page (HTTP {}): wrong credentials or wrong URL?",
                response.status
            ))),
            404 => Err(UfmError::NotFound(format!(
                "UFM at {url}: not found: {}",
                error_message(&response)
            ))),
            status if (200..300).contains(&status) => Ok(response),
            status => Err(UfmError::Api {
                status,
                message: format!(
                    "UFM at {url} refused the request (HTTP {status}): {}",
                    error_message(&response)
                ),
            }),
        }
    }

    fn json<T: serde::de::DeserializeOwned>(
        &self,
        response: &Response,
        path: &str,
    ) -> Result<T, UfmError> {
        response.json().map_err(|_| self.unexpected(path, response))
    }

    fn unexpected(&self, path: &str, response: &Response) -> UfmError {
        UfmError::BadAnswer(format!(
            "UFM answered {path} with something unexpected: {}",
            response.snippet()
        ))
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
