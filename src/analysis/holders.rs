//! The rows of `doctor ports`: one per (socket in scope, holding process) pair.

use serde::Serialize;

use crate::analysis::{Analysis, Identity};
use crate::model::snapshot::{Proto, Socket};

/// One row of `doctor ports`: a (socket, holding process) pair.
#[derive(Serialize)]
pub struct Holder {
    pub port: u16,
    pub proto: String,
    pub state: String,
    pub local: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    pub inode: u64,
    pub pid: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ppid: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pgid: Option<i32>,
    pub uid: u32,
    pub role: Option<&'static str>,
    pub rank: Option<i64>,
    pub local_rank: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<Identity>,
    pub job: Option<String>,
    pub age_seconds: Option<f64>,
    pub command: Option<String>,
}

/// Rows for the sockets in scope: rendezvous ports (local or remote side), and with `all`
/// every listening socket. Built in parallel: `--all` on a busy node is ten thousand rows.
pub fn holders(a: &Analysis, all: bool) -> Vec<Holder> {
    use rayon::prelude::*;
    // (socket, port, holder) triples, sorted before the rows are built (rows are large to move).
    let mut keys: Vec<(&Socket, u16, Option<i32>)> = a
        .snap
        .sockets
        .iter()
        .filter_map(|s| Some((s, port_in_scope(a, s, all)?)))
        .flat_map(|(s, port)| {
            let pids = a.holders.get(&s.inode).map_or(&[][..], Vec::as_slice);
            let none = pids.is_empty().then_some((s, port, None));
            none.into_iter()
                .chain(pids.iter().map(move |&pid| (s, port, Some(pid))))
        })
        .collect();
    let state_order = |s: &str| if s == "LISTEN" { 0 } else { 1 };
    keys.par_sort_by(|(x, xport, xpid), (y, yport, ypid)| {
        (*xport, state_order(&x.state), &x.state, *xpid, x.inode).cmp(&(
            *yport,
            state_order(&y.state),
            &y.state,
            *ypid,
            y.inode,
        ))
    });
    keys.par_iter()
        .map(|&(s, port, pid)| row(a, s, port, pid))
        .collect()
}

/// The port a socket is listed under, when it is in scope: its local port, or the remote one
/// for a connection to a rendezvous port.
fn port_in_scope(a: &Analysis, s: &Socket, all: bool) -> Option<u16> {
    let local_in = a.rendezvous_ports.contains(&s.local_port);
    let remote_in =
        a.rendezvous_ports.contains(&s.remote_port) && s.state != "LISTEN" && s.remote_port != 0;
    let listening = s.state == "LISTEN" || (s.proto == Proto::Udp && s.state == "UNCONN");
    if !(local_in || remote_in || (all && listening)) {
        return None;
    }
    Some(if local_in || !remote_in {
        s.local_port
    } else {
        s.remote_port
    })
}

/// One row: socket `s` listed under `port`, held by `pid` (`None`: no visible holder).
fn row(a: &Analysis, s: &Socket, port: u16, pid: Option<i32>) -> Holder {
    let p = pid.and_then(|pid| a.process(pid));
    let id = pid.and_then(|pid| a.identity(pid)).cloned();
    Holder {
        port,
        proto: s.proto.name().to_string(),
        state: s.state.clone(),
        local: endpoint(&s.local_addr, s.local_port),
        remote: (s.remote_port != 0).then(|| endpoint(&s.remote_addr, s.remote_port)),
        inode: s.inode,
        pid,
        ppid: p.map(|p| p.ppid),
        pgid: p.map(|p| p.pgid),
        uid: p.map_or(s.uid, |p| p.uid),
        role: pid.map(|pid| a.role(pid).name()),
        rank: id.as_ref().and_then(|i| i.rank),
        local_rank: id.as_ref().and_then(|i| i.local_rank),
        identity: id,
        job: pid.and_then(|pid| a.job(pid)).map(|j| j.id.clone()),
        age_seconds: p.map(|p| ((a.snap.taken_at - p.start_time) * 10.0).round() / 10.0),
        command: p.map(|p| p.command()),
    }
}

/// `addr:port`, an IPv6 address in brackets.
fn endpoint(addr: &std::net::IpAddr, port: u16) -> String {
    match addr {
        std::net::IpAddr::V6(v6) => format!("[{v6}]:{port}"),
        std::net::IpAddr::V4(v4) => format!("{v4}:{port}"),
    }
}
