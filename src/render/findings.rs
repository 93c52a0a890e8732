//! Findings as a person reads them, in one style for every command (runtime, cluster, static):
//!
//! ```text
//! error[D001] duplicate-init: message
//!  --> path:line:col          (when the finding has a location; scan adds the snippet)
//!   = fix: what to do
//! ```

use serde_json::Value;

use crate::model::finding::{Finding, Rule, Severity};
use crate::render::value_text as s;

pub use crate::model::style::{fix_lines, heading, location_line};

/// Runtime findings as a person reads them: heading and fix, after a blank line.
pub fn render_findings(findings: &[Finding], color: bool) -> String {
    let mut s = String::new();
    if findings.is_empty() {
        return s;
    }
    s.push('\n');
    for f in findings {
        s.push_str(&heading(
            f.severity,
            f.code.code(),
            f.code.name(),
            &f.message,
            color,
        ));
        if let Some(l) = &f.location {
            s.push_str(&location_line(
                1,
                &l.path,
                l.line as u64,
                l.column as u64,
                color,
            ));
        }
        s.push_str(&fix_lines(2, &f.fix, color));
    }
    s.push_str(&explain_text(findings.iter().map(|f| f.code)));
    s
}

/// The closing `see: \`doctor explain CODE\`` line of a findings block (empty without findings).
pub fn explain_text(codes: impl IntoIterator<Item = Rule>) -> String {
    crate::model::rule::explain_line(codes)
        .map(|l| format!("{l}\n"))
        .unwrap_or_default()
}

/// Findings from a document (merge, report) as a person reads them.
pub fn render_finding_values(findings: &[Value], color: bool, out: &mut String) {
    for f in findings {
        let sev = Severity::parse(f["severity"].as_str().unwrap_or("info"));
        let name = f["name"].as_str().unwrap_or("");
        out.push_str(&heading(
            sev,
            &s(&f["code"]),
            name,
            &s(&f["message"]),
            color,
        ));
        let loc = &f["location"];
        if loc.is_object() {
            out.push_str(&location_line(
                1,
                &s(&loc["path"]),
                loc["line"].as_u64().unwrap_or(0),
                loc["column"].as_u64().unwrap_or(0),
                color,
            ));
        }
        out.push_str(&fix_lines(2, &fix_text(&f["fix"]), color));
    }
}

/// The codes of findings in a document (merge, report), for [`explain_text`].
pub fn codes_of(findings: &[Value]) -> Vec<Rule> {
    findings
        .iter()
        .filter_map(|f| f["code"].as_str().and_then(Rule::from_code))
        .collect()
}

/// The fix's message, from the current shape (`{message, edits}`) or schema 1's string.
pub fn fix_text(fix: &Value) -> String {
    match fix {
        Value::Object(m) => m.get("message").map(s).unwrap_or_default(),
        other => s(other),
    }
}

/// Bring every `findings` array in a document to the one finding shape: `fix` as
/// `{message, edits}`, `pids`/`ports` present, `name`/`url` from the registry. Documents of
/// schema 1 (reports merged from older nodes) come out like new ones.
pub fn normalize_findings(doc: &mut Value) {
    match doc {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if k == "findings"
                    && let Value::Array(items) = v
                {
                    items.iter_mut().for_each(normalize_one);
                }
                normalize_findings(v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalize_findings),
        _ => {}
    }
}

fn normalize_one(f: &mut Value) {
    let Value::Object(m) = f else { return };
    if !m.contains_key("code") {
        return;
    }
    if let Some(fix) = m.get("fix")
        && !fix.is_object()
    {
        let message = s(fix);
        m.insert(
            "fix".into(),
            serde_json::json!({"message": message, "edits": []}),
        );
    }
    m.entry("fix")
        .or_insert_with(|| serde_json::json!({"message": "", "edits": []}));
    m.entry("pids").or_insert_with(|| Value::Array(Vec::new()));
    m.entry("ports").or_insert_with(|| Value::Array(Vec::new()));
    let entry = m
        .get("code")
        .and_then(Value::as_str)
        .and_then(Rule::from_code);
    if let Some(e) = entry {
        m.entry("name").or_insert_with(|| e.name().into());
        // The page's address now, also for reports whose doctor wrote a checkout path.
        m.insert("url".into(), e.url().into());
    }
}
