//! `doctor merge report-*.yaml`: the cluster view of one job across nodes, from the reports
//! `doctor report` wrote on each node. Pure functions over the report documents; findings
//! M001-M010 (docs/findings/M0xx.md).

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Value, json};

use crate::error::user_error;
use crate::model::finding::{self, Severity};
use crate::model::report::REPORT_KIND;
use crate::model::snapshot::{READS_SCHEMA_VERSIONS, SCHEMA_VERSION};
use crate::render::findings::render_finding_values;
use crate::render::utc;
use crate::render::value_text as s;
use crate::render::{self, Format, Paint, paint};

#[derive(clap::Args)]
#[command(
    after_help = "Take the reports with `srun --ntasks-per-node=1 doctor report -o report-%N.yaml` \
(or pdsh / torchrun on each node), then `doctor merge report-*.yaml`.\n\
Exit codes: 0 nothing found, 1 a finding at warning level or worse (merged or on a node), 2 bad input."
)]
pub struct MergeArgs {
    /// Reports written by `doctor report -o FILE` on each node (YAML or JSON)
    #[arg(required = true, value_name = "REPORT")]
    files: Vec<PathBuf>,
    /// table (default on a terminal), yaml or json
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Flag reports taken more than this many minutes apart (M007)
    #[arg(long, value_name = "MINUTES", default_value_t = 10.0)]
    max_spread: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct MergeFinding {
    pub code: &'static str,
    pub name: &'static str,
    pub severity: Severity,
    pub message: String,
    pub nodes: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
    pub fix: String,
}

fn finding(
    code: &'static str,
    severity: Severity,
    message: String,
    nodes: Vec<String>,
    ports: Vec<u16>,
    fix: String,
) -> MergeFinding {
    let name = finding::lookup(code).name;
    MergeFinding {
        code,
        name,
        severity,
        message,
        nodes,
        ports,
        fix,
    }
}

/// One rank as a node's report shows it.
#[derive(Clone, Debug, Serialize)]
pub struct Rank {
    pub pid: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rank: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_rank: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_rank: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub world_size: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master_addr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master_port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slurm_job_id: Option<String>,
    pub command: String,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Versions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interpreter: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub python: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub torch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub torch_cuda: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nccl: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lightning: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pytorch_lightning: Option<String>,
}

/// What the merge needs from one report.
#[derive(Clone, Debug)]
pub struct Node {
    pub file: String,
    /// Unique label: the hostname, or `hostname (file)` when two reports share a hostname.
    pub name: String,
    pub hostname: String,
    pub addresses: Vec<String>,
    pub taken_at: f64,
    pub shell: BTreeMap<String, String>,
    pub ranks: Vec<Rank>,
    pub holders: Vec<Value>,
    pub jobs: Vec<Value>,
    pub findings: Vec<Value>,
    pub versions: Versions,
}

fn str_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Read and check one report: errors are for people (`error:` + `hint:`, exit 2).
pub fn load(path: &Path) -> anyhow::Result<Value> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| {
        user_error(
            format!("cannot read {shown}: {e}"),
            "pass the files written by `doctor report -o report-NODE.yaml` on each node",
        )
    })?;
    parse(&text).map_err(|(msg, hint)| user_error(format!("{shown}: {msg}"), hint))
}

/// Parse and validate a report document; `Err((message, hint))` for anything else.
pub fn parse(text: &str) -> Result<Value, (String, String)> {
    if text.trim().is_empty() {
        return Err((
            "the file is empty".into(),
            "copy the report again, or take it again with `doctor report -o FILE`".into(),
        ));
    }
    let parsed: Result<Value, String> = if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| e.to_string())
    } else {
        serde_yaml::from_str(text).map_err(|e| e.to_string())
    };
    let doc = parsed.map_err(|e| {
        (
            format!("not valid YAML or JSON, perhaps truncated ({e})"),
            "copy the complete file again, or take it again with `doctor report -o FILE`".into(),
        )
    })?;
    let not_report = || {
        (
            "not a doctor report (no `kind: doctor-report`)".to_string(),
            "merge takes the files written by `doctor report -o FILE`, not snapshots or other YAML"
                .to_string(),
        )
    };
    if !doc.is_object() {
        return Err(not_report());
    }
    match doc.get("schema_version") {
        None => return Err(not_report()),
        Some(v)
            if v.as_u64()
                .is_some_and(|v| READS_SCHEMA_VERSIONS.contains(&v)) => {}
        Some(v) => {
            return Err((
                format!("schema_version {v} is not supported (this doctor reads {SCHEMA_VERSION})"),
                "take every report with the same doctor version as the one that merges them".into(),
            ));
        }
    }
    if doc.get("kind").and_then(Value::as_str) != Some(REPORT_KIND) {
        return Err(not_report());
    }
    let missing: Vec<&str> = ["host", "python", "environment", "ports", "summary"]
        .into_iter()
        .filter(|k| !doc.get(*k).is_some_and(Value::is_object))
        .collect();
    if !missing.is_empty() || doc.get("complete") != Some(&Value::Bool(true)) {
        let what = if missing.is_empty() {
            "the end marker `complete: true`".to_string()
        } else {
            missing.join(", ")
        };
        return Err((
            format!("the report is truncated or incomplete (missing {what})"),
            "copy the complete file again, or take it again with `doctor report -o FILE`".into(),
        ));
    }
    Ok(doc)
}

