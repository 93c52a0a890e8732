//! Issue 14 (output part): control characters from argv, comm and file names are shown escaped
//! (`\x1b`, `\n`) in text and table output, never written raw; GitHub annotations and SARIF URIs
//! are escaped by their own rules; snippets are cut to a bounded width.

mod common;

use std::process::Command;

use common::*;

/// Raw control bytes other than the newline that ends a line (colour is off: NO_COLOR).
fn raw_controls(text: &str) -> Vec<char> {
    text.chars()
        .filter(|c| c.is_control() && *c != '\n')
        .collect()
}

const HOSTILE: &[&str] = &[
    "\x1b[2J\x1b[31mRED\x07",
    "line\n 1.2.3.4:1  *  LISTEN  1  root  rank  FORGED-ROW",
    "csi\u{9b}31m",
];

#[test]
fn argv_with_escapes_cannot_forge_rows() {
    let port = free_low_port();
    let mut cmd = Command::new(python());
    cmd.arg(helper("holder.py"))
        .arg(port.to_string())
        .args(HOSTILE);
    let _s = Situation::start_cmd(&mut cmd);
    let p = port.to_string();
    for args in [vec!["ports", "--port", &p], vec!["tree", "--port", &p]] {
        let out = run(&args);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            text.contains("holder.py"),
            "{args:?} shows the holder:\n{text}"
        );
        assert_eq!(raw_controls(&text), Vec::<char>::new(), "{args:?}:\n{text}");
        assert!(
            !text
                .lines()
                .any(|l| l.contains("FORGED-ROW") && !l.contains("holder.py")),
            "{args:?}: a forged line:\n{text}"
        );
        for shown in ["\\x1b[2J", "\\x07", "line\\n", "\\u{9b}"] {
            assert!(text.contains(shown), "{args:?} shows {shown}:\n{text}");
        }
    }
    // JSON keeps the argument exactly (escaped by JSON itself).
    let (doc, _) = json(&["ports", "--port", &p, "--format", "json"]);
    let cmdline = doc["holders"][0]["command"].as_str().unwrap().to_string();
    assert!(
        cmdline.contains(HOSTILE[0]) && cmdline.contains(HOSTILE[1]),
        "{cmdline}"
    );
}

#[test]
fn run_explanation_has_no_raw_controls() {
    // A leftover child whose argv carries the escapes: the clean-up lists its command line.
    let py = python();
    let code = "import subprocess, sys, time; \
                subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)', sys.argv[1]]); \
                time.sleep(0.5); sys.exit(3)";
    let out = run(&[
        "run",
        "--explain",
        "--",
        &py,
        "-c",
        code,
        "\x1b]0;pwned\x07",
    ]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        err.contains("cleaned up") && err.contains("\\x1b]0;pwned\\x07"),
        "{err}"
    );
    assert_eq!(raw_controls(&err), Vec::<char>::new(), "{err}");
}

fn scan_dir_with_hostile_name() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let name = "a\n::error file=x.py,line=1::FORGED\x1b[31m.py";
    let path = dir.path().join(name);
    std::fs::write(
        &path,
        "from accelerate import Accelerator\n\naccelerator = Accelerator()\n",
    )
    .unwrap();
    (dir, path)
}

#[test]
fn scan_file_names_are_escaped_in_every_format() {
    let (_dir, path) = scan_dir_with_hostile_name();
    let p = path.to_str().unwrap();
    let out = run(&["scan", "--format", "github", p]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!text.is_empty());
    for line in text.lines() {
        assert!(
            line.starts_with("::warning ") || line.starts_with("::error "),
            "every line is one workflow command: {line:?}"
        );
        assert!(!line.contains("::error file=x.py"), "forged: {line:?}");
    }
    assert!(text.contains("%0A"), "{text}");
    let out = run(&["scan", "--format", "text", p]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(raw_controls(&text), Vec::<char>::new(), "{text}");
    assert!(!text.lines().any(|l| l.starts_with("::error")), "{text}");
    assert!(text.contains("a\\n::error"), "{text}");
    let out = run(&["scan", "--format", "sarif", p]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let uri = doc["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]
        ["uri"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(uri.contains("a%0A%3A%3Aerror%20file%3Dx.py"), "{uri}");
    assert!(uri.bytes().all(|b| b.is_ascii_graphic()), "{uri}");
}

#[test]
fn long_lines_make_short_snippets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wide.py");
    let pad = "x".repeat(20_000);
    std::fs::write(
        &path,
        format!("from accelerate import Accelerator\n\naccelerator = Accelerator(); s = '{pad}'\n"),
    )
    .unwrap();
    let out = run(&["scan", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let widest = text.lines().map(|l| l.chars().count()).max().unwrap();
    assert!(
        widest < 400,
        "widest line {widest}:\n{}",
        &text[..text.len().min(2000)]
    );
    assert!(text.contains("Accelerator()"), "{text}");
}

/// The ports table cuts the command to the terminal's width on a terminal (a real pty through
/// `script`), and keeps it whole when piped and in JSON.
#[test]
fn command_is_cut_only_on_a_terminal() {
    let port = free_low_port();
    let long = "x".repeat(300);
    let mut cmd = Command::new(python());
    cmd.arg(helper("holder.py"))
        .arg(port.to_string())
        .arg(&long);
    let _s = Situation::start_cmd(&mut cmd);
    let p = port.to_string();
    let piped = String::from_utf8_lossy(&run(&["ports", "--port", &p]).stdout).to_string();
    assert!(piped.contains(&long), "piped: whole\n{piped}");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("pty.log");
    let line = format!(
        "COLUMNS=120 NO_COLOR=1 {} ports --port {p}",
        env!("CARGO_BIN_EXE_doctor")
    );
    let status = Command::new("script")
        .args(["-q", "-e", "-c", &line, log.to_str().unwrap()])
        .status()
        .expect("util-linux script runs");
    assert!(status.code().is_some_and(|c| c <= 1), "{status}");
    let tty = String::from_utf8_lossy(&std::fs::read(&log).unwrap()).replace('\r', "");
    let rows: Vec<&str> = tty
        .lines()
        .filter(|l| l.contains(&format!(":{p} ")))
        .collect();
    assert!(!rows.is_empty(), "{tty}");
    for r in rows {
        assert!(r.chars().count() <= 120, "cut to 120 columns: {r}");
        assert!(r.ends_with('…'), "{r}");
    }
}
