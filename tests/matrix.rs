//! The launcher x situation matrix (issue 20) on real torch and Lightning (CPU, gloo) from the
//! managed environment (`doctor repro --setup`). One data file, tests/helpers/matrix.json, says
//! for each cell which codes `doctor ports` and `doctor tree` must give on the live job; the same
//! file generates docs/verdicts.md (`verdicts_page_is_current` fails when the page is stale;
//! `DOCTOR_BLESS=1` rewrites it). The jobs of all cells run at once (each on its own port), one
//! live job serves every check of its cell, and every process is killed (group and descendants)
//! when the test ends, pass or fail.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use common::*;

fn matrix() -> serde_json::Value {
    let text = std::fs::read_to_string(helper("matrix.json")).expect("tests/helpers/matrix.json");
    serde_json::from_str(&text).expect("matrix.json is JSON")
}

fn cells() -> Vec<serde_json::Value> {
    matrix()["cells"].as_array().expect("cells").clone()
}

fn codes_of(cell: &serde_json::Value) -> Vec<String> {
    cell["codes"]
        .as_array()
        .expect("codes")
        .iter()
        .map(|c| c.as_str().expect("code").to_string())
        .collect()
}

/// docs/verdicts.md from the matrix data.
fn verdicts_page() -> String {
    let mut s = String::from(
        "# Verdicts: launcher x situation\n\n\
         <!-- generated from tests/helpers/matrix.json by tests/matrix.rs (DOCTOR_BLESS=1 cargo test --test matrix); do not edit -->\n\n\
         What `doctor ports` and `doctor tree` say about real jobs of each launcher (torch 2.15 and Lightning 2.6.6 on CPU, gloo).\n\
         Every row is a live job that `tests/matrix.rs` starts and checks: the codes must be exactly these (none: no finding at all),\n\
         all ranks must be in one job, and the launcher's pid is that job's root or one of its processes.\n\n\
         | launcher | how the ranks start | situation | codes |\n|---|---|---|---|\n",
    );
    for c in cells() {
        let codes = codes_of(&c);
        s.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            c["launcher"].as_str().unwrap(),
            c["describe"].as_str().unwrap(),
            c["situation"].as_str().unwrap(),
            if codes.is_empty() {
                "none".to_string()
            } else {
                codes.join(", ")
            }
        ));
    }
    s
}

#[test]
fn verdicts_page_is_current() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/verdicts.md");
    let want = verdicts_page();
    if std::env::var_os("DOCTOR_BLESS").is_some() {
        std::fs::write(&path, &want).expect("write docs/verdicts.md");
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        have, want,
        "docs/verdicts.md is stale: run DOCTOR_BLESS=1 cargo test --test matrix verdicts_page"
    );
}

/// The managed venv's interpreter; None (after SKIP) where torch is missing outside CI.
fn torch_python() -> Option<PathBuf> {
    let out = doctor()
        .args(["repro", "--setup", "--no-setup"])
        .output()
        .expect("doctor runs");
    if out.status.code() != Some(0) {
        skip_or_fail(&format!(
            "no Python with torch and lightning (run scripts/test.sh): {}",
            String::from_utf8_lossy(&out.stderr)
        ));
        return None;
    }
    Some(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// One cell's live job: its own process group, killed with all descendants on drop.
struct Job {
    child: Child,
    lines: Receiver<String>,
    up: Vec<i32>,
}

impl Job {
    fn start(python: &PathBuf, launcher: &str, port: u16) -> Job {
        let mut cmd = Command::new(python);
        cmd.arg(helper("matrix_job.py"))
            .arg(launcher)
            .arg(port.to_string())
            .env("PYTHONUNBUFFERED", "1");
        let mut child = spawn_clean(&mut cmd);
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Job {
            child,
            lines: rx,
            up: Vec::new(),
        }
    }

    /// Collect `UP rank=R pid=P` lines until `n` ranks are up or `deadline` passes.
    fn poll(&mut self) {
        while let Ok(l) = self.lines.try_recv() {
            if let Some(pid) = l
                .split_whitespace()
                .find_map(|kv| kv.strip_prefix("pid="))
                .and_then(|p| p.parse().ok())
            {
                self.up.push(pid);
            }
        }
    }
}

fn descendants(root: i32) -> Vec<i32> {
    let mut parent_of = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if let Some(ppid) = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<i32>().ok())
        {
            parent_of.push((pid, ppid));
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for &(c, pp) in &parent_of {
            if pp == p && !out.contains(&c) {
                out.push(c);
                frontier.push(c);
            }
        }
    }
    out
}

impl Drop for Job {
    fn drop(&mut self) {
        let pgid = self.child.id() as i32;
        let kids = descendants(pgid);
        // SAFETY: kill(2) on the job's own process group and its descendants' pids.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
            for k in kids {
                libc::kill(k, libc::SIGKILL);
            }
        }
        let _ = self.child.wait();
    }
}

