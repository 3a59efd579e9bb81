//! pcocc's configuration, read as the lowest layer above the defaults: `batch.yaml` (etcd
//! servers, port, protocol, CA, auth type) and `ufm.yaml` (UFM servers, auth type, user) under
//! `settings:`, and the password or token files next to them.

use std::collections::BTreeMap;
use std::path::Path;

use super::layers::{Layers, Source, flat_map};
use crate::error::{Error, Result};

/// Merges pcocc's files from `dir` into `layers`; missing files are skipped.
pub(crate) fn load(layers: &mut Layers, dir: &Path) -> Result<()> {
    let batch = dir.join("batch.yaml");
    if let Some(settings) = read_settings(&batch)? {
        load_batch(layers, dir, &batch, &settings)?;
    }
    let ufm = dir.join("ufm.yaml");
    if let Some(settings) = read_settings(&ufm)? {
        load_ufm(layers, dir, &ufm, &settings)?;
    }
    Ok(())
}

fn load_batch(
    layers: &mut Layers,
    dir: &Path,
    path: &Path,
    settings: &BTreeMap<String, String>,
) -> Result<()> {
    let source = || Source::Pcocc(path.to_path_buf());
    if !settings.contains_key("etcd-servers") {
        // pcocc's own batch.yaml names its etcd servers under `settings:`; without them the
        // etcd settings come from elsewhere (and the keyspace is not set to v2 for pcocc).
        layers.warnings.push(format!(
            "{} has no etcd settings under `settings:` (etcd-servers): set etcd-endpoints and etcd-api: v2 in ufm-pkeyd's configuration, or --no-pcocc",
            path.display()
        ));
    }
    let pairs = [
        ("etcd-servers", "etcd-endpoints"),
        ("etcd-client-port", "etcd-port"),
        ("etcd-protocol", "etcd-protocol"),
        ("etcd-ca-cert", "etcd-ca-cert"),
    ];
    for (theirs, ours) in pairs {
        if let Some(value) = settings.get(theirs) {
            layers.set(ours, value, source())?;
        }
    }
    // pcocc writes its keys through the v2 API, and v2 and v3 keyspaces are separate.
    if settings.contains_key("etcd-servers") {
        layers.set("etcd-api", "v2", source())?;
    }
    match settings.get("etcd-auth-type").map(String::as_str) {
        Some("password") => {
            layers.set("etcd-user", "root", source())?;
            let password = dir.join("etcd-password");
            if password.exists() {
                let text = password.display().to_string();
                layers.set("etcd-password-file", &text, Source::Pcocc(password))?;
            }
        }
        Some("none") | None => {}
        Some(other) => layers.warnings.push(format!(
            "{}: etcd-auth-type {other:?} is not supported; give --etcd-user and --etcd-password-file",
            path.display()
        )),
    }
    Ok(())
}

fn load_ufm(
    layers: &mut Layers,
    dir: &Path,
    path: &Path,
    settings: &BTreeMap<String, String>,
) -> Result<()> {
    let source = || Source::Pcocc(path.to_path_buf());
    if let Some(servers) = settings.get("ufm-servers") {
        layers.set("ufm-host", servers, source())?;
    }
    if let Some(user) = settings.get("ufm-user") {
        layers.set("ufm-user", user, source())?;
    }
    let (key, file) = match settings.get("ufm-auth-type").map(String::as_str) {
        Some("token") => ("ufm-token-file", dir.join("ufm-token")),
        Some("basic") | Some("password") | None => ("ufm-password-file", dir.join("ufm-password")),
        Some(other) => {
            return Err(Error::usage(format!(
                "{}: ufm-auth-type {other:?} is not supported: use basic or token",
                path.display()
            )));
        }
    };
    if file.exists() {
        let text = file.display().to_string();
        layers.set(key, &text, Source::Pcocc(file))?;
    }
    Ok(())
}

/// Reads the `settings:` mapping of a pcocc file; `None` when the file does not exist.
fn read_settings(path: &Path) -> Result<Option<BTreeMap<String, String>>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::usage(format!(
                "cannot read pcocc file {}: {e} (use --no-pcocc to ignore pcocc's files)",
                path.display()
            )));
        }
    };
    let document: serde_yaml::Value = serde_yaml::from_str(&text).map_err(|e| {
        Error::usage(format!(
            "pcocc file {} is not valid YAML: {e} (use --no-pcocc to ignore pcocc's files)",
            path.display()
        ))
    })?;
    let Some(settings) = document.get("settings") else {
        return Ok(Some(BTreeMap::new()));
    };
    flat_map(settings.clone())
        .map(Some)
        .map_err(|e| Error::usage(format!("pcocc file {}: settings: {e}", path.display())))
}
