//! `doctor run` in a real terminal (a pseudo-terminal with an interactive bash, job control on):
//! the command reads the terminal (pdb, `input()`), Ctrl-Z stops the job and `fg` resumes it,
//! SIGSTOP stops a traced command, traced and `--no-trace` alike. Without a terminal a stopped
//! command stays stopped until continued.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use common::procs::{in_wait, switches, wait_until, waiting_thread};

const DOCTOR: &str = env!("CARGO_BIN_EXE_doctor");

/// Run the steps in an interactive bash in a pty; panics with the transcript on failure.
fn session(steps: serde_json::Value) -> String {
    let out = Command::new("timeout")
        .args(["-s", "KILL", "60", &common::python()])
        .arg(common::helper("pty_session.py"))
        .arg(steps.to_string())
        .env("D", DOCTOR)
        .output()
        .expect("python runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("panicked"), "{text}");
    text
}

const MODES: [&str; 2] = ["", "--no-trace"];

#[test]
fn input_reads_a_line_from_the_terminal() {
    for mode in MODES {
        let py = common::python();
        session(json!([
            [
                "send",
                format!(
                    "$D run {mode} -- {py} -c 'x = input(\"name? \"); print(\"got\", x)'; echo rc=$?\n"
                )
            ],
            ["expect", "name\\? ", 20],
            ["send", "abc\n"],
            ["expect", "got abc", 10],
            ["expect", "rc=0", 10],
        ]));
    }
}

#[test]
fn pdb_breakpoint_reads_commands_from_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("debugged.py");
    std::fs::write(&script, "breakpoint()\nx = 6 * 7\nprint('after', x)\n").unwrap();
    let script = script.display();
    for mode in MODES {
        let py = common::python();
        session(json!([
            [
                "send",
                format!("$D run {mode} -- {py} {script}; echo rc=$?\n")
            ],
            ["expect", "\\(Pdb\\) ", 20],
            ["send", "p 1 + 1\n"],
            ["expect", "\\n2\\r?\\n", 10],
            ["send", "c\n"],
            ["expect", "after 42", 10],
            ["expect", "rc=0", 10],
        ]));
    }
}

#[test]
fn ctrl_z_stops_the_job_and_fg_resumes_it() {
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let py = common::python();
        let script = dir.path().join("ready.py");
        std::fs::write(
            &script,
            format!(
                "import os\nopen('{}', 'w').write(str(os.getpid()))\nx = input('ready? ')\nprint('done', x)\n",
                pidfile.display()
            ),
        )
        .unwrap();
        session(json!([
            [
                "send",
                format!("$D run {mode} -- {py} {}\n", script.display())
            ],
            ["expect", "ready\\? ", 20],
            ["send", "\u{1a}"],
            ["expect", "Stopped", 10],
            // The command itself is stopped (T), not only doctor.
            ["state", pidfile, "T", 10],
            ["send", "fg\n"],
            ["send", "yes\n"],
            ["expect", "done yes", 10],
            ["send", "echo rc=$?\n"],
            ["expect", "rc=0", 10],
        ]));
    }
}

#[test]
fn sigstop_stops_the_command_in_a_terminal() {
    for mode in MODES {
        session(json!([
            [
                "send",
                format!("$D run {mode} -- sh -c 'kill -STOP $$; echo resumed'\n")
            ],
            ["expect", "Stopped", 10],
            ["absent", "resumed", 1.0],
            ["send", "fg\n"],
            ["expect", "resumed", 10],
            ["send", "echo rc=$?\n"],
            ["expect", "rc=0", 10],
        ]));
    }
}

