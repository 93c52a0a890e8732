//! Everyday verdicts against real processes and sockets (tests/helpers/verdicts.py): one job
//! however its ranks were started, a foreign holder of the port, a free port in every fix.
//! Every helper is killed (by process group) when its test ends.

mod common;

use std::process::Command;

use common::*;

fn start(situation: &str, port: u16) -> Situation {
    Situation::start_cmd(
        Command::new(python())
            .arg(helper("verdicts.py"))
            .arg(situation)
            .arg(port.to_string()),
    )
}

fn jobs_on(doc: &serde_json::Value, port: u16) -> Vec<&serde_json::Value> {
    doc["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .filter(|j| j["master_port"] == port)
        .collect()
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
#[allow(dead_code)]
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

#[allow(dead_code)]
fn ephemeral_low() -> u16 {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
    range.split_whitespace().next().unwrap().parse().unwrap()
}

/// A suggested port is below the ephemeral range and a real bind of it succeeds now.
#[allow(dead_code)]
fn assert_free(port: u16) {
    assert!(
        port < ephemeral_low(),
        "{port} is not below the ephemeral range"
    );
    assert!(
        std::net::TcpListener::bind(("0.0.0.0", port)).is_ok(),
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