/// The interpreter whose versions stand for the node: the first one with torch installed.
fn versions(doc: &Value) -> Versions {
    let interps = doc["python"]["interpreters"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let Some(i) = interps
        .iter()
        .find(|i| i["packages"]["torch"].is_string())
        .or_else(|| interps.iter().find(|i| i["error"].is_null()))
    else {
        return Versions::default();
    };
    Versions {
        interpreter: str_of(&i["path"]),
        python: str_of(&i["python"]),
        torch: str_of(&i["packages"]["torch"]),
        torch_cuda: str_of(&i["torch_cuda"]),
        nccl: str_of(&i["nccl"]),
        lightning: str_of(&i["packages"]["lightning"]),
        pytorch_lightning: str_of(&i["packages"]["pytorch_lightning"]),
    }
}

pub fn node(file: &str, doc: &Value) -> Node {
    let id_int = |p: &Value, k: &str| p["identity"][k].as_i64();
    let ranks = doc["environment"]["training_processes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["role"] == "rank")
        .map(|p| Rank {
            pid: p["pid"].as_i64().unwrap_or(0),
            rank: id_int(p, "rank"),
            local_rank: id_int(p, "local_rank"),
            node_rank: id_int(p, "node_rank"),
            world_size: id_int(p, "world_size"),
            master_addr: str_of(&p["identity"]["master_addr"]),
            master_port: p["identity"]["master_port"]
                .as_u64()
                .and_then(|x| u16::try_from(x).ok()),
            run_id: str_of(&p["identity"]["run_id"]),
            slurm_job_id: str_of(&p["identity"]["slurm_job_id"]),
            command: str_of(&p["command"]).unwrap_or_default(),
        })
        .collect();
    let arr = |v: &Value| v.as_array().cloned().unwrap_or_default();
    let hostname = str_of(&doc["host"]["hostname"]).unwrap_or_else(|| "?".into());
    Node {
        file: file.to_string(),
        name: hostname.clone(),
        hostname,
        addresses: arr(&doc["host"]["addresses"])
            .iter()
            .filter_map(str_of)
            .collect(),
        taken_at: crate::model::time::seconds_of(&doc["taken_at"]).unwrap_or(0.0),
        shell: doc["environment"]["shell"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), str_of(v)?)))
                    .collect()
            })
            .unwrap_or_default(),
        ranks,
        holders: arr(&doc["ports"]["holders"]),
        jobs: arr(&doc["ports"]["jobs"]),
        findings: arr(&doc["ports"]["findings"]),
        versions: versions(doc),
    }
}

fn is_loopback(addr: &str) -> bool {
    addr == "localhost"
        || addr
            .parse::<std::net::IpAddr>()
            .is_ok_and(|a| a.is_loopback())
}

fn short(name: &str) -> &str {
    name.split('.').next().unwrap_or(name)
}

/// Whether MASTER_ADDR names this node (its hostname, short or long, or one of its addresses).
fn names_node(addr: &str, n: &Node) -> bool {
    let addr = addr.trim();
    if addr.is_empty() {
        return false;
    }
    addr == n.hostname
        || short(addr) == short(&n.hostname) && addr.parse::<std::net::IpAddr>().is_err()
        || n.addresses.iter().any(|a| a == addr)
}

