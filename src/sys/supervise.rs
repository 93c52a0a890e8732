//! Run command trees under supervision and kill them whole (Linux).
//!
//! Used by `doctor repro` and meant for `doctor run`. The model:
//!
//! - [`init`] once per program: `doctor` becomes a child subreaper (orphans of a tree re-parent
//!   to it instead of PID 1, so they can be found and reaped) and installs SIGINT/SIGTERM/SIGHUP
//!   handlers that only set a flag ([`interrupted`]); whoever waits on a tree sees the flag and
//!   kills the tree.
//! - [`Tree::spawn`] starts a command in a new session (setsid) with a marker variable
//!   `DOCTOR_TAG=<unique id>` that every descendant inherits, so a daemon that calls setsid
//!   again is still found by its `/proc/PID/environ`.
//! - [`Tree::members`] = every live process with the tree's session id, or descending (by ppid)
//!   from a member, or carrying the marker.
//! - [`Tree::terminate`] sends SIGTERM to each member (and to each process group made only of
//!   members), waits a grace period, then SIGKILL, and reaps zombies that are its children.
//!   It reports what it had to kill. Processes are killed by pid or process group, never by name.
//! - [`Tree::leftovers`] = members still alive after that, plus whether the port is still bound.
//!
//! All waiting goes through one reaper ([`reap`]) that calls `waitpid(-1, WNOHANG)` and keeps
//! exit statuses by pid, so several trees can be supervised from several threads at once.
//! Do not mix it with `std::process::Child::wait` on children started elsewhere in the same
//! process while trees are running.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{self, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use serde::Serialize;

/// The variable that marks every process of a supervised tree.
pub const TAG_VAR: &str = "DOCTOR_TAG";

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static LAST_SIGNAL: AtomicU64 = AtomicU64::new(0);
static EXITS: Mutex<BTreeMap<i32, Exit>> = Mutex::new(BTreeMap::new());
static PORTS: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
static SEQ: AtomicU64 = AtomicU64::new(0);
static INIT: OnceLock<()> = OnceLock::new();

extern "C" fn on_signal(sig: libc::c_int) {
    LAST_SIGNAL.store(sig as u64, Ordering::SeqCst);
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Become a child subreaper and install the interrupt handlers. Idempotent.
pub fn init() -> anyhow::Result<()> {
    if INIT.get().is_some() {
        return Ok(());
    }
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) };
    if rc != 0 {
        anyhow::bail!(
            "cannot become a child subreaper: {}",
            std::io::Error::last_os_error()
        );
    }
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only stores to atomics, which is async-signal-safe.
        unsafe { signal::sigaction(sig, &action) }
            .with_context(|| format!("cannot install a handler for {sig}"))?;
    }
    let _ = INIT.set(());
    Ok(())
}

/// True once SIGINT, SIGTERM or SIGHUP has arrived.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// The exit code a program should end with after an interrupt: 128 + signal (130 for Ctrl-C).
pub fn interrupt_exit_code() -> i32 {
    match LAST_SIGNAL.load(Ordering::SeqCst) {
        0 => 130,
        s => 128 + s as i32,
    }
}

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    /// Shell convention: the code, or 128 + signal.
    pub fn shell_code(self) -> i32 {
        match self {
            Exit::Code(c) => c,
            Exit::Signal(s) => 128 + s,
        }
    }
}

/// Reap every child that has ended (ours or orphans re-parented to us) and remember statuses.
pub fn reap() {
    // The lock is held across waitpid so that `Tree::spawn` can clear a stale status of a
    // recycled pid before any status of the new process can be recorded.
    let mut map = EXITS.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => {
                map.insert(pid.as_raw(), Exit::Code(code));
            }
            Ok(WaitStatus::Signaled(pid, sig, _)) => {
                map.insert(pid.as_raw(), Exit::Signal(sig as i32));
            }
            Ok(WaitStatus::StillAlive) | Err(_) => break,
            Ok(_) => continue,
        }
    }
    // Statuses of orphans nobody waits for: keep the map small.
    if map.len() > 4096 {
        map.clear();
    }
}

fn take_exit(pid: i32) -> Option<Exit> {
    EXITS.lock().unwrap_or_else(|e| e.into_inner()).remove(&pid)
}

/// One process as read from `/proc/PID/stat`.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ProcInfo {
    pub pid: i32,
    pub ppid: i32,
    pub pgid: i32,
    pub sid: i32,
    /// `R`, `S`, `D`, `Z`, ...
    pub state: String,
    pub command: String,
}

/// Read `/proc/PID/stat` and `cmdline`; None when the process is gone.
pub fn proc_info(pid: i32) -> Option<ProcInfo> {
    let stat = crate::sys::proc::stat(pid)?;
    let argv = crate::sys::proc::cmdline(pid);
    Some(ProcInfo {
        pid,
        ppid: stat.ppid,
        pgid: stat.pgid,
        sid: stat.sid,
        command: if argv.is_empty() {
            format!("[{}]", stat.comm)
        } else {
            argv.join(" ")
        },
        state: stat.state,
    })
}

