//! D004: a rendezvous port the user chose lies inside the ephemeral range and is not reserved.
//! A port a launcher picked by itself (Lightning without MASTER_PORT, `torchrun --standalone`)
//! was free when picked and is held by the job: that is no risk of the user's making.

use super::*;
use crate::model::finding::{Finding, Rule};

pub fn check(a: &Analysis) -> Vec<Finding> {
    let [lo, hi] = a.snap.host.ephemeral_range;
    a.fixed_ports
        .iter()
        .filter(|&&port| in_ephemeral_range(&a.snap.host, port))
        .map(|&port| {
            let pids: Vec<i32> = a
                .snap
                .processes
                .iter()
                .filter(|p| a.role(p.pid) == Role::Rank && a.identity(p.pid).and_then(|i| i.master_port) == Some(port))
                .map(|p| p.pid)
                .collect();
            let message = format!(
                "rendezvous port {port} is a fixed choice (set in the job's environment, a launcher flag or --port) and \
                 lies inside the ephemeral port range {lo}-{hi} without being reserved: any outgoing connection on this \
                 host may be given it as its local port, and then the store cannot bind it"
            );
            let fix = format!(
                "choose a port below {lo}: {}; or reserve it: `sysctl -w net.ipv4.ip_local_reserved_ports={port}` \
                 (add to /etc/sysctl.d to keep it)",
                a.port_advice.text()
            );
            Finding::new(Rule::D004, message, pids, vec![port], fix)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::model::finding::Rule;

    /// On the snapshot recorded from its real situation: only D004, and what it says.
    #[test]
    fn on_its_recorded_situation() {
        let found = super::super::on_recorded("d004", 40614, super::check);
        assert!(!found.is_empty(), "no D004 on its own situation");
        assert!(found.iter().all(|f| f.code == Rule::D004));
        insta::assert_json_snapshot!(found);
    }
}
