//! What `doctor run` saw of a command: the processes and sockets of its tree over time and the
//! traced `bind`/`listen` calls. Filled by `sys::supervise` and `sys::trace`, read by
//! `analysis::run_diagnosis`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::model::snapshot::{Process, Socket};

/// EADDRINUSE on Linux (every architecture doctor supports).
pub const EADDRINUSE: i32 = 98;

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
    /// 0 on success, -1 on failure (then `errno` says why, when known). The kernel carries out
    /// every call in the process itself; doctor learns the result of `bind` and `listen`
    /// afterwards from the socket's state (`result_from`). Absent when the
    /// socket was gone before it could be looked at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errno: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errno_name: Option<String>,
    /// The errno was not returned to doctor but inferred from the machine's state (another
    /// socket on the port: EADDRINUSE; a privileged port without CAP_NET_BIND_SERVICE: EACCES;
    /// a socket bound before: EINVAL).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub errno_inferred: bool,
    /// How the result was learned: `socket-state` (the socket's address or SO_ACCEPTCONN after
    /// the call).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_from: Option<String>,
}

/// What happened to one process of the run.
#[derive(Clone, Debug, Serialize)]
pub struct Seen {
    pub first_seen: f64,
    pub last_seen: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gone_at: Option<f64>,
    pub process: Process,
    /// Its kernel state letter from each poll where its class changed (`state_class`; the first
    /// included): what it was at any moment of the run (`process.state` is the newest).
    #[serde(skip)]
    pub states: Vec<(f64, String)>,
}

impl Seen {
    /// The kernel state it had at poll time `t`.
    fn state_at(&self, t: f64) -> &str {
        self.states
            .iter()
            .rev()
            .find(|(at, _)| *at <= t)
            .map_or(self.process.state.as_str(), |(_, s)| s.as_str())
    }
}

/// A kernel state letter as far as a change of the run goes: running, sleeping and idle are
/// one (a rank waiting in a loop flips between them from poll to poll); stopped, in
/// uninterruptible sleep, zombie and dead are each a change.
pub fn state_class(state: &str) -> &str {
    match state {
        "R" | "S" | "I" => "S",
        other => other,
    }
}

/// One socket of the run in one state, from the first to the last poll that saw it so.
#[derive(Clone, Debug, Serialize)]
pub struct SeenSocket {
    #[serde(rename = "t")]
    pub first_seen: f64,
    pub last_seen: f64,
    pub socket: Socket,
}

/// Polls from `from` to `to` (seconds since the start) that saw the run unchanged.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Span {
    pub from: f64,
    pub to: f64,
    /// The run held a listener or an established connection meanwhile.
    pub sockets: bool,
}

/// One poll's view of the run as far as a change goes: (pid, start time, state class) of each
/// process, (inode, state) of each listener and established connection.
pub type Look = (Vec<(i32, u64, String)>, Vec<(u64, String)>);

/// Everything polling saw of the run.
#[derive(Default)]
pub struct Timeline {
    pub processes: BTreeMap<i32, Seen>,
    /// (inode, state) -> when it was seen so, and the socket.
    pub sockets: BTreeMap<(u64, String), SeenSocket>,
    /// (pid, inode) pairs seen.
    pub holders: BTreeSet<(i32, u64)>,
    /// Spans of polls (first and last poll time) during which the run's processes (pids, start
    /// times, kernel state classes: `state_class`) and their listeners and connections did not
    /// change, in order; a change starts the next span.
    pub spans: Vec<Span>,
    /// What the newest poll saw (processes and sockets, as `looked` keeps them), to tell a
    /// change.
    pub last_look: Look,
}

impl Timeline {
    /// One poll at `t` saw `processes` (pid, start time, state of every process of the run) and
    /// `sockets` (inode and state of every socket they hold): extend the current span, or start
    /// a new one when something changed. Only listeners and established connections count
    /// among the sockets: a client retrying its connect makes a new socket each try.
    pub fn looked(
        &mut self,
        t: f64,
        processes: Vec<(i32, u64, String)>,
        sockets: Vec<(u64, String)>,
    ) {
        let mut processes: Vec<(i32, u64, String)> = processes
            .into_iter()
            .map(|(pid, start, state)| (pid, start, state_class(&state).to_string()))
            .collect();
        processes.sort();
        let mut sockets: Vec<(u64, String)> = sockets
            .into_iter()
            .filter(|(_, state)| state == "LISTEN" || state == "ESTABLISHED")
            .collect();
        sockets.sort();
        let look = (processes, sockets);
        match self.spans.last_mut() {
            Some(span) if look == self.last_look => span.to = t,
            _ => self.spans.push(Span {
                from: t,
                to: t,
                sockets: !look.1.is_empty(),
            }),
        }
        self.last_look = look;
    }

    /// The last poll of the latest span that ended by `end` (the command's own end: what
    /// follows is doctor's cleanup) and lasted at least `min` seconds, preferring one in which
    /// the run held listeners or connections: the run as it stood before it began to end (a
    /// Ctrl-C, a kill, a crash changes the processes within a poll or two, and a process that
    /// gave up closes its sockets first and may take seconds more to exit; a rendezvous that
    /// waits stands still). `None` when no span lasted that long.
    pub fn settled(&self, min: f64, end: f64) -> Option<f64> {
        let long = || {
            self.spans
                .iter()
                .rev()
                .filter(move |s| s.to <= end && s.to - s.from >= min)
        };
        long()
            .find(|s| s.sockets)
            .or_else(|| long().next())
            .map(|s| s.to)
    }

