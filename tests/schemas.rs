//! Every JSON document doctor writes validates against its schema in docs/schema/, on real
//! outputs of every command (a real rank holding a port, a real run, a real scan), in every
//! format: JSON and YAML carry the same document, the table is no document.

mod common;

use std::path::Path;

use common::schema::{assert_valid, errors};
use common::*;
use serde_json::Value;

/// `doctor run -o RECORD -- sh -c SCRIPT`, which must exit with `code`; the record it wrote
/// (JSON or YAML, by RECORD's extension).
fn recorded_run(record: &std::path::Path, script: &str, code: i32) -> Value {
    let out = run(&[
        "run",
        "-o",
        record.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        script,
    ]);
    assert_eq!(
        out.status.code(),
        Some(code),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // YAML reads JSON too.
    serde_yaml::from_str(&std::fs::read_to_string(record).unwrap()).unwrap()
}

#[test]
fn every_command_output_matches_its_schema() {
    let port = free_low_port();
    let _s = Situation::start("d001", port);
    let p = port.to_string();
    let (ports, code) = json(&["ports", "--port", &p, "--format", "json"]);
    assert_eq!(code, 1, "D001 is found");
    assert!(!ports["findings"].as_array().unwrap().is_empty());
    assert_valid("ports", &ports);
    let (check, _) = json(&["ports", "--check", &p, "--format", "json"]);
    assert_valid("ports-check", &check);
    // The DDP_DOCTOR=1 hook's call: a live process (the situation's leader) explained.
    let pid = _s.child.id().to_string();
    let (failed, _) = json(&[
        "ports",
        "--failed-pid",
        &pid,
        "--port",
        &p,
        "--format",
        "json",
    ]);
    assert_eq!(failed["failed_pid"].to_string(), pid);
    assert_valid("ports-failed", &failed);
    let (tree, _) = json(&["tree", "--port", &p, "--format", "json"]);
    assert_valid("tree", &tree);
    let (snap, _) = json(&["snapshot", "--format", "json"]);
    assert_valid("snapshot", &snap);
    let (report, _) = json(&["report", "--port", &p, "--format", "json"]);
    assert_valid("report", &report);
    let dir = tempfile::tempdir().unwrap();
    let report_file = dir.path().join("r.json");
    std::fs::write(&report_file, report.to_string()).unwrap();
    let (merge, _) = json(&["merge", report_file.to_str().unwrap(), "--format", "json"]);
    assert_valid("merge", &merge);
    // A v1 report from an older node merges into the same shape.
    let old =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reports/report-node-a.yaml");
    let (merge, _) = json(&["merge", old.to_str().unwrap(), "--format", "json"]);
    assert_valid("merge", &merge);
    let (scan, _) = json(&["scan", "--format", "json", "tests/fixtures/scan/seed.py"]);
    assert!(!scan["findings"].as_array().unwrap().is_empty());
    assert_valid("scan", &scan);
    // A run that fails with a leftover, recorded.
    let rec = recorded_run(&dir.path().join("run.json"), "sleep 30 & exit 3", 3);
    assert_valid("run", &rec);
}

/// `repro` with a cheap custom script (no torch needed), and `repro --list`.
#[test]
fn repro_documents_match_their_schemas() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("quick_case.py");
    std::fs::write(&script, "print('ok')\n").unwrap();
    let out = doctor()
        .args([
            "repro",
            script.to_str().unwrap(),
            "--ctx",
            "spawn",
            "--no-setup",
        ])
        .args(["--no-progress", "--format", "json"])
        .env("DOCTOR_PYTHON", python())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_valid("repro", &doc);
    let (list, _) = json(&["repro", "--list", "--format", "json"]);
    assert_valid("repro-list", &list);
}

