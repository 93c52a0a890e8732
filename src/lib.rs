//! `ddp-doctor`: finds who holds the PyTorch rendezvous port, why, and how to fix it.
//!
//! Data flows one way: [`sys`] (every operating-system access) -> [`model`] (Snapshot, Finding)
//! -> [`analysis`] (roles, jobs, one file per rule) -> [`render`]; [`cmd`] (one file per
//! subcommand) sits on top, [`scan`] (static analysis of Python source) beside it.

pub mod analysis;
pub mod cmd;
pub mod error;
pub mod model;
pub mod render;
pub mod scan;
pub mod sys;
