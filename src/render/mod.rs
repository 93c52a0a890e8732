//! Rendering helpers shared by every subcommand: formats, errors with hints, colour, stdout.

use std::collections::BTreeSet;
use std::io::{IsTerminal, Write};

use serde::Serialize;

use crate::model::snapshot::Snapshot;

pub mod explain;
pub mod findings;
pub mod grid;
pub mod merge;
pub mod progress;
pub mod redact;
pub mod report;
pub mod repro;
pub mod run;
pub mod table;
pub mod tree;

pub use crate::model::time::{age, utc};

/// `--format` for the commands whose documents are tables, JSON or YAML (its command-line
/// spelling is `cmd::args`: no clap below cmd).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Yaml,
}

/// `--format` for documents that are only data (snapshots, run records): no table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DocFormat {
    Json,
    Yaml,
}

impl DocFormat {
    pub fn format(self) -> Format {
        match self {
            DocFormat::Json => Format::Json,
            DocFormat::Yaml => Format::Yaml,
        }
    }

    /// From a file name: `.json` is JSON, anything else YAML.
    pub fn of_path(path: &std::path::Path) -> DocFormat {
        if path.extension().is_some_and(|e| e == "json") {
            DocFormat::Json
        } else {
            DocFormat::Yaml
        }
    }
}

/// Serialise a document as JSON or YAML (table rendering is each command's own).
pub fn document<T: Serialize>(doc: &T, format: Format) -> anyhow::Result<String> {
    Ok(match format {
        Format::Json => {
            let mut s = json_ascii_controls(serde_json::to_string_pretty(doc)?);
            s.push('\n');
            s
        }
        Format::Yaml => serde_yaml::to_string(doc)?,
        Format::Table => unreachable!("tables are rendered by the command"),
    })
}

/// JSON escapes C0 controls itself; DEL and the C1 controls (U+0080-U+009F, e.g. the one-byte
/// CSI) it writes raw, so they are escaped here (`\u009b`); they only occur inside strings.
fn json_ascii_controls(s: String) -> String {
    if !s
        .chars()
        .any(|c| c == '\u{7f}' || ('\u{80}'..='\u{9f}').contains(&c))
    {
        return s;
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if c == '\u{7f}' || ('\u{80}'..='\u{9f}').contains(&c) {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

static STDOUT_CLOSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Write to stdout. A closed pipe (`doctor ports | head -1`) is recorded and the rest of the
/// output dropped; the command still ends with its own exit code (0/1/2 keep their meaning).
pub fn print(text: &str) {
    use std::sync::atomic::Ordering;
    if STDOUT_CLOSED.load(Ordering::SeqCst) {
        return;
    }
    let mut out = std::io::stdout().lock();
    let res = out.write_all(text.as_bytes()).and_then(|_| out.flush());
    if let Err(e) = res {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            STDOUT_CLOSED.store(true, Ordering::SeqCst);
            return;
        }
        eprintln!("error: cannot write to stdout: {e}");
        eprintln!("hint: write to a file or pipe with room (`doctor ... > out.txt`)");
        std::process::exit(2);
    }
}

/// `--color`: when to use colour.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ColorChoice {
    /// On a terminal, unless NO_COLOR is set; FORCE_COLOR or CLICOLOR_FORCE force it
    /// (`cmd::args` shows this line in `--help`).
    #[default]
    Auto,
    Always,
    Never,
}

/// The global flags every command honours (set once by `main`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Settings {
    /// `-q`: no notes, no progress, only the document and errors.
    pub quiet: bool,
    /// `-v` (repeatable): notes that rarely matter.
    pub verbose: u8,
    pub color: ColorChoice,
    /// `--show-secrets`: no redaction (local use only).
    pub show_secrets: bool,
}

static SETTINGS: std::sync::OnceLock<Settings> = std::sync::OnceLock::new();

/// Set the global flags; the first call wins.
pub fn configure(s: Settings) {
    let _ = SETTINGS.set(s);
}

pub fn settings() -> Settings {
    SETTINGS.get().copied().unwrap_or_default()
}

fn env_set(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| !v.is_empty() && v != "0")
}

