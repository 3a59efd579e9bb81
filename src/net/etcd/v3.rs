//! The etcd v3 JSON gateway (`/v3/kv/range|put|deleterange`, `/v3/lease/grant`,
//! `/v3/auth/authenticate`).
//!
//! Keys and values travel as standard base64; every int64 is a JSON string; fields with default
//! values are omitted. The auth token goes in a raw `Authorization` header and is re-acquired
//! once when etcd says it expired (HTTP 401, gRPC code 16).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;
use serde_json::json;

use std::time::{Duration, Instant};

use super::{
    Api, Change, Claim, Deletion, EtcdClient, EtcdError, Expect, History, KeyValue, Keyspace,
    Listing, Position, Store, WATCH_POLL, Watched, json_body, went_back,
};
use crate::net::http::{Auth, Request, Response, StreamRead};
use crate::secret::Secret;

/// gRPC status code for an invalid or expired auth token.
const CODE_UNAUTHENTICATED: i64 = 16;
/// gRPC status code for a permission denied.
const CODE_PERMISSION_DENIED: i64 = 7;

/// A replay of history has ended when etcd sends nothing for this long: it replays what it
/// has at once, in batches.
const HISTORY_IDLE: Duration = Duration::from_secs(1);
/// The longest a replay of history may take.
const HISTORY_LIMIT: Duration = Duration::from_secs(10);

#[derive(Deserialize, Default)]
struct Header {
    #[serde(default)]
    revision: Option<String>,
    #[serde(default)]
    cluster_id: Option<String>,
    #[serde(default)]
    raft_term: Option<String>,
}

impl Header {
    fn store(&self) -> Store {
        Store {
            cluster_id: self.cluster_id.clone(),
            raft_term: self
                .raft_term
                .as_deref()
                .and_then(|t| t.parse().ok())
                .unwrap_or(0),
        }
    }
}

#[derive(Deserialize)]
struct RawKv {
    key: String,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    mod_revision: Option<String>,
    /// The lease the key is attached to (decimal), absent for none.
    #[serde(default)]
    lease: Option<String>,
}

#[derive(Deserialize)]
struct RangeResponse {
    #[serde(default)]
    header: Header,
    #[serde(default)]
    kvs: Vec<RawKv>,
}

#[derive(Deserialize)]
struct GatewayError {
    #[serde(default)]
    code: Option<i64>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct WatchLine {
    result: Option<WatchResult>,
}

#[derive(Deserialize)]
struct WatchResult {
    #[serde(default)]
    header: Header,
    #[serde(default)]
    created: bool,
    #[serde(default)]
    canceled: bool,
    #[serde(default)]
    compact_revision: Option<String>,
    #[serde(default)]
    cancel_reason: Option<String>,
    #[serde(default)]
    events: Vec<serde_json::Value>,
}

/// The v3 JSON gateway.
pub(super) struct V3;

impl Keyspace for V3 {
    fn list(&self, client: &EtcdClient, base: &str, prefix: &str) -> Result<Listing, EtcdError> {
        let (key, range_end) = if prefix.is_empty() {
            (vec![0u8], vec![0u8])
        } else {
            (
                prefix.as_bytes().to_vec(),
                prefix_range_end(prefix.as_bytes()),
            )
        };
        let body = json!({"key": B64.encode(key), "range_end": B64.encode(range_end)});
        let response = call(client, base, "/v3/kv/range", &body)?;
        let range: RangeResponse = json_body(&response, base)?;
        let kvs = range
            .kvs
            .into_iter()
            .map(decode_kv)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Listing {
            kvs,
            revision: parse_int(range.header.revision.as_deref()),
            store: range.header.store(),
            dir: None,
        })
    }

    fn get(
        &self,
        client: &EtcdClient,
        base: &str,
        key: &str,
    ) -> Result<Option<KeyValue>, EtcdError> {
        let body = json!({"key": B64.encode(key)});
        let response = call(client, base, "/v3/kv/range", &body)?;
        let range: RangeResponse = json_body(&response, base)?;
        range.kvs.into_iter().next().map(decode_kv).transpose()
    }

    fn peek(
        &self,
        client: &EtcdClient,
        base: &str,
        key: &str,
    ) -> Result<Option<KeyValue>, EtcdError> {
        let body = json!({"key": B64.encode(key), "serializable": true});
        let response = call(client, base, "/v3/kv/range", &body)?;
        let range: RangeResponse = json_body(&response, base)?;
        range.kvs.into_iter().next().map(decode_kv).transpose()
    }

