//! The socket tables of this network namespace: netlink `sock_diag`, with the `/proc/net` text
//! tables as fallback; and whether a port can be bound now.

use std::ffi::CStr;
use std::io::{self, ErrorKind};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::OwnedFd;
use std::time::Duration;

use rayon::prelude::*;

use netlink_packet_core::{
    DoneBuffer, ErrorBuffer, NLM_F_DUMP, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, NetlinkBuffer,
    NetlinkHeader, NetlinkMessage, Parseable,
};
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_packet_sock_diag::constants::{SOCK_DIAG_BY_FAMILY, TCP_SYN_RECV};
use netlink_packet_sock_diag::inet::{
    ExtensionFlags, InetRequest, InetResponseHeader, SocketId, StateFlags,
};

use crate::model::snapshot::{Proto, Socket};
use rustix::io::Errno;
use rustix::net::netlink::SocketAddrNetlink;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

use crate::sys::proc::{Until, read_at};

/// Every TCP and UDP socket of this network namespace: the rows of `/proc/net/{tcp,tcp6,udp,udp6}`.
///
/// Each table is asked of the kernel through netlink `sock_diag` (binary records; the kernel
/// formatting ten thousand text lines costs several times more), and read from the `/proc/net`
/// text table instead wherever netlink cannot give the same rows: no `sock_diag` support for that
/// protocol, any error, or a TCP request socket (`SYN_RECV`), whose owner uid only the text table
/// reports.
pub fn read_sockets() -> Vec<Socket> {
    let tables = [
        (c"/proc/net/tcp", libc::AF_INET, Proto::Tcp),
        (c"/proc/net/tcp6", libc::AF_INET6, Proto::Tcp),
        (c"/proc/net/udp", libc::AF_INET, Proto::Udp),
        (c"/proc/net/udp6", libc::AF_INET6, Proto::Udp),
    ];
    let mut sockets: Vec<Socket> = tables
        .par_iter()
        .flat_map_iter(|&(path, family, proto)| {
            diag_sockets(family, proto).unwrap_or_else(|_| proc_net_table(path, proto))
        })
        .collect();
    sockets.sort_by_key(|s| (s.local_port, s.inode));
    sockets
}

/// The TCP socket (v4 or v6) with this inode, from the `/proc/net` text tables.
pub fn tcp_socket_by_inode(inode: u64) -> Option<Socket> {
    [c"/proc/net/tcp", c"/proc/net/tcp6"]
        .into_iter()
        .find_map(|path| {
            proc_net_table(path, Proto::Tcp)
                .into_iter()
                .find(|s| s.inode == inode)
        })
}

fn proc_net_table(path: &CStr, proto: Proto) -> Vec<Socket> {
    let mut text = Vec::with_capacity(256 * 1024);
    if read_at(rustix::fs::CWD, path, &mut text, Until::Eof).is_err() {
        text.clear();
    }
    parse_net_table(&text, proto)
}

/// `TCP_ESTABLISHED` (1) to `TCP_NEW_SYN_RECV` (12): every state `/proc/net/tcp` lists, and not
/// `TCP_BOUND_INACTIVE` (bound-only sockets, which the text tables do not list).
const ALL_STATES: u32 = 0x1ffe;

/// One `sock_diag` dump of `family`/`proto` sockets, as `/proc/net/*` rows (same order: the
/// kernel walks the same listening and established hash tables for both). The request and the
/// replies are built and decoded by `netlink-packet-sock-diag` / `netlink-packet-core`.
pub(crate) fn diag_sockets(family: libc::c_int, proto: Proto) -> io::Result<Vec<Socket>> {
    let sock = diag_socket()?;
    let seq: u32 = 1;
    send_dump_request(&sock, family, proto, seq)?;
    let mut sockets = Vec::new();
    // A dump comes in datagrams of at most 32 KiB (the kernel caps them there). Not zeroed: on a
    // quiet machine a datagram is a few hundred bytes, and only the pages written are touched.
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    loop {
        buf.clear();
        match rustix::net::recv(
            &sock,
            rustix::buffer::spare_capacity(&mut buf),
            RecvFlags::empty(),
        ) {
            Ok((0, _)) => return Err(io::Error::from(ErrorKind::UnexpectedEof)),
            Ok(_) => {}
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        };
        if let Done::Yes = read_datagram(&buf, proto, seq, &mut sockets)? {
            return Ok(sockets);
        }
    }
}

