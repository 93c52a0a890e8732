//! From a parsed module to diagnostics S001-S003, and from a parse error to S900.

use ruff_python_ast::ModModule;
use ruff_python_ast::visitor::Visitor;
use ruff_source_file::LineIndex;
use ruff_text_size::{TextRange, TextSize};

use super::ScanOptions;
use super::diagnostic::{Diagnostic, Related, Rule, S001, S002, S003, S900, Severity};
use super::reach::{Event, Kind, Reach, SpawnCollector};
use super::symbols::{Evidence, Symbols, spawnlike_default};

/// Line/column lookups for one source text.
pub struct Locator<'s> {
    source: &'s str,
    index: LineIndex,
}

impl<'s> Locator<'s> {
    pub fn new(source: &'s str) -> Self {
        Locator {
            source,
            index: LineIndex::from_source_text(source),
        }
    }

    /// 1-based line and character column of a byte offset (clamped into the text).
    pub fn line_col(&self, offset: TextSize) -> (usize, usize) {
        let mut at = usize::from(offset).min(self.source.len());
        while !self.source.is_char_boundary(at) {
            at -= 1;
        }
        let lc = self
            .index
            .line_column(TextSize::try_from(at).unwrap_or_default(), self.source);
        (lc.line.get(), lc.column.get())
    }

    fn slice(&self, range: TextRange) -> &'s str {
        let (s, e) = (usize::from(range.start()), usize::from(range.end()));
        self.source.get(s..e).unwrap_or("")
    }

    fn diagnostic(
        &self,
        rule: &Rule,
        path: &str,
        range: TextRange,
        message: String,
        fix: String,
    ) -> Diagnostic {
        let (line, column) = self.line_col(range.start());
        let (end_line, end_column) = self.line_col(range.end());
        Diagnostic {
            code: rule.code,
            name: rule.entry().name,
            severity: rule.entry().severity,
            path: path.to_string(),
            line,
            column,
            end_line,
            end_column,
            message,
            fix,
            related: Vec::new(),
        }
    }

    fn related(&self, range: TextRange, message: String) -> Related {
        let (line, column) = self.line_col(range.start());
        let (end_line, end_column) = self.line_col(range.end());
        Related {
            line,
            column,
            end_line,
            end_column,
            message,
        }
    }
}

/// S900 for a file that does not parse.
pub fn parse_error(path: &str, source: &str, error: &ruff_python_parser::ParseError) -> Diagnostic {
    let loc = Locator::new(source);
    let message = format!("syntax error: {}", error.error);
    let fix = "fix the syntax error (`python -m py_compile FILE` reports the same); the file was not analysed".to_string();
    loc.diagnostic(&S900, path, error.location, message, fix)
}

/// S001-S003 for a parsed module.
pub fn check(module: &ModModule, source: &str, path: &str, opts: &ScanOptions) -> Vec<Diagnostic> {
    let sym = Symbols::collect(&module.body);
    let reach = Reach::new(&sym);
    let events = reach.module_events(&module.body);
    if events.is_empty() {
        return Vec::new();
    }
    let loc = Locator::new(source);
    let evidence = spawn_evidence(module, &sym, opts);
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for event in &events {
        if seen.insert((event.kind, event.site)) {
            out.extend(diagnose(&loc, path, event, &evidence));
        }
    }
    out
}

/// Where the program makes spawn or forkserver children, in source order, once each.
fn spawn_evidence(module: &ModModule, sym: &Symbols, opts: &ScanOptions) -> Vec<Evidence> {
    let mut spawn = SpawnCollector {
        sym,
        default: spawnlike_default(opts.platform, opts.python_version),
        found: Vec::new(),
        depth: 0,
    };
    spawn.visit_body(&module.body);
    let mut evidence = spawn.found;
    evidence.sort_by_key(|e| e.range.start());
    evidence.dedup_by_key(|e| e.range);
    evidence
}

/// The findings of one import-time event: S001 (an error with S002 beside it when the program
/// makes spawn/forkserver children), or S003.
fn diagnose(loc: &Locator, path: &str, event: &Event, evidence: &[Evidence]) -> Vec<Diagnostic> {
    let mut chain = Vec::new();
    if let Some(o) = &event.origin {
        let inside = o
            .function
            .as_deref()
            .map(|f| format!(", inside `{f}()`"))
            .unwrap_or_default();
        chain.push(loc.related(o.range, format!("`{}` is called here{inside}", o.label)));
    }
    let label = &event.label;
    let via = match &event.origin {
        Some(o) => format!(
            " through `{}` (line {})",
            o.label,
            loc.line_col(o.range.start()).0
        ),
        None => String::new(),
    };
    let guarded = guarded_form(loc, event);
    match event.kind {
        Kind::Launch => {
            let mut d = loc.diagnostic(
                &S001,
                path,
                event.site,
                format!("`{label}` starts distributed work at import time{via}, outside `if __name__ == \"__main__\":`"),
                format!("move it under a main guard:\n{guarded}"),
            );
            d.related = chain.clone();
            if evidence.is_empty() {
                return vec![d];
            }
            d.severity = Severity::Error;
            let mut s2 = loc.diagnostic(
                &S002,
                path,
                event.site,
                format!(
                    "spawn/forkserver children re-import this file and run `{label}`{via} again: it binds the \
                     rendezvous port its parent already holds (EADDRINUSE) or joins as a duplicate rank"
                ),
                format!(
                    "children re-import the main file as `__mp_main__`; keep the launch under the main \
                     guard so that they skip it:\n{guarded}\n(a \"fork\" context also avoids the re-import, \
                     on Linux only)"
                ),
            );
            s2.related = evidence
                .iter()
                .take(3)
                .map(|e| {
                    loc.related(
                        e.range,
                        format!("spawn/forkserver children are made here: {}", e.what),
                    )
                })
                .chain(chain)
                .collect();
            vec![d, s2]
        }
        Kind::Cuda => {
            let mut d = loc.diagnostic(
                &S003,
                path,
                event.site,
                format!("`{label}` does CUDA work at import time{via}; every spawn/forkserver child repeats it"),
                format!("move it under a main guard:\n{guarded}"),
            );
            d.related = chain;
            vec![d]
        }
    }
}

/// The fix, spelled out: the flagged call moved into `main()` under the guard.
fn guarded_form(loc: &Locator, event: &Event) -> String {
    let text = loc.slice(event.site);
    let shown = if text.is_empty() || text.contains('\n') || text.chars().count() > 60 {
        event.label.as_str()
    } else {
        text
    };
    format!(
        "    def main():\n        {shown}\n        ...\n\n    if __name__ == \"__main__\":\n        main()"
    )
}
