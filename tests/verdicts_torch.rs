//! Everyday verdicts on real torch and Lightning jobs (CPU, gloo) from the managed environment
//! (`doctor repro --setup`): a healthy Fabric, Trainer and torchrun job get no warning; a job
//! with a rank that never started, or one that was stopped, gets D009 naming the missing rank and
//! what the live ranks are blocked in. Every job is killed (by process group) when its test ends.
//! DOCTOR_SKIP_TORCH=1 skips these on a machine without torch, except under CI=true.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;

/// One torch job at a time: the machine is small.
static HEAVY: Mutex<()> = Mutex::new(());

fn torch_python() -> Option<PathBuf> {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    if std::env::var_os("DOCTOR_SKIP_TORCH").is_some() && !ci {
        eprintln!("skipped: DOCTOR_SKIP_TORCH is set");
        return None;
    }
    let out = doctor()
        .args(["repro", "--setup", "--no-setup"])
        .output()
        .expect("doctor runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "no Python with torch and lightning; run scripts/test.sh first:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let python = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(
        python.is_file(),
        "doctor repro --setup named no interpreter"
    );
    Some(python)
}

/// A job in its own process group, killed (whole group) on drop; its stdout lines collected.
struct Job {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Job {
    fn start(cmd: &mut Command) -> Job {
        let mut child = spawn_clean(cmd);
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
            seen: Vec::new(),
        }
    }

    /// Wait for `n` lines starting with `prefix`.
    fn wait_for(&mut self, prefix: &str, n: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let hits: Vec<String> = self
                .seen
                .iter()
                .filter(|l| l.starts_with(prefix))
                .cloned()
                .collect();
            if hits.len() >= n {
                return hits;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no {n} `{prefix}` lines in time: {:?}",
                self.seen
            );
            if let Ok(l) = self
                .lines
                .recv_timeout(left.min(Duration::from_millis(500)))
            {
                self.seen.push(l);
            }
        }
    }
}

/// Every live descendant of `root` (torchrun starts its workers in sessions of their own, so
/// the job's process group does not reach them).
fn descendants(root: i32) -> Vec<i32> {
    let mut parent_of = std::collections::HashMap::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<i32>().ok());
        if let Some(ppid) = ppid {
            parent_of.insert(pid, ppid);
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for (&c, &pp) in &parent_of {
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
        // SAFETY: kill(2) on the job's own process group and on the pids of its descendants.
        unsafe {
            libc::kill(-pgid, libc::SIGCONT);
            libc::kill(-pgid, libc::SIGKILL);
            for k in kids {
                libc::kill(k, libc::SIGCONT);
                libc::kill(k, libc::SIGKILL);
            }
        }
        let _ = self.child.wait();
    }
}

fn field(line: &str, key: &str) -> String {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .unwrap_or_default()
        .to_string()
}

fn helper_cmd(python: &std::path::Path, args: &[&str]) -> Command {
    let mut c = Command::new(python);
    c.arg(helper("torch_job.py")).args(args);
    c
}

/// The findings at warning or worse that cite `port` or one of `pids`.
fn problems_about(doc: &serde_json::Value, port: u16, pids: &[i64]) -> Vec<serde_json::Value> {
    doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] != "info")
        .filter(|f| {
            f["ports"].as_array().unwrap().iter().any(|p| p == port)
                || pids_of(f).iter().any(|p| pids.contains(p))
        })
        .cloned()
        .collect()
}

/// `doctor ports` on a healthy job: nothing about it, and exit 0 unless something else on this
/// shared machine is wrong (then every problem is about something else).
fn assert_healthy(port: u16, pids: &[i64]) {
    let (doc, code) = json(&["ports", "--format", "json"]);
    let mine = problems_about(&doc, port, pids);
    assert!(mine.is_empty(), "a healthy job got {mine:#?}");
    let all_problems = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["severity"] != "info");
    if !all_problems {
        assert_eq!(code, 0, "{doc:#}");
    }
    assert_eq!(jobs_on(&doc, port).len(), 1, "one job on its port: {doc:#}");
}

fn up_lines(job: &mut Job, n: usize) -> (u16, Vec<i64>) {
    let ups = job.wait_for("UP ", n, Duration::from_secs(240));
    let port: u16 = field(&ups[0], "port")
        .parse()
        .expect("MASTER_PORT in UP line");
    let pids = ups
        .iter()
        .map(|l| field(l, "pid").parse().unwrap())
        .collect();
    (port, pids)
}

