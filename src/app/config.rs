//! `ufm-pkeyd config`: every configuration key with its value and where it came from,
//! secrets redacted, and what the etcd and UFM settings resolve to.

use serde_json::json;

use super::Output;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::net::etcd::ApiChoice;
use crate::net::ufm::Auth;

/// `config --check`: whether the configuration would start the daemon: it loads (that much
/// is done before this runs), etcd and UFM settings resolve with their password files, the
/// CA and key files can be read, and the state file's directory exists. No connection is
/// made (a reload must not fail because UFM is down). Warnings are printed; an error exits 2.
///
/// Run by the unit's `ExecReload=`, it gets no credentials (systemd does not mount them for
/// reload commands of a sandboxed unit, systemd#35227): a secret given only as a credential
/// cannot be checked then, and needs not be, since the daemon keeps the credentials it was
/// started with. It says so instead of failing.
pub(super) fn check(config: &Config, out: &Output) -> Result<()> {
    let settings = &config.settings;
    // Under systemd (a reload command): `$CREDENTIALS_DIRECTORY` may be set while the
    // directory is not mounted for the command, so its absence proves nothing either way.
    let reload_check = std::env::var_os("INVOCATION_ID").is_some();
    let missing = config.missing_secrets();
    let unchecked = |secret: &str| reload_check && missing.contains(&secret);
    let etcd = match settings.etcd() {
        Ok(etcd) => Some(etcd),
        Err(_) if unchecked("etcd-password") => None,
        Err(e) => return Err(e),
    };
    let ufm = match settings.ufm() {
        Ok(ufm) => Some(ufm),
        Err(_) if unchecked("ufm-password") => None,
        Err(e) => return Err(e),
    };
    for (key, what) in [
        ("ufm-ca-cert", "UFM CA certificate"),
        ("etcd-ca-cert", "etcd CA certificate"),
        ("etcd-cert-file", "etcd client certificate"),
        ("etcd-key-file", "etcd client key"),
    ] {
        if let Some(file) = config.path_of(key) {
            readable(&file, what)?;
        }
    }
    let state_dir = settings
        .engine
        .state_file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    if !state_dir.is_dir() {
        return Err(Error::usage(format!(
            "the state file's directory {} does not exist: create it (the package does: /var/lib/ufm-pkeyd) or set state-file",
            state_dir.display()
        )));
    }
    let warnings = config.service_warnings();
    for warning in &warnings {
        log::warn!("{warning}");
    }
    let etcd_text = etcd.map_or_else(
        || "etcd (its password, a credential, not checked)".to_string(),
        |etcd| {
            let keyspace = match etcd.api {
                ApiChoice::Auto => "the keyspace holding keys (etcd-api auto)".to_string(),
                ApiChoice::Fixed(api) => format!("{api} keyspace"),
            };
            format!(
                "etcd {} ({keyspace}, prefix {})",
                etcd.endpoints.join(","),
                settings.engine.prefix
            )
        },
    );
    let ufm_text = ufm.map_or_else(
        || "UFM (its password or token, a credential, not checked)".to_string(),
        |ufm| {
            let auth = match ufm.auth {
                Auth::Basic { ref user, .. } => format!("user {user}"),
                Auth::Token(_) => "a token".to_string(),
            };
            format!("UFM {} with {auth}", ufm.urls.join(","))
        },
    );
    let line = format!(
        "configuration OK: {etcd_text}, {ufm_text}{}",
        if warnings.is_empty() {
            String::new()
        } else {
            format!("; {} warnings", warnings.len())
        }
    );
    out.done(&line, json!({"ok": true, "warnings": warnings}))
}

/// `etcd-api` as JSON fields: `api`, and with `auto` what it resolves to now (etcd asked
/// once, briefly): `resolved_api` and `resolution` (the counts, or why it cannot be told).
fn api_fields(etcd: &crate::net::etcd::Settings, prefix: &str) -> serde_json::Value {
    if etcd.api != ApiChoice::Auto {
        return json!({"api": etcd.api.to_string()});
    }
    let keys = |n: Option<usize>| n.map_or_else(|| "unreadable".to_string(), |n| n.to_string());
    match super::keyspace::preview(etcd, prefix) {
        Ok((api, census)) => json!({
            "api": "auto",
            "resolved_api": api.to_string(),
            "resolution": format!("keys under {prefix}: v2 {}, v3 {}", keys(census.v2), keys(census.v3)),
        }),
        Err(why) => {
            json!({"api": "auto", "resolved_api": null, "resolution": format!("not resolved: {why}")})
        }
    }
}

/// The `api` part of the `etcd:` line: `auto → v2 (keys under …: v2 2045, v3 0)`.
fn api_text(fields: &serde_json::Value) -> String {
    let api = fields["api"].as_str().unwrap_or_default();
    match (
        fields["resolved_api"].as_str(),
        fields["resolution"].as_str(),
    ) {
        (Some(resolved), Some(how)) => format!("{api} → {resolved} ({how})"),
        (None, Some(how)) => format!("{api} ({how})"),
        _ => api.to_string(),
    }
}

/// A file the daemon will read must be readable now.
fn readable(path: &std::path::Path, what: &str) -> Result<()> {
    std::fs::File::open(path)
        .map(drop)
        .map_err(|e| Error::usage(format!("cannot read the {what} {}: {e}", path.display())))
}

/// Prints the effective configuration.
pub(super) fn run(config: &Config, out: &Output) -> Result<()> {
    let rows = config.describe();
    let settings = &config.settings;
    let prefix = &settings.engine.prefix;
    let etcd = settings.etcd().map(|s| {
        let mut value = json!({"endpoints": s.endpoints, "user": s.user, "prefix": prefix});
        if let (Some(target), serde_json::Value::Object(api)) =
            (value.as_object_mut(), api_fields(s, prefix))
        {
            target.extend(api);
        }
        value
    });
    let ufm = settings.ufm().map(|s| {
        json!({"urls": s.urls, "auth": match s.auth { Auth::Basic { .. } => "basic", Auth::Token(_) => "token" }})
    });
    if out.json {
        let keys: serde_json::Map<String, serde_json::Value> = rows
            .iter()
            .map(|row| {
                let value =
                    json!({"value": row.typed, "source": row.source, "description": row.help});
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
        Ok(mut v) => {
            v["api"] = json!(api_text(&v));
            text.push_str(&format!(
                "etcd: {}\n",
                summary(&v, &["endpoints", "api", "user", "prefix"])
            ));
        }
        Err(e) => text.push_str(&format!("etcd: not usable: {e}\n")),
    }
    match ufm {
        Ok(v) => text.push_str(&format!("ufm:  {}\n", summary(&v, &["urls", "auth"]))),
        Err(e) => text.push_str(&format!("ufm:  not usable: {e}\n")),
    }
    out.print(&text)
}
