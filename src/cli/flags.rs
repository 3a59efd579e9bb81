//! The flag table: every flag of every sub-command, defined once. `--help` is printed from it,
//! and `tests/docs_consistency.rs` checks the man page and the shell completions against that
//! help.

/// Sub-command bits, to say which sub-commands take a flag.
pub(crate) const UFM: u8 = 1;
pub(crate) const ETCD: u8 = 2;
pub(crate) const CONFIG: u8 = 4;
pub(crate) const MONITOR: u8 = 8;
pub(crate) const SYNC: u8 = 16;
pub(crate) const STATUS: u8 = 32;
pub(crate) const STATE: u8 = 64;
/// The sub-commands that sync etcd into UFM.
pub(crate) const SYNCING: u8 = MONITOR | SYNC;
/// Every sub-command.
pub(crate) const ALL: u8 = UFM | ETCD | CONFIG | SYNCING | STATUS | STATE;

/// What a flag does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// Sets a configuration key to the flag's value.
    Key(&'static str),
    /// Sets a configuration key to a fixed value (`--http` sets ufm-http to true).
    Fixed(&'static str, &'static str),
    /// An operation or output flag, read by the sub-command.
    Op,
}

/// One flag.
#[derive(Debug)]
pub(crate) struct FlagDef {
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
pub(crate) const FLAGS: &[FlagDef] = &[
    // General.
    flag!(&["--config"], Some("FILE"), Op, ALL, "read this configuration file instead of /etc/ufm-pkeyd/ufm-pkeyd.yaml"),
    flag!(&["--pcocc-dir"], Some("DIR"), Key("pcocc-dir"), ALL, "read pcocc's batch.yaml, ufm.yaml and password files from DIR (default /etc/pcocc)"),
    flag!(&["--no-pcocc"], None, Fixed("use-pcocc", "false"), ALL, "ignore pcocc's configuration files"),
    flag!(&["--json"], None, Op, UFM | ETCD | CONFIG | SYNCING | STATUS | STATE, "print results as JSON for scripts"),
    flag!(&["--debug"], None, Fixed("debug", "true"), ALL, "log debug detail to stderr (never secrets)"),
    flag!(&["--log-timestamps"], None, Fixed("log-timestamps", "true"), ALL, "start each log line with its UTC time (default: when stderr is neither the journal nor a terminal)"),
    // UFM connection.
    flag!(&["--ufm-host", "--host"], Some("HOST"), Key("ufm-host"), UFM | CONFIG | SYNCING | STATE, "UFM host, host:port or URL; a comma-separated list is tried in order"),
    flag!(&["--ufm-user", "--username"], Some("USER"), Key("ufm-user"), UFM | CONFIG | SYNCING | STATE, "UFM user for basic authentication (default admin)"),
    flag!(&["--ufm-password", "--password"], Some("PASSWORD"), Key("ufm-password"), UFM | CONFIG | SYNCING | STATE, "UFM password (visible in ps: prefer --ufm-password-file)"),
    flag!(&["--ufm-password-file"], Some("FILE"), Key("ufm-password-file"), UFM | CONFIG | SYNCING | STATE, "read the UFM password from FILE"),
    flag!(&["--ufm-prompt-password"], None, Op, UFM | CONFIG | SYNCING | STATE, "ask for the UFM password on the terminal"),
    flag!(&["--ufm-token-file"], Some("FILE"), Key("ufm-token-file"), UFM | CONFIG | SYNCING | STATE, "read a UFM access token from FILE and use token authentication"),
    flag!(&["--no-ssl-verify"], None, Fixed("ufm-ssl-verify", "false"), UFM | CONFIG | SYNCING | STATE, "do not verify UFM's TLS certificate"),
    flag!(&["--ufm-ca-cert"], Some("FILE"), Key("ufm-ca-cert"), UFM | CONFIG | SYNCING | STATE, "verify UFM's certificate against the CA certificates in FILE"),
    flag!(&["--http"], None, Fixed("ufm-http", "true"), UFM | CONFIG | SYNCING | STATE, "talk plain HTTP to UFM instead of HTTPS"),
    flag!(&["--ufm-timeout"], Some("SECONDS"), Key("ufm-timeout"), UFM | CONFIG | SYNCING | STATE, "wait at most SECONDS for UFM to connect or answer (default 30)"),
    flag!(&["--ufm-proxy"], Some("URL"), Key("ufm-proxy"), UFM | CONFIG | SYNCING | STATE, "reach UFM through this HTTP proxy (default: direct)"),
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
    flag!(&["--ip-over-ib"], None, Op, UFM, "turn IP over InfiniBand on for the partition (default: keep the partition's; on for a new one)"),
    flag!(&["--no-ip-over-ib"], None, Op, UFM, "turn IP over InfiniBand off for the partition"),
    flag!(&["--remove-guids"], None, Op, UFM, "remove --guids from --pkey instead of adding them"),
    flag!(&["--check"], None, Op, UFM | ETCD, "check the connection and credentials and print the server version"),
    flag!(&["--check"], None, Op, CONFIG, "check that the configuration loads, with its files, without connecting; exit 2 if not (for ExecReload=)"),
    // etcd connection.
    flag!(&["--etcd-endpoints"], Some("LIST"), Key("etcd-endpoints"), ETCD | CONFIG | SYNCING | STATE, "comma-separated etcd endpoints (host, host:port or URL), tried in order"),
    flag!(&["--etcd-host"], Some("HOST"), Key("etcd-host"), ETCD | CONFIG | SYNCING | STATE, "etcd host (default 127.0.0.1)"),
    flag!(&["--etcd-port"], Some("PORT"), Key("etcd-port"), ETCD | CONFIG | SYNCING | STATE, "etcd client port (default 2379)"),
    flag!(&["--etcd-protocol"], Some("http|https"), Key("etcd-protocol"), ETCD | CONFIG | SYNCING | STATE, "scheme for endpoints given without one (default http)"),
    flag!(&["--etcd-api"], Some("auto|v2|v3"), Key("etcd-api"), ETCD | CONFIG | SYNCING | STATE, "etcd API and keyspace (default auto: the one holding keys under the prefix; v2 with pcocc's batch.yaml)"),
    flag!(&["--etcd-ca-cert"], Some("FILE"), Key("etcd-ca-cert"), ETCD | CONFIG | SYNCING | STATE, "verify etcd's certificate against the CA certificates in FILE"),
    flag!(&["--etcd-cert-file"], Some("FILE"), Key("etcd-cert-file"), ETCD | CONFIG | SYNCING | STATE, "client certificate for etcd (PEM)"),
    flag!(&["--etcd-key-file"], Some("FILE"), Key("etcd-key-file"), ETCD | CONFIG | SYNCING | STATE, "client key for etcd (PEM)"),
    flag!(&["--etcd-user"], Some("USER"), Key("etcd-user"), ETCD | CONFIG | SYNCING | STATE, "etcd user"),
    flag!(&["--etcd-password"], Some("PASSWORD"), Key("etcd-password"), ETCD | CONFIG | SYNCING | STATE, "etcd password (visible in ps: prefer --etcd-password-file)"),
    flag!(&["--etcd-password-file"], Some("FILE"), Key("etcd-password-file"), ETCD | CONFIG | SYNCING | STATE, "read the etcd password from FILE"),
    flag!(&["--etcd-prompt-password"], None, Op, ETCD | CONFIG | SYNCING | STATE, "ask for the etcd password on the terminal"),
    flag!(&["--etcd-timeout"], Some("SECONDS"), Key("etcd-timeout"), ETCD | CONFIG | SYNCING | STATE, "wait at most SECONDS for etcd to connect or answer (default 30)"),
    flag!(&["--etcd-proxy"], Some("URL"), Key("etcd-proxy"), ETCD | CONFIG | SYNCING | STATE, "reach etcd through this HTTP proxy (default: direct)"),
    // Sync.
    flag!(&["--etcd-prefix"], Some("PREFIX"), Key("etcd-prefix"), SYNCING | CONFIG | STATE, "etcd prefix holding one key per partition (default /pcocc/global/opensm/pkeys/)"),
    flag!(&["--state-file"], Some("FILE"), Key("state-file"), SYNCING | CONFIG | STATUS | STATE, "record owned partitions in FILE (default /var/lib/ufm-pkeyd/state.json)"),
    flag!(&["--metrics-file"], Some("FILE"), Key("metrics-file"), SYNCING | CONFIG, "write Prometheus metrics to FILE after each pass (textfile collector)"),
    flag!(&["--poll-interval"], Some("SECONDS"), Key("poll-interval"), MONITOR | CONFIG, "look for changes made by hand in UFM every SECONDS (default 30); etcd changes are applied at once"),
    flag!(&["--resync-interval"], Some("SECONDS"), Key("resync-interval"), MONITOR | CONFIG, "read all of etcd's prefix and UFM's list at least every SECONDS (default 600)"),
    flag!(&["--allow-mass-delete"], None, Fixed("allow-mass-delete", "true"), SYNCING | CONFIG, "let one pass delete more partitions than the mass-deletion guard permits"),
    flag!(&["--max-deletes"], Some("N"), Key("max-deletes"), SYNCING | CONFIG, "deletions one pass may make without --allow-mass-delete (default 10, or up to half of those owned)"),
    flag!(&["--dry-run"], None, Op, SYNCING, "print the plan and change nothing"),
    // The monitoring check.
    flag!(&["--max-age"], Some("SECONDS"), Op, STATUS, "CRITICAL when the last check is older than SECONDS (default 3 poll intervals of the writer: 90 s)"),
    // The ownership record.
    flag!(&["--adopt"], None, Op, STATE, "bind the ownership record to the etcd and UFM configured now, keeping what it owns"),
    flag!(&["--reset"], None, Op, STATE, "empty the ownership record and bind it to the etcd and UFM configured now"),
    flag!(&["--confirm-deletions"], Some("PKEYS"), Op, STATE, "confirm deletions the guard refused: all, or PKeys and ranges (0x1000-0x17cf,0x2000); carried out at the next full pass, also while the daemon runs"),
    flag!(&["--leader-election"], None, Fixed("leader-election", "true"), MONITOR | CONFIG | STATE, "only the instance elected through etcd changes UFM; others stand by"),
    flag!(&["--election-key"], Some("KEY"), Key("election-key"), MONITOR | CONFIG | STATE, "etcd key of the leader election (default /ufm-pkeyd/leader)"),
    flag!(&["--state-key"], Some("KEY"), Key("state-key"), SYNCING | CONFIG | STATE, "with leader election: etcd key recording owned partitions (default /ufm-pkeyd/owned)"),
    flag!(&["--election-ttl"], Some("SECONDS"), Key("election-ttl"), MONITOR | CONFIG, "the claim lives SECONDS without refresh; a standby takes over within it plus ufm-timeout (default 4)"),
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
pub(crate) const COMMANDS: &[(&str, u8, &str)] = &[
    ("monitor", MONITOR, "the daemon: keep UFM in step with etcd, applying changes as they happen"),
    ("sync", SYNC, "run one sync pass (with --dry-run: print the plan) and exit"),
    ("ufm", UFM, "one-shot UFM PKey operations: list, get, create, delete PKeys; add and remove GUIDs"),
    ("etcd", ETCD, "one-shot etcd operations: list, get, put, delete keys"),
    ("status", STATUS, "a monitoring check from the daemon's status file: exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN"),
    ("state", STATE, "show the ownership record, adopt or reset it, confirm refused deletions"),
    ("config", CONFIG, "print the effective configuration and where each value comes from"),
];
