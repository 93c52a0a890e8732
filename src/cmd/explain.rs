//! `doctor explain CODE` (ruff's `ruff rule`): the page of a finding code, what it means, why it
//! matters, the fix and a real example; `doctor explain` (or `--list`) lists the codes.

use crate::error::user_error;
use crate::model::envelope::Kind;
use crate::model::rule::Rule;
use crate::render::{self, Format, explain};

#[derive(clap::Args)]
pub struct ExplainArgs {
    /// The finding code (D001-D009, M001-M010, S001-S003, S900; any case), or its name when
    /// only one code has it
    #[arg(value_name = "CODE", conflicts_with = "list")]
    code: Option<String>,
    /// List every code with its name, severity and summary (the default without CODE)
    #[arg(long)]
    list: bool,
    /// table (default: the page as Markdown, or the list), json or yaml
    #[arg(long, value_enum, alias = "output-format")]
    format: Option<Format>,
    #[command(flatten)]
    out: super::OutputArg,
}

pub fn main(args: ExplainArgs) -> anyhow::Result<i32> {
    args.out.check()?;
    let format = args.out.format(args.format, Format::Table);
    let text = match &args.code {
        Some(code) => {
            let rule = lookup(code)?;
            match format {
                Format::Table => rule.page(),
                f => render::document(&explain::page_doc(rule, super::envelope(Kind::Explain)), f)?,
            }
        }
        None => match format {
            Format::Table => explain::list_text(),
            f => render::document(&explain::list_doc(super::envelope(Kind::ExplainList)), f)?,
        },
    };
    args.out.emit(&text)?;
    Ok(0)
}

/// The rule a command-line word names: a code in any case (`d008`), or a name that only one
/// code has (`duplicate-init`; `port-held-by-other-job` is D002 and M003, so it is refused).
fn lookup(word: &str) -> anyhow::Result<Rule> {
    let w = word.trim();
    if let Some(rule) = Rule::from_code(&w.to_ascii_uppercase()) {
        return Ok(rule);
    }
    let named: Vec<Rule> = Rule::ALL
        .iter()
        .copied()
        .filter(|r| r.name().eq_ignore_ascii_case(w))
        .collect();
    match named.as_slice() {
        [one] => Ok(*one),
        [] => Err(user_error(
            format!("unknown finding code '{}'", render::escape_control(w)),
            format!(
                "the codes are {}; `doctor explain --list` shows them with their names",
                codes_list()
            ),
        )),
        many => Err(user_error(
            format!(
                "'{w}' is the name of {}",
                many.iter()
                    .map(|r| r.code())
                    .collect::<Vec<_>>()
                    .join(" and ")
            ),
            format!(
                "name the code: {}",
                many.iter()
                    .map(|r| format!("`doctor explain {}`", r.code()))
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
        )),
    }
}

/// `D001-D009, M001-M010, S001-S003, S900`: the codes as runs of consecutive numbers.
fn codes_list() -> String {
    let mut runs: Vec<(Rule, Rule)> = Vec::new();
    for &r in Rule::ALL {
        match runs.last_mut() {
            Some((_, last)) if follows(*last, r) => *last = r,
            _ => runs.push((r, r)),
        }
    }
    runs.iter()
        .map(|(a, b)| {
            if a == b {
                a.code().to_string()
            } else {
                format!("{}-{}", a.code(), b.code())
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether `b` is the next code after `a` in the same family (D008, D009).
fn follows(a: Rule, b: Rule) -> bool {
    let (fa, na) = a.code().split_at(1);
    let (fb, nb) = b.code().split_at(1);
    fa == fb && nb.parse::<u32>().ok() == na.parse::<u32>().ok().map(|n| n + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_read_as_runs() {
        assert_eq!(codes_list(), "D001-D009, M001-M010, S001-S003, S900");
    }

    #[test]
    fn codes_and_unique_names_are_found() {
        assert_eq!(lookup("d008").unwrap(), Rule::D008);
        assert_eq!(lookup(" S900 ").unwrap(), Rule::S900);
        assert_eq!(lookup("duplicate-init").unwrap(), Rule::D001);
        assert!(lookup("port-held-by-other-job").is_err(), "D002 and M003");
        assert!(lookup("D010").is_err());
    }
}
