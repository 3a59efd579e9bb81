//! Configuration: where every setting comes from, and the typed settings the rest of the
//! program uses.
//!
//! [`load`] gathers the layers, lowest to highest precedence — built-in defaults, pcocc's files
//! ([`pcocc`]), the tool's own YAML file, systemd credentials, command-line flags ([`layers`]) —
//! parsing every value by its key's kind as it enters ([`values`], one grammar for all), then
//! resolves them once into [`Settings`] ([`resolve`]). The keys themselves are in [`keys`].

pub(crate) mod keys;
mod layers;
mod pcocc;
mod resolve;
pub(crate) mod values;

use std::path::{Path, PathBuf};

pub(crate) use layers::{FlagLayer, KeyReport};
pub(crate) use resolve::Settings;

use crate::error::{Error, Result};
use keys::{DEFAULT_CONFIG_FILE, DEFAULT_PCOCC_DIR};
use layers::{Layers, yaml_to_flat_map};
use values::Value;

/// The loaded configuration: the resolved settings, and the layers for `ufm-pkeyd config`.
#[derive(Debug)]
pub(crate) struct Config {
    pub settings: Settings,
    layers: Layers,
}

impl Config {
    /// Every key with its value (secrets redacted) and source.
    pub(crate) fn describe(&self) -> Vec<KeyReport> {
        self.layers.describe()
    }

    /// Warnings found while loading, to log once logging is set up.
    pub(crate) fn warnings(&self) -> &[String] {
        &self.layers.warnings
    }

    /// The secrets the configuration needs but no layer gives: `ufm-password` (no password
    /// nor token for UFM), `etcd-password` (an etcd user without a password).
    pub(crate) fn missing_secrets(&self) -> Vec<&'static str> {
        let given = |keys: &[&str]| keys.iter().any(|k| self.layers.get(k).is_some());
        let mut missing = Vec::new();
        if !given(&["ufm-password", "ufm-password-file", "ufm-token-file"]) {
            missing.push("ufm-password");
        }
        if given(&["etcd-user"]) && !given(&["etcd-password", "etcd-password-file"]) {
            missing.push("etcd-password");
        }
        missing
    }

    /// The value of a key naming a file, if set.
    pub(crate) fn path_of(&self, key: &str) -> Option<PathBuf> {
        self.layers.get(key).map(|e| PathBuf::from(&e.text))
    }

    /// The warnings that matter for the service, whoever runs the check (`config --check`):
    /// those found while loading, and files the unit cannot see.
    pub(crate) fn service_warnings(&self) -> Vec<String> {
        let mut all = self.layers.warnings.clone();
        for warning in file_warnings(&self.layers, true) {
            if !all.contains(&warning) {
                all.push(warning);
            }
        }
        all
    }
}

/// Loads every layer and resolves the settings. `credentials_dir` is `$CREDENTIALS_DIRECTORY`.
pub(crate) fn load(flags: &FlagLayer, credentials_dir: Option<&Path>) -> Result<Config> {
    let mut layers = Layers::defaults()?;
    // The tool's own file is read before pcocc's because it may move or disable the pcocc
    // directory; it is merged after, so it still overrides pcocc's values.
    let own = read_own_file(flags.config_file.as_deref())?;
    let mut early = Layers::default();
    if let Some((path, map)) = &own {
        early.load_own_file(path, map.clone())?;
    }
    early.load_flags(flags)?;
    let use_pcocc = !matches!(
        early.get("use-pcocc").map(|e| &e.value),
        Some(Value::Bool(false))
    );
    if use_pcocc {
        let dir = match early.get("pcocc-dir").map(|e| &e.value) {
            Some(Value::Path(dir)) => dir.clone(),
            _ => PathBuf::from(DEFAULT_PCOCC_DIR),
        };
        pcocc::load(&mut layers, &dir)?;
    }
    if let Some((path, map)) = own {
        layers.load_own_file(&path, map)?;
    }
    if let Some(dir) = credentials_dir {
        layers.load_credentials(dir);
    }
    layers.load_flags(flags)?;
    if credentials_dir.is_none() {
        layers.load_unit_files(Path::new(UNIT_SECRETS_DIR));
    }
    let settings = resolve::resolve(&mut layers, flags)?;
    let under_systemd = std::env::var_os("INVOCATION_ID").is_some();
    let found = file_warnings(&layers, under_systemd);
    layers.warnings.extend(found);
    Ok(Config { settings, layers })
}

