//! Reading the live machine into a `Snapshot`. The only module (besides supervision) that touches
//! the operating system; Linux `/proc` only for now, behind `snapshot()` so another backend can be
//! added without touching the rules.

use std::collections::BTreeMap;

use std::fs;
use std::io::{self, ErrorKind};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::ffi::OsStrExt;
use std::time::{SystemTime, UNIX_EPOCH};

use rayon::prelude::*;

use crate::snapshot::{
    Host, Process, Proto, SCHEMA_VERSION, Snapshot, Socket, Unreadable, is_rendezvous_env,
};

/// Take a snapshot of this machine: every process, every TCP/UDP socket, the host facts.
pub fn snapshot() -> Snapshot {
    let taken_at = now();
    let host = host_facts();
    let clock = clock();
    let pids = list_pids();
    let results: Vec<(Option<Process>, Vec<Unreadable>)> = pids
        .par_iter()
        .map(|&pid| read_process(pid, clock))
        .collect();
    let mut processes = Vec::with_capacity(results.len());
    let mut unreadable = Vec::new();
    for (p, u) in results {
        processes.extend(p);
        unreadable.extend(u);
    }
    processes.sort_by_key(|p| p.pid);
    let sockets = read_sockets();
    Snapshot {
        schema_version: SCHEMA_VERSION,
        taken_at,
        host,
        processes,
        sockets,
        unreadable,
    }
}

pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn read_trimmed(path: &str) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

pub fn host_facts() -> Host {
    let ephemeral_range = read_trimmed("/proc/sys/net/ipv4/ip_local_port_range")
        .and_then(|s| {
            let mut it = s.split_whitespace().filter_map(|x| x.parse::<u16>().ok());
            Some([it.next()?, it.next()?])
        })
        .unwrap_or([32768, 60999]);
    let reserved_ports = read_trimmed("/proc/sys/net/ipv4/ip_local_reserved_ports")
        .map(|s| parse_port_list(&s))
        .unwrap_or_default();
    Host {
        hostname: read_trimmed("/proc/sys/kernel/hostname").unwrap_or_default(),
        kernel: read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_default(),
        ephemeral_range,
        reserved_ports,
        observer_uid: nix::unistd::geteuid().as_raw(),
        observer_pid: std::process::id() as i32,
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

/// One process, read now; `None` when it is gone or a kernel thread.
pub fn process(pid: i32) -> Option<Process> {
    read_process(pid, clock()).0
}

fn clock() -> &'static Clock {
    static CLOCK: std::sync::OnceLock<Clock> = std::sync::OnceLock::new();
    CLOCK.get_or_init(Clock::read)
}

struct Clock {
    boot_time: f64,
    ticks: f64,
}

impl Clock {
    fn read() -> Clock {
        let boot_time = fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("btime "))
                    .and_then(|v| v.trim().parse::<f64>().ok())
            })
            .unwrap_or(0.0);
        // SAFETY: sysconf has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        Clock {
            boot_time,
            ticks: if ticks > 0 { ticks as f64 } else { 100.0 },
        }
    }
}

pub fn list_pids() -> Vec<i32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .collect()
}

fn reason(err: &io::Error) -> String {
    match err.kind() {
        ErrorKind::PermissionDenied => "permission denied".into(),
        ErrorKind::NotFound => "process exited during the scan".into(),
        _ => match err.raw_os_error() {
            Some(libc::ESRCH) => "process exited during the scan".into(),
            _ => err.to_string(),
        },
    }
}

fn vanished(err: &io::Error) -> bool {
    err.kind() == ErrorKind::NotFound || err.raw_os_error() == Some(libc::ESRCH)
}

/// The fields of `/proc/PID/stat` we use.
pub struct Stat {
    pub comm: String,
    pub state: String,
    pub ppid: i32,
    pub pgid: i32,
    pub sid: i32,
    pub start_ticks: u64,
}

/// Parse `/proc/PID/stat`; `comm` may hold spaces and parentheses, so split at the last `)`.
pub fn parse_stat(text: &[u8]) -> Option<Stat> {
    let open = text.iter().position(|&b| b == b'(')?;
    let close = text.iter().rposition(|&b| b == b')')?;
    let comm = String::from_utf8_lossy(text.get(open + 1..close)?).into_owned();
    let rest = std::str::from_utf8(text.get(close + 1..)?).ok()?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] is field 3 (state); field N is f[N - 3].
    Some(Stat {
        comm,
        state: f.first()?.to_string(),
        ppid: f.get(1)?.parse().ok()?,
        pgid: f.get(2)?.parse().ok()?,
        sid: f.get(3)?.parse().ok()?,
        start_ticks: f.get(19)?.parse().ok()?,
    })
}

