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

#[cfg(test)]
mod tests {
    use crate::model::finding::Rule;

    /// On the reports recorded on two nodes, the second node's ranks belong to another SLURM job and run.
    #[test]
    fn on_recorded_reports() {
        let mut docs = super::super::recorded_reports();
        super::super::each_identity(&mut docs[1], &|i| {
            i["slurm_job_id"] = "9999".into();
            i["run_id"] = "job-99".into();
        });
        super::super::set_env(&mut docs[1], "SLURM_JOB_ID", "9999");
        super::super::set_env(&mut docs[1], "TORCHELASTIC_RUN_ID", "job-99");
        let found = super::super::check_reports(&docs, super::check);
        assert!(!found.is_empty(), "no M006");
        assert!(found.iter().all(|f| f.code == Rule::M006));
        insta::assert_json_snapshot!(found);
    }
}
