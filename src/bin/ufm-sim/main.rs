//! `ufm-sim`: a stand-in for NVIDIA UFM Enterprise's PKey REST API, for tests.
//!
//! This file owns the command line, logging, TLS set-up and binding the listening socket.
//! The accept loop and the connections live in [`server`], request handling in [`api`]
//! (the `full` route set) and [`mock`] (the `nvidia-mock` route set), the test-control API
//! in [`control`], fault rules in [`faults`], outages in [`outage`], the fabric model in
//! [`state`], HTTP framing in [`http`]. Behaviour follows
//! `/work/shared/reference/ufm-api.md`.

mod api;
mod control;
mod faults;
mod http;
mod mock;
mod outage;
mod server;
mod state;

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use log::{LevelFilter, Log, Metadata, Record, error, info, warn};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::control::{IpoibOnAdd, Modes, RouteSet, Settings, Sim, parse_mode};
use crate::state::StampFormat;

const USAGE: &str = "\
usage: ufm-sim [options]
  --listen ADDR              address to listen on (default 127.0.0.1:0)
  --allow-non-loopback       allow a non-loopback listen address
  --tls-cert FILE            PEM certificate chain: serve HTTPS (needs --tls-key)
  --tls-key FILE             PEM private key (PKCS#8, PKCS#1 or SEC1)
  --user NAME                Basic-auth user (default admin)
  --password PW              Basic-auth password (default 123456)
  --password-file FILE       read the password from FILE (first line)
  --token TOKEN              accept TOKEN on /ufmRestV3 (repeatable)
  --missing-pkey MODE        empty200 (default) | 404
  --auth-failure MODE        401 (default) | login200
  --unknown-guid MODE        accept (default) | reject404
  --mutation-body MODE       empty (default) | {}
  --list-guids-and-qos MODE  400 (default) | drop_guids: the list with both flags
  --route-set SET            full (default) | nvidia-mock: the routes NVIDIA's UFM mock
                             serves, token auth on /ufmRestV3 only (needs --token)
  --ipoib-on-add MODE        keep (default) | follow: every add sets ip_over_ib (absent
                             field: true)
  --last-updated-format F    rfc3339 (default) | ctime | dmy-local
  --version-string S         ufm_release_version (default 6.19.1-4)
  --site-name NAME           site_name in the version answer (UFM's expose_site_name=true)
  --idle-timeout SECS        close idle keep-alive connections after SECS (default 300)
  --exit-on-stdin-eof        exit when stdin reaches end of file
  -v, --verbose              log every request to stderr
  -h, --help                 show this help
Prints `listening on http(s)://ADDR:PORT` on stdout once ready.

Test control (no auth, not counted): /_sim/stats, /_sim/stats/reset, /_sim/config,
/_sim/state, /_sim/known_guids, /_sim/drop_guids, /_sim/reset, /_sim/fail, /_sim/stall,
/_sim/log (GET: each API request with its time and sender; DELETE),
/_sim/faults (GET, POST {\"rules\": [...]}, DELETE), /_sim/outage (GET, POST
{\"seconds\": S, \"mode\": \"refuse\"|\"503\"|\"hang\"}, DELETE). During a refuse outage
the port is closed, the control API included.";

/// Parsed command line.
struct Args {
    listen: String,
    allow_non_loopback: bool,
    tls_cert: Option<String>,
    tls_key: Option<String>,
    settings: Settings,
    idle_timeout: Duration,
    exit_on_stdin_eof: bool,
    verbose: bool,
}

fn parse_args(mut argv: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut args = Args {
        listen: "127.0.0.1:0".into(),
        allow_non_loopback: false,
        tls_cert: None,
        tls_key: None,
        settings: Settings {
            user: "admin".into(),
            password: "123456".into(),
            version: "6.19.1-4".into(),
            site_name: None,
            modes: Modes::default(),
            tokens: Vec::new(),
        },
        idle_timeout: Duration::from_secs(300),
        exit_on_stdin_eof: false,
        verbose: false,
    };
    let mut password_file = None;
    let mut password = None;
    while let Some(arg) = argv.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = || -> Result<String, String> {
            inline
                .clone()
                .or_else(|| argv.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        let s = &mut args.settings;
        match name.as_str() {
            "-h" | "--help" => return Ok(None),
            "-v" | "--verbose" => args.verbose = true,
            "--allow-non-loopback" => args.allow_non_loopback = true,
            "--exit-on-stdin-eof" => args.exit_on_stdin_eof = true,
            "--listen" => args.listen = value()?,
            "--tls-cert" => args.tls_cert = Some(value()?),
            "--tls-key" => args.tls_key = Some(value()?),
            "--user" => s.user = value()?,
            "--password" => password = Some(value()?),
            "--password-file" => password_file = Some(value()?),
            "--token" => {
                let token = value()?;
                if token.is_empty() {
                    return Err("--token must not be empty".into());
                }
                s.tokens.push(token);
            }
            "--missing-pkey" => s.modes.missing_pkey_404 = parse_mode("missing_pkey", &value()?)?,
            "--auth-failure" => s.modes.auth_login200 = parse_mode("auth_failure", &value()?)?,
            "--unknown-guid" => {
                s.modes.unknown_guid_reject404 = parse_mode("unknown_guid", &value()?)?
            }
            "--mutation-body" => {
                s.modes.mutation_body_json = parse_mode("mutation_body", &value()?)?
            }
            "--list-guids-and-qos" => {
                s.modes.list_both_drops_guids = parse_mode("list_guids_and_qos", &value()?)?
            }
            "--route-set" => s.modes.route_set = RouteSet::parse(&value()?)?,
            "--ipoib-on-add" => s.modes.ipoib_on_add = IpoibOnAdd::parse(&value()?)?,
            "--last-updated-format" => s.modes.last_updated_format = StampFormat::parse(&value()?)?,
            "--version-string" => s.version = value()?,
            "--site-name" => s.site_name = Some(value()?),
            "--idle-timeout" => {
                let secs: u64 = value()?
                    .parse()
                    .map_err(|_| "--idle-timeout needs a number of seconds".to_string())?;
                args.idle_timeout = Duration::from_secs(secs.max(1));
            }
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    match (password, password_file) {
        (Some(_), Some(_)) => return Err("give --password or --password-file, not both".into()),
        (Some(pw), None) => args.settings.password = pw,
        (None, Some(file)) => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| format!("cannot read password file {file}: {e}"))?;
            args.settings.password = text.lines().next().unwrap_or("").to_string();
        }
        (None, None) => {}
    }
    if args.tls_cert.is_some() != args.tls_key.is_some() {
        return Err("--tls-cert and --tls-key go together".into());
    }
    Ok(Some(args))
}

/// Logs to stderr.
struct StderrLogger;

static LOGGER: StderrLogger = StderrLogger;

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if self.enabled(record.metadata()) {
            eprintln!("ufm-sim: {}: {}", record.level(), record.args());
        }
    }

    fn flush(&self) {}
}

fn tls_config(cert: &str, key: &str) -> Result<Arc<ServerConfig>, String> {
    let cert_pem = std::fs::read(cert).map_err(|e| format!("cannot read {cert}: {e}"))?;
    let key_pem = std::fs::read(key).map_err(|e| format!("cannot read {key}: {e}"))?;
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("bad certificate in {cert}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("no certificate in {cert}"));
    }
    let key_der =
        PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| format!("bad key in {key}: {e}"))?;
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?
            .with_no_client_auth()
            .with_single_cert(certs, key_der)
            .map_err(|e| format!("TLS certificate/key: {e}"))?;
    Ok(Arc::new(config))
}

fn bind(args: &Args) -> Result<TcpListener, String> {
    let addrs: Vec<SocketAddr> = args
        .listen
        .to_socket_addrs()
        .map_err(|e| format!("bad --listen address '{}': {e}", args.listen))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("--listen '{}' resolves to nothing", args.listen));
    }
    if !args.allow_non_loopback
        && let Some(addr) = addrs.iter().find(|a| !a.ip().is_loopback())
    {
        return Err(format!(
            "refusing to listen on non-loopback address {addr} without --allow-non-loopback"
        ));
    }
    TcpListener::bind(addrs.as_slice())
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))
}

