//! The etcd v2 keys API (`/v2/keys/...`), the API pcocc writes through.
//!
//! v2 has directories instead of prefixes: a prefix is listed by reading its directory
//! recursively and keeping the keys that start with it. Indexes are JSON numbers; the store
//! index comes in the `X-Etcd-Index` header. Authentication is HTTP Basic against v2's own user
//! database, which is separate from v3's.
//!
//! A v2 read is answered by the member from its local store unless it asks for `quorum=true`:
//! a member cut off from its peers then answers stale data. Every read that can lead to a
//! deletion (listings, the ownership record) is a quorum read; a member that cannot get a
//! quorum fails it, and the client moves on to another member.

use serde::Deserialize;

use super::{
    Api, Change, Claim, Deletion, Dir, EtcdClient, EtcdError, Expect, History, KeyValue, Keyspace,
    Listing, Position, Store, WATCH_POLL, Watched, json_body, went_back,
};
use crate::net::http::{Auth, Request, Response, encode_form_value, encode_path};

/// v2 error code: key not found.
const KEY_NOT_FOUND: i64 = 100;
/// A hidden key (v2 hides names starting with `_` from listings) read only for the index
/// etcd answers with.
const POSITION_KEY: &str = "_ufm-pkeyd-position";
/// v2 error code: the event index asked for is older than the 1,000 events v2 keeps.
const EVENT_INDEX_CLEARED: i64 = 401;
/// v2 error code: the request requires user authentication (also: wrong password, no permission).
const UNAUTHORIZED: i64 = 110;

#[derive(Deserialize)]
struct Node {
    key: Option<String>,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    dir: bool,
    #[serde(default)]
    nodes: Vec<Node>,
    #[serde(default, rename = "modifiedIndex")]
    modified_index: i64,
    #[serde(default, rename = "createdIndex")]
    created_index: i64,
}

#[derive(Deserialize)]
struct NodeResponse {
    node: Node,
}

#[derive(Deserialize)]
struct V2Error {
    #[serde(rename = "errorCode")]
    error_code: i64,
    #[serde(default)]
    message: String,
}

/// The v2 keys API.
pub(super) struct V2;

impl Keyspace for V2 {
    fn list(&self, client: &EtcdClient, base: &str, prefix: &str) -> Result<Listing, EtcdError> {
        let prefix = absolute(prefix);
        // The directory holding the prefix: "/a/b/" lists /a/b, "/a/b/0x2" lists /a/b too.
        let dir = &prefix[..prefix.rfind('/').map_or(0, |i| i + 1)];
        let url = format!(
            "{base}/v2/keys{}?recursive=true&sorted=true&quorum=true",
            encode_path(dir)
        );
        let response = send(client, &Request::get(&url, auth(client)))?;
        let revision = etcd_index(&response);
        let store = store(&response);
        if !response.is_success() {
            return match v2_error(&response) {
                Some(e) if e.error_code == KEY_NOT_FOUND => Ok(Listing {
                    revision,
                    store,
                    ..Listing::default()
                }),
                _ => Err(classify(&url, &response)),
            };
        }
        let root: NodeResponse = json_body(&response, &url)?;
        let dir = root.node.dir.then_some(Dir {
            created_index: root.node.created_index,
        });
        let mut kvs = Vec::new();
        collect_leaves(root.node, &mut kvs);
        kvs.retain(|kv| kv.key.starts_with(prefix.as_str()));
        Ok(Listing {
            kvs,
            revision,
            store,
            dir,
        })
    }

    fn get(
        &self,
        client: &EtcdClient,
        base: &str,
        key: &str,
    ) -> Result<Option<KeyValue>, EtcdError> {
        read_key(client, base, key, "?quorum=true")
    }

    fn peek(
        &self,
        client: &EtcdClient,
        base: &str,
        key: &str,
    ) -> Result<Option<KeyValue>, EtcdError> {
        read_key(client, base, key, "")
    }