    /// A count of one key nobody writes, from the member's own copy: the answer's header
    /// says where the store stands.
    fn position(
        &self,
        client: &EtcdClient,
        base: &str,
        prefix: &str,
        linearizable: bool,
    ) -> Result<Position, EtcdError> {
        let body = json!({
            "key": B64.encode(format!("{prefix}\0ufm-pkeyd-position")),
            "serializable": !linearizable,
            "count_only": true,
        });
        let response = call(client, base, "/v3/kv/range", &body)?;
        let range: RangeResponse = json_body(&response, base)?;
        Ok(Position {
            revision: parse_int(range.header.revision.as_deref()),
            store: range.header.store(),
        })
    }

    /// One transaction: the key's revision as expected and, with a fence, the election key
    /// still holding our identity; then the put.
    fn put_if(
        &self,
        client: &EtcdClient,
        base: &str,
        key: &str,
        value: &[u8],
        expect: &Expect,
        fence: Option<(&str, &str)>,
    ) -> Result<Option<i64>, EtcdError> {
        let k = B64.encode(key);
        let mut compare = vec![match expect {
            Expect::Absent => {
                json!({"key": k, "target": "CREATE", "result": "EQUAL", "create_revision": "0"})
            }
            Expect::Revision(revision) => json!({
                "key": k, "target": "MOD", "result": "EQUAL", "mod_revision": revision.to_string()
            }),
        }];
        if let Some((election_key, identity)) = fence {
            compare.push(json!({
                "key": B64.encode(election_key), "target": "VALUE", "result": "EQUAL",
                "value": B64.encode(identity)
            }));
        }
        let body = json!({
            "compare": compare,
            "success": [{"request_put": {"key": k, "value": B64.encode(value)}}],
            "failure": [],
        });
        let response = call(client, base, "/v3/kv/txn", &body)?;
        #[derive(Deserialize)]
        struct Txn {
            #[serde(default)]
            header: Header,
            #[serde(default)]
            succeeded: bool,
        }
        let txn: Txn = json_body(&response, base)?;
        Ok(txn
            .succeeded
            .then(|| parse_int(txn.header.revision.as_deref())))
    }

    /// Replays the deletions under the prefix after `revision` through a watch that starts
    /// there (`NOPUT`): one message per revision (or several revisions per message while
    /// etcd catches a watcher up), each deletion with the revision that removed it.
    fn deletions_since(
        &self,
        client: &EtcdClient,
        base: &str,
        prefix: &str,
        revision: i64,
        enough: &mut dyn FnMut(&[Deletion]) -> bool,
    ) -> Result<Option<History>, EtcdError> {
        let (url, mut stream) = open_watch(client, base, prefix, revision, &["NOPUT"])?;
        let mut history = History::default();
        let began = Instant::now();
        let mut last_message = Instant::now();
        while !enough(&history.deletions) && began.elapsed() < HISTORY_LIMIT {
            match stream.next_line()? {
                StreamRead::Idle if last_message.elapsed() >= HISTORY_IDLE => break,
                StreamRead::Idle => {}
                StreamRead::End => break,
                StreamRead::Line(line) if line.iter().all(u8::is_ascii_whitespace) => {}
                StreamRead::Line(line) => {
                    last_message = Instant::now();
                    let result = watch_result(&url, &line)?;
                    if let Some(compacted) = result.compact_revision.as_deref() {
                        history.compacted = Some(parse_int(Some(compacted)));
                        break;
                    }
                    if result.canceled {
                        return Err(cancel_error(client, result));
                    }
                    history
                        .deletions
                        .extend(result.events.iter().filter_map(deletion));
                }
            }
        }
        Ok(Some(history))
    }

    fn put(
        &self,
        client: &EtcdClient,
        base: &str,
        key: &str,
        value: &[u8],
        ttl: Option<u64>,
    ) -> Result<(), EtcdError> {
        let mut body = json!({"key": B64.encode(key), "value": B64.encode(value)});
        if let Some(ttl) = ttl {
            body["lease"] = json!(grant_lease(client, base, ttl)?);
        }
        call(client, base, "/v3/kv/put", &body).map(|_| ())
    }

