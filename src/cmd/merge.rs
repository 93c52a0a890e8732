//! `doctor merge report-*.yaml`: the cluster view of one job across nodes, from the reports
//! `doctor report` wrote on each node. Arguments, reading the files, the exit code; the findings
//! M001-M010 are [`crate::analysis::cluster`] (docs/findings/M0xx.md), the table
//! [`crate::render::merge`].

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::analysis::cluster::{self, Merged, Node, parse};
use crate::error::user_error;
use crate::model::envelope::Kind;
use crate::model::finding::Severity;
use crate::render::merge::merge_table;
use crate::render::{self, Format};

#[derive(clap::Args)]
#[command(
    after_help = "Take the reports with `srun --ntasks-per-node=1 doctor report -o DIR/report-%N.yaml` \
(or pdsh / kubectl exec on each node), then `doctor merge DIR` (every *.yaml, *.yml, *.json in it) \
or `doctor merge DIR/report-*.yaml`.\n\
Exit codes: 0 nothing found, 1 a finding at warning level or worse (merged or on a node), 2 bad input."
)]
pub struct MergeArgs {
    /// Reports written by `doctor report -o FILE` on each node (YAML or JSON), or directories
    /// holding them (every *.yaml, *.yml and *.json file; other documents there are skipped)
    #[arg(required = true, value_name = "REPORT|DIR")]
    files: Vec<PathBuf>,
    /// table (default), yaml or json (or from the -o extension)
    #[arg(long, value_enum, alias = "output-format")]
    format: Option<Format>,
    #[command(flatten)]
    out: super::OutputArg,
    /// Flag reports taken more than this many minutes apart (M007)
    #[arg(long, value_name = "MINUTES", default_value_t = 10.0, value_parser = super::parse_minutes)]
    max_spread: f64,
}

/// Read and check one report: errors are for people (`error:` + `hint:`, exit 2).
pub fn load(path: &Path) -> anyhow::Result<Value> {
    let shown = path.display();
    let text = crate::model::load::read_document(path).map_err(|e| {
        user_error(
            format!("cannot read {shown}: {e}"),
            "pass the files written by `doctor report -o report-NODE.yaml` on each node",
        )
    })?;
    parse(&text).map_err(|(msg, hint)| user_error(format!("{shown}: {msg}"), hint))
}

/// Every report of a directory (one per node, as `srun ... doctor report -o DIR/report-%N.yaml`
/// leaves them). Other doctor documents there (a merge, a snapshot) and YAML that is no doctor
/// document are skipped with a note; a report that is truncated or unreadable stops the merge.
fn load_dir(dir: &Path) -> anyhow::Result<Vec<(String, Value)>> {
    let shown = dir.display();
    let files = crate::model::load::documents_in(dir).map_err(|e| {
        user_error(
            format!("cannot read the directory {shown}: {e}"),
            "pass a directory you can read, or the report files themselves",
        )
    })?;
    let mut nodes = Vec::new();
    for path in &files {
        let text = crate::model::load::read_document(path).map_err(|e| {
            user_error(
                format!("cannot read {}: {e}", path.display()),
                "remove it from the directory, or pass the report files one by one",
            )
        })?;
        match parse(&text) {
            Ok(doc) => nodes.push((path.display().to_string(), doc)),
            Err((msg, _)) if is_other_document(&text) => {
                render::note(&format!("note: skipped {}: {msg}", path.display()))
            }
            Err((msg, hint)) => {
                return Err(user_error(format!("{}: {msg}", path.display()), hint));
            }
        }
    }
    if nodes.is_empty() {
        return Err(user_error(
            format!("{shown} holds no doctor report (*.yaml, *.yml or *.json)"),
            "write one report per node into it: `srun --ntasks-per-node=1 doctor report -o \
             DIR/report-%N.yaml`, or `doctor report -o DIR/report-$(hostname).yaml` on each node",
        ));
    }
    Ok(nodes)
}

/// A complete document that is not a report: another doctor kind (a merge, a snapshot with its
/// `processes`), or YAML/JSON of another program (no `schema_version`).
fn is_other_document(text: &str) -> bool {
    let doc: Option<Value> = if text.trim_start().starts_with('{') {
        serde_json::from_str(text).ok()
    } else {
        serde_yaml::from_str(text).ok()
    };
    let Some(doc) = doc else { return false };
    match doc.get("kind").and_then(Value::as_str) {
        Some(kind) => kind != crate::model::report::REPORT_KIND,
        None => {
            !doc.is_object()
                || doc.get("schema_version").is_none()
                || doc.get("processes").is_some()
        }
    }
}

