//! The configuration keys: every setting the tool has, its kind of value, its default and what
//! it means. The flag table in `cli`, the man page `ufm-pkeyd.yaml(5)`, the example file
//! `packaging/ufm-pkeyd.yaml` and `ufm-pkeyd config` all follow this one list.

/// The default location of the tool's own configuration file, read when present.
pub(crate) const DEFAULT_CONFIG_FILE: &str = "/etc/ufm-pkeyd/ufm-pkeyd.yaml";
/// The default pcocc configuration directory.
pub(crate) const DEFAULT_PCOCC_DIR: &str = "/etc/pcocc";
/// Where the daemon records the partitions it owns.
pub(crate) const DEFAULT_STATE_FILE: &str = "/var/lib/ufm-pkeyd/state.json";
/// The etcd prefix under which pcocc writes one key per partition.
pub(crate) const DEFAULT_PREFIX: &str = "/pcocc/global/opensm/pkeys/";

/// What kind of value a key holds; [`super::values`] parses each kind with one set of rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
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
pub(crate) struct KeyDef {
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
pub(crate) const KEYS: &[KeyDef] = &[
    key!("etcd-endpoints", Kind::List, None, "etcd endpoints, each host, host:port or URL; tried in order, failing over on connection errors"),
    key!("etcd-host", Kind::Text, Some("127.0.0.1"), "etcd host, when etcd-endpoints is not set"),
    key!("etcd-port", Kind::Port, Some("2379"), "etcd client port, for endpoints given without one"),
    key!("etcd-protocol", Kind::Choice(&["http", "https"]), Some("http"), "scheme for endpoints given without one"),
    key!("etcd-api", Kind::Choice(&["auto", "v2", "v3"]), Some("auto"), "etcd API and keyspace; auto: the one holding keys under etcd-prefix at the start (v2 with pcocc's batch.yaml)"),
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
    key!("poll-interval", Kind::Seconds, Some("30"), "seconds between checks for changes made by hand in UFM (one small request); changes in etcd are applied at once"),
    key!("resync-interval", Kind::Seconds, Some("600"), "seconds between full passes (all of etcd's prefix and UFM's list) at the longest"),
    key!("late-write-margin", Kind::Seconds, Some("15"), "seconds beyond ufm-timeout that UFM may still apply a write that timed out; its partition takes no write until then"),
    key!("allow-mass-delete", Kind::Bool, Some("false"), "allow one pass to delete more partitions than the guard permits"),
    key!("max-deletes", Kind::Count, Some("10"), "a pass may delete this many owned partitions, or up to half of them, without --allow-mass-delete"),
    key!("host-index0", Kind::Bool, Some("false"), "put partitions at index 0 of host ports (pcocc keeps the default partition there)"),
    key!("vf-index0", Kind::Bool, Some("true"), "put partitions at index 0 of VF ports (a VF needs its partition there)"),
    key!("membership", Kind::Choice(&["full", "limited"]), Some("full"), "membership of GUIDs added from etcd"),
    key!("ip-over-ib", Kind::Bool, Some("true"), "enable IP over InfiniBand on partitions created from etcd"),
    key!("leader-election", Kind::Bool, Some("false"), "run as one of several instances: only the elected leader changes UFM"),
    key!("election-key", Kind::Text, Some("/ufm-pkeyd/leader"), "etcd key of the leader election (in the keyspace of etcd-api)"),
    key!("state-key", Kind::Text, Some("/ufm-pkeyd/owned"), "etcd key recording owned partitions when leader-election is on (shared by the instances)"),
    key!("election-ttl", Kind::Seconds, Some("4"), "seconds a leader's claim lives without refresh; a standby takes over within it"),
    key!("pcocc-dir", Kind::Path, Some(DEFAULT_PCOCC_DIR), "pcocc configuration directory read for etcd and UFM settings"),
    key!("use-pcocc", Kind::Bool, Some("true"), "read pcocc's configuration files"),
    key!("debug", Kind::Bool, Some("false"), "log debug detail (never secrets)"),
    key!("log-timestamps", Kind::Bool, None, "start each log line with its UTC time (RFC 3339); unset: when stderr is neither the journal nor a terminal"),
];

/// Looks a key up by name.
pub(crate) fn key_def(name: &str) -> Option<&'static KeyDef> {
    KEYS.iter().find(|k| k.name == name)
}
