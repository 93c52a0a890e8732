//! M009: the same node twice (same host name and the same non-loopback addresses).

use std::collections::BTreeMap;

use super::{Context, MergeFinding, finding, machine_key};
use crate::model::finding::{Rule, Severity};

pub fn check(c: &Context) -> Vec<MergeFinding> {
    let mut seen: BTreeMap<(String, Vec<String>), Vec<String>> = BTreeMap::new();
    for n in c.nodes {
        seen.entry(machine_key(n)).or_default().push(n.name.clone());
    }
    seen.iter()
        .filter(|(_, names)| names.len() > 1)
        .map(|((host, _), names)| {
            finding(
                Rule::M009,
                Severity::Warning,
                format!("{} reports come from the same node {host}", names.len()),
                names.clone(),
                vec![],
                "take one report per node (`srun --ntasks-per-node=1 ...`) and merge only the latest of each node".into(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::model::finding::Rule;

    /// On the reports recorded on two nodes, the first node reported twice.
    #[test]
    fn on_recorded_reports() {
        let mut docs = super::super::recorded_reports();
        docs[1] = docs[0].clone();
        let found = super::super::check_reports(&docs, super::check);
        assert!(!found.is_empty(), "no M009");
        assert!(found.iter().all(|f| f.code == Rule::M009));
        insta::assert_json_snapshot!(found);
    }
}
