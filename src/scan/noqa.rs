//! `# noqa` comments, as ruff reads them: a bare `# noqa` on a finding's line suppresses every
//! finding there; `# noqa: S001, S003` only those codes (case-insensitive, `#noqa` too).

use crate::model::finding::Rule;

/// What a line's `# noqa` comment suppresses.
#[derive(Debug, PartialEq, Eq)]
pub enum Noqa {
    All,
    Codes(Vec<String>),
}

/// The `# noqa` directive of one source line, if any.
pub fn directive(line: &str) -> Option<Noqa> {
    let lower = line.to_ascii_lowercase();
    let mut from = 0;
    while let Some(i) = lower[from..].find('#') {
        let at = from + i + 1;
        let rest = lower[at..].trim_start();
        if let Some(after) = rest.strip_prefix("noqa") {
            let Some(list) = after.strip_prefix(':') else {
                return Some(Noqa::All);
            };
            let codes: Vec<String> = list
                .split([',', ' ', '\t'])
                .map(str::trim)
                .take_while(|c| c.is_empty() || is_code(c))
                .filter(|c| !c.is_empty())
                .map(str::to_ascii_uppercase)
                .collect();
            return Some(if codes.is_empty() {
                Noqa::All
            } else {
                Noqa::Codes(codes)
            });
        }
        from = at;
    }
    None
}

fn is_code(c: &str) -> bool {
    let letters = c.bytes().take_while(u8::is_ascii_alphabetic).count();
    letters > 0 && letters < c.len() && c.bytes().skip(letters).all(|b| b.is_ascii_digit())
}

/// Whether `code` is suppressed on `line`.
pub fn suppresses(line: &str, rule: Rule) -> bool {
    let code = rule.code();
    match directive(line) {
        Some(Noqa::All) => true,
        Some(Noqa::Codes(codes)) => codes.iter().any(|c| c.eq_ignore_ascii_case(code)),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_noqa_like_ruff() {
        assert!(suppresses("fabric.launch()  # noqa", Rule::S001));
        assert!(suppresses("fabric.launch()  #noqa", Rule::S003));
        assert!(suppresses("fabric.launch()  # noqa: S001", Rule::S001));
        assert!(suppresses("fabric.launch()  # NOQA:S001,S003", Rule::S003));
        assert!(suppresses(
            "x()  # noqa: E501, S001 trailing words",
            Rule::S001
        ));
        assert!(!suppresses("fabric.launch()  # noqa: S003", Rule::S001));
        assert!(!suppresses("fabric.launch()  # launch", Rule::S001));
        assert!(!suppresses("fabric.launch()", Rule::S001));
    }
}