    fn delete(&self, client: &EtcdClient, base: &str, key: &str) -> Result<(), EtcdError> {
        let body = json!({"key": B64.encode(key)});
        let response = call(client, base, "/v3/kv/deleterange", &body)?;
        #[derive(Deserialize)]
        struct Deleted {
            #[serde(default)]
            deleted: Option<String>,
        }
        let deleted: Deleted = json_body(&response, base)?;
        if parse_int(deleted.deleted.as_deref()) == 0 {
            return Err(EtcdError::NotFound(format!("etcd key {key} not found")));
        }
        Ok(())
    }

    /// Watches the prefix from `revision + 1` over the gateway's streamed `/v3/watch`: one JSON
    /// object per line, `{"result": {...}}`. The stream stays open even after etcd cancels the
    /// watch, so cancellation is read from the messages.
    /// Watches the prefix from `revision + 1` over the gateway's streamed `/v3/watch`: one
    /// JSON object per line, `{"result": {...}}`, one revision's events per message (several
    /// when etcd replays history to catch the watcher up). The stream stays open even after
    /// etcd cancels the watch, so cancellation is read from the messages.
    fn watch(
        &self,
        client: &EtcdClient,
        base: &str,
        prefix: &str,
        revision: i64,
        keep_waiting: &mut dyn FnMut() -> bool,
    ) -> Result<Watched, EtcdError> {
        let (url, mut stream) = open_watch(client, base, prefix, revision, &[])?;
        loop {
            if !keep_waiting() {
                return Ok(Watched::Stopped { revision });
            }
            let read = match stream.next_line() {
                // Revisions stay addressable after a stream breaks or closes: nothing is
                // lost, the next watch starts where this one was.
                Err(e) if e.is_unreachable() => return Ok(Watched::Ended { revision }),
                read => read?,
            };
            match read {
                StreamRead::Idle => {}
                StreamRead::End => return Ok(Watched::Ended { revision }),
                StreamRead::Line(line) if line.iter().all(u8::is_ascii_whitespace) => {}
                StreamRead::Line(line) => {
                    if let Some(watched) = watch_message(client, &url, &line, revision)? {
                        return Ok(watched);
                    }
                }
            }
        }
    }

    /// Election: if the key is free, grant a lease and create the key with it in one
    /// transaction (create_revision == 0), so two candidates cannot both win.
    fn campaign(
        &self,
        client: &EtcdClient,
        base: &str,
        key: &str,
        (identity, over): (&str, Option<&str>),
        ttl: u64,
    ) -> Result<Option<Claim>, EtcdError> {
        let lease = grant_lease(client, base, ttl)?;
        let k = B64.encode(key);
        let free = match over {
            Some(mark) => {
                json!({"key": k, "target": "VALUE", "result": "EQUAL", "value": B64.encode(mark)})
            }
            None => {
                json!({"key": k, "target": "CREATE", "result": "EQUAL", "create_revision": "0"})
            }
        };
        let body = json!({
            "compare": [free],
            "success": [{"request_put": {"key": k, "value": B64.encode(identity), "lease": lease}}],
            "failure": [],
        });
        let response = call(client, base, "/v3/kv/txn", &body)?;
        #[derive(Deserialize)]
        struct Txn {
            #[serde(default)]
            succeeded: bool,
        }
        if json_body::<Txn>(&response, base)?.succeeded {
            Ok(Some(Claim::Lease(lease)))
        } else {
            // Someone else won between our read and our transaction.
            let _ = revoke(client, base, &lease);
            Ok(None)
        }
    }

    /// The claim is the lease attached to the election key: kept alive.
    fn refresh(
        &self,
        client: &EtcdClient,
        base: &str,
        _election: (&str, &str),
        claim: &Claim,
        _ttl: u64,
    ) -> Result<bool, EtcdError> {
        keepalive(client, base, lease_id(claim)?)
    }

    /// A linearizable read of the election key: our identity, attached to our lease.
    fn holds(
        &self,
        client: &EtcdClient,
        base: &str,
        (key, identity): (&str, &str),
        claim: &Claim,
    ) -> Result<bool, EtcdError> {
        let lease = lease_id(claim)?;
        let body = json!({"key": B64.encode(key)});
        let response = call(client, base, "/v3/kv/range", &body)?;
        let range: RangeResponse = json_body(&response, base)?;
        let Some(raw) = range.kvs.into_iter().next() else {
            return Ok(false);
        };
        let same_lease = raw.lease.as_deref() == Some(lease);
        Ok(same_lease && decode_kv(raw)?.value == identity.as_bytes())
    }

