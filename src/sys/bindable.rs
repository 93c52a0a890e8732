//! Whether a rendezvous port can be bound now the way torch's TCPStore binds it: a real bind of
//! a TCP socket with `SO_REUSEADDR` on the unspecified IPv6 address with `IPV6_V6ONLY` off (one
//! socket for IPv4 and IPv6, as the store's `*:PORT` listener shows), else on `0.0.0.0` where the
//! host has no IPv6. The socket never listens and is closed at once. With `SO_REUSEADDR` on both
//! sides, leftovers of a closed store (its accepted connections in FIN_WAIT2, TIME_WAIT) do not
//! stop the bind on Linux; a listener does, and so does a connection that took the port as its
//! local port without the option (an outgoing connection given it by the kernel).
//!
//! **The race with the port's real owner.** For as long as the probe's socket is bound, the
//! port is taken by doctor. The window is as short as the system calls make it: the socket is
//! made and its options set before, and it is closed right after `bind` returns (nothing runs
//! in between; a bound socket that never listened or connected leaves no TIME_WAIT). Measured
//! with `scripts/bench/bind_probe.sh` (strace timestamps of `bind` returning and `close`
//! returning, strace's own cost included, so an upper bound): see docs/performance.md
//! ("The bind probe's window"). Within the window:
//! - torch's store (`TCPStore`, the libuv and the classic backend, torchrun's agent) loses
//!   nothing: it binds with `SO_REUSEADDR` too, and two sockets that both have it may be bound
//!   to one port as long as neither listens; the probe never listens, so the store's `bind`
//!   and its `listen` succeed while the probe is bound, before or after the store's own `bind`
//!   (unit tests below; `tests/bind_probe.rs` with a real `TCPStore` held across the window);
//! - a program that binds the port without `SO_REUSEADDR` (a plain server) fails with
//!   EADDRINUSE if its `bind` falls inside the window.
//!
//! A port is probed only when nobody listens on it and a connection uses it as its local port
//! (`Analysis::bind_suspects`): a rendezvous port whose store has not bound yet is never probed
//! for that alone.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::os::fd::OwnedFd;

use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketType, bind, socket, sockopt};

use crate::model::snapshot::BindProbe;

/// A bind of `port` with torch's socket options, made and undone now: the socket is closed as
/// soon as `bind` returns.
pub fn probe(port: u16) -> BindProbe {
    let result = bound(port).map(drop);
    match result {
        Ok(()) => BindProbe {
            port,
            binds: Some(true),
            error: None,
        },
        Err(e) => BindProbe {
            port,
            // Only "in use" says the port is taken; EACCES (a port below 1024 without the
            // capability) and the like say nothing about it.
            binds: (e == Errno::ADDRINUSE).then_some(false),
            error: Some(std::io::Error::from(e).to_string()),
        },
    }
}

/// [`probe`] for each of `ports`.
pub fn probe_all(ports: &[u16]) -> Vec<BindProbe> {
    ports.iter().map(|&p| probe(p)).collect()
}

/// The probe's socket, bound to `port` with torch's options and not yet closed: [`probe`] drops
/// it at once; the tests hold it to show what the probe's window does to a real owner.
pub fn bound(port: u16) -> Result<OwnedFd, Errno> {
    bind_v6(port).or_else(|e| {
        if e == Errno::AFNOSUPPORT || e == Errno::ADDRNOTAVAIL {
            bind_v4(port)
        } else {
            Err(e)
        }
    })
}

fn bind_v6(port: u16) -> Result<OwnedFd, Errno> {
    let fd = socket(AddressFamily::INET6, SocketType::STREAM, None)?;
    sockopt::set_socket_reuseaddr(&fd, true)?;
    sockopt::set_ipv6_v6only(&fd, false)?;
    bind(&fd, &SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, port, 0, 0))?;
    Ok(fd)
}

