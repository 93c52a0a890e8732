//! Watching `bind` and `listen` in a supervised command tree without ptrace: a seccomp filter
//! with a user-notification listener (`SECCOMP_RET_USER_NOTIF`) sends only those two system calls
//! to doctor; everything else runs at full speed. doctor never answers a call itself: every call
//! is let through (`SECCOMP_USER_NOTIF_FLAG_CONTINUE`) and carried out by the kernel in the
//! caller's own context; doctor reads the address the caller passed and, once the call is over,
//! the socket's state. `connect` is not watched (its result is not needed for a diagnosis, and
//! every watched call is one more place a signal could interrupt before doctor receives it).
//! ptrace stays free for the command (strace, gdb, py-spy), stops and job control are untouched,
//! and a child made with `CLONE_UNTRACED` is seen like any other. x86_64 only; elsewhere
//! polling. The trust model: docs/run-tracing.md.

use std::collections::HashMap;
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Instant;

pub use crate::model::run::SyscallEvent;

pub const fn supported() -> bool {
    cfg!(target_arch = "x86_64")
}

/// The running kernel when it is too old for this tracer: user notifications that let a call
/// through (`SECCOMP_USER_NOTIF_FLAG_CONTINUE`, 5.5) and `pidfd_getfd` (5.6). Without them a
/// notified call could not be let through and would wait forever, so doctor polls instead.
pub fn kernel_too_old() -> Option<String> {
    let uname = rustix::system::uname();
    let release = uname.release().to_string_lossy();
    let mut parts = release.trim().split(|c: char| !c.is_ascii_digit());
    let major: u32 = parts.next()?.parse().ok()?;
    let minor: u32 = parts.next()?.parse().ok()?;
    ((major, minor) < (5, 6)).then(|| release.trim().to_string())
}

#[cfg(target_arch = "x86_64")]
mod arch {
    pub const AUDIT_ARCH: u32 = 0xC000_003E; // AUDIT_ARCH_X86_64
    pub const NR_BIND: i32 = 49;
    pub const NR_LISTEN: i32 = 50;
}

#[cfg(not(target_arch = "x86_64"))]
mod arch {
    pub const AUDIT_ARCH: u32 = 0;
    pub const NR_BIND: i32 = -1;
    pub const NR_LISTEN: i32 = -1;
}

/// `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV` (linux/seccomp.h, 5.19).
const SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV: libc::c_ulong = 1 << 5;

/// What the child reports through the status socket before it execs.
pub const TRACED: u8 = b'T';
/// Traced, but `no_new_privs` had to be set (no CAP_SYS_ADMIN): setuid bits have no effect.
pub const TRACED_NO_NEW_PRIVS: u8 = b'P';
/// Not traced because the caller asked for polling.
const NOT_ASKED: u8 = b'N';

/// Called in the child between fork and exec: install the filter and send its listener to the
/// parent over `sock` (one status byte plus the fd). Only async-signal-safe calls. On failure the
/// child runs untraced and the status byte is the errno.
fn install_in_child(sock: RawFd) {
    let status = match install_filter() {
        Ok((listener, nnp)) => {
            let byte = if nnp { TRACED_NO_NEW_PRIVS } else { TRACED };
            let sent = send_fd(sock, byte, listener);
            // SAFETY: our own fd, not used after this.
            unsafe { libc::close(listener) };
            if sent { return } else { libc::EIO }
        }
        Err(e) => e.raw_os_error().unwrap_or(libc::EIO),
    };
    send_status(sock, status.clamp(1, 255) as u8);
}

/// The status byte alone (tracing not asked for, or it failed).
fn send_status(sock: RawFd, byte: u8) {
    // SAFETY: the status socket is open in this process until exec.
    let _ = rustix::io::write(unsafe { BorrowedFd::borrow_raw(sock) }, &[byte]);
}

