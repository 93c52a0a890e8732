//! A healthy process is never a leftover rank (issue 20, hostile round): D003 says a job lost its
//! launcher and its fix stops a process group, so a false D003 kills a healthy job. Python
//! processes started by a live shell or another live non-Python parent (`timeout`, `uv run`,
//! `srun`) were taken as "adopted" (the parent is another program), so:
//! - two copies of one program from a shell with `MASTER_PORT` exported (no rank) were "ranks
//!   re-parented to" their own live shell, fix `kill -TERM -- -SHELL_GROUP`;
//! - a keep-alive client whose server closed the connection (CLOSE_WAIT) on an asked or default
//!   port was "a rank left alone", fix: kill its shell's group.
//!
//! Real processes in one process group per shape, killed when the test ends.

mod common;

use std::process::Command;

use common::*;

/// A client that connects to PORT, waits until the server closed its end (CLOSE_WAIT here),
/// writes `PIDS NAME=pid` to the file $F, and lives on like a connection pool that has not been
/// used since.
const CLIENT: &str = r#"
import os, socket, sys, time
port = int(sys.argv[1])
for _ in range(200):
    try:
        c = socket.create_connection(("127.0.0.1", port)); break
    except OSError:
        time.sleep(0.05)
assert c.recv(1) == b""
with open(os.environ["F"], "a") as f: f.write(f"PIDS {sys.argv[2]}={os.getpid()}\n")
time.sleep(600)
"#;

/// A server on PORT that answers `n` connections by closing them, then lives on.
const SERVER: &str = r#"
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen()
kept = []
for _ in range(int(sys.argv[2])):
    c, _ = s.accept(); c.close()
time.sleep(600)
"#;

/// A process that writes `PIDS pPID=PID` to $F and sleeps.
const SLEEPER: &str = r#"
import os, sys, time
with open(os.environ["F"], "a") as f: f.write(f"PIDS p{os.getpid()}={os.getpid()}\n")
time.sleep(600)
"#;

/// `script` under `bash -c` in a process group of its own; its processes write their pids to
/// the file $F; READY once `n` did.
fn shell(script: &str, n: usize) -> Situation {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("pids");
    let sit = Situation::start_cmd(Command::new("bash").env("F", &f).arg("-c").arg(format!(
        "{script} \n until [ \"$(cat \"$F\" 2>/dev/null | wc -l)\" -ge {n} ]; do sleep 0.05; done; \
         cat \"$F\"; echo READY; wait"
    )));
    assert_eq!(sit.pids.len(), n, "{:?}", sit.pids);
    sit
}

/// No D003, and no finding, kill or rank role for any of `pids`, in `ports` and `tree`, asked
/// about `port` and about the whole machine.
fn assert_no_leftover(what: &str, port: u16, pids: &[i32]) {
    let p = port.to_string();
    for args in [
        vec!["ports", "--port", &p, "--format", "json"],
        vec!["tree", "--port", &p, "--format", "json"],
        vec!["ports", "--format", "json"],
    ] {
        let (doc, _) = json(&args);
        let d003 = findings(&doc, "D003", port);
        assert!(
            d003.is_empty(),
            "{what}: {args:?}: healthy, no D003: {d003:#?}"
        );
        for f in doc["findings"].as_array().unwrap() {
            let named = pids_of(f);
            assert!(
                !pids.iter().any(|&x| named.contains(&i64::from(x))),
                "{what}: {args:?}: no finding names the healthy pids {pids:?}: {f:#}"
            );
        }
        for h in doc["holders"].as_array().into_iter().flatten() {
            if pids.iter().any(|&x| h["pid"] == x) {
                assert_ne!(h["role"], "rank", "{what}: {args:?}: {h:#}");
            }
        }
    }
}

#[test]
fn copies_of_one_program_under_a_live_shell_with_master_port_are_no_leftover_job() {
    let port = free_low_port();
    let py = python();
    let sit = shell(
        &format!("export MASTER_PORT={port}; {py} -c '{SLEEPER}' & {py} -c '{SLEEPER}' &"),
        2,
    );
    let pids: Vec<i32> = sit.pids.values().copied().collect();
    assert_no_leftover("twins", port, &pids);
}

#[test]
fn a_keep_alive_client_of_a_closed_connection_under_a_live_parent_is_no_leftover_rank() {
    let port = free_low_port();
    let py = python();
    // One client straight under the shell, one under `timeout` (a live parent that is no shell;
    // `--foreground` keeps it in the test's process group, which the test kills at its end:
    // plain `timeout` makes a group of its own and outlived the test), two more as copies of one
    // program (a pool of workers).
    let sit = shell(
        &format!(
            "{py} -c '{SERVER}' {port} 4 & \
             {py} -c '{CLIENT}' {port} shell & \
             timeout --foreground 600 {py} -c '{CLIENT}' {port} timeout & \
             {py} -c '{CLIENT}' {port} twin & \
             {py} -c '{CLIENT}' {port} twin2 &"
        ),
        4,
    );
    let pids: Vec<i32> = ["shell", "timeout", "twin", "twin2"]
        .iter()
        .map(|k| sit.pid(k))
        .collect();
    assert_no_leftover("keep-alive clients", port, &pids);
}

/// The shell exited (`export MASTER_PORT=...; nohup python eval.py &` twice, then logout): two
/// copies of one program under init in one process group, MASTER_PORT in their environ and no
/// socket on it. Nothing says they were the ranks of a launcher: no D003.
#[test]
fn copies_of_one_program_left_by_an_exited_shell_are_no_leftover_job() {
    let port = free_low_port();
    let py = python();
    let sit = shell(
        &format!(
            "export MASTER_PORT={port}; nohup {py} -c '{SLEEPER}' >/dev/null 2>&1 & \
             nohup {py} -c '{SLEEPER}' >/dev/null 2>&1 & disown -a;"
        ),
        2,
    );
    let pids: Vec<i32> = sit.pids.values().copied().collect();
    // The shell ends after READY; wait until both are re-parented.
    let ppid = |pid: i32| -> Option<i32> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat.rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    let shell_pid = sit.child.id() as i32;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while pids.iter().any(|&p| ppid(p) == Some(shell_pid)) {
        assert!(
            std::time::Instant::now() < deadline,
            "the shell did not exit"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(pids.iter().all(|&p| ppid(p).is_some()), "both live on");
    assert_no_leftover("nohup twins", port, &pids);
}
