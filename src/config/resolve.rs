//! From merged layers to the typed settings each part of the program owns: `etcd::Settings`,
//! `ufm::Settings`, `engine::Settings`, `election::Settings` and the daemon's own. Runs once.
//!
//! The etcd and UFM settings are kept as results: a command that talks only to etcd must not
//! fail over a missing UFM host or password, and `ufm-pkeyd config` shows why one side is not
//! usable.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::keys::{DEFAULT_PREFIX, DEFAULT_STATE_FILE};
use super::layers::{FlagLayer, Layers, Source};
use super::values::{Value, normalize_url};
use crate::engine::{self, election};
use crate::error::{Error, Result};
use crate::net::http::TlsOptions;
use crate::net::{etcd, ufm};
use crate::plan::{DeleteGuard, Policy};
use crate::secret::Secret;

/// Everything the program needs to know, resolved from every layer.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    etcd: std::result::Result<etcd::Settings, Error>,
    ufm: std::result::Result<ufm::Settings, Error>,
    pub engine: engine::Settings,
    /// `Some` when leader election is on.
    pub election: Option<election::Settings>,
    /// How often the daemon looks for changes made by hand in UFM.
    pub poll_interval: Duration,
    /// How often the daemon runs a full pass at least.
    pub resync_interval: Duration,
    /// The Prometheus textfile the daemon writes after each pass.
    pub metrics_file: Option<PathBuf>,
    pub debug: bool,
    /// `log-timestamps`; `None`: when stderr is neither the journal nor a terminal.
    pub log_timestamps: Option<bool>,
}

impl Settings {
    /// The etcd settings, or why they cannot be used.
    pub(crate) fn etcd(&self) -> Result<&etcd::Settings> {
        self.etcd.as_ref().map_err(Clone::clone)
    }

    /// The UFM settings, or why they cannot be used.
    pub(crate) fn ufm(&self) -> Result<&ufm::Settings> {
        self.ufm.as_ref().map_err(Clone::clone)
    }

    /// The same settings with the etcd keyspace decided (`etcd-api: auto` resolved).
    pub(crate) fn with_etcd_api(&self, api: etcd::Api) -> Settings {
        let mut settings = self.clone();
        if let Ok(etcd) = &mut settings.etcd {
            etcd.api = etcd::ApiChoice::Fixed(api);
        }
        settings
    }
}

/// Resolves every setting; the flags say whether to ask for a password on the terminal
/// (`--etcd-prompt-password`, `--ufm-prompt-password`).
pub(crate) fn resolve(layers: &mut Layers, flags: &FlagLayer) -> Result<Settings> {
    let election = election_settings(layers)?;
    let etcd = etcd_settings(layers, flags.prompt_etcd_password, election.as_ref());
    let ufm = ufm_settings(layers, flags.prompt_ufm_password, election.as_ref());
    Ok(Settings {
        etcd,
        ufm,
        engine: engine_settings(layers, election.is_some()),
        election,
        poll_interval: seconds(layers, "poll-interval"),
        resync_interval: seconds(layers, "resync-interval"),
        metrics_file: path(layers, "metrics-file"),
        debug: flag(layers, "debug"),
        log_timestamps: match layers.get("log-timestamps").map(|e| &e.value) {
            Some(Value::Bool(on)) => Some(*on),
            _ => None,
        },
    })
}

fn engine_settings(layers: &Layers, shared_ownership: bool) -> engine::Settings {
    engine::Settings {
        prefix: directory_prefix(text(layers, "etcd-prefix").unwrap_or(DEFAULT_PREFIX)),
        state_file: path(layers, "state-file").unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_FILE)),
        state_key: shared_ownership.then(|| {
            text(layers, "state-key")
                .unwrap_or("/ufm-pkeyd/owned")
                .to_string()
        }),
        guard: DeleteGuard {
            max_deletes: count(layers, "max-deletes").unwrap_or(10),
            allow_mass_delete: flag(layers, "allow-mass-delete"),
        },
        policy: Policy {
            host_index0: flag(layers, "host-index0"),
            vf_index0: flag(layers, "vf-index0"),
            membership: match text(layers, "membership") {
                Some("limited") => crate::model::Membership::Limited,
                _ => crate::model::Membership::Full,
            },
            ip_over_ib: flag(layers, "ip-over-ib"),
        },
        late_write_margin: seconds(layers, "late-write-margin"),
    }
}

