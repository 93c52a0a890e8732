//! Runtime findings D001-D007: one function per rule over an `Analysis`, each citing its
//! evidence (pids, ports) and a concrete fix. Codes, names and severities are a contract.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::analyse::{Analysis, Role};
use crate::snapshot::{Proto, in_ephemeral_range};

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
    fn new(code: &'static str, message: String, pids: Vec<i32>, ports: Vec<u16>, fix: String) -> Finding {
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
        Finding { code, name, severity, message, pids, ports, fix, path: Vec::new() }
    }
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
    let script = a.script_of(rank).map(|s| format!(" in {s}")).unwrap_or_default();
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
        let Some(pos) = ancestors.iter().position(|&q| a.role(q) == Role::Rank) else { continue };
        let rank = ancestors[pos];
        if !a.carries_identity_of(p.pid, rank) {
            continue;
        }
        let Some(port) = a.identity(rank).and_then(|i| i.master_port) else { continue };
        // Sockets inherited from an ancestor (fork) are the ancestor's, not a second init.
        let inherited: BTreeSet<u64> = ancestors[..=pos]
            .iter()
            .filter_map(|&q| a.process(q))
            .flat_map(|q| q.socket_inodes.iter().copied())
            .collect();
        let own = a.sockets_of(p.pid).into_iter().filter(|s| {
            s.proto == Proto::Tcp && !inherited.contains(&s.inode) && (s.local_port == port || s.remote_port == port)
        });
        let Some(sock) = own.min_by_key(|s| s.state != "LISTEN") else { continue };
        let what = if sock.state == "LISTEN" { "listens on" } else { "is connected to" };
        let mut path: Vec<i32> = ancestors[..=pos].iter().rev().copied().collect();
        path.push(p.pid);
        let chain = path.iter().map(|&q| describe(a, q)).collect::<Vec<_>>().join(" -> ");
        let message = format!(
            "{} re-ran the training script's distributed launch: it carries the identity of rank pid {rank} and {what} \
             the rendezvous port {port} with a socket of its own. Path: {chain}",
            describe(a, p.pid)
        );
        let mut f = Finding::new("D001", message, vec![rank, p.pid], vec![port], guard_fix(a, rank));
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
        Some(p) => format!("`kill -TERM -- -{}` (process group {} of pid {pid})", p.pgid, p.pgid),
        None => format!("`kill {pid}`"),
    }
}

/// D002: the rendezvous port of one job is held by a process outside that job.
fn port_held_by_other_job(a: &Analysis) -> Vec<Finding> {
    let mut out = Vec::new();
    for (j, job) in a.jobs.iter().enumerate() {
        let Some(port) = job.master_port else { continue };
        for holder in listeners(a, port) {
            if a.job_of.get(&holder) == Some(&j) {
                continue;
            }
            // One report per (job, holder); the holder's own job is covered from its side.
            let other = a.job(holder);
            let whose = match other {
                Some(o) => format!("{} of another job ({}, root pid {})", describe(a, holder), o.id, o.root),
                None => format!("{}, which is not part of this job", describe(a, holder)),
            };
            let ranks: Vec<i32> =
                job.pids.iter().copied().filter(|&p| a.role(p) == Role::Rank || a.role(p) == Role::Launcher).collect();
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
        if !a.rendezvous_ports.contains(&s.local_port) || s.state == "TIME_WAIT" || s.proto != Proto::Tcp {
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
                format!("belongs to {} whose launcher is gone (root pid {} was re-parented to pid {})", job.id, job.root, a.process(job.root).map_or(1, |r| r.ppid))
            } else {
                continue;
            };
            if !seen.insert((pid, s.local_port)) {
                continue;
            }
            let message = format!("{} holds rendezvous port {} ({}) and {why}", describe(a, pid), s.local_port, s.state);
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
                format!("these are leftover ranks of a finished job: stop them with {}", kill_group_hint(a, pid))
            };
            out.push(Finding::new("D003", message, vec![pid], vec![s.local_port], fix));
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
            s.proto == Proto::Tcp && s.local_port == port && s.state != "LISTEN" && s.state != "TIME_WAIT"
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
            let who = pids.iter().map(|p| format!("pid {p}")).collect::<Vec<_>>().join(", ");
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
            out.push(Finding::new("D006", message, pids, job.master_port.into_iter().collect(), fix.to_string()));
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
