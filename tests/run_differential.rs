//! `doctor run` never changes what the command may do: every row of tests/helpers/syscalls.py
//! (privileged ports, bad lengths, families and pointers, EADDRINUSE with and without
//! SO_REUSEADDR / SO_REUSEPORT, IPv6 with and without V6ONLY, port 0, unix and abstract sockets,
//! a socket of another network namespace, a call the command's own seccomp filter denies,
//! connect to a closed port, a non-blocking connect) returns the same value and errno bare,
//! under `doctor run` (traced) and under `doctor run --no-trace`; as root, as `nobody` under a
//! root doctor, as `nobody` running doctor itself, and as `nobody` with CAP_NET_BIND_SERVICE
//! (ambient, and as a file capability). On the EADDRINUSE row the traced record still names the
//! process that failed and the process that held the port.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

const NOBODY: [&str; 3] = ["--reuid=65534", "--regid=65534", "--clear-groups"];
const AMBIENT: [&str; 2] = [
    "--inh-caps=+net_bind_service",
    "--ambient-caps=+net_bind_service",
];

/// Everything the rows need, in a directory `nobody` can read: the helper, a copy of doctor, the
/// system python (the managed one lives under /root) and a copy of it with a file capability.
struct Bed {
    _dir: tempfile::TempDir,
    script: PathBuf,
    doctor: PathBuf,
    python: PathBuf,
    capped_python: PathBuf,
}

fn bed() -> Option<Bed> {
    if !need_root("the differential rows run as root and as nobody") {
        return None;
    }
    need_tool("setpriv")?;
    let setcap = need_tool("setcap")?;
    let system_python = ["/usr/bin/python3", "/usr/local/bin/python3"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    let Some(system_python) = system_python else {
        skip_or_fail("a python3 that nobody may run (/usr/bin/python3) is needed");
        return None;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let copy = |from: &Path, name: &str| {
        let to = dir.path().join(name);
        std::fs::copy(from, &to).unwrap();
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755)).unwrap();
        to
    };
    let script = copy(&helper("syscalls.py"), "syscalls.py");
    let doctor = copy(Path::new(env!("CARGO_BIN_EXE_doctor")), "doctor");
    let real_python = std::fs::canonicalize(&system_python).unwrap();
    let capped_python = copy(&real_python, "python-cap");
    let out = Command::new(setcap)
        .arg("cap_net_bind_service+ep")
        .arg(&capped_python)
        .output()
        .unwrap();
    assert!(out.status.success(), "setcap: {out:?}");
    Some(Bed {
        _dir: dir,
        script,
        doctor,
        python: system_python,
        capped_python,
    })
}

/// One way of running the helper: a label and the argv in front of `PYTHON SCRIPT PORTS`.
struct Way {
    label: String,
    argv: Vec<String>,
    /// A record is written here when doctor runs (traced or not).
    record: Option<PathBuf>,
    python: PathBuf,
}

fn s(x: impl AsRef<std::ffi::OsStr>) -> String {
    x.as_ref().to_string_lossy().into_owned()
}

