//! `doctor run -- CMD`: run a training command in its own process group with the terminal's
//! foreground, pass its output through, watch its whole tree (polling, and where allowed exact
//! bind/listen tracing by seccomp user notification), kill everything of it at the end,
//! and explain a rendezvous failure. Supervision lives in `sys::supervise`, tracing in
//! `sys::trace`, the explanation in `analysis::run_diagnosis` and `render::run`.

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

use crate::analysis::run_diagnosis::{self, Diagnosis, RunSeen, Stop, Stopped};
use crate::analysis::traceback::{OutputFacts, read_output};
use crate::error::user_error;
use crate::model::envelope::{Envelope, Kind};
use crate::model::run::{Seen, SeenSocket, SyscallEvent};
use crate::model::snapshot::Snapshot;
use crate::render;
use crate::sys::observe;
use crate::sys::supervise::{self, Killed, RunWatch, Terminal};
use crate::sys::trace::{self, ChildStatus, Traced};

#[derive(clap::Args)]
pub struct RunArgs {
    /// Kill the whole command tree after this many seconds
    #[arg(long, value_name = "SECONDS", value_parser = super::parse_timeout)]
    timeout: Option<f64>,
    /// Write the timeline and the diagnosis to FILE (.json, else YAML; secrets redacted)
    #[arg(short, long, visible_alias = "record", value_name = "FILE")]
    output: Option<PathBuf>,
    /// The record's format: json or yaml (with -o, else from its extension); without -o the
    /// record is printed on stdout after the command ends
    #[arg(long, value_enum, alias = "output-format")]
    format: Option<render::DocFormat>,
    /// How often to look at the process tree, in milliseconds
    #[arg(long, value_name = "MS", default_value = "50", value_parser = clap::value_parser!(u64).range(5..=10_000))]
    interval: u64,
    /// Do not trace bind/listen system calls (poll only)
    #[arg(long)]
    no_trace: bool,
    /// Explain what was seen even when the command succeeds
    #[arg(long)]
    explain: bool,
    /// Seconds between SIGTERM and SIGKILL when cleaning up
    #[arg(long, value_name = "SECONDS", default_value = "3", value_parser = super::parse_grace)]
    grace: f64,
    /// The command to run (after `--`); doctor's own options come before it, and an unknown
    /// option there is an error, not the command
    #[arg(required = true, trailing_var_arg = true, value_name = "CMD")]
    command: Vec<OsString>,
}

/// The `tracing` value of a traced run in the record.
pub const TRACED_BY: &str = "seccomp-notify";

#[derive(Serialize)]
struct RunDoc<'a> {
    #[serde(flatten)]
    envelope: Envelope,
    command: Vec<String>,
    exit_status: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    signal: Option<String>,
    seconds: f64,
    timed_out: bool,
    interrupted: bool,
    tracing: &'a str,
    processes: Vec<&'a Seen>,
    sockets: Vec<&'a SeenSocket>,
    syscalls: &'a [SyscallEvent],
    output: &'a OutputFacts,
    diagnosis: DiagnosisDoc<'a>,
    killed: &'a [Killed],
    leftovers: &'a [String],
    output_bytes_dropped: usize,
    /// CPU time doctor itself used (all its threads; the command's is not counted).
    doctor_cpu_seconds: f64,
}

/// The diagnosis as the record shows it, with `doctor scan` of the script that was run.
#[derive(Serialize)]
struct DiagnosisDoc<'a> {
    #[serde(flatten)]
    diagnosis: &'a Diagnosis,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    static_findings: &'a [crate::scan::Diagnostic],
}

/// How the command ended.
struct Outcome {
    exit_status: i32,
    signal: Option<String>,
    seconds: f64,
    killed: Vec<Killed>,
    leftovers: Vec<String>,
    traced: Traced,
}

/// How the command is watched.
struct Watching {
    /// "seccomp-notify" or "polling".
    tracing: &'static str,
    notes: Vec<String>,
    listener: Option<OwnedFd>,
}

