//! What `doctor run` saw, explained: who failed to bind which port, who held it, the path
//! between them in the process tree, the line of the user's script that ran again, and the
//! findings of the observed tree. Pure: everything it needs is passed in.

use serde::Serialize;

use crate::analysis::rules::{self, describe};
use crate::analysis::traceback::OutputFacts;
use crate::analysis::{Analysis, Role};
use crate::model::finding::{Finding, Rule};
use crate::model::run::{EADDRINUSE, SyscallEvent, Timeline};
use crate::model::snapshot::Snapshot;

#[derive(Default, Serialize)]
pub struct Diagnosis {
    pub summary: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failing_pid: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The errno of the failing bind (98 for EADDRINUSE), its name, and whether doctor inferred
    /// it from the machine's state rather than from the call (`doctor run` never answers a call
    /// itself: docs/run-tracing.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errno: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errno_name: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub errno_inferred: bool,
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
    /// `script_line` ran again: a spawn/forkserver child re-ran the launch (a duplicate
    /// initialisation). Otherwise it is the user's line that failed.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ran_again: bool,
    pub findings: Vec<Finding>,
}

/// What the run left to explain.
pub struct RunSeen<'a> {
    /// The run's processes and sockets as one snapshot.
    pub snapshot: &'a Snapshot,
    pub timeline: &'a Timeline,
    pub events: &'a [SyscallEvent],
    pub output: &'a OutputFacts,
    /// The machine as it stood before the command was stopped, when it was: at `--timeout`,
    /// or before an interrupt or torch's own rendezvous timeout ended it.
    pub stopped: Option<Stopped<'a>>,
    /// The account name of a uid (`sys::host::account_name`), for a holder doctor cannot see.
    pub account_name: fn(u32) -> Option<String>,
}

/// How a command was stopped before it finished its work.
#[derive(Clone, Debug, PartialEq)]
pub enum Stop {
    /// `doctor run --timeout` stopped it (the machine observed at that moment).
    Timeout,
    /// A signal or Ctrl-C ended it (how, e.g. `SIGINT`): the run as polled before it began to
    /// end.
    Interrupted(String),
    /// torch gave up waiting for the rendezvous (the exception line).
    TorchTimeout(String),
}

/// The machine when the command was stopped, or as it stood before, and how.
pub struct Stopped<'a> {
    pub snapshot: &'a Snapshot,
    pub how: Stop,
    /// Seconds since the start: the moment `snapshot` shows.
    pub at: f64,
}

/// How an ending that was no finish shows: doctor passed an interrupt on (`interrupts`), the
/// command died of a terminating signal or exited 130/143 (a shell's or Python's report of
/// SIGINT/SIGTERM), or its output ends in `KeyboardInterrupt` or torchrun's `SignalException`
/// (torchrun exits 1 after Ctrl-C); or torch's own rendezvous timeout (the store waiting for
/// clients, a client that could not reach the store). `None` for any other ending: a crash is
/// explained by its own output, not by the state of a rendezvous before it.
pub fn how_it_was_stopped(
    interrupts: i32,
    signal: Option<&str>,
    exit_status: i32,
    output: &OutputFacts,
) -> Option<Stop> {
    let errors = || output.tracebacks.iter().map(|t| t.error.as_str());
    if let Some(e) = errors().find(|e| {
        e.contains("waiting for clients")
            || (e.contains("DistNetworkError") && e.contains("timed out") && e.contains("connect"))
    }) {
        return Some(Stop::TorchTimeout(crate::model::text::shorten(e, 160)));
    }
    let terminating = ["SIGINT", "SIGTERM", "SIGQUIT", "SIGHUP", "SIGKILL"];
    let how = match signal {
        Some(sig) if terminating.contains(&sig) => Some(sig.to_string()),
        _ if exit_status == 130 => Some("status 130, SIGINT".into()),
        _ if exit_status == 143 => Some("status 143, SIGTERM".into()),
        _ => errors()
            .find(|e| e.starts_with("KeyboardInterrupt") || e.contains("SignalException"))
            .map(|e| crate::model::text::shorten(e, 80)),
    };
    how.or_else(|| (interrupts > 0).then(|| "interrupted".to_string()))
        .map(Stop::Interrupted)
}

