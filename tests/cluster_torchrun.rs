//! The cluster view on real multi-node torchrun (issue 22): scripts/testbed/cluster.sh builds
//! nodes out of network + PID + UTS + mount namespaces joined by veth pairs on a bridge, runs real
//! `torchrun` (static and c10d rendezvous, gloo) with real ranks from the managed venv on them,
//! injects one fault per scenario, takes `doctor report` inside each node's namespaces into one
//! directory and merges it with `doctor merge DIR`. One run of the bed serves every scenario;
//! the test then checks that each merged verdict names the right node, process and fix, and that
//! nothing of the bed is left (namespaces, processes).
//! Needs root, iproute2, util-linux and the venv: fails under CI=true when one is missing.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::Value;

const SCENARIOS: [&str; 9] = [
    "healthy",
    "healthy-c10d",
    "leftover",
    "foreign",
    "wrongport",
    "wrongaddr",
    "missing",
    "agentkilled",
    "duprank",
];

struct Scenario {
    merge: Value,
    rc: i32,
    text: String,
    reports: Vec<Value>,
}

fn load(out: &Path, s: &str) -> Scenario {
    let d = out.join(s);
    let read = |f: &str| std::fs::read_to_string(d.join(f)).unwrap_or_default();
    let merge: Value = serde_json::from_str(&read("merge.json"))
        .unwrap_or_else(|e| panic!("{s}: merge.json: {e}; stderr: {}", read("merge.err")));
    let reports = ["node-a", "node-b"]
        .iter()
        .map(|n| serde_yaml::from_str(&read(&format!("report-{n}.yaml"))).unwrap())
        .collect();
    Scenario {
        rc: read("merge.rc").trim().parse().unwrap(),
        text: read("merge.txt") + &read("report-node-a.yaml") + &read("report-node-b.yaml"),
        merge,
        reports,
    }
}

fn findings<'a>(m: &'a Value, code: &str) -> Vec<&'a Value> {
    m["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"] == code)
        .collect()
}

fn node<'a>(m: &'a Value, name: &str) -> &'a Value {
    m["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == name)
        .unwrap_or_else(|| panic!("node {name} in {m:#}"))
}

fn msg(f: &Value) -> String {
    f["message"].as_str().unwrap().to_string()
}

fn fix(f: &Value) -> String {
    f["fix"]["message"]
        .as_str()
        .or(f["fix"].as_str())
        .unwrap()
        .to_string()
}

