//! The configuration layers, lowest to highest precedence: built-in defaults, pcocc's files
//! (`super::pcocc`), the tool's own YAML file, systemd credentials, command-line flags. Each
//! value is parsed by its key's kind as it enters ([`super::values`]), so a wrong value is
//! reported with its source at once, and remembers that source for `ufm-pkeyd config`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::keys::{KEYS, Kind, key_def};
use super::values::Value;
use crate::error::{Error, Result};
use crate::net::http::redact_userinfo;

/// Where a value came from, lowest precedence first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    Default,
    Pcocc(PathBuf),
    File(PathBuf),
    Credential(PathBuf),
    /// A secret file in /etc/ufm-pkeyd/ that the unit loads as a credential, found by a
    /// command run by hand (so that root's commands find what the daemon uses).
    UnitFile(PathBuf),
    Flag(String),
    Prompt,
}

impl Source {
    /// Precedence: a value from a higher rank wins.
    pub(crate) fn rank(&self) -> u8 {
        match self {
            Source::Default | Source::UnitFile(_) => 0,
            Source::Pcocc(_) => 1,
            Source::File(_) => 2,
            Source::Credential(_) => 3,
            Source::Flag(_) | Source::Prompt => 4,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::Pcocc(p) => write!(f, "pcocc {}", p.display()),
            Source::File(p) => write!(f, "file {}", p.display()),
            Source::Credential(p) => write!(f, "credential {}", p.display()),
            Source::UnitFile(p) => write!(f, "the unit's credential file {}", p.display()),
            Source::Flag(flag) => write!(f, "flag {flag}"),
            Source::Prompt => f.write_str("prompt"),
        }
    }
}

/// One value: as written (for display; secrets redacted), parsed, and where it came from.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub text: String,
    pub value: Value,
    pub source: Source,
}

/// Command-line input to configuration: keys set by flags, and where to look for files.
#[derive(Clone, Debug, Default)]
pub(crate) struct FlagLayer {
    /// Key → (value, flag as typed).
    pub values: BTreeMap<&'static str, (String, String)>,
    /// `--config FILE`.
    pub config_file: Option<PathBuf>,
    /// `--etcd-prompt-password`.
    pub prompt_etcd_password: bool,
    /// `--ufm-prompt-password`.
    pub prompt_ufm_password: bool,
}

/// One row of `ufm-pkeyd config`: a key, its value (secrets and URL credentials redacted) and
/// its source, or `None` when no layer sets it.
pub(crate) struct KeyReport {
    pub name: &'static str,
    pub value: Option<String>,
    /// The value as JSON of its kind (a number, a boolean, a list, text), redacted alike.
    pub typed: Option<serde_json::Value>,
    pub source: Option<String>,
    pub help: &'static str,
}

/// Whether a credential file holds a secret: not empty once one trailing newline is taken
/// off. The unit's fallback for a credential file that is absent (`SetCredential=NAME:\n`,
/// since systemd 252 refuses an empty value) is such a newline; an unreadable file counts as
/// given, so that reading it reports why.
fn holds_something(path: &Path) -> bool {
    match std::fs::read(path) {
        Ok(bytes) => {
            let bytes = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
            let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
            !bytes.is_empty()
        }
        Err(e) => e.kind() != std::io::ErrorKind::NotFound && path.is_file(),
    }
}

/// Every layer merged: for each key, the entry of the highest layer that sets it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Layers {
    entries: BTreeMap<&'static str, Entry>,
    /// Warnings found while loading, logged once logging is set up.
    pub warnings: Vec<String>,
}

impl Layers {
    /// The built-in defaults.
    pub(crate) fn defaults() -> Result<Layers> {
        let mut layers = Layers::default();
        for key in KEYS {
            if let Some(default) = key.default {
                layers.set(key.name, default, Source::Default)?;
            }
        }
        Ok(layers)
    }

    /// Sets a key from a layer, parsing the value by the key's kind; an unknown key or a
    /// value of the wrong kind is a configuration error naming both and the source.
    pub(crate) fn set(&mut self, name: &str, text: &str, source: Source) -> Result<()> {
        let key = key_def(name).ok_or_else(|| {
            Error::usage(format!(
                "unknown key {name:?} in {source}: see ufm-pkeyd.yaml(5) for the keys"
            ))
        })?;
        let value = key.kind.parse(text).map_err(|expected| {
            let shown = if key.kind == Kind::Secret {
                "<redacted>".to_string()
            } else {
                format!("{text:?}")
            };
            Error::usage(match &source {
                Source::Flag(flag) => format!("{flag} {shown} is not valid: {expected}"),
                other => format!("{} {shown} from {other} is not valid: {expected}", key.name),
            })
        })?;
        // A secret's text lives in its `Value::Secret` only, which never prints.
        let text = match key.kind {
            Kind::Secret => "<redacted>".to_string(),
            _ => text.to_string(),
        };
        let entry = Entry {
            text,
            value,
            source,
        };
        self.entries.insert(key.name, entry);
        Ok(())
    }