/// The machine with the run as poll time `t` saw it: the run's processes then (their state
/// then, only the sockets open then) beside the machine's processes now, which are the ones
/// `doctor ports` would have judged with them. A pid the machine has now stays the machine's.
pub fn as_it_stood(tl: &Timeline, t: f64, mut machine: Snapshot, taken_at: f64) -> Snapshot {
    let (processes, sockets) = tl.view_at(t);
    let now: std::collections::HashSet<i32> = machine.processes.iter().map(|p| p.pid).collect();
    let inodes: std::collections::HashSet<u64> = machine.sockets.iter().map(|s| s.inode).collect();
    machine
        .processes
        .extend(processes.into_iter().filter(|p| !now.contains(&p.pid)));
    machine.processes.sort_by_key(|p| p.pid);
    machine
        .sockets
        .extend(sockets.into_iter().filter(|s| !inodes.contains(&s.inode)));
    machine.taken_at = taken_at;
    machine
}

/// Join the output, the traced calls and the observed tree into an explanation. `live` gives a
/// snapshot of the machine now, for a port held by something outside the run.
pub fn diagnose(
    seen: &RunSeen,
    live: impl FnOnce() -> Snapshot,
    pick: crate::analysis::PortPicker,
) -> Diagnosis {
    // The failing bind of the rendezvous port the output names (torch's error), when there is
    // one: other libraries in a rank (MPI's daemons, UCX) bind fixed ports of their own, and
    // their collisions are not the rendezvous failure. Else the first failing bind.
    let named: Vec<u16> = seen
        .output
        .bind_errors
        .iter()
        .filter_map(|b| b.port)
        .collect();
    let failing = |e: &&SyscallEvent| e.syscall == "bind" && e.errno == Some(EADDRINUSE);
    let failed_bind = seen
        .events
        .iter()
        .filter(failing)
        .find(|e| e.port.is_some_and(|p| named.contains(&p)))
        .or_else(|| seen.events.iter().find(failing));
    let port = failed_bind
        .and_then(|e| e.port)
        .or_else(|| seen.output.bind_errors.iter().find_map(|b| b.port));
    let a = Analysis::new(seen.snapshot, &port.into_iter().collect::<Vec<_>>());
    let mut d = Diagnosis {
        port,
        ..Diagnosis::default()
    };
    name_the_failure(&mut d, &a, failed_bind, seen.output);
    if let Some(port) = port {
        name_the_holder(&mut d, &a, seen, port, live, pick);
    }
    trace_the_path(&mut d, &a);
    find_the_script_line(&mut d, seen.output);
    explain_a_rerun_launch(&mut d, &a);
    add_tree_findings(&mut d, a.findings);
    if let Some(stopped) = &seen.stopped {
        judge_when_stopped(&mut d, seen.snapshot, stopped, pick);
    }
    d
}

/// The command was stopped while it stood (at `--timeout`, by an interrupt, by torch's own
/// rendezvous timeout): the findings `doctor ports` gives on the machine as it stood then about
/// the run's processes (a rendezvous that has not completed by then is D009, however short the
/// wait).
fn judge_when_stopped(
    d: &mut Diagnosis,
    run: &Snapshot,
    stopped: &Stopped,
    pick: crate::analysis::PortPicker,
) {
    let ours: std::collections::HashSet<i32> = run.processes.iter().map(|p| p.pid).collect();
    let a = Analysis::at_timeout(stopped.snapshot, pick);
    let about_the_run: Vec<Finding> = a
        .findings
        .into_iter()
        .filter(|f| f.pids.iter().any(|p| ours.contains(p)))
        .collect();
    if let Some(h) = about_the_run.iter().find(|f| f.code == Rule::D009) {
        let port = h.ports.first().copied().unwrap_or(0);
        d.summary.push(match &stopped.how {
            Stop::Timeout => {
                format!("at the timeout the rendezvous had not completed (D009 on port {port})")
            }
            Stop::Interrupted(how) => format!(
                "the command was stopped ({how}) while its rendezvous had not completed (D009 on port {port}; the run as seen at {:.1}s)",
                stopped.at
            ),
            Stop::TorchTimeout(error) => format!(
                "torch gave up waiting at the rendezvous ({error}); at {:.1}s the rendezvous had not completed (D009 on port {port})",
                stopped.at
            ),
        });
    }
    // The live judgement replaces the run's own of the same code and ports.
    d.findings.retain(|g| {
        !about_the_run
            .iter()
            .any(|f| f.code == g.code && f.ports == g.ports)
    });
    add_tree_findings(d, about_the_run);
}

