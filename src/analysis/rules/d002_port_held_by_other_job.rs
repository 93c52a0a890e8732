//! D002: the rendezvous port of one job is held by a process outside that job.

use super::*;
use crate::model::finding::{Finding, Rule};

pub fn check(a: &Analysis) -> Vec<Finding> {
    let mut out = Vec::new();
    for (j, job) in a.jobs.iter().enumerate() {
        let Some(port) = job.rendezvous.master_port else {
            continue;
        };
        for holder in listeners(a, port) {
            if a.job_of.get(&holder) == Some(&j) {
                continue;
            }
            // A holder in no job is D008's; one report per (job, holder) here.
            let Some(o) = a.job(holder) else {
                continue;
            };
            let whose = format!(
                "{} of another job ({}, root pid {})",
                describe(a, holder),
                o.id,
                o.root
            );
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
            // Never a kill of the holder's group while its job is alive and whole (it may be a
            // healthy job that simply came first): only what is left of the job that wants the
            // port is stopped, and the holder only when its launcher is gone (D003 says so too).
            let stop = if o.launcher_gone {
                format!(
                    "; the holder is a leftover (its launcher is gone): stop it with {}",
                    kill_group_hint(a, holder)
                )
            } else {
                // Those of the job that wants the port and sit connected to the other job's store
                // (a c10d agent that joined it as a client, ranks of a rank 0 that failed to bind).
                let stuck: Vec<i32> = ranks
                    .iter()
                    .copied()
                    .filter(|&p| {
                        a.sockets_of(p)
                            .iter()
                            .any(|s| s.state == "ESTABLISHED" && s.remote_port == port)
                    })
                    .collect();
                if stuck.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; first stop what is left of {}, waiting in the other job's store: {}",
                        job.id,
                        kill_hint(a, &ranks)
                    )
                }
            };
            let fix = format!(
                "give each job its own port: start {} again on {} (torchrun --master-port {}){stop}",
                job.id,
                a.port_advice.text(),
                a.port_advice.number(),
            );
            out.push(Finding::new(Rule::D002, message, pids, vec![port], fix));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::model::finding::Rule;

    /// On the snapshot recorded from its real situation: only D002, and what it says.
    #[test]
    fn on_its_recorded_situation() {
        let found = super::super::on_recorded("d002", 29612, super::check);
        assert!(!found.is_empty(), "no D002 on its own situation");
        assert!(found.iter().all(|f| f.code == Rule::D002));
        insta::assert_json_snapshot!(found);
    }
}