fn codes_in(doc: &serde_json::Value, port: u16) -> BTreeSet<String> {
    doc["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| {
            f["ports"]
                .as_array()
                .is_some_and(|p| p.iter().any(|x| x == port))
        })
        .map(|f| f["code"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn every_cell_on_a_real_job() {
    let Some(python) = torch_python() else {
        return;
    };
    let cells = cells();
    let mut jobs: Vec<(serde_json::Value, u16, Job)> = cells
        .into_iter()
        .map(|c| {
            let port = free_low_port();
            let job = Job::start(&python, c["launcher"].as_str().unwrap(), port);
            (c, port, job)
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        for (_, _, j) in jobs.iter_mut() {
            j.poll();
        }
        if jobs.iter().all(|(_, _, j)| j.up.len() >= 2) {
            break;
        }
        if Instant::now() > deadline {
            let late: Vec<String> = jobs
                .iter()
                .filter(|(_, _, j)| j.up.len() < 2)
                .map(|(c, _, _)| c["launcher"].to_string())
                .collect();
            panic!("jobs did not come up in 300 s: {late:?}");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let mut failures = Vec::new();
    for (cell, port, job) in &jobs {
        let name = format!("{} / {}", cell["launcher"], cell["situation"]);
        let want: BTreeSet<String> = codes_of(cell).into_iter().collect();
        let p = port.to_string();
        for cmd in ["ports", "tree"] {
            let (doc, code) = json(&[cmd, "--port", &p, "--format", "json"]);
            let got = codes_in(&doc, *port);
            if got != want {
                failures.push(format!(
                    "{name}: doctor {cmd} gave {got:?}, matrix says {want:?}"
                ));
            }
            let want_exit = if want.is_empty() { 0 } else { 1 };
            if code != want_exit && want.iter().all(|c| c != "D004" && c != "D007") {
                failures.push(format!(
                    "{name}: doctor {cmd} exit {code}, want {want_exit}"
                ));
            }
            // Every rank that came up is in one job, and that job's root is the launcher's
            // process (pid of the helper) or one of the ranks.
            let on = jobs_on(&doc, *port);
            let holding: Vec<&serde_json::Value> = on
                .iter()
                .copied()
                .filter(|j| {
                    j["pids"]
                        .as_array()
                        .is_some_and(|ps| job.up.iter().any(|r| ps.iter().any(|x| x == *r)))
                })
                .collect();
            if holding.len() != 1 {
                failures.push(format!(
                    "{name}: doctor {cmd}: ranks {:?} are in {} jobs on port {port}: {:?}",
                    job.up,
                    holding.len(),
                    on.iter().map(|j| &j["id"]).collect::<Vec<_>>()
                ));
                continue;
            }
            let pids = holding[0]["pids"].as_array().unwrap();
            for r in &job.up {
                if !pids.iter().any(|x| x == *r) {
                    failures.push(format!("{name}: doctor {cmd}: rank pid {r} not in the job"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
