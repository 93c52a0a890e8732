//! A file nested deeper than scan's depth guard (`scan::walk::MAX_DEPTH`, 400) is never reported
//! as clean: a launch at the bottom of a 1,000-term `+` chain (and its neighbours: calls,
//! attributes, subscripts, unary and power chains, conditionals, nested calls) compiles in the
//! managed venv's Python, and `doctor scan` says S900 "not fully checked" there and exits 1;
//! `--fix` refuses such a file and leaves it as it was.

mod common;

use std::path::Path;
use std::process::Command;

use common::{need, torch_python};
use ddp_doctor::scan::{Rule, ScanOptions, scan_source};

const DOCTOR: &str = env!("CARGO_BIN_EXE_doctor");
const LAUNCH: &str = "dist.init_process_group(\"gloo\")";

/// Every kind of chain, `n` levels deep (about), with the launch at the bottom. Nested calls stay
/// under Python's 200 brackets: three levels a bracket.
fn chains(n: usize) -> Vec<(&'static str, String)> {
    let b = (n / 3).min(190);
    vec![
        ("plus", format!("{LAUNCH}{}", " + 1".repeat(n))),
        ("method calls", format!("{LAUNCH}{}", ".a()".repeat(n / 2))),
        ("attributes", format!("{LAUNCH}{}", ".a".repeat(n))),
        ("subscripts", format!("{LAUNCH}{}", "[0]".repeat(n))),
        ("not", format!("{}{LAUNCH}", "not ".repeat(n))),
        ("negation", format!("{}{LAUNCH}", "-".repeat(n))),
        ("power", format!("{}{LAUNCH}", "2 ** ".repeat(n))),
        (
            "conditional",
            format!("{}{LAUNCH}", "a if c else ".repeat(n)),
        ),
        (
            "nested calls",
            format!("{}{LAUNCH}{}", "f(- - ".repeat(b), ")".repeat(b)),
        ),
    ]
}

fn program(chain: &str) -> String {
    format!("import torch.distributed as dist\nx = {chain}\n")
}

fn codes(source: &str) -> Vec<(Rule, usize)> {
    scan_source("deep.py", source, &ScanOptions::default())
        .iter()
        .map(|d| (d.code, d.line))
        .collect()
}

/// Never clean, at any depth: across the limit, each chain is either checked (the launch is an
/// S001 on line 2) or said not to be (S900 on line 2), and past 1,000 levels always S900.
#[test]
fn a_launch_at_any_depth_is_found_or_the_file_is_not_fully_checked() {
    for n in (1..60).chain(380..430).chain([1000, 3000]) {
        for (kind, chain) in chains(n) {
            let found = codes(&program(&chain));
            let launch = found.iter().any(|&(c, l)| c == Rule::S001 && l == 2);
            let cut = found.iter().any(|&(c, l)| c == Rule::S900 && l == 2);
            assert!(launch || cut, "{kind} {n} deep: reported clean: {found:?}");
            if n < 100 {
                assert!(
                    launch && !cut,
                    "{kind} {n} deep is fully checked: {found:?}"
                );
            }
            if n >= 1000 {
                assert!(cut, "{kind} {n} deep is past the guard: {found:?}");
            }
        }
    }
    // The checked part still reports what it finds: a launch above a deep chain of numbers.
    let both = codes(&format!(
        "import torch.distributed as dist\n{LAUNCH}\ny = 1{}\n",
        " + 1".repeat(1000)
    ));
    assert_eq!(both, vec![(Rule::S001, 2), (Rule::S900, 3)]);
}

fn python_compiles(python: &Path, files: &[std::path::PathBuf]) {
    let out = Command::new(python)
        .arg("-c")
        .arg("import sys\nfor p in sys.argv[1:]: compile(open(p).read(), p, 'exec')")
        .args(files)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "Python does not compile them: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The real thing: files Python 3 compiles, `doctor scan` in text and JSON, and `--fix`.
#[test]
fn doctor_scan_says_a_deep_launch_was_not_checked_and_exits_1() {
    let Some(python) = need(torch_python(), "the managed venv's Python") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<_> = chains(1000)
        .into_iter()
        .enumerate()
        .map(|(i, (_, chain))| {
            let p = dir.path().join(format!("deep{i}.py"));
            std::fs::write(&p, program(&chain)).unwrap();
            p
        })
        .collect();
    python_compiles(&python, &files);
    for file in &files {
        let f = file.to_str().unwrap();
        let text = Command::new(DOCTOR)
            .args(["scan", "--platform", "linux", f])
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&text.stdout);
        let stderr = String::from_utf8_lossy(&text.stderr);
        assert_eq!(text.status.code(), Some(1), "{f}: {stdout}{stderr}");
        assert!(!stderr.contains("No problems found"), "{f}: {stderr}");
        assert!(
            stdout.contains("error[S900]") && stdout.contains("not fully checked"),
            "{f}: {stdout}"
        );
        let json = Command::new(DOCTOR)
            .args(["scan", "--format", "json", f])
            .output()
            .unwrap();
        assert_eq!(json.status.code(), Some(1), "{f}");
        let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
        let found = doc["findings"].as_array().unwrap();
        assert!(
            found
                .iter()
                .any(|d| d["code"] == "S900" && d["location"]["line"] == 2),
            "{f}: {doc}"
        );
    }

    // `--fix` on a file with a launch it sees and a chain it cannot check: refused, untouched.
    let mixed = dir.path().join("mixed.py");
    let source = format!(
        "import torch.distributed as dist\n{LAUNCH}\ny = 1{}\n",
        " + 1".repeat(1000)
    );
    std::fs::write(&mixed, &source).unwrap();
    python_compiles(&python, std::slice::from_ref(&mixed));
    let out = Command::new(DOCTOR)
        .args(["scan", "--fix", mixed.to_str().unwrap()])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("not fixed") && stderr.contains("not checked"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(&mixed).unwrap(),
        source,
        "untouched"
    );
}
