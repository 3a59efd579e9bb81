//! The UFM REST API as seen by a client: the order of request handling (414 check,
//! statistics, outages, injected stalls, failures and fault rules, then the route set),
//! and the `full` route set: the `/ufmRest` and `/ufmRestV3` prefixes, authentication,
//! routing to route templates, request-body validation and the response of each endpoint
//! on top of [`crate::state::Fabric`]. `/_sim/` requests are handed to [`crate::control`],
//! the `nvidia-mock` route set to [`crate::mock`].

use std::hash::{BuildHasher, RandomState};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use log::debug;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::control::{self, RouteSet, Sim, Token, now_secs};
use crate::faults::{Outcome, PageKind};
use crate::http::{HTML, JSON, REQUEST_LINE_LIMIT, Request, Response, TEXT, reason};
use crate::mock;
use crate::outage::Gate;
use crate::state::{
    Fabric, FabricError, MANAGEMENT_PKEY, Member, Membership, NewPartition, Qos, format_guid,
    parse_guid, parse_guids, parse_pkey,
};

/// Every route template: the routes of `/_sim/stats` keys (paths that match none count
/// under themselves), and what a fault rule's `route` may name. The last two are served by
/// the `nvidia-mock` route set only.
pub const ROUTES: &[&str] = &[
    "/app/ufm_version",
    "/app/tokens",
    "/app/tokens/revoke",
    "/resources/pkeys",
    "/resources/pkeys/add",
    "/resources/pkeys/qos_conf",
    "/resources/pkeys/last_updated",
    "/resources/pkeys/{pkey}",
    "/resources/pkeys/{pkey}/guids",
    "/actions/remove_guids_from_pkey",
    "/actions/add_guids_to_pkey",
    "/actions/get_all_pkeys",
    "/resources/ports",
    "/app/smconf",
];

/// Which REST tree a request is under, which decides how it authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prefix {
    /// `/ufmRest`: HTTP Basic `user:password`.
    Basic,
    /// `/ufmRestV3`: `Authorization: Basic <access token>`.
    Token,
}

/// Splits `/ufmRest…` and `/ufmRestV3…` paths into their prefix and the rest.
fn split_prefix(path: &str) -> Option<(Prefix, &str)> {
    for (name, prefix) in [("/ufmRestV3", Prefix::Token), ("/ufmRest", Prefix::Basic)] {
        if let Some(rest) = path.strip_prefix(name)
            && (rest.is_empty() || rest.starts_with('/'))
        {
            return Some((prefix, rest));
        }
    }
    None
}

fn segments(rest: &str) -> Vec<&str> {
    rest.split('/').filter(|s| !s.is_empty()).collect()
}

/// The route template of a path below the prefix, as used in the statistics.
fn template(rest: &str) -> Option<&'static str> {
    Some(match segments(rest).as_slice() {
        ["app", "ufm_version"] => "/app/ufm_version",
        ["app", "tokens"] => "/app/tokens",
        ["app", "tokens", "revoke"] => "/app/tokens/revoke",
        ["resources", "pkeys"] => "/resources/pkeys",
        ["resources", "pkeys", "add"] => "/resources/pkeys/add",
        ["resources", "pkeys", "qos_conf"] => "/resources/pkeys/qos_conf",
        ["resources", "pkeys", "last_updated"] => "/resources/pkeys/last_updated",
        ["resources", "pkeys", _] => "/resources/pkeys/{pkey}",
        ["resources", "pkeys", _, "guids"] | ["resources", "pkeys", _, "guids", _] => {
            "/resources/pkeys/{pkey}/guids"
        }
        ["actions", "remove_guids_from_pkey"] => "/actions/remove_guids_from_pkey",
        ["actions", "add_guids_to_pkey"] => "/actions/add_guids_to_pkey",
        ["actions", "get_all_pkeys"] => "/actions/get_all_pkeys",
        _ => return None,
    })
}

