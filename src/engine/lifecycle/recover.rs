//! Re-attaching to a task started by an earlier plugin process.

use super::Instance;
use super::supervise::{exit_after_supervisor, exit_event};
use crate::engine::layout::PotName;
use crate::engine::state::{EXIT_FILE, ExitInfo, PIDS_FILE, Pids, alive, read_json};
use crate::engine::{Engine, EngineError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How a recovered task's supervisor is watched: it is not our child, so it is polled.
const RECOVERED_POLL: Duration = Duration::from_millis(200);

impl Engine {
    /// Re-attaches to a task started by an earlier plugin process, through what its supervisor
    /// left in the task's state dir: the pids while it runs, the exit status once it is done.
    pub async fn recover(&self, pot: &PotName) -> Result<Arc<Instance>, EngineError> {
        if let Some(instance) = self.instance(pot) {
            return Ok(instance);
        }
        let p = pot.as_str();
        let dir = self.task_state_dir(pot);
        let pids: Pids = read_json(&dir.join(PIDS_FILE))
            .ok_or_else(|| EngineError::NotFound { pot: p.to_string() })?;
        let read_exit = || read_json::<ExitInfo>(&dir.join(EXIT_FILE));
        let mut exit = read_exit();
        // A task without an exit status can only still run inside its jail; once the jail is
        // gone (a host reboot, a jail removed by hand) its pids may name other processes.
        // Each "gone" is read after the exit status, which the supervisor may have written
        // meanwhile: it writes the status before it ends, so the status is read once more.
        if exit.is_none()
            && !self
                .host
                .jail_exists(p)
                .await
                .map_err(EngineError::host(p))?
        {
            exit = read_exit();
            if exit.is_none() {
                return Err(EngineError::State {
                    pot: p.to_string(),
                    reason: "its jail is gone (the host restarted, or the jail was removed by hand) and the task left no exit status".to_string(),
                });
            }
        }
        if exit.is_none() && !alive(pids.shim) && !alive(pids.task) {
            exit = read_exit();
            if exit.is_none() {
                return Err(EngineError::State {
                    pot: p.to_string(),
                    reason: "the task is no longer running and left no exit status".to_string(),
                });
            }
        }
        let (tx, rx) = watch::channel(exit);
        if rx.borrow().is_none() {
            let (events, pot2) = (self.events.clone(), pot.clone());
            tokio::spawn(async move {
                let info = loop {
                    if let Some(info) = read_json(&dir.join(EXIT_FILE)) {
                        break info;
                    }
                    if !alive(pids.shim) {
                        break exit_after_supervisor(&dir, pids.task).await;
                    }
                    tokio::time::sleep(RECOVERED_POLL).await;
                };
                events(&pot2, exit_event(&info));
                let _ = tx.send(Some(info));
            });
        }
        Ok(self.track(pot, pids, self.network_record(pot), rx))
    }
}
