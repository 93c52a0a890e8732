//! The launcher x situation matrix (issue 20) on real torch and Lightning (CPU, gloo) from the
//! managed environment (`doctor repro --setup`). One data file, tests/helpers/matrix.json, says
//! for each cell which codes `doctor ports` and `doctor tree` must give on the live job; the same
//! file generates docs/verdicts.md (`verdicts_page_is_current` fails when the page is stale;
//! `DOCTOR_BLESS=1` rewrites it).
//!
//! One live job per launcher (and world shape) serves all its cells in turn, in the order of the
//! file's `situations` (a situation that ends the job comes last); a few jobs run at once
//! (`DOCTOR_MATRIX_JOBS`, default 4). Every wait is on a condition with a deadline (a line from
//! the job, a code from doctor), never a fixed sleep: a job under `doctor run` is interrupted
//! (SIGINT to doctor, as a Ctrl-C) as soon as its last cell is checked, and doctor's record then
//! states the run as it stood. Every fix the matrix produces is checked
//! safe: a kill names no group 0 or 1, not the test's own group or session, no group with a
//! process outside the cell's job, and every holder of the port. Every process is killed (group,
//! descendants, and every pid the job reported, orphans included) when the test ends, pass or
//! fail.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

type Value = serde_json::Value;

fn matrix() -> Value {
    let text = std::fs::read_to_string(helper("matrix.json")).expect("tests/helpers/matrix.json");
    serde_json::from_str(&text).expect("matrix.json is JSON")
}

fn list<'a>(v: &'a Value, key: &str) -> &'a Vec<Value> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} is a list"))
}