/// A process that is failing right now (the `DDP_DOCTOR=1` hook calls doctor from inside it, while
/// the holder still exists): `failing` is its pid, `output` what it is about to print (its
/// traceback), `port` the port it failed on when the caller knows it. `snap` is this machine now.
pub fn diagnose_live(
    snap: &Snapshot,
    failing: i32,
    port: Option<u16>,
    output: &OutputFacts,
    pick: crate::analysis::PortPicker,
) -> Diagnosis {
    let port = port.or_else(|| output.bind_errors.iter().find_map(|b| b.port));
    let a = match port {
        Some(p) => Analysis::after_failed_bind(snap, p, pick),
        None => Analysis::live(snap, &[], pick),
    };
    let mut d = Diagnosis {
        port,
        failing_pid: Some(failing),
        ..Diagnosis::default()
    };
    let bound = !output.bind_errors.is_empty();
    if bound {
        d.errno = Some(EADDRINUSE);
        d.errno_name = Some("EADDRINUSE".into());
    }
    match output.bind_errors.first() {
        Some(b) => d.summary.push(format!(
            "{} failed to bind the rendezvous port: {}",
            describe(&a, failing),
            b.message
        )),
        None => d.summary.push(format!(
            "{} failed at the rendezvous{}",
            describe(&a, failing),
            port.map(|p| format!(" on port {p}")).unwrap_or_default()
        )),
    }
    if let Some(port) = port {
        let holder = crate::analysis::holders::holders(&a, false)
            .iter()
            .filter(|h| h.port == port && h.state == "LISTEN" && h.pid != Some(failing))
            .find_map(|h| h.pid);
        if let Some(h) = holder {
            d.holder_pid = Some(h);
            d.holder_role = Some(a.role(h).name().to_string());
            d.summary
                .push(format!("port {port} is held by {}", describe(&a, h)));
        }
    }
    trace_the_path(&mut d, &a);
    find_the_script_line(&mut d, output);
    if bound {
        explain_a_rerun_launch(&mut d, &a);
    }
    // With a port, the findings about it; without one, only those naming the failing process,
    // its job, its ancestors or its descendants: another user's job elsewhere on the machine is
    // not why this process failed.
    let related = related_pids(&a, failing);
    let relevant = |f: &Finding| match port {
        Some(p) => f.ports.is_empty() || f.ports.contains(&p),
        None => f.pids.iter().any(|q| related.contains(q)),
    };
    let findings: Vec<Finding> = a.findings.into_iter().filter(relevant).collect();
    add_tree_findings(&mut d, findings);
    d
}

/// The failing process, its ancestors, its descendants and the processes of its job.
fn related_pids(a: &Analysis, failing: i32) -> std::collections::HashSet<i32> {
    let mut related: std::collections::HashSet<i32> = a.ancestors(failing).into_iter().collect();
    related.extend(a.job(failing).map(|j| j.pids.clone()).unwrap_or_default());
    let mut todo = vec![failing];
    while let Some(p) = todo.pop() {
        if related.insert(p) || p == failing {
            todo.extend(a.children(p).iter().filter(|c| !related.contains(c)));
        }
    }
    related
}

/// The failing bind, exact from tracing or as the output reports it.
fn name_the_failure(
    d: &mut Diagnosis,
    a: &Analysis,
    failed_bind: Option<&SyscallEvent>,
    output: &OutputFacts,
) {
    if let Some(e) = failed_bind {
        d.failing_pid = Some(e.pid);
        d.errno = Some(EADDRINUSE);
        d.errno_name = Some("EADDRINUSE".into());
        d.errno_inferred = e.errno_inferred;
        let addr = e.addr.map(|x| x.to_string()).unwrap_or_default();
        let how = if e.errno_inferred {
            " (its socket stayed unbound while another held the port: errno inferred)"
        } else {
            ""
        };
        d.summary.push(format!(
            "{} failed bind({addr}:{}) with errno 98 EADDRINUSE at {:.2}s{how}",
            describe(a, e.pid),
            e.port.unwrap_or(0),
            e.t
        ));
    } else if let Some(b) = output.bind_errors.first() {
        d.summary
            .push(format!("the output reports a bind failure: {}", b.message));
    }
}

