//! What a finding is, for every kind of check: one [`Severity`] and one enum of codes, [`Rule`]
//! (runtime D, cluster M, static S). A new rule adds one line to the `rules!` table.

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

/// Declares [`Rule`] and its table: one line per code (code, name, default severity, summary).
macro_rules! rules {
    ($($rule:ident, $name:literal, $severity:ident, $summary:literal;)*) => {
        /// One finding code, like ruff's `Rule`: runtime D, cluster M, static S. Its name, default
        /// severity, summary and doc page hang off it; documents spell it as its code ("D001").
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Rule {
            $($rule,)*
        }

        impl Rule {
            /// Every code doctor can report, in code order. Names and codes are a contract
            /// (docs/findings/).
            pub const ALL: &'static [Rule] = &[$(Rule::$rule,)*];

            /// The code as documents spell it: "D001".
            pub fn code(self) -> &'static str {
                match self {
                    $(Rule::$rule => stringify!($rule),)*
                }
            }

            /// The fixed kebab-case name: "duplicate-init".
            pub fn name(self) -> &'static str {
                match self {
                    $(Rule::$rule => $name,)*
                }
            }

            /// The severity a finding of this code has unless its rule says otherwise.
            pub fn severity(self) -> Severity {
                match self {
                    $(Rule::$rule => $severity,)*
                }
            }

            /// One line: what the code means.
            pub fn summary(self) -> &'static str {
                match self {
                    $(Rule::$rule => $summary,)*
                }
            }
        }
    };
}

use Severity::{Error, Info, Warning};

rules! {
    D001, "duplicate-init", Error, "a descendant of a rank initialises distributed again";
    D002, "port-held-by-other-job", Error, "the rendezvous port of one job is held by another job";
    D003, "stale-holder", Error, "the port is held by an orphaned, zombie or stuck process";
    D004, "port-in-ephemeral-range", Warning, "a rendezvous port lies inside the ephemeral port range";
    D005, "ephemeral-collision", Error, "an outgoing connection uses the rendezvous port as its local port";
    D006, "duplicate-rank", Error, "two live processes of one job claim the same rank";
    D007, "time-wait-only", Info, "only TIME_WAIT sockets use the port (harmless)";
    D008, "port-held-by-foreign-process", Warning, "a rendezvous port is held by a process that belongs to no training job";
    D009, "rendezvous-incomplete", Error, "a job's store has fewer ranks connected than its world size";
    M001, "master-not-found", Error, "no node of the cluster hosts the master";
    M002, "master-port-not-listening", Warning, "nothing listens on the master port on the master node";
    M003, "port-held-by-other-job", Error, "the master port is held by another job on some node";
    M004, "duplicate-rank-across-nodes", Error, "two nodes claim the same global rank";
    M005, "version-mismatch", Error, "torch / CUDA / NCCL / Lightning versions differ across nodes";
    M006, "mixed-jobs", Warning, "the reports belong to different jobs";
    M007, "stale-reports", Warning, "the reports were taken far apart in time";
    M008, "master-mismatch", Error, "nodes use different rendezvous endpoints";
    M009, "duplicate-node", Warning, "the same node was reported twice";
    M010, "missing-ranks", Info, "fewer ranks were seen than WORLD_SIZE";
    S001, "module-level-launch", Warning, "Distributed launch or init reachable at import time";
    S002, "spawn-reimports-main", Error, "Spawn or forkserver children re-run the module-level launch";
    S003, "module-level-cuda", Warning, "CUDA work at import time";
    S900, "parse-error", Error, "The file could not be parsed";
}

impl Rule {
    /// The rule a code names ("D001"), if any.
    pub fn from_code(code: &str) -> Option<Rule> {
        Rule::ALL.iter().copied().find(|r| r.code() == code)
    }

    /// The page that explains it (what, why, fix, an example).
    pub fn doc_page(self) -> String {
        format!("docs/findings/{}.md", self.code())
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

impl Serialize for Rule {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(self.code())
    }
}

/// `#[serde(flatten, serialize_with = "code_and_name")]` on a `Rule` field: the two keys
/// `"code"` and `"name"` every finding document starts with.
pub fn code_and_name<S: serde::Serializer>(rule: &Rule, ser: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct CodeAndName {
        code: &'static str,
        name: &'static str,
    }
    CodeAndName {
        code: rule.code(),
        name: rule.name(),
    }
    .serialize(ser)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_documented() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        for (i, r) in Rule::ALL.iter().enumerate() {
            assert!(Rule::ALL[..i].iter().all(|d| d < r), "{r} out of order");
            assert!(
                Rule::ALL[..i]
                    .iter()
                    .all(|d| d.name() != r.name() || d.code()[..1] != r.code()[..1]),
                "{r}: name {} twice in one family",
                r.name()
            );
            assert_eq!(Rule::from_code(r.code()), Some(*r));
            assert!(root.join(r.doc_page()).is_file(), "{r} has no doc page");
            assert_eq!(
                serde_json::to_string(r).unwrap(),
                format!("\"{}\"", r.code())
            );
        }
        assert_eq!(Rule::from_code("D000"), None);
        assert_eq!(Rule::D001.code(), "D001");
        assert_eq!(Rule::S900.name(), "parse-error");
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
            url: code.doc_page(),
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