fn strs(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| c.as_str().expect("a string").to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn describe_of(m: &Value, kind: &str, name: &str) -> String {
    list(m, kind)
        .iter()
        .find(|l| l["name"] == name)
        .and_then(|l| l["describe"].as_str())
        .unwrap_or_else(|| panic!("{kind} {name} is not described in matrix.json"))
        .to_string()
}

/// docs/verdicts.md from the matrix data.
fn verdicts_page() -> String {
    let m = matrix();
    let mut s = String::from(
        "# Verdicts: launcher x situation\n\n\
         <!-- generated from tests/helpers/matrix.json by tests/matrix.rs (DOCTOR_BLESS=1 cargo test --test matrix); do not edit -->\n\n\
         What `doctor ports`, `doctor tree` and `doctor run` say about real jobs of each launcher (torch 2.15 and Lightning 2.6.6\n\
         on CPU, gloo). Every row is a live job that `tests/matrix.rs` starts and checks: the codes must be exactly these (none: no\n\
         finding at all) from each command, all ranks must be in one job, and every fix must be safe (a kill names no group 0 or 1,\n\
         not the caller's group or session, no group with a process of another job, and every holder of the port).\n\n\
         ## Launchers\n\n| launcher | how the ranks start |\n|---|---|\n",
    );
    for l in list(&m, "launchers") {
        s.push_str(&format!(
            "| {} | {} |\n",
            l["name"].as_str().unwrap(),
            l["describe"].as_str().unwrap()
        ));
    }
    s.push_str("\n## Situations\n\n| situation | what the job does |\n|---|---|\n");
    for l in list(&m, "situations") {
        s.push_str(&format!(
            "| {} | {} |\n",
            l["name"].as_str().unwrap(),
            l["describe"].as_str().unwrap()
        ));
    }
    s.push_str(
        "\n## Cells\n\n`(D007)`: a code that may show or not (information that lasts as long as a kernel timer).\n\
         `ports, tree`: what `doctor ports` and `doctor tree` give on the live situation. `doctor run`: what\n\
         `doctor run -- LAUNCHER ...` states in its record when it is interrupted (SIGINT, as a Ctrl-C) once the\n\
         situation stands and `ports` and `tree` were checked on it, or when the launcher fails by itself first\n\
         (for another-job: the second job, run under `doctor run`); `-`: not checked (see below).\n\n\
         | launcher | situation | ports, tree | doctor run |\n|---|---|---|---|\n",
    );
    for c in list(&m, "cells") {
        let mut codes = strs(c, "codes");
        codes.extend(strs(c, "may").into_iter().map(|m| format!("({m})")));
        if c.get("unasked").is_some() {
            let u = strs(c, "unasked");
            codes.push(format!(
                "with `--port P`; without: {}",
                if u.is_empty() {
                    "none".into()
                } else {
                    u.join(", ")
                }
            ));
        }
        let run = match c.get("run") {
            None => "-".to_string(),
            Some(_) => {
                let mut r = strs(c, "run");
                r.extend(strs(c, "run_may").into_iter().map(|m| format!("({m})")));
                if r.is_empty() {
                    "none".into()
                } else {
                    r.join(", ")
                }
            }
        };
        s.push_str(&format!(
            "| {} | {} | {} | {run} |\n",
            c["launcher"].as_str().unwrap(),
            c["situation"].as_str().unwrap(),
            if codes.is_empty() {
                "none".to_string()
            } else {
                codes.join(", ")
            }
        ));
    }
    let not_run = list(&m, "run_not_checked");
    if !not_run.is_empty() {
        s.push_str("\n## Cells `doctor run` does not check, and why\n\n");
        for e in not_run {
            s.push_str(&format!("- {}\n", e.as_str().unwrap()));
        }
    }
    let eq = list(&m, "equivalent");
    if !eq.is_empty() {
        s.push_str("\n## Cells not run, and why they are equivalent to one that is\n\n");
        for e in eq {
            s.push_str(&format!(
                "- **{}** with {}: {}\n",
                e["situation"].as_str().unwrap(),
                strs(e, "launchers").join(", "),
                e["why"].as_str().unwrap()
            ));
        }
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

/// A job under `doctor run` is judged when the test interrupts it after its `run` cell: that cell
/// is the last of its group, and no situation that ends the job (the launcher killed) comes in it.
#[test]
fn a_run_cell_is_the_last_of_its_job() {
    for g in groups() {
        let runs: Vec<usize> = g
            .iter()
            .enumerate()
            .filter(|(_, c)| c.get("run").is_some() && c["situation"] != "another-job")
            .map(|(i, _)| i)
            .collect();
        if let Some(&i) = runs.first() {
            assert_eq!(
                (runs.len(), i),
                (1, g.len() - 1),
                "{}: a `run` cell must be the last and only one of its job: {g:?}",
                g[0]["launcher"]
            );
        }
    }
}

#[test]
fn every_cell_names_a_described_launcher_and_situation() {
    let m = matrix();
    let order: Vec<String> = list(&m, "situations")
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    for c in list(&m, "cells") {
        describe_of(&m, "launchers", c["launcher"].as_str().unwrap());
        assert!(
            order.iter().any(|s| c["situation"] == s.as_str()),
            "{c}: situation not described"
        );
        for code in strs(c, "codes") {
            assert!(
                code.len() == 4 && code.starts_with('D'),
                "{c}: {code} is no runtime code"
            );
        }
    }
}

/// The managed venv's interpreter (`common::torch_python`), with the launchers' tools next to
/// it; None (after SKIP) where one is missing outside CI.
fn torch_python() -> Option<PathBuf> {
    let py = common::torch_python()?;
    for tool in ["accelerate", "py-spy"] {
        if !py.with_file_name(tool).is_file() {
            skip_or_fail(&format!(
                "{tool} is missing from the managed environment next to {} (run `doctor repro --setup`)",
                py.display()
            ));
            return None;
        }
    }
    Some(py)
}

/// One live job: its own process group; every line it prints kept; killed with every
/// descendant and every pid it ever reported (ranks a killed launcher orphaned) on drop.
struct Job {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    /// pid -> its start time (clock ticks after boot): a pid is signalled only while it is
    /// still the process that was seen, never a later process that reuses the number.
    known: BTreeMap<i32, u64>,
    name: String,
    /// Where `doctor run -o` writes its record, when the job runs under `doctor run --timeout`.
    record: Option<PathBuf>,
}

/// The pids a job's line reports: `pid=P` and `rankN=P` (not `rank=R`, a rank number).
fn pid_fields(line: &str) -> Vec<i32> {
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| {
            *k == "pid"
                || k.strip_prefix("rank")
                    .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
        })
        .filter_map(|(_, v)| v.parse().ok())
        .collect()
}

/// Whether the test may ever signal `pid`: not 0 or 1, not this process nor an ancestor of it.
fn killable(pid: i32) -> bool {
    if pid <= 1 {
        return false;
    }
    let mut cur = std::process::id() as i32;
    for _ in 0..64 {
        if cur == pid {
            return false;
        }
        match stat_field(cur, 1) {
            Some(pp) if pp > 0 && pp != cur => cur = pp,
            _ => break,
        }
    }
    true
}

fn field(line: &str, key: &str) -> Option<String> {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .map(str::to_string)
}

impl Job {
    fn start(python: &Path, name: &str, launcher: &str, port: u16, shape: &Shape) -> Job {
        Job::start_as(python, name, launcher, port, shape, None)
    }

    /// The job as `doctor run --timeout T -o RECORD -- python matrix_job.py ...`: doctor runs it
    /// (its own process group, traced), judges the live situation at the timeout (or explains
    /// the launcher's failure when it fails first) and writes the record.
    fn start_under_run(python: &Path, name: &str, launcher: &str, port: u16, shape: &Shape) -> Job {
        Job::start_as(python, name, launcher, port, shape, Some(run_timeout()))
    }

    fn start_as(
        python: &Path,
        name: &str,
        launcher: &str,
        port: u16,
        shape: &Shape,
        run_timeout: Option<Duration>,
    ) -> Job {
        static RECORDS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let record = run_timeout.map(|_| {
            let n = RECORDS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::env::temp_dir().join(format!(
                "ddp-doctor-matrix-{}-{port}-{n}.json",
                std::process::id()
            ))
        });
        let mut cmd = match (&record, run_timeout) {
            (Some(rec), Some(t)) => {
                let _ = std::fs::remove_file(rec);
                let mut c = Command::new(env!("CARGO_BIN_EXE_doctor"));
                default_signals(&mut c);
                c.arg("run")
                    .arg("--timeout")
                    .arg(t.as_secs().to_string())
                    .arg("-o")
                    .arg(rec)
                    .arg("--")
                    .arg(python);
                c
            }
            _ => Command::new(python),
        };
        cmd.arg(helper("matrix_job.py"))
            .arg(launcher)
            .arg(port.to_string())
            .args(shape.counts.iter().map(i64::to_string))
            .env("PYTHONUNBUFFERED", "1");
        if let Some(addr) = &shape.master_addr {
            cmd.env("MATRIX_MASTER_ADDR", addr);
        }
        Job::of(cmd, name, record)
    }

    /// A stdlib-only shape of tests/helpers/matrix_shapes.py (no torch).
    fn shape(shape: &str, ports: &[u16]) -> Job {
        let mut cmd = Command::new(common::python());
        cmd.arg(helper("matrix_shapes.py"))
            .arg(shape)
            .args(ports.iter().map(u16::to_string))
            .env("PYTHONUNBUFFERED", "1");
        Job::of(cmd, shape, None)
    }

    fn of(mut cmd: Command, name: &str, record: Option<PathBuf>) -> Job {
        let mut child = spawn_clean(&mut cmd);
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
        let me = child.id() as i32;
        let known = BTreeMap::from([(me, started_at(me).unwrap_or(0))]);
        Job {
            child,
            lines,
            known,
            name: name.to_string(),
            record,
        }
    }

    /// The process groups of the job's live processes now.
    fn groups(&mut self) -> BTreeSet<i32> {
        self.pids()
            .into_iter()
            .filter_map(|p| stat_field(p, 2))
            .collect()
    }

    /// Wait for `doctor run` to end and read its record. `interrupt`: the cell is checked and
    /// the job would only wait, so doctor gets SIGINT (which it passes to the command's group, as
    /// a terminal's Ctrl-C reaches a command; doctor then states the run as it stood before it
    /// began to end), and again after [`SECOND_INTERRUPT`] when the command still runs (a rank
    /// blocked in C++ may not react: doctor then stops the whole tree). Otherwise the command
    /// ends by itself (a launcher that fails); `doctor run --timeout` is only a backstop.
    fn run_record(&mut self, interrupt: bool) -> Result<Value, String> {
        let Some(path) = self.record.clone() else {
            return Err(format!("{}: not started under doctor run", self.name));
        };
        let doctor = self.child.id() as i32;
        let start = Instant::now();
        if interrupt {
            // doctor judges the run as it last stood still for a second (`doctor run`'s
            // SETTLED_SECS): the situation, checked just now, must have stood that long.
            self.wait_still(STILL);
            self.signal(doctor, libc::SIGINT);
        }
        let mut again = interrupt;
        let deadline = start
            + if interrupt {
                SECOND_INTERRUPT * 4
            } else {
                run_timeout() + Duration::from_secs(60)
            };
        let status = loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                break st;
            }
            if again && start.elapsed() > SECOND_INTERRUPT {
                self.signal(doctor, libc::SIGINT);
                again = false;
            }
            if Instant::now() > deadline {
                return Err(format!("{}: doctor run did not end", self.name));
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("{}: doctor run ({status}) wrote no record: {e}", self.name))?;
        let _ = std::fs::remove_file(&path);
        serde_json::from_str(&text).map_err(|e| format!("{}: record is no JSON: {e}", self.name))
    }

    /// Wait until the job's processes (pid, kernel state as `doctor run` classes it) and their
    /// listening and established TCP sockets have not changed for `still` (at most a minute).
    fn wait_still(&mut self, still: Duration) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = None;
        let mut since = Instant::now();
        while Instant::now() < deadline {
            let look = self.look();
            if last.as_ref() != Some(&look) {
                last = Some(look);
                since = Instant::now();
            } else if since.elapsed() >= still {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What `doctor run` compares from poll to poll: each live process of the job with its state
    /// (running, sleeping and idle alike) and the inodes of its LISTEN and ESTABLISHED sockets.
    fn look(&mut self) -> Vec<(i32, String, Vec<u64>)> {
        let held = tcp_inodes(&["01", "0A"]);
        let mut out = Vec::new();
        for pid in self.pids() {
            let Some(state) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| Some(s.rsplit_once(')')?.1.split_whitespace().next()?.to_string()))
            else {
                continue;
            };
            let state = match state.as_str() {
                "R" | "S" | "I" => "S".to_string(),
                _ => state,
            };
            let mut inodes: Vec<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| {
                    let l = std::fs::read_link(e.path()).ok()?;
                    let l = l.to_str()?;
                    l.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
                })
                .filter(|i| held.contains(i))
                .collect();
            inodes.sort_unstable();
            inodes.dedup();
            out.push((pid, state, inodes));
        }
        out
    }

    fn seen(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The first `n` lines starting with `prefix`, waiting for them until `timeout`.
    /// The `pid=` of every `prefix` line, once at least `n` are seen ([`Job::wait_lines`]).
    fn wait_pids(&mut self, prefix: &str, n: usize, timeout: Duration) -> BTreeSet<i64> {
        self.wait_lines(prefix, n, timeout)
            .iter()
            .filter_map(|l| field(l, "pid")?.parse().ok())
            .collect()
    }

    fn wait_lines(&mut self, prefix: &str, n: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let hits: Vec<String> = self
                .seen()
                .into_iter()
                .filter(|l| l.starts_with(prefix))
                .collect();
            for l in &hits {
                for pid in pid_fields(l) {
                    self.adopt(pid);
                }
            }
            if hits.len() >= n {
                self.remember_tree();
                return hits;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{}: the job ended ({status}) before {n} `{prefix}` lines: {:?}",
                    self.name,
                    self.seen()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{}: no {n} `{prefix}` lines in {timeout:?}: {:?}",
                self.name,
                self.seen()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Take `pid` as one of the job's when it is the helper or descends from a pid already
    /// known (never pid 0 or 1, this test, or one of its ancestors): a pid read from a line is
    /// only trusted that far, since the job is killed by these pids at the end.
    fn adopt(&mut self, pid: i32) {
        if self.known.contains_key(&pid) || !killable(pid) {
            return;
        }
        let roots: Vec<i32> = self.known.keys().copied().collect();
        if roots.iter().any(|&r| descendants(r).contains(&pid))
            && let Some(t) = started_at(pid)
        {
            self.known.insert(pid, t);
        }
    }

    /// Remember every live descendant now, so that those a killed launcher orphans are still
    /// killed at the end.
    fn remember_tree(&mut self) {
        let roots: Vec<i32> = self.known.keys().copied().collect();
        for r in roots {
            for p in descendants(r) {
                if killable(p)
                    && let Some(t) = started_at(p)
                {
                    self.known.entry(p).or_insert(t);
                }
            }
        }
    }

    /// The pids that belong to this job now: its known pids and their live descendants.
    fn pids(&mut self) -> BTreeSet<i32> {
        self.remember_tree();
        self.known.keys().copied().collect()
    }

    /// Signal `pid` if it is one of the job's, still the same process.
    fn signal(&self, pid: i32, sig: i32) {
        if killable(pid)
            && self
                .known
                .get(&pid)
                .is_some_and(|&t| started_at(pid) == Some(t))
        {
            // SAFETY: kill(2) on a pid of this job, checked to be the process that was seen.
            unsafe { libc::kill(pid, sig) };
        }
    }
}

fn parent_of_all() -> Vec<(i32, i32)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Some(ppid) = stat_field(pid, 1) {
            out.push((pid, ppid));
        }
    }
    out
}

/// Whether the kill command of `fix` stops `pid`: it names the pid or its process group.
fn fix_stops(fix: &str, pid: i32) -> bool {
    kill_targets(fix).iter().any(|&(group, n)| {
        if group {
            stat_field(pid, 2) == Some(n)
        } else {
            n == pid
        }
    })
}

/// Field `n` after the command name of /proc/PID/stat (0: state, 1: ppid, 2: pgrp, 3: session).
fn stat_field(pid: i32, n: usize) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(n)?.parse().ok()
}

/// Start time of `pid` (field 22 of /proc/PID/stat, clock ticks after boot).
fn started_at(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// `pid` when it is a Python process, else its first Python descendant (the rank a shell
/// wrapper runs), else `pid`.
fn python_under(pid: i32) -> i32 {
    let is_python = |p: i32| {
        std::fs::read_to_string(format!("/proc/{p}/comm"))
            .is_ok_and(|c| c.trim_start().starts_with("python"))
    };
    if is_python(pid) {
        return pid;
    }
    let mut kids = descendants(pid);
    kids.sort_unstable();
    kids.into_iter().find(|&k| is_python(k)).unwrap_or(pid)
}

/// The live descendants of `root` (none for pid 0 or 1: everything descends from init).
fn descendants(root: i32) -> Vec<i32> {
    if root <= 1 {
        return Vec::new();
    }
    let parent_of = parent_of_all();
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
        self.remember_tree();
        // SAFETY: kill(2) on the job's own process group (the helper leads it).
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        for &k in self.known.keys() {
            self.signal(k, libc::SIGCONT);
            self.signal(k, libc::SIGKILL);
        }
        let _ = self.child.wait();
        if let Some(r) = &self.record {
            let _ = std::fs::remove_file(r);
        }
    }
}

/// `doctor run --timeout` of a job under `doctor run` (`DOCTOR_MATRIX_RUN_TIMEOUT` seconds,
/// default 600): a backstop only, since the test interrupts a job once its cell is checked
/// ([`Job::run_record`]); longer than every wait for a job to come up (at load average 19 on 2
/// cores a Fabric job was not up after 90 s), so that the timeout never comes first.
fn run_timeout() -> Duration {
    Duration::from_secs(
        std::env::var("DOCTOR_MATRIX_RUN_TIMEOUT")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(600),
    )
}

/// How long a job under `doctor run` stands still before the test interrupts it: more than the
/// second `doctor run` needs to take a moment as the one the run stood at.
const STILL: Duration = Duration::from_millis(2500);

/// Inodes of the TCP sockets (IPv4 and IPv6) of this network namespace in one of `states`
/// (`/proc/net/tcp`'s hex state: 01 ESTABLISHED, 0A LISTEN).
fn tcp_inodes(states: &[&str]) -> BTreeSet<u64> {
    let mut out = BTreeSet::new();
    for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
        for l in std::fs::read_to_string(f)
            .unwrap_or_default()
            .lines()
            .skip(1)
        {
            let cols: Vec<&str> = l.split_whitespace().collect();
            if cols.len() > 9 && states.contains(&cols[3]) {
                out.extend(cols[9].parse::<u64>().ok());
            }
        }
    }
    out
}

