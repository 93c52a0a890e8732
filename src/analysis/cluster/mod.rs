//! Cluster findings M001-M010: the view of one job across nodes, from the reports `doctor
//! report` wrote on each node. [`reports`] reads a report into a [`Node`]; [`Context`] derives
//! once what every rule reads (the job's rendezvous, its master node, its ids); then one file per
//! rule, each a `check` over the context, registered in [`RULES`]. Codes, names and severities
//! hang off the one enum of codes, [`crate::model::finding::Rule`].

mod m001_master_not_found;
mod m002_master_port_not_listening;
mod m003_port_held_by_other_job;
mod m004_duplicate_rank_across_nodes;
mod m005_version_mismatch;
mod m006_mixed_jobs;
mod m007_stale_reports;
mod m008_master_mismatch;
mod m009_duplicate_node;
mod m010_missing_ranks;
pub mod reports;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

use crate::model::finding::{self, Rule, Severity};
pub use crate::model::report::{Node, Rank, Versions, is_loopback};
pub use reports::{node, parse, same_report};

/// Every cluster rule, in code order.
pub const RULES: &[fn(&Context) -> Vec<MergeFinding>] = &[
    m001_master_not_found::check,
    m002_master_port_not_listening::check,
    m003_port_held_by_other_job::check,
    m004_duplicate_rank_across_nodes::check,
    m005_version_mismatch::check,
    m006_mixed_jobs::check,
    m007_stale_reports::check,
    m008_master_mismatch::check,
    m009_duplicate_node::check,
    m010_missing_ranks::check,
];

#[derive(Clone, Debug, Serialize)]
pub struct MergeFinding {
    #[serde(flatten, serialize_with = "finding::code_and_name")]
    pub code: Rule,
    pub severity: Severity,
    pub message: String,
    pub nodes: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
    pub fix: String,
}

pub(crate) fn finding(
    code: Rule,
    severity: Severity,
    message: String,
    nodes: Vec<String>,
    ports: Vec<u16>,
    fix: String,
) -> MergeFinding {
    MergeFinding {
        code,
        severity,
        message,
        nodes,
        ports,
        fix,
    }
}

/// Ids (SLURM job ids or run ids) and the nodes that show each.
pub type IdsByNode = BTreeMap<String, Vec<String>>;

/// What every M-rule reads: the nodes, and what the merge derives from them once.
pub struct Context<'a> {
    pub nodes: &'a [Node],
    pub max_spread_minutes: f64,
    /// Every (MASTER_ADDR, MASTER_PORT) seen: the nodes naming it, and how many shells name it.
    pub pairs: BTreeMap<(String, u16), (BTreeSet<String>, usize)>,
    /// Per node (same order as `nodes`), the rendezvous its ranks use.
    pub node_pairs: Vec<BTreeSet<(String, u16)>>,
    /// The job's rendezvous: the pair found on the most nodes.
    pub master: Option<(String, u16)>,
    /// Index of the node MASTER_ADDR names.
    pub master_node: Option<usize>,
    /// SLURM job ids and run ids of every rank (and shell) of every node.
    pub job_slurm: BTreeSet<String>,
    pub job_runs: BTreeSet<String>,
    /// SLURM job ids and run ids of the job's ranks, with the nodes that show them.
    pub slurm: IdsByNode,
    pub runs: IdsByNode,
    pub world_size: Option<i64>,
    pub ranks_visible: usize,
    /// The SLURM job ids of the shells the reports were taken in (`srun` inside the job).
    pub shell_slurm: BTreeSet<String>,
    /// The run ids of the job's torchrun agents (their --rdzv-id, `none` by default).
    pub agent_runs: BTreeSet<String>,
    /// Per node (same order as `nodes`), the index of the first report of its machine
    /// ([`machine_key`]): two reports of one machine (a job restarted between them, or one
    /// report taken twice) are one node, however many reports show it.
    pub machine: Vec<usize>,
}

