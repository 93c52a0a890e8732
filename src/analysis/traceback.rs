//! Reading what a training run printed: rendezvous bind failures, the user-script frame that
//! re-ran the launch, the first meaningful error line, and `DOCTOR_RESULT` lines.
//! Pure functions over text, so they are tested on saved output.

use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;

pub use crate::model::repro::RankResult;

/// A failure to bind the rendezvous port.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct BindFailure {
    /// The port named in the message; None for the oldest message, which names none.
    pub port: Option<u16>,
    /// The message line as printed.
    pub message: String,
}

/// A frame `File "PATH", line N, in FUNC`, with the source line printed under it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Frame {
    pub file: String,
    pub line: u32,
    pub function: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// One traceback: its frames and the exception line that ends it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Traceback {
    pub frames: Vec<Frame>,
    pub error: String,
    /// Started through `multiprocessing` spawn/forkserver re-running the main module.
    pub via_spawn: bool,
    /// The first user-code `<module>` frame below the spawn machinery (the line that ran
    /// again), else the last user-code frame.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_frame: Option<Frame>,
}

/// What `doctor run` reads from a command's output.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct OutputFacts {
    pub bind_errors: Vec<BindFailure>,
    /// `DataLoader worker (pid N) exited unexpectedly`.
    pub dead_workers: Vec<i32>,
    pub tracebacks: Vec<Traceback>,
}

impl Frame {
    pub fn location(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }
}

static RANK_PREFIX: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\s*\[(?:rank|default)\d+\]:\s?").expect("regex"));
static FRAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"^\s*File "([^"]+)", line (\d+), in (\S+)"#).expect("regex"));
// torch >= 2.4: "... failed to listen on any local network address. port: 33281, ... EADDRINUSE"
static LISTEN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"failed to listen on any local network address\.\s*port: (\d+).*EADDRINUSE")
        .expect("regex")
});
// torch 1.11 - 2.3: "The server socket has failed to bind to [::]:29500 (errno: 98 - Address already in use)"
static BIND: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"failed to bind to \S*?:(\d+) \(errno: 98 - Address already in use\)")
        .expect("regex")
});
// before 1.11: "RuntimeError: Address already in use"
static OLD: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"RuntimeError: Address already in use").expect("regex"));
static WORKER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"DataLoader worker \(pid(?:\(s\))? ([\d, ]+)\) exited unexpectedly").expect("regex")
});
static EXC: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^([A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Warning)|[A-Za-z_][\w.]*\.[A-Z]\w*)(: .*)?$")
        .expect("regex")
});

/// Remove torch's `[rank0]: ` prefixes.
pub fn strip_rank(line: &str) -> &str {
    match RANK_PREFIX.find(line) {
        Some(m) => &line[m.end()..],
        None => line,
    }
}

/// Every `DOCTOR_RESULT` line, in order.
/// Lines of several ranks may run together when a script prints with separate writes;
/// every `DOCTOR_RESULT {json}` is read wherever it starts.
pub fn results(log: &str) -> Vec<RankResult> {
    const KEY: &str = "DOCTOR_RESULT ";
    let mut out = Vec::new();
    for line in log.lines() {
        let mut rest = strip_rank(line);
        while let Some(at) = rest.find(KEY) {
            rest = &rest[at + KEY.len()..];
            let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<RankResult>();
            if let Some(Ok(r)) = stream.next() {
                out.push(r);
                rest = &rest[stream.byte_offset()..];
            }
        }
    }
    out
}

/// Every rendezvous bind failure, in any of the three torch wordings.
pub fn bind_failures(log: &str) -> Vec<BindFailure> {
    log.lines()
        .filter_map(|line| bind_failure_in(strip_rank(line).trim()))
        .collect()
}

/// The first rendezvous bind failure.
pub fn bind_failure(log: &str) -> Option<BindFailure> {
    log.lines()
        .find_map(|line| bind_failure_in(strip_rank(line).trim()))
}

fn bind_failure_in(l: &str) -> Option<BindFailure> {
    if let Some(c) = LISTEN.captures(l).or_else(|| BIND.captures(l)) {
        return Some(BindFailure {
            port: c.get(1).and_then(|m| m.as_str().parse().ok()),
            message: l.to_string(),
        });
    }
    OLD.is_match(l).then(|| BindFailure {
        port: None,
        message: l.to_string(),
    })
}

