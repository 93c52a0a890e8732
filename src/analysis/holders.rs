//! The rows of `doctor ports`: one per (socket in scope, holding process) pair.

use serde::Serialize;

use crate::analysis::{Analysis, Identity};

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
/// every listening socket.
pub fn holders(a: &Analysis, all: bool) -> Vec<Holder> {
    let snap = a.snap;
    let mut rows = Vec::new();
    for s in &snap.sockets {
        let local_in = a.rendezvous_ports.contains(&s.local_port);
        let remote_in = a.rendezvous_ports.contains(&s.remote_port)
            && s.state != "LISTEN"
            && s.remote_port != 0;
        let listening = s.state == "LISTEN"
            || (s.proto == crate::model::snapshot::Proto::Udp && s.state == "UNCONN");
        if !(local_in || remote_in || (all && listening)) {
            continue;
        }
        let port = if local_in || !remote_in {
            s.local_port
        } else {
            s.remote_port
        };
        let pids = a.holders.get(&s.inode).cloned().unwrap_or_default();
        let base = |pid: Option<i32>| {
            let p = pid.and_then(|pid| a.process(pid));
            let id = pid.and_then(|pid| a.identity(pid)).cloned();
            Holder {
                port,
                proto: format!("{:?}", s.proto).to_lowercase(),
                state: s.state.clone(),
                local: format!("{}:{}", bracket(&s.local_addr), s.local_port),
                remote: (s.remote_port != 0)
                    .then(|| format!("{}:{}", bracket(&s.remote_addr), s.remote_port)),
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
                age_seconds: p.map(|p| ((snap.taken_at - p.start_time) * 10.0).round() / 10.0),
                command: p.map(|p| p.command()),
            }
        };
        if pids.is_empty() {
            rows.push(base(None));
        } else {
            rows.extend(pids.into_iter().map(|pid| base(Some(pid))));
        }
    }
    let state_order = |s: &str| if s == "LISTEN" { 0 } else { 1 };
    rows.sort_by(|x, y| {
        (x.port, state_order(&x.state), &x.state, x.pid, x.inode).cmp(&(
            y.port,
            state_order(&y.state),
            &y.state,
            y.pid,
            y.inode,
        ))
    });
    rows
}

fn bracket(addr: &std::net::IpAddr) -> String {
    match addr {
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        v4 => v4.to_string(),
    }
}
