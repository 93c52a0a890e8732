//! D008: a rendezvous port is held by a process that belongs to no training job (a forgotten
//! server, a notebook kernel, a crashed job's helper, a service). Warning; error when a job wants
//! the port and does not hold it itself (its rank failed, or will fail, to bind it).

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::model::finding::{Finding, Rule, Severity};
use crate::model::snapshot::Process;

pub fn check(a: &Analysis) -> Vec<Finding> {
    let mut out = Vec::new();
    for &port in &a.rendezvous_ports {
        for (pid, hows) in foreign_holders(a, port) {
            let Some(p) = a.process(pid) else { continue };
            let wanted_by: Vec<&crate::analysis::Job> = a
                .jobs
                .iter()
                .filter(|j| j.rendezvous.master_port == Some(port))
                .filter(|j| {
                    !j.pids
                        .iter()
                        .any(|&q| a.process(q).is_some_and(|q| a.listens_on(q, port)))
                })
                .collect();
            let hows: Vec<&str> = hows.into_iter().collect();
            let service = service_of(p);
            let message = format!(
                "port {port} ({}) is held by pid {pid} (user {}, `{}`, running for {}), which belongs to no training \
                 job: it holds the port as {}{}{}",
                why_rendezvous(a, port, &wanted_by),
                p.user.clone().unwrap_or_else(|| format!("uid {}", p.uid)),
                short(&p.command()),
                age(a.snap.taken_at - p.start_time),
                hows.join(" and "),
                service
                    .as_ref()
                    .map(|s| format!("; {}", s.what))
                    .unwrap_or_default(),
                if a.failed_binds.contains(&port) {
                    "; a rank failed to bind the port because of it".to_string()
                } else {
                    String::new()
                },
            );
            let stop = service
                .as_ref()
                .map(|s| s.stop.clone())
                .unwrap_or_else(|| format!("`kill {}`", join_spaced(&sharing_holders(a, pid))));
            let fix = format!(
                "either stop it: {stop}; or launch the job on a free port: {} (torchrun --master-port {})",
                a.port_advice.text(),
                a.port_advice.number()
            );
            let mut pids = vec![pid];
            for j in &wanted_by {
                pids.extend(
                    j.pids
                        .iter()
                        .copied()
                        .filter(|&q| a.role(q) == Role::Rank)
                        .take(4),
                );
            }
            let mut f = Finding::new(Rule::D008, message, pids, vec![port], fix);
            if !wanted_by.is_empty() || a.failed_binds.contains(&port) {
                f.severity = Severity::Error;
            }
            out.push(f);
        }
    }
    out
}

/// Holders of TCP sockets on `port` (local side) outside every job, with how they hold it.
fn foreign_holders(a: &Analysis, port: u16) -> BTreeMap<i32, BTreeSet<&'static str>> {
    let listening = !listeners_any(a, port).is_empty();
    let mut by_pid: BTreeMap<i32, BTreeSet<&'static str>> = BTreeMap::new();
    for s in a
        .snap
        .sockets
        .iter()
        .filter(|s| s.proto == Proto::Tcp && s.local_port == port && s.state != "TIME_WAIT")
    {
        let how = if s.state == "LISTEN" {
            "a listener"
        } else if listening {
            "an accepted connection"
        } else {
            "the local port of an outgoing connection"
        };
        for &pid in a.holders.get(&s.inode).into_iter().flatten() {
            if a.job(pid).is_some() || pid == a.snap.host.observer_pid {
                continue;
            }
            by_pid.entry(pid).or_default().insert(how);
        }
    }
    by_pid
}

fn why_rendezvous(a: &Analysis, port: u16, wanted_by: &[&crate::analysis::Job]) -> String {
    if let Some(j) = wanted_by.first() {
        format!("the MASTER_PORT of {} (root pid {})", j.id, j.root)
    } else if a.failed_binds.contains(&port) {
        "the port a rank failed to bind".into()
    } else if a.asked_ports.contains(&port) {
        "asked with --port".into()
    } else if a.used_ports.contains(&port) {
        "a MASTER_PORT seen on this host".into()
    } else if port == 29500 {
        "the default MASTER_PORT of torchrun, accelerate and DeepSpeed".into()
    } else {
        "the default rendezvous port of `torchrun --standalone` in older torch".into()
    }
}

