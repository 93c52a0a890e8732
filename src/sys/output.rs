//! Output files (`-o FILE` of every command): checked before any work starts, written atomically.
//!
//! `check_writable` runs first in every command that takes an output path, so that an unusable
//! path is an `error:` + `hint:` (exit 2) before the command runs, never a lost result at the end.
//! `write_atomic` writes a sibling temporary file (created with O_EXCL by `tempfile`, so never
//! through a name another user planted) and renames it over the path: a reader on a shared
//! filesystem sees the old document or the new one, never half of one.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::user_error;

/// The directory a file of `path` lives in ("." for a bare name).
fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Whether `path` can be written: its directory exists and takes a new file, and an existing
/// file at `path` is a regular file that may be replaced. Nothing is left behind.
pub fn check_writable(path: &Path) -> anyhow::Result<()> {
    let shown = path.display();
    let hint = "give -o a path in an existing, writable directory";
    if path.as_os_str().is_empty() {
        return Err(user_error("the output path is empty", hint));
    }
    if path.as_os_str().as_encoded_bytes().ends_with(b"/") {
        return Err(user_error(
            format!("cannot write {shown}: it names a directory (it ends with /)"),
            "give -o a file name, e.g. DIR/doctor.json",
        ));
    }
    if let Some(name) = path.file_name()
        && name.len() > 255
    {
        return Err(user_error(
            format!("cannot write {shown}: the file name is longer than 255 bytes"),
            hint,
        ));
    }
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.is_dir() {
            return Err(user_error(
                format!("cannot write {shown}: it is a directory"),
                "give -o a file name, e.g. DIR/doctor.json",
            ));
        }
        if !meta.is_file() {
            return Err(user_error(
                format!("cannot write {shown}: it is not a regular file"),
                hint,
            ));
        }
        // An existing file is written in place, as a shell's `>` would: it must open for writing.
        return std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map(drop)
            .map_err(|e| user_error(format!("cannot write {shown}: {e}"), hint));
    }
    let dir = parent_of(path);
    match tempfile::Builder::new()
        .prefix(".doctor-check-")
        .tempfile_in(&dir)
    {
        Ok(probe) => {
            drop(probe); // removes it
            let full = rustix::fs::statvfs(&dir).is_ok_and(|s| s.f_bavail == 0);
            if full {
                return Err(user_error(
                    format!("cannot write {shown}: no space left in {}", dir.display()),
                    "free some space or give -o a path on another filesystem",
                ));
            }
            Ok(())
        }
        Err(e) => Err(user_error(
            format!("cannot write {shown}: {}", describe(&e, &dir)),
            hint,
        )),
    }
}

fn describe(e: &std::io::Error, dir: &Path) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => format!("the directory {} does not exist", dir.display()),
        std::io::ErrorKind::PermissionDenied => {
            format!("the directory {} is not writable", dir.display())
        }
        _ => e.to_string(),
    }
}

/// Write `bytes` to `path`: a new file atomically (temporary sibling, fsync, rename: a reader on a
/// shared filesystem sees all of it or nothing); an existing regular file in place, as a shell's
/// `>` would (its inode, owner, mode and links stay).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = parent_of(path);
    let fail = |e: std::io::Error| {
        user_error(
            format!("cannot write {}: {e}", path.display()),
            "give -o a path in an existing, writable directory with free space",
        )
    };
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file()) {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(path)
            .map_err(fail)?;
        f.write_all(bytes).map_err(fail)?;
        return f.sync_all().map_err(fail);
    }
    let mut tmp = tempfile::Builder::new()
        .prefix(".doctor-")
        .tempfile_in(&dir)
        .map_err(fail)?;
    tmp.write_all(bytes).map_err(fail)?;
    tmp.as_file().sync_all().map_err(fail)?;
    tmp.persist(path).map_err(|e| fail(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_directory_and_directory_target_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope/r.json");
        let e = check_writable(&missing).unwrap_err().to_string();
        assert!(e.contains("does not exist"), "{e}");
        let e = check_writable(dir.path()).unwrap_err().to_string();
        assert!(e.contains("is a directory"), "{e}");
        let ok = dir.path().join("r.json");
        check_writable(&ok).unwrap();
        assert!(!ok.exists(), "the check leaves nothing behind");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        write_atomic(&ok, b"{}").unwrap();
        assert_eq!(std::fs::read(&ok).unwrap(), b"{}");
    }
}