fn all_processes() -> Vec<ProcInfo> {
    crate::sys::proc::list_pids()
        .into_iter()
        .filter_map(proc_info)
        .collect()
}

fn environ_has(pid: i32, needle: &[u8]) -> bool {
    crate::sys::proc::environ(pid)
        .map(|env| env.split(|b| *b == 0).any(|kv| kv == needle))
        .unwrap_or(false)
}

/// Every live (non-zombie) process of the tree led by `leader` and marked with `tag`: the leader,
/// its session, anything carrying the marker, and their descendants; doctor itself excluded.
pub fn members_of(tag: &str, leader: i32) -> Vec<ProcInfo> {
    let me = std::process::id() as i32;
    let marker = format!("{TAG_VAR}={}", tag).into_bytes();
    let procs = all_processes();
    let mut by_parent: HashMap<i32, Vec<usize>> = HashMap::new();
    for (i, p) in procs.iter().enumerate() {
        by_parent.entry(p.ppid).or_default().push(i);
    }
    let mut chosen: BTreeSet<usize> = BTreeSet::new();
    let mut stack: Vec<usize> = Vec::new();
    for (i, p) in procs.iter().enumerate() {
        if p.pid == me {
            continue;
        }
        let in_tree =
            p.pid == leader || p.sid == leader || (p.state != "Z" && environ_has(p.pid, &marker));
        if in_tree && chosen.insert(i) {
            stack.push(i);
        }
    }
    while let Some(i) = stack.pop() {
        for &c in by_parent
            .get(&procs[i].pid)
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            if procs[c].pid != me && chosen.insert(c) {
                stack.push(c);
            }
        }
    }
    chosen
        .into_iter()
        .map(|i| procs[i].clone())
        .filter(|p| p.state != "Z" && p.state != "X")
        .collect()
}

/// Signal every member: whole process groups where every process in them is a member, and each
/// member by pid. Records the strongest signal each needed.
pub fn signal_all(members: &[ProcInfo], sig: Signal, killed: &mut BTreeMap<i32, Killed>) {
    let pids: BTreeSet<i32> = members.iter().map(|p| p.pid).collect();
    // A process group is signalled as a whole only when every process in it is ours.
    let mut groups: BTreeSet<i32> = members.iter().map(|p| p.pgid).collect();
    for p in all_processes() {
        if groups.contains(&p.pgid) && !pids.contains(&p.pid) && p.state != "Z" {
            groups.remove(&p.pgid);
        }
    }
    for g in groups {
        if g > 1 {
            let _ = signal::killpg(Pid::from_raw(g), sig);
        }
    }
    for p in members {
        let _ = signal::kill(Pid::from_raw(p.pid), sig);
        killed.insert(
            p.pid,
            Killed {
                pid: p.pid,
                command: p.command.clone(),
                signal: sig.as_str().to_string(),
            },
        );
    }
}

/// What [`Tree::terminate`] had to kill.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Killed {
    pub pid: i32,
    pub command: String,
    /// `SIGTERM` or `SIGKILL`: the strongest signal that was needed.
    pub signal: String,
}

/// What is still there after a tree was terminated. Empty means clean.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Leftovers {
    pub processes: Vec<ProcInfo>,
    /// The port, when it is still bound or listened on.
    pub port_bound: Option<u16>,
}

impl Leftovers {
    pub fn is_empty(&self) -> bool {
        self.processes.is_empty() && self.port_bound.is_none()
    }

    /// One line per leftover, for reports.
    pub fn describe(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .processes
            .iter()
            .map(|p| format!("pid {} ({}) {}", p.pid, p.state, p.command))
            .collect();
        if let Some(port) = self.port_bound {
            out.push(format!("port {port} still bound"));
        }
        out
    }
}

/// How a wait ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waited {
    Exited(Exit),
    TimedOut,
    Interrupted,
}

/// A supervised command tree.
pub struct Tree {
    tag: String,
    leader: i32,
    exit: Option<Exit>,
    started: Instant,
}

/// A unique marker value for a new tree.
pub fn new_tag(label: &str) -> String {
    let n = SEQ.fetch_add(1, Ordering::SeqCst);
    let clean: String = label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("{}-{}-{clean}", std::process::id(), n)
}

