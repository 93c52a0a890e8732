//! `doctor tree`: the process trees of training jobs, with roles, ranks and rendezvous sockets.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::Serialize;

use crate::analysis::holders::holders;
use crate::analysis::tree::{TreeNode, build_node, job_tops, tree_root};
use crate::analysis::{Analysis, Job};
use crate::cmd::{parse_port, with_analysis};
use crate::error::user_error;
use crate::model::envelope::{Envelope, Kind};
use crate::model::finding::Finding;
use crate::model::snapshot::Unreadable;
use crate::render::findings::render_findings;
use crate::render::tree::draw;
use crate::render::{self, Format, Paint, paint, permission_note};

#[derive(clap::Args)]
pub struct TreeArgs {
    /// The tree around this process
    #[arg(long, conflicts_with = "port")]
    pid: Option<i32>,
    /// The trees around the holders of this port
    #[arg(long, value_parser = parse_port)]
    port: Option<u16>,
    /// table (default), json or yaml
    #[arg(long, value_enum, alias = "output-format")]
    format: Option<Format>,
    #[command(flatten)]
    out: super::OutputArg,
    /// Analyse a snapshot written by `doctor snapshot` instead of this machine
    #[arg(long, value_name = "FILE")]
    from: Option<PathBuf>,
}

#[derive(Serialize)]
struct TreeDoc<'a> {
    #[serde(flatten)]
    envelope: Envelope,
    jobs: &'a [Job],
    trees: Vec<TreeNode>,
    findings: &'a [Finding],
    unreadable: &'a [Unreadable],
}

pub fn tree(args: TreeArgs) -> anyhow::Result<i32> {
    args.out.check()?;
    let extra: Vec<u16> = args.port.into_iter().collect();
    with_analysis(&args.from, &extra, |a| draw_trees(&args, a))?
}

/// The trees or document of `doctor tree` for analysis `a`; the exit code.
fn draw_trees(args: &TreeArgs, a: &Analysis) -> anyhow::Result<i32> {
    let snap = a.snap;
    let (roots, focus): (Vec<i32>, Option<BTreeSet<i32>>) = if let Some(pid) = args.pid {
        if a.process(pid).is_none() {
            return Err(user_error(
                format!("no process with pid {pid}"),
                if args.from.is_some() {
                    "the snapshot has no such pid"
                } else {
                    "it may have exited; `doctor tree` shows the training jobs"
                },
            ));
        }
        let root = tree_root(a, pid);
        let mut focus: BTreeSet<i32> = a.ancestors(pid).into_iter().collect();
        focus.extend(a.subtree(pid));
        (vec![root], Some(focus))
    } else if let Some(port) = args.port {
        // What `doctor ports --port` shows: the holders, and the processes its findings about
        // the port name (an orphaned rank that no longer holds a socket there).
        let mut holder_pids: BTreeSet<i32> = holders(a, false)
            .into_iter()
            .filter(|h| h.port == port)
            .filter_map(|h| h.pid)
            .collect();
        holder_pids.extend(
            a.findings
                .iter()
                .filter(|f| f.ports.contains(&port))
                .flat_map(|f| f.pids.iter().copied())
                .filter(|&p| a.process(p).is_some()),
        );
        if holder_pids.is_empty() && args.out.format(args.format, Format::Table) == Format::Table {
            args.out
                .emit(&format!("nobody visible holds port {port}\n"))?;
            permission_note(snap);
            return Ok(0);
        }
        let mut roots: Vec<i32> = holder_pids.iter().map(|&p| tree_root(a, p)).collect();
        roots.sort_unstable();
        roots.dedup();
        (roots, None)
    } else {
        (a.jobs.iter().flat_map(|j| job_tops(a, j)).collect(), None)
    };
    let keep = |pid: i32| {
        focus.as_ref().is_none_or(|f| f.contains(&pid))
            || focus
                .as_ref()
                .is_some_and(|_| args.pid.is_some_and(|p| a.ancestors(pid).contains(&p)))
    };
    let trees: Vec<TreeNode> = roots.iter().map(|&r| build_node(a, r, &keep, 0)).collect();
    // Around a pid or a port, only the findings about what is drawn.
    let mut shown = BTreeSet::new();
    trees.iter().for_each(|t| t.collect_pids(&mut shown));
    let findings: Vec<Finding> = if args.pid.is_some() || args.port.is_some() {
        a.findings
            .iter()
            .filter(|f| f.pids.iter().any(|p| shown.contains(p)))
            .cloned()
            .collect()
    } else {
        a.findings.clone()
    };
    let format = args.out.format(args.format, Format::Table);
    if format == Format::Table && args.pid.is_none() {
        // What the findings cannot say (D009 without a world size), said rather than left out.
        for n in a.unjudged_rendezvous(&args.port.into_iter().collect::<Vec<_>>()) {
            render::note(&render::escape_control(&n));
        }
    }
    let text = match format {
        Format::Table => tree_text(a, &trees, &roots, &findings, args.out.color()),
        f => render::document(
            &TreeDoc {
                envelope: Envelope::new(Kind::Tree, &snap.host.hostname, snap.taken_at),
                jobs: &a.jobs,
                trees,
                findings: &findings,
                unreadable: &snap.unreadable,
            },
            f,
        )?,
    };
    args.out.finish(&text, snap, &findings)
}

/// The trees as text: each job's heading, the tree, D001's ancestry, then the findings.
fn tree_text(
    a: &Analysis,
    trees: &[TreeNode],
    roots: &[i32],
    findings: &[Finding],
    color: bool,
) -> String {
    let mut s = String::new();
    if trees.is_empty() {
        s.push_str("no training jobs found (no launcher, rank or process with MASTER_PORT/RANK in its environment)\n");
    }
    let mut headed = BTreeSet::new();
    for (t, root) in trees.iter().zip(roots) {
        // One heading per job, above its first tree (a job may span several trees).
        if let Some(job) = a.job(*root).filter(|j| headed.insert(j.id.clone())) {
            let port = job
                .rendezvous
                .master_port
                .map(|p| format!(" on port {p}"))
                .unwrap_or_default();
            let gone = if job.launcher_gone {
                " (launcher gone)"
            } else {
                ""
            };
            s.push_str(&format!(
                "{}{port}{gone}\n",
                paint(&job.id, Paint::Bold, color)
            ));
        }
        draw(t, "", true, true, &mut s, color);
        s.push('\n');
    }
    for f in findings.iter().filter(|f| !f.path.is_empty()) {
        let chain: Vec<String> = f
            .path
            .iter()
            .map(|&p| format!("{p} {}", a.role(p).name()))
            .collect();
        s.push_str(&format!("{} path: {}\n", f.code, chain.join(" -> ")));
    }
    s.push_str(&render_findings(findings, color));
    s
}