/// The leader election settings, when it is on.
fn election_settings(layers: &Layers) -> Result<Option<election::Settings>> {
    if !flag(layers, "leader-election") {
        return Ok(None);
    }
    let ttl = seconds(layers, "election-ttl");
    if ttl < Duration::from_secs(3) {
        return Err(Error::usage(format!(
            "election-ttl {} s is too short: give at least 3 seconds",
            ttl.as_secs_f64()
        )));
    }
    Ok(Some(election::Settings {
        key: text(layers, "election-key")
            .unwrap_or("/ufm-pkeyd/leader")
            .to_string(),
        ttl,
    }))
}

fn etcd_settings(
    layers: &mut Layers,
    prompt: bool,
    election: Option<&election::Settings>,
) -> Result<etcd::Settings> {
    let endpoints = etcd_endpoints(layers)?;
    let api = match text(layers, "etcd-api") {
        Some("v2") => etcd::ApiChoice::Fixed(etcd::Api::V2),
        Some("v3") => etcd::ApiChoice::Fixed(etcd::Api::V3),
        _ => etcd::ApiChoice::Auto,
    };
    let user = text(layers, "etcd-user").map(str::to_string);
    let password = if prompt {
        let secret = prompt_password(
            &format!("etcd password for {}: ", user.as_deref().unwrap_or("root")),
            "--etcd-prompt-password",
            "--etcd-password-file",
        )?;
        layers.set("etcd-password", secret.expose(), Source::Prompt)?;
        Some(secret)
    } else {
        password(layers, "etcd-password", "etcd-password-file")?
    };
    if password.is_some() && user.is_none() {
        return Err(Error::usage(
            "an etcd password is set but no etcd user: give --etcd-user",
        ));
    }
    if user.is_some() && password.is_none() {
        return Err(Error::usage(format!(
            "etcd user {:?} has no password: put it in /etc/ufm-pkeyd/etcd-password (mode 0600; the unit loads it as the credential etcd-password, ufm-pkeyd@NAME as NAME.etcd-password), or give --etcd-password-file or --etcd-prompt-password",
            user.as_deref().unwrap_or_default()
        )));
    }
    Ok(etcd::Settings {
        endpoints,
        api,
        tls: TlsOptions {
            ca_file: path(layers, "etcd-ca-cert"),
            client_cert: cert_pair(layers, "etcd-cert-file", "etcd-key-file")?,
            insecure: false,
        },
        user,
        password,
        timeout: etcd_timeout(layers, election)?,
        proxy: text(layers, "etcd-proxy").map(str::to_string),
    })
}

/// etcd-endpoints wins over etcd-host unless etcd-host was set at a higher layer (a flag
/// `--etcd-host` overrides endpoints read from pcocc's batch.yaml).
fn etcd_endpoints(layers: &Layers) -> Result<Vec<String>> {
    let scheme = text(layers, "etcd-protocol").unwrap_or("http");
    let port = match layers.get("etcd-port").map(|e| &e.value) {
        Some(Value::Port(port)) => *port,
        _ => 2379,
    };
    let items = match layers.get("etcd-endpoints") {
        Some(e) if e.source.rank() >= layers.rank("etcd-host") => list(layers, "etcd-endpoints"),
        _ => vec![text(layers, "etcd-host").unwrap_or("127.0.0.1").to_string()],
    };
    let endpoints: Vec<String> = items
        .iter()
        .map(|item| normalize_url(item, scheme, port).map_err(Error::usage))
        .collect::<Result<_>>()?;
    if endpoints.is_empty() {
        return Err(Error::usage("no etcd endpoint: give --etcd-endpoints"));
    }
    Ok(endpoints)
}

