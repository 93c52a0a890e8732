//! The one way doctor runs a helper program with a time limit (`nvidia-smi`, `py-spy dump`, an
//! interpreter probe): in a process group of its own, stdout and stderr read while it runs (a
//! program that prints more than a pipe holds never stalls), and the whole group killed when
//! the time is up or when the program ends, so nothing it started is left behind.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A program that ran to its end within its time.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Why a program gave no [`Finished`].
#[derive(Debug)]
pub enum Failure {
    /// It could not be started (not found, not executable, ...).
    Start(std::io::Error),
    /// It was still running at the limit; its whole process group was killed.
    TimedOut(Duration),
    /// Waiting for it failed.
    Wait(std::io::Error),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Start(e) | Failure::Wait(e) => write!(f, "{e}"),
            Failure::TimedOut(limit) => write!(f, "timed out after {}s", limit.as_secs_f64()),
        }
    }
}

/// How long the output pipes may stay open after the group is killed: only a process that
/// left the group (`setsid`) still holds them then, and doctor does not wait for it.
const PIPE_GRACE: Duration = Duration::from_millis(500);

/// Run `cmd` (stdin from /dev/null) for at most `limit`.
pub fn run(cmd: &mut Command, limit: Duration) -> Result<Finished, Failure> {
    use std::os::unix::process::CommandExt;
    let deadline = Instant::now() + limit;
    let mut child = cmd
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(Failure::Start)?;
    let (done_tx, done_rx) = mpsc::channel();
    let stdout = drain(child.stdout.take(), done_tx.clone());
    let stderr = drain(child.stderr.take(), done_tx);
    let exited = exited_by(&child, deadline);
    // The leader is not reaped yet, so its pid still names this group: the signal reaches its
    // members only (a helper it left running, or all of them at the limit).
    kill_group(child.id());
    let status = child.wait().map_err(Failure::Wait)?;
    let until = Instant::now() + PIPE_GRACE;
    for _ in 0..2 {
        let left = until.saturating_duration_since(Instant::now());
        if done_rx.recv_timeout(left).is_err() {
            break;
        }
    }
    if !exited {
        return Err(Failure::TimedOut(limit));
    }
    Ok(Finished {
        status,
        stdout: take(&stdout),
        stderr: take(&stderr),
    })
}

/// Run `cmd`; its stdout when it exits 0, else a short reason (the timeout, or the exit status
/// and the last line it printed on stderr).
pub fn stdout_text(cmd: &mut Command, limit: Duration) -> Result<String, String> {
    let done = run(cmd, limit).map_err(|e| e.to_string())?;
    if done.status.success() {
        return Ok(String::from_utf8_lossy(&done.stdout).into_owned());
    }
    let err = String::from_utf8_lossy(&done.stderr);
    let last = err
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    Err(format!("exited with {}: {}", done.status, last.trim()))
}

/// What a reader collected so far.
fn take(buf: &Arc<Mutex<Vec<u8>>>) -> Vec<u8> {
    buf.lock()
        .map(|mut v| std::mem::take(&mut *v))
        .unwrap_or_default()
}

/// Read a pipe to its end on a thread of its own, into a buffer the caller keeps (what was read
/// is kept even when the pipe never closes); `done` is told at the end.
fn drain(pipe: Option<impl Read + Send + 'static>, done: mpsc::Sender<()>) -> Arc<Mutex<Vec<u8>>> {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let out = Arc::clone(&buf);
    std::thread::spawn(move || {
        if let Some(mut pipe) = pipe {
            let mut chunk = [0u8; 64 * 1024];
            loop {
                match pipe.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => match out.lock() {
                        Ok(mut v) => v.extend_from_slice(&chunk[..n]),
                        Err(_) => break,
                    },
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        }
        let _ = done.send(());
    });
    buf
}

/// Whether the child exited before `deadline`, without reaping it: a pidfd polled for its
/// exit (Linux 5.3+), else `waitid(WNOWAIT)` every few milliseconds.
fn exited_by(child: &Child, deadline: Instant) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let pid = child.id() as i32;
    let Some(pidfd) = rustix::process::Pid::from_raw(pid)
        .and_then(|p| rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok())
    else {
        return exited_by_polling(pid, deadline);
    };
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let timeout = Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: i64::from(left.subsec_nanos()),
        };
        let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
        match poll(&mut fds, Some(&timeout)) {
            Ok(0) => {}
            Ok(_) => return true,
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => return exited_by_polling(pid, deadline),
        }
    }
}

