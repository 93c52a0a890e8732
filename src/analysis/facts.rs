//! Roles, rendezvous identities and jobs over a `Snapshot`: pure functions, no operating system.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// How far up [`Analysis::ancestors`] walks. Real process trees are a few dozen levels deep.
pub const MAX_ANCESTRY: usize = 64;

use serde::Serialize;

use crate::model::finding::Finding;
pub use crate::model::identity::Identity;
use crate::model::snapshot::{Process, Proto, Snapshot, Socket};

/// The default rendezvous ports: torchrun/accelerate/DeepSpeed static rendezvous, and the old
/// `torchrun --standalone` c10d port.
pub const DEFAULT_PORTS: [u16; 2] = [29500, 29400];

/// Process names that adopt orphans: a rank whose parent is one of these lost its launcher.
const SUBREAPERS: &[&str] = &[
    "systemd",
    "init",
    "tini",
    "dumb-init",
    "docker-init",
    "catatonit",
    "s6-svscan",
    "runit",
    "supervisord",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Launcher,
    Rank,
    SpawnChild,
    Forkserver,
    ForkserverChild,
    ForkChild,
    ResourceTracker,
    DataloaderWorker,
    Python,
    Other,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Launcher => "launcher",
            Role::Rank => "rank",
            Role::SpawnChild => "spawn-child",
            Role::Forkserver => "forkserver",
            Role::ForkserverChild => "forkserver-child",
            Role::ForkChild => "fork-child",
            Role::ResourceTracker => "resource-tracker",
            Role::DataloaderWorker => "dataloader-worker",
            Role::Python => "python",
            Role::Other => "other",
        }
    }

    /// Children a rank makes that re-run or share the training program (never ranks themselves).
    pub fn is_rank_descendant_kind(self) -> bool {
        matches!(
            self,
            Role::SpawnChild
                | Role::Forkserver
                | Role::ForkserverChild
                | Role::ForkChild
                | Role::DataloaderWorker
        )
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Job {
    /// `job-<root pid>`.
    pub id: String,
    pub root: i32,
    /// The rendezvous its ranks share: the identity fields of a job (no rank fields).
    #[serde(flatten)]
    pub rendezvous: Identity,
    pub pids: Vec<i32>,
    /// The process that started the ranks is gone: the job is a leftover.
    pub launcher_gone: bool,
}

/// A healthy rank imports torch and connects within this many seconds, even on a busy machine
/// (D009 waits this long before it calls a rendezvous hanging).
pub const HANG_AFTER_SECS: f64 = 15.0;

/// Everything the renderers and rules need, derived once from a snapshot.
pub struct Analysis<'a> {
    pub snap: &'a Snapshot,
    pub roles: HashMap<i32, Role>,
    pub identity: HashMap<i32, Identity>,
    pub children: HashMap<i32, Vec<i32>>,
    /// Process group -> its members (one lookup per group instead of a pass over every process).
    group_members: HashMap<i32, Vec<i32>>,
    pub jobs: Vec<Job>,
    pub job_of: HashMap<i32, usize>,
    /// The ranks of spawn/fork jobs whose launcher died, one list per dead launcher (children
    /// re-parented to init or a subreaper that share one rendezvous and process group).
    pub orphan_groups: Vec<Vec<i32>>,
    /// socket inode -> pids holding it.
    pub holders: HashMap<u64, Vec<i32>>,
    /// socket inode -> indices of its entries in `snap.sockets` (one lookup per inode instead of
    /// a pass over every socket per process).
    socket_entries: HashMap<u64, Vec<usize>>,
    /// Ports treated as rendezvous ports: every MASTER_PORT seen, launcher flags, the defaults,
    /// and the ones asked for.
    pub rendezvous_ports: BTreeSet<u16>,
    /// Ports some live process names as its MASTER_PORT (or a launcher flag), or asked for.
    pub used_ports: BTreeSet<u16>,
    /// Ports the user chose: in the exec environment of a launcher or a job's top rank, a
    /// launcher flag, or asked for; not a port a launcher picked by itself.
    pub fixed_ports: BTreeSet<u16>,
    /// Ports asked for on the command line (`--port`).
    pub asked_ports: BTreeSet<u16>,
    /// Ports a rank of a job failed to bind (as `doctor run` saw).
    pub failed_binds: BTreeSet<u16>,
    /// The port every "use another port" fix names.
    pub port_advice: PortAdvice,
    /// Seconds a job waits at rendezvous before it counts as hanging (D009).
    pub hang_after: f64,
    pub findings: Vec<Finding>,
}

/// The port a fix suggests instead of a taken one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortAdvice {
    /// Checked free on this machine at analysis time (a real bind succeeded).
    Free(u16),
    /// Not checked (a snapshot from elsewhere): some free port below the ephemeral range start.
    Below(u16),
}

impl PortAdvice {
    /// `MASTER_PORT=29510`, or `a free port below 32768 (...)`.
    pub fn text(self) -> String {
        match self {
            PortAdvice::Free(p) => format!("MASTER_PORT={p}"),
            PortAdvice::Below(lo) => format!(
                "a free port below {lo} (`doctor ports --free` on the training machine prints one)"
            ),
        }
    }

    /// `torchrun --master-port 29510` or `torchrun --master-port N`.
    pub fn number(self) -> String {
        match self {
            PortAdvice::Free(p) => p.to_string(),
            PortAdvice::Below(_) => "N".into(),
        }
    }
}

impl<'a> Analysis<'a> {
    /// Roles, identities and the jobs the process tree shows; the caller
    /// ([`Analysis::facts`]) then joins jobs by rendezvous and collects the ports.
    pub(super) fn tree_facts(snap: &'a Snapshot, extra_ports: &[u16]) -> Analysis<'a> {
        let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
        for p in &snap.processes {
            if p.pid != p.ppid {
                children.entry(p.ppid).or_default().push(p.pid);
            }
        }
        let mut group_members: HashMap<i32, Vec<i32>> = HashMap::new();
        for p in &snap.processes {
            group_members.entry(p.pgid).or_default().push(p.pid);
        }
        let mut holders: HashMap<u64, Vec<i32>> = HashMap::new();
        for p in &snap.processes {
            for &inode in &p.socket_inodes {
                holders.entry(inode).or_default().push(p.pid);
            }
        }
        let mut socket_entries: HashMap<u64, Vec<usize>> = HashMap::new();
        for (i, s) in snap.sockets.iter().enumerate() {
            if s.inode != 0 {
                socket_entries.entry(s.inode).or_default().push(i);
            }
        }
        let mut a = Analysis {
            snap,
            roles: HashMap::new(),
            identity: HashMap::new(),
            children,
            group_members,
            jobs: Vec::new(),
            job_of: HashMap::new(),
            orphan_groups: Vec::new(),
            holders,
            socket_entries,
            rendezvous_ports: BTreeSet::new(),
            used_ports: BTreeSet::new(),
            fixed_ports: BTreeSet::new(),
            asked_ports: extra_ports.iter().copied().collect(),
            failed_binds: BTreeSet::new(),
            port_advice: PortAdvice::Below(match snap.host.ephemeral_range[0] {
                0 => 32768,
                lo => lo,
            }),
            hang_after: HANG_AFTER_SECS,
            findings: Vec::new(),
        };
        a.classify();
        a.find_jobs();
        a
    }

    pub fn process(&self, pid: i32) -> Option<&'a Process> {
        self.snap.process(pid)
    }

