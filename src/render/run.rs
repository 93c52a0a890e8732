//! The explanation `doctor run` prints after the command: what failed, who held the port, the
//! path between them, the line that ran again, the findings, and what was cleaned up.

use crate::analysis::run_diagnosis::Diagnosis;
use crate::model::finding::Severity;
use crate::model::run::Killed;
use crate::render::{Paint, findings, paint};

/// A finding of `doctor scan` on the script that was run, as the explanation quotes it.
pub struct ScriptFinding<'a> {
    pub severity: Severity,
    pub code: &'a str,
    pub name: &'a str,
    pub message: &'a str,
    pub path: &'a str,
    pub line: usize,
    pub column: usize,
}

/// Everything the explanation shows.
pub struct Explained<'a> {
    pub diagnosis: &'a Diagnosis,
    pub static_findings: &'a [ScriptFinding<'a>],
    pub exit_status: i32,
    /// The signal that killed the command, if one did.
    pub signal: Option<&'a str>,
    pub seconds: f64,
    pub killed: &'a [Killed],
    pub leftovers: &'a [String],
    pub tracing: &'a str,
    /// Lines about how the command was watched (e.g. no_new_privs under tracing).
    pub notes: &'a [String],
}

pub fn explanation(e: &Explained, color: bool) -> String {
    let Explained {
        diagnosis: d,
        static_findings,
        exit_status,
        signal,
        seconds,
        killed,
        leftovers,
        tracing,
        notes,
    } = *e;
    let label = paint("doctor:", Paint::Bold, color);
    let mut s = String::new();
    let ended = match signal {
        Some(sig) => format!("was killed by {sig} (status {exit_status})"),
        None => format!("exited with status {exit_status}"),
    };
    s.push_str(&format!(
        "\n{label} the command {ended} after {seconds:.1}s (watched by {tracing})\n"
    ));
    let e = |t: &str| super::escape_control(t).into_owned();
    for line in notes {
        s.push_str(&format!("{label} {}\n", e(line)));
    }
    let line_label = if d.ran_again {
        "the line that ran again"
    } else {
        "the line that failed"
    };
    s.push_str(&what_failed(d, &label, line_label));
    // The static view of the same script, in the one finding style.
    for f in static_findings {
        let same = d
            .script_line
            .as_deref()
            .is_some_and(|l| l.ends_with(&format!(":{}", f.line)));
        let message = if same {
            format!("{} (doctor scan; the same line)", f.message)
        } else {
            format!("{} (doctor scan)", f.message)
        };
        s.push_str(&findings::heading(
            f.severity, f.code, f.name, &message, color,
        ));
        s.push_str(&findings::location_line(
            1,
            f.path,
            f.line as u64,
            f.column as u64,
            color,
        ));
    }
    s.push_str(&findings::render_findings(&d.findings, color));
    if !killed.is_empty() {
        s.push_str(&format!(
            "{label} cleaned up {} leftover processes:\n",
            killed.len()
        ));
        for k in killed {
            s.push_str(&format!(
                "  {} {} {}\n",
                k.pid,
                k.signal,
                e(&super::shorten(&k.command, 100))
            ));
        }
    }
    if leftovers.is_empty() {
        s.push_str(&format!(
            "{label} nothing of the run is left; its ports are free\n"
        ));
    } else {
        for l in leftovers {
            s.push_str(&format!(
                "{label} {} {}\n",
                paint("left behind:", Paint::Red, color),
                e(l)
            ));
        }
    }
    s
}

/// The explanation of a failure seen live (`doctor ports --failed-pid`, the `DDP_DOCTOR=1`
/// hook): what failed, who holds the port, the path, the line that ran again, the findings.
pub fn live_explanation(d: &Diagnosis, color: bool) -> String {
    let label = paint("doctor:", Paint::Bold, color);
    let mut s = what_failed(d, &label, "the line");
    if d.findings.is_empty() {
        s.push_str(&format!(
            "{label} no finding explains it from this machine's processes and sockets\n"
        ));
    }
    s.push_str(&findings::render_findings(&d.findings, color));
    s
}

/// The diagnosis's summary lines, the path between holder and failing process, and the user's
/// line (`line_label`: "the line that ran again" after a run, "the line" live), escaped.
fn what_failed(d: &Diagnosis, label: &str, line_label: &str) -> String {
    let e = |t: &str| super::escape_control(t).into_owned();
    let mut s = String::new();
    for line in &d.summary {
        s.push_str(&format!("{label} {}\n", e(line)));
    }
    if !d.path.is_empty() {
        s.push_str(&format!("{label} path: {}\n", e(&d.path.join(" -> "))));
    }
    if let Some(l) = &d.script_line {
        let code = d
            .code
            .as_deref()
            .map(|c| format!("    {}", e(c)))
            .unwrap_or_default();
        s.push_str(&format!("{label} {line_label}: {}{code}\n", e(l)));
    }
    s
}
