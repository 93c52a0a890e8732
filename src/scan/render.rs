//! How scan results look: text for people, SARIF for dashboards, annotations for GitHub Actions.
//! (The JSON document is serialised directly from `ScanDocument`.)

use std::collections::HashMap;
use std::fmt::Write as _;

use serde_json::json;

use super::FileReport;
use super::diagnostic::{Diagnostic, RULES, Rule, Severity};
use crate::model::style::{self as findings, Paint, escape_control, paint};

/// rustc-style, the same as every doctor finding: `warning[S001] name: message`, ` --> path:line:col`,
/// the source line with a `^^^` marker, the related evidence as notes, and `= fix:`.
pub fn text(reports: &[FileReport], color: bool) -> String {
    let mut out = String::new();
    for report in reports {
        let source = report.source.as_deref().unwrap_or("");
        let lines: Vec<&str> = source.lines().collect();
        for d in &report.diagnostics {
            render_one(&mut out, d, &lines, color);
        }
    }
    out
}

fn render_one(out: &mut String, d: &Diagnostic, lines: &[&str], color: bool) {
    let sev_paint = match d.severity {
        Severity::Error => Paint::Red,
        Severity::Warning => Paint::Yellow,
        Severity::Info => Paint::Blue,
    };
    let width = d
        .related
        .iter()
        .map(|r| r.line)
        .chain([d.line])
        .max()
        .unwrap_or(1)
        .to_string()
        .len();
    let bar = paint("|", Paint::Blue, color);
    let pad = " ".repeat(width);
    out.push_str(&findings::heading(
        d.severity,
        d.code.code(),
        d.code.name(),
        &d.message,
        color,
    ));
    out.push_str(&findings::location_line(
        width,
        &d.path,
        d.line as u64,
        d.column as u64,
        color,
    ));
    snippet(
        out,
        lines,
        (d.line, d.column, d.end_line, d.end_column),
        "",
        sev_paint,
        width,
        color,
    );
    for r in &d.related {
        let _ = writeln!(out, "{pad} {bar}");
        let _ = writeln!(
            out,
            "{pad} = {} {}",
            paint("note:", Paint::Blue, color),
            escape_control(&r.message)
        );
        out.push_str(&findings::location_line(
            width,
            &d.path,
            r.line as u64,
            r.column as u64,
            color,
        ));
        snippet(
            out,
            lines,
            (r.line, r.column, r.end_line, r.end_column),
            "",
            Paint::Blue,
            width,
            color,
        );
    }
    let _ = writeln!(out, "{pad} {bar}");
    out.push_str(&findings::fix_lines(width + 1, &d.fix, color));
    out.push('\n');
}

fn snippet(
    out: &mut String,
    lines: &[&str],
    (line, col, end_line, end_col): (usize, usize, usize, usize),
    label: &str,
    style: Paint,
    width: usize,
    color: bool,
) {
    let bar = paint("|", Paint::Blue, color);
    let pad = " ".repeat(width);
    let Some(text) = line.checked_sub(1).and_then(|i| lines.get(i)) else {
        return;
    };
    let text = text.replace('\t', " ");
    let len = text.chars().count();
    let start = col.saturating_sub(1).min(len);
    let carets = if end_line == line {
        end_col.saturating_sub(col)
    } else {
        len.saturating_sub(start)
    }
    .max(1);
    let (text, start, carets) = window(&text, start, carets);
    let _ = writeln!(out, "{pad} {bar}");
    let _ = writeln!(
        out,
        "{} {bar} {text}",
        paint(&format!("{line:>width$}"), Paint::Blue, color)
    );
    let marker = format!("{}{}", " ".repeat(start), "^".repeat(carets));
    let marker = if label.is_empty() {
        marker
    } else {
        format!("{marker} {label}")
    };
    let _ = writeln!(out, "{pad} {bar} {}", paint(&marker, style, color));
}

/// The widest snippet line shown; a longer line is cut around the marked column.
pub const SNIPPET_WIDTH: usize = 160;

/// Cut a source line to [`SNIPPET_WIDTH`] characters around `start` (with `…` where cut) and
/// escape its control characters; returns the text and the marker's start and length in it.
fn window(text: &str, start: usize, carets: usize) -> (String, usize, usize) {
    let chars: Vec<char> = text.chars().collect();
    let (mut lo, mut hi) = (0, chars.len());
    if chars.len() > SNIPPET_WIDTH {
        lo = start.saturating_sub(SNIPPET_WIDTH / 4);
        hi = (lo + SNIPPET_WIDTH).min(chars.len());
    }
    let mut out = String::new();
    let mut marker_at = start - lo;
    if lo > 0 {
        out.push('…');
        marker_at += 1;
    }
    // Escaped characters widen the line: count the width before the marker as printed.
    let mut shown_start = marker_at;
    for (i, c) in chars[lo..hi].iter().enumerate() {
        let e = escape_control(c.encode_utf8(&mut [0; 4])).into_owned();
        if i < start - lo {
            shown_start += e.chars().count() - 1;
        }
        out.push_str(&e);
    }
    if hi < chars.len() {
        out.push('…');
    }
    let carets = carets.min(hi.saturating_sub(start).max(1));
    (out, shown_start, carets)
}