fn ways(bed: &Bed, dir: &Path) -> Vec<(String, Vec<Way>)> {
    let doctor_run = |doctor: &Path, tag: &str, no_trace: bool| -> (Vec<String>, PathBuf) {
        let record = dir.join(format!("{tag}.json"));
        let mut v = vec![s(doctor), "run".into(), "-o".into(), s(&record)];
        if no_trace {
            v.push("--no-trace".into());
        }
        v.push("--".into());
        (v, record)
    };
    let setpriv = |extra: &[&str]| -> Vec<String> {
        let mut v = vec!["setpriv".to_string()];
        v.extend(NOBODY.iter().map(|x| x.to_string()));
        v.extend(extra.iter().map(|x| x.to_string()));
        v.push("--".into());
        v
    };
    let root = Path::new(env!("CARGO_BIN_EXE_doctor"));
    let mut groups = Vec::new();
    // (group, user prefix, python)
    let users: [(&str, Vec<String>, &Path); 4] = [
        ("root", vec![], &bed.python),
        ("nobody", setpriv(&[]), &bed.python),
        ("nobody+ambient-cap", setpriv(&AMBIENT), &bed.python),
        ("nobody+file-cap", setpriv(&[]), &bed.capped_python),
    ];
    for (group, user, python) in users {
        let mut list = vec![Way {
            label: format!("{group}: bare"),
            argv: user.clone(),
            record: None,
            python: python.to_path_buf(),
        }];
        for no_trace in [false, true] {
            let mode = if no_trace { "--no-trace" } else { "traced" };
            // A root doctor around a command of this user (the shared-node case).
            let tag = format!("{}-root-{mode}", group.replace('+', "-"));
            let (mut argv, record) = doctor_run(root, &tag, no_trace);
            argv.extend(user.clone());
            list.push(Way {
                label: format!("{group}: root doctor run {mode}"),
                argv,
                record: Some(record),
                python: python.to_path_buf(),
            });
            // doctor itself run by this user.
            if !user.is_empty() {
                let tag = format!("{}-own-{mode}", group.replace('+', "-"));
                let (argv_doctor, record) = doctor_run(&bed.doctor, &tag, no_trace);
                let mut argv = user.clone();
                argv.extend(argv_doctor);
                list.push(Way {
                    label: format!("{group}: doctor run {mode} as the user"),
                    argv,
                    record: Some(record),
                    python: python.to_path_buf(),
                });
            }
        }
        groups.push((group.to_string(), list));
    }
    groups
}

fn run_way(way: &Way, script: &Path, ports: (u16, u16)) -> (serde_json::Value, String) {
    let mut argv = way.argv.clone();
    argv.push(s(&way.python));
    argv.push(s(script));
    argv.push(ports.0.to_string());
    argv.push(ports.1.to_string());
    let out = Command::new("timeout")
        .args(["-s", "KILL", "60"])
        .args(&argv)
        .current_dir(std::env::temp_dir())
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let doc = stdout
        .lines()
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .unwrap_or_else(|| panic!("{}: no result\n{argv:?}\n{stdout}\n{stderr}", way.label));
    (doc, stderr)
}

fn record(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("the record")).expect("json")
}

#[test]
fn every_call_returns_the_same_bare_and_under_doctor_run() {
    let Some(bed) = bed() else { return };
    let work = tempfile::tempdir().unwrap();
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let ports = (free_low_port(), free_low_port());
    let mut differences = Vec::new();
    let mut rows = 0;
    for (group, list) in ways(&bed, work.path()) {
        let (bare, _) = run_way(&list[0], &bed.script, ports);
        for way in &list[1..] {
            let (got, stderr) = run_way(way, &bed.script, ports);
            for (case, want) in bare.as_object().unwrap() {
                if case == "_pid" {
                    continue;
                }
                rows += 1;
                if got.get(case) != Some(want) {
                    differences.push(format!(
                        "{}: {case}: bare {want}, got {}",
                        way.label,
                        got.get(case).unwrap_or(&serde_json::Value::Null)
                    ));
                }
            }
            let Some(path) = &way.record else { continue };
            let rec = record(path);
            let traced = !way.argv.iter().any(|a| a == "--no-trace");
            // A program with file capabilities run by an unprivileged doctor is watched by
            // polling (no_new_privs would drop its capabilities); every other traced way traces.
            let expect =
                if traced && !(group == "nobody+file-cap" && way.label.contains("as the user")) {
                    "seccomp-notify"
                } else {
                    "polling"
                };
            assert_eq!(rec["tracing"], expect, "{}: {stderr}", way.label);
            if expect == "seccomp-notify" {
                check_eaddrinuse_diagnosis(&rec, &got, ports.0, &way.label);
            }
        }
        // The privileged-port row really differs between the groups (the table can fail).
        let want = if group == "nobody" { -1 } else { 0 };
        assert_eq!(bare["privileged-port-81"][0], want, "{group}: {bare}");
    }
    assert!(rows > 400, "only {rows} rows compared");
    assert!(
        differences.is_empty(),
        "doctor run changed what the command could do:\n{}",
        differences.join("\n")
    );
}