    /// With a mark: the key, if it still holds our identity, takes the mark and no lease;
    /// then (or without a mark) revoking the lease deletes what is still attached to it.
    fn resign(
        &self,
        client: &EtcdClient,
        base: &str,
        (key, identity): (&str, &str),
        claim: &Claim,
        mark: Option<&str>,
    ) -> Result<(), EtcdError> {
        if let Some(mark) = mark {
            let k = B64.encode(key);
            let body = json!({
                "compare": [{"key": k, "target": "VALUE", "result": "EQUAL", "value": B64.encode(identity)}],
                "success": [{"request_put": {"key": k, "value": B64.encode(mark)}}],
                "failure": [],
            });
            call(client, base, "/v3/kv/txn", &body)?;
        }
        revoke(client, base, lease_id(claim)?)
    }
}

/// Reads one watch message: `Some` when the wait is over.
/// Opens a watch of the keys under `prefix` after `revision` (with etcd's event `filters`,
/// e.g. `NOPUT`); returns its URL, for messages, and the stream.
fn open_watch(
    client: &EtcdClient,
    base: &str,
    prefix: &str,
    revision: i64,
    filters: &[&str],
) -> Result<(String, crate::net::http::Stream), EtcdError> {
    let start = revision
        .checked_add(1)
        .ok_or_else(|| EtcdError::Api(format!("etcd revision {revision} cannot be followed")))?;
    let mut create = json!({
        "key": B64.encode(prefix),
        "range_end": B64.encode(prefix_range_end(prefix.as_bytes())),
        "start_revision": start.to_string(),
    });
    if !filters.is_empty() {
        create["filters"] = json!(filters);
    }
    let body = json!({ "create_request": create });
    let url = format!("{base}/v3/watch");
    let token = token(client, base)?;
    let auth = token.as_ref().map_or(Auth::None, Auth::Header);
    let stream =
        client
            .http
            .open_stream(&Request::json("POST", &url, auth, &body), WATCH_POLL, true)?;
    if stream.status != 200 {
        return Err(EtcdError::Api(format!(
            "etcd at {url} refused the watch (HTTP {})",
            stream.status
        )));
    }
    Ok((url, stream))
}

fn watch_message(
    client: &EtcdClient,
    url: &str,
    line: &[u8],
    revision: i64,
) -> Result<Option<Watched>, EtcdError> {
    let result = watch_result(url, line)?;
    let now = parse_int(result.header.revision.as_deref());
    if result.created && (1..revision).contains(&now) {
        return Ok(Some(went_back(Api::V3, revision, now)));
    }
    if !result.events.is_empty() {
        let changes: Vec<Change> = result.events.iter().filter_map(change).collect();
        let last = changes.iter().map(|c| c.revision).max().unwrap_or(revision);
        return Ok(Some(Watched::Changes {
            changes,
            revision: last.max(revision),
        }));
    }
    if !result.canceled {
        return Ok(None);
    }
    if let Some(compacted) = result.compact_revision.as_deref() {
        return Ok(Some(Watched::Gap(format!(
            "etcd compacted the history the watch needed (up to revision {compacted})"
        ))));
    }
    Err(cancel_error(client, result))
}

/// The `result` of one watch message; a line without one ends the watch.
fn watch_result(url: &str, line: &[u8]) -> Result<WatchResult, EtcdError> {
    let text = String::from_utf8_lossy(line);
    let parsed: WatchLine = serde_json::from_slice(line).map_err(|_| {
        EtcdError::Api(format!(
            "etcd at {url} sent an unreadable watch message: {text}"
        ))
    })?;
    parsed
        .result
        .ok_or_else(|| EtcdError::Api(format!("etcd at {url} ended the watch: {text}")))
}

/// Why etcd canceled a watch (other than compaction).
fn cancel_error(client: &EtcdClient, result: WatchResult) -> EtcdError {
    let reason = result.cancel_reason.unwrap_or_default();
    if reason.contains("auth") || reason.contains("user name") || reason.contains("permission") {
        // An expired token: authenticate again on the next request.
        client.token.replace(None);
        return EtcdError::Auth(format!("etcd canceled the watch: {reason}"));
    }
    EtcdError::Api(format!("etcd canceled the watch: {reason}"))
}