/// How long after its SIGINT `doctor run` may still run before it gets a second one.
const SECOND_INTERRUPT: Duration = Duration::from_secs(10);

/// What `doctor run` stated about a cell (its record's findings, once the test interrupted it
/// after the cell was checked, or at the launcher's failure): exactly the cell's `run` codes
/// (and maybe `run_may`), the texts `run_has` in the first code's message and `run_fix_has` in
/// its fix, and every fix safe: no pid or group 0 or 1, not the test's own group or session,
/// only pids and groups of `stoppable` (pids, groups), which are taken while the processes live.
/// `interrupt`: the job would wait on (see [`Job::run_record`]); the record must say it was
/// interrupted, never that it timed out (the judgement of the run as it stood before the
/// interrupt, not of the moment of the timeout).
fn check_run(
    cell: &Value,
    job: &mut Job,
    stoppable: (BTreeSet<i32>, BTreeSet<i32>),
    interrupt: bool,
) -> Vec<String> {
    let name = format!("{} / {} (doctor run)", cell["launcher"], cell["situation"]);
    let want: BTreeSet<String> = strs(cell, "run").into_iter().collect();
    let may: BTreeSet<String> = strs(cell, "run_may").into_iter().collect();
    let rec = match job.run_record(interrupt) {
        Ok(r) => r,
        Err(e) => return vec![e],
    };
    let mut failures = Vec::new();
    if rec["timed_out"] != false || rec["interrupted"] != interrupt {
        failures.push(format!(
            "{name}: the record says timed_out {} and interrupted {} (the test {}): summary {:#}",
            rec["timed_out"],
            rec["interrupted"],
            if interrupt {
                "interrupted it"
            } else {
                "waited for the command to fail by itself"
            },
            rec["diagnosis"]["summary"]
        ));
    }
    let findings: Vec<Value> = rec["diagnosis"]["findings"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let got: BTreeSet<String> = findings
        .iter()
        .filter_map(|f| f["code"].as_str().map(str::to_string))
        .collect();
    if !codes_agree(&got, &want, &may) {
        failures.push(format!(
            "{name}: gave {got:?}, matrix says {want:?} (and maybe {may:?}); summary {:#}; findings {:#}",
            rec["diagnosis"]["summary"],
            Value::from(findings.clone())
        ));
    }
    let first = strs(cell, "run").first().cloned();
    if let Some(f) = findings
        .iter()
        .find(|f| first.as_deref().is_some_and(|c| f["code"] == c))
    {
        let msg = f["message"].as_str().unwrap_or_default();
        let fix = f["fix"]["message"].as_str().unwrap_or_default();
        for t in strs(cell, "run_has") {
            if !msg.contains(&t) {
                failures.push(format!("{name}: message lacks {t:?}: {msg}"));
            }
        }
        for t in strs(cell, "run_fix_has") {
            if !fix.contains(&t) {
                failures.push(format!("{name}: fix lacks {t:?}: {fix}"));
            }
        }
    }
    // SAFETY: getpgrp/getsid(0) only read this process's ids.
    let (my_pgid, my_sid) = unsafe { (libc::getpgrp(), libc::getsid(0)) };
    let (pids, groups) = stoppable;
    for f in &findings {
        if let Err(e) = check_shape(f) {
            failures.push(format!("{name}: {e}"));
        }
        let fix = f["fix"]["message"].as_str().unwrap_or_default();
        for (group, n) in kill_targets(fix) {
            let ok = n > 1
                && n != my_pgid
                && n != my_sid
                && if group {
                    groups.contains(&n)
                } else {
                    pids.contains(&n)
                };
            if !ok {
                failures.push(format!(
                    "{name}: {} fix kills {} {n}, not one of the cell's own: {fix}",
                    f["code"],
                    if group { "group" } else { "pid" }
                ));
            }
        }
    }
    failures
}

fn codes_in(doc: &Value, ports: &[u16]) -> BTreeSet<String> {
    doc["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| {
            f["ports"]
                .as_array()
                .is_some_and(|p| p.iter().any(|x| ports.iter().any(|q| x == *q)))
        })
        .map(|f| f["code"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The ports a cell is checked on: the launcher's, and the MASTER_PORT its ranks report (a c10d
/// agent hosts the workers' store on a port of its own).
fn cell_ports(job: &Job, port: u16) -> Vec<u16> {
    let mut out = vec![port];
    for l in job.seen().iter().filter(|l| l.starts_with("UP ")) {
        if let Some(p) = field(l, "port").and_then(|p| p.parse().ok())
            && !out.contains(&p)
        {
            out.push(p);
        }
    }
    out
}

/// `(group?, number)` of every kill target in a fix text: `kill -TERM -- -12 -13`, `kill 5 6`,
/// `kill -CONT 7`.
fn kill_targets(text: &str) -> Vec<(bool, i32)> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices("kill ") {
        let mut after_dashes = false;
        for tok in text[i + 5..].split_whitespace() {
            let tok = tok.trim_end_matches(['`', ',', ';', ')', '.']);
            if tok == "--" {
                after_dashes = true;
            } else if let Some(n) = tok.strip_prefix('-') {
                match n.parse::<i32>() {
                    Ok(g) if after_dashes => out.push((true, g)),
                    Ok(_) => {} // a numeric signal: `kill -9 PID`
                    Err(_) if n.chars().all(|c| c.is_ascii_uppercase()) => {}
                    Err(_) => break,
                }
            } else if let Ok(p) = tok.parse::<i32>() {
                out.push((false, p));
            } else {
                break;
            }
        }
    }
    out
}

/// The finding shape every command documents.
fn check_shape(f: &Value) -> Result<(), String> {
    let ok = f["code"].is_string()
        && f["name"].is_string()
        && matches!(f["severity"].as_str(), Some("error" | "warning" | "info"))
        && f["message"].as_str().is_some_and(|m| !m.is_empty())
        && f["pids"]
            .as_array()
            .is_some_and(|p| p.iter().all(Value::is_i64))
        && f["ports"]
            .as_array()
            .is_some_and(|p| p.iter().all(Value::is_u64))
        && f["fix"]["message"].is_string();
    if ok {
        Ok(())
    } else {
        Err(format!("finding of unexpected shape: {f}"))
    }
}

/// Every kill a fix names is safe for this cell: no group 0 or 1, not the test's own group or
/// session, no group or pid outside the cell's job, and every holder of the port named.
fn check_fix_safety(
    f: &Value,
    doc: &Value,
    ports: &[u16],
    job_pids: &BTreeSet<i32>,
) -> Vec<String> {
    let fix = f["fix"]["message"].as_str().unwrap_or_default();
    let targets = kill_targets(fix);
    if targets.is_empty() {
        return Vec::new();
    }
    let mut bad = Vec::new();
    // SAFETY: getpgrp/getsid(0) only read this process's ids.
    let (my_pgid, my_sid) = unsafe { (libc::getpgrp(), libc::getsid(0)) };
    let parent_of = parent_of_all();
    for &(group, n) in &targets {
        if n <= 1 {
            bad.push(format!(
                "kills {} {n}: {fix}",
                if group { "group" } else { "pid" }
            ));
            continue;
        }
        if group {
            if n == my_pgid || n == my_sid {
                bad.push(format!("kills the caller's own group/session {n}: {fix}"));
            }
            let members: Vec<i32> = parent_of
                .iter()
                .map(|&(p, _)| p)
                .filter(|&p| stat_field(p, 2) == Some(n))
                .collect();
            let outside: Vec<i32> = members
                .iter()
                .copied()
                .filter(|p| !job_pids.contains(p))
                .collect();
            if !outside.is_empty() {
                bad.push(format!(
                    "kills group {n}, which has processes outside the job ({outside:?}): {fix}"
                ));
            }
        } else if n == std::process::id() as i32 || !job_pids.contains(&n) {
            bad.push(format!("kills pid {n}, not one of the job's: {fix}"));
        }
    }
    // A kill that stops a holder of a socket on the port (listening or connected: all pids
    // sharing one inode, as a forked child shares its parent's) names every holder of it, by
    // pid or by group: a holder left alive keeps the socket.
    let named = |pid: i32| {
        targets.contains(&(false, pid))
            || stat_field(pid, 2).is_some_and(|g| targets.contains(&(true, g)))
    };
    let mut sharing: BTreeMap<u64, BTreeSet<i32>> = BTreeMap::new();
    for h in doc["holders"].as_array().into_iter().flatten() {
        if !ports.iter().any(|p| h["port"] == *p) || h["state"] == "TIME_WAIT" {
            continue;
        }
        if let (Some(inode), Some(pid)) = (h["inode"].as_u64(), h["pid"].as_i64())
            && alive(pid as i32)
        {
            sharing.entry(inode).or_default().insert(pid as i32);
        }
    }
    for (inode, holders) in &sharing {
        if holders.iter().any(|&p| named(p)) {
            for &pid in holders {
                if !named(pid) {
                    bad.push(format!(
                        "pid {pid} shares socket {inode} on the port with a pid the fix stops, and is not named: {fix}"
                    ));
                }
            }
        }
    }
    bad
}

/// What one cell is checked against, after the live situation stands.
/// `got` has every code of `want`, and nothing else but codes of `may` (information that
/// depends on kernel timers, such as the leftovers of a killed store).
fn codes_agree(got: &BTreeSet<String>, want: &BTreeSet<String>, may: &BTreeSet<String>) -> bool {
    want.is_subset(got) && got.iter().all(|c| want.contains(c) || may.contains(c))
}

/// `stoppable`: pids a fix of this cell may name beyond the job's own (the foreign holder; for
/// another job on the same port, only that second job's, never the first, healthy one's).
fn check_cell(
    cell: &Value,
    job: &mut Job,
    port: u16,
    ranks: &BTreeMap<String, i64>,
    stoppable: Option<BTreeSet<i32>>,
) -> Vec<String> {
    let name = format!("{} / {}", cell["launcher"], cell["situation"]);
    let want: BTreeSet<String> = strs(cell, "codes").into_iter().collect();
    let may: BTreeSet<String> = strs(cell, "may").into_iter().collect();
    let ports = cell_ports(job, port);
    let mut ours = job.pids();
    let job_pids = stoppable.unwrap_or_else(|| ours.clone());
    ours.extend(&job_pids);
    // The live ranks (a killed launcher that was rank 0 is gone).
    let up: Vec<i64> = ranks
        .values()
        .copied()
        .filter(|&p| alive(p as i32))
        .collect();
    let subst = |t: &str| substitute(t, ranks);
    let mut failures = Vec::new();
    // `ports --port P` and `tree --port P` (what a user asks about the port), and `ports` and
    // `tree` of the whole machine, read for what they say about the cell's ports.
    for (base, with_port) in [
        ("ports", true),
        ("tree", true),
        ("ports", false),
        ("tree", false),
    ] {
        let cmd = match (base, with_port) {
            ("ports", true) => "ports --port",
            ("tree", true) => "tree --port",
            _ => base,
        };
        let mut got = BTreeSet::new();
        let mut docs = Vec::new();
        for p in &ports {
            // Asking about a port makes it a choice (D004 when in the ephemeral range): only the
            // launcher's port is asked; a port the launcher picked is read off the whole machine.
            if with_port && *p != port {
                continue;
            }
            let ps = p.to_string();
            let args: Vec<&str> = if with_port {
                vec![base, "--port", &ps, "--format", "json"]
            } else {
                vec![base, "--format", "json"]
            };
            let (doc, code) = json(&args);
            got.extend(codes_in(&doc, &[*p]));
            // The whole machine's exit status speaks of other people's jobs too.
            let want_exit = if want.is_empty() { 0 } else { 1 };
            if with_port && code != want_exit && want.iter().all(|c| c != "D004" && c != "D007") {
                failures.push(format!(
                    "{name}: doctor {cmd} --port {p} exit {code}, want {want_exit}"
                ));
            }
            docs.push((doc, *p));
        }
        // A port no process names is a rendezvous port only when asked about (`unasked`: the
        // codes the whole machine's commands give then).
        let want = if with_port || cell.get("unasked").is_none() {
            want.clone()
        } else {
            strs(cell, "unasked").into_iter().collect()
        };
        if !codes_agree(&got, &want, &may) {
            failures.push(format!(
                "{name}: doctor {cmd} gave {got:?}, matrix says {want:?} (and maybe {may:?}): {:#}",
                docs.iter()
                    .map(|(d, _)| d["findings"].clone())
                    .collect::<Value>()
            ));
        }
        for (doc, p) in &docs {
            for f in doc["findings"].as_array().unwrap() {
                // Every finding about the cell: on its port, or naming one of its processes
                // (whatever port: a fix must be safe wherever it points).
                let on_port = f["ports"]
                    .as_array()
                    .is_some_and(|x| x.iter().any(|q| q == *p));
                let names_ours = pids_of(f).iter().any(|&q| ours.contains(&(q as i32)));
                if !on_port && !names_ours {
                    continue;
                }
                if let Err(e) = check_shape(f) {
                    failures.push(format!("{name}: doctor {cmd}: {e}"));
                }
                for b in check_fix_safety(f, doc, &ports, &job_pids) {
                    failures.push(format!("{name}: doctor {cmd}: {} fix {b}", f["code"]));
                }
            }
            // Texts the first code's finding must carry.
            if let Some(first) = strs(cell, "codes").first()
                && let Some(f) = findings(doc, first, *p).first()
            {
                let msg = f["message"].as_str().unwrap_or_default();
                let fix = f["fix"]["message"].as_str().unwrap_or_default();
                for t in strs(cell, "message_has").iter().map(|t| subst(t)) {
                    if !msg.contains(&t) {
                        failures.push(format!("{name}: doctor {cmd}: message lacks {t:?}: {msg}"));
                    }
                }
                for t in strs(cell, "message_lacks").iter().map(|t| subst(t)) {
                    if msg.contains(&t) {
                        failures.push(format!("{name}: doctor {cmd}: message has {t:?}: {msg}"));
                    }
                }
                for t in strs(cell, "fix_has").iter().map(|t| subst(t)) {
                    if !fix.contains(&t) {
                        failures.push(format!("{name}: doctor {cmd}: fix lacks {t:?}: {fix}"));
                    }
                }
                if cell["ranks_in_finding"] == true {
                    let mut cited = pids_of(f);
                    cited.sort_unstable();
                    let mut started: Vec<i64> = ranks.values().copied().collect();
                    started.sort_unstable();
                    if cited != started {
                        failures.push(format!(
                            "{name}: doctor {cmd}: {first} cites {cited:?}, the ranks are {started:?}"
                        ));
                    }
                }
            }
        }
        // Every rank is in one job, whatever the situation (where the command has anything to go
        // on: a port asked about, or a cell whose whole machine's codes are not `unasked`).
        if !up.is_empty() && (with_port || cell.get("unasked").is_none()) {
            let (doc, _) = &docs[0];
            let holding: Vec<&Value> = doc["jobs"]
                .as_array()
                .expect("jobs")
                .iter()
                .filter(|j| {
                    j["pids"]
                        .as_array()
                        .is_some_and(|ps| up.iter().any(|r| ps.iter().any(|x| x == *r)))
                })
                .collect();
            if holding.len() != 1 {
                failures.push(format!(
                    "{name}: doctor {cmd}: ranks {up:?} are in {} jobs: {:?}",
                    holding.len(),
                    holding.iter().map(|j| &j["id"]).collect::<Vec<_>>()
                ));
            } else {
                let pids = holding[0]["pids"].as_array().unwrap();
                for r in &up {
                    if !pids.iter().any(|x| x == *r) {
                        failures.push(format!("{name}: doctor {cmd}: rank pid {r} not in the job"));
                    }
                }
            }
        }
    }
    failures
}

/// `{rankN}` in a cell's text replaced by rank N's pid.
fn substitute(text: &str, ranks: &BTreeMap<String, i64>) -> String {
    ranks.iter().fold(text.to_string(), |s, (k, v)| {
        s.replace(&format!("{{{k}}}"), &v.to_string())
    })
}

/// Poll `doctor ports` until the cell's situation stands (its codes show on its ports, and the
/// first code's finding says what `message_has` asks for), or `timeout` passes (the check that
/// follows says what was seen).
fn wait_for_codes(
    cell: &Value,
    job: &Job,
    port: u16,
    ranks: &BTreeMap<String, i64>,
    timeout: Duration,
) {
    let want: BTreeSet<String> = strs(cell, "codes").into_iter().collect();
    let may: BTreeSet<String> = strs(cell, "may").into_iter().collect();
    let texts: Vec<String> = strs(cell, "message_has")
        .iter()
        .map(|t| substitute(t, ranks))
        .collect();
    let ports = cell_ports(job, port);
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let (doc, _) = json(&["ports", "--port", &port.to_string(), "--format", "json"]);
        let said = strs(cell, "codes").first().is_none_or(|first| {
            ports.iter().any(|p| {
                findings(&doc, first, *p).iter().any(|f| {
                    let msg = f["message"].as_str().unwrap_or_default();
                    texts.iter().all(|t| msg.contains(t.as_str()))
                })
            })
        });
        if codes_agree(&codes_in(&doc, &ports), &want, &may) && said {
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// What a job is started with besides its launcher and port: the counts `world`, `started`,
/// `stop` of a cell (matrix_job.py's WORLD STARTED STOP), and its `master_addr`.
struct Shape {
    counts: Vec<i64>,
    master_addr: Option<String>,
}

impl Shape {
    fn of(cell: &Value) -> Shape {
        Shape {
            counts: ["world", "started", "stop"]
                .iter()
                .map_while(|k| cell[*k].as_i64())
                .collect(),
            master_addr: cell["master_addr"].as_str().map(str::to_string),
        }
    }
}

impl std::fmt::Debug for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.counts)?;
        if let Some(a) = &self.master_addr {
            write!(f, " MASTER_ADDR={a}")?;
        }
        Ok(())
    }
}

/// One live job for the cells of `group` (one launcher and world shape), in situation order.
fn drive(python: &Path, group: &[Value], failures: &Mutex<Vec<String>>) {
    let launcher = group[0]["launcher"].as_str().unwrap();
    let shape = Shape::of(&group[0]);
    let port = free_low_port();
    let name = format!("{launcher} {shape:?} on {port}");
    // A foreign holder comes first: the launcher then fails to bind and exits.
    let foreign = (group[0]["situation"] == "foreign-holder").then(|| {
        Situation::start_cmd(
            Command::new(common::python())
                .arg(helper("verdicts.py"))
                .arg("foreign-listener")
                .arg(port.to_string()),
        )
    });
    // A group with a `doctor run` check (not another job's: that runs the second job) runs
    // under `doctor run --timeout`; its last cell is the one standing at the timeout.
    let under_run = group
        .iter()
        .any(|c| c.get("run").is_some() && c["situation"] != "another-job");
    let mut job = if under_run {
        Job::start_under_run(python, &name, launcher, port, &shape)
    } else {
        Job::start(python, &name, launcher, port, &shape)
    };
    let started = shape.counts.get(1).copied().unwrap_or(2) as usize;
    let mut ranks: BTreeMap<String, i64> = BTreeMap::new();
    for cell in group {
        let situation = cell["situation"].as_str().unwrap();
        match situation {
            // The ranks are known from the launcher-killed cell before it.
            "lone-survivor" => {}
            "healthy" | "dup-init" | "launcher-killed" => {
                for l in job.wait_lines("UP ", started, Duration::from_secs(300)) {
                    if let (Some(r), Some(p)) = (field(&l, "rank"), field(&l, "pid")) {
                        ranks.insert(format!("rank{r}"), p.parse().unwrap());
                    }
                }
            }
            "missing-rank" | "stopped-rank" | "addr-not-local" => {
                let pids = job.wait_lines("PIDS ", 1, Duration::from_secs(60));
                for kv in pids[0].split_whitespace().skip(1) {
                    let (k, v) = kv.split_once('=').unwrap();
                    ranks.insert(k.to_string(), v.parse().unwrap());
                }
                wait_for_codes(cell, &job, port, &ranks, Duration::from_secs(240));
                // The launcher names what it started: behind a shell wrapper the rank is the
                // Python process under it.
                for v in ranks.values_mut() {
                    *v = python_under(*v as i32) as i64;
                }
            }
            "foreign-holder" => {
                let deadline = Instant::now() + Duration::from_secs(240);
                while job.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(200));
                }
                match job.child.try_wait() {
                    Ok(Some(st)) if !st.success() => {}
                    other => panic!("{name}: the launcher did not fail on a held port: {other:?}"),
                }
                wait_for_codes(cell, &job, port, &ranks, Duration::from_secs(60));
            }
            "another-job" => {
                for l in job.wait_lines("UP ", started, Duration::from_secs(300)) {
                    if let (Some(r), Some(p)) = (field(&l, "rank"), field(&l, "pid")) {
                        ranks.insert(format!("rank{r}"), p.parse().unwrap());
                    }
                }
            }
            other => panic!("situation {other} has no driver"),
        }
        if situation == "another-job" {
            // A second job of the same launcher on the same port; what it leaves waiting is
            // checked, and only its own processes may be named by a fix.
            let second_name = format!("{name} (second)");
            let mut second = if cell.get("run").is_some() {
                Job::start_under_run(python, &second_name, launcher, port, &shape)
            } else {
                Job::start(python, &second_name, launcher, port, &shape)
            };
            second.wait_lines("LAUNCHER ", 1, Duration::from_secs(60));
            let mut found = Vec::new();
            let mut record = None;
            if cell["second_exits"] == true {
                // The second launcher fails and exits: the live situation is what it leaves.
                let stoppable = (second.pids(), second.groups());
                record = Some(stoppable.clone());
                found.extend(check_run(cell, &mut second, stoppable, false));
            }
            wait_for_codes(cell, &job, port, &ranks, Duration::from_secs(240));
            let theirs = second.pids();
            let groups = second.groups();
            found.extend(check_cell(
                cell,
                &mut job,
                port,
                &ranks,
                Some(theirs.clone()),
            ));
            if cell.get("run").is_some() && record.is_none() {
                found.extend(check_run(cell, &mut second, (theirs, groups), true));
            }
            failures
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(found);
            drop(second);
            continue;
        }
        let mut dup = None;
        if situation == "dup-init" {
            job.signal(ranks["rank1"] as i32, libc::SIGUSR1);
            let line = job.wait_lines("DUP ", 1, Duration::from_secs(240));
            dup = field(&line[0], "pid").and_then(|p| p.parse::<i32>().ok());
            job.remember_tree();
            wait_for_codes(cell, &job, port, &ranks, Duration::from_secs(180));
        }
        if situation == "launcher-killed" {
            let line = job.wait_lines("LAUNCHER ", 1, Duration::from_secs(10));
            let launcher: i32 = field(&line[0], "pid").and_then(|p| p.parse().ok()).unwrap();
            job.remember_tree();
            job.signal(launcher, libc::SIGKILL);
            assert!(
                wait_gone(launcher, Duration::from_secs(30)),
                "{name}: launcher {launcher} survived SIGKILL"
            );
            wait_for_codes(cell, &job, port, &ranks, Duration::from_secs(120));
        }
        if situation == "lone-survivor" {
            // One of the orphaned ranks exits too: the other is left alone.
            let who = cell["exits"]
                .as_str()
                .expect("a lone-survivor cell names the rank that exits");
            let gone = ranks
                .remove(who)
                .unwrap_or_else(|| panic!("{name}: no {who} among {ranks:?}"))
                as i32;
            job.signal(gone, libc::SIGKILL);
            assert!(
                wait_gone(gone, Duration::from_secs(30)),
                "{name}: {who} {gone} survived SIGKILL"
            );
            wait_for_codes(cell, &job, port, &ranks, Duration::from_secs(120));
        }
        let stoppable = foreign.as_ref().map(|f| {
            let mut p = job.pids();
            p.insert(f.pid("server"));
            p
        });
        let mut run_stoppable = (job.pids(), job.groups());
        if let Some(f) = &foreign {
            run_stoppable.0.insert(f.pid("server"));
            run_stoppable.1.extend(stat_field(f.pid("server"), 2));
        }
        let mut found = check_cell(cell, &mut job, port, &ranks, stoppable);
        // The command must still stand when its cell has been checked (unless it fails by
        // itself): else doctor run judged something else.
        let ended_early = under_run
            && situation != "foreign-holder"
            && job.child.try_wait().ok().flatten().is_some();
        if ended_early {
            found.push(format!(
                "{name}: doctor run ended before the cell was checked (the command ended, or the backstop timeout of {:?} came: raise DOCTOR_MATRIX_RUN_TIMEOUT)",
                run_timeout()
            ));
        }
        failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(found);
        if under_run && cell.get("run").is_some() {
            // The last cell (a_run_cell_is_the_last_of_its_job): checked, the job would only wait
            // now; doctor run is interrupted and states what stood (a failed launcher has ended
            // by itself).
            let interrupt = situation != "foreign-holder";
            let found = check_run(cell, &mut job, run_stoppable, interrupt);
            failures
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(found);
            return;
        }
        if let Some(d) = dup {
            // The duplicate goes before the next situation.
            job.signal(d, libc::SIGKILL);
            wait_gone(d, Duration::from_secs(30));
        }
    }
}