/// Read one process. `None` when it is gone (or a kernel thread, which holds no sockets).
fn read_process(pid: i32, clock: &Clock) -> (Option<Process>, Vec<Unreadable>) {
    let dir = format!("/proc/{pid}");
    let mut unreadable = Vec::new();
    let Some(stat) = fs::read(format!("{dir}/stat"))
        .ok()
        .and_then(|b| parse_stat(&b))
    else {
        return (None, unreadable);
    };
    if stat.ppid == 2 || pid == 2 {
        return (None, unreadable); // kernel thread
    }
    let uid = fs::metadata(&dir)
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap_or(u32::MAX);
    let mut note = |what: &str, err: &io::Error| {
        unreadable.push(Unreadable {
            pid,
            what: what.into(),
            reason: reason(err),
        });
    };
    let (argv, argv_lossy) = match fs::read(format!("{dir}/cmdline")) {
        Ok(raw) => split_nul(&raw),
        Err(e) if vanished(&e) => return (None, Vec::new()),
        Err(e) => {
            note("cmdline", &e);
            (Vec::new(), false)
        }
    };
    let exe = match fs::read_link(format!("{dir}/exe")) {
        Ok(p) => Some(p.to_string_lossy().into_owned()),
        // Zombies and kernel threads have no exe; permission errors are common and harmless here.
        Err(_) => None,
    };
    let zombie = stat.state == "Z";
    let env = match fs::read(format!("{dir}/environ")) {
        Ok(raw) => rendezvous_env(&raw),
        // A zombie has no memory left to read its environment from (ESRCH): it is still there.
        Err(_) if zombie => BTreeMap::new(),
        Err(e) if vanished(&e) => return (None, Vec::new()),
        Err(e) => {
            note("environ", &e);
            BTreeMap::new()
        }
    };
    let (socket_inodes, gpu) = match read_fds(&dir) {
        Ok(x) => x,
        Err(e) if vanished(&e) => return (None, Vec::new()),
        Err(e) => {
            note("fd", &e);
            (Vec::new(), false)
        }
    };
    let process = Process {
        pid,
        ppid: stat.ppid,
        pgid: stat.pgid,
        sid: stat.sid,
        uid,
        state: stat.state,
        start_time: clock.boot_time + stat.start_ticks as f64 / clock.ticks,
        comm: stat.comm,
        exe,
        argv,
        argv_lossy,
        env,
        socket_inodes,
        gpu,
    };
    (Some(process), unreadable)
}

/// Split NUL-separated bytes; invalid UTF-8 is replaced, never an error.
pub fn split_nul(raw: &[u8]) -> (Vec<String>, bool) {
    let mut lossy = false;
    let parts = raw
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| match std::str::from_utf8(s) {
            Ok(t) => t.to_string(),
            Err(_) => {
                lossy = true;
                String::from_utf8_lossy(s).into_owned()
            }
        })
        .collect();
    (parts, lossy)
}

pub fn rendezvous_env(raw: &[u8]) -> BTreeMap<String, String> {
    raw.split(|&b| b == 0)
        .filter_map(|kv| {
            let eq = kv.iter().position(|&b| b == b'=')?;
            let key = std::str::from_utf8(&kv[..eq]).ok()?;
            is_rendezvous_env(key).then(|| {
                (
                    key.to_string(),
                    String::from_utf8_lossy(&kv[eq + 1..]).into_owned(),
                )
            })
        })
        .collect()
}

/// Socket inodes and whether a `/dev/nvidia*` file is open.
fn read_fds(dir: &str) -> io::Result<(Vec<u64>, bool)> {
    let mut inodes = Vec::new();
    let mut gpu = false;
    let fd_dir = format!("{dir}/fd");
    for entry in fs::read_dir(&fd_dir)? {
        let Ok(entry) = entry else { continue };
        let Ok(target) = fs::read_link(entry.path()) else {
            continue;
        };
        let t = target.as_os_str().as_bytes();
        if let Some(rest) = t.strip_prefix(b"socket:[") {
            let inode = rest
                .strip_suffix(b"]")
                .and_then(|d| std::str::from_utf8(d).ok()?.parse::<u64>().ok());
            inodes.extend(inode);
        } else if t.starts_with(b"/dev/nvidia") {
            gpu = true;
        }
    }
    inodes.sort_unstable();
    inodes.dedup();
    Ok((inodes, gpu))
}

pub fn read_sockets() -> Vec<Socket> {
    let tables = [
        ("/proc/net/tcp", Proto::Tcp),
        ("/proc/net/tcp6", Proto::Tcp),
        ("/proc/net/udp", Proto::Udp),
        ("/proc/net/udp6", Proto::Udp),
    ];
    let mut sockets: Vec<Socket> = tables
        .par_iter()
        .flat_map_iter(|(path, proto)| {
            let text = fs::read(path).unwrap_or_default();
            parse_net_table(&text, *proto)
        })
        .collect();
    sockets.sort_by_key(|s| (s.local_port, s.inode));
    sockets
}