pub fn main(args: RunArgs) -> anyhow::Result<i32> {
    if let Some(path) = &args.output {
        crate::sys::output::check_writable(path)?;
    }
    let start = Instant::now();
    let tag = supervise::new_tag("run");
    let mask = supervise::block_forwarded_signals().context("cannot block signals")?;
    supervise::become_subreaper()?;
    // In a pipeline that a job-control shell started in the terminal's foreground
    // (`doctor run -- CMD | less`), the command stays in the pipeline's process group, as it
    // would without doctor: the other members keep the terminal, and the terminal's signals
    // reach the command directly. Otherwise it gets a group of its own (and, when doctor is
    // alone in the foreground, the terminal's foreground), and doctor passes signals on.
    let in_pipeline = supervise::in_pipeline();
    let shared = in_pipeline && supervise::in_foreground_job_of_a_shell();
    let tty = if shared { None } else { Terminal::open() };
    let (want_trace, mut notes) = decide_tracing(&args);
    let (mut child, status) = spawn(
        &args,
        &tag,
        tty.as_ref().filter(|_| !in_pipeline),
        !shared,
        want_trace,
    )?;
    let mut watching = watching(&args, want_trace, &status, &mut notes);
    let root = child.id() as i32;
    let w = RunWatch::new(start, &tag, root);
    if let Some(t) = &tty
        && !in_pipeline
    {
        // The child took the foreground itself before exec (JobControl::enter); doctor gives it
        // here as well, for the case where the child was faster than doctor's own setup.
        if t.doctor_in_foreground() {
            t.give_to(root);
        }
        if t.foreground() == Some(root) {
            w.command_has_terminal.store(true, Ordering::SeqCst);
        }
    }
    let at_timeout: Arc<Mutex<Option<Snapshot>>> = Arc::default();
    let threads = start_watchers(
        &args,
        &w,
        &mut child,
        mask,
        watching.listener.take(),
        &at_timeout,
    );
    let root_status = supervise::wait_for_root(&w, tty.as_ref());
    if let Some(t) = &tty
        && t.foreground() == Some(root)
    {
        t.give_to(t.own);
    }
    w.command_has_terminal.store(false, Ordering::SeqCst);
    let outcome = finish(&args, &w, threads, root_status);
    let at_timeout = at_timeout.lock().unwrap_or_else(|e| e.into_inner()).take();
    let (diagnosis, facts) = explain(&w, &outcome, at_timeout.as_ref());
    let scanned = scan_the_script(&args.command);
    let d = DiagnosisDoc {
        diagnosis: &diagnosis,
        static_findings: &scanned,
    };
    report(&args, &w, &outcome, &d, &facts, &watching)?;
    Ok(outcome.exit_status)
}

/// Whether to trace, and why not. A setuid or setgid command would lose its privileges under
/// the filter where doctor lacks CAP_SYS_ADMIN (the kernel then requires no_new_privs), so it is
/// watched by polling instead, and doctor says so at once.
fn decide_tracing(args: &RunArgs) -> (bool, Vec<String>) {
    if args.no_trace || !trace::supported() {
        return (false, Vec::new());
    }
    if let Some(release) = trace::kernel_too_old() {
        eprintln!(
            "doctor: tracing bind/listen needs Linux 5.6 or newer (this is {release}); falling back to polling every {} ms",
            args.interval
        );
        return (false, Vec::new());
    }
    if let Some(exe) = trace::privileged_program(&args.command[0])
        && !trace::has_cap_sys_admin()
    {
        let note = format!(
            "{} is setuid/setgid or has file capabilities: tracing would run it without its \
             privileges (no_new_privs), so \
             it is watched by polling; pass --no-trace to ask for that",
            exe.display()
        );
        eprintln!("doctor: {note}");
        return (false, vec![note]);
    }
    (true, Vec::new())
}

/// Start the command (`sys::trace::spawn_watched`); a command that cannot start is the user's
/// error.
fn spawn(
    args: &RunArgs,
    tag: &str,
    tty: Option<&Terminal>,
    own_group: bool,
    want_trace: bool,
) -> anyhow::Result<(Child, ChildStatus)> {
    let job = supervise::JobControl::new(tty, own_group);
    trace::spawn_watched(&args.command, tag, job, want_trace).map_err(|e| {
        let name = args.command[0].to_string_lossy();
        let hint = if e.kind() == std::io::ErrorKind::NotFound {
            "check the spelling and PATH; use `doctor run -- python train.py`"
        } else {
            "check that the program is executable; `doctor run -- CMD` runs CMD as your shell would"
        };
        user_error(format!("cannot run `{name}`: {e}"), hint)
    })
}