    pub fn parent(&self, p: &Process) -> Option<&'a Process> {
        (p.ppid != p.pid).then(|| self.process(p.ppid)).flatten()
    }

    pub fn role(&self, pid: i32) -> Role {
        self.roles.get(&pid).copied().unwrap_or(Role::Other)
    }

    pub fn identity(&self, pid: i32) -> Option<&Identity> {
        self.identity.get(&pid)
    }

    pub fn job(&self, pid: i32) -> Option<&Job> {
        self.job_of.get(&pid).map(|&i| &self.jobs[i])
    }

    pub fn children(&self, pid: i32) -> &[i32] {
        self.children.get(&pid).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The processes of process group `pgid`.
    pub fn group_members(&self, pgid: i32) -> impl Iterator<Item = &'a Process> + '_ {
        self.group_members
            .get(&pgid)
            .into_iter()
            .flatten()
            .filter_map(|&pid| self.process(pid))
    }

    /// Ancestors of `pid`, nearest first (not including `pid`), each once, at most
    /// [`MAX_ANCESTRY`] of them: a parent cycle or a chain deeper than any real machine has
    /// (possible only in a hand-edited or hostile snapshot) is cut, so callers stay linear.
    pub fn ancestors(&self, pid: i32) -> Vec<i32> {
        let mut out: Vec<i32> = Vec::new();
        let mut cur = self.process(pid);
        while let Some(p) = cur.and_then(|p| self.parent(p)) {
            // A cycle shows as the walk meeting itself (Floyd: compare with the halfway point);
            // then keep each pid once. Cheap enough to run for every process.
            let cycle = p.pid == pid || out.get(out.len() / 2) == Some(&p.pid);
            if cycle {
                let mut seen = HashSet::from([pid]);
                out.retain(|q| seen.insert(*q));
                break;
            }
            if out.len() >= MAX_ANCESTRY {
                break;
            }
            out.push(p.pid);
            cur = Some(p);
        }
        out
    }

    /// The sockets a process holds.
    pub fn sockets_of(&self, pid: i32) -> Vec<&'a Socket> {
        let Some(p) = self.process(pid) else {
            return Vec::new();
        };
        let mut at: Vec<usize> = p
            .socket_inodes
            .iter()
            .filter_map(|i| self.socket_entries.get(i))
            .flatten()
            .copied()
            .collect();
        // Snapshot order, each entry once (as a pass over `snap.sockets` gives them).
        at.sort_unstable();
        at.dedup();
        at.into_iter().map(|i| &self.snap.sockets[i]).collect()
    }

    /// Whether `p` holds a TCP socket listening on `port`.
    pub fn listens_on(&self, p: &Process, port: u16) -> bool {
        self.sockets_of(p.pid)
            .iter()
            .any(|s| s.state == "LISTEN" && s.local_port == port)
    }

    /// Whether the process lost the one that started it (re-parented to init or a subreaper).
    /// Under `doctor run` (a subreaper, the observer of its own snapshots) the command it
    /// started is its child too: that one, the observer's earliest child, is no orphan.
    pub fn orphaned(&self, p: &Process) -> bool {
        if p.ppid == self.snap.host.observer_pid && p.ppid > 1 {
            return Some(p.pid) != self.observer_command();
        }
        match self.parent(p) {
            None => true,
            Some(parent) => self.is_adopter(parent),
        }
    }

    /// Whether `p` takes in orphans rather than starting children of its own: init (PID 1
    /// unless it is Python: `docker run IMAGE python train.py` makes the launcher PID 1), a
    /// subreaper or process supervisor by name, a container shim.
    fn is_adopter(&self, p: &Process) -> bool {
        SUBREAPERS.contains(&p.comm.as_str())
            || p.comm.starts_with("containerd-shim")
            || (p.pid <= 1 && !is_python(p))
    }

    /// The command the observer started, when the observer is `doctor run`: its earliest
    /// child (processes it adopted descend from that command, so they started later).
    pub fn observer_command(&self) -> Option<i32> {
        let me = self.snap.host.observer_pid;
        if me <= 1 {
            return None;
        }
        self.children(me)
            .iter()
            .filter_map(|&c| self.process(c))
            .min_by(|a, b| {
                a.start_time
                    .total_cmp(&b.start_time)
                    .then(a.pid.cmp(&b.pid))
            })
            .map(|p| p.pid)
    }

    fn classify(&mut self) {
        // Parents before children, so a fork child can take its parent's identity.
        let order = self.topological_order();
        for &pid in &order {
            let p = self.process(pid).expect("pid from snapshot");
            let parent = self.parent(p);
            let role = classify(
                p,
                parent,
                parent.and_then(|q| self.roles.get(&q.pid).copied()),
            );
            self.roles.insert(pid, role);
            let inherited = parent
                .filter(|_| role == Role::ForkChild)
                .and_then(|q| self.identity.get(&q.pid).cloned());
            if let Some(id) = Identity::from_env(p).or(inherited) {
                self.identity.insert(pid, id);
            }
        }
        // Lightning's rank 0 (and any process that sets its identity in os.environ): no rank in
        // its own environ, but the children it exec'd after that carry it.
        for &pid in &order {
            if self.identity.get(&pid).is_some_and(Identity::has_rank) {
                continue;
            }
            let p = self.process(pid).expect("pid from snapshot");
            if !is_python(p) || self.roles[&pid] != Role::Python && self.roles[&pid] != Role::Other
            {
                continue;
            }
            let inferred = self.children(pid).iter().find_map(|&c| {
                let child = self.process(c)?;
                let id = self.identity.get(&c)?;
                if !id.has_rank() || id.inferred {
                    return None;
                }
                match self.roles[&c] {
                    Role::SpawnChild
                    | Role::Forkserver
                    | Role::ResourceTracker
                    | Role::DataloaderWorker => Some(Identity {
                        inferred: true,
                        ..id.clone()
                    }),
                    // Lightning starts ranks 1..N-1 as the same program; rank 0 hosts the
                    // store on their MASTER_PORT.
                    Role::Rank
                        if id.rank.is_none()
                            && (same_program(&child.argv, &p.argv)
                                || id.master_port.is_some_and(|port| self.listens_on(p, port))) =>
                    {
                        Some(Identity {
                            local_rank: Some(0),
                            inferred: true,
                            ..id.clone()
                        })
                    }
                    _ => None,
                }
            });
            if let Some(id) = inferred {
                self.identity.insert(pid, id);
                self.roles.insert(pid, Role::Rank);
            }
        }
        self.spawn_launchers(&order);
        self.rank_wrappers(&order);
        self.rank_carriers();
    }

    /// A process that only carries a rank's environment and is no Python rank (OpenMPI's
    /// `orted`, which inherits the ranks' environment; a shell, `env`, an `srun` step; a tool a
    /// rank runs) is not a rank: not Python and without a socket on its rendezvous port. (A
    /// frozen or compiled rank that is not named python counts once it uses the port.)
    fn rank_carriers(&mut self) {
        let carriers: Vec<i32> = self
            .roles
            .iter()
            .filter(|(_, r)| **r == Role::Rank)
            .map(|(&pid, _)| pid)
            .filter(|&pid| {
                let Some(p) = self.process(pid) else {
                    return false;
                };
                let port = self.identity.get(&pid).and_then(|i| i.master_port);
                !is_python(p)
                    && match port {
                        Some(port) => !self.uses_port(pid, port),
                        None => self.sockets_of(pid).is_empty(),
                    }
            })
            .collect();
        for pid in carriers {
            self.roles.insert(pid, Role::Other);
        }
    }

    /// `mp.spawn`, Lightning `ddp_spawn` and `ddp_notebook`/`ddp_fork`: a Python process that is
    /// no rank itself and whose spawn or fork children (two or more) share one rendezvous port
    /// (their MASTER_PORT, or one child listens where a sibling connects) started those children
    /// as the ranks of one job: it is their launcher and they are its ranks. When that parent
    /// was killed, its children live on under whoever adopted them (init, a subreaper, `doctor
    /// run`): the adopter is no launcher, and siblings of one process group that share a
    /// rendezvous are the ranks of one job that lost its launcher ([`Analysis::orphan_groups`]).
    fn spawn_launchers(&mut self, order: &[i32]) {
        for &pid in order {
            if self.roles[&pid] == Role::Forkserver {
                self.forkserver_launcher(pid);
                continue;
            }
            if !matches!(self.roles[&pid], Role::Python | Role::Other)
                || self.identity.get(&pid).is_some_and(Identity::has_rank)
            {
                continue;
            }
            let Some(parent) = self.process(pid) else {
                continue;
            };
            let no_rank = |c: &i32| !self.identity.get(c).is_some_and(Identity::has_rank);
            let spawned: Vec<i32> = self
                .children(pid)
                .iter()
                .copied()
                .filter(|c| matches!(self.roles[c], Role::SpawnChild | Role::ForkChild))
                .filter(no_rank)
                .collect();
            let adopted: Vec<i32> = self
                .children(pid)
                .iter()
                .copied()
                .filter(|c| {
                    matches!(self.roles[c], Role::SpawnChild | Role::Python)
                        && self.process(*c).is_some_and(|k| self.adopted(parent, k))
                })
                .filter(no_rank)
                .collect();
            let mut placed: HashSet<i32> = HashSet::new();
            if adopted.len() >= 2 {
                for group in self.orphan_siblings(&adopted) {
                    // A MASTER_PORT in a spawn child's environ is its dead parent's os.environ
                    // at start (mp.spawn's rendezvous); in an adopted fork child or plain Python
                    // process it is only what a shell exported (`export MASTER_PORT=...; nohup
                    // python eval.py &` twice): no rendezvous without a socket on it.
                    let spawn = self.roles[&group[0]] == Role::SpawnChild;
                    let mut left = group;
                    while let Some(port) = self.shared_rendezvous_of(&left, spawn) {
                        let (ranks, rest): (Vec<i32>, Vec<i32>) = left.iter().partition(|&&c| {
                            if spawn {
                                self.rendezvous_on(c, port)
                            } else {
                                self.uses_port(c, port)
                            }
                        });
                        if ranks.len() < 2 {
                            break;
                        }
                        self.make_ranks(&ranks, port);
                        placed.extend(&ranks);
                        self.orphan_groups.push(ranks);
                        left = rest;
                    }
                }
            }
            // A rank left alone: its launcher and its sibling ranks are gone.
            for &c in adopted.iter().filter(|c| !placed.contains(c)) {
                if let Some(port) = self.lone_rendezvous(c) {
                    self.make_ranks(&[c], port);
                    if self.roles[&c] == Role::Rank {
                        self.orphan_groups.push(vec![c]);
                    }
                }
            }
            if adopted.len() >= 2 {
                continue;
            }
            if spawned.len() < 2 {
                continue;
            }
            let Some(port) = self.shared_rendezvous(&spawned) else {
                continue;
            };
            self.roles.insert(pid, Role::Launcher);
            self.make_ranks(&spawned, port);
        }
    }

    /// `mp.start_processes(..., start_method="forkserver")`: the script starts a forkserver, which
    /// forks the ranks. Two or more forkserver children that share a rendezvous, under a live
    /// forkserver whose parent is a Python process that is no rank (not a rank's DataLoader
    /// workers re-running the launch: D001's) and not an adopter: the ranks of one job, the
    /// script its launcher. (A forkserver whose script was killed is not handled: a known gap.)
    fn forkserver_launcher(&mut self, server: i32) {
        let Some(script) = self.process(server).and_then(|p| self.parent(p)) else {
            return;
        };
        if !matches!(self.roles[&script.pid], Role::Python | Role::Other)
            || !is_python(script)
            || self.is_adopter(script)
            || self
                .identity
                .get(&script.pid)
                .is_some_and(Identity::has_rank)
        {
            return;
        }
        let kids: Vec<i32> = self
            .children(server)
            .iter()
            .copied()
            .filter(|c| self.roles[c] == Role::ForkserverChild)
            .filter(|c| !self.identity.get(c).is_some_and(Identity::has_rank))
            .collect();
        if kids.len() < 2 {
            return;
        }
        let Some(port) = self.shared_rendezvous(&kids) else {
            return;
        };
        self.roles.insert(script.pid, Role::Launcher);
        self.make_ranks(&kids, port);
    }

    /// `kids` become ranks on `port` (those whose own MASTER_PORT is another stay what they are).
    fn make_ranks(&mut self, kids: &[i32], port: u16) {
        for &c in kids {
            let mut id = self.identity.get(&c).cloned().unwrap_or_default();
            if id.master_port.is_some_and(|p| p != port) {
                continue;
            }
            if id.master_port.is_none() {
                id.master_port = Some(port);
                id.inferred = true;
            }
            self.roles.insert(c, Role::Rank);
            self.identity.insert(c, id);
        }
    }

    /// Whether `kid` was adopted by `parent` rather than started by it: `parent` is init, a
    /// subreaper, the observer, or (for a spawn child only, which its Python parent exec'd as its
    /// own interpreter) a program other than the child's. Any other Python process under a live
    /// program that is not Python was started by it (a shell, `timeout`, `uv run`, an `srun`
    /// step): a healthy process, never a leftover rank.
    fn adopted(&self, parent: &Process, kid: &Process) -> bool {
        if parent.pid == self.snap.host.observer_pid && parent.pid > 1 {
            return Some(kid.pid) != self.observer_command();
        }
        if self.is_adopter(parent) {
            return true;
        }
        if self.roles.get(&kid.pid) != Some(&Role::SpawnChild) {
            return false;
        }
        match (&parent.exe, &kid.exe) {
            (Some(a), Some(b)) => a != b && !is_python(parent),
            _ => !is_python(parent),
        }
    }

    /// Adopted children grouped as the children of one dead parent: one process group, and for
    /// fork children (not spawn children) the same program, environment and executable.
    fn orphan_siblings(&self, adopted: &[i32]) -> Vec<Vec<i32>> {
        type Key<'k> = (
            i32,
            bool,
            Option<(&'k [String], &'k BTreeMap<String, String>, Option<&'k str>)>,
        );
        let mut groups: Vec<Vec<i32>> = Vec::new();
        let mut at: HashMap<Key, usize> = HashMap::new();
        for &c in adopted {
            let Some(k) = self.process(c) else { continue };
            let spawn = self.roles[&c] == Role::SpawnChild;
            let program = (!spawn).then_some((k.argv.as_slice(), &k.env, k.exe.as_deref()));
            match at.get(&(k.pgid, spawn, program)) {
                Some(&g) => groups[g].push(c),
                None => {
                    at.insert((k.pgid, spawn, program), groups.len());
                    groups.push(vec![c]);
                }
            }
        }
        groups.retain(|g| g.len() >= 2);
        groups
    }

    /// The rendezvous port of a spawn or fork child that its dead parent left alone (no sibling of
    /// one rendezvous adopted with it: the other ranks have exited too), when what it holds says
    /// it is a rank there:
    /// - a connection that the other end closed (CLOSE_WAIT) to a port it names itself (its
    ///   MASTER_PORT), asked about, a default one, or one another process here names as its
    ///   MASTER_PORT: a rank whose store is gone, waiting on it (a spawn or a fork child); a
    ///   connection closed on some other port says nothing;
    /// - a spawn child (the `spawn_main` command line: started by a Python parent that is gone)
    ///   that hosts a store, listening on a port with its own client connected to it, as torch's
    ///   rank 0 does; or that is connected to the port its MASTER_PORT names.
    ///
    /// A fork child that hosts the store is not told from a healthy single process started in
    /// the background (`nohup python train.py &`, world size 1): both are a Python process under
    /// init listening on a port with its own client, the same program, no rank in their
    /// environment. It stays a holder of no job (D008 on an asked port): a known gap.
    fn lone_rendezvous(&self, c: i32) -> Option<u16> {
        let spawn = self.roles.get(&c) == Some(&Role::SpawnChild);
        let own = self.identity.get(&c).and_then(|i| i.master_port);
        let known = |port: u16| {
            own == Some(port)
                || self.asked_ports.contains(&port)
                || DEFAULT_PORTS.contains(&port)
                || self
                    .identity
                    .values()
                    .any(|i| !i.inferred && i.master_port == Some(port))
        };
        let tcp: Vec<&Socket> = self
            .sockets_of(c)
            .into_iter()
            .filter(|s| s.proto == Proto::Tcp)
            .collect();
        let client_of = |port: u16| {
            tcp.iter()
                .any(|s| s.state == "ESTABLISHED" && s.remote_port == port)
        };
        if let Some(s) = tcp
            .iter()
            .find(|s| s.state == "CLOSE_WAIT" && known(s.remote_port))
        {
            return Some(s.remote_port);
        }
        if !spawn {
            return None;
        }
        tcp.iter()
            .filter(|s| s.state == "LISTEN")
            .map(|s| s.local_port)
            .find(|&port| client_of(port))
            .or_else(|| own.filter(|&port| client_of(port)))
    }

    /// Whether `pid` takes part in a rendezvous on `port`: its MASTER_PORT, or a socket on it.
    fn rendezvous_on(&self, pid: i32, port: u16) -> bool {
        self.identity.get(&pid).and_then(|i| i.master_port) == Some(port)
            || self.uses_port(pid, port)
    }

    /// The port two or more of `kids` rendezvous on: a MASTER_PORT they share, else a port one of
    /// them listens on and another one is connected to.
    fn shared_rendezvous(&self, kids: &[i32]) -> Option<u16> {
        self.shared_rendezvous_of(kids, true)
    }

    /// [`Analysis::shared_rendezvous`], a shared MASTER_PORT counting only when `by_env`.
    fn shared_rendezvous_of(&self, kids: &[i32], by_env_too: bool) -> Option<u16> {
        let mut by_env: BTreeMap<u16, usize> = BTreeMap::new();
        for c in kids.iter().filter(|_| by_env_too) {
            if let Some(port) = self.identity.get(c).and_then(|i| i.master_port) {
                *by_env.entry(port).or_default() += 1;
            }
        }
        if let Some((&port, _)) = by_env.iter().find(|(_, n)| **n >= 2) {
            return Some(port);
        }
        // One pass over the kids' sockets (linear: a parent may have a thousand fork children):
        // for each port, up to two distinct kids connected to it.
        let mut clients: HashMap<u16, [Option<i32>; 2]> = HashMap::new();
        for &o in kids {
            for t in self.sockets_of(o) {
                if t.state == "ESTABLISHED" {
                    let slot = clients.entry(t.remote_port).or_default();
                    if slot[0].is_none() {
                        slot[0] = Some(o);
                    } else if slot[0] != Some(o) && slot[1].is_none() {
                        slot[1] = Some(o);
                    }
                }
            }
        }
        for &c in kids {
            for s in self.sockets_of(c) {
                if s.state != "LISTEN" {
                    continue;
                }
                let joined = clients
                    .get(&s.local_port)
                    .is_some_and(|slot| slot.iter().flatten().any(|&o| o != c));
                if joined {
                    return Some(s.local_port);
                }
            }
        }
        None
    }

    /// A shell, `env`, `srun` step or any process that carries a rank's environment but only
    /// waits for a child with the same identity (`RANK=0 bash -c "python train.py; true"`) is
    /// not a rank: the child is. (A process that `exec`s the rank is the rank already.) A rank
    /// that runs a tool (`bash -c nvidia-smi`) stays the rank: the wrapped child must be Python
    /// or use the rendezvous port, and a Python wrapper only counts when its child uses the port.
    fn rank_wrappers(&mut self, order: &[i32]) {
        // Children first, so a chain of wrappers (srun -> bash -> python) resolves to the last.
        for &pid in order.iter().rev() {
            if self.roles[&pid] != Role::Rank {
                continue;
            }
            let Some(id) = self.identity.get(&pid) else {
                continue;
            };
            let Some(port) = id.master_port else { continue };
            let Some(me) = self.process(pid) else {
                continue;
            };
            if self.uses_port(pid, port) {
                continue;
            }
            let wraps = self.children(pid).iter().any(|&c| {
                let same = self.identity.get(&c).is_some_and(|ci| {
                    ci.rank_key().is_some() && ci.same_rendezvous(id) && !ci.inferred
                });
                let Some(child) = self.process(c) else {
                    return false;
                };
                same && match self.roles[&c] {
                    Role::Other => true,
                    Role::Rank => self.uses_port(c, port) || (!is_python(me) && is_python(child)),
                    _ => false,
                }
            });
            if wraps {
                self.roles.insert(pid, Role::Other);
            }
        }
    }

    /// Whether `pid` has a TCP socket on `port` (listening, or either end of a connection).
    fn uses_port(&self, pid: i32, port: u16) -> bool {
        self.sockets_of(pid)
            .iter()
            .any(|s| s.local_port == port || s.remote_port == port)
    }

    fn topological_order(&self) -> Vec<i32> {
        let mut order = Vec::with_capacity(self.snap.processes.len());
        let mut stack: Vec<i32> = self
            .snap
            .processes
            .iter()
            .filter(|p| self.parent(p).is_none())
            .map(|p| p.pid)
            .collect();
        stack.sort_unstable_by(|a, b| b.cmp(a));
        let mut seen = BTreeSet::new();
        while let Some(pid) = stack.pop() {
            if !seen.insert(pid) {
                continue;
            }
            order.push(pid);
            stack.extend(self.children(pid).iter().rev());
        }
        // Cycles (impossible on a live system, possible in a hand-edited snapshot).
        for p in &self.snap.processes {
            if seen.insert(p.pid) {
                order.push(p.pid);
            }
        }
        order
    }

    /// For each process: whether a launcher or a rank is above it. One pass, parents first
    /// (linear in processes however deep the tree; a parent cycle falls back to `ancestors`).
    fn below_training(&self) -> HashMap<i32, bool> {
        let mut below: HashMap<i32, bool> = HashMap::new();
        for pid in self.topological_order() {
            let Some(p) = self.process(pid) else { continue };
            let value = match self.parent(p) {
                None => false,
                Some(q) => match below.get(&q.pid) {
                    Some(&up) => up || matches!(self.role(q.pid), Role::Launcher | Role::Rank),
                    None => self
                        .ancestors(pid)
                        .iter()
                        .any(|&a| matches!(self.role(a), Role::Launcher | Role::Rank)),
                },
            };
            below.insert(pid, value);
        }
        below
    }

    fn is_job_root(&self, p: &Process, below_training: &HashMap<i32, bool>) -> bool {
        let role = self.role(p.pid);
        let in_training = role == Role::Launcher
            || role == Role::Rank
            || (role.is_rank_descendant_kind() && self.identity.contains_key(&p.pid));
        if !in_training {
            return false;
        }
        // Top-most: no ancestor is a launcher or a rank.
        !below_training.get(&p.pid).copied().unwrap_or(false)
    }

    fn find_jobs(&mut self) {
        let below = self.below_training();
        let roots: Vec<i32> = self
            .snap
            .processes
            .iter()
            .filter(|p| self.is_job_root(p, &below))
            .map(|p| p.pid)
            .collect();
        // Trees that share one torchrun run id and store are one job (several agents on one host).
        let mut by_run: BTreeMap<(Option<u16>, String), usize> = BTreeMap::new();
        // The ranks of one dead spawn/fork launcher are one job (each is a root now).
        let orphan_group: HashMap<i32, usize> = self
            .orphan_groups
            .iter()
            .enumerate()
            .flat_map(|(g, pids)| pids.iter().map(move |&p| (p, g)))
            .collect();
        let mut by_orphan_group: HashMap<usize, usize> = HashMap::new();
        for root in roots {
            let pids = self.subtree(root);
            let id = pids
                .iter()
                .find_map(|p| self.identity.get(p).filter(|i| i.master_port.is_some()))
                .cloned();
            let run_key = id.as_ref().and_then(|i| {
                i.run_id
                    .clone()
                    .filter(|r| !r.is_empty() && r != "none")
                    .map(|r| (i.master_port, r))
            });
            let root_p = self.process(root).expect("root from snapshot");
            let orphans = orphan_group.get(&root).copied();
            let launcher_gone = orphans.is_some()
                || self.role(root) != Role::Launcher
                    && Identity::from_env(root_p).is_some_and(|i| i.has_rank())
                    && self.orphaned(root_p);
            let joined = run_key
                .as_ref()
                .and_then(|k| by_run.get(k))
                .or_else(|| orphans.and_then(|g| by_orphan_group.get(&g)));
            if let Some(&j) = joined {
                for &p in &pids {
                    self.job_of.insert(p, j);
                }
                // (Sorted once below: sorting here, per joining root, was n^2 log n.)
                self.jobs[j].pids.extend(pids);
                continue;
            }
            let j = self.jobs.len();
            for &p in &pids {
                self.job_of.insert(p, j);
            }
            if let Some(k) = run_key {
                by_run.insert(k, j);
            }
            if let Some(g) = orphans {
                by_orphan_group.insert(g, j);
            }
            let id = id.unwrap_or_default();
            // A launcher whose ranks are not (or no longer) there: its port flag is the job's
            // rendezvous port (a torchrun agent that failed to bind its store has no ranks).
            let master_port = id.master_port.or_else(|| {
                (self.role(root) == Role::Launcher)
                    .then(|| launcher_port(&root_p.argv))
                    .flatten()
            });
            self.jobs.push(Job {
                id: format!("job-{root}"),
                root,
                rendezvous: Identity {
                    master_port,
                    ..id.rendezvous()
                },
                pids,
                launcher_gone,
            });
        }
        for job in &mut self.jobs {
            job.pids.sort_unstable();
        }
    }

    /// `root` and all its descendants, sorted.
    pub fn subtree(&self, root: i32) -> Vec<i32> {
        let mut out = Vec::new();
        let mut stack = vec![root];
        let mut seen = BTreeSet::new();
        while let Some(pid) = stack.pop() {
            if seen.insert(pid) {
                out.push(pid);
                stack.extend(self.children(pid));
            }
        }
        out.sort_unstable();
        out
    }

    pub(super) fn collect_ports(&mut self, extra: &[u16]) {
        for id in self.identity.values() {
            self.used_ports.extend(id.master_port);
        }
        let below = self.below_training();
        for p in &self.snap.processes {
            if self.role(p.pid) == Role::Launcher {
                self.used_ports.extend(launcher_port(&p.argv));
                self.fixed_ports.extend(launcher_port(&p.argv));
                self.fixed_ports.extend(p.master_port());
            } else if self.role(p.pid) == Role::Rank
                && self.is_job_root(p, &below)
                && !p.env.keys().any(|k| k.starts_with("TORCHELASTIC_"))
            {
                // (A torchrun worker's MASTER_PORT came from its agent: the agent's flags tell.)
                // The environment the user exec'd the job with; Lightning's rank 0 sets
                // MASTER_PORT in os.environ after it starts, so a port it picked is not here.
                self.fixed_ports.extend(p.master_port());
            }
        }
        self.used_ports.extend(extra.iter().copied());
        self.fixed_ports.extend(extra.iter().copied());
        self.rendezvous_ports = self.used_ports.clone();
        self.rendezvous_ports.extend(DEFAULT_PORTS);
    }

    /// Whether `pid` carries the rendezvous identity of rank `rank`.
    pub fn carries_identity_of(&self, pid: i32, rank: i32) -> bool {
        match (self.identity(pid), self.identity(rank)) {
            (Some(a), Some(b)) => a.same_rendezvous(b),
            _ => false,
        }
    }

    /// The script (or `-m module`) a process runs, for fix texts.
    pub fn script_of(&self, pid: i32) -> Option<String> {
        script_of(&self.process(pid)?.argv)
    }
}

