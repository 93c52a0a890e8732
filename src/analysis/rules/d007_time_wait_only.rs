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

#[cfg(test)]
mod tests {
    use crate::model::finding::Rule;

    /// On the snapshot recorded from its real situation: only D007, and what it says.
    #[test]
    fn on_its_recorded_situation() {
        let found = super::super::on_recorded("d007", 29617, super::check);
        assert!(!found.is_empty(), "no D007 on its own situation");
        assert!(found.iter().all(|f| f.code == Rule::D007));
        insta::assert_json_snapshot!(found);
    }
}
