//! The one look of a finding as text, shared by every command (`render/`) and by `scan`'s own
//! render (`scan/render.rs`): colour, control characters made visible, and the rustc-style
//! heading, location and fix lines:
//!
//! ```text
//! error[D001] duplicate-init: message
//!  --> path:line:col
//!   = fix: what to do
//! ```

use crate::model::finding::Severity;

#[derive(Clone, Copy)]
pub enum Paint {
    Red,
    Yellow,
    Blue,
    Green,
    Bold,
}

pub fn paint(text: &str, style: Paint, enabled: bool) -> String {
    use anstyle::{AnsiColor, Style};
    if !enabled {
        return text.to_string();
    }
    let bold = Style::new().bold();
    let style = match style {
        Paint::Red => bold.fg_color(Some(AnsiColor::Red.into())),
        Paint::Yellow => bold.fg_color(Some(AnsiColor::Yellow.into())),
        Paint::Blue => bold.fg_color(Some(AnsiColor::Blue.into())),
        Paint::Green => bold.fg_color(Some(AnsiColor::Green.into())),
        Paint::Bold => bold,
    };
    format!("{style}{text}{style:#}")
}

/// Control characters made visible, so text from processes and files (argv, comm, paths) can
/// never move the cursor, recolour, ring or forge lines: `\n`, `\t`, `\r`, `\x1b`, `\u{9b}`.
pub fn escape_control(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x80 && c.is_control() => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// `error[D001] name: message` with the severity coloured.
pub fn heading(severity: Severity, code: &str, name: &str, message: &str, color: bool) -> String {
    let sev = match severity {
        Severity::Error => paint("error", Paint::Red, color),
        Severity::Warning => paint("warning", Paint::Yellow, color),
        Severity::Info => paint("info", Paint::Blue, color),
    };
    let name = if name.is_empty() {
        String::new()
    } else {
        format!(" {}", escape_control(name))
    };
    format!(
        "{sev}[{}]{name}: {}\n",
        escape_control(code),
        escape_control(message)
    )
}

/// ` --> path:line:col` (indented by `pad` spaces).
pub fn location_line(pad: usize, path: &str, line: u64, column: u64, color: bool) -> String {
    format!(
        "{}{} {}:{line}:{column}\n",
        " ".repeat(pad),
        paint("-->", Paint::Blue, color),
        escape_control(path)
    )
}

/// `  = fix: ...`, later lines of the fix indented under it.
pub fn fix_lines(pad: usize, fix: &str, color: bool) -> String {
    let mut out = String::new();
    let mut lines = fix.lines();
    let pad = " ".repeat(pad);
    if let Some(first) = lines.next() {
        out.push_str(&format!(
            "{pad}= {} {}\n",
            paint("fix:", Paint::Green, color),
            escape_control(first)
        ));
    }
    for l in lines {
        let line = format!("{pad}  {}", escape_control(l));
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
