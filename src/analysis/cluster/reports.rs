//! Reading the reports: check a report document and keep what the merge needs of it (a
//! [`Node`] with its ranks and versions).

use serde_json::Value;

use crate::model::report::{Node, REPORT_KIND, Rank, Versions};
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