impl Tree {
    /// Start `cmd` as the leader of a new session, marked with `DOCTOR_TAG=tag`.
    /// The caller sets program, arguments, environment and stdio on `cmd`.
    pub fn spawn(mut cmd: Command, tag: &str) -> anyhow::Result<Tree> {
        init()?;
        cmd.env(TAG_VAR, tag);
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // Die with the thread that started us if doctor itself is killed outright.
                libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGKILL as libc::c_ulong,
                    0,
                    0,
                    0,
                );
                Ok(())
            });
        }
        let program = cmd.get_program().to_owned();
        let leader = {
            // Held so that no reap runs between the fork and forgetting a stale status of a
            // recycled pid (pids wrap at 32768 on many machines).
            let mut map = EXITS.lock().unwrap_or_else(|e| e.into_inner());
            let child = cmd
                .spawn()
                .with_context(|| format!("cannot start {}", Path::new(&program).display()))?;
            let leader = child.id() as i32;
            map.remove(&leader);
            leader
        };
        // The Child handle was dropped without waiting: `reap` collects its status.
        Ok(Tree {
            tag: tag.to_string(),
            leader,
            exit: None,
            started: Instant::now(),
        })
    }

    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The leader's pid (also the session id and process group id of the tree).
    pub fn pid(&self) -> i32 {
        self.leader
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The leader's exit, if it has ended.
    pub fn try_wait(&mut self) -> Option<Exit> {
        if self.exit.is_none() {
            reap();
            self.exit = take_exit(self.leader);
        }
        self.exit
    }

    /// Wait for the leader until `timeout` or an interrupt; polls every 20 ms.
    pub fn wait(&mut self, timeout: Duration) -> Waited {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(exit) = self.try_wait() {
                return Waited::Exited(exit);
            }
            if interrupted() {
                return Waited::Interrupted;
            }
            if Instant::now() >= deadline {
                return Waited::TimedOut;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every live (non-zombie) process of the tree, doctor itself excluded.
    pub fn members(&self) -> Vec<ProcInfo> {
        members_of(&self.tag, self.leader)
    }

    /// Give members up to `settle` to end on their own (after the leader ended), then SIGTERM,
    /// `grace`, SIGKILL. Returns what had to be signalled.
    pub fn terminate(&mut self, settle: Duration, grace: Duration) -> Vec<Killed> {
        let mut killed: BTreeMap<i32, Killed> = BTreeMap::new();
        let settle_until = Instant::now() + settle;
        while !self.members().is_empty() && Instant::now() < settle_until {
            reap();
            std::thread::sleep(Duration::from_millis(25));
        }
        for (sig, wait_for) in [
            (Signal::SIGTERM, grace),
            (Signal::SIGKILL, Duration::from_secs(3)),
        ] {
            let members = self.members();
            if members.is_empty() {
                break;
            }
            signal_all(&members, sig, &mut killed);
            let until = Instant::now() + wait_for;
            loop {
                reap();
                let left = self.members();
                if left.is_empty() || Instant::now() >= until {
                    // New processes forked meanwhile get the same signal once more.
                    if !left.is_empty() && sig == Signal::SIGKILL {
                        signal_all(&left, sig, &mut killed);
                    }
                    break;
                }
                std::thread::sleep(Duration::from_millis(25));
            }
        }
        reap();
        let _ = self.try_wait();
        killed.into_values().collect()
    }

    /// Processes of the tree still alive, and `port` if something still binds it.
    /// A port counts as still bound only if it stays so for 2 s after the tree is gone (the
    /// kernel and unrelated short-lived connections may hold it for a moment).
    pub fn leftovers(&self, port: Option<u16>) -> Leftovers {
        reap();
        let processes = self.members();
        let mut port_bound = port.filter(|p| port_in_use(*p));
        if processes.is_empty() && port_bound.is_some() {
            let until = Instant::now() + Duration::from_secs(2);
            while port_bound.is_some() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(100));
                port_bound = port.filter(|p| port_in_use(*p));
            }
        }
        Leftovers {
            processes,
            port_bound,
        }
    }
}

/// True when a TCP socket listens on `port` or it cannot be bound the way TCPStore binds it
/// (SO_REUSEADDR, so TIME_WAIT does not count).
pub fn port_in_use(port: u16) -> bool {
    listening_ports().contains(&port) || !crate::sys::sockets::port_is_free(port)
}

/// Ports in the LISTEN state (TCP, v4 and v6).
pub fn listening_ports() -> BTreeSet<u16> {
    crate::sys::sockets::read_sockets()
        .into_iter()
        .filter(|s| s.proto == crate::model::snapshot::Proto::Tcp && s.state == "LISTEN")
        .map(|s| s.local_port)
        .collect()
}

/// A free TCP port on 127.0.0.1, never one handed out before by this process.
pub fn free_port() -> anyhow::Result<u16> {
    for _ in 0..64 {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
            .context("cannot bind a TCP port on 127.0.0.1 to find a free one")?;
        let port = listener.local_addr()?.port();
        drop(listener);
        if PORTS.lock().map(|mut s| s.insert(port)).unwrap_or(true) {
            return Ok(port);
        }
    }
    anyhow::bail!("no free TCP port found on 127.0.0.1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_unique() {
        let a = free_port().unwrap();
        let b = free_port().unwrap();
        assert_ne!(a, b);
        assert!(!port_in_use(a));
    }

    #[test]
    fn listening_port_is_seen() {
        let l = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(listening_ports().contains(&port));
        assert!(port_in_use(port));
    }

    #[test]
    fn proc_info_reads_self() {
        let me = proc_info(std::process::id() as i32).unwrap();
        assert_eq!(me.pid, std::process::id() as i32);
        assert!(!me.command.is_empty());
    }

    #[test]
    fn tags_are_unique_and_clean() {
        let a = new_tag("fabric buggy/spawn");
        let b = new_tag("fabric buggy/spawn");
        assert_ne!(a, b);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    }
}