/// The traced record of a run names the bind that failed with EADDRINUSE (the helper's own,
/// errno marked as inferred) and the child that held the port.
fn check_eaddrinuse_diagnosis(
    rec: &serde_json::Value,
    got: &serde_json::Value,
    port: u16,
    label: &str,
) {
    let pid = got["_pid"][0].as_i64().unwrap();
    let bind = rec["syscalls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| {
            e["syscall"] == "bind" && e["port"] == port && e["pid"] == pid && e["result"] == -1
        })
        .unwrap_or_else(|| {
            panic!(
                "{label}: the failing bind is in the record: {:#}",
                rec["syscalls"]
            )
        });
    assert_eq!(bind["errno"], 98, "{label}: {bind}");
    assert_eq!(bind["errno_inferred"], true, "{label}: {bind}");
    let d = &rec["diagnosis"];
    assert_eq!(d["failing_pid"], pid, "{label}: {d:#}");
    assert_eq!(d["errno"], 98, "{label}: {d:#}");
    let holder = d["holder_pid"]
        .as_i64()
        .unwrap_or_else(|| panic!("{label}: holder: {d:#}"));
    assert_ne!(holder, pid, "{label}: {d:#}");
    let holder_cmd = rec["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["process"]["pid"] == holder)
        .map(|p| p["process"]["argv"].to_string())
        .unwrap_or_default();
    assert!(
        holder_cmd.contains("time.sleep(30)"),
        "{label}: holder {holder}: {holder_cmd}"
    );
}

/// An errno doctor infers is the kernel's: each failing bind of tests/helpers/errno_cases.py runs
/// in a child of its own while a listener holds the port (so "another socket holds the port"
/// would be wrong for all but one), and every errno in the record equals the one the child got.
#[test]
fn an_inferred_errno_is_the_one_the_kernel_returned() {
    let port = free_low_port();
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("r.json");
    let out = Command::new("timeout")
        .args([
            "-s",
            "KILL",
            "60",
            env!("CARGO_BIN_EXE_doctor"),
            "run",
            "-o",
        ])
        .arg(&record)
        .args(["--", &python()])
        .arg(helper("errno_cases.py"))
        .arg(port.to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let real: serde_json::Value = serde_json::from_str(stdout.trim()).expect("the cases ran");
    let rec = record_of(&record);
    if rec["tracing"] != "seccomp-notify" {
        skip_or_fail("tracing (seccomp-notify) is not allowed here");
        return;
    }
    let real = real.as_object().unwrap();
    assert_eq!(real.len(), 7, "{real:?}");
    // The property: an errno doctor gives is the kernel's. A result doctor could not learn (the
    // caller gone before it looked, on a loaded machine) is absent, never wrong.
    let mut with_errno = 0;
    for (pid, case) in real {
        let pid: i64 = pid.parse().unwrap();
        let want = case[1].as_i64().unwrap();
        assert_ne!(want, 0, "{case}: every case fails");
        for e in rec["syscalls"].as_array().unwrap() {
            if e["pid"] != pid || e["result"] != -1 {
                continue;
            }
            if let Some(got) = e["errno"].as_i64() {
                assert_eq!(got, want, "{case}: {e}");
                with_errno += 1;
            }
        }
        // No bind of a case is called a success.
        let succeeded = rec["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["pid"] == pid && e["result"] == 0 && e["port"] == port)
            .count();
        assert_eq!(succeeded, 0, "{case}: {:#}", rec["syscalls"]);
    }
    eprintln!("{with_errno} of 7 failing binds carried an inferred errno");
    assert!(with_errno >= 1, "{:#}", rec["syscalls"]);
}

fn record_of(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("the record")).expect("json")
}

/// What the command inherits from whoever started doctor: blocked and ignored signals (SIGPIPE
/// included: doctor is a Rust program, whose runtime ignores it, and `std::process::Command`
/// resets it and the mask in the child), a closed stdin (Rust's runtime puts /dev/null on a
/// closed 0, 1 or 2 of its own), umask, rlimits, nice value, cwd, an inherited descriptor,
/// credentials and capabilities. Each row sets the state up in a launcher that execs
/// `[doctor run [--no-trace] --] sh -c PROBE`; the probe's output is the same in all three.
const LAUNCH: &str = r#"
import os, resource, signal, sys
row, argv = sys.argv[1], sys.argv[2:]
# Python ignores SIGPIPE and SIGXFSZ itself; a launcher that is not Python does not.
for s in (signal.SIGPIPE, signal.SIGXFSZ):
    signal.signal(s, signal.SIG_DFL)
if row == "ignored":
    for s in ("SIGHUP", "SIGINT", "SIGQUIT", "SIGPIPE", "SIGTERM", "SIGUSR1", "SIGUSR2",
              "SIGALRM", "SIGTTOU", "SIGTTIN", "SIGTSTP", "SIGCHLD", "SIGXFSZ"):
        signal.signal(getattr(signal, s), signal.SIG_IGN)
if row == "blocked":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP,
        signal.SIGUSR1, signal.SIGUSR2, signal.SIGPIPE, signal.SIGCHLD, signal.SIGALRM})
