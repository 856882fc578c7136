//! Reconcile: finds the pots this driver created that no task owns any more, and removes them.
//!
//! Only pots marked with [`OWNER_PROPERTY`] (or holding a task state dir) are considered; pots
//! the driver did not create are never touched. A pot is collected when no one tracks it, it
//! is not being started, and neither its supervisor nor its task is alive. Running but
//! unclaimed tasks are reported, not killed: Nomad may still recover them.

use super::layout::{OWNER_PROPERTY, task_id_of_owner};
use super::state::{self, EXIT_FILE, PIDS_FILE, Pids, alive, read_json};
use super::{Engine, EngineError, PotName};
use std::collections::BTreeMap;
use std::time::Duration;

/// For a reconcile run from another process than the plugin (`potctl gc`): a pot without a
/// supervisor that changed this recently may be mid-start in the plugin.
pub const OUTSIDE_START_GRACE: Duration = Duration::from_secs(600);

/// What a reconcile pass found, pot by pot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Pots removed (or, in a dry run, that would be), with why.
    pub collected: Vec<(PotName, String)>,
    /// Pots left alone, with why.
    pub kept: Vec<(PotName, String)>,
}

/// Who a pot's dataset belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Ownership {
    /// No such dataset.
    Absent,
    /// A dataset the driver did not create: an image, a pot made with `pot`.
    Foreign,
    /// Made by the driver for this Nomad task id.
    Task(String),
}

/// Marks a pot as being started for as long as the guard lives, so reconcile leaves it alone.
pub(super) struct StartingGuard<'a> {
    engine: &'a Engine,
    pot: PotName,
}

impl Drop for StartingGuard<'_> {
    fn drop(&mut self) {
        self.engine
            .starting
            .lock()
            .expect("starting set poisoned")
            .remove(&self.pot);
    }
}

impl Engine {
    /// The task id this driver recorded on `pot` when it created it; `None` for a pot it did
    /// not create or that does not exist. Operations from outside the plugin (potctl) act only
    /// on pots that have one.
    pub async fn owner(&self, pot: &PotName) -> Result<Option<String>, EngineError> {
        Ok(match self.ownership(pot).await? {
            Ownership::Task(id) => Some(id),
            Ownership::Absent | Ownership::Foreign => None,
        })
    }

    /// Fails unless the driver made `pot` for `task_id`: what a handle names is adopted only
    /// then. A missing pot is [`EngineError::NotFound`].
    pub async fn check_owner(&self, pot: &PotName, task_id: &str) -> Result<(), EngineError> {
        let reason = match self.ownership(pot).await? {
            Ownership::Task(id) if id == task_id => return Ok(()),
            Ownership::Absent => {
                return Err(EngineError::NotFound {
                    pot: pot.to_string(),
                });
            }
            Ownership::Task(id) => format!("it belongs to task {id}, not to task {task_id}"),
            Ownership::Foreign => format!(
                "the driver did not create it (no {OWNER_PROPERTY} property), so no task owns it"
            ),
        };
        Err(EngineError::State {
            pot: pot.to_string(),
            reason,
        })
    }

    /// Whether `pot`'s dataset exists and which task, if any, the driver made it for.
    pub(super) async fn ownership(&self, pot: &PotName) -> Result<Ownership, EngineError> {
        let dataset = format!("{}/{}", self.cfg.jails_dataset(), pot);
        match self.host.zfs_list_tree(&dataset, OWNER_PROPERTY).await {
            Ok(entries) => {
                Ok(entries
                    .into_iter()
                    .find(|e| e.name == dataset)
                    .map_or(Ownership::Absent, |e| {
                        e.user_prop.map_or(Ownership::Foreign, |v| {
                            Ownership::Task(task_id_of_owner(&v))
                        })
                    }))
            }
            Err(e) if e.is_absent() => Ok(Ownership::Absent),
            Err(e) => Err(EngineError::host(pot.as_str())(e)),
        }
    }