#[test]
fn the_schemas_reject_the_old_shapes() {
    let old = serde_json::json!({
        "code": "D001", "name": "duplicate-init", "severity": "error", "message": "m",
        "pids": [1], "ports": [29500], "fix": "a string, as in schema 1"
    });
    assert!(!errors("finding", &old).is_empty());
    let old_scan = serde_json::json!({"schema_version": 1, "diagnostics": [], "files_scanned": 0,
        "files_skipped": [], "assumed": {"python_version": "3.11", "platform": "linux",
        "default_start_method": "fork"}});
    assert!(!errors("scan", &old_scan).is_empty());
    let (mut snap, _) = json(&["snapshot", "--format", "json"]);
    snap["taken_at"] = serde_json::json!(1_764_000_000.0);
    assert!(
        !errors("snapshot", &snap).is_empty(),
        "times are RFC 3339 strings"
    );
}

/// A schema 1 snapshot (Unix-second times) still loads; what is written from it is schema 2.
#[test]
fn schema_1_snapshots_still_load() {
    let (mut snap, _) = json(&["snapshot", "--format", "json"]);
    snap["schema_version"] = 1.into();
    snap["taken_at"] = 1_764_000_000.5.into();
    for p in snap["processes"].as_array_mut().unwrap() {
        p["start_time"] = 1_763_999_000.25.into();
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("v1.json");
    std::fs::write(&file, snap.to_string()).unwrap();
    let (doc, code) = json(&[
        "ports",
        "--from",
        file.to_str().unwrap(),
        "--format",
        "json",
        "--all",
    ]);
    assert!(code == 0 || code == 1, "{doc}");
    assert_valid("ports", &doc);
    let holder_age = doc["holders"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|h| h["age_seconds"].as_f64());
    if let Some(age) = holder_age {
        assert!(
            (age - 1000.3).abs() < 0.2,
            "ages from the numeric times: {age}"
        );
    }
}

/// `COMMAND --format FORMAT REST...`: the option right after the subcommand (before a `--`).
fn with_format<'a>(args: &[&'a str], format: &'a str) -> Vec<&'a str> {
    let mut full = vec![args[0], "--format", format];
    full.extend(&args[1..]);
    full
}

/// The document of `doctor ARGS --format FORMAT` (JSON or YAML) as a JSON value, and the exit code.
fn doc_in(args: &[&str], format: &str) -> (Value, i32, String) {
    let full = with_format(args, format);
    let out = run(&full);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let v: Value = match format {
        "json" => serde_json::from_str(&text),
        _ => serde_yaml::from_str(&text).map_err(serde::de::Error::custom),
    }
    .unwrap_or_else(|e: serde_json::Error| {
        panic!("doctor {full:?}: no {format} document ({e}); stdout: {text}\nstderr: {err}")
    });
    (v, out.status.code().unwrap_or(-1), err)
}

