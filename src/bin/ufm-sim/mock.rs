//! The `nvidia-mock` route set: the PKey API exactly as NVIDIA's own Rust UFM mock serves it,
//! on top of the same [`crate::state::Fabric`] (faults, outages and statistics work as in the
//! `full` set; they run before this module).
//!
//! What was read in the mock's source (NVIDIA bare-metal-manager-core / infra-controller,
//! crate `ufm-mock`, added by PR #4910, commit 53b5d05f5 in the
//! `srinivasadmurthy/bare-metal-manager-core` fork; the only version of the crate found):
//! - `src/http.rs`, `HttpState::router`: seven routes, all nested under `/ufmRestV3` only:
//!   `GET /app/ufm_version`, `GET /app/smconf`, `GET /resources/ports`,
//!   `GET|POST /resources/pkeys` (list, add GUIDs), `GET /resources/pkeys/{pkey}`,
//!   `POST /actions/remove_guids_from_pkey`, `PUT /resources/pkeys/qos_conf`. There is no
//!   `/actions/add_guids_to_pkey`, no `POST /resources/pkeys/add`, no PUT set, no DELETE of
//!   any kind, no `last_updated` and no `/app/tokens`.
//! - axum routing (0.8): a path with no route is a bare 404 (no body, no content type); a
//!   routed path with another method is a bare 405 with an `Allow` header; a static segment
//!   wins over `{pkey}` (so GET `qos_conf` is 405) and `{pkey}` takes any other segment (so
//!   POST `/resources/pkeys/add` and DELETE `/resources/pkeys/{pkey}` are 405, and GET
//!   `last_updated` fails to parse as a PKey: 400 "Invalid URL"). Paths outside `/ufmRestV3`
//!   (so every `/ufmRest/...`) are 404 whatever the credentials. No trailing-slash
//!   normalisation: `/resources/pkeys/` is 404.
//! - `http.rs`, `authorize`: a middleware over the whole `/ufmRestV3` tree, run before
//!   routing, compares the `Authorization` header with exactly `Basic <token>`; anything
//!   else (HTTP Basic `user:password` included) is 401 with the text body
//!   `invalid UFM authorization token`. Every answer under `/ufmRestV3` carries
//!   `x-ufm-mock: carbide-ufm-mock`.
//! - `http.rs`, `bind`/`unbind`/`update_qos`/`partition`: success is 200 with the JSON body
//!   `{}`; a missing PKey on GET is 200 `{}`; `FabricError` maps to 404 (partition or port
//!   not found) with `{"error": "<message>"}`. Bodies go through axum's `Json` extractor:
//!   no JSON content type is 415, malformed JSON 400, a missing or mistyped field 422 (text
//!   bodies). Query flags go through `Query` (`true`/`false` only, else 400).
//! - `state/types.rs`: `BindRequest` needs `pkey`, `ip_over_ib`, `membership`, `index0` and
//!   `guids`, none defaulted (a missing `ip_over_ib` is a 422: the mock has no default);
//!   `UnbindRequest` needs `pkey` and `guids`; `QosRequest` needs all three QoS fields.
//!   `PartitionKey` reads `0x` hex or else decimal, up to 0x7fff; `Guid` reads hex with an
//!   optional `0x` and prints 16 digits. `FabricError` messages: `partition 0x.. does not
//!   exist`, `InfiniBand port <guid> does not exist`.
//! - `state/partitions.rs`, `Fabric::bind`: every GUID must be a known port, else the whole
//!   request is refused (404) before anything changes; the partition is created on demand as
//!   `api_pkey_0x<hex>` with default QoS, and **every** add overwrites its `ip_over_ib`
//!   with the request's. `Fabric::unbind`: a missing PKey is a silent success; a partition
//!   left without members is deleted. `partition_data`: the view is `partition`,
//!   `ip_over_ib`, then `qos_conf` and `guids` when asked; 0x7fff always carries
//!   `"membership": "limited"` (whatever the flags, and without `index0`). The list is always
//!   an object keyed by PKey (never the bare array), and `guids_data` with `qos_conf` works.
//!   `rate_limit` is an `f32`, so whole rates print as `200.0`.
//! - `state/reconciliation.rs`: a port leaving the inventory leaves every partition, and
//!   emptied partitions go (the simulator's `/_sim/drop_guids`).
//!
//! Known differences, kept on purpose: the fabric's own checks still apply, so writes to
//! 0x7fff and bad QoS values are 400 here (the mock accepts both), and PKey 0 is refused in
//! paths. The port inventory is `/_sim/known_guids`; `/resources/ports` makes up `dname` and
//! `system_name` from the GUID. The Apache 414 limit of the `full` set still applies.

