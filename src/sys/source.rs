//! Reading Python source for `doctor scan` (every file access of `scan/`): regular files only,
//! opened without blocking (a FIFO, socket or device given by name is refused, never waited on)
//! and read up to a size limit; directory walks (gitignore, hidden directories and virtual
//! environments skipped, links never followed); one file named several ways read once; and
//! `python --version`.

use std::io::Read;
use std::path::{Path, PathBuf};

/// What a file type is called in a skip reason.
fn kind_of(t: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

fn too_big(len: u64, limit: u64) -> String {
    format!(
        "larger than the {} MiB limit ({len} bytes); split it, or scan the part that launches",
        limit >> 20
    )
}

/// The bytes of the regular file at `path` (links followed), of at most `limit` bytes; a FIFO,
/// socket or device is refused without blocking (opened non-blocking, checked on the open
/// descriptor); the reason otherwise, as a skip reason (`a FIFO, not a regular file`).
pub fn read_regular(path: &Path, limit: u64) -> Result<Vec<u8>, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{}, not a regular file", kind_of(meta.file_type())));
    }
    if meta.len() > limit {
        return Err(too_big(meta.len(), limit));
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| format!("cannot read: {e}"))?;
    let meta = file.metadata().map_err(|e| format!("cannot read: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{}, not a regular file", kind_of(meta.file_type())));
    }
    // Read at most one byte past the limit: a growing file cannot make us read forever.
    let mut buf = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read: {e}"))?;
    if buf.len() as u64 > limit {
        return Err(too_big(buf.len() as u64, limit));
    }
    Ok(buf)
}

/// Whether `path` is a regular file of at most `limit` bytes (links followed).
pub fn is_small_file(path: &Path, limit: u64) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() <= limit)
}

/// Whether `path` is a regular file (links followed).
pub fn is_file(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file())
}

/// Write `bytes` to a new file `dest` (in a directory of doctor's own); never replaces an
/// existing file or follows a link there.
pub fn create_new(dest: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dest)
        .and_then(|mut f| f.write_all(bytes))
}

/// One input of a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// `-`: the source comes on stdin.
    Stdin,
    File(PathBuf),
}

/// What a scan reads: the inputs, each file once, and the entries of walks that could not be
/// read, as (path, reason).
#[derive(Debug, Default)]
pub struct Inputs {
    pub inputs: Vec<Input>,
    pub unreadable: Vec<(String, String)>,
}

/// Why one argument cannot be scanned at all (it does not exist, say).
#[derive(Debug)]
pub struct BadArgument {
    pub arg: String,
    pub error: std::io::Error,
}

/// Expand scan arguments into inputs: `-` is stdin (once), a file is itself (whatever its
/// extension or type: reading it says what it is), a directory is walked for `*.py` files
/// (gitignore honoured; hidden directories, `__pycache__`, `node_modules`, `.git` and virtual
/// environments below it skipped; links never followed). Each file comes once: one file named
/// several ways, hard links included, is compared by device and inode.
pub fn python_inputs(paths: &[String]) -> Result<Inputs, BadArgument> {
    let mut inputs = Vec::new();
    let mut skips = Vec::new();
    let mut stdin_seen = false;
    for arg in paths {
        if arg == "-" {
            if !stdin_seen {
                inputs.push(Input::Stdin);
                stdin_seen = true;
            }
            continue;
        }
        let path = Path::new(arg);
        let meta = std::fs::metadata(path).map_err(|error| BadArgument {
            arg: arg.clone(),
            error,
        })?;
        if !meta.is_dir() {
            inputs.push(Input::File(path.to_path_buf()));
            continue;
        }
        let mut walk = ignore::WalkBuilder::new(path);
        walk.hidden(true).follow_links(false).git_global(false);
        walk.filter_entry(|entry| {
            if entry.depth() == 0 || !entry.file_type().is_some_and(|t| t.is_dir()) {
                return true;
            }
            let name = entry.file_name();
            if name == "__pycache__" || name == "node_modules" || name == ".git" {
                return false;
            }
            // A virtual environment found below the given directory is someone else's code.
            !entry.path().join("pyvenv.cfg").exists()
        });
        for entry in walk.build() {
            match entry {
                Ok(e) => {
                    let is_file = e.file_type().is_some_and(|t| t.is_file());
                    if is_file && e.path().extension().is_some_and(|x| x == "py") {
                        inputs.push(Input::File(e.into_path()));
                    }
                }
                Err(err) => {
                    let p = match &err {
                        ignore::Error::WithPath { path, .. } => path.display().to_string(),
                        _ => arg.clone(),
                    };
                    skips.push((p, format!("cannot read: {err}")));
                }
            }
        }
    }
    // Overlapping arguments (`src src/a.py`, `a.py .`) scan a file once: compared as the
    // file they name (device and inode), so that `--fix` never rewrites one file twice.
    let mut seen = std::collections::HashSet::new();
    inputs.retain(|i| match i {
        Input::Stdin => true,
        Input::File(p) => {
            use std::os::unix::fs::MetadataExt;
            // Hard links are one file too.
            let key = std::fs::metadata(p)
                .map(|m| format!("{}:{}", m.dev(), m.ino()))
                .unwrap_or_else(|_| p.display().to_string());
            seen.insert(key)
        }
    });
    Ok(Inputs {
        inputs,
        unreadable: skips,
    })
}

/// All of stdin.
pub fn read_stdin() -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    std::io::stdin().read_to_end(&mut buf)?;
    Ok(buf)
}

/// How long `PYTHON --version` may take: an interpreter that does not answer this in seconds is
/// broken (a hung wrapper script, a stalled network filesystem), and scan falls back to 3.11.
const VERSION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What `PYTHON --version` prints (stdout and stderr), or `None` when it cannot be run or does
/// not answer within [`VERSION_TIMEOUT`] (its process group is killed then).
pub fn python_version_text(python: &str) -> Option<String> {
    version_text_within(python, VERSION_TIMEOUT)
}

fn version_text_within(python: &str, limit: std::time::Duration) -> Option<String> {
    let mut cmd = std::process::Command::new(python);
    cmd.arg("--version");
    let o = super::command::run(&mut cmd, limit).ok()?;
    Some(format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    use crate::sys::test_procs as procs;
    use std::time::Duration;

    fn script(dir: &Path, name: &str, body: &str) -> String {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path.display().to_string()
    }

    #[test]
    fn an_interpreter_that_never_answers_is_given_up_on_and_killed() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        // A wrapper that hangs (as a stalled network filesystem or a broken shim does) with a
        // child of its own.
        let hung = script(
            dir.path(),
            "python-hung",
            &format!("sleep 300 & echo $! > {}; wait", pidfile.display()),
        );
        assert_eq!(version_text_within(&hung, Duration::from_millis(300)), None);
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // Killed with its group when the limit passed: gone once reaped by init, or a zombie.
        assert!(
            procs::wait_gone(pid, Duration::from_secs(10)),
            "the hung interpreter's child {pid} outlived the limit"
        );
        // One that answers (Python 2 printed its version on stderr) is read whole.
        let old = script(dir.path(), "python2", "echo 'Python 2.7.18' >&2");
        assert_eq!(
            version_text_within(&old, Duration::from_secs(60)).as_deref(),
            Some("Python 2.7.18\n")
        );
        assert_eq!(python_version_text("/nonexistent/doctor-python"), None);
    }
}
