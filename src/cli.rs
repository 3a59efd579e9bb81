//! The command line: every flag is defined once in [`FLAGS`] (name, value, which sub-commands
//! take it, help), and `--help`, the man page check and the completion check all read that
//! table. Parsing turns the arguments into an [`Invocation`]: the sub-command with its typed
//! operation, and the configuration flags as a raw layer for `config`.
//!
//! The sub-commands and flags of the older Python tool keep their meaning: `ufm --host
//! --username --password`, `etcd --list --prefix`, and so on.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::config::{self, FlagLayer};
use crate::error::{Error, Result};
use crate::model::{Guid, Membership, PKey, parse_guid_list};

/// Sub-command bits, to say which sub-commands take a flag.
pub const UFM: u8 = 1;
pub const ETCD: u8 = 2;
pub const CONFIG: u8 = 4;
pub const MONITOR: u8 = 8;
pub const SYNC: u8 = 16;
pub const STATUS: u8 = 32;
/// The sub-commands that sync etcd into UFM.
pub const SYNCING: u8 = MONITOR | SYNC;
/// Every sub-command.
pub const ALL: u8 = UFM | ETCD | CONFIG | SYNCING | STATUS;

/// What a flag does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Sets a configuration key to the flag's value.
    Key(&'static str),
    /// Sets a configuration key to a fixed value (`--http` sets ufm-http to true).
    Fixed(&'static str, &'static str),
    /// An operation or output flag, read by the sub-command.
    Op,
}

/// One flag.
#[derive(Debug)]
pub struct FlagDef {
    /// Long names; the first is the documented one, the others are aliases from the old tool.
    pub names: &'static [&'static str],
    /// Value name, `None` for a switch.
    pub value: Option<&'static str>,
    pub target: Target,
    /// Sub-commands that take it (bits).
    pub commands: u8,
    pub help: &'static str,
}

macro_rules! flag {
    ($names:expr, $value:expr, $target:expr, $commands:expr, $help:literal) => {
        FlagDef {
            names: $names,
            value: $value,
            target: $target,
            commands: $commands,
            help: $help,
        }
    };
}

use Target::{Fixed, Key, Op};

