//! One file per subcommand: arguments, orchestration, exit code. Commands never import each other.

pub mod merge;
pub mod ports;
pub mod report;
pub mod repro;
pub mod run;
