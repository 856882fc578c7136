//! The task lifecycle: prepare (import + clone), start (mounts, jail, jexec), wait, stop, destroy.
//!
//! Every step after the clone is undone by [`Engine::teardown`], which is idempotent and is used
//! both to roll back a failed start and to destroy a finished task.
//!
//! * [`start`]: the checks that need no host, the image, the clone and its pot.conf;
//! * [`boot`]: copies, mounts, resolver and hosts files, the jail and its limits;
//! * [`supervise`]: the task handed to its supervisor process, and its exit watched;
//! * [`recover`]: a task started by an earlier plugin process, re-attached;
//! * [`stop`]: exec_stop, signal and kill, destroy and teardown.

mod boot;
mod recover;
mod start;
mod stop;
mod supervise;

use super::image::ImageRef;
use super::layout::{MountSpec, OWNER_PROPERTY, PotName};
use super::limits::Limits;
use super::network::{NetworkRecord, NetworkRequest};
use super::options::{CopyIn, Dns, HostEntry, HostMount};
use super::state::{self, ExitInfo, write_atomic};
use super::task_id::TaskId;
use super::{Engine, EngineError};
use std::collections::BTreeMap;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Everything the engine needs to run one task.
#[derive(Debug, Clone)]
pub struct TaskSpec {
    pub pot: PotName,
    pub image: ImageRef,
    pub command: Option<String>,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    /// The task's dir (`<alloc_dir>/<task>`) and its allocation's dir on the host.
    pub task_dir: PathBuf,
    pub alloc_dir: PathBuf,
    /// The driver's own mounts (`/local`, `/secrets`, `/alloc`).
    pub mounts: Vec<MountSpec>,
    /// Host directories the job asked for, checked against `allowed_host_paths`.
    pub host_mounts: Vec<HostMount>,
    pub copies: Vec<CopyIn>,
    pub extra_hosts: Vec<HostEntry>,
    /// `(attribute, value)` pairs of the job's `attributes`.
    pub attributes: Vec<(String, String)>,
    /// The jail user the task runs as; root when `None`.
    pub user: Option<String>,
    /// Resolver settings for the jail; pot's `inherit` (the host's resolv.conf) when `None`.
    pub dns: Option<Dns>,
    pub limits: Limits,
    /// Who the pot belongs to (Nomad's task id), recorded on its dataset.
    pub owner: TaskId,
    pub network: NetworkRequest,
}

/// A task's resource use, as rctl measures its jail.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TaskUsage {
    /// Resident memory (rctl's `memoryuse`).
    pub memory_bytes: u64,
    pub swap_bytes: u64,
    /// Of one CPU: a task using two fully is at 200.
    pub cpu_percent: f64,
}

/// A task the engine tracks: its main process and its exit, once known.
#[derive(Debug)]
pub struct Instance {
    pub pot: PotName,
    pub pid: u32,
    pub started_at_ms: u64,
    /// What the task's network got: its record, for a bridged or an alias pot.
    pub network: Option<NetworkRecord>,
    exit: watch::Receiver<Option<ExitInfo>>,
}

impl Instance {
    pub fn exit(&self) -> Option<ExitInfo> {
        self.exit.borrow().clone()
    }

    /// Waits until the task has exited.
    pub async fn wait(&self) -> ExitInfo {
        let mut rx = self.exit.clone();
        let done = rx
            .wait_for(Option::is_some)
            .await
            .map(|v| v.clone().expect("waited for Some"));
        done.unwrap_or_else(|_| ExitInfo {
            exit_code: -1,
            signal: 0,
            finished_at_ms: state::now_ms(),
            error: Some("task waiter vanished".to_string()),
            memory_limit_hit: None,
        })
    }

    async fn wait_timeout(&self, timeout: Duration) -> Option<ExitInfo> {
        tokio::time::timeout(timeout, self.wait()).await.ok()
    }
}

impl Engine {
    /// The tracked instance of `pot`, if this process knows it.
    pub fn instance(&self, pot: &PotName) -> Option<Arc<Instance>> {
        self.instances
            .lock()
            .expect("instances poisoned")
            .get(pot)
            .cloned()
    }

    /// Current resource usage of the task's jail.
    pub async fn usage(&self, pot: &PotName) -> Result<TaskUsage, EngineError> {
        let u = self
            .host
            .rctl_usage(pot.as_str())
            .await
            .map_err(EngineError::host(pot.as_str()))?;
        Ok(TaskUsage {
            memory_bytes: u.memoryuse,
            swap_bytes: u.swapuse,
            cpu_percent: u.pcpu,
        })
    }

    /// pot's global lock; `what` names the holder in errors.
    pub(super) async fn global_lock(
        &self,
        what: &str,
    ) -> Result<nix::fcntl::Flock<std::fs::File>, EngineError> {
        let path = self.cfg.lock_file.clone();
        let p = what.to_string();
        tokio::task::spawn_blocking(move || {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&path)
                .map_err(EngineError::io(&p, "open lock file", &path))?;
            nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).map_err(
                |(_, errno)| EngineError::io(&p, "lock", &path)(std::io::Error::from(errno)),
            )
        })
        .await
        .expect("lock task panicked")
    }

    pub(super) fn task_state_dir(&self, pot: &PotName) -> PathBuf {
        state::task_dir(&state::tasks_dir(&self.cfg.state_dir), pot)
    }

    /// pot's status file, so that `pot` commands see the pot's state (see [`super::status`]).
    fn status_file(&self, pot: &PotName) -> PathBuf {
        self.cfg.tmp_dir.join(format!("pot_status_{pot}"))
    }
}

/// The refusal to remove or replace a dataset the driver did not create.
fn not_ours(pot: &str) -> EngineError {
    EngineError::State {
        pot: pot.to_string(),
        reason: format!(
            "its dataset has no {OWNER_PROPERTY} property: the driver did not create it (an image, or a pot made by hand) and leaves it alone"
        ),
    }
}

fn write_file(pot: &str, path: &Path, bytes: &[u8]) -> Result<(), EngineError> {
    write_atomic(path, bytes).map_err(EngineError::io(pot, "write", path))
}

fn remove_all(pot: &str, path: &Path) -> Result<(), EngineError> {
    let result = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match result {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(EngineError::io(pot, "remove", path)(e))
        }
        _ => Ok(()),
    }
}
