//! The per-task supervisor ("shim"): a mode of the plugin binary, run as `nomad-pot-driver shim`,
//! with no async runtime. It owns the task's process for its whole life, so that a plugin crash
//! or restart loses neither the task, nor its logs, nor its exit status.
//!
//! Protocol with the engine: the spec arrives as JSON on stdin (so the task's environment never
//! touches the disk); the shim answers one line on stdout, `started <pid>` or `error <reason>`,
//! then keeps running silently until the task exits and its status is recorded in the state dir.
//!
//! Being its own process, it depends only on [`crate::host`] and the task's on-disk state
//! ([`super::state`]), with its two helpers: the memory-limit watch ([`oom`]) and the localhost
//! port relays ([`relay`]).

pub mod oom;
pub mod relay;

use super::state::{EXIT_FILE, ExitInfo, PIDS_FILE, Pids, exit_info, now_ms, write_atomic};
use crate::host::Invocation;
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// How long a log FIFO may lack its reader (Nomad's logmon) before the start fails.
pub const FIFO_OPEN_TIMEOUT: Duration = Duration::from_secs(30);

/// What the engine asks the shim to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShimSpec {
    pub invocation: Invocation,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    /// The task's state dir: `pids.json` and `exit.json` are written here.
    pub state_dir: PathBuf,
    /// Published ports to relay from the host itself, for the task's lifetime.
    #[serde(default)]
    pub relays: Vec<relay::Relay>,
    /// Set when the jail has a memory limit the kernel reports (see [`oom`]).
    #[serde(default)]
    pub memory_watch: Option<oom::MemoryWatch>,
}

/// How long a task killed by a signal waits for a memory-limit report still on its way.
const LIMIT_REPORT_GRACE: Duration = Duration::from_millis(200);

/// Entry point of `nomad-pot-driver shim`.
pub fn main() -> ExitCode {
    let plugin = nix::unistd::getppid();
    let mut input = Vec::new();
    let spec = std::io::stdin()
        .read_to_end(&mut input)
        .map_err(|e| format!("read spec: {e}"))
        .and_then(|_| {
            serde_json::from_slice::<ShimSpec>(&input).map_err(|e| format!("bad spec: {e}"))
        });
    let result = spec.and_then(|spec| {
        let child = start(&spec, plugin)?;
        Ok((spec, child))
    });
    match result {
        Ok((spec, mut child)) => {
            report(&format!("started {}", child.id()));
            let mut info = match child.wait() {
                Ok(status) => exit_info(status),
                Err(e) => ExitInfo::unknown(format!("waiting for the task failed: {e}")),
            };
            if spec.memory_watch.is_some() {
                // Only a kill can be the consequence of a report still in flight.
                let grace = if info.signal != 0 {
                    LIMIT_REPORT_GRACE
                } else {
                    Duration::ZERO
                };
                info.memory_limit_hit = oom::limit_hit(&spec.state_dir, grace);
            }
            let bytes = serde_json::to_vec(&info).expect("exit info serializes");
            match write_atomic(&spec.state_dir.join(EXIT_FILE), &bytes) {
                Ok(()) => ExitCode::SUCCESS,
                Err(_) => ExitCode::FAILURE,
            }
        }
        Err(reason) => {
            report(&format!("error {reason}"));
            ExitCode::FAILURE
        }
    }
}

/// Opens the log FIFOs, spawns the task with them as its stdout and stderr, records the pids.
/// `plugin` is the process that spawned the supervisor and waits for its answer.
fn start(spec: &ShimSpec, plugin: nix::unistd::Pid) -> Result<std::process::Child, String> {
    relay::start(&spec.relays)?;
    if let Some(watch) = spec.memory_watch.clone() {
        std::thread::spawn(move || oom::listen(&watch));
    }
    let deadline = Instant::now() + FIFO_OPEN_TIMEOUT;
    let stdout = open_log(&spec.stdout, deadline)?;
    let stderr = open_log(&spec.stderr, deadline)?;
    // The logs may only get a reader long after the plugin died: a task started now would be
    // nobody's (its start was never answered), so it is not started.
    if nix::unistd::getppid() != plugin {
        return Err("the plugin that started this task is gone".to_string());
    }
    let mut cmd = spec.invocation.command();
    cmd.stdout(stdout).stderr(stderr);
    let child = cmd
        .spawn()
        .map_err(|e| format!("{}: cannot run: {e}", spec.invocation.display()))?;
    let pids = Pids {
        shim: std::process::id(),
        task: child.id(),
        started_at_ms: now_ms(),
    };
    let bytes = serde_json::to_vec(&pids).expect("pids serialize");
    write_atomic(&spec.state_dir.join(PIDS_FILE), &bytes)
        .map_err(|e| format!("write {}: {e}", spec.state_dir.join(PIDS_FILE).display()))?;
    Ok(child)
}

/// One line to the engine, then stdout goes to /dev/null: the engine's end may be gone later.
fn report(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
    if let Ok(devnull) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        let _ = nix::unistd::dup2_stdout(&devnull);
    }
}

/// Opens a log FIFO for writing without blocking forever: a FIFO whose reader is not there yet
/// is retried until `deadline`. The task gets a normal, blocking descriptor.
pub fn open_log(path: &Path, deadline: Instant) -> Result<std::fs::File, String> {
    loop {
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
        {
            Ok(file) => {
                let flags = nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_GETFL)
                    .map_err(|e| format!("fcntl {}: {e}", path.display()))?;
                let mut flags = nix::fcntl::OFlag::from_bits_truncate(flags);
                flags.remove(nix::fcntl::OFlag::O_NONBLOCK);
                nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_SETFL(flags))
                    .map_err(|e| format!("fcntl {}: {e}", path.display()))?;
                return Ok(file);
            }
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                return Err(format!(
                    "open log {}: nobody reads it after {FIFO_OPEN_TIMEOUT:?}",
                    path.display()
                ));
            }
            Err(e) => return Err(format!("open log {}: {e}", path.display())),
        }
    }
}
