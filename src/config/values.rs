//! One grammar for every configuration value, whatever layer it comes from (pcocc's files, the
//! tool's YAML file, a systemd credential, a flag): booleans, seconds, ports, counts, lists and
//! URLs are parsed here and nowhere else.

use std::path::PathBuf;
use std::time::Duration;

use super::keys::Kind;
use crate::net::http::redact_userinfo;
use crate::secret::Secret;

/// A configuration value parsed according to its key's [`Kind`].
#[derive(Clone, Debug)]
pub(crate) enum Value {
    Text(String),
    Bool(bool),
    Seconds(Duration),
    Port(u16),
    List(Vec<String>),
    Path(PathBuf),
    Choice(&'static str),
    Secret(Secret),
    Count(usize),
}

impl Kind {
    /// Parses `text` as a value of this kind; the error says what is expected.
    pub(crate) fn parse(self, text: &str) -> Result<Value, String> {
        Ok(match self {
            Kind::Text => Value::Text(text.to_string()),
            Kind::Bool => Value::Bool(parse_bool(text)?),
            Kind::Seconds => Value::Seconds(parse_seconds(text)?),
            Kind::Port => Value::Port(parse_port(text)?),
            Kind::List => Value::List(split_list(text).map(str::to_string).collect()),
            Kind::Path => Value::Path(PathBuf::from(text)),
            Kind::Choice(choices) => Value::Choice(
                choices
                    .iter()
                    .copied()
                    .find(|c| *c == text)
                    .ok_or_else(|| format!("use {}", choices.join(" or ")))?,
            ),
            Kind::Secret => Value::Secret(Secret::new(text)),
            Kind::Count => Value::Count(
                text.trim()
                    .parse()
                    .map_err(|_| "give a whole number".to_string())?,
            ),
        })
    }
}

impl Value {
    /// The value as JSON of its kind, for `ufm-pkeyd config --json`: booleans, numbers
    /// (seconds, ports, counts), lists, text; a secret is `"<redacted>"`, and credentials in a
    /// URL are taken out.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            Value::Text(text) => json!(redact_userinfo(text)),
            Value::Bool(b) => json!(b),
            Value::Seconds(d) if d.subsec_nanos() == 0 => json!(d.as_secs()),
            Value::Seconds(d) => json!(d.as_secs_f64()),
            Value::Port(port) => json!(port),
            Value::List(items) => {
                json!(items.iter().map(|i| redact_userinfo(i)).collect::<Vec<_>>())
            }
            Value::Path(path) => json!(path.display().to_string()),
            Value::Choice(choice) => json!(choice),
            Value::Secret(_) => json!("<redacted>"),
            Value::Count(n) => json!(n),
        }
    }
}

/// A boolean: `true/false`, `yes/no`, `on/off`, `1/0`, in any case.
pub(crate) fn parse_bool(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err("use true or false (or yes/no, on/off, 1/0)".to_string()),
    }
}

/// A positive number of seconds, fractions allowed, at most a day.
pub(crate) fn parse_seconds(text: &str) -> Result<Duration, String> {
    match text.trim().parse::<f64>() {
        Ok(s) if s > 0.0 && s <= 86_400.0 => Ok(Duration::from_secs_f64(s)),
        _ => Err("give a number of seconds greater than 0".to_string()),
    }
}

/// A TCP port, 1 to 65535.
pub(crate) fn parse_port(text: &str) -> Result<u16, String> {
    match text.trim().parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err("give a port from 1 to 65535".to_string()),
    }
}

