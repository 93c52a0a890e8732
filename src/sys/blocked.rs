//! What a live rank is blocked in: the kernel wait channel (`/proc/PID/wchan`), the system call
//! (`/proc/PID/syscall`), and the Python stack (`py-spy dump`, when py-spy is installed).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::model::snapshot::{Process, Snapshot};

/// How long one `py-spy dump` may take before doctor gives up on it.
const PY_SPY_TIMEOUT: Duration = Duration::from_secs(8);

/// Fill `wchan` and `syscall` (cheap reads).
pub fn annotate(p: &mut Process) {
    let pid = p.pid;
    annotate_with(p, &mut |name| crate::sys::proc::text(pid, name));
}

/// [`annotate`] through `read`, which gives the trimmed text of one of the process's own
/// `/proc/PID` files (the walk passes a reader on the directory it already holds open).
pub fn annotate_with(p: &mut Process, read: &mut crate::sys::proc::ReadText<'_>) {
    p.wchan = read(c"wchan").filter(|t| t != "0");
    p.syscall = read(c"syscall").and_then(|t| syscall_text(&t));
}

/// The system call in `/proc/PID/syscall` text, by name where known (`futex`, `accept4`, ...),
/// `running`, or `syscall N`. (`wchan` is `None` when unreadable, empty or `0`: running, or
/// hidden by the kernel.)
pub fn syscall_text(text: &str) -> Option<String> {
    let first = text.split_whitespace().next()?;
    if first == "running" {
        return Some("running".into());
    }
    let n: i64 = first.parse().ok()?;
    if n < 0 {
        return Some("not in a system call".into());
    }
    Some(
        syscall_name(n)
            .map(str::to_string)
            .unwrap_or_else(|| format!("syscall {n}")),
    )
}

#[cfg(target_arch = "x86_64")]
const SYSCALLS: &[(i64, &str)] = &[
    (0, "read"),
    (1, "write"),
    (7, "poll"),
    (23, "select"),
    (34, "pause"),
    (35, "nanosleep"),
    (42, "connect"),
    (43, "accept"),
    (45, "recvfrom"),
    (47, "recvmsg"),
    (61, "wait4"),
    (130, "rt_sigsuspend"),
    (202, "futex"),
    (230, "clock_nanosleep"),
    (232, "epoll_wait"),
    (247, "waitid"),
    (270, "pselect6"),
    (271, "ppoll"),
    (281, "epoll_pwait"),
    (288, "accept4"),
    (441, "epoll_pwait2"),
];

#[cfg(target_arch = "aarch64")]
const SYSCALLS: &[(i64, &str)] = &[
    (22, "epoll_pwait"),
    (63, "read"),
    (64, "write"),
    (72, "pselect6"),
    (73, "ppoll"),
    (95, "waitid"),
    (98, "futex"),
    (101, "nanosleep"),
    (115, "clock_nanosleep"),
    (133, "rt_sigsuspend"),
    (202, "accept"),
    (203, "connect"),
    (207, "recvfrom"),
    (212, "recvmsg"),
    (242, "accept4"),
    (260, "wait4"),
    (441, "epoll_pwait2"),
];

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const SYSCALLS: &[(i64, &str)] = &[];

fn syscall_name(n: i64) -> Option<&'static str> {
    SYSCALLS.iter().find(|(k, _)| *k == n).map(|(_, v)| *v)
}

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
            annotate(p);
            p.py_stack = py_stack(p).unwrap_or_default();
        });
}

/// `py-spy dump --nonblocking --pid PID`: the main thread's frames, innermost first.
pub fn py_stack(p: &Process) -> Option<Vec<String>> {
    let py_spy = find_py_spy(p)?;
    let mut child = Command::new(py_spy)
        .args(["dump", "--nonblocking", "--pid", &p.pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + PY_SPY_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
    let out = child.wait_with_output().ok()?;
    let frames = parse_dump(&String::from_utf8_lossy(&out.stdout));
    (!frames.is_empty()).then_some(frames)
}

/// py-spy on PATH, else next to the interpreter the process runs (a venv's `bin/`).
fn find_py_spy(p: &Process) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("py-spy"))
            .find(|c| c.is_file())
    });
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
            annotate(&mut p);
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
        assert_eq!(syscall_text("-1 0x0"), Some("not in a system call".into()));
        assert_eq!(syscall_text("running"), Some("running".into()));
    }
}
