//! Ending a task and removing its pot: signal, stop (exec_stop, the signal, then the kill),
//! destroy, and the idempotent teardown that also rolls back a failed start.

use super::{not_ours, remove_all};
use crate::engine::dying;
use crate::engine::gc::Ownership;
use crate::engine::layout::{PotName, PotPaths};
use crate::engine::potconf::PotConf;
use crate::engine::state::PIDS_FILE;
use crate::engine::status::{self, State};
use crate::engine::{Engine, EngineError};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::time::Duration;

/// How long a killed task may take to be reaped.
const KILL_GRACE: Duration = Duration::from_secs(10);

impl Engine {
    /// Sends `signal` to the task's main process.
    pub fn signal(&self, pot: &PotName, signal: Signal) -> Result<(), EngineError> {
        let inst = self.instance(pot).ok_or_else(|| EngineError::NotFound {
            pot: pot.to_string(),
        })?;
        if inst.exit().is_some() {
            return Err(EngineError::State {
                pot: pot.to_string(),
                reason: "the task has exited".to_string(),
            });
        }
        kill(Pid::from_raw(inst.pid as i32), signal).map_err(|e| EngineError::State {
            pot: pot.to_string(),
            reason: format!("kill {signal} to pid {}: {e}", inst.pid),
        })
    }

    /// Stops the task within `timeout` (Nomad's kill_timeout): first the pot's `exec_stop`
    /// inside the jail, for at most its `stop_timeout` and what is left of `timeout`; then, if
    /// the task still runs, `signal`; once `timeout` is over, every process of the jail is
    /// killed and the jail removed. A zero `timeout` kills at once. A task already gone is fine.
    pub async fn stop(
        &self,
        pot: &PotName,
        signal: Signal,
        timeout: Duration,
    ) -> Result<(), EngineError> {
        self.stop_task(pot, signal, timeout).await?;
        self.stopped
            .lock()
            .expect("stopped set poisoned")
            .insert(pot.clone());
        status::set(pot, &self.status_file(pot), State::Stopped, "", true)
    }

    /// [`Engine::stop`] between set-status's `stopping` and `stopped`.
    async fn stop_task(
        &self,
        pot: &PotName,
        signal: Signal,
        timeout: Duration,
    ) -> Result<(), EngineError> {
        let status_file = self.status_file(pot);
        // stop.sh carries the interfaces over into `stopping`.
        let interfaces = std::fs::read_to_string(&status_file)
            .map(|t| status::interfaces_of(&t))
            .unwrap_or_default();
        status::set(pot, &status_file, State::Stopping, &interfaces, true)?;
        if let Some(inst) = self.instance(pot).filter(|i| i.exit().is_none()) {
            // `timeout` may come from a client: far enough to overflow the clock is forever.
            let deadline = tokio::time::Instant::now().checked_add(timeout);
            let exited = !timeout.is_zero() && {
                self.exec_stop(pot, timeout).await;
                if inst.exit().is_none() {
                    // A failure means the process is already gone; the wait then ends at once.
                    let _ = kill(Pid::from_raw(inst.pid as i32), signal);
                }
                let left = deadline.map_or(timeout, |d| {
                    d.saturating_duration_since(tokio::time::Instant::now())
                });
                inst.wait_timeout(left).await.is_some()
            };
            if !exited {
                if !timeout.is_zero() {
                    self.event(
                        pot,
                        format!("task did not exit within {timeout:?} after {signal}: killing it"),
                    );
                }
                self.remove_jail(pot).await?;
                if inst.wait_timeout(KILL_GRACE).await.is_none() {
                    return Err(EngineError::State {
                        pot: pot.to_string(),
                        reason: format!("pid {} survived removal of its jail", inst.pid),
                    });
                }
                self.remove_shm(pot).await?;
                return self.remove_rctl_rules(pot).await;
            }
        }
        // The task is gone; its jail may still hold other processes.
        self.remove_jail(pot).await?;
        self.remove_shm(pot).await?;
        self.remove_rctl_rules(pot).await
    }

    /// `rctl -r jail:<pot>`. pot leaves rctl rules behind forever (they are keyed by jail name,
    /// not by jail); we remove them once the jail is gone.
    async fn remove_rctl_rules(&self, pot: &PotName) -> Result<(), EngineError> {
        match self.host.rctl_remove_jail(pot.as_str()).await {
            Err(e) if !e.is_absent() => Err(EngineError::host(pot.as_str())(e)),
            _ => Ok(()),
        }
    }