/// `Found 2 problems (1 error, 1 warning) in 1 file.` and the number of files scanned.
pub fn summary(reports: &[FileReport]) -> String {
    let scanned = reports.iter().filter(|r| r.skipped.is_none()).count();
    let skipped = reports.len() - scanned;
    let all: Vec<&Diagnostic> = reports.iter().flat_map(|r| &r.diagnostics).collect();
    let files = reports.iter().filter(|r| !r.diagnostics.is_empty()).count();
    let count = |s: Severity| all.iter().filter(|d| d.severity == s).count();
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    let tail = format!(
        "{} scanned{}.",
        plural(scanned, "file"),
        if skipped > 0 {
            format!(", {skipped} skipped")
        } else {
            String::new()
        }
    );
    if all.is_empty() {
        return format!("No problems found: {tail}");
    }
    let mut parts = vec![
        plural(count(Severity::Error), "error"),
        plural(count(Severity::Warning), "warning"),
    ];
    if count(Severity::Info) > 0 {
        parts.push(format!("{} info", count(Severity::Info)));
    }
    format!(
        "Found {} ({}) in {}; {tail}",
        plural(all.len(), "problem"),
        parts.join(", "),
        plural(files, "file")
    )
}

fn sarif_level(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Info => "note",
    }
}

/// A relative URI reference for a path: `/` kept, every byte outside RFC 3986's unreserved
/// characters percent-encoded (spaces, `%`, `#`, `?`, newlines, non-ASCII).
fn uri(path: &str) -> String {
    if path == "<stdin>" {
        return "stdin".to_string();
    }
    let p = path.replace('\\', "/");
    let p = p.strip_prefix("./").unwrap_or(&p);
    let mut out = String::with_capacity(p.len());
    for b in p.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// SARIF 2.1.0 with rule metadata (serialised by the caller, as every JSON document).
pub fn sarif(diags: &[&Diagnostic]) -> serde_json::Value {
    let index: HashMap<Rule, usize> = RULES.iter().enumerate().map(|(i, r)| (r.code, i)).collect();
    let rules: Vec<_> = RULES
        .iter()
        .map(|r| {
            json!({
                "id": r.code,
                "name": r.code.name(),
                "shortDescription": { "text": r.code.summary() },
                "fullDescription": { "text": r.full },
                "help": { "text": format!("`doctor explain {}` prints the page. {}", r.code, r.full) },
                "helpUri": r.code.url(),
                "defaultConfiguration": { "level": sarif_level(r.code.severity()) },
            })
        })
        .collect();
    let region = |line: usize, col: usize, end_line: usize, end_col: usize| json!({ "startLine": line, "startColumn": col, "endLine": end_line, "endColumn": end_col });
    let results: Vec<_> = diags
        .iter()
        .map(|d| {
            let related: Vec<_> = d
                .related
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    json!({
                        "id": i,
                        "message": { "text": r.message },
                        "physicalLocation": {
                            "artifactLocation": { "uri": uri(&d.path) },
                            "region": region(r.line, r.column, r.end_line, r.end_column),
                        },
                    })
                })
                .collect();
            json!({
                "ruleId": d.code,
                "ruleIndex": index.get(&d.code).copied().unwrap_or(0),
                "level": sarif_level(d.severity),
                "message": { "text": format!("{}\nhelp: {}", d.message, d.fix) },
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": { "uri": uri(&d.path) },
                        "region": region(d.line, d.column, d.end_line, d.end_column),
                    }
                }],
                "relatedLocations": related,
            })
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "doctor",
                "fullName": "ddp-doctor scan",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            }},
            "results": results,
        }],
    })
}

fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// GitHub Actions workflow commands: `::error file=...,line=...,col=...,title=S001::message`.
pub fn github(diags: &[&Diagnostic]) -> String {
    let mut out = String::new();
    for d in diags {
        let kind = match d.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "notice",
        };
        let _ = writeln!(
            out,
            "::{kind} file={},line={},col={},endLine={},endColumn={},title={}::{}",
            escape_property(&d.path),
            d.line,
            d.column,
            d.end_line,
            d.end_column,
            escape_property(&format!("{} {}", d.code, d.code.name())),
            escape_data(&format!("{}\nhelp: {}", d.message, d.fix)),
        );
    }
    out
}
