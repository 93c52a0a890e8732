//! Rendering helpers shared by every subcommand: formats, errors with hints, colour, stdout.

use std::collections::BTreeSet;
use std::io::{IsTerminal, Write};

use serde::Serialize;

use crate::model::snapshot::Snapshot;

pub mod findings;
pub mod redact;
pub mod run;
pub mod table;
pub mod tree;

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

/// A human age: `45s`, `12m`, `3h05m`, `2d04h`.
pub fn age(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    match s {
        0..=119 => format!("{s}s"),
        120..=3599 => format!("{}m", s / 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

pub fn terminal_width() -> Option<usize> {
    use std::io::IsTerminal;
    if let Some(c) = std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()) {
        return Some(c);
    }
    if !std::io::stdout().is_terminal() {
        return None;
    }
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes a winsize into the pointer we pass.
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0;
    (ok && ws.ws_col > 0).then_some(ws.ws_col as usize)
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

/// A UNIX time as an RFC 3339 UTC string.
pub fn utc(t: f64) -> String {
    let secs = t.max(0.0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
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
