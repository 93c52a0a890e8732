//! Runtime findings D001-D007: one function per rule over an `Analysis`, each citing its
//! evidence (pids, ports) and a concrete fix. Codes, names and severities are a contract.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::analysis::{Analysis, Role};
use crate::model::snapshot::{Proto, in_ephemeral_range};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    Info,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    pub code: &'static str,
    pub name: &'static str,
    pub severity: Severity,
    pub message: String,
    pub pids: Vec<i32>,
    pub ports: Vec<u16>,
    pub fix: String,
    /// For D001: the ancestry from the rank to the duplicate initialiser, rank first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub path: Vec<i32>,
}

impl Finding {
    fn new(
        code: &'static str,
        message: String,
        pids: Vec<i32>,
        ports: Vec<u16>,
        fix: String,
    ) -> Finding {
        let (name, severity) = match code {
            "D001" => ("duplicate-init", Severity::Error),
            "D002" => ("port-held-by-other-job", Severity::Error),
            "D003" => ("stale-holder", Severity::Error),
            "D004" => ("port-in-ephemeral-range", Severity::Warning),
            "D005" => ("ephemeral-collision", Severity::Error),
            "D006" => ("duplicate-rank", Severity::Error),
            "D007" => ("time-wait-only", Severity::Info),
            _ => unreachable!("unknown finding code {code}"),
        };
        Finding {
            code,
            name,
            severity,
            message,
            pids,
            ports,
            fix,
            path: Vec::new(),
        }
    }
}

/// D001 as `doctor run` sees it: from a traced bind that failed (the transient form).
pub fn duplicate_init_finding(
    message: String,
    pids: Vec<i32>,
    ports: Vec<u16>,
    fix: String,
) -> Finding {
    Finding::new("D001", message, pids, ports, fix)
}

/// Whether any finding is at warning level or worse (exit code 1).
pub fn worth_exit_1(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.severity <= Severity::Warning)
}

pub fn evaluate(a: &Analysis) -> Vec<Finding> {
    let mut out = Vec::new();
    out.extend(duplicate_init(a));
    out.extend(port_held_by_other_job(a));
    out.extend(stale_holder(a));
    out.extend(port_in_ephemeral_range(a));
    out.extend(ephemeral_collision(a));
    out.extend(duplicate_rank(a));
    out.extend(time_wait_only(a));
    out.sort_by(|x, y| (x.severity, x.code, &x.pids).cmp(&(y.severity, y.code, &y.pids)));
    out
}

fn describe(a: &Analysis, pid: i32) -> String {
    let role = a.role(pid).name();
    match a.identity(pid).map(|i| i.label()).filter(|l| !l.is_empty()) {
        Some(label) => format!("pid {pid} ({role}, {label})"),
        None => format!("pid {pid} ({role})"),
    }
}

fn guard_fix(a: &Analysis, rank: i32) -> String {
    let script = a
        .script_of(rank)
        .map(|s| format!(" in {s}"))
        .unwrap_or_default();
    format!(
        "move the distributed launch{script} (`fabric.launch()`, `init_process_group(...)`, `trainer.fit(...)`) into \
         `main()` under `if __name__ == \"__main__\":` so spawn/forkserver children do not run it again; \
         `doctor scan` points at the line"
    )
}

