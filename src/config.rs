//! Configuration: where every setting comes from, and the typed settings the clients use.
//!
//! Settings are gathered as raw text in layers, lowest to highest precedence: built-in
//! defaults, pcocc's files (`batch.yaml`, `ufm.yaml`, `etcd-password`, `ufm-password` in the
//! pcocc directory), the tool's own YAML file, systemd credentials, then command-line flags.
//! Each raw value remembers its source, so `ufm-pkeyd config` can say where it came from. The
//! raw layers are then resolved into [`EtcdSettings`] and [`UfmSettings`], one at a time, so a
//! command that only talks to etcd never fails over a missing UFM setting.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::election::ElectionSettings;
use crate::error::{Error, Result};
use crate::http::TlsOptions;
use crate::plan::{DeleteGuard, Policy};
use crate::secret::Secret;

/// The default location of the tool's own configuration file, read when present.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/ufm-pkeyd/ufm-pkeyd.yaml";
/// The default pcocc configuration directory.
pub const DEFAULT_PCOCC_DIR: &str = "/etc/pcocc";
/// Where the daemon records the partitions it owns.
pub const DEFAULT_STATE_FILE: &str = "/var/lib/ufm-pkeyd/state.json";
/// The etcd prefix under which pcocc writes one key per partition.
pub const DEFAULT_PREFIX: &str = "/pcocc/global/opensm/pkeys/";

/// What kind of value a key holds, to check the configuration file and print help.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Text,
    Bool,
    Seconds,
    Port,
    /// Comma-separated in flags, a YAML list or a comma-separated string in files.
    List,
    Path,
    Choice(&'static [&'static str]),
    Secret,
    /// A whole number.
    Count,
}

/// One configuration key: its name in the YAML file, its default and what it means.
#[derive(Debug)]
pub struct KeyDef {
    pub name: &'static str,
    pub kind: Kind,
    pub default: Option<&'static str>,
    pub help: &'static str,
}

macro_rules! key {
    ($name:literal, $kind:expr, $default:expr, $help:literal) => {
        KeyDef {
            name: $name,
            kind: $kind,
            default: $default,
            help: $help,
        }
    };
}

/// Every configuration key. The flag table in `cli`, the man page `ufm-pkeyd.yaml(5)` and the
/// tests are checked against this list.
#[rustfmt::skip]
pub const KEYS: &[KeyDef] = &[
    key!("etcd-endpoints", Kind::List, None, "etcd endpoints, each host, host:port or URL; tried in order, failing over on connection errors"),
    key!("etcd-host", Kind::Text, Some("127.0.0.1"), "etcd host, when etcd-endpoints is not set"),
    key!("etcd-port", Kind::Port, Some("2379"), "etcd client port, for endpoints given without one"),
    key!("etcd-protocol", Kind::Choice(&["http", "https"]), Some("http"), "scheme for endpoints given without one"),
    key!("etcd-api", Kind::Choice(&["v2", "v3"]), Some("v3"), "etcd API and keyspace; v2 by default when the etcd settings come from pcocc's batch.yaml"),
    key!("etcd-ca-cert", Kind::Path, None, "PEM CA bundle to verify etcd's certificate"),
    key!("etcd-cert-file", Kind::Path, None, "PEM client certificate for etcd"),
    key!("etcd-key-file", Kind::Path, None, "PEM client key for etcd"),
    key!("etcd-user", Kind::Text, None, "etcd user name"),
    key!("etcd-password", Kind::Secret, None, "etcd password (prefer etcd-password-file or a systemd credential)"),
    key!("etcd-password-file", Kind::Path, None, "file holding the etcd password"),
    key!("etcd-timeout", Kind::Seconds, Some("30"), "seconds to wait for etcd to connect or answer"),
    key!("etcd-prefix", Kind::Text, Some(DEFAULT_PREFIX), "etcd prefix holding one key per partition"),
    key!("etcd-proxy", Kind::Text, None, "HTTP proxy for etcd (none unless set)"),
    key!("ufm-host", Kind::List, None, "UFM host, host:port or URL; several are tried in order"),
    key!("ufm-http", Kind::Bool, Some("false"), "talk plain HTTP to UFM instead of HTTPS"),
    key!("ufm-user", Kind::Text, Some("admin"), "UFM user for basic authentication"),
    key!("ufm-password", Kind::Secret, None, "UFM password (prefer ufm-password-file or a systemd credential)"),
    key!("ufm-password-file", Kind::Path, None, "file holding the UFM password"),
    key!("ufm-token-file", Kind::Path, None, "file holding a UFM access token; selects token authentication on /ufmRestV3"),
    key!("ufm-ssl-verify", Kind::Bool, Some("true"), "verify UFM's TLS certificate (UFM ships a self-signed one)"),
    key!("ufm-ca-cert", Kind::Path, None, "PEM CA bundle to verify UFM's certificate"),
    key!("ufm-timeout", Kind::Seconds, Some("30"), "seconds to wait for UFM to connect or answer"),
    key!("ufm-proxy", Kind::Text, None, "HTTP proxy for UFM (none unless set)"),
    key!("state-file", Kind::Path, Some(DEFAULT_STATE_FILE), "file recording which partitions ufm-pkeyd owns"),
    key!("metrics-file", Kind::Path, None, "write Prometheus metrics to this file after each pass (node_exporter textfile collector)"),
    key!("poll-interval", Kind::Seconds, Some("30"), "seconds between full passes; changes in etcd are applied at once"),
    key!("allow-mass-delete", Kind::Bool, Some("false"), "allow one pass to delete more partitions than the guard permits"),
    key!("max-deletes", Kind::Count, Some("10"), "a pass may delete this many owned partitions, or up to half of them, without --allow-mass-delete"),
    key!("host-index0", Kind::Bool, Some("false"), "put partitions at index 0 of host ports (pcocc keeps the default partition there)"),
    key!("vf-index0", Kind::Bool, Some("true"), "put partitions at index 0 of VF ports (a VF needs its partition there)"),
    key!("membership", Kind::Choice(&["full", "limited"]), Some("full"), "membership of GUIDs added from etcd"),
    key!("ip-over-ib", Kind::Bool, Some("true"), "enable IP over InfiniBand on partitions created from etcd"),
    key!("leader-election", Kind::Bool, Some("false"), "run as one of several instances: only the elected leader changes UFM"),
    key!("election-key", Kind::Text, Some("/ufm-pkeyd/leader"), "etcd key of the leader election (in the keyspace of etcd-api)"),
    key!("state-key", Kind::Text, Some("/ufm-pkeyd/owned"), "etcd key recording owned partitions when leader-election is on (shared by the instances)"),
    key!("election-ttl", Kind::Seconds, Some("15"), "seconds a leader's claim lives without refresh; a standby takes over within it"),
    key!("pcocc-dir", Kind::Path, Some(DEFAULT_PCOCC_DIR), "pcocc configuration directory read for etcd and UFM settings"),
    key!("use-pcocc", Kind::Bool, Some("true"), "read pcocc's configuration files"),
    key!("debug", Kind::Bool, Some("false"), "log debug detail (never secrets)"),
];

