//! End-to-end scenarios: the real plugin binary, driven like Nomad drives it, against a
//! simulated FreeBSD host (`freebsd-sim`). Needs `cargo build --workspace` first (for the sim).
//!
//! Every scenario has its own sim host and plugin process and ends with: `freebsd-sim check`
//! clean, nothing on the plugin's stdout after the handshake, every stderr line hclog JSON, and
//! a clean `GRPCController.Shutdown`.
//!
//! One test binary, a module per section; the helpers here serve several sections.

#[path = "../common/mod.rs"]
mod common;

mod hostile;
mod images;
mod lifecycle;
mod limits;
mod mounts;
mod nomad_features;
mod proxy;
mod recovery;
mod schemas;

use std::time::{Duration, Instant};

use crate::common::TestTask;
use crate::common::env::*;
use serde_json::Value as Json;

/// Collects the messages of `TaskEvents` for one task id, from now on.
fn collect_events(env: &Env, task_id: String) -> std::sync::Arc<std::sync::Mutex<Vec<String>>> {
    use nomad_pot_driver::proto::drivers::TaskEventsRequest;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (mut driver, out) = (env.plugin.driver(), seen.clone());
    tokio::spawn(async move {
        let Ok(stream) = driver.task_events(TaskEventsRequest {}).await else {
            return;
        };
        let mut stream = stream.into_inner();
        while let Ok(Some(ev)) = stream.message().await {
            if ev.task_id == task_id {
                out.lock().unwrap().push(ev.message);
            }
        }
    });
    seen
}

async fn wait_for_event(
    events: &std::sync::Mutex<Vec<String>>,
    needle: &str,
    secs: f64,
) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    loop {
        let seen = events.lock().unwrap().clone();
        if seen.iter().any(|m| m.contains(needle)) || Instant::now() >= deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Env {
    /// StartTask that must fail; returns the status.
    async fn start_err(&self, t: &TestTask) -> tonic::Status {
        match self.try_start(t).await {
            Ok(_) => panic!("StartTask accepted {}", t.id()),
            Err(s) => s,
        }
    }

    /// Calls whose argv starts with `prefix`.
    fn calls_starting(&self, prefix: &[&str]) -> Vec<Vec<String>> {
        self.sim
            .calls()
            .into_iter()
            .map(|c| c.argv)
            .filter(|a| a.len() >= prefix.len() && a.iter().zip(prefix).all(|(x, y)| x == y))
            .collect()
    }
}

impl Env {
    /// A gated task with Nomad resources: memory 64 MiB (max 128), an eighth of an
    /// 8-CPU node, cores `cores`.
    fn limited_task(&self, name: &str, cfg: &Json, cores: &str) -> TestTask {
        let mut t = self.task(name, cfg);
        let r = t.config.resources.as_mut().unwrap();
        r.allocated_resources
            .as_mut()
            .unwrap()
            .memory
            .as_mut()
            .unwrap()
            .memory_max_mb = 128;
        let linux = r.linux_resources.as_mut().unwrap();
        linux.percent_ticks = 0.0625;
        linux.cpuset_cpus = cores.into();
        t
    }
}
