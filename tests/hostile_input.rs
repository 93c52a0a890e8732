//! Hostile input: huge or malformed values, deeply nested documents, deep and cyclic parent
//! chains, duplicate pids, control characters. Every case ends (a 60 s hang guard kills it
//! otherwise, and that fails the test), with exit 0/1/2 and no panic; bad input gets `error:`
//! and `hint:` lines. How long they take is measured, not asserted: `scripts/bench/deep_chains.sh`
//! (docs/performance.md).

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

const DOCTOR: &str = env!("CARGO_BIN_EXE_doctor");

/// Run doctor under a hang guard (killed after 60 s: exit 137, which fails the checks below);
/// returns the output and asserts no panic.
fn guarded(args: &[&str]) -> Output {
    guarded_for(60, args)
}

/// [`guarded`] with a guard of `seconds` (a debug build on a loaded machine reads a
/// 100,000-process snapshot in about a minute).
fn guarded_for(seconds: u32, args: &[&str]) -> Output {
    let out = Command::new("timeout")
        .args(["-s", "KILL", &seconds.to_string(), DOCTOR])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("doctor runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(137), "doctor {args:?} hung");
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
fn a_hundred_thousand_deep_chain_ends_without_a_panic() {
    // How long it takes beside a flat snapshot of the same size is a benchmark
    // (scripts/bench/deep_chains.sh); here: both commands end, exit 0 or 1, no panic (`guarded`),
    // and the tree document is whole.
    let dir = tempfile::tempdir().unwrap();
    let n = 100_000;
    let deep = snapshot_with(dir.path(), "chain100k.json", chain(n));
    let out = guarded_for(600, &["ports", "--from", &deep]);
    assert!(matches!(out.status.code(), Some(0 | 1)), "{out:?}");
    let out = guarded_for(600, &["tree", "--from", &deep, "--format", "json"]);
    assert!(matches!(out.status.code(), Some(0 | 1)), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.trim_start().starts_with('{') && text.trim_end().ends_with('}'));
    assert_eq!(text.matches('{').count(), text.matches('}').count());
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
    if !common::need_root("setpriv drops to nobody to be refused a privileged port") {
        return;
    }
    let unprivileged_start: u16 =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(1024);
    if unprivileged_start < 2 {
        common::skip_or_fail(&format!(
            "ip_unprivileged_port_start is {unprivileged_start}: every port is permitted here, \
             nothing to tell apart"
        ));
        return;
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
