//! D003: a rendezvous port held by an orphaned, zombie or uninterruptible process; and the ranks
//! of a job whose launcher is gone (killed with SIGKILL, crashed), whether or not one of them
//! still holds the port: the launcher's death is the cause.

use std::collections::BTreeSet;

use super::*;
use crate::model::finding::{Finding, Rule};

pub fn check(a: &Analysis) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    orphaned_jobs(a, &mut out, &mut seen);
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
                     find what it waits on in /proc/{pid}/stack; meanwhile launch on {}",
                    a.port_advice.text()
                )
            } else {
                format!(
                    "kill the leftover tree with {} and make sure its parent reaps children (in containers run with \
                     `--init` / tini as PID 1); or launch the new job on {}",
                    kill_group_hint(a, pid),
                    a.port_advice.text()
                )
            };
            out.push(Finding::new(
                Rule::D003,
                message,
                vec![pid],
                vec![s.local_port],
                fix,
            ));
        }
    }
    out
}

/// One finding per job whose launcher is gone: every live rank named, the port said held or not.
fn orphaned_jobs(a: &Analysis, out: &mut Vec<Finding>, seen: &mut BTreeSet<(i32, u16)>) {
    for job in a.jobs.iter().filter(|j| j.launcher_gone) {
        let ranks: Vec<i32> = job
            .pids
            .iter()
            .copied()
            .filter(|&p| a.role(p) == Role::Rank && a.process(p).is_some_and(|q| !q.is_zombie()))
            .collect();
        if ranks.is_empty() {
            continue;
        }
        let adopter = a.process(job.root).map_or(1, |r| r.ppid);
        // The ranks of a dead spawn/fork launcher (`Analysis::orphan_groups`), one left alone.
        let group = a.orphan_groups.iter().find(|g| g.contains(&job.root));
        let lone = group.is_some_and(|g| g.len() == 1);
        let agent_store = ranks.iter().any(|&r| {
            a.process(r)
                .and_then(|p| p.env("TORCHELASTIC_USE_AGENT_STORE"))
                .is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
        });
        let holding: Vec<(i32, &str)> = job
            .rendezvous
            .master_port
            .map(|port| {
                job.pids
                    .iter()
                    .flat_map(|&p| {
                        a.sockets_of(p)
                            .into_iter()
                            .filter(move |s| {
                                s.proto == Proto::Tcp
                                    && s.local_port == port
                                    && s.state != "TIME_WAIT"
                            })
                            .map(move |s| (p, s.state.as_str()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut holders: Vec<i32> = holding.iter().map(|(p, _)| *p).collect();
        holders.sort_unstable();
        holders.dedup();
        let who = ranks
            .iter()
            .map(|&r| describe(a, r))
            .collect::<Vec<_>>()
            .join(", ");
        let port_text = match job.rendezvous.master_port {
            Some(port) if !holders.is_empty() => {
                let listen = holding.iter().any(|(_, st)| *st == "LISTEN");
                for &h in &holders {
                    seen.insert((h, port));
                }
                format!(
                    "; {} {} rendezvous port {port} ({}), so a new job on {port} fails with EADDRINUSE",
                    if holders.len() == 1 { "pid" } else { "pids" },
                    if holders.len() == 1 {
                        format!("{} still holds", holders[0])
                    } else {
                        format!("{} still hold", join_spaced(&holders))
                    },
                    if listen { "LISTEN" } else { holding[0].1 }
                )
            }
            Some(port) => {
                let one = ranks.len() == 1;
                let subject = if one {
                    format!("it holds no socket on rendezvous port {port} any more")
                } else {
                    format!("none of them holds rendezvous port {port} any more")
                };
                let (they, wait, their) = if one {
                    ("it", "waits", "its")
                } else {
                    ("they", "wait", "their")
                };
                // torchrun's workers use the agent's store (TORCHELASTIC_USE_AGENT_STORE): it
                // died with the agent. Other stores were a rank's (rank 0 of mp.spawn, of a plain
                // launcher; Lightning's rank 0, which is also the launcher).
                if agent_store {
                    format!(
                        "; {subject} (the store died with the launcher): {they} {wait} on a store that is gone until \
                         {their} timeout"
                    )
                } else {
                    format!(
                        "; {subject}: the store {they} joined is gone (a connection to it was closed by the other \
                         end, or none is left), and {they} {wait} until {their} timeout"
                    )
                }
            }
            None => String::new(),
        };
        // A spawn or fork child alone: its parent is gone and no rank of its rendezvous is with it.
        let alone = if lone {
            "; it is alone: no other child of its dead parent shares its rendezvous (the other ranks have exited)"
        } else {
            ""
        };
        let message = format!(
            "{} lost its launcher (killed or crashed): its ranks were re-parented to pid {adopter} and live on: {who}{alone}{port_text}",
            job.id
        );
        let mut pids = ranks.clone();
        pids.extend(&holders);
        pids.sort_unstable();
        pids.dedup();
        let mut fix = format!(
            "these are leftover ranks of a job whose launcher died: stop them with {}",
            kill_hint(a, &pids)
        );
        if !holders.is_empty() {
            fix.push_str(&format!(
                "; or launch the new job on {} (torchrun --master-port {})",
                a.port_advice.text(),
                a.port_advice.number()
            ));
        }
        out.push(Finding::new(
            Rule::D003,
            message,
            pids,
            job.rendezvous.master_port.into_iter().collect(),
            fix,
        ));
    }
}

#[cfg(test)]
mod tests {
    use crate::model::finding::Rule;

    /// On the snapshot recorded from its real situation: only D003, and what it says.
    #[test]
    fn on_its_recorded_situation() {
        let found = super::super::on_recorded("d003", 29613, super::check);
        assert!(!found.is_empty(), "no D003 on its own situation");
        assert!(found.iter().all(|f| f.code == Rule::D003));
        insta::assert_json_snapshot!(found);
    }
}