/// D001: a child of a rank (spawn/forkserver/fork child, DataLoader worker) carries the rank's
/// identity and binds or connects to the rendezvous port on a socket of its own.
fn duplicate_init(a: &Analysis) -> Vec<Finding> {
    let mut out = Vec::new();
    for p in &a.snap.processes {
        if !a.role(p.pid).is_rank_descendant_kind() || p.is_zombie() {
            continue;
        }
        let ancestors = a.ancestors(p.pid);
        let Some(pos) = ancestors.iter().position(|&q| a.role(q) == Role::Rank) else {
            continue;
        };
        let rank = ancestors[pos];
        if !a.carries_identity_of(p.pid, rank) {
            continue;
        }
        let Some(port) = a.identity(rank).and_then(|i| i.master_port) else {
            continue;
        };
        // Sockets inherited from an ancestor (fork) are the ancestor's, not a second init.
        let inherited: BTreeSet<u64> = ancestors[..=pos]
            .iter()
            .filter_map(|&q| a.process(q))
            .flat_map(|q| q.socket_inodes.iter().copied())
            .collect();
        let own = a.sockets_of(p.pid).into_iter().filter(|s| {
            s.proto == Proto::Tcp
                && !inherited.contains(&s.inode)
                && (s.local_port == port || s.remote_port == port)
        });
        let Some(sock) = own.min_by_key(|s| s.state != "LISTEN") else {
            continue;
        };
        let what = if sock.state == "LISTEN" {
            "listens on"
        } else {
            "is connected to"
        };
        let mut path: Vec<i32> = ancestors[..=pos].iter().rev().copied().collect();
        path.push(p.pid);
        let chain = path
            .iter()
            .map(|&q| describe(a, q))
            .collect::<Vec<_>>()
            .join(" -> ");
        let message = format!(
            "{} re-ran the training script's distributed launch: it carries the identity of rank pid {rank} and {what} \
             the rendezvous port {port} with a socket of its own. Path: {chain}",
            describe(a, p.pid)
        );
        let mut f = Finding::new(
            "D001",
            message,
            vec![rank, p.pid],
            vec![port],
            guard_fix(a, rank),
        );
        f.path = path;
        out.push(f);
    }
    out
}

/// Listening holders of `port`.
fn listeners(a: &Analysis, port: u16) -> Vec<i32> {
    let mut pids: Vec<i32> = a
        .snap
        .sockets
        .iter()
        .filter(|s| s.proto == Proto::Tcp && s.state == "LISTEN" && s.local_port == port)
        .flat_map(|s| a.holders.get(&s.inode).cloned().unwrap_or_default())
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

fn kill_group_hint(a: &Analysis, pid: i32) -> String {
    match a.process(pid) {
        Some(p) => format!(
            "`kill -TERM -- -{}` (process group {} of pid {pid})",
            p.pgid, p.pgid
        ),
        None => format!("`kill {pid}`"),
    }
}

/// D002: the rendezvous port of one job is held by a process outside that job.
fn port_held_by_other_job(a: &Analysis) -> Vec<Finding> {
    let mut out = Vec::new();
    for (j, job) in a.jobs.iter().enumerate() {
        let Some(port) = job.master_port else {
            continue;
        };
        for holder in listeners(a, port) {
            if a.job_of.get(&holder) == Some(&j) {
                continue;
            }
            // One report per (job, holder); the holder's own job is covered from its side.
            let other = a.job(holder);
            let whose = match other {
                Some(o) => format!(
                    "{} of another job ({}, root pid {})",
                    describe(a, holder),
                    o.id,
                    o.root
                ),
                None => format!("{}, which is not part of this job", describe(a, holder)),
            };
            let ranks: Vec<i32> = job
                .pids
                .iter()
                .copied()
                .filter(|&p| a.role(p) == Role::Rank || a.role(p) == Role::Launcher)
                .collect();
            let mut pids = vec![holder];
            pids.extend(ranks.iter().take(4));
            let message = format!(
                "port {port} is the rendezvous port of {} (root pid {}) but is held by {whose}",
                job.id, job.root
            );
            let fix = format!(
                "give each job its own port: start one of them with another MASTER_PORT (torchrun --master-port N, \
                 or --rdzv-endpoint localhost:0 / --standalone); check a port with `doctor ports --check N`; \
                 if the holder is a leftover, stop it with {}",
                kill_group_hint(a, holder)
            );
            out.push(Finding::new("D002", message, pids, vec![port], fix));
        }
    }
    out
}

/// D003: a rendezvous port held by an orphaned, zombie or uninterruptible process.
fn stale_holder(a: &Analysis) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for s in &a.snap.sockets {
        if !a.rendezvous_ports.contains(&s.local_port)
            || s.state == "TIME_WAIT"
            || s.proto != Proto::Tcp
        {
            continue;
        }
        for &pid in a.holders.get(&s.inode).into_iter().flatten() {
            let Some(p) = a.process(pid) else { continue };
            let parent_zombie = a.parent(p).is_some_and(|q| q.is_zombie());
            let why = if p.is_zombie() {
                "is a zombie (exited, never reaped)".to_string()
            } else if p.state == "D" {
                "is stuck in uninterruptible sleep (state D)".to_string()
            } else if parent_zombie {
                format!("lives on under its exited parent pid {} (a zombie)", p.ppid)
            } else if let Some(job) = a.job(pid).filter(|j| j.launcher_gone) {
                format!(
                    "belongs to {} whose launcher is gone (root pid {} was re-parented to pid {})",
                    job.id,
                    job.root,
                    a.process(job.root).map_or(1, |r| r.ppid)
                )
            } else {
                continue;
            };
            if !seen.insert((pid, s.local_port)) {
                continue;
            }
            let message = format!(
                "{} holds rendezvous port {} ({}) and {why}",
                describe(a, pid),
                s.local_port,
                s.state
            );
            let fix = if p.state == "D" {
                format!(
                    "a D-state process cannot be killed until its I/O returns (often a hung NFS mount or GPU driver): \
                     find what it waits on in /proc/{pid}/stack; meanwhile use another MASTER_PORT"
                )
            } else if p.is_zombie() || parent_zombie {
                format!(
                    "kill the leftover tree with {} and make sure its parent reaps children (in containers run with \
                     `--init` / tini as PID 1)",
                    kill_group_hint(a, pid)
                )
            } else {
                format!(
                    "these are leftover ranks of a finished job: stop them with {}",
                    kill_group_hint(a, pid)
                )
            };
            out.push(Finding::new(
                "D003",
                message,
                vec![pid],
                vec![s.local_port],
                fix,
            ));
        }
    }
    out
}

