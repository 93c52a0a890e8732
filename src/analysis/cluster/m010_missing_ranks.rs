//! M010: fewer ranks of the job than WORLD_SIZE in the reports.

use super::{Context, MergeFinding, finding};
use crate::model::finding::{Rule, Severity};

pub fn check(c: &Context) -> Vec<MergeFinding> {
    let ranks_visible = c.ranks_visible;
    match c.world_size {
        Some(w) if ranks_visible > 0 && (ranks_visible as i64) < w => vec![finding(
            Rule::M010,
            Severity::Info,
            format!(
                "WORLD_SIZE is {w} but the reports show {ranks_visible} ranks (Lightning's rank 0 shows only once it has started children)"
            ),
            vec![],
            c.master_port().into_iter().collect(),
            "add the reports of the missing nodes, or check why their ranks did not start (scheduler log)".into(),
        )],
        _ => Vec::new(),
    }
}
