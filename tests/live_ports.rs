//! `doctor ports` / `doctor tree` against real processes and real sockets built by
//! tests/helpers/situations.py. Every helper is killed (by process group) when its test ends.

mod common;

use common::*;

fn holder_rows(doc: &serde_json::Value, port: u16) -> Vec<&serde_json::Value> {
    doc["holders"]
        .as_array()
        .expect("holders")
        .iter()
        .filter(|h| h["port"] == port)
        .collect()
}

#[test]
fn d001_spawn_child_reconnects_as_rank_zero() {
    let port = free_low_port();
    let s = Situation::start("d001", port);
    let (rank, child) = (s.pid("rank"), s.pid("child"));
    let (doc, code) = json(&["ports", "--format", "json"]);
    assert_eq!(code, 1, "an error-level finding exits 1");
    let listen = holder_rows(&doc, port)
        .into_iter()
        .find(|h| h["state"] == "LISTEN")
        .expect("listener row");
    assert_eq!(listen["pid"], rank);
    assert_eq!(
        listen["role"], "rank",
        "rank 0 is inferred from its spawn child's environment"
    );
    assert_eq!(listen["local_rank"], 0);
    let d001 = findings(&doc, "D001", port);
    assert_eq!(d001.len(), 1, "{doc:#}");
    assert_eq!(pids_of(d001[0]), vec![rank as i64, child as i64]);
    assert_eq!(d001[0]["ports"][0], port);
    assert_eq!(d001[0]["severity"], "error");
    assert!(
        d001[0]["fix"]["message"]
            .as_str()
            .unwrap()
            .contains("__main__")
    );
    let child_row = holder_rows(&doc, port)
        .into_iter()
        .find(|h| h["pid"] == child)
        .expect("child row");
    assert_eq!(child_row["role"], "spawn-child");

    // The tree draws the path from the rank to the duplicate initialiser.
    let out = run(&["tree", "--pid", &child.to_string()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("D001 path: {rank} rank -> {child} spawn-child")),
        "{text}"
    );
    assert!(text.contains(&format!("LISTEN :{port}")), "{text}");
}

#[test]
fn d002_port_held_by_another_job() {
    let port = free_low_port();
    let s = Situation::start("d002", port);
    let (doc, code) = json(&["ports", "--format", "json"]);
    assert_eq!(code, 1);
    let d002 = findings(&doc, "D002", port);
    assert_eq!(d002.len(), 1, "{doc:#}");
    assert_eq!(pids_of(d002[0])[0], s.pid("holder") as i64);
    assert!(pids_of(d002[0]).contains(&(s.pid("other") as i64)));
    assert_eq!(jobs_on(&doc, port).len(), 2, "two jobs on one port");
}

#[test]
fn d003_orphaned_rank_holds_the_port() {
    let port = free_low_port();
    let s = Situation::start("d003", port);
    let orphan = s.pid("orphan");
    let (doc, code) = json(&["ports", "--format", "json"]);
    assert_eq!(code, 1);
    let d003 = findings(&doc, "D003", port);
    assert_eq!(d003.len(), 1, "{doc:#}");
    assert_eq!(pids_of(d003[0]), vec![orphan as i64]);
    assert!(
        d003[0]["fix"]["message"]
            .as_str()
            .unwrap()
            .contains("kill -TERM --"),
        "{}",
        d003[0]["fix"]["message"]
    );
}

