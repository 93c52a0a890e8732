//! Runtime findings D001-D009: one file per rule, each a `check` over an [`Analysis`] that cites
//! its evidence (pids, ports) and a concrete fix. Codes, names and severities live in the one
//! enum, [`crate::model::finding::Rule`]. A new rule is a new file here plus its line in
//! [`RULES`], its registry line and its doc page.

mod d001_duplicate_init;
pub use d001_duplicate_init::rerun_launch as d001_rerun_launch;
mod d002_port_held_by_other_job;
mod d003_stale_holder;
mod d004_port_in_ephemeral_range;
mod d005_ephemeral_collision;
mod d006_duplicate_rank;
mod d007_time_wait_only;
mod d008_port_held_by_foreign_process;
mod d009_rendezvous_incomplete;

use std::collections::BTreeSet;

pub(crate) use crate::analysis::facts::{Analysis, Role};
use crate::model::finding::Finding;
pub(crate) use crate::model::snapshot::{Proto, in_ephemeral_range};

/// Every runtime rule, in code order.
pub const RULES: &[fn(&Analysis) -> Vec<Finding>] = &[
    d001_duplicate_init::check,
    d002_port_held_by_other_job::check,
    d003_stale_holder::check,
    d004_port_in_ephemeral_range::check,
    d005_ephemeral_collision::check,
    d006_duplicate_rank::check,
    d007_time_wait_only::check,
    d008_port_held_by_foreign_process::check,
    d009_rendezvous_incomplete::check,
];

/// Every finding of every rule, errors first.
pub fn evaluate(a: &Analysis) -> Vec<Finding> {
    let mut out: Vec<Finding> = RULES.iter().flat_map(|rule| rule(a)).collect();
    out.sort_by(|x, y| {
        (std::cmp::Reverse(x.severity), x.code, &x.pids).cmp(&(
            std::cmp::Reverse(y.severity),
            y.code,
            &y.pids,
        ))
    });
    out
}

/// `pid N (role, rank r/w)`.
pub(crate) fn describe(a: &Analysis, pid: i32) -> String {
    let role = a.role(pid).name();
    match a.identity(pid).map(|i| i.label()).filter(|l| !l.is_empty()) {
        Some(label) => format!("pid {pid} ({role}, {label})"),
        None => format!("pid {pid} ({role})"),
    }
}