    /// A read of a hidden key nobody writes: etcd answers "not found" with its index.
    fn position(
        &self,
        client: &EtcdClient,
        base: &str,
        prefix: &str,
        linearizable: bool,
    ) -> Result<Position, EtcdError> {
        let dir = absolute(prefix);
        let dir = &dir[..dir.rfind('/').map_or(0, |i| i + 1)];
        let quorum = if linearizable { "?quorum=true" } else { "" };
        let url = format!("{base}/v2/keys{}{POSITION_KEY}{quorum}", encode_path(dir));
        let response = send(client, &Request::get(&url, auth(client)))?;
        match v2_error(&response) {
            Some(e) if e.error_code == KEY_NOT_FOUND => {}
            _ if response.is_success() => {}
            _ => return Err(classify(&url, &response)),
        }
        Ok(Position {
            revision: etcd_index(&response),
            store: store(&response),
        })
    }

    fn put(
        &self,
        client: &EtcdClient,
        base: &str,
        key: &str,
        value: &[u8],
        ttl: Option<u64>,
    ) -> Result<(), EtcdError> {
        let text = std::str::from_utf8(value).map_err(|_| {
            EtcdError::Api("the v2 API stores text only: the value is not UTF-8".into())
        })?;
        let mut form = format!("value={}", encode_form_value(text));
        if let Some(ttl) = ttl {
            form.push_str(&format!("&ttl={ttl}"));
        }
        let (url, response) = put_form(client, base, key, "", form)?;
        if response.is_success() {
            Ok(())
        } else {
            Err(classify(&url, &response))
        }
    }

    fn delete(&self, client: &EtcdClient, base: &str, key: &str) -> Result<(), EtcdError> {
        let key = absolute(key);
        let url = format!("{base}/v2/keys{}", encode_path(&key));
        let request = Request {
            method: "DELETE",
            url: &url,
            auth: auth(client),
            body: None,
        };
        let response = send(client, &request)?;
        if response.is_success() {
            return Ok(());
        }
        match v2_error(&response) {
            Some(e) if e.error_code == KEY_NOT_FOUND => {
                Err(EtcdError::NotFound(format!("etcd key {key} not found")))
            }
            _ => Err(classify(&url, &response)),
        }
    }

    /// A compare-and-swap on the key's modifiedIndex (`prevIndex`), or a create
    /// (`prevExist=false`). v2 has no multi-key transaction: `fence` is not checked here; the
    /// record's own index fences an old leader out once the new one has written it.
    fn put_if(
        &self,
        client: &EtcdClient,
        base: &str,
        key: &str,
        value: &[u8],
        expect: &Expect,
        _fence: Option<(&str, &str)>,
    ) -> Result<Option<i64>, EtcdError> {
        let text = std::str::from_utf8(value).map_err(|_| {
            EtcdError::Api("the v2 API stores text only: the value is not UTF-8".into())
        })?;
        let condition = match expect {
            Expect::Absent => "prevExist=false".to_string(),
            Expect::Revision(index) => format!("prevIndex={index}"),
        };
        let form = format!("value={}", encode_form_value(text));
        let (url, response) = put_form(client, base, key, &condition, form)?;
        match response.status {
            200 | 201 => Ok(Some(
                json_body::<NodeResponse>(&response, &url)?
                    .node
                    .modified_index,
            )),
            // 412: the compare failed; 404: prevIndex on a key that is gone.
            404 | 412 => Ok(None),
            _ => Err(classify(&url, &response)),
        }
    }

    /// v2 keeps only its last 1,000 events: deletions are judged by the directory instead.
    fn deletions_since(
        &self,
        _client: &EtcdClient,
        _base: &str,
        _prefix: &str,
        _revision: i64,
        _enough: &mut dyn FnMut(&[Deletion]) -> bool,
    ) -> Result<Option<History>, EtcdError> {
        Ok(None)
    }

