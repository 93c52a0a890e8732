//! Exact tracing of `bind`, `listen` and `connect` in a supervised command tree: a seccomp
//! filter makes only those system calls stop for ptrace, and fork/clone/exec follow every
//! descendant. Everything else runs at full speed. x86_64 only; elsewhere `doctor run` polls.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use nix::sys::ptrace;
use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

/// One traced system call, with its result.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SyscallEvent {
    /// Seconds since the command started.
    pub t: f64,
    pub pid: i32,
    pub tid: i32,
    pub syscall: String,
    pub fd: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addr: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// 0 on success, -1 on failure (then `errno` says why).
    pub result: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errno: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errno_name: Option<String>,
}

pub const fn supported() -> bool {
    cfg!(target_arch = "x86_64")
}

#[cfg(target_arch = "x86_64")]
mod arch {
    pub const AUDIT_ARCH: u32 = 0xC000_003E; // AUDIT_ARCH_X86_64
    pub const NR_CONNECT: u32 = 42;
    pub const NR_BIND: u32 = 49;
    pub const NR_LISTEN: u32 = 50;
}

#[cfg(not(target_arch = "x86_64"))]
mod arch {
    pub const AUDIT_ARCH: u32 = 0;
    pub const NR_CONNECT: u32 = u32::MAX;
    pub const NR_BIND: u32 = u32::MAX;
    pub const NR_LISTEN: u32 = u32::MAX;
}

/// Called in the child between fork and exec: ask to be traced and install the filter.
/// Only async-signal-safe calls. On failure the child runs untraced (the parent learns it from
/// the returned error through its status pipe).
pub fn install_in_child() -> io::Result<()> {
    use libc::{
        BPF_ABS, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W, SECCOMP_RET_ALLOW,
        SECCOMP_RET_TRACE,
    };
    if !supported() {
        return Err(io::Error::from_raw_os_error(libc::ENOSYS));
    }
    // SAFETY: plain system calls on our own process, no memory shared with the parent.
    unsafe {
        if libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) == -1 {
            return Err(io::Error::last_os_error());
        }
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1 {
            return Err(io::Error::last_os_error());
        }
        let filter = [
            libc::BPF_STMT((BPF_LD | BPF_W | BPF_ABS) as u16, 4), // seccomp_data.arch
            libc::BPF_JUMP((BPF_JMP | BPF_JEQ | BPF_K) as u16, arch::AUDIT_ARCH, 1, 0),
            libc::BPF_STMT((BPF_RET | BPF_K) as u16, SECCOMP_RET_ALLOW),
            libc::BPF_STMT((BPF_LD | BPF_W | BPF_ABS) as u16, 0), // seccomp_data.nr
            libc::BPF_JUMP((BPF_JMP | BPF_JEQ | BPF_K) as u16, arch::NR_BIND, 3, 0),
            libc::BPF_JUMP((BPF_JMP | BPF_JEQ | BPF_K) as u16, arch::NR_CONNECT, 2, 0),
            libc::BPF_JUMP((BPF_JMP | BPF_JEQ | BPF_K) as u16, arch::NR_LISTEN, 1, 0),
            libc::BPF_STMT((BPF_RET | BPF_K) as u16, SECCOMP_RET_ALLOW),
            libc::BPF_STMT((BPF_RET | BPF_K) as u16, SECCOMP_RET_TRACE),
        ];
        let prog = libc::sock_fprog {
            len: filter.len() as u16,
            filter: filter.as_ptr() as *mut _,
        };
        if libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &prog as *const _ as libc::c_ulong,
            0,
            0,
        ) == -1
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

struct Pending {
    tid: i32,
    syscall: &'static str,
    fd: i32,
    addr: Option<(IpAddr, u16)>,
    t: f64,
}

/// The tracer's state; lives on the thread that spawned the command (ptrace's rule).
pub struct Tracer {
    start: Instant,
    /// Tasks whose first (attach) stop has been seen.
    started: HashSet<i32>,
    pending: HashMap<i32, Pending>,
    /// (pid, fd) -> address bound, to name the port of a later `listen`.
    bound: HashMap<(i32, i32), (IpAddr, u16)>,
    pub events: Vec<SyscallEvent>,
    /// Each traced process as read at its first traced call, while it was stopped: short-lived
    /// processes that polling never sees are known this way.
    pub processes: HashMap<i32, crate::model::snapshot::Process>,
}

impl Tracer {
    pub fn new(start: Instant, root: i32) -> Tracer {
        Tracer {
            start,
            started: HashSet::from([root]),
            pending: HashMap::new(),
            bound: HashMap::new(),
            events: Vec::new(),
            processes: HashMap::new(),
        }
    }

    /// The first stop of the command (SIGTRAP after exec): set the options that follow the tree.
    pub fn attach_root(&self, pid: i32) -> nix::Result<()> {
        let opts = ptrace::Options::PTRACE_O_TRACESECCOMP
            | ptrace::Options::PTRACE_O_TRACEFORK
            | ptrace::Options::PTRACE_O_TRACEVFORK
            | ptrace::Options::PTRACE_O_TRACECLONE
            | ptrace::Options::PTRACE_O_TRACEEXEC
            | ptrace::Options::PTRACE_O_TRACESYSGOOD
            | ptrace::Options::PTRACE_O_EXITKILL;
        ptrace::setoptions(Pid::from_raw(pid), opts)?;
        ptrace::cont(Pid::from_raw(pid), None)
    }

