//! The `doctor report` table: the one-screen form, summary with fixes, then the key facts.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::model::snapshot::is_rendezvous_env;
use crate::render::findings::render_finding_values;
use crate::render::value_text as s;
use crate::render::{self, Paint, paint};

/// The one-screen form: summary with fixes, then the key facts.
pub fn report_table(doc: &Value, color: bool) -> String {
    let mut o = String::new();
    let h = &doc["host"];
    o.push_str(&format!(
        "{} {}  {}  kernel {}  {}\n",
        paint("doctor report", Paint::Bold, color),
        s(&h["hostname"]),
        s(&h["os"]),
        s(&h["kernel"]),
        s(&doc["taken_at"]),
    ));
    summary(&doc["summary"], color, &mut o);
    o.push('\n');
    host(h, &mut o);
    gpus(&doc["gpus"], &mut o);
    for i in doc["python"]["interpreters"]
        .as_array()
        .into_iter()
        .flatten()
    {
        interpreter(i, &mut o);
    }
    environment(doc, &mut o);
    holders(&doc["ports"], &mut o);
    tail(doc, &mut o);
    o
}

fn gib(bytes: &Value) -> String {
    bytes
        .as_u64()
        .map(|b| format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64))
        .unwrap_or_else(|| "?".into())
}

/// The counts, then at most three findings of each code (one screen), the rest counted.
fn summary(sm: &Value, color: bool, o: &mut String) {
    o.push_str(&format!(
        "\n{} {}\n",
        paint("summary:", Paint::Bold, color),
        super::counts(sm)
    ));
    let Some(f) = sm["findings"].as_array() else {
        return;
    };
    let mut shown: BTreeMap<String, usize> = BTreeMap::new();
    let mut keep = Vec::new();
    for x in f {
        let n = shown.entry(s(&x["code"])).or_default();
        *n += 1;
        if *n <= 3 {
            keep.push(x.clone());
        }
    }
    render_finding_values(&keep, color, o);
    for (code, n) in shown.iter().filter(|(_, n)| **n > 3) {
        o.push_str(&format!(
            "... and {} more {code} in the YAML report\n",
            n - 3
        ));
    }
    o.push_str(&super::findings::explain_text(super::findings::codes_of(f)));
}

