//! Reading the live machine into a `Snapshot`. The only module (besides supervision) that touches
//! the operating system; Linux only for now (`/proc`, and netlink `sock_diag` for the socket
//! tables), behind `snapshot()` so another backend can be added without touching the rules.

use std::collections::BTreeMap;

use std::ffi::CStr;
use std::fs;
use std::io::{self, ErrorKind};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{SystemTime, UNIX_EPOCH};

use rayon::prelude::*;

use crate::model::snapshot::{
    Host, Process, Proto, SCHEMA_VERSION, Snapshot, Socket, Unreadable, is_rendezvous_env,
};

/// Take a snapshot of this machine: every process, every TCP/UDP socket, the host facts.
///
/// Processes are read in parallel (rayon), each through one directory handle on `/proc/PID`
/// (`openat`/`readlinkat` relative to it, so the kernel resolves one path component per file
/// instead of four) with per-worker buffers reused from process to process. The socket tables
/// are read at the same time as the processes.
pub fn snapshot() -> Snapshot {
    let taken_at = now();
    let host = host_facts();
    let clock = clock();
    let proc_dir = open_dir(libc::AT_FDCWD, c"/proc").ok();
    let pids = list_pids();
    let (results, sockets) = rayon::join(
        || -> Vec<(Option<Process>, Vec<Unreadable>)> {
            let Some(proc_dir) = &proc_dir else {
                return Vec::new();
            };
            let proc_fd = proc_dir.as_raw_fd();
            pids.par_iter()
                .map_init(Scratch::default, |scratch, &pid| {
                    read_process(proc_fd, pid, clock, scratch)
                })
                .collect()
        },
        read_sockets,
    );
    let mut processes = Vec::with_capacity(results.len());
    let mut unreadable = Vec::new();
    for (p, u) in results {
        processes.extend(p);
        unreadable.extend(u);
    }
    processes.sort_by_key(|p| p.pid);
    Snapshot {
        schema_version: SCHEMA_VERSION,
        taken_at,
        host,
        processes,
        sockets,
        unreadable,
    }
}

pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn read_trimmed(path: &str) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

pub fn host_facts() -> Host {
    let ephemeral_range = read_trimmed("/proc/sys/net/ipv4/ip_local_port_range")
        .and_then(|s| {
            let mut it = s.split_whitespace().filter_map(|x| x.parse::<u16>().ok());
            Some([it.next()?, it.next()?])
        })
        .unwrap_or([32768, 60999]);
    let reserved_ports = read_trimmed("/proc/sys/net/ipv4/ip_local_reserved_ports")
        .map(|s| parse_port_list(&s))
        .unwrap_or_default();
    Host {
        hostname: read_trimmed("/proc/sys/kernel/hostname").unwrap_or_default(),
        kernel: read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_default(),
        ephemeral_range,
        reserved_ports,
        observer_uid: nix::unistd::geteuid().as_raw(),
        observer_pid: std::process::id() as i32,
    }
}

/// `29500,30000-30010` as inclusive ranges.
pub fn parse_port_list(text: &str) -> Vec<[u16; 2]> {
    text.split(',')
        .filter_map(|part| {
            let part = part.trim();
            match part.split_once('-') {
                Some((a, b)) => Some([a.trim().parse().ok()?, b.trim().parse().ok()?]),
                None => {
                    let p = part.parse().ok()?;
                    Some([p, p])
                }
            }
        })
        .collect()
}

