//! Run command trees under supervision and kill them whole (Linux).
//!
//! Used by `doctor repro` ([`Tree`]) and `doctor run` ([`RunWatch`], [`Terminal`]). The model:
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
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};

pub use crate::model::run::{Exit, Killed, Waited};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{self, SaFlags, SigAction, SigHandler, SigSet, Signal};
pub use nix::sys::wait::WaitStatus;
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;
use serde::Serialize;

use crate::model::run::{Seen, SeenSocket, Timeline};
use crate::model::snapshot::{Process, Socket};

/// The variable that marks every process of a supervised tree.
pub const TAG_VAR: &str = "DOCTOR_TAG";

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static LAST_SIGNAL: AtomicU64 = AtomicU64::new(0);
static EXITS: Mutex<BTreeMap<i32, Exit>> = Mutex::new(BTreeMap::new());
static PORTS: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
static SEQ: AtomicU64 = AtomicU64::new(0);
static INIT: OnceLock<()> = OnceLock::new();

extern "C" fn on_signal(sig: std::ffi::c_int) {
    LAST_SIGNAL.store(sig as u64, Ordering::SeqCst);
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Become a child subreaper and install the interrupt handlers. Idempotent.
pub fn init() -> anyhow::Result<()> {
    if INIT.get().is_some() {
        return Ok(());
    }
    become_subreaper()?;
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

/// Orphans of doctor's descendants re-parent to doctor instead of PID 1 (or a container's init).
pub fn become_subreaper() -> anyhow::Result<()> {
    nix::sys::prctl::set_child_subreaper(true).context("cannot become a child subreaper")
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
    groups.retain(|&g| g > 1);
    // Each process gets the signal once: by its group when the whole group is ours, else by pid.
    // A stopped process sees it only once it runs (as `kill` in a shell does): SIGCONT after.
    for &g in &groups {
        let _ = signal::killpg(Pid::from_raw(g), sig);
        if sig != Signal::SIGKILL {
            let _ = signal::killpg(Pid::from_raw(g), Signal::SIGCONT);
        }
    }
    for p in members {
        if !groups.contains(&p.pgid) {
            let _ = signal::kill(Pid::from_raw(p.pid), sig);
            if sig != Signal::SIGKILL {
                let _ = signal::kill(Pid::from_raw(p.pid), Signal::SIGCONT);
            }
        }
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
                nix::unistd::setsid()?;
                // Die with the thread that started us if doctor itself is killed outright.
                let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
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

// ---------------------------------------------------------------------------------------------
// Supervision of `doctor run`: one command tree watched from doctor itself (the subreaper), its
// output passed through, polled, cleaned up, and given the terminal while it runs.

/// Bytes of command output kept for analysis (the newest are kept).
pub const OUTPUT_LIMIT: usize = 8 << 20;

/// What the threads watching one run share.
pub struct RunWatch {
    pub start: Instant,
    pub root: AtomicI32,
    pub done: AtomicBool,
    pub timed_out: AtomicBool,
    pub interrupts: AtomicI32,
    /// The command's process group holds the terminal's foreground (a hangup reaches it).
    pub command_has_terminal: AtomicBool,
    /// Doctor's stdout or stderr is a closed pipe (`doctor run -- yes | head -1`).
    pub pipe_closed: AtomicBool,
    /// The newest output bytes, and how many older ones were dropped.
    pub output: Mutex<(Vec<u8>, usize)>,
    pub timeline: Mutex<Timeline>,
    pub tag: String,
}

impl RunWatch {
    pub fn new(start: Instant, tag: &str, root: i32) -> Arc<RunWatch> {
        Arc::new(RunWatch {
            start,
            root: AtomicI32::new(root),
            done: AtomicBool::new(false),
            timed_out: AtomicBool::new(false),
            interrupts: AtomicI32::new(0),
            command_has_terminal: AtomicBool::new(false),
            pipe_closed: AtomicBool::new(false),
            output: Mutex::new((Vec::new(), 0)),
            timeline: Mutex::new(Timeline::default()),
            tag: tag.to_string(),
        })
    }

    fn now(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }
}

/// Copy one output stream through, live, and keep its newest bytes for analysis. A closed pipe
/// is passed on as it would be without doctor: reading stops, so the command gets SIGPIPE / EPIPE
/// on its next write. Other write failures (`/dev/full`) are ignored and the stream drained.
pub fn pump(
    mut from: impl std::io::Read + Send + 'static,
    stderr: bool,
    w: Arc<RunWatch>,
) -> std::thread::JoinHandle<()> {
    use std::io::Write;
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
                Ok(n) => n,
            };
            let chunk = &buf[..n];
            let written = if stderr {
                std::io::stderr().write_all(chunk)
            } else {
                let mut out = std::io::stdout().lock();
                out.write_all(chunk).and_then(|_| out.flush())
            };
            if written.is_err_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) {
                w.pipe_closed.store(true, Ordering::SeqCst);
                break;
            }
            let mut out = w.output.lock().unwrap_or_else(|e| e.into_inner());
            out.0.extend_from_slice(chunk);
            if out.0.len() > OUTPUT_LIMIT {
                let cut = out.0.len() - OUTPUT_LIMIT / 2;
                out.0.drain(..cut);
                out.1 += cut;
            }
        }
    })
}