#[test]
fn d004_port_inside_the_ephemeral_range() {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
    let lo: u16 = range.split_whitespace().next().unwrap().parse().unwrap();
    let reserved =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_reserved_ports").unwrap_or_default();
    let port = (lo + 1000..lo + 2000)
        .find(|p| {
            !reserved.contains(&p.to_string())
                && std::net::TcpListener::bind(("0.0.0.0", *p)).is_ok()
        })
        .expect("a free port in the range");
    // Lightning-style: rank 0 sets MASTER_PORT in os.environ after it starts, so the port is
    // one it picked itself (free when picked, held by the job): no D004.
    let s = Situation::start("d001", port);
    let (doc, _) = json(&["ports", "--format", "json"]);
    assert!(findings(&doc, "D004", port).is_empty(), "{doc:#}");
    drop(s);
    // Ranks exec'd with MASTER_PORT in their environment: the user chose it.
    let _s = Situation::start_cmd(
        std::process::Command::new(python())
            .arg(helper("verdicts.py"))
            .arg("subprocess-launcher")
            .arg(port.to_string()),
    );
    let (doc, code) = json(&["ports", "--format", "json"]);
    assert_eq!(code, 1);
    let d004 = findings(&doc, "D004", port);
    assert_eq!(d004.len(), 1, "{doc:#}");
    assert_eq!(d004[0]["severity"], "warning");
    assert_eq!(d004[0]["ports"][0], port);
}

#[test]
fn d005_outgoing_connection_took_the_port() {
    let port = free_low_port();
    let s = Situation::start("d005", port);
    let (doc, code) = json(&["ports", "--port", &port.to_string(), "--format", "json"]);
    assert_eq!(code, 1);
    let d005 = findings(&doc, "D005", port);
    assert_eq!(d005.len(), 1, "{doc:#}");
    assert_eq!(pids_of(d005[0]), vec![s.pid("client") as i64]);
    // Without --port the port is not a rendezvous port, and nothing is said about it.
    let (doc, _) = json(&["ports", "--format", "json"]);
    assert!(findings(&doc, "D005", port).is_empty());
}

#[test]
fn d006_two_processes_claim_one_rank() {
    let port = free_low_port();
    let s = Situation::start("d006", port);
    let (doc, code) = json(&["ports", "--format", "json"]);
    assert_eq!(code, 1);
    let d006 = findings(&doc, "D006", port);
    assert_eq!(d006.len(), 1, "{doc:#}");
    let mut pids = pids_of(d006[0]);
    pids.sort();
    let mut want = vec![s.pid("a") as i64, s.pid("b") as i64];
    want.sort();
    assert_eq!(pids, want);
}

#[test]
fn fork_child_sharing_the_listener_gives_two_rows() {
    let port = free_low_port();
    let s = Situation::start("fork-share", port);
    let (doc, _) = json(&["ports", "--port", &port.to_string(), "--format", "json"]);
    let rows: Vec<_> = holder_rows(&doc, port)
        .into_iter()
        .filter(|h| h["state"] == "LISTEN")
        .collect();
    let mut pids: Vec<i64> = rows.iter().map(|h| h["pid"].as_i64().unwrap()).collect();
    pids.sort();
    let mut want = vec![s.pid("parent") as i64, s.pid("child") as i64];
    want.sort(); // pids wrap around: the child's may be the smaller
    assert_eq!(pids, want);
    assert_eq!(
        rows[0]["inode"], rows[1]["inode"],
        "one socket, two holders"
    );
    let child_row = rows.iter().find(|h| h["pid"] == s.pid("child")).unwrap();
    assert_eq!(child_row["role"], "fork-child");
    assert!(
        findings(&doc, "D001", port).is_empty(),
        "an inherited socket is not a second init"
    );
}

#[test]
fn d007_time_wait_only_is_information() {
    let port = free_low_port();
    let _s = Situation::start("time-wait", port);
    let (doc, code) = json(&["ports", "--port", &port.to_string(), "--format", "json"]);
    let d007 = findings(&doc, "D007", port);
    assert_eq!(d007.len(), 1, "{doc:#}");
    assert_eq!(d007[0]["severity"], "info");
    let others: Vec<_> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["ports"][0] == port && f["code"] != "D007")
        .collect();
    assert!(others.is_empty(), "{others:?}");
    let rows = holder_rows(&doc, port);
    assert!(
        !rows.is_empty()
            && rows
                .iter()
                .all(|h| h["state"] == "TIME_WAIT" && h["pid"].is_null())
    );
    // Information does not fail the command: it exits 1 only for a warning or an error, which
    // here can only come from other processes of the machine on the default rendezvous ports.
    let problems: Vec<_> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] != "info")
        .collect();
    assert_eq!(code, i32::from(!problems.is_empty()), "{problems:?}");
}

