//! D006: two live ranks of one job claim the same rank.

use std::collections::BTreeMap;

use super::*;
use crate::model::finding::{Finding, Rule};

pub fn check(a: &Analysis) -> Vec<Finding> {
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
                Rule::D006,
                message,
                pids,
                job.rendezvous.master_port.into_iter().collect(),
                fix.to_string(),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::model::finding::Rule;

    /// On the snapshot recorded from its real situation: only D006, and what it says.
    #[test]
    fn on_its_recorded_situation() {
        let found = super::super::on_recorded("d006", 29616, super::check);
        assert!(!found.is_empty(), "no D006 on its own situation");
        assert!(found.iter().all(|f| f.code == Rule::D006));
        insta::assert_json_snapshot!(found);
    }
}