/// Whether to colour a stream: `--color always/never` decide; with `auto`, `NO_COLOR` turns
/// colour off, `FORCE_COLOR` / `CLICOLOR_FORCE` turn it on, else only on a terminal.
pub fn color_enabled(stream_is_tty: bool) -> bool {
    color_decision(settings().color, stream_is_tty, env_set)
}

fn color_decision(choice: ColorChoice, tty: bool, env: impl Fn(&str) -> bool) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto if env("NO_COLOR") => false,
        ColorChoice::Auto if env("FORCE_COLOR") || env("CLICOLOR_FORCE") => true,
        ColorChoice::Auto => tty && std::env::var("TERM").map_or(true, |t| t != "dumb"),
    }
}

/// A note for people on stderr, left out with `-q`.
pub fn note(text: &str) {
    if !settings().quiet {
        eprintln!("{text}");
    }
}

pub fn stdout_color() -> bool {
    color_enabled(std::io::stdout().is_terminal())
}

pub fn stderr_color() -> bool {
    color_enabled(std::io::stderr().is_terminal())
}

pub use crate::model::style::{Paint, escape_control, paint};

/// Escape the control characters of every string (and key) of a document, before it is drawn as
/// text; JSON and YAML escape them themselves. Fixes keep their line breaks (they are multi-line
/// advice, drawn line by line); everything else is one line.
pub fn escape_document(value: &mut serde_json::Value) {
    escape_value(value, false);
}

fn escape_value(value: &mut serde_json::Value, multiline: bool) {
    use serde_json::Value;
    match value {
        Value::String(s) => {
            let escaped = if multiline {
                s.split('\n')
                    .map(|l| escape_control(l).into_owned())
                    .collect::<Vec<_>>()
                    .join("\n")
            } else {
                escape_control(s).into_owned()
            };
            if escaped != *s {
                *s = escaped;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| escape_value(v, multiline)),
        Value::Object(map) => {
            let entries = std::mem::take(map);
            for (k, mut v) in entries {
                escape_value(&mut v, multiline || k == "fix");
                map.insert(escape_control(&k).into_owned(), v);
            }
        }
        _ => {}
    }
}

/// A JSON value as a table cell: strings bare, null as `-`.
pub fn value_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".into(),
        other => other.to_string(),
    }
}

pub use crate::model::text::shorten;

/// The width to cut long cells to: only when stdout is a terminal (`COLUMNS` overrides its
/// size); piped output and documents keep every command line whole.
pub fn terminal_width() -> Option<usize> {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        return None;
    }
    if let Some(c) = std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()) {
        return Some(c);
    }
    terminal_size::terminal_size_of(std::io::stdout())
        .map(|(terminal_size::Width(w), _)| usize::from(w))
        .filter(|&w| w > 0)
}

/// `1 error, 2 warnings, 0 info` from a document's `summary` counts.
pub fn counts(summary: &serde_json::Value) -> String {
    let n = |k: &str| summary[k].as_u64().unwrap_or(0) as usize;
    format!(
        "{}, {}, {} info",
        plural(n("errors"), "error", "errors"),
        plural(n("warnings"), "warning", "warnings"),
        n("info")
    )
}

