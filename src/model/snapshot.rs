//! The plain-data view of a machine at one moment. Everything that explains works on this type,
//! so a rule runs the same on a live machine and on a snapshot a customer sent.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::user_error;

/// The version of every document doctor writes (docs/changelog.md says what changed).
pub const SCHEMA_VERSION: u32 = 2;

/// The `kind` of a snapshot document.
pub const SNAPSHOT_KIND: &str = "doctor-snapshot";

/// `1 and 2`: the schema versions doctor reads, for messages.
pub fn reads_text() -> String {
    READS_SCHEMA_VERSIONS
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(" and ")
}

/// The versions doctor reads: schema 1 documents (numeric times, `fix` as a string) still load.
pub const READS_SCHEMA_VERSIONS: std::ops::RangeInclusive<u64> = 1..=2;

/// Rendezvous-related environment variables kept from `/proc/PID/environ`; nothing else is kept.
pub const RENDEZVOUS_ENV: &[&str] = &[
    "MASTER_ADDR",
    "MASTER_PORT",
    "RANK",
    "LOCAL_RANK",
    "NODE_RANK",
    "GROUP_RANK",
    "ROLE_RANK",
    "WORLD_SIZE",
    "LOCAL_WORLD_SIZE",
    "GROUP_WORLD_SIZE",
    "SLURM_JOB_ID",
    "SLURM_STEP_ID",
    "SLURM_PROCID",
    "SLURM_LOCALID",
    "SLURM_NODEID",
    "CUDA_VISIBLE_DEVICES",
    "OMPI_COMM_WORLD_RANK",
    "OMPI_COMM_WORLD_LOCAL_RANK",
    "PMI_RANK",
    "NCCL_SOCKET_IFNAME",
    "GLOO_SOCKET_IFNAME",
];

/// Prefixes of variables that are kept whole (torchrun's own).
pub const RENDEZVOUS_ENV_PREFIXES: &[&str] = &["TORCHELASTIC_"];