/// The route part of a statistics key: the route template, or the path itself (below the
/// prefix, if any) when no route matches.
fn route_name(req: &Request) -> String {
    match split_prefix(&req.path) {
        Some((_, rest)) => template(rest).map(str::to_string).unwrap_or_else(|| {
            if rest.is_empty() {
                "/".to_string()
            } else {
                rest.to_string()
            }
        }),
        None => req.path.clone(),
    }
}

/// The PKey a request is about, for fault rules: from the path, else from the JSON body's
/// `pkey` field; `0x` hex or (as NVIDIA's mock reads it) decimal.
fn request_pkey(req: &Request, route: &str) -> Option<u16> {
    let text = match route {
        "/resources/pkeys/{pkey}" | "/resources/pkeys/{pkey}/guids" => {
            let (_, rest) = split_prefix(&req.path)?;
            segments(rest).get(2)?.to_string()
        }
        _ => {
            let body: Value = serde_json::from_slice(&req.body).ok()?;
            body.get("pkey")?.as_str()?.to_string()
        }
    };
    parse_pkey(&text).ok().or_else(|| {
        text.parse::<u16>()
            .ok()
            .filter(|p| (1..=MANAGEMENT_PKEY).contains(p))
    })
}

/// An Apache-style error page.
pub fn apache_page(status: u16, text: &str) -> Response {
    let reason = reason(status);
    let body = format!(
        "<!DOCTYPE HTML PUBLIC \"-//IETF//DTD HTML 2.0//EN\">\n<html><head>\n<title>{status} {reason}</title>\n</head><body>\n<h1>{reason}</h1>\n<p>{text}</p>\n<hr>\n<address>Apache Server</address>\n</body></html>\n"
    );
    Response::new(status, HTML, body)
}

pub fn fault_page(status: u16) -> Response {
    let text = match status {
        503 => {
            "The server is temporarily unable to service your\nrequest due to maintenance downtime or capacity\nproblems. Please try again later."
        }
        502 => "The proxy server received an invalid\nresponse from an upstream server.",
        504 => {
            "The gateway did not receive a timely response\nfrom the upstream server or application."
        }
        _ => {
            "The server encountered an internal error or\nmisconfiguration and was unable to complete\nyour request."
        }
    };
    apache_page(status, text)
}

/// UFM's page to log in (Apache's form login).
const LOGIN_PAGE: &str = "<!DOCTYPE html>\n<html><head><title>UFM - Login</title></head>\n<body>\n<form method=\"post\" action=\"/dologin\">\n<label>Username <input type=\"text\" name=\"httpd_username\"></label>\n<label>Password <input type=\"password\" name=\"httpd_password\"></label>\n<input type=\"submit\" value=\"Log In\">\n</form>\n</body></html>\n";

/// The page a `page` fault rule answers, with its status (see [`crate::faults`]).
pub fn page(kind: PageKind, status: u16) -> Response {
    match kind {
        PageKind::Apache => apache_page(
            status,
            "The server is temporarily unable to service your\nrequest due to maintenance downtime or capacity\nproblems. Please try again later.",
        ),
        PageKind::Login => Response::new(status, HTML, LOGIN_PAGE),
        PageKind::Text => Response::new(status, "text/plain", "UFM is starting, please wait\n"),
    }
}

fn unauthorized(sim: &Sim, prefix: Prefix) -> Response {
    if sim.modes().auth_login200 {
        return Response::new(200, HTML, LOGIN_PAGE);
    }
    let page = apache_page(
        401,
        "Error 401: This server could not verify that you\nare authorized to access the document\nrequested.  Either you supplied the wrong\ncredentials (e.g., bad password), or your\nbrowser doesn't understand how to supply\nthe credentials required.",
    );
    match prefix {
        Prefix::Basic => page.with_header("WWW-Authenticate", "Basic realm=\"UFM\""),
        Prefix::Token => page,
    }
}

