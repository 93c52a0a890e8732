//! The `doctor merge` table: the rendezvous, one block per node, then the cluster findings.

use serde_json::Value;

use crate::model::report::is_loopback;
use crate::render::findings::render_finding_values;
use crate::render::value_text as s;
use crate::render::{self, Paint, paint};

/// The merge document (`kind: doctor-merge`) as a person reads it.
pub fn merge_table(doc: &Value, color: bool) -> String {
    let mut o = String::new();
    rendezvous(doc, color, &mut o);
    o.push('\n');
    for n in doc["nodes"].as_array().into_iter().flatten() {
        node_block(n, color, &mut o);
    }
    let sm = &doc["summary"];
    let f = doc["findings"].as_array().cloned().unwrap_or_default();
    o.push_str(&format!(
        "\n{} {} (nodes' own findings included)\n",
        paint("summary:", Paint::Bold, color),
        super::counts(sm)
    ));
    render_finding_values(&f, color, &mut o);
    // Every code shown, the nodes' own included.
    let mut codes = super::findings::codes_of(&f);
    for n in doc["nodes"].as_array().into_iter().flatten() {
        codes.extend(super::findings::codes_of(
            n["findings"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default(),
        ));
    }
    o.push_str(&super::findings::explain_text(codes));
    o
}

/// The head: node count, the rendezvous, its holders and the world size.
fn rendezvous(doc: &Value, color: bool, o: &mut String) {
    let r = &doc["rendezvous"];
    o.push_str(&format!(
        "{} {} nodes; rendezvous {}:{} on {}\n",
        paint("doctor merge", Paint::Bold, color),
        doc["summary"]["nodes"],
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
}

/// One rank as `rank 3 (pid 10)` or `node 1 local 0 (pid 10)`.
fn rank_label(r: &Value) -> String {
    let mut l = String::new();
    if let Some(g) = r["rank"].as_i64() {
        l.push_str(&format!("rank {g}"));
    } else if let Some(x) = r["local_rank"].as_i64() {
        l.push_str(&format!(
            "node {} local {x}",
            r["node_rank"].as_i64().unwrap_or(0)
        ));
    }
    if r["of_this_job"] == false {
        let id = match (r["slurm_job_id"].as_str(), r["run_id"].as_str()) {
            (Some(j), _) => format!(", SLURM job {j}"),
            (None, Some(run)) => format!(", run id {run}"),
            _ => String::new(),
        };
        format!("{l} (pid {}, another job{id})", r["pid"])
    } else {
        format!("{l} (pid {})", r["pid"])
    }
}

/// One launcher as `torchrun pid 4 (static 10.0.0.1:29500, node rank 1)`.
fn agent_label(l: &Value) -> String {
    let mut what = Vec::new();
    if let Some(e) = l["endpoint"].as_array() {
        what.push(format!(
            "{} {}:{}",
            l["rdzv_backend"].as_str().unwrap_or("static"),
            s(&e[0]),
            s(&e[1])
        ));
    }
    if let Some(r) = l["node_rank"].as_i64() {
        what.push(format!("node rank {r}"));
    }
    if let Some(nn) = l["nnodes"].as_str() {
        what.push(format!("nnodes {nn}"));
    }
    let name = if l["endpoint"].is_null() && l["nnodes"].is_null() {
        "launcher"
    } else {
        "torchrun"
    };
    if what.is_empty() {
        format!("{name} pid {}", l["pid"])
    } else {
        format!("{name} pid {} ({})", l["pid"], what.join(", "))
    }
}

/// One node: name, addresses, versions, ranks, then its own findings indented.
fn node_block(n: &Value, color: bool, o: &mut String) {
    let ranks: Vec<String> = n["ranks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(rank_label)
        .collect();
    let agents: Vec<String> = n["agents"]
        .as_array()
        .into_iter()
        .flatten()
        .map(agent_label)
        .collect();
    let v = &n["versions"];
    o.push_str(&format!(
        "{}{}  {}  torch {} nccl {} lightning {}\n{}  agents: {}\n  ranks: {}\n",
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
        match &n["pid_namespace"] {
            ns if ns["init"] == false => format!(
                "  pids of PID namespace pid:[{}] (a container's or pod's, not host pids)\n",
                s(&ns["inode"])
            ),
            _ => String::new(),
        },
        if agents.is_empty() {
            "none".into()
        } else {
            agents.join(", ")
        },
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