/// One process, read now; `None` when it is gone or a kernel thread.
pub fn process(pid: i32) -> Option<Process> {
    let proc_dir = open_dir(libc::AT_FDCWD, c"/proc").ok()?;
    read_process(proc_dir.as_raw_fd(), pid, clock(), &mut Scratch::default()).0
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
        // SAFETY: sysconf has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
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

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn open_at(dir: RawFd, name: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: `name` is NUL-terminated; a non-negative return is a new descriptor we own.
    let fd = cvt(unsafe { libc::openat(dir, name.as_ptr(), flags | libc::O_CLOEXEC) })?;
    // SAFETY: `fd` was just opened and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn open_dir(dir: RawFd, name: &CStr) -> io::Result<OwnedFd> {
    open_at(dir, name, libc::O_RDONLY | libc::O_DIRECTORY)
}

/// How far `read_at` reads.
#[derive(Clone, Copy, PartialEq)]
enum Until {
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
fn read_at(dir: RawFd, name: &CStr, buf: &mut Vec<u8>, until: Until) -> io::Result<()> {
    buf.clear();
    let fd = open_at(dir, name, libc::O_RDONLY)?;
    loop {
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(buf.capacity().max(16 * 1024));
        }
        let spare = buf.spare_capacity_mut();
        let asked = spare.len();
        // SAFETY: we read at most `spare.len()` bytes into memory the Vec owns.
        let n = unsafe { libc::read(fd.as_raw_fd(), spare.as_mut_ptr().cast(), asked) };
        match n {
            0 => return Ok(()),
            n if n > 0 => {
                // SAFETY: the kernel initialised `n` more bytes.
                unsafe { buf.set_len(buf.len() + n as usize) };
                if until == Until::ShortRead && (n as usize) < asked {
                    return Ok(());
                }
            }
            _ => {
                let err = io::Error::last_os_error();
                if err.kind() != ErrorKind::Interrupted {
                    return Err(err);
                }
            }
        }
    }
}

/// The target of the link `dir/name` into `buf`.
fn read_link_at(dir: RawFd, name: &CStr, buf: &mut Vec<u8>) -> io::Result<()> {
    if buf.capacity() < 256 {
        buf.reserve(256);
    }
    loop {
        buf.clear();
        let cap = buf.capacity();
        // SAFETY: `name` is NUL-terminated; at most `cap` bytes are written into the buffer.
        let n = unsafe { libc::readlinkat(dir, name.as_ptr(), buf.as_mut_ptr().cast(), cap) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        if n < cap {
            // SAFETY: the kernel wrote `n` bytes.
            unsafe { buf.set_len(n) };
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
            Some(libc::ESRCH) => "process exited during the scan".into(),
            _ => err.to_string(),
        },
    }
}

fn vanished(err: &io::Error) -> bool {
    err.kind() == ErrorKind::NotFound || err.raw_os_error() == Some(libc::ESRCH)
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

/// Parse `/proc/PID/stat`; `comm` may hold spaces and parentheses, so split at the last `)`.
pub fn parse_stat(text: &[u8]) -> Option<Stat> {
    let open = text.iter().position(|&b| b == b'(')?;
    let close = text.iter().rposition(|&b| b == b')')?;
    let comm = String::from_utf8_lossy(text.get(open + 1..close)?).into_owned();
    let rest = std::str::from_utf8(text.get(close + 1..)?).ok()?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] is field 3 (state); field N is f[N - 3].
    Some(Stat {
        comm,
        state: f.first()?.to_string(),
        ppid: f.get(1)?.parse().ok()?,
        pgid: f.get(2)?.parse().ok()?,
        sid: f.get(3)?.parse().ok()?,
        start_ticks: f.get(19)?.parse().ok()?,
    })
}

/// Read one process. `None` when it is gone (or a kernel thread, which holds no sockets).
fn read_process(
    proc_fd: RawFd,
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
    let dir = dir.as_raw_fd();
    let Some(stat) = read_at(dir, c"stat", &mut scratch.file, Until::ShortRead)
        .ok()
        .and_then(|()| parse_stat(&scratch.file))
    else {
        return (None, unreadable);
    };
    if stat.ppid == 2 || pid == 2 {
        return (None, unreadable); // kernel thread
    }
    let uid = {
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: fstat fills `st` when it returns 0.
        if unsafe { libc::fstat(dir, st.as_mut_ptr()) } == 0 {
            // SAFETY: initialised by the successful fstat.
            unsafe { st.assume_init() }.st_uid
        } else {
            u32::MAX
        }
    };
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
    crate::sys::cgroup::annotate(&mut process);
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
fn read_fds(pid_dir: RawFd, scratch: &mut Scratch) -> io::Result<(Vec<u64>, bool)> {
    let mut inodes = Vec::new();
    let mut gpu = false;
    let fd_dir = open_dir(pid_dir, c"fd")?;
    let fd_dir = fd_dir.as_raw_fd();
    let Scratch { dents, link, .. } = scratch;
    if dents.capacity() < 32 * 1024 {
        dents.reserve(32 * 1024);
    }
    loop {
        dents.clear();
        // SAFETY: getdents64 writes at most `capacity` bytes of records into the buffer.
        let n = unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                fd_dir,
                dents.as_mut_ptr(),
                dents.capacity(),
            )
        };
        if n <= 0 {
            break; // end of the listing, or the process went away while we listed it
        }
        // SAFETY: the kernel wrote `n` bytes of records.
        unsafe { dents.set_len(n as usize) };
        let mut off = 0;
        // linux_dirent64: d_ino u64, d_off i64, d_reclen u16, d_type u8, d_name (NUL-terminated).
        while off + 19 < dents.len() {
            let reclen = u16::from_ne_bytes([dents[off + 16], dents[off + 17]]) as usize;
            if reclen == 0 || off + reclen > dents.len() {
                break;
            }
            let name = CStr::from_bytes_until_nul(&dents[off + 19..off + reclen]).unwrap_or(c".");
            off += reclen;
            if name.to_bytes().first() == Some(&b'.') {
                continue; // "." and ".."
            }
            if read_link_at(fd_dir, name, link).is_err() {
                continue;
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
    }
    inodes.sort_unstable();
    inodes.dedup();
    Ok((inodes, gpu))
}

/// Every TCP and UDP socket of this network namespace: the rows of `/proc/net/{tcp,tcp6,udp,udp6}`.
///
/// Each table is asked of the kernel through netlink `sock_diag` (binary records; the kernel
/// formatting ten thousand text lines costs several times more), and read from the `/proc/net`
/// text table instead wherever netlink cannot give the same rows: no `sock_diag` support for that
/// protocol, any error, or a TCP request socket (`SYN_RECV`), whose owner uid only the text table
/// reports.
pub fn read_sockets() -> Vec<Socket> {
    let tables = [
        (c"/proc/net/tcp", libc::AF_INET, Proto::Tcp),
        (c"/proc/net/tcp6", libc::AF_INET6, Proto::Tcp),
        (c"/proc/net/udp", libc::AF_INET, Proto::Udp),
        (c"/proc/net/udp6", libc::AF_INET6, Proto::Udp),
    ];
    let mut sockets: Vec<Socket> = tables
        .par_iter()
        .flat_map_iter(|&(path, family, proto)| {
            diag_sockets(family, proto).unwrap_or_else(|_| proc_net_table(path, proto))
        })
        .collect();
    sockets.sort_by_key(|s| (s.local_port, s.inode));
    sockets
}

fn proc_net_table(path: &CStr, proto: Proto) -> Vec<Socket> {
    let mut text = Vec::with_capacity(256 * 1024);
    if read_at(libc::AT_FDCWD, path, &mut text, Until::Eof).is_err() {
        text.clear();
    }
    parse_net_table(&text, proto)
}

const NETLINK_SOCK_DIAG: libc::c_int = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `TCP_ESTABLISHED` (1) to `TCP_NEW_SYN_RECV` (12): every state `/proc/net/tcp` lists, and not
/// `TCP_BOUND_INACTIVE` (bound-only sockets, which the text tables do not list).
const ALL_STATES: u32 = 0x1ffe;
const TCP_SYN_RECV: u8 = 3;
const NLMSG_HDRLEN: usize = 16;
/// `struct inet_diag_msg`: family, state, timer, retrans, the 48-byte `inet_diag_sockid`,
/// expires, rqueue, wqueue, uid, inode.
const INET_DIAG_MSG_LEN: usize = 72;

/// One `sock_diag` dump of `family`/`proto` sockets, as `/proc/net/*` rows (same order: the
/// kernel walks the same listening and established hash tables for both).
fn diag_sockets(family: libc::c_int, proto: Proto) -> io::Result<Vec<Socket>> {
    // SAFETY: plain socket(2) call; a non-negative return is a descriptor we own.
    let fd = cvt(unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            NETLINK_SOCK_DIAG,
        )
    })?;
    // SAFETY: `fd` was just created and is owned by nobody else.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // The kernel always ends a dump; should it not, give up after two seconds and use /proc.
    let timeout = libc::timeval {
        tv_sec: 2,
        tv_usec: 0,
    };
    // SAFETY: `timeout` is a valid timeval for the length passed.
    cvt(unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const timeout).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    })?;
    let protocol = match proto {
        Proto::Tcp => libc::IPPROTO_TCP,
        Proto::Udp => libc::IPPROTO_UDP,
    };
    // nlmsghdr (16 bytes) + inet_diag_req_v2 (56 bytes; the socket id is left zero).
    let seq: u32 = 1;
    const REQ_LEN: usize = NLMSG_HDRLEN + 56;
    let mut req = [0u8; REQ_LEN];
    req[0..4].copy_from_slice(&(REQ_LEN as u32).to_ne_bytes());
    req[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
    req[6..8].copy_from_slice(&flags.to_ne_bytes());
    req[8..12].copy_from_slice(&seq.to_ne_bytes());
    req[16] = family as u8;
    req[17] = protocol as u8;
    req[20..24].copy_from_slice(&ALL_STATES.to_ne_bytes());
    // SAFETY: an all-zero sockaddr_nl is valid; we then name the kernel (pid 0) as peer.
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: `req` and `kernel` are valid for the lengths passed.
    let sent = unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            req.as_ptr().cast(),
            req.len(),
            0,
            (&raw const kernel).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut sockets = Vec::new();
    // A dump comes in datagrams of at most 32 KiB (the kernel caps them there).
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: we receive at most `buf.len()` bytes into `buf`.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        let mut msgs = &buf[..n as usize];
        if msgs.is_empty() {
            return Err(io::Error::from(ErrorKind::UnexpectedEof));
        }
        while msgs.len() >= NLMSG_HDRLEN {
            let len = u32::from_ne_bytes(msgs[0..4].try_into().unwrap_or_default()) as usize;
            let kind = u16::from_ne_bytes([msgs[4], msgs[5]]);
            let msg_seq = u32::from_ne_bytes(msgs[8..12].try_into().unwrap_or_default());
            if len < NLMSG_HDRLEN || len > msgs.len() {
                return Err(io::Error::from(ErrorKind::InvalidData));
            }
            let payload = &msgs[NLMSG_HDRLEN..len];
            msgs = &msgs[((len + 3) & !3).min(msgs.len())..];
            if msg_seq != seq {
                continue;
            }
            match kind as libc::c_int {
                libc::NLMSG_DONE => {
                    let status = payload
                        .get(0..4)
                        .map_or(0, |b| i32::from_ne_bytes(b.try_into().unwrap_or_default()));
                    return if status < 0 {
                        Err(io::Error::from_raw_os_error(-status))
                    } else {
                        Ok(sockets)
                    };
                }
                libc::NLMSG_ERROR => {
                    let errno = payload.get(0..4).map_or(libc::EIO, |b| {
                        -i32::from_ne_bytes(b.try_into().unwrap_or_default())
                    });
                    return Err(io::Error::from_raw_os_error(errno));
                }
                _ if kind == SOCK_DIAG_BY_FAMILY => {
                    let Some(m) = payload.get(..INET_DIAG_MSG_LEN) else {
                        return Err(io::Error::from(ErrorKind::InvalidData));
                    };
                    let st = m[1];
                    if proto == Proto::Tcp && st == TCP_SYN_RECV {
                        // A request socket: netlink reports uid 0 where /proc/net/tcp reports
                        // its listener's owner. Let the text table answer for this family.
                        return Err(io::Error::from(ErrorKind::Unsupported));
                    }
                    let addr = |b: &[u8]| -> IpAddr {
                        if m[0] as libc::c_int == libc::AF_INET {
                            IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
                        } else {
                            let mut bytes = [0u8; 16];
                            bytes.copy_from_slice(&b[..16]);
                            let v6 = Ipv6Addr::from(bytes);
                            v6.to_ipv4_mapped()
                                .map(IpAddr::V4)
                                .unwrap_or(IpAddr::V6(v6))
                        }
                    };
                    let word = |at: usize| {
                        u32::from_ne_bytes(m[at..at + 4].try_into().unwrap_or_default())
                    };
                    // inet_diag_sockid at 4: sport, dport (big-endian), src[16], dst[16], ...
                    sockets.push(Socket {
                        proto,
                        state: state_name(proto, st).to_string(),
                        local_addr: addr(&m[8..24]),
                        local_port: u16::from_be_bytes([m[4], m[5]]),
                        remote_addr: addr(&m[24..40]),
                        remote_port: u16::from_be_bytes([m[6], m[7]]),
                        uid: word(64),
                        inode: u64::from(word(68)),
                    });
                }
                _ => {}
            }
        }
    }
}