pub fn is_python(p: &Process) -> bool {
    let base = |s: &str| s.rsplit('/').next().unwrap_or(s).to_string();
    p.comm.starts_with("python")
        || p.argv
            .first()
            .is_some_and(|a| base(a).starts_with("python"))
        || p.exe
            .as_deref()
            .is_some_and(|e| base(e).starts_with("python"))
}

fn contains(argv: &[String], needle: &str) -> bool {
    argv.iter().any(|a| a.contains(needle))
}

fn is_launcher(p: &Process) -> bool {
    if p.comm == "pt_elastic" {
        return true;
    }
    let a = &p.argv;
    let base = |s: &String| s.rsplit('/').next().unwrap_or(s).to_string();
    let first_two: Vec<String> = a.iter().take(2).map(base).collect();
    first_two
        .iter()
        .any(|b| b == "torchrun" || b == "deepspeed")
        || (first_two
            .iter()
            .any(|b| b == "accelerate" || b == "accelerate-launch")
            && a.iter().any(|x| x == "launch"))
        || a.windows(2).any(|w| {
            w[0] == "-m"
                && matches!(
                    w[1].as_str(),
                    "torch.distributed.run"
                        | "torch.distributed.launch"
                        | "deepspeed.launcher.launch"
                        | "deepspeed.launcher.runner"
                        | "accelerate.commands.launch"
                )
        })
}

