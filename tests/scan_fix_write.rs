//! `doctor scan --fix` writes as ruff and black do, and safely (issue 19, item 3): in place (same
//! inode, owner, mode, hard links), only what the invoking user may write, never through a
//! symbolic link, no temporary names beside the file. Real files in a shared directory, doctor
//! run as an unprivileged user (`setpriv --reuid=65534 --regid=65534 --clear-groups`).

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const NOBODY: u32 = 65534;
const BUGGY: &str =
    "import torch.distributed as dist\n\ndist.init_process_group(\"gloo\")\nsteps = 3\n";

fn as_nobody(args: &[&str], cwd: &Path) -> Output {
    Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--reset-env",
        ])
        .arg(env!("CARGO_BIN_EXE_doctor"))
        .args(args)
        .current_dir(cwd)
        .env("NO_COLOR", "1")
        .output()
        .expect("setpriv runs")
}

fn as_root(args: &[&str], cwd: &Path) -> Output {
    common::doctor()
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("doctor runs")
}

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).expect("chown");
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

struct Shared {
    _base: tempfile::TempDir,
    dir: PathBuf,
}

/// A directory owned by root, group nobody, mode 0775: nobody may create and rename files in it.
fn shared() -> Option<Shared> {
    if !common::need_root("setpriv runs doctor as another user") {
        return None;
    }
    common::need_tool("setpriv")?;
    let base = tempfile::tempdir().expect("tempdir");
    chmod(base.path(), 0o755);
    let dir = base.path().join("shared");
    std::fs::create_dir(&dir).expect("mkdir");
    chown(&dir, 0, NOBODY);
    chmod(&dir, 0o775);
    Some(Shared { _base: base, dir })
}

fn refused_cleanly(out: &Output, what: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{what}: {err}");
    assert!(
        err.contains("error: ") && err.contains("hint: "),
        "{what}: {err}"
    );
    assert!(!err.contains("Fixed"), "{what}: {err}");
    err
}

#[test]
fn a_file_the_user_may_not_write_is_refused_even_in_a_directory_they_may_write() {
    let Some(s) = shared() else { return };
    let f = s.dir.join("train.py");
    std::fs::write(&f, BUGGY).expect("write");
    chmod(&f, 0o644); // root's file, readable by nobody
    let before = std::fs::metadata(&f).expect("stat");
    let names = listing(&s.dir);
    let err = refused_cleanly(
        &as_nobody(&["scan", "--fix", "train.py"], &s.dir),
        "root's file",
    );
    assert!(err.contains("may not write"), "{err}");
    let after = std::fs::metadata(&f).expect("stat");
    assert_eq!(std::fs::read_to_string(&f).expect("read"), BUGGY);
    assert_eq!(
        (after.ino(), after.uid(), after.mode()),
        (before.ino(), 0, before.mode())
    );
    assert_eq!(listing(&s.dir), names, "nothing created beside the file");
}

#[test]
fn an_own_read_only_file_is_refused() {
    let Some(s) = shared() else { return };
    let f = s.dir.join("ro.py");
    std::fs::write(&f, BUGGY).expect("write");
    chown(&f, NOBODY, NOBODY);
    chmod(&f, 0o444);
    let err = refused_cleanly(
        &as_nobody(&["scan", "--fix", "ro.py"], &s.dir),
        "own 0444 file",
    );
    assert!(err.contains("ro.py"), "{err}");
    assert_eq!(std::fs::read_to_string(&f).expect("read"), BUGGY);
    // Root too leaves a file without write bits alone.
    refused_cleanly(
        &as_root(&["scan", "--fix", "ro.py"], &s.dir),
        "0444 file as root",
    );
    assert_eq!(std::fs::read_to_string(&f).expect("read"), BUGGY);
}

#[test]
fn the_fix_keeps_inode_owner_mode_and_hard_links() {
    let Some(s) = shared() else { return };
    let f = s.dir.join("mine.py");
    std::fs::write(&f, BUGGY).expect("write");
    chown(&f, NOBODY, NOBODY);
    chmod(&f, 0o640);
    std::fs::hard_link(&f, s.dir.join("alias.py")).expect("link");
    let before = std::fs::metadata(&f).expect("stat");
    let names = listing(&s.dir);
    let out = as_nobody(&["scan", "--fix", "mine.py"], &s.dir);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("Fixed 1 file"), "{err}");
    let text = std::fs::read_to_string(&f).expect("read");
    assert!(text.contains("if __name__ == \"__main__\":"), "{text}");
    assert_eq!(
        std::fs::read_to_string(s.dir.join("alias.py")).expect("read"),
        text
    );
    let after = std::fs::metadata(&f).expect("stat");
    assert_eq!(
        (
            after.ino(),
            after.uid(),
            after.gid(),
            after.mode(),
            after.nlink()
        ),
        (before.ino(), NOBODY, NOBODY, before.mode(), 2)
    );
    assert_eq!(listing(&s.dir), names);

    // Root fixing another user's file leaves it theirs, with its mode.
    let g = s.dir.join("theirs.py");
    std::fs::write(&g, BUGGY).expect("write");
    chown(&g, NOBODY, NOBODY);
    chmod(&g, 0o600);
    let ino = std::fs::metadata(&g).expect("stat").ino();
    let out = as_root(&["scan", "--fix", "theirs.py"], &s.dir);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m = std::fs::metadata(&g).expect("stat");
    assert_eq!((m.ino(), m.uid(), m.mode() & 0o7777), (ino, NOBODY, 0o600));
}

#[test]
fn a_planted_symbolic_link_is_never_written_through() {
    let Some(s) = shared() else { return };
    // Root's file elsewhere, and a link to it that nobody planted in the shared directory.
    let victim_dir = s.dir.parent().expect("base").join("private");
    std::fs::create_dir(&victim_dir).expect("mkdir");
    let victim = victim_dir.join("victim.py");
    std::fs::write(&victim, BUGGY).expect("write");
    let link = s.dir.join("planted.py");
    std::os::unix::fs::symlink(&victim, &link).expect("symlink");
    chown(&link, NOBODY, NOBODY);
    let err = refused_cleanly(
        &as_root(&["scan", "--fix", "planted.py"], &s.dir),
        "symlink",
    );
    assert!(err.contains("symbolic link"), "{err}");
    assert_eq!(std::fs::read_to_string(&victim).expect("read"), BUGGY);
    assert!(
        std::fs::symlink_metadata(&link)
            .expect("lstat")
            .file_type()
            .is_symlink()
    );
    // A directory walk does not pick the link either.
    let out = as_root(&["scan", "--fix", "."], &s.dir);
    assert_eq!(
        std::fs::read_to_string(&victim).expect("read"),
        BUGGY,
        "{out:?}"
    );
}