fn install_filter() -> io::Result<(RawFd, bool)> {
    use libc::{
        BPF_ABS, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W, SECCOMP_RET_ALLOW,
        SECCOMP_RET_USER_NOTIF,
    };
    if !supported() {
        return Err(io::Error::from_raw_os_error(libc::ENOSYS));
    }
    // SAFETY: BPF_STMT/BPF_JUMP only build structs.
    let filter = unsafe {
        [
            libc::BPF_STMT((BPF_LD | BPF_W | BPF_ABS) as u16, 4), // seccomp_data.arch
            libc::BPF_JUMP((BPF_JMP | BPF_JEQ | BPF_K) as u16, arch::AUDIT_ARCH, 1, 0),
            libc::BPF_STMT((BPF_RET | BPF_K) as u16, SECCOMP_RET_ALLOW),
            libc::BPF_STMT((BPF_LD | BPF_W | BPF_ABS) as u16, 0), // seccomp_data.nr
            libc::BPF_JUMP(
                (BPF_JMP | BPF_JEQ | BPF_K) as u16,
                arch::NR_BIND as u32,
                2,
                0,
            ),
            libc::BPF_JUMP(
                (BPF_JMP | BPF_JEQ | BPF_K) as u16,
                arch::NR_LISTEN as u32,
                1,
                0,
            ),
            libc::BPF_STMT((BPF_RET | BPF_K) as u16, SECCOMP_RET_ALLOW),
            libc::BPF_STMT((BPF_RET | BPF_K) as u16, SECCOMP_RET_USER_NOTIF),
        ]
    };
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut _,
    };
    // Once doctor has received a notification, the caller waits for the answer killably only
    // (Linux 5.19+): a signal arriving then does not interrupt the call with EINTR, which a bind
    // never returns without doctor. Older kernels refuse the flag (EINVAL): then without it.
    let install = || {
        let mut rc = -1;
        for flags in [
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
        ] {
            // SAFETY: seccomp(2) with a filter that lives for the call; returns the listener fd.
            rc = unsafe {
                libc::syscall(
                    libc::SYS_seccomp,
                    libc::SECCOMP_SET_MODE_FILTER,
                    flags,
                    &prog as *const libc::sock_fprog,
                )
            };
            if rc >= 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL) {
                break;
            }
        }
        rc
    };
    // Without CAP_SYS_ADMIN the kernel wants no_new_privs first (then setuid has no effect).
    let mut nnp = false;
    let mut fd = install();
    if fd < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EACCES) {
        // SAFETY: prctl with integer arguments on our own process.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } == -1 {
            return Err(io::Error::last_os_error());
        }
        nnp = true;
        fd = install();
    }
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((fd as RawFd, nnp))
}

/// sendmsg(2) of one byte with `fd` attached (SCM_RIGHTS); async-signal-safe (rustix makes the
/// system call itself, the control buffer is on the stack).
fn send_fd(sock: RawFd, byte: u8, fd: RawFd) -> bool {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags, sendmsg};
    // SAFETY: both descriptors are open in this process until exec.
    let (sock, fd) = unsafe { (BorrowedFd::borrow_raw(sock), BorrowedFd::borrow_raw(fd)) };
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    let fds = [fd];
    control.push(SendAncillaryMessage::ScmRights(&fds))
        && sendmsg(
            sock,
            &[IoSlice::new(&[byte])],
            &mut control,
            SendFlags::empty(),
        ) == Ok(1)
}

/// The child's report before exec: a status byte and, when traced, the filter's listener.
pub struct ChildStatus {
    pub byte: Option<u8>,
    pub listener: Option<OwnedFd>,
}

/// Start `argv` with `DOCTOR_TAG=tag`, stdin inherited and output piped, its job control set up
/// by `job`, and (when `trace`) the seccomp filter installed between fork and exec; returns the
/// child and what it reported before exec.
pub fn spawn_watched(
    argv: &[std::ffi::OsString],
    tag: &str,
    job: crate::sys::supervise::JobControl,
    trace: bool,
) -> io::Result<(std::process::Child, ChildStatus)> {
    use std::os::unix::process::CommandExt;
    use std::process::Stdio;
    let (ours, theirs) = status_channel()?;
    let mut cmd = std::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .env(crate::sys::supervise::TAG_VAR, tag)
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let status_fd = theirs.as_raw_fd();
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            job.enter();
            if trace {
                install_in_child(status_fd);
            } else {
                send_status(status_fd, NOT_ASKED);
            }
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    drop(theirs);
    let (byte, listener) = receive_status(&ours);
    Ok((child, ChildStatus { byte, listener }))
}

