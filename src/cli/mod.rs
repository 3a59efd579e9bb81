//! The command line: every flag is defined once in [`FLAGS`] (name, value, which sub-commands
//! take it, help), and `--help`, the man page check and the completion check all read that
//! table. Parsing turns the arguments into an [`Invocation`]: the sub-command with its typed
//! operation, and the configuration flags as a raw layer for `config`.
//!
//! The sub-commands and flags of the older Python tool keep their meaning: `ufm --host
//! --username --password`, `etcd --list --prefix`, and so on.

use std::ffi::OsString;
use std::path::PathBuf;

mod flags;
mod help;

pub(crate) use flags::{COMMANDS, FLAGS, FlagDef};
pub(crate) use help::help;

use crate::config::FlagLayer;
use crate::config::values::parse_bool;
use crate::error::{Error, Result};
use crate::model::{Guid, Join, Membership, PKey, parse_guid_list};
use flags::Target::{Fixed, Key, Op};

/// A UFM operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum UfmOp {
    List,
    Get(PKey),
    Create {
        pkey: PKey,
        guids: Vec<Guid>,
        join: Join,
        /// `--ip-over-ib` or `--no-ip-over-ib`; `None`: keep the partition's (a new one gets
        /// UFM's default, on).
        ip_over_ib: Option<bool>,
    },
    Delete(PKey),
    AddGuids {
        pkey: PKey,
        guids: Vec<Guid>,
        join: Join,
        /// `--ip-over-ib` or `--no-ip-over-ib`; `None`: keep the partition's (a new one gets
        /// UFM's default, on).
        ip_over_ib: Option<bool>,
    },
    RemoveGuids {
        pkey: PKey,
        guids: Vec<Guid>,
    },
    Check,
}

/// An etcd operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum EtcdOp {
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

/// What `ufm-pkeyd state` does with the ownership record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum StateOp {
    Show,
    Adopt,
    Reset,
    /// Confirm refused deletions: these PKeys, or every one (`all`).
    Confirm(Option<std::collections::BTreeSet<crate::model::PKey>>),
}

/// What to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Command {
    /// `--help`, for the whole tool or one sub-command.
    Help(Option<&'static str>),
    Version,
    Ufm(UfmOp),
    Etcd(EtcdOp),
    /// Print the effective configuration; with `check`, only check that it loads.
    Config {
        check: bool,
    },
    /// The daemon; `dry_run` plans without applying.
    Monitor {
        dry_run: bool,
    },
    /// One pass.
    Sync {
        dry_run: bool,
    },
    /// The monitoring check: what the daemon's status file says. `max_age`: `--max-age`.
    Status {
        max_age: Option<std::time::Duration>,
    },
    /// The ownership record: show it, or adopt or reset it.
    State(StateOp),
}

/// A parsed command line.
#[derive(Clone, Debug)]
pub(crate) struct Invocation {
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
pub(crate) fn parse(args: Vec<OsString>) -> Result<Invocation> {
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
                    .ok_or_else(|| unknown_command(&name))?;
                command = Some((found.0, found.1));
            }
            _ => return Err(arg.unexpected().into()),
        }
    }
    if version {
        return Ok(invocation(Command::Version, FlagLayer::default(), false));
    }
    let Some((name, bit)) = command.or_else(|| old_daemon_style(&given, help)) else {
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
    for mut g in given {
        if let Some(def) = flag_for(&g.typed, bit) {
            g.def = def;
        }
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
        "monitor" => {
            let dry_run = ops.op_switch("--dry-run")?;
            if json && !dry_run {
                return Err(Error::usage(
                    "--json does not apply to `ufm-pkeyd monitor` without --dry-run (the daemon prints nothing; its log goes to stderr): leave it out",
                ));
            }
            Command::Monitor { dry_run }
        }
        "status" => Command::Status {
            max_age: ops.value("--max-age").map(|v| max_age(&v)).transpose()?,
        },
        "state" => Command::State(state_op(&mut ops)?),
        "sync" => Command::Sync {
            dry_run: ops.switch("--dry-run")?,
        },
        _ => Command::Config {
            check: ops.switch("--check")?,
        },
    };
    ops.reject_unused(name)?;
    Ok(invocation(command, layer, json))
}

