//! M008: nodes whose ranks all use another rendezvous than the job's. Several jobs on one node
//! are that node's business (D002), not a disagreement between nodes.

use super::{Context, MergeFinding, finding};
use crate::model::finding::{Rule, Severity};

pub fn check(c: &Context) -> Vec<MergeFinding> {
    let Some((ma, mp)) = &c.master else {
        return Vec::new();
    };
    let disagree: Vec<(String, String)> = c
        .nodes
        .iter()
        .zip(&c.node_pairs)
        .filter(|(_, ps)| !ps.is_empty() && !ps.contains(&(ma.clone(), *mp)))
        .map(|(n, ps)| {
            let list: Vec<String> = ps.iter().map(|(a, p)| format!("{a}:{p}")).collect();
            (n.name.clone(), list.join(", "))
        })
        .collect();
    if disagree.is_empty() {
        return Vec::new();
    }
    let agree: Vec<String> = c
        .pairs
        .get(&(ma.clone(), *mp))
        .map(|(names, _)| names.iter().cloned().collect())
        .unwrap_or_default();
    let detail: Vec<String> = disagree
        .iter()
        .map(|(n, list)| format!("{n} uses {list}"))
        .collect();
    let mut names: Vec<String> = agree.clone();
    names.extend(disagree.iter().map(|(n, _)| n.clone()));
    names.sort();
    names.dedup();
    vec![finding(
        Rule::M008,
        Severity::Error,
        format!(
            "the nodes do not agree on the rendezvous: the job's is {ma}:{mp} (on {}), but {}",
            agree.join(", "),
            detail.join("; ")
        ),
        names,
        vec![*mp],
        "give every node the same MASTER_ADDR and MASTER_PORT (torchrun: the same --rdzv-endpoint / \
         --master-addr --master-port; SLURM: derive them once from the first host of $SLURM_JOB_NODELIST)"
            .into(),
    )]
}

#[cfg(test)]
mod tests {
    use crate::model::finding::Rule;

    /// On the reports recorded on two nodes, the second node's ranks use another master port.
    #[test]
    fn on_recorded_reports() {
        let mut docs = super::super::recorded_reports();
        super::super::each_identity(&mut docs[1], &|i| i["master_port"] = 29999.into());
        let found = super::super::check_reports(&docs, super::check);
        assert!(!found.is_empty(), "no M008");
        assert!(found.iter().all(|f| f.code == Rule::M008));
        insta::assert_json_snapshot!(found);
    }
}
