//! The fault-rule engine behind `/_sim/faults`: parsing and checking rules sent by a test,
//! matching them against API requests, and their lifetimes (a number of requests, a number of
//! seconds). Pure data and rules, no I/O and no clock reads: callers pass `now`, and carry out
//! the [`Verdict`] (sleep, answer, drop the connection) themselves, outside every lock.
//!
//! How rules combine (checked in the order they were added, expired ones dropped first):
//! - The delays of **every** matching rule add up.
//! - The **first** matching rule with an outcome (`status`, `page`, `noop`, `reset`,
//!   `reset_after`, `apply_after_ms`, `body`) decides the outcome; later outcome rules are not
//!   consulted.
//! - `status` alone answers Apache's error page for that status; with `body`, that body (JSON,
//!   or a string as it is) with that status. `page` answers a web page
//!   instead of the API, with `status` (default 200), as UFM behind Apache does while it
//!   restarts or fails over: `"apache"` (Apache's "service unavailable" page), `"login"` (UFM's
//!   page to log in: a form with `httpd_username`, `httpd_password`, posting to `/dologin`),
//!   `"text"` (a plain-text line, not JSON). Nothing is applied.
//! - A rule counts a request (`count` goes down, `hits` up) when it contributed to it: its delay
//!   was added or its outcome chosen. A rule whose outcome lost to an earlier one and that has
//!   no delay is left alone.
//! - A `noop` rule only ever matches writes (anything but GET and HEAD): a read has nothing
//!   to leave unapplied.
//! - `apply_after_ms` (writes only, like `noop`) answers nothing: the request's change is
//!   applied that many milliseconds after it arrived (after the delays), then the connection
//!   is dropped. With a client timeout shorter than that, this is a write that timed out at
//!   the client and landed in UFM later, as a UFM busy committing to its database does.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value, json};

use crate::state::{format_pkey, parse_pkey};

/// Longest delay a rule may ask for (10 minutes).
const MAX_DELAY_MS: u64 = 600_000;
/// Longest lifetime a rule may ask for (one day).
const MAX_SECONDS: f64 = 86_400.0;

/// Which methods a rule applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MethodSel {
    Any,
    /// Anything but GET and HEAD.
    Write,
    Exact(String),
}

impl MethodSel {
    fn parse(text: &str) -> Result<Self, String> {
        match text {
            "*" => Ok(Self::Any),
            "WRITE" => Ok(Self::Write),
            "GET" | "POST" | "PUT" | "DELETE" | "HEAD" | "PATCH" => Ok(Self::Exact(text.into())),
            other => Err(format!(
                "method '{other}' is not one of GET, POST, PUT, DELETE, HEAD, PATCH, WRITE, *"
            )),
        }
    }

    fn matches(&self, method: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Write => !is_read(method),
            Self::Exact(m) => m == method,
        }
    }

    fn as_str(&self) -> &str {
        match self {
            Self::Any => "*",
            Self::Write => "WRITE",
            Self::Exact(m) => m,
        }
    }
}

fn is_read(method: &str) -> bool {
    matches!(method, "GET" | "HEAD")
}

/// What a matching rule does to the request, besides its delay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Answer this status (200 unless the rule gives one) with this JSON body instead (an
    /// incomplete or odd answer, as a proxy or a restarting UFM gives, or an error of UFM's
    /// own); apply nothing.
    Body(u16, String),
    /// Answer this status with an Apache error page; apply nothing.
    Status(u16),
    /// Answer this page with this status instead of the API; apply nothing.
    Page(PageKind, u16),
    /// Answer as a successful mutation would, but change nothing.
    Noop,
    /// Close the connection without answering; apply nothing.
    Reset,
    /// Apply the request, then close the connection without answering.
    ResetAfter,
    /// Answer nothing; apply the request this long after it arrived, then close the
    /// connection.
    ApplyAfter(Duration),
}