    /// The run's processes and sockets as poll time `t` saw them: processes seen at `t` with
    /// the state they had then (its class: `state_class`) and only the sockets seen open at `t`.
    pub fn view_at(&self, t: f64) -> (Vec<Process>, Vec<Socket>) {
        let sockets: Vec<Socket> = self
            .sockets
            .values()
            .filter(|s| s.first_seen <= t && t <= s.last_seen)
            .map(|s| s.socket.clone())
            .collect();
        let open: BTreeSet<u64> = sockets.iter().map(|s| s.inode).collect();
        let processes = self
            .processes
            .values()
            .filter(|s| s.first_seen <= t && t <= s.last_seen)
            .map(|s| {
                let mut p = s.process.clone();
                // Running, sleeping and idle are one class between polls (`state_class`): a
                // rank that waits is said to sleep, whichever letter a poll caught.
                p.state = state_class(s.state_at(t)).to_string();
                // What it was blocked in is known for the newest look only (or for the moment a
                // traced call stopped it in doctor's own hands): not said for `t`.
                p.wchan = None;
                p.syscall = None;
                p.py_stack.clear();
                p.socket_inodes
                    .retain(|i| open.contains(i) && self.holders.contains(&(p.pid, *i)));
                p
            })
            .collect();
        (processes, sockets)
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

/// What a supervised tree's termination had to kill.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Killed {
    pub pid: i32,
    pub command: String,
    /// `SIGTERM` or `SIGKILL`: the strongest signal that was needed.
    pub signal: String,
}

/// How a wait ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waited {
    Exited(Exit),
    TimedOut,
    Interrupted,
}

/// How the case ended, and what it printed.
pub struct CaseRun {
    pub waited: Waited,
    /// The launcher's exit status (128+signal when killed); None when it was still running.
    pub exit_code: Option<i32>,
    pub seconds: f64,
    /// The log; when the case did not exit on its own, only what it printed before doctor's
    /// signals made it print more.
    pub text: String,
    pub killed: Vec<Killed>,
    pub leftovers: Vec<String>,
    pub pid: i32,
    pub tag: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(pid: i32, inodes: &[u64]) -> Process {
        Process {
            pid,
            state: "S".into(),
            start_time: 100.0 + f64::from(pid),
            socket_inodes: inodes.to_vec(),
            ..Process::default()
        }
    }

    fn socket(inode: u64, state: &str) -> Socket {
        Socket {
            proto: crate::model::snapshot::Proto::Tcp,
            state: state.into(),
            local_addr: std::net::Ipv4Addr::LOCALHOST.into(),
            local_port: 29500,
            remote_addr: std::net::Ipv4Addr::UNSPECIFIED.into(),
            remote_port: 0,
            inode,
            uid: 0,
        }
    }

    /// A run polled every 0.5 s: a launcher (1) and a rank (2) that listens from 1.0 s and
    /// waits until 6.0 s; at 6.5 s the launcher is gone (Ctrl-C), the rank a zombie at 7.0 s.
    /// The run as it stood before it began to end is the poll at 6.0 s: both alive, the rank
    /// sleeping with its listener.
    #[test]
    fn the_settled_moment_is_the_last_poll_before_the_run_began_to_end() {
        let mut tl = Timeline::default();
        let mut t = 0.0;
        while t <= 7.01 {
            let mut look = vec![(2, 1, if t >= 7.0 { "Z" } else { "S" }.to_string())];
            if t <= 6.0 {
                look.push((1, 1, "S".into()));
            }
            let sockets = if (1.0..=6.5).contains(&t) {
                vec![(7, "LISTEN".to_string())]
            } else {
                Vec::new()
            };
            tl.looked(t, look, sockets);
            t += 0.5;
        }
        let seen = |p: Process, first: f64, last: f64, states: Vec<(f64, String)>| Seen {
            first_seen: first,
            last_seen: last,
            gone_at: None,
            process: p,
            states,
        };
        tl.processes
            .insert(1, seen(process(1, &[]), 0.0, 6.0, vec![(0.0, "S".into())]));
        let mut zombie = process(2, &[7]);
        zombie.state = "Z".into();
        tl.processes.insert(
            2,
            seen(zombie, 0.0, 7.0, vec![(0.0, "S".into()), (7.0, "Z".into())]),
        );
        tl.holders.insert((2, 7));
        tl.sockets.insert(
            (7, "LISTEN".into()),
            SeenSocket {
                first_seen: 1.0,
                last_seen: 6.5,
                socket: socket(7, "LISTEN"),
            },
        );
        let spans: Vec<(f64, f64, bool)> =
            tl.spans.iter().map(|s| (s.from, s.to, s.sockets)).collect();
        assert_eq!(
            spans,
            vec![
                (0.0, 0.5, false),
                (1.0, 6.0, true),
                (6.5, 6.5, true),
                (7.0, 7.0, false)
            ]
        );
        assert_eq!(tl.settled(1.0, 7.2), Some(6.0));
        // Nothing after the command's end counts (doctor's cleanup).
        assert_eq!(tl.settled(1.0, 0.9), None);
        let (procs, socks) = tl.view_at(6.0);
        assert_eq!(procs.iter().map(|p| p.pid).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(procs[1].state, "S", "not yet a zombie at 6.0 s");
        assert_eq!(procs[1].socket_inodes, vec![7]);
        assert_eq!(socks.len(), 1);
        // Before the listener was seen the rank holds nothing; after the end, nothing stood long.
        let (procs, socks) = tl.view_at(0.5);
        assert!(procs[1].socket_inodes.is_empty() && socks.is_empty());
        assert_eq!(tl.settled(10.0, 7.2), None);
    }
}