/// Looks a key up by name.
pub fn key_def(name: &str) -> Option<&'static KeyDef> {
    KEYS.iter().find(|k| k.name == name)
}

/// Where a raw value came from, lowest precedence first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Default,
    Pcocc(PathBuf),
    File(PathBuf),
    Credential(PathBuf),
    Flag(String),
    Prompt,
}

impl Source {
    fn rank(&self) -> u8 {
        match self {
            Source::Default => 0,
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
            Source::Flag(flag) => write!(f, "flag {flag}"),
            Source::Prompt => f.write_str("prompt"),
        }
    }
}

/// A raw value and its source.
#[derive(Clone, Debug)]
pub struct Entry {
    pub value: String,
    pub source: Source,
}

/// Command-line input to configuration: config keys set by flags, and where to look for files.
#[derive(Clone, Debug, Default)]
pub struct FlagLayer {
    /// Key → (value, flag as typed).
    pub values: BTreeMap<&'static str, (String, String)>,
    /// `--config FILE`.
    pub config_file: Option<PathBuf>,
    /// `--etcd-prompt-password`.
    pub prompt_etcd_password: bool,
}

/// All raw layers merged: for each key, the value of the highest layer that sets it.
#[derive(Clone, Debug, Default)]
pub struct RawConfig {
    entries: BTreeMap<&'static str, Entry>,
    /// Warnings found while loading, logged by the caller once logging is set up.
    pub warnings: Vec<String>,
    prompt_etcd_password: bool,
}

impl RawConfig {
    /// Loads every layer. `credentials_dir` is `$CREDENTIALS_DIRECTORY` (systemd).
    pub fn load(flags: &FlagLayer, credentials_dir: Option<&Path>) -> Result<RawConfig> {
        let mut raw = RawConfig {
            prompt_etcd_password: flags.prompt_etcd_password,
            ..RawConfig::default()
        };
        for key in KEYS {
            if let Some(default) = key.default {
                raw.set(key.name, default.to_string(), Source::Default);
            }
        }
        // The tool's own file is read before pcocc's because it may move or disable the pcocc
        // directory; it is merged after, so it still overrides pcocc's values.
        let own = read_own_file(flags.config_file.as_deref())?;
        let flag = |name: &str| flags.values.get(name).map(|(v, _)| v.as_str());
        let own_value = |name: &str| own.as_ref().and_then(|(_, m)| m.get(name)).cloned();
        let use_pcocc = match flag("use-pcocc")
            .map(str::to_string)
            .or(own_value("use-pcocc"))
        {
            Some(v) => parse_bool("use-pcocc", &v)?,
            None => true,
        };
        if use_pcocc {
            let dir = flag("pcocc-dir")
                .map(PathBuf::from)
                .or(own_value("pcocc-dir").map(PathBuf::from))
                .unwrap_or_else(|| PathBuf::from(DEFAULT_PCOCC_DIR));
            raw.load_pcocc(&dir)?;
        }
        if let Some((path, map)) = own {
            for (name, value) in map {
                raw.set_known(&name, value, Source::File(path.clone()))?;
            }
        }
        if let Some(dir) = credentials_dir {
            raw.load_credentials(dir)?;
        }
        for (name, (value, flag)) in &flags.values {
            raw.set(name, value.clone(), Source::Flag(flag.clone()));
            if matches!(*name, "etcd-password" | "ufm-password") {
                raw.warnings.push(format!(
                    "{flag} shows the password in `ps` and shell history: prefer --{name}-file or a systemd credential"
                ));
            }
        }
        Ok(raw)
    }