/// The whole cluster view.
#[derive(Serialize)]
pub struct Merged {
    pub master_addr: Option<String>,
    pub master_port: Option<u16>,
    pub master_node: Option<String>,
    pub master_holders: Vec<Value>,
    pub slurm_job_ids: BTreeSet<String>,
    pub run_ids: BTreeSet<String>,
    pub world_size: Option<i64>,
    pub ranks_visible: usize,
    pub findings: Vec<MergeFinding>,
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

pub fn analyse(nodes: &mut [Node], max_spread_minutes: f64) -> Merged {
    let mut out = Vec::new();
    // Unique names.
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for n in nodes.iter() {
        *count.entry(n.hostname.clone()).or_default() += 1;
    }
    for n in nodes.iter_mut() {
        if count[&n.hostname] > 1 {
            n.name = format!("{} ({})", n.hostname, n.file);
        }
    }
    // M009: the same node twice (same host name and the same addresses).
    let mut seen: BTreeMap<(String, Vec<String>), Vec<String>> = BTreeMap::new();
    for n in nodes.iter() {
        let mut addrs: Vec<String> = n
            .addresses
            .iter()
            .filter(|a| !is_loopback(a))
            .cloned()
            .collect();
        addrs.sort();
        seen.entry((n.hostname.clone(), addrs))
            .or_default()
            .push(n.name.clone());
    }
    for ((host, _), names) in &seen {
        if names.len() > 1 {
            out.push(finding(
                "M009",
                Severity::Warning,
                format!("{} reports come from the same node {host}", names.len()),
                names.clone(),
                vec![],
                "take one report per node (`srun --ntasks-per-node=1 ...`) and merge only the latest of each node".into(),
            ));
        }
    }

    // The rendezvous of the job: the (MASTER_ADDR, MASTER_PORT) found on the most nodes (ranks'
    // identities and the shell's variables), then the one the shells name (a report taken inside
    // the job's allocation carries the job's variables), then the smallest.
    let mut pairs: BTreeMap<(String, u16), (BTreeSet<String>, usize)> = BTreeMap::new();
    let mut node_pairs: Vec<BTreeSet<(String, u16)>> = Vec::new();
    for n in nodes.iter() {
        let mine: BTreeSet<(String, u16)> = n
            .ranks
            .iter()
            .filter_map(|r| Some((r.master_addr.clone()?, r.master_port?)))
            .collect();
        let shell = match (
            n.shell.get("MASTER_ADDR"),
            n.shell
                .get("MASTER_PORT")
                .and_then(|p| p.trim().parse::<u16>().ok()),
        ) {
            (Some(a), Some(p)) if !a.is_empty() => Some((a.clone(), p)),
            _ => None,
        };
        for pair in mine.iter().chain(shell.iter()) {
            pairs
                .entry(pair.clone())
                .or_default()
                .0
                .insert(n.name.clone());
        }
        if let Some(pair) = shell {
            pairs.entry(pair).or_default().1 += 1;
        }
        node_pairs.push(mine);
    }
    let master = pairs
        .iter()
        .max_by_key(|(pair, (names, votes))| {
            (names.len(), *votes, std::cmp::Reverse((*pair).clone()))
        })
        .map(|(pair, _)| pair.clone());
    // M008: nodes whose ranks all use another rendezvous than the job's. Several jobs on one
    // node are that node's business (D002), not a disagreement between nodes.
    if let Some((ma, mp)) = &master {
        let disagree: Vec<(String, String)> = nodes
            .iter()
            .zip(&node_pairs)
            .filter(|(_, ps)| !ps.is_empty() && !ps.contains(&(ma.clone(), *mp)))
            .map(|(n, ps)| {
                let list: Vec<String> = ps.iter().map(|(a, p)| format!("{a}:{p}")).collect();
                (n.name.clone(), list.join(", "))
            })
            .collect();
        if !disagree.is_empty() {
            let agree: Vec<String> = pairs
                .get(&(ma.clone(), *mp))
                .map(|(names, _)| names.iter().cloned().collect())
                .unwrap_or_default();
            let detail: Vec<String> = disagree
                .iter()
                .map(|(n, list)| format!("{n} uses {list}"))
                .collect();
            let mut names: Vec<String> = agree.clone();
            names.extend(disagree.iter().map(|(n, _)| n.clone()));
            names.sort();
            names.dedup();
            out.push(finding(
                "M008",
                Severity::Error,
                format!(
                    "the nodes do not agree on the rendezvous: the job's is {ma}:{mp} (on {}), but {}",
                    agree.join(", "),
                    detail.join("; ")
                ),
                names,
                vec![*mp],
                "give every node the same MASTER_ADDR and MASTER_PORT (torchrun: the same --rdzv-endpoint / \
                 --master-addr --master-port; SLURM: derive them once from the first host of $SLURM_JOB_NODELIST)"
                    .into(),
            ));
        }
    }
    let (master_addr, master_port) = match &master {
        Some((a, p)) => (Some(a.clone()), Some(*p)),
        None => (None, None),
    };

    // Which node is the master address.
    let mut master_node: Option<usize> = None;
    if let Some(addr) = &master_addr {
        let matching: Vec<usize> = (0..nodes.len())
            .filter(|&i| names_node(addr, &nodes[i]) && !is_loopback(addr))
            .collect();
        let nodes_with_ranks = nodes.iter().filter(|n| !n.ranks.is_empty()).count();
        if is_loopback(addr) {
            if nodes_with_ranks > 1 {
                out.push(finding(
                    "M001",
                    Severity::Error,
                    format!(
                        "MASTER_ADDR is {addr}, a loopback address, but ranks run on {nodes_with_ranks} nodes: \
                         each node meets only itself"
                    ),
                    nodes.iter().filter(|n| !n.ranks.is_empty()).map(|n| n.name.clone()).collect(),
                    master_port.into_iter().collect(),
                    "set MASTER_ADDR to the first node's host name or address, the same on every node".into(),
                ));
            } else if nodes.len() == 1 {
                master_node = Some(0);
            } else if let Some(i) = nodes.iter().position(|n| !n.ranks.is_empty()) {
                master_node = Some(i);
            }
        } else if matching.is_empty() {
            out.push(finding(
                "M001",
                Severity::Warning,
                format!(
                    "MASTER_ADDR {addr} is not the host name or an address of any of the {} reports",
                    nodes.len()
                ),
                vec![],
                master_port.into_iter().collect(),
                format!(
                    "add the report of the node that has {addr} (`doctor report` there), or fix MASTER_ADDR: \
                     it must name the node where rank 0 runs, reachable from every node"
                ),
            ));
        } else {
            master_node = Some(matching[0]);
        }
    }

    // Who holds the master port on the master node, and on the others.
    let job_slurm: BTreeSet<String> = nodes
        .iter()
        .flat_map(|n| {
            n.ranks
                .iter()
                .filter_map(|r| r.slurm_job_id.clone())
                .chain(n.shell.get("SLURM_JOB_ID").cloned())
        })
        .collect();
    let job_runs: BTreeSet<String> = nodes
        .iter()
        .flat_map(|n| n.ranks.iter().filter_map(|r| r.run_id.clone()))
        .collect();
    let mut master_holders = Vec::new();
    if let Some(port) = master_port {
        for (i, n) in nodes.iter().enumerate() {
            let listeners: Vec<&Value> = n
                .holders
                .iter()
                .filter(|h| {
                    h["port"] == port
                        && h["state"] == "LISTEN"
                        && h["local"]
                            .as_str()
                            .is_some_and(|l| l.ends_with(&format!(":{port}")))
                })
                .collect();
            let is_master = master_node == Some(i);
            if is_master {
                master_holders = listeners.iter().map(|h| (*h).clone()).collect();
                let have_ranks = nodes.iter().any(|n| !n.ranks.is_empty());
                if listeners.is_empty() && have_ranks {
                    out.push(finding(
                        "M002",
                        Severity::Warning,
                        format!(
                            "nothing listens on MASTER_PORT {port} on the master node {}: rank 0's store \
                             (or torchrun's agent store) is not up, so ranks on other nodes wait and time out",
                            n.name
                        ),
                        vec![n.name.clone()],
                        vec![port],
                        format!(
                            "start rank 0 (NODE_RANK=0) on {} first, check it did not crash (its log), and \
                             that nothing there refused the bind; `doctor ports --port {port}` on that node",
                            n.name
                        ),
                    ));
                }
            }
            for h in listeners {
                let (hport, run, slurm) = holder_ids(n, h);
                let conflicts = |mine: &Option<String>, set: &BTreeSet<String>| {
                    mine.as_ref()
                        .is_some_and(|m| !set.is_empty() && !set.contains(m))
                };
                let ours = hport == Some(port)
                    && !conflicts(&run, &job_runs)
                    && !conflicts(&slurm, &job_slurm);
                if ours || h["pid"].is_null() {
                    continue;
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
                out.push(finding(
                    "M003",
                    if is_master { Severity::Error } else { Severity::Warning },
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
                            master_node.map_or("another node".to_string(), |m| nodes[m].name.clone())
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
                ));
            }
        }
    }

    // Ranks per node and duplicates across nodes (within one node, D006 already says it).
    let in_job = |r: &Rank| match (&master, &r.master_addr, r.master_port) {
        (Some((a, p)), Some(ra), Some(rp)) => a == ra && *p == rp,
        _ => true,
    };
    let mut by_rank: BTreeMap<i64, BTreeSet<String>> = BTreeMap::new();
    let mut by_local: BTreeMap<(i64, i64), BTreeSet<String>> = BTreeMap::new();
    for n in nodes.iter() {
        for r in n.ranks.iter().filter(|r| in_job(r)) {
            if let Some(g) = r.rank {
                by_rank.entry(g).or_default().insert(n.name.clone());
            }
            // NODE_RANK + LOCAL_RANK: always for ranks without RANK (Lightning), and for the
            // others when they state their node rank.
            if let Some(l) = r.local_rank
                && (r.rank.is_none() || r.node_rank.is_some())
            {
                by_local
                    .entry((r.node_rank.unwrap_or(0), l))
                    .or_default()
                    .insert(n.name.clone());
            }
        }
    }
    for (g, names) in by_rank.iter().filter(|(_, n)| n.len() > 1) {
        out.push(finding(
            "M004",
            Severity::Error,
            format!("RANK {g} runs on {} nodes: {}", names.len(), names.iter().cloned().collect::<Vec<_>>().join(", ")),
            names.iter().cloned().collect(),
            master_port.into_iter().collect(),
            "give each node its own NODE_RANK (torchrun --node-rank=$SLURM_NODEID, or --rdzv-backend=c10d, which assigns \
             them) so global ranks do not repeat; with SLURM use one launcher per node (--ntasks-per-node=1)"
                .into(),
        ));
    }
    for ((node_rank, l), names) in by_local.iter().filter(|(_, n)| n.len() > 1) {
        out.push(finding(
            "M004",
            Severity::Error,
            format!(
                "NODE_RANK {node_rank} LOCAL_RANK {l} runs on {} nodes: {}",
                names.len(),
                names.iter().cloned().collect::<Vec<_>>().join(", ")
            ),
            names.iter().cloned().collect(),
            master_port.into_iter().collect(),
            "set NODE_RANK differently on every node (0 on the master node, 1.. on the others), e.g. \
             NODE_RANK=$SLURM_NODEID; Lightning reads NODE_RANK, torchrun takes --node-rank"
                .into(),
        ));
    }

    // M010: fewer ranks than WORLD_SIZE.
    let world_size = nodes
        .iter()
        .flat_map(|n| {
            n.ranks
                .iter()
                .filter(|r| in_job(r))
                .filter_map(|r| r.world_size)
        })
        .max();
    let ranks_visible: usize = nodes
        .iter()
        .map(|n| n.ranks.iter().filter(|r| in_job(r)).count())
        .sum();
    if let Some(w) = world_size
        && ranks_visible > 0
        && (ranks_visible as i64) < w
    {
        out.push(finding(
            "M010",
            Severity::Info,
            format!(
                "WORLD_SIZE is {w} but the reports show {ranks_visible} ranks (Lightning's rank 0 shows only once it has started children)"
            ),
            vec![],
            master_port.into_iter().collect(),
            "add the reports of the missing nodes, or check why their ranks did not start (scheduler log)".into(),
        ));
    }

    // M005: versions that must match across nodes. The CUDA and NCCL builds are compared among
    // the nodes that have torch; pytorch_lightning only when lightning agrees.
    let has_torch = |n: &Node| n.versions.torch.is_some();
    type Get = fn(&Versions) -> Option<String>;
    let checks: [(&str, Get, Severity, bool); 5] = [
        ("torch", |v| v.torch.clone(), Severity::Error, false),
        (
            "torch CUDA build",
            |v| Some(v.torch_cuda.clone().unwrap_or_else(|| "cpu".into())),
            Severity::Error,
            true,
        ),
        ("NCCL", |v| v.nccl.clone(), Severity::Error, true),
        (
            "lightning",
            |v| v.lightning.clone(),
            Severity::Warning,
            false,
        ),
        (
            "pytorch_lightning",
            |v| v.pytorch_lightning.clone(),
            Severity::Warning,
            false,
        ),
    ];
    let mut lightning_differs = false;
    for (what, get, sev, torch_nodes_only) in checks {
        if what == "pytorch_lightning" && lightning_differs {
            continue;
        }
        let mut values: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for n in nodes.iter().filter(|n| !torch_nodes_only || has_torch(n)) {
            let v = get(&n.versions).unwrap_or_else(|| "not installed".into());
            values.entry(v).or_default().push(n.name.clone());
        }
        if values.len() > 1 && values.keys().any(|k| k != "not installed") {
            lightning_differs |= what == "lightning";
            let detail: Vec<String> = values
                .iter()
                .map(|(v, names)| format!("{v} on {}", names.join(", ")))
                .collect();
            out.push(finding(
                "M005",
                sev,
                format!("{what} differs between nodes: {}", detail.join("; ")),
                values.values().flatten().cloned().collect(),
                vec![],
                format!(
                    "install the same {what} on every node (one container image or one lock file for the job, \
                     packages from the same index); mixed versions hang or fail in the first collective"
                ),
            ));
        }
    }

    // M006: reports of different jobs.
    let per_node_ids = |f: &dyn Fn(&Node) -> BTreeSet<String>| -> BTreeMap<String, Vec<String>> {
        let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for n in nodes.iter() {
            for id in f(n) {
                m.entry(id).or_default().push(n.name.clone());
            }
        }
        m
    };
    let slurm = per_node_ids(&|n: &Node| {
        n.shell
            .get("SLURM_JOB_ID")
            .cloned()
            .into_iter()
            .chain(
                n.ranks
                    .iter()
                    .filter(|r| in_job(r))
                    .filter_map(|r| r.slurm_job_id.clone()),
            )
            .collect()
    });
    let runs = per_node_ids(&|n: &Node| {
        n.ranks
            .iter()
            .filter(|r| in_job(r))
            .filter_map(|r| r.run_id.clone())
            .collect()
    });
    let slurm_fix = "merge the reports of one job only: take them inside the job's allocation \
                     (`srun --jobid=$SLURM_JOB_ID --ntasks-per-node=1 doctor report -o report-%N.yaml`)";
    let run_fix = "if these nodes are one job, start torchrun with the same --rdzv-id on every node (it becomes \
                   TORCHELASTIC_RUN_ID); otherwise merge the reports of one job only";
    for (what, ids, fix) in [
        ("SLURM job ids", &slurm, slurm_fix),
        ("run ids (TORCHELASTIC_RUN_ID)", &runs, run_fix),
    ] {
        if ids.len() > 1 {
            let detail: Vec<String> = ids
                .iter()
                .map(|(id, names)| format!("{id} on {}", names.join(", ")))
                .collect();
            out.push(finding(
                "M006",
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

    // M007: reports taken far apart.
    let times: Vec<f64> = nodes
        .iter()
        .map(|n| n.taken_at)
        .filter(|t| *t > 0.0)
        .collect();
    if times.len() > 1 {
        let lo = times.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = times.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if hi - lo > max_spread_minutes * 60.0 {
            let oldest = nodes
                .iter()
                .find(|n| n.taken_at == lo)
                .map(|n| n.name.clone())
                .unwrap_or_default();
            let newest = nodes
                .iter()
                .find(|n| n.taken_at == hi)
                .map(|n| n.name.clone())
                .unwrap_or_default();
            out.push(finding(
                "M007",
                Severity::Warning,
                format!(
                    "the reports were taken {} apart ({oldest} at {}, {newest} at {}), more than {max_spread_minutes} minutes: \
                     they may describe different moments of the job",
                    if hi - lo < 60.0 {
                        format!("{:.1}s", hi - lo)
                    } else {
                        render::age(hi - lo)
                    },
                    utc(lo),
                    utc(hi)
                ),
                vec![oldest, newest],
                vec![],
                "take all reports at once (`srun --ntasks-per-node=1 doctor report -o report-%N.yaml` or `pdsh -w NODES \
                 doctor report -o ...`) while the job is in the state you want to show"
                    .into(),
            ));
        }
    }

    out.sort_by(|x, y| {
        (std::cmp::Reverse(x.severity), x.code, &x.nodes).cmp(&(
            std::cmp::Reverse(y.severity),
            y.code,
            &y.nodes,
        ))
    });
    Merged {
        master_addr,
        master_port,
        master_node: master_node.map(|i| nodes[i].name.clone()),
        master_holders,
        slurm_job_ids: slurm.keys().cloned().collect(),
        run_ids: runs.keys().cloned().collect(),
        world_size,
        ranks_visible,
        findings: out,
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
    let format = match args.format {
        Some(f) => f,
        None if std::io::stdout().is_terminal() => Format::Table,
        None => Format::Yaml,
    };
    let mut nodes = Vec::new();
    for path in &args.files {
        let doc = load(path)?;
        nodes.push(node(&path.display().to_string(), &doc));
    }
    let merged = analyse(&mut nodes, args.max_spread);
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
    let doc = json!({
        "schema_version": SCHEMA_VERSION,
        "kind": "doctor-merge",
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
        "nodes": nodes.iter().map(|n| json!({
            "name": n.name,
            "file": n.file,
            "hostname": n.hostname,
            "master": master_index.as_deref() == Some(n.name.as_str()),
            "addresses": n.addresses,
            "taken_at": crate::model::time::rfc3339(n.taken_at),
            "ranks": n.ranks,
            "versions": n.versions,
            "findings": n.findings,
        })).collect::<Vec<_>>(),
    });
    let mut doc = doc;
    render::findings::normalize_findings(&mut doc);
    if !render::settings().show_secrets {
        render::redact::redact(&mut doc);
    }
    let text = match format {
        Format::Table => {
            render::escape_document(&mut doc);
            render_table(&doc, render::stdout_color())
        }
        f => render::document(&doc, f)?,
    };
    render::print(&text);
    Ok(i32::from(exit_1))
}

fn render_table(doc: &Value, color: bool) -> String {
    let mut o = String::new();
    let r = &doc["rendezvous"];
    let sm = &doc["summary"];
    o.push_str(&format!(
        "{} {} nodes; rendezvous {}:{} on {}\n",
        paint("doctor merge", Paint::Bold, color),
        sm["nodes"],
        s(&r["master_addr"]),
        s(&r["master_port"]),
        match r["master_node"].as_str() {
            Some(n) => format!("master node {n}"),
            None => "no known master node".into(),
        }
    ));
    for h in r["master_port_holders"].as_array().into_iter().flatten() {
        o.push_str(&format!(
            "  holder: pid {} ({}) {}\n",
            s(&h["pid"]),
            s(&h["role"]),
            render::shorten(&s(&h["command"]), 70)
        ));
    }
    if let Some(w) = r["world_size"].as_i64() {
        o.push_str(&format!(
            "  world size {w}, {} ranks visible\n",
            r["ranks_visible"]
        ));
    }
    o.push('\n');
    for n in doc["nodes"].as_array().into_iter().flatten() {
        let ranks: Vec<String> = n["ranks"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                let mut l = String::new();
                if let Some(g) = r["rank"].as_i64() {
                    l.push_str(&format!("rank {g}"));
                } else if let Some(x) = r["local_rank"].as_i64() {
                    l.push_str(&format!(
                        "node {} local {x}",
                        r["node_rank"].as_i64().unwrap_or(0)
                    ));
                }
                format!("{l} (pid {})", r["pid"])
            })
            .collect();
        let v = &n["versions"];
        o.push_str(&format!(
            "{}{}  {}  torch {} nccl {} lightning {}\n  ranks: {}\n",
            paint(&s(&n["name"]), Paint::Bold, color),
            if n["master"] == true { " (master)" } else { "" },
            n["addresses"]
                .as_array()
                .map(|a| a
                    .iter()
                    .map(s)
                    .filter(|a| !is_loopback(a))
                    .collect::<Vec<_>>()
                    .join(" "))
                .unwrap_or_default(),
            s(&v["torch"]),
            s(&v["nccl"]),
            s(&v["lightning"]),
            if ranks.is_empty() {
                "none".into()
            } else {
                ranks.join(", ")
            }
        ));
        let nf: Vec<Value> = n["findings"].as_array().cloned().unwrap_or_default();
        if !nf.is_empty() {
            let mut t = String::new();
            render_finding_values(&nf, color, &mut t);
            for line in t.lines() {
                o.push_str(&format!("  {line}\n"));
            }
        }
    }
    let f = doc["findings"].as_array().cloned().unwrap_or_default();
    o.push_str(&format!(
        "\n{} {} errors, {} warnings, {} info (nodes' own findings included)\n",
        paint("summary:", Paint::Bold, color),
        sm["errors"],
        sm["warnings"],
        sm["info"]
    ));
    render_finding_values(&f, color, &mut o);
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(host: &str, addr: &str, ranks: Value, torch: &str, taken_at: f64) -> Value {
        json!({
            "schema_version": 1, "kind": "doctor-report", "taken_at": taken_at,
            "summary": {}, "host": {"hostname": host, "addresses": ["127.0.0.1", addr]},
            "python": {"interpreters": [{"path": "/p", "packages": {"torch": torch, "lightning": "2.6.6"}}]},
            "environment": {"shell": {}, "training_processes": ranks},
            "ports": {"holders": [], "jobs": [], "findings": []},
            "complete": true,
        })
    }

    fn rank(pid: i64, rank: i64, port: u16) -> Value {
        json!({"pid": pid, "role": "rank", "identity": {"master_addr": "10.0.0.1", "master_port": port,
               "rank": rank, "world_size": 2}, "command": "python train.py"})
    }

    fn codes(m: &Merged) -> Vec<&str> {
        m.findings.iter().map(|f| f.code).collect()
    }

    #[test]
    fn duplicate_rank_and_version_mismatch() {
        let a = report(
            "a",
            "10.0.0.1",
            json!([rank(10, 0, 29500)]),
            "2.15.0",
            100.0,
        );
        let b = report(
            "b",
            "10.0.0.2",
            json!([rank(20, 0, 29500)]),
            "2.14.1",
            130.0,
        );
        let mut nodes = vec![node("a.yaml", &a), node("b.yaml", &b)];
        let m = analyse(&mut nodes, 10.0);
        assert_eq!(m.master_node.as_deref(), Some("a"));
        let c = codes(&m);
        assert!(c.contains(&"M004"), "{c:?}");
        assert!(c.contains(&"M005"), "{c:?}");
        assert!(c.contains(&"M002"), "{c:?}");
        assert!(!c.contains(&"M007"), "{c:?}");
    }

    #[test]
    fn same_node_and_local_rank_on_two_nodes() {
        let r = |pid: i64, rank: i64| {
            json!({"pid": pid, "role": "rank", "identity": {"master_addr": "10.0.0.1", "master_port": 29500,
                   "rank": rank, "local_rank": 0, "node_rank": 0, "world_size": 2}, "command": "t.py"})
        };
        let a = report("a", "10.0.0.1", json!([r(10, 0)]), "2.15.0", 100.0);
        let b = report("b", "10.0.0.2", json!([r(20, 1)]), "2.15.0", 100.0);
        let mut nodes = vec![node("a.yaml", &a), node("b.yaml", &b)];
        let m = analyse(&mut nodes, 10.0);
        let m004: Vec<_> = m.findings.iter().filter(|f| f.code == "M004").collect();
        assert_eq!(m004.len(), 1, "{:?}", m.findings);
        assert!(m004[0].message.contains("NODE_RANK 0 LOCAL_RANK 0"));
    }

    #[test]
    fn master_mismatch_only_between_nodes() {
        let r = |pid: i64, rank: i64, port: u16| {
            json!({"pid": pid, "role": "rank", "identity": {"master_addr": "10.0.0.1", "master_port": port,
                   "rank": rank, "world_size": 2}, "command": "t.py"})
        };
        // One node running two unrelated jobs: no disagreement between nodes.
        let a = report(
            "a",
            "10.0.0.1",
            json!([r(10, 0, 29500), r(11, 0, 29600)]),
            "2.15.0",
            1.0,
        );
        let m = analyse(&mut [node("a.yaml", &a)], 10.0);
        assert!(!codes(&m).contains(&"M008"), "{:?}", m.findings);
        // node-b's rank looks for another port than the job's.
        let a = report("a", "10.0.0.1", json!([r(10, 0, 29500)]), "2.15.0", 1.0);
        let b = report("b", "10.0.0.2", json!([r(20, 1, 29501)]), "2.15.0", 1.0);
        let c = report("c", "10.0.0.3", json!([r(30, 1, 29500)]), "2.15.0", 1.0);
        let m = analyse(&mut [node("a", &a), node("b", &b), node("c", &c)], 10.0);
        let m008: Vec<_> = m.findings.iter().filter(|f| f.code == "M008").collect();
        assert_eq!(m008.len(), 1, "{:?}", m.findings);
        assert!(
            m008[0].message.contains("b uses 10.0.0.1:29501"),
            "{}",
            m008[0].message
        );
        assert_eq!(m.master_port, Some(29500));
    }

    #[test]
    fn stale_and_unknown_master() {
        let a = report(
            "a",
            "10.0.0.5",
            json!([rank(10, 0, 29500)]),
            "2.15.0",
            100.0,
        );
        let b = report(
            "b",
            "10.0.0.2",
            json!([rank(20, 1, 29500)]),
            "2.15.0",
            100.0 + 3600.0,
        );
        let mut nodes = vec![node("a.yaml", &a), node("b.yaml", &b)];
        let m = analyse(&mut nodes, 10.0);
        assert_eq!(codes(&m), vec!["M001", "M007"]);
    }

    #[test]
    fn odd_values_never_panic() {
        let odd = json!({
            "schema_version": 1, "kind": "doctor-report", "taken_at": -5, "complete": true,
            "summary": {}, "host": {"hostname": 5, "addresses": "10.0.0.1"},
            "python": {"interpreters": [1, {"packages": []}, {"packages": {"torch": 2}}]},
            "environment": {"shell": {"MASTER_ADDR": "", "MASTER_PORT": "99999"},
                            "training_processes": [1, "x", {"role": "rank", "identity": {"master_port": 99999999, "rank": "a"}},
                                                   {"role": "rank", "identity": []}]},
            "ports": {"holders": [{"port": "x", "state": 1}, 3], "jobs": {}, "findings": [null]},
        });
        assert!(parse(&serde_json::to_string(&odd).unwrap()).is_ok());
        let mut nodes = vec![node("odd.yaml", &odd), node("odd2.yaml", &odd)];
        let m = analyse(&mut nodes, f64::MAX);
        assert!(m.findings.iter().any(|f| f.code == "M009"));
        let mut none: Vec<Node> = Vec::new();
        let m = analyse(&mut none, 0.0);
        assert!(m.findings.is_empty());
    }

    #[test]
    fn bad_documents() {
        assert!(parse("").is_err());
        assert!(parse("a: [1, 2").is_err());
        let e = parse("schema_version: 99\nkind: doctor-report\n").unwrap_err();
        assert!(e.0.contains("schema_version 99"), "{e:?}");
        let e = parse("name: something\nitems: [1]\n").unwrap_err();
        assert!(e.0.contains("not a doctor report"), "{e:?}");
        let full =
            serde_yaml::to_string(&report("a", "10.0.0.1", json!([]), "2.15.0", 1.0)).unwrap();
        assert!(parse(&full).is_ok());
        let cut = &full[..full.len() / 2];
        assert!(parse(cut).is_err(), "{cut}");
    }
}
