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
            let flag_value = format!("{flag}={value}");
            let mut args = vec!["run", flag_value.as_str()];
            args.extend_from_slice(trace);
            args.extend_from_slice(&["--", "sh", "-c", &touch]);
            usage_error(&args, flag);
        }
    }
    // The command never started: nothing to leave behind.
    assert!(!Path::new(&marker).exists());
    usage_error(
        &["repro", "--timeout", "1e308"],
        "--timeout 1e308 is not a positive",
    );
    usage_error(&["merge", "--max-spread", "nan", "a.yaml"], "--max-spread");
}

/// A snapshot of this machine with its processes replaced by `processes`.
fn snapshot_with(dir: &Path, name: &str, processes: Vec<serde_json::Value>) -> String {
    let base = dir.join("base.json");
    if !base.exists() {
        let out = guarded(&["snapshot", "-o", base.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0));
    }
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&base).unwrap()).unwrap();
    doc["processes"] = serde_json::Value::Array(processes);
    doc["sockets"] = serde_json::json!([]);
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_string(&doc).unwrap()).unwrap();
    path.to_string_lossy().into_owned()
}

/// A rank-like Python process (every one carries a rank identity: the worst case for job and
/// D001 analysis, which walk ancestors).
fn process(pid: i64, ppid: i64, argv: &[&str]) -> serde_json::Value {
    serde_json::json!({
        "pid": pid, "ppid": ppid, "pgid": pid, "sid": 1, "uid": 0, "state": "S",
        "start_time": pid as f64, "comm": "python", "exe": null, "argv": argv,
        "env": {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500", "RANK": "0",
                "LOCAL_RANK": "0", "WORLD_SIZE": "2"},
        "socket_inodes": [], "gpu": false
    })
}

fn chain(n: i64) -> Vec<serde_json::Value> {
    let mut ps = vec![process(1, 0, &["init"])];
    ps.extend((2..n + 2).map(|pid| process(pid, pid - 1, &["python", "train.py"])));
    ps
}

fn looked_at(snapshot: &str) -> Vec<Output> {
    ["ports", "tree"]
        .iter()
        .flat_map(|cmd| {
            [
                guarded(&[cmd, "--from", snapshot]),
                guarded(&[cmd, "--from", snapshot, "--format", "json"]),
            ]
        })
        .collect()
}

#[test]
fn nested_documents_fail_fast() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_string_lossy().into_owned()
    };
    let files = [
        write("flow200k.yaml", "[".repeat(200_000)),
        write("flow400k.yaml", "[".repeat(400_000)),
        write("map400k.yaml", "{a: ".repeat(100_000)),
        write("dash.yaml", format!("{}x\n", "- ".repeat(100_000))),
        write(
            "block.yaml",
            (0..400)
                .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
                .collect(),
        ),
        write("nested400k.json", "{\"a\":".repeat(80_000)),
        write("array400k.json", "[".repeat(400_000)),
    ];
    for f in &files {
        for args in [
            vec!["ports", "--from", f],
            vec!["tree", "--from", f],
            vec!["merge", f, f],
            vec!["report", "--include-run", f],
        ] {
            usage_error(&args, "nested more than 64 levels");
        }
    }
}

