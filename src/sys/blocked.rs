//! What a live rank is blocked in: the kernel wait channel and system call read again
//! ([`proc::wait_state`]), and the Python stack (`py-spy dump`, when py-spy is installed).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::model::snapshot::{Process, Snapshot};
use crate::sys::proc;

/// How long one `py-spy dump` may take before doctor gives up on it.
const PY_SPY_TIMEOUT: Duration = Duration::from_secs(8);

/// At most this many processes get a `py-spy dump` per run (they run in parallel).
const MAX_DUMPS: usize = 16;

/// Refresh `wchan`/`syscall` and read the Python stack of each of `pids` in `snap` (the first
/// [`MAX_DUMPS`] of them, in parallel).
pub fn inspect(snap: &mut Snapshot, pids: &[i32]) {
    use rayon::prelude::*;
    let wanted: Vec<i32> = pids.iter().copied().take(MAX_DUMPS).collect();
    snap.processes
        .par_iter_mut()
        .filter(|p| wanted.contains(&p.pid))
        .for_each(|p| {
            proc::wait_state(p);
            p.py_stack = py_stack(p).unwrap_or_default();
        });
}

/// `py-spy dump --nonblocking --pid PID`: the main thread's frames, innermost first.
pub fn py_stack(p: &Process) -> Option<Vec<String>> {
    let py_spy = find_py_spy(p)?;
    let mut cmd = Command::new(py_spy);
    cmd.args(["dump", "--nonblocking", "--pid", &p.pid.to_string()]);
    let out = super::command::run(&mut cmd, PY_SPY_TIMEOUT).ok()?;
    let frames = parse_dump(&String::from_utf8_lossy(&out.stdout));
    (!frames.is_empty()).then_some(frames)
}

/// py-spy on PATH, else next to the interpreter the process runs (a venv's `bin/`).
fn find_py_spy(p: &Process) -> Option<PathBuf> {
    let on_path = which::which("py-spy").ok();
    on_path.or_else(|| {
        let argv0 = Path::new(p.argv.first()?);
        let c = argv0.parent()?.join("py-spy");
        (argv0.is_absolute() && c.is_file()).then_some(c)
    })
}

/// The frames of the first thread in a `py-spy dump` (the main thread), innermost first.
pub fn parse_dump(text: &str) -> Vec<String> {
    let mut frames = Vec::new();
    let mut in_thread = false;
    for line in text.lines() {
        if line.starts_with("Thread ") {
            if in_thread {
                break;
            }
            in_thread = true;
            continue;
        }
        if in_thread && line.starts_with("    ") && !line.trim().is_empty() {
            frames.push(line.trim().to_string());
        }
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscall_of_a_sleeping_child() {
        let mut child = Command::new("sleep").arg("5").spawn().unwrap();
        let mut p = Process {
            pid: child.id() as i32,
            ..Process::default()
        };
        let mut seen = None;
        for _ in 0..100 {
            proc::wait_state(&mut p);
            seen = p.syscall.clone().zip(p.wchan.clone());
            if seen.as_ref().is_some_and(|(s, _)| s != "running") {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        let (sys, _) = seen.expect("syscall and wchan readable");
        assert!(sys.contains("sleep"), "{sys}");
    }

    #[test]
    fn parses_the_main_thread_of_a_dump() {
        let text = "Process 1: python t.py\nPython v3.11.2 (/usr/bin/python3.11)\n\n\
                    Thread 1 (idle): \"MainThread\"\n    wait (torch/x.py:10)\n    main (t.py:3)\n\
                    Thread 2 (idle): \"Other\"\n    run (y.py:1)\n";
        assert_eq!(
            parse_dump(text),
            vec!["wait (torch/x.py:10)", "main (t.py:3)"]
        );
    }
}