use serde::Deserialize;
use serde::de::{self, Deserializer};
use serde_json::{Map, Value, json};

use crate::api::{Apply, mutate};
use crate::control::Sim;
use crate::http::{JSON, NONE, Request, Response, TEXT};
use crate::state::{FabricError, MANAGEMENT_PKEY, Member, Membership, Partition, format_guid};

/// The only prefix the mock serves.
const PREFIX: &str = "/ufmRestV3";

/// Answers a request like NVIDIA's mock.
pub fn handle(sim: &Sim, req: &Request, apply: Apply) -> Response {
    let Some(rest) = req
        .path
        .strip_prefix(PREFIX)
        .filter(|r| r.is_empty() || r.starts_with('/'))
    else {
        return bare(404);
    };
    let response = if authorized(sim, req) {
        route(sim, req, rest, apply)
    } else {
        Response::new(401, TEXT, "invalid UFM authorization token")
    };
    response.with_header("x-ufm-mock", "carbide-ufm-mock")
}

fn authorized(sim: &Sim, req: &Request) -> bool {
    let Some(header) = req.header("authorization") else {
        return false;
    };
    sim.control()
        .tokens
        .iter()
        .any(|t| !t.revoked && header.strip_prefix("Basic ") == Some(t.access_token.as_str()))
}

/// axum's own answers: no body, no content type.
fn bare(status: u16) -> Response {
    Response::new(status, NONE, "")
}

fn not_allowed(allow: &'static str) -> Response {
    bare(405).with_header("Allow", allow)
}

/// A mock route, by its path below the prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route<'a> {
    Version,
    SmConfig,
    Ports,
    Pkeys,
    Qos,
    Pkey(&'a str),
    Unbind,
}

fn find_route(rest: &str) -> Option<Route<'_>> {
    let segs: Vec<&str> = rest.strip_prefix('/')?.split('/').collect();
    Some(match segs.as_slice() {
        ["app", "ufm_version"] => Route::Version,
        ["app", "smconf"] => Route::SmConfig,
        ["resources", "ports"] => Route::Ports,
        ["resources", "pkeys"] => Route::Pkeys,
        ["resources", "pkeys", "qos_conf"] => Route::Qos,
        ["resources", "pkeys", pkey] if !pkey.is_empty() => Route::Pkey(pkey),
        ["actions", "remove_guids_from_pkey"] => Route::Unbind,
        _ => return None,
    })
}

fn route(sim: &Sim, req: &Request, rest: &str, apply: Apply) -> Response {
    let Some(found) = find_route(rest) else {
        return bare(404);
    };
    // axum serves HEAD wherever it serves GET.
    let method = if req.method == "HEAD" {
        "GET"
    } else {
        req.method.as_str()
    };
    let result = match (found, method) {
        (Route::Version, "GET") => Ok(ok(&json!({ "ufm_release_version": sim.settings.version }))),
        (Route::SmConfig, "GET") => Ok(ok(&sm_config())),
        (Route::Ports, "GET") => Ok(ok(&ports(sim))),
        (Route::Pkeys, "GET") => list(sim, req),
        (Route::Pkeys, "POST") => bind(sim, req, apply),
        (Route::Pkey(pkey), "GET") => partition(sim, req, pkey),
        (Route::Qos, "PUT") => update_qos(sim, req, apply),
        (Route::Unbind, "POST") => unbind(sim, req, apply),
        (Route::Version | Route::SmConfig | Route::Ports | Route::Pkey(_), _) => {
            Ok(not_allowed("GET,HEAD"))
        }
        (Route::Pkeys, _) => Ok(not_allowed("GET,HEAD,POST")),
        (Route::Qos, _) => Ok(not_allowed("PUT")),
        (Route::Unbind, _) => Ok(not_allowed("POST")),
    };
    match result {
        Ok(response) | Err(response) => response,
    }
}

