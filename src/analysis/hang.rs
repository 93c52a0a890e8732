//! Rendezvous that does not complete: a job's store (on this host) has fewer ranks connected
//! than the world size, for longer than a healthy start takes. One snapshot suffices: the age of
//! the youngest rank (its start time) says how long the job has been waiting at least.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::analysis::facts::{Analysis, Role};
use crate::model::snapshot::Proto;

pub use crate::analysis::facts::HANG_AFTER_SECS;

/// One job stuck at rendezvous.
#[derive(Clone, Debug)]
pub struct Hang {
    pub job: usize,
    pub port: u16,
    pub world: i64,
    /// Ranks connected to the store: those seen here plus connections from other hosts.
    pub connected: i64,
    /// Rank numbers no live process on this host carries.
    pub missing: Vec<i64>,
    /// Ranks that are alive here but not connected to the store (pid, rank).
    pub unconnected: Vec<(i32, i64)>,
    /// Connected ranks here, waiting for the others (pid, rank).
    pub waiting: Vec<(i32, i64)>,
    /// Connections to the store from other hosts.
    pub remote: i64,
    /// Seconds the youngest rank has lived: the job has waited at least this long.
    pub waited: f64,
    /// MASTER_ADDR when it is no address of this host although the store is here, and no
    /// connection to it is established (nothing answers there): the ranks' clients go elsewhere.
    pub foreign_addr: Option<IpAddr>,
    /// The rank that hosts the store here (pid, rank) when `foreign_addr` is set.
    pub store_host: Option<(i32, i64)>,
}

