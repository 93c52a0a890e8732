//! `doctor repro` on real torch and lightning, CPU only, through doctor's own environment
//! search (the managed venv that `doctor repro --setup` creates; the README's test command runs
//! that first). Slow: each matrix takes minutes on a 2-core machine, so these tests run one at a
//! time. Each doctor runs in its own process group, killed on drop whatever happens; doctor
//! itself kills its case trees.

mod common;

use std::collections::BTreeSet;
use std::sync::Mutex;

use serde_json::Value;

use common::{json_in_group, run_in_group};

static HEAVY: Mutex<()> = Mutex::new(());

fn case<'a>(doc: &'a Value, variant: &str, ctx: &str) -> &'a Value {
    doc["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["variant"] == variant && c["ctx"] == ctx)
        .unwrap_or_else(|| panic!("no {variant} {ctx} case in {doc}"))
}

#[test]
fn setup_finds_the_environment_and_prints_versions() {
    let _heavy = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let out = run_in_group(&["repro", "--setup"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(std::path::Path::new(&path).is_file(), "{path}");
    assert!(
        err.contains("torch 2.") && err.contains("lightning 2."),
        "{err}"
    );
}

#[test]
fn fabric_cpu_matrix_verifies_the_fix() {
    let _heavy = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let (out, doc) = json_in_group(&[
        "repro",
        "--format",
        "json",
        "--accelerator",
        "cpu",
        "--no-setup",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}\n{doc}");
    assert_eq!(doc["schema_version"], 2);
    assert_eq!(doc["accelerator"]["kind"], "cpu");
    assert_eq!(doc["accelerator"]["backend"], "gloo");
    assert_eq!(doc["cases"].as_array().unwrap().len(), 6);
    let script = include_str!("../repro/fabric_buggy.py");
    let launch_line = 1 + script
        .lines()
        .position(|l| l.starts_with("fabric.launch()"))
        .unwrap();
    for ctx in ["spawn", "forkserver"] {
        let c = case(&doc, "buggy", ctx);
        assert_eq!(c["outcome"], "eaddrinuse", "{c}");
        assert_eq!(c["exit_code"], 1, "{c}");
        assert_eq!(c["result_digest"], Value::Null);
        // The port in the error is the case's own rendezvous port, and the frame is the
        // module-level launch line of the buggy script.
        assert_eq!(c["eaddrinuse_port"], c["port"], "{c}");
        let frame = c["frame"]
            .as_str()
            .unwrap_or_else(|| panic!("no frame: {c}"));
        assert!(
            frame.ends_with(&format!("fabric_buggy.py:{launch_line}")),
            "{frame}"
        );
    }
    let fork = case(&doc, "buggy", "fork");
    assert_eq!(fork["outcome"], "ok", "{fork}");
    let mut digests = BTreeSet::new();
    for ctx in ["spawn", "fork", "forkserver"] {
        let c = case(&doc, "fixed", ctx);
        assert_eq!(c["outcome"], "ok", "{c}");
        assert_eq!(c["exit_code"], 0);
        assert_eq!(c["ranks"].as_array().unwrap().len(), 2, "{c}");
        digests.insert(c["result_digest"].as_str().unwrap().to_string());
    }
    assert_eq!(
        digests.len(),
        1,
        "fixed runs trained different weights: {digests:?}"
    );
    // Forked workers do not change the training either.
    assert!(digests.contains(fork["result_digest"].as_str().unwrap()));
    let mut ports = BTreeSet::new();
    for c in doc["cases"].as_array().unwrap() {
        assert_eq!(c["leftovers"], serde_json::json!([]), "{c}");
        assert!(
            ports.insert(c["port"].as_u64().unwrap()),
            "port reused: {c}"
        );
    }
    assert_eq!(doc["verdict"]["fix_verified"], true);
    assert_eq!(doc["verdict"]["matches_expected"], true);
    assert!(
        doc["verdict"]["summary"]
            .as_str()
            .unwrap()
            .starts_with("fix verified: the module-level launch (fabric) fails under spawn and forkserver with EADDRINUSE"),
        "{}",
        doc["verdict"]["summary"]
    );
}

/// What was measured for plain PyTorch under torchrun (torch 2.15, gloo, 2 CPU ranks): the
/// re-run `init_process_group` in a spawn/forkserver worker never fails to bind (torchrun's
/// agent owns the store); the worker joins as a duplicate rank, and what follows is a race: the
/// run hangs, dies when gloo's connection mesh fails, or sometimes passes. Never EADDRINUSE.
#[test]
fn torchrun_pair_never_fails_to_bind() {
    let _heavy = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let (out, doc) = json_in_group(&[
        "repro",
        "torchrun",
        "--format",
        "json",
        "--accelerator",
        "cpu",
        "--no-setup",
        "--timeout",
        "75",
        "--jobs",
        "2",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}\n{doc}");
    let mut buggy_failed = false;
    for ctx in ["spawn", "forkserver"] {
        let c = case(&doc, "buggy", ctx);
        assert_ne!(c["outcome"], "eaddrinuse", "{c}");
        assert_eq!(c["eaddrinuse_port"], Value::Null, "{c}");
        if c["outcome"] == "hang" {
            assert_eq!(c["exit_code"], Value::Null);
            assert!(!c["killed"].as_array().unwrap().is_empty(), "{c}");
        }
        buggy_failed |= c["outcome"] != "ok";
    }
    // The verdict only claims the fix when the bug showed.
    assert_eq!(
        doc["verdict"]["fix_verified"], buggy_failed,
        "{}",
        doc["verdict"]
    );
    assert_eq!(case(&doc, "buggy", "fork")["outcome"], "ok");
    let mut digests = BTreeSet::new();
    for ctx in ["spawn", "fork", "forkserver"] {
        let c = case(&doc, "fixed", ctx);
        assert_eq!(c["outcome"], "ok", "{c}");
        digests.insert(c["result_digest"].as_str().unwrap().to_string());
    }
    assert_eq!(digests.len(), 1, "{digests:?}");
    for c in doc["cases"].as_array().unwrap() {
        assert_eq!(c["leftovers"], serde_json::json!([]), "{c}");
    }
}
