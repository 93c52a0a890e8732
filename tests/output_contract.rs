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
        vec!["snapshot", "--output-format", "json"],
        vec!["repro", "--list", "--output-format", "json"],
        vec!["explain", "D001", "--output-format", "json"],
        vec!["run", "--output-format", "json", "--", "true"],
    ];
    for args in cases {
        let out = run(&args);
        assert_ne!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let doc = json_of(&out);
        assert_eq!(doc["schema_version"], 2, "{args:?}");
        let kind = doc["kind"].as_str().unwrap_or_default();
        assert!(
            kind.starts_with(&format!("doctor-{}", args[0])),
            "{args:?}: {kind}"
        );
    }
}

/// An option a command does not have: no advice to pass it after `--`; the hint names the
/// command and where its options are listed.
#[test]
fn unknown_options_get_an_accurate_hint() {
    for args in [
        vec!["man", "-o", "x.json"],
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
        ("repro", vec!["repro", "--list"]),
        ("explain", vec!["explain", "D001"]),
        ("run", vec!["run", "--", "true"]),
    ];
    for (name, args) in &commands {
        let file = dir.path().join(format!("{name}.json"));
        let f = file.to_str().unwrap().to_string();
        let mut with_o = vec![args[0], "-o", &f];
        with_o.extend(&args[1..]);
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
        let mut bad = vec![args[0], "-o", "/nonexistent-dir/x.json"];
        bad.extend(&args[1..]);
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
    // Every command with a table: a table into the pipe, a document only when asked for.
    let scan = scan_fixture();
    for args in [
        vec!["ports", "--all"],
        vec!["tree"],
        vec!["merge", merge.as_str()],
        vec!["report"],
        vec!["repro", "--list"],
        vec!["explain"],
        vec!["explain", "D008"],
        vec!["scan", scan.as_str()],
    ] {
        let out = run(&args);
        assert_ne!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        let as_yaml: Result<serde_json::Value, _> = serde_yaml::from_str(&text);
        assert!(
            !as_yaml.is_ok_and(|v| v.get("schema_version").is_some()),
            "{args:?} printed a document into a pipe: {text}"
        );
        assert!(!text.trim().is_empty(), "{args:?}: nothing printed");
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

/// `-q` everywhere: stdout keeps the document or table, stderr says nothing but errors.
#[test]
fn quiet_means_only_the_document_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let scan = scan_fixture();
    let merge = report_fixture();
    let snap = dir.path().join("s.json");
    let snap = snap.to_str().unwrap();
    let record = dir.path().join("r.json");
    let record = record.to_str().unwrap();
    for args in [
        vec!["ports"],
        vec!["ports", "--free"],
        vec!["tree"],
        vec!["report"],
        vec!["merge", merge.as_str()],
        vec!["snapshot", "-o", snap],
        vec!["scan", scan.as_str()],
        vec!["repro", "--list"],
        vec!["explain", "D001"],
        vec!["run", "--", "sh", "-c", "exit 1"],
        vec!["run", "-o", record, "--", "sh", "-c", "sleep 30 & exit 1"],
    ] {
        let mut quiet = vec!["-q"];
        quiet.extend(&args);
        let out = run(&quiet);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.is_empty(), "-q {args:?} printed on stderr: {err}");
        // Without -q the same command talks (the test can fail), or it prints a document.
        if args[0] == "run" || args[0] == "snapshot" || args[0] == "scan" {
            let loud = run(&args);
            assert!(!loud.stderr.is_empty(), "{args:?} says nothing without -q");
        }
    }
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
    for v in ["\"2\"", "2.5", "-1", "null", "[2]", "{}", "true"] {
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

/// `--from` with another document of doctor's (a report, a run record) names what it is.
#[test]
fn from_names_the_kind_of_another_document() {
    let report = report_fixture();
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("run.json");
    let out = run(&["run", "-o", record.to_str().unwrap(), "--", "true"]);
    assert_eq!(out.status.code(), Some(0));
    let merged = run(&["merge", &report, "--format", "json"]);
    let merge_file = dir.path().join("merge.json");
    std::fs::write(&merge_file, &merged.stdout).unwrap();
    for (file, kind) in [
        (record.to_str().unwrap(), "run"),
        (merge_file.to_str().unwrap(), "merge"),
    ] {
        let out = run(&["ports", "--from", file]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains(&format!("it is a {kind} document")),
            "{kind}: {err}"
        );
        assert!(err.contains("\nhint: "), "{err}");
    }
    // A snapshot written now loads, envelope and all.
    let snap = dir.path().join("s.yaml");
    assert_eq!(
        run(&["snapshot", "-o", snap.to_str().unwrap()])
            .status
            .code(),
        Some(0)
    );
    let out = run(&[
        "ports",
        "--from",
        snap.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_ne!(out.status.code(), Some(2), "{out:?}");
    let doc = json_of(&out);
    assert_eq!(doc["kind"], "doctor-ports");
}

/// A D001 found live carries the user's line: the module-level launch the spawn child re-ran
/// (`doctor scan` of the rank's script, read from the rank's working directory), in the document
/// and in the text. Real torch: the store is a real `TCPStore`.
#[test]
fn a_live_d001_points_at_the_users_line() {
    let py = doctor()
        .args(["repro", "--setup", "--no-setup"])
        .output()
        .expect("doctor runs");
    if py.status.code() != Some(0) {
        skip_or_fail("no Python with torch (run scripts/test.sh)");
        return;
    }
    let py = String::from_utf8_lossy(&py.stdout).trim().to_string();
    let port = free_low_port();
    let root = env!("CARGO_MANIFEST_DIR");
    // The rank's identity in its environment from exec on (`env` execs python in place; the
    // helper starter removes rendezvous variables from the test's own environment).
    let _sit = Situation::start_cmd(
        std::process::Command::new("env")
            .current_dir(root)
            .arg("MASTER_ADDR=127.0.0.1")
            .arg(format!("MASTER_PORT={port}"))
            .args(["RANK=0", "LOCAL_RANK=0", "WORLD_SIZE=2"])
            .arg(&py)
            .arg("tests/helpers/store_at_import.py")
            .arg(port.to_string()),
    );
    let p = port.to_string();
    let out = run(&["ports", "--port", &p, "--format", "json"]);
    let doc = json_of(&out);
    let d001: Vec<&serde_json::Value> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"] == "D001")
        .collect();
    assert!(!d001.is_empty(), "no D001: {doc:#}");
    // The line of `store = dist.TCPStore(...)` in the helper.
    let source =
        std::fs::read_to_string(format!("{root}/tests/helpers/store_at_import.py")).unwrap();
    let line = source
        .lines()
        .position(|l| l.starts_with("store = dist.TCPStore"))
        .unwrap()
        + 1;
    for f in &d001 {
        let loc = &f["location"];
        assert_eq!(loc["path"], "tests/helpers/store_at_import.py", "{f:#}");
        assert_eq!(loc["line"], line, "{f:#}");
    }
    let out = run(&["ports", "--port", &p]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(" --> tests/helpers/store_at_import.py:{line}:")),
        "{text}"
    );
    // From a snapshot (another machine's files) no line is claimed.
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("s.json");
    run(&["snapshot", "-o", snap.to_str().unwrap()]);
    let doc = json_of(&run(&[
        "ports",
        "--port",
        &p,
        "--from",
        snap.to_str().unwrap(),
        "--format",
        "json",
    ]));
    assert!(
        doc["findings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f.get("location").is_none()),
        "{doc:#}"
    );
}
