//! `doctor repro` supervision with stdlib-only stand-ins for training jobs (fast; no torch).
//! Every test kills what it started, even when it fails (see `Guard`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use serde_json::Value;

use common::skip_or_fail;

fn helper() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/helpers/tree.py")
}

fn doctor() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_doctor"));
    c.env("NO_COLOR", "1").env_remove("DOCTOR_PYTHON");
    c
}

/// A process of ours that is still running (not a zombie), checked by pid and command line so
/// a recycled pid is never mistaken for ours.
fn alive(pid: i32) -> bool {
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    common::alive(pid) && String::from_utf8_lossy(&cmd).contains("tree.py")
}

fn pids(pidfile: &Path) -> Vec<(i32, String)> {
    std::fs::read_to_string(pidfile)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (pid, role) = l.split_once(' ')?;
            Some((pid.parse().ok()?, role.to_string()))
        })
        .collect()
}

/// Kills, on drop, the doctor it started (by its process group) and every helper process that
/// wrote itself into the pidfile (by pid), whatever the test's outcome.
struct Guard {
    child: Option<Child>,
    pidfile: PathBuf,
    _dir: tempfile::TempDir,
}

impl Guard {
    fn new() -> Guard {
        let dir = tempfile::tempdir().unwrap();
        Guard {
            child: None,
            pidfile: dir.path().join("pids"),
            _dir: dir,
        }
    }

    /// Start doctor in its own process group.
    fn start(&mut self, mut cmd: Command) {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        self.child = Some(cmd.spawn().unwrap());
    }

    fn run(&mut self, cmd: Command) -> Output {
        self.start(cmd);
        self.child.take().unwrap().wait_with_output().unwrap()
    }

    fn survivors(&self) -> Vec<(i32, String)> {
        pids(&self.pidfile)
            .into_iter()
            .filter(|(p, _)| alive(*p))
            .collect()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
        }
        for (pid, _) in pids(&self.pidfile) {
            if alive(pid) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}

fn run_helper(g: &mut Guard, mode: &str, extra: &[&str]) -> (Output, Value) {
    let mut cmd = doctor();
    cmd.args(["repro"])
        .arg(helper())
        .args(["--python", "python3", "--format", "json"])
        .args(extra)
        .arg("--")
        .arg(mode)
        .arg(&g.pidfile);
    let out = g.run(cmd);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON ({e}); stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out, doc)
}

#[test]
fn a_hanging_case_is_killed_whole_at_its_timeout() {
    // The time it takes past the limit is measured by scripts/bench/timeouts.sh, not asserted.
    let mut g = Guard::new();
    let (out, doc) = run_helper(&mut g, "hang", &["--ctx", "spawn", "--timeout", "3"]);
    assert_eq!(out.status.code(), Some(1), "a hang is not the expected ok");
    let case = &doc["cases"][0];
    assert_eq!(case["outcome"], "hang");
    assert_eq!(case["exit_code"], Value::Null);
    assert!(case["seconds"].as_f64().unwrap() >= 3.0);
    assert_eq!(case["leftovers"], serde_json::json!([]));
    let roles: Vec<String> = pids(&g.pidfile).into_iter().map(|(_, r)| r).collect();
    for role in ["launcher", "child", "worker", "daemon"] {
        assert!(
            roles.iter().any(|r| r == role),
            "{role} never started: {roles:?}"
        );
    }
    assert!(case["killed"].as_array().unwrap().len() >= 4, "{case}");
    assert_eq!(g.survivors(), vec![], "processes survived the timeout");
}

