//! Which tasks reached their memory limit. The kernel enforces `memoryuse` by paging a jail
//! out, never by killing it, so the driver asks for a report instead: a `devctl` rule next to
//! the `deny` one makes the kernel send a notification when the jail crosses the limit, which
//! devd(8) passes on to its clients.
//!
//! devd serves only a few clients (10 by default), so not every task supervisor can listen.
//! Exactly one per host does: the one holding `devd.lock` in the state dir. It records each
//! match in the state dir of the task whose jail crossed its limit, and when it exits the lock
//! passes to another waiting supervisor. Like the rest of a supervisor's work this goes on
//! while the plugin is down.

use crate::engine::state::{jail_task_dir, now_ms, write_atomic};
use crate::host::devd;
use crate::host::{RctlAction, RctlResource};
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What a supervisor needs to take part in the watch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryWatch {
    pub devd_socket: PathBuf,
    /// Held by the one supervisor that listens.
    pub lock_file: PathBuf,
    /// Holds one state dir per task, named after its pot (and jail).
    pub tasks_dir: PathBuf,
}

/// Written into a task's state dir when its jail crossed its memory limit.
pub const MEMORY_LIMIT_FILE: &str = "memory_limit_hit.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitHit {
    /// The limit crossed, bytes.
    pub limit_bytes: u64,
    /// The process whose use crossed it.
    pub pid: u32,
    pub at_ms: u64,
}

/// How long to wait before connecting again when devd is not there or dropped us.
const RECONNECT: Duration = Duration::from_secs(1);

/// Listens for the whole host once this process holds the lock; returns only if the lock
/// cannot be had at all.
pub fn listen(watch: &MemoryWatch) {
    let Ok(file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&watch.lock_file)
    else {
        return;
    };
    // Blocks while another supervisor listens; it is released when that one exits.
    let Ok(_lock) = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive) else {
        return;
    };
    let mut buf = vec![0u8; devd::MAX_NOTIFICATION];
    loop {
        if let Ok(mut conn) = devd::connect(&watch.devd_socket) {
            while let Ok(n @ 1..) = conn.read(&mut buf) {
                record(&watch.tasks_dir, &String::from_utf8_lossy(&buf[..n]));
            }
        }
        std::thread::sleep(RECONNECT);
    }
}

/// Records a memory-limit match in the state dir of the jail's task, if it is one of ours
/// and nothing is recorded yet. Every other notification is ignored.
pub fn record(tasks_dir: &Path, notification: &str) {
    let Some(m) = devd::rctl_match(notification) else {
        return;
    };
    if m.rule.resource != RctlResource::MemoryUse || m.rule.action != RctlAction::Devctl {
        return;
    }
    let Some(dir) = jail_task_dir(tasks_dir, &m.rule.jail) else {
        return;
    };
    let path = dir.join(MEMORY_LIMIT_FILE);
    if !dir.is_dir() || path.exists() {
        return;
    }
    let hit = LimitHit {
        limit_bytes: m.rule.amount,
        pid: m.pid,
        at_ms: now_ms(),
    };
    let _ = write_atomic(
        &path,
        &serde_json::to_vec(&hit).expect("limit hit serializes"),
    );
}