/// Parse a `/proc/net/{tcp,tcp6,udp,udp6}` table.
pub fn parse_net_table(text: &[u8], proto: Proto) -> Vec<Socket> {
    let text = String::from_utf8_lossy(text);
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (local_addr, local_port) = parse_endpoint(f.get(1)?)?;
            let (remote_addr, remote_port) = parse_endpoint(f.get(2)?)?;
            let st = u8::from_str_radix(f.get(3)?, 16).ok()?;
            Some(Socket {
                proto,
                state: state_name(proto, st).to_string(),
                local_addr,
                local_port,
                remote_addr,
                remote_port,
                uid: f.get(7)?.parse().ok()?,
                inode: f.get(9)?.parse().ok()?,
            })
        })
        .collect()
}

fn parse_endpoint(s: &str) -> Option<(IpAddr, u16)> {
    let (addr, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let addr = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(
            u32::from_str_radix(addr, 16).ok()?.to_le_bytes(),
        )),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                let word = u32::from_str_radix(&addr[i * 8..i * 8 + 8], 16).ok()?;
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word.to_le_bytes());
            }
            let v6 = Ipv6Addr::from(bytes);
            v6.to_ipv4_mapped()
                .map(IpAddr::V4)
                .unwrap_or(IpAddr::V6(v6))
        }
        _ => return None,
    };
    Some((addr, port))
}

fn state_name(proto: Proto, st: u8) -> &'static str {
    match (proto, st) {
        (Proto::Udp, 7) => "UNCONN",
        (_, 1) => "ESTABLISHED",
        (_, 2) => "SYN_SENT",
        (_, 3) => "SYN_RECV",
        (_, 4) => "FIN_WAIT1",
        (_, 5) => "FIN_WAIT2",
        (_, 6) => "TIME_WAIT",
        (_, 7) => "CLOSE",
        (_, 8) => "CLOSE_WAIT",
        (_, 9) => "LAST_ACK",
        (_, 10) => "LISTEN",
        (_, 11) => "CLOSING",
        (_, 12) => "NEW_SYN_RECV",
        _ => "UNKNOWN",
    }
}

/// True when `port` can be bound on all addresses right now, the way TCPStore binds it
/// (SO_REUSEADDR set, so TIME_WAIT does not count as taken).
pub fn port_is_free(port: u16) -> bool {
    // std sets SO_REUSEADDR on Unix listeners, as TCPStore does. Each bind is dropped before the
    // next, so the dual-stack v6 bind does not collide with our own v4 one.
    let v4 = std::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, port));
    let v4_ok = v4.is_ok();
    drop(v4);
    let v6 = std::net::TcpListener::bind((Ipv6Addr::UNSPECIFIED, port));
    let v6_ok = match &v6 {
        Ok(_) => true,
        // No IPv6 on this host: nothing can hold the port there.
        Err(e) => {
            e.raw_os_error() == Some(libc::EAFNOSUPPORT)
                || e.raw_os_error() == Some(libc::EADDRNOTAVAIL)
        }
    };
    v4_ok && v6_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_spaces_and_parens_in_comm() {
        let raw = b"4242 (py (worker) 1) S 4200 4200 4100 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 123456 0 0";
        let s = parse_stat(raw).unwrap();
        assert_eq!(s.comm, "py (worker) 1");
        assert_eq!(
            (s.state.as_str(), s.ppid, s.pgid, s.sid, s.start_ticks),
            ("S", 4200, 4200, 4100, 123456)
        );
    }

    #[test]
    fn net_table_v4_and_v6() {
        let v4 = b"  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:7334 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 55123 1 0000000000000000 100 0 0 10 0\n";
        let s = parse_net_table(v4, Proto::Tcp);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].local_addr.to_string(), "127.0.0.1");
        assert_eq!(
            (s[0].local_port, s[0].state.as_str(), s[0].inode, s[0].uid),
            (29492, "LISTEN", 55123, 1000)
        );
        let v6 = b"header\n   0: 00000000000000000000000001000000:7334 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1\n";
        let s = parse_net_table(v6, Proto::Tcp);
        assert_eq!(s[0].local_addr.to_string(), "::1");
        assert_eq!(s[0].local_port, 29492);
    }

    #[test]
    fn argv_with_invalid_utf8_is_kept() {
        let (argv, lossy) = split_nul(b"python\0tr\xffain.py\0");
        assert_eq!(
            argv,
            vec!["python".to_string(), "tr\u{fffd}ain.py".to_string()]
        );
        assert!(lossy);
    }

    #[test]
    fn only_rendezvous_env_is_kept() {
        let env = rendezvous_env(b"HF_TOKEN=hf_secret\0MASTER_PORT=29500\0LOCAL_RANK=0\0TORCHELASTIC_RUN_ID=abc\0PATH=/bin\0");
        assert_eq!(env.len(), 3);
        assert_eq!(env["MASTER_PORT"], "29500");
        assert!(!env.contains_key("HF_TOKEN"));
    }

    #[test]
    fn reserved_port_list() {
        assert_eq!(
            parse_port_list("29500,30000-30010"),
            vec![[29500, 29500], [30000, 30010]]
        );
        assert!(parse_port_list("").is_empty());
    }
}
