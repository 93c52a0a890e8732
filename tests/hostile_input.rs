//! Hostile input: huge or malformed values, deeply nested documents, deep and cyclic parent
//! chains, duplicate pids, control characters. Every case ends within a generous time bound
//! (a hang guard, not a benchmark), with exit 0/1/2 and no panic; bad input gets `error:` and
//! `hint:` lines.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const DOCTOR: &str = env!("CARGO_BIN_EXE_doctor");
/// Each case must end within this (hang guard; the slow cases used to take 20 s to minutes).
const BOUND: Duration = Duration::from_secs(5);

/// Run doctor with a hang guard; returns the output and asserts no panic.
fn guarded(args: &[&str]) -> Output {
    let start = Instant::now();
    let out = Command::new("timeout")
        .args(["-s", "KILL", "60", DOCTOR])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("doctor runs");
    let took = start.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(took < BOUND, "doctor {args:?} took {took:?}");
    assert!(!err.contains("panicked"), "doctor {args:?}: {err}");
    assert!(
        matches!(out.status.code(), Some(0..=2)),
        "doctor {args:?}: {:?} {err}",
        out.status
    );
    out
}

fn usage_error(args: &[&str], needle: &str) {
    let out = guarded(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "doctor {args:?}: {err}");
    assert!(err.contains("error:"), "doctor {args:?}: {err}");
    assert!(err.contains("hint:"), "doctor {args:?}: {err}");
    assert!(err.contains(needle), "doctor {args:?}: {err}");
}

#[test]
fn huge_durations_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let touch = format!("touch {}", marker.display());
    for (flag, value) in [
        ("--grace", "1e19"),
        ("--grace", "nan"),
        ("--grace", "-1"),
        ("--grace", "inf"),
        ("--timeout", "1e308"),
        ("--timeout", "NaN"),
        ("--timeout", "-5"),
        ("--timeout", "0"),
    ] {
        for trace in [&[][..], &["--no-trace"][..]] {
            let mut args = vec!["run", flag, value];
            args.extend_from_slice(trace);
            args.extend_from_slice(&["--", "sh", "-c", &touch]);
            usage_error(&args, flag);
        }
    }
    // The command never started: nothing to leave behind.
    assert!(!Path::new(&marker).exists());
    usage_error(&["repro", "--timeout", "1e308"], "--timeout");
    usage_error(&["merge", "--max-spread", "nan", "a.yaml"], "--max-spread");
}