    fn set(&mut self, name: &'static str, value: String, source: Source) {
        self.entries.insert(name, Entry { value, source });
    }

    fn set_known(&mut self, name: &str, value: String, source: Source) -> Result<()> {
        let key = key_def(name).ok_or_else(|| {
            Error::usage(format!(
                "unknown key {name:?} in {source}: see ufm-pkeyd.yaml(5) for the keys"
            ))
        })?;
        check_kind(key, &value, &source)?;
        self.set(key.name, value, source);
        Ok(())
    }

    /// The raw entry of a key, if any layer sets it.
    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.get(name)
    }

    fn value(&self, name: &str) -> Option<&str> {
        self.get(name).map(|e| e.value.as_str())
    }

    fn rank(&self, name: &str) -> u8 {
        self.get(name).map_or(0, |e| e.source.rank())
    }

    /// Every key with its value (secrets redacted) and source, for `ufm-pkeyd config`.
    pub fn describe(&self) -> Vec<(&'static str, Option<String>, Option<String>)> {
        KEYS.iter()
            .map(|key| match self.get(key.name) {
                Some(entry) => {
                    let value = if key.kind == Kind::Secret {
                        "<redacted>".to_string()
                    } else {
                        entry.value.clone()
                    };
                    (key.name, Some(value), Some(entry.source.to_string()))
                }
                None => (key.name, None, None),
            })
            .collect()
    }

    fn load_pcocc(&mut self, dir: &Path) -> Result<()> {
        let batch = dir.join("batch.yaml");
        if let Some(settings) = read_pcocc_settings(&batch)? {
            self.load_pcocc_batch(dir, &batch, &settings)?;
        }
        let ufm = dir.join("ufm.yaml");
        if let Some(settings) = read_pcocc_settings(&ufm)? {
            self.load_pcocc_ufm(dir, &ufm, &settings)?;
        }
        Ok(())
    }

    fn load_pcocc_batch(
        &mut self,
        dir: &Path,
        path: &Path,
        settings: &BTreeMap<String, String>,
    ) -> Result<()> {
        let source = || Source::Pcocc(path.to_path_buf());
        let pairs = [
            ("etcd-servers", "etcd-endpoints"),
            ("etcd-client-port", "etcd-port"),
            ("etcd-protocol", "etcd-protocol"),
            ("etcd-ca-cert", "etcd-ca-cert"),
        ];
        for (theirs, ours) in pairs {
            if let Some(value) = settings.get(theirs) {
                self.set_known(ours, value.clone(), source())?;
            }
        }
        // pcocc writes its keys through the v2 API, and v2 and v3 keyspaces are separate.
        if settings.contains_key("etcd-servers") {
            self.set("etcd-api", "v2".into(), source());
        }
        match settings.get("etcd-auth-type").map(String::as_str) {
            Some("password") => {
                self.set("etcd-user", "root".into(), source());
                let password = dir.join("etcd-password");
                if password.exists() {
                    self.set(
                        "etcd-password-file",
                        password.display().to_string(),
                        Source::Pcocc(password.clone()),
                    );
                }
            }
            Some("none") | None => {}
            Some(other) => self.warnings.push(format!(
                "{}: etcd-auth-type {other:?} is not supported; give --etcd-user and --etcd-password-file",
                path.display()
            )),
        }
        Ok(())
    }

    fn load_pcocc_ufm(
        &mut self,
        dir: &Path,
        path: &Path,
        settings: &BTreeMap<String, String>,
    ) -> Result<()> {
        let source = || Source::Pcocc(path.to_path_buf());
        if let Some(servers) = settings.get("ufm-servers") {
            self.set_known("ufm-host", servers.clone(), source())?;
        }
        if let Some(user) = settings.get("ufm-user") {
            self.set_known("ufm-user", user.clone(), source())?;
        }
        let (key, file) = match settings.get("ufm-auth-type").map(String::as_str) {
            Some("token") => ("ufm-token-file", dir.join("ufm-token")),
            Some("basic") | Some("password") | None => {
                ("ufm-password-file", dir.join("ufm-password"))
            }
            Some(other) => {
                return Err(Error::usage(format!(
                    "{}: ufm-auth-type {other:?} is not supported: use basic or token",
                    path.display()
                )));
            }
        };
        if file.exists() {
            let name = key_def(key).map_or("ufm-password-file", |k| k.name);
            self.set(
                name,
                file.display().to_string(),
                Source::Pcocc(file.clone()),
            );
        }
        Ok(())
    }

    fn load_credentials(&mut self, dir: &Path) -> Result<()> {
        for name in ["etcd-password", "ufm-password", "ufm-token"] {
            let path = dir.join(name);
            if !path.exists() {
                continue;
            }
            let source = Source::Credential(path.clone());
            match name {
                // A token is read from its file when UFM settings are resolved.
                "ufm-token" => self.set("ufm-token-file", path.display().to_string(), source),
                "etcd-password" => {
                    self.set("etcd-password-file", path.display().to_string(), source)
                }
                _ => self.set("ufm-password-file", path.display().to_string(), source),
            }
        }
        Ok(())
    }

    /// Resolves the etcd settings.
    pub fn etcd(&self) -> Result<EtcdSettings> {
        let endpoints = self.etcd_endpoints()?;
        let api = match self.value("etcd-api") {
            Some("v2") => EtcdApi::V2,
            _ => EtcdApi::V3,
        };
        let user = self.value("etcd-user").map(str::to_string);
        let password = self.password("etcd-password", "etcd-password-file")?;
        let password = if self.prompt_etcd_password {
            Some(prompt_password(&format!(
                "etcd password for {}: ",
                user.as_deref().unwrap_or("root")
            ))?)
        } else {
            password
        };
        if password.is_some() && user.is_none() {
            return Err(Error::usage(
                "an etcd password is set but no etcd user: give --etcd-user",
            ));
        }
        if user.is_some() && password.is_none() {
            return Err(Error::usage(format!(
                "etcd user {:?} has no password: give --etcd-password-file, a systemd credential etcd-password, or --etcd-prompt-password",
                user.as_deref().unwrap_or_default()
            )));
        }
        let client_cert = self.cert_pair("etcd-cert-file", "etcd-key-file")?;
        Ok(EtcdSettings {
            endpoints,
            api,
            api_source: self
                .get("etcd-api")
                .map_or(Source::Default, |e| e.source.clone()),
            tls: TlsOptions {
                ca_file: self.value("etcd-ca-cert").map(PathBuf::from),
                client_cert,
                insecure: false,
            },
            user,
            password,
            timeout: self.request_timeout("etcd-timeout")?,
            prefix: directory_prefix(self.value("etcd-prefix").unwrap_or(DEFAULT_PREFIX)),
            proxy: self.value("etcd-proxy").map(str::to_string),
        })
    }

    /// etcd-endpoints wins over etcd-host unless etcd-host was set at a higher layer (a flag
    /// `--etcd-host` overrides endpoints read from pcocc's batch.yaml).
    fn etcd_endpoints(&self) -> Result<Vec<String>> {
        let scheme = self.value("etcd-protocol").unwrap_or("http");
        let port = self.value("etcd-port").unwrap_or("2379");
        let list = match self.get("etcd-endpoints") {
            Some(e) if e.source.rank() >= self.rank("etcd-host") => e.value.clone(),
            _ => self.value("etcd-host").unwrap_or("127.0.0.1").to_string(),
        };
        let endpoints: Vec<String> = split_list(&list)
            .map(|item| normalize_url(item, scheme, port))
            .collect::<Result<_>>()?;
        if endpoints.is_empty() {
            return Err(Error::usage("no etcd endpoint: give --etcd-endpoints"));
        }
        Ok(endpoints)
    }

    /// Resolves the UFM settings.
    pub fn ufm(&self) -> Result<UfmSettings> {
        let hosts = self.value("ufm-host").ok_or_else(|| {
            Error::usage(
                "no UFM host: give --ufm-host (or --host), or ufm-host in the configuration file",
            )
        })?;
        let plain = parse_bool("ufm-http", self.value("ufm-http").unwrap_or("false"))?;
        let (scheme, port) = if plain {
            ("http", "80")
        } else {
            ("https", "443")
        };
        let urls: Vec<String> = split_list(hosts)
            .map(|item| normalize_url(item, scheme, port))
            .collect::<Result<_>>()?;
        if urls.is_empty() {
            return Err(Error::usage("no UFM host: give --ufm-host"));
        }
        let token_beats_password = self.rank("ufm-token-file")
            >= self
                .rank("ufm-password")
                .max(self.rank("ufm-password-file"));
        let auth = match self.value("ufm-token-file") {
            Some(path) if token_beats_password => {
                UfmAuth::Token(read_secret_file("UFM token", Path::new(path))?)
            }
            _ => {
                let user = self.value("ufm-user").unwrap_or("admin").to_string();
                let password = self
                    .password("ufm-password", "ufm-password-file")?
                    .ok_or_else(|| {
                        Error::usage(format!(
                            "no UFM password for user {user:?}: give --ufm-password-file, a systemd credential ufm-password, or --ufm-token-file"
                        ))
                    })?;
                UfmAuth::Basic { user, password }
            }
        };
        let verify = parse_bool(
            "ufm-ssl-verify",
            self.value("ufm-ssl-verify").unwrap_or("true"),
        )?;
        Ok(UfmSettings {
            urls,
            auth,
            tls: TlsOptions {
                ca_file: self.value("ufm-ca-cert").map(PathBuf::from),
                client_cert: None,
                insecure: !verify,
            },
            timeout: self.request_timeout("ufm-timeout")?,
            proxy: self.value("ufm-proxy").map(str::to_string),
        })
    }

    /// Resolves the settings of the sync engine.
    pub fn sync(&self) -> Result<SyncSettings> {
        let flag =
            |name: &str, default: &str| parse_bool(name, self.value(name).unwrap_or(default));
        let max_deletes = self.value("max-deletes").unwrap_or("10");
        let max_deletes = max_deletes.parse::<usize>().map_err(|_| {
            Error::usage(format!(
                "max-deletes {max_deletes:?} is not valid: give a whole number"
            ))
        })?;
        let membership = self.value("membership").unwrap_or("full").parse()?;
        Ok(SyncSettings {
            prefix: directory_prefix(self.value("etcd-prefix").unwrap_or(DEFAULT_PREFIX)),
            state_file: PathBuf::from(self.value("state-file").unwrap_or(DEFAULT_STATE_FILE)),
            state_key: self
                .value("state-key")
                .unwrap_or("/ufm-pkeyd/owned")
                .to_string(),
            metrics_file: self.value("metrics-file").map(PathBuf::from),
            poll_interval: self.seconds("poll-interval")?,
            guard: DeleteGuard {
                max_deletes,
                allow_mass_delete: flag("allow-mass-delete", "false")?,
            },
            policy: Policy {
                host_index0: flag("host-index0", "false")?,
                vf_index0: flag("vf-index0", "true")?,
                membership,
                ip_over_ib: flag("ip-over-ib", "true")?,
            },
        })
    }

    /// The leader election settings, when it is on.
    pub fn election(&self) -> Result<Option<ElectionSettings>> {
        if !parse_bool(
            "leader-election",
            self.value("leader-election").unwrap_or("false"),
        )? {
            return Ok(None);
        }
        let key = self
            .value("election-key")
            .unwrap_or("/ufm-pkeyd/leader")
            .to_string();
        let ttl = self.seconds("election-ttl")?;
        if ttl < Duration::from_secs(3) {
            return Err(Error::usage(format!(
                "election-ttl {} s is too short: give at least 3 seconds",
                ttl.as_secs_f64()
            )));
        }
        Ok(Some(ElectionSettings { key, ttl }))
    }

    /// A request timeout. With leader election, no request may outlast a third of the TTL: a
    /// leader stops changing UFM two thirds into an unrefreshed claim, and a request started
    /// just before must end before the claim expires. Defaults shrink to fit; explicit values
    /// that do not fit are refused.
    fn request_timeout(&self, name: &str) -> Result<Duration> {
        let timeout = self.seconds(name)?;
        let Some(election) = self.election()? else {
            return Ok(timeout);
        };
        let cap = election.ttl / 3;
        if timeout <= cap {
            return Ok(timeout);
        }
        match self.get(name).map(|e| &e.source) {
            Some(Source::Default) | None => Ok(cap),
            Some(source) => Err(Error::usage(format!(
                "{name} {} s (from {source}) is longer than a third of election-ttl {} s: a leader could still be writing to UFM after its claim expired; lower {name} to {} s or raise election-ttl",
                timeout.as_secs_f64(),
                election.ttl.as_secs_f64(),
                cap.as_secs_f64()
            ))),
        }
    }

    /// Whether `--debug` (or the `debug` key) is on.
    pub fn debug(&self) -> bool {
        self.value("debug") == Some("true")
    }

    /// The password from whichever of the value key and the file key has the higher source.
    fn password(&self, value_key: &str, file_key: &str) -> Result<Option<Secret>> {
        let direct = self.get(value_key);
        let file = self.get(file_key);
        match (direct, file) {
            (Some(d), Some(f)) if f.source.rank() > d.source.rank() => {
                read_secret_file(value_key, Path::new(&f.value)).map(Some)
            }
            (Some(d), _) => Ok(Some(Secret::new(d.value.clone()))),
            (None, Some(f)) => read_secret_file(value_key, Path::new(&f.value)).map(Some),
            (None, None) => Ok(None),
        }
    }

    fn cert_pair(&self, cert_key: &str, key_key: &str) -> Result<Option<(PathBuf, PathBuf)>> {
        match (self.value(cert_key), self.value(key_key)) {
            (Some(c), Some(k)) => Ok(Some((PathBuf::from(c), PathBuf::from(k)))),
            (None, None) => Ok(None),
            (Some(_), None) => Err(Error::usage(format!(
                "{cert_key} is set without {key_key}: give both the client certificate and its key"
            ))),
            (None, Some(_)) => Err(Error::usage(format!(
                "{key_key} is set without {cert_key}: give both the client certificate and its key"
            ))),
        }
    }

    fn seconds(&self, name: &str) -> Result<Duration> {
        let text = self.value(name).unwrap_or("30");
        parse_seconds(name, text)
    }
}