/// Every flag of every sub-command.
#[rustfmt::skip]
pub const FLAGS: &[FlagDef] = &[
    // General.
    flag!(&["--config"], Some("FILE"), Op, ALL, "read this configuration file instead of /etc/ufm-pkeyd/ufm-pkeyd.yaml"),
    flag!(&["--pcocc-dir"], Some("DIR"), Key("pcocc-dir"), ALL, "read pcocc's batch.yaml, ufm.yaml and password files from DIR (default /etc/pcocc)"),
    flag!(&["--no-pcocc"], None, Fixed("use-pcocc", "false"), ALL, "ignore pcocc's configuration files"),
    flag!(&["--json"], None, Op, UFM | ETCD | CONFIG | SYNCING | STATUS, "print results as JSON for scripts"),
    flag!(&["--debug"], None, Fixed("debug", "true"), ALL, "log debug detail to stderr (never secrets)"),
    // UFM connection.
    flag!(&["--ufm-host", "--host"], Some("HOST"), Key("ufm-host"), UFM | CONFIG | SYNCING | STATUS, "UFM host, host:port or URL; a comma-separated list is tried in order"),
    flag!(&["--ufm-user", "--username"], Some("USER"), Key("ufm-user"), UFM | CONFIG | SYNCING | STATUS, "UFM user for basic authentication (default admin)"),
    flag!(&["--ufm-password", "--password"], Some("PASSWORD"), Key("ufm-password"), UFM | CONFIG | SYNCING | STATUS, "UFM password (visible in ps: prefer --ufm-password-file)"),
    flag!(&["--ufm-password-file"], Some("FILE"), Key("ufm-password-file"), UFM | CONFIG | SYNCING | STATUS, "read the UFM password from FILE"),
    flag!(&["--ufm-token-file"], Some("FILE"), Key("ufm-token-file"), UFM | CONFIG | SYNCING | STATUS, "read a UFM access token from FILE and use token authentication"),
    flag!(&["--no-ssl-verify"], None, Fixed("ufm-ssl-verify", "false"), UFM | CONFIG | SYNCING | STATUS, "do not verify UFM's TLS certificate"),
    flag!(&["--ufm-ca-cert"], Some("FILE"), Key("ufm-ca-cert"), UFM | CONFIG | SYNCING | STATUS, "verify UFM's certificate against the CA certificates in FILE"),
    flag!(&["--http"], None, Fixed("ufm-http", "true"), UFM | CONFIG | SYNCING | STATUS, "talk plain HTTP to UFM instead of HTTPS"),
    flag!(&["--ufm-timeout"], Some("SECONDS"), Key("ufm-timeout"), UFM | CONFIG | SYNCING | STATUS, "wait at most SECONDS for UFM to connect or answer (default 30)"),
    flag!(&["--ufm-proxy"], Some("URL"), Key("ufm-proxy"), UFM | CONFIG | SYNCING | STATUS, "reach UFM through this HTTP proxy (default: direct)"),
    // UFM operations.
    flag!(&["--list"], None, Op, UFM | ETCD, "ufm: list PKeys; etcd: list keys"),
    flag!(&["--get-pkey"], Some("PKEY"), Op, UFM, "show one PKey with its GUIDs"),
    flag!(&["--create-pkey"], Some("PKEY"), Op, UFM, "create a PKey (empty, or with --guids)"),
    flag!(&["--delete-pkey"], Some("PKEY"), Op, UFM, "delete a PKey and all its GUIDs"),
    flag!(&["--pkey"], Some("PKEY"), Op, UFM, "PKey for --guids: add them, or remove them with --remove-guids"),
    flag!(&["--guids"], Some("GUID,..."), Op, UFM, "comma-separated GUIDs, 16 hex digits each, 0x optional"),
    flag!(&["--membership"], Some("full|limited"), Op, UFM, "membership of added GUIDs (default full)"),
    flag!(&["--index0"], None, Op, UFM, "put the PKey at index 0 of the ports' PKey tables (default on)"),
    flag!(&["--no-index0"], None, Op, UFM, "do not put the PKey at index 0"),
    flag!(&["--ip-over-ib"], None, Op, UFM, "enable IP over InfiniBand on the partition"),
    flag!(&["--no-ip-over-ib"], None, Op, UFM, "disable IP over InfiniBand on the partition (default)"),
    flag!(&["--remove-guids"], None, Op, UFM, "remove --guids from --pkey instead of adding them"),
    flag!(&["--check"], None, Op, UFM | ETCD, "check the connection and credentials and print the server version"),
    // etcd connection.
    flag!(&["--etcd-endpoints"], Some("LIST"), Key("etcd-endpoints"), ETCD | CONFIG | SYNCING | STATUS, "comma-separated etcd endpoints (host, host:port or URL), tried in order"),
    flag!(&["--etcd-host"], Some("HOST"), Key("etcd-host"), ETCD | CONFIG | SYNCING | STATUS, "etcd host (default 127.0.0.1)"),
    flag!(&["--etcd-port"], Some("PORT"), Key("etcd-port"), ETCD | CONFIG | SYNCING | STATUS, "etcd client port (default 2379)"),
    flag!(&["--etcd-protocol"], Some("http|https"), Key("etcd-protocol"), ETCD | CONFIG | SYNCING | STATUS, "scheme for endpoints given without one (default http)"),
    flag!(&["--etcd-api"], Some("v2|v3"), Key("etcd-api"), ETCD | CONFIG | SYNCING | STATUS, "etcd API and keyspace (default v3; v2 with pcocc's batch.yaml)"),
    flag!(&["--etcd-ca-cert"], Some("FILE"), Key("etcd-ca-cert"), ETCD | CONFIG | SYNCING | STATUS, "verify etcd's certificate against the CA certificates in FILE"),
    flag!(&["--etcd-cert-file"], Some("FILE"), Key("etcd-cert-file"), ETCD | CONFIG | SYNCING | STATUS, "client certificate for etcd (PEM)"),
    flag!(&["--etcd-key-file"], Some("FILE"), Key("etcd-key-file"), ETCD | CONFIG | SYNCING | STATUS, "client key for etcd (PEM)"),
    flag!(&["--etcd-user"], Some("USER"), Key("etcd-user"), ETCD | CONFIG | SYNCING | STATUS, "etcd user"),
    flag!(&["--etcd-password"], Some("PASSWORD"), Key("etcd-password"), ETCD | CONFIG | SYNCING | STATUS, "etcd password (visible in ps: prefer --etcd-password-file)"),
    flag!(&["--etcd-password-file"], Some("FILE"), Key("etcd-password-file"), ETCD | CONFIG | SYNCING | STATUS, "read the etcd password from FILE"),
    flag!(&["--etcd-prompt-password"], None, Op, ETCD | CONFIG | SYNCING | STATUS, "ask for the etcd password on the terminal"),
    flag!(&["--etcd-timeout"], Some("SECONDS"), Key("etcd-timeout"), ETCD | CONFIG | SYNCING | STATUS, "wait at most SECONDS for etcd to connect or answer (default 30)"),
    flag!(&["--etcd-proxy"], Some("URL"), Key("etcd-proxy"), ETCD | CONFIG | SYNCING | STATUS, "reach etcd through this HTTP proxy (default: direct)"),
    // Sync.
    flag!(&["--etcd-prefix"], Some("PREFIX"), Key("etcd-prefix"), SYNCING | CONFIG | STATUS, "etcd prefix holding one key per partition (default /pcocc/global/opensm/pkeys/)"),
    flag!(&["--state-file"], Some("FILE"), Key("state-file"), SYNCING | CONFIG | STATUS, "record owned partitions in FILE (default /var/lib/ufm-pkeyd/state.json)"),
    flag!(&["--metrics-file"], Some("FILE"), Key("metrics-file"), MONITOR | CONFIG | STATUS, "write Prometheus metrics to FILE after each pass (textfile collector)"),
    flag!(&["--poll-interval"], Some("SECONDS"), Key("poll-interval"), MONITOR | CONFIG, "run a full pass at least every SECONDS (default 30); etcd changes are applied at once"),
    flag!(&["--allow-mass-delete"], None, Fixed("allow-mass-delete", "true"), SYNCING | CONFIG | STATUS, "let one pass delete more partitions than the mass-deletion guard permits"),
    flag!(&["--max-deletes"], Some("N"), Key("max-deletes"), SYNCING | CONFIG | STATUS, "deletions one pass may make without --allow-mass-delete (default 10, or up to half of those owned)"),
    flag!(&["--dry-run"], None, Op, SYNCING, "print the plan and change nothing"),
    flag!(&["--leader-election"], None, Fixed("leader-election", "true"), MONITOR | CONFIG | STATUS, "only the instance elected through etcd changes UFM; others stand by"),
    flag!(&["--election-key"], Some("KEY"), Key("election-key"), MONITOR | CONFIG | STATUS, "etcd key of the leader election (default /ufm-pkeyd/leader)"),
    flag!(&["--state-key"], Some("KEY"), Key("state-key"), SYNCING | CONFIG | STATUS, "with leader election: etcd key recording owned partitions (default /ufm-pkeyd/owned)"),
    flag!(&["--election-ttl"], Some("SECONDS"), Key("election-ttl"), MONITOR | CONFIG, "a standby takes over within SECONDS when the leader dies (default 15)"),
    // etcd operations.
    flag!(&["--prefix"], Some("PREFIX"), Op, ETCD, "with --list: only keys that start with PREFIX"),
    flag!(&["--get"], Some("KEY"), Op, ETCD, "print the value of KEY"),
    flag!(&["--put"], Some("KEY"), Op, ETCD, "set KEY to --value"),
    flag!(&["--value"], Some("VALUE"), Op, ETCD, "value for --put"),
    flag!(&["--ttl"], Some("SECONDS"), Op, ETCD, "with --put: the key expires after SECONDS"),
    flag!(&["--delete"], Some("KEY"), Op, ETCD, "delete KEY"),
];

