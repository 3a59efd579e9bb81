//! The simulator's shared state ([`Sim`]: fabric, request statistics, armed faults and fault
//! rules, outages, behaviour modes, access tokens) and the test-control interface under
//! `/_sim/`, which is not part of UFM: no auth, not counted in the statistics, never faulted
//! (but unreachable during a `refuse` outage, like the rest of the port).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use log::info;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::faults::{FaultRules, RequestFacts, RuleSpec, Verdict};
use crate::http::{Request, Response};
use crate::outage::{self, Outages};
use crate::state::{Fabric, FabricError, StampFormat, format_guid, format_pkey, parse_guid};

/// Which PKey routes are served, and how (see [`crate::mock`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RouteSet {
    /// Every route in the reference, under `/ufmRest` and `/ufmRestV3`.
    #[default]
    Full,
    /// Exactly what NVIDIA's Rust UFM mock serves.
    NvidiaMock,
}

impl RouteSet {
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "full" => Ok(Self::Full),
            "nvidia-mock" => Ok(Self::NvidiaMock),
            other => Err(format!(
                "invalid route_set '{other}': expected full or nvidia-mock"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::NvidiaMock => "nvidia-mock",
        }
    }
}

/// What an add (POST `/resources/pkeys`, `/actions/add_guids_to_pkey`) does to the
/// partition's `ip_over_ib` flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IpoibOnAdd {
    /// The flag changes only when the request has the field.
    #[default]
    Keep,
    /// Every add sets the flag; a request without the field sets it to `true` (UFM's
    /// documented default), as NVIDIA's mock overwrites it on every add.
    Follow,
}

impl IpoibOnAdd {
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "keep" => Ok(Self::Keep),
            "follow" => Ok(Self::Follow),
            other => Err(format!(
                "invalid ipoib_on_add '{other}': expected keep or follow"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Keep => "keep",
            Self::Follow => "follow",
        }
    }

    /// The flag to store for a request that carried `requested`.
    pub fn flag(self, requested: Option<bool>) -> Option<bool> {
        match self {
            Self::Keep => requested,
            Self::Follow => Some(requested.unwrap_or(true)),
        }
    }
}

/// Behaviour where real UFM is unknown or varies (spec §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Modes {
    /// GET of a missing pkey: `true` → 404, `false` → 200 `{}`.
    pub missing_pkey_404: bool,
    /// Bad credentials: `true` → 200 HTML login page, `false` → 401 HTML.
    pub auth_login200: bool,
    /// GUIDs not in the known-GUID inventory: `true` → 404 for the whole request.
    pub unknown_guid_reject404: bool,
    /// Successful mutations: `true` → body `{}`, `false` → empty body.
    pub mutation_body_json: bool,
    /// The list with both `guids_data` and `qos_conf`: `true` → the QoS view without GUIDs
    /// (UFM 6.19.0-1, 6.21.0-8), `false` → 400 "not supported" (nvbug 5409095).
    pub list_both_drops_guids: bool,
    pub route_set: RouteSet,
    pub ipoib_on_add: IpoibOnAdd,
    pub last_updated_format: StampFormat,
}

impl Modes {
    pub fn to_json(self) -> Value {
        json!({
            "missing_pkey": if self.missing_pkey_404 { "404" } else { "empty200" },
            "auth_failure": if self.auth_login200 { "login200" } else { "401" },
            "unknown_guid": if self.unknown_guid_reject404 { "reject404" } else { "accept" },
            "mutation_body": if self.mutation_body_json { "{}" } else { "empty" },
            "list_guids_and_qos": if self.list_both_drops_guids { "drop_guids" } else { "400" },
            "route_set": self.route_set.as_str(),
            "ipoib_on_add": self.ipoib_on_add.as_str(),
            "last_updated_format": self.last_updated_format.as_str(),
        })
    }
}

/// Parses one of the two-valued modes (`missing_pkey`, `auth_failure`, `unknown_guid`,
/// `mutation_body`, `list_guids_and_qos`).
pub fn parse_mode(name: &str, value: &str) -> Result<bool, String> {
    match (name, value) {
        ("missing_pkey", "empty200") => Ok(false),
        ("missing_pkey", "404") => Ok(true),
        ("auth_failure", "401") => Ok(false),
        ("auth_failure", "login200") => Ok(true),
        ("unknown_guid", "accept") => Ok(false),
        ("unknown_guid", "reject404") => Ok(true),
        ("mutation_body", "empty") => Ok(false),
        ("mutation_body", "{}") => Ok(true),
        ("list_guids_and_qos", "400") => Ok(false),
        ("list_guids_and_qos", "drop_guids") => Ok(true),
        _ => Err(format!("invalid {name} mode '{value}'")),
    }
}