/// Parse a `/proc/net/{tcp,tcp6,udp,udp6}` table.
pub fn parse_net_table(text: &[u8], proto: Proto) -> Vec<Socket> {
    let text = String::from_utf8_lossy(text);
    text.lines()
        .skip(1)
        .filter_map(|line| {
            // Fields: sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...
            let mut f = line.split_whitespace();
            let (local_addr, local_port) = parse_endpoint(f.nth(1)?)?;
            let (remote_addr, remote_port) = parse_endpoint(f.next()?)?;
            let st = u8::from_str_radix(f.next()?, 16).ok()?;
            let uid = f.nth(3)?.parse().ok()?;
            let inode = f.nth(1)?.parse().ok()?;
            Some(Socket {
                proto,
                state: state_name(proto, st).to_string(),
                local_addr,
                local_port,
                remote_addr,
                remote_port,
                uid,
                inode,
            })
        })
        .collect()
}

fn parse_endpoint(s: &str) -> Option<(IpAddr, u16)> {
    let (addr, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let addr = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(
            u32::from_str_radix(addr, 16).ok()?.to_le_bytes(),
        )),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                let word = u32::from_str_radix(&addr[i * 8..i * 8 + 8], 16).ok()?;
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word.to_le_bytes());
            }
            let v6 = Ipv6Addr::from(bytes);
            v6.to_ipv4_mapped()
                .map(IpAddr::V4)
                .unwrap_or(IpAddr::V6(v6))
        }
        _ => return None,
    };
    Some((addr, port))
}

