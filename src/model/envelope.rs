//! The envelope every document starts with, whatever the command: `schema_version`, `kind`,
//! `doctor_version`, `hostname`, `taken_at` (docs/contracts.md, docs/schema/envelope.schema.json).

use serde::Serialize;

use crate::model::snapshot::SCHEMA_VERSION;

/// The version of doctor that wrote a document.
pub const DOCTOR_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The first five keys of every document. `#[serde(flatten)]` it first in a document's struct.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Envelope {
    pub schema_version: u32,
    /// What the document is: `doctor-ports`, `doctor-report`, ... (see [`Kind`]).
    pub kind: &'static str,
    pub doctor_version: &'static str,
    /// The machine the document describes (the one doctor ran on; `report --anonymize`
    /// replaces it as it replaces the host's name everywhere).
    pub hostname: String,
    /// When the document's facts were taken (RFC 3339 UTC).
    #[serde(with = "crate::model::time::serde_rfc3339")]
    pub taken_at: f64,
}

/// Every kind of document doctor writes, with its `kind` value. The JSON Schema of kind
/// `doctor-NAME` is `docs/schema/NAME.schema.json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Ports,
    PortsCheck,
    PortsFailed,
    PortsFree,
    Tree,
    Snapshot,
    Scan,
    Run,
    Report,
    Merge,
    Repro,
    ReproList,
    ReproVerify,
    Explain,
    ExplainList,
}

impl Kind {
    pub const ALL: &'static [Kind] = &[
        Kind::Ports,
        Kind::PortsCheck,
        Kind::PortsFailed,
        Kind::PortsFree,
        Kind::Tree,
        Kind::Snapshot,
        Kind::Scan,
        Kind::Run,
        Kind::Report,
        Kind::Merge,
        Kind::Repro,
        Kind::ReproList,
        Kind::ReproVerify,
        Kind::Explain,
        Kind::ExplainList,
    ];

    /// The `kind` value: `doctor-ports-check`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Ports => "doctor-ports",
            Kind::PortsCheck => "doctor-ports-check",
            Kind::PortsFailed => "doctor-ports-failed",
            Kind::PortsFree => "doctor-ports-free",
            Kind::Tree => "doctor-tree",
            Kind::Snapshot => "doctor-snapshot",
            Kind::Scan => "doctor-scan",
            Kind::Run => "doctor-run",
            Kind::Report => "doctor-report",
            Kind::Merge => "doctor-merge",
            Kind::Repro => "doctor-repro",
            Kind::ReproList => "doctor-repro-list",
            Kind::ReproVerify => "doctor-repro-verify",
            Kind::Explain => "doctor-explain",
            Kind::ExplainList => "doctor-explain-list",
        }
    }

    /// The schema's file name in docs/schema: `ports-check`.
    pub fn schema_name(self) -> &'static str {
        &self.as_str()["doctor-".len()..]
    }
}

impl Envelope {
    /// The envelope of a document of `kind` about `hostname`, its facts taken at `taken_at`.
    pub fn new(kind: Kind, hostname: impl Into<String>, taken_at: f64) -> Envelope {
        Envelope {
            schema_version: SCHEMA_VERSION,
            kind: kind.as_str(),
            doctor_version: DOCTOR_VERSION,
            hostname: hostname.into(),
            taken_at,
        }
    }

    /// The envelope as the first keys of a document built as a JSON value (`rest` follows; an
    /// envelope key in `rest` is replaced by the envelope's).
    pub fn wrap(&self, rest: serde_json::Value) -> serde_json::Value {
        let mut out = match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => serde_json::Map::new(),
        };
        if let serde_json::Value::Object(m) = rest {
            for (k, v) in m {
                if !out.contains_key(&k) {
                    out.insert(k, v);
                }
            }
        }
        serde_json::Value::Object(out)
    }
}
