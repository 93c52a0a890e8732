//! `doctor repro` shows each running case's phase and elapsed time on a terminal (a real pty,
//! through util-linux `script`), plain lines when stderr is not a terminal, and nothing with
//! `--no-progress` or `-q`. The case is a cheap custom script (no torch needed).

mod common;

use std::process::Command;

use common::*;

fn case_script(dir: &std::path::Path) -> String {
    let path = dir.join("slow_case.py");
    std::fs::write(&path, "import time\ntime.sleep(1.5)\nprint('done')\n").unwrap();
    path.display().to_string()
}

/// Run `doctor ARGS` under a pseudo-terminal; returns what the terminal received.
fn on_a_terminal(args: &str) -> String {
    let have_script = Command::new("script").arg("--version").output().is_ok();
    assert!(
        have_script,
        "util-linux `script` is needed for the pty test"
    );
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("pty.log");
    let cmd = format!("{} {args} > /dev/null", env!("CARGO_BIN_EXE_doctor"));
    let status = Command::new("script")
        .args(["-q", "-e", "-c", &cmd, log.to_str().unwrap()])
        .env("NO_COLOR", "1")
        .env("DOCTOR_PYTHON", python())
        .status()
        .expect("script runs");
    assert!(status.success(), "{cmd}: {status}");
    String::from_utf8_lossy(&std::fs::read(&log).unwrap()).to_string()
}

#[test]
fn repro_shows_live_progress_on_a_terminal_only_when_wanted() {
    let dir = tempfile::tempdir().unwrap();
    let script = case_script(dir.path());
    let base = format!("repro {script} --ctx spawn --no-setup --format json");
    let live = on_a_terminal(&base);
    assert!(
        live.contains("custom spawn running"),
        "phase shown:\n{live}"
    );
    assert!(live.contains("\r\x1b[2K"), "redrawn in place:\n{live}");
    assert!(
        live.contains("running 1s") || live.contains("running 0s"),
        "elapsed shown:\n{live}"
    );
    assert!(live.contains("[1/1]") && live.contains(": ok"), "{live}");
    for quiet in ["--no-progress", "-q"] {
        let out = on_a_terminal(&format!("{base} {quiet}"));
        assert!(
            !out.contains("running") && !out.contains("[1/1]"),
            "{quiet}: no progress:\n{out}"
        );
    }
    // Not a terminal: plain lines, no redrawing.
    let out = doctor()
        .args([
            "repro",
            &script,
            "--ctx",
            "spawn",
            "--no-setup",
            "--format",
            "json",
        ])
        .env("DOCTOR_PYTHON", python())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("custom spawn: running (0s)"), "{err}");
    assert!(!err.contains('\r') && !err.contains('\x1b'), "{err}");
}
