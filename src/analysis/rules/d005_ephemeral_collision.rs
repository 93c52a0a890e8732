//! D005: a connection (not a listener) uses a rendezvous port as its local port while nobody
//! listens there, and a bind with torch's own socket options (SO_REUSEADDR) fails, or, without a
//! live bind to tell, the connection is no leftover of a closed store
//! ([`crate::analysis::bindability`]): the kernel handed the port to an outgoing connection.

use super::*;
use crate::analysis::bindability::Bindable;
use crate::model::finding::{Finding, Rule};

pub fn check(a: &Analysis) -> Vec<Finding> {
    let mut out = Vec::new();
    for &port in &a.rendezvous_ports {
        if !listeners_any(a, port).is_empty() {
            continue;
        }
        let checked = match a.bindable(port) {
            Bindable::No => "; a bind as torch's store makes it (SO_REUSEADDR) failed just now",
            _ => "",
        };
        for s in a.bind_blockers(port) {
            let pids = a.holders.get(&s.inode).cloned().unwrap_or_default();
            let who = match pids.first() {
                Some(&p) => describe(a, p),
                None => "a process doctor cannot see".into(),
            };
            let message = format!(
                "{who} has an outgoing connection ({} to {}:{}) whose local port is the rendezvous port {port}; \
                 binding {port} fails with EADDRINUSE although nobody listens on it{checked}",
                s.state, s.remote_addr, s.remote_port
            );
            let fix = format!(
                "launch on {}, or reserve {port} so the kernel never hands it out: \
                 `sysctl -w net.ipv4.ip_local_reserved_ports={port}`; the connection frees it when it closes",
                a.port_advice.text()
            );
            out.push(Finding::new(Rule::D005, message, pids, vec![port], fix));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::model::finding::Rule;

    /// On the snapshot recorded from its real situation: only D005, and what it says.
    #[test]
    fn on_its_recorded_situation() {
        let found = super::super::on_recorded("d005", 29615, super::check);
        assert!(!found.is_empty(), "no D005 on its own situation");
        assert!(found.iter().all(|f| f.code == Rule::D005));
        insta::assert_json_snapshot!(found);
    }
}