/// A connected pair of unix sockets (close-on-exec): doctor's end and the child's.
fn status_channel() -> io::Result<(OwnedFd, OwnedFd)> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType, socketpair};
    Ok(socketpair(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

/// The parent's side: the status byte and, when traced, the listener.
fn receive_status(sock: &OwnedFd) -> (Option<u8>, Option<OwnedFd>) {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, recvmsg};
    let mut data = [0u8];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let iov = &mut [IoSliceMut::new(&mut data)];
    match recvmsg(sock, iov, &mut control, RecvFlags::CMSG_CLOEXEC) {
        Ok(msg) if msg.bytes == 1 => {}
        _ => return (None, None),
    }
    let fd = control.drain().find_map(|m| match m {
        RecvAncillaryMessage::ScmRights(mut fds) => fds.next(),
        _ => None,
    });
    (Some(data[0]), fd)
}

/// The tracer's state: what was seen, for the diagnosis.
#[derive(Default)]
pub struct Traced {
    pub events: Vec<SyscallEvent>,
    /// Each process as read at its first traced call, while it waited for doctor: short-lived
    /// processes that polling never sees are known this way.
    pub processes: HashMap<i32, crate::model::snapshot::Process>,
}

/// Answer the listener's notifications until `done()` says so or no process uses the filter any
/// more, collecting into `traced` (shared, so that what was seen is there even if this thread
/// is still blocked in the kernel when doctor ends). Runs on its own thread.
///
/// Every call is let through (`SECCOMP_USER_NOTIF_FLAG_CONTINUE`): the kernel carries it out in
/// the caller's own context, with the caller's credentials, capabilities, namespaces and LSM
/// policy, and checks its arguments, exactly as without doctor. doctor only looks: the address
/// the caller passed (read before the call goes on), and afterwards the socket's state, from
/// which the result of `bind` and `listen` is learned (docs/run-tracing.md).
pub fn serve(
    listener: OwnedFd,
    start: Instant,
    done: impl Fn() -> bool,
    traced: &std::sync::Mutex<Traced>,
) {
    let fd = listener.as_raw_fd();
    let mut pending: Vec<Pending> = Vec::new();
    loop {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // While a call's result is still to be learned, look again within a millisecond.
        let wait = if pending.is_empty() { 100 } else { 1 };
        // SAFETY: poll(2) on one pollfd we own.
        let n = unsafe { libc::poll(&mut pfd, 1, wait) };
        if n > 0 && pfd.revents & libc::POLLIN != 0 {
            if let Some(req) = receive(fd) {
                let tid = req.pid as i32;
                let mut t = traced.lock().unwrap_or_else(|e| e.into_inner());
                // A new call of the same thread: its previous one is over.
                settle(&mut pending, &mut t, |p| p.tid == tid);
                let seen = observe(fd, &req, start, &mut t);
                send(fd, &let_through(req.id));
                if let Some(mut p) = seen {
                    p.since = Instant::now();
                    p.cpu_at_start = cpu_time(p.pid, p.tid);
                    // A bind or listen takes microseconds: wait for it here, so that its socket
                    // and the port's other holders are looked at before the process can go on
                    // (a failed bind is often followed by exit at once). A call still not over
                    // after 5 ms is looked at later.
                    let until = Instant::now() + std::time::Duration::from_millis(5);
                    // Also while the thread runs and its socket does not show success yet: the
                    // next notification (another thread's call on the same socket) is then read
                    // after this call took effect.
                    while Instant::now() < until {
                        match p.over() {
                            Over::No => {}
                            Over::Maybe
                                if matches!(
                                    look(&p, &t.events[p.event].syscall, t.events[p.event].port),
                                    Look::Failed
                                ) => {}
                            _ => break,
                        }
                        std::thread::yield_now();
                    }
                    pending.push(p);
                    // A call still pending keeps its socket until its result is learned (the
                    // socket then shows no port: holding it holds none): a caller that closes
                    // its socket at once after a failed bind still leaves it to be looked at.
                    settle(&mut pending, &mut t, |_| false);
                }
            }
            continue;
        }
        if !pending.is_empty() {
            let mut t = traced.lock().unwrap_or_else(|e| e.into_inner());
            settle(&mut pending, &mut t, |_| false);
        }
        if n > 0 && pfd.revents & (libc::POLLHUP | libc::POLLERR) != 0 {
            break; // every process with the filter is gone
        }
        if done() {
            break;
        }
    }
    let mut t = traced.lock().unwrap_or_else(|e| e.into_inner());
    settle(&mut pending, &mut t, |_| true);
}

fn receive(fd: RawFd) -> Option<libc::seccomp_notif> {
    // SAFETY: the kernel fills a zeroed seccomp_notif (it insists on zero).
    unsafe {
        let mut req: libc::seccomp_notif = std::mem::zeroed();
        (libc::ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_RECV, &mut req) == 0).then_some(req)
    }
}

