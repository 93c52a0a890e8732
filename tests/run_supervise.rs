//! `doctor run` on real commands (stdlib-only helpers): exit status, signals, cleanup of
//! daemons and orphans, output pass-through, tracing and the polling fallback.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn helper_cmd() -> Vec<String> {
    vec![
        python(),
        helper("run_cases.py").to_string_lossy().into_owned(),
    ]
}

fn doctor_run(extra: &[&str], case: &[&str]) -> (std::process::Output, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = doctor();
    cmd.arg("run")
        .args(extra)
        .arg("--")
        .args(helper_cmd())
        .args(case);
    cmd.env("PIDFILE", dir.path().join("pids"));
    (cmd.output().expect("doctor runs"), dir)
}

/// `doctor run --record FILE EXTRA... -- helper CASE...`: the output, the recorded document, and
/// the pidfile's directory.
fn doctor_run_recorded(
    extra: &[&str],
    case: &[&str],
) -> (std::process::Output, serde_json::Value, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("run.json");
    let mut args = vec!["--record", record.to_str().unwrap()];
    args.extend_from_slice(extra);
    let (out, pids) = doctor_run(&args, case);
    let doc = serde_json::from_str(&std::fs::read_to_string(&record).unwrap()).unwrap();
    (out, doc, pids)
}