impl<'a> Context<'a> {
    pub fn new(nodes: &'a [Node], max_spread_minutes: f64) -> Context<'a> {
        let (pairs, node_pairs) = rendezvous_pairs(nodes);
        let master = job_rendezvous(&pairs);
        let machine = machines(nodes);
        let master_node = master
            .as_ref()
            .and_then(|(addr, _)| master_node(nodes, &machine, addr));
        let mut c = Context {
            nodes,
            max_spread_minutes,
            pairs,
            node_pairs,
            master: master.clone(),
            master_node,
            job_slurm: BTreeSet::new(),
            job_runs: BTreeSet::new(),
            slurm: IdsByNode::new(),
            runs: IdsByNode::new(),
            world_size: None,
            ranks_visible: 0,
            agent_runs: nodes
                .iter()
                .flat_map(|n| &n.launchers)
                .filter(|l| l.endpoint.is_some() && l.endpoint == master)
                .filter_map(|l| l.rdzv_id.clone())
                .collect(),
            shell_slurm: nodes
                .iter()
                .filter_map(|n| n.shell.get("SLURM_JOB_ID").cloned())
                .collect(),
            machine,
        };
        c.job_ids();
        c.ranks_of_job();
        c
    }

    pub fn master_port(&self) -> Option<u16> {
        self.master.as_ref().map(|(_, p)| *p)
    }

    /// Whether a rank belongs to the job: its rendezvous is the job's (or unknown), and it is
    /// not of another SLURM job than the one the reports were taken in (a leftover of an
    /// earlier job on the same port is not one of this job's ranks).
    pub fn in_job(&self, r: &Rank) -> bool {
        // Rendezvous are (address, port, run id): a rank naming only its port (MASTER_ADDR set
        // later in os.environ) is another job's when the port differs.
        let same_rendezvous = match (&self.master, r.rendezvous()) {
            (Some(m), Some(rv)) => *m == rv,
            (Some(m), None) => r.identity.master_port.is_none_or(|p| p == m.1),
            _ => true,
        };
        let other_slurm = r
            .identity
            .slurm_job_id
            .as_ref()
            .is_some_and(|s| !self.shell_slurm.is_empty() && !self.shell_slurm.contains(s));
        // Under the job's torchrun agents, ranks carry the agents' run id (--rdzv-id): a rank
        // with another one (a leftover of an earlier run, with no SLURM to tell) is not the job's.
        let other_run = r
            .identity
            .run_id
            .as_ref()
            .is_some_and(|id| !self.agent_runs.is_empty() && !self.agent_runs.contains(id));
        same_rendezvous && !other_slurm && !other_run
    }

    /// The rows of a node's report that listen on `port`.
    pub fn listeners<'n>(&self, n: &'n Node, port: u16) -> Vec<&'n Value> {
        n.holders
            .iter()
            .filter(|h| {
                h["port"] == port
                    && h["state"] == "LISTEN"
                    && h["local"]
                        .as_str()
                        .is_some_and(|l| l.ends_with(&format!(":{port}")))
            })
            .collect()
    }

    fn job_ids(&mut self) {
        self.slurm = self.per_node_ids(&|n: &Node| {
            n.shell
                .get("SLURM_JOB_ID")
                .cloned()
                .into_iter()
                .chain(
                    self.job_ranks(n)
                        .filter_map(|r| r.identity.slurm_job_id.clone()),
                )
                .collect()
        });
        self.runs = self.per_node_ids(&|n: &Node| {
            self.job_ranks(n)
                .filter_map(|r| r.identity.run_id.clone())
                .collect()
        });
        // The job's ids, whichever node names them.
        self.job_slurm = self.slurm.keys().cloned().collect();
        self.job_runs = self.runs.keys().cloned().collect();
    }

    /// The ranks of node `n` that belong to the job.
    fn job_ranks<'n>(&self, n: &'n Node) -> impl Iterator<Item = &'n Rank> {
        n.ranks.iter().filter(|r| self.in_job(r))
    }

    fn per_node_ids(&self, f: &dyn Fn(&Node) -> BTreeSet<String>) -> IdsByNode {
        let mut m = IdsByNode::new();
        for n in self.nodes {
            for id in f(n) {
                m.entry(id).or_default().push(n.name.clone());
            }
        }
        m
    }

    fn ranks_of_job(&mut self) {
        self.world_size = self
            .nodes
            .iter()
            .flat_map(|n| self.job_ranks(n).filter_map(|r| r.identity.world_size))
            .max();
        // Each rank once per machine: a machine reported twice (a job restarted between the
        // reports) shows its ranks twice.
        let mut seen: BTreeSet<(usize, String)> = BTreeSet::new();
        for (i, n) in self.nodes.iter().enumerate() {
            for r in self.job_ranks(n) {
                let who = match r.identity.rank_key() {
                    Some((node, rank)) => format!("{node}/{rank}"),
                    None => format!("pid {}", r.pid),
                };
                seen.insert((self.machine[i], who));
            }
        }
        self.ranks_visible = seen.len();
    }

    /// The machines (first report of each, `machine`) among `nodes` (indices), each once, in
    /// order.
    pub fn machines_of(&self, nodes: impl IntoIterator<Item = usize>) -> Vec<usize> {
        let mut out: Vec<usize> = nodes.into_iter().map(|i| self.machine[i]).collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// What tells a machine: its host name and its addresses other than loopback (a report taken
/// inside a container or namespace has its own).
pub fn machine_key(n: &Node) -> (String, Vec<String>) {
    let mut addrs: Vec<String> = n
        .addresses
        .iter()
        .filter(|a| !is_loopback(a))
        .cloned()
        .collect();
    addrs.sort();
    (n.hostname.clone(), addrs)
}

/// Per node, the index of the first node of its machine.
fn machines(nodes: &[Node]) -> Vec<usize> {
    let mut first: BTreeMap<(String, Vec<String>), usize> = BTreeMap::new();
    nodes
        .iter()
        .enumerate()
        .map(|(i, n)| *first.entry(machine_key(n)).or_insert(i))
        .collect()
}

type Pairs = BTreeMap<(String, u16), (BTreeSet<String>, usize)>;

/// Every (MASTER_ADDR, MASTER_PORT) of the ranks' identities and the shells' variables, with the
/// nodes that name it, and per node the pairs its ranks use.
fn rendezvous_pairs(nodes: &[Node]) -> (Pairs, Vec<BTreeSet<(String, u16)>>) {
    let mut pairs = Pairs::new();
    let mut node_pairs: Vec<BTreeSet<(String, u16)>> = Vec::new();
    for n in nodes {
        // The rendezvous the node's ranks and launchers joined (a rank's launcher's endpoint
        // under torchrun, its MASTER_ADDR:MASTER_PORT otherwise).
        let mine: BTreeSet<(String, u16)> = n
            .ranks
            .iter()
            .filter_map(Rank::rendezvous)
            .chain(n.launchers.iter().filter_map(|l| l.endpoint.clone()))
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
    (pairs, node_pairs)
}

/// The rendezvous of the job: the (MASTER_ADDR, MASTER_PORT) found on the most nodes (ranks'
/// identities and the shell's variables), then the one the shells name (a report taken inside
/// the job's allocation carries the job's variables), then the smallest.
fn job_rendezvous(pairs: &Pairs) -> Option<(String, u16)> {
    pairs
        .iter()
        .max_by_key(|(pair, (names, votes))| {
            (names.len(), *votes, std::cmp::Reverse((*pair).clone()))
        })
        .map(|(pair, _)| pair.clone())
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

/// The node MASTER_ADDR names; for a loopback address, the only machine with ranks (none when
/// several have ranks: M001).
fn master_node(nodes: &[Node], machine: &[usize], addr: &str) -> Option<usize> {
    if !is_loopback(addr) {
        return nodes.iter().position(|n| names_node(addr, n));
    }
    let mut with_ranks: Vec<usize> = (0..nodes.len())
        .filter(|&i| !nodes[i].ranks.is_empty())
        .map(|i| machine[i])
        .collect();
    with_ranks.sort_unstable();
    with_ranks.dedup();
    if with_ranks.len() > 1 {
        None
    } else if nodes.len() == 1 {
        Some(0)
    } else {
        nodes.iter().position(|n| !n.ranks.is_empty())
    }
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
    /// Per node (same order), per rank: whether it is one of this job's ranks (a leftover of
    /// another job on the same port is not).
    #[serde(skip)]
    pub in_job: Vec<Vec<bool>>,
}

/// Give two reports of one host name distinct labels: `hostname (file)`.
fn unique_names(nodes: &mut [Node]) {
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for n in nodes.iter() {
        *count.entry(n.hostname.clone()).or_default() += 1;
    }
    for n in nodes.iter_mut() {
        if count[&n.hostname] > 1 {
            n.name = format!("{} ({})", n.hostname, n.file);
        }
    }
}

/// The cluster view of `nodes` and every M-finding, errors first.
pub fn analyse(nodes: &mut [Node], max_spread_minutes: f64) -> Merged {
    unique_names(nodes);
    let c = Context::new(nodes, max_spread_minutes);
    let mut out: Vec<MergeFinding> = RULES.iter().flat_map(|rule| rule(&c)).collect();
    out.sort_by(|x, y| {
        (std::cmp::Reverse(x.severity), x.code, &x.nodes).cmp(&(
            std::cmp::Reverse(y.severity),
            y.code,
            &y.nodes,
        ))
    });
    let master_holders = match (c.master_node, c.master_port()) {
        (Some(i), Some(port)) => c.listeners(&nodes[i], port).into_iter().cloned().collect(),
        _ => Vec::new(),
    };
    Merged {
        master_addr: c.master.as_ref().map(|(a, _)| a.clone()),
        master_port: c.master_port(),
        master_node: c.master_node.map(|i| nodes[i].name.clone()),
        master_holders,
        slurm_job_ids: c.slurm.keys().cloned().collect(),
        run_ids: c.runs.keys().cloned().collect(),
        world_size: c.world_size,
        ranks_visible: c.ranks_visible,
        in_job: nodes
            .iter()
            .map(|n| n.ranks.iter().map(|r| c.in_job(r)).collect())
            .collect(),
        findings: out,
    }
}

/// The reports recorded on two nodes (network namespaces, tests/fixtures/reports), as JSON
/// values, for the M-rule tests; each test edits them into its situation.
#[cfg(test)]
pub(super) fn recorded_reports() -> Vec<Value> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reports");
    ["report-node-a.yaml", "report-node-b.yaml"]
        .iter()
        .map(|f| parse(&std::fs::read_to_string(dir.join(f)).unwrap()).unwrap())
        .collect()
}

/// One M-rule's `check` over reports (their nodes named uniquely as `doctor merge` does, and
/// `--max-spread` at its default of 10 minutes).
#[cfg(test)]
pub(super) fn check_reports(
    docs: &[Value],
    check: fn(&Context) -> Vec<MergeFinding>,
) -> Vec<MergeFinding> {
    let mut nodes: Vec<Node> = docs
        .iter()
        .enumerate()
        .map(|(i, d)| node(&format!("report-{i}.yaml"), d))
        .collect();
    unique_names(&mut nodes);
    check(&Context::new(&nodes, 10.0))
}

/// Every rank of a report (`environment.training_processes`) and every holder, edited by `f`.
#[cfg(test)]
pub(super) fn each_identity(doc: &mut Value, f: &dyn Fn(&mut Value)) {
    for list in ["/environment/training_processes", "/ports/holders"] {
        if let Some(Value::Array(items)) = doc.pointer_mut(list) {
            for p in items {
                if p["identity"].is_object() {
                    f(&mut p["identity"]);
                }
            }
        }
    }
}

/// `KEY=value` in the shell and every training process of a report, where the key is set.
#[cfg(test)]
pub(super) fn set_env(doc: &mut Value, key: &str, value: &str) {
    if let Some(Value::Array(items)) = doc.pointer_mut("/environment/training_processes") {
        for p in items {
            if p["env"].get(key).is_some() {
                p["env"][key] = value.into();
            }
        }
    }
    if doc["environment"]["shell"].get(key).is_some() {
        doc["environment"]["shell"][key] = value.into();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

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

    fn codes(m: &Merged) -> Vec<Rule> {
        m.findings.iter().map(|f| f.code).collect()
    }

    /// A report of node `host` (torch 2.15.0, taken at 100 s) with these training processes.
    fn on(host: &str, addr: &str, ranks: Value) -> Value {
        report(host, addr, ranks, "2.15.0", 100.0)
    }

    /// The merge of these reports (each read as `HOSTNAME.yaml`), reports 10 s apart at most
    /// counting as taken together.
    fn merged(reports: &[&Value]) -> Merged {
        let mut nodes: Vec<Node> = reports
            .iter()
            .map(|r| {
                node(
                    &format!("{}.yaml", r["host"]["hostname"].as_str().unwrap_or("?")),
                    r,
                )
            })
            .collect();
        analyse(&mut nodes, 10.0)
    }

    #[test]
    fn duplicate_rank_and_version_mismatch() {
        let a = on("a", "10.0.0.1", json!([rank(10, 0, 29500)]));
        let b = report(
            "b",
            "10.0.0.2",
            json!([rank(20, 0, 29500)]),
            "2.14.1",
            130.0,
        );
        let m = merged(&[&a, &b]);
        assert_eq!(m.master_node.as_deref(), Some("a"));
        let c = codes(&m);
        assert!(c.contains(&Rule::M004), "{c:?}");
        assert!(c.contains(&Rule::M005), "{c:?}");
        assert!(c.contains(&Rule::M002), "{c:?}");
        assert!(!c.contains(&Rule::M007), "{c:?}");
    }

    /// Separate jobs on one host: the job's ranks (10.0.0.1:29500) and, on each node, a
    /// single-node job of its own on another port (its ranks name only MASTER_PORT, as a launcher
    /// that sets MASTER_ADDR in os.environ leaves it), or on another address, or with another run
    /// id. Rendezvous are separated by (address, port, run id) before duplicates are looked for:
    /// no M004 for ranks of different jobs; the same rank twice within one rendezvous still is.
    #[test]
    fn merge_keys_rendezvous_by_address_port_and_run_id() {
        let other = |pid: i64, rank: i64, addr: Option<&str>, port: u16, run: Option<&str>| {
            let mut id = json!({"master_port": port, "rank": rank, "world_size": 2});
            if let Some(a) = addr {
                id["master_addr"] = json!(a);
            }
            if let Some(r) = run {
                id["run_id"] = json!(r);
            }
            json!({"pid": pid, "role": "rank", "identity": id, "command": "python other.py"})
        };
        let cases = [
            (None, 29600, None),
            (Some("127.0.0.1"), 29600, None),
            (Some("10.0.0.9"), 29500, None),
        ];
        for (addr, port, run) in cases {
            let a = on(
                "a",
                "10.0.0.1",
                json!([rank(10, 0, 29500), other(11, 0, addr, port, run)]),
            );
            let b = on(
                "b",
                "10.0.0.2",
                json!([rank(20, 1, 29500), other(21, 0, addr, port, run)]),
            );
            let m = merged(&[&a, &b]);
            let m004: Vec<_> = m.findings.iter().filter(|f| f.code == Rule::M004).collect();
            assert!(
                m004.is_empty(),
                "{addr:?}:{port} run {run:?}: separate jobs lumped: {m004:?}"
            );
        }
        // One address and port, two run ids (a leftover of an earlier run and the new one).
        let a = on(
            "a",
            "10.0.0.1",
            json!([other(10, 0, Some("10.0.0.1"), 29500, Some("r1"))]),
        );
        let b = on(
            "b",
            "10.0.0.2",
            json!([other(20, 0, Some("10.0.0.1"), 29500, Some("r2"))]),
        );
        assert!(!codes(&merged(&[&a, &b])).contains(&Rule::M004));
        // The same rank twice within the job's rendezvous is still M004.
        let a = on("a", "10.0.0.1", json!([rank(10, 0, 29500)]));
        let b = on("b", "10.0.0.2", json!([rank(20, 0, 29500)]));
        assert!(codes(&merged(&[&a, &b])).contains(&Rule::M004));
    }

    #[test]
    fn same_node_and_local_rank_on_two_nodes() {
        let r = |pid: i64, rank: i64| {
            json!({"pid": pid, "role": "rank", "identity": {"master_addr": "10.0.0.1", "master_port": 29500,
                   "rank": rank, "local_rank": 0, "node_rank": 0, "world_size": 2}, "command": "t.py"})
        };
        let a = on("a", "10.0.0.1", json!([r(10, 0)]));
        let b = on("b", "10.0.0.2", json!([r(20, 1)]));
        let m = merged(&[&a, &b]);
        let m004: Vec<_> = m.findings.iter().filter(|f| f.code == Rule::M004).collect();
        assert_eq!(m004.len(), 1, "{:?}", m.findings);
        assert!(m004[0].message.contains("NODE_RANK 0 LOCAL_RANK 0"));
    }

    #[test]
    fn master_mismatch_only_between_nodes() {
        // One node running two unrelated jobs: no disagreement between nodes.
        let a = report(
            "a",
            "10.0.0.1",
            json!([rank(10, 0, 29500), rank(11, 0, 29600)]),
            "2.15.0",
            1.0,
        );
        let m = analyse(&mut [node("a.yaml", &a)], 10.0);
        assert!(!codes(&m).contains(&Rule::M008), "{:?}", m.findings);
        // node-b's rank looks for another port than the job's.
        let a = report("a", "10.0.0.1", json!([rank(10, 0, 29500)]), "2.15.0", 1.0);
        let b = report("b", "10.0.0.2", json!([rank(20, 1, 29501)]), "2.15.0", 1.0);
        let c = report("c", "10.0.0.3", json!([rank(30, 1, 29500)]), "2.15.0", 1.0);
        let m = analyse(&mut [node("a", &a), node("b", &b), node("c", &c)], 10.0);
        let m008: Vec<_> = m.findings.iter().filter(|f| f.code == Rule::M008).collect();
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
        let a = on("a", "10.0.0.5", json!([rank(10, 0, 29500)]));
        let b = report(
            "b",
            "10.0.0.2",
            json!([rank(20, 1, 29500)]),
            "2.15.0",
            100.0 + 3600.0,
        );
        let m = merged(&[&a, &b]);
        assert_eq!(codes(&m), vec![Rule::M001, Rule::M007]);
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
        assert!(m.findings.iter().any(|f| f.code == Rule::M009));
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
