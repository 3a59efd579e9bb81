//! Every file the daemon writes (the state file and its copy, the status and metrics files) and
//! the lock file, written so that neither a crash nor another account can make it write
//! somewhere else.
//!
//! A file is replaced atomically: a temporary file in the same directory, fsync, rename over
//! the target, fsync of the directory. A crash leaves the old file or the new one, never half
//! of one, and a reader (node_exporter) never sees a partial file.
//!
//! The directory may be writable by another account (a node_exporter textfile directory is the
//! usual place for the metrics), which could plant a symbolic link where the daemon, as root,
//! writes. So the temporary file has an unpredictable name and is created exclusively without
//! following a link (`O_CREAT|O_EXCL|O_NOFOLLOW`); a target that is a symbolic link is refused
//! (the rename would replace the link, not write through it, but a link there is a mistake or
//! an attack, and is reported); the lock file is opened with `O_NOFOLLOW`. Each file gets its
//! mode whatever the umask: [`PRIVATE`] for the state and lock files, [`READABLE`] for what a
//! monitoring user reads.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The mode of the state file, its copy and the lock file: owner only.
pub(crate) const PRIVATE: u32 = 0o600;
/// The mode of the status and metrics files, which another user (monitoring, node_exporter)
/// reads.
pub(crate) const READABLE: u32 = 0o644;

/// Tries at an unused temporary name: a name taken by someone else (or a link planted there)
/// makes the exclusive create fail, and another random name is drawn.
const TEMP_TRIES: usize = 8;

/// Replaces `path` with `bytes`, mode [`PRIVATE`] (the state file and its copy). The error
/// names the file and the step that failed.
pub(crate) fn replace(path: &Path, bytes: &[u8]) -> Result<(), String> {
    replace_with_mode(path, bytes, PRIVATE)
}

/// Like [`replace`], with `mode` whatever the umask: [`READABLE`] for a file that another user
/// reads, such as the status and metrics files.
pub(crate) fn replace_with_mode(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    refuse_link(path)?;
    let dir = directory_of(path);
    let (temp, mut file) = create_temp(path, dir, mode)?;
    let fail = |what: &str, e: std::io::Error| {
        let _ = std::fs::remove_file(&temp);
        format!("cannot write {} ({what}: {e})", path.display())
    };
    // The create's mode went through the umask: set it exactly.
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| fail("chmod", e))?;
    file.write_all(bytes).map_err(|e| fail("write", e))?;
    file.sync_all().map_err(|e| fail("fsync", e))?;
    drop(file);
    // rename(2) never follows a link at the target: it replaces the name itself.
    std::fs::rename(&temp, path).map_err(|e| fail("rename", e))?;
    // The rename is durable once the directory is on disk too.
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Opens (or creates, mode [`PRIVATE`]) the lock file `path` for `flock`, without following a
/// link at it.
pub(crate) fn open_lock(path: &Path) -> Result<File, String> {
    refuse_link(path)?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(PRIVATE)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => link_refused(path),
            _ => format!("cannot open the lock file {}: {e}", path.display()),
        })?;
    // A lock file created before modes were set explicitly may have the umask's.
    let private = file
        .metadata()
        .is_ok_and(|m| m.permissions().mode() & 0o777 == PRIVATE);
    if !private {
        let _ = file.set_permissions(std::fs::Permissions::from_mode(PRIVATE));
    }
    Ok(file)
}

/// Refuses a target that is a symbolic link (or a device, a pipe, a socket): the file is
/// written beside it, never through it.
fn refuse_link(path: &Path) -> Result<(), String> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => Err(link_refused(path)),
        Ok(meta)
            if meta.file_type().is_fifo()
                || meta.file_type().is_socket()
                || meta.file_type().is_block_device()
                || meta.file_type().is_char_device() =>
        {
            Err(format!(
                "{} is not a regular file: ufm-pkeyd writes only regular files; remove it, or name another file",
                path.display()
            ))
        }
        _ => Ok(()),
    }
}