impl Analysis<'_> {
    /// The jobs that wait at rendezvous for more than `hang_after` seconds ([`HANG_AFTER_SECS`],
    /// or 0 for the moment `doctor run --timeout` stops a command).
    pub fn hangs(&self) -> Vec<Hang> {
        (0..self.jobs.len())
            .filter_map(|j| self.hang_of(j))
            .collect()
    }

    /// What D009 cannot judge, as notes for people: jobs whose store is here and whose ranks carry
    /// no world size (the spawn and fork ranks of `mp.spawn`, `ddp_spawn`, `ddp_notebook`: torch
    /// hands `world_size` to the function it starts, not to the environment, and nothing else of
    /// the process says it), so whether their rendezvous completed is not known. One note per
    /// such job on one of `ports` (every port when empty).
    pub fn unjudged_rendezvous(&self, ports: &[u16]) -> Vec<String> {
        let mut out = Vec::new();
        for job in &self.jobs {
            let Some(port) = job.rendezvous.master_port else {
                continue;
            };
            if job.launcher_gone || !(ports.is_empty() || ports.contains(&port)) {
                continue;
            }
            let ranks: Vec<i32> = job
                .pids
                .iter()
                .copied()
                .filter(|&p| self.role(p) == Role::Rank)
                .filter(|&p| self.process(p).is_some_and(|q| !q.is_zombie()))
                .collect();
            let world = job.pids.iter().find_map(|&p| self.identity(p)?.world_size);
            let store_here = job
                .pids
                .iter()
                .any(|&p| self.process(p).is_some_and(|q| self.listens_on(q, port)));
            if ranks.is_empty() || world.is_some() || !store_here {
                continue;
            }
            let list: Vec<String> = ranks.iter().take(8).map(i32::to_string).collect();
            out.push(format!(
                "note: {} on port {port}: its ranks (pids {}) carry no WORLD_SIZE in their environment (spawn or \
                 fork children: torch passes world_size to the function it starts), so whether its rendezvous \
                 completed is not judged (no D009 either way); `py-spy dump --locals --pid {}` shows the world_size \
                 init_process_group was given",
                job.id,
                list.join(", "),
                ranks[0]
            ));
        }
        out
    }

    /// Pids worth asking what they are blocked in: the ranks of jobs that may hang.
    pub fn hang_suspects(&self) -> Vec<i32> {
        self.hangs()
            .iter()
            .flat_map(|h| h.waiting.iter().chain(&h.unconnected).map(|(p, _)| *p))
            .collect()
    }

    fn hang_of(&self, j: usize) -> Option<Hang> {
        let job = &self.jobs[j];
        let port = job.rendezvous.master_port?;
        let ranks: Vec<(i32, i64)> = job
            .pids
            .iter()
            .filter(|&&p| self.role(p) == Role::Rank)
            .filter(|&&p| self.process(p).is_some_and(|q| !q.is_zombie()))
            .filter_map(|&p| Some((p, self.rank_number(p)?)))
            .collect();
        let world = job
            .pids
            .iter()
            .filter_map(|&p| self.identity(p)?.world_size)
            .max()?;
        if !(2..=65536).contains(&world) || ranks.is_empty() {
            return None;
        }
        let store: BTreeSet<i32> = job
            .pids
            .iter()
            .copied()
            .filter(|&p| self.process(p).is_some_and(|q| self.listens_on(q, port)))
            .collect();
        if store.is_empty() {
            return None; // the store is on another host: its count is not visible here
        }
        // A leftover (launcher gone, parent a zombie, stuck in D) is D003's, not a start that hangs.
        let leftover = |p: i32| {
            self.process(p)
                .is_some_and(|q| q.state == "D" || self.parent(q).is_some_and(|r| r.is_zombie()))
        };
        if job.launcher_gone || store.iter().any(|&p| leftover(p)) {
            return None;
        }
        let remote = self.remote_connections(&store, port);
        // MASTER_ADDR elsewhere while the store is here: hosting the store does not connect a
        // rank (its own client goes to MASTER_ADDR), and nothing answers there.
        let foreign_addr = self
            .foreign_master_addr(job.rendezvous.master_addr.as_deref())
            .filter(|&addr| !self.answers(addr, port));
        let (waiting, unconnected): (Vec<_>, Vec<_>) = ranks
            .iter()
            .partition(|(p, _)| self.connects_to(*p, port, foreign_addr.is_none()));
        let seen: BTreeSet<i64> = ranks.iter().map(|(_, r)| *r).collect();
        let here: BTreeSet<i64> = waiting.iter().map(|(_, r)| *r).collect();
        let connected = here.len() as i64 + remote;
        if connected >= world {
            return None;
        }
        let waited = ranks
            .iter()
            .filter_map(|(p, _)| self.process(*p))
            .map(|p| self.snap.taken_at - p.start_time)
            .fold(f64::INFINITY, f64::min);
        if waited < self.hang_after {
            return None;
        }
        let missing = if remote == 0 {
            (0..world).filter(|r| !seen.contains(r)).collect()
        } else {
            Vec::new() // other hosts take part: which ranks they run is not known here
        };
        Some(Hang {
            job: j,
            port,
            world,
            connected,
            missing,
            unconnected,
            waiting,
            remote,
            waited,
            store_host: foreign_addr.and_then(|_| {
                ranks
                    .iter()
                    .copied()
                    .find(|(p, _)| store.contains(p))
                    .or_else(|| store.first().map(|&p| (p, 0)))
            }),
            foreign_addr,
        })
    }

    /// `addr` as an address when it is certainly not this host's: an IP address that is not
    /// loopback, not unspecified and not one of the host's addresses. A host name, or a
    /// snapshot that does not list the host's addresses, says nothing.
    fn foreign_master_addr(&self, addr: Option<&str>) -> Option<IpAddr> {
        let ip: IpAddr = addr?.trim().trim_matches(['[', ']']).parse().ok()?;
        let local = &self.snap.host.addresses;
        if local.is_empty() || is_loopback(ip) || ip.is_unspecified() {
            return None;
        }
        let mapped = |a: IpAddr| match a {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(a, IpAddr::V4),
            v4 => v4,
        };
        (!local.iter().any(|&l| mapped(l) == mapped(ip))).then_some(ip)
    }

    /// Whether some process here has a connection established to `addr:port`.
    fn answers(&self, addr: IpAddr, port: u16) -> bool {
        self.snap.sockets.iter().any(|s| {
            s.proto == Proto::Tcp
                && s.state == "ESTABLISHED"
                && s.remote_port == port
                && s.remote_addr == addr
        })
    }

    /// The global rank of a rank process: RANK, else LOCAL_RANK on node 0.
    pub fn rank_number(&self, pid: i32) -> Option<i64> {
        let id = self.identity(pid)?;
        id.rank
            .or(id.local_rank.filter(|_| id.node_rank.unwrap_or(0) == 0))
    }

    /// Connected to the store: a client connection to the port, or hosting the store itself
    /// (when `hosting_counts`: its client is then its own store's).
    fn connects_to(&self, pid: i32, port: u16, hosting_counts: bool) -> bool {
        self.sockets_of(pid).iter().any(|s| {
            s.proto == Proto::Tcp
                && ((s.state == "ESTABLISHED" && s.remote_port == port)
                    || (hosting_counts && s.state == "LISTEN" && s.local_port == port))
        })
    }

    /// Accepted connections on the store from other hosts.
    fn remote_connections(&self, store: &BTreeSet<i32>, port: u16) -> i64 {
        let mut inodes = BTreeMap::new();
        for &p in store {
            for s in self.sockets_of(p) {
                if s.proto == Proto::Tcp
                    && s.state == "ESTABLISHED"
                    && s.local_port == port
                    && !is_loopback(s.remote_addr)
                    && s.remote_addr != s.local_addr
                {
                    inodes.insert(s.inode, ());
                }
            }
        }
        inodes.len() as i64
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}