/// The sub-commands, with a one-line summary each.
#[rustfmt::skip]
pub const COMMANDS: &[(&str, u8, &str)] = &[
    ("monitor", MONITOR, "the daemon: keep UFM in step with etcd, applying changes as they happen"),
    ("sync", SYNC, "run one sync pass (with --dry-run: print the plan) and exit"),
    ("ufm", UFM, "one-shot UFM PKey operations: list, get, create, delete PKeys; add and remove GUIDs"),
    ("etcd", ETCD, "one-shot etcd operations: list, get, put, delete keys"),
    ("status", STATUS, "say in one screen whether UFM is in step with etcd (exit 4 when not)"),
    ("config", CONFIG, "print the effective configuration and where each value comes from"),
];

/// A UFM operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UfmOp {
    List,
    Get(PKey),
    Create {
        pkey: PKey,
        guids: Vec<Guid>,
        join: JoinFlags,
    },
    Delete(PKey),
    AddGuids {
        pkey: PKey,
        guids: Vec<Guid>,
        join: JoinFlags,
    },
    RemoveGuids {
        pkey: PKey,
        guids: Vec<Guid>,
    },
    Check,
}

/// How added GUIDs join, from `--membership`, `--index0`, `--ip-over-ib`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JoinFlags {
    pub membership: Membership,
    pub index0: bool,
    pub ip_over_ib: bool,
}

