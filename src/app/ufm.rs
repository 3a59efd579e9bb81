//! `ufm-pkeyd ufm`: one-shot UFM PKey operations, with the old tool's flags. Which UFM
//! routes carry each write (the documented ones or `/actions/*`) is the client's business;
//! this module decides what to ask for: a partition's IPoIB setting is kept unless a flag
//! says otherwise, and a remove or a delete says "not found" only when UFM's single-PKey read
//! says so. There is no leadership to keep here: every write goes through an open gate.

use std::collections::BTreeSet;

use serde_json::json;

use super::{Output, ufm_client};
use crate::cli::UfmOp;
use crate::config::Settings;
use crate::error::{Error, Result};
use crate::model::{Guid, Join, PKey, Partition};
use crate::net::ufm::{
    Auth, Deletion, PartitionList, REMOVE_BATCH, UfmClient, UfmError, open_gate,
};
use crate::text::escape;

/// UFM's documented default for a new partition's IP over InfiniBand (ufm-api.md §3.4).
const UFM_DEFAULT_IP_OVER_IB: bool = true;

/// Runs one UFM operation.
pub(super) fn run(op: &UfmOp, settings: &Settings, out: &Output) -> Result<()> {
    let client = ufm_client(settings)?;
    match op {
        UfmOp::Check => check(&client, settings, out),
        UfmOp::List => list(&client, out),
        UfmOp::Get(pkey) => {
            let partition = client.get(*pkey)?.ok_or_else(|| not_found(*pkey))?;
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
        } => create(
            &client,
            *pkey,
            guids,
            *join,
            ip_over_ib.unwrap_or(UFM_DEFAULT_IP_OVER_IB),
            out,
        ),
        UfmOp::Delete(pkey) => delete(&client, *pkey, out),
        UfmOp::AddGuids {
            pkey,
            guids,
            join,
            ip_over_ib,
        } => add_guids(&client, *pkey, guids, *join, *ip_over_ib, out),
        UfmOp::RemoveGuids { pkey, guids } => remove_guids(&client, *pkey, guids, out),
    }
}

fn check(client: &UfmClient, settings: &Settings, out: &Output) -> Result<()> {
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

fn list(client: &UfmClient, out: &Output) -> Result<()> {
    let list = client.list_partitions()?;
    if !out.json {
        return out.print(&partition_table(&list));
    }
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
}

/// `--create-pkey`: an empty partition, or one with `--guids`; never changes one that exists.
fn create(
    client: &UfmClient,
    pkey: PKey,
    guids: &[Guid],
    join: Join,
    ip_over_ib: bool,
    out: &Output,
) -> Result<()> {
    let json = json!({"pkey": pkey.to_string(), "guids": guids.len(), "ip_over_ib": ip_over_ib});
    if guids.is_empty() {
        client.create(pkey, join.index0, ip_over_ib, &mut open_gate)?;
        let text = format!("created PKey {pkey} (ip_over_ib {})", on_off(ip_over_ib));
        return out.done(&text, json);
    }
    if client.get(pkey)?.is_some() {
        return Err(UfmError::AlreadyExists(format!(
            "PKey {pkey} already exists in UFM: add GUIDs with --pkey {pkey} --guids"
        ))
        .into());
    }
    client.add_guids(pkey, guids, join, ip_over_ib, &mut open_gate)?;
    let text = format!(
        "created PKey {pkey} with {} (ip_over_ib {})",
        guid_count(guids.len()),
        on_off(ip_over_ib)
    );
    out.done(&text, json)
}

fn delete(client: &UfmClient, pkey: PKey, out: &Output) -> Result<()> {
    let text = match client.delete(pkey, &mut open_gate)? {
        Deletion::Deleted => format!("deleted PKey {pkey}"),
        Deletion::ByRemovingGuids(n) => format!(
            "deleted PKey {pkey} by removing its {} (this UFM has no DELETE /resources/pkeys/{{pkey}}; it deletes an emptied partition)",
            guid_count(n)
        ),
    };
    out.done(&text, json!({"pkey": pkey.to_string()}))
}

/// `--pkey --guids`: the partition's IPoIB setting is read first and kept (UFM may set it
/// from every add request) unless `--ip-over-ib` or `--no-ip-over-ib` says otherwise.
fn add_guids(
    client: &UfmClient,
    pkey: PKey,
    guids: &[Guid],
    join: Join,
    asked: Option<bool>,
    out: &Output,
) -> Result<()> {
    let (ip_over_ib, why) = match asked {
        Some(value) => (value, "as asked"),
        None => match client.get(pkey)? {
            Some(partition) => (partition.ip_over_ib, "kept"),
            None => (UFM_DEFAULT_IP_OVER_IB, "UFM's default for a new partition"),
        },
    };
    client.add_guids(pkey, guids, join, ip_over_ib, &mut open_gate)?;
    out.done(
        &format!(
            "added {} to PKey {pkey} (membership {}, index0 {}, ip_over_ib {}: {why})",
            guid_count(guids.len()),
            join.membership,
            on_off(join.index0),
            on_off(ip_over_ib)
        ),
        json!({"pkey": pkey.to_string(), "guids": guids.len(), "ip_over_ib": ip_over_ib}),
    )
}

/// `--pkey --guids --remove-guids`: reads the partition first (a missing PKey is exit 3 on
/// every UFM, also one whose remove route answers 200 for it), then removes its members among
/// `guids`, at most [`REMOVE_BATCH`] per request.
fn remove_guids(client: &UfmClient, pkey: PKey, guids: &[Guid], out: &Output) -> Result<()> {
    let partition = client.get(pkey)?.ok_or_else(|| not_found(pkey))?;
    let members: BTreeSet<Guid> = partition.members.iter().map(|m| m.guid).collect();
    let present: Vec<Guid> = guids
        .iter()
        .filter(|g| members.contains(g))
        .copied()
        .collect();
    for batch in present.chunks(REMOVE_BATCH) {
        client.remove_guids(pkey, batch, &mut open_gate)?;
    }
    let mut text = format!("removed {} from PKey {pkey}", guid_count(present.len()));
    if present.len() < guids.len() {
        text.push_str(&format!(
            "; {} of the given GUIDs were not members",
            guids.len() - present.len()
        ));
    }
    if !present.is_empty() && present.len() == members.len() {
        text.push_str("; UFM deletes a partition left without GUIDs");
    }
    out.done(
        &text,
        json!({"pkey": pkey.to_string(), "guids": present.len(), "not_members": guids.len() - present.len()}),
    )
}

fn not_found(pkey: PKey) -> Error {
    Error::NotFound(format!("PKey {pkey} not found in UFM"))
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

/// The partitions for people; names and reasons come from UFM and are escaped.
fn partition_table(list: &PartitionList) -> String {
    let mut text = format!("{:<8} {:<24} {:<6} {}\n", "PKEY", "NAME", "IPOIB", "GUIDS");
    for p in &list.partitions {
        text.push_str(&format!(
            "{:<8} {:<24} {:<6} {}\n",
            p.pkey.to_string(),
            escape(&p.name),
            if p.ip_over_ib { "yes" } else { "no" },
            p.members.len()
        ));
    }
    for (pkey, reason) in &list.unreadable {
        text.push_str(&format!(
            "{:<8} unreadable: {}\n",
            pkey.to_string(),
            escape(reason)
        ));
    }
    text
}

fn partition_detail(partition: &Partition) -> String {
    let mut text = format!(
        "pkey:        {}\nname:        {}\nip_over_ib:  {}\nguids:       {}\n",
        partition.pkey,
        escape(&partition.name),
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