    /// Runs the pot's `exec_stop`, if it has one, as jail(8) would before signalling the jail.
    /// Its failure is reported as an event: the signal and the kill still follow.
    async fn exec_stop(&self, pot: &PotName, budget: Duration) {
        let conf_path = PotPaths::new(&self.cfg.jails_dir(), pot)
            .conf_dir
            .join("pot.conf");
        let attrs = match std::fs::read_to_string(&conf_path) {
            Ok(text) => StopAttrs::of(&PotConf::parse(&text)),
            Err(_) => return,
        };
        let Some(cmd) = attrs.exec_stop else { return };
        let limit = budget.min(attrs.timeout);
        self.event(pot, format!("Running exec_stop: {cmd}"));
        let argv = ["/bin/sh".to_string(), "-c".to_string(), cmd];
        match self
            .exec(pot, None, &argv, &BTreeMap::new(), Some(limit))
            .await
        {
            Ok(out) if out.exit.exit_code == 0 => {}
            Ok(out) => self.event(
                pot,
                format!(
                    "exec_stop exited with {}: {}",
                    out.exit.exit_code,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            ),
            Err(e) => self.event(pot, format!("exec_stop failed: {e}")),
        }
    }

    async fn remove_jail(&self, pot: &PotName) -> Result<(), EngineError> {
        match self.host.jail_remove(pot.as_str(), true).await {
            Err(e) if !e.is_absent() => Err(EngineError::host(pot.as_str())(e)),
            _ => Ok(()),
        }
    }

    /// Kills the task if needed and removes every trace of the pot.
    pub async fn destroy(&self, pot: &PotName) -> Result<(), EngineError> {
        // A pot this process neither started nor recovered may be anything (a stale handle, a
        // pot name of an image): never what the driver did not create. A tracked one passed
        // this check when it was started or recovered, and its lifecycle costs no extra call.
        if self.instance(pot).is_none() && self.ownership(pot).await? == Ownership::Foreign {
            return Err(not_ours(pot.as_str()));
        }
        if self.instance(pot).is_some_and(|i| i.exit().is_none()) {
            self.stop(pot, Signal::SIGKILL, Duration::ZERO).await?;
        }
        // Teardown removes the jail too, so an exited task costs no separate stop.
        match self.teardown(pot).await {
            // The jail is dying and still holds the datasets: the reconciler finishes.
            Err(e) if dying::is_busy(&e) => self.defer_teardown(pot, &e)?,
            other => other?,
        }
        self.instances
            .lock()
            .expect("instances poisoned")
            .remove(pot);
        Ok(())
    }

    /// Removes the jail, the mounts under the jail root, the pot's datasets and files, and the
    /// task's state. Each step accepts that its object is already gone. Callers have made
    /// sure the driver created the pot (its start, [`Engine::destroy`], reconcile's owned pots).
    pub(in crate::engine) async fn teardown(&self, pot: &PotName) -> Result<(), EngineError> {
        let p = pot.as_str();
        let paths = PotPaths::new(&self.cfg.jails_dir(), pot);
        if !self.task_state_dir(pot).join(PIDS_FILE).exists() {
            // A supervisor still waiting for a reader of its log FIFOs would start the task
            // later, in a pot no one tracks any more.
            self.kill_unstarted_supervisor(pot).await;
        }
        // What this process's stop removed is gone for good: no jail of the name can come back
        // before a new start, which forgets the stop.
        let stopped = self
            .stopped
            .lock()
            .expect("stopped set poisoned")
            .remove(pot);
        if !stopped {
            self.remove_jail(pot).await?;
            self.remove_shm(pot).await?;
            self.remove_rctl_rules(pot).await?;
        }
        self.unplug(pot).await?;
        self.unmount_all(pot, &paths).await?;
        self.destroy_pot_datasets(pot).await?;
        remove_all(p, &paths.dir)?;
        remove_all(p, &self.status_file(pot))?;
        remove_all(p, &self.task_state_dir(pot))
    }
}

/// pot's stop attributes (`pot set-attr -A exec_stop|stop_timeout`), from a pot.conf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct StopAttrs {
    /// Run with `/bin/sh -c` inside the jail before the task is signalled.
    pub exec_stop: Option<String>,
    /// pot's `stop_timeout`: here, how long `exec_stop` may run.
    pub timeout: Duration,
}

impl StopAttrs {
    /// pot's default `stop_timeout`.
    const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

    /// Read as pot reads them: `exec_stop` verbatim (`_get_conf_var_string`), `stop_timeout`
    /// as digits (anything else is pot's default).
    pub fn of(conf: &PotConf) -> StopAttrs {
        StopAttrs {
            exec_stop: conf
                .get_raw("pot.attr.exec_stop")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_string),
            timeout: conf
                .get("pot.attr.stop_timeout")
                .and_then(|t| t.parse().ok())
                .map(Duration::from_secs)
                .unwrap_or(Self::DEFAULT_TIMEOUT),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_attrs_read_like_pot() {
        let conf = PotConf::parse(
            "pot.attr.exec_stop=service nginx stop \"now\"\npot.attr.stop_timeout=3\n",
        );
        let attrs = StopAttrs::of(&conf);
        assert_eq!(
            attrs.exec_stop.as_deref(),
            Some("service nginx stop \"now\"")
        );
        assert_eq!(attrs.timeout, Duration::from_secs(3));
        // pot create writes both keys with these values: nothing to run, pot's default timeout.
        let attrs = StopAttrs::of(&PotConf::parse(
            "pot.attr.exec_stop=\npot.attr.stop_timeout=10\n",
        ));
        assert_eq!(attrs.exec_stop, None);
        assert_eq!(attrs.timeout, Duration::from_secs(10));
        let attrs = StopAttrs::of(&PotConf::parse("pot.attr.stop_timeout=soon\n"));
        assert_eq!(attrs.timeout, StopAttrs::DEFAULT_TIMEOUT);
    }
}
