//! Who a process believes it is in the rendezvous: the variables torch's launchers set
//! (`MASTER_ADDR`, `MASTER_PORT`, `RANK`, `LOCAL_RANK`, `NODE_RANK`, `WORLD_SIZE`,
//! `TORCHELASTIC_RUN_ID`, `SLURM_JOB_ID`). One type for a process's identity (analysis), a job's
//! shared rendezvous (its ranks' fields without the rank ones) and a rank read back from a report
//! (`report::Rank`).

use serde::Serialize;

use crate::model::snapshot::Process;

/// Who a process believes it is in the rendezvous.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Identity {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master_addr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master_port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rank: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_rank: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_rank: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub world_size: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slurm_job_id: Option<String>,
    /// Not read from the process's own environment but deduced (Lightning's rank 0 sets its
    /// identity in `os.environ` after exec; its children show it).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub inferred: bool,
}

impl Identity {
    /// What the process's own environment says (`MASTER_*`, `RANK`, ...); `None` when it names
    /// neither a port nor a rank.
    pub fn from_env(p: &Process) -> Option<Identity> {
        let id = Identity {
            master_addr: p.env("MASTER_ADDR").map(str::to_string),
            master_port: p.master_port(),
            rank: p.env_int("RANK"),
            local_rank: p.env_int("LOCAL_RANK"),
            node_rank: p.env_int("NODE_RANK").or_else(|| p.env_int("GROUP_RANK")),
            world_size: p.env_int("WORLD_SIZE"),
            run_id: p.env("TORCHELASTIC_RUN_ID").map(str::to_string),
            slurm_job_id: p.env("SLURM_JOB_ID").map(str::to_string),
            inferred: false,
        };
        (id.master_port.is_some() || id.has_rank()).then_some(id)
    }

    pub fn has_rank(&self) -> bool {
        self.rank.is_some() || self.local_rank.is_some()
    }

    /// The key two ranks of one job must not share.
    pub fn rank_key(&self) -> Option<(i64, i64)> {
        match (self.rank, self.local_rank) {
            (Some(r), _) => Some((-1, r)),
            (None, Some(l)) => Some((self.node_rank.unwrap_or(0), l)),
            _ => None,
        }
    }

    /// `rank 1/2 local 1`, `local 0 node 1`, ...; `*` marks an inferred identity.
    pub fn label(&self) -> String {
        let mut parts = Vec::new();
        match (self.rank, self.world_size) {
            (Some(r), Some(w)) => parts.push(format!("rank {r}/{w}")),
            (Some(r), None) => parts.push(format!("rank {r}")),
            _ => {}
        }
        if let Some(l) = self.local_rank.filter(|l| self.rank != Some(*l)) {
            parts.push(format!("local {l}"));
        }
        if let (None, Some(w)) = (self.rank, self.world_size) {
            parts.push(format!("of {w}"));
        }
        if let Some(n) = self.node_rank.filter(|n| *n != 0) {
            parts.push(format!("node {n}"));
        }
        let mut s = parts.join(" ");
        if self.inferred && !s.is_empty() {
            s.push('*');
        }
        s
    }

    /// Same port and same rank key.
    pub fn same_rendezvous(&self, other: &Identity) -> bool {
        self.master_port == other.master_port && self.rank_key() == other.rank_key()
    }

    /// The fields a whole job shares (address, port, world size, run and Slurm ids), without
    /// the rank fields.
    pub fn rendezvous(self) -> Identity {
        Identity {
            rank: None,
            local_rank: None,
            node_rank: None,
            inferred: false,
            ..self
        }
    }
}
