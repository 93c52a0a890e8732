//! Whether a rendezvous port nobody listens on can be bound the way torch's store binds it
//! (SO_REUSEADDR): a real bind made live (`sys::bindable`, in `Snapshot::bind_probes`) decides;
//! without one (a snapshot from elsewhere), the sockets tell: the server side of a closed store's
//! connection (FIN_WAIT2 and the like, no process holds it, its peer on this host connected to
//! the port from a port nobody listens on) was accepted by a listener that had SO_REUSEADDR, as
//! torch's store has, and does not stop a new store's bind.

use crate::analysis::facts::Analysis;
use crate::model::snapshot::{BindProbe, Proto, Socket};

/// States of a TCP socket whose owner closed it and that the kernel keeps for a while.
const CLOSING: &[&str] = &["FIN_WAIT1", "FIN_WAIT2", "CLOSING", "LAST_ACK"];

/// What doctor knows about binding a rendezvous port that nobody listens on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bindable {
    /// A bind with torch's options succeeded just now.
    Yes,
    /// A bind with torch's options failed with EADDRINUSE just now.
    No,
    /// Not tried (a snapshot from elsewhere, or the bind failed for another reason).
    Unknown,
}

impl<'a> Analysis<'a> {
    /// The TCP sockets on `port` (its local port) that are neither listeners nor TIME_WAIT.
    pub fn port_users(&self, port: u16) -> Vec<&'a Socket> {
        self.snap
            .sockets
            .iter()
            .filter(|s| {
                s.proto == Proto::Tcp
                    && s.local_port == port
                    && s.state != "LISTEN"
                    && s.state != "TIME_WAIT"
            })
            .collect()
    }

    fn listened(&self, port: u16) -> bool {
        self.snap
            .sockets
            .iter()
            .any(|s| s.proto == Proto::Tcp && s.state == "LISTEN" && s.local_port == port)
    }

    /// Rendezvous ports worth a bind probe: nobody listens, some connection uses the port, and
    /// no probe was made yet.
    pub fn bind_suspects(&self) -> Vec<u16> {
        self.rendezvous_ports
            .iter()
            .copied()
            .filter(|&p| {
                !self.listened(p) && !self.port_users(p).is_empty() && self.bind_probe(p).is_none()
            })
            .collect()
    }

    pub fn bind_probe(&self, port: u16) -> Option<&'a BindProbe> {
        self.snap.bind_probes.iter().find(|b| b.port == port)
    }

    pub fn bindable(&self, port: u16) -> Bindable {
        match self.bind_probe(port).and_then(|b| b.binds) {
            Some(true) => Bindable::Yes,
            Some(false) => Bindable::No,
            None => Bindable::Unknown,
        }
    }

    /// Whether `s` is what a closed store left behind: a closing socket no process holds, the
    /// server side of a connection its peer (on this host) made to `s.local_port` from a port
    /// nobody listens on. Such a socket inherited the store listener's SO_REUSEADDR.
    pub fn is_store_leftover(&self, s: &Socket) -> bool {
        if !CLOSING.contains(&s.state.as_str())
            || self.holders.get(&s.inode).is_some_and(|h| !h.is_empty())
        {
            return false;
        }
        self.snap.sockets.iter().any(|peer| {
            peer.proto == Proto::Tcp
                && peer.local_port == s.remote_port
                && peer.remote_port == s.local_port
                && same_host_addr(peer.local_addr, s.remote_addr)
                && !self.listened(peer.local_port)
        })
    }

    /// The sockets on `port` that may stop a bind with torch's options: none when a bind just
    /// succeeded; else those that are no leftover of a closed store (all of them when a bind
    /// just failed and only leftovers are seen).
    pub fn bind_blockers(&self, port: u16) -> Vec<&'a Socket> {
        if self.listened(port) {
            return Vec::new();
        }
        let users = self.port_users(port);
        match self.bindable(port) {
            Bindable::Yes => Vec::new(),
            b => {
                let real: Vec<&Socket> = users
                    .iter()
                    .copied()
                    .filter(|s| !self.is_store_leftover(s))
                    .collect();
                if real.is_empty() && b == Bindable::No {
                    users
                } else {
                    real
                }
            }
        }
    }
}

/// Loopback spellings (127/8, ::1, v4-mapped) compare equal; else the same address.
fn same_host_addr(a: std::net::IpAddr, b: std::net::IpAddr) -> bool {
    let canon = |ip: std::net::IpAddr| match ip {
        std::net::IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(std::net::IpAddr::V6(v6), std::net::IpAddr::V4),
        v4 => v4,
    };
    let (a, b) = (canon(a), canon(b));
    a == b || (a.is_loopback() && b.is_loopback())
}
