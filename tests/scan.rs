//! `doctor scan` end to end: the fixture corpus, output formats, bad inputs, exit codes, and no
//! false positives on the real torch/lightning sources.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use serde_json::Value;

use common::skip_or_fail;

const FIXTURES: &str = "tests/fixtures/scan";

fn doctor() -> Command {
    let mut cmd = Command::cargo_bin("doctor").expect("binary builds");
    cmd.env("NO_COLOR", "1");
    cmd
}

fn scan_json(args: &[&str]) -> (Value, Output) {
    let out = doctor()
        .arg("scan")
        .arg("--format")
        .arg("json")
        .args(args)
        .output()
        .expect("runs");
    let doc: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    (doc, out)
}

fn codes_lines(doc: &Value) -> BTreeSet<(String, u64)> {
    doc["findings"]
        .as_array()
        .expect("diagnostics array")
        .iter()
        .map(|d| {
            (
                d["code"].as_str().unwrap_or("?").to_string(),
                d["location"]["line"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

/// Expectations written in a fixture: `# expect: S001 S002` on a flagged line, `# expect: S001@6`
/// anywhere, `# expect: clean`; `# options: --platform macos` sets scan flags.
fn expectations(text: &str) -> (Option<BTreeSet<(String, u64)>>, Vec<String>) {
    let mut expected = BTreeSet::new();
    let mut annotated = false;
    let mut options = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if let Some(rest) = line.split("# options:").nth(1) {
            options.extend(rest.split_whitespace().map(str::to_string));
        }
        let Some(rest) = line.split("# expect:").nth(1) else {
            continue;
        };
        annotated = true;
        for token in rest.split_whitespace() {
            match token.split_once('@') {
                Some((code, at)) => {
                    expected.insert((code.to_string(), at.parse().expect("line number after @")));
                }
                None if token == "clean" => {}
                None => {
                    expected.insert((token.to_string(), i as u64 + 1));
                }
            }
        }
    }
    (annotated.then_some(expected), options)
}

/// The scan options a fixture's `# options:` line asks for (default Python 3.11 on Linux).
fn fixture_options(options: &[String]) -> ddp_doctor::scan::ScanOptions {
    use ddp_doctor::scan::{Platform, ScanOptions, parse_version};
    let mut opts = ScanOptions::default();
    for pair in options.chunks(2) {
        match (pair[0].as_str(), pair.get(1).map(String::as_str)) {
            ("--python-version", Some(v)) => {
                opts.python_version = parse_version(v).expect("version")
            }
            ("--platform", Some("linux")) => opts.platform = Platform::Linux,
            ("--platform", Some("macos")) => opts.platform = Platform::Macos,
            ("--platform", Some("windows")) => opts.platform = Platform::Windows,
            other => panic!("unknown fixture option {other:?}"),
        }
    }
    opts
}

/// Every fixture through the library (one process, no `doctor` per file); the exit codes of the
/// command are checked by the CLI tests below.
#[test]
fn fixture_corpus_matches_expectations() {
    let mut failures = Vec::new();
    let mut checked = 0;
    let mut entries: Vec<PathBuf> = std::fs::read_dir(FIXTURES)
        .expect("fixture dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "py"))
        .collect();
    entries.sort();
    for path in entries {
        let bytes = std::fs::read(&path).expect("read fixture");
        let text = String::from_utf8_lossy(&bytes);
        let (expected, options) = expectations(&text);
        let expected = match expected {
            Some(e) => e,
            None if bytes.is_empty() => BTreeSet::new(),
            None => {
                failures.push(format!("{}: no `# expect:` annotation", path.display()));
                continue;
            }
        };
        let p = path.to_str().expect("utf-8 path");
        let reports = ddp_doctor::scan::scan_paths(&[p.to_string()], &fixture_options(&options))
            .expect("scan");
        let got: BTreeSet<(String, u64)> = reports
            .iter()
            .flat_map(|r| r.diagnostics.iter())
            .map(|d| (d.code.to_string(), d.line as u64))
            .collect();
        if got != expected {
            failures.push(format!("{p}: expected {expected:?}, got {got:?}"));
        }
        checked += 1;
    }
    assert!(checked >= 40, "only {checked} fixtures checked");
    assert!(
        failures.is_empty(),
        "fixture mismatches:\n{}",
        failures.join("\n")
    );
}

#[test]
fn seed_is_an_error_with_spawn_evidence() {
    let (doc, out) = scan_json(&[
        "--python-version",
        "3.11",
        "--platform",
        "linux",
        "tests/fixtures/scan/seed.py",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let diags = doc["findings"].as_array().expect("array");
    // One finding for the launch line, the spawn evidence attached as a note (issue 19).
    assert_eq!(diags.len(), 1);
    assert_eq!(diags[0]["code"], "S002");
    assert_eq!(diags[0]["severity"], "error");
    assert_eq!(
        diags[0]["related"][0]["line"], 10,
        "evidence: the spawn DataLoader line"
    );
    // The help keeps the real call, with its arguments.
    let fix = diags[0]["fix"]["message"].as_str().expect("fix");
    assert!(fix.contains("        fabric.launch()\n"), "{fix}");
    assert_eq!(doc["schema_version"], 2);
    assert_eq!(doc["files_scanned"], 1);
}

#[test]
fn snapshot_text_seed() {
    let out = doctor()
        .args([
            "scan",
            "--python-version",
            "3.11",
            "--platform",
            "linux",
            "tests/fixtures/scan/seed.py",
        ])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    insta::assert_snapshot!("scan_seed_text", String::from_utf8_lossy(&out.stdout));
    insta::assert_snapshot!("scan_seed_summary", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn snapshot_json_seed() {
    let out = doctor()
        .args([
            "scan",
            "--format",
            "json",
            "--python-version",
            "3.11",
            "--platform",
            "linux",
        ])
        .arg("tests/fixtures/scan/seed.py")
        .output()
        .expect("runs");
    // The envelope's machine, time and version change from run to run.
    insta::with_settings!({filters => vec![
        (r#""hostname": "[^"]*""#, r#""hostname": "[HOST]""#),
        (r#""taken_at": "[^"]*""#, r#""taken_at": "[TIME]""#),
        (r#""doctor_version": "[^"]*""#, r#""doctor_version": "[VERSION]""#),
    ]}, {
        insta::assert_snapshot!("scan_seed_json", String::from_utf8_lossy(&out.stdout));
    });
}

#[test]
fn fixed_seed_is_clean_and_exits_zero() {
    let out = doctor()
        .args(["scan", "tests/fixtures/scan/seed_fixed.py"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("No problems found"));
}

#[test]
fn nonexistent_path_is_a_usage_error() {
    let out = doctor()
        .args(["scan", "no/such/dir"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("error: cannot scan 'no/such/dir'"), "{err}");
    assert!(err.contains("hint:"), "{err}");
}

#[test]
fn unknown_rule_code_is_a_usage_error() {
    let out = doctor()
        .args(["scan", "--select", "X123", FIXTURES])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn stdin_is_scanned_as_stdin() {
    let seed = std::fs::read("tests/fixtures/scan/seed.py").expect("seed");
    let out = doctor()
        .args([
            "scan",
            "--format",
            "json",
            "--python-version",
            "3.11",
            "--platform",
            "linux",
            "-",
        ])
        .write_stdin(seed)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(doc["findings"][0]["location"]["path"], "<stdin>");
    assert_eq!(
        codes_lines(&doc),
        [("S002".into(), 6)].into_iter().collect()
    );
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(path, bytes).expect("write");
}

#[test]
fn bad_inputs_are_reported_and_the_rest_is_scanned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    // Parsed (it names `cuda`), so its syntax error is reported; see scan::NEEDLES.
    write(d, "a_broken.py", b"import torch.cuda\ndef f(:\n    pass\n");
    write(
        d,
        "b_flagged.py",
        b"import torch.distributed as dist\ndist.init_process_group('gloo')\n",
    );
    write(d, "c_latin1_no_cookie.py", b"x = 'caf\xe9'\n");
    write(
        d,
        "d_latin1_cookie.py",
        b"# coding: latin-1\nx = 'caf\xe9'\n",
    );
    write(d, "e_binary.py", b"\x7fELF\x02\x01\x01\x00\x00\x00garbage");
    write(d, "f_empty.py", b"");
    write(d, "g_unknown_encoding.py", b"# coding: klingon\nx = 1\n");
    let root = d.to_str().expect("utf-8");
    let (doc, out) = scan_json(&["--python-version", "3.11", "--platform", "linux", root]);
    assert_eq!(out.status.code(), Some(1));
    let got = codes_lines(&doc);
    assert_eq!(
        got,
        [("S001".into(), 2), ("S900".into(), 2)]
            .into_iter()
            .collect()
    );
    let s900 = doc["findings"]
        .as_array()
        .expect("array")
        .iter()
        .find(|d| d["code"] == "S900")
        .expect("S900");
    assert!(
        s900["location"]["path"]
            .as_str()
            .is_some_and(|p| p.ends_with("a_broken.py"))
    );
    assert_eq!(
        s900["location"]["column"], 7,
        "the location of the syntax error"
    );
    assert_eq!(doc["files_scanned"], 4);
    let skipped: Vec<String> = doc["files_skipped"]
        .as_array()
        .expect("array")
        .iter()
        .map(|s| {
            format!(
                "{} {}",
                s["path"].as_str().unwrap_or(""),
                s["reason"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(skipped.len(), 3, "{skipped:?}");
    assert!(
        skipped[0].contains("c_latin1_no_cookie.py") && skipped[0].contains("not valid UTF-8"),
        "{skipped:?}"
    );
    assert!(
        skipped[1].contains("e_binary.py") && skipped[1].contains("binary"),
        "{skipped:?}"
    );
    assert!(
        skipped[2].contains("unsupported source encoding 'klingon'"),
        "{skipped:?}"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("warning: skipped"), "{err}");
}

#[test]
fn walking_honours_gitignore_and_skips_hidden_venv_and_cache_dirs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let bad = b"import torch.distributed as dist\ndist.init_process_group('gloo')\n";
    std::fs::create_dir_all(d.join(".git")).expect("mkdir .git");
    write(d, ".gitignore", b"ignored.py\nbuild/\n");
    write(d, "main.py", bad);
    write(d, "pkg/mod.py", bad);
    write(d, "notes.txt", bad);
    write(d, "ignored.py", bad);
    write(d, "build/gen.py", bad);
    write(d, ".hidden/x.py", bad);
    write(d, "__pycache__/x.py", bad);
    write(d, "node_modules/x.py", bad);
    write(d, "env/pyvenv.cfg", b"home = /usr/bin\n");
    write(d, "env/lib/site-packages/lib.py", bad);
    let root = d.to_str().expect("utf-8");
    let (doc, _) = scan_json(&[root]);
    let mut paths: Vec<String> = doc["findings"]
        .as_array()
        .expect("array")
        .iter()
        .map(|x| {
            x["location"]["path"]
                .as_str()
                .unwrap_or("")
                .strip_prefix(root)
                .unwrap_or("?")
                .to_string()
        })
        .collect();
    paths.sort();
    assert_eq!(paths, ["/main.py", "/pkg/mod.py"]);
    assert_eq!(doc["files_scanned"], 2);
    // Given explicitly, a virtual environment's site-packages is scanned.
    let site = d.join("env/lib/site-packages");
    let (doc, _) = scan_json(&[site.to_str().expect("utf-8")]);
    assert_eq!(doc["files_scanned"], 1);
    assert_eq!(doc["findings"].as_array().map(Vec::len), Some(1));
}

#[test]
fn sarif_has_rule_metadata_and_locations() {
    let out = doctor()
        .args([
            "scan",
            "--format",
            "sarif",
            "--python-version",
            "3.11",
            "--platform",
            "linux",
        ])
        .arg("tests/fixtures/scan/seed.py")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(doc["version"], "2.1.0");
    let run = &doc["runs"][0];
    let rules = run["tool"]["driver"]["rules"].as_array().expect("rules");
    let ids: Vec<&str> = rules.iter().filter_map(|r| r["id"].as_str()).collect();
    assert_eq!(ids, ["S001", "S002", "S003", "S900"]);
    for r in rules {
        for key in [
            "name",
            "shortDescription",
            "fullDescription",
            "help",
            "defaultConfiguration",
        ] {
            assert!(!r[key].is_null(), "rule {} lacks {key}", r["id"]);
        }
    }
    let results = run["results"].as_array().expect("results");
    assert_eq!(results.len(), 1);
    assert_eq!(results[0]["ruleId"], "S002");
    assert_eq!(results[0]["level"], "error");
    assert_eq!(
        results[0]["relatedLocations"][0]["physicalLocation"]["region"]["startLine"],
        10
    );
    let loc = &results[0]["locations"][0]["physicalLocation"];
    assert_eq!(
        loc["artifactLocation"]["uri"],
        "tests/fixtures/scan/seed.py"
    );
    assert_eq!(loc["region"]["startLine"], 6);
    assert_eq!(loc["region"]["startColumn"], 1);
    assert_eq!(loc["region"]["endLine"], 6);
    assert_eq!(loc["region"]["endColumn"], 16);
}

#[test]
fn github_annotations() {
    let out = doctor()
        .args([
            "scan",
            "--format",
            "github",
            "--python-version",
            "3.11",
            "--platform",
            "linux",
        ])
        .arg("tests/fixtures/scan/seed.py")
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text.lines().next().expect("a line");
    assert!(
        first.starts_with(
            "::error file=tests/fixtures/scan/seed.py,line=6,col=1,endLine=6,endColumn=16,title=S002 spawn-reimports-main::"
        ),
        "{first}"
    );
    assert_eq!(
        text.lines().count(),
        1,
        "one line per diagnostic (newlines escaped)"
    );
}

#[test]
fn select_ignore_and_exit_zero() {
    let seed = "tests/fixtures/scan/seed.py";
    let (doc, _) = scan_json(&[
        "--platform",
        "linux",
        "--python-version",
        "3.11",
        "--select",
        "S002",
        seed,
    ]);
    assert_eq!(
        codes_lines(&doc),
        [("S002".into(), 6)].into_iter().collect()
    );
    let (doc, _) = scan_json(&[
        "--platform",
        "linux",
        "--python-version",
        "3.11",
        "--ignore",
        "S00",
        seed,
    ]);
    assert!(codes_lines(&doc).is_empty());
    // Without S002 selected, the launch line is still reported, as S001.
    let (doc, _) = scan_json(&[
        "--platform",
        "linux",
        "--python-version",
        "3.11",
        "--select",
        "S001",
        seed,
    ]);
    assert_eq!(
        codes_lines(&doc),
        [("S001".into(), 6)].into_iter().collect()
    );
    let out = doctor()
        .args(["scan", "--exit-zero", seed])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0));
}

/// The managed venv (`doctor`'s setup creates it) holds torch and lightning: library modules only
/// define things, so none may be flagged S001/S002.
#[test]
fn no_false_positives_on_torch_and_lightning() {
    let Some(home) = std::env::var_os("HOME") else {
        skip_or_fail("no_false_positives_on_torch_and_lightning: HOME is not set");
        return;
    };
    let python = Path::new(&home).join(".cache/ddp-doctor/venv/bin/python");
    if !python.exists() {
        skip_or_fail(&format!(
            "no_false_positives_on_torch_and_lightning: {} is absent (the project's setup creates it)",
            python.display()
        ));
        return;
    }
    let out = std::process::Command::new(&python)
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['purelib'])",
        ])
        .output()
        .expect("python runs");
    let site = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let dirs: Vec<String> = [
        "torch",
        "lightning",
        "lightning_fabric",
        "pytorch_lightning",
    ]
    .iter()
    .map(|p| site.join(p))
    .filter(|p| p.is_dir())
    .map(|p| p.display().to_string())
    .collect();
    assert!(
        !dirs.is_empty(),
        "no torch/lightning under {}",
        site.display()
    );
    let mut args = vec!["--python-version", "3.11", "--platform", "linux"];
    args.extend(dirs.iter().map(String::as_str));
    let (doc, _) = scan_json(&args);
    let scanned = doc["files_scanned"].as_u64().unwrap_or(0);
    assert!(scanned > 1000, "only {scanned} files scanned");
    let diags = doc["findings"].as_array().expect("array");
    let launches: Vec<String> = diags
        .iter()
        .filter(|d| d["code"] == "S001" || d["code"] == "S002")
        .map(|d| {
            format!(
                "{} {}:{} {}",
                d["code"], d["location"]["path"], d["location"]["line"], d["message"]
            )
        })
        .collect();
    let s003 = diags.iter().filter(|d| d["code"] == "S003").count();
    let s900 = diags.iter().filter(|d| d["code"] == "S900").count();
    eprintln!(
        "scanned {scanned} library files: {} S001/S002, {s003} S003, {s900} S900",
        launches.len()
    );
    assert!(
        launches.is_empty(),
        "false positives:\n{}",
        launches.join("\n")
    );
    assert_eq!(s900, 0, "the parser rejects valid library code");
}

#[test]
fn huge_files_are_skipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut big = b"import torch.distributed as dist\ndist.init_process_group('gloo')\n".to_vec();
    big.resize(11 * 1024 * 1024, b'\n');
    write(dir.path(), "huge.py", &big);
    // Only files over the limit: nothing was checked, which is an error, not a pass.
    let out = doctor()
        .args([
            "scan",
            "--format",
            "json",
            dir.path().to_str().expect("utf-8"),
        ])
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("error: nothing was scanned"), "{err}");
    assert!(err.contains("hint: files over 10 MiB"), "{err}");
    assert!(out.stdout.is_empty());
    // Beside a file that is scanned, the big one is skipped with its reason.
    write(dir.path(), "small.py", b"x = 1\n");
    let (doc, out) = scan_json(&[dir.path().to_str().expect("utf-8")]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "a skipped file is not a finding"
    );
    assert_eq!(doc["files_scanned"], 1);
    let reason = doc["files_skipped"][0]["reason"].as_str().unwrap_or("");
    assert!(reason.contains("larger than the 10 MiB limit"), "{reason}");
}

/// A FIFO, a socket or a device named on the command line: a prompt `error:` and `hint:` (exit
/// 2), never a read that blocks; inside a directory they are not picked up.
#[test]
fn special_files_are_refused_without_blocking() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("pipe.py");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).expect("mkfifo");
    let sock = dir.path().join("sock.py");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).expect("bind");
    for (path, kind) in [
        (fifo.to_str().unwrap(), "a FIFO"),
        (sock.to_str().unwrap(), "a socket"),
        ("/dev/zero", "a device"),
    ] {
        for fix in [false, true] {
            let mut cmd = common::doctor();
            cmd.arg("scan").arg(path).process_group(0);
            if fix {
                cmd.arg("--fix");
            }
            let mut child = cmd
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("doctor starts");
            let start = std::time::Instant::now();
            while child.try_wait().expect("wait").is_none() {
                if start.elapsed() > std::time::Duration::from_secs(10) {
                    let _ = nix::sys::signal::killpg(
                        nix::unistd::Pid::from_raw(child.id() as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                    let _ = child.wait();
                    panic!("doctor scan {path} blocked");
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            let out = child.wait_with_output().expect("output");
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{path}: {err}");
            assert!(
                err.contains("error: cannot scan") && err.contains(kind),
                "{err}"
            );
            assert!(err.contains("hint: "), "{err}");
            assert!(
                !err.contains("No problems found") && !err.contains("Fixed"),
                "{err}"
            );
        }
    }
    // In a directory, with a real file beside them, they are not scanned and nothing blocks.
    std::fs::write(dir.path().join("ok.py"), "x = 1\n").expect("write");
    let out = common::run(&["scan", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 file scanned"));
}

/// `from utils import *` follows the sibling module (and its own star imports, relative ones
/// too); with no sibling (an installed module: guess.py; a missing one: missing.py), a name the
/// file never binds is read as the library it spells; a name the file binds itself is never
/// guessed (issue 19).
#[test]
fn star_imports_are_followed_to_siblings_or_read_as_the_library() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/scan_star");
    let copy = |rel: &str| {
        let to = dir.path().join(rel);
        std::fs::create_dir_all(to.parent().unwrap()).expect("mkdir");
        std::fs::copy(src.join(rel), &to).expect("copy");
    };
    for rel in [
        "utils.py",
        "pkg/__init__.py",
        "pkg/helpers.py",
        "train.py",
        "guess.py",
        "shadowed.py",
    ] {
        copy(rel);
    }
    // A module that is nowhere (guess.py's is installed, not beside it): the same guess.
    std::fs::write(
        dir.path().join("missing.py"),
        "from somewhere import *\n\ntorch.distributed.init_process_group(\"gloo\")\ndist.init_process_group(\"gloo\")\nL.Fabric(devices=2).launch()\n",
    )
    .expect("write");
    let (doc, _) = scan_json(&[dir.path().to_str().unwrap()]);
    let found: BTreeSet<(String, String, u64)> = doc["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            let p = f["location"]["path"].as_str().unwrap();
            let name = Path::new(p)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (
                name,
                f["code"].as_str().unwrap().to_string(),
                f["location"]["line"].as_u64().unwrap(),
            )
        })
        .collect();
    let expected: BTreeSet<(String, String, u64)> = [
        ("guess.py", 6),
        ("guess.py", 7),
        ("missing.py", 3),
        ("missing.py", 4),
        ("missing.py", 5),
        ("train.py", 3),
        ("train.py", 6),
    ]
    .into_iter()
    .map(|(f, l)| (f.to_string(), "S001".to_string(), l))
    .collect();
    assert_eq!(found, expected);
    // --fix sees the same launches through the sibling, and its output scans clean.
    let out = doctor()
        .args(["scan", "--fix", "train.py"])
        .current_dir(dir.path())
        .output()
        .expect("runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fixed = std::fs::read_to_string(dir.path().join("train.py")).expect("read");
    assert!(fixed.starts_with("from utils import *\n"), "{fixed}");
    assert!(fixed.contains("    fabric.launch()\n"), "{fixed}");
}

/// One file named several ways (its path, its directory, `./path`, a hard link) is scanned and
/// fixed once: a second rewrite would find it changed and fail.
#[test]
fn a_file_named_twice_is_fixed_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("t.py");
    std::fs::write(
        &f,
        "import torch.distributed as dist\ndist.init_process_group(\"gloo\")\nx = 1\n",
    )
    .expect("write");
    std::fs::hard_link(&f, dir.path().join("u.py")).expect("link");
    let out = doctor()
        .args(["scan", "--fix", "t.py", ".", "./t.py", "u.py"])
        .current_dir(dir.path())
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("Fixed 1 file.") && err.contains("1 file scanned"),
        "{err}"
    );
}
