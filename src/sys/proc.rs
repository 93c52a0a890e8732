//! The one `/proc` layer: pid listing, `stat`/`status`/`cmdline`/`environ`/`fd` reading,
//! sysctl values. Every module that reads a process (sys: observe, supervise, trace, blocked,
//! sockets; cmd: mod, ports, report) reads it through here.
//!
//! A whole process is read through one directory handle on `/proc/PID` (`openat`/`readlinkat`
//! relative to it, so the kernel resolves one path component per file instead of four), with
//! buffers reused from process to process ([`Scratch`]): one `readlinkat` per fd, the raw bytes of
//! `cmdline` and `environ`.

use std::collections::BTreeMap;
use std::ffi::CStr;
use std::fs;
use std::io::{self, ErrorKind};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use rustix::fs::{CWD, Mode, OFlags, RawDir};
use rustix::io::Errno;

use crate::model::snapshot::{Process, Unreadable, is_rendezvous_env};

pub(crate) fn read_trimmed(path: &str) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// Every process of `pids`, read in parallel (rayon), each through one directory handle on
/// `/proc/PID`, with per-worker buffers reused from process to process. `None` for the ones gone
/// (or kernel threads), with what could not be read of each.
pub fn read_processes(pids: &[i32]) -> Vec<(Option<Process>, Vec<Unreadable>)> {
    use rayon::prelude::*;
    let Ok(proc_dir) = open_dir(CWD, c"/proc") else {
        return Vec::new();
    };
    let proc_fd = proc_dir.as_fd();
    let clock = clock();
    pids.par_iter()
        .map_init(Scratch::default, |scratch, &pid| {
            read_process(proc_fd, pid, clock, scratch)
        })
        .collect()
}

/// One process, read now; `None` when it is gone or a kernel thread.
pub fn process(pid: i32) -> Option<Process> {
    let proc_dir = open_dir(CWD, c"/proc").ok()?;
    read_process(proc_dir.as_fd(), pid, clock(), &mut Scratch::default()).0
}

fn clock() -> &'static Clock {
    static CLOCK: std::sync::OnceLock<Clock> = std::sync::OnceLock::new();
    CLOCK.get_or_init(Clock::read)
}

struct Clock {
    boot_time: f64,
    ticks: f64,
}

impl Clock {
    fn read() -> Clock {
        let boot_time = fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("btime "))
                    .and_then(|v| v.trim().parse::<f64>().ok())
            })
            .unwrap_or(0.0);
        let ticks = rustix::param::clock_ticks_per_second();
        Clock {
            boot_time,
            ticks: if ticks > 0 { ticks as f64 } else { 100.0 },
        }
    }
}

pub fn list_pids() -> Vec<i32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .collect()
}

/// Buffers one rayon worker reuses from process to process.
#[derive(Default)]
struct Scratch {
    /// Contents of the file read last.
    file: Vec<u8>,
    /// `getdents64` records of `/proc/PID/fd`.
    dents: Vec<u8>,
    /// Target of the link read last.
    link: Vec<u8>,
}

fn open_at(dir: BorrowedFd<'_>, name: &CStr, flags: OFlags) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        name,
        flags | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

pub(crate) fn open_dir(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    open_at(dir, name, OFlags::RDONLY | OFlags::DIRECTORY)
}

/// How far `read_at` reads.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Until {
    /// Until `read` returns 0.
    Eof,
    /// Until a `read` returns less than asked for. Right for `/proc/PID/{stat,cmdline,environ}`:
    /// the kernel fills the whole buffer unless it reaches the end (one record for `stat`, a loop
    /// over the argument or environment area for the others), so the final `read` that would
    /// return 0 is saved. Not for multi-record tables such as `/proc/net/tcp`, which stop short
    /// of a record that does not fit.
    ShortRead,
}