/// A netlink `sock_diag` socket that gives up after two seconds (the kernel always ends a dump;
/// should it not, /proc answers instead).
fn diag_socket() -> io::Result<OwnedFd> {
    let sock = rustix::net::socket_with(
        AddressFamily::NETLINK,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        Some(rustix::net::netlink::SOCK_DIAG),
    )?;
    rustix::net::sockopt::set_socket_timeout(
        &sock,
        rustix::net::sockopt::Timeout::Recv,
        Some(Duration::from_secs(2)),
    )?;
    Ok(sock)
}

/// Ask the kernel for every socket of `family`/`proto` in every state `/proc/net` lists.
fn send_dump_request(
    sock: &OwnedFd,
    family: libc::c_int,
    proto: Proto,
    seq: u32,
) -> io::Result<()> {
    let protocol = match proto {
        Proto::Tcp => libc::IPPROTO_TCP,
        Proto::Udp => libc::IPPROTO_UDP,
    };
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    header.sequence_number = seq;
    let mut req = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family: family as u8,
            protocol: protocol as u8,
            extensions: ExtensionFlags::empty(),
            states: StateFlags::from_bits_retain(ALL_STATES),
            socket_id: if family == libc::AF_INET {
                SocketId::new_v4()
            } else {
                SocketId::new_v6()
            },
        })
        .into(),
    );
    req.finalize();
    let mut bytes = vec![0u8; req.buffer_len()];
    req.serialize(&mut bytes);
    // The kernel is netlink port 0.
    rustix::net::sendto(
        sock,
        &bytes,
        SendFlags::empty(),
        &SocketAddrNetlink::new(0, 0),
    )?;
    Ok(())
}

enum Done {
    Yes,
    No,
}

/// The netlink messages of one datagram: sockets appended to `out`; `Done::Yes` at the end of
/// the dump.
fn read_datagram(
    mut msgs: &[u8],
    proto: Proto,
    seq: u32,
    out: &mut Vec<Socket>,
) -> io::Result<Done> {
    let invalid = |_| io::Error::from(ErrorKind::InvalidData);
    while !msgs.is_empty() {
        let msg = NetlinkBuffer::new_checked(msgs).map_err(invalid)?;
        let len = msg.length() as usize;
        let (kind, payload) = (msg.message_type(), msg.payload());
        let this_seq = msg.sequence_number();
        msgs = &msgs[((len + 3) & !3).min(msgs.len())..];
        if this_seq != seq {
            continue;
        }
        match kind {
            NLMSG_DONE => {
                let status = DoneBuffer::new_checked(payload).map_or(0, |d| d.code());
                return if status < 0 {
                    Err(io::Error::from_raw_os_error(-status))
                } else {
                    Ok(Done::Yes)
                };
            }
            NLMSG_ERROR => {
                let errno = ErrorBuffer::new_checked(payload)
                    .ok()
                    .and_then(|e| e.code())
                    .map_or(libc::EIO, |e| -e.get());
                return Err(io::Error::from_raw_os_error(errno));
            }
            SOCK_DIAG_BY_FAMILY => out.push(inet_diag_msg(payload, proto)?),
            _ => {}
        }
    }
    Ok(Done::No)
}

/// One `struct inet_diag_msg` as a socket row (its header only: the attributes after it are
/// not asked for).
fn inet_diag_msg(payload: &[u8], proto: Proto) -> io::Result<Socket> {
    let m =
        InetResponseHeader::parse(payload).map_err(|_| io::Error::from(ErrorKind::InvalidData))?;
    if proto == Proto::Tcp && m.state == TCP_SYN_RECV {
        // A request socket: netlink reports uid 0 where /proc/net/tcp reports
        // its listener's owner. Let the text table answer for this family.
        return Err(io::Error::from(ErrorKind::Unsupported));
    }
    let id = &m.socket_id;
    Ok(Socket {
        proto,
        state: state_name(proto, m.state).to_string(),
        local_addr: unmapped(id.source_address),
        local_port: id.source_port,
        remote_addr: unmapped(id.destination_address),
        remote_port: id.destination_port,
        uid: m.uid,
        inode: u64::from(m.inode),
    })
}