fn ok(value: &Value) -> Response {
    Response::json(200, value)
}

fn error(status: u16, msg: impl Into<String>) -> Response {
    Response::json(status, &json!({ "error": msg.into() }))
}

fn fabric_error(e: FabricError) -> Response {
    match e {
        FabricError::NotFound(m) => error(404, m),
        FabricError::BadRequest(m) | FabricError::Conflict(m) => error(400, m),
    }
}

/// The mock's `PartitionKey`: `0x` hex, else decimal; at most 0x7fff.
fn parse_mock_pkey(text: &str) -> Option<u16> {
    let value = match text.strip_prefix("0x") {
        Some(hex) => u16::from_str_radix(hex, 16).ok()?,
        None => text.parse().ok()?,
    };
    (value <= MANAGEMENT_PKEY).then_some(value)
}

/// The mock's `Guid`: hex with an optional `0x`.
fn parse_mock_guid(text: &str) -> Option<u64> {
    u64::from_str_radix(text.strip_prefix("0x").unwrap_or(text), 16).ok()
}

fn de_pkey<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    let text = String::deserialize(d)?;
    parse_mock_pkey(&text).ok_or_else(|| de::Error::custom(format!("invalid partition key {text}")))
}

fn de_guids<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u64>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|t| {
            parse_mock_guid(t)
                .ok_or_else(|| de::Error::custom(format!("invalid InfiniBand GUID {t}")))
        })
        .collect()
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum MockMembership {
    Limited,
    Full,
}

#[derive(Deserialize)]
struct BindBody {
    #[serde(deserialize_with = "de_pkey")]
    pkey: u16,
    ip_over_ib: bool,
    membership: MockMembership,
    index0: bool,
    #[serde(deserialize_with = "de_guids")]
    guids: Vec<u64>,
}

#[derive(Deserialize)]
struct UnbindBody {
    #[serde(deserialize_with = "de_pkey")]
    pkey: u16,
    #[serde(deserialize_with = "de_guids")]
    guids: Vec<u64>,
}

#[derive(Deserialize)]
struct QosBody {
    #[serde(deserialize_with = "de_pkey")]
    pkey: u16,
    mtu_limit: u16,
    service_level: u8,
    rate_limit: f32,
}

/// axum's `Json` extractor: 415 without a JSON content type, 400 for bad JSON, 422 when the
/// JSON does not fit the type.
fn json_body<T: for<'de> Deserialize<'de>>(req: &Request) -> Result<T, Response> {
    let is_json = req.header("content-type").is_some_and(|ct| {
        let mime = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
    });
    if !is_json {
        return Err(Response::new(
            415,
            TEXT,
            "Expected request with `Content-Type: application/json`",
        ));
    }
    serde_json::from_slice(&req.body).map_err(|e| {
        if e.classify() == serde_json::error::Category::Data {
            let text = format!("Failed to deserialize the JSON body into the target type: {e}");
            Response::new(422, TEXT, text)
        } else {
            Response::new(
                400,
                TEXT,
                format!("Failed to parse the request body as JSON: {e}"),
            )
        }
    })
}

/// axum's `Query` for the two flags: `true` or `false` only.
fn flags(req: &Request) -> Result<(bool, bool), Response> {
    let flag = |name: &str| match req.query_param(name) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(Response::new(
            400,
            TEXT,
            format!(
                "Failed to deserialize query string: {name}: provided string was not `true` or `false`"
            ),
        )),
    };
    Ok((flag("guids_data")?, flag("qos_conf")?))
}