/// The whole of `dir/name` into `buf` (replacing what was there), with plain `read`s into the
/// buffer's spare capacity: no `statx`, no small probe reads, no new allocation once the buffer
/// has grown to the largest file seen.
pub(crate) fn read_at(
    dir: BorrowedFd<'_>,
    name: &CStr,
    buf: &mut Vec<u8>,
    until: Until,
) -> io::Result<()> {
    buf.clear();
    let fd = open_at(dir, name, OFlags::RDONLY)?;
    loop {
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(buf.capacity().max(16 * 1024));
        }
        let asked = buf.capacity() - buf.len();
        match rustix::io::read(&fd, rustix::buffer::spare_capacity(buf)) {
            Ok(0) => return Ok(()),
            Ok(n) if until == Until::ShortRead && n < asked => return Ok(()),
            Ok(_) => {}
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// The target of the link `dir/name` into `buf`.
fn read_link_at(dir: BorrowedFd<'_>, name: &CStr, buf: &mut Vec<u8>) -> io::Result<()> {
    if buf.capacity() < 256 {
        buf.reserve(256);
    }
    loop {
        buf.clear();
        let cap = buf.capacity();
        let n = rustix::fs::readlinkat_raw(dir, name, rustix::buffer::spare_capacity(buf))?;
        if n < cap {
            return Ok(());
        }
        buf.reserve(cap * 2); // may have been cut short: try again with more room
    }
}

/// `pid` as a NUL-terminated directory name.
fn pid_name(pid: i32, out: &mut [u8; 16]) -> &CStr {
    use std::io::Write;
    let mut cursor = io::Cursor::new(&mut out[..]);
    // An i32 and a NUL always fit in 16 bytes.
    let _ = write!(cursor, "{pid}\0");
    let len = cursor.position() as usize;
    CStr::from_bytes_with_nul(&out[..len]).unwrap_or(c"")
}

fn reason(err: &io::Error) -> String {
    match err.kind() {
        ErrorKind::PermissionDenied => "permission denied".into(),
        ErrorKind::NotFound => "process exited during the scan".into(),
        _ => match err.raw_os_error() {
            Some(e) if e == Errno::SRCH.raw_os_error() => "process exited during the scan".into(),
            _ => err.to_string(),
        },
    }
}

fn vanished(err: &io::Error) -> bool {
    err.kind() == ErrorKind::NotFound || err.raw_os_error() == Some(Errno::SRCH.raw_os_error())
}

/// The fields of `/proc/PID/stat` we use.
pub struct Stat {
    pub comm: String,
    pub state: String,
    pub ppid: i32,
    pub pgid: i32,
    pub sid: i32,
    pub start_ticks: u64,
}

/// Parse `/proc/PID/stat` through `procfs-core` (`comm` may hold spaces and parentheses: it
/// splits at the last `)`).
pub fn parse_stat(text: &[u8]) -> Option<Stat> {
    use procfs_core::FromRead;
    let st = procfs_core::process::Stat::from_read(text).ok()?;
    Some(Stat {
        comm: st.comm,
        state: st.state.to_string(),
        ppid: st.ppid,
        pgid: st.pgrp,
        sid: st.session,
        start_ticks: st.starttime,
    })
}

/// Read one process. `None` when it is gone (or a kernel thread, which holds no sockets).
fn read_process(
    proc_fd: BorrowedFd<'_>,
    pid: i32,
    clock: &Clock,
    scratch: &mut Scratch,
) -> (Option<Process>, Vec<Unreadable>) {
    let mut unreadable = Vec::new();
    let mut name = [0u8; 16];
    // One handle on /proc/PID for everything below; if the process is gone there is none.
    let Ok(dir) = open_dir(proc_fd, pid_name(pid, &mut name)) else {
        return (None, unreadable);
    };
    let dir = dir.as_fd();
    let Some(stat) = read_at(dir, c"stat", &mut scratch.file, Until::ShortRead)
        .ok()
        .and_then(|()| parse_stat(&scratch.file))
    else {
        return (None, unreadable);
    };
    if stat.ppid == 2 || pid == 2 {
        return (None, unreadable); // kernel thread
    }
    let uid = rustix::fs::fstat(dir).map_or(u32::MAX, |st| st.st_uid);
    let mut note = |what: &str, err: &io::Error| {
        unreadable.push(Unreadable {
            pid,
            what: what.into(),
            reason: reason(err),
        });
    };
    let (argv, argv_lossy) = match read_at(dir, c"cmdline", &mut scratch.file, Until::ShortRead) {
        Ok(()) => split_nul(&scratch.file),
        Err(e) if vanished(&e) => return (None, Vec::new()),
        Err(e) => {
            note("cmdline", &e);
            (Vec::new(), false)
        }
    };
    let exe = match read_link_at(dir, c"exe", &mut scratch.link) {
        Ok(()) => Some(String::from_utf8_lossy(&scratch.link).into_owned()),
        // Zombies and kernel threads have no exe; permission errors are common and harmless here.
        Err(_) => None,
    };
    let zombie = stat.state == "Z";
    let env = match read_at(dir, c"environ", &mut scratch.file, Until::ShortRead) {
        Ok(()) => rendezvous_env(&scratch.file),
        // A zombie has no memory left to read its environment from (ESRCH): it is still there.
        Err(_) if zombie => BTreeMap::new(),
        Err(e) if vanished(&e) => return (None, Vec::new()),
        Err(e) => {
            note("environ", &e);
            BTreeMap::new()
        }
    };
    let (socket_inodes, gpu) = match read_fds(dir, scratch) {
        Ok(x) => x,
        Err(e) if vanished(&e) => return (None, Vec::new()),
        Err(e) => {
            note("fd", &e);
            (Vec::new(), false)
        }
    };
    let process = Process {
        pid,
        ppid: stat.ppid,
        pgid: stat.pgid,
        sid: stat.sid,
        uid,
        state: stat.state,
        start_time: clock.boot_time + stat.start_ticks as f64 / clock.ticks,
        comm: stat.comm,
        exe,
        argv,
        argv_lossy,
        env,
        socket_inodes,
        gpu,
        ..Process::default()
    };
    let mut process = process;
    annotate(&mut process, &mut |name| {
        text_at(dir, name, &mut scratch.file)
    });
    (Some(process), unreadable)
}

/// Split NUL-separated bytes; invalid UTF-8 is replaced, never an error.
pub fn split_nul(raw: &[u8]) -> (Vec<String>, bool) {
    let mut lossy = false;
    let parts = raw
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| match std::str::from_utf8(s) {
            Ok(t) => t.to_string(),
            Err(_) => {
                lossy = true;
                String::from_utf8_lossy(s).into_owned()
            }
        })
        .collect();
    (parts, lossy)
}

pub fn rendezvous_env(raw: &[u8]) -> BTreeMap<String, String> {
    raw.split(|&b| b == 0)
        .filter_map(|kv| {
            let eq = kv.iter().position(|&b| b == b'=')?;
            let key = std::str::from_utf8(&kv[..eq]).ok()?;
            is_rendezvous_env(key).then(|| {
                (
                    key.to_string(),
                    String::from_utf8_lossy(&kv[eq + 1..]).into_owned(),
                )
            })
        })
        .collect()
}

/// Socket inodes and whether a `/dev/nvidia*` file is open: the links in `/proc/PID/fd`, listed
/// with `getdents64` and each read with `readlinkat` relative to the fd directory.
fn read_fds(pid_dir: BorrowedFd<'_>, scratch: &mut Scratch) -> io::Result<(Vec<u64>, bool)> {
    let mut inodes = Vec::new();
    let mut gpu = false;
    let fd_dir = open_dir(pid_dir, c"fd")?;
    let Scratch { dents, link, .. } = scratch;
    if dents.capacity() < 32 * 1024 {
        dents.reserve(32 * 1024);
    }
    let mut entries = RawDir::new(&fd_dir, dents.spare_capacity_mut());
    // The end of the listing, or an error: the process went away while we listed it.
    while let Some(Ok(entry)) = entries.next() {
        let name = entry.file_name();
        if name.to_bytes().first() == Some(&b'.') {
            continue; // "." and ".."
        }
        match read_link_at(fd_dir.as_fd(), name, link) {
            Ok(()) => {}
            // The kernel asks the same question for every descriptor (may we look into this
            // process?): one refusal is all of them (pid 1 of a container: hundreds of calls).
            Err(e) if e.raw_os_error() == Some(Errno::ACCESS.raw_os_error()) => return Err(e),
            Err(_) => continue, // closed since the listing
        }
        let t = link.as_slice();
        if let Some(rest) = t.strip_prefix(b"socket:[") {
            let inode = rest
                .strip_suffix(b"]")
                .and_then(|d| std::str::from_utf8(d).ok()?.parse::<u64>().ok());
            inodes.extend(inode);
        } else if t.starts_with(b"/dev/nvidia") {
            gpu = true;
        }
    }
    inodes.sort_unstable();
    inodes.dedup();
    Ok((inodes, gpu))
}

/// The fields of `/proc/PID/stat` of one process now; `None` when it is gone.
pub fn stat(pid: i32) -> Option<Stat> {
    parse_stat(&fs::read(format!("/proc/{pid}/stat")).ok()?)
}

/// The argv of one process (`/proc/PID/cmdline`); empty for a kernel thread or a zombie.
pub fn cmdline(pid: i32) -> Vec<String> {
    split_nul(&fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default()).0
}

/// The raw `NAME=value` records of `/proc/PID/environ`.
pub fn environ(pid: i32) -> io::Result<Vec<u8>> {
    fs::read(format!("/proc/{pid}/environ"))
}

/// The thread group (process) of a thread, from `/proc/TID/status` (parsed by `procfs-core`).
pub fn tgid(tid: i32) -> Option<i32> {
    use procfs_core::FromRead;
    let file = fs::File::open(format!("/proc/{tid}/status")).ok()?;
    procfs_core::process::Status::from_read(file)
        .ok()
        .map(|s| s.tgid)
}

/// The network namespace of a process (`self` for doctor), as the `net:[INODE]` link names it.
pub fn net_ns(pid: Option<i32>) -> io::Result<PathBuf> {
    match pid {
        Some(pid) => fs::read_link(format!("/proc/{pid}/ns/net")),
        None => fs::read_link("/proc/self/ns/net"),
    }
}

/// The text of `/proc/PID/NAME` (`cgroup`, `wchan`, `syscall`, ...), trimmed; `None` when it
/// cannot be read or is empty.
pub fn text(pid: i32, name: &CStr) -> Option<String> {
    let t = fs::read(format!("/proc/{pid}/{}", name.to_string_lossy())).ok()?;
    trimmed(&t)
}

/// A reader of one process's `/proc/PID/NAME` files, as [`text`] gives them.
pub type ReadText<'a> = dyn FnMut(&CStr) -> Option<String> + 'a;

/// Fill the owner facts doctor's findings cite: user and control group (`/proc/PID/cgroup`,
/// which tells a systemd service or a container apart from a program someone started by hand)
/// for processes that hold sockets, and what a process with a rendezvous identity is blocked in.
/// Cheap reads through `read` (the process's own `/proc/PID` files); nothing is fatal.
fn annotate(p: &mut Process, read: &mut ReadText<'_>) {
    if !p.socket_inodes.is_empty() {
        p.user = crate::sys::host::account_name(p.uid);
        p.cgroup = read(c"cgroup");
    }
    if !p.env.is_empty() && !p.is_zombie() {
        wait_state_with(p, read);
    }
}

/// Read `wchan` and `syscall` of `p` again (cheap reads): what it is blocked in now.
pub fn wait_state(p: &mut Process) {
    let pid = p.pid;
    wait_state_with(p, &mut |name| text(pid, name));
}

/// [`wait_state`] through `read` (the walk passes a reader on the directory it holds open).
fn wait_state_with(p: &mut Process, read: &mut ReadText<'_>) {
    p.wchan = read(c"wchan").filter(|t| t != "0");
    p.syscall = read(c"syscall").and_then(|t| crate::sys::syscalls::syscall_text(&t));
}

/// `/proc/PID/NAME` through the open `/proc/PID` directory `dir`, as [`text`] gives it. For the
/// one-record files it is used on (`cgroup`, `wchan`, `syscall`: one `show` call each, which
/// the kernel hands over whole), so a short read is the end.
fn text_at(dir: BorrowedFd<'_>, name: &CStr, buf: &mut Vec<u8>) -> Option<String> {
    read_at(dir, name, buf, Until::ShortRead).ok()?;
    trimmed(buf)
}

fn trimmed(raw: &[u8]) -> Option<String> {
    let t = std::str::from_utf8(raw).ok()?.trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// A `/proc/sys` value (or any small text file), trimmed.
/// The working directory of `pid` (`/proc/PID/cwd`), where it may be read.
pub fn cwd(pid: i32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/cwd")).ok()
}

pub fn sysctl(path: &str) -> Option<String> {
    read_trimmed(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn reads_own_cgroup_and_user() {
        let me = std::process::id() as i32;
        assert!(text(me, c"cgroup").is_some());
        let uid = nix::unistd::getuid().as_raw();
        if uid == 0 {
            assert_eq!(crate::sys::host::account_name(0).as_deref(), Some("root"));
        }
    }

    #[test]
    fn stat_with_spaces_and_parens_in_comm() {
        // A whole line as Linux 6.x writes it (52 fields).
        let raw = b"4242 (py (worker) 1) S 4200 4200 4100 0 -1 4194304 99 0 0 0 0 0 0 0 20 0 1 0 123456 3133440 405 18446744073709551615 94501898235904 94501898255785 140727066328320 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 94501898271792 94501898273408 94502450663424 140727066335960 140727066335980 140727066335980 140727066337259 0\n";
        let s = parse_stat(raw).unwrap();
        assert_eq!(s.comm, "py (worker) 1");
        assert_eq!(
            (s.state.as_str(), s.ppid, s.pgid, s.sid, s.start_ticks),
            ("S", 4200, 4200, 4100, 123456)
        );
    }

    #[test]
    fn argv_with_invalid_utf8_is_kept() {
        let (argv, lossy) = split_nul(b"python\0tr\xffain.py\0");
        assert_eq!(
            argv,
            vec!["python".to_string(), "tr\u{fffd}ain.py".to_string()]
        );
        assert!(lossy);
    }

    #[test]
    fn only_rendezvous_env_is_kept() {
        let env = rendezvous_env(b"HF_TOKEN=hf_secret\0MASTER_PORT=29500\0LOCAL_RANK=0\0TORCHELASTIC_RUN_ID=abc\0PATH=/bin\0");
        assert_eq!(env.len(), 3);
        assert_eq!(env["MASTER_PORT"], "29500");
        assert!(!env.contains_key("HF_TOKEN"));
    }
}
