//! Everyday verdicts against real processes and sockets (tests/helpers/verdicts.py): one job
//! however its ranks were started, a foreign holder of the port, a free port in every fix.
//! Every helper is killed (by process group) when its test ends.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

fn start(situation: &str, port: u16) -> Situation {
    Situation::start_cmd(
        Command::new(python())
            .arg(helper("verdicts.py"))
            .arg(situation)
            .arg(port.to_string()),
    )
}

fn job_pids(job: &serde_json::Value) -> Vec<i64> {
    job["pids"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p.as_i64())
        .collect()
}

/// Every `MASTER_PORT=N` a text names.
fn suggested_ports(text: &str) -> Vec<u16> {
    text.match_indices("MASTER_PORT=")
        .filter_map(|(i, m)| {
            let digits: String = text[i + m.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        })
        .collect()
}

fn ephemeral_low() -> u16 {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
    range.split_whitespace().next().unwrap().parse().unwrap()
}

/// A suggested port is below the ephemeral range and a real bind of it succeeds now.
fn assert_free(port: u16) {
    assert!(
        port < ephemeral_low(),
        "{port} is not below the ephemeral range"
    );
    // Free means a bind succeeds; another test's doctor (run in parallel) may be proving the same
    // port free with a bind of its own for a few microseconds, and another test may be asserting
    // it at this moment: a port is taken only when no bind succeeds for a second.
    assert!(
        wait_until(Duration::from_secs(1), || std::net::TcpListener::bind((
            "0.0.0.0", port
        ))
        .is_ok()),
        "suggested port {port} is taken"
    );
}

#[test]
fn subprocess_launcher_ranks_are_one_job() {
    let port = free_low_port();
    let s = start("subprocess-launcher", port);
    let (doc, _) = json(&["ports", "--format", "json"]);
    let jobs = jobs_on(&doc, port);
    assert_eq!(jobs.len(), 1, "{doc:#}");
    let pids = job_pids(jobs[0]);
    assert!(pids.contains(&(s.pid("rank0") as i64)), "{doc:#}");
    assert!(pids.contains(&(s.pid("rank1") as i64)), "{doc:#}");
    assert_eq!(jobs[0]["root"], s.pid("rank0"), "rooted where the store is");
    assert!(findings(&doc, "D002", port).is_empty(), "{doc:#}");
}

#[test]
fn srun_like_ranks_with_different_parents_are_one_job() {
    let port = free_low_port();
    let s = start("srun-like", port);
    let (doc, code) = json(&["ports", "--format", "json"]);
    let jobs = jobs_on(&doc, port);
    assert_eq!(jobs.len(), 1, "{doc:#}");
    let pids = job_pids(jobs[0]);
    for k in ["rank0", "rank1"] {
        assert!(pids.contains(&(s.pid(k) as i64)), "{k}: {doc:#}");
    }
    assert_eq!(jobs[0]["slurm_job_id"], "4242");
    assert!(findings(&doc, "D002", port).is_empty(), "{doc:#}");
    let mine: Vec<_> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["ports"].as_array().unwrap().iter().any(|p| p == port))
        .collect();
    assert!(mine.is_empty(), "a healthy job has no finding: {mine:?}");
    let _ = code;
}

