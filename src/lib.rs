//! `ddp-doctor`: finds who holds the PyTorch rendezvous port, why, and how to fix it.
//!
//! Data flows one way: [`sys`] (every operating-system access) -> [`model`] (Snapshot, Finding)
//! -> [`analysis`] (roles, jobs, one file per rule) -> [`render`]; [`cmd`] (one file per
//! subcommand) sits on top, [`scan`] (static analysis of Python source) beside it.

/// `eprintln!` and `eprint!` for the whole crate: like std's, but a failed write to stderr (a
/// closed pipe, `/dev/full`) is ignored instead of panicking, so it never changes an exit code.
/// Defined before the modules so that every `eprintln!` in them resolves to this one.
macro_rules! eprintln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

macro_rules! eprint {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr(), $($arg)*);
    }};
}

pub mod analysis;
pub mod cmd;
pub mod error;
pub mod model;
pub mod render;
pub mod scan;
pub mod sys;
