//! What `doctor run` saw of a command: the processes and sockets of its tree over time and the
//! traced `bind`/`listen`/`connect` calls. Filled by `sys::supervise` and `sys::trace`, read by
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
    /// afterwards from the socket's state (`result_from`). Absent for `connect`, and when the
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
}

/// Everything polling saw of the run.
#[derive(Default)]
pub struct Timeline {
    pub processes: BTreeMap<i32, Seen>,
    /// (inode, state) -> (first seen, socket).
    pub sockets: BTreeMap<(u64, String), (f64, Socket)>,
    /// (pid, inode) pairs seen.
    pub holders: BTreeSet<(i32, u64)>,
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