/// The Python daemons (`surf_ufm_pkeyd.py --ufm-host …`, `pkey_etcd_monitor.py --etcd-host …`)
/// had no sub-commands: flags alone ran the monitor. So do they here, when every flag given
/// is one of `monitor`'s.
fn old_daemon_style(given: &[Given], help: bool) -> Option<(&'static str, u8)> {
    let monitor = COMMANDS.iter().find(|(n, _, _)| *n == "monitor")?;
    let all_monitor = given
        .iter()
        .all(|g| flag_for(&g.typed, monitor.1).is_some());
    (!help && !given.is_empty() && all_monitor).then_some((monitor.0, monitor.1))
}

fn invocation(command: Command, flags: FlagLayer, json: bool) -> Invocation {
    Invocation {
        command,
        flags,
        json,
    }
}

/// Finds a flag by any of its names.
pub(crate) fn find_flag(typed: &str) -> Option<&'static FlagDef> {
    FLAGS.iter().find(|f| f.names.contains(&typed))
}

/// The definition of a flag for one sub-command (`--check` means one thing for `ufm` and
/// `etcd`, another for `config`).
fn flag_for(typed: &str, command: u8) -> Option<&'static FlagDef> {
    FLAGS
        .iter()
        .find(|f| f.names.contains(&typed) && f.commands & command != 0)
}

fn unknown_flag(typed: &str, command: Option<(&str, u8)>) -> Error {
    let help = command.map_or("ufm-pkeyd --help".to_string(), |(n, _)| {
        format!("ufm-pkeyd {n} --help")
    });
    let known = FLAGS
        .iter()
        .filter(|f| command.is_none_or(|(_, bit)| f.commands & bit != 0))
        .flat_map(|f| f.names.iter().copied())
        .chain(["--help", "--version"]);
    let hint = did_you_mean(typed, known);
    Error::usage(format!("unknown option {typed}{hint} (see {help})"))
}

fn unknown_command(name: &str) -> Error {
    let hint = did_you_mean(name, COMMANDS.iter().map(|(n, _, _)| *n));
    Error::usage(format!(
        "unknown command {name:?}{hint}: use one of {} (see --help)",
        command_names()
    ))
}

/// `: did you mean --list?` when one of `known` is a likely typo of `typed` (a few letters
/// wrong, missing, extra or swapped), else nothing.
fn did_you_mean<'a>(typed: &str, known: impl Iterator<Item = &'a str>) -> String {
    let bare = typed.trim_start_matches('-');
    let allowed = (bare.chars().count() / 4).clamp(1, 3);
    known
        .map(|name| (edit_distance(bare, name.trim_start_matches('-')), name))
        .filter(|(distance, _)| *distance <= allowed)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| format!(": did you mean {name}?"))
        .unwrap_or_default()
}

/// The edit distance between two words: insertions, deletions, substitutions and swaps of
/// two neighbouring letters each count one (optimal string alignment).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    // Three rows of the table: two rows back (for swaps), the last one, the current one.
    let mut before: Vec<usize> = Vec::new();
    let mut last: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut row = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            row[j] = (last[j] + 1).min(row[j - 1] + 1).min(last[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                row[j] = row[j].min(before[j - 2] + 1);
            }
        }
        before = std::mem::replace(&mut last, row);
    }
    last[b.len()]
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
    /// The operation chosen (`--list`, `--pkey`…), as typed, to name it when another flag
    /// does not apply to it.
    chosen: Option<String>,
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
        switch_of(self.take(name))
    }

    /// Like [`Ops::value`], for a flag that names the operation.
    fn op_value(&mut self, name: &str) -> Option<String> {
        self.operation(name).and_then(|(_, v)| v)
    }

    /// Like [`Ops::switch`], for a flag that names the operation.
    fn op_switch(&mut self, name: &str) -> Result<bool> {
        let given = self.operation(name);
        switch_of(given)
    }

    /// Takes an operation flag and remembers it as the one chosen.
    fn operation(&mut self, name: &str) -> Option<(String, Option<String>)> {
        let taken = self.take(name)?;
        self.chosen.get_or_insert_with(|| taken.0.clone());
        Some(taken)
    }

    /// Every flag that was given must have been used: one that does not apply to the
    /// operation is refused, never ignored.
    fn reject_unused(&self, command: &str) -> Result<()> {
        let Some((_, typed, _)) = self.values.first() else {
            return Ok(());
        };
        Err(Error::usage(match &self.chosen {
            Some(op) => format!(
                "{typed} does not apply to `ufm-pkeyd {command} {op}`: leave it out (see ufm-pkeyd {command} --help)"
            ),
            None => format!(
                "{typed} does not go with the other options given to `ufm-pkeyd {command}` (see ufm-pkeyd {command} --help)"
            ),
        }))
    }
}