/// Pids below doctor: the command's tree, and orphans re-parented to us (the subreaper). Cheap
/// (only `/proc/PID/stat`), for polling.
fn descendants() -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut parent: BTreeMap<i32, i32> = BTreeMap::new();
    for pid in crate::sys::proc::list_pids() {
        if let Some(st) = crate::sys::proc::stat(pid) {
            parent.insert(pid, st.ppid);
        }
    }
    parent
        .keys()
        .copied()
        .filter(|&pid| {
            let mut cur = pid;
            for _ in 0..512 {
                match parent.get(&cur) {
                    Some(&pp) if pp == me => return pid != me,
                    Some(&pp) if pp > 1 => cur = pp,
                    _ => return false,
                }
            }
            false
        })
        .collect()
}

/// Every live process of the run: the command's tree and whatever carries the run's marker
/// (daemons that left the process group included), and anything below doctor.
pub fn run_members(w: &RunWatch) -> Vec<ProcInfo> {
    let mut members = members_of(&w.tag, w.root.load(Ordering::SeqCst));
    for pid in descendants() {
        if !members.iter().any(|p| p.pid == pid)
            && let Some(p) = proc_info(pid).filter(|p| p.state != "Z")
        {
            members.push(p);
        }
    }
    members
}

/// Look at the run's processes and their sockets once, and add what is new to the timeline.
pub fn poll_once(w: &RunWatch) {
    let t = w.now();
    let fresh: Vec<Process> = descendants()
        .into_iter()
        .filter_map(crate::sys::proc::process)
        .collect();
    let inodes: BTreeSet<u64> = fresh
        .iter()
        .flat_map(|p| p.socket_inodes.iter().copied())
        .collect();
    let sockets: Vec<Socket> = if inodes.is_empty() {
        Vec::new()
    } else {
        crate::sys::sockets::read_sockets()
            .into_iter()
            .filter(|so| inodes.contains(&so.inode))
            .collect()
    };
    let mut tl = w.timeline.lock().unwrap_or_else(|e| e.into_inner());
    let look = fresh
        .iter()
        .map(|p| (p.pid, p.start_time.to_bits(), p.state.clone()))
        .collect();
    let held = sockets
        .iter()
        .map(|so| (so.inode, so.state.clone()))
        .collect();
    tl.looked(t, look, held);
    for p in fresh {
        for &inode in &p.socket_inodes {
            tl.holders.insert((p.pid, inode));
        }
        match tl.processes.get_mut(&p.pid) {
            Some(seen) if seen.process.start_time == p.start_time => {
                seen.last_seen = t;
                // A new class starts a new entry; within one, the newest letter is kept.
                match seen.states.last_mut() {
                    Some((_, s))
                        if crate::model::run::state_class(s)
                            == crate::model::run::state_class(&p.state) =>
                    {
                        s.clone_from(&p.state)
                    }
                    _ => seen.states.push((t, p.state.clone())),
                }
                merge_views(&mut seen.process, p);
            }
            _ => {
                tl.processes.insert(
                    p.pid,
                    Seen {
                        first_seen: t,
                        last_seen: t,
                        gone_at: None,
                        states: vec![(t, p.state.clone())],
                        process: p,
                    },
                );
            }
        }
    }
    for so in sockets {
        tl.sockets
            .entry((so.inode, so.state.clone()))
            .and_modify(|s| s.last_seen = t)
            .or_insert(SeenSocket {
                first_seen: t,
                last_seen: t,
                socket: so,
            });
    }
}

