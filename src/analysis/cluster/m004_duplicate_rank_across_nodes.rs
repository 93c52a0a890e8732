//! M004: the same global rank (or NODE_RANK + LOCAL_RANK) runs on several nodes. Within one
//! node, D006 already says it.

use std::collections::{BTreeMap, BTreeSet};

use super::{Context, MergeFinding, finding};
use crate::model::finding::{Rule, Severity};

/// Ranks are keyed by their run id too: two jobs on one rendezvous address and port (a leftover
/// of an earlier run and the new one) are separate jobs, not a duplicate rank. The nodes are
/// machines (`Context::machine`, each named by its first report): two reports of one machine (a
/// job restarted between them) show its ranks twice, on one node; M009 says the reports repeat.
type ByRank = BTreeMap<(Option<String>, i64), BTreeMap<usize, String>>;
type ByLocal = BTreeMap<(Option<String>, i64, i64), BTreeMap<usize, String>>;

/// The nodes of each global rank and of each (NODE_RANK, LOCAL_RANK) of the job.
fn ranks_per_node(c: &Context) -> (ByRank, ByLocal) {
    let mut by_rank = ByRank::new();
    let mut by_local = ByLocal::new();
    for (i, n) in c.nodes.iter().enumerate() {
        let machine = c.machine[i];
        let name = || c.nodes[machine].name.clone();
        for r in n.ranks.iter().filter(|r| c.in_job(r)) {
            if let Some(g) = r.identity.rank {
                by_rank
                    .entry((r.identity.run_id.clone(), g))
                    .or_default()
                    .entry(machine)
                    .or_insert_with(name);
            }
            // NODE_RANK + LOCAL_RANK: always for ranks without RANK (Lightning), and for the
            // others when they state their node rank.
            if let Some(l) = r.identity.local_rank
                && (r.identity.rank.is_none() || r.identity.node_rank.is_some())
            {
                by_local
                    .entry((
                        r.identity.run_id.clone(),
                        r.identity.node_rank.unwrap_or(0),
                        l,
                    ))
                    .or_default()
                    .entry(machine)
                    .or_insert_with(name);
            }
        }
    }
    (by_rank, by_local)
}

/// torchrun agents of the job (static rendezvous) started with the same --node-rank on several
/// nodes: each takes itself for that node, and the job never assembles.
fn launcher_node_ranks(c: &Context) -> Vec<MergeFinding> {
    let mut by_node_rank: BTreeMap<i64, BTreeSet<String>> = BTreeMap::new();
    for n in c.nodes {
        for l in &n.launchers {
            if let (Some(r), true) = (l.node_rank, l.endpoint.is_some() && l.endpoint == c.master) {
                by_node_rank.entry(r).or_default().insert(n.name.clone());
            }
        }
    }
    by_node_rank
        .into_iter()
        .filter(|(_, names)| names.len() > 1)
        .map(|(r, names)| {
            let list: Vec<String> = names.iter().cloned().collect();
            finding(
                Rule::M004,
                Severity::Error,
                format!(
                    "torchrun runs with --node-rank {r} on {} nodes: {}; each hosts or joins the store as \
                     node {r}, so the job waits for nodes that never come",
                    list.len(),
                    list.join(", ")
                ),
                list,
                c.master_port().into_iter().collect(),
                "give each node its own --node-rank (0 on the master node, 1.. on the others: \
                 --node-rank=$SLURM_NODEID), or use --rdzv-backend=c10d, which assigns them"
                    .into(),
            )
        })
        .collect()
}

pub fn check(c: &Context) -> Vec<MergeFinding> {
    let (by_rank, by_local) = ranks_per_node(c);
    let mut out = launcher_node_ranks(c);
    for ((_, g), names) in by_rank.iter().filter(|(_, n)| n.len() > 1) {
        out.push(finding(
            Rule::M004,
            Severity::Error,
            format!("RANK {g} runs on {} nodes: {}", names.len(), names.values().cloned().collect::<Vec<_>>().join(", ")),
            names.values().cloned().collect(),
            c.master_port().into_iter().collect(),
            "give each node its own NODE_RANK (torchrun --node-rank=$SLURM_NODEID, or --rdzv-backend=c10d, which assigns \
             them) so global ranks do not repeat; with SLURM use one launcher per node (--ntasks-per-node=1)"
                .into(),
        ));
    }
    for ((_, node_rank, l), names) in by_local.iter().filter(|(_, n)| n.len() > 1) {
        out.push(finding(
            Rule::M004,
            Severity::Error,
            format!(
                "NODE_RANK {node_rank} LOCAL_RANK {l} runs on {} nodes: {}",
                names.len(),
                names.values().cloned().collect::<Vec<_>>().join(", ")
            ),
            names.values().cloned().collect(),
            c.master_port().into_iter().collect(),
            "set NODE_RANK differently on every node (0 on the master node, 1.. on the others), e.g. \
             NODE_RANK=$SLURM_NODEID; Lightning reads NODE_RANK, torchrun takes --node-rank"
                .into(),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::model::finding::Rule;

    /// On the reports recorded on two nodes, as recorded: two nodes claim the same global rank.
    #[test]
    fn on_recorded_reports() {
        let docs = super::super::recorded_reports();
        let found = super::super::check_reports(&docs, super::check);
        assert!(!found.is_empty(), "no M004");
        assert!(found.iter().all(|f| f.code == Rule::M004));
        insta::assert_json_snapshot!(found);
    }
}