/// An access token.
#[derive(Debug, Clone)]
pub struct Token {
    pub access_token: String,
    pub revoked: bool,
    pub issued_at: u64,
    pub username: String,
}

impl Token {
    pub fn to_json(&self) -> Value {
        json!({
            "access_token": self.access_token,
            "revoked": self.revoked,
            "issued_at": self.issued_at,
            "expires_in": 315_360_000u64,
            "username": self.username,
        })
    }
}

/// Settings fixed at start-up.
#[derive(Debug, Clone)]
pub struct Settings {
    pub user: String,
    pub password: String,
    pub version: String,
    /// UFM's `site_name` (gv.cfg `expose_site_name=true`), in its version answer.
    pub site_name: Option<String>,
    pub modes: Modes,
    pub tokens: Vec<String>,
}

/// Everything but the fabric and the outages that requests change.
#[derive(Debug, Default)]
pub struct Control {
    pub total: u64,
    pub requests: BTreeMap<String, u64>,
    /// Response body bytes sent, per statistics key.
    pub bytes: BTreeMap<String, u64>,
    pub bytes_total: u64,
    /// Next `fail_count` API requests are answered with `fail_status`.
    pub fail_count: u64,
    pub fail_status: u16,
    /// Next `stall_count` API requests wait `stall_ms` first.
    pub stall_count: u64,
    pub stall_ms: u64,
    pub faults: FaultRules,
    pub modes: Modes,
    pub tokens: Vec<Token>,
    /// Port inventory for `unknown_guid=reject404` (and the `nvidia-mock` route set).
    pub known_guids: BTreeSet<u64>,
    /// The last API requests, oldest first (`GET /_sim/log`).
    pub log: std::collections::VecDeque<LogEntry>,
}

/// Requests kept in the request log; older ones are dropped.
const LOG_LIMIT: usize = 20_000;

/// One API request in the log: when it arrived, what it was, and who sent it.
#[derive(Debug, Clone)]
pub struct LogEntry {
    /// Milliseconds since the Unix epoch, when the request arrived (before any fault delay).
    pub at_ms: u64,
    pub method: String,
    pub route: String,
    pub pkey: Option<u16>,
    /// The basic-auth user, `token:<token>`, or `anonymous`.
    pub who: String,
}

/// The whole simulator, shared by the connection threads.
pub struct Sim {
    pub settings: Settings,
    pub outages: Arc<Outages>,
    fabric: Mutex<Fabric>,
    control: Mutex<Control>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking handler must not take the whole simulator down with it.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

impl Sim {
    pub fn new(settings: Settings) -> Self {
        let control = Control {
            modes: settings.modes,
            tokens: Self::cli_tokens(&settings),
            ..Control::default()
        };
        Self {
            fabric: Mutex::new(Fabric::new()),
            control: Mutex::new(control),
            outages: Arc::new(Outages::default()),
            settings,
        }
    }

    fn cli_tokens(settings: &Settings) -> Vec<Token> {
        let issued_at = now_secs();
        settings
            .tokens
            .iter()
            .map(|t| Token {
                access_token: t.clone(),
                revoked: false,
                issued_at,
                username: settings.user.clone(),
            })
            .collect()
    }

    pub fn fabric(&self) -> MutexGuard<'_, Fabric> {
        lock(&self.fabric)
    }