/// The newest view (after an exec, or a DataLoader worker renaming itself), with every socket it
/// ever held and the parent it had at birth (an orphan re-parented to doctor still belongs to its
/// job).
fn merge_views(seen: &mut Process, newest: Process) {
    let old = std::mem::replace(seen, newest);
    let new = seen;
    new.ppid = old.ppid;
    if new.argv.is_empty() {
        // Exiting or a zombie: its memory is gone, and with it argv and environ.
        new.argv = old.argv;
        new.argv_lossy = old.argv_lossy;
        new.env = old.env;
        new.exe = new.exe.take().or(old.exe);
    }
    new.socket_inodes.extend(old.socket_inodes);
    new.socket_inodes.sort_unstable();
    new.socket_inodes.dedup();
}

/// Add the view of a process read by the tracer at one of its traced calls (while it waited for
/// doctor, so running its real program). It wins over what polling kept when polling only saw the
/// process before its exec (a `pyenv` shim, say) or after its memory was gone; the birth parent
/// and every socket seen stay.
pub fn add_traced_view(tl: &mut Timeline, pid: i32, traced: &Process) {
    match tl.processes.get_mut(&pid) {
        Some(seen) if seen.process.start_time == traced.start_time => {
            let ppid = seen.process.ppid;
            let mut sockets = std::mem::take(&mut seen.process.socket_inodes);
            seen.process = traced.clone();
            seen.process.ppid = ppid;
            sockets.extend(&traced.socket_inodes);
            sockets.sort_unstable();
            sockets.dedup();
            seen.process.socket_inodes = sockets;
        }
        Some(_) => {}
        None => {
            tl.processes.insert(
                pid,
                Seen {
                    first_seen: 0.0,
                    last_seen: 0.0,
                    gone_at: None,
                    states: Vec::new(),
                    process: traced.clone(),
                },
            );
        }
    }
}

pub fn note_gone(w: &RunWatch, pid: i32) {
    let t = w.now();
    let mut tl = w.timeline.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(seen) = tl.processes.get_mut(&pid) {
        seen.gone_at.get_or_insert(t);
    }
}

/// Pass SIGINT/SIGTERM/SIGHUP/SIGUSR1/SIGUSR2 (blocked in every thread, read here from a signalfd, which tells
/// who sent each) on to the command exactly when it did not get them itself, so that it sees
/// each signal once, as without doctor:
/// - the command shares doctor's process group (a pipeline): whatever was sent to the group (the
///   terminal's Ctrl-C, `kill -INT -PGID`, a shell's `kill %1`) reached it directly, so nothing
///   is passed on; a second signal sent to doctor by a process stops the whole tree;
/// - the command has a group of its own: the terminal's signals go to the foreground group, which
///   is the command's while it runs (doctor sees none of them); what reaches doctor was sent to
///   doctor (its pid or its group) and is passed on to the command's group, except a hangup while
///   the command held the terminal (the kernel sent it there too); a second one stops the tree.
/// - one sender's signal that reaches doctor twice within 200 ms (`timeout` signals doctor's pid,
///   then its group) counts once; SIGUSR1/SIGUSR2 (SLURM's requeue signal, Lightning's handler)
///   are passed on like the others but never stop the tree.
pub fn signal_loop(w: Arc<RunWatch>, mask: SigSet, grace: f64) {
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    let Ok(fd) = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC) else {
        return;
    };
    let mut last: Option<(u32, u32, Instant)> = None;
    loop {
        let info = match fd.read_signal() {
            Ok(Some(info)) => info,
            Ok(None) | Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return,
        };
        let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
            continue;
        };
        if w.done.load(Ordering::SeqCst) {
            continue;
        }
        let root = w.root.load(Ordering::SeqCst);
        let shared =
            nix::unistd::getpgid(Some(Pid::from_raw(root))).ok() == Some(nix::unistd::getpgrp());
        let from_terminal = info.ssi_code == libc::SI_KERNEL;
        if shared && from_terminal {
            continue; // the terminal signalled the whole foreground group, the command included
        }
        let repeat = last.is_some_and(|(signo, sender, at)| {
            signo == info.ssi_signo
                && sender == info.ssi_pid
                && !from_terminal
                && at.elapsed() < Duration::from_millis(200)
        });
        last = Some((info.ssi_signo, info.ssi_pid, Instant::now()));
        if repeat {
            continue; // the same sender's signal again at once: one delivery (pid, then group)
        }
        let hangup_seen = sig == Signal::SIGHUP && w.command_has_terminal.load(Ordering::SeqCst);
        let user_signal = matches!(sig, Signal::SIGUSR1 | Signal::SIGUSR2);
        let n = if user_signal {
            0
        } else {
            w.interrupts.fetch_add(1, Ordering::SeqCst)
        };
        if n == 0 {
            if shared || hangup_seen {
                continue;
            }
            let _ = signal::killpg(Pid::from_raw(root), sig);
            let _ = signal::killpg(Pid::from_raw(root), Signal::SIGCONT);
        } else {
            eprintln!("doctor: {sig} again: stopping the whole command tree");
            terminate_tree(&w, grace);
        }
    }
}