fn send(fd: RawFd, resp: &libc::seccomp_notif_resp) {
    // SAFETY: ioctl with a response we own. ENOENT (the caller was interrupted) is fine.
    unsafe { libc::ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_SEND, resp) };
}

/// The only answer doctor ever gives: carry out the call as the caller made it.
fn let_through(id: u64) -> libc::seccomp_notif_resp {
    libc::seccomp_notif_resp {
        id,
        val: 0,
        error: 0,
        flags: libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32,
    }
}

/// A `bind` or `listen` that was let through and whose result is still to be learned.
struct Pending {
    /// Index of its event in `Traced::events`.
    event: usize,
    pid: i32,
    tid: i32,
    nr: i32,
    fd: i32,
    /// For a `bind`, the caller's socket itself, held from the notification until the call is
    /// over (a few microseconds to a millisecond): a process that fails its bind and exits at
    /// once still leaves its socket to be looked at. Not held for `listen`, so that a listening
    /// socket never outlives its process because of doctor.
    sock: Option<OwnedFd>,
    /// What would explain a failure of the call, read before it went on (bind only).
    explanation: Option<i32>,
    /// What doctor knew of the call, for a listen's explanation after it failed.
    facts: CallFacts,
    since: Instant,
    /// The thread's CPU time (ns) when the call was let through, from
    /// `/proc/PID/task/TID/schedstat`.
    cpu_at_start: Option<u64>,
}

/// Whether a call let through has ended.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Over {
    Yes,
    /// The thread is on a CPU ("running"): inside the call still, or past it.
    Maybe,
    No,
}

impl Pending {
    /// Whether the thread has left this call, from `/proc/PID/task/TID/syscall`: another call
    /// or user space ("-1 ...") is over, this call is not, "running" may be either, and an
    /// unreadable file (the thread is gone) is over.
    fn over(&self) -> Over {
        let path = format!("/proc/{}/task/{}/syscall", self.pid, self.tid);
        match std::fs::read_to_string(path) {
            Ok(s) if s.starts_with("running") => Over::Maybe,
            Ok(s) if s.starts_with(&format!("{} {:#x} ", self.nr, self.fd)) => Over::No,
            _ => Over::Yes,
        }
    }
}

impl Pending {
    /// Whether a thread that is running and whose socket shows no success has surely carried
    /// out its call: it has had a millisecond of CPU since the call was let through (a bind or
    /// listen takes microseconds). Time alone says nothing on a loaded machine: a thread may
    /// wait longer than that for a CPU before its call runs at all. Without schedstat, 50 ms.
    fn ran_past_the_call(&self) -> bool {
        match (self.cpu_at_start, cpu_time(self.pid, self.tid)) {
            (Some(start), Some(now)) => now.saturating_sub(start) >= 1_000_000,
            _ => self.since.elapsed().as_millis() >= 50,
        }
    }
}

