//! Shared by the integration tests: run `doctor`, start helper processes in their own process
//! group and kill that group when the test ends, pass or fail.

#![allow(dead_code)]

mod needs;
pub mod procs;
pub mod schema;
#[allow(unused_imports)]
pub use needs::{need, need_root, need_tool, skip_or_fail, under_ci};
#[allow(unused_imports)]
pub use procs::{alive, wait_gone, wait_until};

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn doctor() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_doctor"));
    c.env("NO_COLOR", "1").env_remove("COLUMNS");
    default_signals(&mut c);
    c
}

/// Start `cmd` with SIGINT, SIGQUIT, SIGTERM and SIGHUP at their defaults, as at a terminal,
/// whatever the test runner inherited: a non-interactive shell starts a background job with
/// SIGINT and SIGQUIT ignored (`scripts/test.sh &`), and `doctor run` keeps a signal ignored at
/// its start ignored, as the command alone would.
pub fn default_signals(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: signal(2) with SIG_DFL between fork and exec installs no handler.
    unsafe {
        cmd.pre_exec(|| {
            for sig in [libc::SIGINT, libc::SIGQUIT, libc::SIGTERM, libc::SIGHUP] {
                libc::signal(sig, libc::SIG_DFL);
            }
            Ok(())
        })
    }
}

pub fn run(args: &[&str]) -> Output {
    doctor().args(args).output().expect("doctor runs")
}

pub fn json(args: &[&str]) -> (serde_json::Value, i32) {
    let out = run(args);
    let code = out.status.code().unwrap_or(-1);
    let text = String::from_utf8_lossy(&out.stdout);
    let value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "doctor {args:?} gave no JSON ({e}); stdout: {text}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (value, code)
}

/// `doctor ARGS` in a process group of its own (a repro's case trees included), killed whole if
/// the wait for it fails; stdout and stderr captured.
pub fn run_in_group(args: &[&str]) -> Output {
    use std::os::unix::process::CommandExt;
    let child = doctor()
        .args(args)
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("doctor starts");
    let mut group = GroupGuard {
        pgid: child.id() as i32,
        exited: false,
    };
    let out = child.wait_with_output().expect("doctor runs");
    group.exited = true;
    out
}

/// [`run_in_group`] with its JSON document on stdout.
pub fn json_in_group(args: &[&str]) -> (Output, serde_json::Value) {
    let out = run_in_group(args);
    let doc = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON from {args:?} ({e}); exit {:?}; stderr:\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out, doc)
}

