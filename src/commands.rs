//! The one-shot sub-commands (`ufm`, `etcd`, `config`): run one operation through a client
//! and print its result. Data goes to stdout (a table for people, JSON with `--json`);
//! logs and errors go to stderr.

use std::io::Write;

use serde_json::json;

use crate::cli::{Command, EtcdOp, Invocation, UfmOp};
use crate::config::{RawConfig, UfmAuth};
use crate::daemon;
use crate::error::{EXIT_OK, Error, Result};
use crate::etcd::{EtcdClient, KeyValue};
use crate::ufm::{JoinOptions, Partition, UfmClient, UfmError};

/// Runs a parsed sub-command with its configuration and returns the exit code.
pub fn run(invocation: &Invocation, config: &RawConfig) -> Result<i32> {
    let out = Output {
        json: invocation.json,
    };
    let done = match &invocation.command {
        Command::Ufm(op) => run_ufm(op, config, &out),
        Command::Etcd(op) => run_etcd(op, config, &out),
        Command::Config => run_config(config, &out),
        Command::Monitor { dry_run } => return daemon::run_monitor(invocation, config, *dry_run),
        Command::Sync { dry_run } => return daemon::run_sync(invocation, config, *dry_run),
        Command::Status => return daemon::run_status(invocation, config),
        Command::Help(_) | Command::Version => Ok(()),
    };
    done.map(|()| EXIT_OK)
}

/// Where results go, and in which form.
struct Output {
    json: bool,
}

impl Output {
    fn print(&self, text: &str) -> Result<()> {
        let mut stdout = std::io::stdout().lock();
        // A closed pipe (`| head`) is not an error worth reporting.
        let _ = stdout.write_all(text.as_bytes());
        let _ = stdout.flush();
        Ok(())
    }

    fn print_json(&self, value: &serde_json::Value) -> Result<()> {
        let text = serde_json::to_string_pretty(value).unwrap_or_default();
        self.print(&format!("{text}\n"))
    }

    /// Prints a confirmation: a line for people, `{"ok": true, …}` for scripts.
    fn done(&self, line: &str, detail: serde_json::Value) -> Result<()> {
        if self.json {
            let mut value = json!({"ok": true, "message": line});
            if let (Some(target), serde_json::Value::Object(extra)) =
                (value.as_object_mut(), detail)
            {
                target.extend(extra);
            }
            self.print_json(&value)
        } else {
            self.print(&format!("{line}\n"))
        }
    }
}

fn ufm_client(config: &RawConfig) -> Result<UfmClient> {
    let settings = config.ufm()?;
    UfmClient::new(&settings).map_err(Error::Usage)
}

fn run_ufm(op: &UfmOp, config: &RawConfig, out: &Output) -> Result<()> {
    let client = ufm_client(config)?;
    match op {
        UfmOp::Check => {
            let version = client.version()?;
            let auth = match config.ufm()?.auth {
                UfmAuth::Basic { user, .. } => format!("user {user}"),
                UfmAuth::Token(_) => "access token".to_string(),
            };
            out.done(
                &format!("UFM {version}: connected and authenticated ({auth})"),
                json!({"ufm_release_version": version}),
            )
        }
        UfmOp::List => {
            let partitions = client.list_partitions()?;
            if out.json {
                out.print_json(&json!(
                    partitions.iter().map(partition_json).collect::<Vec<_>>()
                ))
            } else {
                out.print(&partition_table(&partitions))
            }
        }
        UfmOp::Get(pkey) => {
            let partition = client
                .get(*pkey)?
                .ok_or_else(|| Error::NotFound(format!("PKey {pkey} not found in UFM")))?;
            if out.json {
                out.print_json(&partition_json(&partition))
            } else {
                out.print(&partition_detail(&partition))
            }
        }
        UfmOp::Create { pkey, guids, join } => {
            if guids.is_empty() {
                client.create(*pkey, join.index0, join.ip_over_ib)?;
                out.done(
                    &format!("created PKey {pkey}"),
                    json!({"pkey": pkey.to_string()}),
                )
            } else {
                if client.get(*pkey)?.is_some() {
                    return Err(UfmError::AlreadyExists(format!(
                        "PKey {pkey} already exists in UFM: add GUIDs with --pkey {pkey} --guids"
                    ))
                    .into());
                }
                client.add_guids(*pkey, guids, join_options(join))?;
                out.done(
                    &format!("created PKey {pkey} with {}", guid_count(guids.len())),
                    json!({"pkey": pkey.to_string(), "guids": guids.len()}),
                )
            }
        }
        UfmOp::Delete(pkey) => {
            client.delete(*pkey).map_err(|e| match e {
                UfmError::NotFound(_) => {
                    UfmError::NotFound(format!("PKey {pkey} not found in UFM"))
                }
                other => other,
            })?;
            out.done(
                &format!("deleted PKey {pkey}"),
                json!({"pkey": pkey.to_string()}),
            )
        }
        UfmOp::AddGuids { pkey, guids, join } => {
            client.add_guids(*pkey, guids, join_options(join))?;
            out.done(
                &format!(
                    "added {} to PKey {pkey} (membership {}, index0 {}, ip_over_ib {})",
                    guid_count(guids.len()),
                    join.membership,
                    on_off(join.index0),
                    on_off(join.ip_over_ib)
                ),
                json!({"pkey": pkey.to_string(), "guids": guids.len()}),
            )
        }
        UfmOp::RemoveGuids { pkey, guids } => {
            client.remove_guids(*pkey, guids).map_err(|e| match e {
                UfmError::NotFound(_) => {
                    UfmError::NotFound(format!("PKey {pkey} not found in UFM"))
                }
                other => other,
            })?;
            out.done(
                &format!("removed {} from PKey {pkey}", guid_count(guids.len())),
                json!({"pkey": pkey.to_string(), "guids": guids.len()}),
            )
        }
    }
}

