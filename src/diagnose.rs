//! Reading a training command's output: the rendezvous error texts of every torch version, the
//! traceback frames that lead through multiprocessing into the user's script, and DataLoader
//! worker deaths. Pure text in, facts out.

use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct OutputFacts {
    /// Bind failures found in the output, in order.
    pub bind_errors: Vec<BindError>,
    /// `DataLoader worker (pid N) exited unexpectedly`.
    pub dead_workers: Vec<i32>,
    pub tracebacks: Vec<Traceback>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct BindError {
    pub line: String,
    pub port: Option<u16>,
    /// Which wording: `torch>=2.4`, `torch 1.11-2.3`, `torch<1.11`.
    pub form: &'static str,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Frame {
    pub file: String,
    pub line: u32,
    pub function: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Traceback {
    pub frames: Vec<Frame>,
    /// The exception line that ends it.
    pub error: String,
    /// Started through `multiprocessing` spawn/forkserver re-running the main module.
    pub via_spawn: bool,
    /// The first frame in user code below the spawn machinery: the line that ran again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_frame: Option<Frame>,
}

static NEW_FORM: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"failed to listen on any local network address\.?\s*(?:port:\s*(\d+))?.*?(?:EADDRINUSE|address already in use)")
        .expect("regex")
});
static MID_FORM: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"server socket has failed to bind to \S*?:(\d+) \(errno: 98").expect("regex")
});
static OLD_FORM: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"RuntimeError: Address already in use").expect("regex"));
static FRAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"^\s*File "([^"]+)", line (\d+), in (.+)$"#).expect("regex"));
static WORKER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"DataLoader worker \(pid\(?s?\)? ?(\d+)\)? exited unexpectedly").expect("regex")
});
static WORKER_PIDS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"DataLoader worker \(pid\(s\) ([\d, ]+)\) exited unexpectedly").expect("regex")
});

/// Frames of the multiprocessing machinery and of installed libraries are not the user's.
fn is_library(file: &str) -> bool {
    file.contains("/site-packages/")
        || file.contains("/dist-packages/")
        || file.contains("/lib/python3")
        || file.starts_with('<')
}