fn ufm_settings(
    layers: &mut Layers,
    prompt: bool,
    election: Option<&election::Settings>,
) -> Result<ufm::Settings> {
    if layers.get("ufm-host").is_none() {
        return Err(Error::usage(
            "no UFM host: give --ufm-host (or --host), or ufm-host in the configuration file",
        ));
    }
    let (scheme, port) = if flag(layers, "ufm-http") {
        ("http", 80)
    } else {
        ("https", 443)
    };
    let urls: Vec<String> = list(layers, "ufm-host")
        .iter()
        .map(|item| normalize_url(item, scheme, port).map_err(Error::usage))
        .collect::<Result<_>>()?;
    if urls.is_empty() {
        return Err(Error::usage("no UFM host: give --ufm-host"));
    }
    let token_beats_password = layers.rank("ufm-token-file")
        >= layers
            .rank("ufm-password")
            .max(layers.rank("ufm-password-file"));
    let auth = match path(layers, "ufm-token-file") {
        // Asked for on the command line: the answer wins over every file.
        _ if prompt => {
            let user = text(layers, "ufm-user").unwrap_or("admin").to_string();
            let password = prompt_password(
                &format!("UFM password for {user}: "),
                "--ufm-prompt-password",
                "--ufm-password-file",
            )?;
            layers.set("ufm-password", password.expose(), Source::Prompt)?;
            ufm::Auth::Basic { user, password }
        }
        Some(file) if token_beats_password => {
            ufm::Auth::Token(read_secret_file("UFM token", &file)?)
        }
        _ => {
            let user = text(layers, "ufm-user").unwrap_or("admin").to_string();
            let password = password(layers, "ufm-password", "ufm-password-file")?.ok_or_else(|| {
                Error::usage(format!(
                    "no UFM password for user {user:?}: put it in /etc/ufm-pkeyd/ufm-password (mode 0600; the unit loads it as the credential ufm-password, ufm-pkeyd@NAME as NAME.ufm-password), or give --ufm-password-file, or a token with --ufm-token-file"
                ))
            })?;
            ufm::Auth::Basic { user, password }
        }
    };
    Ok(ufm::Settings {
        urls,
        auth,
        tls: TlsOptions {
            ca_file: path(layers, "ufm-ca-cert"),
            client_cert: None,
            insecure: !flag(layers, "ufm-ssl-verify"),
        },
        timeout: ufm_timeout(layers, election),
        proxy: text(layers, "ufm-proxy").map(str::to_string),
    })
}

/// The etcd request timeout. With leader election, no etcd request may block the daemon's one
/// thread for more than half the TTL: the claim is refreshed between requests, and a leader
/// that cannot refresh it in time hands over. The default shrinks to fit; an explicit value
/// that does not fit is refused.
fn etcd_timeout(layers: &Layers, election: Option<&election::Settings>) -> Result<Duration> {
    let name = "etcd-timeout";
    let timeout = seconds(layers, name);
    let Some(election) = election else {
        return Ok(timeout);
    };
    let cap = election.ttl / 2;
    if timeout <= cap {
        return Ok(timeout);
    }
    match layers.get(name).map(|e| &e.source) {
        Some(Source::Default) | None => Ok(cap),
        Some(source) => Err(Error::usage(format!(
            "{name} {} s (from {source}) is longer than half of election-ttl {} s: a leader could not refresh its claim in time while it waits on etcd; lower {name} to {} s or raise election-ttl",
            timeout.as_secs_f64(),
            election.ttl.as_secs_f64(),
            cap.as_secs_f64()
        ))),
    }
}