    /// Long-polls the prefix's directory from `revision + 1` (`?wait=true&recursive=true`), one
    /// event per request. etcd sends the status at once and the body when an event happens.
    /// After the first event, the events already in v2's history are read at once (a poll
    /// answered from history carries, in `X-Etcd-Index`, the index the watch started at):
    /// a burst of writes comes back as one batch. Events on keys of the directory outside
    /// the prefix are skipped.
    fn watch(
        &self,
        client: &EtcdClient,
        base: &str,
        prefix: &str,
        revision: i64,
        keep_waiting: &mut dyn FnMut() -> bool,
    ) -> Result<Watched, EtcdError> {
        let prefix = absolute(prefix);
        let dir = &prefix[..prefix.rfind('/').map_or(0, |i| i + 1)];
        let mut last = revision;
        let mut changes = Vec::new();
        loop {
            let wait_index = last
                .checked_add(1)
                .ok_or_else(|| EtcdError::Api(format!("etcd index {last} cannot be followed")))?;
            let url = format!(
                "{base}/v2/keys{}?wait=true&recursive=true&waitIndex={wait_index}",
                encode_path(dir)
            );
            let request = Request::get(&url, auth(client));
            let mut stream = client.http.open_stream(&request, WATCH_POLL, true)?;
            let opened = std::time::Instant::now();
            let status = stream.status;
            let started_at = stream
                .header("x-etcd-index")
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(0);
            if changes.is_empty() && (1..revision).contains(&started_at) {
                return Ok(went_back(Api::V2, revision, started_at));
            }
            // Once there are changes, only history is read: no waiting for new events.
            let waited = if changes.is_empty() {
                stream.read_to_end(&mut *keep_waiting)
            } else {
                stream.read_to_end(|| false)
            };
            let waited = match waited {
                // etcd answered, then the connection broke or closed before an event (etcd
                // restarting, a proxy closing long requests): nothing is lost, the next wait
                // starts from the same index.
                Err(e) if e.is_unreachable() && changes.is_empty() => {
                    return Ok(Watched::Ended { revision: last });
                }
                Ok(Some(body))
                    if changes.is_empty()
                        && (200..300).contains(&status)
                        && body.iter().all(u8::is_ascii_whitespace) =>
                {
                    return Ok(Watched::Ended { revision: last });
                }
                waited => waited?,
            };
            let Some(body) = waited else {
                // etcd sends an event from its history right after the headers. A request
                // that waited a second with no event proves none came after `last` up to the
                // index etcd had when it started: the next wait may start there. On a busy
                // etcd this keeps the index within the 1,000 events v2 remembers.
                let quiet = changes.is_empty() && opened.elapsed() >= QUIET_PROOF;
                return Ok(finish(
                    changes,
                    if quiet { last.max(started_at) } else { last },
                ));
            };
            let response = Response {
                status,
                content_type: String::new(),
                headers: Vec::new(),
                body,
            };
            if !response.is_success() {
                return match v2_error(&response) {
                    Some(e) if e.error_code == EVENT_INDEX_CLEARED => Ok(Watched::Gap(format!(
                        "etcd v2 history no longer holds index {wait_index}"
                    ))),
                    _ => Err(classify(&url, &response)),
                };
            }
            #[derive(Deserialize)]
            struct Event {
                action: String,
                node: Node,
            }
            let event: Event = json_body(&response, &url)?;
            let index = event.node.modified_index.max(wait_index);
            let key = event.node.key.unwrap_or_default();
            if key.starts_with(prefix.as_str()) || format!("{key}/") == prefix {
                let gone = matches!(
                    event.action.as_str(),
                    "delete" | "expire" | "compareAndDelete"
                );
                changes.push(Change {
                    key,
                    value: if gone {
                        None
                    } else {
                        Some(event.node.value.unwrap_or_default().into_bytes())
                    },
                    revision: index,
                    dir: event.node.dir,
                });
            }
            last = index;
            let from_history = index < started_at;
            if !changes.is_empty() && !from_history {
                return Ok(finish(changes, last));
            }
        }
    }

