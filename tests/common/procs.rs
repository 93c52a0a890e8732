//! Waiting on the state of processes instead of sleeping a fixed time: whether a pid is alive,
//! a wait until a condition holds, until a process is gone, until a signal sent to a process has
//! been taken (no longer pending). Standard library only: the unit tests in `src/` include this
//! file too (`#[path]`).

#![allow(dead_code)]

use std::time::{Duration, Instant};

/// The state letter of `/proc/PID/stat` (`R`, `S`, `T`, `Z`, ...), `None` when there is no such
/// process.
pub fn state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Whether `pid` runs: a zombie counts as gone (it holds no socket, no memory, nothing).
pub fn alive(pid: i32) -> bool {
    state(pid).is_some_and(|s| s != 'Z')
}

/// Check `cond` every 10 ms until it holds (true) or `limit` has passed (false, after one last
/// check).
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= until {
            return cond();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Wait until `pid` is gone (or a zombie), at most `limit`.
pub fn wait_gone(pid: i32, limit: Duration) -> bool {
    wait_until(limit, || !alive(pid))
}

/// Whether signal `sig` waits in `pid`'s pending sets (the process's shared one or any of its
/// threads'): a signal that is blocked and not read yet (doctor takes its signals through a
/// signalfd). An ignored signal is dropped when sent and is never pending.
pub fn signal_pending(pid: i32, sig: i32) -> bool {
    let bit = 1u64 << (sig - 1);
    let mask = |text: &str, key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(0)
    };
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().any(|t| {
        std::fs::read_to_string(t.path().join("status"))
            .is_ok_and(|s| (mask(&s, "ShdPnd:") | mask(&s, "SigPnd:")) & bit != 0)
    })
}

/// The pids whose parent is `pid` (one pass over `/proc/*/stat`).
pub fn children(pid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| {
            std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| {
                s.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<i32>().ok())
                    == Some(pid)
            })
        })
        .collect()
}

/// A thread of `pid` asleep in `waitpid`/`waitid` (kernel `do_wait`) and how often it has slept
/// so far (`voluntary_ctxt_switches`): once that count grows and the thread is back in
/// `do_wait`, it has woken for a child event and handled it.
pub fn waiting_thread(pid: i32) -> Option<(i32, u64)> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    tasks.flatten().find_map(|t| {
        let tid: i32 = t.file_name().to_str()?.parse().ok()?;
        in_wait(pid, tid).then_some(())?;
        Some((tid, switches(pid, tid)?))
    })
}

/// Whether thread `tid` of `pid` sleeps in `do_wait`.
pub fn in_wait(pid: i32, tid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/wchan")).is_ok_and(|w| w == "do_wait")
}

/// The `voluntary_ctxt_switches` of thread `tid` of `pid`.
pub fn switches(pid: i32, tid: i32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))?
        .trim()
        .parse()
        .ok()
}
