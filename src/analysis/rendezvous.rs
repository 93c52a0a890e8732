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

/// Jobs grouped by rendezvous: each job joins the first group (in the order groups were made)
/// that [`Rendezvous::joins`] it, else starts a new one. The same answer as trying every group in
/// turn, without the n^2 of that when thousands of jobs share a rendezvous key and none can join
/// (100,000 children of one parent, each claiming rank 0): a job is tried only against groups
/// of its key (port, address, world size) that share a link with it (an endpoint, the store,
/// a parent, a SLURM job), and within each such list, from a cursor per rank key before which
/// every group already holds that rank (groups only gain ranks, so a cursor only moves on).
struct Grouping {
    /// For each job, in order: the index of its group (groups numbered as they were made).
    member_of: Vec<usize>,
    /// How many times a job was compared with a group (the work; a test bounds it).
    comparisons: usize,
}

/// What two rendezvous must share to join at all.
type Key = (u16, Option<String>, Option<i64>);

/// One way two jobs of one key can be linked (see [`Rendezvous::joins`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Link {
    /// Connected to this endpoint on the port (`None`: loopback, so a store on this host).
    Endpoint(Option<IpAddr>),
    /// Hosts the store.
    Store,
    Parent(i32),
    Slurm(String),
}

impl Rendezvous {
    fn key(&self) -> Option<Key> {
        Some((self.port?, self.addr.clone(), self.world))
    }

    /// The lists this group belongs in.
    fn links(&self) -> Vec<Link> {
        let mut out: Vec<Link> = self.endpoints.iter().map(|&e| Link::Endpoint(e)).collect();
        out.extend(self.store_here.then_some(Link::Store));
        out.extend(self.parents.iter().map(|&p| Link::Parent(p)));
        out.extend(self.slurm.clone().map(Link::Slurm));
        out
    }

    /// The lists holding every group this one could join: those sharing an endpoint, a parent
    /// or a SLURM job; with the store when it connects on loopback; connected on loopback when
    /// it hosts the store.
    fn wanted(&self) -> Vec<Link> {
        let mut out = self.links();
        out.retain(|l| *l != Link::Store);
        if self.endpoints.contains(&None) {
            out.push(Link::Store);
        }
        if self.store_here && !self.endpoints.contains(&None) {
            out.push(Link::Endpoint(None));
        }
        out
    }
}

/// The groups of one key that have one link, by group number, with the rank cursors.
#[derive(Default)]
struct List {
    groups: BTreeSet<usize>,
    /// Rank key -> a group number before which every group of this list holds that rank.
    holds_before: std::collections::HashMap<(i64, i64), usize>,
}

impl Grouping {
    fn of(jobs: Vec<Rendezvous>) -> Grouping {
        use std::collections::HashMap;
        let mut groups: Vec<Rendezvous> = Vec::new();
        let mut lists: HashMap<(Key, Link), List> = HashMap::new();
        let mut out = Grouping {
            member_of: Vec::with_capacity(jobs.len()),
            comparisons: 0,
        };
        for r in jobs {
            // Without a port or a rank a job joins nothing and nothing joins it.
            let key = r.key().filter(|_| !r.ranks.is_empty());
            let Some(key) = key else {
                out.member_of.push(groups.len());
                groups.push(r);
                continue;
            };
            let mut best: Option<usize> = None;
            for link in r.wanted() {
                if let Some(list) = lists.get_mut(&(key.clone(), link)) {
                    let limit = best.unwrap_or(usize::MAX);
                    if let Some(g) = list.first_fit(&r, &groups, limit, &mut out.comparisons) {
                        best = Some(g);
                    }
                }
            }
            let g = match best {
                Some(g) => {
                    let before = groups[g].links();
                    groups[g].absorb(r);
                    for link in groups[g].links() {
                        if !before.contains(&link) {
                            lists
                                .entry((key.clone(), link))
                                .or_default()
                                .insert_late(g, &groups[g]);
                        }
                    }
                    g
                }
                None => {
                    let g = groups.len();
                    for link in r.links() {
                        lists
                            .entry((key.clone(), link))
                            .or_default()
                            .groups
                            .insert(g);
                    }
                    groups.push(r);
                    g
                }
            };
            out.member_of.push(g);
        }
        out
    }
}

