//! Teardown against a kernel that lets go slowly: a removed jail stays dying while something
//! references it, and its root keeps the pot's datasets busy (tests/freebsd-sim README "Dying
//! jails"). POSIX shm objects left by the task are removed as pot's stop.sh does; a busy destroy
//! is retried with bounded back-off; what still cannot finish is handed to the reconciler.

use super::layout::{PotName, PotPaths};
use super::{Engine, EngineError};
use std::time::Duration;

/// Written into the task state dir when DestroyTask had to leave the datasets to the
/// reconciler; holds the reason.
pub(super) const DEFERRED_FILE: &str = "teardown-deferred";

/// Waits between attempts of a busy `zfs destroy`: about 7.5 s in all, within the time Nomad
/// gives DestroyTask.
const BUSY_BACKOFF: [Duration; 5] = [
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
];

impl Engine {
    /// pot's stop.sh: removes every POSIX shm object whose path lies under the pot's directory
    /// (a jailed process's objects carry the jail's path), since each one keeps the jail dying.
    pub(super) async fn remove_shm(&self, pot: &PotName) -> Result<(), EngineError> {
        let p = pot.as_str();
        let Some(paths) = self.host.shm_paths().await.map_err(EngineError::host(p))? else {
            return Ok(());
        };
        let dir = PotPaths::new(&self.cfg.jails_dir(), pot).dir;
        let prefix = format!("{}/", dir.display());
        for path in paths.iter().filter(|path| path.starts_with(&prefix)) {
            match self.host.shm_remove(path).await {
                Err(e) if !e.is_absent() => return Err(EngineError::host(p)(e)),
                _ => {}
            }
        }
        Ok(())
    }

    /// `zfs destroy -f -r` of the pot's dataset, retried while it is busy. The last busy
    /// failure is returned, for the caller to defer.
    pub(super) async fn destroy_pot_datasets(&self, pot: &PotName) -> Result<(), EngineError> {
        let p = pot.as_str();
        let dataset = format!("{}/{}", self.cfg.jails_dataset(), p);
        let mut waits = BUSY_BACKOFF.iter();
        loop {
            match self.host.zfs_destroy_recursive(&dataset).await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_absent() => return Ok(()),
                Err(e) if e.is_busy() => match waits.next() {
                    Some(wait) => {
                        tracing::info!(pot = %pot, error = %e, retry_in = ?wait, "pot datasets busy");
                        tokio::time::sleep(*wait).await;
                    }
                    None => return Err(EngineError::host(p)(e)),
                },
                Err(e) => return Err(EngineError::host(p)(e)),
            }
        }
    }

    /// Records that the pot's teardown stopped at busy datasets, says why in the log and as an
    /// event, and leaves the rest to the reconciler, which lists the pot as dying until done.
    pub(super) fn defer_teardown(
        &self,
        pot: &PotName,
        error: &EngineError,
    ) -> Result<(), EngineError> {
        let p = pot.as_str();
        let dir = self.task_state_dir(pot);
        std::fs::create_dir_all(&dir).map_err(EngineError::io(p, "create", &dir))?;
        let file = dir.join(DEFERRED_FILE);
        super::state::write_atomic(&file, error.to_string().as_bytes())
            .map_err(EngineError::io(p, "write", &file))?;
        tracing::warn!(pot = %pot, error = %error, "teardown deferred to the reconciler: the pot's datasets are busy (its jail is dying)");
        self.event(
            pot,
            format!("Teardown deferred: {error}; the driver's reconciler finishes it"),
        );
        Ok(())
    }

    /// Why the pot's teardown was deferred, if it was.
    pub(super) fn deferred_teardown(&self, pot: &PotName) -> Option<String> {
        std::fs::read_to_string(self.task_state_dir(pot).join(DEFERRED_FILE)).ok()
    }
}

/// Whether `e` is a busy host object: the only failure a teardown defers.
pub(super) fn is_busy(e: &EngineError) -> bool {
    matches!(e, EngineError::Host { source, .. } if source.is_busy())
}
