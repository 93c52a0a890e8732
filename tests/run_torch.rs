//! `doctor run` on the bundled Lightning Fabric reproductions with real torch + lightning (CPU,
//! gloo). Needs the managed environment that `scripts/test.sh` creates (`doctor repro --setup`);
//! set DOCTOR_SKIP_TORCH=1 to skip on a machine without it.

mod common;

use std::path::PathBuf;

use common::*;

fn repro(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("repro")
        .join(name)
}

fn line_of(path: &PathBuf, needle: &str) -> usize {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .position(|l| l.starts_with(needle))
        .expect("line")
        + 1
}

fn run_fabric(python: &PathBuf, script: &str, ctx: &str) -> (i32, serde_json::Value, String) {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("run.json");
    let port = free_low_port();
    let out = doctor()
        .args([
            "run",
            "--timeout",
            "240",
            "--record",
            record.to_str().unwrap(),
            "--",
        ])
        .arg(python)
        .arg(repro(script))
        .args(["--ctx", ctx])
        .env("MASTER_PORT", port.to_string())
        .output()
        .unwrap();
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&record).unwrap()).unwrap();
    (
        out.status.code().unwrap_or(-1),
        doc,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn module_level_launch_under_spawn_is_explained() {
    let Some(python) = torch_python() else { return };
    let (code, doc, err) = run_fabric(&python, "fabric_buggy.py", "spawn");
    assert_eq!(
        code,
        doc["exit_status"].as_i64().unwrap() as i32,
        "doctor exits with the command's status"
    );
    assert_ne!(code, 0, "{err}");
    let d = &doc["diagnosis"];
    let port = d["port"].as_u64().expect("the port is named") as u16;
    assert_eq!(d["errno"], 98, "{d:#}");
    assert_eq!(d["errno_name"], "EADDRINUSE", "{d:#}");
    // doctor never answers a call itself: the errno is inferred, and says so.
    assert_eq!(d["errno_inferred"], true, "{d:#}");
    let failing = d["failing_pid"].as_i64().expect("failing pid");
    let holder = d["holder_pid"].as_i64().expect("holder pid");
    assert_eq!(d["holder_role"], "rank");
    let failed_bind = doc["syscalls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["pid"] == failing && e["errno"] == 98)
        .expect("the traced failing bind");
    assert_eq!(failed_bind["port"], port);
    let script = repro("fabric_buggy.py");
    let line = line_of(&script, "fabric.launch()");
    assert_eq!(
        d["script_line"],
        format!("{}:{line}", script.display()),
        "{d:#}"
    );
    let d001 = d["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == "D001")
        .expect("D001");
    assert_eq!(d001["pids"][0], holder);
    assert_eq!(d001["pids"][1], failing);
    assert!(
        d001["fix"]["message"]
            .as_str()
            .unwrap()
            .contains("if __name__ == \"__main__\":")
    );
    assert!(
        d["static_findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["code"] == "S001" && f["location"]["line"] == line)
    );
    assert!(
        doc["leftovers"].as_array().unwrap().is_empty(),
        "{:#}",
        doc["leftovers"]
    );
    assert!(
        err.contains("errno 98 EADDRINUSE") && err.contains("error[D001]"),
        "{err}"
    );
}

#[test]
fn guarded_launch_under_spawn_is_a_clean_run() {
    let Some(python) = torch_python() else { return };
    let (code, doc, err) = run_fabric(&python, "fabric_fixed.py", "spawn");
    assert_eq!(code, 0, "{err}");
    assert_eq!(doc["exit_status"], 0);
    assert!(
        doc["diagnosis"]["findings"].as_array().unwrap().is_empty(),
        "{:#}",
        doc["diagnosis"]
    );
    assert!(
        doc["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["errno"] != 98)
    );
    assert!(doc["leftovers"].as_array().unwrap().is_empty());
}

/// A process group killed on drop, pass or fail.
struct Group(std::process::Child);

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the test's own process group.
        unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

#[test]
fn ports_and_tree_see_the_real_duplicate_rank_connecting() {
    use std::os::unix::process::CommandExt;
    let Some(python) = torch_python() else { return };
    let port = free_low_port();
    // Bare, as a user runs it: rank 1's spawn worker re-runs fabric.launch() and connects to
    // rank 0's store as a second rank 1, and stays (the hang that follows rank 0's crash).
    let child = std::process::Command::new(&python)
        .arg(repro("fabric_buggy.py"))
        .args(["--ctx", "spawn"])
        .env("MASTER_PORT", port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let _group = Group(child);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    let d001 = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "no D001 on port {port} within 180 s"
        );
        let (doc, _) = json(&["ports", "--port", &port.to_string(), "--format", "json"]);
        if let Some(f) = findings(&doc, "D001", port).first() {
            break (*f).clone();
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    let pids = pids_of(&d001);
    let (rank, worker) = (pids[0], pids[1]);
    let (doc, code) = json(&["tree", "--pid", &worker.to_string(), "--format", "json"]);
    assert_eq!(code, 1);
    let text = doc.to_string();
    assert!(
        text.contains("\"role\":\"spawn-child\"")
            || text.contains("\"role\":\"dataloader-worker\""),
        "{doc:#}"
    );
    let rank_node = find_node(&doc["trees"], rank).expect("the rank is drawn");
    assert_eq!(rank_node["role"], "rank");
    assert!(
        find_node(&rank_node["children"], worker).is_some(),
        "the worker is drawn under its rank"
    );
    assert!(
        d001["fix"]["message"]
            .as_str()
            .unwrap()
            .contains("fabric_buggy.py")
    );
}

fn find_node(nodes: &serde_json::Value, pid: i64) -> Option<&serde_json::Value> {
    nodes.as_array()?.iter().find_map(|n| {
        if n["pid"] == pid {
            Some(n)
        } else {
            find_node(&n["children"], pid)
        }
    })
}
