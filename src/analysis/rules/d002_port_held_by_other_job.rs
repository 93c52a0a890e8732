//! D002: the rendezvous port of one job is held by a process outside that job.

use super::*;
use crate::model::finding::Finding;

pub fn check(a: &Analysis) -> Vec<Finding> {
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