/// What the child's report means for how the run is watched; says so when tracing was refused.
fn watching(
    args: &RunArgs,
    want_trace: bool,
    status: &ChildStatus,
    notes: &mut Vec<String>,
) -> Watching {
    let mut listener = None;
    let tracing = match (status.byte, &status.listener) {
        (Some(b @ (trace::TRACED | trace::TRACED_NO_NEW_PRIVS)), Some(fd)) => {
            listener = fd.try_clone().ok();
            if b == trace::TRACED_NO_NEW_PRIVS {
                notes.push(
                    "the command ran with no_new_privs (tracing without CAP_SYS_ADMIN needs it): \
                     setuid programs inside it (sudo, ping) ran without their privileges; \
                     --no-trace avoids that"
                        .into(),
                );
            }
            TRACED_BY
        }
        (Some(b), _) if want_trace => {
            eprintln!(
                "doctor: tracing bind/listen is not allowed here ({}); falling back to polling every {} ms",
                std::io::Error::from_raw_os_error(b as i32),
                args.interval
            );
            "polling"
        }
        _ => "polling",
    };
    Watching {
        tracing,
        notes: std::mem::take(notes),
        listener,
    }
}

struct Watchers {
    pumps: [JoinHandle<()>; 2],
    poller: JoinHandle<()>,
    tracer: Option<(JoinHandle<()>, Arc<Mutex<Traced>>)>,
}

/// The threads of a run: output pumps, the poller, the signal forwarder, the timeout and the
/// tracer that answers the filter's notifications.
fn start_watchers(
    args: &RunArgs,
    w: &Arc<RunWatch>,
    child: &mut Child,
    mask: supervise::SignalMask,
    listener: Option<OwnedFd>,
    at_timeout: &Arc<Mutex<Option<Snapshot>>>,
) -> Watchers {
    let pumps = [
        supervise::pump(child.stdout.take().expect("piped"), false, w.clone()),
        supervise::pump(child.stderr.take().expect("piped"), true, w.clone()),
    ];
    let poller = {
        let w = w.clone();
        let interval = Duration::from_millis(args.interval);
        std::thread::spawn(move || {
            while !w.done.load(Ordering::SeqCst) {
                supervise::poll_once(&w);
                std::thread::sleep(interval);
            }
        })
    };
    {
        let w = w.clone();
        let grace = args.grace;
        std::thread::spawn(move || supervise::signal_loop(w, mask, grace));
    }
    if let Some(t) = args.timeout {
        let w = w.clone();
        let grace = args.grace;
        let slot = at_timeout.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs_f64(t));
            if !w.done.load(Ordering::SeqCst) {
                w.timed_out.store(true, Ordering::SeqCst);
                // The machine as the command stands when it is stopped: what `doctor ports`
                // would judge now (a rendezvous that has not completed: D009).
                let now = observe::snapshot();
                *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(now);
                eprintln!("doctor: timeout after {t} s: stopping the command tree");
                supervise::terminate_tree(&w, grace);
            }
        });
    }
    let tracer = listener.map(|fd| {
        let w = w.clone();
        let traced = Arc::new(Mutex::new(Traced::default()));
        let out = traced.clone();
        let handle = std::thread::spawn(move || {
            trace::serve(fd, w.start, || w.done.load(Ordering::SeqCst), &out)
        });
        (handle, traced)
    });
    Watchers {
        pumps,
        poller,
        tracer,
    }
}

/// The command is over: nothing of it may outlive doctor. Stop the watchers and collect.
fn finish(
    args: &RunArgs,
    w: &RunWatch,
    threads: Watchers,
    root_status: Option<supervise::WaitStatus>,
) -> Outcome {
    let seconds = w.start.elapsed().as_secs_f64();
    let killed = supervise::cleanup(w, args.grace);
    w.done.store(true, Ordering::SeqCst);
    // The output is passed on whole however slow its reader, unless a process that survived the
    // cleanup still holds a pipe; the tracer may sit in the kernel waiting for a notification
    // that was withdrawn. Those waits are bounded.
    let until = Instant::now() + Duration::from_secs(2);
    let escaped = !supervise::run_members(w).is_empty();
    join_until(threads.poller, until);
    for p in threads.pumps {
        if escaped {
            join_until(p, until);
        } else {
            let _ = p.join();
        }
    }
    let traced = threads
        .tracer
        .map_or_else(Traced::default, |(handle, traced)| {
            join_until(handle, until);
            std::mem::take(&mut *traced.lock().unwrap_or_else(|e| e.into_inner()))
        });
    let (exit_status, signal) = supervise::shell_status(root_status);
    Outcome {
        exit_status,
        signal,
        seconds,
        killed,
        leftovers: supervise::run_leftovers(w),
        traced,
    }
}

