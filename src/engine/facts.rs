//! Facts about the host's kernel that only a reboot changes: whether racct is on (a loader
//! tunable) and how many CPUs it has. A plugin process reads each when a start first needs it
//! and keeps it, so a task's start costs no `sysctl`. A failed start forgets them, in case what
//! was known is why it failed, and a reboot restarts the plugin, which then knows nothing.

use super::layout::PotName;
use super::{Engine, EngineError};
use std::sync::MutexGuard;

/// What this process has read; `None` until then.
#[derive(Debug, Default)]
pub(super) struct HostFacts {
    /// `kern.racct.enable`.
    racct: Option<bool>,
    /// `hw.ncpu`.
    ncpu: Option<u32>,
}

impl Engine {
    /// Whether racct is on (`kern.racct.enable=1`), which rctl limits and usage need.
    pub(super) async fn racct(&self) -> bool {
        let known = self.facts().racct;
        match known {
            Some(on) => on,
            None => self.read_racct().await,
        }
    }

    /// `kern.racct.enable` read from the host, and kept. An unreadable value counts as off
    /// and is not kept.
    pub(super) async fn read_racct(&self) -> bool {
        match self.host.sysctl("kern.racct.enable").await {
            Ok(v) => {
                let on = v == "1";
                self.facts().racct = Some(on);
                on
            }
            Err(_) => false,
        }
    }

    /// The number of CPUs (`hw.ncpu`); `pot` names the task that needs it in errors.
    pub(super) async fn ncpu(&self, pot: &PotName) -> Result<u32, EngineError> {
        let known = self.facts().ncpu;
        if let Some(n) = known {
            return Ok(n);
        }
        let p = pot.as_str();
        let v = self
            .host
            .sysctl("hw.ncpu")
            .await
            .map_err(EngineError::host(p))?;
        let n = v.parse().map_err(|_| EngineError::State {
            pot: p.to_string(),
            reason: format!("hw.ncpu is {v:?}, not a number"),
        })?;
        self.facts().ncpu = Some(n);
        Ok(n)
    }

    /// After a failed start: the next one reads the host again.
    pub(super) fn forget_host_facts(&self) {
        *self.facts() = HostFacts::default();
    }

    fn facts(&self) -> MutexGuard<'_, HostFacts> {
        self.facts.lock().expect("host facts poisoned")
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::image::ImageRef;
    use crate::engine::lifecycle::TaskSpec;
    use crate::engine::task_id::TaskId;
    use crate::engine::testing::{calls_since, engine_on};
    use crate::engine::{Engine, PotName};
    use nomad_harness::sim::SimHost;

    /// How many times `oid` was read since `mark`.
    fn reads(sim: &SimHost, mark: usize, oid: &str) -> usize {
        calls_since(sim, mark)
            .iter()
            .filter(|argv| argv[0] == "sysctl" && argv.iter().any(|a| a == oid))
            .count()
    }

    /// A start refused at its first check, before any host call.
    async fn failed_start(engine: &Engine) {
        let spec = TaskSpec {
            pot: PotName::new("web_1").unwrap(),
            image: ImageRef::parse("file:///nowhere/allowed", "demo", "1.0").unwrap(),
            command: None,
            args: Vec::new(),
            env: Default::default(),
            stdout: "/dev/null".into(),
            stderr: "/dev/null".into(),
            task_dir: "/nonexistent".into(),
            alloc_dir: "/nonexistent".into(),
            mounts: Vec::new(),
            host_mounts: Vec::new(),
            copies: Vec::new(),
            extra_hosts: Vec::new(),
            attributes: Vec::new(),
            user: None,
            dns: None,
            limits: Default::default(),
            owner: TaskId::parse("a-1/web/1").unwrap(),
            network: Default::default(),
        };
        assert!(engine.start(spec).await.is_err());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn racct_is_read_once_per_process_and_again_after_a_failed_start() {
        let sim = SimHost::create();
        let engine = engine_on(&sim);
        let mark = sim.calls().len();
        assert!(engine.racct().await);
        assert!(engine.racct().await);
        assert_eq!(reads(&sim, mark, "kern.racct.enable"), 1, "read once");

        // Kept while starts succeed (a real kernel changes it only with a reboot)…
        sim.tool_ok("sysctl", &["kern.racct.enable=0"]);
        assert!(engine.racct().await);
        // …and read again once a start has failed.
        failed_start(&engine).await;
        assert!(!engine.racct().await);
        assert_eq!(reads(&sim, mark, "kern.racct.enable"), 2);

        // A restarted plugin knows nothing and reads it.
        sim.tool_ok("sysctl", &["kern.racct.enable=1"]);
        let restarted = engine_on(&sim);
        assert!(restarted.racct().await);
        assert_eq!(reads(&sim, mark, "kern.racct.enable"), 3);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_cpu_count_is_kept_like_racct() {
        let sim = SimHost::create();
        sim.tool_ok("sysctl", &["hw.ncpu=8"]);
        let engine = engine_on(&sim);
        let pot = PotName::new("web_1").unwrap();
        let mark = sim.calls().len();
        assert_eq!(engine.ncpu(&pot).await.unwrap(), 8);
        sim.tool_ok("sysctl", &["hw.ncpu=4"]);
        assert_eq!(engine.ncpu(&pot).await.unwrap(), 8);
        assert_eq!(reads(&sim, mark, "hw.ncpu"), 1);
        failed_start(&engine).await;
        assert_eq!(engine.ncpu(&pot).await.unwrap(), 4);
        assert_eq!(engine_on(&sim).ncpu(&pot).await.unwrap(), 4);
        assert_eq!(reads(&sim, mark, "hw.ncpu"), 3);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn an_unreadable_racct_counts_as_off_and_is_read_again() {
        let sim = SimHost::create();
        let engine = engine_on(&sim);
        sim.fault(&["sysctl", "--nth", "1", "--fail", "1"]);
        assert!(!engine.racct().await);
        assert!(engine.racct().await, "the failed read was not kept");
    }
}