/// The cells grouped by live job (launcher and world shape), each group in situation order.
fn groups() -> Vec<Vec<Value>> {
    let m = matrix();
    let order: Vec<&str> = list(&m, "situations")
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    let mut by: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for c in list(&m, "cells") {
        let key = format!(
            "{}{}{}{}{}{}",
            c["launcher"],
            c["world"],
            c["started"],
            c["stop"],
            c["master_addr"],
            c["situation"] == "foreign-holder"
        );
        by.entry(key).or_default().push(c.clone());
    }
    let mut out: Vec<Vec<Value>> = by.into_values().collect();
    for g in &mut out {
        g.sort_by_key(|c| order.iter().position(|s| c["situation"] == *s));
    }
    // Longest-running first (more situations), so the pool's tail is short.
    out.sort_by_key(|g| std::cmp::Reverse(g.len()));
    out
}

#[test]
fn every_cell_on_a_real_job() {
    let Some(python) = torch_python() else {
        return;
    };
    // DOCTOR_MATRIX_ONLY=a,b: only these launchers (while working on them; CI runs all).
    let only: Vec<String> = std::env::var("DOCTOR_MATRIX_ONLY")
        .map(|v| v.split(',').map(str::to_string).collect())
        .unwrap_or_default();
    let groups: Vec<Vec<Value>> = groups()
        .into_iter()
        .filter(|g| only.is_empty() || only.iter().any(|o| g[0]["launcher"] == o.as_str()))
        .collect();
    let workers: usize = std::env::var("DOCTOR_MATRIX_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let next = Mutex::new(0usize);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..workers.max(1) {
            s.spawn(|| {
                loop {
                    let i = {
                        let mut n = next.lock().unwrap_or_else(|e| e.into_inner());
                        *n += 1;
                        *n - 1
                    };
                    let Some(g) = groups.get(i) else { break };
                    let t = Instant::now();
                    // A group that panics (a job that never came up) is one failure among the
                    // others, which are still checked and reported.
                    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        drive(&python, g, &failures)
                    }));
                    if let Err(e) = run {
                        let why = e
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default();
                        failures
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(format!("{}: {why}", g[0]["launcher"]));
                    }
                    // Seen with --nocapture: where the matrix's time goes.
                    eprintln!(
                        "matrix: {} {:?} took {:.0} s",
                        g[0]["launcher"],
                        g.iter().map(|c| &c["situation"]).collect::<Vec<_>>(),
                        t.elapsed().as_secs_f64()
                    );
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn pids_read_from_job_lines_are_pids_only() {
    assert_eq!(pid_fields("UP rank=1 pid=4242 port=29500"), vec![4242]);
    assert_eq!(pid_fields("PIDS rank0=11 rank1=12"), vec![11, 12]);
    assert!(pid_fields("UP rank=0 rankx=1").is_empty());
    assert!(!killable(0) && !killable(1));
    assert!(!killable(std::process::id() as i32));
    assert!(descendants(1).is_empty());
}

#[test]
fn kill_targets_are_read_from_fix_texts() {
    assert_eq!(
        kill_targets("stop them with `kill -TERM -- -12 -13` (process groups 12, 13)"),
        vec![(true, 12), (true, 13)]
    );
    assert_eq!(kill_targets("`kill -CONT 77`"), vec![(false, 77)]);
    assert_eq!(
        kill_targets("`kill 5 6` (pids)"),
        vec![(false, 5), (false, 6)]
    );
    assert_eq!(kill_targets("`kill -9 5`"), vec![(false, 5)]);
    assert!(kill_targets("move the launch into main()").is_empty());
}

/// pid -> role of every process in `doctor tree`'s trees.
fn tree_roles(doc: &Value) -> BTreeMap<i64, String> {
    fn walk(n: &Value, out: &mut BTreeMap<i64, String>) {
        if let (Some(pid), Some(role)) = (n["pid"].as_i64(), n["role"].as_str()) {
            out.insert(pid, role.to_string());
        }
        for c in n["children"].as_array().into_iter().flatten() {
            walk(c, out);
        }
    }
    let mut out = BTreeMap::new();
    for t in doc["trees"].as_array().into_iter().flatten() {
        walk(t, &mut out);
    }
    out
}

/// The pids of `key=P` fields in the job's lines starting with `prefix`.
fn line_pids(job: &Job, prefix: &str) -> Vec<i32> {
    job.seen()
        .iter()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| field(l, "pid")?.parse().ok())
        .collect()
}

/// Every finding on `ports` in `ports --port` and `tree --port`: the codes, and each fix safe
/// for `job` (the processes a fix may name).
/// SIGKILL the job's `launcher`, wait until it is gone, and judge `port`: D003 alone, with a safe
/// fix. Its findings.
fn d003_once_killed(job: &mut Job, launcher: i32, port: u16) -> Vec<Value> {
    job.signal(launcher, libc::SIGKILL);
    wait_gone(launcher, Duration::from_secs(20));
    let (codes, findings, bad) = judged(job, port, &[port]);
    assert_eq!(codes, BTreeSet::from(["D003".to_string()]), "{findings:#?}");
    assert!(bad.is_empty(), "{bad:?}");
    findings
}

fn judged(job: &mut Job, port: u16, ports: &[u16]) -> (BTreeSet<String>, Vec<Value>, Vec<String>) {
    let mut codes = BTreeSet::new();
    let mut findings = Vec::new();
    let mut bad = Vec::new();
    let pids = job.pids();
    for cmd in ["ports", "tree"] {
        let (doc, _) = json(&[cmd, "--port", &port.to_string(), "--format", "json"]);
        for f in doc["findings"].as_array().into_iter().flatten() {
            if !f["ports"]
                .as_array()
                .is_some_and(|x| x.iter().any(|q| ports.iter().any(|p| q == *p)))
            {
                continue;
            }
            codes.insert(f["code"].as_str().unwrap_or_default().to_string());
            bad.extend(check_fix_safety(f, &doc, ports, &pids));
            findings.push(f.clone());
        }
    }
    (codes, findings, bad)
}

/// 4 ranks of one plain launcher, behind nested shells, an exec wrapper and a shell in a
/// session of its own: one job, exactly the 4 Python processes are ranks, nothing to report.
#[test]
fn ranks_behind_nested_shells_and_exec_wrappers_are_one_job() {
    let port = free_low_port();
    let mut job = Job::shape("wrapped4", &[port]);
    let ranks = job.wait_pids("UP ", 4, Duration::from_secs(60));
    let (codes, findings, bad) = judged(&mut job, port, &[port]);
    assert!(codes.is_empty(), "{findings:#?}");
    assert!(bad.is_empty(), "{bad:?}");
    let (doc, _) = json(&["tree", "--port", &port.to_string(), "--format", "json"]);
    let roles = tree_roles(&doc);
    let rank_pids: BTreeSet<i64> = roles
        .iter()
        .filter(|(_, r)| *r == "rank")
        .map(|(p, _)| *p)
        .collect();
    assert_eq!(rank_pids, ranks, "roles: {roles:?}");
    let jobs: Vec<&Value> = doc["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| {
            j["pids"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| ranks.iter().any(|r| p == r))
        })
        .collect();
    assert_eq!(jobs.len(), 1, "{jobs:#?}");
}

