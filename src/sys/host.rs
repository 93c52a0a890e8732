//! Host and GPU facts for `doctor report`: CPU model and memory through `sysinfo`, the OS name
//! from `/etc/os-release` (PRETTY_NAME, which `sysinfo` does not give), addresses and container
//! hints from `/proc`, GPUs from `nvidia-smi`.
//! Every read may fail; a missing fact is `null` (or a note), never an abort.

use std::collections::HashMap;
use std::fs;
use std::net::IpAddr;
use std::path::Path;
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde::Serialize;

#[derive(Serialize)]
pub struct HostFacts {
    pub hostname: String,
    pub os: Option<String>,
    pub kernel: String,
    pub cpu_model: Option<String>,
    pub cpu_count: usize,
    pub memory_total_bytes: Option<u64>,
    /// The addresses of this host (in this network namespace), loopback included; `doctor
    /// merge` matches MASTER_ADDR against them.
    pub addresses: Vec<String>,
    pub user: Option<String>,
    pub uid: u32,
    pub container: Container,
    /// The PID namespace the report's pids belong to.
    pub pid_namespace: Option<crate::model::report::PidNamespace>,
    pub ip_local_port_range: [u16; 2],
    pub ip_local_reserved_ports: Vec<[u16; 2]>,
}

#[derive(Serialize)]
pub struct Container {
    pub dockerenv: bool,
    pub containerenv: bool,
    pub cgroup: Option<String>,
    pub pid1_comm: Option<String>,
    /// A one-word guess from the hints above: `docker`, `podman`, `kubernetes`, `container`, or null.
    pub guess: Option<String>,
}

fn read_trimmed(path: &str) -> Option<String> {
    fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

pub fn os_name() -> Option<String> {
    let text = fs::read_to_string("/etc/os-release")
        .or_else(|_| fs::read_to_string("/usr/lib/os-release"))
        .ok()?;
    let field = |k: &str| {
        text.lines().find_map(|l| {
            l.strip_prefix(k)
                .and_then(|r| r.strip_prefix('='))
                .map(|v| v.trim().trim_matches('"').to_string())
        })
    };
    field("PRETTY_NAME").or_else(|| field("NAME"))
}

/// The CPU model and the total memory, through `sysinfo`, refreshing only those two: the CPU
/// list without usage or frequency (`/proc/cpuinfo`), the RAM without swap (`/proc/meminfo`).
fn cpu_and_memory() -> (Option<String>, Option<u64>) {
    use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind, System};
    let Ok(sys) = System::new_with_specifics(
        RefreshKind::nothing()
            .with_cpu(CpuRefreshKind::nothing())
            .with_memory(MemoryRefreshKind::nothing().with_ram()),
    ) else {
        return (None, None);
    };
    let cpu = sys
        .cpus()
        .first()
        .map(|c| c.brand().trim().to_string())
        .filter(|s| !s.is_empty());
    let memory = Some(sys.total_memory()).filter(|&m| m > 0);
    (cpu, memory)
}

/// Local addresses of this network namespace (every address of every interface, `getifaddrs`).
pub fn addresses() -> Vec<String> {
    local_addresses()
        .into_iter()
        .map(|a| a.to_string())
        .collect()
}