if row == "stdin-closed":
    os.close(0)
if row == "stdout-closed":
    os.close(1)
if row == "limits":
    os.umask(0o077)
    resource.setrlimit(resource.RLIMIT_NOFILE, (321, 321))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    os.nice(3)
    os.chdir("/")
if row == "inherited-fd":
    fd = os.open("/dev/null", os.O_RDONLY)
    os.dup2(fd, 7, inheritable=True)
os.execvp(argv[0], argv)
"#;

/// Programs that are not Python (Python changes its signal dispositions at start-up) nor a
/// shell (dash clears the signal mask): the status and limits the kernel shows, the open
/// descriptors, the working directory.
const PROBES: [&[&str]; 3] = [
    &[
        "grep",
        "-E",
        "^(SigBlk|SigIgn|NoNewPrivs|Cap(Inh|Prm|Eff|Bnd|Amb)|Umask|Uid|Gid|Groups|Max open files|Max core file size|Max processes)",
        "/proc/self/status",
        "/proc/self/limits",
    ],
    &["ls", "/proc/self/fd"],
    &["readlink", "/proc/self/cwd"],
];

#[test]
fn what_the_command_inherits_is_the_same_bare_and_under_doctor_run() {
    let rows = [
        "plain",
        "ignored",
        "blocked",
        "stdin-closed",
        "stdout-closed",
        "limits",
        "inherited-fd",
    ];
    let doctor = env!("CARGO_BIN_EXE_doctor");
    let ways: [&[&str]; 3] = [
        &[],
        &[doctor, "run", "-q", "--"],
        &[doctor, "run", "-q", "--no-trace", "--"],
    ];
    let mut differences = Vec::new();
    for row in rows {
        let mut seen: Vec<String> = vec![String::new(); ways.len()];
        for probe in PROBES {
            for (i, way) in ways.iter().enumerate() {
                let out = Command::new("timeout")
                    .args(["-s", "KILL", "60", &python(), "-c", LAUNCH, row])
                    .args(*way)
                    .args(probe)
                    .stdin(std::process::Stdio::null())
                    .output()
                    .unwrap();
                // doctor's own exit status is the command's.
                seen[i] += &format!(
                    "{}exit status {:?}\n",
                    String::from_utf8_lossy(&out.stdout),
                    out.status.code()
                );
            }
        }
        for (way, got) in ways[1..].iter().zip(&seen[1..]) {
            if *got != seen[0] {
                differences.push(format!(
                    "{row}: {way:?}\n--- bare\n{}--- under doctor\n{got}",
                    seen[0]
                ));
            }
        }
        // The rows really set something up (the comparison can fail).
        if row == "ignored" {
            assert!(
                !seen[0].contains("SigIgn:\t0000000000000000"),
                "{}",
                seen[0]
            );
        }
    }
    assert!(
        differences.is_empty(),
        "doctor run changed what the command inherits:\n{}",
        differences.join("\n")
    );
}
