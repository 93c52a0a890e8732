//! The `doctor ports` table, as readable as `ss`: one row per (process, port, state), the
//! number of sockets when several, the command cut to the terminal's width on a terminal.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use crate::analysis::holders::Holder;
use crate::render::grid::{grid, width};
use crate::render::{self, escape_control, terminal_width};

const HEADER: [&str; 10] = [
    "LOCAL", "PEER", "STATE", "PID", "USER", "ROLE", "RANK", "JOB", "AGE", "COMMAND",
];

/// Sockets of one process on one port in one state.
struct Group<'a> {
    first: &'a Holder,
    locals: BTreeSet<&'a str>,
    peers: BTreeSet<&'a str>,
    count: usize,
}

fn group(rows: &[Holder]) -> Vec<Group<'_>> {
    let mut groups: Vec<Group> = Vec::new();
    let mut index: BTreeMap<(Option<i32>, u16, &str, &str), usize> = BTreeMap::new();
    for h in rows {
        let key = (h.pid, h.port, h.proto.as_str(), h.state.as_str());
        let i = *index.entry(key).or_insert_with(|| {
            groups.push(Group {
                first: h,
                locals: BTreeSet::new(),
                peers: BTreeSet::new(),
                count: 0,
            });
            groups.len() - 1
        });
        let g = &mut groups[i];
        g.locals.insert(&h.local);
        if let Some(r) = &h.remote {
            g.peers.insert(r);
        }
        g.count += 1;
    }
    groups
}

/// One address for a set: the address itself, `addr:*` when only the ports differ, else `N`.
fn one_of(set: &BTreeSet<&str>, none: &str, what: &str) -> String {
    let mut it = set.iter();
    match (it.next(), set.len()) {
        (None, _) => none.to_string(),
        (Some(a), 1) => a.to_string(),
        (Some(a), n) => {
            let host = |s: &str| s.rsplit_once(':').map(|(h, _)| h.to_string());
            let h0 = host(a);
            if set.iter().all(|s| host(s) == h0) {
                format!("{}:*", h0.unwrap_or_default())
            } else {
                format!("{n} {what}")
            }
        }
    }
}

fn cells(g: &Group, users: &BTreeMap<u32, String>) -> [String; 10] {
    let h = g.first;
    let mut state = if h.proto == "udp" {
        format!("udp {}", h.state)
    } else {
        h.state.clone()
    };
    if g.count > 1 {
        state.push_str(&format!(" ({})", g.count));
    }
    let peer_none = if h.state == "LISTEN" || h.state == "UNCONN" {
        "*"
    } else {
        "-"
    };
    let or_dash = |s: Option<&String>| s.map_or_else(|| "-".to_string(), String::clone);
    [
        one_of(&g.locals, "-", "addresses"),
        one_of(&g.peers, peer_none, "peers"),
        state,
        h.pid.map_or("-".into(), |p| p.to_string()),
        users
            .get(&h.uid)
            .cloned()
            .unwrap_or_else(|| h.uid.to_string()),
        h.role.unwrap_or("-").to_string(),
        h.identity
            .as_ref()
            .map(|i| i.label())
            .filter(|l| !l.is_empty())
            .unwrap_or("-".into()),
        or_dash(h.job.as_ref()),
        h.age_seconds.map_or("-".into(), render::age),
        or_dash(h.command.as_ref()),
    ]
    .map(|c| match escape_control(&c) {
        Cow::Borrowed(_) => c,
        Cow::Owned(escaped) => escaped,
    })
}

/// The table; `users` names the uids (a uid without a name is shown as the number).
pub fn ports_table(rows: &[Holder], scope: &[u16], users: &BTreeMap<u32, String>) -> String {
    if rows.is_empty() {
        let list = scope
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        return if scope.is_empty() {
            "no listening sockets\n".into()
        } else {
            format!("no sockets on the rendezvous ports ({list})\n")
        };
    }
    use rayon::prelude::*;
    let mut rows: Vec<[String; 10]> = group(rows).par_iter().map(|g| cells(g, users)).collect();
    if let Some(w) = terminal_width() {
        let last = HEADER.len() - 1;
        // Every column but the command, with one space each side: the command gets the rest.
        let fixed: usize = (0..last)
            .map(|c| {
                rows.iter()
                    .map(|r| width(&r[c]))
                    .chain([HEADER[c].len()])
                    .max()
                    .unwrap_or(0)
                    + 2
            })
            .sum();
        for r in &mut rows {
            r[last] = render::shorten(&r[last], w.saturating_sub(fixed + 1).max(20));
        }
    }
    let mut s = grid(&HEADER, &rows);
    s.push('\n');
    s
}