/// Resolved settings of the sync engine.
#[derive(Clone, Debug)]
pub struct SyncSettings {
    pub prefix: String,
    pub state_file: PathBuf,
    /// Where ownership lives in etcd when leader election is on.
    pub state_key: String,
    /// Prometheus textfile to write after each pass.
    pub metrics_file: Option<PathBuf>,
    pub poll_interval: Duration,
    pub guard: DeleteGuard,
    pub policy: Policy,
}

/// Which etcd API (and so which keyspace) to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EtcdApi {
    V2,
    V3,
}

impl EtcdApi {
    /// The other API, for "nothing here, but the other keyspace has keys" hints.
    pub fn other(self) -> EtcdApi {
        match self {
            EtcdApi::V2 => EtcdApi::V3,
            EtcdApi::V3 => EtcdApi::V2,
        }
    }
}

impl fmt::Display for EtcdApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EtcdApi::V2 => "v2",
            EtcdApi::V3 => "v3",
        })
    }
}

/// Resolved etcd settings.
#[derive(Clone, Debug)]
pub struct EtcdSettings {
    /// Full base URLs, tried in order.
    pub endpoints: Vec<String>,
    pub api: EtcdApi,
    pub api_source: Source,
    pub tls: TlsOptions,
    pub user: Option<String>,
    pub password: Option<Secret>,
    pub timeout: Duration,
    pub prefix: String,
    pub proxy: Option<String>,
}