/// A systemd service or a container the process runs in, and how to stop it.
pub(crate) struct Service {
    pub what: String,
    pub stop: String,
}

pub(crate) fn service_of(p: &Process) -> Option<Service> {
    let cg = p.cgroup.as_deref()?;
    let paths: Vec<&str> = cg.lines().filter_map(|l| l.splitn(3, ':').nth(2)).collect();
    for path in &paths {
        let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        if let Some(id) = parts.iter().find_map(|s| container_id(s)) {
            let short_id: String = id.chars().take(12).collect();
            let kube = parts.iter().any(|s| s.starts_with("kubepods"));
            return Some(if kube {
                Service {
                    what: format!("it runs in a Kubernetes pod's container {short_id}"),
                    stop: format!(
                        "delete its pod (`kubectl delete pod ...`), or `kill {}` inside it",
                        p.pid
                    ),
                }
            } else {
                Service {
                    what: format!("it runs in container {short_id}"),
                    stop: format!("`docker stop {short_id}` (or `podman stop {short_id}`)"),
                }
            });
        }
        let user_manager = parts
            .iter()
            .any(|s| s.starts_with("user@") && s.ends_with(".service"));
        if let Some(unit) = parts
            .iter()
            .rev()
            .find(|s| s.ends_with(".service") && !s.starts_with("user@"))
        {
            let ctl = if user_manager {
                "systemctl --user"
            } else {
                "systemctl"
            };
            return Some(Service {
                what: format!(
                    "it is the systemd service {unit} (it may be restarted if only killed)"
                ),
                stop: format!("`{ctl} stop {unit}`"),
            });
        }
    }
    None
}

/// The container id in one cgroup path component (`docker-<id>.scope`, `<id>`, `libpod-<id>`).
fn container_id(component: &str) -> Option<&str> {
    let c = component.strip_suffix(".scope").unwrap_or(component);
    let id = ["docker-", "libpod-", "crio-", "cri-containerd-"]
        .iter()
        .find_map(|pre| c.strip_prefix(pre))
        .unwrap_or(c);
    (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
}

fn short(cmd: &str) -> String {
    if cmd.chars().count() > 160 {
        let s: String = cmd.chars().take(157).collect();
        format!("{s}...")
    } else {
        cmd.to_string()
    }
}

/// `42s`, `5m 3s`, `2h 10m`, `3d 4h`.
pub(crate) fn age(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_cgroup(cg: &str) -> Process {
        Process {
            pid: 7,
            cgroup: Some(cg.into()),
            ..Process::default()
        }
    }

    #[test]
    fn services_and_containers_from_cgroup() {
        let s = service_of(&with_cgroup("0::/system.slice/jupyter.service")).unwrap();
        assert_eq!(s.stop, "`systemctl stop jupyter.service`");
        let s = service_of(&with_cgroup(
            "0::/user.slice/user-1000.slice/user@1000.service/app.slice/tb.service",
        ))
        .unwrap();
        assert_eq!(s.stop, "`systemctl --user stop tb.service`");
        let id = "a".repeat(64);
        let s = service_of(&with_cgroup(&format!("0::/system.slice/docker-{id}.scope"))).unwrap();
        assert!(s.stop.contains("docker stop aaaaaaaaaaaa"), "{}", s.stop);
        let s = service_of(&with_cgroup(&format!(
            "12:memory:/kubepods/burstable/pod1/{id}\n0::/"
        )))
        .unwrap();
        assert!(s.what.contains("Kubernetes"));
        assert!(
            service_of(&with_cgroup(
                "0::/user.slice/user-1000.slice/session-3.scope"
            ))
            .is_none()
        );
        assert!(service_of(&with_cgroup("4:memory:/process_api/7095b95b\n0::/")).is_none());
    }

    #[test]
    fn ages_read_naturally() {
        assert_eq!(age(5.2), "5s");
        assert_eq!(age(3725.0), "1h 2m");
    }
}

#[cfg(test)]
mod recorded {
    use crate::model::finding::Rule;

    /// On the snapshot recorded from its real situation: only D008, and what it says.
    #[test]
    fn on_its_recorded_situation() {
        let found = super::super::on_recorded("d008", 29500, super::check);
        assert!(!found.is_empty(), "no D008 on its own situation");
        assert!(found.iter().all(|f| f.code == Rule::D008));
        insta::assert_json_snapshot!(found);
    }
}
