//! M003: MASTER_PORT is held by a process of another job (a leftover of an earlier job, another
//! program) on some node. On the master node it is an error and the cluster-level verdict: the
//! launchers and ranks of the other nodes that wait on the master (connected to the master's
//! address and port, or still connecting) are tied to that holder, named with the node, pid,
//! command and job of the holder, and the fix names the node where it applies. On other nodes it
//! is a warning.

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
        // One finding per holding process (a listener on 0.0.0.0 and on :: is one holder).
        let mut seen = BTreeSet::new();
        for h in c.listeners(n, port) {
            if seen.insert(h["pid"].to_string()) {
                out.extend(foreign_holder(c, i, n, h, port));
            }
        }
    }
    out
}

/// The job a holder row belongs to, as the ids its identity or job record carries, and whether
/// that job's launcher is gone.
struct HolderJob {
    port: Option<u16>,
    run: Option<String>,
    slurm: Option<String>,
    launcher_gone: bool,
    pids: Vec<i64>,
}

fn holder_job(n: &Node, h: &Value) -> HolderJob {
    let job = h["job"]
        .as_str()
        .and_then(|id| n.jobs.iter().find(|j| j["id"] == id));
    let pick = |k: &str| str_of(&h["identity"][k]).or_else(|| job.and_then(|j| str_of(&j[k])));
    HolderJob {
        port: h["identity"]["master_port"]
            .as_u64()
            .or_else(|| job.and_then(|j| j["master_port"].as_u64()))
            .and_then(|p| u16::try_from(p).ok()),
        run: pick("run_id"),
        slurm: pick("slurm_job_id"),
        launcher_gone: job.is_some_and(|j| j["launcher_gone"] == true),
        pids: job
            .and_then(|j| j["pids"].as_array())
            .map(|a| a.iter().filter_map(Value::as_i64).collect())
            .unwrap_or_default(),
    }
}

/// Whether the holder is this job's own: a launcher of the node whose endpoint is the job's, or a
/// process of the job's ranks, or a rank on the port with no id of another job.
fn is_ours(c: &Context, n: &Node, h: &Value, hj: &HolderJob, port: u16) -> bool {
    let job = h["job"].as_str();
    let launcher_ours = n.launchers.iter().any(|l| {
        job.is_some() && l.job.as_deref() == job && l.endpoint.as_ref() == c.master.as_ref()
    });
    let rank_ours = n
        .ranks
        .iter()
        .any(|r| job.is_some() && r.job.as_deref() == job && c.in_job(r));
    let conflicts = |mine: &Option<String>, set: &BTreeSet<String>| {
        mine.as_ref()
            .is_some_and(|m| !set.is_empty() && !set.contains(m))
    };
    launcher_ours
        || rank_ours
        || hj.port == Some(port)
            && !conflicts(&hj.run, &c.job_runs)
            && !conflicts(&hj.run, &c.agent_runs)
            && !conflicts(&hj.slurm, &c.job_slurm)
}

/// The launchers and ranks of other nodes waiting on the master: connected to (or connecting to)
/// the master's address and `port`. One entry per node: `node-b (agent pid 4 connected)`.
fn waiting(c: &Context, master: usize, port: u16) -> Vec<(String, String)> {
    let m = &c.nodes[master];
    let mut targets: BTreeSet<String> = m.addresses.iter().cloned().collect();
    if let Some((a, _)) = &c.master {
        targets.insert(a.clone());
    }
    let mut out = Vec::new();
    for (i, n) in c.nodes.iter().enumerate() {
        if i == master {
            continue;
        }
        let mut who: Vec<String> = Vec::new();
        for h in &n.holders {
            let Some((addr, p)) = h["remote"].as_str().and_then(|r| r.rsplit_once(':')) else {
                continue;
            };
            let addr = addr.trim_start_matches('[').trim_end_matches(']');
            let state = h["state"].as_str().unwrap_or("");
            if p != port.to_string()
                || !targets.contains(addr)
                || !matches!(state, "ESTABLISHED" | "SYN_SENT")
                || h["pid"].is_null()
            {
                continue;
            }
            let role = match h["role"].as_str() {
                Some("launcher") => "agent",
                Some(r) => r,
                None => "process",
            };
            let how = if state == "SYN_SENT" {
                "connecting"
            } else {
                "connected"
            };
            let w = format!("{role} pid {} {how}", h["pid"]);
            if !who.contains(&w) {
                who.push(w);
            }
        }
        if !who.is_empty() {
            out.push((n.name.clone(), who.join(", ")));
        }
    }
    out
}