/// A thread's time on a CPU in nanoseconds (the first field of its schedstat).
fn cpu_time(pid: i32, tid: i32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/schedstat"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// What the socket of a call shows afterwards.
enum Look {
    /// Bound to the port asked for (any port for port 0) / listening: the call succeeded. The
    /// port is the socket's own.
    Succeeded(Option<u16>),
    Failed,
    /// The socket is gone (closed, or its process ended): nothing can be read.
    Gone,
}

fn look(p: &Pending, syscall: &str, asked: Option<u16>) -> Look {
    // Some calls cannot succeed whatever happens after: a bind on a socket bound before, on an
    // fd that is no socket, or with an address length the kernel refuses. Their failure is
    // known even when the caller is gone before doctor could look (a loaded machine).
    let certain =
        syscall == "bind" && matches!(p.explanation, Some(libc::ENOTSOCK) | Some(libc::EINVAL));
    if certain {
        return Look::Failed;
    }
    let bound_before = p.facts.port_before.is_some_and(|b| b != 0);
    let Some(sock) = socket_of(p) else {
        // A bind on a socket bound before cannot have succeeded, gone or not.
        return if syscall == "bind" && bound_before {
            Look::Failed
        } else {
            Look::Gone
        };
    };
    let port = local_addr(&sock).map(|a| a.1).filter(|&port| port != 0);
    let succeeded = if syscall == "listen" {
        accepts_connections(&sock)
    } else {
        port.is_some()
            && p.facts.port_before.is_none_or(|b| b == 0)
            && asked.is_none_or(|want| want == 0 || Some(want) == port)
    };
    if succeeded {
        Look::Succeeded(port)
    } else {
        Look::Failed
    }
}

/// Learn the result of every pending call that has ended (or that `force` says has), from the
/// socket's state. A success is certain as soon as the socket shows it; a failure only once
/// the thread has surely left the call: it waits in another call, is gone, or has run on a CPU
/// for a millisecond since the call was let through (`Pending::ran_past_the_call`).
fn settle(pending: &mut Vec<Pending>, traced: &mut Traced, force: impl Fn(&Pending) -> bool) {
    pending.retain(|p| {
        let over = if force(p) { Over::Yes } else { p.over() };
        if over == Over::No {
            return true;
        }
        let Some(event) = traced.events.get_mut(p.event) else {
            return false;
        };
        let seen = look(p, &event.syscall, event.port);
        let waited_enough = p.ran_past_the_call();
        if over == Over::Maybe && matches!(seen, Look::Failed) && !waited_enough {
            return true;
        }
        record_result(p, event, seen);
        false
    });
}

/// Fill in `result` and `errno` of a call that has ended. The result is read from the socket,
/// never from a call of doctor's own; an errno is the explanation read before the call went on,
/// marked as inferred.
fn record_result(p: &Pending, event: &mut SyscallEvent, seen: Look) {
    match seen {
        Look::Succeeded(port) => {
            event.result = Some(0);
            event.result_from = Some("socket-state".into());
            // A bind to port 0, or a listen on an unbound socket: the kernel chose the port.
            if event.port.is_none_or(|want| want == 0) && port.is_some() {
                event.port = port;
            }
        }
        Look::Failed => {
            event.result = Some(-1);
            event.result_from = Some("socket-state".into());
            let explanation = if event.syscall == "listen" {
                explain_a_failure(&p.facts)
            } else {
                p.explanation
            };
            if let Some(errno) = explanation {
                set_errno(event, errno, true);
            }
        }
        Look::Gone => {}
    }
}

fn set_errno(event: &mut SyscallEvent, errno: i32, inferred: bool) {
    event.errno = Some(errno);
    event.errno_name = Some(errno_name(errno));
    event.errno_inferred = inferred;
}

/// What doctor knows of a call's socket and arguments, read while the caller waits.
struct CallFacts {
    pid: i32,
    syscall: &'static str,
    addr: Option<IpAddr>,
    port: u16,
    /// The address length the caller passed (a negative one too).
    addrlen: i64,
    /// The fd is a socket (false: ENOTSOCK), its family and type, and its inode.
    is_socket: bool,
    family: Option<i32>,
    stream: bool,
    /// The socket's inode at the call: a later socket on the same fd number is not this one.
    inode: Option<u64>,
    /// The port the socket had before the call (0: unbound).
    port_before: Option<u16>,
}

/// Why a `bind`/`listen` would fail, as the kernel checks it, in the kernel's order: the fd is not
/// a socket (ENOTSOCK); the address length does not fit the family (EINVAL); the address is not
/// one of this host's (EADDRNOTAVAIL); a port below `ip_unprivileged_port_start` without
/// CAP_NET_BIND_SERVICE (EACCES); the socket is bound already (EINVAL); another socket on the port
/// (EADDRINUSE; for `listen`, another listener). None when no single explanation can be given:
/// the sockaddr's family is not the socket's, or the caller lives in another network or user
/// namespace than doctor (doctor's tables and capabilities would not be the caller's).
fn explain_a_failure(f: &CallFacts) -> Option<i32> {
    if !f.is_socket {
        return Some(libc::ENOTSOCK);
    }
    if f.syscall == "bind" {
        let needed = match f.family? {
            libc::AF_INET => 16,
            libc::AF_INET6 => 24,
            _ => return None,
        };
        if f.addrlen < needed || f.addrlen > 128 {
            return Some(libc::EINVAL);
        }
        let family_matches = match f.addr? {
            IpAddr::V4(_) => f.family == Some(libc::AF_INET) || f.family == Some(libc::AF_INET6),
            IpAddr::V6(_) => f.family == Some(libc::AF_INET6),
        };
        if !family_matches {
            return None;
        }
    }
    let same = |ns: &str| {
        let theirs = std::fs::read_link(format!("/proc/{}/ns/{ns}", f.pid)).ok();
        theirs.is_some() && theirs == std::fs::read_link(format!("/proc/self/ns/{ns}")).ok()
    };
    if !same("net") {
        return None;
    }
    if f.syscall == "bind" {
        if let Some(addr) = f.addr
            && !addr.is_unspecified()
            && !address_is_local(addr)
        {
            return Some(libc::EADDRNOTAVAIL);
        }
        let unprivileged_start =
            crate::sys::proc::sysctl("/proc/sys/net/ipv4/ip_unprivileged_port_start")
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(1024);
        if f.port != 0 && u32::from(f.port) < unprivileged_start {
            if !same("user") {
                return None;
            }
            if !may_bind_low_ports(f.pid) {
                return Some(libc::EACCES);
            }
        }
        if f.port_before.is_some_and(|b| b != 0) {
            return Some(libc::EINVAL);
        }
    }
    if f.port == 0 {
        return None;
    }
    let proto = if f.stream {
        crate::model::snapshot::Proto::Tcp
    } else {
        crate::model::snapshot::Proto::Udp
    };
    let other_holds = crate::sys::sockets::read_sockets().iter().any(|s| {
        s.proto == proto
            && s.local_port == f.port
            && Some(s.inode) != f.inode
            && s.inode != 0
            && if f.syscall == "listen" {
                s.state == "LISTEN"
            } else {
                !matches!(s.state.as_str(), "TIME_WAIT" | "CLOSE" | "FIN_WAIT2")
            }
    });
    other_holds.then_some(libc::EADDRINUSE)
}

/// Whether `addr` is an address of this host (in doctor's network namespace): a socket of
/// doctor's own binds it with port 0 (a port the kernel picks, never the caller's).
fn address_is_local(addr: IpAddr) -> bool {
    !matches!(
        std::net::UdpSocket::bind((addr, 0)).map_err(|e| e.raw_os_error()),
        Err(Some(libc::EADDRNOTAVAIL))
    )
}

/// CAP_NET_BIND_SERVICE (bit 10) in the effective set of `pid`.
fn may_bind_low_ports(pid: i32) -> bool {
    effective_caps(pid).is_some_and(|caps| caps & (1 << 10) != 0)
}

/// The caller's socket, duplicated into doctor (`pidfd_getfd`) for one look and closed at once,
/// when it is still the socket of the call.
fn socket_of(p: &Pending) -> Option<OwnedFd> {
    if let Some(sock) = &p.sock {
        return sock.try_clone().ok();
    }
    let sock = duplicate_fd(p.pid, p.fd)?;
    let same = rustix::fs::fstat(&sock).ok().map(|st| st.st_ino);
    (p.facts.inode.is_none() || same == p.facts.inode).then_some(sock)
}

/// The address family of a socket (from getsockname, which gives it even when unbound).
fn socket_family(sock: &OwnedFd) -> Option<i32> {
    let (buf, len) = sockname(sock)?;
    (len >= 2).then(|| i32::from(u16::from_ne_bytes([buf[0], buf[1]])))
}

/// getsockname(2): the raw address and its length (at most 128 bytes).
fn sockname(sock: &OwnedFd) -> Option<([u8; 128], usize)> {
    let mut buf = [0u8; 128];
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: getsockname writes at most `len` bytes into our buffer.
    let rc = unsafe { libc::getsockname(sock.as_raw_fd(), buf.as_mut_ptr() as *mut _, &mut len) };
    (rc == 0).then(|| (buf, (len as usize).min(buf.len())))
}

/// SO_ACCEPTCONN: the socket listens.
fn accepts_connections(sock: &OwnedFd) -> bool {
    rustix::net::sockopt::socket_acceptconn(sock).unwrap_or(false)
}

/// Record one notification: the call, its address, the process; returns what is needed to
/// learn the result of a `bind` or `listen` once the call is over.
fn observe(
    listener: RawFd,
    req: &libc::seccomp_notif,
    start: Instant,
    traced: &mut Traced,
) -> Option<Pending> {
    let tid = req.pid as i32;
    let args = req.data.args;
    let fd = args[0] as i32;
    let syscall = match req.data.nr {
        arch::NR_BIND => "bind",
        arch::NR_LISTEN => "listen",
        _ => return None,
    };
    let t = start.elapsed().as_secs_f64();
    let raw = if syscall == "listen" {
        Vec::new()
    } else {
        read_memory(tid, args[1] as usize, (args[2] as usize).min(128))
    };
    let addr = parse_sockaddr(&raw);
    // AF_UNIX and other families are not ours to report; a stale id means the caller is gone.
    if (syscall != "listen" && addr.is_none()) || !id_valid(listener, req) {
        return None;
    }
    let pid = crate::sys::proc::tgid(tid).unwrap_or(tid);
    if !traced.processes.contains_key(&pid)
        && let Some(p) = crate::sys::proc::process(pid)
    {
        traced.processes.insert(pid, p);
    }
    let mut event = SyscallEvent {
        t,
        pid,
        tid,
        syscall: syscall.to_string(),
        fd,
        addr: addr.map(|a| a.0),
        port: addr.map(|a| a.1),
        result: None,
        errno: None,
        errno_name: None,
        errno_inferred: false,
        result_from: None,
    };
    // One look at the socket while its caller waits: its inode and what it is bound to now.
    let sock = duplicate_fd(pid, fd);
    let inode = sock
        .as_ref()
        .and_then(|s| rustix::fs::fstat(s).ok().map(|st| st.st_ino));
    let bound = sock.as_ref().and_then(local_addr);
    if syscall == "listen" {
        let Some(local) = bound else {
            return None; // listen on a unix socket, or on a socket already gone
        };
        event.addr = Some(local.0);
        event.port = Some(local.1);
    }
    let facts = CallFacts {
        pid,
        syscall,
        addr: event.addr,
        port: event.port.unwrap_or(0),
        addrlen: i64::from(args[2] as i32),
        is_socket: inode.is_none()
            || sock
                .as_ref()
                .and_then(|s| rustix::fs::fstat(s).ok())
                .is_some_and(|st| {
                    rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Socket
                }),
        family: sock.as_ref().and_then(socket_family),
        stream: sock.as_ref().is_none_or(|s| {
            rustix::net::sockopt::socket_type(s).ok() == Some(rustix::net::SocketType::STREAM)
        }),
        inode,
        port_before: bound.map(|b| b.1),
    };
    // A bind's explanation is read now, while the caller waits (a failing bind is often
    // followed by exit, and its holder may go with it). A listen rarely fails and is often part
    // of a bind-heavy loop: its explanation is read only when it failed.
    let explanation = if syscall == "bind" {
        explain_a_failure(&facts)
    } else {
        None
    };
    // The socket is held through the call only when the call may bind it (an unbound socket):
    // a bound or listening socket held by doctor could outlive the command's close.
    let hold = syscall == "bind" && facts.is_socket && facts.port_before == Some(0);
    traced.events.push(event);
    Some(Pending {
        event: traced.events.len() - 1,
        pid,
        tid,
        nr: req.data.nr,
        fd,
        explanation,
        facts,
        sock: sock.filter(|_| hold),
        since: Instant::now(),
        cpu_at_start: None,
    })
}

/// Whether the notification is still live (its caller has not died, its pid not been reused):
/// checked after reading the caller's memory, as seccomp_unotify(2) asks.
fn id_valid(listener: RawFd, req: &libc::seccomp_notif) -> bool {
    // SAFETY: ioctl reading a u64 we own.
    unsafe { libc::ioctl(listener, libc::SECCOMP_IOCTL_NOTIF_ID_VALID, &req.id) == 0 }
}

/// The caller's socket, duplicated into doctor (`pidfd_getfd`): the same open socket.
fn duplicate_fd(pid: i32, fd: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open / pidfd_getfd return new fds that we own.
    unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, pid, 0);
        if pidfd < 0 {
            return None;
        }
        let pidfd = OwnedFd::from_raw_fd(pidfd as RawFd);
        let dup = libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0);
        (dup >= 0).then(|| OwnedFd::from_raw_fd(dup as RawFd))
    }
}

