//! M004: the same global rank (or NODE_RANK + LOCAL_RANK) runs on several nodes. Within one
//! node, D006 already says it.

use std::collections::{BTreeMap, BTreeSet};

use super::{Context, MergeFinding, finding};
use crate::model::finding::{Rule, Severity};

type ByRank = BTreeMap<i64, BTreeSet<String>>;
type ByLocal = BTreeMap<(i64, i64), BTreeSet<String>>;

/// The nodes of each global rank and of each (NODE_RANK, LOCAL_RANK) of the job.
fn ranks_per_node(c: &Context) -> (ByRank, ByLocal) {
    let mut by_rank = ByRank::new();
    let mut by_local = ByLocal::new();
    for n in c.nodes {
        for r in n.ranks.iter().filter(|r| c.in_job(r)) {
            if let Some(g) = r.rank {
                by_rank.entry(g).or_default().insert(n.name.clone());
            }
            // NODE_RANK + LOCAL_RANK: always for ranks without RANK (Lightning), and for the
            // others when they state their node rank.
            if let Some(l) = r.local_rank
                && (r.rank.is_none() || r.node_rank.is_some())
            {
                by_local
                    .entry((r.node_rank.unwrap_or(0), l))
                    .or_default()
                    .insert(n.name.clone());
            }
        }
    }
    (by_rank, by_local)
}

pub fn check(c: &Context) -> Vec<MergeFinding> {
    let (by_rank, by_local) = ranks_per_node(c);
    let mut out = Vec::new();
    for (g, names) in by_rank.iter().filter(|(_, n)| n.len() > 1) {
        out.push(finding(
            Rule::M004,
            Severity::Error,
            format!("RANK {g} runs on {} nodes: {}", names.len(), names.iter().cloned().collect::<Vec<_>>().join(", ")),
            names.iter().cloned().collect(),
            c.master_port().into_iter().collect(),
            "give each node its own NODE_RANK (torchrun --node-rank=$SLURM_NODEID, or --rdzv-backend=c10d, which assigns \
             them) so global ranks do not repeat; with SLURM use one launcher per node (--ntasks-per-node=1)"
                .into(),
        ));
    }
    for ((node_rank, l), names) in by_local.iter().filter(|(_, n)| n.len() > 1) {
        out.push(finding(
            Rule::M004,
            Severity::Error,
            format!(
                "NODE_RANK {node_rank} LOCAL_RANK {l} runs on {} nodes: {}",
                names.len(),
                names.iter().cloned().collect::<Vec<_>>().join(", ")
            ),
            names.iter().cloned().collect(),
            c.master_port().into_iter().collect(),
            "set NODE_RANK differently on every node (0 on the master node, 1.. on the others), e.g. \
             NODE_RANK=$SLURM_NODEID; Lightning reads NODE_RANK, torchrun takes --node-rank"
                .into(),
        ));
    }
    out
}