/// The mock's partition view (`partition_data`).
fn view(pkey: u16, partition: &Partition, guids: bool, qos: bool) -> Value {
    let mut map = Map::new();
    map.insert("partition".into(), json!(partition.name));
    map.insert("ip_over_ib".into(), json!(partition.ip_over_ib));
    if qos {
        let q = partition.qos;
        map.insert(
            "qos_conf".into(),
            json!({
                "mtu_limit": q.mtu_limit,
                "service_level": q.service_level,
                // An f32 in the mock: whole rates print as 200.0.
                "rate_limit": f64::from(q.rate_limit as f32),
            }),
        );
    }
    if guids {
        let members: Vec<Value> = partition
            .members
            .iter()
            .map(|(guid, m)| {
                json!({"guid": format_guid(*guid), "membership": m.membership.as_str(), "index0": m.index0})
            })
            .collect();
        map.insert("guids".into(), Value::Array(members));
    }
    if pkey == MANAGEMENT_PKEY {
        map.insert("membership".into(), json!("limited"));
    }
    Value::Object(map)
}

fn list(sim: &Sim, req: &Request) -> Result<Response, Response> {
    let (guids, qos) = flags(req)?;
    let fabric = sim.fabric();
    let all: Map<String, Value> = fabric
        .iter()
        .map(|(pkey, p)| (format!("0x{pkey:x}"), view(pkey, p, guids, qos)))
        .collect();
    Ok(ok(&Value::Object(all)))
}

fn partition(sim: &Sim, req: &Request, text: &str) -> Result<Response, Response> {
    let pkey = parse_mock_pkey(text).ok_or_else(|| {
        Response::new(
            400,
            TEXT,
            format!("Invalid URL: invalid partition key {text}"),
        )
    })?;
    let (guids, qos) = flags(req)?;
    let fabric = sim.fabric();
    Ok(match fabric.get(pkey) {
        Some(p) => ok(&view(pkey, p, guids, qos)),
        None => Response::new(200, JSON, "{}"),
    })
}

fn bind(sim: &Sim, req: &Request, apply: Apply) -> Result<Response, Response> {
    let b: BindBody = json_body(req)?;
    {
        let control = sim.control();
        if let Some(guid) = b.guids.iter().find(|g| !control.known_guids.contains(g)) {
            let msg = format!("InfiniBand port {} does not exist", format_guid(*guid));
            return Err(error(404, msg));
        }
    }
    let member = Member {
        membership: match b.membership {
            MockMembership::Full => Membership::Full,
            MockMembership::Limited => Membership::Limited,
        },
        index0: b.index0,
    };
    let ip_over_ib = Some(b.ip_over_ib);
    let result = if b.guids.is_empty() {
        mutate(sim, apply, |f| f.upsert_partition(b.pkey, ip_over_ib))
    } else {
        mutate(sim, apply, |f| {
            f.add_guids(b.pkey, &b.guids, member, ip_over_ib)
        })
    };
    result.map_err(fabric_error)?;
    Ok(ok(&json!({})))
}

fn unbind(sim: &Sim, req: &Request, apply: Apply) -> Result<Response, Response> {
    let b: UnbindBody = json_body(req)?;
    // Nothing to remove, or the management partition (which never lists members): the mock
    // changes nothing and says so with a 200.
    if !b.guids.is_empty() && b.pkey != MANAGEMENT_PKEY {
        mutate(sim, apply, |f| f.remove_guids(b.pkey, &b.guids, true)).map_err(fabric_error)?;
    }
    Ok(ok(&json!({})))
}

fn update_qos(sim: &Sim, req: &Request, apply: Apply) -> Result<Response, Response> {
    let b: QosBody = json_body(req)?;
    if !sim.fabric().contains(b.pkey) {
        return Err(error(
            404,
            format!("partition 0x{:x} does not exist", b.pkey),
        ));
    }
    let (mtu, sl, rate) = (
        u64::from(b.mtu_limit),
        u64::from(b.service_level),
        f64::from(b.rate_limit),
    );
    mutate(sim, apply, |f| {
        f.set_qos(b.pkey, Some(mtu), Some(sl), Some(rate))
    })
    .map_err(fabric_error)?;
    Ok(ok(&json!({})))
}

