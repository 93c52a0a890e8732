//! Plain data every layer shares: the observed [`snapshot::Snapshot`] and the findings.

pub mod finding;
pub mod report;
pub mod snapshot;
pub mod time;