/// D004: a rendezvous port in use lies inside the ephemeral range and is not reserved.
fn port_in_ephemeral_range(a: &Analysis) -> Vec<Finding> {
    let [lo, hi] = a.snap.host.ephemeral_range;
    a.used_ports
        .iter()
        .filter(|&&port| in_ephemeral_range(&a.snap.host, port))
        .map(|&port| {
            let pids: Vec<i32> = a
                .snap
                .processes
                .iter()
                .filter(|p| a.role(p.pid) == Role::Rank && a.identity(p.pid).and_then(|i| i.master_port) == Some(port))
                .map(|p| p.pid)
                .collect();
            let message = format!(
                "rendezvous port {port} lies inside the ephemeral port range {lo}-{hi} and is not reserved: any outgoing \
                 connection on this host may be given it as its local port, and then the store cannot bind it"
            );
            let fix = format!(
                "choose a port below {lo} (e.g. MASTER_PORT=29500), or reserve it: \
                 `sysctl -w net.ipv4.ip_local_reserved_ports={port}` (add to /etc/sysctl.d to keep it)"
            );
            Finding::new("D004", message, pids, vec![port], fix)
        })
        .collect()
}

/// D005: a connection (not a listener) uses a rendezvous port as its local port while nobody
/// listens there: the kernel handed the port to an outgoing connection.
fn ephemeral_collision(a: &Analysis) -> Vec<Finding> {
    let mut out = Vec::new();
    for &port in &a.rendezvous_ports {
        if !listeners_any(a, port).is_empty() {
            continue;
        }
        for s in a.snap.sockets.iter().filter(|s| {
            s.proto == Proto::Tcp
                && s.local_port == port
                && s.state != "LISTEN"
                && s.state != "TIME_WAIT"
        }) {
            let pids = a.holders.get(&s.inode).cloned().unwrap_or_default();
            let who = match pids.first() {
                Some(&p) => describe(a, p),
                None => "a process doctor cannot see".into(),
            };
            let message = format!(
                "{who} has an outgoing connection ({} to {}:{}) whose local port is the rendezvous port {port}; \
                 binding {port} fails with EADDRINUSE although nobody listens on it",
                s.state, s.remote_addr, s.remote_port
            );
            let [lo, _] = a.snap.host.ephemeral_range;
            let fix = format!(
                "use a rendezvous port below {lo}, or reserve it so the kernel never hands it out: \
                 `sysctl -w net.ipv4.ip_local_reserved_ports={port}`; the connection frees it when it closes"
            );
            out.push(Finding::new("D005", message, pids, vec![port], fix));
        }
    }
    out
}