/// The mock's default `SmConfig` (`config.rs`).
fn sm_config() -> Value {
    json!({
        "subnet_prefix": "0xfe80000000000000",
        "m_key": "0x0000000000000000",
        "sm_key": "0x0000000000000001",
        "sa_key": "0x0000000000000001",
        "m_key_per_port": false,
    })
}

/// `/resources/ports` from the known-GUID inventory, every port up.
fn ports(sim: &Sim) -> Value {
    let control = sim.control();
    let ports: Vec<Value> = control
        .known_guids
        .iter()
        .enumerate()
        .map(|(i, guid)| {
            let guid = format_guid(*guid);
            json!({
                "guid": guid,
                "name": format!("{guid}_1"),
                "systemID": guid,
                "lid": i + 1,
                "dname": guid,
                "system_name": guid,
                "physical_state": "Link Up",
                "logical_state": "Active",
            })
        })
        .collect();
    Value::Array(ports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkeys_and_guids_read_as_the_mock_reads_them() {
        assert_eq!(parse_mock_pkey("0x7fff"), Some(0x7fff));
        assert_eq!(parse_mock_pkey("0x0A12"), Some(0xa12));
        assert_eq!(parse_mock_pkey("10"), Some(10), "decimal without 0x");
        assert_eq!(parse_mock_pkey("0X10"), None, "only a lowercase 0x");
        assert_eq!(parse_mock_pkey("0x8000"), None);
        assert_eq!(parse_mock_pkey("last_updated"), None);
        assert_eq!(
            parse_mock_guid("0x946dae03005975c8"),
            Some(0x946d_ae03_0059_75c8)
        );
        assert_eq!(parse_mock_guid("1"), Some(1));
        assert_eq!(parse_mock_guid("xyz"), None);
    }

    #[test]
    fn routes_and_methods() {
        assert_eq!(find_route("/resources/pkeys"), Some(Route::Pkeys));
        assert_eq!(find_route("/resources/pkeys/qos_conf"), Some(Route::Qos));
        assert_eq!(find_route("/resources/pkeys/add"), Some(Route::Pkey("add")));
        assert_eq!(
            find_route("/resources/pkeys/"),
            None,
            "no trailing-slash match"
        );
        assert_eq!(
            find_route("/resources/pkeys/0x5/guids/0000000000000001"),
            None
        );
        assert_eq!(find_route("/actions/add_guids_to_pkey"), None);
        assert_eq!(find_route(""), None);
    }

    #[test]
    fn bodies_fail_as_axum_fails_them() {
        let mut req = Request {
            body: br#"{"pkey": "0x5", "guids": ["1"], "membership": "full", "index0": false}"#
                .to_vec(),
            ..Request::default()
        };
        let status = |r: Result<BindBody, Response>| r.err().map(|e| e.status);
        assert_eq!(status(json_body(&req)), Some(415));
        req.headers = vec![(
            "content-type".into(),
            "application/json; charset=utf-8".into(),
        )];
        assert_eq!(
            status(json_body(&req)),
            Some(422),
            "ip_over_ib is mandatory"
        );
        req.body = b"{\"pkey\": ".to_vec();
        assert_eq!(status(json_body(&req)), Some(400));
        req.body = br#"{"pkey": "0x5", "guids": ["1"], "membership": "full", "index0": false,
                        "ip_over_ib": true, "extra": 1}"#
            .to_vec();
        assert_eq!(status(json_body(&req)), None, "unknown fields are ignored");
        req.body = br#"{"pkey": "0x8000", "guids": [], "membership": "full", "index0": false,
                        "ip_over_ib": true}"#
            .to_vec();
        assert_eq!(status(json_body(&req)), Some(422));
    }
}
