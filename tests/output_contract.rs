//! Issue 21, "one contract": the same flags and rules on every command that prints a document.
//! Each test runs the real binary (no machine state is needed beyond what `ports`/`tree` read).

mod common;

use std::path::{Path, PathBuf};

use common::*;

fn run(args: &[&str]) -> std::process::Output {
    doctor().args(args).output().expect("doctor runs")
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn scan_fixture() -> String {
    fixtures().join("scan").to_str().unwrap().to_string()
}

fn report_fixture() -> String {
    fixtures()
        .join("reports/report-node-a.yaml")
        .to_str()
        .unwrap()
        .to_string()
}

fn json_of(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// `--output-format` (ruff's name) is `--format` wherever a document is printed.
#[test]
fn output_format_is_an_alias_of_format() {
    let scan = scan_fixture();
    let merge = report_fixture();
    let cases: Vec<Vec<&str>> = vec![
        vec!["scan", "--output-format", "json", &scan],
        vec!["ports", "--output-format", "json"],
        vec!["tree", "--output-format", "json"],
        vec!["merge", &merge, "--output-format", "json"],
        vec!["report", "--output-format", "json"],
    ];
    for args in cases {
        let out = run(&args);
        assert_ne!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let doc = json_of(&out);
        assert_eq!(doc["schema_version"], 2, "{args:?}");
    }
}

/// An option a command does not have: no advice to pass it after `--`; the hint names the
/// command and where its options are listed.
#[test]
fn unknown_options_get_an_accurate_hint() {
    for args in [
        vec!["repro", "-o", "x.json"],
        vec!["ports", "--bogus"],
        vec!["scan", "--zzzz"],
        vec!["tree", "--colour", "never"],
    ] {
        let out = run(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(!err.contains("-- --"), "{args:?}: misleading hint: {err}");
        assert!(!err.contains("as a value"), "{args:?}: {err}");
        let hint = err.lines().find(|l| l.starts_with("hint: ")).unwrap();
        // The closest option when there is one (`--colour` -> `--color`), else the command.
        assert!(
            hint.contains(&format!("doctor {}", args[0])) || hint.contains("similar argument"),
            "{hint}"
        );
    }
}

/// `-o FILE` on every command that prints a document: the file holds the document (format from
/// the extension), stdout nothing; an unusable path fails before any work with error + hint.
#[test]
fn output_file_on_every_document_command() {
    let dir = tempfile::tempdir().unwrap();
    let scan = scan_fixture();
    let merge = report_fixture();
    let commands: Vec<(&str, Vec<&str>)> = vec![
        ("ports", vec!["ports"]),
        ("tree", vec!["tree"]),
        ("scan", vec!["scan", &scan, "--format", "json"]),
        ("merge", vec!["merge", &merge]),
        ("report", vec!["report"]),
        ("snapshot", vec!["snapshot"]),
    ];
    for (name, args) in &commands {
        let file = dir.path().join(format!("{name}.json"));
        let mut with_o = args.clone();
        let f = file.to_str().unwrap().to_string();
        with_o.extend(["-o", &f]);
        let out = run(&with_o);
        assert_ne!(out.status.code(), Some(2), "{with_o:?}: {out:?}");
        assert!(
            out.stdout.is_empty(),
            "{name} -o printed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap())
            .unwrap_or_else(|e| panic!("{name} -o FILE.json is not JSON: {e}"));
        assert_eq!(doc["schema_version"], 2, "{name}");
        // An unusable path: exit 2 with a hint, nothing else printed.
        let mut bad = args.clone();
        bad.extend(["-o", "/nonexistent-dir/x.json"]);
        let out = run(&bad);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {err}");
        assert!(
            err.starts_with("error: ") && err.contains("\nhint: "),
            "{err}"
        );
        assert!(out.stdout.is_empty(), "{bad:?}");
    }
}

/// Tables unless a document is asked for, whether stdout is a terminal or a pipe (the tests'
/// stdout is a pipe): `report` and `merge` no longer switch to YAML.
#[test]
fn a_pipe_gets_a_table_as_a_terminal_does() {
    let merge = report_fixture();
    for args in [vec!["merge", merge.as_str()], vec!["report"]] {
        let out = run(&args);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            !text.starts_with("schema_version") && !text.starts_with('{'),
            "{args:?} printed a document into a pipe: {text}"
        );
        assert!(text.contains("summary:"), "{args:?}: {text}");
    }
}

/// "1 error", not "1 errors".
#[test]
fn counts_agree_in_number() {
    let merge = report_fixture();
    let out = run(&["merge", &merge]);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with("summary:")).unwrap();
    let words: Vec<&str> = line.split([' ', ',']).filter(|w| !w.is_empty()).collect();
    let mut checked = 0;
    for pair in words.windows(2) {
        if let Ok(n) = pair[0].parse::<u64>() {
            let noun = pair[1];
            if noun.starts_with("error") || noun.starts_with("warning") {
                assert_eq!(noun.ends_with('s'), n != 1, "{line}");
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 2, "{line}");
    assert!(
        ddp_doctor::render::counts(&serde_json::json!({"errors": 1, "warnings": 1, "info": 2}))
            .starts_with("1 error, 1 warning, ")
    );
}

/// `-q`: only the document and errors.
#[test]
fn quiet_scan_prints_only_the_findings() {
    let scan = scan_fixture();
    let out = run(&["-q", "scan", &scan]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("Found") && !err.contains("problem"), "{err}");
    let loud = run(&["scan", &scan]);
    assert!(
        String::from_utf8_lossy(&loud.stderr).contains("Found"),
        "the summary exists without -q (the test can fail)"
    );
}

/// A schema_version of the wrong type is named as such, not "no schema_version field".
#[test]
fn bad_schema_versions_are_named() {
    let dir = tempfile::tempdir().unwrap();
    for v in ["\"2\"", "2.5", "-1"] {
        let f = dir.path().join("s.json");
        std::fs::write(&f, format!("{{\"schema_version\": {v}}}")).unwrap();
        let out = run(&["ports", "--from", f.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(!err.contains("no schema_version field"), "{v}: {err}");
        assert!(err.contains(&format!("schema_version {v}")), "{err}");
        assert!(err.contains("\nhint: "), "{err}");
    }
}

/// `report` shows one way to keep secrets (the global `--show-secrets`); `--no-redact` still
/// works for scripts but is not advertised.
#[test]
fn report_has_one_show_secrets_flag() {
    let help = run(&["report", "--help"]);
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(!text.contains("--no-redact"), "{text}");
    assert!(text.contains("--show-secrets"), "{text}");
    let out = run(&["report", "--no-redact", "--format", "json"]);
    assert_ne!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(json_of(&out)["redacted"], false);
    let help = run(&["scan", "--help"]);
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(!text.contains("schema_version 1"), "{text}");
}