#[test]
fn healthy_fabric_job_gets_no_warning() {
    let Some(py) = torch_python() else { return };
    let _heavy = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let mut job = Job::start(&mut helper_cmd(&py, &["fabric"]));
    let (port, pids) = up_lines(&mut job, 2);
    assert_healthy(port, &pids);
}

#[test]
fn healthy_trainer_job_gets_no_warning() {
    let Some(py) = torch_python() else { return };
    let _heavy = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let mut job = Job::start(&mut helper_cmd(&py, &["trainer"]));
    let (port, pids) = up_lines(&mut job, 2);
    assert_healthy(port, &pids);
}

#[test]
fn healthy_torchrun_job_gets_no_warning() {
    let Some(py) = torch_python() else { return };
    let _heavy = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let mut cmd = Command::new(&py);
    cmd.args([
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
    ])
    .arg(helper("torch_job.py"))
    .arg("ready");
    let mut job = Job::start(&mut cmd);
    let (port, pids) = up_lines(&mut job, 2);
    assert_healthy(port, &pids);
}

/// Poll `doctor ports` until a D009 about `port` shows (ranks import torch, connect, then wait
/// out the hang threshold).
fn wait_for_d009(port: u16) -> (serde_json::Value, serde_json::Value, i32) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let (doc, code) = json(&["ports", "--format", "json"]);
        if let Some(f) = findings(&doc, "D009", port).first() {
            return ((*f).clone(), doc.clone(), code);
        }
        assert!(Instant::now() < deadline, "no D009 in time: {doc:#}");
        std::thread::sleep(Duration::from_secs(2));
    }
}

fn py_spy_next_to(py: &std::path::Path) -> bool {
    py.parent().is_some_and(|d| d.join("py-spy").is_file())
}

#[test]
fn world_of_three_with_two_ranks_started_hangs_with_rank_two_missing() {
    let Some(py) = torch_python() else { return };
    let _heavy = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let port = free_low_port();
    let ps = port.to_string();
    let mut job = Job::start(&mut helper_cmd(&py, &["launch", &ps, "3", "2"]));
    let pids_line = job.wait_for("PIDS ", 1, Duration::from_secs(30));
    let (r0, r1): (i64, i64) = (
        field(&pids_line[0], "rank0").parse().unwrap(),
        field(&pids_line[0], "rank1").parse().unwrap(),
    );
    let (f, doc, code) = wait_for_d009(port);
    assert_eq!(code, 1);
    assert_eq!(f["severity"], "error");
    let msg = f["message"].as_str().unwrap();
    assert!(msg.contains("2 of 3 ranks connected"), "{msg}");
    assert!(msg.contains("missing: rank 2"), "{msg}");
    let mut pids = pids_of(&f);
    pids.sort();
    assert_eq!(pids, vec![r0.min(r1), r0.max(r1)]);
    // What each live rank is blocked in: the kernel's view, and Python's when py-spy is there.
    assert!(msg.contains("syscall") || msg.contains("wchan"), "{msg}");
    if py_spy_next_to(&py) {
        assert!(msg.contains("Python: "), "{msg}");
    } else {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "py-spy is missing from the managed environment (repro/requirements.txt)"
        );
    }
    assert!(
        f["fix"]["message"]
            .as_str()
            .unwrap()
            .contains("WORLD_SIZE=3"),
        "{f}"
    );
    // One job, not two: the plain subprocess launcher's ranks share the rendezvous.
    assert!(findings(&doc, "D002", port).is_empty(), "{doc:#}");
}

#[test]
fn a_rank_stopped_before_it_joins_is_named_with_its_state() {
    let Some(py) = torch_python() else { return };
    let _heavy = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let port = free_low_port();
    let ps = port.to_string();
    let mut job = Job::start(&mut helper_cmd(&py, &["launch", &ps, "3", "3", "2"]));
    let pids_line = job.wait_for("PIDS ", 1, Duration::from_secs(30));
    let stopped: i64 = field(&pids_line[0], "rank2").parse().unwrap();
    let (f, _doc, _) = wait_for_d009(port);
    let msg = f["message"].as_str().unwrap();
    assert!(msg.contains("2 of 3 ranks connected"), "{msg}");
    assert!(
        !msg.contains("missing:"),
        "the rank is there, only stopped: {msg}"
    );
    assert!(msg.contains(&format!("pid {stopped}")), "{msg}");
    assert!(msg.contains("stopped (state T"), "{msg}");
    assert!(pids_of(&f).contains(&stopped));
    let fix = f["fix"]["message"].as_str().unwrap();
    assert!(fix.contains(&format!("kill -CONT {stopped}")), "{fix}");
}