#[test]
fn deep_and_cyclic_parent_chains() {
    let dir = tempfile::tempdir().unwrap();
    let deep = snapshot_with(dir.path(), "chain10k.json", chain(10_000));
    for out in looked_at(&deep) {
        assert!(out.status.success() || out.status.code() == Some(1));
    }
    // A cycle 2 -> 3 -> 2 under a real root, and a self-parent: each pid drawn once.
    let cycle = snapshot_with(
        dir.path(),
        "cycle.json",
        vec![
            process(1, 0, &["init"]),
            process(2, 3, &["python", "a.py"]),
            process(3, 2, &["python", "a.py"]),
            process(4, 4, &["python", "b.py"]),
            process(5, 2, &["python", "a.py"]),
        ],
    );
    let out = guarded(&["tree", "--from", &cycle, "--format", "json"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let doc: serde_json::Value = serde_json::from_str(&text).expect(&text);
    let mut pids = Vec::new();
    collect_pids(&doc, &mut pids);
    for tree in pids {
        let mut sorted = tree.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            tree.len(),
            "a pid drawn twice in one tree: {tree:?}"
        );
    }
    // Duplicate pids: one process each.
    let dup = snapshot_with(
        dir.path(),
        "dup.json",
        vec![
            process(1, 0, &["init"]),
            process(2, 1, &["python", "a.py"]),
            process(2, 1, &["python", "a.py"]),
            process(3, 2, &["python", "a.py"]),
            process(3, 2, &["python", "a.py"]),
        ],
    );
    let out = guarded(&["tree", "--from", &dup]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.matches("python a.py").count(), 2, "{text}");
    looked_at(&cycle);
    looked_at(&dup);
}

/// Each tree of `doctor tree --format json`: the pids drawn in it.
fn collect_pids(doc: &serde_json::Value, out: &mut Vec<Vec<i64>>) {
    fn walk(node: &serde_json::Value, pids: &mut Vec<i64>) {
        if let Some(p) = node.get("pid").and_then(|p| p.as_i64()) {
            pids.push(p);
        }
        for c in node["children"].as_array().into_iter().flatten() {
            walk(c, pids);
        }
    }
    for t in doc["trees"].as_array().into_iter().flatten() {
        let mut pids = Vec::new();
        walk(t, &mut pids);
        out.push(pids);
    }
}

#[test]
fn a_hundred_thousand_deep_chain_is_linear() {
    // Linear, not a benchmark: the chain may take no longer than a flat snapshot of the same size
    // (parsing dominates) with slack for a loaded machine and a debug build.
    let dir = tempfile::tempdir().unwrap();
    let n = 100_000;
    let deep = snapshot_with(dir.path(), "chain100k.json", chain(n));
    let mut flat = vec![process(1, 0, &["init"])];
    flat.extend((2..n + 2).map(|pid| process(pid, 1, &["python", "train.py"])));
    let flat = snapshot_with(dir.path(), "flat100k.json", flat);
    let time = |f: &str| {
        let start = Instant::now();
        let out = Command::new(DOCTOR)
            .args(["ports", "--from", f])
            .output()
            .unwrap();
        assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
        start.elapsed()
    };
    let flat_took = time(&flat);
    let deep_took = time(&deep);
    assert!(
        deep_took < flat_took * 3 + BOUND,
        "chain {deep_took:?} vs flat {flat_took:?}"
    );
}

#[test]
fn control_characters_in_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let snap = snapshot_with(
        dir.path(),
        "ctl.json",
        vec![
            process(1, 0, &["init"]),
            process(2, 1, &["python", "\x1b[2J\x07evil\nrow", "\r\u{9b}x"]),
            process(3, 2, &["python", "\x1b]0;title\x07"]),
        ],
    );
    looked_at(&snap);
}

#[test]
fn a_named_file_that_cannot_be_scanned_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("latin.py");
    std::fs::write(&bad, b"x = '\xff\xfe'\n").unwrap();
    let binary = dir.path().join("binary.py");
    std::fs::write(&binary, b"import os\n\0\0\0").unwrap();
    let big = dir.path().join("big.py");
    std::fs::write(&big, format!("x = '{}'\n", "a".repeat(30 << 20))).unwrap();
    for f in [&bad, &binary, &big] {
        usage_error(&["scan", f.to_str().unwrap()], "cannot scan");
    }
    // A directory of only such files scanned nothing: an error, not "No problems found".
    usage_error(
        &["scan", dir.path().to_str().unwrap()],
        "nothing was scanned",
    );
    // Beside a good file they are skipped with a warning, and the scan goes on.
    std::fs::write(dir.path().join("ok.py"), "x = 1\n").unwrap();
    let out = guarded(&["scan", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("skipped"));
}

/// A port this user may not bind is "not permitted", not "taken" (EACCES is not EADDRINUSE).
#[test]
fn ports_check_tells_not_permitted_from_in_use() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "CI runs as root"
        );
        return;
    }
    let unprivileged_start: u16 =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(1024);
    if unprivileged_start < 2 {
        return; // every port is permitted on this machine: nothing to tell apart
    }
    // A privileged port nobody uses (as root we can bind it).
    let low = (1..unprivileged_start)
        .rev()
        .find(|&p| std::net::TcpListener::bind(("0.0.0.0", p)).is_ok())
        .expect("a free privileged port");
    let as_nobody = |port: u16| {
        Command::new("timeout")
            .args([
                "-s",
                "KILL",
                "30",
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
            ])
            .args(["--clear-groups", "--", DOCTOR, "ports", "--check"])
            .arg(port.to_string())
            .current_dir("/")
            .output()
            .expect("setpriv runs")
    };
    let out = as_nobody(low);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("not permitted") && !err.contains("taken"),
        "{err}"
    );
    // A port really in use is "taken", also for nobody.
    let held = std::net::TcpListener::bind(("0.0.0.0", common::free_low_port())).unwrap();
    let port = held.local_addr().unwrap().port();
    let out = as_nobody(port);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("taken") && !err.contains("not permitted"),
        "{err}"
    );
}