/// Only the state file, for `ufm-pkeyd status`: from the tool's own file and the flags (pcocc
/// has no such setting), without reading a secret or resolving anything else.
pub(crate) fn state_file(flags: &FlagLayer) -> Result<PathBuf> {
    let mut layers = Layers::defaults()?;
    if let Some((path, map)) = read_own_file(flags.config_file.as_deref())? {
        layers.load_own_file(&path, map)?;
    }
    layers.load_flags(flags)?;
    Ok(match layers.get("state-file").map(|e| &e.value) {
        Some(Value::Path(path)) => path.clone(),
        _ => PathBuf::from(keys::DEFAULT_STATE_FILE),
    })
}

/// Where the unit's credential files live (`LoadCredential=ufm-password:/etc/ufm-pkeyd/…`).
const UNIT_SECRETS_DIR: &str = "/etc/ufm-pkeyd";

/// The keys naming files that hold secrets.
const SECRET_FILE_KEYS: &[&str] = &["ufm-password-file", "ufm-token-file", "etcd-password-file"];

/// The keys naming files the daemon reads or writes.
const FILE_KEYS: &[&str] = &[
    "ufm-password-file",
    "ufm-token-file",
    "etcd-password-file",
    "ufm-ca-cert",
    "etcd-ca-cert",
    "etcd-cert-file",
    "etcd-key-file",
    "state-file",
    "metrics-file",
];

/// Warnings about the files the configuration names: a secret readable by every user, and,
/// for the service (`service`: run by systemd, or `config --check` for it), a file under
/// /root or /home, which the unit cannot see (`ProtectHome=yes`).
pub(crate) fn file_warnings(layers: &Layers, service: bool) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut warnings = Vec::new();
    for key in SECRET_FILE_KEYS {
        let Some(entry) = layers.get(key) else {
            continue;
        };
        let mode = std::fs::metadata(&entry.text).map(|m| m.permissions().mode());
        if mode.is_ok_and(|mode| mode & 0o004 != 0) {
            warnings.push(format!(
                "{} ({key}) is readable by every user: chmod 0600 {}",
                entry.text, entry.text
            ));
        }
    }
    if service {
        for key in FILE_KEYS {
            let Some(entry) = layers.get(key) else {
                continue;
            };
            if matches!(entry.source, layers::Source::Credential(_)) {
                continue;
            }
            if ["/root/", "/home/"]
                .iter()
                .any(|d| entry.text.starts_with(d))
            {
                warnings.push(format!(
                    "{} ({key}) is under /root or /home, which ufm-pkeyd.service cannot see (ProtectHome=yes): move it to /etc/ufm-pkeyd/",
                    entry.text
                ));
            }
        }
    }
    warnings
}