/// Kills a process group on drop unless its leader was seen to exit.
struct GroupGuard {
    pgid: i32,
    exited: bool,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if !self.exited {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(self.pgid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Start `cmd` in a process group of its own with stdout piped and no rendezvous variables
/// inherited from the test's environment (a helper sets its own).
pub fn spawn_clean(cmd: &mut Command) -> Child {
    use std::os::unix::process::CommandExt;
    for k in [
        "MASTER_PORT",
        "MASTER_ADDR",
        "LOCAL_RANK",
        "RANK",
        "WORLD_SIZE",
        "NODE_RANK",
    ] {
        cmd.env_remove(k);
    }
    cmd.process_group(0)
        .stdout(Stdio::piped())
        .spawn()
        .expect("helper starts")
}

/// The jobs of a `ports`/`tree` document whose MASTER_PORT is `port`.
pub fn jobs_on(doc: &serde_json::Value, port: u16) -> Vec<&serde_json::Value> {
    doc["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .filter(|j| j["master_port"] == port)
        .collect()
}

pub fn helper(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/helpers")
        .join(name)
}

pub fn python() -> String {
    std::env::var("DOCTOR_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// A helper process tree in its own process group, killed (whole group) on drop.
pub struct Situation {
    pub child: Child,
    pub pids: HashMap<String, i32>,
}

impl Situation {
    /// Start `situations.py NAME PORT` and wait for READY.
    pub fn start(name: &str, port: u16) -> Situation {
        Self::start_cmd(
            Command::new(python())
                .arg(helper("situations.py"))
                .arg(name)
                .arg(port.to_string()),
        )
    }

    pub fn start_cmd(cmd: &mut Command) -> Situation {
        let mut child = spawn_clean(cmd);
        let stdout = child.stdout.take().expect("piped");
        let mut sit = Situation {
            child,
            pids: HashMap::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut lines = BufReader::new(stdout).lines();
        loop {
            assert!(Instant::now() < deadline, "helper did not become ready");
            let Some(Ok(line)) = lines.next() else {
                panic!("helper exited before READY")
            };
            if let Some(rest) = line.strip_prefix("PIDS ") {
                for kv in rest.split_whitespace() {
                    let (k, v) = kv.split_once('=').expect("k=v");
                    sit.pids.insert(k.to_string(), v.parse().expect("pid"));
                }
            }
            if line == "READY" {
                break;
            }
        }
        // Keep draining stdout so the helper never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        sit
    }

    pub fn pid(&self, k: &str) -> i32 {
        self.pids[k]
    }
}

impl Drop for Situation {
    fn drop(&mut self) {
        let pgid = self.child.id() as i32;
        // SAFETY: kill(2) with a negative pid signals the helper's own process group only.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// A port below the ephemeral range (`ip_local_port_range`), not reserved
/// (`ip_local_reserved_ports`), that nothing holds right now.
pub fn free_low_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let read =
        |f: &str| std::fs::read_to_string(format!("/proc/sys/net/ipv4/{f}")).unwrap_or_default();
    let lo: u16 = read("ip_local_port_range")
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(32768);
    let reserved: Vec<(u16, u16)> = read("ip_local_reserved_ports")
        .trim()
        .split(',')
        .filter_map(|r| {
            let (a, b) = r.split_once('-').unwrap_or((r, r));
            Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
        })
        .collect();
    let (start, span) = if lo > 21000 {
        (20000, lo - 20000)
    } else {
        (1024, lo - 1024)
    };
    let base = (std::process::id() % u32::from(span)) as u16;
    for _ in 0..span {
        let step = u32::from(NEXT.fetch_add(7, Ordering::SeqCst));
        let port = start + ((u32::from(base) + step) % u32::from(span)) as u16;
        if reserved.iter().any(|(a, b)| *a <= port && port <= *b) {
            continue;
        }
        if std::net::TcpListener::bind(("0.0.0.0", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port below the ephemeral range start {lo}")
}

/// Findings with `code` that cite `port` (tests run in parallel, each on its own port).
pub fn findings<'a>(
    doc: &'a serde_json::Value,
    code: &str,
    port: u16,
) -> Vec<&'a serde_json::Value> {
    doc["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| {
            f["code"] == code
                && f["ports"]
                    .as_array()
                    .is_some_and(|p| p.iter().any(|x| x == port))
        })
        .collect()
}

pub fn pids_of(f: &serde_json::Value) -> Vec<i64> {
    f["pids"]
        .as_array()
        .expect("pids")
        .iter()
        .filter_map(|p| p.as_i64())
        .collect()
}

/// The managed venv's interpreter (`doctor repro --setup --no-setup`, which never installs);
/// None after `skip_or_fail` where there is no Python with torch and lightning (a failure under
/// CI) or DOCTOR_SKIP_TORCH is set.
pub fn torch_python() -> Option<PathBuf> {
    if std::env::var_os("DOCTOR_SKIP_TORCH").is_some() {
        skip_or_fail("DOCTOR_SKIP_TORCH is set");
        return None;
    }
    let out = doctor()
        .args(["repro", "--setup", "--no-setup"])
        .output()
        .expect("doctor runs");
    if out.status.code() != Some(0) {
        skip_or_fail(&format!(
            "no Python with torch and lightning; run scripts/test.sh first:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
        return None;
    }
    // `doctor repro --setup` prints the interpreter's path on stdout.
    let python = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(
        python.is_file(),
        "doctor repro --setup named no interpreter"
    );
    Some(python)
}

/// Every Python file of the scan fixtures (`tests/fixtures/scan*`, sub-folders too), as
/// `FOLDER/PATH` below tests/fixtures, sorted.
pub fn scan_fixtures() -> Vec<String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = ["scan", "scan_fix", "scan_star"]
        .iter()
        .map(|d| root.join(d))
        .collect();
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).expect("fixtures") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "py") {
                out.push(
                    p.strip_prefix(&root)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    out.sort();
    out
}

/// `text` written to `NAME` in a new temporary folder: the folder (removed when dropped) and the
/// file's path.
pub fn temp_script(name: &str, text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join(name);
    std::fs::write(&script, text).expect("write");
    (dir, script.to_string_lossy().into_owned())
}