/// Role from the signatures in the field notes; `parent_role` is already classified.
pub fn classify(p: &Process, parent: Option<&Process>, parent_role: Option<Role>) -> Role {
    let argv = &p.argv;
    if is_launcher(p) {
        return Role::Launcher;
    }
    if contains(argv, "multiprocessing.resource_tracker import main") {
        return Role::ResourceTracker;
    }
    if p.comm == "pt_data_worker" {
        return Role::DataloaderWorker;
    }
    if contains(argv, "multiprocessing.forkserver import main") {
        let from_server =
            parent.is_some_and(|q| q.argv == p.argv) && parent_role == Some(Role::Forkserver);
        return if from_server {
            Role::ForkserverChild
        } else {
            Role::Forkserver
        };
    }
    if argv.iter().any(|a| a == "--multiprocessing-fork")
        || contains(argv, "multiprocessing.spawn import spawn_main")
    {
        return Role::SpawnChild;
    }
    if let Some(q) = parent
        && !argv.is_empty()
        && q.argv == p.argv
        && q.env == p.env
        && q.exe == p.exe
        && is_python(p)
    {
        return Role::ForkChild;
    }
    if Identity::from_env(p).is_some_and(|i| i.has_rank()) {
        return Role::Rank;
    }
    if is_python(p) {
        Role::Python
    } else {
        Role::Other
    }
}