impl Outcome {
    /// Whether only writes can have this outcome: a read has nothing to leave unapplied or
    /// to apply late.
    fn writes_only(&self) -> bool {
        matches!(self, Outcome::Noop | Outcome::ApplyAfter(_))
    }
}

/// Which page a `page` rule answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageKind {
    /// Apache's page while the application behind it is down.
    Apache,
    /// UFM's page to log in.
    Login,
    /// One line of plain text.
    Text,
}

impl PageKind {
    fn parse(text: &str) -> Result<Self, String> {
        match text {
            "apache" => Ok(Self::Apache),
            "login" => Ok(Self::Login),
            "text" => Ok(Self::Text),
            other => Err(format!("page '{other}' is not one of apache, login, text")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Apache => "apache",
            Self::Login => "login",
            Self::Text => "text",
        }
    }
}

/// One active rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub id: u64,
    method: MethodSel,
    /// A route template, or `None` for any route.
    route: Option<String>,
    pkey: Option<u16>,
    query: Vec<(String, String)>,
    delay: Option<Duration>,
    outcome: Option<Outcome>,
    /// Requests it may still affect; `None` is unlimited.
    remaining: Option<u64>,
    count: Option<u64>,
    /// When it stops applying; `None` is never.
    expires: Option<Instant>,
    seconds: Option<f64>,
    hits: u64,
}

impl Rule {
    fn matches(&self, req: &RequestFacts) -> bool {
        self.method.matches(req.method)
            && self.route.as_deref().is_none_or(|r| r == req.route)
            && self.pkey.is_none_or(|p| req.pkey == Some(p))
            && self
                .query
                .iter()
                .all(|(name, value)| req.query_value(name) == Some(value.as_str()))
            && !(self.outcome.as_ref().is_some_and(Outcome::writes_only) && is_read(req.method))
    }

    fn expired(&self, now: Instant) -> bool {
        self.remaining == Some(0) || self.expires.is_some_and(|t| now >= t)
    }

    /// Whether [`Rule::pkey`] is set, so the caller must find the request's PKey.
    fn needs_pkey(&self) -> bool {
        self.pkey.is_some()
    }

    fn to_json(&self, now: Instant) -> Value {
        let (status, noop, reset, reset_after) = match &self.outcome {
            Some(Outcome::Status(s) | Outcome::Page(_, s) | Outcome::Body(s, _)) => {
                (Some(*s), false, false, false)
            }
            Some(Outcome::Noop) => (None, true, false, false),
            Some(Outcome::Reset) => (None, false, true, false),
            Some(Outcome::ResetAfter) => (None, false, false, true),
            Some(Outcome::ApplyAfter(_)) | None => (None, false, false, false),
        };
        let apply_after_ms = match &self.outcome {
            Some(Outcome::ApplyAfter(after)) => Some(after.as_millis() as u64),
            _ => None,
        };
        let body = match &self.outcome {
            Some(Outcome::Body(_, text)) => Some(text.clone()),
            _ => None,
        };
        let page = match &self.outcome {
            Some(Outcome::Page(kind, _)) => Some(kind.as_str()),
            _ => None,
        };
        let query: serde_json::Map<String, Value> = self
            .query
            .iter()
            .map(|(n, v)| (n.clone(), Value::String(v.clone())))
            .collect();
        json!({
            "id": self.id,
            "method": self.method.as_str(),
            "route": self.route.as_deref().unwrap_or("*"),
            "pkey": self.pkey.map(format_pkey),
            "query": query,
            "delay_ms": self.delay.map(|d| d.as_millis() as u64),
            "status": status,
            "page": page,
            "noop": noop,
            "reset": reset,
            "reset_after": reset_after,
            "apply_after_ms": apply_after_ms,
            "body": body,
            "count": self.count,
            "remaining": self.remaining,
            "seconds": self.seconds,
            "seconds_left": self
                .expires
                .map(|t| round_ms(t.saturating_duration_since(now))),
            "hits": self.hits,
        })
    }
}