/// Whether a switch is on: given alone, or as `--flag=VALUE` with a true value.
fn switch_of(given: Option<(String, Option<String>)>) -> Result<bool> {
    match given {
        None => Ok(false),
        Some((_, None)) => Ok(true),
        Some((typed, Some(v))) => switch_value(&typed, &v),
    }
}

/// The value of a switch given as `--flag=VALUE`.
fn switch_value(typed: &str, value: &str) -> Result<bool> {
    parse_bool(value).map_err(|e| Error::usage(format!("{typed} {value:?} is not valid: {e}")))
}

fn apply(g: &Given, layer: &mut FlagLayer, ops: &mut Ops) -> Result<()> {
    let name = g.def.names[0];
    match g.def.target {
        // The value is checked with every other configuration value, in `config`.
        Key(key) => {
            let value = g.value.clone().unwrap_or_default();
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
        Op if name == "--ufm-prompt-password" => layer.prompt_ufm_password = true,
        Op => ops.values.push((name, g.typed.clone(), g.value.clone())),
    }
    Ok(())
}

fn ufm_op(ops: &mut Ops) -> Result<UfmOp> {
    let list = ops.op_switch("--list")?;
    let check = ops.op_switch("--check")?;
    let get = ops.op_value("--get-pkey");
    let create = ops.op_value("--create-pkey");
    let delete = ops.op_value("--delete-pkey");
    let pkey = ops.op_value("--pkey");
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
    // --guids goes with --create-pkey and --pkey, --remove-guids with --pkey only: taken
    // there, so that with another operation they are refused as not applying.
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
        let (join, ip_over_ib) = join_flags(ops)?;
        return Ok(UfmOp::Create {
            pkey: PKey::parse_writable(&p)?,
            guids: guids_of(ops)?.unwrap_or_default(),
            join,
            ip_over_ib,
        });
    }
    let pkey = PKey::parse_writable(&pkey.unwrap_or_default())?;
    let guids = guids_of(ops)?.ok_or_else(|| {
        Error::usage("--pkey needs --guids: the GUIDs to add (or to remove with --remove-guids)")
    })?;
    if ops.switch("--remove-guids")? {
        Ok(UfmOp::RemoveGuids { pkey, guids })
    } else {
        let (join, ip_over_ib) = join_flags(ops)?;
        Ok(UfmOp::AddGuids {
            pkey,
            guids,
            join,
            ip_over_ib,
        })
    }
}

/// `--guids`, parsed.
fn guids_of(ops: &mut Ops) -> Result<Option<Vec<Guid>>> {
    ops.value("--guids")
        .map(|g| parse_guid_list(&g))
        .transpose()
        .map_err(Error::from)
}

/// How added GUIDs join, from `--membership` and `--index0`, and the partition's IPoIB flag
/// from `--ip-over-ib` or `--no-ip-over-ib` (`None` when neither is given).
fn join_flags(ops: &mut Ops) -> Result<(Join, Option<bool>)> {
    let membership = match ops.value("--membership") {
        Some(text) => text.parse::<Membership>()?,
        None => Membership::Full,
    };
    // --index0 is on by default, as in the old tool; --no-index0 turns it off.
    let index0_on = ops.take("--index0");
    let index0_off = ops.switch("--no-index0")?;
    let index0 = match index0_on {
        Some((typed, Some(v))) => switch_value(&typed, &v)?,
        _ => !index0_off,
    };
    let ipoib_on = ops.take("--ip-over-ib");
    let ipoib_off = ops.switch("--no-ip-over-ib")?;
    let ip_over_ib = match (ipoib_on, ipoib_off) {
        (Some((typed, Some(v))), _) => Some(switch_value(&typed, &v)?),
        (Some((_, None)), off) => Some(!off),
        (None, true) => Some(false),
        (None, false) => None,
    };
    Ok((Join { membership, index0 }, ip_over_ib))
}

