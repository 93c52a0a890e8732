//! A port doctor can honestly call free: below the ephemeral range, not reserved, not one the
//! caller says is in use, and a real bind of it succeeds now.

use std::collections::BTreeSet;
use std::sync::Mutex;

use crate::model::snapshot::Host;

/// The first port tried: next to torchrun's default, so the advice reads familiar.
pub const FIRST: u16 = 29510;

/// One free port for a rendezvous, or `None` when every candidate is taken.
pub fn pick(host: &Host, avoid: &BTreeSet<u16>) -> Option<u16> {
    pick_from(host, avoid, FIRST)
}

fn pick_from(host: &Host, avoid: &BTreeSet<u16>, first: u16) -> Option<u16> {
    candidates(host, first).find(|p| !avoid.contains(p) && binds(*p))
}

/// Candidates in order: from `first` up to the ephemeral range, then from 20000 (1024 when the
/// range starts lower) up to `first`; reserved ports left out.
fn candidates(host: &Host, first: u16) -> impl Iterator<Item = u16> + '_ {
    let lo = match host.ephemeral_range[0] {
        0 => 32768,
        lo => lo,
    };
    let low_start = if lo > 20000 { 20000 } else { 1024 };
    let first = first.clamp(low_start, lo.saturating_sub(1));
    (first..lo).chain(low_start..first).filter(move |p| {
        !host
            .reserved_ports
            .iter()
            .any(|[a, b]| *a <= *p && *p <= *b)
    })
}

/// A real bind succeeds now, made as torch's store binds (`sys::bindable`: `SO_REUSEADDR`, every
/// IPv4 and IPv6 address) and closed at once. The socket never listens: while doctor checks a
/// port that a job starts on at that moment, the job's store still binds and listens, and no
/// connection meant for the job reaches doctor (a listener, as `TcpListener::bind` makes, would
/// make the store's bind fail).
pub fn binds(port: u16) -> bool {
    crate::sys::bindable::bound(port).is_ok()
}

/// A port for a process doctor starts itself (`doctor repro`): free, below the ephemeral range
/// of this host, and never handed out twice by this process. The search starts at a place that
/// depends on the pid, so two doctors started together rarely try the same port first.
pub fn for_a_new_job() -> anyhow::Result<u16> {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let host = crate::sys::observe::host_facts();
    let lo = host.ephemeral_range[0].max(21024);
    let first = 20000 + (std::process::id().wrapping_mul(7919) % u32::from(lo - 20000)) as u16;
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let port = pick_from(&host, &given, first)
        .ok_or_else(|| anyhow::anyhow!("no free TCP port below the ephemeral range"))?;
    given.insert(port);
    Ok(port)
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    fn host(lo: u16, reserved: Vec<[u16; 2]>) -> Host {
        Host {
            ephemeral_range: [lo, 60999],
            reserved_ports: reserved,
            ..Host::default()
        }
    }

    #[test]
    fn picks_below_the_range_skipping_reserved_and_avoided() {
        let h = host(32768, vec![[29510, 29511]]);
        let avoid: BTreeSet<u16> = [29512].into_iter().collect();
        let p = pick(&h, &avoid).unwrap();
        assert!((29513..32768).contains(&p), "{p}");
        let l = TcpListener::bind(("0.0.0.0", p)).expect("the port picked binds");
        // Taken now: never picked again.
        assert_ne!(pick(&h, &avoid), Some(p));
        drop(l);
    }

    #[test]
    fn low_range_still_gives_a_port_below_it() {
        let h = host(10000, vec![]);
        let p = pick(&h, &BTreeSet::new()).unwrap();
        assert!((1024..10000).contains(&p), "{p}");
    }

    #[test]
    fn new_job_ports_differ() {
        let a = for_a_new_job().unwrap();
        let b = for_a_new_job().unwrap();
        assert_ne!(a, b);
    }
}