    /// Election: create the TTL key only if it does not exist (`prevExist=false`).
    fn campaign(
        &self,
        client: &EtcdClient,
        base: &str,
        key: &str,
        (identity, over): (&str, Option<&str>),
        ttl: u64,
    ) -> Result<Option<Claim>, EtcdError> {
        let form = format!("value={}&ttl={ttl}", encode_form_value(identity));
        let condition = match over {
            Some(mark) => format!("prevValue={}", encode_form_value(mark)),
            None => "prevExist=false".to_string(),
        };
        let (url, response) = put_form(client, base, key, &condition, form)?;
        match response.status {
            200 | 201 => Ok(Some(Claim::TtlKey)),
            // Taken (412), or the mark it was to replace gone (404).
            404 | 412 => Ok(None),
            _ => Err(classify(&url, &response)),
        }
    }

    /// Extends the TTL key if it still holds our identity (`prevValue`), without a new value
    /// (`refresh=true` does not wake watchers).
    fn refresh(
        &self,
        client: &EtcdClient,
        base: &str,
        (key, identity): (&str, &str),
        _claim: &Claim,
        ttl: u64,
    ) -> Result<bool, EtcdError> {
        let condition = format!("prevExist=true&prevValue={}", encode_form_value(identity));
        let (url, response) = put_form(
            client,
            base,
            key,
            &condition,
            format!("ttl={ttl}&refresh=true"),
        )?;
        match response.status {
            200 | 201 => Ok(true),
            404 | 412 => Ok(false),
            _ => Err(classify(&url, &response)),
        }
    }

    /// A quorum read of the TTL key: still there, with our identity.
    fn holds(
        &self,
        client: &EtcdClient,
        base: &str,
        (key, identity): (&str, &str),
        _claim: &Claim,
    ) -> Result<bool, EtcdError> {
        let found = read_key(client, base, key, "?quorum=true")?;
        Ok(found.is_some_and(|kv| kv.value == identity.as_bytes()))
    }

    /// Replaces the TTL key by the mark (with no TTL), or without a mark deletes it, if it
    /// still holds our identity.
    fn resign(
        &self,
        client: &EtcdClient,
        base: &str,
        (key, identity): (&str, &str),
        _claim: &Claim,
        mark: Option<&str>,
    ) -> Result<(), EtcdError> {
        if let Some(mark) = mark {
            let condition = format!("prevValue={}", encode_form_value(identity));
            let form = format!("value={}", encode_form_value(mark));
            let (url, response) = put_form(client, base, key, &condition, form)?;
            return match response.status {
                200 | 201 | 404 | 412 => Ok(()),
                _ => Err(classify(&url, &response)),
            };
        }
        let key = absolute(key);
        let url = format!(
            "{base}/v2/keys{}?prevValue={}",
            encode_path(&key),
            encode_form_value(identity)
        );
        let request = Request {
            method: "DELETE",
            url: &url,
            auth: auth(client),
            body: None,
        };
        let response = send(client, &request)?;
        match response.status {
            200 | 404 | 412 => Ok(()),
            _ => Err(classify(&url, &response)),
        }
    }
}

/// What a wait ends with: the changes collected (if any) and where to go on from.
/// How long a v2 watch must wait with no event to prove etcd has none in its history.
const QUIET_PROOF: std::time::Duration = std::time::Duration::from_secs(1);

fn finish(changes: Vec<Change>, revision: i64) -> Watched {
    if changes.is_empty() {
        Watched::Stopped { revision }
    } else {
        Watched::Changes { changes, revision }
    }
}