/// The limit the task in `state_dir` crossed, if any; waits up to `grace` for a report still
/// on its way (a notification precedes the exit it may cause, but travels through devd).
pub fn limit_hit(state_dir: &Path, grace: Duration) -> Option<u64> {
    let deadline = Instant::now() + grace;
    let path = state_dir.join(MEMORY_LIMIT_FILE);
    loop {
        if let Ok(bytes) = std::fs::read(&path) {
            return serde_json::from_slice::<LimitHit>(&bytes)
                .ok()
                .map(|h| h.limit_bytes);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_only_memory_matches_of_our_tasks_once() {
        let tasks = tempfile::tempdir().unwrap();
        let dir = tasks.path().join("web_1");
        std::fs::create_dir(&dir).unwrap();
        let hit = |jail: &str, rule: &str, pid: u32| {
            format!(
                "!system=RCTL subsystem=rule type=matched rule=jail:{jail}:{rule} pid={pid} ruid=0 jail={jail}\n"
            )
        };
        record(tasks.path(), &hit("web_1", "maxproc:devctl=10", 1));
        record(tasks.path(), &hit("web_1", "memoryuse:deny=1024", 1));
        record(tasks.path(), &hit("other", "memoryuse:devctl=1024", 1));
        record(tasks.path(), &hit("..", "memoryuse:devctl=1024", 1));
        assert_eq!(limit_hit(&dir, Duration::ZERO), None);
        record(tasks.path(), &hit("web_1", "memoryuse:devctl=1048576", 7));
        record(tasks.path(), &hit("web_1", "memoryuse:devctl=2048", 8));
        assert_eq!(limit_hit(&dir, Duration::ZERO), Some(1 << 20));
        let first: LimitHit =
            serde_json::from_slice(&std::fs::read(dir.join(MEMORY_LIMIT_FILE)).unwrap()).unwrap();
        assert_eq!(first.pid, 7);
        assert!(!tasks.path().join("other").exists());
    }

    /// A devd stand-in: a listening SOCK_SEQPACKET socket at `path`.
    fn devd_listener(path: &Path) -> std::os::fd::OwnedFd {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        use std::os::unix::ffi::OsStrExt;
        let _ = std::fs::remove_file(path);
        // SAFETY: test-only socket calls on a descriptor we own; sockaddr_un is plain data.
        unsafe {
            let mut addr: libc::sockaddr_un = std::mem::zeroed();
            addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
            for (d, s) in addr.sun_path.iter_mut().zip(path.as_os_str().as_bytes()) {
                *d = *s as libc::c_char;
            }
            let fd = OwnedFd::from_raw_fd(libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET, 0));
            let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
            assert_eq!(libc::bind(fd.as_raw_fd(), (&raw const addr).cast(), len), 0);
            assert_eq!(libc::listen(fd.as_raw_fd(), 4), 0);
            fd
        }
    }

    /// Accepts one client and sends it `note` as one record.
    fn serve_one(listener: &std::os::fd::OwnedFd, note: &str) -> std::os::fd::OwnedFd {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        // SAFETY: test-only accept and send on descriptors we own.
        unsafe {
            let fd = libc::accept(
                listener.as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            );
            assert!(fd >= 0);
            let sent = libc::send(fd, note.as_ptr().cast(), note.len(), 0);
            assert_eq!(sent, note.len() as isize);
            OwnedFd::from_raw_fd(fd)
        }
    }

    #[test]
    fn the_listener_records_and_reconnects_when_devd_comes_back() {
        let tmp = tempfile::tempdir().unwrap();
        let tasks = tmp.path().join("tasks");
        let dir = tasks.join("web_1");
        std::fs::create_dir_all(&dir).unwrap();
        let watch = MemoryWatch {
            devd_socket: tmp.path().join("devd.pipe"),
            lock_file: tmp.path().join("devd.lock"),
            tasks_dir: tasks.clone(),
        };
        let note = "!system=RCTL subsystem=rule type=matched \
                    rule=jail:web_1:memoryuse:devctl=4096 pid=1 ruid=0 jail=web_1\n";
        let devd = devd_listener(&watch.devd_socket);
        let w = watch.clone();
        std::thread::spawn(move || listen(&w));
        let conn = serve_one(&devd, note);
        assert_eq!(limit_hit(&dir, Duration::from_secs(5)), Some(4096));

        // devd restarts: the listener connects to the new one.
        drop((conn, devd));
        std::fs::remove_file(dir.join(MEMORY_LIMIT_FILE)).unwrap();
        let devd = devd_listener(&watch.devd_socket);
        let _conn = serve_one(&devd, note);
        assert_eq!(limit_hit(&dir, Duration::from_secs(5)), Some(4096));
    }
}
