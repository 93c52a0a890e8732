//! D007: only TIME_WAIT sockets use the port: harmless, TCPStore binds with SO_REUSEADDR.

use super::*;
use crate::model::finding::{Finding, Rule};

pub fn check(a: &Analysis) -> Vec<Finding> {
    a.rendezvous_ports
        .iter()
        .filter(|&&port| {
            let mut tcp = a.snap.sockets.iter().filter(|s| s.proto == Proto::Tcp && s.local_port == port).peekable();
            tcp.peek().is_some() && tcp.all(|s| s.state == "TIME_WAIT")
        })
        .map(|&port| {
            Finding::new(
                Rule::D007,
                format!("only TIME_WAIT sockets use port {port}: closed connections the kernel keeps for a while"),
                Vec::new(),
                vec![port],
                "nothing to do: TCPStore binds with SO_REUSEADDR, so a new bind over TIME_WAIT succeeds on Linux; \
                 if the bind still fails, look for another holder"
                    .to_string(),
            )
        })
        .collect()
}
