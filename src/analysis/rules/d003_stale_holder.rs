//! D003: a rendezvous port held by an orphaned, zombie or uninterruptible process.

use std::collections::BTreeSet;

use super::*;
use crate::model::finding::{Finding, Rule};

pub fn check(a: &Analysis) -> Vec<Finding> {
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
                     find what it waits on in /proc/{pid}/stack; meanwhile launch on {}",
                    a.port_advice.text()
                )
            } else if p.is_zombie() || parent_zombie {
                format!(
                    "kill the leftover tree with {} and make sure its parent reaps children (in containers run with \
                     `--init` / tini as PID 1); or launch the new job on {}",
                    kill_group_hint(a, pid),
                    a.port_advice.text()
                )
            } else {
                format!(
                    "these are leftover ranks of a finished job: stop them with {}; or launch the new job on {} \
                     (torchrun --master-port {})",
                    kill_group_hint(a, pid),
                    a.port_advice.text(),
                    a.port_advice.number()
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