/// The launcher of 2 ranks is killed; rank 0 had forked a helper that inherited the store's
/// listening socket: D003 names the ranks, and its kill stops the helper too (else the port
/// stays held).
#[test]
fn a_forked_helper_sharing_the_store_is_stopped_with_the_orphaned_ranks() {
    let port = free_low_port();
    let mut job = Job::shape("fork-helper", &[port]);
    job.wait_lines("UP ", 2, Duration::from_secs(60));
    let helper = line_pids(&job, "HELPER ")[0];
    let launcher = line_pids(&job, "LAUNCHER ")[0];
    job.remember_tree();
    let findings = d003_once_killed(&mut job, launcher, port);
    for f in &findings {
        let fix = f["fix"]["message"].as_str().unwrap();
        let named = fix_stops(fix, helper);
        assert!(
            named,
            "the helper {helper} holding the socket is not stopped: {fix}"
        );
    }
}

/// Rank 1's spawn child starts a spawn child of its own that connects to the store with rank
/// 1's identity: D001 names that grandchild, not its parent.
#[test]
fn a_spawn_grandchild_that_joins_the_store_is_the_duplicate() {
    let port = free_low_port();
    let mut job = Job::shape("grandchild", &[port]);
    job.wait_lines("UP ", 2, Duration::from_secs(60));
    let dup = job.wait_lines("DUP ", 1, Duration::from_secs(60));
    let leaf: i64 = field(&dup[0], "pid").unwrap().parse().unwrap();
    let middle = line_pids(&job, "MIDDLE ")[0] as i64;
    let (codes, findings, bad) = judged(&mut job, port, &[port]);
    assert_eq!(codes, BTreeSet::from(["D001".to_string()]), "{findings:#?}");
    assert!(bad.is_empty(), "{bad:?}");
    for f in &findings {
        let pids = pids_of(f);
        assert!(
            pids.contains(&leaf),
            "D001 does not name the grandchild {leaf}: {f:#}"
        );
        assert!(!pids.contains(&middle) || pids.contains(&leaf), "{f:#}");
    }
}

