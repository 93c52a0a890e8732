//! The report document (`doctor report`), read back by `doctor merge`: its kind and what the
//! merge keeps of one report (a [`Node`] with its [`Rank`]s and [`Versions`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::identity::Identity;

/// The `kind` of a report document.
pub const REPORT_KIND: &str = "doctor-report";

/// The PID namespace a report's pids belong to (that of `/proc/self/ns/pid`): a report taken in a
/// container or a pod lists the container's pids, not the host's.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PidNamespace {
    /// The namespace's inode, as `ls -l /proc/PID/ns/pid` shows it (`pid:[INODE]`).
    pub inode: u64,
    /// Whether it is the host's (initial) PID namespace: the pids are the host's pids.
    pub init: bool,
}

/// The inode of the initial PID namespace (the kernel's PROC_PID_INIT_INO).
pub const INIT_PID_NS_INODE: u64 = 0xEFFF_FFFC;

/// One rank as a node's report shows it.
#[derive(Clone, Debug, Serialize)]
pub struct Rank {
    pub pid: i64,
    /// Who it is in the rendezvous, as the report's `identity` says.
    #[serde(flatten)]
    pub identity: Identity,
    pub command: String,
    /// The job record of its node it belongs to (`job-PID`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// Its launcher's rendezvous endpoint when a torchrun agent started it (under c10d the rank's
    /// MASTER_PORT is the agent's worker store, not the rendezvous the nodes share).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<(String, u16)>,
}

impl Rank {
    /// The rendezvous the rank's node joined: its launcher's endpoint, else MASTER_ADDR:PORT.
    pub fn rendezvous(&self) -> Option<(String, u16)> {
        self.endpoint.clone().or_else(|| {
            Some((
                self.identity.master_addr.clone()?,
                self.identity.master_port?,
            ))
        })
    }
}

/// The versions of the interpreter that stands for a node.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Versions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interpreter: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub python: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub torch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub torch_cuda: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nccl: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lightning: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pytorch_lightning: Option<String>,
}

/// What the merge needs from one report.
#[derive(Clone, Debug)]
pub struct Node {
    pub file: String,
    /// Unique label: the hostname, or `hostname (file)` when two reports share a hostname.
    pub name: String,
    pub hostname: String,
    pub addresses: Vec<String>,
    pub taken_at: f64,
    pub shell: BTreeMap<String, String>,
    pub ranks: Vec<Rank>,
    pub holders: Vec<Value>,
    pub jobs: Vec<Value>,
    pub findings: Vec<Value>,
    pub versions: Versions,
    /// The PID namespace of the report's pids; `None` in reports older than this field.
    pub pid_namespace: Option<PidNamespace>,
    /// The launchers (torchrun agents and the like) of the report.
    pub launchers: Vec<Launcher>,
}

/// A launcher process (torchrun's agent, `accelerate launch`, ...) of a node's report.
#[derive(Clone, Debug, Serialize)]
pub struct Launcher {
    pub pid: i64,
    pub command: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// torchrun's rendezvous endpoint from its arguments (`--master-addr/--master-port`, or
    /// `--rdzv-endpoint`): where its agent hosts or looks for the job's store.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<(String, u16)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_rank: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nnodes: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rdzv_backend: Option<String>,
    /// The run id its ranks get as TORCHELASTIC_RUN_ID (`--rdzv-id`, torchrun's default `none`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rdzv_id: Option<String>,
}

/// Whether an address (or `localhost`) is a loopback address.
pub fn is_loopback(addr: &str) -> bool {
    addr == "localhost"
        || addr
            .parse::<std::net::IpAddr>()
            .is_ok_and(|a| a.is_loopback())
}
