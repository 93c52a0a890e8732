//! Reading the live machine into a `Snapshot`: every process ([`crate::sys::proc`]), every
//! socket ([`crate::sys::sockets`]), the host facts. Linux only for now, behind `snapshot()` so
//! another backend can be added without touching the rules.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::model::snapshot::{Host, Snapshot};
use crate::sys::proc;
pub use crate::sys::proc::process;
pub use crate::sys::sockets::{port_is_free, read_sockets};

/// Take a snapshot of this machine: every process, every TCP/UDP socket, the host facts. The
/// processes are read in parallel ([`proc::read_processes`]) while the socket tables are read.
pub fn snapshot() -> Snapshot {
    let taken_at = now();
    let host = host_facts();
    let pids = proc::list_pids();
    let (results, sockets) = rayon::join(|| proc::read_processes(&pids), read_sockets);
    let mut processes = Vec::with_capacity(results.len());
    let mut unreadable = Vec::new();
    for (p, u) in results {
        processes.extend(p);
        unreadable.extend(u);
    }
    processes.sort_by_key(|p| p.pid);
    Snapshot {
        processes,
        sockets,
        unreadable,
        bind_probes: Vec::new(),
        ..Snapshot::new(taken_at, host)
    }
}

pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// This machine's name (empty when the system does not say).
pub fn hostname() -> String {
    sysinfo::System::host_name().unwrap_or_default()
}

pub fn host_facts() -> Host {
    let ephemeral_range = proc::sysctl("/proc/sys/net/ipv4/ip_local_port_range")
        .and_then(|s| {
            let mut it = s.split_whitespace().filter_map(|x| x.parse::<u16>().ok());
            Some([it.next()?, it.next()?])
        })
        .unwrap_or([32768, 60999]);
    let reserved_ports = proc::sysctl("/proc/sys/net/ipv4/ip_local_reserved_ports")
        .map(|s| parse_port_list(&s))
        .unwrap_or_default();
    Host {
        hostname: hostname(),
        kernel: sysinfo::System::kernel_version().unwrap_or_default(),
        ephemeral_range,
        reserved_ports,
        observer_uid: nix::unistd::geteuid().as_raw(),
        observer_pid: std::process::id() as i32,
        observer_pgid: nix::unistd::getpgrp().as_raw(),
        observer_sid: nix::unistd::getsid(None).map(|p| p.as_raw()).unwrap_or(0),
        addresses: super::host::local_addresses(),
    }
}

/// `29500,30000-30010` as inclusive ranges.
pub fn parse_port_list(text: &str) -> Vec<[u16; 2]> {
    text.split(',')
        .filter_map(|part| {
            let part = part.trim();
            match part.split_once('-') {
                Some((a, b)) => Some([a.trim().parse().ok()?, b.trim().parse().ok()?]),
                None => {
                    let p = part.parse().ok()?;
                    Some([p, p])
                }
            }
        })
        .collect()
}

/// Keep only the processes of this network namespace: sockets are per namespace, so a process
/// of another namespace (another container, another simulated node) cannot hold or collide with
/// a port seen here, unless it holds a socket of this namespace (see below). Their ancestors
/// stay, stripped of environment and sockets, so the process
/// tree (and whether a launcher is gone) reads the same. Processes whose namespace may not be
/// read are kept; processes gone since the snapshot are left out. Returns how many were left out.
pub fn same_netns_only(snap: &mut Snapshot) -> usize {
    use std::collections::{BTreeSet, HashMap};
    let Ok(mine) = proc::net_ns(None) else {
        return 0;
    };
    use rayon::prelude::*;
    // A socket of this namespace's tables held by a process of another one (it bound here and
    // moved: `unshare -n`, socket activation of a service with `PrivateNetwork=yes`, a socket
    // passed into a container) is held here: that process stays.
    let here: BTreeSet<u64> = snap.sockets.iter().map(|s| s.inode).collect();
    let other: BTreeSet<i32> = snap
        .processes
        .par_iter()
        .filter(|p| !p.socket_inodes.iter().any(|i| here.contains(i)))
        .filter(|p| match proc::net_ns(Some(p.pid)) {
            Ok(ns) => ns != mine,
            // Gone since the snapshot: its namespace is unknown; short-lived processes of other
            // namespaces must not leak in, and a gone process holds nothing now. A zombie's
            // namespace links cannot be read either, but it is still there (kept: it holds
            // nothing, and its parent reaps it or not).
            Err(e) => e.kind() != std::io::ErrorKind::PermissionDenied && !p.is_zombie(),
        })
        .map(|p| p.pid)
        .collect();
    if other.is_empty() {
        return 0;
    }
    let parent: HashMap<i32, i32> = snap.processes.iter().map(|p| (p.pid, p.ppid)).collect();
    let mut ancestors: BTreeSet<i32> = BTreeSet::new();
    for p in snap.processes.iter().filter(|p| !other.contains(&p.pid)) {
        let mut cur = p.ppid;
        let mut hops = 0;
        while cur > 0 && hops < 256 && other.contains(&cur) && ancestors.insert(cur) {
            cur = parent.get(&cur).copied().unwrap_or(0);
            hops += 1;
        }
    }
    let before = snap.processes.len();
    snap.processes
        .retain(|p| !other.contains(&p.pid) || ancestors.contains(&p.pid));
    for p in snap
        .processes
        .iter_mut()
        .filter(|p| ancestors.contains(&p.pid))
    {
        p.env.clear();
        p.socket_inodes.clear();
    }
    before - snap.processes.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn reserved_port_list() {
        assert_eq!(
            parse_port_list("29500,30000-30010"),
            vec![[29500, 29500], [30000, 30010]]
        );
        assert!(parse_port_list("").is_empty());
    }
}
