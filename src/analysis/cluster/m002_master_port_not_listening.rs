//! M002: nothing listens on MASTER_PORT on the master node while ranks run.

use super::{Context, MergeFinding, finding};
use crate::model::finding::{Rule, Severity};

pub fn check(c: &Context) -> Vec<MergeFinding> {
    let (Some(i), Some(port)) = (c.master_node, c.master_port()) else {
        return Vec::new();
    };
    let n = &c.nodes[i];
    let have_ranks = c.nodes.iter().any(|n| !n.ranks.is_empty());
    if !c.listeners(n, port).is_empty() || !have_ranks {
        return Vec::new();
    }
    vec![finding(
        Rule::M002,
        Severity::Warning,
        format!(
            "nothing listens on MASTER_PORT {port} on the master node {}: rank 0's store \
             (or torchrun's agent store) is not up, so ranks on other nodes wait and time out",
            n.name
        ),
        vec![n.name.clone()],
        vec![port],
        format!(
            "start rank 0 (NODE_RANK=0) on {} first, check it did not crash (its log), and \
             that nothing there refused the bind; `doctor ports --port {port}` on that node",
            n.name
        ),
    )]
}

#[cfg(test)]
mod tests {
    use crate::model::finding::Rule;

    /// On the reports recorded on two nodes, the master node shows no listener on the master port.
    #[test]
    fn on_recorded_reports() {
        let mut docs = super::super::recorded_reports();
        docs[0]["ports"]["holders"] = serde_json::json!([]);
        let found = super::super::check_reports(&docs, super::check);
        assert!(!found.is_empty(), "no M002");
        assert!(found.iter().all(|f| f.code == Rule::M002));
        insta::assert_json_snapshot!(found);
    }
}
