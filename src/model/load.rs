//! Reading YAML and JSON documents people hand to doctor (`--from`, `merge`, `--include-run`)
//! with bounds checked before any parser sees them: the size of the file and how deeply its
//! collections nest. The YAML parser takes time quadratic in the nesting depth (200 KB of `[`
//! took 20 s), so a hostile or broken file must fail fast with a clear message instead.

use std::io::{self, Read};
use std::path::Path;

/// Largest document read (a snapshot of a big node with every environment is a few MB).
pub const MAX_BYTES: u64 = 128 << 20;

/// Deepest nesting of collections accepted (doctor's own documents nest under 10 levels).
pub const MAX_DEPTH: usize = 64;

/// Read `path` as UTF-8 text, refusing files over [`MAX_BYTES`] and documents nested deeper than
/// [`MAX_DEPTH`]. Errors are `io::Error`s whose message says what was wrong, so callers keep their
/// own "cannot read FILE: ..." wording and hint.
pub fn read_document(path: &Path) -> io::Result<String> {
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(MAX_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {} MiB", MAX_BYTES >> 20),
        ));
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"))?;
    check_nesting(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok(text)
}

/// The report files of a directory, sorted by name: regular files (or links to them) named
/// `*.yaml`, `*.yml` or `*.json`, hidden names (`.doctor-*` temporaries of atomic writes among
/// them) left out.
pub fn documents_in(dir: &Path) -> io::Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let ext = path.extension().unwrap_or_default().to_string_lossy();
        if name.starts_with('.') || !matches!(&*ext, "yaml" | "yml" | "json") || !path.is_file() {
            continue;
        }
        out.push(path);
    }
    out.sort();
    Ok(out)
}

/// Fails when flow collections (`[`, `{`) or block collections (indentation, `- - -`) nest deeper
/// than [`MAX_DEPTH`]. One linear pass; brackets inside quoted scalars and comments do not count.
/// Approximate for YAML (a plain scalar such as `a[b` counts), erring on the side of parsing.
pub fn check_nesting(text: &str) -> Result<(), String> {
    let too_deep = |depth: usize| {
        Err(format!(
            "collections nested more than {MAX_DEPTH} levels deep (at {depth}); doctor's \
             documents nest under 10"
        ))
    };
    let mut flow = 0usize;
    let mut quote: Option<u8> = None;
    for line in text.split('\n') {
        let bytes = line.as_bytes();
        if quote.is_none() && flow == 0 {
            let depth = block_depth(bytes);
            if depth > MAX_DEPTH {
                return too_deep(depth);
            }
        }
        let mut prev = b' ';
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            match quote {
                Some(q) => {
                    if b == b'\\' && q == b'"' {
                        i += 1;
                    } else if b == q {
                        quote = None;
                    }
                }
                None => match b {
                    b'"' | b'\'' if starts_scalar(prev) => quote = Some(b),
                    b'#' if prev == b' ' || prev == b'\t' => break,
                    b'[' | b'{' => {
                        flow += 1;
                        if flow > MAX_DEPTH {
                            return too_deep(flow);
                        }
                    }
                    b']' | b'}' => flow = flow.saturating_sub(1),
                    _ => {}
                },
            }
            if !b.is_ascii_whitespace() {
                prev = b;
            } else if quote.is_none() {
                prev = if matches!(prev, b':' | b'-' | b',' | b'[' | b'{' | b'?') {
                    prev
                } else {
                    b' '
                };
            }
            i += 1;
        }
        // A single-quoted YAML scalar may span lines; an unterminated double quote in JSON
        // cannot, but then the parser reports it.
    }
    Ok(())
}

/// A quote opens a quoted scalar only where a scalar can begin.
fn starts_scalar(prev: u8) -> bool {
    matches!(prev, b' ' | b'\t' | b':' | b'-' | b',' | b'[' | b'{' | b'?')
}

/// Block nesting of one line: indentation (each level is at least one column) plus compact
/// sequence entries (`- - - x`).
fn block_depth(line: &[u8]) -> usize {
    let indent = line.iter().take_while(|&&b| b == b' ').count();
    let rest = &line[indent..];
    let dashes = rest
        .chunks(2)
        .take_while(|c| matches!(c, [b'-' | b'?', b' ']) || *c == b"-")
        .count();
    // Indentation counts as levels of two columns (what doctor and most writers use); 64 levels
    // is then 128 columns, still far beyond any real document.
    indent / 2 + dashes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_documents_pass() {
        let yaml = "a:\n  b: [1, {c: 'x]]]]'}, \"y[[[\"]\n  d: # [[[[\n  - - e\n  - it's [fine\n";
        assert_eq!(check_nesting(yaml), Ok(()));
        let json = r#"{"a": [{"b": "]]]]{{{{"}], "c": "\"[[["}"#;
        assert_eq!(check_nesting(json), Ok(()));
    }

    #[test]
    fn deep_flow_and_block_nesting_fail() {
        assert!(check_nesting(&"[".repeat(65)).is_err());
        assert!(check_nesting(&"{\"a\":".repeat(100)).is_err());
        assert!(check_nesting(&format!("{}x\n", "- ".repeat(70))).is_err());
        let block: String = (0..70)
            .map(|i| format!("{}k{i}:\n", "  ".repeat(i)))
            .collect();
        assert!(check_nesting(&block).is_err());
        assert_eq!(check_nesting(&"[".repeat(64)), Ok(()));
    }

    #[test]
    fn checks_are_linear() {
        let start = std::time::Instant::now();
        let big = format!("k: '{}'\n", "[".repeat(4 << 20));
        assert_eq!(check_nesting(&big), Ok(()));
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
    }
}
