//! The fix of `doctor scan --fix`, proved with real torch and lightning (CPU, gloo): the fixed
//! Fabric script trains under spawn and forkserver to the same weights as the hand-fixed one,
//! and `doctor repro SCRIPT --verify-fix` says so on its own. Slow (minutes): one at a time.
//! Each doctor runs in its own process group, killed on drop; doctor kills its case trees.

mod common;

use std::path::Path;
use std::sync::Mutex;

use serde_json::Value;

use common::{json_in_group, run_in_group};

static HEAVY: Mutex<()> = Mutex::new(());

fn json(args: &[&str]) -> Value {
    json_in_group(args).1
}

fn buggy() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("repro/fabric_buggy.py")
        .to_string_lossy()
        .into_owned()
}

fn digests(doc: &Value) -> Vec<(String, String, String, Option<String>)> {
    doc["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| {
            (
                c["variant"].as_str().unwrap_or("").to_string(),
                c["ctx"].as_str().unwrap_or("").to_string(),
                c["outcome"].as_str().unwrap_or("").to_string(),
                c["result_digest"].as_str().map(String::from),
            )
        })
        .collect()
}

#[test]
fn scan_fix_of_fabric_buggy_trains_to_the_hand_fixed_weights() {
    let _one = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join("fabric_buggy.py");
    std::fs::copy(buggy(), &copy).expect("copy");
    let copy = copy.to_string_lossy().into_owned();
    let fixed = run_in_group(&["scan", "--fix", &copy]);
    assert_eq!(fixed.status.code(), Some(0), "{fixed:?}");

    let reference = json(&[
        "repro",
        "fabric",
        "--variant",
        "fixed",
        "--ctx",
        "spawn",
        "--accelerator",
        "cpu",
        "--format",
        "json",
    ]);
    let want = digests(&reference);
    assert_eq!(want.len(), 1, "{reference}");
    let want_digest = want[0]
        .3
        .clone()
        .expect("the hand-fixed script reports a digest");

    let ours = json(&[
        "repro",
        &copy,
        "--ctx",
        "spawn,forkserver",
        "--accelerator",
        "cpu",
        "--format",
        "json",
        "--",
        "--ctx",
        "{ctx}",
    ]);
    let got = digests(&ours);
    assert_eq!(got.len(), 2, "{ours}");
    for (_, ctx, outcome, digest) in got {
        assert_eq!(outcome, "ok", "{ctx}: {ours}");
        assert_eq!(
            digest.as_deref(),
            Some(want_digest.as_str()),
            "{ctx}: weights differ"
        );
    }
}

#[test]
fn verify_fix_on_fabric_buggy_says_fix_verified() {
    let _one = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let before = std::fs::read(buggy()).expect("read");
    let out = run_in_group(&[
        "repro",
        &buggy(),
        "--verify-fix",
        "--accelerator",
        "cpu",
        "--format",
        "json",
    ]);
    let doc: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(out.status.code(), Some(0), "{doc}");
    assert_eq!(doc["verdict"]["fix_verified"], true, "{doc}");
    assert!(
        doc["verdict"]["summary"]
            .as_str()
            .unwrap()
            .starts_with("fix verified")
    );
    assert!(doc["diff"].as_str().unwrap().contains("+def main():"));
    let cases = digests(&doc);
    assert_eq!(cases.len(), 6);
    for (variant, ctx, outcome, _) in &cases {
        match variant.as_str() {
            "fixed" => assert_eq!(outcome, "ok", "fixed under {ctx}"),
            // The script asks its DataLoader for spawn by default: every context re-imports it.
            "original" => assert_eq!(outcome, "eaddrinuse", "original under {ctx}"),
            other => panic!("variant {other}"),
        }
    }
    for c in doc["cases"].as_array().unwrap() {
        assert_eq!(c["leftovers"].as_array().map(Vec::len), Some(0), "{c}");
    }
    assert_eq!(
        std::fs::read(buggy()).expect("read"),
        before,
        "the user's file was touched"
    );
}

#[test]
fn verify_fix_refuses_what_it_cannot_fix() {
    let refused =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/scan_fix/refuse_exec.py");
    let out = run_in_group(&["repro", &refused.to_string_lossy(), "--verify-fix"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot be fixed automatically") && err.contains("hint:"),
        "{err}"
    );
    let clean = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/scan/defines_only.py");
    let out = run_in_group(&["repro", &clean.to_string_lossy(), "--verify-fix"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no import-time launch"));
}