/// Reads the tool's own file: the one given, or the default one when it exists.
fn read_own_file(
    explicit: Option<&Path>,
) -> Result<Option<(PathBuf, std::collections::BTreeMap<String, String>)>> {
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

    /// The layers a command run by hand gets: defaults and `flags`, then the unit's secret
    /// files from `dir`.
    fn by_hand(pairs: &[(&'static str, &str)], dir: &Dir) -> Layers {
        let mut layers = Layers::defaults().expect("defaults");
        layers.load_flags(&flags(pairs)).expect("flags");
        layers.load_unit_files(&dir.0);
        layers
    }

    #[test]
    fn by_hand_the_unit_credential_files_are_found_when_nothing_else_gives_a_secret() {
        let dir = Dir::new("unit-files");
        let ufm = dir.write("ufm-password", "secret\n");
        dir.write("etcd-password", "secret\n");
        let layers = by_hand(&[], &dir);
        let entry = layers.get("ufm-password-file").expect("the unit's file");
        assert_eq!(entry.text, ufm.display().to_string());
        assert!(entry.source.to_string().contains("credential file"));
        assert!(
            layers.get("etcd-password-file").is_none(),
            "no etcd user: no etcd password"
        );

        let layers = by_hand(&[("etcd-user", "root")], &dir);
        assert!(layers.get("etcd-password-file").is_some());

        // Anything given wins: the file is not looked at.
        let layers = by_hand(&[("ufm-token-file", "/elsewhere/token")], &dir);
        assert!(layers.get("ufm-password-file").is_none());
        let layers = by_hand(&[("etcd-user", "root"), ("etcd-password-file", "/x")], &dir);
        assert_eq!(
            layers.get("etcd-password-file").map(|e| e.text.as_str()),
            Some("/x")
        );
    }

    #[test]
    fn an_empty_credential_or_one_newline_counts_as_absent() {
        let dir = Dir::new("unit-files-empty");
        for text in ["", "\n", "\r\n"] {
            dir.write("ufm-password", text);
            assert!(
                by_hand(&[], &dir).get("ufm-password-file").is_none(),
                "{text:?}"
            );
            let mut layers = Layers::defaults().expect("defaults");
            layers.load_credentials(&dir.0);
            assert!(
                layers.get("ufm-password-file").is_none(),
                "credential {text:?}"
            );
        }
        dir.write("ufm-password", "x\n");
        let mut layers = Layers::defaults().expect("defaults");
        layers.load_credentials(&dir.0);
        assert!(layers.get("ufm-password-file").is_some());
    }

    #[test]
    fn pcocc_batch_yaml_selects_v2_and_root_with_password_file() {
        let dir = Dir::new("pcocc");
        dir.write(
            "batch.yaml",
            "type: slurm\nsettings:\n  etcd-servers: [ 'etcd1', 'etcd2' ]\n  etcd-client-port: 2379\n  etcd-protocol: http\n  etcd-auth-type: password\n",
        );
        dir.write("etcd-password", "s3cret\n");
        let raw = load(&flags(&[("pcocc-dir", &dir.0.display().to_string())]), None).expect("load");
        let etcd = raw.settings.etcd().expect("etcd");
        assert_eq!(etcd.endpoints, ["http://etcd1:2379", "http://etcd2:2379"]);
        assert_eq!(
            etcd.api,
            crate::net::etcd::ApiChoice::Fixed(crate::net::etcd::Api::V2)
        );
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
        let raw = load(&layer, None).expect("load");
        let etcd = raw.settings.etcd().expect("etcd");
        assert_eq!(etcd.endpoints, ["http://file-etcd:1"]);
        assert_eq!(
            etcd.api,
            crate::net::etcd::ApiChoice::Fixed(crate::net::etcd::Api::V3)
        );

        layer
            .values
            .insert("etcd-host", ("flag-etcd".into(), "--etcd-host".into()));
        let raw = load(&layer, None).expect("load");
        assert_eq!(
            raw.settings.etcd().expect("etcd").endpoints,
            ["http://flag-etcd:2379"]
        );
    }

    #[test]
    fn without_pcocc_nor_a_setting_the_keyspace_is_found_out() {
        let raw = load(&flags(&[("use-pcocc", "false")]), None).expect("load");
        let etcd = raw.settings.etcd().expect("etcd");
        assert_eq!(etcd.api, crate::net::etcd::ApiChoice::Auto);
    }

    #[test]
    fn unknown_key_in_own_file_is_named() {
        let dir = Dir::new("unknown");
        let own = dir.write("own.yaml", "etcd-endpoint: x\n");
        let mut layer = flags(&[("use-pcocc", "false")]);
        layer.config_file = Some(own);
        let err = load(&layer, None).expect_err("unknown key");
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
        let raw = load(&layer, Some(&creds)).expect("load");
        let crate::net::ufm::Auth::Basic { password, .. } = &raw.settings.ufm().expect("ufm").auth
        else {
            panic!("basic auth expected")
        };
        assert_eq!(password.expose(), "from-credential");

        layer
            .values
            .insert("ufm-password", ("from-flag".into(), "--password".into()));
        let raw = load(&layer, Some(&creds)).expect("load");
        assert!(raw.warnings().iter().any(|w| w.contains("ps")));
        let crate::net::ufm::Auth::Basic { password, .. } = &raw.settings.ufm().expect("ufm").auth
        else {
            panic!("basic auth expected")
        };
        assert_eq!(password.expose(), "from-flag");
    }

    #[test]
    fn describe_redacts_secrets() {
        let raw = load(
            &flags(&[("use-pcocc", "false"), ("etcd-password", "topsecret")]),
            None,
        )
        .expect("load");
        let rows = raw.describe();
        let password = rows
            .iter()
            .find(|r| r.name == "etcd-password")
            .and_then(|r| r.value.clone());
        assert_eq!(password.as_deref(), Some("<redacted>"));
        assert!(
            rows.iter()
                .all(|r| !r.value.as_deref().unwrap_or("").contains("topsecret"))
        );
    }

    #[test]
    fn a_flag_with_a_wrong_value_is_a_usage_error_naming_the_flag_and_the_value() {
        let mut layer = flags(&[("use-pcocc", "false")]);
        layer
            .values
            .insert("etcd-timeout", ("soon".into(), "--etcd-timeout".into()));
        let err = load(&layer, None).expect_err("bad seconds");
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("--etcd-timeout \"soon\""), "{err}");
    }

    #[test]
    fn booleans_in_the_file_have_the_same_grammar_as_flags() {
        let dir = Dir::new("booleans");
        let own = dir.write("own.yaml", "debug: on\nufm-http: yes\nhost-index0: 1\n");
        let mut layer = flags(&[("use-pcocc", "false")]);
        layer.config_file = Some(own);
        let config = load(&layer, None).expect("load");
        assert!(config.settings.debug, "debug: on turns debug on");
        assert!(config.settings.engine.policy.host_index0);
        let err = {
            let own = dir.write("bad.yaml", "debug: maybe\n");
            layer.config_file = Some(own);
            load(&layer, None).expect_err("maybe")
        };
        assert!(err.to_string().contains("\"maybe\""), "{err}");
    }

    #[test]
    fn etcd_user_without_password_is_a_clear_error() {
        let raw = load(
            &flags(&[("use-pcocc", "false"), ("etcd-user", "root")]),
            None,
        )
        .expect("load");
        let err = raw.settings.etcd().expect_err("no password");
        assert!(err.to_string().contains("--etcd-password-file"), "{err}");
    }

    #[test]
    fn ufm_defaults_to_https_443_and_http_flag_switches_to_80() {
        let raw = load(
            &flags(&[
                ("use-pcocc", "false"),
                ("ufm-host", "ufm1"),
                ("ufm-password", "x"),
            ]),
            None,
        )
        .expect("load");
        assert_eq!(raw.settings.ufm().expect("ufm").urls, ["https://ufm1:443"]);
        let raw = load(
            &flags(&[
                ("use-pcocc", "false"),
                ("ufm-host", "ufm1"),
                ("ufm-password", "x"),
                ("ufm-http", "true"),
            ]),
            None,
        )
        .expect("load");
        assert_eq!(raw.settings.ufm().expect("ufm").urls, ["http://ufm1:80"]);
    }
}