/// The parent of 3 spawn ranks is killed; rank 0 had forked a helper sharing the store's
/// socket. One job that lost its launcher, all 3 ranks named, the helper stopped with them.
#[test]
fn three_orphaned_spawn_ranks_and_a_helper_are_one_leftover_job() {
    let port = free_low_port();
    let mut job = Job::shape("spawn3", &[port]);
    let ranks = job.wait_pids("UP ", 3, Duration::from_secs(60));
    let helper = job.wait_lines("HELPER ", 1, Duration::from_secs(10));
    let helper: i32 = field(&helper[0], "pid").unwrap().parse().unwrap();
    let launcher = line_pids(&job, "LAUNCHER ")[0];
    let findings = d003_once_killed(&mut job, launcher, port);
    for f in &findings {
        let cited: BTreeSet<i64> = pids_of(f).into_iter().collect();
        assert!(
            ranks.is_subset(&cited),
            "ranks {ranks:?} not all named: {f:#}"
        );
        let fix = f["fix"]["message"].as_str().unwrap();
        let named = fix_stops(fix, helper);
        assert!(named, "the helper {helper} is not stopped: {fix}");
    }
}

/// Two spawn jobs started by one script (one process group), on two ports, both parents killed:
/// two leftover jobs, one per port, never one job of four ranks.
#[test]
fn two_killed_spawn_jobs_of_one_group_stay_two_jobs() {
    let (a, b) = (free_low_port(), free_low_port());
    let mut job = Job::shape("spawn-two", &[a, b]);
    let up = job.wait_pids("UP ", 4, Duration::from_secs(60));
    let parents: Vec<i32> = ["LAUNCHER_A ", "LAUNCHER_B "]
        .iter()
        .flat_map(|p| line_pids(&job, p))
        .collect();
    assert_eq!(parents.len(), 2, "{:?}", job.seen());
    job.remember_tree();
    for &p in &parents {
        job.signal(p, libc::SIGKILL);
    }
    wait_until(Duration::from_secs(20), || {
        !parents.iter().any(|&p| alive(p))
    });
    for port in [a, b] {
        let (codes, findings, bad) = judged(&mut job, port, &[port]);
        assert_eq!(
            codes,
            BTreeSet::from(["D003".to_string()]),
            "port {port}: {findings:#?}"
        );
        assert!(bad.is_empty(), "{bad:?}");
        for f in &findings {
            assert_eq!(f["ports"], serde_json::json!([port]), "{f:#}");
            let ranks = pids_of(f).into_iter().filter(|p| up.contains(p)).count();
            assert_eq!(ranks, 2, "two ranks per job (and rank 0's helper): {f:#}");
        }
    }
}