/// Who held the port: an earlier successful bind in the tree, a listener seen by polling, or
/// (looking at the machine now) something outside the run.
fn name_the_holder(
    d: &mut Diagnosis,
    a: &Analysis,
    seen: &RunSeen,
    port: u16,
    live: impl FnOnce() -> Snapshot,
    pick: crate::analysis::PortPicker,
) {
    let tl = seen.timeline;
    let holder = seen
        .events
        .iter()
        .find(|e| {
            // A bind to port 0 shows its port at `listen`.
            (e.syscall == "bind" || e.syscall == "listen")
                && e.result == Some(0)
                && e.port == Some(port)
                && Some(e.pid) != d.failing_pid
        })
        .map(|e| (e.pid, e.t))
        .or_else(|| {
            tl.sockets
                .values()
                .filter(|s| s.socket.state == "LISTEN" && s.socket.local_port == port)
                .find_map(|s| {
                    tl.holders
                        .iter()
                        .find(|(_, i)| *i == s.socket.inode)
                        .map(|(pid, _)| (*pid, s.first_seen))
                })
        });
    if let Some((h, t)) = holder {
        d.holder_pid = Some(h);
        d.holder_role = Some(a.role(h).name().to_string());
        d.summary.push(format!(
            "port {port} was held by {}, which bound it at {t:.2}s",
            describe(a, h)
        ));
        return;
    }
    if d.failing_pid.is_none() && seen.output.bind_errors.is_empty() {
        return;
    }
    let live = live();
    let alive: std::collections::HashSet<i32> = live.processes.iter().map(|p| p.pid).collect();
    let live = with_the_run(live, seen.snapshot);
    let la = Analysis::after_failed_bind(&live, port, pick);
    let holders: Vec<i32> = crate::analysis::holders::holders(&la, false)
        .iter()
        .filter(|h| h.port == port && h.state == "LISTEN")
        .filter_map(|h| h.pid)
        .collect();
    if let Some(&h) = holders.first() {
        d.holder_pid = Some(h);
        d.holder_role = Some(la.role(h).name().to_string());
        d.summary.push(format!(
            "port {port} is held by {} outside this run",
            describe(&la, h)
        ));
    } else if let Some(s) = live.sockets.iter().find(|s| {
        s.state == "LISTEN"
            && s.local_port == port
            && la.holders.get(&s.inode).is_none_or(|h| h.is_empty())
    }) {
        // A listener whose process doctor cannot see (another user's fds without root, another
        // PID namespace's): `doctor ports` shows the socket and its user; say as much, and the
        // way out that needs no access to it.
        let user = (seen.account_name)(s.uid).unwrap_or_else(|| format!("uid {}", s.uid));
        let free = pick(&live.host, &la.taken_ports())
            .map(|p| {
                format!(
                    "; start the job on a free port: MASTER_PORT={p} (torchrun --master-port {p})"
                )
            })
            .unwrap_or_default();
        d.summary.push(format!(
            "port {port} is held by a socket of user {user} whose process doctor cannot see (another \
             user's, or another PID namespace's: run doctor as root, or with CAP_SYS_PTRACE in a \
             container, to name it){free}"
        ));
    }
    // Findings about the port that name a process alive now: the run's own processes are
    // gone, and are not leftovers of a launcher (D003) for having outlived nothing.
    d.findings.extend(
        la.findings
            .into_iter()
            .filter(|f| f.ports.contains(&port))
            .filter(|f| f.pids.iter().any(|p| alive.contains(p))),
    );
}

/// The machine now, with the run's processes as they were while it ran (they are gone by the
/// time it is explained): the live situation the run failed in, the one `doctor ports` would
/// have judged, so the findings name the run's job (D002) beside the holder. The run's sockets
/// are not added (they are closed); a pid the machine reuses now stays the machine's.
fn with_the_run(mut live: Snapshot, run: &Snapshot) -> Snapshot {
    let now: std::collections::HashSet<i32> = live.processes.iter().map(|p| p.pid).collect();
    live.processes.extend(
        run.processes
            .iter()
            .filter(|p| !now.contains(&p.pid))
            .cloned(),
    );
    live.processes.sort_by_key(|p| p.pid);
    live
}

