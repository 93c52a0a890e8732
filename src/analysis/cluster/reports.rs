//! Reading the reports: check a report document and keep what the merge needs of it (a
//! [`Node`] with its ranks and versions).

use std::collections::HashMap;

use serde_json::Value;

use crate::model::identity::Identity;
use crate::model::report::{Launcher, Node, REPORT_KIND, Rank, Versions};
use crate::model::snapshot::{READS_SCHEMA_VERSIONS, SCHEMA_VERSION};

pub(crate) fn str_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
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

/// What a torchrun command line says (`torchrun ...`, `python -m torch.distributed.run ...`):
/// its endpoint, node rank, node count and rendezvous backend. `None` for other launchers.
pub fn torchrun_args(command: &str) -> Option<Launcher> {
    let words: Vec<&str> = command.split_whitespace().collect();
    let at = words.iter().position(|w| {
        w.ends_with("/torchrun")
            || *w == "torchrun"
            || *w == "torch.distributed.run"
            || *w == "torch.distributed.launch"
    })?;
    let mut opts: std::collections::BTreeMap<String, String> = Default::default();
    let mut i = at + 1;
    while i < words.len() {
        let w = words[i];
        let Some(flag) = w.strip_prefix("--") else {
            break; // the training script: torchrun's own options end here
        };
        let (k, v) = match flag.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (flag.to_string(), None),
        };
        let k = k.replace('_', "-");
        let takes_value = !matches!(
            k.as_str(),
            "standalone" | "no-python" | "module" | "run-path"
        );
        let v = match v {
            Some(v) => v,
            None if takes_value && i + 1 < words.len() => {
                i += 1;
                words[i].to_string()
            }
            None => String::new(),
        };
        opts.insert(k, v);
        i += 1;
    }
    let backend = opts.get("rdzv-backend").cloned();
    let endpoint = match backend.as_deref() {
        Some(b) if b != "static" => opts.get("rdzv-endpoint").and_then(|e| {
            let (h, p) = match e.rsplit_once(':') {
                Some((h, p)) => (h, p.parse().ok()?),
                None => (e.as_str(), 29400),
            };
            Some((h.to_string(), p))
        }),
        // Static: only what the arguments say. torchrun also reads PET_MASTER_ADDR and
        // PET_MASTER_PORT from its environment, which reports do not carry, so a default
        // (127.0.0.1:29500) is never guessed: that would be a false M008.
        _ => match (opts.get("master-addr"), opts.get("master-port")) {
            (Some(a), Some(p)) => p.parse().ok().map(|p| (a.clone(), p)),
            _ => None,
        },
    };
    Some(Launcher {
        pid: 0,
        command: command.to_string(),
        job: None,
        endpoint: if opts.contains_key("standalone") {
            None
        } else {
            endpoint
        },
        node_rank: opts.get("node-rank").and_then(|n| n.parse().ok()),
        nnodes: opts.get("nnodes").cloned(),
        rdzv_backend: backend,
        rdzv_id: Some(
            opts.get("rdzv-id")
                .cloned()
                .unwrap_or_else(|| "none".into()),
        ),
    })
}

/// The first report given twice (the same file named twice, or a copy of it): `(copy, first)`.
/// Reports of two nodes, or of one node taken twice, always differ (host, time taken).
pub fn same_report(docs: &[(String, Value)]) -> Option<(&str, &str)> {
    let mut seen: HashMap<String, &str> = HashMap::new();
    for (name, doc) in docs {
        let key = doc.to_string();
        if let Some(first) = seen.get(&key) {
            return Some((name, first));
        }
        seen.insert(key, name);
    }
    None
}

/// A report's `identity` object, each field read on its own: a field of the wrong type is left
/// out, not the rank.
fn identity_of(id: &Value) -> Identity {
    Identity {
        master_addr: str_of(&id["master_addr"]),
        master_port: id["master_port"]
            .as_u64()
            .and_then(|x| u16::try_from(x).ok()),
        rank: id["rank"].as_i64(),
        local_rank: id["local_rank"].as_i64(),
        node_rank: id["node_rank"].as_i64(),
        world_size: id["world_size"].as_i64(),
        run_id: str_of(&id["run_id"]),
        slurm_job_id: str_of(&id["slurm_job_id"]),
        inferred: id["inferred"].as_bool().unwrap_or(false),
    }
}

pub fn node(file: &str, doc: &Value) -> Node {
    let launchers: Vec<Launcher> = doc["environment"]["training_processes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["role"] == "launcher")
        .map(|p| {
            let command = str_of(&p["command"]).unwrap_or_default();
            let mut l = torchrun_args(&command).unwrap_or(Launcher {
                pid: 0,
                command: command.clone(),
                job: None,
                endpoint: None,
                node_rank: None,
                nnodes: None,
                rdzv_backend: None,
                rdzv_id: None,
            });
            l.pid = p["pid"].as_i64().unwrap_or(0);
            l.job = str_of(&p["job"]);
            l
        })
        .collect();
    let endpoint_of = |job: &Option<String>| {
        launchers
            .iter()
            .find(|l| job.is_some() && l.job == *job)
            .and_then(|l| l.endpoint.clone())
    };
    let ranks = doc["environment"]["training_processes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["role"] == "rank")
        .map(|p| Rank {
            pid: p["pid"].as_i64().unwrap_or(0),
            identity: identity_of(&p["identity"]),
            command: str_of(&p["command"]).unwrap_or_default(),
            job: str_of(&p["job"]),
            endpoint: endpoint_of(&str_of(&p["job"])),
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
        pid_namespace: serde_json::from_value(doc["host"]["pid_namespace"].clone()).ok(),
        launchers,
    }
}

#[cfg(test)]
mod tests {
    use super::torchrun_args;

    #[test]
    fn torchrun_command_lines() {
        let ep = |c: &str| torchrun_args(c).and_then(|l| l.endpoint);
        let e = |a: &str, p: u16| Some((a.to_string(), p));
        assert_eq!(
            ep(
                "/v/bin/python /v/bin/torchrun --nnodes=2 --node-rank=1 --master-addr=10.0.0.1 --master-port=29577 t.py --master-port 1"
            ),
            e("10.0.0.1", 29577)
        );
        assert_eq!(
            ep("python -m torch.distributed.run --nnodes 2 --master_addr n1 --master_port 23 t.py"),
            e("n1", 23)
        );
        // Nothing guessed: torchrun may take them from PET_MASTER_ADDR / PET_MASTER_PORT.
        assert_eq!(ep("torchrun --nproc-per-node=2 t.py"), None);
        assert_eq!(ep("torchrun --master-addr=n1 t.py"), None);
        assert_eq!(ep("torchrun --master-addr=n1 --master-port=x t.py"), None);
        assert_eq!(
            ep("torchrun --rdzv-backend=c10d --rdzv-endpoint=n1:29400 --rdzv-id=j t.py"),
            e("n1", 29400)
        );
        assert_eq!(
            ep("torchrun --rdzv_backend c10d --rdzv_endpoint n1 t.py"),
            e("n1", 29400)
        );
        assert_eq!(ep("torchrun --standalone --nproc-per-node=2 t.py"), None);
        assert!(torchrun_args("accelerate launch t.py").is_none());
        assert!(torchrun_args("python train.py --torchrun").is_none());
        let l = torchrun_args("torchrun --nnodes=1:3 --node_rank 2 t.py").unwrap();
        assert_eq!((l.nnodes.as_deref(), l.node_rank), (Some("1:3"), Some(2)));
    }
}