fn round_ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

/// A rule as a test sends it (`POST /_sim/faults`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    method: Option<String>,
    route: Option<String>,
    pkey: Option<Value>,
    query: Option<BTreeMap<String, Value>>,
    delay_ms: Option<u64>,
    status: Option<u16>,
    page: Option<String>,
    noop: Option<bool>,
    reset: Option<bool>,
    reset_after: Option<bool>,
    apply_after_ms: Option<u64>,
    body: Option<Value>,
    count: Option<u64>,
    seconds: Option<f64>,
}

fn spec_pkey(value: &Value) -> Result<u16, String> {
    let pkey = match value {
        Value::String(text) => parse_pkey(text).ok(),
        Value::Number(n) => n
            .as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .filter(|n| (1..=0x7fff).contains(n)),
        _ => None,
    };
    pkey.ok_or_else(|| format!("pkey {value} is not a PKey such as \"0x1a2\" (0x1-0x7fff)"))
}

fn spec_query(query: BTreeMap<String, Value>) -> Result<Vec<(String, String)>, String> {
    query
        .into_iter()
        .map(|(name, value)| match value {
            Value::String(s) => Ok((name, s)),
            Value::Bool(b) => Ok((name, b.to_string())),
            Value::Number(n) => Ok((name, n.to_string())),
            other => Err(format!(
                "query value for '{name}' must be a string, not {other}"
            )),
        })
        .collect()
}

fn spec_outcome(spec: &RuleSpec) -> Result<Option<Outcome>, String> {
    let mut outcomes = Vec::new();
    if let Some(status) = spec.status {
        if !(100..=599).contains(&status) {
            return Err(format!("status {status} is not 100-599"));
        }
        outcomes.push(Outcome::Status(status));
    }
    if let Some(page) = &spec.page {
        let kind = PageKind::parse(page)?;
        // With a status, the page replaces the error page of that status: one outcome.
        let status = match outcomes.pop() {
            Some(Outcome::Status(status)) => status,
            _ => 200,
        };
        outcomes.push(Outcome::Page(kind, status));
    }
    for (flag, outcome) in [
        (spec.noop, Outcome::Noop),
        (spec.reset, Outcome::Reset),
        (spec.reset_after, Outcome::ResetAfter),
    ] {
        if flag == Some(true) {
            outcomes.push(outcome);
        }
    }
    match spec.apply_after_ms {
        Some(0) => return Err("apply_after_ms must be at least 1".into()),
        Some(ms) if ms > MAX_DELAY_MS => {
            return Err(format!("apply_after_ms {ms} is over {MAX_DELAY_MS}"));
        }
        Some(ms) => outcomes.push(Outcome::ApplyAfter(Duration::from_millis(ms))),
        None => {}
    }
    if let Some(body) = &spec.body {
        // A string is sent as it is (not JSON-encoded); anything else as its JSON.
        let text = match body {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        // With a status, the body replaces the error page of that status: one outcome.
        let status = match outcomes.last() {
            Some(Outcome::Status(status)) => {
                let status = *status;
                outcomes.pop();
                status
            }
            _ => 200,
        };
        outcomes.push(Outcome::Body(status, text));
    }
    match outcomes.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one.clone())),
        _ => Err(
            "give at most one of status (or page), noop, reset, reset_after, apply_after_ms, body"
                .into(),
        ),
    }
}

