//! `ufm-pkeyd ufm`: one-shot UFM PKey operations, with the old tool's flags.

use serde_json::json;

use super::{Output, ufm_client};
use crate::cli::UfmOp;
use crate::config::Settings;
use crate::error::{Error, Result};
use crate::model::Partition;
use crate::net::ufm::{Auth, PartitionList, REMOVE_BATCH, UfmError};

/// Runs one UFM operation.
pub(super) fn run(op: &UfmOp, settings: &Settings, out: &Output) -> Result<()> {
    let client = ufm_client(settings)?;
    match op {
        UfmOp::Check => {
            let version = client.version()?;
            let auth = match &settings.ufm()?.auth {
                Auth::Basic { user, .. } => format!("user {user}"),
                Auth::Token(_) => "access token".to_string(),
            };
            out.done(
                &format!("UFM {version}: connected and authenticated ({auth})"),
                json!({"ufm_release_version": version}),
            )
        }
        UfmOp::List => {
            let list = client.list_partitions()?;
            if out.json {
                let unreadable = list
                    .unreadable
                    .iter()
                    .map(|(pkey, reason)| json!({"pkey": pkey.to_string(), "unreadable": reason}));
                out.print_json(&json!(
                    list.partitions
                        .iter()
                        .map(partition_json)
                        .chain(unreadable)
                        .collect::<Vec<_>>()
                ))
            } else {
                out.print(&partition_table(&list))
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
        UfmOp::Create {
            pkey,
            guids,
            join,
            ip_over_ib,
        } => {
            if guids.is_empty() {
                client.create(*pkey, join.index0, *ip_over_ib)?;
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
                client.add_guids(*pkey, guids, *join, *ip_over_ib)?;
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
        UfmOp::AddGuids {
            pkey,
            guids,
            join,
            ip_over_ib,
        } => {
            client.add_guids(*pkey, guids, *join, *ip_over_ib)?;
            out.done(
                &format!(
                    "added {} to PKey {pkey} (membership {}, index0 {}, ip_over_ib {})",
                    guid_count(guids.len()),
                    join.membership,
                    on_off(join.index0),
                    on_off(*ip_over_ib)
                ),
                json!({"pkey": pkey.to_string(), "guids": guids.len()}),
            )
        }
        UfmOp::RemoveGuids { pkey, guids } => {
            // The GUIDs go in the URL: at most a batch per request, as the daemon sends them.
            for batch in guids.chunks(REMOVE_BATCH) {
                client.remove_guids(*pkey, batch).map_err(|e| match e {
                    UfmError::NotFound(_) => {
                        UfmError::NotFound(format!("PKey {pkey} not found in UFM"))
                    }
                    other => other,
                })?;
            }
            out.done(
                &format!("removed {} from PKey {pkey}", guid_count(guids.len())),
                json!({"pkey": pkey.to_string(), "guids": guids.len()}),
            )
        }
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
            "membership": m.join.membership.as_str(),
            "index0": m.join.index0,
        })).collect::<Vec<_>>(),
    })
}

fn partition_table(list: &PartitionList) -> String {
    let mut text = format!("{:<8} {:<24} {:<6} {}\n", "PKEY", "NAME", "IPOIB", "GUIDS");
    for p in &list.partitions {
        text.push_str(&format!(
            "{:<8} {:<24} {:<6} {}\n",
            p.pkey.to_string(),
            p.name,
            if p.ip_over_ib { "yes" } else { "no" },
            p.members.len()
        ));
    }
    for (pkey, reason) in &list.unreadable {
        text.push_str(&format!("{:<8} unreadable: {reason}\n", pkey.to_string()));
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
        let index0 = if member.join.index0 { "  index0" } else { "" };
        text.push_str(&format!(
            "  {}  {:<7}{index0}\n",
            member.guid,
            member.join.membership.as_str()
        ));
    }
    text
}