fn run(args: Args) -> Result<(), String> {
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tls_config(cert, key)?),
        _ => None,
    };
    let listener = bind(&args)?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let sim = Arc::new(Sim::new(args.settings.clone()));

    if args.exit_on_stdin_eof {
        std::thread::spawn(|| {
            let _ = io::copy(&mut io::stdin().lock(), &mut io::sink());
            info!("stdin closed, exiting");
            std::process::exit(0);
        });
    }

    {
        let mut stdout = io::stdout().lock();
        writeln!(stdout, "listening on {scheme}://{addr}")
            .and_then(|()| stdout.flush())
            .map_err(|e| format!("cannot write to stdout: {e}"))?;
    }
    info!(
        "serving UFM {} on {scheme}://{addr} (user {}, route set {})",
        args.settings.version,
        args.settings.user,
        args.settings.modes.route_set.as_str()
    );
    if args.settings.modes.route_set == RouteSet::NvidiaMock && args.settings.tokens.is_empty() {
        warn!("route set nvidia-mock without --token: every /ufmRestV3 request gets a 401");
    }

    let config = server::ConnConfig {
        tls,
        idle_timeout: args.idle_timeout,
    };
    server::run(listener, sim, config)
}

fn main() -> ExitCode {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(LevelFilter::Info);
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("ufm-sim: {msg}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if args.verbose {
        log::set_max_level(LevelFilter::Debug);
    }
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            error!("{msg}");
            ExitCode::FAILURE
        }
    }
}