impl List {
    /// The first group of this list, numbered below `limit`, that `r` joins.
    fn first_fit(
        &mut self,
        r: &Rendezvous,
        groups: &[Rendezvous],
        limit: usize,
        comparisons: &mut usize,
    ) -> Option<usize> {
        let start = r
            .ranks
            .iter()
            .map(|k| self.holds_before.get(k).copied().unwrap_or(0))
            .max()
            .unwrap_or(0);
        // The ranks whose cursor is `start`: while the groups from there on hold one, its cursor
        // moves past them.
        let mut moving: Vec<(i64, i64)> = r
            .ranks
            .iter()
            .filter(|k| self.holds_before.get(*k).copied().unwrap_or(0) == start)
            .copied()
            .collect();
        let mut found = None;
        for &g in self.groups.range(start..limit.max(start)) {
            *comparisons += 1;
            let group = &groups[g];
            moving.retain(|k| {
                let held = group.ranks.contains(k);
                if held {
                    self.holds_before.insert(*k, g + 1);
                }
                held
            });
            if group.joins(r) {
                found = Some(g);
                break;
            }
        }
        found
    }

    /// Group `g`, made earlier, now has this list's link: cursors past it that it does not hold
    /// come back to it.
    fn insert_late(&mut self, g: usize, group: &Rendezvous) {
        self.groups.insert(g);
        for (k, before) in self.holds_before.iter_mut() {
            if *before > g && !group.ranks.contains(k) {
                *before = g;
            }
        }
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
        let rendezvous: Vec<Rendezvous> = jobs.iter().map(|j| Rendezvous::of(self, j)).collect();
        let mut members: Vec<Vec<Job>> = Vec::new();
        for (job, g) in jobs.into_iter().zip(Grouping::of(rendezvous).member_of) {
            if g == members.len() {
                members.push(Vec::new());
            }
            members[g].push(job);
        }
        self.job_of.clear();
        for members in members {
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The grouping as it was written first: every job tried against every group in turn.
    /// Returns each job's group and the number of comparisons.
    fn every_group_in_turn(jobs: &[Rendezvous]) -> (Vec<usize>, usize) {
        let mut groups: Vec<Rendezvous> = Vec::new();
        let mut member_of = Vec::new();
        let mut comparisons = 0;
        for r in jobs {
            let found = groups.iter().position(|g| {
                comparisons += 1;
                g.joins(r)
            });
            match found {
                Some(g) => {
                    groups[g].absorb(r.clone());
                    member_of.push(g);
                }
                None => {
                    member_of.push(groups.len());
                    groups.push(r.clone());
                }
            }
        }
        (member_of, comparisons)
    }

    fn job(rank: i64, parent: Option<i32>, store: bool, connected: bool) -> Rendezvous {
        Rendezvous {
            addr: Some("localhost".into()),
            port: Some(29500),
            world: Some(2),
            ranks: [(-1, rank)].into(),
            store_here: store,
            endpoints: if connected {
                [None].into()
            } else {
                BTreeSet::new()
            },
            parents: parent.into_iter().collect(),
            ..Rendezvous::default()
        }
    }

    /// Shapes of many jobs under one parent or one store: the comparisons stay within a few per
    /// job (they were n^2/2 for the first two: 100,000 children of one parent took 21 s).
    #[test]
    fn grouping_many_jobs_is_linear_in_comparisons() {
        let n = 20_000;
        let shapes: Vec<(&str, Vec<Rendezvous>)> = vec![
            (
                "children of one parent, all rank 0",
                (0..n).map(|_| job(0, Some(5), false, false)).collect(),
            ),
            (
                "connected to one loopback store, all rank 0",
                (0..n).map(|i| job(0, None, i == 0, true)).collect(),
            ),
            (
                "children of one parent, ranks 0 and 1 alternating",
                (0..n).map(|i| job(i % 2, Some(5), false, false)).collect(),
            ),
            (
                "children of one parent, ranks 0..7 in turn",
                (0..n).map(|i| job(i % 8, Some(5), false, true)).collect(),
            ),
            (
                "children of one parent, each its own rank",
                (0..n).map(|i| job(i, Some(5), false, false)).collect(),
            ),
            (
                "children of init (no link), all rank 0",
                (0..n).map(|_| job(0, None, false, false)).collect(),
            ),
        ];
        for (name, jobs) in shapes {
            let small = Grouping::of(jobs[..n as usize / 10].to_vec());
            let big = Grouping::of(jobs.clone());
            assert!(
                big.comparisons <= 4 * n as usize,
                "{name}: {} comparisons for {n} jobs",
                big.comparisons
            );
            assert!(
                big.comparisons <= 11 * small.comparisons.max(n as usize / 10),
                "{name}: 10x the jobs, {} -> {} comparisons",
                small.comparisons,
                big.comparisons
            );
            // Same groups as trying every group in turn (on a prefix: that one is quadratic).
            let prefix = &jobs[..2000];
            assert_eq!(
                Grouping::of(prefix.to_vec()).member_of,
                every_group_in_turn(prefix).0,
                "{name}"
            );
        }
        // The reference really is quadratic on the first shape, so the bound above means something.
        let all_rank_0: Vec<Rendezvous> =
            (0..2000).map(|_| job(0, Some(5), false, false)).collect();
        assert!(every_group_in_turn(&all_rank_0).1 > 1_000_000);
    }

    /// Random jobs, most of one key (so that links, rank clashes, late links and run-id clashes
    /// all occur among them).
    fn rendezvous() -> impl Strategy<Value = Rendezvous> {
        let ip = Some(IpAddr::from([10, 0, 0, 1]));
        let pick = |v: Vec<Option<&'static str>>| prop::sample::select(v);
        (
            (
                prop::sample::select(vec![
                    Some(29500u16),
                    Some(29500),
                    Some(29500),
                    Some(29501),
                    None,
                ]),
                pick(vec![None, None, None, Some("node1")]),
                prop::sample::select(vec![None, None, None, Some(2i64)]),
                pick(vec![None, None, None, None, Some("a"), Some("b")]),
                pick(vec![None, None, None, None, Some("7")]),
            ),
            prop::collection::btree_set((-1i64..0, 0i64..4), 0..3),
            prop::sample::select(vec![false, false, false, true]),
            prop::collection::btree_set(prop::sample::select(vec![None, ip]), 0..2),
            prop::collection::btree_set(4i32..7, 0..2),
        )
            .prop_map(
                |((port, addr, world, run_id, slurm), ranks, store_here, endpoints, parents)| {
                    Rendezvous {
                        addr: addr.map(str::to_string),
                        port,
                        world,
                        run_id: run_id.map(str::to_string),
                        slurm: slurm.map(str::to_string),
                        ranks,
                        store_here,
                        endpoints,
                        parents,
                    }
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]
        /// Differential: the indexed grouping puts every job where trying every group in turn
        /// does, on random jobs over few ports, addresses, ranks, endpoints and parents (so that
        /// links, rank clashes, late links and run-id clashes all occur).
        #[test]
        fn grouping_is_the_same_as_trying_every_group(jobs in prop::collection::vec(rendezvous(), 0..60)) {
            prop_assert_eq!(Grouping::of(jobs.clone()).member_of, every_group_in_turn(&jobs).0);
        }
    }
}
