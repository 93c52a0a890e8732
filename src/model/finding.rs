//! The runtime finding and the one shape every finding has in a document ([`FindingDoc`]); the
//! codes themselves, their severities and pages are [`crate::model::rule`].

use serde::{Deserialize, Serialize};

pub use crate::model::rule::{Rule, Severity, code_and_name};

/// Where a finding points in a file (1-based lines, columns in characters).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    pub path: String,
    pub line: usize,
    pub column: usize,
    pub end_line: usize,
    pub end_column: usize,
}

/// A fix: what to do, and the text edits that do it (none yet: every fix is advice).
#[derive(Clone, Debug, Serialize)]
pub struct FixDoc<'a> {
    pub message: &'a str,
    pub edits: [(); 0],
}

/// The one shape of a finding in every JSON/YAML document (ports, tree, run, report, merge,
/// scan): docs/schema/finding.schema.json.
#[derive(Serialize)]
pub struct FindingDoc<'a> {
    #[serde(flatten, serialize_with = "code_and_name")]
    pub code: Rule,
    pub severity: Severity,
    pub message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    pub pids: &'a [i32],
    pub ports: &'a [u16],
    pub fix: FixDoc<'a>,
    /// The page that explains the code.
    pub url: String,
}

impl<'a> FindingDoc<'a> {
    pub fn new(code: Rule, message: &'a str, fix: &'a str) -> FindingDoc<'a> {
        FindingDoc {
            code,
            severity: code.severity(),
            message,
            location: None,
            pids: &[],
            ports: &[],
            fix: FixDoc {
                message: fix,
                edits: [],
            },
            url: code.url(),
        }
    }
}

/// One runtime finding (D codes): the evidence it cites (pids, ports) and the fix it suggests.
/// Serialised as a [`FindingDoc`] (plus `chain`, D001's ancestry).
#[derive(Clone, Debug)]
pub struct Finding {
    pub code: Rule,
    pub severity: Severity,
    pub message: String,
    pub pids: Vec<i32>,
    pub ports: Vec<u16>,
    pub fix: String,
    /// For D001: the ancestry from the rank to the duplicate initialiser, rank first.
    pub path: Vec<i32>,
    /// The user's line, where known (D001: the launch statement the child re-ran, found by
    /// `doctor scan` of the rank's script).
    pub location: Option<Location>,
}

impl Finding {
    /// A finding of a registered code, with the registry's name and severity.
    pub fn new(
        code: Rule,
        message: String,
        pids: Vec<i32>,
        ports: Vec<u16>,
        fix: String,
    ) -> Finding {
        Finding {
            code,
            severity: code.severity(),
            message,
            pids,
            ports,
            fix,
            path: Vec::new(),
            location: None,
        }
    }
}

impl Serialize for Finding {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct View<'a> {
            #[serde(flatten)]
            doc: FindingDoc<'a>,
            #[serde(skip_serializing_if = "<[i32]>::is_empty")]
            chain: &'a [i32],
        }
        let mut doc = FindingDoc::new(self.code, &self.message, &self.fix);
        doc.severity = self.severity;
        doc.pids = &self.pids;
        doc.ports = &self.ports;
        doc.location = self.location.clone();
        View {
            doc,
            chain: &self.path,
        }
        .serialize(ser)
    }
}

/// Whether any finding is at warning level or worse (exit code 1).
pub fn worth_exit_1(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.severity.is_problem())
}
