//! devd(8)'s client socket: the kernel's devctl(4) notifications, as devd passes them on.
//!
//! devd reads `/dev/devctl` (which allows one reader) and sends every notification, unchanged,
//! to each client of its `SOCK_SEQPACKET` socket, one record per notification. It serves at most
//! `-l` clients (10 by default) and drops a client that does not keep up.

use super::RctlRule;
use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;

/// Where devd(8) serves its clients.
pub const DEFAULT_SOCKET: &str = "/var/run/devd.seqpacket.pipe";

/// Room for one notification (devctl's `DEVCTL_MAXBUF` is 1025).
pub const MAX_NOTIFICATION: usize = 1025;

/// Connects to devd's socket at `path`. Each read of the stream returns one notification;
/// end of stream means devd went away (or dropped us).
pub fn connect(path: &Path) -> io::Result<UnixStream> {
    let addr = UnixAddr::new(path).map_err(|e| match e {
        nix::Error::ENAMETOOLONG => {
            io::Error::new(io::ErrorKind::InvalidInput, "socket path too long")
        }
        e => e.into(),
    })?;
    // Close-on-exec from the start, so that no process we spawn (the jailed task) ever holds
    // the connection.
    let fd = nix::sys::socket::socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    nix::sys::socket::connect(fd.as_raw_fd(), &addr)?;
    Ok(UnixStream::from(fd))
}

/// An rctl rule exceeded, as its `devctl` action reports it:
/// `!system=RCTL subsystem=rule type=matched rule=<rule> pid=<pid> ruid=<uid> jail=<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RctlMatch {
    pub rule: RctlRule,
    /// The process whose use crossed the amount.
    pub pid: u32,
}

/// The rctl match in a devctl notification; `None` for every other notification.
pub fn rctl_match(notification: &str) -> Option<RctlMatch> {
    let body = notification.trim_end().strip_prefix('!')?;
    let mut fields = std::collections::HashMap::new();
    for word in body.split_ascii_whitespace() {
        let (key, value) = word.split_once('=')?;
        fields.insert(key, value);
    }
    let is = |k: &str, v: &str| fields.get(k) == Some(&v);
    if !(is("system", "RCTL") && is("subsystem", "rule") && is("type", "matched")) {
        return None;
    }
    let rule = RctlRule::parse(fields.get("rule")?)?;
    // The rule names its jail; `jail=` names the process's own, which may lie below it.
    Some(RctlMatch {
        pid: fields.get("pid")?.parse().ok()?,
        rule,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{RctlAction, RctlResource};

    #[test]
    fn reads_rctl_matches_and_nothing_else() {
        let m = rctl_match(
            "!system=RCTL subsystem=rule type=matched \
             rule=jail:web_1:memoryuse:devctl=134217728 pid=4242 ruid=0 jail=web_1\n",
        )
        .unwrap();
        assert_eq!(m.pid, 4242);
        assert_eq!(
            m.rule,
            RctlRule {
                jail: "web_1".into(),
                resource: RctlResource::MemoryUse,
                action: RctlAction::Devctl,
                amount: 128 << 20,
            }
        );
        for other in [
            "!system=IFNET subsystem=em0 type=LINK_UP\n",
            "+uhub0 at bus=0 on usbus0",
            "!system=RCTL subsystem=rule type=matched rule=user:0:maxproc:devctl=1 pid=1 ruid=0 jail=0",
            "!system=RCTL subsystem=rule type=matched rule=jail:w:memoryuse:devctl=1 pid=x jail=w",
            "",
        ] {
            assert_eq!(rctl_match(other), None, "{other}");
        }
    }

    #[test]
    fn connects_to_a_seqpacket_socket_and_reads_one_record_at_a_time() {
        use nix::sys::socket::{Backlog, MsgFlags, accept, bind, listen, send, socket};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("devd.pipe");
        let server = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::empty(),
            None,
        )
        .unwrap();
        bind(server.as_raw_fd(), &UnixAddr::new(&path).unwrap()).unwrap();
        listen(&server, Backlog::new(1).unwrap()).unwrap();
        let mut client = connect(&path).unwrap();
        let peer = accept(&server).unwrap();
        for record in [&b"!system=RCTL first\n"[..], b"!system=RCTL second\n"] {
            send(peer.as_raw_fd(), record, MsgFlags::empty()).unwrap();
        }
        let mut buf = [0u8; MAX_NOTIFICATION];
        let n = std::io::Read::read(&mut client, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"!system=RCTL first\n");
        let n = std::io::Read::read(&mut client, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"!system=RCTL second\n");
    }

    #[test]
    fn a_socket_path_too_long_for_sockaddr_un_is_refused() {
        let long = Path::new("/").join("d".repeat(200));
        assert_eq!(
            connect(&long).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }
}
