//! D001: a child of a rank (spawn/forkserver/fork child, DataLoader worker) carries the rank's identity and binds or connects to the rendezvous port on a socket of its own.

use std::collections::BTreeSet;

use super::*;
use crate::model::finding::{Finding, Rule};

pub fn check(a: &Analysis) -> Vec<Finding> {
    let mut out = Vec::new();
    for p in &a.snap.processes {
        if !a.role(p.pid).is_rank_descendant_kind() || p.is_zombie() {
            continue;
        }
        let ancestors = a.ancestors(p.pid);
        let Some(pos) = ancestors.iter().position(|&q| a.role(q) == Role::Rank) else {
            continue;
        };
        let rank = ancestors[pos];
        if !a.carries_identity_of(p.pid, rank) {
            continue;
        }
        let Some(port) = a.identity(rank).and_then(|i| i.master_port) else {
            continue;
        };
        // Sockets inherited from an ancestor (fork) are the ancestor's, not a second init.
        let inherited: BTreeSet<u64> = ancestors[..=pos]
            .iter()
            .filter_map(|&q| a.process(q))
            .flat_map(|q| q.socket_inodes.iter().copied())
            .collect();
        let own = a.sockets_of(p.pid).into_iter().filter(|s| {
            s.proto == Proto::Tcp
                && !inherited.contains(&s.inode)
                && (s.local_port == port || s.remote_port == port)
        });
        let Some(sock) = own.min_by_key(|s| s.state != "LISTEN") else {
            continue;
        };
        let what = if sock.state == "LISTEN" {
            "listens on"
        } else {
            "is connected to"
        };
        let mut path: Vec<i32> = ancestors[..=pos].iter().rev().copied().collect();
        path.push(p.pid);
        let chain = path
            .iter()
            .map(|&q| describe(a, q))
            .collect::<Vec<_>>()
            .join(" -> ");
        let message = format!(
            "{} re-ran the training script's distributed launch: it carries the identity of rank pid {rank} and {what} \
             the rendezvous port {port} with a socket of its own. Path: {chain}",
            describe(a, p.pid)
        );
        let mut f = Finding::new(
            Rule::D001,
            message,
            vec![rank, p.pid],
            vec![port],
            guard_fix(a, rank),
        );
        f.path = path;
        out.push(f);
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::model::finding::Rule;

    /// On the snapshot recorded from its real situation: only D001, and what it says.
    #[test]
    fn on_its_recorded_situation() {
        let found = super::super::on_recorded("d001", 29611, super::check);
        assert!(!found.is_empty(), "no D001 on its own situation");
        assert!(found.iter().all(|f| f.code == Rule::D001));
        insta::assert_json_snapshot!(found);
    }
}
