//! From a parsed module to diagnostics S001-S003, and from a parse error to S900.

use ruff_python_ast::ModModule;
use ruff_source_file::LineIndex;
use ruff_text_size::{TextRange, TextSize};

use super::ScanOptions;
use super::diagnostic::{Diagnostic, Related, S001, S002, S003, S900, StaticRule};
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

    fn diagnostic(
        &self,
        rule: &StaticRule,
        path: &str,
        range: TextRange,
        message: String,
        fix: String,
    ) -> Diagnostic {
        let (line, column) = self.line_col(range.start());
        let (end_line, end_column) = self.line_col(range.end());
        Diagnostic {
            code: rule.code,
            severity: rule.code.severity(),
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

/// The `from __future__` features Python knows (`braces` is its joke: "not a chance").
const FUTURE_FEATURES: &[&str] = &[
    "nested_scopes",
    "generators",
    "division",
    "absolute_import",
    "with_statement",
    "print_function",
    "unicode_literals",
    "barry_as_FLUFL",
    "generator_stop",
    "annotations",
];

/// S900 for what the parser accepts and Python's compiler rejects: a `from __future__` import
/// after other code (only the docstring and other future imports may come first), or a feature
/// Python does not have.
pub fn rejected_future(module: &ModModule, source: &str, path: &str) -> Option<Diagnostic> {
    use ruff_python_ast::{Expr, Stmt};
    use ruff_text_size::Ranged;
    let loc = Locator::new(source);
    let mut at_top = true;
    for (i, stmt) in module.body.iter().enumerate() {
        let future = match stmt {
            Stmt::ImportFrom(f) if f.level == 0 && f.module.as_deref() == Some("__future__") => f,
            Stmt::Expr(e) if i == 0 && matches!(&*e.value, Expr::StringLiteral(_)) => continue,
            _ => {
                at_top = false;
                continue;
            }
        };
        let fix = "Python rejects this file before running it (`python -m py_compile FILE` says the same); the file was not analysed".to_string();
        if !at_top {
            return Some(
                loc.diagnostic(
                    &S900,
                    path,
                    stmt.range(),
                    "syntax error: from __future__ imports must occur at the beginning of the file"
                        .to_string(),
                    format!("move it above every other statement (after the docstring). {fix}"),
                ),
            );
        }
        if let Some(a) = future
            .names
            .iter()
            .find(|a| !FUTURE_FEATURES.contains(&a.name.as_str()))
        {
            return Some(loc.diagnostic(
                &S900,
                path,
                a.range(),
                format!("syntax error: future feature {} is not defined", a.name),
                fix,
            ));
        }
    }
    None
}

/// CPython's tokenizer limit on nested brackets (`MAXLEVEL`): the 201st open bracket is a
/// syntax error.
const MAX_BRACKET_DEPTH: usize = 200;

/// S900 for brackets nested deeper than Python accepts ("too many nested parentheses"), which
/// the parser used here reads without complaint.
pub fn rejected_nesting(
    tokens: &ruff_python_ast::token::Tokens,
    source: &str,
    path: &str,
) -> Option<Diagnostic> {
    use ruff_python_ast::token::TokenKind;
    use ruff_text_size::Ranged;
    let mut depth = 0usize;
    for token in tokens.iter() {
        match token.kind() {
            TokenKind::Lpar | TokenKind::Lsqb | TokenKind::Lbrace => {
                if depth >= MAX_BRACKET_DEPTH {
                    return Some(Locator::new(source).diagnostic(
                        &S900,
                        path,
                        token.range(),
                        "syntax error: too many nested parentheses".to_string(),
                        format!(
                            "Python accepts at most {MAX_BRACKET_DEPTH} nested brackets; split the expression. Python rejects this file before running it (`python -m py_compile FILE` says the same); the file was not analysed"
                        ),
                    ));
                }
                depth += 1;
            }
            TokenKind::Rpar | TokenKind::Rsqb | TokenKind::Rbrace => {
                depth = depth.saturating_sub(1);
            }
            _ => {}
        }
    }
    None
}

/// S900 for a module nested deeper than the walks of `scan/` descend ([`super::walk::MAX_DEPTH`]):
/// what lies below was not checked, so the file must not pass as clean (a launch at the bottom
/// of a 1,000-term `+` chain compiles in Python and would otherwise be missed).
pub fn too_deep(module: &ModModule, source: &str, path: &str) -> Option<Diagnostic> {
    let at = super::walk::cut_at(&module.body)?;
    let limit = super::walk::MAX_DEPTH;
    Some(Locator::new(source).diagnostic(
        &S900,
        path,
        TextRange::empty(at.start()),
        format!(
            "not fully checked: the code here is nested more than {limit} levels deep, and doctor did not look below that depth (a launch there would be missed)"
        ),
        format!(
            "split the expression (assign parts of it to variables) so that it nests fewer than {limit} levels; the rest of the file was checked"
        ),
    ))
}

/// S001-S003 for a parsed module.
pub fn check(
    module: &ModModule,
    source: &str,
    path: &str,
    opts: &ScanOptions,
    star_imported: &std::collections::HashMap<String, String>,
) -> Vec<Diagnostic> {
    let sym = Symbols::collect_with(&module.body, star_imported);
    let reach = Reach::new(&sym);
    let events = reach.module_events(&module.body);
    if events.is_empty() {
        return Vec::new();
    }
    let loc = Locator::new(source);
    let evidence = spawn_evidence(module, &sym, opts);
    let mut out = Vec::new();
    // One diagnostic per kind and line: a line with two launches is one finding.
    let mut seen = std::collections::HashSet::new();
    for event in &events {
        if seen.insert((event.kind, loc.line_col(event.site.start()).0)) {
            out.extend(diagnose(&loc, path, event, &evidence));
        }
    }
    out
}

/// Where the program makes spawn or forkserver children, in source order, once each.
fn spawn_evidence(module: &ModModule, sym: &Symbols, opts: &ScanOptions) -> Vec<Evidence> {
    let spawn = SpawnCollector {
        sym,
        default: spawnlike_default(opts.platform, opts.python_version),
        found: Vec::new(),
    };
    let mut evidence = super::walk::over_body(spawn, &module.body).found;
    evidence.sort_by_key(|e| e.range.start());
    evidence.dedup_by_key(|e| e.range);
    evidence
}

/// The finding of one import-time event: S001 (a warning), or, when the program makes
/// spawn/forkserver children, one S002 (an error) with the places that make them as notes; or
/// S003. One diagnostic per launch line, as ruff attaches secondary spans.
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
        Kind::Launch if evidence.is_empty() => {
            let mut d = loc.diagnostic(
                &S001,
                path,
                event.site,
                format!("`{label}` starts distributed work at import time{via}, outside `if __name__ == \"__main__\":`"),
                format!("move it under a main guard:\n{guarded}"),
            );
            d.related = chain;
            vec![d]
        }
        Kind::Launch => {
            let what = if starts_spawn_children(event) {
                format!(
                    "`{label}` starts spawn children at import time{via}: each child re-imports this file as \
                     `__mp_main__`, reaches this line again while it is still starting, and fails with \
                     \"RuntimeError: An attempt has been made to start a new process before the current \
                     process has finished its bootstrapping phase\""
                )
            } else {
                format!(
                    "`{label}` starts distributed work at import time{via}, and this program makes \
                     spawn/forkserver children, which re-import the file as `__mp_main__` and run it again: \
                     the child binds the rendezvous port its parent already holds (EADDRINUSE), or, where a \
                     launcher's agent hosts the store (torchrun), joins as a duplicate rank and hangs"
                )
            };
            let mut d = loc.diagnostic(
                &S002,
                path,
                event.site,
                what,
                format!(
                    "keep the launch under the main guard, which children skip:\n{guarded}\n(a \"fork\" \
                     context also avoids the re-import, on Linux only)"
                ),
            );
            d.related = evidence
                .iter()
                .filter(|e| e.range != event.site)
                .take(3)
                .map(|e| {
                    loc.related(
                        e.range,
                        format!("spawn/forkserver children are made here: {}", e.what),
                    )
                })
                .chain(chain)
                .collect();
            vec![d]
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

/// Whether the launch itself starts multiprocessing children (`mp.spawn`, `start_processes`):
/// a child re-running it fails in its bootstrapping phase instead of binding the port.
fn starts_spawn_children(event: &Event) -> bool {
    let callee = event.label.trim_end_matches("()");
    let last = callee.rsplit('.').next().unwrap_or(callee);
    event.origin.is_none() && matches!(last, "spawn" | "start_processes")
}

/// The fix, spelled out with the flagged statement's own text: a call of a same-file function
/// that launches is guarded where it is; anything else moves into `main()`.
fn guarded_form(loc: &Locator, event: &Event) -> String {
    let text = statement_text(loc, event.site);
    if event.origin.is_some() {
        return format!(
            "    if __name__ == \"__main__\":\n{}",
            indent(&text, "        ")
        );
    }
    format!(
        "    def main():\n{}\n        ...\n\n    if __name__ == \"__main__\":\n        main()",
        indent(&text, "        ")
    )
}

/// The source lines of the flagged call (whole lines, so an assignment keeps its target), at
/// most 8 of them; the common indentation removed.
fn statement_text(loc: &Locator, site: TextRange) -> String {
    let src = loc.source;
    let (s, e) = (
        usize::from(site.start()).min(src.len()),
        usize::from(site.end()).min(src.len()),
    );
    let start = src[..s].rfind('\n').map_or(0, |i| i + 1);
    let end = src[e..].find('\n').map_or(src.len(), |i| e + i);
    let lines: Vec<&str> = src[start..end].lines().collect();
    let strip = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    let mut out: Vec<String> = lines
        .iter()
        .take(8)
        .map(|l| {
            let l = l.get(strip..).unwrap_or(l.trim_start()).trim_end();
            if l.chars().count() > 120 {
                format!("{}…", l.chars().take(120).collect::<String>())
            } else {
                l.to_string()
            }
        })
        .collect();
    if lines.len() > 8 {
        out.push("...".to_string());
    }
    out.join("\n")
}

fn indent(text: &str, by: &str) -> String {
    text.lines()
        .map(|l| format!("{by}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use crate::scan::{Rule, ScanOptions, scan_source};

    fn one(src: &str) -> crate::scan::Diagnostic {
        let d = scan_source("t.py", src, &ScanOptions::default());
        assert_eq!(d.len(), 1, "{d:#?}");
        d.into_iter().next().unwrap()
    }

    /// A launch called through a module-level name: an alias of the function, a
    /// `functools.partial` of it, a lambda that calls it; a name rebound inside a function is
    /// not an alias.
    #[test]
    fn a_launch_through_an_alias_partial_or_lambda_is_found() {
        let head = "import functools\nimport torch.distributed as dist\nimport torch.multiprocessing as mp\n";
        for (bind, call) in [
            ("f = dist.init_process_group", "f('gloo')"),
            (
                "start = functools.partial(dist.init_process_group, 'gloo')",
                "start()",
            ),
            (
                "from functools import partial\nstart = partial(mp.spawn, print)",
                "start()",
            ),
            ("start = lambda: dist.init_process_group('gloo')", "start()"),
            (
                "init = dist.init_process_group\nstart = lambda: init('gloo')",
                "start()",
            ),
        ] {
            let d = one(&format!("{head}{bind}\n{call}\n"));
            assert!(matches!(d.code, Rule::S001 | Rule::S002), "{bind}: {d:?}");
            assert_eq!(d.line, 4 + bind.lines().count(), "{bind}");
        }
        let not = format!(
            "{head}def g():\n    f = dist.init_process_group\n    return f\nf = print\nf('x')\n"
        );
        assert!(scan_source("t.py", &not, &ScanOptions::default()).is_empty());
        let guarded = format!(
            "{head}f = dist.init_process_group\nif __name__ == '__main__':\n    f('gloo')\n"
        );
        assert!(scan_source("t.py", &guarded, &ScanOptions::default()).is_empty());
    }

    /// Python's limit of 200 nested brackets: 200 pass, 201 is S900 (as `compile` says).
    #[test]
    fn brackets_nested_deeper_than_python_allows_are_s900() {
        let nest = |n: usize, open: &str, close: &str| {
            format!(
                "import torch.distributed as dist\nx = {}1{}\ndist.init_process_group('gloo')\n",
                open.repeat(n),
                close.repeat(n)
            )
        };
        let ok = scan_source("t.py", &nest(200, "(", ")"), &ScanOptions::default());
        assert!(ok.iter().all(|d| d.code != Rule::S900), "{ok:?}");
        for (open, close) in [("(", ")"), ("[", "]"), ("[(", ")]")] {
            let n = if open.len() == 2 { 101 } else { 201 };
            let d = one(&nest(n, open, close));
            assert_eq!(d.code, Rule::S900, "{open}");
            assert!(
                d.message.contains("too many nested parentheses"),
                "{}",
                d.message
            );
        }
        let deep = one(&nest(5000, "(", ")"));
        assert_eq!(deep.code, Rule::S900);
    }

    #[test]
    fn a_module_level_mp_spawn_says_the_bootstrapping_error() {
        let d = one(
            "import torch.multiprocessing as mp\ndef work(i):\n    pass\nmp.spawn(work, nprocs=2)\n",
        );
        assert_eq!(d.code, Rule::S002);
        assert!(d.message.contains("bootstrapping phase"), "{}", d.message);
        assert!(!d.message.contains("EADDRINUSE"), "{}", d.message);
        // The launch itself is the evidence: no note that repeats the flagged line.
        assert!(d.related.is_empty(), "{:?}", d.related);
        assert!(
            d.fix.contains("        mp.spawn(work, nprocs=2)\n"),
            "{}",
            d.fix
        );
    }

    #[test]
    fn init_with_spawn_children_says_the_port_is_bound_again() {
        let d = one(
            "import torch.distributed as dist\nimport multiprocessing as mp\ndist.init_process_group(\"gloo\", rank=0,\n    world_size=2)\nif __name__ == '__main__':\n    mp.get_context('spawn').Process(target=print).start()\n",
        );
        assert_eq!(d.code, Rule::S002);
        assert!(d.message.contains("EADDRINUSE"), "{}", d.message);
        assert_eq!(d.related.len(), 1);
        assert_eq!(d.related[0].line, 6);
        // The snippet is the real call, both lines, with its arguments.
        assert!(
            d.fix.contains(
                "        dist.init_process_group(\"gloo\", rank=0,\n            world_size=2)\n"
            ),
            "{}",
            d.fix
        );
    }

    #[test]
    fn a_bare_call_of_a_launching_function_is_guarded_where_it_is() {
        let d = one(
            "import torch.distributed as dist\ndef main():\n    dist.init_process_group('gloo')\nmain()\n",
        );
        assert_eq!(d.code, Rule::S001);
        assert!(!d.fix.contains("def main()"), "{}", d.fix);
        assert!(
            d.fix
                .contains("    if __name__ == \"__main__\":\n        main()"),
            "{}",
            d.fix
        );
    }

    #[test]
    fn a_late_future_import_is_the_syntax_error_python_reports() {
        let d = one(
            "\"\"\"doc\"\"\"\nimport os\nfrom __future__ import annotations\nimport torch.distributed as dist\ndist.init_process_group('gloo')\n",
        );
        assert_eq!((d.code, d.line), (Rule::S900, 3));
        assert!(d.message.contains("beginning of the file"), "{}", d.message);
        let d = one("from __future__ import braces\n");
        assert_eq!(d.code, Rule::S900);
        let ok = "\"\"\"doc\"\"\"\nfrom __future__ import annotations\nfrom __future__ import division\nimport os\n";
        assert!(scan_source("t.py", ok, &ScanOptions::default()).is_empty());
        // Python agrees, where a python3 is at hand.
        for (src, rejected) in [
            ("import os\nfrom __future__ import annotations\n", true),
            ("'''d'''\nfrom __future__ import annotations\n", false),
            ("from __future__ import braces\n", true),
        ] {
            if let Ok(out) = std::process::Command::new("python3")
                .args(["-c", "import sys; compile(sys.argv[1], 'f', 'exec')", src])
                .output()
            {
                assert_eq!(!out.status.success(), rejected, "{src}");
            }
        }
    }

    #[test]
    fn noqa_for_either_code_silences_the_launch_line() {
        let src = "import torch.multiprocessing as mp\ndef work(i):\n    pass\nmp.spawn(work, nprocs=2)  # noqa: S001\n";
        assert!(scan_source("t.py", src, &ScanOptions::default()).is_empty());
        let two = "import torch.distributed as dist\ndist.init_process_group('gloo'); dist.init_process_group('gloo')\n";
        assert_eq!(scan_source("t.py", two, &ScanOptions::default()).len(), 1);
    }

    /// The text a person reads for `src`, for the rule's snapshot.
    fn shown(src: &str) -> String {
        let report = crate::scan::FileReport {
            path: "train.py".to_string(),
            diagnostics: scan_source("train.py", src, &ScanOptions::default()),
            skipped: None,
            source: Some(src.to_string()),
        };
        crate::scan::render::text(std::slice::from_ref(&report), false)
    }

    #[test]
    fn s001_module_level_launch() {
        insta::assert_snapshot!(shown(
            "import torch.distributed as dist\n\ndist.init_process_group(\"gloo\", rank=0, world_size=2)\n"
        ));
    }

    #[test]
    fn s002_spawn_reimports_main() {
        insta::assert_snapshot!(shown(
            "import lightning as L\nfrom torch.utils.data import DataLoader\n\nfabric = L.Fabric(devices=2)\nfabric.launch()\n\nif __name__ == \"__main__\":\n    loader = DataLoader(range(4), num_workers=1, multiprocessing_context=\"spawn\")\n"
        ));
    }

    #[test]
    fn s003_module_level_cuda() {
        insta::assert_snapshot!(shown("import torch\n\ntorch.cuda.set_device(0)\n"));
    }

    #[test]
    fn s900_parse_error() {
        insta::assert_snapshot!(shown(
            "import torch.distributed as dist\ndef main(:\n    dist.init_process_group(\"gloo\")\n"
        ));
    }
}
