//! The report document (`doctor report`), read back by `doctor merge`: its kind and what the
//! merge keeps of one report (a [`Node`] with its [`Rank`]s and [`Versions`]).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

/// The `kind` of a report document.
pub const REPORT_KIND: &str = "doctor-report";

/// One rank as a node's report shows it.
#[derive(Clone, Debug, Serialize)]
pub struct Rank {
    pub pid: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rank: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_rank: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_rank: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub world_size: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master_addr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master_port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slurm_job_id: Option<String>,
    pub command: String,
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
}

/// Whether an address (or `localhost`) is a loopback address.
pub fn is_loopback(addr: &str) -> bool {
    addr == "localhost"
        || addr
            .parse::<std::net::IpAddr>()
            .is_ok_and(|a| a.is_loopback())
}