/// The pid listening on `port` in a node's report.
fn listener(report: &Value, port: u16) -> i64 {
    report["ports"]["holders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["port"] == port && h["state"] == "LISTEN")
        .and_then(|h| h["pid"].as_i64())
        .unwrap_or_else(|| panic!("a listener on {port}: {:#}", report["ports"]["holders"]))
}

fn agents(m: &Value, n: &str) -> usize {
    node(m, n)["agents"].as_array().unwrap().len()
}

fn job_ranks(m: &Value, n: &str) -> Vec<i64> {
    node(m, n)["ranks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["of_this_job"] == true)
        .map(|r| r["rank"].as_i64().unwrap())
        .collect()
}

#[test]
fn torchrun_across_namespaces() {
    let out = tempfile::tempdir().unwrap();
    let port = 29577u16;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/testbed/cluster.sh");
    let started = std::time::Instant::now();
    let child = Command::new(&script)
        .arg(out.path())
        .args(SCENARIOS)
        .env("DOCTOR", env!("CARGO_BIN_EXE_doctor"))
        .env("PORT", port.to_string())
        .output()
        .expect("bash runs the test bed");
    let err = String::from_utf8_lossy(&child.stderr);
    eprintln!("test bed: {:.0} s", started.elapsed().as_secs_f64());
    if child.status.code() == Some(3) {
        skip_or_fail(&format!(
            "the multi-node test bed cannot run here: {}",
            err.trim()
        ));
        return;
    }
    // Nothing left, pass or fail: the nodes' PID namespaces (their inits) and network namespaces.
    let inits = std::fs::read_to_string(out.path().join("inits")).unwrap_or_default();
    for pid in inits.split_whitespace() {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default()
                    != "sleep\n",
            "node init {pid} left running"
        );
    }
    let netns = std::fs::read_to_string(out.path().join("netns")).unwrap_or_default();
    let listed = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .to_string();
    for ns in netns.split_whitespace().skip(1) {
        assert!(
            !listed.split_whitespace().any(|l| l == ns),
            "namespace {ns} left"
        );
    }
    assert!(child.status.success(), "test bed failed: {err}");

    for s in SCENARIOS {
        let sc = load(out.path(), s);
        let m = &sc.merge;
        let ctx = format!("{s}: {}", String::from_utf8_lossy(m.to_string().as_bytes()));
        assert_eq!(m["rendezvous"]["master_node"], "node-a", "{ctx}");
        // A report taken inside a node: its pids are the node's PID namespace's.
        let inodes: Vec<i64> = sc
            .reports
            .iter()
            .map(|r| {
                let ns = &r["host"]["pid_namespace"];
                assert_eq!(ns["init"], false, "{s}: {ns}");
                ns["inode"].as_i64().unwrap()
            })
            .collect();
        assert_ne!(inodes[0], inodes[1], "{s}: each node its own PID namespace");
        // No fix anywhere names process group 0 or 1 (inside a PID namespace the group of a
        // process entered from outside reads 0; signalling it signals the caller's own group).
        for bad in ["-- -0", "-- -1`", "-- -1 "] {
            assert!(!sc.text.contains(bad), "{s}: `{bad}` printed:\n{}", sc.text);
        }
        match s {
            "healthy" | "healthy-c10d" => {
                assert_eq!(sc.rc, 0, "{ctx}");
                assert_eq!(m["findings"], serde_json::json!([]), "{ctx}");
                assert_eq!(m["summary"]["warnings"], 0, "{ctx}");
                assert_eq!(m["rendezvous"]["ranks_visible"], 2, "{ctx}");
                assert_eq!(job_ranks(m, "node-a"), vec![0], "{ctx}");
                assert_eq!(job_ranks(m, "node-b"), vec![1], "{ctx}");
                assert_eq!((agents(m, "node-a"), agents(m, "node-b")), (1, 1), "{ctx}");
            }
            "leftover" | "foreign" => {
                assert_eq!(sc.rc, 1, "{ctx}");
                let holder = listener(&sc.reports[0], port);
                let m003: Vec<_> = findings(m, "M003");
                assert_eq!(m003.len(), 1, "{ctx}");
                let f = m003[0];
                assert_eq!(f["severity"], "error");
                assert_eq!(f["nodes"], serde_json::json!(["node-a", "node-b"]), "{ctx}");
                let text = msg(f);
                let agent_b = node(m, "node-b")["agents"][0]["pid"].as_i64().unwrap();
                assert!(
                    text.contains(&format!("node-b (agent pid {agent_b} connected)")),
                    "{text}"
                );
                assert!(text.contains(&format!("pid {holder} ")), "{text}");
                assert!(
                    fix(f).starts_with(&format!("on node-a: `kill -TERM {holder}`")),
                    "{}",
                    fix(f)
                );
                assert!(fix(f).contains("not host pids"), "{}", fix(f));
                if s == "leftover" {
                    assert!(
                        text.contains("leftover of another job") && text.contains("job-old"),
                        "{text}"
                    );
                    // The old job's rank is not one of this job's.
                    assert_eq!(m["rendezvous"]["ranks_visible"], 0, "{ctx}");
                    assert!(job_ranks(m, "node-a").is_empty(), "{ctx}");
                    assert!(findings(m, "M006").is_empty(), "{ctx}");
                    assert!(!sc.text.contains("reports show 1 ranks"), "{ctx}");
                } else {
                    assert!(
                        text.contains("http.server") && text.contains("no training job"),
                        "{text}"
                    );
                }
                assert_eq!(agents(m, "node-b"), 1, "{ctx}");
            }
            "wrongport" | "wrongaddr" => {
                let other = if s == "wrongport" {
                    format!("10.78.0.1:{}", port + 1)
                } else {
                    format!("10.78.0.9:{port}")
                };
                let m008 = findings(m, "M008");
                assert_eq!(m008.len(), 1, "{ctx}");
                assert!(
                    msg(m008[0]).contains(&format!("node-b uses {other}")),
                    "{ctx}"
                );
                assert!(findings(m, "M010").is_empty(), "{ctx}");
                assert!(findings(m, "M003").is_empty(), "{ctx}");
            }
            "missing" => {
                let m010 = findings(m, "M010");
                assert_eq!(m010.len(), 1, "{ctx}");
                assert_eq!(m010[0]["severity"], "warning");
                assert!(msg(m010[0]).contains("expects 3 nodes"), "{ctx}");
                assert_eq!(sc.rc, 1);
            }
            "agentkilled" => {
                assert_eq!(agents(m, "node-b"), 0, "{ctx}");
                let rank_b = node(m, "node-b")["ranks"][0]["pid"].as_i64().unwrap();
                let m010 = findings(m, "M010");
                assert_eq!(m010.len(), 1, "{ctx}");
                assert_eq!(m010[0]["nodes"], serde_json::json!(["node-b"]));
                assert!(msg(m010[0]).contains(&format!("(pid {rank_b})")), "{ctx}");
                assert!(fix(m010[0]).starts_with(&format!("on node-b: `kill -TERM {rank_b}`")));
            }
            "duprank" => {
                let m004 = findings(m, "M004");
                assert_eq!(m004.len(), 1, "{ctx}");
                assert!(msg(m004[0]).contains("--node-rank 0 on 2 nodes"), "{ctx}");
                assert_eq!(m004[0]["nodes"], serde_json::json!(["node-a", "node-b"]));
                assert!(
                    findings(m, "M003").is_empty(),
                    "each node's own agent: {ctx}"
                );
            }
            _ => unreachable!(),
        }
    }
}

/// A test bed killed with SIGKILL (a CI timeout) runs no trap: its network namespaces and the
/// nodes' inits stay. The next run of the bed removes them before it starts (and leaves a bed
/// that is still running alone).
#[test]
fn a_test_bed_killed_with_sigkill_is_cleaned_up_by_the_next_run() {
    use std::os::unix::process::CommandExt;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/testbed/cluster.sh");
    let first = tempfile::tempdir().unwrap();
    let mut killed = Command::new(&script)
        .arg(first.path())
        .arg("healthy")
        .env("DOCTOR", env!("CARGO_BIN_EXE_doctor"))
        .env("PORT", "29579")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let pid = killed.id() as i32;
    let inits = first.path().join("inits");
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::fs::read_to_string(&inits)
        .unwrap_or_default()
        .trim()
        .is_empty()
    {
        if let Ok(Some(status)) = killed.try_wait() {
            skip_or_fail(&format!("the test bed cannot run here (exit {status})"));
            return;
        }
        assert!(std::time::Instant::now() < until, "no node booted");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // SAFETY: kill(2) of the process group this test started.
    unsafe { libc::kill(-pid, libc::SIGKILL) };
    let _ = killed.wait();
    let tag = format!("ddc{pid:x}");
    let ours = || -> Vec<String> {
        let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter(|n| n.starts_with(&tag) && n.len() == tag.len() + 1)
            .map(str::to_string)
            .collect()
    };
    let init_pids: Vec<String> = std::fs::read_to_string(&inits)
        .unwrap()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let alive = |p: &String| {
        std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c == "sleep\n")
    };
    // The leak is real: without a clean-up they would stay.
    assert!(!ours().is_empty(), "the killed bed left no namespace");
    assert!(init_pids.iter().any(alive), "the killed bed left no init");

    let second = tempfile::tempdir().unwrap();
    let out = Command::new(&script)
        .arg(second.path())
        .env("DOCTOR", env!("CARGO_BIN_EXE_doctor"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        ours(),
        Vec::<String>::new(),
        "namespaces of the killed bed left"
    );
    let left: Vec<&String> = init_pids.iter().filter(|p| alive(p)).collect();
    assert!(left.is_empty(), "inits of the killed bed left: {left:?}");
}