/// Returns the authenticated user name, if the credentials are good.
fn authenticate(sim: &Sim, prefix: Prefix, req: &Request) -> Option<String> {
    let (scheme, credentials) = req.header("authorization")?.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let credentials = credentials.trim();
    match prefix {
        Prefix::Basic => {
            let decoded = STANDARD.decode(credentials).ok()?;
            let decoded = String::from_utf8(decoded).ok()?;
            let (user, password) = decoded.split_once(':')?;
            (user == sim.settings.user && password == sim.settings.password)
                .then(|| user.to_string())
        }
        Prefix::Token => sim
            .control()
            .tokens
            .iter()
            .find(|t| !t.revoked && t.access_token == credentials)
            .map(|t| t.username.clone()),
    }
}

fn too_long() -> Response {
    apache_page(
        414,
        "The requested URL's length exceeds the capacity\nlimit for this server.",
    )
    .closing()
}

/// Handles any request: `/_sim/` control, or the UFM API (counted in the statistics).
pub fn handle(sim: &Sim, req: &Request) -> Response {
    if req.path == "/_sim" || req.path.starts_with("/_sim/") {
        if req.line_len > REQUEST_LINE_LIMIT {
            return too_long();
        }
        return control::handle(sim, req);
    }
    let route = route_name(req);
    let key = format!("{} {route}", req.method);
    sim.record(&key);
    sim.log_request(&req.method, &route, request_pkey(req, &route), who(req));
    let response = handle_api(sim, req, &route);
    let sent = if response.abort || req.method == "HEAD" {
        0
    } else {
        response.body.len()
    };
    sim.record_bytes(&key, sent);
    response
}

/// Who sent a request, for the request log: the basic-auth user, or `token:<token>`.
fn who(req: &Request) -> String {
    let Some((scheme, credentials)) = req.header("authorization").and_then(|h| h.split_once(' '))
    else {
        return "anonymous".to_string();
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return "unknown".to_string();
    }
    let credentials = credentials.trim();
    match STANDARD
        .decode(credentials)
        .ok()
        .and_then(|d| String::from_utf8(d).ok())
        .and_then(|d| d.split_once(':').map(|(user, _)| user.to_string()))
    {
        Some(user) => user,
        None => format!("token:{credentials}"),
    }
}

/// Whether a request's changes are kept: under a `noop` fault it is answered as usual, but
/// nothing changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Apply {
    Real,
    Noop,
}

/// Runs a fabric change. Under [`Apply::Noop`] it runs on a scratch copy: the answer is the
/// one the real change gets, but the fabric (and its `last_updated`) stays as it was.
pub fn mutate<T>(
    sim: &Sim,
    apply: Apply,
    change: impl FnOnce(&mut Fabric) -> Result<T, FabricError>,
) -> Result<T, FabricError> {
    match apply {
        Apply::Real => change(&mut sim.fabric()),
        Apply::Noop => {
            let mut scratch = sim.fabric().clone();
            change(&mut scratch)
        }
    }
}

/// The UFM API: outages and faults first (no lock is held while waiting), then the route set.
fn handle_api(sim: &Sim, req: &Request, route: &str) -> Response {
    if req.line_len > REQUEST_LINE_LIMIT {
        return too_long();
    }
    if sim.outages.gate() == Gate::Unavailable {
        return fault_page(503);
    }
    if let Some(pause) = sim.take_stall() {
        std::thread::sleep(pause);
    }
    if let Some(status) = sim.take_fail() {
        return fault_page(status);
    }
    let verdict = sim.decide_faults(&req.method, route, &req.query, || request_pkey(req, route));
    if !verdict.delay.is_zero() {
        debug!(
            "fault rules delay {} {route} by {} ms",
            req.method,
            verdict.delay.as_millis()
        );
        std::thread::sleep(verdict.delay);
    }
    if let (Some(outcome), Some(rule)) = (&verdict.outcome, verdict.rule) {
        debug!("fault rule {rule}: {outcome:?} for {} {route}", req.method);
    }
    let apply = match &verdict.outcome {
        Some(Outcome::Status(status)) => return fault_page(*status),
        Some(Outcome::Page(kind, status)) => return page(*kind, *status),
        Some(Outcome::Reset) => return Response::dropped(),
        Some(Outcome::Body(status, text)) => return Response::new(*status, JSON, text.clone()),
        Some(Outcome::Noop) => Apply::Noop,
        Some(Outcome::ApplyAfter(after)) => {
            // No answer: the client gives up first (its timeout), the change lands later.
            std::thread::sleep(*after);
            Apply::Real
        }
        Some(Outcome::ResetAfter) | None => Apply::Real,
    };
    let response = match sim.modes().route_set {
        RouteSet::Full => full_api(sim, req, apply),
        RouteSet::NvidiaMock => mock::handle(sim, req, apply),
    };
    if matches!(
        verdict.outcome,
        Some(Outcome::ResetAfter | Outcome::ApplyAfter(_))
    ) {
        Response::dropped()
    } else {
        response
    }
}