/// Join `handle` unless it is still running at `until` (then it is left to end with doctor).
fn join_until(handle: JoinHandle<()>, until: Instant) {
    while !handle.is_finished() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(5));
    }
    if handle.is_finished() {
        let _ = handle.join();
    }
}

/// How long the run's processes must have stood unchanged for a moment to count as how the run
/// stood before it was stopped (`Timeline::settled`): a rendezvous that waits stands still for
/// seconds; a Ctrl-C or a kill changes the processes within a poll or two.
const SETTLED_SECS: f64 = 1.0;

/// The diagnosis of what was seen, and the facts read from the output.
fn explain(w: &RunWatch, o: &Outcome, at_timeout: Option<&Snapshot>) -> (Diagnosis, OutputFacts) {
    let text = {
        let out = w.output.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&out.0).into_owned()
    };
    let facts = read_output(&text);
    let mut tl = w.timeline.lock().unwrap_or_else(|e| e.into_inner());
    for (pid, p) in &o.traced.processes {
        supervise::add_traced_view(&mut tl, *pid, p);
    }
    let mut snapshot = Snapshot {
        processes: tl.processes.values().map(|s| s.process.clone()).collect(),
        sockets: tl.sockets.values().map(|s| s.socket.clone()).collect(),
        ..Snapshot::new(observe::now(), observe::host_facts())
    };
    snapshot.processes.sort_by_key(|p| p.pid);
    // Stopped before it finished: at the timeout, the machine observed then; after an interrupt
    // or torch's own rendezvous timeout, the run as it stood before it began to end (a Ctrl-C at
    // a terminal reaches the command, not doctor: the moment is known only afterwards).
    let stood: Option<(Stop, f64, Snapshot)> = match at_timeout {
        Some(_) => None,
        None => run_diagnosis::how_it_was_stopped(
            w.interrupts.load(Ordering::SeqCst),
            o.signal.as_deref(),
            o.exit_status,
            &facts,
        )
        .and_then(|how| {
            let at = tl.settled(SETTLED_SECS, o.seconds)?;
            let taken_at = observe::now() - (w.start.elapsed().as_secs_f64() - at);
            let snap = run_diagnosis::as_it_stood(&tl, at, observe::snapshot(), taken_at);
            Some((how, at, snap))
        }),
    };
    let stopped = match (at_timeout, &stood) {
        (Some(snap), _) => Some(Stopped {
            snapshot: snap,
            how: Stop::Timeout,
            at: o.seconds,
        }),
        (None, Some((how, at, snap))) => Some(Stopped {
            snapshot: snap,
            how: how.clone(),
            at: *at,
        }),
        (None, None) => None,
    };
    let seen = RunSeen {
        snapshot: &snapshot,
        timeline: &tl,
        events: &o.traced.events,
        output: &facts,
        stopped,
        account_name: crate::sys::host::account_name,
    };
    let d = run_diagnosis::diagnose(&seen, observe::snapshot, crate::sys::freeport::pick);
    (d, facts)
}

/// `doctor scan` on the script that was run, assuming what its interpreter does about the
/// default start method.
fn scan_the_script(command: &[OsString]) -> Vec<crate::scan::Diagnostic> {
    let argv: Vec<String> = command
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let Some(script) = crate::analysis::script_of(&argv).filter(|s| s.ends_with(".py")) else {
        return Vec::new();
    };
    let path = Path::new(&script);
    if !path.is_file() {
        return Vec::new();
    }
    let opts = crate::scan::ScanOptions {
        python_version: crate::scan::python_version_of(&argv[0]),
        ..crate::scan::ScanOptions::default()
    };
    crate::scan::scan_file(path, &opts)
        .into_iter()
        .filter(|f| f.code != crate::model::finding::Rule::S900)
        .collect()
}