/// CPU, memory, container, addresses and the port ranges.
fn host(h: &Value, o: &mut String) {
    let c = &h["container"];
    o.push_str(&format!(
        "host       {} x {}, {} memory{}\n",
        h["cpu_count"],
        s(&h["cpu_model"]),
        gib(&h["memory_total_bytes"]),
        match c["guess"].as_str() {
            Some(g) => format!(
                ", container: {g} (cgroup {}, pid 1 {})",
                s(&c["cgroup"]),
                s(&c["pid1_comm"])
            ),
            None => String::new(),
        }
    ));
    let addrs: Vec<String> = h["addresses"]
        .as_array()
        .map(|a| a.iter().map(s).collect())
        .unwrap_or_default();
    o.push_str(&format!("addresses  {}\n", addrs.join(" ")));
    let range = &h["ip_local_port_range"];
    let reserved: Vec<String> = h["ip_local_reserved_ports"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| {
                    if r[0] == r[1] {
                        s(&r[0])
                    } else {
                        format!("{}-{}", r[0], r[1])
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    o.push_str(&format!(
        "ports      ephemeral {}-{}, reserved {}\n",
        range[0],
        range[1],
        if reserved.is_empty() {
            "none".into()
        } else {
            reserved.join(",")
        }
    ));
}

fn gpus(g: &Value, o: &mut String) {
    match g["devices"].as_array().filter(|d| !d.is_empty()) {
        Some(devs) => {
            for d in devs {
                o.push_str(&format!(
                    "gpu        {} (driver {}, {})\n",
                    s(&d["name"]),
                    s(&d["driver"]),
                    s(&d["memory"])
                ));
            }
            let procs = g["processes"].as_array().map_or(0, Vec::len);
            if procs > 0 {
                o.push_str(&format!("gpu procs  {procs} processes use the GPUs\n"));
            }
        }
        None => o.push_str(&format!("gpu        {}\n", s(&g["note"]))),
    }
}

/// One interpreter: its Python, torch build and the packages that matter.
fn interpreter(i: &Value, o: &mut String) {
    if let Some(e) = i["error"].as_str() {
        o.push_str(&format!("python     {}: {e}\n", s(&i["path"])));
        return;
    }
    let p = &i["packages"];
    let mut parts = vec![format!("python {}", s(&i["python"]))];
    if let Some(t) = p["torch"].as_str() {
        let mut build = Vec::new();
        if let Some(c) = i["torch_cuda"].as_str() {
            build.push(format!("cuda {c}"));
        } else {
            build.push("cpu or cuda unknown".into());
        }
        if let Some(n) = i["nccl"].as_str() {
            build.push(format!("nccl {n}"));
        }
        parts.push(format!("torch {t} ({})", build.join(", ")));
    } else {
        parts.push("no torch".into());
    }
    for k in [
        "lightning",
        "pytorch_lightning",
        "accelerate",
        "deepspeed",
        "numpy",
    ] {
        if let Some(v) = p[k].as_str() {
            parts.push(format!("{k} {v}"));
        }
    }
    o.push_str(&format!(
        "python     {}: {}\n",
        s(&i["path"]),
        parts.join(", ")
    ));
}

/// The shell's rendezvous variables and the training processes and jobs.
fn environment(doc: &Value, o: &mut String) {
    let env = &doc["environment"];
    let rdzv: Vec<String> = env["shell"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| is_rendezvous_env(k))
                .map(|(k, v)| format!("{k}={}", s(v)))
                .collect()
        })
        .unwrap_or_default();
    o.push_str(&format!(
        "shell env  {}\n",
        if rdzv.is_empty() {
            "no rendezvous variables set".into()
        } else {
            rdzv.join(" ")
        }
    ));
    let procs = env["training_processes"].as_array().map_or(0, Vec::len);
    let jobs: Vec<String> = doc["ports"]["jobs"]
        .as_array()
        .map(|j| {
            j.iter()
                .map(|j| {
                    let port = j["master_port"]
                        .as_u64()
                        .map(|p| format!(" port {p}"))
                        .unwrap_or_default();
                    format!("{}{port}", s(&j["id"]))
                })
                .collect()
        })
        .unwrap_or_default();
    o.push_str(&format!(
        "training   {} in training jobs or with rendezvous variables; jobs: {}\n",
        render::plural(procs, "process", "processes"),
        if jobs.is_empty() {
            "none".into()
        } else {
            jobs.join(", ")
        }
    ));
}

/// The sockets on the rendezvous ports: a count, then up to 12 listeners.
fn holders(ports: &Value, o: &mut String) {
    let rows = ports["holders"].as_array().cloned().unwrap_or_default();
    let list: Vec<String> = ports["ports"]
        .as_array()
        .map(|p| p.iter().map(s).collect())
        .unwrap_or_default();
    if rows.is_empty() {
        o.push_str(&format!(
            "holders    no sockets on the rendezvous ports ({})\n",
            list.join(", ")
        ));
        return;
    }
    let listen: Vec<&Value> = rows.iter().filter(|r| r["state"] == "LISTEN").collect();
    o.push_str(&format!(
        "holders    {} on rendezvous ports {}; listeners:\n",
        render::plural(rows.len(), "socket", "sockets"),
        list.join(", ")
    ));
    for r in listen.iter().take(12) {
        o.push_str(&format!(
            "  {:>5} {:<11} {:>7} {:<17} {:<14} {}\n",
            s(&r["port"]),
            s(&r["state"]),
            s(&r["pid"]),
            s(&r["role"]),
            rank_cell(r),
            render::shorten(&s(&r["command"]), 60)
        ));
    }
    if listen.len() > 12 {
        o.push_str(&format!(
            "  ... {} more listeners in the YAML report\n",
            listen.len() - 12
        ));
    }
}

/// `rank 3 local 1`, or `-` for a holder without identity.
fn rank_cell(r: &Value) -> String {
    r["identity"]
        .as_object()
        .map(|_| {
            let mut parts = Vec::new();
            if let Some(x) = r["identity"]["rank"].as_i64() {
                parts.push(format!("rank {x}"));
            }
            if let Some(x) = r["identity"]["local_rank"].as_i64() {
                parts.push(format!("local {x}"));
            }
            parts.join(" ")
        })
        .filter(|x| !x.is_empty())
        .unwrap_or_else(|| "-".into())
}

/// Unreadable entries, scan, included run, and whether secrets were redacted.
fn tail(doc: &Value, o: &mut String) {
    let u = &doc["unreadable"];
    if u["count"].as_u64().unwrap_or(0) > 0 {
        let n = |k: &str| u[k].as_u64().unwrap_or(0) as usize;
        o.push_str(&format!(
            "unreadable {} ({} permission denied) over {}\n",
            render::plural(n("count"), "entry", "entries"),
            n("permission_denied"),
            render::plural(n("processes_seen"), "process", "processes")
        ));
    }
    if !doc["scan"].is_null() {
        let files = doc["scan"]["files_scanned"].as_u64().unwrap_or(0) as usize;
        let findings = doc["scan"]["findings"].as_array().map_or(0, Vec::len);
        o.push_str(&format!(
            "scan       {}, {}\n",
            render::plural(files, "file", "files"),
            render::plural(findings, "static finding", "static findings")
        ));
    }
    if !doc["included_run"].is_null() {
        o.push_str(&format!(
            "run        included from {}\n",
            s(&doc["included_run"]["path"])
        ));
    }
    o.push_str(&format!(
        "\n{}\n",
        if doc["redacted"] == true {
            "secrets redacted; the full attachment: `doctor report -o report.yaml`"
        } else {
            "NOT redacted (--no-redact); the full attachment: `doctor report -o report.yaml`"
        }
    ));
}