/// One event of a watch message as a [`Change`].
fn change(event: &serde_json::Value) -> Option<Change> {
    let kv = event.get("kv")?;
    let key = B64.decode(kv.get("key")?.as_str()?).ok()?;
    let deleted = event.get("type").and_then(|t| t.as_str()) == Some("DELETE");
    let value = if deleted {
        None
    } else {
        let text = kv.get("value").and_then(|v| v.as_str()).unwrap_or("");
        Some(B64.decode(text).ok()?)
    };
    Some(Change {
        key: String::from_utf8_lossy(&key).into_owned(),
        value,
        revision: parse_int(kv.get("mod_revision").and_then(|r| r.as_str())),
        dir: false,
    })
}

/// A DELETE event of a watch message as a [`Deletion`]; `None` for anything else.
fn deletion(event: &serde_json::Value) -> Option<Deletion> {
    if event.get("type").and_then(|t| t.as_str()) != Some("DELETE") {
        return None;
    }
    let kv = event.get("kv")?;
    let key = B64.decode(kv.get("key")?.as_str()?).ok()?;
    Some(Deletion {
        key: String::from_utf8_lossy(&key).into_owned(),
        revision: parse_int(kv.get("mod_revision").and_then(|r| r.as_str())),
    })
}

/// Keeps a lease alive; `false` when etcd no longer knows it (its TTL is absent).
fn keepalive(client: &EtcdClient, base: &str, lease: &str) -> Result<bool, EtcdError> {
    // keepalive is a streaming RPC: read the one answer and hang up.
    let url = format!("{base}/v3/lease/keepalive");
    let token = token(client, base)?;
    let auth = token.as_ref().map_or(Auth::None, Auth::Header);
    let mut stream = client.http.open_stream(
        &Request::json("POST", &url, auth, &json!({"ID": lease})),
        client.http.timeout(),
        false,
    )?;
    if stream.status != 200 {
        return Err(EtcdError::Api(format!(
            "etcd at {url} refused the lease keepalive (HTTP {})",
            stream.status
        )));
    }
    let StreamRead::Line(line) = stream.next_line()? else {
        return Err(EtcdError::Unreachable(format!(
            "etcd at {url} sent no keepalive answer"
        )));
    };
    #[derive(Deserialize)]
    struct KeepAlive {
        result: Option<LeaseTtl>,
    }
    #[derive(Deserialize)]
    struct LeaseTtl {
        #[serde(rename = "TTL", default)]
        ttl: Option<String>,
    }
    let answer: KeepAlive = serde_json::from_slice(&line).map_err(|_| {
        EtcdError::Api(format!(
            "etcd at {url} sent an unreadable keepalive answer: {}",
            String::from_utf8_lossy(&line)
        ))
    })?;
    Ok(answer
        .result
        .and_then(|r| r.ttl)
        .is_some_and(|t| parse_int(Some(&t)) > 0))
}

/// Revokes a lease, deleting the keys attached to it.
fn revoke(client: &EtcdClient, base: &str, lease: &str) -> Result<(), EtcdError> {
    call(client, base, "/v3/lease/revoke", &json!({"ID": lease})).map(|_| ())
}

/// Grants a lease of `ttl` seconds and returns its ID (an int64 as a string).
fn grant_lease(client: &EtcdClient, base: &str, ttl: u64) -> Result<String, EtcdError> {
    // The field names are exactly TTL and ID: `ttl` is silently ignored by the gateway.
    let response = call(client, base, "/v3/lease/grant", &json!({"TTL": ttl}))?;
    #[derive(Deserialize)]
    struct Lease {
        #[serde(rename = "ID")]
        id: Option<String>,
    }
    let lease: Lease = json_body(&response, base)?;
    lease
        .id
        .ok_or_else(|| EtcdError::Api(format!("etcd at {base} granted no lease")))
}

/// POSTs to a gateway path with the auth token, authenticating first when needed and once
/// more when the token has expired.
fn call(
    client: &EtcdClient,
    base: &str,
    path: &str,
    body: &serde_json::Value,
) -> Result<Response, EtcdError> {
    let url = format!("{base}{path}");
    let mut retried = false;
    loop {
        let token = token(client, base)?;
        let auth = token.as_ref().map_or(Auth::None, Auth::Header);
        let response = client.http.send(&Request::json("POST", &url, auth, body))?;
        if response.is_success() {
            return Ok(response);
        }
        let error = gateway_error(&response);
        if response.status == 401 && error.code == Some(CODE_UNAUTHENTICATED) && !retried {
            log::debug!("etcd auth token expired; authenticating again");
            client.token.replace(None);
            retried = true;
            continue;
        }
        return Err(classify(client, &url, &response, &error));
    }
}