fn severity_of(v: &Value) -> Severity {
    Severity::parse(v["severity"].as_str().unwrap_or(""))
}

pub fn merge(args: MergeArgs) -> anyhow::Result<i32> {
    if args.max_spread.is_nan() || args.max_spread < 0.0 {
        return Err(user_error(
            format!(
                "--max-spread {} is not a number of minutes",
                args.max_spread
            ),
            "e.g. --max-spread 10",
        ));
    }
    args.out.check()?;
    // The same rule as every command: a pipe gets what a terminal gets.
    let format = args.out.format(args.format, Format::Table);
    let mut docs = Vec::new();
    for path in &args.files {
        if path.is_dir() {
            docs.extend(load_dir(path)?);
        } else {
            docs.push((path.display().to_string(), load(path)?));
        }
    }
    if let Some((copy, first)) = cluster::same_report(&docs) {
        let what = if copy == first {
            format!("{copy} is named twice")
        } else {
            format!("{copy} is the same report as {first}")
        };
        return Err(user_error(
            what,
            "pass each node's report once (`doctor merge DIR` with one report per node)",
        ));
    }
    let mut nodes: Vec<Node> = docs
        .iter()
        .map(|(name, doc)| cluster::node(name, doc))
        .collect();
    let merged = cluster::analyse(&mut nodes, args.max_spread);
    let (doc, exit_1) = document(&nodes, &merged);
    let mut doc = doc;
    render::findings::normalize_findings(&mut doc);
    if !render::settings().show_secrets {
        render::redact::redact(&mut doc);
    }
    let text = match format {
        Format::Table => {
            render::escape_document(&mut doc);
            merge_table(&doc, args.out.color())
        }
        f => render::document(&doc, f)?,
    };
    args.out.emit(&text)?;
    Ok(i32::from(exit_1))
}

/// The merge document (`kind: doctor-merge`) and whether it exits 1.
fn document(nodes: &[Node], merged: &Merged) -> (Value, bool) {
    let node_findings: usize = nodes
        .iter()
        .flat_map(|n| n.findings.iter())
        .filter(|f| severity_of(f).is_problem())
        .count();
    let exit_1 = node_findings > 0 || merged.findings.iter().any(|f| f.severity.is_problem());
    let count = |sev: Severity| {
        merged.findings.iter().filter(|f| f.severity == sev).count()
            + nodes
                .iter()
                .flat_map(|n| n.findings.iter())
                .filter(|f| severity_of(f) == sev)
                .count()
    };
    let master_index = merged.master_node.clone();
    let doc = super::envelope(Kind::Merge).wrap(json!({
        "summary": {
            "nodes": nodes.len(),
            "exit_code": i32::from(exit_1),
            "errors": count(Severity::Error),
            "warnings": count(Severity::Warning),
            "info": count(Severity::Info),
        },
        "rendezvous": {
            "master_addr": merged.master_addr,
            "master_port": merged.master_port,
            "master_node": merged.master_node,
            "master_port_holders": merged.master_holders,
            "world_size": merged.world_size,
            "ranks_visible": merged.ranks_visible,
            "slurm_job_ids": merged.slurm_job_ids,
            "run_ids": merged.run_ids,
        },
        "findings": merged.findings,
        "nodes": nodes.iter().enumerate().map(|(i, n)| json!({
            "name": n.name,
            "file": n.file,
            "hostname": n.hostname,
            "master": master_index.as_deref() == Some(n.name.as_str()),
            "addresses": n.addresses,
            "taken_at": crate::model::time::rfc3339(n.taken_at),
            "pid_namespace": n.pid_namespace,
            "agents": n.launchers,
            "ranks": n.ranks.iter().enumerate().map(|(k, r)| {
                let mut v = json!(r);
                v["of_this_job"] = json!(merged.in_job.get(i).and_then(|x| x.get(k)).copied().unwrap_or(true));
                v
            }).collect::<Vec<_>>(),
            "versions": n.versions,
            "findings": n.findings,
        })).collect::<Vec<_>>(),
    }));
    (doc, exit_1)
}