/// Print the explanation (when there is something to say) and write the record.
fn report(
    args: &RunArgs,
    w: &RunWatch,
    o: &Outcome,
    d: &DiagnosisDoc,
    facts: &OutputFacts,
    watching: &Watching,
) -> anyhow::Result<()> {
    // Ended by SIGPIPE after the reader of our output went away: the pipeline's normal end.
    let pipeline_end =
        o.signal.as_deref() == Some("SIGPIPE") && w.pipe_closed.load(Ordering::SeqCst);
    let failed = o.exit_status != 0 && !pipeline_end;
    // Under -q doctor prints only documents and errors: the explanation is talk (the record
    // still holds it).
    if !render::settings().quiet
        && (failed
            || args.explain
            || !d.diagnosis.findings.is_empty()
            || !o.killed.is_empty()
            || !o.leftovers.is_empty())
    {
        let static_findings: Vec<render::run::ScriptFinding> = d
            .static_findings
            .iter()
            .map(|f| render::run::ScriptFinding {
                severity: f.severity,
                code: f.code.code(),
                name: f.code.name(),
                message: &f.message,
                path: &f.path,
                line: f.line,
                column: f.column,
            })
            .collect();
        let shown = render::run::Explained {
            diagnosis: d.diagnosis,
            static_findings: &static_findings,
            exit_status: o.exit_status,
            signal: o.signal.as_deref(),
            seconds: o.seconds,
            killed: &o.killed,
            leftovers: &o.leftovers,
            tracing: watching.tracing,
            notes: if failed { &watching.notes } else { &[] },
        };
        let text = render::run::explanation(&shown, render::stderr_color());
        eprint!("{}", clean_text(&text));
    }
    // A record that cannot be written after all (the disk filled up meanwhile) is an error
    // printed as such; doctor still exits with the command's status, which is not lost.
    if (args.output.is_some() || args.format.is_some())
        && let Err(e) = write_record(args, w, o, d, facts, watching.tracing)
    {
        render::print_error(&e);
    }
    Ok(())
}

/// The record to `-o FILE` (format from `--format`, else the extension) or, with `--format`
/// alone, to stdout.
fn write_record(
    args: &RunArgs,
    w: &RunWatch,
    o: &Outcome,
    d: &DiagnosisDoc,
    facts: &OutputFacts,
    tracing: &str,
) -> anyhow::Result<()> {
    let tl = w.timeline.lock().unwrap_or_else(|e| e.into_inner());
    let doc = RunDoc {
        // The run's facts were taken from its start on.
        envelope: Envelope::new(Kind::Run, observe::hostname(), observe::now() - o.seconds),
        command: args
            .command
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect(),
        exit_status: o.exit_status,
        signal: o.signal.clone(),
        seconds: o.seconds,
        timed_out: w.timed_out.load(Ordering::SeqCst),
        interrupted: w.interrupts.load(Ordering::SeqCst) > 0,
        tracing,
        processes: tl.processes.values().collect(),
        sockets: tl.sockets.values().collect(),
        syscalls: &o.traced.events,
        output: facts,
        diagnosis: DiagnosisDoc {
            diagnosis: d.diagnosis,
            static_findings: d.static_findings,
        },
        killed: &o.killed,
        leftovers: &o.leftovers,
        output_bytes_dropped: w.output.lock().unwrap_or_else(|e| e.into_inner()).1,
        doctor_cpu_seconds: supervise::own_cpu_seconds(),
    };
    let format = match (args.format, &args.output) {
        (Some(f), _) => f,
        (None, Some(path)) => render::DocFormat::of_path(path),
        (None, None) => render::DocFormat::Json,
    }
    .format();
    let mut value = serde_json::to_value(&doc)?;
    if !render::settings().show_secrets {
        render::redact::redact(&mut value);
    }
    let text = render::document(&value, format)?;
    match &args.output {
        Some(path) => {
            crate::sys::output::write_atomic(path, text.as_bytes())?;
            render::note(&format!(
                "doctor: wrote the timeline and diagnosis to {}",
                path.display()
            ));
        }
        None => render::print(&text),
    }
    Ok(())
}

/// doctor's explanation as printed: secrets redacted (unless `--show-secrets`); `render::run`
/// escapes the control characters of what it quotes.
fn clean_text(text: &str) -> String {
    if render::settings().show_secrets {
        text.to_string()
    } else {
        render::redact::scrub_text(text)
    }
}