/// [`addresses`] as addresses, sorted, each once: the interfaces' IPv4 and IPv6 addresses
/// (`getifaddrs(3)`, through nix; one netlink dump instead of the kernel formatting
/// `/proc/net/fib_trie`).
pub fn local_addresses() -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = nix::ifaddrs::getifaddrs()
        .into_iter()
        .flatten()
        .filter_map(|ifa| {
            let a = ifa.address?;
            a.as_sockaddr_in()
                .map(|v4| IpAddr::V4(v4.ip()))
                .or_else(|| a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The account name of `uid` from the user database, or None (no fallback); cached, one
/// lookup per uid per run.
pub fn account_name(uid: u32) -> Option<String> {
    static CACHE: OnceLock<Mutex<HashMap<u32, Option<String>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(hit) = cache.lock().ok().and_then(|c| c.get(&uid).cloned()) {
        return hit;
    }
    let name = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name);
    if let Ok(mut c) = cache.lock() {
        c.insert(uid, name.clone());
    }
    name
}

pub fn container() -> Container {
    let dockerenv = Path::new("/.dockerenv").exists();
    let containerenv = Path::new("/run/.containerenv").exists();
    let cgroup = fs::read_to_string("/proc/self/cgroup").ok().map(|t| {
        // cgroup v2: `0::/path`; v1: the memory controller's path says most.
        t.lines()
            .find_map(|l| l.strip_prefix("0::").filter(|p| *p != "/"))
            .or_else(|| {
                t.lines()
                    .filter_map(|l| l.splitn(3, ':').nth(2))
                    .find(|p| *p != "/")
            })
            .unwrap_or("/")
            .to_string()
    });
    let pid1_comm = read_trimmed("/proc/1/comm");
    let cg = cgroup.as_deref().unwrap_or("");
    let guess = if cg.contains("kubepods") {
        Some("kubernetes")
    } else if containerenv || cg.contains("libpod") {
        Some("podman")
    } else if dockerenv || cg.contains("docker") {
        Some("docker")
    } else if cg.contains("lxc") {
        Some("lxc")
    } else if pid1_comm
        .as_deref()
        .is_some_and(|c| !matches!(c, "systemd" | "init"))
    {
        Some("container")
    } else {
        None
    };
    Container {
        dockerenv,
        containerenv,
        cgroup,
        pid1_comm,
        guess: guess.map(str::to_string),
    }
}

pub fn host_facts(base: &crate::model::snapshot::Host) -> HostFacts {
    let (cpu_model, memory_total_bytes) = cpu_and_memory();
    HostFacts {
        hostname: base.hostname.clone(),
        os: os_name(),
        kernel: base.kernel.clone(),
        cpu_model,
        cpu_count: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        memory_total_bytes,
        addresses: addresses(),
        user: account_name(base.observer_uid).or_else(|| std::env::var("USER").ok()),
        uid: base.observer_uid,
        container: container(),
        pid_namespace: pid_namespace(),
        ip_local_port_range: base.ephemeral_range,
        ip_local_reserved_ports: base.reserved_ports.clone(),
    }
}

/// This process's PID namespace: the inode of `/proc/self/ns/pid` (`pid:[4026531836]`) and
/// whether it is the initial one (the kernel gives the initial one a fixed inode).
pub fn pid_namespace() -> Option<crate::model::report::PidNamespace> {
    use crate::model::report::{INIT_PID_NS_INODE, PidNamespace};
    let link = fs::read_link("/proc/self/ns/pid").ok()?;
    let inode = parse_ns_link(&link.to_string_lossy())?;
    Some(PidNamespace {
        inode,
        init: inode == INIT_PID_NS_INODE,
    })
}

/// `pid:[4026531836]` -> 4026531836.
pub fn parse_ns_link(link: &str) -> Option<u64> {
    link.strip_prefix("pid:[")?.strip_suffix(']')?.parse().ok()
}

#[derive(Serialize)]
pub struct Gpus {
    /// `nvidia-smi`, `/proc/driver/nvidia`, or `none`.
    pub source: String,
    pub devices: Vec<Gpu>,
    pub processes: Vec<GpuProcess>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Serialize)]
pub struct Gpu {
    pub name: String,
    pub driver: Option<String>,
    pub memory: Option<String>,
}

#[derive(Serialize)]
pub struct GpuProcess {
    pub pid: i32,
    pub used_memory: String,
}

/// `nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader` lines.
pub fn parse_gpu_csv(text: &str) -> Vec<Gpu> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(',').map(str::trim).collect();
            Gpu {
                name: f.first().copied().unwrap_or("").to_string(),
                driver: f.get(1).map(|s| s.to_string()),
                memory: f.get(2).map(|s| s.to_string()),
            }
        })
        .collect()
}

/// `nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader` lines.
pub fn parse_apps_csv(text: &str) -> Vec<GpuProcess> {
    text.lines()
        .filter_map(|l| {
            let (pid, mem) = l.split_once(',')?;
            Some(GpuProcess {
                pid: pid.trim().parse().ok()?,
                used_memory: mem.trim().to_string(),
            })
        })
        .collect()
}