/// How to authenticate to UFM.
#[derive(Clone, Debug)]
pub enum UfmAuth {
    /// HTTP Basic on `/ufmRest`.
    Basic { user: String, password: Secret },
    /// An access token on `/ufmRestV3`.
    Token(Secret),
}

/// Resolved UFM settings.
#[derive(Clone, Debug)]
pub struct UfmSettings {
    /// Base URLs (`https://host:port`), tried in order.
    pub urls: Vec<String>,
    pub auth: UfmAuth,
    pub tls: TlsOptions,
    pub timeout: Duration,
    pub proxy: Option<String>,
}

fn read_own_file(explicit: Option<&Path>) -> Result<Option<(PathBuf, BTreeMap<String, String>)>> {
    let path = match explicit {
        Some(path) => path.to_path_buf(),
        None if Path::new(DEFAULT_CONFIG_FILE).exists() => PathBuf::from(DEFAULT_CONFIG_FILE),
        None => return Ok(None),
    };
    let text = std::fs::read_to_string(&path).map_err(|e| {
        Error::usage(format!(
            "cannot read configuration file {}: {e}",
            path.display()
        ))
    })?;
    let map = yaml_to_flat_map(&text).map_err(|e| {
        Error::usage(format!(
            "configuration file {} is not a YAML mapping of keys to values: {e}",
            path.display()
        ))
    })?;
    Ok(Some((path, map)))
}

