//! Process trees of training jobs, as plain data: roles, identities, rendezvous sockets and the
//! findings marked on each node.

use std::collections::{BTreeSet, HashSet};

use serde::Serialize;

use crate::analysis::{Analysis, Identity};
use crate::model::finding::Rule;

#[derive(Serialize)]
pub struct TreeNode {
    pub pid: i32,
    pub role: &'static str,
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<Identity>,
    pub command: String,
    pub sockets: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<Rule>,
    pub children: Vec<TreeNode>,
}

fn rendezvous_sockets(a: &Analysis, pid: i32) -> Vec<String> {
    a.sockets_of(pid)
        .into_iter()
        .filter(|s| {
            a.rendezvous_ports.contains(&s.local_port)
                || a.rendezvous_ports.contains(&s.remote_port)
        })
        .map(|s| {
            if s.state == "LISTEN" {
                format!("LISTEN :{}", s.local_port)
            } else if a.rendezvous_ports.contains(&s.remote_port) {
                format!("{} ->:{}", s.state, s.remote_port)
            } else {
                format!("{} :{}", s.state, s.local_port)
            }
        })
        .collect()
}

/// How deep a drawn tree goes (real trees are a few levels deep).
const MAX_DRAWN_DEPTH: usize = 64;

/// The tree below `pid`, each process at most once (a parent cycle in a hand-edited snapshot is
/// drawn once around), cut at [`MAX_DRAWN_DEPTH`] levels.
pub fn build_node(a: &Analysis, pid: i32, keep: &dyn Fn(i32) -> bool, depth: usize) -> TreeNode {
    let mut drawn = HashSet::from([pid]);
    build(a, pid, keep, depth, &mut drawn)
}

fn build(
    a: &Analysis,
    pid: i32,
    keep: &dyn Fn(i32) -> bool,
    depth: usize,
    drawn: &mut HashSet<i32>,
) -> TreeNode {
    let p = a.process(pid);
    let mut children: Vec<i32> = a
        .children(pid)
        .iter()
        .copied()
        .filter(|&c| keep(c) && drawn.insert(c))
        .collect();
    // In order of birth (pids wrap around, start times do not).
    children.sort_by(|x, y| {
        let start = |pid: &i32| a.process(*pid).map_or(0.0, |p| p.start_time);
        start(x).total_cmp(&start(y)).then(x.cmp(y))
    });
    TreeNode {
        pid,
        role: a.role(pid).name(),
        state: p.map(|p| p.state.clone()).unwrap_or_default(),
        identity: a.identity(pid).cloned(),
        command: p.map(|p| p.command()).unwrap_or_default(),
        sockets: rendezvous_sockets(a, pid),
        findings: a
            .findings
            .iter()
            .filter(|f| f.pids.contains(&pid))
            .map(|f| f.code)
            .collect(),
        children: if depth >= MAX_DRAWN_DEPTH {
            Vec::new()
        } else {
            children
                .into_iter()
                .map(|c| build(a, c, keep, depth + 1, drawn))
                .collect()
        },
    }
}

impl TreeNode {
    pub fn collect_pids(&self, out: &mut BTreeSet<i32>) {
        out.insert(self.pid);
        self.children.iter().for_each(|c| c.collect_pids(out));
    }
}

/// The top of the tree `pid` is drawn in: the top-most process of its job among `pid` and its
/// ancestors (a job joined by rendezvous may span several trees: ranks that are siblings under
/// a plain launcher, ranks started by `srun`), or its top-most ancestor below init.
pub fn tree_root(a: &Analysis, pid: i32) -> i32 {
    if let Some(&j) = a.job_of.get(&pid) {
        return std::iter::once(pid)
            .chain(a.ancestors(pid))
            .rfind(|p| a.job_of.get(p) == Some(&j))
            .unwrap_or(pid);
    }
    a.ancestors(pid)
        .into_iter()
        .rfind(|&p| p > 1 && a.process(p).is_some_and(|q| q.ppid > 1))
        .unwrap_or(pid)
}

/// The tops of the trees a job spans: its processes whose parent is not in the job, root first.
pub fn job_tops(a: &Analysis, job: &crate::analysis::Job) -> Vec<i32> {
    let mut tops: Vec<i32> = job
        .pids
        .iter()
        .copied()
        .filter(|&p| {
            a.process(p)
                .is_none_or(|q| a.job_of.get(&q.ppid) != a.job_of.get(&p))
        })
        .collect();
    tops.sort_by_key(|&p| (p != job.root, p));
    tops
}