    /// Handle one wait status of a traced task. Returns true when it was a ptrace stop that this
    /// tracer resumed (the caller handles exits).
    pub fn handle(&mut self, status: WaitStatus) -> bool {
        match status {
            WaitStatus::PtraceEvent(pid, _, event) => {
                let tid = pid.as_raw();
                if event == libc::PTRACE_EVENT_SECCOMP {
                    self.syscall_entry(tid);
                    let _ = ptrace::syscall(pid, None);
                } else {
                    let _ = ptrace::cont(pid, None);
                }
                true
            }
            WaitStatus::PtraceSyscall(pid) => {
                self.syscall_exit(pid.as_raw());
                let _ = ptrace::cont(pid, None);
                true
            }
            WaitStatus::Stopped(pid, sig) => {
                // A new task's first stop is the SIGSTOP ptrace sends when it attaches: swallow it.
                // Any other signal is delivered as it would be without us.
                let first = self.started.insert(pid.as_raw());
                let inject = if first && sig == Signal::SIGSTOP {
                    None
                } else {
                    Some(sig)
                };
                let _ = ptrace::cont(pid, inject);
                true
            }
            WaitStatus::Exited(pid, _) | WaitStatus::Signaled(pid, _, _) => {
                self.started.remove(&pid.as_raw());
                self.pending.remove(&pid.as_raw());
                false
            }
            _ => false,
        }
    }

    fn now(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    #[cfg(target_arch = "x86_64")]
    fn syscall_entry(&mut self, tid: i32) {
        let Ok(regs) = ptrace::getregs(Pid::from_raw(tid)) else {
            return;
        };
        let nr = regs.orig_rax as u32;
        let syscall = match nr {
            arch::NR_BIND => "bind",
            arch::NR_CONNECT => "connect",
            arch::NR_LISTEN => "listen",
            _ => return,
        };
        let fd = regs.rdi as i32;
        let addr = if syscall == "listen" {
            None
        } else {
            read_sockaddr(tid, regs.rsi as usize, regs.rdx as usize)
        };
        // AF_UNIX and other families are not ours to report (bind/connect of non-inet sockets).
        if syscall != "listen" && addr.is_none() {
            return;
        }
        let t = self.now();
        let pid = crate::sys::proc::tgid(tid).unwrap_or(tid);
        if !self.processes.contains_key(&pid)
            && let Some(p) = crate::sys::proc::process(pid)
        {
            self.processes.insert(pid, p);
        }
        self.pending.insert(
            tid,
            Pending {
                tid,
                syscall,
                fd,
                addr,
                t,
            },
        );
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn syscall_entry(&mut self, _tid: i32) {}

    #[cfg(target_arch = "x86_64")]
    fn syscall_exit(&mut self, tid: i32) {
        let Some(p) = self.pending.remove(&tid) else {
            return;
        };
        let Ok(regs) = ptrace::getregs(Pid::from_raw(tid)) else {
            return;
        };
        let ret = regs.rax as i64;
        let pid = crate::sys::proc::tgid(tid).unwrap_or(tid);
        let addr = match p.syscall {
            "bind" => {
                if ret == 0
                    && let Some(a) = p.addr
                {
                    self.bound.insert((pid, p.fd), a);
                }
                p.addr
            }
            "listen" => self
                .bound
                .get(&(pid, p.fd))
                .copied()
                .or_else(|| local_addr_of(pid, p.fd)),
            _ => p.addr,
        };
        if p.syscall == "listen" && addr.is_none() {
            return; // listen on a unix socket
        }
        let errno = (ret < 0).then(|| (-ret) as i32);
        self.events.push(SyscallEvent {
            t: p.t,
            pid,
            tid: p.tid,
            syscall: p.syscall.to_string(),
            fd: p.fd,
            addr: addr.map(|a| a.0),
            port: addr.map(|a| a.1),
            result: if ret < 0 { -1 } else { ret },
            errno,
            errno_name: errno.map(errno_name),
        });
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn syscall_exit(&mut self, _tid: i32) {}
}

/// The local address of a socket fd, from its inode in /proc/net (for `listen` after an
/// untraced bind, e.g. one inherited from a parent).
fn local_addr_of(pid: i32, fd: i32) -> Option<(IpAddr, u16)> {
    let inode = crate::sys::proc::fd_socket_inode(pid, fd)?;
    let s = crate::sys::sockets::tcp_socket_by_inode(inode)?;
    Some((s.local_addr, s.local_port))
}

/// Read a `sockaddr` from the tracee; `None` unless AF_INET/AF_INET6.
fn read_sockaddr(pid: i32, ptr: usize, len: usize) -> Option<(IpAddr, u16)> {
    if ptr == 0 || len < 8 {
        return None;
    }
    let mut buf = [0u8; 28];
    let n = len.min(buf.len());
    let local = [libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut _,
        iov_len: n,
    }];
    let remote = [libc::iovec {
        iov_base: ptr as *mut _,
        iov_len: n,
    }];
    // SAFETY: reads from another process into our own buffer of at least `n` bytes.
    let got = unsafe { libc::process_vm_readv(pid, local.as_ptr(), 1, remote.as_ptr(), 1, 0) };
    if got < 8 {
        return None;
    }
    parse_sockaddr(&buf[..got as usize])
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