/// SIGTERM to every process of the run, SIGKILL to what is left after `grace` seconds (from
/// the timeout or a second Ctrl-C; the waiting thread reaps).
pub fn terminate_tree(w: &RunWatch, grace: f64) {
    let mut killed = BTreeMap::new();
    signal_all(&run_members(w), Signal::SIGTERM, &mut killed);
    let deadline = Instant::now() + Duration::from_secs_f64(grace);
    while Instant::now() < deadline && !w.done.load(Ordering::SeqCst) {
        if run_members(w).is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    signal_all(&run_members(w), Signal::SIGKILL, &mut killed);
}

/// Reap every child that has ended, without waiting.
fn reap_run(w: &RunWatch) {
    loop {
        match waitpid(None, Some(WaitPidFlag::__WALL | WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, _) | WaitStatus::Signaled(pid, _, _)) => {
                note_gone(w, pid.as_raw())
            }
            Ok(WaitStatus::StillAlive) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

/// After the command ended: stop every remaining process of the run and reap it.
pub fn cleanup(w: &RunWatch, grace: f64) -> Vec<Killed> {
    let mut killed = BTreeMap::new();
    let term_deadline = Instant::now() + Duration::from_secs_f64(grace);
    let hard_deadline = term_deadline + Duration::from_secs(5);
    let mut sigkilled = false;
    loop {
        reap_run(w);
        let members = run_members(w);
        if (members.is_empty() && descendants().is_empty()) || Instant::now() > hard_deadline {
            break;
        }
        // Each member gets SIGTERM once; what is still there after the grace gets SIGKILL once;
        // members that appear later get the signal of the phase.
        let late = Instant::now() > term_deadline;
        let escalate = late && !sigkilled;
        let targets: Vec<ProcInfo> = members
            .into_iter()
            .filter(|p| escalate || !killed.contains_key(&p.pid))
            .collect();
        if !targets.is_empty() {
            let sig = if late {
                Signal::SIGKILL
            } else {
                Signal::SIGTERM
            };
            signal_all(&targets, sig, &mut killed);
        }
        sigkilled |= escalate;
        std::thread::sleep(Duration::from_millis(20));
    }
    killed.into_values().collect()
}

/// Anything of the run still alive, and ports it listened on that are still taken.
pub fn run_leftovers(w: &RunWatch) -> Vec<String> {
    let mut out: Vec<String> = run_members(w)
        .into_iter()
        .map(|p| format!("pid {} still alive: {}", p.pid, p.command))
        .collect();
    let ports: BTreeSet<u16> = {
        let tl = w.timeline.lock().unwrap_or_else(|e| e.into_inner());
        tl.sockets
            .values()
            .filter(|s| s.socket.state == "LISTEN")
            .map(|s| s.socket.local_port)
            .collect()
    };
    for port in ports {
        if port_in_use(port) {
            out.push(format!("port {port} is still taken"));
        }
    }
    out
}

/// Wait for the command (the root of the run) to end, reaping everything else meanwhile. When
/// the command stops (Ctrl-Z, SIGSTOP, a read from the terminal in the background) and doctor has
/// a terminal, doctor takes the terminal back and stops itself too, so the shell sees the job
/// stopped; once continued (`fg`/`bg`) it continues the command. Without a terminal a stopped
/// command stays stopped until someone continues it, as without doctor.
pub fn wait_for_root(w: &RunWatch, tty: Option<&Terminal>) -> Option<WaitStatus> {
    let root = w.root.load(Ordering::SeqCst);
    loop {
        match waitpid(None, Some(WaitPidFlag::__WALL | WaitPidFlag::WUNTRACED)) {
            Ok(WaitStatus::Stopped(pid, sig)) if pid.as_raw() == root => {
                if let Some(tty) = tty {
                    stop_with_the_command(root, sig, tty);
                }
            }
            Ok(status @ (WaitStatus::Exited(pid, _) | WaitStatus::Signaled(pid, _, _))) => {
                note_gone(w, pid.as_raw());
                if pid.as_raw() == root {
                    return Some(status);
                }
            }
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return None,
        }
    }
}

/// The command stopped: hand the terminal back, stop doctor the same way, and on SIGCONT give
/// the terminal to the command again (when doctor is in the foreground) and continue it.
fn stop_with_the_command(root: i32, sig: Signal, tty: &Terminal) {
    // Stopped for using the terminal from the background while doctor is in the foreground
    // (started with `&`, then `fg`): a shell would have given it the terminal; do that now.
    if matches!(sig, Signal::SIGTTIN | Signal::SIGTTOU) && tty.doctor_in_foreground() {
        tty.give_to(root);
        let _ = signal::killpg(Pid::from_raw(root), Signal::SIGCONT);
        return;
    }
    if tty.foreground() == Some(root) {
        tty.give_to(tty.own);
    }
    // SIGTTOU is ignored by doctor (to write while in the background), so it stops by SIGSTOP.
    let own = match sig {
        Signal::SIGTSTP | Signal::SIGTTIN => sig,
        _ => Signal::SIGSTOP,
    };
    // Returns once doctor is continued (or at once when its process group is orphaned and the
    // kernel discards a terminal stop signal).
    let _ = signal::raise(own);
    if tty.foreground() == Some(tty.own) {
        tty.give_to(root);
    }
    let _ = signal::killpg(Pid::from_raw(root), Signal::SIGCONT);
}

/// Whether doctor is a member of a pipeline (stdin, stdout or stderr is a pipe): then the command
/// shares the pipeline's process group and doctor leaves the terminal to the shell.
pub fn in_pipeline() -> bool {
    use std::os::unix::fs::FileTypeExt;
    ["/proc/self/fd/0", "/proc/self/fd/1", "/proc/self/fd/2"]
        .iter()
        .any(|fd| std::fs::metadata(fd).is_ok_and(|m| m.file_type().is_fifo()))
}

/// Whether doctor's process group is the terminal's foreground job made by a job-control shell
/// (the shell, doctor's parent, is in another group): an interactive pipeline. A pipe to a
/// parent in doctor's own group (a script without job control, `subprocess.Popen`, a test
/// harness) is not one.
pub fn in_foreground_job_of_a_shell() -> bool {
    let own = nix::unistd::getpgrp();
    let parent = nix::unistd::getpgid(Some(nix::unistd::getppid())).ok();
    Terminal::open().is_some_and(|t| t.doctor_in_foreground()) && parent != Some(own)
}

/// doctor's controlling terminal, for job control as a shell does it: the command's process group
/// gets the foreground while it runs (so pdb, `input()` and Ctrl-Z work) and doctor takes it back
/// after. SIGTTOU is ignored in doctor so that it may do so from the background.
pub struct Terminal {
    tty: std::os::fd::OwnedFd,
    /// doctor's own process group.
    pub own: i32,
    /// SIGTTOU was already ignored when doctor started (then the command inherits that).
    pub ttou_was_ignored: bool,
}

impl Terminal {
    /// The controlling terminal, when there is one (not in CI, a pipe or a daemon).
    pub fn open() -> Option<Terminal> {
        use nix::fcntl::OFlag;
        let tty = nix::fcntl::open(
            c"/dev/tty",
            OFlag::O_RDWR | OFlag::O_CLOEXEC | OFlag::O_NOCTTY,
            nix::sys::stat::Mode::empty(),
        )
        .ok()?;
        // SAFETY: SIG_IGN installs no handler; the child sets SIGTTOU back before exec.
        let before = unsafe { signal::signal(Signal::SIGTTOU, SigHandler::SigIgn) };
        Some(Terminal {
            tty,
            own: nix::unistd::getpgrp().as_raw(),
            ttou_was_ignored: matches!(before, Ok(SigHandler::SigIgn)),
        })
    }

    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.tty)
    }

    /// The terminal's foreground process group.
    pub fn foreground(&self) -> Option<i32> {
        let pg = nix::unistd::tcgetpgrp(&self.tty).ok()?.as_raw();
        (pg > 0).then_some(pg)
    }

    /// Whether doctor is in the foreground (then it may hand the terminal on).
    pub fn doctor_in_foreground(&self) -> bool {
        self.foreground() == Some(self.own)
    }

    pub fn give_to(&self, pgrp: i32) {
        // SIGTTOU is ignored, so no stop from the background.
        let _ = nix::unistd::tcsetpgrp(&self.tty, Pid::from_raw(pgrp));
    }
}

/// What a command started by `doctor run` does between fork and exec to be a shell's job: a
/// process group of its own (not in a pipeline), the terminal's foreground when doctor held it,
/// SIGTTOU back to its default when doctor changed it, and the signal mask, ignored signals and
/// closed standard descriptors doctor itself was started with ([`Entry`]).
#[derive(Clone, Copy)]
pub struct JobControl {
    own_group: bool,
    /// The terminal (-1: none) and doctor's group, which must hold its foreground to hand it on.
    tty_fd: std::os::fd::RawFd,
    doctor_pgrp: i32,
    /// Only what doctor changed is set back: an inherited SIG_IGN stays for the command.
    reset_ttou: bool,
    /// What doctor itself was given, for the command.
    entry: Entry,
}

impl JobControl {
    pub fn new(tty: Option<&Terminal>, own_group: bool) -> JobControl {
        JobControl {
            own_group,
            tty_fd: tty.map_or(-1, Terminal::raw_fd),
            doctor_pgrp: tty.map_or(-1, |t| t.own),
            reset_ttou: tty.is_some_and(|t| !t.ttou_was_ignored),
            entry: Entry::get(),
        }
    }

    /// Run in the child, after fork and before exec: async-signal-safe calls only.
    pub fn enter(&self) {
        use nix::unistd::{getpid, setpgid, tcgetpgrp, tcsetpgrp};
        // Should doctor die (SIGKILL), the command dies with it, as it would have been the one
        // killed without doctor; nothing of the run is left without its watcher.
        let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
        if self.own_group {
            let _ = setpgid(Pid::from_raw(0), Pid::from_raw(0));
        }
        if self.tty_fd >= 0 {
            // SAFETY: the terminal's descriptor stays open in the child until exec (CLOEXEC).
            let tty = unsafe { std::os::fd::BorrowedFd::borrow_raw(self.tty_fd) };
            // Take the foreground as a shell gives it to a job (SIGTTOU is still ignored here).
            if tcgetpgrp(tty).is_ok_and(|p| p.as_raw() == self.doctor_pgrp) {
                let _ = tcsetpgrp(tty, getpid());
            }
        }
        if self.reset_ttou {
            // SAFETY: SIG_DFL installs no handler.
            let _ = unsafe { signal::signal(Signal::SIGTTOU, SigHandler::SigDfl) };
        }
        self.entry.restore();
    }
}

/// CPU time (user + system) of this process's threads so far.
pub fn own_cpu_seconds() -> f64 {
    use nix::sys::resource::{UsageWho, getrusage};
    use nix::sys::time::TimeValLike;
    let Ok(u) = getrusage(UsageWho::RUSAGE_SELF) else {
        return 0.0;
    };
    (u.user_time().num_microseconds() + u.system_time().num_microseconds()) as f64 / 1e6
}

/// The signals `doctor run` passes on (see [`signal_loop`]).
pub type SignalMask = SigSet;

/// SIGINT/SIGTERM/SIGHUP/SIGUSR1/SIGUSR2 blocked in the calling thread (and every thread it
/// starts): they go to the one thread that reads them ([`signal_loop`]); children get doctor's
/// own starting mask back ([`JobControl::enter`]).
pub fn block_forwarded_signals() -> nix::Result<SigSet> {
    let entry = Entry::get();
    let mut mask = SigSet::empty();
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
    ] {
        // A signal ignored when doctor started (`nohup`, `CMD &` in a script) stays ignored, for
        // doctor and for the command: doctor neither passes it on nor stops the tree on it.
        if !entry.ignored(s) {
            mask.add(s);
        }
    }
    mask.thread_block()?;
    if entry.ignored(Signal::SIGCHLD) {
        // doctor waits for the command, which an ignored SIGCHLD would reap out of its hands;
        // the command gets the ignored SIGCHLD back before exec (JobControl::enter).
        // SAFETY: SIG_DFL installs no handler.
        unsafe { signal::signal(Signal::SIGCHLD, SigHandler::SigDfl) }?;
    }
    Ok(mask)
}