fn link_refused(path: &Path) -> String {
    format!(
        "{} is a symbolic link: ufm-pkeyd does not write through links (another account may have planted it); remove it and name the real file, in a directory only ufm-pkeyd's user can write",
        path.display()
    )
}

fn directory_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Creates `.{name}.{random}.tmp` in `dir`, exclusively and without following a link; another
/// name is drawn when one is taken.
fn create_temp(path: &Path, dir: &Path, mode: u32) -> Result<(std::path::PathBuf, File), String> {
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    let mut last = None;
    for _ in 0..TEMP_TRIES {
        let temp = dir.join(format!(".{name}.{:016x}.tmp", unpredictable()));
        let created = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&temp);
        match created {
            Ok(file) => return Ok((temp, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(format!("cannot write {} (create: {e})", path.display())),
        }
    }
    Err(format!(
        "cannot write {} (create: {TEMP_TRIES} temporary names in {} were taken: {}): is another account creating files there?",
        path.display(),
        dir.display(),
        last.map_or_else(String::new, |e| e.to_string())
    ))
}

/// 64 bits nobody can guess: from the kernel's random source, else from the clock and the
/// process id hashed with the process's random hash keys.
fn unpredictable() -> u64 {
    let mut bytes = [0u8; 8];
    // SAFETY: getrandom writes at most `bytes.len()` bytes into the buffer it is given.
    let got = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if usize::try_from(got) == Ok(bytes.len()) {
        return u64::from_ne_bytes(bytes);
    }
    use std::hash::{BuildHasher, Hash, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    std::time::SystemTime::now().hash(&mut hasher);
    std::process::id().hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(label: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("ufm-pkeyd-atomic-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    fn mode_of(path: &Path) -> u32 {
        std::fs::metadata(path).expect("stat").permissions().mode() & 0o7777
    }

    #[test]
    fn replaces_the_file_and_leaves_no_temporary_file() {
        let dir = temp_dir("replace");
        let path = dir.join("f.json");
        replace(&path, b"one").expect("first write");
        replace(&path, b"two").expect("second write");
        assert_eq!(std::fs::read(&path).expect("read"), b"two");
        assert_eq!(std::fs::read_dir(&dir).expect("dir").count(), 1);
        let err = replace(&dir.join("missing/f.json"), b"x").expect_err("no directory");
        assert!(
            err.contains("missing/f.json") && err.contains("create"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_link_at_the_target_is_refused_and_its_file_left_alone() {
        let dir = temp_dir("link");
        let victim = dir.join("victim");
        std::fs::write(&victim, "root only").expect("victim");
        let path = dir.join("metrics.prom");
        std::os::unix::fs::symlink(&victim, &path).expect("link");
        let err = replace_with_mode(&path, b"metrics", READABLE).expect_err("a link");
        assert!(
            err.contains("metrics.prom") && err.contains("symbolic link"),
            "{err}"
        );
        let lock = dir.join("state.json.lock");
        std::os::unix::fs::symlink(&victim, &lock).expect("link");
        let err = open_lock(&lock).expect_err("a link");
        assert!(
            err.contains("state.json.lock") && err.contains("symbolic link"),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(&victim).expect("read"), "root only");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn modes_are_the_ones_asked_for_and_temporary_names_differ() {
        let dir = temp_dir("modes");
        let private = dir.join("state.json");
        let readable = dir.join("metrics.prom");
        replace(&private, b"{}").expect("state");
        replace_with_mode(&readable, b"m 1\n", READABLE).expect("metrics");
        assert_eq!(mode_of(&private), 0o600);
        assert_eq!(mode_of(&readable), 0o644);
        let lock = dir.join("state.json.lock");
        drop(open_lock(&lock).expect("lock"));
        assert_eq!(mode_of(&lock), 0o600);
        assert_ne!(unpredictable(), unpredictable());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
