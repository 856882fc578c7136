//! The world of one end-to-end scenario: a simulated host and the real plugin, configured the
//! way Nomad's long-lived instance is, with the calls a Nomad client makes.

use std::ops::{Deref, DerefMut};

use super::{Node, SimHost, TestTask};
use serde_json::Value as Json;

pub use nomad_harness::node::{
    API_VERSION, POT_PF_MAIN, Setup, config_schema, dur, nomad_config, plugin_info, publish_port,
    set_config, set_config_bytes, tail, task_schema,
};

/// One scenario's world: the harness's [`Node`] (a sim host and a configured long-lived plugin,
/// with the task runner's calls, through deref), plus what needs the driver crate.
pub struct Env(Node);

impl Deref for Env {
    type Target = Node;
    fn deref(&self) -> &Node {
        &self.0
    }
}

impl DerefMut for Env {
    fn deref_mut(&mut self) -> &mut Node {
        &mut self.0
    }
}

impl Env {
    /// Sim host + plugin launched and configured like Nomad's long-lived instance.
    pub async fn new() -> Env {
        Env(Node::new().await)
    }

    /// Like [`Env::new`], with some agent options added to the sim's.
    pub async fn with_agent_config(overrides: Json) -> Env {
        Env(Node::with_agent_config(overrides).await)
    }

    /// Like [`Env::with_agent_config`], with variables added to the plugin's environment.
    pub async fn with_plugin_env(overrides: Json, vars: &[(&str, &std::ffi::OsStr)]) -> Env {
        Env(Node::with_plugin_env(overrides, vars).await)
    }

    /// The common end of every scenario ([`Node::finish`]).
    pub async fn finish(self) {
        self.0.finish().await
    }
}

/// The pot the plugin makes for `t` (the Go driver's naming).
pub fn pot_of(t: &TestTask) -> nomad_pot_driver::engine::PotName {
    nomad_pot_driver::engine::PotName::for_task(
        &t.task_name,
        t.id()
            .rsplit('/')
            .next()
            .expect("task id has an invocation"),
        &t.alloc_id,
    )
    .expect("pot name")
}

/// The task waits for a file in its /local, so the test decides when it exits.
pub fn gated_task_config(env: &Env, code: i32) -> Json {
    env.sh_config(&format!(
        "echo ready; while [ ! -e /local/go ]; do sleep 0.1; done; echo after-restart; exit {code}"
    ))
}

pub fn open_gate(t: &TestTask) {
    std::fs::write(t.alloc_dir.join(&t.task_name).join("local/go"), b"").expect("open the gate");
}

/// An engine on the same simulated host, configured from the agent config as the plugin is.
pub fn engine_for(sim: &SimHost) -> nomad_pot_driver::engine::Engine {
    use nomad_pot_driver::driver::AgentConfig;
    use nomad_pot_driver::engine::{Engine, EngineConfig};
    let agent = AgentConfig::from_json(&sim.agent_config()).expect("decode the agent config");
    let cfg = EngineConfig::resolve(&agent.engine).expect("engine config");
    Engine::new(cfg, std::sync::Arc::new(|_: &_, _| {}))
}
