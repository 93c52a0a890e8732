//! Pipes and exit codes: `doctor run` passes a closed pipe on to the command as the bare
//! pipeline would, a failed write to stderr never panics or changes the exit code, and a closed
//! stdout keeps the 0/1/2 meaning of the other commands.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

const DOCTOR: &str = env!("CARGO_BIN_EXE_doctor");

/// Run a bash pipeline (with `$D` = doctor) under a hang guard; returns stdout, stderr and the
/// wall time. `timeout` signals its whole process group when the guard fires.
fn pipeline(script: &str) -> (String, String, Duration) {
    let start = Instant::now();
    let out = Command::new("timeout")
        .args(["-s", "KILL", "30", "bash", "-c"])
        .arg(format!("set -o pipefail\n{script}"))
        .env("D", DOCTOR)
        .output()
        .expect("bash runs");
    let took = start.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_ne!(out.status.code(), Some(137), "hung: {script}\n{stderr}");
    assert!(!stderr.contains("panicked"), "{script}: {stderr}");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
        took,
    )
}

#[test]
fn yes_into_head_ends_at_once_with_the_pipeline_status() {
    let (bare, _, _) = pipeline("yes | head -1 >/dev/null; echo \"${PIPESTATUS[*]}\"");
    let (out, err, took) = pipeline("$D run -- yes | head -1; echo \"${PIPESTATUS[*]}\"");
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("y"), "{out}{err}");
    // The same statuses as the bare pipeline: yes died of SIGPIPE (141), head 0.
    assert_eq!(lines.next(), Some(bare.trim()), "{out}{err}");
    assert_eq!(bare.trim(), "141 0");
    // "Within a second"; the bound has slack for a loaded machine and a debug build.
    assert!(took < Duration::from_secs(2), "took {took:?}");
    // The pipeline's normal end is not a failure to explain.
    assert!(!err.contains("exited with status"), "{err}");
}

#[test]
fn a_closed_pipe_on_both_streams_keeps_the_commands_exit_status() {
    let (out, err, _) = pipeline(
        "$D run -- sh -c 'seq 1 100000; exit 3' 2>&1 | head -1; echo \"${PIPESTATUS[*]}\"",
    );
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("1"), "{out}{err}");
    assert_eq!(lines.next(), Some("3 0"), "{out}{err}");
}

#[test]
fn stderr_on_dev_full_keeps_the_exit_status() {
    let (out, err, _) = pipeline(
        "$D run -- sh -c 'echo to-stderr >&2; echo out; exit 4' 2>/dev/full; echo \"rc=$?\"",
    );
    assert!(out.contains("out\n"), "{out}{err}");
    assert!(out.contains("rc=4"), "{out}{err}");
    // doctor's own errors, too: a usage error on /dev/full is still exit 2.
    let (out, _, _) = pipeline("$D run --grace nan -- true 2>/dev/full; echo \"rc=$?\"");
    assert!(out.contains("rc=2"), "{out}");
    let (out, _, _) = pipeline("$D ports --port 0 2>/dev/full; echo \"rc=$?\"");
    assert!(out.contains("rc=2"), "{out}");
}

#[test]
fn a_closed_stdout_keeps_found_something() {
    let reports = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/reports");
    let scan = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/scan");
    for cmd in [
        format!("$D merge {reports}/report-node-a.yaml {reports}/report-node-b.yaml"),
        format!("$D scan {scan}"),
        format!("$D scan {scan}/dist_import_as.py"),
    ] {
        let (open, _, _) = pipeline(&format!("{cmd} >/dev/null 2>&1; echo $?"));
        assert_eq!(open.trim(), "1", "{cmd}");
        // The reader goes away before doctor writes (`true`) or after one line (`head -1`).
        for reader in ["true", "head -c 1 >/dev/null"] {
            let (out, err, _) = pipeline(&format!(
                "{cmd} 2>/dev/null | {reader}; echo \"${{PIPESTATUS[0]}}\""
            ));
            assert_eq!(out.trim(), "1", "{cmd} | {reader}: {err}");
        }
    }
}