#[test]
fn an_orphaned_rank_is_found_and_killed() {
    let mut g = Guard::new();
    let (out, doc) = run_helper(&mut g, "orphan", &["--ctx", "fork", "--timeout", "30"]);
    assert_eq!(out.status.code(), Some(1));
    let case = &doc["cases"][0];
    assert_eq!(case["outcome"], "error");
    assert_eq!(case["exit_code"], 1);
    assert_eq!(case["error"], "RuntimeError: rank 0 failed on purpose");
    assert_eq!(case["leftovers"], serde_json::json!([]));
    let killed: Vec<String> = case["killed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["command"].as_str().unwrap().to_string())
        .collect();
    assert!(
        killed.iter().any(|c| c.contains("tree.py child")),
        "{killed:?}"
    );
    assert!(
        killed.iter().any(|c| c.contains("tree.py worker")),
        "{killed:?}"
    );
    assert_eq!(g.survivors(), vec![], "the orphan survived");
    // It did not wait for the timeout.
    assert!(case["seconds"].as_f64().unwrap() < 20.0);
}

#[test]
fn a_passing_case_gets_a_free_port_and_frees_it() {
    let mut g = Guard::new();
    let (out, doc) = run_helper(&mut g, "ok", &["--ctx", "spawn,forkserver", "--jobs", "2"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cases = doc["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 2);
    let ports: Vec<u64> = cases.iter().map(|c| c["port"].as_u64().unwrap()).collect();
    assert_ne!(ports[0], ports[1], "concurrent cases share a port");
    // Below the ephemeral range, so the job's own port never needs a D004 warning.
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
    let lo: u64 = range.split_whitespace().next().unwrap().parse().unwrap();
    assert!(ports.iter().all(|p| *p < lo), "{ports:?} not below {lo}");
    for c in cases {
        assert_eq!(c["outcome"], "ok");
        assert_eq!(c["exit_code"], 0);
        assert_eq!(c["leftovers"], serde_json::json!([]));
        assert_eq!(c["killed"], serde_json::json!([]));
    }
    assert_eq!(doc["verdict"]["fix_verified"], true);
    assert_eq!(g.survivors(), vec![]);
}

#[test]
fn sigint_kills_every_case_tree() {
    let mut g = Guard::new();
    let mut cmd = doctor();
    cmd.args(["repro"])
        .arg(helper())
        .args(["--python", "python3", "--ctx", "all", "--jobs", "3"])
        .args(["--timeout", "120", "--", "hang"])
        .arg(&g.pidfile);
    g.start(cmd);
    // Wait until the three trees are complete (launcher, child, worker, daemon each).
    common::wait_until(Duration::from_secs(30), || pids(&g.pidfile).len() >= 12);
    assert_eq!(
        pids(&g.pidfile).len(),
        12,
        "the three case trees did not start"
    );
    assert_eq!(g.survivors().len(), 12);
    let child = g.child.as_mut().unwrap();
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "doctor did not exit after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(130));
    let mut stderr = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert_eq!(g.survivors(), vec![], "case processes survived SIGINT");
}

#[test]
fn a_custom_script_that_is_missing_is_a_usage_error() {
    let out = doctor()
        .args(["repro", "./no/such/train.py", "--python", "python3"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("error: ./no/such/train.py: no such file"),
        "{err}"
    );
    assert!(err.contains("hint:"), "{err}");
}

fn usage_error(args: &[&str], message: &str) {
    let out = doctor().args(args).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{args:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("error: {message}")),
        "{args:?}: {err}"
    );
    assert!(err.contains("\nhint: "), "{args:?}: {err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn bad_input_is_an_error_with_a_hint() {
    usage_error(&["repro", "nope"], "unknown reproduction `nope`");
    usage_error(
        &["repro", "--python", "/nonexistent"],
        "--python /nonexistent: no such file",
    );
    usage_error(
        &["repro", "--timeout", "0"],
        "--timeout 0 is not a positive number of seconds",
    );
    usage_error(
        &["repro", "--timeout=-3"],
        "--timeout -3 is not a positive number of seconds",
    );
    usage_error(&["repro", "--show", "nope"], "unknown reproduction `nope`");
    usage_error(&["repro", "--jobs", "0"], "--jobs 0 runs nothing");
    usage_error(
        &["repro", "--timeout", "1e300"],
        "--timeout 1e300 is not a positive number of seconds",
    );
    usage_error(
        &["repro", "--timeout", "NaN"],
        "--timeout NaN is not a positive number of seconds",
    );
    usage_error(
        &["repro", "--python", "/bin/sh"],
        "--python /bin/sh: /bin/sh failed",
    );
}

#[test]
fn list_and_show_need_no_python() {
    let out = doctor()
        .args(["repro", "--list", "--python", "/nonexistent"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("fabric") && text.contains("torchrun"),
        "{text}"
    );

    let out = doctor()
        .args(["repro", "--show", "fabric-buggy"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("\nfabric.launch()  # BUG"), "{text}");
    assert!(!text.contains("def main():"));

    let out = doctor()
        .args(["repro", "--show", "fabric_fixed.py"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("    fabric.launch()  # FIX"), "{text}");
    assert!(text.contains("if __name__ == \"__main__\":\n    main()"));
}

#[test]
fn a_torch_too_old_is_refused_with_a_hint() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    // Answers doctor's interpreter probe like a Python with torch 1.13 would.
    let fake = dir.path().join("python");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho '{\"executable\": \"/opt/old/bin/python\", \"python_version\": \"3.8.10\", \"prefix\": \"/opt/old\", \"torch\": \"1.13.1\", \"lightning\": \"1.9.5\", \"numpy\": null}'\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = doctor()
        .args(["repro", "--ctx", "spawn", "--python"])
        .arg(&fake)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("error: torch 1.13.1 in ") && err.contains("is too old"),
        "{err}"
    );
    assert!(err.contains("hint:"), "{err}");
}

#[test]
fn no_setup_refuses_to_create_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    // A PATH whose python3 has neither torch nor lightning, and an empty cache directory.
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let sys_python = ["/usr/bin/python3", "/bin/python3", "/usr/local/bin/python3"]
        .into_iter()
        .find(|p| Path::new(p).is_file());
    let Some(sys_python) = sys_python else {
        skip_or_fail("no system python3");
        return;
    };
    std::os::unix::fs::symlink(sys_python, bin.join("python3")).unwrap();
    let has_torch = Command::new(sys_python)
        .args([
            "-c",
            "import importlib.util,sys; sys.exit(importlib.util.find_spec('torch') is None)",
        ])
        .status()
        .unwrap()
        .success();
    if has_torch {
        skip_or_fail("the system python3 has torch, so the missing-torch path cannot be shown");
        return;
    }
    let out = doctor()
        .args(["repro", "--ctx", "spawn", "--no-setup"])
        .env("PATH", &bin)
        .env("DOCTOR_CACHE_DIR", dir.path().join("cache"))
        .env_remove("VIRTUAL_ENV")
        .env_remove("CONDA_PREFIX")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("error: no interpreter with torch and lightning found"),
        "{err}"
    );
    assert!(err.contains("--no-setup forbids creating"), "{err}");
    assert!(
        err.contains("hint: run `doctor repro --setup` once"),
        "{err}"
    );
    assert!(
        !dir.path().join("cache").exists(),
        "--no-setup created something"
    );
}
