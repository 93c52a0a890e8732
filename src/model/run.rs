//! What `doctor run` saw of a command: the processes and sockets of its tree over time and the
//! traced `bind`/`listen`/`connect` calls. Filled by `sys::supervise` and `sys::trace`, read by
//! `analysis::run_diagnosis`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::model::snapshot::{Process, Socket};

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
    /// 0 on success, -1 on failure (then `errno` says why). Absent for `connect`, which the
    /// kernel performs in the process itself after doctor has seen it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errno: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errno_name: Option<String>,
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
