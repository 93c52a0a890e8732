//! The report document (`doctor report`), read back by `doctor merge`.

/// The `kind` of a report document.
pub const REPORT_KIND: &str = "doctor-report";