#[test]
fn foreign_listener_is_a_finding_with_two_fixes() {
    let port = free_low_port();
    let s = start("foreign-listener", port);
    let server = s.pid("server");
    let (doc, code) = json(&["ports", "--port", &port.to_string(), "--format", "json"]);
    assert_eq!(code, 1, "a warning exits 1");
    let d008 = findings(&doc, "D008", port);
    assert_eq!(d008.len(), 1, "{doc:#}");
    let f = d008[0];
    assert_eq!(pids_of(f), vec![server as i64]);
    assert_eq!(f["severity"], "warning", "no job wants the port");
    let msg = f["message"].as_str().unwrap();
    assert!(msg.contains(&format!("pid {server}")), "{msg}");
    assert!(msg.contains("user root") || msg.contains("user "), "{msg}");
    assert!(msg.contains("verdicts.py foreign-listener"), "{msg}");
    assert!(msg.contains("running for"), "{msg}");
    assert!(
        msg.contains("a listener and an accepted connection"),
        "{msg}"
    );
    assert!(msg.contains("asked with --port"), "{msg}");
    let fix = f["fix"]["message"].as_str().unwrap();
    assert!(fix.contains(&format!("`kill {server}`")), "{fix}");
    let suggested = suggested_ports(fix);
    assert_eq!(suggested.len(), 1, "{fix}");
    assert_ne!(suggested[0], port);
    assert_free(suggested[0]);
    // The text form prints the same verdict.
    let out = run(&["ports", "--port", &port.to_string()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("warning[D008] port-held-by-foreign-process"),
        "{text}"
    );
}

#[test]
fn foreign_outgoing_connection_is_a_finding() {
    let port = free_low_port();
    let s = start("foreign-outgoing", port);
    let client = s.pid("client");
    let (doc, code) = json(&["ports", "--port", &port.to_string(), "--format", "json"]);
    assert_eq!(code, 1);
    let d008 = findings(&doc, "D008", port);
    assert_eq!(d008.len(), 1, "{doc:#}");
    assert_eq!(pids_of(d008[0]), vec![client as i64]);
    let msg = d008[0]["message"].as_str().unwrap();
    assert!(
        msg.contains("the local port of an outgoing connection"),
        "{msg}"
    );
    // Every port any fix suggests is free, and none is a port a finding says is taken.
    for f in doc["findings"].as_array().unwrap() {
        for p in suggested_ports(f["fix"]["message"].as_str().unwrap()) {
            assert_ne!(p, port, "{f}");
            assert_free(p);
        }
    }
}

#[test]
fn a_job_wanting_a_foreign_held_port_is_an_error_not_another_job() {
    // The foreign server holds the port; a rank that wants it (MASTER_PORT) exists but cannot host.
    let port = free_low_port();
    let holder = start("foreign-listener", port);
    let rank = start("wanting-rank", port);
    let (doc, code) = json(&["ports", "--format", "json", "--port", &port.to_string()]);
    assert_eq!(code, 1);
    assert!(findings(&doc, "D002", port).is_empty(), "{doc:#}");
    let d008 = findings(&doc, "D008", port);
    assert_eq!(d008.len(), 1, "{doc:#}");
    assert_eq!(
        pids_of(d008[0]),
        vec![holder.pid("server") as i64, rank.pid("rank") as i64]
    );
    assert_eq!(d008[0]["severity"], "error", "a job wants the port");
}

#[test]
fn free_prints_one_free_port_below_the_ephemeral_range() {
    let out = run(&["ports", "--free"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    let port: u16 = text.trim().parse().expect("one number");
    assert_eq!(text, format!("{port}\n"), "script-friendly");
    assert_free(port);
    // Taken now: it is not printed again.
    let _l = std::net::TcpListener::bind(("0.0.0.0", port)).unwrap();
    let again = run(&["ports", "--free"]);
    let next: u16 = String::from_utf8_lossy(&again.stdout)
        .trim()
        .parse()
        .unwrap();
    assert_ne!(next, port);
}

#[test]
fn doctor_run_makes_a_foreign_holder_of_the_failed_port_an_error() {
    let port = free_low_port();
    let holder = start("foreign-listener", port);
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("run.json");
    let out = doctor()
        .args(["run", "--record", record.to_str().unwrap(), "--"])
        .arg(python())
        .arg(helper("verdicts.py"))
        .args(["bind-rank", &port.to_string()])
        .output()
        .unwrap();
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&record).unwrap()).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let d008: Vec<_> = doc["diagnosis"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"] == "D008")
        .collect();
    assert_eq!(d008.len(), 1, "{err}\n{doc:#}");
    assert_eq!(d008[0]["severity"], "error", "a rank failed to bind it");
    assert_eq!(pids_of(d008[0])[0], holder.pid("server") as i64);
    let msg = d008[0]["message"].as_str().unwrap();
    assert!(msg.contains("a rank failed to bind the port"), "{msg}");
    for p in suggested_ports(d008[0]["fix"]["message"].as_str().unwrap()) {
        assert_free(p);
    }
    assert!(err.contains("D008"), "{err}");
}

#[test]
fn a_loaded_snapshot_claims_no_port_free_on_this_machine() {
    let port = free_low_port();
    let _holder = start("foreign-listener", port);
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("snap.json");
    let out = run(&["snapshot", "-o", snap.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let (doc, _) = json(&[
        "ports",
        "--from",
        snap.to_str().unwrap(),
        "--port",
        &port.to_string(),
        "--format",
        "json",
    ]);
    let d008 = findings(&doc, "D008", port);
    assert_eq!(d008.len(), 1, "{doc:#}");
    let fix = d008[0]["fix"]["message"].as_str().unwrap();
    assert!(suggested_ports(fix).is_empty(), "{fix}");
    assert!(fix.contains("a free port below"), "{fix}");
    // The snapshot carries the holder's user and cgroup, and old snapshots without them load.
    let text = std::fs::read_to_string(&snap).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    for p in v["processes"].as_array_mut().unwrap() {
        let o = p.as_object_mut().unwrap();
        for k in ["user", "cgroup", "wchan", "syscall", "py_stack"] {
            o.remove(k);
        }
    }
    std::fs::write(&snap, serde_json::to_string(&v).unwrap()).unwrap();
    let (_, code) = json(&[
        "ports",
        "--from",
        snap.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_ne!(code, 2, "an old snapshot still loads");
}