/// What doctor's own parent gave it, read before Rust's runtime changes anything: the runtime
/// ignores SIGPIPE and puts /dev/null on a closed descriptor 0, 1 or 2, and
/// `std::process::Command` empties the signal mask and resets SIGPIPE in the child. The command
/// gets back what doctor got (JobControl::enter), as it would without doctor.
#[derive(Clone, Copy, Default)]
pub struct Entry {
    /// Bit n-1: signal n was ignored.
    ignored: u64,
    /// Bit n-1: signal n was blocked.
    blocked: u64,
    /// Bit n: descriptor n (0, 1, 2) was closed.
    closed: u8,
}

static ENTRY_IGNORED: AtomicU64 = AtomicU64::new(0);
static ENTRY_BLOCKED: AtomicU64 = AtomicU64::new(0);
static ENTRY_CLOSED: AtomicU64 = AtomicU64::new(0);

/// Runs from `.init_array`, before Rust's runtime starts (and before `main`).
extern "C" fn record_entry() {
    let (mut ignored, mut blocked, mut closed) = (0u64, 0u64, 0u64);
    // SAFETY: queries only (a null new action and new mask); the descriptors are not used.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        let have_mask = libc::sigprocmask(libc::SIG_BLOCK, std::ptr::null(), &mut set) == 0;
        for sig in 1..=64 {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) == 0
                && old.sa_sigaction == libc::SIG_IGN
            {
                ignored |= 1 << (sig - 1);
            }
            if have_mask && libc::sigismember(&set, sig) == 1 {
                blocked |= 1 << (sig - 1);
            }
        }
        for fd in 0..3 {
            if libc::fcntl(fd, libc::F_GETFD) == -1 {
                closed |= 1 << fd;
            }
        }
    }
    ENTRY_IGNORED.store(ignored, Ordering::SeqCst);
    ENTRY_BLOCKED.store(blocked, Ordering::SeqCst);
    ENTRY_CLOSED.store(closed, Ordering::SeqCst);
}