/// An etcd operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EtcdOp {
    List {
        prefix: String,
    },
    Get(String),
    Put {
        key: String,
        value: String,
        ttl: Option<u64>,
    },
    Delete(String),
    Check,
}

/// What to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `--help`, for the whole tool or one sub-command.
    Help(Option<&'static str>),
    Version,
    Ufm(UfmOp),
    Etcd(EtcdOp),
    Config,
    /// The daemon; `dry_run` plans without applying.
    Monitor {
        dry_run: bool,
    },
    /// One pass.
    Sync {
        dry_run: bool,
    },
    /// In sync or not, and why.
    Status,
}

/// A parsed command line.
#[derive(Clone, Debug)]
pub struct Invocation {
    pub command: Command,
    pub flags: FlagLayer,
    pub json: bool,
}

/// One flag as typed, with its value.
struct Given {
    def: &'static FlagDef,
    typed: String,
    value: Option<String>,
}

/// Parses the arguments after the program name.
pub fn parse(args: Vec<OsString>) -> Result<Invocation> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(args);
    let mut command: Option<(&'static str, u8)> = None;
    let mut given: Vec<Given> = Vec::new();
    let mut help = false;
    let mut version = false;
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => help = true,
            Short('V') | Long("version") => version = true,
            Long(name) => {
                let typed = format!("--{name}");
                let def = find_flag(&typed).ok_or_else(|| unknown_flag(&typed, command))?;
                let value = match def.value {
                    Some(_) => Some(parser.value()?.string()?),
                    None => parser.optional_value().map(|v| v.string()).transpose()?,
                };
                given.push(Given { def, typed, value });
            }
            Value(value) if command.is_none() => {
                let name = value.string()?;
                let found = COMMANDS
                    .iter()
                    .find(|(n, _, _)| *n == name)
                    .ok_or_else(|| {
                        Error::usage(format!(
                            "unknown command {name:?}: use one of {} (see --help)",
                            command_names()
                        ))
                    })?;
                command = Some((found.0, found.1));
            }
            _ => return Err(arg.unexpected().into()),
        }
    }
    if version {
        return Ok(invocation(Command::Version, FlagLayer::default(), false));
    }
    let Some((name, bit)) = command else {
        if help {
            return Ok(invocation(Command::Help(None), FlagLayer::default(), false));
        }
        return Err(Error::usage(format!(
            "no command given: use one of {} (see --help)",
            command_names()
        )));
    };
    if help {
        return Ok(invocation(
            Command::Help(Some(name)),
            FlagLayer::default(),
            false,
        ));
    }
    let mut ops = Ops::default();
    let mut layer = FlagLayer::default();
    for g in given {
        if g.def.commands & bit == 0 {
            return Err(Error::usage(format!(
                "{} is not an option of `ufm-pkeyd {name}` (see ufm-pkeyd {name} --help)",
                g.typed
            )));
        }
        apply(&g, &mut layer, &mut ops)?;
    }
    let json = ops.switch("--json")?;
    let command = match name {
        "ufm" => Command::Ufm(ufm_op(&mut ops)?),
        "etcd" => Command::Etcd(etcd_op(&mut ops)?),
        "monitor" => Command::Monitor {
            dry_run: ops.switch("--dry-run")?,
        },
        "status" => Command::Status,
        "sync" => Command::Sync {
            dry_run: ops.switch("--dry-run")?,
        },
        _ => Command::Config,
    };
    ops.reject_unused(name)?;
    Ok(invocation(command, layer, json))
}

