//! The file's own layout, kept by the rewrite: line endings, indent unit, lines inside strings.

use std::collections::HashSet;

use ruff_python_ast::Stmt;
use ruff_python_ast::token::Tokens;
use ruff_text_size::Ranged;

/// Offset of the start of the line holding `off`.
pub fn line_start(src: &str, off: usize) -> usize {
    src[..off].rfind('\n').map_or(0, |i| i + 1)
}

/// Offset just past the end of the line holding `off` (past its line break, if any).
pub fn line_end(src: &str, off: usize) -> usize {
    src[off..].find('\n').map_or(src.len(), |i| off + i + 1)
}

/// The file's line break: the first one found, else `\n`.
pub fn newline(src: &str) -> &'static str {
    match src.find('\n') {
        Some(i) if i > 0 && src.as_bytes()[i - 1] == b'\r' => "\r\n",
        _ => "\n",
    }
}

/// The indentation of the first indented block at module level, else four spaces.
pub fn indent_unit(src: &str, body: &[Stmt]) -> String {
    fn first_block(src: &str, stmts: &[Stmt], depth: usize) -> Option<String> {
        for stmt in stmts {
            let inner: &[Stmt] = match stmt {
                Stmt::FunctionDef(f) => &f.body,
                Stmt::ClassDef(c) => &c.body,
                Stmt::If(i) => &i.body,
                Stmt::For(f) => &f.body,
                Stmt::While(w) => &w.body,
                Stmt::With(w) => &w.body,
                Stmt::Try(t) => &t.body,
                _ => continue,
            };
            let Some(first) = inner.first() else { continue };
            let start = usize::from(first.start());
            let line = line_start(src, start);
            let prefix = &src[line..start];
            if !prefix.is_empty() && prefix.chars().all(|c| c == ' ' || c == '\t') {
                return Some(prefix.to_string());
            }
            if depth < 4
                && let Some(found) = first_block(src, inner, depth + 1)
            {
                return Some(found);
            }
        }
        None
    }
    first_block(src, body, 0).unwrap_or_else(|| "    ".to_string())
}

/// Starts of lines that lie inside a token spanning lines (a triple-quoted string): re-indenting
/// them would change the string.
pub fn lines_inside_tokens(src: &str, tokens: &Tokens) -> HashSet<usize> {
    let mut inside = HashSet::new();
    for token in tokens.iter() {
        let (s, e) = (usize::from(token.start()), usize::from(token.end()));
        let Some(text) = src.get(s..e) else { continue };
        for (i, _) in text.match_indices('\n') {
            let next = s + i + 1;
            if next < e {
                inside.insert(next);
            }
        }
    }
    inside
}

/// `text` (lines starting at `base` in the source) with `strip` removed from the front of each
/// line and `add` put there instead; blank lines stay empty; lines inside strings stay as they are.
pub fn reindent(
    text: &str,
    base: usize,
    strip: &str,
    add: &str,
    inside: &HashSet<usize>,
) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut at = base;
    for line in text.split_inclusive('\n') {
        let content = line.trim_end_matches(['\n', '\r']);
        let ending = &line[content.len()..];
        if inside.contains(&at) {
            out.push_str(line);
        } else if content.trim().is_empty() {
            out.push_str(ending);
        } else {
            // Python's tokenizer restarts the column count at a form feed in the indentation:
            // only what follows the last one indents.
            let lead = content.len() - content.trim_start_matches([' ', '\t', '\x0c']).len();
            let content = match content[..lead].rfind('\x0c') {
                Some(ff) => &content[ff + 1..],
                None => content,
            };
            let rest = content
                .strip_prefix(strip)
                .unwrap_or_else(|| content.trim_start_matches([' ', '\t']));
            out.push_str(add);
            out.push_str(rest);
            out.push_str(ending);
        }
        at += line.len();
    }
    out
}

/// Whether a line is only a comment (and not the shebang or the encoding cookie of lines 1-2).
pub fn is_comment_line(src: &str, start: usize, end: usize) -> bool {
    let line = src[start..end].trim();
    if !line.starts_with('#') {
        return false;
    }
    let number = src[..start].matches('\n').count();
    !(number == 0 && line.starts_with("#!") || number < 2 && line.contains("coding"))
}
