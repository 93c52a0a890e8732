//! M006: the reports come from different jobs (SLURM job ids or torchrun run ids differ).

use std::collections::BTreeSet;

use super::{Context, MergeFinding, finding};
use crate::model::finding::{Rule, Severity};

const SLURM_FIX: &str = "merge the reports of one job only: take them inside the job's allocation \
                         (`srun --jobid=$SLURM_JOB_ID --ntasks-per-node=1 doctor report -o report-%N.yaml`)";
const RUN_FIX: &str = "if these nodes are one job, start torchrun with the same --rdzv-id on every node (it becomes \
                       TORCHELASTIC_RUN_ID); otherwise merge the reports of one job only";

pub fn check(c: &Context) -> Vec<MergeFinding> {
    let mut out = Vec::new();
    for (what, ids, fix) in [
        ("SLURM job ids", &c.slurm, SLURM_FIX),
        ("run ids (TORCHELASTIC_RUN_ID)", &c.runs, RUN_FIX),
    ] {
        if ids.len() > 1 {
            let detail: Vec<String> = ids
                .iter()
                .map(|(id, names)| format!("{id} on {}", names.join(", ")))
                .collect();
            out.push(finding(
                Rule::M006,
                Severity::Warning,
                format!(
                    "the reports come from different jobs: {what} {}",
                    detail.join("; ")
                ),
                ids.values()
                    .flatten()
                    .cloned()
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect(),
                vec![],
                fix.into(),
            ));
        }
    }
    out
}
