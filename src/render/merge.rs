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
        "\n{} {} errors, {} warnings, {} info (nodes' own findings included)\n",
        paint("summary:", Paint::Bold, color),
        sm["errors"],
        sm["warnings"],
        sm["info"]
    ));
    render_finding_values(&f, color, &mut o);
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
    format!("{l} (pid {})", r["pid"])
}

/// One node: name, addresses, versions, ranks, then its own findings indented.
fn node_block(n: &Value, color: bool, o: &mut String) {
    let ranks: Vec<String> = n["ranks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(rank_label)
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
