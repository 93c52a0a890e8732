//! M010: fewer ranks of the job than WORLD_SIZE in the reports, or fewer nodes with the job's
//! torchrun agent than its --nnodes (a node never started: the others wait for it).

use super::{Context, MergeFinding, finding};
use crate::model::finding::{Rule, Severity};

/// The largest --nnodes of the job's agents (`2`, or `1:3` for elastic: its maximum).
fn nnodes(c: &Context) -> Option<usize> {
    c.nodes
        .iter()
        .flat_map(|n| &n.launchers)
        .filter(|l| l.endpoint.is_some() && l.endpoint == c.master)
        .filter_map(|l| {
            l.nnodes
                .as_deref()?
                .rsplit(':')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .max()
}

/// Nodes whose ranks of the job run without their agent (killed, crashed) while other nodes
/// still have theirs: nothing restarts those ranks or notices their failure.
fn orphans(c: &Context) -> Vec<MergeFinding> {
    let agents_elsewhere = |me: &str| {
        c.nodes
            .iter()
            .any(|n| n.name != me && n.launchers.iter().any(|l| l.endpoint == c.master))
    };
    let mut out = Vec::new();
    for n in c.nodes {
        let orphaned: Vec<String> = n
            .ranks
            .iter()
            .filter(|r| c.in_job(r))
            .filter(|r| {
                n.jobs
                    .iter()
                    .any(|j| j["id"].as_str() == r.job.as_deref() && j["launcher_gone"] == true)
            })
            .map(|r| r.pid.to_string())
            .collect();
        if orphaned.is_empty() || !n.launchers.is_empty() || !agents_elsewhere(&n.name) {
            continue;
        }
        out.push(finding(
            Rule::M010,
            Severity::Warning,
            format!(
                "on {}, the job's ranks (pid {}) run without their torchrun agent (killed or crashed) \
                 while the other nodes' agents still run: nobody restarts them or reports their failure, \
                 and the next rendezvous round waits for {}",
                n.name,
                orphaned.join(", "),
                n.name
            ),
            vec![n.name.clone()],
            c.master_port().into_iter().collect(),
            format!(
                "on {}: `kill -TERM {}` ({}), then restart torchrun there with the same arguments; \
                 check its log or dmesg for why the agent died (OOM killer?)",
                n.name,
                orphaned.join(" "),
                match &n.pid_namespace {
                    Some(ns) if !ns.init => format!(
                        "pids of {}'s PID namespace pid:[{}], not host pids: run it there",
                        n.name, ns.inode
                    ),
                    _ => "pids of its report".to_string(),
                }
            ),
        ));
    }
    out
}

pub fn check(c: &Context) -> Vec<MergeFinding> {
    let orphaned = orphans(c);
    if !orphaned.is_empty() {
        return orphaned;
    }
    if let Some(want) = nnodes(c) {
        // Nodes with a torchrun agent at all: one that looks elsewhere is M008's.
        let with: Vec<String> = c
            .nodes
            .iter()
            .filter(|n| n.launchers.iter().any(|l| l.endpoint.is_some()))
            .map(|n| n.name.clone())
            .collect();
        if with.len() < want {
            // Reports without an agent: the agent exited there (EADDRINUSE, a crash) or never
            // started; nodes without a report may simply not have been asked.
            let without: Vec<String> = c
                .nodes
                .iter()
                .filter(|n| !with.contains(&n.name))
                .map(|n| n.name.clone())
                .collect();
            let unreported = want.saturating_sub(c.nodes.len());
            let mut gaps = Vec::new();
            if !without.is_empty() {
                gaps.push(format!(
                    "no agent in the report of {} (it exited, e.g. on EADDRINUSE, or never started)",
                    without.join(", ")
                ));
            }
            if unreported > 0 {
                gaps.push(format!(
                    "{unreported} node{} without a report",
                    if unreported == 1 { "" } else { "s" }
                ));
            }
            let mut nodes = with.clone();
            nodes.extend(without);
            nodes.sort();
            return vec![finding(
                Rule::M010,
                Severity::Warning,
                format!(
                    "torchrun expects {want} nodes (--nnodes) but only {} run its agent ({}): {}; the \
                     agents wait at the rendezvous until every node has joined",
                    with.len(),
                    with.join(", "),
                    gaps.join("; ")
                ),
                nodes,
                c.master_port().into_iter().collect(),
                "start torchrun on every node of the job (scheduler log: did each task start? \
                 `srun -N` and --nnodes must agree); add the reports of the nodes not merged; on a node \
                 whose agent exited, its log says why"
                    .into(),
            )];
        }
    }
    let ranks_visible = c.ranks_visible;
    match c.world_size {
        Some(w) if ranks_visible > 0 && (ranks_visible as i64) < w => vec![finding(
            Rule::M010,
            Severity::Info,
            format!(
                "WORLD_SIZE is {w} but the reports show {ranks_visible} {} (Lightning's rank 0 shows only once it has started children)",
                if ranks_visible == 1 { "rank" } else { "ranks" }
            ),
            vec![],
            c.master_port().into_iter().collect(),
            "add the reports of the missing nodes, or check why their ranks did not start (scheduler log)".into(),
        )],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use crate::model::finding::Rule;

    /// On the reports recorded on two nodes, a world size of 8, fewer ranks seen.
    #[test]
    fn on_recorded_reports() {
        let mut docs = super::super::recorded_reports();
        for d in &mut docs {
            super::super::each_identity(d, &|i| i["world_size"] = 8.into());
        }
        let found = super::super::check_reports(&docs, super::check);
        assert!(!found.is_empty(), "no M010");
        assert!(found.iter().all(|f| f.code == Rule::M010));
        insta::assert_json_snapshot!(found);
    }
}
