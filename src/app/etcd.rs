//! `ufm-pkeyd etcd`: one-shot etcd key operations through the v2 or v3 API.

use serde_json::json;

use super::{Output, etcd_client};
use crate::cli::EtcdOp;
use crate::config::Settings;
use crate::error::{Error, Result};
use crate::model::PKey;
use crate::net::etcd::{EtcdClient, KeyValue};
use crate::text::escape;

/// Runs one etcd operation. Keys and values are printed escaped (`--json`: exact).
pub(super) fn run(op: &EtcdOp, settings: &Settings, out: &Output) -> Result<()> {
    let client = etcd_client(settings)?;
    let prefix = &settings.engine.prefix;
    match op {
        EtcdOp::Check => {
            let version = client.version()?;
            let listing = client.list(prefix)?;
            out.done(
                &format!(
                    "etcd {version}: connected; {} keys under {} in the {} keyspace",
                    listing.kvs.len(),
                    prefix,
                    client.api()
                ),
                json!({"etcd_version": version, "keys": listing.kvs.len(), "api": client.api().to_string()}),
            )
        }
        EtcdOp::List { prefix: wanted } => {
            let mut listing = client.list(wanted)?;
            listing
                .kvs
                .sort_by(|a, b| reading_order(&a.key).cmp(&reading_order(&b.key)));
            if listing.kvs.is_empty() {
                hint_other_keyspace(&client, wanted, true);
            }
            if out.json {
                out.print_json(&json!(listing.kvs.iter().map(kv_json).collect::<Vec<_>>()))
            } else {
                let text: String = listing
                    .kvs
                    .iter()
                    .map(|kv| format!("{}\n", escape(&kv.key)))
                    .collect();
                out.print(&text)
            }
        }
        EtcdOp::Get(key) => match client.get(key)? {
            Some(kv) if out.json => out.print_json(&kv_json(&kv)),
            Some(kv) => out.print(&format!(
                "{}\n",
                escape(&String::from_utf8_lossy(&kv.value))
            )),
            None => {
                hint_other_keyspace(&client, key, false);
                Err(Error::NotFound(format!(
                    "etcd key {key} not found in the {} keyspace",
                    client.api()
                )))
            }
        },
        EtcdOp::Put { key, value, ttl } => {
            client.put(key, value.as_bytes(), *ttl)?;
            let expiry = ttl
                .map(|t| format!(" (expires in {t} s)"))
                .unwrap_or_default();
            out.done(&format!("put {key}{expiry}"), json!({"key": key}))
        }
        EtcdOp::Delete(key) => {
            client.delete(key).map_err(|e| match e {
                crate::net::etcd::EtcdError::NotFound(_) => Error::NotFound(format!(
                    "etcd key {key} not found in the {} keyspace",
                    client.api()
                )),
                other => other.into(),
            })?;
            out.done(&format!("deleted {key}"), json!({"key": key}))
        }
    }
}

/// When nothing was found, looks in the other API's keyspace and, if it has what was asked
/// for, says how to read it. pcocc writes through v2; a v3 reader sees nothing of it.
fn hint_other_keyspace(client: &EtcdClient, what: &str, is_prefix: bool) {
    let other = client.other_keyspace();
    let found = if is_prefix {
        other.list(what).map(|l| l.kvs.len()).unwrap_or(0)
    } else {
        usize::from(matches!(other.get(what), Ok(Some(_))))
    };
    if found > 0 {
        log::warn!(
            "nothing under {what:?} in the {} keyspace, but the {} keyspace has {found} key{}: pcocc writes through v2; use --etcd-api {}",
            client.api(),
            other.api(),
            if found == 1 { "" } else { "s" },
            other.api()
        );
    }
}

/// The order keys are listed in: by directory, and in one directory names that are PKeys
/// (`0x1a`, `0x200e`) by number, as `ufm --list` shows partitions, after any other names.
fn reading_order(key: &str) -> (&str, Option<PKey>, &str) {
    let (dir, name) = key.rsplit_once('/').unwrap_or(("", key));
    (dir, name.parse().ok(), name)
}

fn kv_json(kv: &KeyValue) -> serde_json::Value {
    json!({
        "key": kv.key,
        "value": String::from_utf8_lossy(&kv.value),
        "mod_revision": kv.mod_revision,
    })
}