fn pids_written(dir: &tempfile::TempDir) -> Vec<i32> {
    std::fs::read_to_string(dir.path().join("pids"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn port_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

#[test]
fn exit_status_passes_through() {
    let (out, _d) = doctor_run(&[], &["exit", "7"]);
    assert_eq!(out.status.code(), Some(7));
    let (out, _d) = doctor_run(&[], &["exit", "0"]);
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn death_by_signal_is_128_plus_signal() {
    let (out, _d) = doctor_run(&[], &["signal", "SIGTERM"]);
    assert_eq!(out.status.code(), Some(128 + 15));
    let (out, _d) = doctor_run(&[], &["signal", "SIGKILL"]);
    assert_eq!(out.status.code(), Some(128 + 9));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the command was killed by SIGKILL (status 137)"),
        "{err}"
    );
}

#[test]
fn double_forked_daemon_is_killed_and_its_port_freed() {
    let port = free_low_port();
    let (out, dir) = doctor_run(&[], &["daemon", &port.to_string()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let pids = pids_written(&dir);
    assert_eq!(pids.len(), 1, "the daemon wrote its pid: {err}");
    assert!(
        !alive(pids[0]),
        "daemon {} survived doctor run: {err}",
        pids[0]
    );
    assert!(port_free(port), "port {port} still taken");
    // Cleanup is reported even on success when something had to be killed.
    assert!(err.contains(&format!("{} SIGTERM", pids[0])), "{err}");
}

#[test]
fn orphan_is_reparented_to_doctor_and_cleaned_up() {
    let port = free_low_port();
    let (out, doc, pdir) = doctor_run_recorded(&[], &["orphan", &port.to_string()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let pids = pids_written(&pdir);
    assert_eq!(pids.len(), 1);
    assert!(!alive(pids[0]), "{err}");
    assert!(port_free(port));
    assert!(
        doc["killed"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["pid"] == pids[0]),
        "{doc:#}"
    );
    assert_eq!(doc["leftovers"].as_array().unwrap().len(), 0);
    // Polling saw the orphan listening on the port.
    assert!(
        doc["sockets"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["socket"]["local_port"] == port && s["socket"]["state"] == "LISTEN"),
        "{doc:#}"
    );
}

#[test]
fn sigint_is_forwarded_to_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let child = doctor()
        .arg("run")
        .arg("--")
        .args(helper_cmd())
        .arg("wait-int")
        .env("PIDFILE", dir.path().join("pids"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while pids_written(&dir).is_empty() {
        assert!(Instant::now() < deadline, "command did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The helper writes its pid after its SIGINT handler is in place, and doctor blocks the
    // signals it passes on before it starts the command (a SIGINT now waits for its signalfd):
    // no pause is needed, and none would make a race safe.
    // SAFETY: signals the doctor process we started.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(42),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("got SIGINT"));
    assert!(!alive(pids_written(&dir)[0]));
}

#[test]
fn missing_command_is_a_clear_error() {
    let out = doctor()
        .args(["run", "--", "/nonexistent/train-cmd"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("error: cannot run `/nonexistent/train-cmd`"),
        "{err}"
    );
    assert!(err.contains("hint:"), "{err}");
    let out = doctor().args(["run"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = doctor()
        .args(["run", "--timeout", "-3", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn output_larger_than_the_memory_bound_passes_through() {
    let bytes = 40 << 20; // 40 MiB, five times what doctor keeps
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("run.json");
    let out = doctor()
        .args(["run", "--record", record.to_str().unwrap(), "--"])
        .args(helper_cmd())
        .args(["spew", &bytes.to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(
        out.stdout.len() >= bytes,
        "all output passed through: {}",
        out.stdout.len()
    );
    assert!(out.stdout.ends_with(b"LAST LINE\n"));
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&record).unwrap()).unwrap();
    assert!(
        doc["output_bytes_dropped"].as_u64().unwrap() > 0,
        "memory bound applied"
    );
}

#[test]
fn traced_bind_failure_is_named_exactly() {
    let port = free_low_port();
    let (out, doc, _d) = doctor_run_recorded(&[], &["dup", &port.to_string()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    if doc["tracing"] != "seccomp-notify" {
        skip_or_fail(&format!(
            "tracing (seccomp-notify) is not allowed on this machine ({}); the polling test covers the rest",
            doc["tracing"]
        ));
        return;
    }
    let failed: Vec<_> = doc["syscalls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["errno"] == 98)
        .collect();
    assert_eq!(failed.len(), 1, "{doc:#}");
    assert_eq!(failed[0]["port"], port);
    assert_eq!(failed[0]["syscall"], "bind");
    let d = &doc["diagnosis"];
    assert_eq!(d["port"], port);
    assert_eq!(d["failing_pid"], failed[0]["pid"]);
    assert!(d["holder_pid"].is_i64());
    assert_ne!(d["holder_pid"], d["failing_pid"]);
    assert!(
        err.contains("failed bind(127.0.0.1:") && err.contains("errno 98 EADDRINUSE"),
        "{err}"
    );
    assert!(err.contains("fork-child"), "{err}");
}

#[test]
fn polling_fallback_sees_a_short_lived_listener() {
    let port = free_low_port();
    let (out, doc, _d) = doctor_run_recorded(
        &["--no-trace"],
        &["short-listener", &port.to_string(), "300"],
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(doc["tracing"], "polling");
    assert!(doc["syscalls"].as_array().unwrap().is_empty());
    assert!(
        doc["sockets"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["socket"]["local_port"] == port && s["socket"]["state"] == "LISTEN"),
        "a 300 ms listener is seen at the default 50 ms interval: {doc:#}"
    );
}

#[test]
fn timeout_kills_the_tree() {
    // How long doctor takes past the limit is measured by scripts/bench/timeouts.sh; here the
    // property: the command ran, was stopped by the limit (it would exit 0 on its own after
    // 30 s), and nothing of it is left when doctor returns.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_doctor"))
        .args(["run", "--timeout", "1", "--grace", "1", "--"])
        .args(helper_cmd())
        .arg("wait-int")
        .env("PIDFILE", dir.path().join("pids"))
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("timeout after 1 s"), "{err}");
    let pids = pids_written(&dir);
    assert!(!pids.is_empty(), "the command never started: {err}");
    assert!(pids.iter().all(|&p| !alive(p)), "left running: {pids:?}");
}

/// Libraries inside a rank (MPI's daemons, UCX) bind fixed ports of their own; when a child
/// collides on one of those first and then on the rendezvous port, the diagnosis is about the
/// port torch's error names (seen on a CUDA machine whose image starts OpenMPI's orted).
#[test]
fn the_failing_bind_is_the_one_the_error_names() {
    let (a, b) = (free_low_port(), free_low_port());
    let (out, doc, _d) =
        doctor_run_recorded(&[], &["two-collisions", &a.to_string(), &b.to_string()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    if doc["tracing"] != "seccomp-notify" {
        skip_or_fail("tracing (seccomp-notify) is not allowed on this machine");
        return;
    }
    let failed: Vec<_> = doc["syscalls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["errno"] == 98)
        .collect();
    assert_eq!(failed.len(), 2, "{doc:#}");
    assert_eq!(doc["diagnosis"]["port"], b, "{:#}", doc["diagnosis"]);
}

/// An output path that cannot be written is found before the command runs: error + hint, exit 2,
/// the command not started (a missing directory, a trailing slash, a name over 255 bytes, a
/// directory, a full filesystem).
#[test]
fn an_unusable_record_path_stops_before_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let long = dir.path().join("x".repeat(300));
    let mut paths = vec![
        dir.path().join("missing/r.json"),
        dir.path().join("newname/"),
        long,
        dir.path().to_path_buf(),
    ];
    // A full filesystem: a 64 KiB tmpfs filled up (root only, as in CI).
    let full = dir.path().join("full");
    std::fs::create_dir(&full).unwrap();
    // SAFETY: geteuid has no preconditions.
    let mounted = unsafe { libc::geteuid() } == 0
        && Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
            .arg(&full)
            .status()
            .is_ok_and(|s| s.success());
    if mounted {
        let _ = std::fs::write(full.join("fill"), vec![0u8; 1 << 20]);
        paths.push(full.join("r.json"));
    } else {
        skip_or_fail("mounting a tmpfs needs root (CI runs as root)");
    }
    for path in &paths {
        let out = doctor()
            .arg("run")
            .arg("-o")
            .arg(path)
            .args(["--", "sh", "-c"])
            .arg(format!("touch {}", marker.display()))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{}: {err}", path.display());
        assert!(err.contains("error:") && err.contains("hint:"), "{err}");
        assert!(!marker.exists(), "{}: the command ran", path.display());
    }
    if mounted {
        let _ = Command::new("umount").arg(&full).status();
    }
}