/// The UFM request timeout. With leader election a new leader waits this long (plus a
/// second) before its first write, for an old leader's last request to be over: the default
/// is then [`ELECTION_UFM_TIMEOUT`], so that a take-over fits in pcocc's window; an explicit
/// value is kept, and the take-over takes that much longer.
fn ufm_timeout(layers: &Layers, election: Option<&election::Settings>) -> Duration {
    let name = "ufm-timeout";
    let explicit = !matches!(
        layers.get(name).map(|e| &e.source),
        Some(Source::Default) | None
    );
    match election {
        Some(_) if !explicit => ELECTION_UFM_TIMEOUT,
        _ => seconds(layers, name),
    }
}

/// The default UFM request timeout with leader election.
const ELECTION_UFM_TIMEOUT: Duration = Duration::from_secs(3);

/// The password from whichever of the value key and the file key has the higher source.
fn password(layers: &Layers, value_key: &str, file_key: &str) -> Result<Option<Secret>> {
    let direct = layers.get(value_key);
    let file = layers.get(file_key);
    match (direct, file) {
        (Some(d), Some(f)) if f.source.rank() > d.source.rank() => {
            read_secret_file(value_key, Path::new(&f.text)).map(Some)
        }
        (Some(d), _) => match &d.value {
            Value::Secret(secret) => Ok(Some(secret.clone())),
            _ => Ok(None),
        },
        (None, Some(f)) => read_secret_file(value_key, Path::new(&f.text)).map(Some),
        (None, None) => Ok(None),
    }
}

fn cert_pair(layers: &Layers, cert_key: &str, key_key: &str) -> Result<Option<(PathBuf, PathBuf)>> {
    match (path(layers, cert_key), path(layers, key_key)) {
        (Some(c), Some(k)) => Ok(Some((c, k))),
        (None, None) => Ok(None),
        (Some(_), None) => Err(Error::usage(format!(
            "{cert_key} is set without {key_key}: give both the client certificate and its key"
        ))),
        (None, Some(_)) => Err(Error::usage(format!(
            "{key_key} is set without {cert_key}: give both the client certificate and its key"
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

// Typed reads of the merged layers. Every value was parsed by its key's kind when it entered
// a layer, so these only pick the variant.

fn text<'a>(layers: &'a Layers, name: &str) -> Option<&'a str> {
    match &layers.get(name)?.value {
        Value::Text(t) => Some(t),
        Value::Choice(c) => Some(c),
        _ => None,
    }
}

fn flag(layers: &Layers, name: &str) -> bool {
    matches!(layers.get(name).map(|e| &e.value), Some(Value::Bool(true)))
}

fn seconds(layers: &Layers, name: &str) -> Duration {
    match layers.get(name).map(|e| &e.value) {
        Some(Value::Seconds(d)) => *d,
        _ => Duration::from_secs(30),
    }
}

fn count(layers: &Layers, name: &str) -> Option<usize> {
    match layers.get(name)?.value {
        Value::Count(n) => Some(n),
        _ => None,
    }
}

fn path(layers: &Layers, name: &str) -> Option<PathBuf> {
    match &layers.get(name)?.value {
        Value::Path(p) => Some(p.clone()),
        _ => None,
    }
}

fn list(layers: &Layers, name: &str) -> Vec<String> {
    match layers.get(name).map(|e| &e.value) {
        Some(Value::List(items)) => items.clone(),
        _ => Vec::new(),
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

/// Asks for a password on the controlling terminal, without echo; `flag` asked for it, and
/// `file_flag` is the way without a terminal.
fn prompt_password(prompt: &str, flag: &str, file_flag: &str) -> Result<Secret> {
    use std::io::{BufRead, Write};
    let no_terminal = || {
        Error::usage(format!(
            "{flag} needs a terminal: give {file_flag} or a systemd credential instead"
        ))
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