fn join_options(join: &crate::cli::JoinFlags) -> JoinOptions {
    JoinOptions {
        membership: join.membership,
        index0: join.index0,
        ip_over_ib: join.ip_over_ib,
    }
}

fn guid_count(n: usize) -> String {
    if n == 1 {
        "1 GUID".to_string()
    } else {
        format!("{n} GUIDs")
    }
}

fn on_off(value: bool) -> &'static str {
    if value { "on" } else { "off" }
}

fn partition_json(partition: &Partition) -> serde_json::Value {
    json!({
        "pkey": partition.pkey.to_string(),
        "name": partition.name,
        "ip_over_ib": partition.ip_over_ib,
        "guids": partition.members.iter().map(|m| json!({
            "guid": m.guid.to_string(),
            "membership": m.membership.as_str(),
            "index0": m.index0,
        })).collect::<Vec<_>>(),
    })
}

fn partition_table(partitions: &[Partition]) -> String {
    let mut text = format!("{:<8} {:<24} {:<6} {}\n", "PKEY", "NAME", "IPOIB", "GUIDS");
    for p in partitions {
        text.push_str(&format!(
            "{:<8} {:<24} {:<6} {}\n",
            p.pkey.to_string(),
            p.name,
            if p.ip_over_ib { "yes" } else { "no" },
            p.members.len()
        ));
    }
    text
}

fn partition_detail(partition: &Partition) -> String {
    let mut text = format!(
        "pkey:        {}\nname:        {}\nip_over_ib:  {}\nguids:       {}\n",
        partition.pkey,
        partition.name,
        partition.ip_over_ib,
        partition.members.len()
    );
    for member in &partition.members {
        let index0 = if member.index0 { "  index0" } else { "" };
        text.push_str(&format!(
            "  {}  {:<7}{index0}\n",
            member.guid,
            member.membership.as_str()
        ));
    }
    text
}

fn run_etcd(op: &EtcdOp, config: &RawConfig, out: &Output) -> Result<()> {
    let settings = config.etcd()?;
    let client = EtcdClient::new(&settings).map_err(Error::Usage)?;
    match op {
        EtcdOp::Check => {
            let version = client.version()?;
            let listing = client.list(&settings.prefix)?;
            out.done(
                &format!(
                    "etcd {version}: connected; {} keys under {} in the {} keyspace",
                    listing.kvs.len(),
                    settings.prefix,
                    client.api()
                ),
                json!({"etcd_version": version, "keys": listing.kvs.len(), "api": client.api().to_string()}),
            )
        }
        EtcdOp::List { prefix } => {
            let listing = client.list(prefix)?;
            if listing.kvs.is_empty() {
                hint_other_keyspace(&client, prefix, true);
            }
            if out.json {
                out.print_json(&json!(listing.kvs.iter().map(kv_json).collect::<Vec<_>>()))
            } else {
                let text: String = listing
                    .kvs
                    .iter()
                    .map(|kv| format!("{}\n", kv.key))
                    .collect();
                out.print(&text)
            }
        }
        EtcdOp::Get(key) => match client.get(key)? {
            Some(kv) if out.json => out.print_json(&kv_json(&kv)),
            Some(kv) => out.print(&format!("{}\n", String::from_utf8_lossy(&kv.value))),
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
                crate::etcd::EtcdError::NotFound(_) => Error::NotFound(format!(
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

fn kv_json(kv: &KeyValue) -> serde_json::Value {
    json!({
        "key": kv.key,
        "value": String::from_utf8_lossy(&kv.value),
        "mod_revision": kv.mod_revision,
    })
}

fn run_config(config: &RawConfig, out: &Output) -> Result<()> {
    let rows = config.describe();
    let etcd = config.etcd().map(|s| {
        json!({"endpoints": s.endpoints, "api": s.api.to_string(), "user": s.user, "prefix": s.prefix})
    });
    let ufm = config.ufm().map(|s| {
        json!({"urls": s.urls, "auth": match s.auth { UfmAuth::Basic { .. } => "basic", UfmAuth::Token(_) => "token" }})
    });
    if out.json {
        let keys: serde_json::Map<String, serde_json::Value> = rows
            .iter()
            .map(|(name, value, source)| {
                (name.to_string(), json!({"value": value, "source": source}))
            })
            .collect();
        return out.print_json(&json!({
            "keys": keys,
            "etcd": etcd.unwrap_or_else(|e| json!({"error": e.to_string()})),
            "ufm": ufm.unwrap_or_else(|e| json!({"error": e.to_string()})),
        }));
    }
    let mut text = String::new();
    for (name, value, source) in rows {
        let value = value.unwrap_or_else(|| "-".to_string());
        let source = source.map(|s| format!("  ({s})")).unwrap_or_default();
        text.push_str(&format!("{name:<20} {value}{source}\n"));
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