/// The path between the holder and the failing process.
fn trace_the_path(d: &mut Diagnosis, a: &Analysis) {
    let (Some(h), Some(w)) = (d.holder_pid, d.failing_pid) else {
        return;
    };
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

/// The line of the user's script in the traceback: the one a spawn/forkserver child ran again
/// (`ran_again`), else the user's line whose call failed. Only user code: a frame of a library
/// or of a launcher's entry point (`.../bin/torchrun`) is no line of the user's.
fn find_the_script_line(d: &mut Diagnosis, output: &OutputFacts) {
    let user = |t: &&crate::analysis::traceback::Traceback| {
        t.user_frame
            .as_ref()
            .is_some_and(|f| crate::analysis::traceback::is_user_code(&f.file))
    };
    let rerun = output.tracebacks.iter().filter(user).find(|t| t.via_spawn);
    let tb = rerun.or_else(|| {
        output
            .tracebacks
            .iter()
            .filter(user)
            .find(|t| t.error.contains("EADDRINUSE") || t.error.contains("in use"))
    });
    if let Some(f) = tb.and_then(|t| t.user_frame.as_ref()) {
        d.script_line = Some(format!("{}:{}", f.file, f.line));
        d.code = f.code.as_deref().map(strip_comment);
        d.ran_again = rerun.is_some();
    }
}

/// D001 in its transient form: a rank's spawn/forkserver child tried the rank's port.
fn explain_a_rerun_launch(d: &mut Diagnosis, a: &Analysis) {
    let Some(w) = d.failing_pid else { return };
    let ancestors = a.ancestors(w);
    let Some(r) = ancestors
        .iter()
        .copied()
        .find(|&q| a.role(q) == Role::Rank)
        .filter(|&r| a.carries_identity_of(w, r))
    else {
        return;
    };
    let f = rules::d001_rerun_launch(a, r, w, d.port, d.code.as_deref(), d.script_line.as_deref());
    d.findings.insert(0, f);
    d.ran_again = d.script_line.is_some();
}

/// Findings the observed tree shows by itself (connecting duplicates, duplicate ranks).
/// D003/D007 describe leftovers and TIME_WAIT after the fact, D004 a risk of the port choice
/// rather than what happened: they are not part of explaining this run.
fn add_tree_findings(d: &mut Diagnosis, findings: Vec<Finding>) {
    for f in findings {
        let about_the_run = !matches!(f.code, Rule::D003 | Rule::D004 | Rule::D007);
        if about_the_run
            && !d
                .findings
                .iter()
                .any(|g| g.code == f.code && g.pids == f.pids)
        {
            d.findings.push(f);
        }
    }
}

/// `fabric.launch()  # note` -> `fabric.launch()` (a `#` inside a string literal stays).
pub fn strip_comment(code: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_are_stripped_from_code() {
        assert_eq!(strip_comment("fabric.launch()  # BUG"), "fabric.launch()");
        assert_eq!(strip_comment("print('#1')  # x"), "print('#1')");
    }

    /// How a run that did not finish its work ended, from real output of torch 2.15 and a
    /// launcher hit by Ctrl-C; a crash of another kind is no stop.
    #[test]
    fn interrupts_and_torchs_rendezvous_timeouts_are_stops_and_a_crash_is_not() {
        use crate::analysis::traceback::read_output;
        let kb = "Traceback (most recent call last):\n  File \"/x/launch.py\", line 32, in forever\n    time.sleep(3600)\nKeyboardInterrupt\n";
        let store = "Traceback (most recent call last):\n  File \"/x/t.py\", line 3, in <module>\n    dist.init_process_group('gloo')\ntorch.distributed.DistStoreError: Timed out after 5 seconds waiting for clients. 1/2 clients joined.\n";
        let client = "Traceback (most recent call last):\n  File \"/x/t.py\", line 3, in <module>\n    dist.init_process_group('gloo')\ntorch.distributed.DistNetworkError: The client socket has timed out after 4000ms while trying to connect to (127.0.0.1, 29874).\n";
        let signal = "Traceback (most recent call last):\n  File \"/v/bin/torchrun\", line 8, in <module>\n    sys.exit(main())\ntorch.distributed.elastic.multiprocessing.api.SignalException: Process 5 got signal: 2\n";
        let crash = "Traceback (most recent call last):\n  File \"/x/t.py\", line 1, in <module>\n    import nothing\nModuleNotFoundError: No module named 'nothing'\n";
        let stop = |text: &str, signal: Option<&str>, status: i32, interrupts: i32| {
            how_it_was_stopped(interrupts, signal, status, &read_output(text))
        };
        assert_eq!(
            stop(kb, None, 1, 0),
            Some(Stop::Interrupted("KeyboardInterrupt".into()))
        );
        assert_eq!(
            stop("", Some("SIGINT"), 130, 0),
            Some(Stop::Interrupted("SIGINT".into()))
        );
        assert_eq!(
            stop("", None, 130, 0),
            Some(Stop::Interrupted("status 130, SIGINT".into()))
        );
        assert!(
            matches!(stop(store, None, 1, 0), Some(Stop::TorchTimeout(e)) if e.contains("waiting for clients"))
        );
        assert!(matches!(
            stop(client, None, 1, 0),
            Some(Stop::TorchTimeout(_))
        ));
        assert!(
            matches!(stop(signal, None, 1, 0), Some(Stop::Interrupted(e)) if e.contains("SignalException"))
        );
        assert_eq!(stop(crash, None, 1, 0), None);
        assert_eq!(
            stop(crash, None, 1, 1),
            Some(Stop::Interrupted("interrupted".into()))
        );
        assert_eq!(stop("", None, 0, 0), None);
    }
}
