//! M003: MASTER_PORT is held by a process of another job on some node (an error on the master
//! node, a warning on the others).

use std::collections::BTreeSet;

use serde_json::Value;

use super::reports::str_of;
use super::{Context, MergeFinding, Node, finding};
use crate::model::finding::{Rule, Severity};

pub fn check(c: &Context) -> Vec<MergeFinding> {
    let Some(port) = c.master_port() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, n) in c.nodes.iter().enumerate() {
        for h in c.listeners(n, port) {
            out.extend(foreign_holder(c, i, n, h, port));
        }
    }
    out
}

/// The job a holder row belongs to, as the ids its identity or job record carries.
fn holder_ids(n: &Node, h: &Value) -> (Option<u16>, Option<String>, Option<String>) {
    let job = h["job"]
        .as_str()
        .and_then(|id| n.jobs.iter().find(|j| j["id"] == id));
    let pick = |k: &str| str_of(&h["identity"][k]).or_else(|| job.and_then(|j| str_of(&j[k])));
    let port = h["identity"]["master_port"]
        .as_u64()
        .or_else(|| job.and_then(|j| j["master_port"].as_u64()))
        .and_then(|p| u16::try_from(p).ok());
    (port, pick("run_id"), pick("slurm_job_id"))
}

/// The finding for one listener of node `i`, unless it is the job's own.
fn foreign_holder(c: &Context, i: usize, n: &Node, h: &Value, port: u16) -> Option<MergeFinding> {
    let (hport, run, slurm) = holder_ids(n, h);
    let conflicts = |mine: &Option<String>, set: &BTreeSet<String>| {
        mine.as_ref()
            .is_some_and(|m| !set.is_empty() && !set.contains(m))
    };
    let ours =
        hport == Some(port) && !conflicts(&run, &c.job_runs) && !conflicts(&slurm, &c.job_slurm);
    if ours || h["pid"].is_null() {
        return None;
    }
    let who = format!(
        "pid {} ({}) {}",
        h["pid"],
        h["role"].as_str().unwrap_or("?"),
        h["command"].as_str().unwrap_or("")
    );
    let ids = [
        run.map(|r| format!("run id {r}")),
        slurm.map(|s| format!("SLURM job {s}")),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>();
    let belongs = if ids.is_empty() {
        "not a process of this job".to_string()
    } else {
        format!("of another job ({})", ids.join(", "))
    };
    let is_master = c.master_node == Some(i);
    Some(finding(
        Rule::M003,
        if is_master {
            Severity::Error
        } else {
            Severity::Warning
        },
        if is_master {
            format!(
                "on the master node {}, MASTER_PORT {port} is held by {who}, {belongs}: rank 0 cannot \
                 bind it (EADDRINUSE) or the ranks join that job's store",
                n.name
            )
        } else {
            format!(
                "on {}, port {port} is held by {who}, {belongs}; harmless while {} is the master, \
                 a failure as soon as this node hosts rank 0",
                n.name,
                c.master_node
                    .map_or("another node".to_string(), |m| c.nodes[m].name.clone())
            )
        },
        vec![n.name.clone()],
        vec![port],
        format!(
            "on {}: end that job, or give this job another MASTER_PORT (one per job: e.g. \
             MASTER_PORT=$((20000 + SLURM_JOB_ID % 10000)), below the ephemeral range); \
             `doctor ports --port {port}` there shows the holder's tree",
            n.name
        ),
    ))
}
