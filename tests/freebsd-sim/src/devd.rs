//! devd(8) and the kernel's devctl(4) notifications: `freebsd-sim devd DIR` serves devd's
//! client socket, and `freebsd-sim usage DIR JAIL RESOURCE AMOUNT` plays the kernel noticing a
//! jail's usage, acting on the jail's rctl `devctl` rules.

use crate::jail::pids_in;
use crate::state::{Host, io_fail};
use crate::{Fail, Res, usage};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const DEVD_USAGE: &str = "usage: freebsd-sim devd DIR [-l connlimit]";
const USAGE_USAGE: &str = "usage: freebsd-sim usage DIR JAIL RESOURCE AMOUNT";

/// devd's client socket on a simulated host.
pub fn socket_path(dir: &Path) -> PathBuf {
    dir.join("root/var/run/devd.seqpacket.pipe")
}

/// The simulated `/dev/devctl`: a FIFO that `usage` writes and `devd` reads.
fn devctl_path(dir: &Path) -> PathBuf {
    dir.join("state/devctl")
}

/// Serves the socket until killed: every line written to the devctl FIFO goes to each client
/// as one record. At most `-l` clients (default 10) are served; further ones are closed at
/// once. A client whose send fails is dropped.
pub fn daemon(args: &[String]) -> Res<String> {
    let (dir, max) = match args {
        [dir] => (PathBuf::from(dir), 10),
        [dir, l, n] if l == "-l" => (
            PathBuf::from(dir),
            n.parse::<usize>().map_err(|_| usage(DEVD_USAGE))?.max(1),
        ),
        _ => return Err(usage(DEVD_USAGE)),
    };
    let fifo = devctl_path(&dir);
    if !fifo.exists() {
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .map_err(|e| io_fail("mkfifo", &fifo, e.into()))?;
    }
    let sock = socket_path(&dir);
    let listener = listen(&sock).map_err(|e| io_fail("listen on", &sock, e))?;
    let clients: Arc<Mutex<Vec<OwnedFd>>> = Arc::default();
    let accepted = clients.clone();
    std::thread::spawn(move || {
        loop {
            // SAFETY: accept on a listening socket we own; the result is a new descriptor.
            let fd = unsafe {
                libc::accept4(
                    listener.as_raw_fd(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_CLOEXEC,
                )
            };
            if fd < 0 {
                continue;
            }
            // SAFETY: accept4 returned a descriptor nobody else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            let mut list = accepted.lock().expect("clients poisoned");
            if list.len() < max {
                list.push(fd);
            }
        }
    });
    // Read-write, so the FIFO never reports end of file between writers.
    let devctl = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .map_err(|e| io_fail("open", &fifo, e))?;
    println!("ready");
    let _ = std::io::stdout().flush();
    for line in BufReader::new(devctl).lines() {
        let Ok(line) = line else { break };
        let record = format!("{line}\n");
        clients.lock().expect("clients poisoned").retain(|fd| {
            // SAFETY: send on a connected socket we own, from a live buffer.
            let sent = unsafe {
                libc::send(
                    fd.as_raw_fd(),
                    record.as_ptr().cast(),
                    record.len(),
                    libc::MSG_NOSIGNAL | libc::MSG_EOR,
                )
            };
            sent == record.len() as isize
        });
    }
    Ok(String::new())
}

fn listen(path: &Path) -> std::io::Result<OwnedFd> {
    let _ = std::fs::remove_file(path);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    // SAFETY: sockaddr_un is plain old data; the calls work on a descriptor we own.
    unsafe {
        let mut addr: libc::sockaddr_un = std::mem::zeroed();
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        let bytes = path.as_os_str().as_bytes();
        if bytes.len() >= addr.sun_path.len() {
            return Err(std::io::Error::other("socket path too long"));
        }
        for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
            *d = *s as libc::c_char;
        }
        let fd = libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let fd = OwnedFd::from_raw_fd(fd);
        let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
        if libc::bind(fd.as_raw_fd(), (&raw const addr).cast(), len) < 0
            || libc::listen(fd.as_raw_fd(), 16) < 0
        {
            return Err(std::io::Error::last_os_error());
        }
        Ok(fd)
    }
}

/// The jail's usage of RESOURCE reaches AMOUNT: each rctl rule `jail:JAIL:RESOURCE:devctl=N`
/// with N < AMOUNT sends rctl's notification, once until the usage is back at or below N.
/// Prints the notifications; they are lost when no `devd` runs.
pub fn usage_main(args: &[String]) -> Res<String> {
    let [dir, jail, resource, amount] = args else {
        return Err(usage(USAGE_USAGE));
    };
    let amount: u64 = amount.parse().map_err(|_| usage(USAGE_USAGE))?;
    let dir = PathBuf::from(dir);
    let host = Host::new(dir.clone());
    let notes = host.update(|st| {
        let j = st
            .jail(jail)
            .ok_or_else(|| Fail::new(1, format!("freebsd-sim: jail \"{jail}\" not found")))?;
        let (name, pid) = (
            j.name.clone(),
            pids_in(&j.ns).into_iter().min().unwrap_or(0),
        );
        let prefix = format!("jail:{name}:{resource}:devctl=");
        let mut notes = Vec::new();
        for rule in st.rctl.clone() {
            let Some(limit) = rule
                .strip_prefix(&prefix)
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            let exceeded = st.rctl_exceeded.contains(&rule);
            if amount > limit && !exceeded {
                notes.push(format!(
                    "!system=RCTL subsystem=rule type=matched rule={rule} pid={pid} ruid=0 jail={name}\n"
                ));
                st.rctl_exceeded.push(rule);
            } else if amount <= limit && exceeded {
                st.rctl_exceeded.retain(|r| *r != rule);
            }
        }
        Ok(notes)
    })?;
    let fifo = devctl_path(&dir);
    // Non-blocking: with no devd reading, the open fails and the notifications are lost.
    if let Ok(mut devctl) = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
    {
        for note in &notes {
            devctl
                .write_all(note.as_bytes())
                .map_err(|e| io_fail("write", &fifo, e))?;
        }
    }
    Ok(notes.concat())
}