/// Every LISTEN socket on `port`, held or not (another user's listener may have no visible holder).
fn listeners_any(a: &Analysis, port: u16) -> Vec<u64> {
    a.snap
        .sockets
        .iter()
        .filter(|s| s.proto == Proto::Tcp && s.state == "LISTEN" && s.local_port == port)
        .map(|s| s.inode)
        .collect()
}

/// D006: two live ranks of one job claim the same rank.
fn duplicate_rank(a: &Analysis) -> Vec<Finding> {
    let mut out = Vec::new();
    for job in &a.jobs {
        let mut by_rank: BTreeMap<(i64, i64), Vec<i32>> = BTreeMap::new();
        for &pid in &job.pids {
            let Some(p) = a.process(pid) else { continue };
            if a.role(pid) != Role::Rank || p.is_zombie() {
                continue;
            }
            if let Some(key) = a.identity(pid).and_then(|i| i.rank_key()) {
                by_rank.entry(key).or_default().push(pid);
            }
        }
        for (key, pids) in by_rank.into_iter().filter(|(_, v)| v.len() > 1) {
            let label = a.identity(pids[0]).map(|i| i.label()).unwrap_or_default();
            let who = pids
                .iter()
                .map(|p| format!("pid {p}"))
                .collect::<Vec<_>>()
                .join(", ");
            let message = format!(
                "{who} of {} all claim {label}: the store sees the same rank twice (a hang at rendezvous, or \
                 'duplicate rank' errors)",
                job.id
            );
            let fix = if key.0 >= 0 {
                "give every node its own --node-rank (NODE_RANK) and start one launcher per node (SLURM: \
                 --ntasks-per-node=1 with torchrun, or let Lightning/SLURM set the ranks)"
            } else {
                "every process needs its own RANK: start one launcher per node and let it assign ranks"
            };
            out.push(Finding::new(
                "D006",
                message,
                pids,
                job.master_port.into_iter().collect(),
                fix.to_string(),
            ));
        }
    }
    out
}

