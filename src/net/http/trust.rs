//! The system's CA store, as OpenSSL and curl find it: the files named by `SSL_CERT_FILE` and
//! `SSL_CERT_DIR` when either is set, else the distribution's bundle (RHEL's
//! `/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem`, which `update-ca-trust` writes and
//! `/etc/pki/tls/certs/ca-bundle.crt` links to; Debian's `/etc/ssl/certs/ca-certificates.crt`)
//! and the certificate directories. `rustls-native-certs` reads it; this module says what it
//! found, and where it looked when it found nothing usable.
//!
//! There is no fallback to roots compiled into the binary: a site whose store is empty is told
//! so, with the fix, at its first https request.

use std::env;
use std::ffi::OsString;
use std::path::PathBuf;

/// The variables that replace the system's locations, as OpenSSL reads them.
const ENV_CERT_FILE: &str = "SSL_CERT_FILE";
const ENV_CERT_DIR: &str = "SSL_CERT_DIR";

/// The certificates of the system's store that rustls can use as trust anchors.
pub(super) struct SystemStore {
    pub certs: Vec<ureq::tls::Certificate<'static>>,
    /// Where they come from, for messages: `SSL_CERT_FILE=…`, or the locations found.
    pub origin: String,
    /// Whether `SSL_CERT_FILE` or `SSL_CERT_DIR` chose them.
    pub from_env: bool,
}

/// Reads the system's store. A file or certificate in it that cannot be read or used is logged
/// at debug, and a location that `SSL_CERT_FILE` or `SSL_CERT_DIR` names but that cannot be
/// read at warn; the store fails only when nothing usable is left, with one line that says
/// where it looked and how to fix it.
pub(super) fn load(service: &str) -> Result<SystemStore, String> {
    let origin = origin();
    let found = rustls_native_certs::load_native_certs();
    // Unreadable locations the variables name; other errors (a file in a directory).
    let mut named = Vec::new();
    let mut other = Vec::new();
    for error in &found.errors {
        let text = describe(error);
        match &error.kind {
            rustls_native_certs::ErrorKind::Io { path, .. } if origin.named.contains(path) => {
                named.push(text);
            }
            _ => {
                log::debug!("{service}: CA store {}: {text}", origin.text);
                other.push(text);
            }
        }
    }
    // rustls-native-certs returns whatever PEM held; keep what rustls accepts as an anchor.
    let mut anchors = rustls::RootCertStore::empty();
    let mut certs = Vec::with_capacity(found.certs.len());
    for (index, der) in found.certs.into_iter().enumerate() {
        match anchors.add(der.clone()) {
            Ok(()) => certs.push(ureq::tls::Certificate::from_der(der.as_ref()).to_owned()),
            Err(e) => {
                let text = format!("certificate {} is not usable: {e}", index + 1);
                log::debug!("{service}: CA store {}: {text}", origin.text);
                other.push(text);
            }
        }
    }
    let described = if named.is_empty() {
        origin.text
    } else {
        format!("{} ({})", origin.text, named.join("; "))
    };
    if certs.is_empty() {
        let why = match other.first() {
            Some(error) if named.is_empty() => format!(" ({error})"),
            _ => String::new(),
        };
        let fix = fix(service, origin.from_env);
        return Err(format!(
            "no usable CA certificate in {described}{why}: {fix}"
        ));
    }
    if !named.is_empty() {
        log::warn!("{service}: CA store {described}: using the rest");
    }
    let plural = if certs.len() == 1 { "" } else { "s" };
    log::debug!(
        "{service}: trusting {} CA certificate{plural} from {described}",
        certs.len()
    );
    Ok(SystemStore {
        certs,
        origin: described,
        from_env: origin.from_env,
    })
}

/// What to do when `service`'s certificate is signed by no CA of the system's store (one chosen
/// by `SSL_CERT_FILE`/`SSL_CERT_DIR` when `from_env`).
pub(super) fn fix(service: &str, from_env: bool) -> String {
    let mut fixes = Vec::new();
    if from_env {
        fixes.push(format!(
            "correct or unset {ENV_CERT_FILE} and {ENV_CERT_DIR}"
        ));
    }
    fixes.push(format!(
        "give {service}'s CA with {} FILE",
        ca_flag(service)
    ));
    fixes.push(
        "add it to the system store (update-ca-trust on RHEL, update-ca-certificates on Debian)"
            .to_string(),
    );
    fixes.extend(insecure_option(service).map(str::to_string));
    one_of(fixes)
}

