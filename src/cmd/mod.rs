//! One file per subcommand: arguments, orchestration, exit code. Commands never import each other.

pub mod merge;
pub mod ports;
pub mod report;
pub mod repro;
pub mod run;
pub mod scan;
pub mod snapshot;
pub mod tree;

use std::path::PathBuf;

use crate::analysis::Analysis;
use crate::model::snapshot::Snapshot;
use crate::sys::{blocked, freeport, observe};

/// A port number from the command line: 1-65535.
pub fn parse_port(s: &str) -> Result<u16, String> {
    match s.trim().parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => Ok(p as u16),
        Ok(p) => Err(format!("{p} is not a usable port (ports are 1-65535)")),
        Err(_) => Err(format!("'{s}' is not a port number (ports are 1-65535)")),
    }
}

pub fn load_or_observe(from: &Option<PathBuf>) -> anyhow::Result<Snapshot> {
    match from {
        Some(path) => Snapshot::load(path),
        None => Ok(observe::snapshot()),
    }
}

/// The snapshot to analyse: loaded (`--from`), or this machine now, where the ranks of a job that
/// may hang at rendezvous are also asked what they are blocked in (wchan, syscall, py-spy).
pub fn load_or_inspect(from: &Option<PathBuf>, ports: &[u16]) -> anyhow::Result<Snapshot> {
    let mut snap = load_or_observe(from)?;
    if from.is_none() {
        let suspects = Analysis::facts(&snap, ports).hang_suspects();
        if !suspects.is_empty() {
            blocked::inspect(&mut snap, &suspects);
        }
    }
    Ok(snap)
}

/// Facts and findings; for a live snapshot (`live`), fixes name a port a bind proved free now.
pub fn analyse<'a>(snap: &'a Snapshot, ports: &[u16], live: bool) -> Analysis<'a> {
    if live {
        Analysis::live(snap, ports, freeport::pick)
    } else {
        Analysis::new(snap, ports)
    }
}
