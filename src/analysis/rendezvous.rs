//! Jobs by rendezvous, not by launcher: process trees whose ranks share one rendezvous (address,
//! port, world size, distinct ranks) and one store are one job, however they were started
//! (torchrun, Lightning, `srun`/slurmstepd, `mpirun`, a plain subprocess launcher). Linked by:
//! one hosts the store the other connects to, both connect to one endpoint, one SLURM job, or
//! one parent that started both.

use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::analysis::facts::{Analysis, Job, Role};
use crate::model::snapshot::Proto;

/// What one tree-built job says about its rendezvous.
#[derive(Clone, Debug, Default)]
struct Rendezvous {
    addr: Option<String>,
    port: Option<u16>,
    world: Option<i64>,
    run_id: Option<String>,
    slurm: Option<String>,
    /// Rank keys (see `Identity::rank_key`) of the job's ranks.
    ranks: BTreeSet<(i64, i64)>,
    /// A process of the job listens on the port: the store is here.
    store_here: bool,
    /// The endpoints (loopback folded into one) the job's processes connect to on the port
    /// (connected, or left connected to a store that closed).
    endpoints: BTreeSet<Option<IpAddr>>,
    /// The parent of the job's root: ranks one launcher started side by side (a rank that has
    /// not connected yet still belongs with its siblings).
    parents: BTreeSet<i32>,
}

impl Rendezvous {
    fn of(a: &Analysis, job: &Job) -> Rendezvous {
        let mut r = Rendezvous {
            addr: job
                .rendezvous
                .master_addr
                .clone()
                .map(|s| fold_addr_name(&s)),
            port: job.rendezvous.master_port,
            world: job.rendezvous.world_size,
            run_id: job
                .rendezvous
                .run_id
                .clone()
                .filter(|r| !r.is_empty() && r != "none"),
            slurm: job.rendezvous.slurm_job_id.clone(),
            ..Rendezvous::default()
        };
        if let Some(root) = a.process(job.root).filter(|p| p.ppid > 1) {
            r.parents.insert(root.ppid);
        }
        let Some(port) = job.rendezvous.master_port else {
            return r;
        };
        for &pid in &job.pids {
            if a.role(pid) == Role::Rank {
                r.ranks.extend(a.identity(pid).and_then(|i| i.rank_key()));
            }
            for s in a.sockets_of(pid) {
                if s.proto != Proto::Tcp {
                    continue;
                }
                if s.state == "LISTEN" && s.local_port == port {
                    r.store_here = true;
                } else if (s.state == "ESTABLISHED" || s.state == "CLOSE_WAIT")
                    && s.remote_port == port
                {
                    // (CLOSE_WAIT: connected to a store that closed its end, as the ranks of a
                    // killed torchrun agent are: they still joined the same one.)
                    r.endpoints.insert(fold_loopback(s.remote_addr));
                }
            }
        }
        r
    }

    /// Same rendezvous, distinct ranks, and one store between them.
    fn joins(&self, other: &Rendezvous) -> bool {
        let same_key = self.port.is_some()
            && self.port == other.port
            && self.addr == other.addr
            && self.world == other.world
            && (self.run_id.is_none() || other.run_id.is_none() || self.run_id == other.run_id);
        if !same_key || self.ranks.is_empty() || other.ranks.is_empty() {
            return false;
        }
        if !self.ranks.is_disjoint(&other.ranks) {
            return false;
        }
        let loopback: Option<IpAddr> = None;
        (self.store_here && other.endpoints.contains(&loopback))
            || (other.store_here && self.endpoints.contains(&loopback))
            || !self.endpoints.is_disjoint(&other.endpoints)
            || !self.parents.is_disjoint(&other.parents)
            || (self.slurm.is_some() && self.slurm == other.slurm)
    }

    fn absorb(&mut self, other: Rendezvous) {
        self.ranks.extend(other.ranks);
        self.endpoints.extend(other.endpoints);
        self.store_here |= other.store_here;
        self.parents.extend(other.parents);
        self.run_id = self.run_id.take().or(other.run_id);
    }
}

/// Loopback and "this host" spellings of MASTER_ADDR fold into one.
fn fold_addr_name(s: &str) -> String {
    let t = s.trim();
    match t.parse::<IpAddr>() {
        Ok(ip) if fold_loopback(ip).is_none() => "localhost".into(),
        _ if t.eq_ignore_ascii_case("localhost") => "localhost".into(),
        _ => t.to_string(),
    }
}

/// `None` for loopback (127/8, ::1, ::ffff:127/104), else the address.
fn fold_loopback(ip: IpAddr) -> Option<IpAddr> {
    let loop_ = match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    };
    (!loop_).then_some(ip)
}

impl Analysis<'_> {
    /// Merge the tree-built jobs that share one rendezvous and store.
    pub(crate) fn join_jobs_by_rendezvous(&mut self) {
        let jobs = std::mem::take(&mut self.jobs);
        let mut groups: Vec<(Rendezvous, Vec<Job>)> = Vec::new();
        for job in jobs {
            let r = Rendezvous::of(self, &job);
            match groups.iter_mut().find(|(g, _)| g.joins(&r)) {
                Some((g, members)) => {
                    g.absorb(r);
                    members.push(job);
                }
                None => groups.push((r, vec![job])),
            }
        }
        self.job_of.clear();
        for (_, members) in groups {
            let job = self.merge(members);
            let j = self.jobs.len();
            for &p in &job.pids {
                self.job_of.insert(p, j);
            }
            self.jobs.push(job);
        }
    }

    /// One job of several trees: rooted where the store is (else the first), gone only when
    /// every part lost its launcher.
    fn merge(&self, mut members: Vec<Job>) -> Job {
        if members.len() == 1 {
            return members.pop().expect("one member");
        }
        let lead = members
            .iter()
            .position(|m| {
                m.rendezvous
                    .master_port
                    .is_some_and(|port| m.pids.iter().any(|&p| self.listens_on_pid(p, port)))
            })
            .unwrap_or(0);
        let mut job = members[lead].clone();
        job.launcher_gone = members.iter().all(|m| m.launcher_gone);
        for (i, m) in members.into_iter().enumerate() {
            if i == lead {
                continue;
            }
            job.pids.extend(m.pids);
            job.rendezvous.run_id = job.rendezvous.run_id.or(m.rendezvous.run_id);
            job.rendezvous.slurm_job_id = job.rendezvous.slurm_job_id.or(m.rendezvous.slurm_job_id);
            job.rendezvous.master_addr = job.rendezvous.master_addr.or(m.rendezvous.master_addr);
        }
        job.pids.sort_unstable();
        job.pids.dedup();
        job
    }

    fn listens_on_pid(&self, pid: i32, port: u16) -> bool {
        self.process(pid).is_some_and(|p| self.listens_on(p, port))
    }
}