/// How to stop the holder where the report was taken: its process group when the group is
/// visible in that PID namespace (neither 0, a leader outside it, nor 1, its init), else its pids.
fn stop_holder(h: &Value, hj: &HolderJob) -> String {
    let pid = h["pid"].as_i64().unwrap_or(0);
    let pgid = h["pgid"].as_i64().unwrap_or(0);
    if pgid > 1 && pgid == pid {
        return format!("kill -TERM -- -{pgid}");
    }
    let mut pids: Vec<i64> = if hj.launcher_gone && hj.pids.contains(&pid) {
        hj.pids.clone()
    } else {
        vec![pid]
    };
    pids.retain(|p| *p > 1 || *p == pid);
    pids.sort_unstable();
    pids.dedup();
    let list: Vec<String> = pids.iter().map(i64::to_string).collect();
    format!("kill -TERM {}", list.join(" "))
}

/// The finding for one listener of node `i`, unless it is the job's own.
fn foreign_holder(c: &Context, i: usize, n: &Node, h: &Value, port: u16) -> Option<MergeFinding> {
    let hj = holder_job(n, h);
    if h["pid"].is_null() || is_ours(c, n, h, &hj, port) {
        return None;
    }
    let who = format!(
        "pid {} ({}) `{}`",
        h["pid"],
        h["role"].as_str().unwrap_or("?"),
        h["command"].as_str().unwrap_or("")
    );
    let ids = [
        hj.run.clone().map(|r| format!("run id {r}")),
        hj.slurm.clone().map(|s| format!("SLURM job {s}")),
        hj.launcher_gone.then(|| "its launcher gone".to_string()),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>();
    let belongs = if h["role"] == "rank" || h["role"] == "launcher" {
        if hj.launcher_gone {
            format!("a leftover of another job ({})", ids.join(", "))
        } else if ids.is_empty() {
            "a process of another job".to_string()
        } else {
            format!("of another job ({})", ids.join(", "))
        }
    } else {
        "a program that is no training job".to_string()
    };
    let is_master = c.master_node == Some(i);
    let stop = stop_holder(h, &hj);
    let pidns = match &n.pid_namespace {
        Some(ns) if !ns.init => format!(
            " (pids of {}'s PID namespace pid:[{}], not host pids: run it there, e.g. `srun -w {} ...` or `kubectl exec`)",
            n.name, ns.inode, n.hostname
        ),
        _ => String::new(),
    };
    if !is_master {
        return Some(finding(
            Rule::M003,
            Severity::Warning,
            format!(
                "on {}, port {port} is held by {who}, {belongs}; harmless while {} is the master, \
                 a failure as soon as this node hosts rank 0",
                n.name,
                c.master_node
                    .map_or("another node".to_string(), |m| c.nodes[m].name.clone())
            ),
            vec![n.name.clone()],
            vec![port],
            format!(
                "on {}: `{stop}`{pidns}, or give this job another MASTER_PORT (one per job: e.g. \
                 MASTER_PORT=$((20000 + SLURM_JOB_ID % 10000)), below the ephemeral range)",
                n.name
            ),
        ));
    }
    let waits = waiting(c, i, port);
    let mut nodes = vec![n.name.clone()];
    nodes.extend(waits.iter().map(|(name, _)| name.clone()));
    let addr = c.master.as_ref().map_or(String::new(), |(a, _)| a.clone());
    let waiting_text = if waits.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = waits.iter().map(|(n, w)| format!("{n} ({w})")).collect();
        format!(
            "; {} wait{} on {addr}:{port}, talking to that holder instead of this job's store",
            list.join(", "),
            if waits.len() == 1 { "s" } else { "" }
        )
    };
    Some(finding(
        Rule::M003,
        Severity::Error,
        format!(
            "on the master node {}, MASTER_PORT {port} is held by {who}, {belongs}: this job's rank 0 \
             (or torchrun's agent) cannot bind it (EADDRINUSE){waiting_text}; the job cannot start \
             until the port is free",
            n.name
        ),
        nodes,
        vec![port],
        format!(
            "on {}: `{stop}`{pidns}, then start the job again on every node; or give this job \
             another MASTER_PORT, the same on every node (e.g. MASTER_PORT=$((20000 + SLURM_JOB_ID % 10000)))",
            n.name
        ),
    ))
}

#[cfg(test)]
mod tests {
    use crate::model::finding::Rule;

    /// On the reports recorded on two nodes, as recorded: the master port is held by another job on one node.
    #[test]
    fn on_recorded_reports() {
        let docs = super::super::recorded_reports();
        let found = super::super::check_reports(&docs, super::check);
        assert!(!found.is_empty(), "no M003");
        assert!(found.iter().all(|f| f.code == Rule::M003));
        insta::assert_json_snapshot!(found);
    }
}