pub fn gpus() -> Gpus {
    let smi = super::command::stdout_text(
        Command::new("nvidia-smi").args([
            "--query-gpu=name,driver_version,memory.total",
            "--format=csv,noheader",
        ]),
        Duration::from_secs(15),
    );
    let smi_note = match smi {
        Ok(text) => {
            let devices = parse_gpu_csv(&text);
            let processes = super::command::stdout_text(
                Command::new("nvidia-smi").args([
                    "--query-compute-apps=pid,used_memory",
                    "--format=csv,noheader",
                ]),
                Duration::from_secs(15),
            )
            .map(|t| parse_apps_csv(&t))
            .unwrap_or_default();
            return Gpus {
                source: "nvidia-smi".into(),
                note: devices
                    .is_empty()
                    .then(|| "nvidia-smi lists no GPU".to_string()),
                devices,
                processes,
            };
        }
        Err(e) => Some(format!("nvidia-smi: {e}")),
    };
    let mut devices = Vec::new();
    if let Ok(dir) = fs::read_dir("/proc/driver/nvidia/gpus") {
        let driver = read_trimmed("/proc/driver/nvidia/version").and_then(|v| {
            v.lines()
                .next()
                .and_then(|l| {
                    l.split_whitespace().find(|w| {
                        w.chars().filter(|c| *c == '.').count() >= 1
                            && w.chars().next().is_some_and(|c| c.is_ascii_digit())
                    })
                })
                .map(str::to_string)
        });
        let mut paths: Vec<_> = dir.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        paths.sort();
        for p in paths {
            let Ok(info) = fs::read_to_string(p.join("information")) else {
                continue;
            };
            let name = info
                .lines()
                .find_map(|l| l.strip_prefix("Model:"))
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|| "unknown NVIDIA GPU".into());
            devices.push(Gpu {
                name,
                driver: driver.clone(),
                memory: None,
            });
        }
    }
    if !devices.is_empty() {
        return Gpus {
            source: "/proc/driver/nvidia".into(),
            devices,
            processes: Vec::new(),
            note: smi_note,
        };
    }
    Gpus {
        source: "none".into(),
        devices: Vec::new(),
        processes: Vec::new(),
        note: Some(format!(
            "none found: no nvidia-smi and no /proc/driver/nvidia/gpus ({})",
            smi_note.unwrap_or_default()
        )),
    }
}

/// NVIDIA GPUs the driver sees (`/proc/driver/nvidia/gpus`); 0 without the driver.
pub fn nvidia_gpus_installed() -> u32 {
    std::fs::read_dir("/proc/driver/nvidia/gpus").map_or(0, |d| d.count() as u32)
}

/// Visible NVIDIA GPUs, honouring CUDA_VISIBLE_DEVICES, without importing torch.
pub fn visible_gpus() -> u32 {
    let installed = nvidia_gpus_installed();
    if installed == 0 {
        return 0;
    }
    match std::env::var("CUDA_VISIBLE_DEVICES") {
        Ok(v) => {
            let ids: Vec<&str> = v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
            if ids.first().is_some_and(|s| s.starts_with('-')) {
                0
            } else {
                (ids.len() as u32).min(installed)
            }
        }
        Err(_) => installed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvidia_smi_csv() {
        // The format nvidia-smi prints for these queries (driver 550+).
        let g = parse_gpu_csv(
            "NVIDIA H200, 570.124.06, 143771 MiB\nNVIDIA H200, 570.124.06, 143771 MiB\n",
        );
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].name, "NVIDIA H200");
        assert_eq!(g[0].driver.as_deref(), Some("570.124.06"));
        assert_eq!(g[0].memory.as_deref(), Some("143771 MiB"));
        let p = parse_apps_csv("12345, 1024 MiB\nnot a pid, 3 MiB\n");
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].pid, 12345);
        assert_eq!(p[0].used_memory, "1024 MiB");
    }

    /// The kernel's own text tables of this namespace's local addresses: IPv4 `/32 host LOCAL`
    /// entries of `/proc/net/fib_trie`, IPv6 `/proc/net/if_inet6` (how doctor read them before
    /// `getifaddrs`).
    fn addresses_from_proc() -> Vec<IpAddr> {
        let mut out = Vec::new();
        let mut last: Option<IpAddr> = None;
        for line in fs::read_to_string("/proc/net/fib_trie").unwrap().lines() {
            let t = line.trim();
            if let Some(addr) = t.strip_prefix("|-- ") {
                last = addr.trim().parse().ok();
            } else if t.starts_with("/32 host LOCAL")
                && let Some(a) = last
            {
                out.push(a);
            }
        }
        for line in fs::read_to_string("/proc/net/if_inet6")
            .unwrap_or_default()
            .lines()
        {
            if let Some(n) = line
                .split_whitespace()
                .next()
                .and_then(|h| u128::from_str_radix(h, 16).ok())
            {
                out.push(IpAddr::V6(std::net::Ipv6Addr::from(n)));
            }
        }
        out.sort();
        out.dedup();
        out
    }

    #[test]
    fn getifaddrs_gives_the_addresses_of_the_kernel_tables() {
        let got = local_addresses();
        assert!(
            got.contains(&IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)),
            "{got:?}"
        );
        assert_eq!(got, addresses_from_proc());
    }
}