pub fn is_rendezvous_env(name: &str) -> bool {
    RENDEZVOUS_ENV.contains(&name) || RENDEZVOUS_ENV_PREFIXES.iter().any(|p| name.starts_with(p))
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Snapshot {
    pub schema_version: u32,
    /// The envelope (docs/contracts.md): `doctor-snapshot`, the doctor that wrote it and the
    /// host's name; snapshots of schema 1 have none of the three.
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub doctor_version: String,
    #[serde(default)]
    pub hostname: String,
    /// When observation started (Unix seconds; RFC 3339 in documents).
    #[serde(with = "crate::model::time::serde_rfc3339")]
    pub taken_at: f64,
    pub host: Host,
    pub processes: Vec<Process>,
    pub sockets: Vec<Socket>,
    /// What could not be read, per pid and file; never a reason to abort.
    #[serde(default)]
    pub unreadable: Vec<Unreadable>,
    /// Real binds of rendezvous ports that nobody listens on but some connection uses, made
    /// with torch's socket options when the snapshot was analysed live (`sys::bindable`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bind_probes: Vec<BindProbe>,
}

/// Whether a bind of `port` as torch's TCPStore binds it (SO_REUSEADDR) succeeded.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct BindProbe {
    pub port: u16,
    /// true: it bound; false: EADDRINUSE; null: the bind failed for another reason.
    pub binds: Option<bool>,
    /// The error when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Host {
    pub hostname: String,
    pub kernel: String,
    /// `net.ipv4.ip_local_port_range`: the ports the kernel hands out for outgoing connections.
    pub ephemeral_range: [u16; 2],
    /// `net.ipv4.ip_local_reserved_ports`, as inclusive ranges.
    #[serde(default)]
    pub reserved_ports: Vec<[u16; 2]>,
    /// The uid that took the snapshot (0 sees everything).
    pub observer_uid: u32,
    /// The pid that took the snapshot, left out of the analysis.
    #[serde(default)]
    pub observer_pid: i32,
    /// The process group and session of the process that took the snapshot: a kill fix never
    /// names them (it would stop the caller, its shell or its terminal). 0: not known.
    #[serde(default)]
    pub observer_pgid: i32,
    #[serde(default)]
    pub observer_sid: i32,
    /// The addresses of this host's network namespace (empty: not known, an older snapshot):
    /// whether a job's MASTER_ADDR is this host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<std::net::IpAddr>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Process {
    pub pid: i32,
    pub ppid: i32,
    pub pgid: i32,
    pub sid: i32,
    pub uid: u32,
    /// Kernel state letter: R, S, D (uninterruptible), Z (zombie), T, t, I, X.
    pub state: String,
    /// When the process started (Unix seconds; RFC 3339 in documents).
    #[serde(with = "crate::model::time::serde_rfc3339")]
    pub start_time: f64,
    pub comm: String,
    pub exe: Option<String>,
    /// argv, decoded lossily (invalid UTF-8 becomes U+FFFD; `argv_lossy` says so).
    pub argv: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub argv_lossy: bool,
    /// Only the rendezvous-related variables (see `RENDEZVOUS_ENV`).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub socket_inodes: Vec<u64>,
    /// Holds a `/dev/nvidia*` file open.
    #[serde(default)]
    pub gpu: bool,
    /// The user name of `uid`, for processes that hold sockets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `/proc/PID/cgroup` (trimmed), for processes that hold sockets: tells a systemd service or
    /// a container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    /// `/proc/PID/wchan`: the kernel function a sleeping rank waits in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wchan: Option<String>,
    /// The system call a sleeping rank is blocked in (`futex`, `accept`, ...; from
    /// `/proc/PID/syscall`), or `running`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syscall: Option<String>,
    /// The Python stack (`py-spy dump`), innermost frame first, when py-spy could read it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub py_stack: Vec<String>,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    /// `tcp` or `udp`, as documents spell it.
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Socket {
    pub proto: Proto,
    /// `LISTEN`, `ESTABLISHED`, `TIME_WAIT`, ... for TCP; `UNCONN` or `ESTABLISHED` for UDP.
    pub state: String,
    pub local_addr: IpAddr,
    pub local_port: u16,
    pub remote_addr: IpAddr,
    pub remote_port: u16,
    /// 0 for sockets no process holds (TIME_WAIT).
    pub inode: u64,
    pub uid: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Unreadable {
    pub pid: i32,
    pub what: String,
    pub reason: String,
}

impl Snapshot {
    pub fn process(&self, pid: i32) -> Option<&Process> {
        self.processes
            .binary_search_by_key(&pid, |p| p.pid)
            .ok()
            .map(|i| &self.processes[i])
    }

    /// Load a snapshot written by `doctor snapshot` (YAML or JSON).
    pub fn load(path: &Path) -> anyhow::Result<Snapshot> {
        let text = super::load::read_document(path).map_err(|e| {
            user_error(
                format!("cannot read snapshot {}: {e}", path.display()),
                "pass a file written by `doctor snapshot -o FILE` (YAML or JSON)",
            )
        })?;
        Self::parse(&text).map_err(|e| {
            user_error(
                format!("{} is not a doctor snapshot: {e}", path.display()),
                "write one with `doctor snapshot -o FILE` (YAML or JSON)",
            )
        })
    }

    /// A snapshot of this machine's `host`, taken at `taken_at`: the envelope filled in.
    pub fn new(taken_at: f64, host: Host) -> Snapshot {
        Snapshot {
            schema_version: SCHEMA_VERSION,
            kind: SNAPSHOT_KIND.into(),
            doctor_version: env!("CARGO_PKG_VERSION").into(),
            hostname: host.hostname.clone(),
            taken_at,
            host,
            ..Snapshot::default()
        }
    }

    pub fn parse(text: &str) -> Result<Snapshot, String> {
        super::load::check_nesting(text)?;
        let value: serde_json::Value = if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| e.to_string())?
        } else {
            serde_yaml::from_str(text).map_err(|e| e.to_string())?
        };
        match value.get("schema_version").and_then(|v| v.as_u64()) {
            Some(v) if READS_SCHEMA_VERSIONS.contains(&v) => {}
            Some(v) => {
                return Err(format!(
                    "schema_version {v} is not supported (this doctor reads {})",
                    reads_text()
                ));
            }
            None => {
                return Err(match value.get("schema_version") {
                    None => "no schema_version field".into(),
                    Some(other) => format!(
                        "schema_version {} is not a version (a whole number: this doctor reads {})",
                        serde_json::to_string(other).unwrap_or_default(),
                        reads_text()
                    ),
                });
            }
        }
        // Another document of doctor's (a report, a run record) is named as what it is.
        if let Some(kind) = value.get("kind").and_then(|k| k.as_str())
            && kind != SNAPSHOT_KIND
        {
            return Err(format!(
                "it is a {} document (kind {kind:?}), not a snapshot",
                kind.strip_prefix("doctor-").unwrap_or(kind)
            ));
        }
        let mut snap: Snapshot = serde_json::from_value(value).map_err(|e| e.to_string())?;
        snap.processes.sort_by_key(|p| p.pid);
        // A pid is one process (a hand-edited or concatenated file may repeat one): keep the first.
        snap.processes.dedup_by_key(|p| p.pid);
        Ok(snap)
    }
}

impl Process {
    pub fn env(&self, key: &str) -> Option<&str> {
        self.env.get(key).map(String::as_str)
    }

    pub fn env_int(&self, key: &str) -> Option<i64> {
        self.env(key).and_then(|v| v.trim().parse().ok())
    }

    /// `MASTER_PORT` as a port number.
    pub fn master_port(&self) -> Option<u16> {
        self.env("MASTER_PORT")
            .and_then(|v| v.trim().parse().ok())
            .filter(|p| *p != 0)
    }

    /// The command line for people: argv joined, or `[comm]` for kernel threads and zombies.
    pub fn command(&self) -> String {
        if self.argv.is_empty() {
            format!("[{}]", self.comm)
        } else {
            self.argv.join(" ")
        }
    }

    pub fn is_zombie(&self) -> bool {
        self.state == "Z"
    }
}

/// True when `port` lies in the ephemeral range and is not reserved.
pub fn in_ephemeral_range(host: &Host, port: u16) -> bool {
    let [lo, hi] = host.ephemeral_range;
    lo <= port
        && port <= hi
        && !host
            .reserved_ports
            .iter()
            .any(|[a, b]| *a <= port && port <= *b)
}