/// `1 process`, `2 processes`.
pub fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The note about processes doctor could not fully read. Processes that cannot matter (pid 1 of
/// a container, which refuses even root) are mentioned only with `-v`; nothing with `-q`.
pub fn permission_note(snap: &Snapshot) {
    if let Some(text) = permission_text(snap, settings().verbose) {
        note(&text);
    }
}

fn permission_text(snap: &Snapshot, verbose: u8) -> Option<String> {
    let denied: BTreeSet<i32> = snap
        .unreadable
        .iter()
        .filter(|u| u.reason == "permission denied")
        .map(|u| u.pid)
        .collect();
    let cannot_matter = |pid: &i32| *pid == 1 && snap.host.observer_uid == 0;
    if denied.is_empty() || (verbose == 0 && denied.iter().all(cannot_matter)) {
        return None;
    }
    Some(if snap.host.observer_uid == 0 {
        let list: Vec<String> = denied.iter().take(8).map(i32::to_string).collect();
        format!(
            "note: {} parts of /proc even to root (pid {}); their sockets or environment may be missing",
            plural(denied.len(), "process refused", "processes refused"),
            list.join(", ")
        )
    } else {
        format!(
            "note: {} not be fully read (their sockets or environment are hidden); run as root, \
             or with CAP_SYS_PTRACE in a container, to see them",
            plural(denied.len(), "process could", "processes could"),
        )
    })
}

/// An error as doctor prints it: `error:` and a `hint:` line (the error's own hint, or where to
/// look next), on stderr.
pub fn print_error(err: &anyhow::Error) {
    let color = stderr_color();
    let label = paint("error:", Paint::Red, color);
    // Every error and hint escaped here, once: a path given on the command line (`--python-base
    // $'/tmp/a\e[31mb'`), a file name or an interpreter's own message may hold control characters.
    eprintln!("{label} {}", escape_control(&format!("{err:#}")));
    let hint = err
        .downcast_ref::<crate::error::UserError>()
        .and_then(|u| u.hint.as_deref())
        .unwrap_or("see `doctor --help` and the command's `--help`");
    let label = paint("hint:", Paint::Blue, color);
    eprintln!("{label} {}", escape_control(hint));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shorten_cuts_with_ellipsis() {
        assert_eq!(shorten("python train.py", 8), "python …");
        assert_eq!(shorten("short", 8), "short");
    }

    #[test]
    fn documents_are_escaped_but_fixes_keep_their_lines() {
        let mut v = serde_json::json!({"command": "a\nb\x1b", "fix": {"message": "x\n  y\x07"}});
        escape_document(&mut v);
        assert_eq!(v["command"], "a\\nb\\x1b");
        assert_eq!(v["fix"]["message"], "x\n  y\\x07");
    }

    #[test]
    fn json_has_no_raw_c1_controls() {
        let doc = serde_json::json!({"a": "x\u{9b}31m\u{7f}\u{1b}"});
        let text = document(&doc, Format::Json).unwrap();
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, doc);
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(
            escape_control("a\x1b[31mb\x07\nc\td\u{9b}"),
            "a\\x1b[31mb\\x07\\nc\\td\\u{9b}"
        );
        assert_eq!(escape_control("plain ünïcode"), "plain ünïcode");
    }

    #[test]
    fn color_follows_flag_and_environment() {
        let none = |_: &str| false;
        assert!(!color_decision(ColorChoice::Auto, false, none));
        assert!(color_decision(ColorChoice::Always, false, none));
        assert!(!color_decision(ColorChoice::Never, true, |_| true));
        assert!(color_decision(ColorChoice::Auto, false, |n| n == "FORCE_COLOR"));
        assert!(color_decision(ColorChoice::Auto, false, |n| n == "CLICOLOR_FORCE"));
        assert!(!color_decision(ColorChoice::Auto, true, |n| n != "FORCE_COLOR"));
    }

    #[test]
    fn pid_1_refusing_root_is_a_verbose_note() {
        let mut snap = Snapshot::default();
        snap.unreadable.push(crate::model::snapshot::Unreadable {
            pid: 1,
            what: "fd".into(),
            reason: "permission denied".into(),
        });
        assert_eq!(permission_text(&snap, 0), None);
        let v = permission_text(&snap, 1).expect("with -v");
        assert!(v.contains("1 process refused"), "{v}");
        snap.unreadable.push(crate::model::snapshot::Unreadable {
            pid: 77,
            what: "fd".into(),
            reason: "permission denied".into(),
        });
        let v = permission_text(&snap, 0).expect("pid 77 matters");
        assert!(v.contains("2 processes refused"), "{v}");
    }

    #[test]
    fn ages_read_well() {
        assert_eq!(age(5.0), "5s");
        assert_eq!(age(600.0), "10m");
        assert_eq!(age(3600.0 * 3.0 + 300.0), "3h05m");
        assert_eq!(age(86_400.0 * 2.0 + 3600.0 * 4.0), "2d04h");
    }
}
