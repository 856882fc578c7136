//! `freebsd-sim devd` and `freebsd-sim usage`: rctl `devctl` rules reach devd's clients.

use std::io::{BufRead, BufReader, Read};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

mod common;

use common::{BIN, Host, sim};

/// A seqpacket client of the simulated devd, reading with a short timeout.
fn client(path: &Path) -> UnixStream {
    // SAFETY: test-only socket calls on a descriptor we own.
    unsafe {
        let mut addr: libc::sockaddr_un = std::mem::zeroed();
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (d, s) in addr.sun_path.iter_mut().zip(path.as_os_str().as_bytes()) {
            *d = *s as libc::c_char;
        }
        let fd = libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET, 0);
        assert!(fd >= 0);
        let fd = OwnedFd::from_raw_fd(fd);
        let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
        let rc = libc::connect(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            (&raw const addr).cast(),
            len,
        );
        assert_eq!(rc, 0, "connect: {}", std::io::Error::last_os_error());
        let s = UnixStream::from(fd);
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        s
    }
}

/// One record, `None` after the timeout, `Some("")` at end of stream.
fn record(s: &mut UnixStream) -> Option<String> {
    let mut buf = [0u8; 2048];
    match s.read(&mut buf) {
        Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        Err(_) => None,
    }
}

fn devd(host: &Path, extra: &[&str]) -> Child {
    let mut child = Command::new(BIN)
        .arg("devd")
        .arg(host)
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
    child
}

#[test]
fn devctl_rules_notify_devd_clients_once_per_crossing() {
    let (host, cfg) = Host::init("devd", &[]);
    let h = host.dir();
    let sock = host.join("root/var/run/devd.seqpacket.pipe");
    assert_eq!(cfg["devd_socket"], sock.to_str().unwrap());
    let root = host.join("root/tmp");
    host.ok(
        "jail",
        &[
            "-c",
            "name=web",
            &format!("path={}", root.display()),
            "persist",
        ],
    );
    host.ok("rctl", &["-a", "jail:web:memoryuse:deny=1000"]);
    host.ok("rctl", &["-a", "jail:web:memoryuse:devctl=1000"]);

    // Without devd the notification is printed and lost.
    let lost = sim(&["usage", h, "web", "memoryuse", "2000"]);
    assert!(lost.status.success());
    let expected = "!system=RCTL subsystem=rule type=matched \
        rule=jail:web:memoryuse:devctl=1000 pid=0 ruid=0 jail=web\n";
    assert_eq!(String::from_utf8_lossy(&lost.stdout), expected);
    sim(&["usage", h, "web", "memoryuse", "10"]);

    let mut d = devd(&host, &["-l", "1"]);
    let mut c = client(&sock);
    // Only one client at a time: the second is closed at once.
    let mut extra = client(&sock);
    assert_eq!(record(&mut extra).as_deref(), Some(""));

    assert!(
        sim(&["usage", h, "web", "memoryuse", "500"])
            .stdout
            .is_empty()
    );
    assert_eq!(record(&mut c), None);
    sim(&["usage", h, "web", "memoryuse", "2000"]);
    assert_eq!(record(&mut c).as_deref(), Some(expected));
    // Still above: no second notification, until the usage has been back below.
    assert!(
        sim(&["usage", h, "web", "memoryuse", "3000"])
            .stdout
            .is_empty()
    );
    assert_eq!(record(&mut c), None);
    sim(&["usage", h, "web", "memoryuse", "900"]);
    sim(&["usage", h, "web", "memoryuse", "1001"]);
    assert_eq!(record(&mut c).as_deref(), Some(expected));

    let missing = sim(&["usage", h, "nope", "memoryuse", "1"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(sim(&["usage", h, "web", "memoryuse", "lots"]).status.code() == Some(64));

    host.ok("rctl", &["-r", "jail:web"]);
    host.ok("jail", &["-r", "web"]);
    let _ = d.kill();
    let _ = d.wait();
    assert!(host.check().status.success());
}