    pub fn control(&self) -> MutexGuard<'_, Control> {
        lock(&self.control)
    }

    /// Counts one API request under `key` (`"<METHOD> <route template>"`).
    /// Adds one API request to the request log.
    pub fn log_request(&self, method: &str, route: &str, pkey: Option<u16>, who: String) {
        let at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default();
        let mut control = self.control();
        if control.log.len() >= LOG_LIMIT {
            control.log.pop_front();
        }
        control.log.push_back(LogEntry {
            at_ms,
            method: method.to_string(),
            route: route.to_string(),
            pkey,
            who,
        });
    }

    pub fn record(&self, key: &str) {
        let mut control = self.control();
        control.total += 1;
        *control.requests.entry(key.to_string()).or_default() += 1;
    }

    /// Counts the response body bytes sent for a request counted under `key`.
    pub fn record_bytes(&self, key: &str, bytes: usize) {
        let mut control = self.control();
        let bytes = bytes as u64;
        control.bytes_total += bytes;
        *control.bytes.entry(key.to_string()).or_default() += bytes;
    }

    /// Consumes one armed stall, returning how long to wait.
    pub fn take_stall(&self) -> Option<Duration> {
        let mut control = self.control();
        (control.stall_count > 0).then(|| {
            control.stall_count -= 1;
            Duration::from_millis(control.stall_ms)
        })
    }

    /// Consumes one armed failure, returning its status.
    pub fn take_fail(&self) -> Option<u16> {
        let mut control = self.control();
        (control.fail_count > 0).then(|| {
            control.fail_count -= 1;
            control.fail_status
        })
    }

    /// Matches a request against the fault rules. `pkey` finds the request's PKey; it is
    /// called (without any lock held) only when some rule selects by PKey.
    pub fn decide_faults(
        &self,
        method: &str,
        route: &str,
        query: &[(String, String)],
        pkey: impl FnOnce() -> Option<u16>,
    ) -> Verdict {
        let needs_pkey = {
            let control = self.control();
            if control.faults.is_empty() {
                return Verdict::default();
            }
            control.faults.needs_pkey()
        };
        let facts = RequestFacts {
            method,
            route,
            pkey: if needs_pkey { pkey() } else { None },
            query,
        };
        self.control().faults.decide(&facts, Instant::now())
    }

    pub fn modes(&self) -> Modes {
        self.control().modes
    }

    /// Every fault: rules, outage, and the `/_sim/fail` and `/_sim/stall` counters.
    fn clear_faults(&self) {
        {
            let mut control = self.control();
            control.faults.clear();
            control.fail_count = 0;
            control.stall_count = 0;
        }
        self.outages.clear();
    }

    fn faults_json(&self) -> Value {
        let mut control = self.control();
        let rules = control.faults.listing(Instant::now());
        json!({
            "rules": rules,
            "fail": {"count": control.fail_count, "status": control.fail_status},
            "stall": {"count": control.stall_count, "ms": control.stall_ms},
            "outage": self.outages.to_json(),
        })
    }
}

fn ok(value: Value) -> Response {
    Response::json(200, &value)
}

fn error(status: u16, msg: impl Into<String>) -> Response {
    Response::json(status, &json!({ "error": msg.into() }))
}

fn body<T: for<'de> Deserialize<'de>>(req: &Request) -> Result<T, Response> {
    serde_json::from_slice(&req.body).map_err(|e| error(400, format!("Invalid body: {e}")))
}