    /// The entry of a key, if any layer sets it.
    pub(crate) fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.get(name)
    }

    /// The precedence rank of the layer that set `name` (0 when none did).
    pub(crate) fn rank(&self, name: &str) -> u8 {
        self.get(name).map_or(0, |e| e.source.rank())
    }

    /// Merges the tool's own YAML file (a mapping of keys to scalars or lists).
    pub(crate) fn load_own_file(
        &mut self,
        path: &Path,
        map: BTreeMap<String, String>,
    ) -> Result<()> {
        for (name, value) in map {
            self.set(&name, &value, Source::File(path.to_path_buf()))?;
        }
        Ok(())
    }

    /// Merges systemd credentials from `$CREDENTIALS_DIRECTORY`: the files `etcd-password`,
    /// `ufm-password` and `ufm-token`. An empty credential counts as not given, so a unit can
    /// offer an empty fallback for a site that has no such secret.
    pub(crate) fn load_credentials(&mut self, dir: &Path) {
        for (name, key) in [
            ("etcd-password", "etcd-password-file"),
            ("ufm-password", "ufm-password-file"),
            ("ufm-token", "ufm-token-file"),
        ] {
            let path = dir.join(name);
            if holds_something(&path) {
                let text = path.display().to_string();
                // A path never fails to parse.
                let _ = self.set(key, &text, Source::Credential(path));
            }
        }
    }

    /// Outside the unit (no `$CREDENTIALS_DIRECTORY`), the secret files the unit would load as
    /// credentials (`DIR/ufm-password`, `DIR/ufm-token`, `DIR/etcd-password`), for a secret no
    /// layer gives: root's commands then find what the daemon uses, without flags. The etcd
    /// password only when an etcd user is set.
    pub(crate) fn load_unit_files(&mut self, dir: &Path) {
        let ufm_given = ["ufm-password", "ufm-password-file", "ufm-token-file"]
            .iter()
            .any(|k| self.get(k).is_some());
        let etcd_wanted = self.get("etcd-user").is_some()
            && self.get("etcd-password").is_none()
            && self.get("etcd-password-file").is_none();
        for (name, key, wanted) in [
            ("ufm-password", "ufm-password-file", !ufm_given),
            ("ufm-token", "ufm-token-file", !ufm_given),
            ("etcd-password", "etcd-password-file", etcd_wanted),
        ] {
            let path = dir.join(name);
            // Only a file this user can read: the service's own user cannot read root's
            // files, and gets its secrets as credentials.
            let readable = std::fs::File::open(&path).is_ok();
            if wanted && readable && holds_something(&path) {
                let text = path.display().to_string();
                // A path never fails to parse.
                let _ = self.set(key, &text, Source::UnitFile(path));
            }
        }
    }

    /// Merges the flags, warning about passwords given on the command line.
    pub(crate) fn load_flags(&mut self, flags: &FlagLayer) -> Result<()> {
        for (name, (value, typed)) in &flags.values {
            self.set(name, value, Source::Flag(typed.clone()))?;
            if let Some(service) = name.strip_suffix("-password") {
                self.warnings.push(format!(
                    "{typed} shows the password in `ps` and shell history: prefer --{name}-file, --{service}-prompt-password or a systemd credential"
                ));
            }
        }
        Ok(())
    }

    /// Every key with its value (secrets and URL credentials redacted) and source.
    pub(crate) fn describe(&self) -> Vec<KeyReport> {
        KEYS.iter()
            .map(|key| {
                let entry = self.get(key.name);
                KeyReport {
                    name: key.name,
                    value: entry.map(|e| redact_userinfo(&e.text)),
                    typed: entry.map(|e| e.value.to_json()),
                    source: entry.map(|e| e.source.to_string()),
                    help: key.help,
                }
            })
            .collect()
    }
}

/// Reads a YAML mapping whose values are scalars or lists of scalars into text values; lists
/// become comma-separated.
pub(crate) fn yaml_to_flat_map(
    text: &str,
) -> std::result::Result<BTreeMap<String, String>, String> {
    let value: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
    flat_map(value)
}

/// Like [`yaml_to_flat_map`], for a value already parsed.
pub(crate) fn flat_map(
    value: serde_yaml::Value,
) -> std::result::Result<BTreeMap<String, String>, String> {
    let mapping = match value {
        serde_yaml::Value::Null => return Ok(BTreeMap::new()),
        serde_yaml::Value::Mapping(m) => m,
        _ => return Err("expected a mapping".to_string()),
    };
    let mut out = BTreeMap::new();
    for (key, value) in mapping {
        let key = scalar_text(&key).ok_or("keys must be text")?;
        let text = match &value {
            serde_yaml::Value::Sequence(items) => items
                .iter()
                .map(|i| scalar_text(i).ok_or(format!("{key}: list items must be scalars")))
                .collect::<std::result::Result<Vec<_>, _>>()?
                .join(","),
            other => scalar_text(other).ok_or(format!("{key}: expected a scalar or a list"))?,
        };
        out.insert(key, text);
    }
    Ok(out)
}

fn scalar_text(value: &serde_yaml::Value) -> Option<String> {
    match value {
        serde_yaml::Value::String(s) => Some(s.clone()),
        serde_yaml::Value::Bool(b) => Some(b.to_string()),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}
