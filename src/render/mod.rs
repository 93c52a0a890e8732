//! Rendering helpers shared by every subcommand: formats, errors with hints, colour, stdout.

use std::collections::BTreeSet;
use std::io::{IsTerminal, Write};

use serde::Serialize;

use crate::model::snapshot::Snapshot;

pub mod findings;
pub mod merge;
pub mod redact;
pub mod report;
pub mod table;
pub mod tree;

pub use crate::model::time::{age, utc};

/// `--format` for the commands whose documents are tables, JSON or YAML.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Yaml,
}

/// Serialise a document as JSON or YAML (table rendering is each command's own).
pub fn document<T: Serialize>(doc: &T, format: Format) -> anyhow::Result<String> {
    Ok(match format {
        Format::Json => {
            let mut s = serde_json::to_string_pretty(doc)?;
            s.push('\n');
            s
        }
        Format::Yaml => serde_yaml::to_string(doc)?,
        Format::Table => unreachable!("tables are rendered by the command"),
    })
}

/// Write to stdout; a closed pipe (`doctor ports | head -1`) ends the program quietly with 0.
pub fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    let res = out.write_all(text.as_bytes()).and_then(|_| out.flush());
    if let Err(e) = res {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to stdout: {e}");
        std::process::exit(2);
    }
}

/// Colours are used only on a terminal and never when `NO_COLOR` is set.
pub fn color_enabled(stream_is_tty: bool) -> bool {
    stream_is_tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

pub fn stdout_color() -> bool {
    color_enabled(std::io::stdout().is_terminal())
}

pub fn stderr_color() -> bool {
    color_enabled(std::io::stderr().is_terminal())
}

#[derive(Clone, Copy)]
pub enum Paint {
    Red,
    Yellow,
    Blue,
    Green,
    Bold,
}

pub fn paint(text: &str, style: Paint, enabled: bool) -> String {
    if !enabled {
        return text.to_string();
    }
    let code = match style {
        Paint::Red => "1;31",
        Paint::Yellow => "1;33",
        Paint::Blue => "1;34",
        Paint::Green => "1;32",
        Paint::Bold => "1",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

/// A JSON value as a table cell: strings bare, null as `-`.
pub fn value_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// Shorten `text` to at most `max` characters, ending with `…` when cut.
pub fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
    s.push('…');
    s
}

pub fn terminal_width() -> Option<usize> {
    if let Some(c) = std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()) {
        return Some(c);
    }
    terminal_size::terminal_size_of(std::io::stdout())
        .map(|(terminal_size::Width(w), _)| usize::from(w))
        .filter(|&w| w > 0)
}

pub fn permission_note(snap: &Snapshot) {
    let denied: BTreeSet<i32> = snap
        .unreadable
        .iter()
        .filter(|u| u.reason == "permission denied")
        .map(|u| u.pid)
        .collect();
    if denied.is_empty() {
        return;
    }
    if snap.host.observer_uid == 0 {
        let list: Vec<String> = denied.iter().take(8).map(i32::to_string).collect();
        eprintln!(
            "note: {} processes refused parts of /proc even to root (pid {}); their sockets or environment may be missing",
            denied.len(),
            list.join(", ")
        );
    } else {
        eprintln!(
            "note: {} processes could not be fully read (their sockets or environment are hidden); run as root, \
             or with CAP_SYS_PTRACE in a container, to see them",
            denied.len()
        );
    }
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
    fn ages_read_well() {
        assert_eq!(age(5.0), "5s");
        assert_eq!(age(600.0), "10m");
        assert_eq!(age(3600.0 * 3.0 + 300.0), "3h05m");
        assert_eq!(age(86_400.0 * 2.0 + 3600.0 * 4.0), "2d04h");
    }
}
