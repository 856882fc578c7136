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

use super::layout::PotName;
use super::lifecycle::{now_ms, write_atomic};
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
    // A jail name is only used as a path component when it is a valid pot name.
    let Ok(pot) = PotName::new(&m.rule.jail) else {
        return;
    };
    let dir = tasks_dir.join(pot.as_str());
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
}