/// `--max-age SECONDS`: more than zero seconds, in the grammar of every other duration.
fn max_age(text: &str) -> Result<std::time::Duration> {
    use crate::config::keys::Kind;
    use crate::config::values::Value;
    match Kind::Seconds.parse(text) {
        Ok(Value::Seconds(d)) if !d.is_zero() => Ok(d),
        Ok(_) => Err(Error::usage(format!(
            "--max-age {text:?} is not valid: give more than 0 seconds"
        ))),
        Err(expected) => Err(Error::usage(format!(
            "--max-age {text:?} is not valid: {expected}"
        ))),
    }
}

/// The sub-command named in `args`, if any: the first word that is not an option or an
/// option's value. For arguments that do not parse, to answer in that command's way.
pub(crate) fn command_word(args: &[OsString]) -> Option<&'static str> {
    let mut words = args.iter().map(|a| a.to_string_lossy());
    while let Some(word) = words.next() {
        if let Some(flag) = word.strip_prefix("--") {
            let name = format!("--{}", flag.split('=').next().unwrap_or_default());
            let takes_value = find_flag(&name).is_some_and(|f| f.value.is_some());
            if takes_value && !flag.contains('=') {
                words.next();
            }
        } else if !word.starts_with('-') {
            return COMMANDS
                .iter()
                .find(|(n, _, _)| *n == word)
                .map(|(n, _, _)| *n);
        }
    }
    None
}

fn state_op(ops: &mut Ops) -> Result<StateOp> {
    let confirm = ops.op_value("--confirm-deletions");
    match (
        ops.op_switch("--adopt")?,
        ops.op_switch("--reset")?,
        confirm,
    ) {
        (false, false, None) => Ok(StateOp::Show),
        (true, false, None) => Ok(StateOp::Adopt),
        (false, true, None) => Ok(StateOp::Reset),
        (false, false, Some(pkeys)) if pkeys == "all" => Ok(StateOp::Confirm(None)),
        (false, false, Some(pkeys)) => Ok(StateOp::Confirm(Some(crate::model::parse_pkey_set(
            &pkeys,
        )?))),
        _ => Err(Error::usage(
            "give one of --adopt, --reset or --confirm-deletions PKEYS",
        )),
    }
}

