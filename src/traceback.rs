//! Reading what a training run printed: rendezvous bind failures, the user-script frame that
//! re-ran the launch, the first meaningful error line, and `DOCTOR_RESULT` lines.
//! Pure functions over text, so they are tested on saved output.

use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// One rank's `DOCTOR_RESULT {...}` line.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RankResult {
    pub rank: i64,
    #[serde(default)]
    pub world_size: Option<i64>,
    #[serde(default)]
    pub loss: Option<f64>,
    pub digest: String,
}

/// A failure to bind the rendezvous port.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct BindFailure {
    /// The port named in the message; None for the oldest message, which names none.
    pub port: Option<u16>,
    /// The message line as printed.
    pub message: String,
}

/// A frame `File "PATH", line N, in FUNC`.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Frame {
    pub file: String,
    pub line: u32,
    pub function: String,
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

/// The first rendezvous bind failure, in any of the three torch wordings.
pub fn bind_failure(log: &str) -> Option<BindFailure> {
    for line in log.lines() {
        let l = strip_rank(line).trim();
        if let Some(c) = LISTEN.captures(l).or_else(|| BIND.captures(l)) {
            return Some(BindFailure {
                port: c.get(1).and_then(|m| m.as_str().parse().ok()),
                message: l.to_string(),
            });
        }
        if OLD.is_match(l) {
            return Some(BindFailure {
                port: None,
                message: l.to_string(),
            });
        }
    }
    None
}

fn is_library(file: &str) -> bool {
    file.starts_with('<')
        || file.contains("/site-packages/")
        || file.contains("/dist-packages/")
        || file.contains("/multiprocessing/")
        || file.contains("/lib/python")
        || file.ends_with("/runpy.py")
}

/// The user-script frame that re-ran the launch in a child: in the traceback that ends with the
/// bind failure, the first `<module>` frame of a non-library file after the
/// `multiprocessing/spawn.py` (or forkserver) frames. Falls back to the last user frame of
/// that traceback.
pub fn relaunch_frame(log: &str) -> Option<Frame> {
    let lines: Vec<&str> = log.lines().map(strip_rank).collect();
    let fail = lines
        .iter()
        .position(|l| LISTEN.is_match(l) || BIND.is_match(l) || OLD.is_match(l))?;
    let start = lines[..fail]
        .iter()
        .rposition(|l| l.starts_with("Traceback (most recent call last)"))?;
    let frames: Vec<Frame> = lines[start..fail]
        .iter()
        .filter_map(|l| FRAME.captures(l))
        .filter_map(|c| {
            Some(Frame {
                file: c.get(1)?.as_str().to_string(),
                line: c.get(2)?.as_str().parse().ok()?,
                function: c.get(3)?.as_str().to_string(),
            })
        })
        .collect();
    let after_mp = frames.iter().position(|f| {
        f.file.contains("multiprocessing/spawn.py")
            || f.file.contains("multiprocessing/forkserver.py")
    });
    if let Some(i) = after_mp
        && let Some(f) = frames[i..]
            .iter()
            .find(|f| f.function == "<module>" && !is_library(&f.file))
    {
        return Some(f.clone());
    }
    frames.iter().rev().find(|f| !is_library(&f.file)).cloned()
}

/// The first meaningful error line: the exception line that ends the first traceback, else the
/// first line that looks like an error, else None.
pub fn first_error(log: &str) -> Option<String> {
    let lines: Vec<&str> = log.lines().map(|l| strip_rank(l).trim_end()).collect();
    if let Some(start) = lines
        .iter()
        .position(|l| l.starts_with("Traceback (most recent call last)"))
    {
        for l in &lines[start + 1..] {
            if l.is_empty() || l.starts_with(' ') || l.starts_with('\t') || l.starts_with('^') {
                continue;
            }
            if l.starts_with("Traceback") || l.starts_with("During handling") {
                continue;
            }
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
}
