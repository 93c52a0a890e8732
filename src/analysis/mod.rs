//! What a snapshot means: roles, identities and jobs ([`facts`]), then one file per rule
//! ([`rules`]), and the facts read from a command's output ([`traceback`]).

pub mod bindability;
pub mod cluster;
pub mod facts;
pub mod hang;
pub mod holders;
pub mod outcome;
mod rendezvous;
pub mod repro;
pub mod rules;
pub mod run_diagnosis;
pub mod traceback;
pub mod tree;

pub use facts::*;

use std::collections::BTreeSet;

use crate::model::snapshot::{Host, Snapshot};

/// Finds a free port on this machine (the sys layer's `freeport::pick`), given to the analysis
/// of a live snapshot so its fixes name a port a bind just proved free.
pub type PortPicker = fn(&Host, &BTreeSet<u16>) -> Option<u16>;

impl<'a> Analysis<'a> {
    /// Roles, identities, jobs (those of the process tree, then joined by rendezvous) and ports;
    /// no findings yet (see [`Analysis::new`]).
    pub fn facts(snap: &'a Snapshot, extra_ports: &[u16]) -> Analysis<'a> {
        let mut a = Analysis::tree_facts(snap, extra_ports);
        a.join_jobs_by_rendezvous();
        a.collect_ports(extra_ports);
        a
    }

    /// The facts of `snap` and every runtime finding over them, for a snapshot that may come
    /// from another machine: fixes name "a free port below N", never a number.
    pub fn new(snap: &'a Snapshot, extra_ports: &[u16]) -> Analysis<'a> {
        let mut a = Analysis::facts(snap, extra_ports);
        a.findings = rules::evaluate(&a);
        a
    }

    /// As [`Analysis::new`] for a snapshot of this machine taken just now: fixes name a port
    /// `pick` proved free.
    pub fn live(snap: &'a Snapshot, extra_ports: &[u16], pick: PortPicker) -> Analysis<'a> {
        let mut a = Analysis::facts(snap, extra_ports);
        a.pick_port(pick);
        a.findings = rules::evaluate(&a);
        a
    }

    /// The live analysis after a rank of a job failed to bind `port` (`doctor run`): a process
    /// outside every job that holds it is the cause (D008 at error level).
    pub fn after_failed_bind(snap: &'a Snapshot, port: u16, pick: PortPicker) -> Analysis<'a> {
        let mut a = Analysis::facts(snap, &[port]);
        a.failed_binds.insert(port);
        a.pick_port(pick);
        a.findings = rules::evaluate(&a);
        a
    }

    /// The live analysis at the moment `doctor run --timeout` stops the command: a job that has
    /// not completed its rendezvous by then hangs (D009), however short the timeout.
    pub fn at_timeout(snap: &'a Snapshot, pick: PortPicker) -> Analysis<'a> {
        let mut a = Analysis::facts(snap, &[]);
        a.hang_after = 0.0;
        a.pick_port(pick);
        a.findings = rules::evaluate(&a);
        a
    }

    fn pick_port(&mut self, pick: PortPicker) {
        if let Some(p) = pick(&self.snap.host, &self.taken_ports()) {
            self.port_advice = PortAdvice::Free(p);
        }
    }

    /// Ports no fix may suggest: every rendezvous port (defaults included), every port a launcher
    /// or rank names, and every local port of a socket in the snapshot.
    pub fn taken_ports(&self) -> BTreeSet<u16> {
        let mut out = self.rendezvous_ports.clone();
        out.extend(&self.used_ports);
        out.extend(self.snap.sockets.iter().map(|s| s.local_port));
        out
    }
}
