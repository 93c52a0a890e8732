//! `doctor run -- CMD`: run a training command in its own process group, pass its output through,
//! watch its whole tree (polling, and where allowed exact bind/listen/connect tracing), kill
//! everything of it at the end, and explain a rendezvous failure.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use serde::Serialize;

use crate::analysis::traceback::{OutputFacts, read_output};
use crate::analysis::{Analysis, Role};
use crate::error::user_error;
use crate::model::finding::Finding;
use crate::model::snapshot::{Process, SCHEMA_VERSION, Snapshot, Socket};
use crate::render::{self, Paint, findings, paint};
use crate::sys::observe;
use crate::sys::supervise;
use crate::sys::trace::{self, SyscallEvent, Tracer};

#[derive(clap::Args)]
pub struct RunArgs {
    /// Kill the whole command tree after this many seconds
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    timeout: Option<f64>,
    /// Write the timeline and the diagnosis to FILE (.json, else YAML; secrets redacted)
    #[arg(short, long, visible_alias = "record", value_name = "FILE")]
    output: Option<PathBuf>,
    /// How often to look at the process tree, in milliseconds
    #[arg(long, value_name = "MS", default_value = "50", value_parser = clap::value_parser!(u64).range(5..=10_000))]
    interval: u64,
    /// Do not trace bind/listen/connect system calls (poll only)
    #[arg(long)]
    no_trace: bool,
    /// Explain what was seen even when the command succeeds
    #[arg(long)]
    explain: bool,
    /// Seconds between SIGTERM and SIGKILL when cleaning up
    #[arg(long, value_name = "SECONDS", default_value = "3", value_parser = parse_seconds)]
    grace: f64,
    /// The command to run (after `--`); doctor's own options come before it, and an unknown
    /// option there is an error, not the command
    #[arg(required = true, trailing_var_arg = true, value_name = "CMD")]
    command: Vec<OsString>,
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("'{s}' is not a positive number of seconds")),
    }
}

/// Bytes of command output kept for analysis (the newest are kept).
const OUTPUT_LIMIT: usize = 8 << 20;

/// What happened to one process of the run.
#[derive(Clone, Debug, Serialize)]
pub struct Seen {
    pub first_seen: f64,
    pub last_seen: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gone_at: Option<f64>,
    pub process: Process,
}

#[derive(Default)]
struct Timeline {
    processes: BTreeMap<i32, Seen>,
    sockets: BTreeMap<(u64, String), (f64, Socket)>,
    /// (pid, inode) pairs seen.
    holders: BTreeSet<(i32, u64)>,
}

#[derive(Serialize)]
struct RunDoc<'a> {
    schema_version: u32,
    command: Vec<String>,
    exit_status: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    signal: Option<String>,
    seconds: f64,
    timed_out: bool,
    interrupted: bool,
    tracing: &'a str,
    processes: Vec<&'a Seen>,
    sockets: Vec<serde_json::Value>,
    syscalls: &'a [SyscallEvent],
    output: &'a OutputFacts,
    diagnosis: &'a Diagnosis,
    killed: &'a [supervise::Killed],
    leftovers: &'a [String],
    output_bytes_dropped: usize,
    /// CPU time doctor itself used (all its threads; the command's is not counted).
    doctor_cpu_seconds: f64,
}

#[derive(Default, Serialize)]
pub struct Diagnosis {
    pub summary: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failing_pid: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errno: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holder_pid: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holder_role: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub path: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub script_line: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub findings: Vec<Finding>,
    /// `doctor scan` on the script that was run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub static_findings: Vec<crate::scan::Diagnostic>,
}

struct Shared {
    start: Instant,
    root: AtomicI32,
    done: AtomicBool,
    timed_out: AtomicBool,
    interrupts: AtomicI32,
    output: Mutex<(Vec<u8>, usize)>,
    timeline: Mutex<Timeline>,
    tag: String,
}

