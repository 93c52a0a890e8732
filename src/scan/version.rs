//! The oldest Python that can run a source file: syntax newer than a version (PEP 695 `type`
//! aliases and type parameters, PEP 701 f-strings, `except*`, `match`, ...) is what the parser
//! reports as unsupported on Python 3.7; the newest "added in Python X.Y" among those is the
//! answer. `doctor repro` and `--verify-fix` use it to pick (or make) an interpreter. Syntax
//! Python 3.8 added is not all seen (`f"{x=}"` is not): torch 2 needs 3.8 anyway.

use ruff_python_ast::PythonVersion;
use ruff_python_parser::{Mode, ParseOptions};
use ruff_source_file::LineIndex;
use ruff_text_size::Ranged;

/// The Python a file needs, and the first piece of syntax that needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NeededPython {
    /// `(major, minor)`.
    pub version: (u32, u32),
    /// What needs it, as the parser names it: "Cannot use `type` alias statement".
    pub what: String,
    /// 1-based line of that syntax.
    pub line: usize,
}

impl NeededPython {
    /// `3.12`.
    pub fn version_text(&self) -> String {
        format!("{}.{}", self.version.0, self.version.1)
    }

    /// "Python 3.12 or newer (line 5: cannot use `type` alias statement before 3.12)".
    pub fn describe(&self) -> String {
        let mut what = self.what.clone();
        if let Some(first) = what.get(..1) {
            what.replace_range(..1, &first.to_ascii_lowercase());
        }
        format!(
            "Python {v} or newer (line {}: {what} before {v})",
            self.line,
            v = self.version_text(),
        )
    }
}

/// The newest Python version the source's syntax needs beyond 3.7, or None (any Python 3, or a
/// file that does not parse: that is S900's to report).
pub fn needed_python(source: &str) -> Option<NeededPython> {
    let options = ParseOptions::from(Mode::Module).with_target_version(PythonVersion::PY37);
    let parsed = ruff_python_parser::parse(source, options).ok()?;
    let lines = LineIndex::from_source_text(source);
    let mut best: Option<NeededPython> = None;
    for e in parsed.unsupported_syntax_errors() {
        let text = e.to_string();
        // "... on Python 3.7 (syntax was added in Python 3.12)"; a removal (syntax Python no
        // longer accepts) is not something a newer interpreter fixes.
        let Some(mut version) = text
            .rsplit_once("added in Python ")
            .and_then(|(_, v)| parse_version(v.trim_end_matches(')')))
        else {
            continue;
        };
        // The parser dates all unparenthesized walruses to 3.9; CPython 3.9 still rejects one in
        // a subscript (`d[x := 1]`), 3.10 accepts it (measured with pyenv's 3.9.18 and 3.10.13,
        // tests/python_version.rs).
        if text.contains("in a sequence index") {
            version = version.max((3, 10));
        }
        if best.as_ref().is_some_and(|b| b.version >= version) {
            continue;
        }
        let what = text
            .split_once(" on Python ")
            .map_or(text.as_str(), |(w, _)| w)
            .to_string();
        best = Some(NeededPython {
            version,
            what,
            line: lines.line_index(e.range().start()).get(),
        });
    }
    if let Some(line) = parenthesized_with_item(&parsed, &lines)
        && best.as_ref().is_none_or(|b| b.version < (3, 9))
    {
        best = Some(NeededPython {
            version: (3, 9),
            what: "Cannot use parentheses within a `with` statement".to_string(),
            line,
        });
    }
    best
}

/// The line of the first `with (EXPR as NAME):`, one item in parentheses with `as` inside them:
/// CPython 3.8 rejects it, 3.9 accepts it, and the parser dates only several items (or a trailing
/// comma) to 3.9. From the tokens: an `as` directly inside the bracket that opens right after
/// `with` (`with (x) as y` and `with x as (y)` have theirs outside).
fn parenthesized_with_item(
    parsed: &ruff_python_parser::Parsed<ruff_python_ast::Mod>,
    lines: &LineIndex,
) -> Option<usize> {
    use ruff_python_ast::token::TokenKind as K;
    let tokens: Vec<_> = parsed
        .tokens()
        .iter()
        .filter(|t| !t.kind().is_trivia())
        .collect();
    for (i, with) in tokens.iter().enumerate() {
        if with.kind() != K::With || tokens.get(i + 1).map(|t| t.kind()) != Some(K::Lpar) {
            continue;
        }
        let mut depth = 0usize;
        for t in &tokens[i + 1..] {
            match t.kind() {
                K::Lpar | K::Lsqb | K::Lbrace => depth += 1,
                K::Rpar | K::Rsqb | K::Rbrace => depth = depth.saturating_sub(1),
                K::As if depth == 1 => return Some(lines.line_index(with.start()).get()),
                _ => {}
            }
            if depth == 0 {
                break;
            }
        }
    }
    None
}

/// [`needed_python`] of the file at `path` (read as `doctor scan` reads it); None when it cannot
/// be read or decoded.
pub fn needed_python_of(path: &std::path::Path) -> Option<NeededPython> {
    let bytes = crate::sys::source::read_regular(path, super::decode::MAX_FILE_BYTES).ok()?;
    let text = super::decode::decode(&bytes).ok()?;
    needed_python(&text)
}

fn parse_version(text: &str) -> Option<(u32, u32)> {
    let (major, minor) = text.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_new_syntax_names_its_version() {
        let cases: &[(&str, Option<(u32, u32)>)] = &[
            ("x = 1\n", None),
            ("def f(a, /):\n    pass\n", Some((3, 8))),
            ("if (n := 1):\n    pass\n", Some((3, 8))),
            (
                "with (open('a') as a, open('b') as b):\n    pass\n",
                Some((3, 9)),
            ),
            ("with (open('a') as a):\n    pass\n", Some((3, 9))),
            ("with (open('a')) as a:\n    pass\n", None),
            ("with open('a') as (a):\n    pass\n", None),
            ("match x:\n    case 1:\n        pass\n", Some((3, 10))),
            ("s = {x := 1, 2}\n", Some((3, 9))),
            ("d[x := 1] = 2\n", Some((3, 10))),
            (
                "try:\n    pass\nexcept* ValueError:\n    pass\n",
                Some((3, 11)),
            ),
            ("type V = list[float]\n", Some((3, 12))),
            ("def f[T](x: T) -> T:\n    return x\n", Some((3, 12))),
            ("x = f'{'a'}'\n", Some((3, 12))),
            ("x = f'{\"a\"}'\n", None),
            ("def f[T = int](x: T) -> T:\n    return x\n", Some((3, 13))),
            (
                "match x:\n    case 1:\n        pass\ntype V = int\n",
                Some((3, 12)),
            ),
            ("def broken(:\n", None),
        ];
        for (src, want) in cases {
            assert_eq!(needed_python(src).map(|n| n.version), *want, "{src}");
        }
        let n = needed_python("import os\n\ntype V = list[float]\n").unwrap();
        assert_eq!(n.line, 3);
        assert_eq!(
            n.describe(),
            "Python 3.12 or newer (line 3: cannot use `type` alias statement before 3.12)"
        );
    }
}