impl RuleSpec {
    /// Checks the spec and turns it into a rule. `routes` are the valid route templates.
    fn into_rule(self, id: u64, now: Instant, routes: &[&str]) -> Result<Rule, String> {
        let method = MethodSel::parse(self.method.as_deref().unwrap_or("*"))?;
        let route = match self.route.as_deref() {
            None | Some("*") => None,
            Some(r) if routes.contains(&r) => Some(r.to_string()),
            Some(r) => {
                return Err(format!(
                    "route '{r}' is not a route template; use one of {}",
                    routes.join(", ")
                ));
            }
        };
        let pkey = self.pkey.as_ref().map(spec_pkey).transpose()?;
        let query = spec_query(self.query.clone().unwrap_or_default())?;
        let outcome = spec_outcome(&self)?;
        let delay = match self.delay_ms {
            Some(ms) if ms > MAX_DELAY_MS => {
                return Err(format!("delay_ms {ms} is over {MAX_DELAY_MS}"));
            }
            Some(ms) => Some(Duration::from_millis(ms)),
            None => None,
        };
        if delay.is_none() && outcome.is_none() {
            return Err(
                "the rule has no effect: give delay_ms, status, page, noop, reset, reset_after, apply_after_ms or body"
                    .into(),
            );
        }
        if self.count == Some(0) {
            return Err("count must be at least 1 (leave it out for no limit)".into());
        }
        let expires = match self.seconds {
            Some(s) if !(s > 0.0 && s <= MAX_SECONDS) => {
                return Err(format!("seconds {s} is not in (0, {MAX_SECONDS}]"));
            }
            Some(s) => Some(now + Duration::from_secs_f64(s)),
            None => None,
        };
        Ok(Rule {
            id,
            method,
            route,
            pkey,
            query,
            delay,
            outcome,
            remaining: self.count,
            count: self.count,
            expires,
            seconds: self.seconds,
            hits: 0,
        })
    }
}

/// What the engine knows about a request.
#[derive(Debug, Clone)]
pub struct RequestFacts<'a> {
    pub method: &'a str,
    /// The route template (as in `/_sim/stats`), or the path below the prefix.
    pub route: &'a str,
    /// The PKey the request is about, if any (only looked for when a rule needs it).
    pub pkey: Option<u16>,
    pub query: &'a [(String, String)],
}

