//! A task's state on disk: the files its supervisor and the engine leave in the task's state
//! dir (`<state_dir>/tasks/<pot>`), and the helpers that write and read them. Both sides of the
//! supervisor protocol use this module, so it depends on nothing but the pot name.

use super::layout::PotName;
use nix::sys::signal::kill;
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Written by the supervisor once the task runs: [`Pids`].
pub const PIDS_FILE: &str = "pids.json";
/// The supervisor's pid, written by the engine as soon as it is spawned, before the task runs.
pub const SHIM_PID_FILE: &str = "shim.pid";
/// Written by the supervisor once the task ended: [`ExitInfo`].
pub const EXIT_FILE: &str = "exit.json";

/// The dir holding one state dir per task, named after its pot (and jail).
pub fn tasks_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("tasks")
}

/// The state dir of `pot`'s task under `tasks_dir`.
pub fn task_dir(tasks_dir: &Path, pot: &PotName) -> PathBuf {
    tasks_dir.join(pot.as_str())
}

/// The state dir of the task whose jail is `jail`, if that is a pot name: a jail name from the
/// kernel is only used as a path component when it is one.
pub fn jail_task_dir(tasks_dir: &Path, jail: &str) -> Option<PathBuf> {
    PotName::new(jail).ok().map(|pot| task_dir(tasks_dir, &pot))
}

/// Written once the task runs: who to signal and who to watch.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Pids {
    pub shim: u32,
    pub task: u32,
    pub started_at_ms: u64,
}

/// How a task ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    pub exit_code: i32,
    pub signal: i32,
    pub finished_at_ms: u64,
    /// Set when the status could not be observed.
    pub error: Option<String>,
    /// The memory limit (bytes) the task's jail reached while it ran, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit_hit: Option<u64>,
}

impl ExitInfo {
    /// An exit whose status could not be observed.
    pub fn unknown(reason: String) -> ExitInfo {
        ExitInfo {
            exit_code: -1,
            signal: 0,
            finished_at_ms: now_ms(),
            error: Some(reason),
            memory_limit_hit: None,
        }
    }
}

pub fn exit_info(status: std::process::ExitStatus) -> ExitInfo {
    use std::os::unix::process::ExitStatusExt;
    ExitInfo {
        exit_code: status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
        signal: status.signal().unwrap_or(0),
        finished_at_ms: now_ms(),
        error: None,
        memory_limit_hit: None,
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Writes through a temporary file and a rename, so readers never see half a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Whether `pid` runs. A zombie does not: an orphan is only reaped when its new parent gets to
/// it, which some init processes (of containers, for one) never do. Where /proc exists its
/// state says so; elsewhere a zombie is gone as soon as init reaps it.
pub fn alive(pid: u32) -> bool {
    kill(Pid::from_raw(pid as i32), None).is_ok() && !is_zombie(pid)
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // The state follows the parenthesised command name, which may itself contain ')'.
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            == Some("Z")
    })
}
