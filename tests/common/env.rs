//! The world of one end-to-end scenario: a simulated host and the real plugin, configured the
//! way Nomad's long-lived instance is, with the calls a Nomad client makes.

use std::ops::{Deref, DerefMut};
use std::path::PathBuf;

use super::{Node, SimHost, TestTask};
use serde_json::Value as Json;

pub use nomad_harness::node::{
    API_VERSION, POT_PF_MAIN, Setup, config_schema, dur, nomad_config, plugin_info, publish_port,
    set_config, set_config_bytes, tail, task_schema,
};

/// One scenario's world: the harness's [`Node`] (a sim host and a configured long-lived plugin,
/// with the task runner's calls, through deref), plus what needs the driver crate.
pub struct Env(pub Node);

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

    /// A node brought up as `setup` says ([`Node::setup`]).
    pub async fn setup(setup: Setup<'_>) -> Env {
        Env(Node::setup(setup).await)
    }

    /// The common end of every scenario ([`Node::finish`]).
    pub async fn finish(self) {
        self.0.finish().await
    }

    /// The plugin's state directory of `t`'s pot (under the agent config's `state_dir`).
    pub fn state_dir(&self, t: &TestTask) -> PathBuf {
        let root = self.sim.config["state_dir"]
            .as_str()
            .expect("the sim's agent config has a state_dir");
        PathBuf::from(root).join("tasks").join(pot_of(t).as_str())
    }

    /// `pot`'s directory under the agent config's `fs_root`: `conf/`, the root `m/`.
    pub fn jail_root(&self, pot: &str) -> PathBuf {
        let fs_root = self.sim.config["fs_root"]
            .as_str()
            .expect("the sim's agent config has an fs_root");
        PathBuf::from(fs_root).join("jails").join(pot)
    }

    /// Asserts that `pot`'s pot.conf has each of `lines` as a line of its own.
    pub fn assert_pot_conf_has(&self, pot: &str, lines: &[impl AsRef<str>]) {
        let path = self.jail_root(pot).join("conf/pot.conf");
        let conf =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for line in lines.iter().map(AsRef::as_ref) {
            assert!(
                conf.lines().any(|l| l == line),
                "pot.conf lacks {line}:\n{conf}"
            );
        }
    }

    /// The (supervisor, task) pids that `t`'s state directory records.
    pub fn supervisor_pids(&self, t: &TestTask) -> (i32, i32) {
        let path = self.state_dir(t).join("pids.json");
        let pids: Json = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let pid = |k: &str| {
            pids[k]
                .as_i64()
                .unwrap_or_else(|| panic!("{}: no {k} pid: {pids}", path.display()))
                as i32
        };
        (pid("shim"), pid("task"))
    }

    /// SIGKILLs `t`'s supervisor and task, as a host that loses them would; a process already
    /// gone is no failure.
    pub fn kill_supervisor_and_task(&self, t: &TestTask) {
        let (shim, task) = self.supervisor_pids(t);
        sigkill_if_alive(shim);
        sigkill_if_alive(task);
    }
}

/// SIGKILLs `pid`, if it still runs: a failure (the process already gone) is ignored.
pub fn sigkill_if_alive(pid: i32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
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

/// A task that runs until stopped, and exits at once on SIGTERM.
pub fn long_task(env: &Env) -> Json {
    env.sh_config("trap 'exit 0' TERM; echo ready; while :; do sleep 0.1; done")
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