    /// Fails when a start of the same pot is already under way in this process.
    pub(super) fn mark_starting(&self, pot: &PotName) -> Result<StartingGuard<'_>, EngineError> {
        let fresh = self
            .starting
            .lock()
            .expect("starting set poisoned")
            .insert(pot.clone());
        if !fresh {
            return Err(EngineError::State {
                pot: pot.to_string(),
                reason: "a start of this task is already under way".to_string(),
            });
        }
        // A new jail of this name may come: its teardown must remove it again.
        self.stopped
            .lock()
            .expect("stopped set poisoned")
            .remove(pot);
        Ok(StartingGuard {
            engine: self,
            pot: pot.clone(),
        })
    }

    /// One reconcile pass; with `dry_run` nothing is changed. Pots without a supervisor that
    /// changed within `start_grace` are kept: zero in the plugin, which knows its own starts,
    /// [`OUTSIDE_START_GRACE`] from another process.
    pub async fn gc(&self, dry_run: bool, start_grace: Duration) -> Result<GcReport, EngineError> {
        let jails = self.cfg.jails_dataset();
        let mut owned: BTreeMap<PotName, String> = BTreeMap::new();
        let datasets = self
            .host
            .zfs_list_tree(&jails, OWNER_PROPERTY)
            .await
            .map_err(EngineError::host(&jails))?;
        for d in datasets {
            // Pots are the direct children; the property is inherited by their `m`.
            let Some((parent, name)) = d.name.rsplit_once('/') else {
                continue;
            };
            if let (true, Some(owner), Ok(pot)) = (parent == jails, d.user_prop, PotName::new(name))
            {
                owned.insert(pot, format!("owned by task {}", task_id_of_owner(&owner)));
            }
        }
        // State without a dataset: debris of a start interrupted before the clone, or of a
        // teardown interrupted after it.
        if let Ok(dirs) = std::fs::read_dir(state::tasks_dir(&self.cfg.state_dir)) {
            for dir in dirs.flatten() {
                if let Ok(pot) = PotName::new(&dir.file_name().to_string_lossy()) {
                    owned
                        .entry(pot)
                        .or_insert_with(|| "task state without a pot".to_string());
                }
            }
        }
        // A task can only run inside its jail; pids of a pot without one are not its own.
        let jails = self
            .host
            .jail_names()
            .await
            .map_err(EngineError::host("jls"))?;
        let mut report = GcReport::default();
        for (pot, origin) in owned {
            let verdict = self.verdict(&pot, start_grace, jails.contains(pot.as_str()));
            match verdict {
                Verdict::Keep(why) => report.kept.push((pot, why)),
                Verdict::Collect(why) => {
                    if !dry_run {
                        match self.teardown(&pot).await {
                            Err(e) if super::dying::is_busy(&e) => {
                                // Still dying: tried again on the next pass.
                                self.defer_teardown(&pot, &e)?;
                                report.kept.push((pot, format!("dying: {e}")));
                                continue;
                            }
                            other => other?,
                        }
                        tracing::info!(pot = %pot, reason = %why, "collected an abandoned pot");
                    }
                    report.collected.push((pot, format!("{origin}: {why}")));
                }
            }
        }
        Ok(report)
    }

    fn verdict(&self, pot: &PotName, start_grace: Duration, has_jail: bool) -> Verdict {
        if self.instance(pot).is_some() {
            return Verdict::Keep("tracked by this plugin".to_string());
        }
        if self
            .starting
            .lock()
            .expect("starting set poisoned")
            .contains(pot)
        {
            return Verdict::Keep("being started".to_string());
        }
        if let Some(reason) = self.deferred_teardown(pot) {
            return Verdict::Collect(format!("dying: finishing a deferred teardown ({reason})"));
        }
        let dir = self.task_state_dir(pot);
        let pids: Option<Pids> = read_json(&dir.join(PIDS_FILE));
        match pids {
            Some(p) if has_jail && (alive(p.shim) || alive(p.task)) => {
                Verdict::Keep("running, not claimed by Nomad yet".to_string())
            }
            Some(_) if dir.join(EXIT_FILE).exists() => {
                Verdict::Collect("task exited and no one claimed it".to_string())
            }
            Some(_) => Verdict::Collect("task gone without an exit status".to_string()),
            None => match self.changed_since(pot) {
                // Another process (the plugin, for `potctl gc`) may be starting it right now.
                Some(age) if age < start_grace => Verdict::Keep(format!(
                    "no task yet, changed {}s ago: a start may be in progress",
                    age.as_secs()
                )),
                _ => Verdict::Collect("start never completed".to_string()),
            },
        }
    }

    /// How long ago the pot's files or task state last changed.
    fn changed_since(&self, pot: &PotName) -> Option<Duration> {
        let dirs = [
            self.cfg.jails_dir().join(pot.as_str()).join("conf"),
            self.cfg.jails_dir().join(pot.as_str()),
            self.task_state_dir(pot),
        ];
        dirs.iter()
            .filter_map(|d| std::fs::metadata(d).and_then(|m| m.modified()).ok())
            .filter_map(|t| t.elapsed().ok())
            .min()
    }
}

enum Verdict {
    Keep(String),
    Collect(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{EngineConfig, Overrides};

    #[test]
    fn a_second_start_of_the_same_pot_is_refused_while_the_first_runs() {
        let cfg = EngineConfig::resolve(&Overrides {
            pot_conf_dir: Some("/nonexistent".into()),
            ..Default::default()
        })
        .unwrap();
        let engine = Engine::new(cfg, std::sync::Arc::new(|_: &_, _| {}));
        let pot = PotName::new("web_1").unwrap();
        let first = engine.mark_starting(&pot).expect("first start");
        assert!(matches!(
            engine.mark_starting(&pot),
            Err(EngineError::State { .. })
        ));
        drop(first);
        assert!(engine.mark_starting(&pot).is_ok(), "free again once done");
    }
}