fn bind_v4(port: u16) -> Result<OwnedFd, Errno> {
    let fd = socket(AddressFamily::INET, SocketType::STREAM, None)?;
    sockopt::set_socket_reuseaddr(&fd, true)?;
    bind(&fd, &SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port))?;
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listener stops the bind; once it is closed, the port binds again.
    #[test]
    fn a_listener_stops_the_bind_and_its_close_frees_it() {
        let l = std::net::TcpListener::bind((Ipv6Addr::UNSPECIFIED, 0))
            .or_else(|_| std::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)))
            .unwrap();
        let port = l.local_addr().unwrap().port();
        let held = probe(port);
        assert_eq!(held.binds, Some(false), "{held:?}");
        assert!(held.error.is_some());
        drop(l);
        assert_eq!(probe(port).binds, Some(true));
    }

    /// The server side of a closed store's connection (FIN_WAIT2 after the store process closed
    /// every socket while its peer keeps its end open) does not stop a bind with SO_REUSEADDR,
    /// as torch's store binds; a connection that took the port without the option does.
    #[test]
    fn leftovers_of_a_closed_listener_do_not_stop_the_bind() {
        use std::io::ErrorKind;
        let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = l.local_addr().unwrap().port();
        let client = std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
        let (server_side, _) = l.accept().unwrap();
        drop(server_side);
        drop(l);
        // The listener's accepted socket is now FIN_WAIT2 (the client has not closed).
        let p = probe(port);
        assert_eq!(p.binds, Some(true), "{p:?}");
        drop(client);
        // A plain bind without SO_REUSEADDR may fail over the TIME_WAIT now; torch's does not.
        let _ = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port))
            .map_err(|e| assert_eq!(e.kind(), ErrorKind::AddrInUse));
        assert_eq!(probe(port).binds, Some(true));
    }

    /// A store bound the way torch binds (SO_REUSEADDR, `[::]` dual-stack, then `listen`), with
    /// the probe's socket bound inside its window, before or after the store's own `bind`: the
    /// store's `bind` and `listen` succeed every time, and the probe says the port binds while
    /// nobody listens. A plain bind without SO_REUSEADDR inside the window fails: the race the
    /// module's documentation names.
    #[test]
    fn a_store_binding_inside_the_probe_window_still_binds_and_listens() {
        let port = {
            let l = std::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
            l.local_addr().unwrap().port()
        };
        let store = || {
            let fd = socket(AddressFamily::INET6, SocketType::STREAM, None).unwrap();
            sockopt::set_socket_reuseaddr(&fd, true).unwrap();
            sockopt::set_ipv6_v6only(&fd, false).unwrap();
            fd
        };
        let at = SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, port, 0, 0);
        // The probe first, then the store.
        let held = bound(port).expect("the port is free");
        let s = store();
        bind(&s, &at).expect("the store binds while the probe is bound");
        rustix::net::listen(&s, 16).expect("and listens");
        drop(held);
        assert_eq!(probe(port).binds, Some(false), "the store now holds it");
        drop(s);
        // The store's bind first, the probe between its bind and its listen.
        let s = store();
        bind(&s, &at).unwrap();
        let held = bound(port).expect("the probe binds beside a store that does not listen yet");
        rustix::net::listen(&s, 16).expect("the store listens while the probe is bound");
        drop(held);
        drop(s);
        // A bind without SO_REUSEADDR inside the window: EADDRINUSE.
        // (std's TcpListener sets SO_REUSEADDR itself: a bare socket is made here.)
        let plain = || {
            let fd = socket(AddressFamily::INET, SocketType::STREAM, None).unwrap();
            bind(&fd, &SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)).map(|_| fd)
        };
        let held = bound(port).unwrap();
        assert_eq!(plain().map(drop), Err(Errno::ADDRINUSE));
        drop(held);
        assert!(plain().is_ok(), "once the probe is closed the port binds");
    }

    /// An outgoing connection bound to the port without SO_REUSEADDR (as the kernel's own pick
    /// of a local port is) stops the bind, though nobody listens there: the real D005.
    #[test]
    fn an_outgoing_connection_on_the_port_stops_the_bind() {
        let server = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let to = server.local_addr().unwrap().port();
        let fd = socket(AddressFamily::INET, SocketType::STREAM, None).unwrap();
        bind(&fd, &SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = SocketAddrV4::try_from(rustix::net::getsockname(&fd).unwrap())
            .unwrap()
            .port();
        rustix::net::connect(&fd, &SocketAddrV4::new(Ipv4Addr::LOCALHOST, to)).unwrap();
        let p = probe(port);
        assert_eq!(p.binds, Some(false), "{p:?}");
        drop(fd);
    }
}
