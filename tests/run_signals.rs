//! Signals reach the command of `doctor run` exactly once, as they would without doctor: a
//! real handler counts them. Alone (doctor forwards what is sent to it), in a pipeline (the
//! command shares the pipeline's process group: a group signal reaches it directly and doctor
//! adds nothing), in the background (`kill %1` signals doctor's group, doctor forwards), and in
//! a real terminal (Ctrl-C goes to the foreground group only), traced and `--no-trace`.

mod common;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DOCTOR: &str = env!("CARGO_BIN_EXE_doctor");
const MODES: [&[&str]; 2] = [&[], &["--no-trace"]];

fn counts(file: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(file).unwrap_or_default())
        .unwrap_or(serde_json::Value::Null)
}

fn wait_ready(file: &Path) {
    let until = Instant::now() + Duration::from_secs(30);
    while !file.exists() {
        assert!(Instant::now() < until, "the counter never started");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Start `doctor run [mode] -- python count_signals.py FILE` in a process group of its own
/// (the test plays the shell), stdout a pipe (`piped`) or a file; send `sig` to the group or to
/// doctor's pid; return the counts when the command is over.
fn deliver(mode: &[&str], piped: bool, to_group: bool, sig: i32) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("counts.json");
    let log = std::fs::File::create(dir.path().join("out.txt")).unwrap();
    let mut cmd = Command::new(DOCTOR);
    cmd.arg("run")
        .args(mode)
        .args(["--", &common::python()])
        .arg(common::helper("count_signals.py"))
        .arg(&file)
        .arg("1")
        .stdin(Stdio::null())
        .stdout(if piped {
            Stdio::piped()
        } else {
            log.try_clone().unwrap().into()
        })
        .stderr(log)
        .process_group(0);
    common::default_signals(&mut cmd);
    let child = cmd.spawn().unwrap();
    let pid = child.id() as i32;
    wait_ready(&file);
    // SAFETY: kill(2) on the group or pid this test started.
    unsafe { libc::kill(if to_group { -pid } else { pid }, sig) };
    let out = child.wait_with_output().unwrap();
    // SAFETY: as above; nothing of the group may outlive the test.
    unsafe { libc::kill(-pid, libc::SIGKILL) };
    let _ = out;
    counts(&file)
}

#[test]
fn a_signal_reaches_the_command_once_alone_in_a_pipeline_and_in_the_background() {
    for mode in MODES {
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            let name = match sig {
                libc::SIGINT => "SIGINT",
                libc::SIGTERM => "SIGTERM",
                _ => "SIGHUP",
            };
            for (label, piped, to_group) in [
                ("alone, kill PID", false, false),
                ("in the background, kill %1 (the group)", false, true),
                ("in a pipeline, kill -PGID", true, true),
            ] {
                let c = deliver(mode, piped, to_group, sig);
                assert_eq!(c[name], 1, "{mode:?} {label} {name}: {c}");
            }
        }
    }
}

/// Ctrl-C in a real terminal, doctor alone in the foreground and as the first member of a
/// pipeline: the handler runs once.
#[test]
fn ctrl_c_at_a_terminal_reaches_the_command_once() {
    for mode in ["", "--no-trace"] {
        for tail in ["", " | cat"] {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("counts.json");
            let py = common::python();
            let counter = common::helper("count_signals.py");
            let steps = serde_json::json!([
                [
                    "send",
                    format!(
                        "$D run {mode} -- {py} {} {} 2{tail}\n",
                        counter.display(),
                        file.display()
                    )
                ],
                ["expect", "ready", 20],
                ["send", "\u{3}"],
                // bash drops the rest of a line whose job Ctrl-C ended: ask afterwards.
                ["send", "echo rc=done\n"],
                ["expect", "rc=done", 20],
            ]);
            let out = Command::new("timeout")
                .args(["-s", "KILL", "60", &py])
                .arg(common::helper("pty_session.py"))
                .arg(steps.to_string())
                .env("D", DOCTOR)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{text}");
            let c = counts(&file);
            assert_eq!(c["SIGINT"], 1, "mode {mode:?}, tail {tail:?}: {c}\n{text}");
        }
    }
}