/// The current token, authenticating first when a user is configured and there is none.
fn token(client: &EtcdClient, base: &str) -> Result<Option<Secret>, EtcdError> {
    let (Some(user), Some(password)) = (&client.user, &client.password) else {
        return Ok(None);
    };
    if let Some(token) = client.token.borrow().as_ref() {
        return Ok(Some(token.clone()));
    }
    let url = format!("{base}/v3/auth/authenticate");
    let body = json!({"name": user, "password": password.expose()});
    let response = client
        .http
        .send(&Request::json("POST", &url, Auth::None, &body))?;
    if !response.is_success() {
        let error = gateway_error(&response);
        return Err(EtcdError::Auth(format!(
            "etcd at {base} rejected user {user:?}: {}: check --etcd-user and the password",
            error_text(&response, &error)
        )));
    }
    #[derive(Deserialize)]
    struct Authenticated {
        token: Option<String>,
    }
    let token = json_body::<Authenticated>(&response, base)?
        .token
        .map(Secret::new)
        .ok_or_else(|| EtcdError::Api(format!("etcd at {base} returned no auth token")))?;
    client.token.replace(Some(token.clone()));
    Ok(Some(token))
}

fn gateway_error(response: &Response) -> GatewayError {
    response.json().unwrap_or(GatewayError {
        code: None,
        message: None,
        error: None,
    })
}

fn error_text(response: &Response, error: &GatewayError) -> String {
    error
        .message
        .clone()
        .or_else(|| error.error.clone())
        .unwrap_or_else(|| format!("HTTP {} {}", response.status, response.snippet()))
}

fn classify(
    client: &EtcdClient,
    url: &str,
    response: &Response,
    error: &GatewayError,
) -> EtcdError {
    let text = error_text(response, error);
    let auth_problem = matches!(
        error.code,
        Some(CODE_UNAUTHENTICATED | CODE_PERMISSION_DENIED)
    ) || text.contains("user name is empty");
    if auth_problem {
        let fix = if client.user.is_some() {
            "check the user's permissions on this prefix"
        } else {
            "give --etcd-user and a password"
        };
        return EtcdError::Auth(format!("etcd refused {url}: {text}: {fix}"));
    }
    if response.status == 404 {
        return EtcdError::Api(format!(
            "etcd at {url} does not serve the v3 JSON gateway (HTTP 404): etcd 3.3 and older, or a gateway turned off; try --etcd-api v2"
        ));
    }
    if response.status >= 500 {
        // No quorum or a member in trouble: another member may do better.
        return EtcdError::Unreachable(format!("etcd at {url} failed: {text}"));
    }
    EtcdError::Api(format!(
        "etcd at {url} answered HTTP {}: {text}",
        response.status
    ))
}

fn decode_kv(raw: RawKv) -> Result<KeyValue, EtcdError> {
    let bad = |what: &str| EtcdError::Api(format!("etcd sent a {what} that is not base64"));
    let key = B64.decode(raw.key).map_err(|_| bad("key"))?;
    let value = match raw.value {
        Some(v) => B64.decode(v).map_err(|_| bad("value"))?,
        None => Vec::new(),
    };
    Ok(KeyValue {
        key: String::from_utf8_lossy(&key).into_owned(),
        value,
        mod_revision: parse_int(raw.mod_revision.as_deref()),
    })
}

fn parse_int(text: Option<&str>) -> i64 {
    text.and_then(|t| t.parse().ok()).unwrap_or(0)
}

/// The end of the range holding every key that starts with `prefix`: drop trailing 0xff bytes
/// and add one to the last byte; an empty result means "to the end of the keyspace" ("\0").
pub(crate) fn prefix_range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// The lease of a v3 claim.
fn lease_id(claim: &Claim) -> Result<&str, EtcdError> {
    match claim {
        Claim::Lease(id) => Ok(id),
        Claim::TtlKey => Err(EtcdError::Api(
            "a v2 leadership claim cannot be refreshed through the v3 API".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_end_increments_the_last_byte() {
        assert_eq!(
            prefix_range_end(b"/pcocc/global/opensm/pkeys/"),
            b"/pcocc/global/opensm/pkeys0".to_vec()
        );
        assert_eq!(prefix_range_end(b"a\xff\xff"), b"b".to_vec());
        assert_eq!(prefix_range_end(b"\xff"), vec![0]);
    }
}