fn state_name(proto: Proto, st: u8) -> &'static str {
    match (proto, st) {
        (Proto::Udp, 7) => "UNCONN",
        (_, 1) => "ESTABLISHED",
        (_, 2) => "SYN_SENT",
        (_, 3) => "SYN_RECV",
        (_, 4) => "FIN_WAIT1",
        (_, 5) => "FIN_WAIT2",
        (_, 6) => "TIME_WAIT",
        (_, 7) => "CLOSE",
        (_, 8) => "CLOSE_WAIT",
        (_, 9) => "LAST_ACK",
        (_, 10) => "LISTEN",
        (_, 11) => "CLOSING",
        (_, 12) => "NEW_SYN_RECV",
        _ => "UNKNOWN",
    }
}

/// True when `port` can be bound on all addresses right now, the way TCPStore binds it
/// (SO_REUSEADDR set, so TIME_WAIT does not count as taken).
pub fn port_is_free(port: u16) -> bool {
    // std sets SO_REUSEADDR on Unix listeners, as TCPStore does. Each bind is dropped before the
    // next, so the dual-stack v6 bind does not collide with our own v4 one.
    let v4 = std::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, port));
    let v4_ok = v4.is_ok();
    drop(v4);
    let v6 = std::net::TcpListener::bind((Ipv6Addr::UNSPECIFIED, port));
    let v6_ok = match &v6 {
        Ok(_) => true,
        // No IPv6 on this host: nothing can hold the port there.
        Err(e) => {
            e.raw_os_error() == Some(libc::EAFNOSUPPORT)
                || e.raw_os_error() == Some(libc::EADDRNOTAVAIL)
        }
    };
    v4_ok && v6_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_spaces_and_parens_in_comm() {
        let raw = b"4242 (py (worker) 1) S 4200 4200 4100 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 123456 0 0";
        let s = parse_stat(raw).unwrap();
        assert_eq!(s.comm, "py (worker) 1");
        assert_eq!(
            (s.state.as_str(), s.ppid, s.pgid, s.sid, s.start_ticks),
            ("S", 4200, 4200, 4100, 123456)
        );
    }

    #[test]
    fn net_table_v4_and_v6() {
        let v4 = b"  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:7334 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 55123 1 0000000000000000 100 0 0 10 0\n";
        let s = parse_net_table(v4, Proto::Tcp);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].local_addr.to_string(), "127.0.0.1");
        assert_eq!(
            (s[0].local_port, s[0].state.as_str(), s[0].inode, s[0].uid),
            (29492, "LISTEN", 55123, 1000)
        );
        let v6 = b"header\n   0: 00000000000000000000000001000000:7334 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1\n";
        let s = parse_net_table(v6, Proto::Tcp);
        assert_eq!(s[0].local_addr.to_string(), "::1");
        assert_eq!(s[0].local_port, 29492);
    }

    #[test]
    fn netlink_rows_equal_proc_net_rows() {
        use std::net::{TcpListener, TcpStream, UdpSocket};
        let inode = |fd: RawFd| {
            let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
            // SAFETY: fstat fills `st` when it returns 0.
            assert_eq!(unsafe { libc::fstat(fd, st.as_mut_ptr()) }, 0);
            // SAFETY: initialised by the successful fstat.
            unsafe { st.assume_init() }.st_ino
        };
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        udp.connect(listener.local_addr().unwrap()).unwrap();
        let mut ours = vec![
            inode(listener.as_raw_fd()),
            inode(client.as_raw_fd()),
            inode(server.as_raw_fd()),
            inode(udp.as_raw_fd()),
        ];
        // Dual-stack: a v6 listener reached over IPv4 (v4-mapped addresses), where the host has v6.
        let v6 = TcpListener::bind("[::]:0").ok().and_then(|l| {
            let c = TcpStream::connect(("127.0.0.1", l.local_addr().ok()?.port())).ok()?;
            let (a, _) = l.accept().ok()?;
            Some((l, c, a))
        });
        if let Some((l, _, a)) = &v6 {
            ours.extend([inode(l.as_raw_fd()), inode(a.as_raw_fd())]);
        }
        let tables = [
            (c"/proc/net/tcp", libc::AF_INET, Proto::Tcp, 3),
            (
                c"/proc/net/tcp6",
                libc::AF_INET6,
                Proto::Tcp,
                2 * v6.is_some() as usize,
            ),
            (c"/proc/net/udp", libc::AF_INET, Proto::Udp, 1),
            (c"/proc/net/udp6", libc::AF_INET6, Proto::Udp, 0),
        ];
        for (path, family, proto, expected) in tables {
            let mine = |v: Vec<Socket>| -> Vec<Socket> {
                v.into_iter().filter(|s| ours.contains(&s.inode)).collect()
            };
            let text = mine(proc_net_table(path, proto));
            assert_eq!(text.len(), expected, "{path:?}: {text:?}");
            // Where netlink answers (it may not: no sock_diag for UDP, or a request socket
            // appeared meanwhile), it must give the very rows of the text table.
            if let Ok(diag) = diag_sockets(family, proto) {
                assert_eq!(mine(diag), text, "{path:?}");
            }
        }
        let all = read_sockets();
        for ino in &ours {
            assert!(all.iter().any(|s| s.inode == *ino), "socket {ino} missing");
        }
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

    #[test]
    fn reserved_port_list() {
        assert_eq!(
            parse_port_list("29500,30000-30010"),
            vec![[29500, 29500], [30000, 30010]]
        );
        assert!(parse_port_list("").is_empty());
    }
}