fn is_bind_failure(l: &str) -> bool {
    LISTEN.is_match(l) || BIND.is_match(l) || OLD.is_match(l)
}

fn is_library(file: &str) -> bool {
    !is_user_code(file)
}

/// A frame of the user's code: not the interpreter's or a package's, and not a launcher's entry
/// point (the `bin/torchrun`, `bin/accelerate` wrappers pip writes: no `.py`, in a `bin` folder).
pub fn is_user_code(file: &str) -> bool {
    !is_library_path(file) && !is_console_script(file)
}

fn is_console_script(file: &str) -> bool {
    let path = std::path::Path::new(file);
    let in_bin = path
        .parent()
        .and_then(|d| d.file_name())
        .is_some_and(|d| d == "bin" || d == "Scripts");
    in_bin && path.extension().is_none_or(|e| e != "py")
}

fn is_library_path(file: &str) -> bool {
    file.starts_with('<')
        || file.contains("/site-packages/")
        || file.contains("/dist-packages/")
        || file.contains("/multiprocessing/")
        || file.contains("/lib/python")
        || file.ends_with("/runpy.py")
}

/// The user-script frame that re-ran the launch in a child: the user frame of the traceback that
/// ends with the bind failure; when interleaved output hides which traceback that is, the
/// line a spawn/forkserver child re-ran in a log that has a bind failure.
pub fn relaunch_frame(log: &str) -> Option<Frame> {
    let tbs = tracebacks(log);
    tbs.iter()
        .find(|t| is_bind_failure(&t.error))
        .and_then(|t| t.user_frame.clone())
        .or_else(|| {
            bind_failure(log)?;
            tbs.into_iter()
                .find(|t| t.via_spawn && t.user_frame.is_some())
                .and_then(|t| t.user_frame)
        })
}

/// A line inside a traceback that another process printed: not an exception line, and the
/// traceback goes on after it (a frame or an indented source line follows).
fn is_interleaved(line: &str, next: Option<&str>) -> bool {
    let continues =
        next.is_some_and(|n| FRAME.is_match(n) || (n.starts_with("    ") && !n.trim().is_empty()));
    continues
        && !EXC.is_match(line)
        && !is_bind_failure(line)
        && !line.starts_with("During handling")
}

/// Every traceback in the output (torch's `[rank0]: ` prefixes removed).
pub fn tracebacks(log: &str) -> Vec<Traceback> {
    let lines: Vec<&str> = log.lines().map(strip_rank).collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i]
            .trim_start()
            .starts_with("Traceback (most recent call last)")
        {
            let (tb, next) = read_traceback(&lines, i + 1);
            out.push(tb);
            i = next;
        } else {
            i += 1;
        }
    }
    out
}

fn read_traceback(lines: &[&str], mut i: usize) -> (Traceback, usize) {
    let mut frames: Vec<Frame> = Vec::new();
    while i < lines.len() {
        let line = lines[i];
        if let Some(c) = FRAME.captures(line) {
            frames.push(Frame {
                file: c[1].to_string(),
                line: c[2].parse().unwrap_or(0),
                function: c[3].trim().to_string(),
                code: None,
            });
            i += 1;
            continue;
        }
        let trimmed = line.trim();
        let marker = !trimmed.is_empty() && trimmed.chars().all(|ch| matches!(ch, '^' | '~'));
        if line.starts_with("    ") || line.starts_with('\t') || marker {
            if let Some(f) = frames.last_mut().filter(|f| f.code.is_none() && !marker) {
                f.code = Some(trimmed.to_string());
            }
            i += 1;
            continue;
        }
        // Another process may print into the middle of a traceback (a C++ warning of torch, a
        // log line of another rank): a line that is not an exception line and is followed by
        // more of the traceback belongs to someone else.
        if is_interleaved(trimmed, lines.get(i + 1).copied()) {
            i += 1;
            continue;
        }
        break;
    }
    let error = lines
        .get(i)
        .map(|l| l.trim().to_string())
        .unwrap_or_default();
    let spawn_at = frames.iter().position(|f| {
        f.file.contains("multiprocessing/spawn.py")
            || f.file.contains("multiprocessing/forkserver.py")
    });
    let user_frame = spawn_at
        .and_then(|at| {
            frames[at..]
                .iter()
                .find(|f| f.function == "<module>" && !is_library(&f.file))
        })
        .or_else(|| frames.iter().rev().find(|f| !is_library(&f.file)))
        .cloned();
    // The error line is read again by the caller: it may start the next traceback's context.
    (
        Traceback {
            frames,
            error,
            via_spawn: spawn_at.is_some(),
            user_frame,
        },
        i,
    )
}

