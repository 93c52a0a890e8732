//! `doctor repro`'s text: the line each finished case leaves, the cases' table with the
//! verdict, `--verify-fix`'s before/after matrix, the `--list` text; and the redaction of what
//! the cases ran and printed.

use std::collections::BTreeSet;
use std::path::Path;

use super::Paint;
use crate::analysis::repro::expected_str;
use crate::model::repro::{BUNDLED, CaseResult, Ctx, Document, Outcome, Variant, VerifyDocument};

/// `doctor repro --list` as text.
pub fn list() -> String {
    let mut s = String::new();
    for b in BUNDLED {
        s.push_str(&format!(
            "{}\n  {}\n  scripts: {}, {}\n  measured: {}\n",
            b.name, b.about, b.buggy.0, b.fixed.0, b.measured
        ));
    }
    s
}

/// Secrets in what the cases ran and printed (a custom script's arguments, its output) are
/// redacted like every other output.
pub fn redact_cases(cases: &mut [CaseResult]) {
    use super::redact::{redact_argv, scrub_text};
    for c in cases {
        redact_argv(&mut c.command);
        for line in c.log_tail.iter_mut().chain(c.error.iter_mut()) {
            *line = scrub_text(line);
        }
    }
}

/// The line a finished case leaves: `[n/total] name variant ctx: outcome (secs) ...`.
pub fn result_line(r: &CaseResult, n: usize, total: usize, color: bool) -> String {
    let paint = if r.matches_expected {
        Paint::Green
    } else {
        Paint::Red
    };
    let mut detail = String::new();
    if let Some(f) = &r.frame {
        detail = format!(
            " port {} at {}",
            r.eaddrinuse_port.unwrap_or(r.port),
            short_frame(f)
        );
    } else if let Some(e) = &r.error {
        let e = if super::settings().show_secrets {
            e.clone()
        } else {
            super::redact::scrub_text(e)
        };
        detail = format!(" {}", super::escape_control(&super::shorten(&e, 90)));
    }
    format!(
        "  [{n}/{total}] {} {} {}: {} ({:.1}s){}{}",
        r.name,
        r.variant.as_str(),
        r.ctx.as_str(),
        super::paint(r.outcome.as_str(), paint, color),
        r.seconds,
        if r.killed.is_empty() {
            String::new()
        } else {
            format!(", killed {} process(es)", r.killed.len())
        },
        detail
    )
}

fn short_frame(frame: &str) -> String {
    Path::new(frame)
        .file_name()
        .map_or_else(|| frame.to_string(), |f| f.to_string_lossy().to_string())
}

/// The cases' table, the verdict and the interpreter.
pub fn table(doc: &Document) -> String {
    let color = super::stdout_color();
    let mut rows: Vec<[String; 8]> = Vec::new();
    for c in &doc.cases {
        let outcome = super::paint(
            c.outcome.as_str(),
            if c.matches_expected {
                Paint::Green
            } else {
                Paint::Red
            },
            color,
        );
        let detail = if let Some(f) = &c.frame {
            format!(
                "port {} bound again at {}",
                c.eaddrinuse_port.unwrap_or(c.port),
                short_frame(f)
            )
        } else if let Some(e) = &c.error {
            super::escape_control(&super::shorten(e, 70)).into_owned()
        } else {
            String::new()
        };
        let mut detail = detail;
        if !c.killed.is_empty() {
            detail.push_str(&format!(
                "{}killed {} process(es)",
                if detail.is_empty() { "" } else { "; " },
                c.killed.len()
            ));
        }
        if !c.leftovers.is_empty() {
            detail.push_str(&format!("; LEFT BEHIND: {}", c.leftovers.join(", ")));
        }
        rows.push([
            super::shorten(&c.name, 24),
            c.ctx.as_str().to_string(),
            c.variant.as_str().to_string(),
            outcome,
            expected_str(&c.expected),
            format!("{:.1}", c.seconds),
            c.result_digest
                .as_deref()
                .map_or("-".to_string(), |d| d.chars().take(12).collect()),
            detail,
        ]);
    }
    let header = [
        "REPRO", "CTX", "VARIANT", "OUTCOME", "EXPECTED", "SECONDS", "DIGEST", "DETAIL",
    ];
    let mut out = super::grid::grid(&header, &rows);
    out.push('\n');
    let v = &doc.verdict;
    out.push('\n');
    let head_paint = if v.fix_verified || v.matches_expected {
        Paint::Green
    } else {
        Paint::Red
    };
    out.push_str(&super::paint(&v.summary, head_paint, color));
    out.push('\n');
    out.push_str(&format!(
        "python {} ({}), torch {}, lightning {}; {} x{} ({})\n",
        doc.python.python_version,
        doc.python.path,
        doc.python.torch.as_deref().unwrap_or("-"),
        doc.python.lightning.as_deref().unwrap_or("-"),
        doc.accelerator.kind,
        doc.accelerator.devices,
        doc.accelerator.backend
    ));
    out
}

/// CTX | ORIGINAL | FIXED | DETAIL, then the verdict.
pub fn verify_matrix(doc: &VerifyDocument) -> String {
    let color = super::stdout_color();
    let mut rows: Vec<[String; 5]> = Vec::new();
    let ctxs: BTreeSet<Ctx> = doc.cases.iter().map(|c| c.ctx).collect();
    for ctx in ctxs {
        let find = |v: Variant| doc.cases.iter().find(|c| c.ctx == ctx && c.variant == v);
        let (orig, fixed) = (find(Variant::Original), find(Variant::Fixed));
        let cell = |c: Option<&CaseResult>, good: bool| match c {
            Some(c) => {
                let paint = if good == (c.outcome == Outcome::Ok) {
                    Paint::Green
                } else {
                    Paint::Red
                };
                super::paint(
                    &format!("{} ({:.1}s)", c.outcome.as_str(), c.seconds),
                    paint,
                    color,
                )
            }
            None => "-".to_string(),
        };
        let detail = orig
            .and_then(|c| {
                c.frame
                    .as_ref()
                    .map(|f| {
                        format!(
                            "original: port {} bound again at {}",
                            c.eaddrinuse_port.unwrap_or(c.port),
                            short_frame(f)
                        )
                    })
                    .or_else(|| {
                        c.error.as_ref().map(|e| {
                            format!(
                                "original: {}",
                                super::escape_control(&super::shorten(e, 60))
                            )
                        })
                    })
            })
            .into_iter()
            .chain(fixed.and_then(|c| {
                c.error
                    .as_ref()
                    .map(|e| format!("fixed: {}", super::escape_control(&super::shorten(e, 60))))
            }))
            .collect::<Vec<_>>()
            .join("; ");
        rows.push([
            ctx.as_str().to_string(),
            cell(orig, false),
            cell(fixed, true),
            fixed
                .and_then(|c| c.result_digest.as_deref())
                .map_or("-".to_string(), |d| d.chars().take(12).collect()),
            detail,
        ]);
    }
    let header = ["CTX", "ORIGINAL", "FIXED", "DIGEST", "DETAIL"];
    let script = super::escape_control(&doc.script);
    let mut out = format!("{script}\n{}\n", super::grid::grid(&header, &rows));
    let paint = if doc.verdict.fix_verified {
        Paint::Green
    } else {
        Paint::Red
    };
    out.push('\n');
    out.push_str(&super::paint(
        &super::escape_control(&doc.verdict.summary),
        paint,
        color,
    ));
    out.push('\n');
    if doc.verdict.fix_verified {
        out.push_str(&format!(
            "apply it with: doctor scan --fix {script}   (preview: doctor scan --diff {script})\n"
        ));
    }
    out
}
