//! What a snapshot means: roles, identities and jobs ([`facts`]), then one file per rule
//! ([`rules`]), and the facts read from a command's output ([`traceback`]).

pub mod facts;
pub mod holders;
pub mod outcome;
pub mod rules;
pub mod traceback;
pub mod tree;

pub use facts::*;

impl<'a> Analysis<'a> {
    /// The facts of `snap` and every runtime finding over them.
    pub fn new(snap: &'a crate::model::snapshot::Snapshot, extra_ports: &[u16]) -> Analysis<'a> {
        let mut a = Analysis::facts(snap, extra_ports);
        a.findings = rules::evaluate(&a);
        a
    }
}