/// Pids from `DataLoader worker (pid N) exited unexpectedly` / `(pid(s) N, M)`.
pub fn dead_workers(log: &str) -> Vec<i32> {
    let mut pids: Vec<i32> = WORKER
        .captures_iter(log)
        .flat_map(|c| {
            c[1].split(',')
                .filter_map(|p| p.trim().parse::<i32>().ok())
                .collect::<Vec<_>>()
        })
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// Everything `doctor run` needs from the output.
pub fn read_output(log: &str) -> OutputFacts {
    OutputFacts {
        bind_errors: bind_failures(log),
        dead_workers: dead_workers(log),
        tracebacks: tracebacks(log),
    }
}

/// The first meaningful error line: the exception line that ends the first traceback, else the
/// first line that looks like an error, else None.
pub fn first_error(log: &str) -> Option<String> {
    let lines: Vec<&str> = log.lines().map(|l| strip_rank(l).trim_end()).collect();
    if let Some(start) = lines
        .iter()
        .position(|l| l.starts_with("Traceback (most recent call last)"))
    {
        // Other ranks' output may interleave with the traceback: the exception line is the one
        // shaped like `SomeError: ...`; only without one is the first unindented line taken.
        let unindented = lines[start + 1..].iter().filter(|l| {
            !(l.is_empty()
                || l.starts_with([' ', '\t', '^'])
                || l.starts_with("Traceback")
                || l.starts_with("During handling"))
        });
        let mut first = None;
        for l in unindented {
            if EXC.is_match(l.trim()) {
                return Some(l.to_string());
            }
            first.get_or_insert(*l);
        }
        if let Some(l) = first {
            return Some(l.to_string());
        }
    }
    lines
        .iter()
        .find(|l| EXC.is_match(l.trim()) || l.contains("Error:") || l.starts_with("error:"))
        .map(|l| l.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_error_skips_lines_of_other_ranks_inside_a_traceback() {
        let log = "Traceback (most recent call last):\n  File \"t.py\", line 3, in <module>\n\
                   Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2\n    fabric.launch()\n\
                   torch.distributed.DistNetworkError: The server socket has failed to listen\n";
        assert_eq!(
            first_error(log).as_deref(),
            Some("torch.distributed.DistNetworkError: The server socket has failed to listen")
        );
    }

    const SPAWN_LOG: &str = r#"Initializing distributed: GLOBAL_RANK: 0, MEMBER: 1/2
Traceback (most recent call last):
  File "<string>", line 1, in <module>
  File "/usr/lib/python3.11/multiprocessing/spawn.py", line 122, in spawn_main
    exitcode = _main(fd, parent_sentinel)
  File "/usr/lib/python3.11/multiprocessing/spawn.py", line 297, in _fixup_main_from_path
    main_content = runpy.run_path(main_path,
  File "<frozen runpy>", line 291, in run_path
  File "<frozen runpy>", line 88, in _run_code
  File "/tmp/x/fabric_buggy.py", line 30, in <module>
    fabric.launch()
  File "/venv/lib/python3.11/site-packages/lightning/fabric/fabric.py", line 1010, in launch
    return self._wrap_and_launch(function, self, *args, **kwargs)
  File "/venv/lib/python3.11/site-packages/torch/distributed/rendezvous.py", line 215, in _create_c10d_store
    return TCPStore(
torch.distributed.DistNetworkError: The server socket has failed to listen on any local network address. port: 33281, useIpv6: false, code: -98, name: EADDRINUSE, message: address already in use
[rank0]: Traceback (most recent call last):
[rank0]:   File "/tmp/x/fabric_buggy.py", line 76, in <module>
[rank0]: RuntimeError: DataLoader worker (pid(s) 123) exited unexpectedly
DOCTOR_RESULT {"rank": 1, "digest": "abc", "loss": 0.5, "world_size": 2}
"#;

    #[test]
    fn new_wording_gives_port_and_frame() {
        let b = bind_failure(SPAWN_LOG).unwrap();
        assert_eq!(b.port, Some(33281));
        let f = relaunch_frame(SPAWN_LOG).unwrap();
        assert_eq!(f.location(), "/tmp/x/fabric_buggy.py:30");
        assert_eq!(f.function, "<module>");
        assert!(
            first_error(SPAWN_LOG)
                .unwrap()
                .starts_with("torch.distributed.DistNetworkError: The server socket")
        );
    }

    #[test]
    fn frame_survives_lines_of_other_processes_inside_the_traceback() {
        // What a loaded machine prints: torch's C++ warnings of another rank's client and a log
        // line land between the frames of the worker's traceback.
        let mut lines: Vec<&str> = SPAWN_LOG.lines().collect();
        lines.insert(5, "[W1204 14:20:01.123 socket.cpp:755] The client socket has failed to connect to [localhost]:33281 (errno: 111 - Connection refused).");
        lines.insert(10, "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2");
        lines.insert(13, "Traceback (most recent call last):");
        let log = lines.join("\n");
        let f = relaunch_frame(&log).unwrap();
        assert_eq!(f.location(), "/tmp/x/fabric_buggy.py:30");
        assert_eq!(f.code.as_deref(), Some("fabric.launch()"));
        assert!(
            tracebacks(&log)
                .iter()
                .any(|t| t.error.contains("EADDRINUSE"))
        );
    }

    #[test]
    fn older_wordings_parse() {
        let mid = "RuntimeError: The server socket has failed to bind to [::]:29500 (errno: 98 - Address already in use).";
        assert_eq!(bind_failure(mid).unwrap().port, Some(29500));
        let mid4 = "The server socket has failed to bind to 0.0.0.0:29501 (errno: 98 - Address already in use)";
        assert_eq!(bind_failure(mid4).unwrap().port, Some(29501));
        let old = "Traceback (most recent call last):\n  File \"/a/train.py\", line 6, in <module>\n    dist.init_process_group('gloo')\nRuntimeError: Address already in use\n";
        let b = bind_failure(old).unwrap();
        assert_eq!(b.port, None);
        assert_eq!(relaunch_frame(old).unwrap().location(), "/a/train.py:6");
        assert_eq!(
            first_error(old).unwrap(),
            "RuntimeError: Address already in use"
        );
    }

    #[test]
    fn results_are_read_with_rank_prefixes() {
        let r = results(SPAWN_LOG);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].rank, 1);
        assert_eq!(r[0].digest, "abc");
        let r =
            results("[rank0]: DOCTOR_RESULT {\"rank\":0,\"digest\":\"d\"}\nDOCTOR_RESULT {broken");
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn no_failure_in_clean_output() {
        assert_eq!(bind_failure("all fine\nDOCTOR_RESULT {}"), None);
        assert_eq!(relaunch_frame("all fine"), None);
        assert_eq!(first_error("all fine"), None);
        assert_eq!(
            first_error("x\nValueError: bad\n").unwrap(),
            "ValueError: bad"
        );
    }

    #[test]
    fn tracebacks_give_code_lines_spawn_origin_and_dead_workers() {
        let tbs = tracebacks(SPAWN_LOG);
        assert_eq!(tbs.len(), 2);
        assert!(tbs[0].via_spawn);
        let f = tbs[0].user_frame.as_ref().unwrap();
        assert_eq!((f.line, f.code.as_deref()), (30, Some("fabric.launch()")));
        assert!(tbs[0].error.contains("EADDRINUSE"));
        assert!(!tbs[1].via_spawn);
        assert_eq!(dead_workers(SPAWN_LOG), vec![123]);
        assert_eq!(
            dead_workers(
                "RuntimeError: DataLoader worker (pid 77) exited unexpectedly with exit code 1."
            ),
            vec![77]
        );
        let facts = read_output(SPAWN_LOG);
        assert_eq!(facts.bind_errors.len(), 1);
        assert_eq!(facts.bind_errors[0].port, Some(33281));
    }
}