/// Reads the `settings:` mapping of a pcocc file; `None` when the file does not exist.
fn read_pcocc_settings(path: &Path) -> Result<Option<BTreeMap<String, String>>> {
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
    let text = serde_yaml::to_string(settings).unwrap_or_default();
    yaml_to_flat_map(&text)
        .map(Some)
        .map_err(|e| Error::usage(format!("pcocc file {}: settings: {e}", path.display())))
}

/// Reads a YAML mapping whose values are scalars or lists of scalars into text values; lists
/// become comma-separated.
fn yaml_to_flat_map(text: &str) -> std::result::Result<BTreeMap<String, String>, String> {
    let value: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
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

fn check_kind(key: &KeyDef, value: &str, source: &Source) -> Result<()> {
    let bad = |expected: &str| {
        Err(Error::usage(format!(
            "{} {value:?} from {source} is not valid: expected {expected}",
            key.name
        )))
    };
    match key.kind {
        Kind::Bool if parse_bool(key.name, value).is_err() => bad("true or false"),
        Kind::Seconds if parse_seconds(key.name, value).is_err() => bad("a number of seconds"),
        Kind::Port if value.parse::<u16>().map_or(true, |p| p == 0) => {
            bad("a port from 1 to 65535")
        }
        Kind::Choice(choices) if !choices.contains(&value) => bad(&choices.join(" or ")),
        Kind::Count if value.parse::<usize>().is_err() => bad("a whole number"),
        _ => Ok(()),
    }
}

/// Parses a boolean setting.
pub fn parse_bool(name: &str, text: &str) -> Result<bool> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err(Error::usage(format!(
            "{name} {text:?} is not valid: use true or false"
        ))),
    }
}