/// `doctor ports`/`tree` on a live spawn job (an mp.spawn-like parent, 3 spawn ranks, no RANK or
/// WORLD_SIZE in their environment): D009 cannot count its ranks against a world size, and the
/// table output says so on stderr (a note naming the job, its ranks and how to see the world
/// size) instead of staying silent; `-q` leaves it out; ranks with WORLD_SIZE get no such note.
#[test]
fn a_spawn_job_without_world_size_is_said_to_be_unjudged() {
    let port = free_low_port();
    let p = port.to_string();
    let mut job = Job::shape("spawn3", &[port]);
    let ranks = job.wait_pids("UP ", 3, Duration::from_secs(60));
    let note = |args: &[&str]| -> String {
        let out = run(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    for cmd in ["ports", "tree"] {
        let said = note(&[cmd, "--port", &p]);
        let line = said
            .lines()
            .find(|l| l.contains("carry no WORLD_SIZE"))
            .unwrap_or_else(|| panic!("{cmd}: no note: {said}"));
        assert!(
            line.contains(&format!("on port {port}"))
                && line.contains("not judged")
                && ranks.iter().all(|r| line.contains(&r.to_string())),
            "{cmd}: {line}"
        );
        assert!(
            !note(&["-q", cmd, "--port", &p]).contains("WORLD_SIZE"),
            "{cmd} -q"
        );
    }
    let (doc, _) = json(&["ports", "--port", &p, "--format", "json"]);
    assert!(findings(&doc, "D009", port).is_empty(), "{doc:#}");
    drop(job);
    // Ranks that carry WORLD_SIZE are judged: no note.
    let port = free_low_port();
    let mut job = Job::shape("wrapped4", &[port]);
    job.wait_pids("UP ", 4, Duration::from_secs(60));
    let said = note(&["ports", "--port", &port.to_string()]);
    assert!(!said.contains("WORLD_SIZE"), "{said}");
}