#[test]
fn check_says_free_or_taken() {
    let port = free_low_port();
    let out = run(&["ports", "--check", &port.to_string()]);
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty());
    let s = Situation::start("d001", port);
    let out = run(&["ports", "--check", &port.to_string()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("pid {}", s.pid("rank"))), "{err}");
}

#[test]
fn snapshot_round_trip_gives_the_same_findings() {
    let port = free_low_port();
    let _s = Situation::start("d001", port);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("snap.yaml");
    let out = run(&["snapshot", "-o", file.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(_s);
    let (doc, code) = json(&[
        "ports",
        "--from",
        file.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(code, 1);
    assert_eq!(
        findings(&doc, "D001", port).len(),
        1,
        "the saved snapshot still shows the duplicate init"
    );
}

#[test]
fn table_output_has_the_columns_and_fix() {
    let port = free_low_port();
    let s = Situation::start("d001", port);
    let out = run(&["ports"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let header = text.lines().next().unwrap();
    let cols: Vec<&str> = header.split_whitespace().collect();
    assert_eq!(
        cols,
        [
            "LOCAL", "PEER", "STATE", "PID", "USER", "ROLE", "RANK", "JOB", "AGE", "COMMAND"
        ],
        "{header}"
    );
    assert!(text.contains(&s.pid("rank").to_string()));
    assert!(text.contains("error[D001] duplicate-init"), "{text}");
    assert!(text.contains("fix: move the distributed launch"), "{text}");
}

#[test]
fn non_utf8_argv_does_not_fail_the_scan() {
    use std::os::unix::ffi::OsStrExt;
    let port = free_low_port();
    let arg = std::ffi::OsStr::from_bytes(b"tr\xffain");
    let code = format!(
        "import socket,time,sys; s=socket.socket(); s.bind(('127.0.0.1',{port})); s.listen(); print('READY',flush=True); time.sleep(3600)"
    );
    let mut cmd = std::process::Command::new(python());
    cmd.args(["-c", &code]).arg(arg);
    let s = Situation::start_cmd(&mut cmd);
    let (doc, _) = json(&["ports", "--port", &port.to_string(), "--format", "json"]);
    let row = holder_rows(&doc, port)
        .into_iter()
        .find(|h| h["pid"] == s.child.id())
        .expect("row");
    assert!(row["command"].as_str().unwrap().contains("tr\u{fffd}ain"));
}

#[test]
fn zombies_are_shown_not_fatal() {
    let port = free_low_port();
    let s = Situation::start("zombie", port);
    let out = run(&["tree", "--pid", &s.pid("rank").to_string()]);
    assert_ne!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("{} ", s.pid("zombie"))) && text.contains("<zombie>"),
        "{text}"
    );
    let (doc, _) = json(&["ports", "--port", &port.to_string(), "--format", "json"]);
    assert!(
        holder_rows(&doc, port)
            .iter()
            .any(|h| h["pid"] == s.pid("rank"))
    );
}

#[test]
fn processes_exiting_mid_read_never_fail_the_scan() {
    let _s = Situation::start("churn", 1);
    for _ in 0..15 {
        let out = run(&["ports", "--all", "--format", "json"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(matches!(out.status.code(), Some(0) | Some(1)), "{err}");
        assert!(!err.contains("panicked"), "{err}");
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
        // A vanished process is dropped, not reported as unreadable.
        assert!(
            doc["unreadable"]
                .as_array()
                .unwrap()
                .iter()
                .all(|u| u["reason"] != "process exited during the scan")
        );
    }
}

#[test]
fn without_root_it_says_what_it_could_not_read() {
    if !need_root("setpriv drops privileges") || need_tool("setpriv").is_none() {
        return;
    }
    let port = free_low_port();
    let s = Situation::start("d001", port);
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_doctor"))
        .args(["ports", "--format", "json"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(matches!(out.status.code(), Some(0) | Some(1)), "{err}");
    assert!(
        err.contains("could not be fully read") && err.contains("CAP_SYS_PTRACE"),
        "{err}"
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let unreadable = doc["unreadable"].as_array().unwrap();
    assert!(
        unreadable
            .iter()
            .any(|u| u["pid"] == s.pid("rank") && u["reason"] == "permission denied"),
        "{doc:#}"
    );
    // The socket is still listed, without a holder doctor may not see.
    assert!(
        holder_rows(&doc, port).is_empty()
            || holder_rows(&doc, port).iter().all(|h| h["pid"].is_null())
    );
}

/// `--port N` filters to N (other jobs' ports are not listed); `--all` widens again; sockets of
/// one process in one state on one port are one row with their count.
#[test]
fn port_filters_and_rows_group_sockets() {
    let port = free_low_port();
    let other = free_low_port();
    let _s = Situation::start("d001", port);
    let _o = Situation::start("d003", other);
    let (doc, _) = json(&["ports", "--port", &port.to_string(), "--format", "json"]);
    let ports: Vec<u64> = doc["holders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["port"].as_u64().unwrap())
        .collect();
    assert!(
        !ports.is_empty() && ports.iter().all(|p| *p == port as u64),
        "{ports:?}"
    );
    assert!(doc["findings"].as_array().unwrap().iter().all(|f| {
        f["ports"].as_array().unwrap().iter().any(|p| p == port)
            || f["ports"].as_array().unwrap().is_empty()
    }));
    let (doc, _) = json(&[
        "ports",
        "--port",
        &port.to_string(),
        "--all",
        "--format",
        "json",
    ]);
    assert!(
        doc["holders"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["port"] == other),
        "--all widens to the other job's listener"
    );
    // The rank's store connections from its spawn child: the table shows each (pid, state) once.
    let out = run(&["ports", "--port", &port.to_string()]);
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<&str> = text.lines().skip(1).take_while(|l| !l.is_empty()).collect();
    let mut keys: Vec<(String, String)> = rows
        .iter()
        .map(|l| {
            let c: Vec<&str> = l.split_whitespace().collect();
            (c[2].to_string(), c[3].to_string())
        })
        .collect();
    let n = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), n, "one row per (state, pid):\n{text}");
    assert!(
        rows.iter()
            .any(|l| l.contains("127.0.0.1:") && l.contains(" LISTEN")),
        "{text}"
    );
}

/// `--check N --format json` prints a document; the exit code still says free (0) or taken (1).
#[test]
fn check_prints_json_when_asked() {
    let port = free_low_port();
    let (doc, code) = json(&["ports", "--check", &port.to_string(), "--format", "json"]);
    assert_eq!((code, doc["free"].as_bool()), (0, Some(true)), "{doc}");
    let s = Situation::start("d003", port);
    let (doc, code) = json(&["ports", "--check", &port.to_string(), "--format", "json"]);
    assert_eq!((code, doc["free"].as_bool()), (1, Some(false)), "{doc}");
    assert!(
        doc["holders"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["pid"] == s.pid("orphan")),
        "{doc}"
    );
}

/// `ports --failed-pid PID` without a port (a plain EADDRINUSE whose output names none, as the
/// DDP_DOCTOR hook may pass) states only findings about PID, its job, its ancestors and its
/// descendants: another job's D001 elsewhere on the machine is not why PID failed. With the
/// other job's own failing pid, its D001 is stated.
#[test]
fn failed_pid_without_a_port_is_about_that_process_only() {
    let port = free_low_port();
    let s = Situation::start("d001", port);
    let bystander = Situation::start_cmd(
        std::process::Command::new("sh")
            .arg("-c")
            .arg("echo READY; exec sleep 600"),
    );
    let pid = bystander.child.id().to_string();
    let (doc, _) = json(&["ports", "--failed-pid", &pid, "--format", "json"]);
    let codes: Vec<_> = doc["diagnosis"]["findings"]
        .as_array()
        .unwrap_or_else(|| panic!("{doc:#}"))
        .iter()
        .map(|f| f["code"].clone())
        .collect();
    assert!(!codes.contains(&"D001".into()), "{doc:#}");
    let child = s.pid("child").to_string();
    let (doc, _) = json(&["ports", "--failed-pid", &child, "--format", "json"]);
    let d001: Vec<_> = doc["diagnosis"]["findings"]
        .as_array()
        .unwrap_or_else(|| panic!("{doc:#}"))
        .iter()
        .filter(|f| f["code"] == "D001")
        .collect();
    assert_eq!(d001.len(), 1, "{doc:#}");
}

/// A network namespace of its own (`ip netns add`), deleted on drop, pass or fail.
struct Netns(String);

impl Netns {
    fn create(tag: &str) -> Result<Netns, String> {
        let name = format!("ddl{}{tag}", std::process::id());
        let ip = |args: &[&str]| -> Result<(), String> {
            let out = std::process::Command::new("ip")
                .args(args)
                .output()
                .map_err(|e| format!("ip: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
            }
        };
        ip(&["netns", "add", &name])?;
        let ns = Netns(name);
        ip(&["-n", &ns.0, "link", "set", "lo", "up"])?;
        Ok(ns)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .output();
    }
}

/// Two jobs with the same ranks on the same port number, one in this network namespace, one in
/// another (a container, `ip netns exec`): each namespace has its own ports, so there is no
/// conflict. `ports` and `tree` in either namespace judge their own job only (was D002 "held by
/// another job", with a fix moving a healthy job to another port), and a snapshot taken here
/// and read back says the same.
#[test]
fn a_job_in_another_network_namespace_is_not_another_job_on_the_port() {
    let ns = match Netns::create("x") {
        Ok(ns) => ns,
        Err(why) => {
            skip_or_fail(&format!("cannot create a network namespace: {why}"));
            return;
        }
    };
    let port = free_low_port();
    let start = |netns: Option<&str>, rank: u32| {
        let mut cmd = std::process::Command::new(if netns.is_some() { "ip" } else { "env" });
        if let Some(n) = netns {
            cmd.args(["netns", "exec", n, "env"]);
        }
        cmd.arg("MASTER_ADDR=127.0.0.1")
            .arg(format!("MASTER_PORT={port}"))
            .arg(format!("RANK={rank}"))
            .arg(format!("LOCAL_RANK={rank}"))
            .arg("WORLD_SIZE=2")
            .arg(python())
            .arg(helper("multinode.py"))
            .arg("rank")
            .arg(port.to_string());
        Situation::start_cmd(&mut cmd)
    };
    let here = [start(None, 0), start(None, 1)];
    let there = [start(Some(&ns.0), 0), start(Some(&ns.0), 1)];
    let ours: Vec<i64> = here.iter().map(|s| s.pid("me") as i64).collect();
    let theirs: Vec<i64> = there.iter().map(|s| s.pid("me") as i64).collect();
    let p = port.to_string();
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("snap.json");
    let out = doctor()
        .args(["snapshot", "-o"])
        .arg(&snap)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let snap = snap.display().to_string();
    // (netns to run doctor in, its job's ranks, the other namespace's)
    let views: [(Option<&str>, &[i64], &[i64]); 2] =
        [(None, &ours, &theirs), (Some(&ns.0), &theirs, &ours)];
    for (netns, mine, others) in views {
        let mut runs: Vec<Vec<&str>> = vec![
            vec!["ports", "--port", &p, "--format", "json"],
            vec!["tree", "--port", &p, "--format", "json"],
            vec!["ports", "--format", "json"],
        ];
        if netns.is_none() {
            runs.push(vec![
                "ports", "--from", &snap, "--port", &p, "--format", "json",
            ]);
        }
        for args in runs {
            let mut cmd = match netns {
                Some(n) => {
                    let mut c = std::process::Command::new("ip");
                    c.args(["netns", "exec", n, env!("CARGO_BIN_EXE_doctor")]);
                    c
                }
                None => doctor(),
            };
            let out = cmd.args(&args).env("NO_COLOR", "1").output().unwrap();
            let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
                .unwrap_or_else(|e| panic!("{args:?} in {netns:?}: {e}: {out:?}"));
            let about: Vec<&serde_json::Value> = doc["findings"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|f| {
                    f["ports"].as_array().unwrap().iter().any(|x| x == port)
                        || pids_of(f)
                            .iter()
                            .any(|q| mine.contains(q) || others.contains(q))
                })
                .collect();
            assert!(about.is_empty(), "{args:?} in {netns:?}: {about:#?}");
            let jobs: Vec<&serde_json::Value> = doc["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|j| {
                    j["pids"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|x| mine.iter().chain(others.iter()).any(|q| x == q))
                })
                .collect();
            assert_eq!(jobs.len(), 1, "{args:?} in {netns:?}: one job: {jobs:#?}");
            let pids = jobs[0]["pids"].as_array().unwrap();
            assert!(
                mine.iter().all(|q| pids.iter().any(|x| x == q))
                    && !others.iter().any(|q| pids.iter().any(|x| x == q)),
                "{args:?} in {netns:?}: the job is this namespace's ranks {mine:?}: {pids:?}"
            );
        }
    }
    drop((here, there));
}

/// A process of another network namespace can hold a socket of this one: it bound here, then
/// moved (`unshare -n`, `ip netns exec` after the bind, systemd socket activation of a service
/// with `PrivateNetwork=yes`, a socket passed into a container). It is the port's holder here
/// and must be shown as such (the netns filter of 7c7c49b left the holder out: pid `-`).
#[test]
fn a_holder_in_another_network_namespace_of_a_socket_here_is_shown() {
    let ok = std::process::Command::new("unshare")
        .args(["-n", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        skip_or_fail("cannot create a network namespace (unshare -n)");
        return;
    }
    let port = free_low_port();
    let holder = r#"
import os, sys, time
print(f"PIDS me={os.getpid()}", flush=True)
print("READY", flush=True)
time.sleep(600)
"#;
    let binder = format!(
        r#"
import os, socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", {port})); s.listen(); s.set_inheritable(True)
os.execvp("unshare", ["unshare", "-n", sys.executable, "-c", sys.argv[1]])
"#
    );
    let sit = Situation::start_cmd(
        std::process::Command::new(python())
            .args(["-c", &binder])
            .arg(holder),
    );
    let me = sit.pid("me");
    assert_ne!(
        std::fs::read_link(format!("/proc/{me}/ns/net")).ok(),
        std::fs::read_link("/proc/self/ns/net").ok(),
        "the holder lives in another network namespace"
    );
    let p = port.to_string();
    let (doc, _) = json(&["ports", "--port", &p, "--format", "json"]);
    let pids: Vec<&serde_json::Value> = doc["holders"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|h| h["port"] == port)
        .map(|h| &h["pid"])
        .collect();
    assert!(
        !pids.is_empty() && pids.iter().all(|p| **p == me),
        "ports: the holder of port {port} is pid {me}: {pids:?}"
    );
    fn has(n: &serde_json::Value, pid: i32) -> bool {
        n["pid"] == pid
            || n["children"]
                .as_array()
                .is_some_and(|c| c.iter().any(|k| has(k, pid)))
    }
    let (doc, _) = json(&["tree", "--port", &p, "--format", "json"]);
    assert!(
        doc["trees"]
            .as_array()
            .is_some_and(|t| t.iter().any(|n| has(n, me))),
        "tree: the holder of port {port}, pid {me}, is drawn: {doc:#}"
    );
}