/// Without a terminal (CI, a batch job): a stopped command stays stopped until it is continued,
/// traced or not, and doctor keeps watching.
#[test]
fn sigstop_without_a_terminal_stays_stopped_until_continued() {
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let go = dir.path().join("go");
        let mut cmd = Command::new(DOCTOR);
        cmd.arg("run");
        if !mode.is_empty() {
            cmd.arg(mode);
        }
        let script = format!(
            "echo $$ > {}; while [ ! -e {} ]; do sleep 0.01; done; kill -STOP $$; echo resumed",
            pidfile.display(),
            go.display()
        );
        let child = cmd
            .args(["--", "sh", "-c", &script])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let doctor = Guard(child.id() as i32);
        let start = Instant::now();
        let pid = loop {
            if let Some(pid) = std::fs::read_to_string(&pidfile)
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
            {
                break pid;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "no pid");
            std::thread::sleep(Duration::from_millis(20));
        };
        let _command = Guard(pid);
        let state = |pid: i32| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| {
                    s.rsplit(')')
                        .next()
                        .unwrap()
                        .split_whitespace()
                        .next()
                        .unwrap()
                        .to_string()
                })
                .unwrap_or_default()
        };
        // doctor's thread in waitpid, before the command stops: once it has woken for the stop
        // and is back in waitpid, doctor has handled the stop, and the command must still be
        // stopped.
        let mut waiter = None;
        assert!(
            wait_until(Duration::from_secs(10), || {
                waiter = waiting_thread(doctor.0);
                waiter.is_some()
            }),
            "{mode}: doctor never waits for its command"
        );
        let (tid, before) = waiter.unwrap();
        std::fs::write(&go, "").unwrap();
        assert!(
            wait_until(Duration::from_secs(10), || state(pid) == "T"),
            "{mode}: the command did not stop"
        );
        assert!(
            wait_until(Duration::from_secs(10), || {
                switches(doctor.0, tid).is_some_and(|n| n > before) && in_wait(doctor.0, tid)
            }),
            "{mode}: doctor did not take the stop and wait again"
        );
        assert_eq!(state(pid), "T", "{mode}: the command stays stopped");
        // SAFETY: kill(2) on the command this test started.
        unsafe { libc::kill(pid, libc::SIGCONT) };
        let out = child.wait_with_output().unwrap();
        std::mem::forget(doctor);
        assert_eq!(out.status.code(), Some(0), "{mode}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "resumed\n");
    }
}

/// Kills a pid on drop (pass or fail).
struct Guard(i32);

impl Drop for Guard {
    fn drop(&mut self) {
        // SAFETY: kill(2) on a process this test started.
        unsafe { libc::kill(self.0, libc::SIGKILL) };
    }
}

/// Started in the background and brought to the foreground with `fg` before it reads: the
/// command gets the terminal then, and its read works at once.
#[test]
fn started_in_the_background_then_fg_reads_the_terminal() {
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let py = common::python();
        let script = dir.path().join("later.py");
        std::fs::write(
            &script,
            "import time\ntime.sleep(1.5)\nx = input('ready? ')\nprint('done', x)\n",
        )
        .unwrap();
        session(json!([
            [
                "send",
                format!("$D run {mode} -- {py} {} &\n", script.display())
            ],
            ["expect", "\\[1\\] \\d+", 10],
            ["send", "fg\n"],
            ["expect", "ready\\? ", 20],
            ["absent", "Stopped", 0.5],
            ["send", "yes\n"],
            ["expect", "done yes", 10],
            ["send", "echo rc=$?\n"],
            ["expect", "rc=0", 10],
        ]));
    }
}

/// In a pipeline (`doctor run -- CMD | cat`) the command stays in the pipeline's process group,
/// so it reads the terminal as it would without doctor, and the other members keep it too.
#[test]
fn in_a_pipeline_the_command_reads_the_terminal() {
    for mode in MODES {
        let py = common::python();
        session(json!([
            [
                "send",
                format!(
                    "$D run {mode} -- {py} -c 'x = input(\"name? \"); print(\"got\", x)' | cat; echo \"rc=${{PIPESTATUS[*]}}\"\n"
                )
            ],
            ["expect", "name\\? ", 20],
            ["send", "abc\n"],
            ["expect", "got abc", 10],
            ["expect", "rc=0 0", 10],
        ]));
    }
}
