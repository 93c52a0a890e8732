//! D009: a job's store has fewer ranks connected than its world size, for longer than a healthy
//! start takes: the job hangs at rendezvous. Names the missing ranks and what each live rank is
//! blocked in.

use super::*;
use crate::analysis::hang::Hang;
use crate::model::finding::{Finding, Rule};

pub fn check(a: &Analysis) -> Vec<Finding> {
    a.hangs().into_iter().map(|h| finding(a, &h)).collect()
}

fn finding(a: &Analysis, h: &Hang) -> Finding {
    let job = &a.jobs[h.job];
    let mut parts = vec![format!(
        "{} (root pid {}) has waited at rendezvous for at least {:.0}s: its store on port {} has {} of {} ranks \
         connected",
        job.id, job.root, h.waited, h.port, h.connected, h.world
    )];
    if let Some(addr) = h.foreign_addr {
        let host = h
            .store_host
            .map(|(pid, _)| format!("{} hosts the store here", describe(a, pid)))
            .unwrap_or_else(|| "the store is here".into());
        parts.push(format!(
            "MASTER_ADDR {addr} is not an address of this host, yet {host}: the ranks' clients go to {} \
             and nothing answers there (no connection to it is established)",
            endpoint(&addr.to_string(), h.port)
        ));
    }
    if !h.missing.is_empty() {
        parts.push(format!(
            "missing: {} (no live process on this host carries {})",
            rank_list(&h.missing),
            if h.missing.len() == 1 {
                "that identity"
            } else {
                "those identities"
            }
        ));
    }
    for &(pid, rank) in &h.unconnected {
        parts.push(format!(
            "rank {rank} {} is alive but not connected: {}",
            describe(a, pid),
            blocked_in(a, pid)
        ));
    }
    let waiting: Vec<String> = h
        .waiting
        .iter()
        .map(|&(pid, _)| format!("{} waits in {}", describe(a, pid), blocked_in(a, pid)))
        .collect();
    if !waiting.is_empty() {
        parts.push(format!("the connected ranks: {}", waiting.join("; ")));
    }
    let mut pids: Vec<i32> = h.waiting.iter().map(|(p, _)| *p).collect();
    pids.extend(h.unconnected.iter().map(|(p, _)| *p));
    Finding::new(Rule::D009, parts.join("; "), pids, vec![h.port], fix(a, h))
}

fn fix(a: &Analysis, h: &Hang) -> String {
    let job = &a.jobs[h.job];
    let addr = job
        .rendezvous
        .master_addr
        .clone()
        .unwrap_or_else(|| "127.0.0.1".into());
    let mut out = Vec::new();
    if let Some(bad) = h.foreign_addr {
        let mine: Vec<String> = a
            .snap
            .host
            .addresses
            .iter()
            .filter(|x| !x.is_loopback() && !x.is_unspecified() && !is_link_local(x))
            .take(3)
            .map(|x| x.to_string())
            .collect();
        let here = if mine.is_empty() {
            String::new()
        } else {
            format!(" (this host has {})", mine.join(", "))
        };
        out.push(format!(
            "MASTER_ADDR={bad} points away from rank 0 and its store: set MASTER_ADDR to an address of this host, \
             127.0.0.1 when every rank runs here, else one the other nodes reach{here}"
        ));
        return out.join("; ");
    }
    if !h.missing.is_empty() {
        out.push(format!(
            "start {} with MASTER_ADDR={addr} MASTER_PORT={} WORLD_SIZE={} (and check it can reach {}), or \
             relaunch with WORLD_SIZE equal to the number of ranks you start ({} here)",
            rank_list(&h.missing),
            h.port,
            h.world,
            endpoint(&addr, h.port),
            h.waiting.len() + h.unconnected.len()
        ));
    }
    for &(pid, _) in &h.unconnected {
        let state = a.process(pid).map(|p| p.state.as_str()).unwrap_or("");
        if state == "T" || state == "t" {
            out.push(format!("resume the stopped rank with `kill -CONT {pid}`"));
        } else {
            out.push(format!(
                "see why pid {pid} does not connect (`py-spy dump --pid {pid}`; a wrong MASTER_ADDR/MASTER_PORT in its \
                 environment; a firewall)"
            ));
        }
    }
    if out.is_empty() {
        out.push(format!(
            "{} rank(s) from other hosts never connected: check they started with MASTER_ADDR={addr} MASTER_PORT={} \
             and can reach it",
            h.world - h.connected,
            h.port
        ));
    }
    out.join("; ")
}

fn rank_list(ranks: &[i64]) -> String {
    let shown: Vec<String> = ranks.iter().take(8).map(|r| r.to_string()).collect();
    let more = if ranks.len() > 8 {
        format!(" and {} more", ranks.len() - 8)
    } else {
        String::new()
    };
    let word = if ranks.len() == 1 { "rank" } else { "ranks" };
    format!("{word} {}{more}", shown.join(", "))
}

/// `stopped (state T)`, or `syscall futex (wchan futex_wait_queue); Python: f (x.py:1) <- ...`.
fn blocked_in(a: &Analysis, pid: i32) -> String {
    let Some(p) = a.process(pid) else {
        return "unknown".into();
    };
    let mut s = match p.state.as_str() {
        "T" => "stopped (state T, e.g. SIGSTOP or Ctrl-Z)".to_string(),
        "t" => "stopped by a debugger (state t)".to_string(),
        "D" => "uninterruptible sleep (state D)".to_string(),
        _ => match (&p.syscall, &p.wchan) {
            (Some(sc), Some(w)) => format!("syscall {sc} (wchan {w})"),
            (Some(sc), None) => format!("syscall {sc}"),
            (None, Some(w)) => format!("wchan {w}"),
            (None, None) => format!("state {}", p.state),
        },
    };
    if !p.py_stack.is_empty() {
        let frames: Vec<&str> = p.py_stack.iter().take(4).map(String::as_str).collect();
        s.push_str(&format!("; Python: {}", frames.join(" <- ")));
    }
    s
}

/// fe80::/10: no use to ranks on other nodes.
fn is_link_local(ip: &std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => v4.is_link_local(),
        std::net::IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// `ADDR:PORT`, an IPv6 address in brackets (`[::1]:29500`: `::1:29500` reads as another address).
fn endpoint(addr: &str, port: u16) -> String {
    if addr.contains(':') && !addr.starts_with('[') {
        format!("[{addr}]:{port}")
    } else {
        format!("{addr}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use crate::model::finding::Rule;

    /// A rank told to reach an IPv6 store is told `[::1]:29901`, as `MASTER_ADDR=::1` with
    /// torch 2.15 was (`::1:29901` before).
    #[test]
    fn an_ipv6_endpoint_is_bracketed() {
        assert_eq!(super::endpoint("::1", 29901), "[::1]:29901");
        assert_eq!(super::endpoint("[fe80::1]", 29901), "[fe80::1]:29901");
        assert_eq!(super::endpoint("127.0.0.1", 29901), "127.0.0.1:29901");
        assert_eq!(super::endpoint("node-a", 29901), "node-a:29901");
    }

    /// On the snapshot recorded from its real situation (ranks 0 and 1 of a world of 3 connected
    /// to rank 0's store for 16 s, rank 2 never started): D009 names the missing rank.
    #[test]
    fn on_its_recorded_situation() {
        let found = super::super::on_recorded("d009", 29619, super::check);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].code, Rule::D009);
        assert!(
            found[0].message.contains("missing: rank 2"),
            "{}",
            found[0].message
        );
        insta::assert_json_snapshot!(found);
    }
}