pub(super) fn guard_fix(a: &Analysis, rank: i32) -> String {
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

/// Listening holders of `port`.
pub(super) fn listeners(a: &Analysis, port: u16) -> Vec<i32> {
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

/// How to stop `pid` and its group, with ids valid where the snapshot was taken: process group 0
/// (a leader outside this PID namespace: a process entered by `nsenter`, `docker exec`, `kubectl
/// exec`) or 1 (the namespace's init) is never named; the pid is, with its children.
/// A kill command for the holder `pid`, safe by construction: it names every holder of the
/// listening sockets `pid` holds (a forked child that inherited the socket keeps the port
/// otherwise), and it names process groups only when each is safe to stop whole: never group 0
/// or 1 (or a group of another PID namespace), never the caller's own group or its session
/// leader's (the login shell, the terminal's job control), never a
/// group with a process of another job in it. Otherwise it names the pids.
pub(super) fn kill_group_hint(a: &Analysis, pid: i32) -> String {
    kill_hint(a, &[pid])
}

/// As [`kill_group_hint`] for several processes to stop at once (the orphaned ranks of one
/// job): every holder of their listening sockets named, groups only when safe, else the pids.
pub(super) fn kill_hint(a: &Analysis, targets: &[i32]) -> String {
    let Some(&pid) = targets.first() else {
        return String::new();
    };
    let Some(p) = a.process(pid) else {
        return format!("`kill {}`", join_spaced(targets));
    };
    let mut holders: Vec<i32> = targets
        .iter()
        .flat_map(|&t| sharing_holders(a, t))
        .collect();
    holders.sort_unstable();
    holders.dedup();
    let theirs: BTreeSet<usize> = holders
        .iter()
        .filter_map(|h| a.job_of.get(h))
        .copied()
        .collect();
    let host = &a.snap.host;
    let group_safe = |g: i32| {
        g > 1
            && g != host.observer_pgid
            && g != host.observer_sid
            && a.group_members(g).all(|q| {
                q.pid != host.observer_pid
                    && (holders.binary_search(&q.pid).is_ok()
                        || a.job_of.get(&q.pid).is_none_or(|j| theirs.contains(j)))
            })
    };
    let mut groups: Vec<i32> = holders
        .iter()
        .filter_map(|&h| a.process(h))
        .map(|q| q.pgid)
        .collect();
    groups.sort_unstable();
    groups.dedup();
    if groups.iter().all(|&g| group_safe(g)) {
        let list: Vec<String> = groups.iter().map(|g| format!("-{g}")).collect();
        let whose = if holders.len() == 1 {
            format!("pid {pid}")
        } else if targets.len() > 1 {
            format!("pids {}", join(&holders))
        } else {
            format!("pids {}, which share its socket", join(&holders))
        };
        let what = if groups.len() == 1 {
            format!("process group {} of {whose}", groups[0])
        } else {
            format!("process groups {} of {whose}", join(&groups))
        };
        return format!("`kill -TERM -- {}` ({what})", list.join(" "));
    }
    // Name pids: the holders and their children (which a group kill would have reached).
    let mut pids = holders.clone();
    for &h in &holders {
        pids.extend(
            a.children(h)
                .iter()
                .copied()
                .filter(|&c| c > 1 && c != host.observer_pid),
        );
    }
    pids.sort_unstable();
    pids.dedup();
    let why = if p.pgid <= 1 {
        format!(
            "its process group {} is not one of this PID namespace's",
            p.pgid
        )
    } else {
        format!(
            "not its process group {}: other processes share it (this shell, or another job)",
            p.pgid
        )
    };
    format!("`kill -TERM {}` ({why})", join_spaced(&pids))
}

/// `pid` and every process that shares one of its listening TCP sockets (the same inode: a
/// forked child that inherited it, a parent that kept it), sorted.
pub(super) fn sharing_holders(a: &Analysis, pid: i32) -> Vec<i32> {
    let mut holders = vec![pid];
    for s in a.sockets_of(pid) {
        if s.proto == Proto::Tcp && s.state == "LISTEN" {
            holders.extend(a.holders.get(&s.inode).into_iter().flatten().copied());
        }
    }
    holders.sort_unstable();
    holders.dedup();
    holders
}

fn join(v: &[i32]) -> String {
    v.iter().map(i32::to_string).collect::<Vec<_>>().join(", ")
}

pub(super) fn join_spaced(v: &[i32]) -> String {
    v.iter().map(i32::to_string).collect::<Vec<_>>().join(" ")
}

/// Every LISTEN socket on `port`, held or not (another user's listener may have no visible holder).
pub(super) fn listeners_any(a: &Analysis, port: u16) -> Vec<u64> {
    a.snap
        .sockets
        .iter()
        .filter(|s| s.proto == Proto::Tcp && s.state == "LISTEN" && s.local_port == port)
        .map(|s| s.inode)
        .collect()
}

/// The findings of one rule's `check` over a snapshot recorded from its real situation
/// (`tests/fixtures/snapshots/NAME.json`, scripts/fixtures/record_rule_snapshots.py), with `port`
/// asked as with `--port`.
#[cfg(test)]
pub(super) fn on_recorded(
    name: &str,
    port: u16,
    check: fn(&Analysis) -> Vec<Finding>,
) -> Vec<Finding> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/snapshots")
        .join(format!("{name}.json"));
    let snap = crate::model::snapshot::Snapshot::load(&path).expect("recorded snapshot loads");
    let snap = Box::leak(Box::new(snap));
    check(&Analysis::facts(snap, &[port]))
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::model::finding::Rule;
    use crate::model::finding::worth_exit_1;
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
        // Python unless the command is another program (`/sbin/init`).
        let program = argv.split(' ').next().unwrap_or("");
        let python = !program.starts_with('/') || program.contains("python");
        let base = program.rsplit('/').next().unwrap_or(program);
        Process {
            pid,
            ppid,
            pgid: pid,
            sid: 1,
            state: "S".into(),
            comm: if python { "python".into() } else { base.into() },
            exe: Some(if python {
                "/usr/bin/python3".into()
            } else {
                program.into()
            }),
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
            bind_probes: Vec::new(),
            ..Snapshot::default()
        }
    }

    fn codes(s: &Snapshot, extra: &[u16]) -> Vec<Rule> {
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
        assert_eq!(a.jobs[0].rendezvous.master_port, Some(29500));
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
        let f: Vec<_> = a.findings.iter().filter(|f| f.code == Rule::D001).collect();
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
            .filter(|f| f.code == Rule::D001)
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
        let d006: Vec<_> = a.findings.iter().filter(|f| f.code == Rule::D006).collect();
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
        // A holder in no job is no other job: D008 (error, since the job wants the port).
        assert!(
            a.findings.iter().all(|f| f.code != Rule::D002),
            "{:?}",
            a.findings
        );
        let d008: Vec<_> = a.findings.iter().filter(|f| f.code == Rule::D008).collect();
        assert_eq!(d008.len(), 1, "{:?}", a.findings);
        assert_eq!(d008[0].pids, vec![300, 101]);
        assert_eq!(d008[0].severity, crate::model::finding::Severity::Error);
        assert!(d008[0].message.contains("belongs to no training job"));
        assert!(d008[0].fix.contains("`kill 300`"), "{}", d008[0].fix);
        assert!(
            d008[0].fix.contains("a free port below 32768"),
            "{}",
            d008[0].fix
        );
    }

    /// Every kill command in `f`'s fix: (process groups, pids).
    fn kills(fix: &str) -> Vec<(Vec<i32>, Vec<i32>)> {
        fix.split("`kill ")
            .skip(1)
            .map(|rest| {
                let cmd = rest.split('`').next().unwrap_or("");
                let words: Vec<&str> = cmd.split_whitespace().filter(|w| *w != "-TERM").collect();
                match words.iter().position(|w| *w == "--") {
                    Some(i) => (
                        words[i + 1..]
                            .iter()
                            .map(|w| w.trim_start_matches('-').parse().expect("group"))
                            .collect(),
                        Vec::new(),
                    ),
                    None => (
                        Vec::new(),
                        words.iter().map(|w| w.parse().expect("pid")).collect(),
                    ),
                }
            })
            .collect()
    }

    /// The safety properties of every kill command of every finding of `a`.
    fn assert_kills_safe(a: &Analysis) -> usize {
        let mut seen = 0;
        for f in &a.findings {
            let holder = f.pids[0];
            for (groups, pids) in kills(&f.fix) {
                seen += 1;
                let host = &a.snap.host;
                for &g in &groups {
                    assert!(g > 1, "group {g} in {}", f.fix);
                    assert_ne!(g, host.observer_pgid, "caller's group in {}", f.fix);
                    assert_ne!(g, host.observer_sid, "caller's session leader in {}", f.fix);
                    for q in a.snap.processes.iter().filter(|q| q.pgid == g) {
                        let other_job = a
                            .job_of
                            .get(&q.pid)
                            .is_some_and(|j| a.job_of.get(&holder) != Some(j));
                        assert!(
                            !other_job || sharing_holders(a, holder).contains(&q.pid),
                            "group {g} of {} reaches pid {} of another job",
                            f.fix,
                            q.pid
                        );
                    }
                }
                // Every process sharing the holder's listening socket is stopped.
                for h in sharing_holders(a, holder) {
                    let pg = a.process(h).unwrap().pgid;
                    assert!(
                        pids.contains(&h) || groups.contains(&pg),
                        "holder {h} not stopped by {}",
                        f.fix
                    );
                }
            }
        }
        seen
    }

    #[test]
    fn d002_never_stops_a_healthy_holder() {
        // Job A (healthy Lightning job) holds 29500; job B wants it: B moves, A is not named.
        let (mut procs, sockets) = lightning(&[]);
        procs.push(proc_(300, 1, "python other.py", RANK0));
        let s = snap(procs, sockets);
        let a = Analysis::new(&s, &[]);
        let d002 = a
            .findings
            .iter()
            .find(|f| f.code == Rule::D002)
            .expect("D002");
        assert!(!d002.fix.contains("kill"), "{}", d002.fix);
        assert!(d002.fix.contains("start job-300 again"), "{}", d002.fix);
    }

    #[test]
    fn kill_fixes_are_safe_by_construction() {
        // Job A (Lightning, rank 0 pid 100 holds 29500 on inode 1); job B (pid 300) wants 29500.
        // Vary what shares the holder's group and socket; every fix must stay safe.
        let job_b = |pgid: i32| {
            let mut p = proc_(300, 1, "python other.py", RANK0);
            p.pgid = pgid;
            p
        };
        let mut kinds = 0;
        for variant in 0..6 {
            let (mut procs, sockets) = lightning(&[]);
            // Job A lost its launcher (a leftover): only then may a D002 fix stop the holder
            // (a healthy holder's group is never named: `d002_never_stops_a_healthy_holder`).
            for p in procs.iter_mut().filter(|p| p.pid == 100) {
                p.ppid = 1;
                p.env = RANK0
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
            }
            let mut host_pgid = 0;
            let mut host_sid = 0;
            match variant {
                // Job B started in job A's process group (one script starting both).
                1 => procs.push(job_b(100)),
                // The caller (doctor) runs in the holder's group / session.
                2 => host_pgid = 100,
                3 => host_sid = 100,
                // A forked child of the holder inherited the listening socket.
                4 => {
                    let mut c = with_sockets(proc_(120, 100, "python train.py", &[]), &[1]);
                    c.pgid = 777;
                    procs.push(c);
                }
                // The holder's group is init's (a container's PID 1 group).
                5 => procs
                    .iter_mut()
                    .filter(|p| p.pid >= 100)
                    .for_each(|p| p.pgid = 1),
                _ => {}
            }
            if variant != 1 {
                procs.push(job_b(300));
            }
            let mut s = snap(procs, sockets);
            s.host.observer_pgid = host_pgid;
            s.host.observer_sid = host_sid;
            let a = Analysis::new(&s, &[]);
            assert!(
                a.findings.iter().any(|f| f.code == Rule::D002),
                "variant {variant}: {:?}",
                a.findings
            );
            kinds += assert_kills_safe(&a);
            let d002 = a.findings.iter().find(|f| f.code == Rule::D002).unwrap();
            if variant == 4 {
                assert!(
                    d002.fix.contains("100") && d002.fix.contains("120"),
                    "{}",
                    d002.fix
                );
            }
            if matches!(variant, 1 | 2 | 3 | 5) {
                assert!(
                    !d002.fix.contains("kill -TERM --"),
                    "variant {variant}: {}",
                    d002.fix
                );
            }
        }
        assert!(kinds >= 6);

        // D008: an unrelated server and the child that inherited its socket; both are named.
        let procs = vec![
            proc_(1, 0, "/sbin/init", &[]),
            with_sockets(proc_(400, 1, "python -m http.server 29500", &[]), &[7]),
            with_sockets(
                proc_(401, 400, "python -m http.server 29500 --worker", &[]),
                &[7],
            ),
            proc_(300, 1, "python other.py", RANK0),
        ];
        let s = snap(procs, vec![sock("LISTEN", 29500, 0, 7)]);
        let a = Analysis::new(&s, &[]);
        let d008 = a
            .findings
            .iter()
            .find(|f| f.code == Rule::D008)
            .expect("D008");
        assert!(d008.fix.contains("`kill 400 401`"), "{}", d008.fix);
        assert!(assert_kills_safe(&a) >= 1);
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
        assert_eq!(codes(&s, &[]), vec![Rule::D003]);

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
        assert_eq!(
            f.iter().map(|f| f.code).collect::<Vec<_>>(),
            vec![Rule::D003]
        );
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
        assert_eq!(codes(&s, &[]), vec![Rule::D004]);
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
        // The mechanism (D005) and the holder outside every job with its two fixes (D008).
        assert_eq!(codes(&s, &[]), vec![Rule::D005, Rule::D008]);
        // With a listener on the port the same local port is an accepted connection.
        let (p, so) = lightning(&[]);
        assert!(codes(&snap(p, so), &[]).is_empty());
    }

    /// The Lightning fixture on another port / world size.
    fn lightning_on(port: u16, world: &str, rank0_env: bool) -> Snapshot {
        let (mut p, mut s) = lightning(&[]);
        for q in &mut p {
            if q.env.contains_key("MASTER_PORT") {
                q.env.insert("MASTER_PORT".into(), port.to_string());
                q.env.insert("WORLD_SIZE".into(), world.into());
            }
            if q.pid == 100 && rank0_env {
                q.env.insert("MASTER_PORT".into(), port.to_string());
            }
        }
        for so in &mut s {
            if so.local_port == 29500 {
                so.local_port = port;
            }
            if so.remote_port == 29500 {
                so.remote_port = port;
            }
        }
        snap(p, s)
    }

    #[test]
    fn d004_only_for_a_port_the_user_chose() {
        // Lightning picked 45000 itself (rank 0's exec environment has no MASTER_PORT).
        let s = lightning_on(45000, "2", false);
        assert!(codes(&s, &[]).is_empty(), "{:?}", codes(&s, &[]));
        // The user exported MASTER_PORT=45000 before starting rank 0.
        let s = lightning_on(45000, "2", true);
        assert_eq!(codes(&s, &[]), vec![Rule::D004]);
        // Asked with --port: chosen by the user too.
        let s = lightning_on(45000, "2", false);
        assert_eq!(codes(&s, &[45000]), vec![Rule::D004]);
    }

    #[test]
    fn d009_names_the_missing_rank_after_a_while_only() {
        let mut s = lightning_on(29500, "3", false);
        let f = Analysis::new(&s, &[]).findings;
        assert_eq!(
            f.iter().map(|f| f.code).collect::<Vec<_>>(),
            vec![Rule::D009]
        );
        assert!(
            f[0].message.contains("2 of 3 ranks connected"),
            "{}",
            f[0].message
        );
        assert!(f[0].message.contains("missing: rank 2"), "{}", f[0].message);
        assert!(f[0].fix.contains("WORLD_SIZE=3"), "{}", f[0].fix);
        // Just started: not a hang yet.
        for p in &mut s.processes {
            p.start_time = s.taken_at - 3.0;
        }
        assert!(codes(&s, &[]).is_empty());
    }

    #[test]
    fn jobs_by_rendezvous_join_only_the_same_rendezvous() {
        let env = |rank: &'static str, world: &'static str| -> Vec<(&str, &str)> {
            vec![
                ("MASTER_ADDR", "127.0.0.1"),
                ("MASTER_PORT", "29500"),
                ("RANK", rank),
                ("WORLD_SIZE", world),
            ]
        };
        let procs = vec![
            proc_(50, 1, "bash", &[]),
            proc_(200, 50, "python launch.py", &[]),
            with_sockets(
                proc_(201, 200, "python train.py", &env("0", "3")),
                &[1, 2, 5],
            ),
            with_sockets(proc_(202, 200, "python train.py", &env("1", "3")), &[3]),
            // Another shell's rank 1 of a world of 2 on the same port: another rendezvous.
            with_sockets(proc_(301, 50, "python other.py", &env("1", "2")), &[4]),
        ];
        let sockets = vec![
            sock("LISTEN", 29500, 0, 1),
            sock("ESTABLISHED", 40001, 29500, 2),
            sock("ESTABLISHED", 40002, 29500, 3),
            sock("ESTABLISHED", 40003, 29500, 4),
            sock("ESTABLISHED", 29500, 40001, 5),
        ];
        let s = snap(procs, sockets);
        let a = Analysis::new(&s, &[]);
        assert_eq!(a.jobs.len(), 2, "{:?}", a.jobs);
        assert_eq!(a.job(201).unwrap().id, a.job(202).unwrap().id);
        assert_ne!(a.job(201).unwrap().id, a.job(301).unwrap().id);
        assert_eq!(a.job(201).unwrap().root, 201, "rooted where the store is");
        // The other world's rank wants a port another job holds: D002, genuinely.
        assert!(
            a.findings.iter().any(|f| f.code == Rule::D002),
            "{:?}",
            a.findings
        );
    }

    #[test]
    fn d007_time_wait_only() {
        let s = snap(
            vec![proc_(50, 1, "bash", &[])],
            vec![sock("TIME_WAIT", 29500, 40000, 0)],
        );
        let f = Analysis::new(&s, &[]).findings;
        assert_eq!(
            f.iter().map(|f| f.code).collect::<Vec<_>>(),
            vec![Rule::D007]
        );
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
