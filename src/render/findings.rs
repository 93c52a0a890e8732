//! Findings as a person reads them.

use serde_json::Value;

use crate::model::finding::{Finding, Severity};
use crate::render::value_text as s;
use crate::render::{Paint, escape_control, paint};

/// Findings as a person reads them: code, severity, message, fix.
pub fn render_findings(findings: &[Finding], color: bool) -> String {
    let mut s = String::new();
    if findings.is_empty() {
        return s;
    }
    s.push('\n');
    for f in findings {
        let sev = match f.severity {
            Severity::Error => paint("error", Paint::Red, color),
            Severity::Warning => paint("warning", Paint::Yellow, color),
            Severity::Info => paint("info", Paint::Blue, color),
        };
        s.push_str(&format!(
            "{sev}[{}] {}: {}\n",
            f.code,
            f.name,
            escape_control(&f.message)
        ));
        s.push_str(&format!(
            "  {} {}\n",
            paint("fix:", Paint::Green, color),
            escape_control(&f.fix)
        ));
    }
    s
}

/// Findings (runtime or merge) as a person reads them, from the document's values.
pub fn render_finding_values(findings: &[Value], color: bool, out: &mut String) {
    for f in findings {
        let sev = f["severity"].as_str().unwrap_or("info");
        let label = match sev {
            "error" => paint("error", Paint::Red, color),
            "warning" => paint("warning", Paint::Yellow, color),
            _ => paint("info", Paint::Blue, color),
        };
        let name = f["name"]
            .as_str()
            .map(|n| format!(" {n}"))
            .unwrap_or_default();
        out.push_str(&format!(
            "{label}[{}]{}: {}\n",
            escape_control(&s(&f["code"])),
            escape_control(&name),
            escape_control(&s(&f["message"]))
        ));
        out.push_str(&format!(
            "  {} {}\n",
            paint("fix:", Paint::Green, color),
            escape_control(&s(&f["fix"]))
        ));
    }
}