/// Parses a positive number of seconds (fractions allowed).
pub fn parse_seconds(name: &str, text: &str) -> Result<Duration> {
    match text.trim().parse::<f64>() {
        Ok(s) if s > 0.0 && s <= 86_400.0 => Ok(Duration::from_secs_f64(s)),
        _ => Err(Error::usage(format!(
            "{name} {text:?} is not valid: give a number of seconds greater than 0"
        ))),
    }
}

/// The sync prefix is a directory: entries are the keys directly below it. Without its
/// trailing slash every entry would look nested, and owned partitions would be deleted.
fn directory_prefix(prefix: &str) -> String {
    if prefix.ends_with('/') {
        prefix.to_string()
    } else {
        format!("{prefix}/")
    }
}

fn split_list(text: &str) -> impl Iterator<Item = &str> {
    text.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// Turns `host`, `host:port` or a URL into `scheme://host:port` without a trailing slash.
pub fn normalize_url(item: &str, default_scheme: &str, default_port: &str) -> Result<String> {
    let (scheme, rest) = match item.split_once("://") {
        Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
        None => (default_scheme.to_string(), item),
    };
    if scheme != "http" && scheme != "https" {
        return Err(Error::usage(format!(
            "endpoint {item:?} has scheme {scheme:?}: use http or https"
        )));
    }
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.contains('/') || rest.contains('@') || rest.contains(' ') {
        return Err(Error::usage(format!(
            "endpoint {item:?} is not valid: give host, host:port or scheme://host:port"
        )));
    }
    let has_port = if let Some(bracketed) = rest.strip_prefix('[') {
        bracketed.contains("]:")
    } else {
        rest.contains(':')
    };
    if has_port {
        let port = rest.rsplit(':').next().unwrap_or_default();
        if port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(Error::usage(format!(
                "endpoint {item:?} has an invalid port {port:?}"
            )));
        }
        Ok(format!("{scheme}://{rest}"))
    } else {
        let port = if item.contains("://") {
            if scheme == "https" { "443" } else { "80" }
        } else {
            default_port
        };
        Ok(format!("{scheme}://{rest}:{port}"))
    }
}

fn read_secret_file(what: &str, path: &Path) -> Result<Secret> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::usage(format!(
            "cannot read the {what} file {}: {e}",
            path.display()
        ))
    })?;
    let secret = Secret::new(text);
    if secret.is_empty() {
        return Err(Error::usage(format!(
            "the {what} file {} is empty",
            path.display()
        )));
    }
    Ok(secret)
}

