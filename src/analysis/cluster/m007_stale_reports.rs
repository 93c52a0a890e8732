//! M007: the reports were taken further apart than `--max-spread` minutes.

use super::{Context, MergeFinding, finding};
use crate::model::finding::{Rule, Severity};
use crate::model::time::{age, utc};

pub fn check(c: &Context) -> Vec<MergeFinding> {
    let nodes = c.nodes;
    let max_spread_minutes = c.max_spread_minutes;
    let times: Vec<f64> = nodes
        .iter()
        .map(|n| n.taken_at)
        .filter(|t| *t > 0.0)
        .collect();
    if times.len() <= 1 {
        return Vec::new();
    }
    let lo = times.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = times.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if hi - lo <= max_spread_minutes * 60.0 {
        return Vec::new();
    }
    let name_at = |t: f64| {
        nodes
            .iter()
            .find(|n| n.taken_at == t)
            .map(|n| n.name.clone())
            .unwrap_or_default()
    };
    let (oldest, newest) = (name_at(lo), name_at(hi));
    vec![finding(
        Rule::M007,
        Severity::Warning,
        format!(
            "the reports were taken {} apart ({oldest} at {}, {newest} at {}), more than {max_spread_minutes} minutes: \
             they may describe different moments of the job",
            if hi - lo < 60.0 {
                format!("{:.1}s", hi - lo)
            } else {
                age(hi - lo)
            },
            utc(lo),
            utc(hi)
        ),
        vec![oldest, newest],
        vec![],
        "take all reports at once (`srun --ntasks-per-node=1 doctor report -o report-%N.yaml` or `pdsh -w NODES \
         doctor report -o ...`) while the job is in the state you want to show"
            .into(),
    )]
}

#[cfg(test)]
mod tests {
    use crate::model::finding::Rule;

    /// On the reports recorded on two nodes, the second report taken two hours after the first.
    #[test]
    fn on_recorded_reports() {
        let mut docs = super::super::recorded_reports();
        let t = docs[0]["taken_at"].as_f64().unwrap();
        docs[1]["taken_at"] = (t + 7200.0).into();
        let found = super::super::check_reports(&docs, super::check);
        assert!(!found.is_empty(), "no M007");
        assert!(found.iter().all(|f| f.code == Rule::M007));
        insta::assert_json_snapshot!(found);
    }
}