/// The items of a comma-separated list, trimmed, blanks dropped.
pub(crate) fn split_list(text: &str) -> impl Iterator<Item = &str> {
    text.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// Turns `host`, `host:port` or a URL into `scheme://host:port` without a trailing slash.
/// Credentials in a URL (`user:password@host`) are refused, and never echoed.
pub(crate) fn normalize_url(
    item: &str,
    default_scheme: &str,
    default_port: u16,
) -> Result<String, String> {
    let shown = redact_userinfo(item);
    let (scheme, rest) = match item.split_once("://") {
        Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
        None => (default_scheme.to_string(), item),
    };
    if scheme != "http" && scheme != "https" {
        return Err(format!(
            "endpoint {shown:?} has scheme {scheme:?}: use http or https"
        ));
    }
    let rest = rest.trim_end_matches('/');
    if rest.contains('@') {
        return Err(format!(
            "endpoint {shown:?} carries credentials: give the user and password with their own settings (a password file), not in the URL"
        ));
    }
    if rest.is_empty() || rest.contains('/') || rest.contains(' ') {
        return Err(format!(
            "endpoint {shown:?} is not valid: give host, host:port or scheme://host:port"
        ));
    }
    let has_port = match rest.strip_prefix('[') {
        Some(bracketed) => bracketed.contains("]:"),
        None => rest.contains(':'),
    };
    if has_port {
        let port = rest.rsplit(':').next().unwrap_or_default();
        parse_port(port).map_err(|_| format!("endpoint {shown:?} has an invalid port {port:?}"))?;
        Ok(format!("{scheme}://{rest}"))
    } else {
        let port = match (item.contains("://"), scheme.as_str()) {
            (true, "https") => 443,
            (true, _) => 80,
            (false, _) => default_port,
        };
        Ok(format!("{scheme}://{rest}:{port}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_have_one_grammar() {
        for text in ["true", "YES", "On", "1", " true "] {
            assert_eq!(parse_bool(text), Ok(true), "{text}");
        }
        for text in ["false", "no", "OFF", "0"] {
            assert_eq!(parse_bool(text), Ok(false), "{text}");
        }
        assert!(parse_bool("maybe").is_err());
        assert!(parse_bool("").is_err());
    }

    #[test]
    fn urls_accept_host_host_port_and_url() {
        assert_eq!(
            normalize_url("ufm1", "https", 443).ok(),
            Some("https://ufm1:443".into())
        );
        assert_eq!(
            normalize_url("ufm1:8443", "https", 443).ok(),
            Some("https://ufm1:8443".into())
        );
        assert_eq!(
            normalize_url("http://ufm1/", "https", 443).ok(),
            Some("http://ufm1:80".into())
        );
        assert_eq!(
            normalize_url("HTTPS://[::1]:9", "http", 1).ok(),
            Some("https://[::1]:9".into())
        );
        assert!(normalize_url("ftp://x", "http", 1).is_err());
        assert!(normalize_url("host:0", "http", 1).is_err());
        assert!(normalize_url("host/path", "http", 1).is_err());
    }

    #[test]
    fn values_become_json_of_their_kind_and_secrets_stay_hidden() {
        use serde_json::json;
        let json = |kind: Kind, text: &str| kind.parse(text).expect(text).to_json();
        assert_eq!(json(Kind::Bool, "yes"), json!(true));
        assert_eq!(json(Kind::Seconds, "30"), json!(30));
        assert_eq!(json(Kind::Seconds, "0.5"), json!(0.5));
        assert_eq!(json(Kind::Port, "2379"), json!(2379));
        assert_eq!(json(Kind::Count, "10"), json!(10));
        assert_eq!(json(Kind::List, "a:1, b:2"), json!(["a:1", "b:2"]));
        assert_eq!(json(Kind::Choice(&["v2", "v3"]), "v2"), json!("v2"));
        assert_eq!(json(Kind::Secret, "hunter2"), json!("<redacted>"));
        assert_eq!(json(Kind::Text, "/pcocc/"), json!("/pcocc/"));
    }

    #[test]
    fn credentials_in_urls_are_refused_without_being_echoed() {
        for url in ["https://admin:hunter2@ufm1", "admin:hunter2@ufm1:443"] {
            let err = normalize_url(url, "https", 443).expect_err(url);
            assert!(!err.contains("hunter2"), "{err}");
            assert!(err.contains("credentials"), "{err}");
        }
    }
}