#[used]
#[unsafe(link_section = ".init_array")]
static RECORD_ENTRY: extern "C" fn() = record_entry;

impl Entry {
    pub fn get() -> Entry {
        // Keeps the `.init_array` entry linked in wherever this module is used.
        std::hint::black_box(&RECORD_ENTRY);
        Entry {
            ignored: ENTRY_IGNORED.load(Ordering::SeqCst),
            blocked: ENTRY_BLOCKED.load(Ordering::SeqCst),
            closed: ENTRY_CLOSED.load(Ordering::SeqCst) as u8,
        }
    }

    pub fn ignored(&self, s: Signal) -> bool {
        self.ignored & (1 << (s as i32 - 1)) != 0
    }

    /// In the child before exec (async-signal-safe): the dispositions and mask doctor got, and
    /// the standard descriptors that were closed closed again.
    fn restore(&self) {
        for sig in [libc::SIGPIPE, libc::SIGCHLD] {
            if self.ignored & (1 << (sig - 1)) != 0 {
                // SAFETY: SIG_IGN installs no handler.
                unsafe { libc::signal(sig, libc::SIG_IGN) };
            }
        }
        // SAFETY: a mask built on the stack; sigprocmask and close are async-signal-safe.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for sig in 1..=64 {
                if self.blocked & (1 << (sig - 1)) != 0 {
                    libc::sigaddset(&mut set, sig);
                }
            }
            libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
            for fd in 0..3 {
                if self.closed & (1 << fd) != 0 {
                    libc::close(fd);
                }
            }
        }
    }
}

/// How a shell reports the command's end: its exit code, or 128 + the signal that killed it
/// (with the signal's name).
pub fn shell_status(status: Option<WaitStatus>) -> (i32, Option<String>) {
    match status {
        Some(WaitStatus::Exited(_, code)) => (code, None),
        Some(WaitStatus::Signaled(_, sig, _)) => (128 + sig as i32, Some(sig.as_str().to_string())),
        _ => (1, None),
    }
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
