//! What `doctor run` states per situation (issue 20, part 2), on real processes: a port held by
//! another job, a foreign process or a stale leftover gives the same codes `doctor ports` gives
//! on the live situation, with fixes (a free `MASTER_PORT=N` that a bind proves free); "the line
//! that ran again" is said only for a real duplicate initialisation, and only of user code.
//! Real torch from the managed venv (`doctor repro --setup`); every process a test starts is in a
//! process group of its own, killed when the test ends, pass or fail.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

/// The torch tests of this file run one at a time: each starts several ranks, and on a loaded
/// machine parallel `import torch` pushes a rank's start past a run's `--timeout`.
static TORCH: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn torch_lock() -> std::sync::MutexGuard<'static, ()> {
    TORCH.lock().unwrap_or_else(|e| e.into_inner())
}

/// `torchrun` beside the interpreter.
fn torchrun(python: &Path) -> PathBuf {
    python.with_file_name("torchrun")
}

/// A process group killed on drop, pass or fail.
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        // torchrun starts its workers in sessions of their own: the group kill does not reach
        // them, so every descendant is named first (before the agent dies and they are
        // re-parented) and killed by pid.
        let root = self.0.id() as i32;
        let descendants = descendants_of(root);
        // SAFETY: kill(2) with a negative pid signals this test's own helper group only, then
        // the pids of its descendants.
        unsafe { libc::kill(-root, libc::SIGKILL) };
        for pid in descendants {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let _ = self.0.wait();
    }
}

/// Every descendant of `root` now (from /proc/PID/stat parent links).
fn descendants_of(root: i32) -> Vec<i32> {
    let parent_of = |pid: i32| -> Option<i32> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat.rsplit(')')
            .next()?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    let pids: Vec<(i32, i32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|p| Some((p, parent_of(p)?)))
        .collect();
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let me = out[i];
        out.extend(pids.iter().filter(|(_, pp)| *pp == me).map(|(p, _)| *p));
        i += 1;
    }
    out.remove(0);
    out
}