fn exited_by_polling(pid: i32, deadline: Instant) -> bool {
    use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    loop {
        match waitid(Id::Pid(nix::unistd::Pid::from_raw(pid)), flags) {
            Ok(WaitStatus::StillAlive) => {}
            Ok(_) => return true,
            Err(nix::errno::Errno::EINTR) => {}
            // Not our child any more (cannot happen before we reap it): nothing to wait for.
            Err(_) => return true,
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// SIGKILL to the process group led by `pid`.
fn kill_group(pid: u32) {
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        cmd
    }

    use crate::sys::test_procs as procs;

    /// Gone within 5 s; killed by pid (what this test started) when not, so nothing is left.
    fn wait_gone(pid: i32) -> bool {
        if procs::wait_gone(pid, Duration::from_secs(5)) {
            return true;
        }
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        false
    }

    #[test]
    fn output_beyond_a_pipe_is_read_whole_while_it_runs() {
        // 3 MiB on stdout and 1 MiB on stderr at once: a helper that reads only after the
        // exit stalls on the first 64 KiB until its timeout.
        for (out, err) in [
            (3 << 20, 1 << 20),
            (1 << 20, 0),
            (0, 1 << 20),
            (65_537, 65_537),
        ] {
            let script = format!(
                "head -c {out} /dev/zero | tr '\\0' a; head -c {err} /dev/zero | tr '\\0' b >&2"
            );
            let started = Instant::now();
            let done = run(&mut sh(&script), Duration::from_secs(60)).unwrap();
            assert!(done.status.success());
            assert_eq!(done.stdout.len(), out);
            assert_eq!(done.stderr.len(), err);
            assert!(done.stdout.iter().all(|&b| b == b'a'));
            assert!(done.stderr.iter().all(|&b| b == b'b'));
            // Not a timing claim: only that the limit was not what ended it.
            assert!(started.elapsed() < Duration::from_secs(60));
        }
    }

    #[test]
    fn a_timed_out_command_and_its_children_are_killed() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let script = format!(
            "sleep 300 & echo $! > {}; head -c 200000 /dev/zero; wait",
            pidfile.display()
        );
        let res = run(&mut sh(&script), Duration::from_millis(500));
        assert!(matches!(res, Err(Failure::TimedOut(_))), "{:?}", res.err());
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(wait_gone(pid), "the sleep {pid} outlived the timeout");
    }

    #[test]
    fn a_helper_left_running_by_a_finished_command_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        // The background sleep keeps stdout open: without the group kill this would wait for it.
        let script = format!("sleep 300 & echo $! > {}; echo done", pidfile.display());
        let done = run(&mut sh(&script), Duration::from_secs(60)).unwrap();
        assert_eq!(String::from_utf8_lossy(&done.stdout), "done\n");
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(wait_gone(pid), "the sleep {pid} outlived its command");
    }

    #[test]
    fn failures_say_why() {
        let e = stdout_text(
            &mut sh("echo out; echo 'the reason' >&2; exit 3"),
            Duration::from_secs(60),
        );
        assert_eq!(e.unwrap_err(), "exited with exit status: 3: the reason");
        let e = run(
            &mut Command::new("/nonexistent/doctor-test"),
            Duration::from_secs(1),
        );
        assert!(matches!(e, Err(Failure::Start(_))));
        assert_eq!(
            stdout_text(&mut sh("printf 'a\\nb'"), Duration::from_secs(60)).unwrap(),
            "a\nb"
        );
    }
}
