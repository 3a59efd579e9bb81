//! Replacing a file atomically, for the state, metrics and status files: a temporary file in the
//! same directory, fsync, rename over the target, fsync of the directory. A crash leaves the old
//! file or the new one, never half of one, and a reader (node_exporter) never sees a partial
//! file.

use std::io::Write;
use std::path::Path;

/// Replaces `path` with `bytes`. The error names the file and the step that failed.
pub(crate) fn replace(path: &Path, bytes: &[u8]) -> Result<(), String> {
    write_and_rename(path, bytes, None)
}

/// Like [`replace`], and the new file gets `mode` whatever the umask: for a file that another
/// user reads, such as the status file.
pub(crate) fn replace_with_mode(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    write_and_rename(path, bytes, Some(mode))
}

fn write_and_rename(path: &Path, bytes: &[u8], mode: Option<u32>) -> Result<(), String> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let fail = |what: &str, e: std::io::Error| {
        let _ = std::fs::remove_file(&temp);
        format!("cannot write {} ({what}: {e})", path.display())
    };
    let mut file = std::fs::File::create(&temp).map_err(|e| fail("create", e))?;
    if let Some(mode) = mode {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|e| fail("chmod", e))?;
    }
    file.write_all(bytes).map_err(|e| fail("write", e))?;
    file.sync_all().map_err(|e| fail("fsync", e))?;
    drop(file);
    std::fs::rename(&temp, path).map_err(|e| fail("rename", e))?;
    // The rename is durable once the directory is on disk too.
    if let Ok(dir) = std::fs::File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_and_leaves_no_temporary_file() {
        let dir = std::env::temp_dir().join(format!("ufm-pkeyd-atomic-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
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
}