pub fn main(args: RunArgs) -> anyhow::Result<i32> {
    let start = Instant::now();
    let tag = supervise::new_tag("run");
    // Signals go to one thread that forwards them; children get a clean mask back in pre_exec.
    let mut mask = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        mask.add(s);
    }
    mask.thread_block().context("cannot block signals")?;
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER only changes how our own orphans are re-parented.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };

    let want_trace = !args.no_trace && trace::supported();
    let (status_r, status_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("pipe")?;
    let mut cmd = Command::new(&args.command[0]);
    cmd.args(&args.command[1..])
        .env(supervise::TAG_VAR, &tag)
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let status_fd = std::os::fd::AsRawFd::as_raw_fd(&status_w);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::setpgid(0, 0);
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            let byte: [u8; 1] = if want_trace {
                match trace::install_in_child() {
                    Ok(()) => [b'T'],
                    Err(e) => [e.raw_os_error().unwrap_or(0).clamp(1, 255) as u8],
                }
            } else {
                [b'N']
            };
            libc::write(status_fd, byte.as_ptr() as *const _, 1);
            Ok(())
        });
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let name = args.command[0].to_string_lossy();
            let hint = if e.kind() == std::io::ErrorKind::NotFound {
                "check the spelling and PATH; use `doctor run -- python train.py`"
            } else {
                ""
            };
            return Err(user_error(format!("cannot run `{name}`: {e}"), hint));
        }
    };
    drop(status_w);
    let mut byte = [0u8; 1];
    let traced = {
        let mut f = std::fs::File::from(status_r);
        f.read_exact(&mut byte).is_ok() && byte[0] == b'T'
    };
    let tracing = if traced {
        "ptrace+seccomp"
    } else if want_trace {
        eprintln!(
            "doctor: tracing bind/connect is not allowed here ({}); falling back to polling every {} ms",
            std::io::Error::from_raw_os_error(byte[0] as i32),
            args.interval
        );
        "polling"
    } else {
        "polling"
    };
    let root = child.id() as i32;
    let shared = Arc::new(Shared {
        start,
        root: AtomicI32::new(root),
        done: AtomicBool::new(false),
        timed_out: AtomicBool::new(false),
        interrupts: AtomicI32::new(0),
        output: Mutex::new((Vec::new(), 0)),
        timeline: Mutex::new(Timeline::default()),
        tag: tag.clone(),
    });
    let pumps = [
        pump(child.stdout.take().expect("piped"), false, shared.clone()),
        pump(child.stderr.take().expect("piped"), true, shared.clone()),
    ];
    let poller = {
        let s = shared.clone();
        let interval = Duration::from_millis(args.interval);
        std::thread::spawn(move || {
            while !s.done.load(Ordering::SeqCst) {
                poll_once(&s);
                std::thread::sleep(interval);
            }
        })
    };
    {
        let s = shared.clone();
        let grace = args.grace;
        std::thread::spawn(move || signal_loop(s, mask, grace));
    }
    if let Some(t) = args.timeout {
        let s = shared.clone();
        let grace = args.grace;
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs_f64(t));
            if !s.done.load(Ordering::SeqCst) {
                s.timed_out.store(true, Ordering::SeqCst);
                eprintln!("doctor: timeout after {t} s: stopping the command tree");
                terminate_tree(&s, grace);
            }
        });
    }

    // This thread spawned the command, so it is the tracer: it handles every wait status.
    let mut tracer = Tracer::new(start, root);
    let mut root_status: Option<WaitStatus> = None;
    if traced {
        match waitpid(Pid::from_raw(root), Some(WaitPidFlag::__WALL)) {
            Ok(WaitStatus::Stopped(_, Signal::SIGTRAP)) => {
                if let Err(e) = tracer.attach_root(root) {
                    eprintln!("doctor: cannot set tracing options ({e}); continuing");
                    let _ = nix::sys::ptrace::detach(Pid::from_raw(root), None);
                }
            }
            Ok(other) => root_status = Some(other),
            Err(e) => eprintln!("doctor: wait failed: {e}"),
        }
    }
    while root_status.is_none() {
        match waitpid(None, Some(WaitPidFlag::__WALL)) {
            Ok(status) => {
                if traced && tracer.handle(status) {
                    continue;
                }
                if let WaitStatus::Exited(pid, _) | WaitStatus::Signaled(pid, _, _) = status {
                    note_gone(&shared, pid.as_raw());
                    if pid.as_raw() == root {
                        root_status = Some(status);
                    }
                }
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    // The command is over: nothing of it may outlive doctor.
    let killed = cleanup(&shared, &mut tracer, traced, args.grace);
    shared.done.store(true, Ordering::SeqCst);
    let _ = poller.join();
    for p in pumps {
        let _ = p.join();
    }

    let (exit_status, signal) = match root_status {
        Some(WaitStatus::Exited(_, code)) => (code, None),
        Some(WaitStatus::Signaled(_, sig, _)) => (128 + sig as i32, Some(sig.as_str().to_string())),
        _ => (1, None),
    };
    let text = {
        let out = shared.output.lock().expect("output lock");
        String::from_utf8_lossy(&out.0).into_owned()
    };
    let facts = read_output(&text);
    let mut timeline = shared.timeline.lock().expect("timeline lock");
    let leftovers = leftovers(&shared, &timeline);
    for (pid, p) in std::mem::take(&mut tracer.processes) {
        timeline.processes.entry(pid).or_insert(Seen {
            first_seen: 0.0,
            last_seen: 0.0,
            gone_at: None,
            process: p,
        });
    }
    let diagnosis = diagnose(&timeline, &tracer.events, &facts, &args.command);
    let failed = exit_status != 0;
    let color = render::stderr_color();
    if failed
        || args.explain
        || !diagnosis.findings.is_empty()
        || !killed.is_empty()
        || !leftovers.is_empty()
    {
        let text = render(
            &diagnosis,
            exit_status,
            seconds,
            &killed,
            &leftovers,
            tracing,
            color,
        );
        eprint!("{}", clean_text(&text));
    }
    if let Some(path) = &args.output {
        let doc = RunDoc {
            schema_version: SCHEMA_VERSION,
            command: args
                .command
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
            exit_status,
            signal,
            seconds,
            timed_out: shared.timed_out.load(Ordering::SeqCst),
            interrupted: shared.interrupts.load(Ordering::SeqCst) > 0,
            tracing,
            processes: timeline.processes.values().collect(),
            sockets: timeline
                .sockets
                .values()
                .map(|(t, s)| serde_json::json!({"t": t, "socket": s}))
                .collect(),
            syscalls: &tracer.events,
            output: &facts,
            diagnosis: &diagnosis,
            killed: &killed,
            leftovers: &leftovers,
            output_bytes_dropped: shared.output.lock().expect("output lock").1,
            doctor_cpu_seconds: own_cpu_seconds(),
        };
        let format = render::DocFormat::of_path(path).format();
        let mut value = serde_json::to_value(&doc)?;
        if !render::settings().show_secrets {
            render::redact::redact(&mut value);
        }
        std::fs::write(path, render::document(&value, format)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        render::note(&format!(
            "doctor: wrote the timeline and diagnosis to {}",
            path.display()
        ));
    }
    Ok(exit_status)
}

/// doctor's explanation as printed: secrets redacted (unless `--show-secrets`); `render`
/// escapes the control characters of what it quotes.
fn clean_text(text: &str) -> String {
    if render::settings().show_secrets {
        text.to_string()
    } else {
        render::redact::scrub_text(text)
    }
}

/// Copy one output stream through, live, and keep its newest bytes for analysis.
fn pump(
    mut from: impl Read + Send + 'static,
    stderr: bool,
    s: Arc<Shared>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let chunk = &buf[..n];
            // A closed stdout of ours must not stop the command: keep reading, stop writing.
            let _ = if stderr {
                std::io::stderr().write_all(chunk)
            } else {
                std::io::stdout()
                    .write_all(chunk)
                    .and_then(|_| std::io::stdout().flush())
            };
            let mut out = s.output.lock().expect("output lock");
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

/// Every live process of the run: supervise's members (the command's tree and whatever carries
/// the run's marker, daemons that left the process group included) and anything below doctor.
fn run_members(s: &Shared) -> Vec<supervise::ProcInfo> {
    let mut members = supervise::members_of(&s.tag, s.root.load(Ordering::SeqCst));
    for pid in descendants() {
        if !members.iter().any(|p| p.pid == pid)
            && let Some(p) = supervise::proc_info(pid).filter(|p| p.state != "Z")
        {
            members.push(p);
        }
    }
    members
}

fn poll_once(s: &Shared) {
    let t = s.start.elapsed().as_secs_f64();
    let pids = descendants();
    let mut fresh = Vec::new();
    for pid in &pids {
        if let Some(p) = observe::process(*pid) {
            fresh.push(p);
        }
    }
    let inodes: BTreeSet<u64> = fresh
        .iter()
        .flat_map(|p| p.socket_inodes.iter().copied())
        .collect();
    let sockets: Vec<Socket> = if inodes.is_empty() {
        Vec::new()
    } else {
        observe::read_sockets()
            .into_iter()
            .filter(|so| inodes.contains(&so.inode))
            .collect()
    };
    let mut tl = s.timeline.lock().expect("timeline lock");
    for p in fresh {
        for &inode in &p.socket_inodes {
            tl.holders.insert((p.pid, inode));
        }
        match tl.processes.get_mut(&p.pid) {
            Some(seen) if seen.process.start_time == p.start_time => {
                seen.last_seen = t;
                // The newest view (after an exec, or a DataLoader worker renaming itself), with
                // every socket it ever held and the parent it had at birth (an orphan
                // re-parented to doctor still belongs to its job).
                let old = std::mem::replace(&mut seen.process, p);
                let new = &mut seen.process;
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
            _ => {
                tl.processes.insert(
                    p.pid,
                    Seen {
                        first_seen: t,
                        last_seen: t,
                        gone_at: None,
                        process: p,
                    },
                );
            }
        }
    }
    for so in sockets {
        tl.sockets
            .entry((so.inode, so.state.clone()))
            .or_insert((t, so));
    }
}

fn note_gone(s: &Shared, pid: i32) {
    let t = s.start.elapsed().as_secs_f64();
    if let Some(seen) = s
        .timeline
        .lock()
        .expect("timeline lock")
        .processes
        .get_mut(&pid)
    {
        seen.gone_at.get_or_insert(t);
    }
}

/// Forward SIGINT/SIGTERM/SIGHUP to the command's process group; a second Ctrl-C stops the tree.
fn signal_loop(s: Arc<Shared>, mask: SigSet, grace: f64) {
    loop {
        let Ok(sig) = mask.wait() else { return };
        if s.done.load(Ordering::SeqCst) {
            continue;
        }
        let n = s.interrupts.fetch_add(1, Ordering::SeqCst);
        let root = s.root.load(Ordering::SeqCst);
        if n == 0 {
            let _ = kill(Pid::from_raw(-root), sig);
        } else {
            eprintln!("doctor: {sig} again: stopping the whole command tree");
            terminate_tree(&s, grace);
        }
    }
}

/// SIGTERM to every process of the run, SIGKILL to what is left after `grace` seconds (from
/// the timeout or a second Ctrl-C; the waiting thread reaps).
fn terminate_tree(s: &Shared, grace: f64) {
    let mut killed = BTreeMap::new();
    supervise::signal_all(&run_members(s), Signal::SIGTERM, &mut killed);
    let deadline = Instant::now() + Duration::from_secs_f64(grace);
    while Instant::now() < deadline && !s.done.load(Ordering::SeqCst) {
        if run_members(s).is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    supervise::signal_all(&run_members(s), Signal::SIGKILL, &mut killed);
}

/// After the command ended: stop every remaining process of the run and reap it. This thread
/// is the tracer, so it reaps (and keeps traced tasks moving) itself.
fn cleanup(s: &Shared, tracer: &mut Tracer, traced: bool, grace: f64) -> Vec<supervise::Killed> {
    let mut killed = BTreeMap::new();
    let term_deadline = Instant::now() + Duration::from_secs_f64(grace);
    let hard_deadline = term_deadline + Duration::from_secs(5);
    let mut sigkilled = false;
    loop {
        loop {
            match waitpid(None, Some(WaitPidFlag::__WALL | WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(status) => {
                    if traced && tracer.handle(status) {
                        continue;
                    }
                    if let WaitStatus::Exited(pid, _) | WaitStatus::Signaled(pid, _, _) = status {
                        note_gone(s, pid.as_raw());
                    }
                }
            }
        }
        let members = run_members(s);
        if (members.is_empty() && descendants().is_empty()) || Instant::now() > hard_deadline {
            break;
        }
        // Each member gets SIGTERM once; what is still there after the grace gets SIGKILL once;
        // members that appear later get the signal of the phase.
        let late = Instant::now() > term_deadline;
        let escalate = late && !sigkilled;
        let targets: Vec<supervise::ProcInfo> = members
            .into_iter()
            .filter(|p| escalate || !killed.contains_key(&p.pid))
            .collect();
        if !targets.is_empty() {
            let sig = if late {
                Signal::SIGKILL
            } else {
                Signal::SIGTERM
            };
            supervise::signal_all(&targets, sig, &mut killed);
        }
        sigkilled |= escalate;
        std::thread::sleep(Duration::from_millis(20));
    }
    killed.into_values().collect()
}

/// Anything of the run still alive, and ports it listened on that are still taken.
fn leftovers(s: &Shared, tl: &Timeline) -> Vec<String> {
    let mut out: Vec<String> = run_members(s)
        .into_iter()
        .map(|p| format!("pid {} still alive: {}", p.pid, p.command))
        .collect();
    let ports: BTreeSet<u16> = tl
        .sockets
        .values()
        .filter(|(_, so)| so.state == "LISTEN")
        .map(|(_, so)| so.local_port)
        .collect();
    for port in ports {
        if supervise::port_in_use(port) {
            out.push(format!("port {port} is still taken"));
        }
    }
    out
}

/// Join the output, the traced calls and the observed tree into an explanation.
fn diagnose(
    tl: &Timeline,
    events: &[SyscallEvent],
    facts: &OutputFacts,
    command: &[OsString],
) -> Diagnosis {
    let mut snap = Snapshot {
        schema_version: SCHEMA_VERSION,
        taken_at: observe::now(),
        host: observe::host_facts(),
        processes: tl.processes.values().map(|s| s.process.clone()).collect(),
        sockets: tl.sockets.values().map(|(_, so)| so.clone()).collect(),
        unreadable: Vec::new(),
    };
    snap.processes.sort_by_key(|p| p.pid);
    let failed_bind = events
        .iter()
        .find(|e| e.syscall == "bind" && e.errno == Some(libc::EADDRINUSE));
    let port = failed_bind
        .and_then(|e| e.port)
        .or_else(|| facts.bind_errors.iter().find_map(|b| b.port));
    let a = Analysis::new(&snap, &port.into_iter().collect::<Vec<_>>());
    let mut d = Diagnosis {
        port,
        ..Diagnosis::default()
    };
    let describe = |pid: i32| -> String {
        let id = a
            .identity(pid)
            .map(|i| i.label())
            .filter(|l| !l.is_empty())
            .map(|l| format!(", {l}"))
            .unwrap_or_default();
        format!("pid {pid} ({}{id})", a.role(pid).name())
    };
    if let Some(e) = failed_bind {
        d.failing_pid = Some(e.pid);
        d.errno = Some(format!(
            "errno {} {}",
            libc::EADDRINUSE,
            e.errno_name.clone().unwrap_or_default()
        ));
        let addr = e.addr.map(|x| x.to_string()).unwrap_or_default();
        d.summary.push(format!(
            "{} failed bind({addr}:{}) with errno 98 EADDRINUSE at {:.2}s",
            describe(e.pid),
            e.port.unwrap_or(0),
            e.t
        ));
    } else if let Some(b) = facts.bind_errors.first() {
        d.summary
            .push(format!("the output reports a bind failure: {}", b.message));
    }
    // Who held the port: an earlier successful bind in the tree, or a listener seen by polling.
    if let Some(port) = port {
        let holder = events
            .iter()
            .find(|e| {
                e.syscall == "bind"
                    && e.result == 0
                    && e.port == Some(port)
                    && Some(e.pid) != d.failing_pid
            })
            .map(|e| (e.pid, e.t))
            .or_else(|| {
                tl.sockets
                    .values()
                    .filter(|(_, so)| so.state == "LISTEN" && so.local_port == port)
                    .find_map(|(t, so)| {
                        tl.holders
                            .iter()
                            .find(|(_, i)| *i == so.inode)
                            .map(|(pid, _)| (*pid, *t))
                    })
            });
        if let Some((h, t)) = holder {
            d.holder_pid = Some(h);
            d.holder_role = Some(a.role(h).name().to_string());
            d.summary.push(format!(
                "port {port} was held by {}, which bound it at {t:.2}s",
                describe(h)
            ));
        } else if d.failing_pid.is_some() || !facts.bind_errors.is_empty() {
            // Held by something outside the run: look at the machine now.
            let live = observe::snapshot();
            let la = Analysis::after_failed_bind(&live, port, crate::sys::freeport::pick);
            let holders: Vec<i32> = crate::analysis::holders::holders(&la, false)
                .iter()
                .filter(|h| h.port == port && h.state == "LISTEN")
                .filter_map(|h| h.pid)
                .collect();
            if let Some(&h) = holders.first() {
                d.holder_pid = Some(h);
                d.holder_role = Some(la.role(h).name().to_string());
                d.summary.push(format!(
                    "port {port} is held by pid {h} ({}) outside this run",
                    la.role(h).name()
                ));
            }
            d.findings
                .extend(la.findings.into_iter().filter(|f| f.ports.contains(&port)));
        }
    }
    // The path between the holder and the failing process.
    if let (Some(h), Some(w)) = (d.holder_pid, d.failing_pid) {
        let up = a.ancestors(w);
        if let Some(pos) = up.iter().position(|&p| p == h) {
            let mut path: Vec<i32> = up[..pos].iter().rev().copied().collect();
            path.insert(0, h);
            path.push(w);
            d.path = path
                .iter()
                .map(|&p| format!("{p} {}", a.role(p).name()))
                .collect();
        }
    }
    // The line of the user's script that ran again, from the traceback.
    let tb = facts
        .tracebacks
        .iter()
        .find(|t| t.via_spawn && t.user_frame.is_some())
        .or_else(|| {
            facts
                .tracebacks
                .iter()
                .find(|t| t.user_frame.is_some() && t.error.contains("EADDRINUSE"))
        });
    if let Some(f) = tb.and_then(|t| t.user_frame.as_ref()) {
        d.script_line = Some(format!("{}:{}", f.file, f.line));
        d.code = f.code.as_deref().map(strip_comment);
    }
    // D001 in its transient form: a rank's spawn/forkserver child tried the rank's port.
    if let Some(w) = d.failing_pid {
        let ancestors = a.ancestors(w);
        let rank = ancestors
            .iter()
            .copied()
            .find(|&q| a.role(q) == Role::Rank)
            .filter(|&r| a.carries_identity_of(w, r));
        if let Some(r) = rank {
            let line = d
                .script_line
                .clone()
                .map(|l| format!(" at {l}"))
                .unwrap_or_default();
            let launch = d
                .code
                .clone()
                .unwrap_or_else(|| "the distributed launch".into());
            let mut f = Finding::new(
                "D001",
                format!(
                    "{} re-ran `{launch}`{line} and tried to bind the rendezvous port {} of rank {}; it failed with \
                     EADDRINUSE because the rank holds it",
                    describe(w),
                    port.unwrap_or(0),
                    describe(r)
                ),
                vec![r, w],
                port.into_iter().collect(),
                format!(
                    "move `{launch}`{line} into `main()` under `if __name__ == \"__main__\":` so spawn/forkserver \
                     children (DataLoader workers) do not run it again"
                ),
            );
            let mut path: Vec<i32> = ancestors.iter().take_while(|&&q| q != r).copied().collect();
            path.push(r);
            path.reverse();
            path.push(w);
            f.path = path;
            d.findings.insert(0, f);
        }
    }
    // Findings the observed tree shows by itself (connecting duplicates, duplicate ranks).
    // D003/D007 describe leftovers and TIME_WAIT after the fact, D004 a risk of the port choice
    // rather than what happened: they are not part of explaining this run.
    for f in a.findings {
        let about_the_run = !matches!(f.code, "D003" | "D004" | "D007");
        if about_the_run
            && !d
                .findings
                .iter()
                .any(|g| g.code == f.code && g.pids == f.pids)
        {
            d.findings.push(f);
        }
    }
    // The static view of the same program: `doctor scan` on the script that was run.
    let argv: Vec<String> = command
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if let Some(script) = crate::analysis::script_of(&argv).filter(|s| s.ends_with(".py")) {
        let path = std::path::Path::new(&script);
        if path.is_file() {
            // Assume what the interpreter that ran it does about the default start method.
            let opts = crate::scan::ScanOptions {
                python_version: crate::scan::python_version_of(&argv[0]),
                ..crate::scan::ScanOptions::default()
            };
            d.static_findings = crate::scan::scan_file(path, &opts)
                .into_iter()
                .filter(|f| f.code != "S900")
                .collect();
        }
    }
    d
}

/// CPU time (user + system) of this process's threads so far.
fn own_cpu_seconds() -> f64 {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we pass.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return 0.0;
    }
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

/// `fabric.launch()  # note` -> `fabric.launch()` (a `#` inside a string literal stays).
fn strip_comment(code: &str) -> String {
    let mut quote: Option<char> = None;
    for (i, ch) in code.char_indices() {
        match (quote, ch) {
            (None, '#') => return code[..i].trim_end().to_string(),
            (None, '"' | '\'') => quote = Some(ch),
            (Some(q), c) if c == q => quote = None,
            _ => {}
        }
    }
    code.trim_end().to_string()
}

fn render(
    d: &Diagnosis,
    exit_status: i32,
    seconds: f64,
    killed: &[supervise::Killed],
    leftovers: &[String],
    tracing: &str,
    color: bool,
) -> String {
    let label = paint("doctor:", Paint::Bold, color);
    let mut s = String::new();
    s.push_str(&format!("\n{label} the command exited with status {exit_status} after {seconds:.1}s (watched by {tracing})\n"));
    let e = |t: &str| render::escape_control(t).into_owned();
    for line in &d.summary {
        s.push_str(&format!("{label} {}\n", e(line)));
    }
    if !d.path.is_empty() {
        s.push_str(&format!("{label} path: {}\n", e(&d.path.join(" -> "))));
    }
    if let Some(l) = &d.script_line {
        let code = d
            .code
            .as_deref()
            .map(|c| format!("    {}", e(c)))
            .unwrap_or_default();
        s.push_str(&format!(
            "{label} the line that ran again: {}{code}\n",
            e(l)
        ));
    }
    // The static view of the same script, in the one finding style.
    for f in &d.static_findings {
        let same = d
            .script_line
            .as_deref()
            .is_some_and(|l| l.ends_with(&format!(":{}", f.line)));
        let message = if same {
            format!("{} (doctor scan; the same line)", f.message)
        } else {
            format!("{} (doctor scan)", f.message)
        };
        s.push_str(&findings::heading(
            f.severity, f.code, f.name, &message, color,
        ));
        s.push_str(&findings::location_line(
            1,
            &f.path,
            f.line as u64,
            f.column as u64,
            color,
        ));
    }
    s.push_str(&findings::render_findings(&d.findings, color));
    if !killed.is_empty() {
        s.push_str(&format!(
            "{label} cleaned up {} leftover processes:\n",
            killed.len()
        ));
        for k in killed {
            s.push_str(&format!(
                "  {} {} {}\n",
                k.pid,
                k.signal,
                e(&render::shorten(&k.command, 100))
            ));
        }
    }
    if leftovers.is_empty() {
        s.push_str(&format!(
            "{label} nothing of the run is left; its ports are free\n"
        ));
    } else {
        for l in leftovers {
            s.push_str(&format!(
                "{label} {} {}\n",
                paint("left behind:", Paint::Red, color),
                e(l)
            ));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_are_stripped_from_code() {
        assert_eq!(strip_comment("fabric.launch()  # BUG"), "fabric.launch()");
        assert_eq!(strip_comment("print('#1')  # x"), "print('#1')");
    }
}