fn invocation(command: Command, flags: FlagLayer, json: bool) -> Invocation {
    Invocation {
        command,
        flags,
        json,
    }
}

/// Finds a flag by any of its names.
pub fn find_flag(typed: &str) -> Option<&'static FlagDef> {
    FLAGS.iter().find(|f| f.names.contains(&typed))
}

fn unknown_flag(typed: &str, command: Option<(&str, u8)>) -> Error {
    let help = command.map_or("ufm-pkeyd --help".to_string(), |(n, _)| {
        format!("ufm-pkeyd {n} --help")
    });
    Error::usage(format!("unknown option {typed} (see {help})"))
}

fn command_names() -> String {
    COMMANDS
        .iter()
        .map(|(n, _, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Operation flags given, by documented name, with the name as typed.
#[derive(Default)]
struct Ops {
    values: Vec<(&'static str, String, Option<String>)>,
}

impl Ops {
    fn take(&mut self, name: &str) -> Option<(String, Option<String>)> {
        let position = self.values.iter().rposition(|(n, _, _)| *n == name)?;
        let (_, typed, value) = self.values.remove(position);
        // A repeated flag: the last one wins, as with argparse.
        self.values.retain(|(n, _, _)| *n != name);
        Some((typed, value))
    }

    fn value(&mut self, name: &str) -> Option<String> {
        self.take(name).and_then(|(_, v)| v)
    }

    fn switch(&mut self, name: &str) -> Result<bool> {
        match self.take(name) {
            None => Ok(false),
            Some((_, None)) => Ok(true),
            Some((typed, Some(v))) => config::parse_bool(&typed, &v),
        }
    }

    fn reject_unused(&self, command: &str) -> Result<()> {
        match self.values.first() {
            Some((_, typed, _)) => Err(Error::usage(format!(
                "{typed} does not go with the other options given to `ufm-pkeyd {command}` (see ufm-pkeyd {command} --help)"
            ))),
            None => Ok(()),
        }
    }
}

fn apply(g: &Given, layer: &mut FlagLayer, ops: &mut Ops) -> Result<()> {
    let name = g.def.names[0];
    match g.def.target {
        Key(key) => {
            let value = g.value.clone().unwrap_or_default();
            check_flag_value(key, &g.typed, &value)?;
            layer.values.insert(key, (value, g.typed.clone()));
        }
        Fixed(key, fixed) => {
            if let Some(v) = &g.value {
                return Err(Error::usage(format!(
                    "{} takes no value (got {v:?})",
                    g.typed
                )));
            }
            layer
                .values
                .insert(key, (fixed.to_string(), g.typed.clone()));
        }
        Op if name == "--config" => layer.config_file = g.value.clone().map(PathBuf::from),
        Op if name == "--etcd-prompt-password" => layer.prompt_etcd_password = true,
        Op => ops.values.push((name, g.typed.clone(), g.value.clone())),
    }
    Ok(())
}

fn check_flag_value(key: &str, typed: &str, value: &str) -> Result<()> {
    use crate::config::Kind;
    let Some(def) = config::key_def(key) else {
        return Ok(());
    };
    match def.kind {
        Kind::Seconds => config::parse_seconds(typed, value).map(|_| ()),
        Kind::Port if value.parse::<u16>().map_or(true, |p| p == 0) => Err(Error::usage(format!(
            "{typed} {value:?} is not valid: give a port from 1 to 65535"
        ))),
        Kind::Choice(choices) if !choices.contains(&value) => Err(Error::usage(format!(
            "{typed} {value:?} is not valid: use {}",
            choices.join(" or ")
        ))),
        _ => Ok(()),
    }
}

fn ufm_op(ops: &mut Ops) -> Result<UfmOp> {
    let list = ops.switch("--list")?;
    let check = ops.switch("--check")?;
    let get = ops.value("--get-pkey");
    let create = ops.value("--create-pkey");
    let delete = ops.value("--delete-pkey");
    let pkey = ops.value("--pkey");
    let chosen = [
        list,
        check,
        get.is_some(),
        create.is_some(),
        delete.is_some(),
        pkey.is_some(),
    ];
    if chosen.iter().filter(|c| **c).count() != 1 {
        return Err(Error::usage(
            "give exactly one of --list, --get-pkey, --create-pkey, --delete-pkey, --pkey (with --guids) or --check",
        ));
    }
    let guids = ops
        .value("--guids")
        .map(|g| parse_guid_list(&g))
        .transpose()?;
    let remove = ops.switch("--remove-guids")?;
    if list {
        return Ok(UfmOp::List);
    }
    if check {
        return Ok(UfmOp::Check);
    }
    if let Some(p) = get {
        return Ok(UfmOp::Get(p.parse()?));
    }
    if let Some(p) = delete {
        return Ok(UfmOp::Delete(PKey::parse_writable(&p)?));
    }
    if let Some(p) = create {
        let join = join_flags(ops)?;
        return Ok(UfmOp::Create {
            pkey: PKey::parse_writable(&p)?,
            guids: guids.unwrap_or_default(),
            join,
        });
    }
    let pkey = PKey::parse_writable(&pkey.unwrap_or_default())?;
    let guids = guids.ok_or_else(|| {
        Error::usage("--pkey needs --guids: the GUIDs to add (or to remove with --remove-guids)")
    })?;
    if remove {
        Ok(UfmOp::RemoveGuids { pkey, guids })
    } else {
        let join = join_flags(ops)?;
        Ok(UfmOp::AddGuids { pkey, guids, join })
    }
}

fn join_flags(ops: &mut Ops) -> Result<JoinFlags> {
    let membership = match ops.value("--membership") {
        Some(text) => text.parse::<Membership>()?,
        None => Membership::Full,
    };
    // --index0 is on by default, as in the old tool; --no-index0 turns it off.
    let index0_on = ops.take("--index0");
    let index0_off = ops.switch("--no-index0")?;
    let index0 = match index0_on {
        Some((typed, Some(v))) => config::parse_bool(&typed, &v)?,
        _ => !index0_off,
    };
    let ipoib_on = ops.take("--ip-over-ib");
    let ipoib_off = ops.switch("--no-ip-over-ib")?;
    let ip_over_ib = match ipoib_on {
        Some((typed, Some(v))) => config::parse_bool(&typed, &v)?,
        Some((_, None)) => !ipoib_off,
        None => false,
    };
    Ok(JoinFlags {
        membership,
        index0,
        ip_over_ib,
    })
}

fn etcd_op(ops: &mut Ops) -> Result<EtcdOp> {
    let list = ops.switch("--list")?;
    let check = ops.switch("--check")?;
    let get = ops.value("--get");
    let put = ops.value("--put");
    let delete = ops.value("--delete");
    let chosen = [list, check, get.is_some(), put.is_some(), delete.is_some()];
    if chosen.iter().filter(|c| **c).count() != 1 {
        return Err(Error::usage(
            "give exactly one of --list, --get KEY, --put KEY --value VALUE, --delete KEY or --check",
        ));
    }
    if list {
        return Ok(EtcdOp::List {
            prefix: ops.value("--prefix").unwrap_or_default(),
        });
    }
    if check {
        return Ok(EtcdOp::Check);
    }
    if let Some(key) = get {
        return Ok(EtcdOp::Get(non_empty_key(key, "--get")?));
    }
    if let Some(key) = delete {
        return Ok(EtcdOp::Delete(non_empty_key(key, "--delete")?));
    }
    let key = non_empty_key(put.unwrap_or_default(), "--put")?;
    let value = ops
        .value("--value")
        .ok_or_else(|| Error::usage(format!("--put {key} needs --value VALUE")))?;
    let ttl = match ops.value("--ttl") {
        Some(text) => match text.parse::<u64>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                return Err(Error::usage(format!(
                    "--ttl {text:?} is not valid: give a whole number of seconds greater than 0"
                )));
            }
        },
        None => None,
    };
    Ok(EtcdOp::Put { key, value, ttl })
}

fn non_empty_key(key: String, flag: &str) -> Result<String> {
    if key.is_empty() {
        Err(Error::usage(format!("{flag} needs a non-empty key")))
    } else {
        Ok(key)
    }
}

/// The `--help` text of the tool, or of one sub-command.
pub fn help(command: Option<&str>) -> String {
    let mut out = String::new();
    match command.and_then(|name| COMMANDS.iter().find(|(n, _, _)| *n == name)) {
        None => {
            out.push_str(concat!(
                "ufm-pkeyd ",
                env!("CARGO_PKG_VERSION"),
                ": keep InfiniBand partition keys in NVIDIA UFM in step with pcocc's etcd\n\n",
                "Usage: ufm-pkeyd <COMMAND> [OPTIONS]\n\nCommands:\n"
            ));
            for (name, _, summary) in COMMANDS {
                out.push_str(&format!("  {name:<8} {summary}\n"));
            }
            out.push_str(
                "\nOptions:\n  -h, --help     print help (ufm-pkeyd <COMMAND> --help for a command's options)\n  -V, --version  print the version\n",
            );
            out.push_str(EXIT_CODES_HELP);
        }
        Some((name, bit, summary)) => {
            out.push_str(&format!(
                "ufm-pkeyd {name}: {summary}\n\nUsage: ufm-pkeyd {name} [OPTIONS]\n\nOptions:\n"
            ));
            for def in FLAGS.iter().filter(|f| f.commands & bit != 0) {
                let mut names = def.names.join(", ");
                if let Some(value) = def.value {
                    names.push(' ');
                    names.push_str(value);
                }
                out.push_str(&format!("  {names:<34} {}\n", def.help));
            }
            out.push_str("  -h, --help                         print this help\n");
            out.push_str(EXIT_CODES_HELP);
        }
    }
    out
}

const EXIT_CODES_HELP: &str = "\nExit codes: 0 success, 1 the operation failed (network, authentication, API),\n2 usage or configuration error, 3 not found, 4 changes pending (--dry-run).\nSee ufm-pkeyd(8).\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_args(args: &[&str]) -> Result<Invocation> {
        parse(args.iter().map(OsString::from).collect())
    }

    #[test]
    fn old_tool_ufm_flags_keep_their_meaning() {
        let inv = parse_args(&[
            "ufm",
            "--host",
            "ufm1",
            "--username",
            "admin",
            "--password",
            "pw",
            "--no-ssl-verify",
            "--pkey",
            "0x5000",
            "--guids",
            "0002c903000e0b72,0002c903000e0b73",
            "--membership",
            "full",
        ])
        .expect("parse");
        let Command::Ufm(UfmOp::AddGuids { pkey, guids, join }) = inv.command else {
            panic!("add guids expected: {:?}", inv.command)
        };
        assert_eq!(pkey.to_string(), "0x5000");
        assert_eq!(guids.len(), 2);
        assert!(join.index0, "index0 stays on by default");
        assert!(!join.ip_over_ib);
        assert_eq!(
            inv.flags.values.get("ufm-host").map(|v| v.0.as_str()),
            Some("ufm1")
        );
        assert_eq!(
            inv.flags.values.get("ufm-ssl-verify").map(|v| v.0.as_str()),
            Some("false")
        );
    }

    #[test]
    fn no_index0_turns_index0_off() {
        let inv = parse_args(&[
            "ufm",
            "--pkey",
            "0x5000",
            "--guids",
            "0002c903000e0b72",
            "--no-index0",
        ])
        .expect("parse");
        let Command::Ufm(UfmOp::AddGuids { join, .. }) = inv.command else {
            panic!("add guids expected")
        };
        assert!(!join.index0);
    }

    #[test]
    fn remove_guids_flag_removes() {
        let inv = parse_args(&[
            "ufm",
            "--pkey",
            "0x5000",
            "--guids",
            "0002c903000e0b72",
            "--remove-guids",
        ])
        .expect("parse");
        assert!(matches!(
            inv.command,
            Command::Ufm(UfmOp::RemoveGuids { .. })
        ));
    }

    #[test]
    fn operations_are_mutually_exclusive() {
        let err = parse_args(&["ufm", "--list", "--get-pkey", "0x1"]).expect_err("two ops");
        assert_eq!(err.exit_code(), 2);
        let err = parse_args(&["etcd", "--list", "--delete", "/k"]).expect_err("two ops");
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn invalid_values_are_usage_errors_naming_the_value() {
        for (args, needle) in [
            (&["ufm", "--get-pkey", "0x12345"][..], "0x12345"),
            (&["ufm", "--delete-pkey", "0x7fff"][..], "0x7fff"),
            (&["ufm", "--pkey", "0x10", "--guids", "xyz"][..], "xyz"),
            (
                &["etcd", "--put", "/k", "--value", "v", "--ttl", "-3"][..],
                "-3",
            ),
            (&["etcd", "--list", "--etcd-timeout", "soon"][..], "soon"),
        ] {
            let err = parse_args(args).expect_err(needle);
            assert_eq!(err.exit_code(), 2, "{args:?}");
            assert!(err.to_string().contains(needle), "{err}");
        }
    }

    #[test]
    fn flags_of_another_command_are_refused() {
        let err = parse_args(&["etcd", "--list", "--host", "ufm1"]).expect_err("ufm flag on etcd");
        assert!(err.to_string().contains("--host"), "{err}");
    }

    #[test]
    fn etcd_put_with_ttl() {
        let inv =
            parse_args(&["etcd", "--put", "/t/k", "--value", "v", "--ttl", "3600"]).expect("parse");
        assert_eq!(
            inv.command,
            Command::Etcd(EtcdOp::Put {
                key: "/t/k".into(),
                value: "v".into(),
                ttl: Some(3600)
            })
        );
    }

    #[test]
    fn every_flag_appears_in_help_of_its_commands() {
        for (name, bit, _) in COMMANDS {
            let text = help(Some(name));
            for def in FLAGS.iter().filter(|f| f.commands & bit != 0) {
                for flag in def.names {
                    assert!(text.contains(flag), "{flag} missing from `{name} --help`");
                }
            }
        }
    }

    #[test]
    fn every_key_flag_names_a_config_key() {
        for def in FLAGS {
            if let Key(key) | Fixed(key, _) = def.target {
                assert!(config::key_def(key).is_some(), "{key}");
            }
        }
    }
}