/// Every command, in every format it has, against one live situation (a rank and the spawn child
/// that re-ran its launch, D001): the JSON and the YAML document are the same document and valid
/// against the kind's schema, with the one envelope; the table is text, not a document, with the
/// same exit code.
#[test]
fn every_command_in_every_format_matches_its_schema() {
    let port = free_low_port();
    let sit = Situation::start("d001", port);
    let p = port.to_string();
    let leader = sit.child.id().to_string();
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let snap_file = dir.path().join("snap.json");
    let out = run(&["snapshot", "-o", snap_file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let report_file = dir.path().join("r.json");
    let out = run(&["report", "--port", &p, "-o", report_file.to_str().unwrap()]);
    assert!(matches!(out.status.code(), Some(0 | 1)), "{out:?}");
    let seed = root.join("tests/fixtures/scan/seed.py");
    let seed = seed.to_str().unwrap();
    let quick = dir.path().join("quick_case.py");
    std::fs::write(&quick, "print('ok')\n").unwrap();
    let quick = quick.to_str().unwrap().to_string();
    let snap = snap_file.to_str().unwrap();
    let rep = report_file.to_str().unwrap();
    // (arguments, schema, formats besides json and yaml that print no document)
    let cases: Vec<(Vec<&str>, &str, &[&str])> = vec![
        (vec!["ports", "--port", &p], "ports", &["table"]),
        (
            vec!["ports", "--port", &p, "--from", snap],
            "ports",
            &["table"],
        ),
        (vec!["ports", "--check", &p], "ports-check", &["table"]),
        (
            vec!["ports", "--failed-pid", &leader, "--port", &p],
            "ports-failed",
            &["table"],
        ),
        (vec!["ports", "--free"], "ports-free", &["table"]),
        (vec!["tree", "--port", &p], "tree", &["table"]),
        (
            vec!["tree", "--pid", &leader, "--from", snap],
            "tree",
            &["table"],
        ),
        (vec!["snapshot"], "snapshot", &[]),
        (vec!["report", "--port", &p], "report", &["table"]),
        (vec!["merge", rep], "merge", &["table"]),
        (vec!["scan", seed], "scan", &["text", "github", "sarif"]),
        (vec!["repro", "--list"], "repro-list", &["table"]),
        (vec!["explain", "D001"], "explain", &["table"]),
        (vec!["explain", "--list"], "explain-list", &["table"]),
        (
            vec!["run", "--", "sh", "-c", "sleep 30 & exit 3"],
            "run",
            &[],
        ),
    ];
    let mut kinds_seen = std::collections::BTreeSet::new();
    for (args, schema_name, others) in &cases {
        // scan has text/json/sarif/github (no YAML): its document is JSON only.
        let doc_formats: &[&str] = if *schema_name == "scan" {
            &["json"]
        } else {
            &["json", "yaml"]
        };
        let mut docs = Vec::new();
        for f in doc_formats {
            let (doc, code, err) = doc_in(args, f);
            assert_valid(schema_name, &doc);
            assert_eq!(doc["kind"], format!("doctor-{schema_name}"), "{args:?}");
            assert_eq!(doc["doctor_version"], env!("CARGO_PKG_VERSION"));
            assert!(
                !doc["hostname"].as_str().unwrap_or("").is_empty(),
                "{args:?}: no hostname"
            );
            assert!(!err.contains("panicked"), "{args:?}: {err}");
            docs.push((doc, code));
        }
        if let [(a, ca), (b, cb)] = docs.as_slice() {
            assert_eq!(ca, cb, "{args:?}: exit codes of json and yaml differ");
            // The same document: everything but what changes between two runs.
            let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
            assert_eq!(keys(a), keys(b), "{args:?}: json and yaml differ");
        }
        for f in *others {
            let full = with_format(args, f);
            let out = run(&full);
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                matches!(out.status.code(), Some(0..=1) | Some(3)),
                "{full:?}: {out:?}"
            );
            if *f != "sarif" {
                assert!(
                    !serde_json::from_str::<Value>(&text).is_ok_and(|v| v.is_object()),
                    "{full:?}: a table printed a JSON document"
                );
            }
            assert!(
                !text.chars().any(|c| c.is_control() && c != '\n'),
                "{full:?}: raw control characters"
            );
        }
        kinds_seen.insert(schema_name.to_string());
    }
    // `run -o FILE` writes the same record; `repro` of a cheap script (no torch).
    let rec = recorded_run(&dir.path().join("run.yaml"), "exit 0", 0);
    assert_valid("run", &rec);
    for f in ["json", "yaml"] {
        let out = doctor()
            .args([
                "repro",
                &quick,
                "--ctx",
                "spawn",
                "--no-setup",
                "--no-progress",
            ])
            .args(["--format", f])
            .env("DOCTOR_PYTHON", python())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        let doc: Value = if f == "json" {
            serde_json::from_str(&text).unwrap()
        } else {
            serde_yaml::from_str(&text).unwrap()
        };
        assert_valid("repro", &doc);
    }
    kinds_seen.insert("repro".into());
    // Every kind of document has a case here (the verify-fix document needs torch: repro_fix.rs
    // validates each one it gets).
    for kind in ddp_doctor::model::envelope::Kind::ALL {
        let name = kind.schema_name();
        assert!(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(format!("docs/schema/{name}.schema.json"))
                .is_file(),
            "{name}: no schema"
        );
        if name != "repro-verify" {
            assert!(kinds_seen.contains(name), "{name}: no command ran it");
        }
    }
    drop(sit);
}
