//! `doctor tree` draws every process it is asked about (issue 20, part 2): `--pid P` draws P
//! when the ranks of its job are siblings under a plain launcher (separate trees joined by their
//! rendezvous), plain `tree` draws every rank of a job, and `--port` draws every process that
//! `doctor ports --port` shows for the port (holders and the pids its findings name), an
//! orphaned rank included. Real processes (stdlib Python), each test in its own process group.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

fn siblings(port: u16, orphan: bool) -> Situation {
    let mut cmd = Command::new(python());
    cmd.arg(helper("run_cells.py"))
        .args(["siblings", &port.to_string()]);
    if orphan {
        cmd.arg("orphan");
    }
    Situation::start_cmd(&mut cmd)
}

/// Every pid drawn in a `tree` document.
fn drawn(doc: &serde_json::Value) -> BTreeSet<i64> {
    fn walk(n: &serde_json::Value, out: &mut BTreeSet<i64>) {
        if let Some(p) = n["pid"].as_i64() {
            out.insert(p);
        }
        for c in n["children"].as_array().into_iter().flatten() {
            walk(c, out);
        }
    }
    let mut out = BTreeSet::new();
    for t in doc["trees"].as_array().expect("trees") {
        walk(t, &mut out);
    }
    out
}

#[test]
fn tree_pid_draws_the_pid_asked_about_when_ranks_are_siblings() {
    let port = free_low_port();
    let sit = siblings(port, false);
    for who in ["rank0", "rank1", "launcher"] {
        let pid = sit.pid(who);
        let (doc, _) = json(&["tree", "--pid", &pid.to_string(), "--format", "json"]);
        assert!(
            drawn(&doc).contains(&i64::from(pid)),
            "tree --pid {pid} ({who}) does not draw {pid}: {doc:#}"
        );
    }
    // Plain `tree` draws both ranks of the job.
    let (doc, _) = json(&["tree", "--format", "json"]);
    let all = drawn(&doc);
    for who in ["rank0", "rank1"] {
        assert!(
            all.contains(&i64::from(sit.pid(who))),
            "tree leaves out {who}: {doc:#}"
        );
    }
}

#[test]
fn tree_port_draws_every_process_ports_shows_an_orphaned_rank_included() {
    let port = free_low_port();
    let sit = siblings(port, true);
    let launcher = sit.pid("launcher");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::path::Path::new(&format!("/proc/{launcher}/stat")).exists()
        && std::fs::read_to_string(format!("/proc/{launcher}/stat"))
            .is_ok_and(|s| !s.contains(") Z "))
    {
        assert!(Instant::now() < deadline, "the launcher did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
    let p = port.to_string();
    let (ports, _) = json(&["ports", "--port", &p, "--format", "json"]);
    let mut shown: BTreeSet<i64> = ports["holders"]
        .as_array()
        .expect("holders")
        .iter()
        .filter_map(|h| h["pid"].as_i64())
        .collect();
    for f in ports["findings"].as_array().expect("findings") {
        shown.extend(pids_of(f));
    }
    assert!(
        shown.contains(&i64::from(sit.pid("rank0"))),
        "ports shows the holder: {ports:#}"
    );
    let (tree, _) = json(&["tree", "--port", &p, "--format", "json"]);
    let drawn = drawn(&tree);
    let missing: Vec<&i64> = shown.difference(&drawn).collect();
    assert!(
        missing.is_empty(),
        "tree --port {port} leaves out {missing:?} that ports shows:\nports: {ports:#}\ntree: {tree:#}"
    );
    // Both orphaned ranks are the job's; the idle one is shown by ports (a finding) and drawn.
    assert!(
        drawn.contains(&i64::from(sit.pid("rank1"))),
        "the orphaned idle rank is drawn: {tree:#}"
    );
}
