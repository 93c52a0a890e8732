//! Rewriting a user's file in place, as ruff and black do (`doctor scan --fix`): the same inode,
//! so owner, group, mode, ACLs, extended attributes and hard links are kept. Safe against names
//! another user could plant:
//!
//! - no temporary file and no rename: nothing is created in the file's directory;
//! - the file is opened with `O_NOFOLLOW` (a symbolic link as the last component is refused,
//!   not followed: the user names the real file) and `O_NONBLOCK` (a FIFO cannot block the
//!   open), and must then be a regular file;
//! - the invoking user must be allowed to write it: the kernel's check for `O_RDWR` (effective
//!   ids), and `access(W_OK)` with the real ids on the opened file, so a set-id or sudo'd run
//!   writes only what the user could; a file without any write permission bit is refused even
//!   for root (it was made read-only on purpose);
//! - the content read through the opened descriptor must still be the text that was fixed
//!   (nothing changed it since the scan, and it is the file that was scanned);
//! - the new text is complete before the file is touched; then it is written from offset 0,
//!   the file truncated to its length, and synced.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use rustix::fs::{Access, AtFlags, FileType, Mode, OFlags};

/// Why a file was not rewritten, with what to do about it.
#[derive(Debug)]
pub struct Refusal {
    pub error: String,
    pub hint: &'static str,
}

fn refuse(error: String, hint: &'static str) -> Refusal {
    Refusal { error, hint }
}

/// Replace the content of the file at `path` with what `render` makes of its current content
/// (read through the same descriptor); `render` refuses with a reason (the content is not what
/// was fixed, say).
pub fn rewrite(
    path: &Path,
    render: impl FnOnce(&[u8]) -> Result<Vec<u8>, String>,
) -> Result<(), Refusal> {
    let shown = path.display();
    let fd = rustix::fs::open(
        path,
        OFlags::RDWR | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    )
    .map_err(|e| match e {
        rustix::io::Errno::LOOP => refuse(
            format!("not rewriting {shown}: it is a symbolic link"),
            "run doctor scan --fix on the file it points to (`readlink -f PATH`); links are never followed for writing",
        ),
        rustix::io::Errno::ACCESS | rustix::io::Errno::PERM | rustix::io::Errno::ROFS => refuse(
            format!("not rewriting {shown}: you may not write it ({e})"),
            "fix a copy you own, or ask the file's owner; doctor scan --diff shows the change without writing",
        ),
        _ => refuse(
            format!("cannot open {shown} for writing: {e}"),
            "doctor scan --diff shows the change without writing",
        ),
    })?;
    let stat = rustix::fs::fstat(&fd).map_err(|e| {
        refuse(
            format!("cannot stat {shown}: {e}"),
            "doctor scan --diff shows the change without writing",
        )
    })?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
        return Err(refuse(
            format!("not rewriting {shown}: it is not a regular file"),
            "only regular Python files are fixed in place",
        ));
    }
    if stat.st_mode & 0o222 == 0 {
        return Err(refuse(
            format!(
                "not rewriting {shown}: it is read-only (mode {:o})",
                stat.st_mode & 0o7777
            ),
            "make it writable first (chmod u+w) if it is meant to change; doctor scan --diff shows the change",
        ));
    }
    // The real user (not only the effective one) must be allowed to write this very inode.
    let proc_path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
    if let Err(e) = rustix::fs::accessat(
        rustix::fs::CWD,
        &proc_path,
        Access::WRITE_OK,
        AtFlags::empty(),
    ) && e != rustix::io::Errno::NOENT
    {
        return Err(refuse(
            format!("not rewriting {shown}: you may not write it ({e})"),
            "fix a copy you own, or ask the file's owner; doctor scan --diff shows the change without writing",
        ));
    }
    let mut file = File::from(fd);
    let mut current = Vec::new();
    file.read_to_end(&mut current).map_err(|e| {
        refuse(
            format!("cannot read {shown}: {e}"),
            "doctor scan --diff shows the change without writing",
        )
    })?;
    let new = render(&current).map_err(|why| {
        refuse(
            format!("not rewriting {shown}: {why}"),
            "run doctor scan --fix again",
        )
    })?;
    let write = |file: &mut File| -> std::io::Result<()> {
        file.seek(SeekFrom::Start(0))?;
        file.write_all(&new)?;
        file.set_len(new.len() as u64)?;
        file.sync_all()
    };
    write(&mut file).map_err(|e| {
        refuse(
            format!("writing {shown} failed: {e}; the file may be incomplete"),
            "restore it from version control or a backup; doctor scan --diff shows the change",
        )
    })?;
    Ok(())
}
