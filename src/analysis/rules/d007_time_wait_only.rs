//! D007: only leftovers of closed connections use the port (TIME_WAIT; FIN_WAIT2 and the like
//! of a store that was closed or killed) and nobody listens: harmless, TCPStore binds with
//! SO_REUSEADDR, and a bind with that option succeeds (checked by a real bind when live).

use std::collections::BTreeMap;

use super::*;
use crate::analysis::bindability::Bindable;
use crate::model::finding::{Finding, Rule};

pub fn check(a: &Analysis) -> Vec<Finding> {
    let mut out = Vec::new();
    for &port in &a.rendezvous_ports {
        let tcp: Vec<_> = a
            .snap
            .sockets
            .iter()
            .filter(|s| s.proto == Proto::Tcp && s.local_port == port)
            .collect();
        if tcp.is_empty() || tcp.iter().any(|s| s.state == "LISTEN") {
            continue;
        }
        if !a.bind_blockers(port).is_empty() {
            continue;
        }
        let mut states: BTreeMap<&str, usize> = BTreeMap::new();
        for s in &tcp {
            *states.entry(s.state.as_str()).or_default() += 1;
        }
        let only_time_wait = states.len() == 1 && states.contains_key("TIME_WAIT");
        let what = if only_time_wait {
            "only TIME_WAIT sockets use port {port}: closed connections the kernel keeps for a while".replace("{port}", &port.to_string())
        } else {
            let list: Vec<String> = states.iter().map(|(s, n)| format!("{n} {s}")).collect();
            format!(
                "only leftovers of closed connections use port {port} ({}): what a store that was closed or \
                 killed leaves for a while",
                list.join(", ")
            )
        };
        let proof = match a.bindable(port) {
            Bindable::Yes => {
                "; a bind with torch's socket options (SO_REUSEADDR) succeeded just now"
            }
            _ => "",
        };
        out.push(Finding::new(
            Rule::D007,
            format!("{what}{proof}"),
            Vec::new(),
            vec![port],
            if only_time_wait {
                "nothing to do: TCPStore binds with SO_REUSEADDR, so a new bind over TIME_WAIT succeeds on Linux; \
                 if the bind still fails, look for another holder"
            } else {
                "nothing to do: TCPStore binds with SO_REUSEADDR, so a new bind over these leftovers succeeds on \
                 Linux; if the bind still fails, look for another holder"
            }
            .to_string(),
        ));
    }
    out
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
