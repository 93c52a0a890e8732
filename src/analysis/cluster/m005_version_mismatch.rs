//! M005: versions that must match across nodes differ. The CUDA and NCCL builds are compared
//! among the nodes that have torch; pytorch_lightning only when lightning agrees.

use std::collections::BTreeMap;

use super::{Context, MergeFinding, Node, Versions, finding};
use crate::model::finding::{Rule, Severity};

type Get = fn(&Versions) -> Option<String>;

/// What is compared: the name, how to read it, its severity, and whether only nodes with torch
/// take part.
const CHECKS: [(&str, Get, Severity, bool); 5] = [
    ("torch", |v| v.torch.clone(), Severity::Error, false),
    (
        "torch CUDA build",
        |v| Some(v.torch_cuda.clone().unwrap_or_else(|| "cpu".into())),
        Severity::Error,
        true,
    ),
    ("NCCL", |v| v.nccl.clone(), Severity::Error, true),
    (
        "lightning",
        |v| v.lightning.clone(),
        Severity::Warning,
        false,
    ),
    (
        "pytorch_lightning",
        |v| v.pytorch_lightning.clone(),
        Severity::Warning,
        false,
    ),
];

pub fn check(c: &Context) -> Vec<MergeFinding> {
    let has_torch = |n: &Node| n.versions.torch.is_some();
    let mut out = Vec::new();
    let mut lightning_differs = false;
    for (what, get, sev, torch_nodes_only) in CHECKS {
        if what == "pytorch_lightning" && lightning_differs {
            continue;
        }
        let mut values: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for n in c.nodes.iter().filter(|n| !torch_nodes_only || has_torch(n)) {
            let v = get(&n.versions).unwrap_or_else(|| "not installed".into());
            values.entry(v).or_default().push(n.name.clone());
        }
        if values.len() > 1 && values.keys().any(|k| k != "not installed") {
            lightning_differs |= what == "lightning";
            let detail: Vec<String> = values
                .iter()
                .map(|(v, names)| format!("{v} on {}", names.join(", ")))
                .collect();
            out.push(finding(
                Rule::M005,
                sev,
                format!("{what} differs between nodes: {}", detail.join("; ")),
                values.values().flatten().cloned().collect(),
                vec![],
                format!(
                    "install the same {what} on every node (one container image or one lock file for the job, \
                     packages from the same index); mixed versions hang or fail in the first collective"
                ),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::model::finding::Rule;

    /// On the reports recorded on two nodes, as recorded: torch and CUDA versions differ.
    #[test]
    fn on_recorded_reports() {
        let docs = super::super::recorded_reports();
        let found = super::super::check_reports(&docs, super::check);
        assert!(!found.is_empty(), "no M005");
        assert!(found.iter().all(|f| f.code == Rule::M005));
        insta::assert_json_snapshot!(found);
    }
}