/// The `full` route set.
fn full_api(sim: &Sim, req: &Request, apply: Apply) -> Response {
    let Some((prefix, rest)) = split_prefix(&req.path) else {
        return apache_page(
            404,
            &format!(
                "The requested URL {} was not found on this server.",
                html_escape(&req.path)
            ),
        );
    };
    let Some(user) = authenticate(sim, prefix, req) else {
        return unauthorized(sim, prefix);
    };
    match route(sim, req, rest, &user, apply) {
        Ok(response) | Err(response) => response,
    }
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn error(status: u16, msg: impl Into<String>) -> Response {
    Response::json(status, &json!({ "error": msg.into() }))
}

impl From<FabricError> for Response {
    fn from(e: FabricError) -> Self {
        match e {
            FabricError::BadRequest(m) => error(400, m),
            FabricError::NotFound(m) => error(404, m),
            FabricError::Conflict(m) => Response::json(409, &json!({ "detail": m })),
        }
    }
}

fn mutation_ok(sim: &Sim) -> Response {
    if sim.modes().mutation_body_json {
        Response::new(200, JSON, "{}")
    } else {
        Response::new(200, TEXT, "")
    }
}

fn body<T: for<'de> Deserialize<'de>>(req: &Request) -> Result<T, Response> {
    serde_json::from_slice(&req.body).map_err(|e| error(400, format!("Invalid request body: {e}")))
}

/// A boolean query flag: absent, empty or `false` is false, `true` is true (any case).
fn flag(req: &Request, name: &str) -> Result<bool, Response> {
    match req.query_param(name) {
        None | Some("") => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
        Some(v) => Err(error(
            400,
            format!("Invalid value '{v}' for {name}: expected true or false"),
        )),
    }
}

/// With `unknown_guid=reject404`, refuses GUIDs missing from the known-GUID inventory.
fn check_known(sim: &Sim, pkey: u16, guids: &[u64]) -> Result<(), Response> {
    if pkey == MANAGEMENT_PKEY {
        return Ok(()); // refused as read-only by the fabric
    }
    let control = sim.control();
    if !control.modes.unknown_guid_reject404 {
        return Ok(());
    }
    match guids.iter().find(|g| !control.known_guids.contains(g)) {
        Some(g) => Err(error(
            404,
            format!("InfiniBand port {} does not exist", format_guid(*g)),
        )),
        None => Ok(()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddPartitionBody {
    pkey: String,
    partition_name: Option<String>,
    index0: Option<bool>,
    ip_over_ib: Option<bool>,
    mtu_limit: Option<u64>,
    service_level: Option<u64>,
    rate_limit: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GuidsBody {
    pkey: String,
    guids: Vec<String>,
    membership: Option<String>,
    memberships: Option<Vec<String>>,
    index0: Option<bool>,
    ip_over_ib: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionsAddBody {
    pkey: String,
    guids: Vec<String>,
    default_membership: Option<String>,
    index0: Option<bool>,
    ip_over_ib: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionsRemoveBody {
    pkey: String,
    guids: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QosBody {
    pkey: String,
    mtu_limit: Option<u64>,
    service_level: Option<u64>,
    rate_limit: Option<f64>,
}

fn membership(text: Option<&str>) -> Result<Membership, FabricError> {
    text.map_or(Ok(Membership::Full), Membership::parse)
}

fn route(
    sim: &Sim,
    req: &Request,
    rest: &str,
    user: &str,
    apply: Apply,
) -> Result<Response, Response> {
    let segs = segments(rest);
    let Some(template) = template(rest) else {
        return Ok(error(404, format!("Resource {rest} not found")));
    };
    let response = match (req.method.as_str(), template) {
        ("GET", "/app/ufm_version") => {
            let mut answer = json!({ "ufm_release_version": sim.settings.version });
            if let Some(site) = &sim.settings.site_name {
                answer["site_name"] = json!(site);
            }
            Response::json(200, &answer)
        }
        ("POST", "/app/tokens") => {
            let token = Token {
                access_token: new_token(),
                revoked: false,
                issued_at: now_secs(),
                username: user.to_string(),
            };
            let value = token.to_json();
            if apply == Apply::Real {
                sim.control().tokens.push(token);
            }
            Response::json(200, &value)
        }
        ("GET", "/app/tokens") => {
            let control = sim.control();
            let mine: Vec<Value> = control
                .tokens
                .iter()
                .filter(|t| t.username == user)
                .map(Token::to_json)
                .collect();
            Response::json(200, &Value::Array(mine))
        }
        ("POST", "/app/tokens/revoke") => {
            let Some(wanted) = form_field(req, "token") else {
                return Err(error(400, "missing form field 'token'"));
            };
            let mut control = sim.control();
            match control
                .tokens
                .iter_mut()
                .find(|t| t.access_token == wanted && t.username == user)
            {
                Some(token) => {
                    token.revoked |= apply == Apply::Real;
                    drop(control);
                    mutation_ok(sim)
                }
                None => error(404, "Token not found"),
            }
        }
        ("GET", "/resources/pkeys" | "/actions/get_all_pkeys") => {
            let guids_data = flag(req, "guids_data")?;
            let qos_conf = flag(req, "qos_conf")?;
            let drops_guids = sim.modes().list_both_drops_guids;
            let fabric = sim.fabric();
            match (guids_data, qos_conf) {
                // UFM 6.19.0-1 and 6.21.0-8 answer the QoS view: the GUIDs are silently lost.
                (true, true) if drops_guids => Response::json(200, &fabric.list_qos()),
                (true, true) => Response::new(
                    400,
                    TEXT,
                    "guids_data and qos_conf together are not supported in current UFM version",
                ),
                (true, false) => Response::json(200, &fabric.list_guids()),
                (false, true) => Response::json(200, &fabric.list_qos()),
                (false, false) => Response::json(200, &fabric.list_names()),
            }
        }
        ("GET", "/resources/pkeys/last_updated") => {
            let format = sim.modes().last_updated_format;
            let stamp = sim.fabric().last_updated(format);
            Response::json(200, &json!({ "last_updated": stamp }))
        }
        ("GET", "/resources/pkeys/{pkey}") => {
            let pkey = parse_pkey(segs[2])?;
            let guids_data = flag(req, "guids_data")?;
            let qos_conf = flag(req, "qos_conf")?;
            let view = sim.fabric().view(pkey, guids_data, qos_conf);
            match view {
                Some(value) => Response::json(200, &value),
                None if sim.modes().missing_pkey_404 => {
                    FabricError::NotFound(format!("PKey {} not found", segs[2])).into()
                }
                None => Response::new(200, JSON, "{}"),
            }
        }
        ("DELETE", "/resources/pkeys/{pkey}") => {
            let pkey = parse_pkey(segs[2])?;
            mutate(sim, apply, |f| f.delete(pkey))?;
            mutation_ok(sim)
        }
        ("POST", "/resources/pkeys/add") => {
            let b: AddPartitionBody = body(req)?;
            let pkey = parse_pkey(&b.pkey)?;
            // index0 is accepted; an empty partition has no member for it to apply to.
            let _ = b.index0;
            let qos = Qos::default().with(b.mtu_limit, b.service_level, b.rate_limit)?;
            let spec = NewPartition {
                name: b.partition_name,
                ip_over_ib: b.ip_over_ib,
                qos,
            };
            mutate(sim, apply, |f| f.create(pkey, spec))?;
            mutation_ok(sim)
        }
        ("POST", "/resources/pkeys") => {
            let b: GuidsBody = body(req)?;
            let pkey = parse_pkey(&b.pkey)?;
            let guids = parse_guids(&b.guids)?;
            // UFM 6.19.1 ignores `memberships` on POST: only `membership` counts.
            let member = Member {
                membership: membership(b.membership.as_deref())?,
                index0: b.index0.unwrap_or(false),
            };
            check_known(sim, pkey, &guids)?;
            let ip_over_ib = sim.modes().ipoib_on_add.flag(b.ip_over_ib);
            mutate(sim, apply, |f| {
                f.add_guids(pkey, &guids, member, ip_over_ib)
            })?;
            mutation_ok(sim)
        }
        ("PUT", "/resources/pkeys") => {
            let b: GuidsBody = body(req)?;
            let pkey = parse_pkey(&b.pkey)?;
            let guids = parse_guids(&b.guids)?;
            let index0 = b.index0.unwrap_or(false);
            let memberships = match (&b.membership, &b.memberships) {
                (Some(_), Some(_)) => {
                    return Err(error(400, "'membership' and 'memberships' are exclusive"));
                }
                (_, Some(list)) => {
                    if list.len() != guids.len() {
                        return Err(error(
                            400,
                            "'memberships' must have as many entries as 'guids'",
                        ));
                    }
                    list.iter()
                        .map(|m| Membership::parse(m))
                        .collect::<Result<Vec<_>, _>>()?
                }
                (single, None) => vec![membership(single.as_deref())?; guids.len()],
            };
            let members: Vec<(u64, Member)> = guids
                .iter()
                .zip(memberships)
                .map(|(g, membership)| (*g, Member { membership, index0 }))
                .collect();
            check_known(sim, pkey, &guids)?;
            mutate(sim, apply, |f| f.set_guids(pkey, &members, b.ip_over_ib))?;
            mutation_ok(sim)
        }
        ("PUT", "/resources/pkeys/qos_conf") => {
            let b: QosBody = body(req)?;
            let pkey = parse_pkey(&b.pkey)?;
            mutate(sim, apply, |f| {
                f.set_qos(pkey, b.mtu_limit, b.service_level, b.rate_limit)
            })?;
            mutation_ok(sim)
        }
        ("DELETE", "/resources/pkeys/{pkey}/guids") => {
            let pkey = parse_pkey(segs[2])?;
            let list = segs.get(4).copied().unwrap_or("");
            if list.is_empty() {
                return Err(error(400, "no GUIDs given"));
            }
            let guids = list
                .split(',')
                .map(parse_guid)
                .collect::<Result<Vec<_>, _>>()?;
            mutate(sim, apply, |f| f.remove_guids(pkey, &guids, false))?;
            mutation_ok(sim)
        }
        ("POST", "/actions/remove_guids_from_pkey") => {
            let b: ActionsRemoveBody = body(req)?;
            let pkey = parse_pkey(&b.pkey)?;
            let guids = parse_guids(&b.guids)?;
            mutate(sim, apply, |f| f.remove_guids(pkey, &guids, true))?;
            mutation_ok(sim)
        }
        ("POST", "/actions/add_guids_to_pkey") => {
            let b: ActionsAddBody = body(req)?;
            let pkey = parse_pkey(&b.pkey)?;
            let guids = parse_guids(&b.guids)?;
            let member = Member {
                membership: membership(b.default_membership.as_deref())?,
                index0: b.index0.unwrap_or(false),
            };
            check_known(sim, pkey, &guids)?;
            let ip_over_ib = sim.modes().ipoib_on_add.flag(b.ip_over_ib);
            mutate(sim, apply, |f| {
                f.add_guids(pkey, &guids, member, ip_over_ib)
            })?;
            mutation_ok(sim)
        }
        (method, template) => error(405, format!("Method {method} not allowed on {template}")),
    };
    Ok(response)
}

/// A form field from a `multipart/form-data`, urlencoded or JSON body.
fn form_field(req: &Request, name: &str) -> Option<String> {
    let content_type = req.header("content-type").unwrap_or("");
    let text = String::from_utf8_lossy(&req.body);
    if content_type.starts_with("multipart/form-data") {
        let boundary = content_type
            .split(';')
            .find_map(|p| p.trim().strip_prefix("boundary="))?
            .trim_matches('"');
        let delimiter = format!("--{boundary}");
        return text.split(delimiter.as_str()).find_map(|part| {
            let (head, value) = part.split_once("\r\n\r\n")?;
            let wanted = format!("name=\"{name}\"");
            head.contains(&wanted)
                .then(|| value.trim_end_matches("\r\n").to_string())
        });
    }
    if content_type.starts_with("application/json") {
        let value: Value = serde_json::from_str(&text).ok()?;
        return value.get(name)?.as_str().map(str::to_string);
    }
    text.split('&').find_map(|pair| {
        let (n, v) = pair.split_once('=')?;
        (n == name).then(|| crate::http::percent_decode(v, true))?
    })
}

/// A fresh 30-character alphanumeric access token.
fn new_token() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let rng = rustls::crypto::ring::default_provider().secure_random;
    let mut token = String::with_capacity(30);
    while token.len() < 30 {
        let mut buf = [0u8; 64];
        if rng.fill(&mut buf).is_err() {
            // Not expected; fall back on std's randomly keyed hasher.
            let state = RandomState::new();
            for (i, chunk) in buf.chunks_mut(8).enumerate() {
                chunk.copy_from_slice(&state.hash_one(i).to_le_bytes());
            }
        }
        for b in buf {
            // 248 = 4 * 62 keeps the distribution uniform.
            if b < 248 && token.len() < 30 {
                token.push(char::from(ALPHABET[usize::from(b % 62)]));
            }
        }
    }
    token
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates() {
        assert_eq!(template("/resources/pkeys/"), Some("/resources/pkeys"));
        assert_eq!(
            template("/resources/pkeys/0x5/guids/a,b"),
            Some("/resources/pkeys/{pkey}/guids")
        );
        assert_eq!(
            template("/resources/pkeys/0x5"),
            Some("/resources/pkeys/{pkey}")
        );
        assert_eq!(template("/resources/ports"), None);
        assert_eq!(
            split_prefix("/ufmRestV3/app/ufm_version"),
            Some((Prefix::Token, "/app/ufm_version"))
        );
        assert_eq!(split_prefix("/ufmRestV2/x"), None);
    }

    #[test]
    fn every_template_is_a_known_route() {
        for path in [
            "/app/ufm_version",
            "/app/tokens",
            "/app/tokens/revoke",
            "/resources/pkeys",
            "/resources/pkeys/add",
            "/resources/pkeys/qos_conf",
            "/resources/pkeys/last_updated",
            "/resources/pkeys/0x5",
            "/resources/pkeys/0x5/guids/a",
            "/actions/remove_guids_from_pkey",
            "/actions/add_guids_to_pkey",
            "/actions/get_all_pkeys",
        ] {
            let t = template(path).unwrap_or("none");
            assert!(ROUTES.contains(&t), "{path} -> {t}");
        }
    }

    #[test]
    fn request_pkey_comes_from_the_path_or_the_body() {
        let mut req = Request {
            path: "/ufmRest/resources/pkeys/0x0A12/guids/x".into(),
            ..Request::default()
        };
        assert_eq!(
            request_pkey(&req, "/resources/pkeys/{pkey}/guids"),
            Some(0xa12)
        );
        req.path = "/ufmRestV3/resources/pkeys".into();
        req.body = br#"{"pkey": "0x31a", "guids": []}"#.to_vec();
        assert_eq!(request_pkey(&req, "/resources/pkeys"), Some(0x31a));
        req.body = br#"{"pkey": "10"}"#.to_vec();
        assert_eq!(request_pkey(&req, "/resources/pkeys"), Some(10));
        req.body = b"not json".to_vec();
        assert_eq!(request_pkey(&req, "/resources/pkeys"), None);
    }

    #[test]
    fn tokens_are_30_alphanumerics() {
        let a = new_token();
        assert_eq!(a.len(), 30);
        assert!(a.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(a, new_token());
    }
}