/// getsockname(2) of a socket; None unless AF_INET/AF_INET6.
fn local_addr(sock: &OwnedFd) -> Option<(IpAddr, u16)> {
    let (buf, len) = sockname(sock)?;
    parse_sockaddr(&buf[..len])
}

/// Up to `len` bytes at `ptr` in process `pid` (empty when unreadable).
fn read_memory(pid: i32, ptr: usize, len: usize) -> Vec<u8> {
    if ptr == 0 || len == 0 {
        return Vec::new();
    }
    let mut buf = vec![0u8; len];
    let local = [libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut _,
        iov_len: len,
    }];
    let remote = [libc::iovec {
        iov_base: ptr as *mut _,
        iov_len: len,
    }];
    // SAFETY: reads from another process into our own buffer of `len` bytes.
    let got = unsafe { libc::process_vm_readv(pid, local.as_ptr(), 1, remote.as_ptr(), 1, 0) };
    buf.truncate(got.max(0) as usize);
    buf
}

pub fn parse_sockaddr(b: &[u8]) -> Option<(IpAddr, u16)> {
    let family = u16::from_ne_bytes([*b.first()?, *b.get(1)?]) as i32;
    let port = u16::from_be_bytes([*b.get(2)?, *b.get(3)?]);
    match family {
        libc::AF_INET => {
            let a: [u8; 4] = b.get(4..8)?.try_into().ok()?;
            Some((IpAddr::V4(Ipv4Addr::from(a)), port))
        }
        libc::AF_INET6 => {
            let a: [u8; 16] = b.get(8..24)?.try_into().ok()?;
            let v6 = Ipv6Addr::from(a);
            Some((
                v6.to_ipv4_mapped()
                    .map(IpAddr::V4)
                    .unwrap_or(IpAddr::V6(v6)),
                port,
            ))
        }
        _ => None,
    }
}

