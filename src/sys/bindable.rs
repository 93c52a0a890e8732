//! Whether a rendezvous port can be bound now the way torch's TCPStore binds it: a real bind of
//! a TCP socket with `SO_REUSEADDR` on the unspecified IPv6 address with `IPV6_V6ONLY` off (one
//! socket for IPv4 and IPv6, as the store's `*:PORT` listener shows), else on `0.0.0.0` where the
//! host has no IPv6. The socket never listens and is closed at once. With `SO_REUSEADDR` on both
//! sides, leftovers of a closed store (its accepted connections in FIN_WAIT2, TIME_WAIT) do not
//! stop the bind on Linux; a listener does, and so does a connection that took the port as its
//! local port without the option (an outgoing connection given it by the kernel).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketType, bind, socket, sockopt};

use crate::model::snapshot::BindProbe;

/// A bind of `port` with torch's socket options, made and undone now.
pub fn probe(port: u16) -> BindProbe {
    let result = bind_v6(port).or_else(|e| {
        if e == Errno::AFNOSUPPORT || e == Errno::ADDRNOTAVAIL {
            bind_v4(port)
        } else {
            Err(e)
        }
    });
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

fn bind_v6(port: u16) -> Result<(), Errno> {
    let fd = socket(AddressFamily::INET6, SocketType::STREAM, None)?;
    sockopt::set_socket_reuseaddr(&fd, true)?;
    sockopt::set_ipv6_v6only(&fd, false)?;
    bind(&fd, &SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, port, 0, 0))
}

fn bind_v4(port: u16) -> Result<(), Errno> {
    let fd = socket(AddressFamily::INET, SocketType::STREAM, None)?;
    sockopt::set_socket_reuseaddr(&fd, true)?;
    bind(&fd, &SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port))
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