fn fabric_message(e: FabricError) -> String {
    match e {
        FabricError::BadRequest(m) | FabricError::NotFound(m) | FabricError::Conflict(m) => m,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FailBody {
    count: Option<u64>,
    status: Option<u16>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StallBody {
    count: Option<u64>,
    ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultsBody {
    rules: Vec<RuleSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OutageBody {
    seconds: f64,
    mode: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigBody {
    missing_pkey: Option<String>,
    auth_failure: Option<String>,
    unknown_guid: Option<String>,
    mutation_body: Option<String>,
    list_guids_and_qos: Option<String>,
    route_set: Option<String>,
    ipoib_on_add: Option<String>,
    last_updated_format: Option<String>,
}

/// Applies every given setting, or none when one is invalid.
fn apply_config(modes: &mut Modes, cfg: ConfigBody) -> Result<(), String> {
    let mut next = *modes;
    for (name, value, slot) in [
        ("missing_pkey", cfg.missing_pkey, &mut next.missing_pkey_404),
        ("auth_failure", cfg.auth_failure, &mut next.auth_login200),
        (
            "unknown_guid",
            cfg.unknown_guid,
            &mut next.unknown_guid_reject404,
        ),
        (
            "mutation_body",
            cfg.mutation_body,
            &mut next.mutation_body_json,
        ),
        (
            "list_guids_and_qos",
            cfg.list_guids_and_qos,
            &mut next.list_both_drops_guids,
        ),
    ] {
        if let Some(value) = value {
            *slot = parse_mode(name, &value)?;
        }
    }
    if let Some(value) = cfg.route_set {
        next.route_set = RouteSet::parse(&value)?;
    }
    if let Some(value) = cfg.ipoib_on_add {
        next.ipoib_on_add = IpoibOnAdd::parse(&value)?;
    }
    if let Some(value) = cfg.last_updated_format {
        next.last_updated_format = StampFormat::parse(&value)?;
    }
    *modes = next;
    Ok(())
}

/// Handles a request under `/_sim/`.
pub fn handle(sim: &Sim, req: &Request) -> Response {
    match handle_inner(sim, req) {
        Ok(response) | Err(response) => response,
    }
}

/// The control endpoints and the methods each accepts (for 405 versus 404).
const ENDPOINTS: &[&str] = &[
    "/_sim/stats",
    "/_sim/log",
    "/_sim/stats/reset",
    "/_sim/fail",
    "/_sim/stall",
    "/_sim/faults",
    "/_sim/outage",
    "/_sim/config",
    "/_sim/state",
    "/_sim/known_guids",
    "/_sim/drop_guids",
    "/_sim/reset",
];

fn handle_inner(sim: &Sim, req: &Request) -> Result<Response, Response> {
    let path = req.path.trim_end_matches('/');
    let response = match (req.method.as_str(), path) {
        ("GET", "/_sim/stats") => {
            let control = sim.control();
            ok(json!({
                "total": control.total,
                "requests": control.requests,
                "bytes": control.bytes,
                "bytes_total": control.bytes_total,
            }))
        }
        ("GET", "/_sim/log") => {
            let control = sim.control();
            let entries: Vec<Value> = control
                .log
                .iter()
                .map(|e| {
                    json!({
                        "at_ms": e.at_ms,
                        "method": e.method,
                        "route": e.route,
                        "pkey": e.pkey.map(format_pkey),
                        "who": e.who,
                    })
                })
                .collect();
            ok(json!(entries))
        }
        ("DELETE", "/_sim/log") => {
            sim.control().log.clear();
            ok(json!({}))
        }
        ("POST", "/_sim/stats/reset") => {
            let mut control = sim.control();
            control.total = 0;
            control.requests.clear();
            control.bytes.clear();
            control.bytes_total = 0;
            ok(json!({}))
        }
        ("POST", "/_sim/fail") => {
            let b: FailBody = body(req)?;
            let status = b.status.unwrap_or(503);
            if !(100..=599).contains(&status) {
                return Err(error(400, "status must be 100-599"));
            }
            let mut control = sim.control();
            control.fail_count = b.count.unwrap_or(1);
            control.fail_status = status;
            ok(json!({ "count": control.fail_count, "status": status }))
        }
        ("POST", "/_sim/stall") => {
            let b: StallBody = body(req)?;
            let mut control = sim.control();
            control.stall_count = b.count.unwrap_or(1);
            control.stall_ms = b.ms.unwrap_or(1000);
            ok(json!({ "count": control.stall_count, "ms": control.stall_ms }))
        }
        ("GET", "/_sim/faults") => ok(sim.faults_json()),
        ("POST", "/_sim/faults") => {
            let b: FaultsBody = body(req)?;
            let added = sim
                .control()
                .faults
                .add(b.rules, Instant::now(), crate::api::ROUTES)
                .map_err(|e| error(400, e))?;
            info!("fault rules added: {added:?}");
            let mut listing = sim.faults_json();
            listing["added"] = json!(added);
            ok(listing)
        }
        ("DELETE", "/_sim/faults") => {
            sim.clear_faults();
            info!("all faults cleared");
            ok(sim.faults_json())
        }
        ("GET", "/_sim/outage") => ok(sim.outages.to_json()),
        ("POST", "/_sim/outage") => start_outage(sim, req)?,
        ("DELETE", "/_sim/outage") => {
            sim.outages.clear();
            ok(sim.outages.to_json())
        }
        ("GET", "/_sim/config") => ok(sim.modes().to_json()),
        ("POST", "/_sim/config") => {
            let b: ConfigBody = body(req)?;
            let mut control = sim.control();
            apply_config(&mut control.modes, b).map_err(|e| error(400, e))?;
            ok(control.modes.to_json())
        }
        ("GET", "/_sim/state") => ok(sim.fabric().snapshot()),
        ("POST", "/_sim/state") => {
            let value: Value = body(req)?;
            sim.fabric()
                .load(value)
                .map_err(|e| error(400, fabric_message(e)))?;
            ok(json!({}))
        }
        ("GET", "/_sim/known_guids") => {
            let control = sim.control();
            let guids: Vec<String> = control
                .known_guids
                .iter()
                .map(|g| format_guid(*g))
                .collect();
            ok(json!(guids))
        }
        ("POST", "/_sim/known_guids") => {
            let guids = guid_list(req)?;
            sim.control().known_guids = guids.into_iter().collect();
            ok(json!({}))
        }
        ("POST", "/_sim/drop_guids") => {
            let guids = guid_list(req)?;
            let (removed, deleted) = sim.fabric().drop_guids(&guids);
            let deleted: Vec<String> = deleted.into_iter().map(format_pkey).collect();
            ok(json!({ "removed": removed, "deleted_partitions": deleted }))
        }
        ("POST", "/_sim/reset") => {
            *sim.fabric() = Fabric::new();
            {
                let mut control = sim.control();
                let tokens = std::mem::take(&mut control.tokens);
                *control = Control {
                    modes: sim.settings.modes,
                    tokens,
                    ..Control::default()
                };
            }
            sim.outages.clear();
            ok(json!({}))
        }
        (method, _) if ENDPOINTS.contains(&path) => {
            error(405, format!("{method} not allowed on {path}"))
        }
        _ => error(404, format!("no such control endpoint {path}")),
    };
    Ok(response)
}

/// A JSON array of GUID strings.
fn guid_list(req: &Request) -> Result<Vec<u64>, Response> {
    let texts: Vec<String> = body(req)?;
    texts
        .iter()
        .map(|t| parse_guid(t))
        .collect::<Result<Vec<u64>, _>>()
        .map_err(|e| error(400, fabric_message(e)))
}

/// `POST /_sim/outage`. A `refuse` outage closes the asking connection after the answer.
fn start_outage(sim: &Sim, req: &Request) -> Result<Response, Response> {
    let b: OutageBody = body(req)?;
    let mode = outage::Mode::parse(&b.mode).map_err(|e| error(400, e))?;
    if !(b.seconds > 0.0 && b.seconds <= outage::MAX_SECONDS) {
        return Err(error(
            400,
            format!(
                "seconds {} is not in (0, {}]",
                b.seconds,
                outage::MAX_SECONDS
            ),
        ));
    }
    let seconds = Duration::from_secs_f64(b.seconds);
    let refuse = mode == outage::Mode::Refuse;
    sim.outages.start(mode, seconds, refuse.then_some(req.conn));
    let response = ok(sim.outages.to_json());
    Ok(if refuse { response.closing() } else { response })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_all_or_nothing() {
        let mut modes = Modes::default();
        let good: ConfigBody = serde_json::from_value(json!({
            "route_set": "nvidia-mock", "ipoib_on_add": "follow",
            "last_updated_format": "ctime", "list_guids_and_qos": "drop_guids"
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(apply_config(&mut modes, good), Ok(()));
        assert_eq!(modes.route_set, RouteSet::NvidiaMock);
        assert_eq!(modes.ipoib_on_add, IpoibOnAdd::Follow);
        assert_eq!(modes.last_updated_format, StampFormat::Ctime);
        assert!(modes.list_both_drops_guids);

        let bad: ConfigBody =
            serde_json::from_value(json!({"missing_pkey": "404", "route_set": "ufm-6.9"}))
                .unwrap_or_else(|e| panic!("{e}"));
        let before = modes;
        assert!(apply_config(&mut modes, bad).is_err_and(|e| e.contains("route_set")));
        assert_eq!(modes, before);
        assert_eq!(modes.to_json()["route_set"], "nvidia-mock");
    }

    #[test]
    fn ipoib_follow_sets_the_flag_on_every_add() {
        assert_eq!(IpoibOnAdd::Keep.flag(None), None);
        assert_eq!(IpoibOnAdd::Keep.flag(Some(false)), Some(false));
        assert_eq!(IpoibOnAdd::Follow.flag(None), Some(true));
        assert_eq!(IpoibOnAdd::Follow.flag(Some(false)), Some(false));
    }
}