pub fn errno_name(errno: i32) -> String {
    match nix::errno::Errno::from_raw(errno) {
        nix::errno::Errno::UnknownErrno => format!("errno {errno}"),
        e => format!("{e:?}"),
    }
}

/// The program `argv0` names (through PATH), when exec gives it privileges: the setuid or
/// setgid bit, or file capabilities (`security.capability`). Under no_new_privs it would run
/// without them.
pub fn privileged_program(argv0: &std::ffi::OsStr) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let exe = which::which(argv0).ok()?;
    let mode = std::fs::metadata(&exe).ok()?.permissions().mode();
    let mut buf = [0u8; 64];
    let file_caps =
        rustix::fs::getxattr(&exe, "security.capability", &mut buf).is_ok_and(|n| n > 0);
    (mode & 0o6000 != 0 || file_caps).then_some(exe)
}

/// CAP_SYS_ADMIN in doctor's effective set (then the filter needs no no_new_privs).
pub fn has_cap_sys_admin() -> bool {
    effective_caps(std::process::id() as i32).is_some_and(|caps| caps & (1 << 21) != 0)
}

/// The effective capability set of `pid` (`CapEff` of `/proc/PID/status`, parsed by procfs-core).
fn effective_caps(pid: i32) -> Option<u64> {
    use procfs_core::FromRead;
    let file = std::fs::File::open(format!("/proc/{pid}/status")).ok()?;
    procfs_core::process::Status::from_read(file)
        .ok()
        .map(|s| s.capeff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddr_in_and_in6() {
        let mut v4 = vec![0u8; 16];
        v4[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        v4[2..4].copy_from_slice(&29500u16.to_be_bytes());
        v4[4..8].copy_from_slice(&[127, 0, 0, 1]);
        assert_eq!(
            parse_sockaddr(&v4),
            Some(("127.0.0.1".parse().unwrap(), 29500))
        );
        let mut v6 = vec![0u8; 28];
        v6[..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
        v6[2..4].copy_from_slice(&29400u16.to_be_bytes());
        v6[23] = 1;
        assert_eq!(parse_sockaddr(&v6), Some(("::1".parse().unwrap(), 29400)));
        let unix = (libc::AF_UNIX as u16).to_ne_bytes();
        assert_eq!(parse_sockaddr(&[unix[0], unix[1], 0, 0, 0, 0, 0, 0]), None);
    }
}