impl RequestFacts<'_> {
    fn query_value(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Verdict {
    /// Wait this long before handling it.
    pub delay: Duration,
    pub outcome: Option<Outcome>,
    /// The rule that chose the outcome.
    pub rule: Option<u64>,
}

/// The active rules, in the order they were added.
#[derive(Debug, Default)]
pub struct FaultRules {
    rules: Vec<Rule>,
    next_id: u64,
}

impl FaultRules {
    /// Checks every spec, then appends them all (or none, on the first error, which names the
    /// rule by its position). Returns the new rules' ids.
    pub fn add(
        &mut self,
        specs: Vec<RuleSpec>,
        now: Instant,
        routes: &[&str],
    ) -> Result<Vec<u64>, String> {
        let first = self.next_id + 1;
        let rules = specs
            .into_iter()
            .enumerate()
            .map(|(i, spec)| {
                spec.into_rule(first + i as u64, now, routes)
                    .map_err(|e| format!("rule {i}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let ids = rules.iter().map(|r| r.id).collect();
        self.next_id += rules.len() as u64;
        self.rules.extend(rules);
        Ok(ids)
    }

    pub fn clear(&mut self) {
        self.rules.clear();
    }

    /// Drops rules that ran out of requests or time.
    pub fn purge(&mut self, now: Instant) {
        self.rules.retain(|r| !r.expired(now));
    }

    /// True when no rule is active (the fast path: nothing to match).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether some rule selects by PKey, so the request's PKey must be found.
    pub fn needs_pkey(&self) -> bool {
        self.rules.iter().any(Rule::needs_pkey)
    }

    /// Matches a request against the rules and counts it against those that affect it.
    pub fn decide(&mut self, req: &RequestFacts, now: Instant) -> Verdict {
        self.purge(now);
        let mut verdict = Verdict::default();
        for rule in &mut self.rules {
            if !rule.matches(req) {
                continue;
            }
            let mut used = false;
            if let Some(delay) = rule.delay {
                verdict.delay += delay;
                used = true;
            }
            if let Some(outcome) = rule.outcome.clone()
                && verdict.outcome.is_none()
            {
                verdict.outcome = Some(outcome);
                verdict.rule = Some(rule.id);
                used = true;
            }
            if used {
                rule.hits += 1;
                if let Some(n) = rule.remaining.as_mut() {
                    *n = n.saturating_sub(1);
                }
            }
        }
        self.purge(now);
        verdict
    }

    /// The active rules as `GET /_sim/faults` shows them.
    pub fn listing(&mut self, now: Instant) -> Value {
        self.purge(now);
        Value::Array(self.rules.iter().map(|r| r.to_json(now)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES: &[&str] = &[
        "/resources/pkeys",
        "/resources/pkeys/{pkey}",
        "/app/ufm_version",
    ];

    fn spec(value: Value) -> RuleSpec {
        serde_json::from_value(value).unwrap_or_else(|e| panic!("bad spec: {e}"))
    }

    fn rules(now: Instant, specs: Value) -> FaultRules {
        let mut rules = FaultRules::default();
        let specs: Vec<RuleSpec> = serde_json::from_value(specs).unwrap_or_default();
        assert!(rules.add(specs, now, ROUTES).is_ok());
        rules
    }

    fn facts<'a>(
        method: &'a str,
        route: &'a str,
        query: &'a [(String, String)],
    ) -> RequestFacts<'a> {
        RequestFacts {
            method,
            route,
            pkey: None,
            query,
        }
    }

    fn add_error(value: Value) -> String {
        let mut rules = FaultRules::default();
        match rules.add(vec![spec(value)], Instant::now(), ROUTES) {
            Ok(_) => String::new(),
            Err(e) => e,
        }
    }

    #[test]
    fn matches_by_method_route_pkey_and_query() {
        let now = Instant::now();
        let mut r = rules(
            now,
            json!([{"method": "GET", "route": "/resources/pkeys",
                    "query": {"guids_data": "true"}, "delay_ms": 300}]),
        );
        let full = [("guids_data".to_string(), "true".to_string())];
        let slow = r.decide(&facts("GET", "/resources/pkeys", &full), now);
        assert_eq!(slow.delay, Duration::from_millis(300));
        assert_eq!(
            r.decide(&facts("GET", "/resources/pkeys", &[]), now).delay,
            Duration::ZERO
        );
        assert_eq!(
            r.decide(&facts("POST", "/resources/pkeys", &full), now)
                .delay,
            Duration::ZERO
        );
        assert_eq!(
            r.decide(&facts("GET", "/app/ufm_version", &full), now)
                .delay,
            Duration::ZERO
        );

        let mut w = rules(
            now,
            json!([{"method": "WRITE", "pkey": "0x0005", "status": 500}]),
        );
        let mut req = facts("DELETE", "/resources/pkeys/{pkey}", &[]);
        assert_eq!(w.decide(&req, now).outcome, None, "no pkey in the request");
        req.pkey = Some(5);
        assert_eq!(w.decide(&req, now).outcome, Some(Outcome::Status(500)));
        req.pkey = Some(6);
        assert_eq!(w.decide(&req, now).outcome, None);
        req.pkey = Some(5);
        req.method = "GET";
        assert_eq!(w.decide(&req, now).outcome, None, "GET is not a write");
        assert!(w.needs_pkey());
    }

    #[test]
    fn first_outcome_wins_and_delays_add_up() {
        let now = Instant::now();
        let mut r = rules(
            now,
            json!([{"delay_ms": 100}, {"status": 503, "count": 1}, {"reset": true, "delay_ms": 50},
                   {"status": 500}]),
        );
        let v = r.decide(&facts("GET", "/app/ufm_version", &[]), now);
        assert_eq!(v.delay, Duration::from_millis(150));
        assert_eq!(v.outcome, Some(Outcome::Status(503)));
        assert_eq!(v.rule, Some(2));
        // The 503 rule is used up; the reset rule is next.
        let v = r.decide(&facts("GET", "/app/ufm_version", &[]), now);
        assert_eq!(v.outcome, Some(Outcome::Reset));
        let listed = r.listing(now);
        assert_eq!(listed.as_array().map(Vec::len), Some(3));
        assert_eq!(
            listed[2]["hits"], 0,
            "the last rule was never reached: {listed}"
        );
    }

    #[test]
    fn a_page_rule_answers_its_page_with_its_status_or_200() {
        let now = Instant::now();
        let mut r = rules(
            now,
            json!([{"page": "apache", "count": 1}, {"page": "login", "status": 401, "count": 1}]),
        );
        let req = facts("GET", "/app/ufm_version", &[]);
        let first = r.decide(&req, now);
        assert_eq!(first.outcome, Some(Outcome::Page(PageKind::Apache, 200)));
        let listed = r.listing(now);
        assert_eq!(
            (listed[0]["page"].clone(), listed[0]["status"].clone()),
            (json!("login"), json!(401))
        );
        assert_eq!(
            r.decide(&req, now).outcome,
            Some(Outcome::Page(PageKind::Login, 401))
        );
        assert!(r.is_empty());
    }

    #[test]
    fn noop_never_matches_reads() {
        let now = Instant::now();
        let mut r = rules(now, json!([{"noop": true, "count": 1}]));
        assert_eq!(
            r.decide(&facts("GET", "/resources/pkeys", &[]), now)
                .outcome,
            None
        );
        assert_eq!(
            r.decide(&facts("HEAD", "/resources/pkeys", &[]), now)
                .outcome,
            None
        );
        let v = r.decide(&facts("POST", "/resources/pkeys", &[]), now);
        assert_eq!(v.outcome, Some(Outcome::Noop));
        assert!(r.is_empty(), "count 1 is spent");
    }

    #[test]
    fn apply_after_ms_is_an_outcome_for_writes_only_and_is_listed() {
        let now = Instant::now();
        let mut r = rules(
            now,
            json!([{"method": "DELETE", "route": "/resources/pkeys/{pkey}",
                    "pkey": "0x900", "apply_after_ms": 12000, "count": 1}]),
        );
        let listed = r.listing(now);
        assert_eq!(listed[0]["apply_after_ms"], 12000, "{listed}");
        assert_eq!(listed[0]["reset_after"], false, "{listed}");
        let mut req = facts("DELETE", "/resources/pkeys/{pkey}", &[]);
        req.pkey = Some(0x900);
        let v = r.decide(&req, now);
        assert_eq!(
            v.outcome,
            Some(Outcome::ApplyAfter(Duration::from_secs(12)))
        );
        assert_eq!(
            v.delay,
            Duration::ZERO,
            "the wait is the outcome's, not a delay"
        );
        assert!(r.is_empty(), "count 1 is spent");

        let mut any = rules(now, json!([{"apply_after_ms": 5}]));
        assert_eq!(
            any.decide(&facts("GET", "/resources/pkeys", &[]), now)
                .outcome,
            None,
            "a read has nothing to apply late"
        );
        assert_eq!(
            any.decide(&facts("POST", "/resources/pkeys", &[]), now)
                .outcome,
            Some(Outcome::ApplyAfter(Duration::from_millis(5)))
        );

        assert!(add_error(json!({"apply_after_ms": 0})).contains("at least 1"));
        assert!(add_error(json!({"apply_after_ms": 600_001})).contains("apply_after_ms"));
        assert!(add_error(json!({"apply_after_ms": 10, "noop": true})).contains("at most one"));
        assert!(add_error(json!({"apply_after_ms": 10, "status": 500})).contains("at most one"));
        assert!(add_error(json!({"apply_after_ms": 10, "delay_ms": 5})).is_empty());
    }

    #[test]
    fn count_and_seconds_expire() {
        let now = Instant::now();
        let mut r = rules(now, json!([{"status": 503, "count": 2}]));
        let req = facts("GET", "/app/ufm_version", &[]);
        assert_eq!(r.listing(now)[0]["remaining"], 2);
        assert_eq!(r.decide(&req, now).outcome, Some(Outcome::Status(503)));
        assert_eq!(r.listing(now)[0]["remaining"], 1);
        assert_eq!(r.decide(&req, now).outcome, Some(Outcome::Status(503)));
        assert_eq!(r.decide(&req, now).outcome, None);
        assert!(r.is_empty());

        let mut t = rules(now, json!([{"status": 500, "seconds": 1.5}]));
        let soon = now + Duration::from_millis(1499);
        assert_eq!(t.decide(&req, soon).outcome, Some(Outcome::Status(500)));
        assert_eq!(t.listing(soon)[0]["seconds_left"], 0.001);
        assert_eq!(
            t.decide(&req, now + Duration::from_millis(1500)).outcome,
            None
        );
        assert!(t.is_empty());
    }

    #[test]
    fn bad_specs_are_refused_with_a_reason() {
        assert!(add_error(json!({"delay_ms": 10})).is_empty());
        assert!(add_error(json!({})).contains("no effect"));
        assert!(add_error(json!({"status": 503, "noop": true})).contains("at most one"));
        assert!(add_error(json!({"status": 503, "body": {}})).is_empty());
        assert!(add_error(json!({"noop": true, "body": {}})).contains("at most one"));
        assert!(add_error(json!({"status": 42})).contains("100-599"));
        assert!(add_error(json!({"page": "maintenance"})).contains("apache, login, text"));
        assert!(add_error(json!({"page": "login", "noop": true})).contains("at most one"));
        assert!(add_error(json!({"status": 503, "route": "/resources/pkey"})).contains("template"));
        assert!(add_error(json!({"status": 503, "method": "get"})).contains("method"));
        assert!(add_error(json!({"status": 503, "pkey": "5"})).contains("pkey"));
        assert!(add_error(json!({"status": 503, "pkey": 0x8000})).contains("pkey"));
        assert!(add_error(json!({"status": 503, "count": 0})).contains("count"));
        assert!(add_error(json!({"status": 503, "seconds": 0})).contains("seconds"));
        assert!(add_error(json!({"status": 503, "seconds": -1.0})).contains("seconds"));
        assert!(add_error(json!({"delay_ms": 600_001})).contains("delay_ms"));
        assert!(add_error(json!({"status": 503, "query": {"a": []}})).contains("query"));
        assert!(serde_json::from_value::<RuleSpec>(json!({"bogus": 1})).is_err());

        // All or nothing: one bad rule adds none.
        let mut r = FaultRules::default();
        let both = vec![spec(json!({"status": 503})), spec(json!({}))];
        let err = r
            .add(both, Instant::now(), ROUTES)
            .err()
            .unwrap_or_default();
        assert!(err.starts_with("rule 1:"), "{err}");
        assert!(r.is_empty());
    }

    #[test]
    fn ids_keep_growing_and_listing_shows_the_rule() {
        let now = Instant::now();
        let mut r = FaultRules::default();
        let one = vec![spec(
            json!({"route": "/resources/pkeys/{pkey}", "pkey": 0x31a, "noop": true}),
        )];
        assert_eq!(r.add(one, now, ROUTES), Ok(vec![1]));
        r.clear();
        let two = vec![spec(json!({"delay_ms": 5, "query": {"guids_data": true}}))];
        assert_eq!(r.add(two, now, ROUTES), Ok(vec![2]));
        let listed = r.listing(now);
        assert_eq!(listed[0]["id"], 2);
        assert_eq!(listed[0]["query"], json!({"guids_data": "true"}));
        assert_eq!(listed[0]["route"], "*");
        assert_eq!(listed[0]["remaining"], Value::Null);
    }
}
