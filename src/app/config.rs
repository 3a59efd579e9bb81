//! `ufm-pkeyd config`: every configuration key with its value and where it came from,
//! secrets redacted, and what the etcd and UFM settings resolve to.

use serde_json::json;

use super::Output;
use crate::config::Config;
use crate::error::Result;
use crate::net::ufm::Auth;

/// Prints the effective configuration.
pub(super) fn run(config: &Config, out: &Output) -> Result<()> {
    let rows = config.describe();
    let settings = &config.settings;
    let prefix = &settings.engine.prefix;
    let etcd = settings.etcd().map(|s| {
        json!({"endpoints": s.endpoints, "api": s.api.to_string(), "user": s.user, "prefix": prefix})
    });
    let ufm = settings.ufm().map(|s| {
        json!({"urls": s.urls, "auth": match s.auth { Auth::Basic { .. } => "basic", Auth::Token(_) => "token" }})
    });
    if out.json {
        let keys: serde_json::Map<String, serde_json::Value> = rows
            .iter()
            .map(|row| {
                let value =
                    json!({"value": row.value, "source": row.source, "description": row.help});
                (row.name.to_string(), value)
            })
            .collect();
        return out.print_json(&json!({
            "keys": keys,
            "etcd": etcd.unwrap_or_else(|e| json!({"error": e.to_string()})),
            "ufm": ufm.unwrap_or_else(|e| json!({"error": e.to_string()})),
        }));
    }
    let mut text = String::new();
    for row in rows {
        let value = row.value.unwrap_or_else(|| "-".to_string());
        let source = row.source.map(|s| format!("  ({s})")).unwrap_or_default();
        text.push_str(&format!("{:<20} {value}{source}\n", row.name));
    }
    text.push('\n');
    let summary = |v: &serde_json::Value, fields: &[&str]| -> String {
        fields
            .iter()
            .map(|f| match &v[*f] {
                serde_json::Value::Array(items) => format!(
                    "{f} {}",
                    items
                        .iter()
                        .filter_map(|i| i.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                serde_json::Value::String(text) => format!("{f} {text}"),
                serde_json::Value::Null => format!("{f} -"),
                other => format!("{f} {other}"),
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    match etcd {
        Ok(v) => text.push_str(&format!(
            "etcd: {}\n",
            summary(&v, &["endpoints", "api", "user", "prefix"])
        )),
        Err(e) => text.push_str(&format!("etcd: not usable: {e}\n")),
    }
    match ufm {
        Ok(v) => text.push_str(&format!("ufm:  {}\n", summary(&v, &["urls", "auth"]))),
        Err(e) => text.push_str(&format!("ufm:  not usable: {e}\n")),
    }
    out.print(&text)
}