/// Asks for a password on the controlling terminal, without echo.
fn prompt_password(prompt: &str) -> Result<Secret> {
    use std::io::{BufRead, Write};
    let no_terminal = || {
        Error::usage(
            "--etcd-prompt-password needs a terminal: give --etcd-password-file or a systemd credential instead",
        )
    };
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(|_| no_terminal())?;
    let stty = |arg: &str| {
        tty.try_clone().ok().and_then(|input| {
            std::process::Command::new("stty")
                .arg(arg)
                .stdin(input)
                .status()
                .ok()
        })
    };
    let mut out = &tty;
    let _ = out.write_all(prompt.as_bytes());
    let _ = out.flush();
    stty("-echo");
    let mut line = String::new();
    let read = std::io::BufReader::new(&tty).read_line(&mut line);
    stty("echo");
    let _ = out.write_all(b"\n");
    read.map_err(|_| no_terminal())?;
    Ok(Secret::new(line))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(pairs: &[(&'static str, &str)]) -> FlagLayer {
        let mut layer = FlagLayer::default();
        for (key, value) in pairs {
            layer
                .values
                .insert(key, (value.to_string(), format!("--{key}")));
        }
        layer
    }

    struct Dir(PathBuf);
    impl Dir {
        fn new(name: &str) -> Dir {
            let path = std::env::temp_dir()
                .join(format!("ufm-pkeyd-config-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).expect("temp dir");
            Dir(path)
        }
        fn write(&self, name: &str, text: &str) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, text).expect("write");
            path
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn urls_accept_host_host_port_and_url() {
        assert_eq!(
            normalize_url("ufm1", "https", "443").ok(),
            Some("https://ufm1:443".into())
        );
        assert_eq!(
            normalize_url("ufm1:8443", "https", "443").ok(),
            Some("https://ufm1:8443".into())
        );
        assert_eq!(
            normalize_url("http://ufm1/", "https", "443").ok(),
            Some("http://ufm1:80".into())
        );
        assert_eq!(
            normalize_url("HTTPS://[::1]:9", "http", "1").ok(),
            Some("https://[::1]:9".into())
        );
        assert!(normalize_url("ftp://x", "http", "1").is_err());
        assert!(normalize_url("host:0", "http", "1").is_err());
        assert!(normalize_url("host/path", "http", "1").is_err());
    }

    #[test]
    fn pcocc_batch_yaml_selects_v2_and_root_with_password_file() {
        let dir = Dir::new("pcocc");
        dir.write(
            "batch.yaml",
            "type: slurm\nsettings:\n  etcd-servers: [ 'etcd1', 'etcd2' ]\n  etcd-client-port: 2379\n  etcd-protocol: http\n  etcd-auth-type: password\n",
        );
        dir.write("etcd-password", "s3cret\n");
        let raw = RawConfig::load(&flags(&[("pcocc-dir", &dir.0.display().to_string())]), None)
            .expect("load");
        let etcd = raw.etcd().expect("etcd");
        assert_eq!(etcd.endpoints, ["http://etcd1:2379", "http://etcd2:2379"]);
        assert_eq!(etcd.api, EtcdApi::V2);
        assert_eq!(etcd.user.as_deref(), Some("root"));
        assert_eq!(etcd.password.as_ref().map(|s| s.expose()), Some("s3cret"));
    }

    #[test]
    fn flags_override_own_file_which_overrides_pcocc() {
        let dir = Dir::new("layers");
        dir.write("batch.yaml", "settings:\n  etcd-servers: pcocc-etcd\n");
        let own = dir.write("own.yaml", "etcd-endpoints: [file-etcd:1]\netcd-api: v3\n");
        let mut layer = flags(&[("pcocc-dir", &dir.0.display().to_string())]);
        layer.config_file = Some(own.clone());
        let raw = RawConfig::load(&layer, None).expect("load");
        let etcd = raw.etcd().expect("etcd");
        assert_eq!(etcd.endpoints, ["http://file-etcd:1"]);
        assert_eq!(etcd.api, EtcdApi::V3);

        layer
            .values
            .insert("etcd-host", ("flag-etcd".into(), "--etcd-host".into()));
        let raw = RawConfig::load(&layer, None).expect("load");
        assert_eq!(
            raw.etcd().expect("etcd").endpoints,
            ["http://flag-etcd:2379"]
        );
    }

    #[test]
    fn unknown_key_in_own_file_is_named() {
        let dir = Dir::new("unknown");
        let own = dir.write("own.yaml", "etcd-endpoint: x\n");
        let mut layer = flags(&[("use-pcocc", "false")]);
        layer.config_file = Some(own);
        let err = RawConfig::load(&layer, None).expect_err("unknown key");
        assert!(err.to_string().contains("\"etcd-endpoint\""), "{err}");
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn credentials_beat_files_and_flags_beat_credentials() {
        let dir = Dir::new("creds");
        let file = dir.write("pw-file", "from-file");
        let creds = dir.0.join("creds");
        std::fs::create_dir_all(&creds).expect("creds dir");
        std::fs::write(creds.join("ufm-password"), "from-credential\n").expect("write");
        let own = dir.write(
            "own.yaml",
            &format!("ufm-host: ufm1\nufm-password-file: {}\n", file.display()),
        );
        let mut layer = flags(&[("use-pcocc", "false")]);
        layer.config_file = Some(own);
        let raw = RawConfig::load(&layer, Some(&creds)).expect("load");
        let UfmAuth::Basic { password, .. } = raw.ufm().expect("ufm").auth else {
            panic!("basic auth expected")
        };
        assert_eq!(password.expose(), "from-credential");

        layer
            .values
            .insert("ufm-password", ("from-flag".into(), "--password".into()));
        let raw = RawConfig::load(&layer, Some(&creds)).expect("load");
        assert!(raw.warnings.iter().any(|w| w.contains("ps")));
        let UfmAuth::Basic { password, .. } = raw.ufm().expect("ufm").auth else {
            panic!("basic auth expected")
        };
        assert_eq!(password.expose(), "from-flag");
    }

    #[test]
    fn describe_redacts_secrets() {
        let raw = RawConfig::load(
            &flags(&[("use-pcocc", "false"), ("etcd-password", "topsecret")]),
            None,
        )
        .expect("load");
        let text = format!("{:?}", raw.describe());
        assert!(!text.contains("topsecret"));
        assert!(text.contains("<redacted>"));
    }

    #[test]
    fn etcd_user_without_password_is_a_clear_error() {
        let raw = RawConfig::load(
            &flags(&[("use-pcocc", "false"), ("etcd-user", "root")]),
            None,
        )
        .expect("load");
        let err = raw.etcd().expect_err("no password");
        assert!(err.to_string().contains("--etcd-password-file"), "{err}");
    }

    #[test]
    fn ufm_defaults_to_https_443_and_http_flag_switches_to_80() {
        let raw = RawConfig::load(
            &flags(&[
                ("use-pcocc", "false"),
                ("ufm-host", "ufm1"),
                ("ufm-password", "x"),
            ]),
            None,
        )
        .expect("load");
        assert_eq!(raw.ufm().expect("ufm").urls, ["https://ufm1:443"]);
        let raw = RawConfig::load(
            &flags(&[
                ("use-pcocc", "false"),
                ("ufm-host", "ufm1"),
                ("ufm-password", "x"),
                ("ufm-http", "true"),
            ]),
            None,
        )
        .expect("load");
        assert_eq!(raw.ufm().expect("ufm").urls, ["http://ufm1:80"]);
    }
}