/// `::ffff:a.b.c.d` as `a.b.c.d`, as the text tables are read.
fn unmapped(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

/// Parse a `/proc/net/{tcp,tcp6,udp,udp6}` table.
pub fn parse_net_table(text: &[u8], proto: Proto) -> Vec<Socket> {
    let text = String::from_utf8_lossy(text);
    text.lines()
        .skip(1)
        .filter_map(|line| {
            // Fields: sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...
            let mut f = line.split_whitespace();
            let (local_addr, local_port) = parse_endpoint(f.nth(1)?)?;
            let (remote_addr, remote_port) = parse_endpoint(f.next()?)?;
            let st = u8::from_str_radix(f.next()?, 16).ok()?;
            let uid = f.nth(3)?.parse().ok()?;
            let inode = f.nth(1)?.parse().ok()?;
            Some(Socket {
                proto,
                state: state_name(proto, st).to_string(),
                local_addr,
                local_port,
                remote_addr,
                remote_port,
                uid,
                inode,
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
    bind_error(port).is_none()
}

/// Why `port` cannot be bound the way TCPStore binds it (EADDRINUSE: in use; EACCES: not
/// permitted for this user), or None when it can.
pub fn bind_error(port: u16) -> Option<std::io::Error> {
    // std sets SO_REUSEADDR on Unix listeners, as TCPStore does. Each bind is dropped before the
    // next, so the dual-stack v6 bind does not collide with our own v4 one.
    if let Err(e) = std::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)) {
        return Some(e);
    }
    match std::net::TcpListener::bind((Ipv6Addr::UNSPECIFIED, port)) {
        Ok(_) => None,
        // No IPv6 on this host: nothing can hold the port there.
        Err(e)
            if e.raw_os_error() == Some(libc::EAFNOSUPPORT)
                || e.raw_os_error() == Some(libc::EADDRNOTAVAIL) =>
        {
            None
        }
        Err(e) => Some(e),
    }
}

/// The tests' one "this test needs X" helper (tests/common/needs.rs).
#[cfg(test)]
#[path = "../../tests/common/needs.rs"]
mod needs;

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
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
    fn netlink_rows_equal_proc_net_rows() {
        use std::net::{TcpListener, TcpStream, UdpSocket};
        let inode = |fd: std::os::fd::BorrowedFd<'_>| rustix::fs::fstat(fd).unwrap().st_ino;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        udp.connect(listener.local_addr().unwrap()).unwrap();
        let mut ours = vec![
            inode(listener.as_fd()),
            inode(client.as_fd()),
            inode(server.as_fd()),
            inode(udp.as_fd()),
        ];
        // Dual-stack: a v6 listener reached over IPv4 (v4-mapped addresses), where the host has v6.
        let v6 = TcpListener::bind("[::]:0").ok().and_then(|l| {
            let c = TcpStream::connect(("127.0.0.1", l.local_addr().ok()?.port())).ok()?;
            let (a, _) = l.accept().ok()?;
            Some((l, c, a))
        });
        if let Some((l, _, a)) = &v6 {
            ours.extend([inode(l.as_fd()), inode(a.as_fd())]);
        }
        let tables = [
            (c"/proc/net/tcp", libc::AF_INET, Proto::Tcp, 3),
            (
                c"/proc/net/tcp6",
                libc::AF_INET6,
                Proto::Tcp,
                2 * v6.is_some() as usize,
            ),
            (c"/proc/net/udp", libc::AF_INET, Proto::Udp, 1),
            (c"/proc/net/udp6", libc::AF_INET6, Proto::Udp, 0),
        ];
        for (path, family, proto, expected) in tables {
            let mine = |v: Vec<Socket>| -> Vec<Socket> {
                v.into_iter().filter(|s| ours.contains(&s.inode)).collect()
            };
            let text = mine(proc_net_table(path, proto));
            assert_eq!(text.len(), expected, "{path:?}: {text:?}");
            // Netlink must give the very rows of the text table. It may refuse a dump while a
            // request socket (SYN_RECV) of another program exists: asked again, it answers.
            let diag = (0..20).find_map(|_| match diag_sockets(family, proto) {
                Err(e) if e.kind() == ErrorKind::Unsupported => {
                    std::thread::sleep(Duration::from_millis(50));
                    None
                }
                other => Some(other),
            });
            match diag {
                Some(Ok(diag)) => assert_eq!(mine(diag), text, "{path:?}"),
                Some(Err(e)) => {
                    super::needs::skip_or_fail(&format!("sock_diag for {path:?}: {e}"));
                    return;
                }
                None => panic!("{path:?}: a request socket in every one of 20 dumps"),
            }
        }
        let all = read_sockets();
        for ino in &ours {
            assert!(all.iter().any(|s| s.inode == *ino), "socket {ino} missing");
        }
    }
}