fn etcd_op(ops: &mut Ops) -> Result<EtcdOp> {
    let list = ops.op_switch("--list")?;
    let check = ops.op_switch("--check")?;
    let get = ops.op_value("--get");
    let put = ops.op_value("--put");
    let delete = ops.op_value("--delete");
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
        let Command::Ufm(UfmOp::AddGuids {
            pkey,
            guids,
            join,
            ip_over_ib,
        }) = inv.command
        else {
            panic!("add guids expected: {:?}", inv.command)
        };
        assert_eq!(pkey.to_string(), "0x5000");
        assert_eq!(guids.len(), 2);
        assert!(join.index0, "index0 stays on by default");
        assert_eq!(
            ip_over_ib, None,
            "the partition's IPoIB is kept unless a flag says"
        );
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
    fn ip_over_ib_flags_set_it_either_way_and_neither_keeps_it() {
        let ipoib = |extra: &[&str]| {
            let mut args = vec!["ufm", "--pkey", "0x5000", "--guids", "0002c903000e0b72"];
            args.extend_from_slice(extra);
            match parse_args(&args).expect("parse").command {
                Command::Ufm(UfmOp::AddGuids { ip_over_ib, .. }) => ip_over_ib,
                other => panic!("add guids expected: {other:?}"),
            }
        };
        assert_eq!(ipoib(&[]), None);
        assert_eq!(ipoib(&["--ip-over-ib"]), Some(true));
        assert_eq!(ipoib(&["--no-ip-over-ib"]), Some(false));
        assert_eq!(ipoib(&["--ip-over-ib=false"]), Some(false));
        let create = parse_args(&["ufm", "--create-pkey", "0x5000"]).expect("parse");
        assert!(matches!(
            create.command,
            Command::Ufm(UfmOp::Create {
                ip_over_ib: None,
                ..
            })
        ));
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
        ] {
            let err = parse_args(args).expect_err(needle);
            assert_eq!(err.exit_code(), 2, "{args:?}");
            assert!(err.to_string().contains(needle), "{err}");
        }
    }

    #[test]
    fn a_mistyped_flag_or_command_gets_a_suggestion() {
        for (args, needle) in [
            (&["ufm", "--lst"][..], "did you mean --list?"),
            (&["sync", "--dryrun"][..], "did you mean --dry-run?"),
            (&["sync", "--ufm-hots", "x"][..], "did you mean --ufm-host?"),
            (&["snyc"][..], "did you mean sync?"),
            (
                &["etcd", "--etcd-endpoint", "x"][..],
                "did you mean --etcd-endpoints?",
            ),
        ] {
            let err = parse_args(args).expect_err(needle);
            assert_eq!(err.exit_code(), 2, "{args:?}");
            assert!(err.to_string().contains(needle), "{args:?}: {err}");
        }
        let err = parse_args(&["ufm", "--frobnicate"]).expect_err("unknown");
        assert!(!err.to_string().contains("did you mean"), "{err}");
    }

    #[test]
    fn edit_distance_counts_a_swap_as_one() {
        assert_eq!(edit_distance("sync", "snyc"), 1);
        assert_eq!(edit_distance("list", "lst"), 1);
        assert_eq!(edit_distance("ufm-hots", "ufm-host"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn options_that_do_not_apply_to_the_operation_are_refused_by_name() {
        for (args, flag) in [
            (&["ufm", "--list", "--remove-guids"][..], "--remove-guids"),
            (
                &["ufm", "--list", "--guids", "0002c903000e0b72"][..],
                "--guids",
            ),
            (
                &["ufm", "--get-pkey", "0x10", "--remove-guids"][..],
                "--remove-guids",
            ),
            (
                &[
                    "ufm",
                    "--delete-pkey",
                    "0x10",
                    "--guids",
                    "0002c903000e0b72",
                ][..],
                "--guids",
            ),
            (
                &["ufm", "--create-pkey", "0x10", "--remove-guids"][..],
                "--remove-guids",
            ),
            (
                &["ufm", "--list", "--membership", "full"][..],
                "--membership",
            ),
            (&["etcd", "--get", "/k", "--prefix", "/p"][..], "--prefix"),
            (&["etcd", "--list", "--value", "v"][..], "--value"),
            (&["monitor", "--json"][..], "--json"),
        ] {
            let err = parse_args(args).expect_err(flag);
            assert_eq!(err.exit_code(), 2, "{args:?}");
            assert!(err.to_string().starts_with(flag), "{args:?}: {err}");
        }
        let err = parse_args(&["ufm", "--list", "--remove-guids"]).expect_err("list");
        assert!(err.to_string().contains("`ufm-pkeyd ufm --list`"), "{err}");
        assert!(parse_args(&["monitor", "--dry-run", "--json"]).is_ok());
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

    /// The flag table and the key table are written separately: every flag that sets a key
    /// must name one, and a fixed value must be one the key accepts.
    #[test]
    fn every_key_flag_names_a_config_key_and_fixed_values_parse() {
        use crate::config::keys::key_def;
        for def in FLAGS {
            match def.target {
                Key(key) => assert!(key_def(key).is_some(), "{key}"),
                Fixed(key, value) => {
                    let kind = key_def(key).map(|k| k.kind);
                    assert!(
                        kind.is_some_and(|k| k.parse(value).is_ok()),
                        "{key}: {value}"
                    );
                }
                Op => {}
            }
        }
    }
}
