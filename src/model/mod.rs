//! Plain data every layer shares: the observed [`snapshot::Snapshot`] and the findings.

pub mod envelope;
pub mod finding;
pub mod identity;
pub mod load;
pub mod report;
pub mod repro;
pub mod rule;
pub mod run;
pub mod snapshot;
pub mod style;
pub mod text;
pub mod time;