/// Start `cmd` in its own group (no rendezvous variables inherited) and wait for a line of its
/// stdout that starts with `ready`.
fn start_until(cmd: &mut Command, ready: &str) -> Group {
    let mut child = spawn_clean(cmd.stderr(Stdio::null()));
    let stdout = child.stdout.take().expect("piped");
    let group = Group(child);
    let (tx, rx) = std::sync::mpsc::channel();
    let ready = ready.to_string();
    std::thread::spawn(move || {
        let mut said = false;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if !said && line.starts_with(&ready) {
                said = true;
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(120))
        .expect("the helper job came up");
    group
}

/// Job A: torchrun with one rank that initialises and waits, on `port`.
fn torchrun_job(python: &Path, port: u16) -> Group {
    start_until(
        Command::new(torchrun(python))
            .args(["--nproc-per-node", "1", "--master-port", &port.to_string()])
            .arg(helper("run_cells.py"))
            .arg("sleepy"),
        "UP ",
    )
}

/// What `doctor run` said: exit code, its record, its stderr.
struct Ran {
    code: i32,
    record: serde_json::Value,
    stderr: String,
}

/// `doctor run --record FILE -- CMD...` with `env` added.
fn doctor_run(cmd: &[&std::ffi::OsStr], env: &[(&str, String)]) -> Ran {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("run.json");
    let mut c = doctor();
    c.args(["run", "--timeout", "120", "--record"])
        .arg(&record)
        .arg("--")
        .args(cmd);
    for k in [
        "MASTER_PORT",
        "MASTER_ADDR",
        "LOCAL_RANK",
        "RANK",
        "WORLD_SIZE",
    ] {
        c.env_remove(k);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.process_group(0).output().expect("doctor runs");
    let text = std::fs::read_to_string(&record).unwrap_or_else(|e| {
        panic!(
            "no record ({e}); stderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    Ran {
        code: out.status.code().unwrap_or(-1),
        record: serde_json::from_str(&text).expect("the record is JSON"),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The findings of a run's diagnosis with `code` that cite `port`.
fn run_findings<'a>(ran: &'a Ran, code: &str, port: u16) -> Vec<&'a serde_json::Value> {
    findings(&ran.record["diagnosis"], code, port)
}

/// The port a fix names as `MASTER_PORT=N`.
fn suggested_port(fix: &str) -> Option<u16> {
    let at = fix.find("MASTER_PORT=")? + "MASTER_PORT=".len();
    fix[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()
}

/// A single-rank `python train.py` with its rendezvous in the environment.
fn rank_env(port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("MASTER_ADDR", "127.0.0.1".into()),
        ("MASTER_PORT", port.to_string()),
        ("RANK", "0".into()),
        ("WORLD_SIZE", "1".into()),
    ]
}

/// The run failed on `port` with `code` (and a fix naming a port a bind proves free now), and
/// said no "line that ran again": nothing ran again, and a launcher's frame is no user line.
fn assert_stated(ran: &Ran, code: &str, port: u16) {
    assert_ne!(ran.code, 0, "the run failed:\n{}", ran.stderr);
    let found = run_findings(ran, code, port);
    assert!(
        !found.is_empty(),
        "no {code} on port {port} in the run's diagnosis:\n{}\n{:#}",
        ran.stderr,
        ran.record["diagnosis"]
    );
    assert!(
        ran.stderr.contains(&format!("[{code}]")),
        "{code} is not printed:\n{}",
        ran.stderr
    );
    let fix = found[0]["fix"]["message"].as_str().unwrap_or_default();
    let free = suggested_port(fix).unwrap_or_else(|| panic!("no MASTER_PORT=N in the fix: {fix}"));
    assert_ne!(free, port);
    assert!(
        std::net::TcpListener::bind(("0.0.0.0", free)).is_ok(),
        "the suggested port {free} is not free"
    );
    assert!(
        !ran.stderr.contains("ran again"),
        "nothing ran again:\n{}",
        ran.stderr
    );
    assert!(
        !ran.stderr.contains("/bin/torchrun:"),
        "a launcher frame is no line of the user's:\n{}",
        ran.stderr
    );
    let explained = ran.record["diagnosis"]["summary"].to_string();
    assert!(
        !explained.contains("ran again"),
        "the record says nothing ran again: {explained}"
    );
}

#[test]
fn another_jobs_port_is_d002_with_a_free_port_for_torchrun_and_a_plain_script() {
    let _one_at_a_time = torch_lock();
    let Some(python) = torch_python() else { return };
    let port = free_low_port();
    let _job_a = torchrun_job(&python, port);
    let tr = torchrun(&python);
    let script = helper("run_cells.py");
    let p = port.to_string();
    let ran = doctor_run(
        &[
            tr.as_os_str(),
            "--nproc-per-node".as_ref(),
            "1".as_ref(),
            "--master-port".as_ref(),
            p.as_ref(),
            script.as_os_str(),
            "train".as_ref(),
        ],
        &[],
    );
    assert_stated(&ran, "D002", port);
    let ran = doctor_run(
        &[python.as_os_str(), script.as_os_str(), "train".as_ref()],
        &rank_env(port),
    );
    assert_stated(&ran, "D002", port);
}

#[test]
fn a_foreign_holder_is_d008_and_a_stale_holder_d003_in_a_run() {
    let _one_at_a_time = torch_lock();
    let Some(python) = torch_python() else { return };
    let script = helper("run_cells.py");
    let port = free_low_port();
    let _foreign = start_until(
        Command::new(&python)
            .arg(&script)
            .args(["listen", &port.to_string()]),
        "READY",
    );
    let ran = doctor_run(
        &[python.as_os_str(), script.as_os_str(), "train".as_ref()],
        &rank_env(port),
    );
    assert_stated(&ran, "D008", port);
    // The failing line is the user's own (the script's init_process_group), said as the line
    // that failed.
    assert!(
        ran.stderr.contains("run_cells.py:"),
        "the user's line:\n{}",
        ran.stderr
    );

    let port = free_low_port();
    let _stale = start_until(
        Command::new(python.clone())
            .arg(helper("situations.py"))
            .args(["d003", &port.to_string()]),
        "READY",
    );
    let ran = doctor_run(
        &[python.as_os_str(), script.as_os_str(), "train".as_ref()],
        &rank_env(port),
    );
    assert_stated(&ran, "D003", port);
    // The run's own processes (gone by the time it is explained) are no leftovers of a
    // launcher.
    let mut ours: Vec<i64> = ran.record["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .filter_map(|p| p["process"]["pid"].as_i64())
        .collect();
    ours.extend(ran.record["diagnosis"]["failing_pid"].as_i64());
    assert!(!ours.is_empty(), "the record names the run's processes");
    for f in run_findings(&ran, "D003", port) {
        assert!(
            !pids_of(f).iter().any(|p| ours.contains(p)),
            "the run's own rank called stale: {f:#}"
        );
    }
}

/// The codes of a document's findings that cite `port`.
fn codes_on(doc: &serde_json::Value, port: u16) -> std::collections::BTreeSet<String> {
    doc["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| {
            f["ports"]
                .as_array()
                .is_some_and(|p| p.iter().any(|x| x == port))
        })
        .filter_map(|f| f["code"].as_str().map(String::from))
        .collect()
}

/// The `missing: ...` part of a D009 message.
fn missing_part(message: &str) -> String {
    message
        .split("; ")
        .find(|p| p.starts_with("missing:"))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_missing_rank_at_run_timeout_is_d009_as_ports_says_on_the_live_job() {
    let _one_at_a_time = torch_lock();
    let Some(python) = torch_python() else { return };
    let job = helper("torch_job.py");
    // World of 3, ranks 0 and 1 started: rank 2 never comes.
    let live_port = free_low_port();
    let _live = start_until(
        Command::new(&python)
            .arg(&job)
            .args(["launch", &live_port.to_string(), "3", "2"]),
        "READY",
    );
    let p = live_port.to_string();
    let mut ports_doc = serde_json::Value::Null;
    assert!(
        wait_until(Duration::from_secs(120), || {
            ports_doc = json(&["ports", "--port", &p, "--format", "json"]).0;
            !findings(&ports_doc, "D009", live_port).is_empty()
        }),
        "doctor ports gives no D009 on the live job: {ports_doc:#}"
    );
    let ports_d009 = findings(&ports_doc, "D009", live_port)[0].clone();

    let port = free_low_port();
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("run.json");
    let out = doctor()
        .args(["run", "--timeout", "40", "--record"])
        .arg(&record)
        .arg("--")
        .arg(&python)
        .arg(&job)
        .args(["launch", &port.to_string(), "3", "2"])
        .env_remove("MASTER_PORT")
        .process_group(0)
        .output()
        .expect("doctor runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&record).unwrap()).unwrap();
    assert_eq!(doc["timed_out"], true, "{stderr}");
    let diagnosis = &doc["diagnosis"];
    let d009 = findings(diagnosis, "D009", port);
    assert!(
        !d009.is_empty(),
        "no D009 at the timeout:\n{stderr}\n{diagnosis:#}"
    );
    assert!(stderr.contains("[D009]"), "{stderr}");
    assert_eq!(
        codes_on(diagnosis, port),
        codes_on(&ports_doc, live_port),
        "the run states the codes ports gives on the live job"
    );
    let said = missing_part(d009[0]["message"].as_str().unwrap());
    assert!(said.contains("rank 2"), "names the missing rank: {said}");
    assert_eq!(
        said,
        missing_part(ports_d009["message"].as_str().unwrap()),
        "the same missing ranks as ports"
    );
}

#[test]
fn master_addr_not_of_this_host_is_said_in_ports_and_in_run() {
    let _one_at_a_time = torch_lock();
    let Some(python) = torch_python() else { return };
    let script = helper("run_cells.py");
    // 192.0.2.1 (TEST-NET-1, RFC 5737) is no address of this host, and nothing answers there.
    let addr = "192.0.2.1";
    // Live: a launcher script starting both ranks, checked by `doctor ports`.
    let live_port = free_low_port();
    let sh = format!(
        "for r in 0 1; do MASTER_ADDR={addr} MASTER_PORT={live_port} RANK=$r WORLD_SIZE=2 {} {} sleepy & done; echo READY; wait",
        python.display(),
        script.display()
    );
    let _live = start_until(Command::new("bash").args(["-c", &sh]), "READY");
    let p = live_port.to_string();
    let says = |doc: &serde_json::Value| {
        doc["findings"].as_array().unwrap().iter().any(|f| {
            let m = f["message"].as_str().unwrap_or_default();
            f["code"] == "D009" && m.contains(addr) && m.contains("not an address of this host")
        })
    };
    let mut ports_doc = serde_json::Value::Null;
    assert!(
        wait_until(Duration::from_secs(120), || {
            ports_doc = json(&["ports", "--port", &p, "--format", "json"]).0;
            says(&ports_doc)
        }),
        "doctor ports does not say that MASTER_ADDR {addr} is not of this host: {ports_doc:#}"
    );
    let d009 = findings(&ports_doc, "D009", live_port)[0].clone();
    let m = d009["message"].as_str().unwrap();
    assert!(m.contains("nothing answers"), "{m}");
    assert!(
        m.contains("0 of 2 ranks connected"),
        "rank 0 hosts a store but its own client goes to {addr}: {m}"
    );

    // Under `doctor run --timeout`: the same statement.
    let port = free_low_port();
    let sh = format!(
        "for r in 0 1; do MASTER_ADDR={addr} MASTER_PORT={port} RANK=$r WORLD_SIZE=2 {} {} sleepy & done; wait",
        python.display(),
        script.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("run.json");
    let out = doctor()
        .args(["run", "--timeout", "40", "--record"])
        .arg(&record)
        .args(["--", "bash", "-c", &sh])
        .process_group(0)
        .output()
        .expect("doctor runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&record).unwrap()).unwrap();
    assert!(
        says(&doc["diagnosis"]),
        "the run does not say it:\n{stderr}\n{:#}",
        doc["diagnosis"]
    );
    assert!(stderr.contains("not an address of this host"), "{stderr}");
}

/// Whether something listens on TCP `port` (IPv4 or IPv6), read from /proc/net: no bind of the
/// test's own races the job.
fn listening(port: u16) -> bool {
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|f| {
        std::fs::read_to_string(f)
            .unwrap_or_default()
            .lines()
            .skip(1)
            .any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                cols.len() > 3
                    && cols[3] == "0A"
                    && cols[1]
                        .rsplit(':')
                        .next()
                        .and_then(|p| u16::from_str_radix(p, 16).ok())
                        == Some(port)
            })
    })
}

/// The children of `pid` now.
fn children_of(pid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// A job that hangs at rendezvous (a plain launcher starting rank 0 of a world of 2; rank 1
/// never comes) under `doctor run`; once rank 0's store has listened for 2 s, SIGINT goes to the
/// command's process group only, as the terminal's Ctrl-C does (doctor is in another group and
/// gets nothing). torch's rank does not react (its store waits in C++), the launcher dies of the
/// SIGINT, doctor cleans up. Doctor must still state what it saw: D009 with rank 1 missing, and
/// exit with the command's status (130).
#[test]
fn ctrl_c_on_a_run_that_hangs_at_rendezvous_states_d009_with_the_missing_rank() {
    let _one_at_a_time = torch_lock();
    let Some(python) = torch_python() else { return };
    let port = free_low_port();
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("run.json");
    let err = dir.path().join("stderr.txt");
    let mut cmd = doctor();
    cmd.args(["run", "--record"])
        .arg(&record)
        .arg("--")
        .arg(&python)
        .arg(helper("torch_job.py"))
        .args(["launch", &port.to_string(), "2", "1"])
        .env_remove("MASTER_PORT")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err).unwrap())
        .process_group(0);
    let doctor_run = Group(cmd.spawn().expect("doctor runs"));
    let pid = doctor_run.0.id() as i32;
    // The hang has lasted: the store listened at two looks 2 s apart (a rendezvous that waits
    // stands still; doctor judges a moment the run stood unchanged for a second).
    assert!(
        wait_until(Duration::from_secs(180), || listening(port)),
        "rank 0's store never listened on {port}:\n{}",
        std::fs::read_to_string(&err).unwrap_or_default()
    );
    assert!(
        !wait_until(Duration::from_secs(2), || !listening(port)),
        "rank 0's store stopped listening"
    );
    let command = children_of(pid);
    assert_eq!(command.len(), 1, "doctor runs one command: {command:?}");
    // SAFETY: kill(2) on the process group of the command this test started under doctor.
    unsafe { libc::kill(-command[0], libc::SIGINT) };
    let mut doctor_run = doctor_run;
    let mut status = None;
    assert!(
        wait_until(Duration::from_secs(300), || {
            status = doctor_run.0.try_wait().unwrap();
            status.is_some()
        }),
        "doctor did not end after the interrupt"
    );
    let status = status.expect("ended");
    let stderr = std::fs::read_to_string(&err).unwrap_or_default();
    assert_eq!(status.code(), Some(130), "the command's status:\n{stderr}");
    assert!(
        stderr.contains("KeyboardInterrupt"),
        "the launcher got the SIGINT:\n{stderr}"
    );
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&record).unwrap()).unwrap();
    let d009 = findings(&doc["diagnosis"], "D009", port);
    assert!(
        !d009.is_empty(),
        "no D009 after Ctrl-C:\n{stderr}\n{:#}",
        doc["diagnosis"]
    );
    let said = missing_part(d009[0]["message"].as_str().unwrap());
    assert_eq!(
        said,
        "missing: rank 1 (no live process on this host carries that identity)"
    );
    assert!(stderr.contains("[D009]"), "{stderr}");
    assert!(
        stderr.contains("was stopped (SIGINT)"),
        "says how the run ended:\n{stderr}"
    );
    assert!(!listening(port), "nothing of the run is left on {port}");
}

/// torch gives up at its own rendezvous timeout (rank 0 of 2 alone, a 6 s timeout): the run
/// failed by itself, and doctor states the incomplete rendezvous it saw before (D009, rank 1
/// missing) beside torch's `Timed out ... waiting for clients`.
#[test]
fn torchs_own_rendezvous_timeout_is_d009_with_the_missing_rank() {
    let _one_at_a_time = torch_lock();
    let Some(python) = torch_python() else { return };
    let port = free_low_port();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("timeout.py");
    std::fs::write(
        &script,
        "from datetime import timedelta\nimport torch.distributed as dist\n\
         dist.init_process_group('gloo', timeout=timedelta(seconds=6))\n",
    )
    .unwrap();
    let mut env = rank_env(port);
    env[3] = ("WORLD_SIZE", "2".into());
    let ran = doctor_run(&[python.as_os_str(), script.as_os_str()], &env);
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    assert!(ran.stderr.contains("waiting for clients"), "{}", ran.stderr);
    let d009 = run_findings(&ran, "D009", port);
    assert!(
        !d009.is_empty(),
        "no D009 after torch's timeout:\n{}\n{:#}",
        ran.stderr,
        ran.record["diagnosis"]
    );
    let said = missing_part(d009[0]["message"].as_str().unwrap());
    assert!(said.starts_with("missing: rank 1"), "{said}");
    assert!(
        ran.stderr
            .contains("torch gave up waiting at the rendezvous"),
        "{}",
        ran.stderr
    );
}

/// A port held by a process doctor cannot see (root's listener, doctor run as `nobody`: another
/// user's fds are not readable, as in a container without CAP_SYS_PTRACE): `doctor ports` shows
/// the socket with its user; `doctor run` said nothing about the holder. It must say that the
/// port is held by a socket of that user whose process it cannot see, and name a free port.
#[test]
fn a_holder_doctor_cannot_see_is_named_by_its_user_with_a_free_port() {
    if !need_root("runs doctor as nobody beside a root listener") {
        return;
    }
    let Some(setpriv) = need_tool("setpriv") else {
        return;
    };
    let port = free_low_port();
    let _holder = Situation::start_cmd(
        Command::new(python())
            .arg(helper("run_cells.py"))
            .args(["listen", &port.to_string()]),
    );
    let bind = format!(
        "import socket\ns = socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ns.bind(('0.0.0.0', {port}))"
    );
    let out = Command::new(setpriv)
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_doctor"))
        .args(["run", "--", "/usr/bin/python3", "-c", &bind])
        .env("NO_COLOR", "1")
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", port.to_string())
        .env("RANK", "0")
        .env("WORLD_SIZE", "1")
        .current_dir("/")
        .process_group(0)
        .output()
        .expect("doctor runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("port {port} is held by a socket of user root")),
        "the holder's user is named:\n{stderr}"
    );
    let free = suggested_port(&stderr).unwrap_or_else(|| panic!("no MASTER_PORT=N:\n{stderr}"));
    assert_ne!(free, port);
    assert!(std::net::TcpListener::bind(("0.0.0.0", free)).is_ok());
}