/// The rendezvous port named on a launcher's command line.
pub fn launcher_port(argv: &[String]) -> Option<u16> {
    const FLAGS: &[&str] = &[
        "--master-port",
        "--master_port",
        "--main_process_port",
        "--main-process-port",
        "--rdzv-endpoint",
        "--rdzv_endpoint",
    ];
    for (i, a) in argv.iter().enumerate() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) => (f, Some(v.to_string())),
            None => (a.as_str(), None),
        };
        if !FLAGS.contains(&flag) {
            continue;
        }
        let value = inline.or_else(|| argv.get(i + 1).cloned())?;
        let port = value
            .rsplit(':')
            .next()?
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0);
        if port.is_some() {
            return port;
        }
    }
    None
}

/// Whether two Python argvs run the same program with the same arguments (the interpreter path
/// and the script's directory may differ: `train.py` vs `/abs/train.py`).
pub fn same_program(a: &[String], b: &[String]) -> bool {
    let norm = |s: &String| {
        if s.ends_with(".py") {
            s.rsplit('/').next().unwrap_or(s).to_string()
        } else {
            s.clone()
        }
    };
    a.len() == b.len() && a.len() > 1 && a[1..].iter().map(norm).eq(b[1..].iter().map(norm))
}

/// `train.py` or `-m pkg.train` from a Python argv.
pub fn script_of(argv: &[String]) -> Option<String> {
    let mut it = argv.iter().skip(1);
    while let Some(a) = it.next() {
        if a == "-m" {
            return it.next().map(|m| format!("-m {m}"));
        }
        if a == "-c" {
            return None;
        }
        if !a.starts_with('-') {
            return Some(a.clone());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Vec<String> {
        s.split(' ').map(str::to_string).collect()
    }

    mod jobs_from_what_processes_share {
        use std::net::IpAddr;

        use super::super::*;
        use crate::model::snapshot::{Host, Proto};

        fn proc_(pid: i32, ppid: i32, argv: &str, env: &[(&str, &str)], inodes: &[u64]) -> Process {
            Process {
                pid,
                ppid,
                pgid: ppid.max(1),
                sid: 1,
                state: "S".into(),
                comm: argv
                    .split(' ')
                    .next()
                    .unwrap_or("")
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .into(),
                exe: None,
                argv: argv.split(' ').map(str::to_string).collect(),
                env: env
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                start_time: 1000.0,
                socket_inodes: inodes.to_vec(),
                ..Process::default()
            }
        }

        fn sock(state: &str, local: u16, remote: u16, inode: u64) -> Socket {
            let lo: IpAddr = "127.0.0.1".parse().unwrap();
            Socket {
                proto: Proto::Tcp,
                state: state.into(),
                local_addr: lo,
                local_port: local,
                remote_addr: lo,
                remote_port: remote,
                inode,
                uid: 0,
            }
        }

        fn snap(mut processes: Vec<Process>) -> Snapshot {
            processes.sort_by_key(|p| p.pid);
            Snapshot {
                schema_version: 1,
                taken_at: 2000.0,
                host: Host {
                    ephemeral_range: [32768, 60999],
                    ..Host::default()
                },
                processes,
                sockets: vec![
                    sock("LISTEN", 29500, 0, 1),
                    sock("ESTABLISHED", 29500, 40001, 2),
                    sock("ESTABLISHED", 40001, 29500, 3),
                    sock("ESTABLISHED", 40002, 29500, 4),
                ],
                unreadable: Vec::new(),
                bind_probes: Vec::new(),
                ..Snapshot::default()
            }
        }

        const SPAWN: &str = "python -c from multiprocessing.spawn import spawn_main; spawn_main(tracker_fd=5, pipe_handle=7) --multiprocessing-fork";
        const PORT: &[(&str, &str)] = &[("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "29500")];

        fn rank(r: &str) -> Vec<(&'static str, &str)> {
            let mut v = PORT.to_vec();
            v.push(("RANK", r));
            v.push(("WORLD_SIZE", "2"));
            v
        }

        #[test]
        fn mp_spawn_children_sharing_a_rendezvous_are_one_job() {
            for env in [PORT, &[][..]] {
                let s = snap(vec![
                    proc_(100, 1, "python train.py", &[], &[]),
                    proc_(110, 100, SPAWN, env, &[1, 2, 3]),
                    proc_(111, 100, SPAWN, env, &[4]),
                ]);
                let a = Analysis::new(&s, &[]);
                assert_eq!(a.role(100), Role::Launcher);
                assert_eq!((a.role(110), a.role(111)), (Role::Rank, Role::Rank));
                assert_eq!(a.jobs.len(), 1, "{:?}", a.jobs);
                assert_eq!(a.jobs[0].rendezvous.master_port, Some(29500));
                assert!(a.findings.is_empty(), "{:?}", a.findings);
            }
        }

        #[test]
        fn a_child_connected_only_to_its_own_listener_shares_no_rendezvous() {
            // 110 listens on 29500 and holds both ends of a connection to it; 111 holds nothing.
            let s = snap(vec![
                proc_(100, 1, "python train.py", &[], &[]),
                proc_(110, 100, SPAWN, &[], &[1, 2, 3]),
                proc_(111, 100, SPAWN, &[], &[]),
            ]);
            let a = Analysis::new(&s, &[]);
            assert_eq!(a.role(100), Role::Python);
            assert!(a.jobs.is_empty(), "{:?}", a.jobs);
        }

        #[test]
        fn spawn_workers_that_share_no_rendezvous_make_no_job() {
            // A plain script's DataLoader workers: spawn children, no port between them.
            let s = snap(vec![
                proc_(100, 1, "python eval.py", &[], &[]),
                proc_(110, 100, SPAWN, &[], &[]),
                proc_(111, 100, SPAWN, &[], &[]),
            ]);
            let a = Analysis::new(&s, &[]);
            assert_eq!(a.role(100), Role::Python);
            assert!(a.jobs.is_empty(), "{:?}", a.jobs);
        }

        #[test]
        fn a_shell_that_waits_for_the_rank_is_not_a_rank() {
            let (r0, r1) = (rank("0"), rank("1"));
            let s = snap(vec![
                proc_(100, 1, "python launch.py", &[], &[]),
                proc_(101, 100, "bash -c python train.py; true", &r0, &[]),
                proc_(102, 101, "python train.py", &r0, &[1, 2, 3]),
                proc_(
                    103,
                    100,
                    "srun --ntasks=1 bash -c python train.py; true",
                    &r1,
                    &[],
                ),
                proc_(104, 103, "bash -c python train.py; true", &r1, &[]),
                proc_(105, 104, "python train.py", &r1, &[4]),
            ]);
            let a = Analysis::new(&s, &[]);
            for w in [101, 103, 104] {
                assert_eq!(a.role(w), Role::Other, "pid {w}");
            }
            assert_eq!((a.role(102), a.role(105)), (Role::Rank, Role::Rank));
            assert!(a.findings.is_empty(), "{:?}", a.findings);
            assert_eq!(a.jobs.len(), 1, "{:?}", a.jobs);
        }

        #[test]
        fn a_rank_running_a_tool_stays_the_rank() {
            // Rank 1 (not yet connected) runs `bash -c nvidia-smi`, rank 0 runs a Python helper.
            let (r0, r1) = (rank("0"), rank("1"));
            let s = snap(vec![
                proc_(100, 1, "python launch.py", &[], &[]),
                proc_(101, 100, "python train.py", &r0, &[1, 2, 3]),
                proc_(102, 101, "python -c import torch", &r0, &[]),
                proc_(103, 100, "python train.py", &r1, &[]),
                proc_(104, 103, "bash -c nvidia-smi", &r1, &[]),
                proc_(105, 104, "nvidia-smi", &r1, &[]),
            ]);
            let a = Analysis::new(&s, &[]);
            assert_eq!((a.role(101), a.role(103)), (Role::Rank, Role::Rank));
        }

        /// `mp.spawn` / Lightning `ddp_spawn` (spawn children, MASTER_PORT in their environment
        /// or not) and `ddp_notebook`/`ddp_fork` (fork children: the parent's argv and
        /// environment) whose parent was killed: re-parented to init, a subreaper or `doctor run`,
        /// they are one job that lost its launcher (D003), and the adopter is no launcher.
        #[test]
        fn orphaned_spawn_and_fork_ranks_are_one_job_that_lost_its_launcher() {
            let fork = "python train.py --devices 2";
            type Case<'a> = (&'a str, Process, &'a str, &'a [(&'a str, &'a str)]);
            let cases: Vec<Case> = vec![
                (
                    "init, env port",
                    proc_(1, 0, "/sbin/init", &[], &[]),
                    SPAWN,
                    PORT,
                ),
                (
                    "init, no env port",
                    proc_(1, 0, "/sbin/init", &[], &[]),
                    SPAWN,
                    &[],
                ),
                (
                    "subreaper",
                    proc_(7, 1, "systemd --user", &[], &[]),
                    SPAWN,
                    &[],
                ),
                (
                    "doctor run",
                    proc_(
                        7,
                        1,
                        "/usr/local/bin/doctor run -- python train.py",
                        &[],
                        &[],
                    ),
                    SPAWN,
                    PORT,
                ),
                ("init, fork", proc_(1, 0, "/sbin/init", &[], &[]), fork, &[]),
            ];
            for (name, adopter, argv, env) in cases {
                let a0 = adopter.pid;
                let mut r0 = proc_(110, a0, argv, env, &[1, 2, 3]);
                let mut r1 = proc_(111, a0, argv, env, &[4]);
                // The dead parent's process group, which its children keep.
                r0.pgid = 100;
                r1.pgid = 100;
                let s = snap(vec![adopter, r0, r1]);
                let a = Analysis::new(&s, &[]);
                assert_ne!(a.role(a0), Role::Launcher, "{name}");
                assert_eq!(
                    (a.role(110), a.role(111)),
                    (Role::Rank, Role::Rank),
                    "{name}"
                );
                assert_eq!(a.jobs.len(), 1, "{name}: {:?}", a.jobs);
                assert!(a.jobs[0].launcher_gone, "{name}: {:?}", a.jobs);
                let d003: Vec<_> = a
                    .findings
                    .iter()
                    .filter(|f| f.code == crate::model::finding::Rule::D003)
                    .collect();
                assert_eq!(d003.len(), 1, "{name}: {:?}", a.findings);
                assert_eq!(d003[0].pids, vec![110, 111], "{name}");
                assert_eq!(d003[0].ports, vec![29500], "{name}");
                assert!(
                    d003[0].message.contains("lost its launcher")
                        && d003[0]
                            .message
                            .contains("pid 110 still holds rendezvous port 29500"),
                    "{name}: {}",
                    d003[0].message
                );
            }
        }

        /// The parent of `mp.spawn` / `ddp_spawn` / `ddp_notebook` ranks was killed and one rank
        /// exited too: the one left, alone under init, is the dead launcher's rank (D003) when
        /// what it holds says so (issue 20): a spawn child hosting a store (a listener with its
        /// own client), a spawn child connected to its MASTER_PORT, a spawn or fork child whose
        /// connection to a known rendezvous port was closed by the other end. Not a fork child
        /// hosting a store (a healthy `nohup python train.py &` of world size 1 looks the same),
        /// a connection closed on a port nothing names, an orphaned worker holding nothing.
        #[test]
        fn a_rank_left_alone_by_its_dead_parent_is_a_leftover_job() {
            use crate::model::finding::Rule;
            let fork = "python train.py --devices 2";
            let store = vec![
                sock("LISTEN", 29500, 0, 1),
                sock("ESTABLISHED", 29500, 40001, 2),
                sock("ESTABLISHED", 40001, 29500, 3),
            ];
            let closed = |port: u16| vec![sock("CLOSE_WAIT", 40001, port, 3)];
            let client = vec![sock("ESTABLISHED", 40001, 29500, 3)];
            let other = vec![sock("LISTEN", 8080, 0, 3)];
            let held = "pid 110 still holds rendezvous port 29500";
            let gone = "it holds no socket on rendezvous port";
            // (what, argv, env, sockets, asked, the port D003 names and its text, or None)
            type Case<'a> = (
                &'a str,
                &'a str,
                &'a [(&'a str, &'a str)],
                Vec<Socket>,
                Vec<u16>,
                Option<(u16, &'a str)>,
            );
            let cases: Vec<Case> = vec![
                (
                    "spawn store, env port",
                    SPAWN,
                    PORT,
                    store.clone(),
                    vec![],
                    Some((29500, held)),
                ),
                (
                    "spawn store, no env",
                    SPAWN,
                    &[],
                    store.clone(),
                    vec![],
                    Some((29500, held)),
                ),
                (
                    "spawn, store gone",
                    SPAWN,
                    PORT,
                    closed(29500),
                    vec![],
                    Some((29500, gone)),
                ),
                (
                    "spawn, client",
                    SPAWN,
                    PORT,
                    client.clone(),
                    vec![],
                    Some((29500, "alone")),
                ),
                (
                    "fork, gone, default",
                    fork,
                    &[],
                    closed(29500),
                    vec![],
                    Some((29500, gone)),
                ),
                (
                    "fork, gone, asked",
                    fork,
                    &[],
                    closed(31234),
                    vec![31234],
                    Some((31234, gone)),
                ),
                (
                    "fork, gone, unnamed",
                    fork,
                    &[],
                    closed(31234),
                    vec![],
                    None,
                ),
                (
                    "spawn, gone, unnamed",
                    SPAWN,
                    &[],
                    closed(31234),
                    vec![],
                    None,
                ),
                ("fork store (nohup)", fork, &[], store.clone(), vec![], None),
                (
                    "fork store, env port",
                    fork,
                    PORT,
                    store.clone(),
                    vec![],
                    None,
                ),
                (
                    "fork client (no env)",
                    fork,
                    &[],
                    client.clone(),
                    vec![],
                    None,
                ),
                ("spawn holding nothing", SPAWN, PORT, vec![], vec![], None),
                ("spawn, other listener", SPAWN, PORT, other, vec![], None),
            ];
            for (name, argv, env, sockets, asked, want) in cases {
                let mut left = proc_(110, 1, argv, env, &[1, 2, 3]);
                left.pgid = 100;
                let mut s = snap(vec![proc_(1, 0, "/sbin/init", &[], &[]), left]);
                s.sockets = sockets;
                let a = Analysis::new(&s, &asked);
                let d003: Vec<_> = a.findings.iter().filter(|f| f.code == Rule::D003).collect();
                match want {
                    Some((port, text)) => {
                        assert_eq!(a.role(110), Role::Rank, "{name}");
                        assert_eq!(a.jobs.len(), 1, "{name}: {:?}", a.jobs);
                        assert!(a.jobs[0].launcher_gone, "{name}: {:?}", a.jobs);
                        assert_eq!(d003.len(), 1, "{name}: {:?}", a.findings);
                        assert_eq!(
                            (&d003[0].pids, &d003[0].ports),
                            (&vec![110], &vec![port]),
                            "{name}"
                        );
                        let m = &d003[0].message;
                        assert!(
                            m.contains("lost its launcher")
                                && m.contains("it is alone")
                                && m.contains(text),
                            "{name}: {m}"
                        );
                        assert!(
                            d003[0].fix.contains("kill -TERM -- -100"),
                            "{name}: {}",
                            d003[0].fix
                        );
                    }
                    None => {
                        assert_ne!(a.role(110), Role::Rank, "{name}");
                        assert!(d003.is_empty(), "{name}: {:?}", a.findings);
                        assert!(
                            a.jobs.iter().all(|j| !j.launcher_gone),
                            "{name}: {:?}",
                            a.jobs
                        );
                    }
                }
            }
            // Two ranks left of two dead parents (other process groups): two jobs, each alone.
            let mut l0 = proc_(110, 1, SPAWN, PORT, &[1, 2, 3]);
            let mut l1 = proc_(120, 1, SPAWN, &[("MASTER_PORT", "29501")], &[4]);
            l0.pgid = 100;
            l1.pgid = 101;
            let mut s = snap(vec![proc_(1, 0, "/sbin/init", &[], &[]), l0, l1]);
            s.sockets = store.clone();
            s.sockets.push(sock("CLOSE_WAIT", 40002, 29501, 4));
            let a = Analysis::new(&s, &[]);
            let d003: Vec<_> = a.findings.iter().filter(|f| f.code == Rule::D003).collect();
            assert_eq!(d003.len(), 2, "{:?}", a.findings);
            assert_eq!(a.jobs.len(), 2, "{:?}", a.jobs);
        }

        /// `mp.start_processes(..., start_method="forkserver")`: script -> forkserver -> 2 ranks
        /// sharing the store: one job of the script, no finding (was two D002 and each rank in two
        /// jobs). A rank's forkserver DataLoader workers joining the store stay D001's.
        #[test]
        fn forkserver_ranks_of_a_live_script_are_one_job() {
            // The forkserver's command line: `python -c "from multiprocessing.forkserver ..."`.
            let fs = |pid: i32, ppid: i32, env: &[(&str, &str)], inodes: &[u64]| {
                let mut p = proc_(pid, ppid, "python", env, inodes);
                p.argv = vec![
                    "python".into(),
                    "-c".into(),
                    "from multiprocessing.forkserver import main; main(8, 9, ['__main__'])".into(),
                ];
                p
            };
            let mut script = proc_(100, 1, "python train.py", &[], &[]);
            script.pgid = 100;
            let s = snap(vec![
                proc_(1, 0, "/sbin/init", &[], &[]),
                script,
                fs(105, 100, PORT, &[]),
                fs(110, 105, PORT, &[1, 2, 3]),
                fs(111, 105, PORT, &[4]),
            ]);
            let a = Analysis::new(&s, &[]);
            assert_eq!(a.role(100), Role::Launcher);
            assert_eq!((a.role(110), a.role(111)), (Role::Rank, Role::Rank));
            assert_eq!(a.jobs.len(), 1, "{:?}", a.jobs);
            assert_eq!(a.jobs[0].pids, vec![100, 105, 110, 111]);
            assert!(a.findings.is_empty(), "{:?}", a.findings);
            // The same forkserver under a rank (its DataLoader workers re-running the launch).
            let rank0 = proc_(100, 1, "python train.py", &rank("0"), &[1, 2, 3]);
            let r0 = rank("0");
            let s = snap(vec![
                proc_(1, 0, "/sbin/init", &[], &[]),
                rank0,
                fs(105, 100, &r0, &[]),
                fs(110, 105, &r0, &[4]),
                fs(111, 105, &r0, &[]),
            ]);
            let a = Analysis::new(&s, &[]);
            assert_eq!(a.role(100), Role::Rank);
            assert_ne!(a.role(110), Role::Rank);
        }

        /// `docker run IMAGE python train.py`: the launcher is the container's PID 1. Its spawn
        /// children and the ranks it starts are its own, healthy: no leftover job. A Python
        /// process supervisor as PID 1 (supervisord) does adopt a killed parent's children.
        #[test]
        fn a_launcher_that_is_pid_1_of_a_container_is_no_adopter() {
            let (r0, r1) = (rank("0"), rank("1"));
            let shapes = vec![
                vec![
                    proc_(1, 0, "python train.py", &[], &[]),
                    proc_(10, 1, SPAWN, PORT, &[1, 2, 3]),
                    proc_(11, 1, SPAWN, PORT, &[4]),
                ],
                vec![
                    proc_(1, 0, "python launch.py", &[], &[]),
                    proc_(10, 1, "python train.py", &r0, &[1, 2, 3]),
                    proc_(11, 1, "python train.py", &r1, &[4]),
                ],
            ];
            for ps in shapes {
                let s = snap(ps);
                let a = Analysis::new(&s, &[]);
                assert_eq!(a.jobs.len(), 1, "{:?}", a.jobs);
                assert!(!a.jobs[0].launcher_gone, "{:?}", a.jobs);
                assert!(a.findings.is_empty(), "{:?}", a.findings);
            }
            let mut sup = proc_(1, 0, "/usr/bin/python3 /usr/bin/supervisord -n", &[], &[]);
            sup.comm = "supervisord".into();
            let s = snap(vec![
                sup,
                proc_(10, 1, SPAWN, PORT, &[1, 2, 3]),
                proc_(11, 1, SPAWN, PORT, &[4]),
            ]);
            let a = Analysis::new(&s, &[]);
            assert!(a.jobs.iter().all(|j| j.launcher_gone), "{:?}", a.jobs);
        }

        fn no_pick(_: &Host, _: &BTreeSet<u16>) -> Option<u16> {
            None
        }

        /// `doctor run --timeout 20 -- env RANK=0 WORLD_SIZE=2 ... python train.py` (rank 1 never
        /// started): the rank is the command doctor run started, not an orphan re-parented to
        /// it, so at the timeout its job hangs (D009); the ranks a killed launcher left under
        /// doctor run (started after the command) are orphans still.
        #[test]
        fn the_command_of_doctor_run_is_not_an_orphan_of_it() {
            let mut r0 = proc_(100, 50, "python train.py", &rank("0"), &[1, 2, 3]);
            r0.pgid = 100;
            let mut doctor = proc_(
                50,
                1,
                "doctor run --timeout 20 -- python train.py",
                &[],
                &[],
            );
            doctor.start_time = 900.0;
            let mut s = snap(vec![
                proc_(1, 0, "/sbin/init", &[], &[]),
                doctor,
                r0.clone(),
            ]);
            s.host.observer_pid = 50;
            let a = Analysis::at_timeout(&s, no_pick);
            assert!(!a.jobs[0].launcher_gone, "{:?}", a.jobs);
            let codes: Vec<_> = a.findings.iter().map(|f| f.code.code()).collect();
            assert_eq!(codes, vec!["D009"], "{:?}", a.findings);
            assert!(a.findings[0].message.contains("missing: rank 1"));
            // The launcher (the command) died: its ranks, started after it, were adopted.
            let mut r1 = proc_(101, 50, "python train.py", &rank("1"), &[4]);
            r0.start_time = 1001.0;
            r1.start_time = 1001.0;
            let mut s = snap(vec![
                proc_(1, 0, "/sbin/init", &[], &[]),
                proc_(50, 1, "doctor run -- python launch.py", &[], &[]),
                proc_(99, 50, "bash -c sleep 1000", &[], &[]),
                r0,
                r1,
            ]);
            s.processes[2].start_time = 1000.0;
            s.host.observer_pid = 50;
            let a = Analysis::at_timeout(&s, no_pick);
            assert!(
                a.jobs.iter().all(|j| j.launcher_gone),
                "ranks adopted by doctor run: {:?}",
                a.jobs
            );
        }

        /// A server with thousands of fork children, each with a listener of its own (what a
        /// benchmark on the shared machine ran): no rendezvous among them, and finding that out is
        /// linear (it was quadratic in children times sockets: `doctor ports` ran for minutes).
        #[test]
        fn thousands_of_fork_children_share_no_rendezvous() {
            let n = 3000u64;
            let mut ps = vec![
                proc_(1, 0, "/sbin/init", &[], &[]),
                proc_(100, 1, "python server.py", &[], &[]),
            ];
            let mut socks = Vec::new();
            for i in 0..n {
                ps.push(proc_(
                    1000 + i as i32,
                    100,
                    "python server.py",
                    &[],
                    &[10 + i],
                ));
                socks.push(sock("LISTEN", 20000 + i as u16, 0, 10 + i));
            }
            let mut s = snap(ps);
            s.sockets = socks;
            let a = Analysis::new(&s, &[]);
            assert_eq!(a.role(100), Role::Python);
            assert!(a.jobs.is_empty());
        }

        #[test]
        fn live_spawn_and_fork_parents_and_unrelated_orphans_are_no_leftover_job() {
            let fork = "python train.py --devices 2";
            // A live parent: its job, not a leftover.
            for argv in [SPAWN, fork] {
                let mut kids = vec![
                    proc_(100, 1, fork, &[], &[]),
                    proc_(110, 100, argv, &[], &[1, 2, 3]),
                    proc_(111, 100, argv, &[], &[4]),
                ];
                for k in &mut kids {
                    k.pgid = 100;
                }
                kids.push(proc_(1, 0, "/sbin/init", &[], &[]));
                let s = snap(kids);
                let a = Analysis::new(&s, &[]);
                assert_eq!(a.role(100), Role::Launcher, "{argv}");
                assert_eq!(a.jobs.len(), 1);
                assert!(!a.jobs[0].launcher_gone);
                assert!(a.findings.is_empty(), "{argv}: {:?}", a.findings);
            }
            // Orphaned spawn workers that share no rendezvous; two same-program daemons of
            // different process groups, one a client of the other; two copies of one program
            // left by a shell that exported MASTER_PORT (`nohup python eval.py &` twice, one
            // process group), without a socket on it: no job.
            let mut d0 = proc_(110, 1, fork, &[], &[1, 2, 3]);
            let mut d1 = proc_(111, 1, fork, &[], &[4]);
            d0.pgid = 110;
            d1.pgid = 111;
            let mut n0 = proc_(110, 1, fork, PORT, &[]);
            let mut n1 = proc_(111, 1, fork, PORT, &[]);
            n0.pgid = 100;
            n1.pgid = 100;
            for s in [
                snap(vec![proc_(1, 0, "/sbin/init", &[], &[]), n0, n1]),
                snap(vec![
                    proc_(1, 0, "/sbin/init", &[], &[]),
                    proc_(110, 1, SPAWN, &[], &[]),
                    proc_(111, 1, SPAWN, &[], &[]),
                ]),
                snap(vec![proc_(1, 0, "/sbin/init", &[], &[]), d0, d1]),
            ] {
                let a = Analysis::new(&s, &[]);
                assert!(a.jobs.is_empty(), "{:?}", a.jobs);
                assert_ne!(a.role(1), Role::Launcher);
            }
        }
    }

    #[test]
    fn same_program_ignores_interpreter_and_script_dir() {
        assert!(same_program(
            &v("python train.py --lr 1"),
            &v("/usr/bin/python3 /home/u/train.py --lr 1")
        ));
        assert!(!same_program(
            &v("python train.py --lr 1"),
            &v("python train.py --lr 2")
        ));
        assert!(!same_program(&v("python"), &v("python")));
    }

    #[test]
    fn script_of_reads_python_argv() {
        assert_eq!(
            script_of(&v("python -u train.py --x")),
            Some("train.py".into())
        );
        assert_eq!(
            script_of(&v("python -m pkg.train")),
            Some("-m pkg.train".into())
        );
        assert_eq!(script_of(&v("python -c pass")), None);
    }
}
