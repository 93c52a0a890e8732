//! What a finding is, for every kind of check: one [`Severity`] and one registry of codes
//! (runtime D, cluster M, static S). A new rule adds one line to [`CODES`].

use serde::{Deserialize, Serialize};

/// How bad a finding is. Ordered from least to most severe: `Error` is the greatest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }

    /// Parse the contract's spelling; anything else is `info`.
    pub fn parse(s: &str) -> Severity {
        match s {
            "error" => Severity::Error,
            "warning" => Severity::Warning,
            _ => Severity::Info,
        }
    }

    /// Whether this severity makes a command exit 1.
    pub fn is_problem(self) -> bool {
        self >= Severity::Warning
    }
}

/// One finding code: its fixed name, default severity, one-line summary and doc page.
#[derive(Clone, Copy, Debug)]
pub struct Code {
    pub code: &'static str,
    pub name: &'static str,
    pub severity: Severity,
    pub summary: &'static str,
}

impl Code {
    /// The page that explains it (what, why, fix, an example).
    pub fn doc_page(&self) -> String {
        format!("docs/findings/{}.md", self.code)
    }
}

const fn code(
    code: &'static str,
    name: &'static str,
    severity: Severity,
    summary: &'static str,
) -> Code {
    Code {
        code,
        name,
        severity,
        summary,
    }
}

use Severity::{Error, Info, Warning};

/// Every finding code doctor can report. Names and codes are a contract (docs/findings/).
pub const CODES: &[Code] = &[
    code(
        "D001",
        "duplicate-init",
        Error,
        "a descendant of a rank initialises distributed again",
    ),
    code(
        "D002",
        "port-held-by-other-job",
        Error,
        "the rendezvous port of one job is held by another job",
    ),
    code(
        "D003",
        "stale-holder",
        Error,
        "the port is held by an orphaned, zombie or stuck process",
    ),
    code(
        "D004",
        "port-in-ephemeral-range",
        Warning,
        "a rendezvous port lies inside the ephemeral port range",
    ),
    code(
        "D005",
        "ephemeral-collision",
        Error,
        "an outgoing connection uses the rendezvous port as its local port",
    ),
    code(
        "D006",
        "duplicate-rank",
        Error,
        "two live processes of one job claim the same rank",
    ),
    code(
        "D007",
        "time-wait-only",
        Info,
        "only TIME_WAIT sockets use the port (harmless)",
    ),
    code(
        "D008",
        "port-held-by-foreign-process",
        Warning,
        "a rendezvous port is held by a process that belongs to no training job",
    ),
    code(
        "D009",
        "rendezvous-incomplete",
        Error,
        "a job's store has fewer ranks connected than its world size",
    ),
    code(
        "M001",
        "master-not-found",
        Error,
        "no node of the cluster hosts the master",
    ),
    code(
        "M002",
        "master-port-not-listening",
        Warning,
        "nothing listens on the master port on the master node",
    ),
    code(
        "M003",
        "port-held-by-other-job",
        Error,
        "the master port is held by another job on some node",
    ),
    code(
        "M004",
        "duplicate-rank-across-nodes",
        Error,
        "two nodes claim the same global rank",
    ),
    code(
        "M005",
        "version-mismatch",
        Error,
        "torch / CUDA / NCCL / Lightning versions differ across nodes",
    ),
    code(
        "M006",
        "mixed-jobs",
        Warning,
        "the reports belong to different jobs",
    ),
    code(
        "M007",
        "stale-reports",
        Warning,
        "the reports were taken far apart in time",
    ),
    code(
        "M008",
        "master-mismatch",
        Error,
        "nodes use different rendezvous endpoints",
    ),
    code(
        "M009",
        "duplicate-node",
        Warning,
        "the same node was reported twice",
    ),
    code(
        "M010",
        "missing-ranks",
        Info,
        "fewer ranks were seen than WORLD_SIZE",
    ),
    code(
        "S001",
        "module-level-launch",
        Warning,
        "Distributed launch or init reachable at import time",
    ),
    code(
        "S002",
        "spawn-reimports-main",
        Error,
        "Spawn or forkserver children re-run the module-level launch",
    ),
    code(
        "S003",
        "module-level-cuda",
        Warning,
        "CUDA work at import time",
    ),
    code("S900", "parse-error", Error, "The file could not be parsed"),
];

/// The registry entry of `code`. Panics on a code missing from [`CODES`]: a programming error
/// that the registry test catches for every rule.
pub fn lookup(code: &str) -> &'static Code {
    CODES
        .iter()
        .find(|c| c.code == code)
        .unwrap_or_else(|| panic!("finding code {code} is not in the registry"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_documented() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        for (i, c) in CODES.iter().enumerate() {
            assert!(
                CODES[..i].iter().all(|d| d.code != c.code),
                "{} twice",
                c.code
            );
            assert!(
                root.join(c.doc_page()).is_file(),
                "{} has no doc page",
                c.code
            );
        }
    }

    #[test]
    fn error_is_the_most_severe() {
        assert!(Severity::Error > Severity::Warning && Severity::Warning > Severity::Info);
        assert!(Severity::Warning.is_problem() && !Severity::Info.is_problem());
    }
}

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
    pub code: &'a str,
    pub name: &'a str,
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
    pub fn new(code: &'a str, message: &'a str, fix: &'a str) -> FindingDoc<'a> {
        let entry = CODES.iter().find(|c| c.code == code);
        FindingDoc {
            code,
            name: entry.map_or("", |c| c.name),
            severity: entry.map_or(Severity::Info, |c| c.severity),
            message,
            location: None,
            pids: &[],
            ports: &[],
            fix: FixDoc {
                message: fix,
                edits: [],
            },
            url: entry.map_or_else(String::new, Code::doc_page),
        }
    }
}

/// One runtime finding (D codes): the evidence it cites (pids, ports) and the fix it suggests.
/// Serialised as a [`FindingDoc`] (plus `chain`, D001's ancestry).
#[derive(Clone, Debug)]
pub struct Finding {
    pub code: &'static str,
    pub name: &'static str,
    pub severity: Severity,
    pub message: String,
    pub pids: Vec<i32>,
    pub ports: Vec<u16>,
    pub fix: String,
    /// For D001: the ancestry from the rank to the duplicate initialiser, rank first.
    pub path: Vec<i32>,
}

impl Finding {
    /// A finding of a registered code, with the registry's name and severity.
    pub fn new(
        code: &'static str,
        message: String,
        pids: Vec<i32>,
        ports: Vec<u16>,
        fix: String,
    ) -> Finding {
        let entry = lookup(code);
        Finding {
            code: entry.code,
            name: entry.name,
            severity: entry.severity,
            message,
            pids,
            ports,
            fix,
            path: Vec::new(),
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
        doc.name = self.name;
        doc.severity = self.severity;
        doc.pids = &self.pids;
        doc.ports = &self.ports;
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
