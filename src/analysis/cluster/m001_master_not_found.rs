//! M001: MASTER_ADDR names no node of the reports, or is a loopback address while ranks run on
//! several nodes.

use super::{Context, MergeFinding, finding, is_loopback};
use crate::model::finding::{Rule, Severity};

pub fn check(c: &Context) -> Vec<MergeFinding> {
    let Some((addr, port)) = &c.master else {
        return Vec::new();
    };
    let nodes = c.nodes;
    if is_loopback(addr) {
        let with_ranks: Vec<String> = nodes
            .iter()
            .filter(|n| !n.ranks.is_empty())
            .map(|n| n.name.clone())
            .collect();
        // Machines, not reports: two reports of one machine (a restarted job) are one node.
        let nodes_with_ranks = c
            .machines_of((0..nodes.len()).filter(|&i| !nodes[i].ranks.is_empty()))
            .len();
        if nodes_with_ranks <= 1 {
            return Vec::new();
        }
        return vec![finding(
            Rule::M001,
            Severity::Error,
            format!(
                "MASTER_ADDR is {addr}, a loopback address, but ranks run on {nodes_with_ranks} nodes: \
                 each node meets only itself"
            ),
            with_ranks,
            vec![*port],
            "set MASTER_ADDR to the first node's host name or address, the same on every node"
                .into(),
        )];
    }
    if c.master_node.is_some() {
        return Vec::new();
    }
    vec![finding(
        Rule::M001,
        Severity::Warning,
        format!(
            "MASTER_ADDR {addr} is not the host name or an address of any of the {} reports",
            nodes.len()
        ),
        vec![],
        vec![*port],
        format!(
            "add the report of the node that has {addr} (`doctor report` there), or fix MASTER_ADDR: \
             it must name the node where rank 0 runs, reachable from every node"
        ),
    )]
}

#[cfg(test)]
mod tests {
    use crate::model::finding::Rule;

    /// On the reports recorded on two nodes, MASTER_ADDR names no node of the reports.
    #[test]
    fn on_recorded_reports() {
        let mut docs = super::super::recorded_reports();
        for d in &mut docs {
            super::super::each_identity(d, &|i| i["master_addr"] = "10.99.0.9".into());
            super::super::set_env(d, "MASTER_ADDR", "10.99.0.9");
        }
        let found = super::super::check_reports(&docs, super::check);
        assert!(!found.is_empty(), "no M001");
        assert!(found.iter().all(|f| f.code == Rule::M001));
        insta::assert_json_snapshot!(found);
    }
}
