//! StartTask that survives its caller. tonic drops a handler's future when the client gives up
//! (a deadline, an agent restart): a start cut off there would leave its clone, jail and mounts
//! to no one. So every start runs in a task of its own, known by its task id from before the
//! first host change, and ends one of two ways: registered as a task, or rolled back. It is
//! rolled back when the last caller waiting for it is gone, or when DestroyTask asks.

use super::{PotDriver, TaskEntry};
use crate::driver::status;
use crate::engine::{Engine, PotName, TaskSpec};
use crate::proto::drivers;
use std::sync::Arc;
use tokio::sync::watch;
use tonic::Status;

/// One start under way.
pub(super) struct Starting {
    /// Callers of StartTask waiting for it; changed under the driver's `starting` lock.
    waiters: std::sync::atomic::AtomicUsize,
    /// Set to roll the start back: no one waits for it any more, or DestroyTask came.
    cancel: watch::Sender<bool>,
    outcome: watch::Sender<Option<Result<Arc<TaskEntry>, Status>>>,
}

impl Starting {
    /// Waits until the start is registered or rolled back.
    async fn outcome(&self) -> Result<Arc<TaskEntry>, Status> {
        let mut rx = self.outcome.subscribe();
        let outcome = rx
            .wait_for(Option::is_some)
            .await
            .map(|o| o.clone().expect("waited for Some"));
        outcome.unwrap_or_else(|_| Err(Status::internal("the start's task vanished")))
    }
}

/// A caller waiting for a start; the last one to leave before the outcome cancels it.
struct Waiter {
    driver: PotDriver,
    slot: Arc<Starting>,
}

impl Drop for Waiter {
    fn drop(&mut self) {
        use std::sync::atomic::Ordering;
        let _map = self
            .driver
            .inner
            .starting
            .lock()
            .expect("starting poisoned");
        if self.slot.waiters.fetch_sub(1, Ordering::SeqCst) == 1
            && self.slot.outcome.borrow().is_none()
        {
            self.slot.cancel.send_replace(true);
        }
    }
}

impl PotDriver {
    /// Starts `cfg` as `spec`, or joins its start already under way (a retry of the same
    /// task id); a start being rolled back is waited for and then made anew.
    pub(super) async fn start_tracked(
        &self,
        engine: Arc<Engine>,
        cfg: drivers::TaskConfig,
        spec: TaskSpec,
    ) -> Result<Arc<TaskEntry>, Status> {
        loop {
            if let Some(entry) = self.task(&cfg.id) {
                return Ok(entry);
            }
            let (slot, joined) = {
                let mut map = self.inner.starting.lock().expect("starting poisoned");
                let found = match map.get(&cfg.id) {
                    Some(slot) => (slot.clone(), !*slot.cancel.borrow()),
                    None => {
                        let slot = Arc::new(Starting {
                            waiters: Default::default(),
                            cancel: watch::channel(false).0,
                            outcome: watch::channel(None).0,
                        });
                        map.insert(cfg.id.clone(), slot.clone());
                        self.route(&spec.pot, &cfg);
                        tokio::spawn(self.clone().run_start(
                            engine.clone(),
                            slot.clone(),
                            cfg.clone(),
                            spec.clone(),
                        ));
                        (slot, true)
                    }
                };
                if found.1 {
                    // Under the lock, so that no leaving caller cancels the start meanwhile.
                    found
                        .0
                        .waiters
                        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                found
            };
            if !joined {
                // A rollback is under way; the pot is free again once it is done.
                let _ = slot.outcome().await;
                continue;
            }
            let _waiter = Waiter {
                driver: self.clone(),
                slot: slot.clone(),
            };
            return slot.outcome().await;
        }
    }

    /// DestroyTask of a task still starting: rolls the start back and waits until it is.
    pub(super) async fn cancel_start(&self, id: &str) {
        let slot = self
            .inner
            .starting
            .lock()
            .expect("starting poisoned")
            .get(id)
            .cloned();
        if let Some(slot) = slot {
            slot.cancel.send_replace(true);
            let _ = slot.outcome().await;
        }
    }

    async fn run_start(
        self,
        engine: Arc<Engine>,
        slot: Arc<Starting>,
        cfg: drivers::TaskConfig,
        spec: TaskSpec,
    ) {
        let (id, pot) = (cfg.id.clone(), spec.pot.clone());
        tracing::info!(task_id = %id, pot = %pot, "starting task");
        let mut cancel = slot.cancel.subscribe();
        // Dropping the start at a cancel is safe: each tool it runs dies with it, and the
        // rollback below removes whatever it had made.
        let started = tokio::select! {
            started = engine.start(spec) => Some(started),
            _ = cancel.wait_for(|c| *c) => None,
        };
        let outcome = match started {
            Some(Ok(instance)) => {
                let map = self.inner.starting.lock().expect("starting poisoned");
                if !*slot.cancel.borrow() {
                    let entry = self.register(cfg, pot, instance);
                    drop(map);
                    self.finish(&id, &slot, Ok(entry));
                    return;
                }
                drop(map);
                self.roll_back(&engine, &id, &pot).await
            }
            Some(Err(e)) => {
                tracing::error!(task_id = %id, pot = %pot, error = %e, "start failed");
                status::from_engine(&e)
            }
            None => self.roll_back(&engine, &id, &pot).await,
        };
        self.inner
            .routes
            .lock()
            .expect("routes poisoned")
            .remove(&pot);
        self.finish(&id, &slot, Err(outcome));
    }

    /// The slot goes before the outcome is told, so that a caller told to start anew does not
    /// find it again.
    fn finish(&self, id: &str, slot: &Starting, outcome: Result<Arc<TaskEntry>, Status>) {
        self.inner
            .starting
            .lock()
            .expect("starting poisoned")
            .remove(id);
        slot.outcome.send_replace(Some(outcome));
    }

    /// Removes what an abandoned start made. What a failed removal leaves is DestroyTask's to
    /// retry, and reconcile's.
    async fn roll_back(&self, engine: &Engine, id: &str, pot: &PotName) -> Status {
        tracing::warn!(task_id = %id, pot = %pot, "start abandoned by its caller or destroyed: rolling back");
        if let Err(e) = engine.destroy(pot).await {
            tracing::error!(task_id = %id, pot = %pot, error = %e, "rollback of an abandoned start left debris");
            self.inner
                .unrecovered
                .lock()
                .expect("unrecovered poisoned")
                .insert(id.to_string(), pot.clone());
        }
        Status::aborted(format!(
            "task {id}: its start was abandoned (the caller left or DestroyTask came) and rolled back"
        ))
    }
}
