//! `doctor explain`: a code's page, or the list of codes, as text or as a document.

use serde::Serialize;

use crate::model::envelope::Envelope;
use crate::model::rule::{Rule, Severity};
use crate::render::grid::grid;

/// What a document says of one code.
#[derive(Serialize)]
pub struct CodeDoc {
    pub code: &'static str,
    pub name: &'static str,
    pub severity: Severity,
    pub summary: &'static str,
    pub url: String,
}

impl CodeDoc {
    fn of(rule: Rule) -> CodeDoc {
        CodeDoc {
            code: rule.code(),
            name: rule.name(),
            severity: rule.severity(),
            summary: rule.summary(),
            url: rule.url(),
        }
    }
}

/// `doctor explain CODE --format json`: the code and its page (Markdown).
#[derive(Serialize)]
pub struct PageDoc {
    #[serde(flatten)]
    pub envelope: Envelope,
    #[serde(flatten)]
    pub rule: CodeDoc,
    pub page: String,
}

/// `doctor explain --list --format json`: every code.
#[derive(Serialize)]
pub struct ListDoc {
    #[serde(flatten)]
    pub envelope: Envelope,
    pub codes: Vec<CodeDoc>,
}

pub fn page_doc(rule: Rule, envelope: Envelope) -> PageDoc {
    PageDoc {
        envelope,
        rule: CodeDoc::of(rule),
        page: rule.page(),
    }
}

pub fn list_doc(envelope: Envelope) -> ListDoc {
    ListDoc {
        envelope,
        codes: Rule::ALL.iter().map(|&r| CodeDoc::of(r)).collect(),
    }
}

/// Every code as a table (code, name, default severity, summary) and how to read a page.
pub fn list_text() -> String {
    let rows: Vec<Vec<String>> = Rule::ALL
        .iter()
        .map(|r| {
            vec![
                r.code().to_string(),
                r.name().to_string(),
                r.severity().as_str().to_string(),
                r.summary().to_string(),
            ]
        })
        .collect();
    let mut out = grid(&["CODE", "NAME", "SEVERITY", "SUMMARY"], &rows);
    out.push_str("\n`doctor explain CODE` prints a code's page: what, why, the fix, an example.\n");
    out
}

/// The first line of every generated page in docs/findings.
pub const GENERATED: &str = "<!-- generated from the doc comments of the `rules!` table in src/model/rule.rs \
     (DOCTOR_BLESS=1 cargo test --test explain); do not edit: `doctor explain CODE` prints the same page -->";

/// `docs/findings/CODE.md`: the code's page, as `doctor explain CODE` prints it.
pub fn generated_page(rule: Rule) -> String {
    format!("{GENERATED}\n\n{}", rule.page())
}

/// `docs/findings/README.md`: every code by family, linked to its page.
pub fn generated_index() -> String {
    let mut out = format!(
        "{GENERATED}\n\n# Finding codes\n\n\
         One page per code: what it means, why it matters, the fix and a real example. The same page \
         is printed by `doctor explain CODE`, and a finding's `url` is its address \
         ({}CODE). Codes, names and default severities are a contract; the one registry, with the \
         pages, is `src/model/rule.rs`. `doctor explain --list` lists the codes.\n",
        crate::model::rule::DOCS_URL
    );
    for (family, title) in [
        ('D', "Runtime (`doctor ports`, `tree`, `report`, `run`)"),
        ('M', "Cluster (`doctor merge`)"),
        ('S', "Static (`doctor scan`)"),
    ] {
        out.push_str(&format!(
            "\n## {title}\n\n| code | name | severity | what |\n|---|---|---|---|\n"
        ));
        for r in Rule::ALL.iter().filter(|r| r.code().starts_with(family)) {
            out.push_str(&format!(
                "| [{code}]({code}.md) | {} | {} | {} |\n",
                r.name(),
                severity_text(*r),
                r.summary(),
                code = r.code()
            ));
        }
    }
    out.push_str(
        "\n`# noqa: CODE` (or a bare `# noqa`) on a finding's line suppresses a static finding, as in ruff.\n",
    );
    out
}

/// The severity as the page's title gives it (`warning; error when a job wants the port`), else
/// the default severity.
fn severity_text(rule: Rule) -> String {
    let page = rule.page();
    let title = page.lines().next().unwrap_or_default();
    match (title.find('('), title.rfind(')')) {
        (Some(a), Some(b)) if a < b => title[a + 1..b].to_string(),
        _ => rule.severity().as_str().to_string(),
    }
}