/// D007: only TIME_WAIT sockets use the port: harmless, TCPStore binds with SO_REUSEADDR.
fn time_wait_only(a: &Analysis) -> Vec<Finding> {
    a.rendezvous_ports
        .iter()
        .filter(|&&port| {
            let mut tcp = a.snap.sockets.iter().filter(|s| s.proto == Proto::Tcp && s.local_port == port).peekable();
            tcp.peek().is_some() && tcp.all(|s| s.state == "TIME_WAIT")
        })
        .map(|&port| {
            Finding::new(
                "D007",
                format!("only TIME_WAIT sockets use port {port}: closed connections the kernel keeps for a while"),
                Vec::new(),
                vec![port],
                "nothing to do: TCPStore binds with SO_REUSEADDR, so a new bind over TIME_WAIT succeeds on Linux; \
                 if the bind still fails, look for another holder"
                    .to_string(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::model::snapshot::{Host, Process, Snapshot, Socket};

    fn host() -> Host {
        Host {
            hostname: "node1".into(),
            kernel: "6.1".into(),
            ephemeral_range: [32768, 60999],
            ..Host::default()
        }
    }

    fn proc_(pid: i32, ppid: i32, argv: &str, env: &[(&str, &str)]) -> Process {
        Process {
            pid,
            ppid,
            pgid: pid,
            sid: 1,
            state: "S".into(),
            comm: "python".into(),
            exe: Some("/usr/bin/python3".into()),
            argv: argv.split(' ').map(str::to_string).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            start_time: 1000.0,
            ..Process::default()
        }
    }

    fn sock(state: &str, local: u16, remote: u16, inode: u64) -> Socket {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let any: IpAddr = "0.0.0.0".parse().unwrap();
        Socket {
            proto: Proto::Tcp,
            state: state.into(),
            local_addr: lo,
            local_port: local,
            remote_addr: if remote == 0 { any } else { lo },
            remote_port: remote,
            inode,
            uid: 0,
        }
    }

    fn snap(mut processes: Vec<Process>, sockets: Vec<Socket>) -> Snapshot {
        processes.sort_by_key(|p| p.pid);
        Snapshot {
            schema_version: 1,
            taken_at: 2000.0,
            host: host(),
            processes,
            sockets,
            unreadable: Vec::new(),
        }
    }

    fn codes(s: &Snapshot, extra: &[u16]) -> Vec<&'static str> {
        Analysis::new(s, extra)
            .findings
            .iter()
            .map(|f| f.code)
            .collect()
    }

    const RANK0: &[(&str, &str)] = &[
        ("MASTER_ADDR", "127.0.0.1"),
        ("MASTER_PORT", "29500"),
        ("LOCAL_RANK", "0"),
        ("WORLD_SIZE", "2"),
    ];
    const RANK1: &[(&str, &str)] = &[
        ("MASTER_ADDR", "127.0.0.1"),
        ("MASTER_PORT", "29500"),
        ("LOCAL_RANK", "1"),
        ("WORLD_SIZE", "2"),
    ];
    const SPAWN: &str = "python -c from multiprocessing.spawn import spawn_main; spawn_main(tracker_fd=5, pipe_handle=7) --multiprocessing-fork";

    fn with_sockets(mut p: Process, inodes: &[u64]) -> Process {
        p.socket_inodes = inodes.to_vec();
        p
    }

    /// Lightning: rank 0 (identity only in os.environ), rank 1 by Popen, one spawn worker each.
    fn lightning(worker0_sockets: &[u64]) -> (Vec<Process>, Vec<Socket>) {
        let procs = vec![
            proc_(1, 0, "/sbin/init", &[]),
            proc_(50, 1, "bash", &[]),
            with_sockets(proc_(100, 50, "python train.py", &[]), &[1, 2]),
            with_sockets(proc_(101, 100, "python train.py", RANK1), &[3]),
            with_sockets(proc_(110, 100, SPAWN, RANK0), worker0_sockets),
            proc_(111, 101, SPAWN, RANK1),
        ];
        let sockets = vec![
            sock("LISTEN", 29500, 0, 1),
            sock("ESTABLISHED", 29500, 40001, 2),
            sock("ESTABLISHED", 40001, 29500, 3),
            sock("ESTABLISHED", 40002, 29500, 4),
        ];
        (procs, sockets)
    }

    #[test]
    fn healthy_lightning_job_has_no_findings_and_infers_rank_zero() {
        let (p, s) = lightning(&[]);
        let snap = snap(p, s);
        let a = Analysis::new(&snap, &[]);
        assert!(a.findings.is_empty(), "{:?}", a.findings);
        assert_eq!(a.role(100), Role::Rank);
        assert_eq!(a.identity(100).unwrap().local_rank, Some(0));
        assert!(a.identity(100).unwrap().inferred);
        assert_eq!(a.role(101), Role::Rank);
        assert_eq!(a.role(110), Role::SpawnChild);
        assert_eq!(a.jobs.len(), 1);
        assert_eq!(a.jobs[0].root, 100);
        assert_eq!(a.jobs[0].master_port, Some(29500));
        assert!(!a.jobs[0].launcher_gone);
    }

    #[test]
    fn rank_zero_is_known_by_the_store_it_hosts_for_its_ranks() {
        // Launched as `python -m pkg.train`, its rank 1 as a path: argv differ, the store tells.
        let (mut p, s) = lightning(&[]);
        p.retain(|q| q.pid < 110); // no workers: only rank 1 tells who rank 0 is
        p[2].argv = vec!["python".into(), "-m".into(), "pkg.train".into()];
        let snap = snap(p, s);
        let a = Analysis::new(&snap, &[]);
        assert_eq!(a.role(100), Role::Rank);
        assert_eq!(a.jobs.len(), 1, "{:?}", a.jobs);
        assert!(a.findings.is_empty(), "{:?}", a.findings);
    }

    #[test]
    fn d001_worker_connecting_as_rank_zero() {
        let (p, s) = lightning(&[4]);
        let snap = snap(p, s);
        let a = Analysis::new(&snap, &[]);
        let f: Vec<_> = a.findings.iter().filter(|f| f.code == "D001").collect();
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].pids, vec![100, 110]);
        assert_eq!(f[0].path, vec![100, 110]);
        assert!(f[0].fix.contains("train.py"));
    }

    #[test]
    fn d001_not_for_a_worker_of_another_rank_identity() {
        // The worker of rank 1 connects, but carries rank 1's identity: that is rank 1's socket
        // pattern only if it is its own connection; it still re-initialised, so D001 cites rank 1.
        let (mut p, mut s) = lightning(&[]);
        p[5].socket_inodes = vec![9];
        s.push(sock("ESTABLISHED", 40009, 29500, 9));
        let snap = snap(p, s);
        let d001: Vec<_> = Analysis::new(&snap, &[])
            .findings
            .into_iter()
            .filter(|f| f.code == "D001")
            .collect();
        assert_eq!(d001.len(), 1);
        assert_eq!(d001[0].pids, vec![101, 111]);
    }

    #[test]
    fn d001_not_for_inherited_fork_sockets() {
        let (mut p, s) = lightning(&[]);
        // A fork child of rank 0 shares its listening socket: not a second init.
        let mut child = with_sockets(proc_(120, 100, "python train.py", &[]), &[1]);
        child.comm = "python".into();
        p.push(child);
        let snap = snap(p, s);
        let a = Analysis::new(&snap, &[]);
        assert_eq!(a.role(120), Role::ForkChild);
        assert!(a.findings.is_empty(), "{:?}", a.findings);
    }

    #[test]
    fn torchrun_job_roles_and_duplicate_rank() {
        let env = |rank: &'static str| -> Vec<(&str, &str)> {
            vec![
                ("MASTER_PORT", "29500"),
                ("RANK", rank),
                ("LOCAL_RANK", rank),
                ("WORLD_SIZE", "2"),
                ("TORCHELASTIC_RUN_ID", "abc"),
            ]
        };
        let mut agent = with_sockets(
            proc_(
                200,
                1,
                "/usr/bin/python3 /usr/local/bin/torchrun --nproc-per-node 2 train.py",
                &[],
            ),
            &[1],
        );
        agent.comm = "pt_elastic".into();
        let procs = vec![
            agent,
            proc_(201, 200, "/usr/bin/python3 -u train.py", &env("0")),
            proc_(202, 200, "/usr/bin/python3 -u train.py", &env("1")),
            proc_(203, 200, "/usr/bin/python3 -u train.py", &env("1")),
        ];
        let snap = snap(procs, vec![sock("LISTEN", 29500, 0, 1)]);
        let a = Analysis::new(&snap, &[]);
        assert_eq!(a.role(200), Role::Launcher);
        assert_eq!(a.role(201), Role::Rank);
        let d006: Vec<_> = a.findings.iter().filter(|f| f.code == "D006").collect();
        assert_eq!(d006.len(), 1);
        assert_eq!(d006[0].pids, vec![202, 203]);
        assert_eq!(a.jobs.len(), 1);
    }

    #[test]
    fn d002_other_job_and_unrelated_program() {
        let (p, _) = lightning(&[]);
        let mut procs: Vec<Process> = p
            .into_iter()
            .filter(|p| p.pid != 100 && p.pid < 110)
            .collect();
        // Rank 1 (now orphan-free: parent bash) wants 29500, held by an unrelated server.
        procs.iter_mut().for_each(|p| {
            if p.pid == 101 {
                p.ppid = 50
            }
        });
        procs.push(with_sockets(
            proc_(300, 1, "python -m http.server 29500", &[]),
            &[7],
        ));
        let snap = snap(procs, vec![sock("LISTEN", 29500, 0, 7)]);
        let a = Analysis::new(&snap, &[]);
        let d002: Vec<_> = a.findings.iter().filter(|f| f.code == "D002").collect();
        assert_eq!(d002.len(), 1, "{:?}", a.findings);
        assert_eq!(d002[0].pids, vec![300, 101]);
        assert!(d002[0].message.contains("not part of this job"));
    }

    #[test]
    fn d003_orphan_zombie_parent_and_d_state() {
        // A rank whose launcher died (re-parented to init) still listens.
        let procs = vec![
            proc_(1, 0, "/sbin/init", &[]),
            with_sockets(proc_(400, 1, "python train.py", RANK1), &[1]),
        ];
        let s = snap(procs, vec![sock("LISTEN", 29500, 0, 1)]);
        let a = Analysis::new(&s, &[]);
        assert!(a.jobs[0].launcher_gone);
        assert_eq!(codes(&s, &[]), vec!["D003"]);

        // Its parent exited but was never reaped.
        let mut parent = proc_(500, 1, "python train.py", &[]);
        parent.state = "Z".into();
        parent.argv.clear();
        let procs = vec![
            proc_(1, 0, "/sbin/init", &[]),
            parent,
            with_sockets(proc_(501, 500, "python train.py", RANK0), &[1]),
        ];
        let s = snap(procs, vec![sock("LISTEN", 29500, 0, 1)]);
        let f = Analysis::new(&s, &[]).findings;
        assert_eq!(f.len(), 1);
        assert!(f[0].message.contains("zombie"), "{}", f[0].message);

        // Uninterruptible sleep.
        let mut stuck = with_sockets(proc_(600, 50, "python train.py", RANK0), &[1]);
        stuck.state = "D".into();
        let procs = vec![
            proc_(1, 0, "/sbin/init", &[]),
            proc_(50, 1, "bash", &[]),
            stuck,
        ];
        let s = snap(procs, vec![sock("LISTEN", 29500, 0, 1)]);
        let f = Analysis::new(&s, &[]).findings;
        assert_eq!(f.iter().map(|f| f.code).collect::<Vec<_>>(), vec!["D003"]);
        assert!(f[0].fix.contains("/proc/600/stack"));
    }

    #[test]
    fn d004_only_when_not_reserved() {
        let env: &[(&str, &str)] = &[("MASTER_PORT", "45000"), ("LOCAL_RANK", "0")];
        let procs = vec![
            proc_(50, 1, "bash", &[]),
            with_sockets(proc_(700, 50, "python train.py", env), &[1]),
        ];
        let mut s = snap(procs, vec![sock("LISTEN", 45000, 0, 1)]);
        assert_eq!(codes(&s, &[]), vec!["D004"]);
        s.host.reserved_ports = vec![[44000, 46000]];
        assert!(codes(&s, &[]).is_empty());
        // The default ports are below the range: never D004 just for being defaults.
        s.host.reserved_ports.clear();
        s.processes[1].env.clear();
        assert!(codes(&s, &[]).is_empty());
    }

    #[test]
    fn d005_client_on_the_port_but_not_an_accepted_connection() {
        let procs = vec![
            proc_(50, 1, "bash", &[]),
            with_sockets(proc_(800, 50, "curl example", &[]), &[1]),
        ];
        let s = snap(procs, vec![sock("ESTABLISHED", 29500, 443, 1)]);
        assert_eq!(codes(&s, &[]), vec!["D005"]);
        // With a listener on the port the same local port is an accepted connection.
        let (p, so) = lightning(&[]);
        assert!(codes(&snap(p, so), &[]).is_empty());
    }

    #[test]
    fn d007_time_wait_only() {
        let s = snap(
            vec![proc_(50, 1, "bash", &[])],
            vec![sock("TIME_WAIT", 29500, 40000, 0)],
        );
        let f = Analysis::new(&s, &[]).findings;
        assert_eq!(f.iter().map(|f| f.code).collect::<Vec<_>>(), vec!["D007"]);
        assert!(!worth_exit_1(&f), "information only");
    }

    #[test]
    fn launcher_port_flags() {
        use crate::analysis::launcher_port;
        let v = |s: &str| s.split(' ').map(str::to_string).collect::<Vec<_>>();
        assert_eq!(
            launcher_port(&v("torchrun --master-port 29600 train.py")),
            Some(29600)
        );
        assert_eq!(
            launcher_port(&v("torchrun --rdzv-endpoint=host:29401 train.py")),
            Some(29401)
        );
        assert_eq!(
            launcher_port(&v("accelerate launch --main_process_port 29700 t.py")),
            Some(29700)
        );
        assert_eq!(
            launcher_port(&v("torchrun --rdzv-endpoint localhost:0 t.py")),
            None
        );
    }
}