/// `timeout` (and other supervisors) signal doctor's pid and then its group at once: one
/// delivery to the command, and no "again: stopping the whole tree".
#[test]
fn the_same_senders_signal_twice_at_once_is_one_delivery() {
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("counts.json");
        let log = std::fs::File::create(dir.path().join("out.txt")).unwrap();
        let child = common::default_signals(&mut Command::new(DOCTOR))
            .arg("run")
            .args(mode)
            .args(["--", &common::python()])
            .arg(common::helper("count_signals.py"))
            .arg(&file)
            .arg("1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        wait_ready(&file);
        // SAFETY: kill(2) on the process and group this test started.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
            libc::kill(-pid, libc::SIGTERM);
        }
        let out = child.wait_with_output().unwrap();
        // SAFETY: as above.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        let c = counts(&file);
        assert_eq!(c["SIGTERM"], 1, "{mode:?}: {c}");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{mode:?}: the command ended on its own"
        );
        let text = std::fs::read_to_string(dir.path().join("out.txt")).unwrap_or_default();
        assert!(!text.contains("again"), "{text}");
    }
}

/// A signal ignored when doctor starts (`nohup doctor run -- CMD`, `doctor run -- CMD &` in a
/// script, which ignores SIGINT) stays ignored as it would bare: sent twice to doctor, it is not
/// passed on and does not stop the tree; the command ends on its own with status 0.
#[test]
fn a_signal_ignored_when_doctor_starts_stays_ignored() {
    use common::procs::{alive, signal_pending, wait_until};
    for mode in MODES {
        for sig in [libc::SIGHUP, libc::SIGINT, libc::SIGTERM] {
            let dir = tempfile::tempdir().unwrap();
            let (pidfile, go) = (dir.path().join("pid"), dir.path().join("go"));
            // The command runs until the test lets it end (no time of its own to race against).
            let script = format!(
                "echo $$ > {}; while [ ! -e {} ]; do sleep 0.01; done",
                pidfile.display(),
                go.display()
            );
            let mut cmd = Command::new(DOCTOR);
            cmd.arg("run")
                .args(mode)
                .args(["--", "sh", "-c", &script])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .process_group(0);
            // SAFETY: signal(2) with SIG_IGN between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    libc::signal(sig, libc::SIG_IGN);
                    Ok(())
                });
            }
            let child = cmd.spawn().unwrap();
            let pid = child.id() as i32;
            // doctor starts the command once its signal handling is in place.
            wait_ready(&pidfile);
            let command: i32 = wait_pid(&pidfile);
            for _ in 0..2 {
                // SAFETY: kill(2) on the doctor this test started.
                unsafe { libc::kill(pid, sig) };
                // Taken (or dropped as ignored) before the next one, so two are two.
                assert!(
                    wait_until(Duration::from_secs(10), || !signal_pending(pid, sig)),
                    "{mode:?} signal {sig} stays pending in doctor"
                );
            }
            let stopped_tree = !alive(command);
            std::fs::write(&go, "").unwrap();
            let out = child.wait_with_output().unwrap();
            // SAFETY: as above; nothing of the group may outlive the test.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                !stopped_tree,
                "{mode:?} signal {sig} ended the command: {err}"
            );
            assert_eq!(out.status.code(), Some(0), "{mode:?} signal {sig}: {err}");
            assert!(!err.contains("again"), "{mode:?} signal {sig}: {err}");
        }
    }
}

/// The pid a command wrote to `file` (whole: read until it parses).
fn wait_pid(file: &Path) -> i32 {
    let mut pid = None;
    common::procs::wait_until(Duration::from_secs(30), || {
        pid = std::fs::read_to_string(file)
            .ok()
            .and_then(|s| s.trim().parse().ok());
        pid.is_some()
    });
    pid.expect("the command wrote its pid")
}