pub fn read_output(text: &str) -> OutputFacts {
    let mut facts = OutputFacts::default();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if let Some(c) = NEW_FORM.captures(line) {
            facts.bind_errors.push(BindError {
                line: line.trim().to_string(),
                port: c.get(1).and_then(|m| m.as_str().parse().ok()),
                form: "torch>=2.4",
            });
        } else if let Some(c) = MID_FORM.captures(line) {
            facts.bind_errors.push(BindError {
                line: line.trim().to_string(),
                port: c.get(1).and_then(|m| m.as_str().parse().ok()),
                form: "torch 1.11-2.3",
            });
        } else if OLD_FORM.is_match(line) {
            facts.bind_errors.push(BindError {
                line: line.trim().to_string(),
                port: None,
                form: "torch<1.11",
            });
        }
        if let Some(c) = WORKER_PIDS.captures(line) {
            facts
                .dead_workers
                .extend(c[1].split(',').filter_map(|p| p.trim().parse::<i32>().ok()));
        } else if let Some(c) = WORKER.captures(line) {
            facts.dead_workers.extend(c[1].parse::<i32>().ok());
        }
        if line
            .trim_start()
            .starts_with("Traceback (most recent call last):")
        {
            let (tb, next) = read_traceback(&lines, i + 1);
            facts.tracebacks.push(tb);
            i = next;
            continue;
        }
        i += 1;
    }
    facts.dead_workers.sort_unstable();
    facts.dead_workers.dedup();
    facts
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
        let indented = line.starts_with("    ") || line.starts_with('\t');
        let marker = line.trim().chars().all(|ch| matches!(ch, '^' | '~' | ' '));
        if indented || marker && !line.trim().is_empty() {
            if let Some(f) = frames.last_mut().filter(|f| f.code.is_none() && !marker) {
                f.code = Some(line.trim().to_string());
            }
            i += 1;
            continue;
        }
        break;
    }
    let error = lines
        .get(i)
        .map(|l| l.trim().to_string())
        .unwrap_or_default();
    let via_spawn = frames.iter().any(|f| {
        (f.file.ends_with("multiprocessing/spawn.py")
            || f.file.ends_with("multiprocessing/forkserver.py"))
            && matches!(
                f.function.as_str(),
                "spawn_main" | "_main" | "prepare" | "_fixup_main_from_path" | "main"
            )
    });
    // Below runpy (the re-run of the main module), the first frame of user code.
    let after_runpy = frames
        .iter()
        .rposition(|f| f.file.ends_with("runpy.py"))
        .map_or(0, |p| p + 1);
    let user_frame = frames[after_runpy..]
        .iter()
        .find(|f| !is_library(&f.file))
        .cloned();
    // The error line is read again by the caller: it may be a bind error.
    (
        Traceback {
            frames,
            error,
            via_spawn,
            user_frame,
        },
        i,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPAWN_TB: &str = r#"Traceback (most recent call last):
  File "<string>", line 1, in <module>
  File "/usr/lib/python3.11/multiprocessing/spawn.py", line 122, in spawn_main
    exitcode = _main(fd, parent_sentinel)
               ^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/usr/lib/python3.11/multiprocessing/spawn.py", line 131, in _main
    prepare(preparation_data)
  File "/usr/lib/python3.11/multiprocessing/spawn.py", line 246, in prepare
    _fixup_main_from_path(data['init_main_from_path'])
  File "/usr/lib/python3.11/multiprocessing/spawn.py", line 297, in _fixup_main_from_path
    main_content = runpy.run_path(main_path,
  File "<frozen runpy>", line 291, in run_path
  File "<frozen runpy>", line 98, in _run_module_code
  File "<frozen runpy>", line 88, in _run_code
  File "/home/u/train.py", line 6, in <module>
    fabric.launch()
  File "/venv/lib/python3.11/site-packages/lightning/fabric/fabric.py", line 852, in launch
    return self._wrap_and_launch(function, self, *args, **kwargs)
torch.distributed.DistNetworkError: The server socket has failed to listen on any local network address. port: 33281, useIpv6: false, code: -98, name: EADDRINUSE, message: address already in use
Traceback (most recent call last):
  File "/home/u/train.py", line 20, in <module>
    for batch in loader:
RuntimeError: DataLoader worker (pid(s) 4242) exited unexpectedly
"#;

    #[test]
    fn reads_spawn_traceback_and_new_error_text() {
        let f = read_output(SPAWN_TB);
        assert_eq!(f.bind_errors.len(), 1);
        assert_eq!(f.bind_errors[0].port, Some(33281));
        assert_eq!(f.bind_errors[0].form, "torch>=2.4");
        assert_eq!(f.tracebacks.len(), 2);
        let tb = &f.tracebacks[0];
        assert!(tb.via_spawn);
        let uf = tb.user_frame.as_ref().unwrap();
        assert_eq!(
            (uf.file.as_str(), uf.line, uf.code.as_deref()),
            ("/home/u/train.py", 6, Some("fabric.launch()"))
        );
        assert!(tb.error.contains("EADDRINUSE"));
        assert!(!f.tracebacks[1].via_spawn);
        assert_eq!(f.dead_workers, vec![4242]);
    }

    #[test]
    fn reads_older_error_texts() {
        let f = read_output(
            "RuntimeError: The server socket has failed to bind to [::]:29500 (errno: 98 - Address already in use).\nRuntimeError: Address already in use\nRuntimeError: DataLoader worker (pid 77) exited unexpectedly with exit code 1.\n",
        );
        assert_eq!(f.bind_errors.len(), 2);
        assert_eq!(f.bind_errors[0].port, Some(29500));
        assert_eq!(f.bind_errors[0].form, "torch 1.11-2.3");
        assert_eq!(f.bind_errors[1].form, "torch<1.11");
        assert_eq!(f.dead_workers, vec![77]);
    }
}
