//! Localhost relays for published ports: pf's `rdr` rules only see traffic arriving on an
//! interface, so connections from the host itself to a published port would find nothing.
//! pot copies `ncat` next to the pot and runs it as a daemon (`localhost-tunnel`); here the
//! task's supervisor relays instead, with threads, for exactly as long as the task lives.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

/// Listens on every host address at `listen_port` and forwards to `target`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relay {
    pub proto: Proto,
    pub listen_port: u16,
    pub target: SocketAddrV4,
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds every relay, then serves them on background threads. Fails if any port is taken.
pub fn start(relays: &[Relay]) -> Result<(), String> {
    let bind = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
    let mut bound = Vec::new();
    for r in relays {
        let at = SocketAddr::new(bind.ip(), r.listen_port);
        let what = |e: io::Error| format!("relay {:?} port {}: bind: {e}", r.proto, r.listen_port);
        bound.push(match r.proto {
            Proto::Tcp => Bound::Tcp(TcpListener::bind(at).map_err(what)?, r.target),
            Proto::Udp => Bound::Udp(UdpSocket::bind(at).map_err(what)?, r.target),
        });
    }
    for b in bound {
        std::thread::spawn(move || match b {
            Bound::Tcp(l, target) => serve_tcp(l, target),
            Bound::Udp(s, target) => serve_udp(s, target),
        });
    }
    Ok(())
}

enum Bound {
    Tcp(TcpListener, SocketAddrV4),
    Udp(UdpSocket, SocketAddrV4),
}

fn serve_tcp(listener: TcpListener, target: SocketAddrV4) {
    for client in listener.incoming().flatten() {
        std::thread::spawn(move || {
            // An unreachable pot closes the client's connection, as ncat -c does.
            if let Ok(up) = TcpStream::connect_timeout(&target.into(), CONNECT_TIMEOUT) {
                splice(client, up);
            }
        });
    }
}

/// Copies both directions until each side has closed its half.
fn splice(a: TcpStream, b: TcpStream) {
    let (Ok(mut a2), Ok(mut b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let back = std::thread::spawn(move || {
        let _ = io::copy(&mut b2, &mut a2);
        let _ = a2.shutdown(Shutdown::Write);
    });
    let (mut a, mut b) = (a, b);
    let _ = io::copy(&mut a, &mut b);
    let _ = b.shutdown(Shutdown::Write);
    let _ = back.join();
}

/// One upstream socket per client address, so replies find their way back.
fn serve_udp(sock: UdpSocket, target: SocketAddrV4) {
    let mut upstreams: HashMap<SocketAddr, UdpSocket> = HashMap::new();
    let mut buf = vec![0u8; 65536];
    while let Ok((n, client)) = sock.recv_from(&mut buf) {
        let up = match upstreams.entry(client) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let Some(up) = udp_upstream(&sock, client, target) else {
                    continue;
                };
                e.insert(up)
            }
        };
        let _ = up.send(&buf[..n]);
    }
}

fn udp_upstream(sock: &UdpSocket, client: SocketAddr, target: SocketAddrV4) -> Option<UdpSocket> {
    let up = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    up.connect(target).ok()?;
    let (reply, back) = (up.try_clone().ok()?, sock.try_clone().ok()?);
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        while let Ok(n) = reply.recv(&mut buf) {
            let _ = back.send_to(&buf[..n], client);
        }
    });
    Some(up)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn free_port() -> u16 {
        TcpListener::bind("0.0.0.0:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    #[test]
    fn tcp_and_udp_reach_the_target_and_back() {
        let echo = TcpListener::bind("127.0.0.1:0").unwrap();
        let echo_port = echo.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for mut c in echo.incoming().flatten() {
                let mut buf = [0u8; 5];
                c.read_exact(&mut buf).unwrap();
                c.write_all(&buf).unwrap();
            }
        });
        let uecho = UdpSocket::bind("127.0.0.1:0").unwrap();
        let uecho_port = uecho.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            while let Ok((n, from)) = uecho.recv_from(&mut buf) {
                uecho.send_to(&buf[..n], from).unwrap();
            }
        });
        let port = free_port();
        let to = |p| SocketAddrV4::new(Ipv4Addr::LOCALHOST, p);
        start(&[
            Relay {
                proto: Proto::Tcp,
                listen_port: port,
                target: to(echo_port),
            },
            Relay {
                proto: Proto::Udp,
                listen_port: port,
                target: to(uecho_port),
            },
        ])
        .unwrap();
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.write_all(b"hello").unwrap();
        let mut got = [0u8; 5];
        c.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello");
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        u.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        u.send_to(b"ping", ("127.0.0.1", port)).unwrap();
        let mut buf = [0u8; 16];
        let n = u.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"ping");
        // The port is taken now: a second relay on it fails to bind.
        let e = start(&[Relay {
            proto: Proto::Tcp,
            listen_port: port,
            target: to(echo_port),
        }])
        .unwrap_err();
        assert!(e.contains("bind"), "{e}");
    }
}