/// What to do when `service`'s certificate is signed by no CA of the configured CA file.
pub(super) fn file_fix(service: &str) -> String {
    let mut fixes = vec![format!(
        "give the CA that signed {service}'s certificate with {} FILE",
        ca_flag(service)
    )];
    fixes.extend(insecure_option(service).map(str::to_string));
    one_of(fixes)
}

/// `a`, `a or b`, `a, b or c`.
fn one_of(mut items: Vec<String>) -> String {
    let last = items.pop().unwrap_or_default();
    if items.is_empty() {
        last
    } else {
        format!("{} or {last}", items.join(", "))
    }
}

/// The flag that names a CA file for `service`: `--ufm-ca-cert`, `--etcd-ca-cert`.
pub(super) fn ca_flag(service: &str) -> String {
    format!("--{}-ca-cert", service.to_ascii_lowercase())
}

/// How to turn verification off, for the services that allow it (UFM, whose certificate is
/// self-signed out of the box; etcd has no such setting).
fn insecure_option(service: &str) -> Option<&'static str> {
    service
        .eq_ignore_ascii_case("ufm")
        .then_some("set ufm-ssl-verify: false (--no-ssl-verify)")
}

/// Where the system's store is read from.
struct Origin {
    /// For messages: `SSL_CERT_FILE=… and SSL_CERT_DIR=…`, or `the system store (…)`.
    text: String,
    /// The file and directories that the variables name; empty when neither is set.
    named: Vec<PathBuf>,
    /// Whether the variables chose the store.
    from_env: bool,
}

/// Follows `rustls_native_certs::load_native_certs`: the variables when either is set (an empty
/// `SSL_CERT_DIR` counts as unset), else what `openssl_probe::probe` finds.
fn origin() -> Origin {
    let file = env::var_os(ENV_CERT_FILE);
    let dirs = env::var_os(ENV_CERT_DIR)
        .filter(|dirs| env::split_paths(dirs).any(|dir| !dir.as_os_str().is_empty()));
    if file.is_some() || dirs.is_some() {
        let mut named: Vec<PathBuf> = file.iter().map(PathBuf::from).collect();
        if let Some(dirs) = &dirs {
            named.extend(env::split_paths(dirs).filter(|dir| !dir.as_os_str().is_empty()));
        }
        let text = [(ENV_CERT_FILE, file), (ENV_CERT_DIR, dirs)]
            .into_iter()
            .filter_map(|(name, value)| Some(format!("{name}={}", shown(value?))))
            .collect::<Vec<_>>()
            .join(" and ");
        return Origin {
            text,
            named,
            from_env: true,
        };
    }
    let probe = openssl_probe::probe();
    let found: Vec<String> = probe
        .cert_file
        .into_iter()
        .chain(probe.cert_dir)
        .map(|path| path.display().to_string())
        .collect();
    let text = if found.is_empty() {
        "the system store (no CA bundle or certificate directory found: \
         /etc/pki/tls/certs/ca-bundle.crt, /etc/ssl/certs/ca-certificates.crt, /etc/ssl/certs \
         and the other usual places are missing)"
            .to_string()
    } else {
        format!("the system store ({})", found.join(", "))
    };
    Origin {
        text,
        named: Vec::new(),
        from_env: false,
    }
}

fn shown(value: OsString) -> String {
    PathBuf::from(value).display().to_string()
}

/// One store error as `PATH: reason`.
fn describe(error: &rustls_native_certs::Error) -> String {
    match &error.kind {
        rustls_native_certs::ErrorKind::Io { inner, path } => {
            format!("{}: {inner}", path.display())
        }
        _ => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fix_names_the_services_ca_flag_and_update_ca_trust() {
        assert_eq!(
            fix("UFM", false),
            "give UFM's CA with --ufm-ca-cert FILE, add it to the system store \
             (update-ca-trust on RHEL, update-ca-certificates on Debian) or set \
             ufm-ssl-verify: false (--no-ssl-verify)"
        );
        let etcd = fix("etcd", true);
        assert!(
            etcd.starts_with("correct or unset SSL_CERT_FILE and SSL_CERT_DIR, give etcd's CA with --etcd-ca-cert FILE or add it"),
            "{etcd}"
        );
        assert!(
            !etcd.contains("ssl-verify"),
            "etcd has no such setting: {etcd}"
        );
        assert_eq!(
            file_fix("etcd"),
            "give the CA that signed etcd's certificate with --etcd-ca-cert FILE"
        );
    }
}