/// Reads one key, with `query` (`?quorum=true` for a linearizable read).
fn read_key(
    client: &EtcdClient,
    base: &str,
    key: &str,
    query: &str,
) -> Result<Option<KeyValue>, EtcdError> {
    let key = absolute(key);
    let url = format!("{base}/v2/keys{}{query}", encode_path(&key));
    let response = send(client, &Request::get(&url, auth(client)))?;
    if !response.is_success() {
        return match v2_error(&response) {
            Some(e) if e.error_code == KEY_NOT_FOUND => Ok(None),
            _ => Err(classify(&url, &response)),
        };
    }
    let node = json_body::<NodeResponse>(&response, &url)?.node;
    if node.dir {
        return Err(EtcdError::Api(format!(
            "etcd key {key} is a v2 directory, not a key: use --list --prefix {key}/"
        )));
    }
    Ok(Some(KeyValue {
        key,
        value: node.value.unwrap_or_default().into_bytes(),
        mod_revision: node.modified_index,
    }))
}

/// The cluster and Raft term the answer came from.
fn store(response: &Response) -> Store {
    Store {
        cluster_id: response.header("x-etcd-cluster-id").map(str::to_string),
        raft_term: response
            .header("x-raft-term")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    }
}

/// PUTs a form to a key, with an optional query (conditions such as `prevExist=false`);
/// returns the URL, for messages, and the answer.
fn put_form(
    client: &EtcdClient,
    base: &str,
    key: &str,
    query: &str,
    form: String,
) -> Result<(String, Response), EtcdError> {
    let mut url = format!("{base}/v2/keys{}", encode_path(&absolute(key)));
    if !query.is_empty() {
        url = format!("{url}?{query}");
    }
    let request = Request {
        method: "PUT",
        url: &url,
        auth: auth(client),
        body: Some(("application/x-www-form-urlencoded", form.into_bytes())),
    };
    let response = send(client, &request)?;
    Ok((url, response))
}

fn send(client: &EtcdClient, request: &Request<'_>) -> Result<Response, EtcdError> {
    Ok(client.http.send(request)?)
}

fn auth(client: &EtcdClient) -> Auth<'_> {
    match (&client.user, &client.password) {
        (Some(user), Some(password)) => Auth::Basic(user, password),
        _ => Auth::None,
    }
}

/// v2 keys are absolute paths.
fn absolute(key: &str) -> String {
    if key.starts_with('/') {
        key.to_string()
    } else {
        format!("/{key}")
    }
}

fn etcd_index(response: &Response) -> i64 {
    response
        .header("x-etcd-index")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn v2_error(response: &Response) -> Option<V2Error> {
    response.json().ok()
}

fn classify(url: &str, response: &Response) -> EtcdError {
    // A member without quorum (or in trouble) answers 5xx, often with a v2 error body
    // ("Raft Internal Error", "request timed out"): another member may do better.
    if response.status >= 500 {
        return EtcdError::Unreachable(format!(
            "etcd at {url} failed: HTTP {} {}",
            response.status,
            response.snippet()
        ));
    }
    match v2_error(response) {
        Some(e) if e.error_code == UNAUTHORIZED => EtcdError::Auth(format!(
            "etcd refused {url}: {} (wrong user or password, or no permission on this key): check --etcd-user and the password",
            e.message
        )),
        Some(e) => EtcdError::Api(format!(
            "etcd at {url} answered HTTP {}: {} (v2 error code {})",
            response.status, e.message, e.error_code
        )),
        None if response.status == 404 => EtcdError::Api(format!(
            "etcd at {url} does not serve the v2 API (HTTP 404): etcd 3.4 and 3.5 need --enable-v2, 3.6 has no v2; use --etcd-api v3"
        )),
        None => EtcdError::Api(format!(
            "etcd at {url} answered HTTP {}: {}",
            response.status,
            response.snippet()
        )),
    }
}

fn collect_leaves(node: Node, out: &mut Vec<KeyValue>) {
    if node.dir {
        for child in node.nodes {
            collect_leaves(child, out);
        }
    } else if let Some(key) = node.key {
        out.push(KeyValue {
            key,
            value: node.value.unwrap_or_default().into_bytes(),
            mod_revision: node.modified_index,
        });
    }
}
