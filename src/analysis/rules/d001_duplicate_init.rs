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

/// D001 in its transient form (`doctor run`): `child`, a descendant of rank `rank` that carries
/// its identity, re-ran the launch (`launch`, the script's statement, at `at`, its place, when
/// known) and failed to bind the rank's rendezvous `port` with EADDRINUSE because the rank holds
/// it. The one other place D001 is made, beside [`check`]'s standing form.
pub fn rerun_launch(
    a: &Analysis,
    rank: i32,
    child: i32,
    port: Option<u16>,
    launch: Option<&str>,
    at: Option<&str>,
) -> Finding {
    let line = at.map(|l| format!(" at {l}")).unwrap_or_default();
    let launch = launch.unwrap_or("the distributed launch");
    let mut f = Finding::new(
        Rule::D001,
        format!(
            "{} re-ran `{launch}`{line} and tried to bind the rendezvous port {} of rank {}; it failed with \
             EADDRINUSE because the rank holds it",
            describe(a, child),
            port.unwrap_or(0),
            describe(a, rank)
        ),
        vec![rank, child],
        port.into_iter().collect(),
        format!(
            "move `{launch}`{line} into `main()` under `if __name__ == \"__main__\":` so spawn/forkserver \
             children (DataLoader workers) do not run it again"
        ),
    );
    let ancestors = a.ancestors(child);
    let mut path: Vec<i32> = ancestors
        .iter()
        .take_while(|&&q| q != rank)
        .copied()
        .collect();
    path.push(rank);
    path.reverse();
    path.push(child);
    f.path = path;
    f
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

    /// The transient form over the same recording: the child and rank the standing form found,
    /// the same path, and the script's statement and place in message and fix.
    #[test]
    fn transient_form_on_the_recorded_situation() {
        fn transient(a: &super::Analysis) -> Vec<super::Finding> {
            super::check(a)
                .iter()
                .map(|f| {
                    let t = super::rerun_launch(
                        a,
                        f.pids[0],
                        f.pids[1],
                        Some(29611),
                        Some("fabric.launch()"),
                        Some("train.py:12"),
                    );
                    assert_eq!(t.path, f.path);
                    t
                })
                .collect()
        }
        let found = super::super::on_recorded("d001", 29611, transient);
        assert_eq!(found.len(), 1);
        assert!(
            found[0]
                .message
                .contains("re-ran `fabric.launch()` at train.py:12")
        );
        insta::assert_json_snapshot!(found);
    }
}
