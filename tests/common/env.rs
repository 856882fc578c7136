//! The world of one end-to-end scenario: a simulated host and the real plugin, configured the
//! way Nomad's long-lived instance is, with the calls a Nomad client makes.

use std::time::Duration;

use super::cty;
use super::{Plugin, SimHost, TestTask, within};
use nomad_pot_driver::proto::base::{
    ConfigSchemaRequest, NomadConfig, NomadDriverConfig, PluginInfoRequest, SetConfigRequest,
};
use nomad_pot_driver::proto::drivers::{
    DestroyTaskRequest, RecoverTaskRequest, StartTaskRequest, StartTaskResponse, StopTaskRequest,
    TaskConfigSchemaRequest, TaskHandle, WaitTaskRequest, WaitTaskResponse,
};
use nomad_pot_driver::proto::hclspec::Spec;
use serde_json::{Value as Json, json};

pub const API_VERSION: &str = "v0.1.0";

pub fn nomad_config() -> NomadConfig {
    NomadConfig {
        driver: Some(NomadDriverConfig {
            client_max_port: 14512,
            client_min_port: 14000,
            ..Default::default()
        }),
    }
}

pub fn dur(secs: i64) -> prost_types::Duration {
    prost_types::Duration {
        seconds: secs,
        nanos: 0,
    }
}

pub fn tail(lines: &[String], n: usize) -> String {
    lines[lines.len().saturating_sub(n)..].join("\n")
}

pub async fn config_schema(plugin: &Plugin) -> Spec {
    within(
        5.0,
        "ConfigSchema",
        plugin.base().config_schema(ConfigSchemaRequest {}),
    )
    .await
    .expect("ConfigSchema")
    .into_inner()
    .spec
    .expect("ConfigSchema returned no spec")
}

pub async fn task_schema(plugin: &Plugin) -> Spec {
    within(
        5.0,
        "TaskConfigSchema",
        plugin
            .driver()
            .task_config_schema(TaskConfigSchemaRequest {}),
    )
    .await
    .expect("TaskConfigSchema")
    .into_inner()
    .spec
    .expect("TaskConfigSchema returned no spec")
}

pub async fn set_config_bytes(
    plugin: &Plugin,
    bytes: Vec<u8>,
    with_nomad: bool,
) -> Result<(), tonic::Status> {
    let req = SetConfigRequest {
        msgpack_config: bytes,
        nomad_config: with_nomad.then(nomad_config),
        plugin_api_version: API_VERSION.into(),
    };
    within(10.0, "SetConfig", plugin.base().set_config(req))
        .await
        .map(|_| ())
}

/// Encodes `cfg` against the plugin's ConfigSchema (like the agent) and sends SetConfig.
pub async fn set_config(
    plugin: &Plugin,
    cfg: &Json,
    with_nomad: bool,
) -> Result<(), tonic::Status> {
    let schema = config_schema(plugin).await;
    let bytes = cty::encode(&schema, cfg).unwrap_or_else(|e| {
        panic!("agent config does not decode against the plugin's ConfigSchema:\n{e}")
    });
    set_config_bytes(plugin, bytes, with_nomad).await
}

/// One scenario's world: a sim host and a configured long-lived plugin.
pub struct Env {
    pub sim: SimHost,
    pub plugin: Plugin,
    pub task_spec: Spec,
}

impl Env {
    /// Sim host + plugin launched and configured like Nomad's long-lived instance.
    pub async fn new() -> Env {
        Env::with_agent_config(serde_json::json!({})).await
    }

    /// Like [`Env::new`], with some agent options added to the sim's.
    pub async fn with_agent_config(overrides: Json) -> Env {
        Env::with_plugin_env(overrides, &[]).await
    }

    /// Like [`Env::with_agent_config`], with variables added to the plugin's environment.
    pub async fn with_plugin_env(overrides: Json, vars: &[(&str, &std::ffi::OsStr)]) -> Env {
        let sim = SimHost::create();
        let plugin = Plugin::launch_with_env(vars).await;
        let info = within(
            5.0,
            "PluginInfo",
            plugin.base().plugin_info(PluginInfoRequest {}),
        )
        .await
        .expect("PluginInfo")
        .into_inner();
        assert_eq!(info.name, "pot");
        if let Err(s) = set_config(&plugin, &sim.agent_config_with(overrides), true).await {
            panic!(
                "SetConfig with the sim's agent config failed: {s:?}\n{}",
                tail(&plugin.stderr_lines(), 30)
            );
        }
        let task_spec = task_schema(&plugin).await;
        Env {
            sim,
            plugin,
            task_spec,
        }
    }

    pub fn stderr_tail(&self) -> String {
        tail(&self.plugin.stderr_lines(), 40)
    }

    /// The plugin's stderr tail once a line containing `needle` has arrived: the harness reads
    /// stderr on a thread of its own, so a line logged just before a reply may lag behind it.
    pub async fn stderr_with(&self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !self
            .plugin
            .stderr_lines()
            .iter()
            .any(|l| l.contains(needle))
        {
            if std::time::Instant::now() > deadline {
                panic!(
                    "no plugin log line with {needle:?}:\n{}",
                    self.stderr_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.stderr_tail()
    }

    /// `file://` URL of a freshly written `demo_1.0` image.
    pub fn file_image(&self) -> String {
        format!("file://{}", self.sim.image("demo", "1.0").display())
    }

    /// Encodes a job `config {}` against the plugin's TaskConfigSchema.
    pub fn encode_task(&self, cfg: &Json) -> Vec<u8> {
        cty::encode(&self.task_spec, cfg)
            .unwrap_or_else(|e| panic!("task config rejected by the encoder:\n{e}"))
    }

    /// A task (alloc dir, logmon, TaskConfig) for a job config.
    pub fn task(&self, name: &str, cfg: &Json) -> TestTask {
        TestTask::new(&self.sim.allocs_dir(), name, self.encode_task(cfg))
    }

    pub async fn start(&self, t: &TestTask) -> StartTaskResponse {
        let req = StartTaskRequest {
            task: Some(t.config.clone()),
        };
        match within(120.0, "StartTask", self.plugin.driver().start_task(req)).await {
            Ok(r) => r.into_inner(),
            Err(s) => panic!(
                "StartTask failed: {s:?}\nplugin stderr:\n{}",
                self.stderr_tail()
            ),
        }
    }

    pub async fn wait(&self, id: &str, secs: f64) -> WaitTaskResponse {
        let req = WaitTaskRequest { task_id: id.into() };
        match within(secs, "WaitTask", self.plugin.driver().wait_task(req)).await {
            Ok(r) => r.into_inner(),
            Err(s) => panic!(
                "WaitTask failed: {s:?}\nplugin stderr:\n{}",
                self.stderr_tail()
            ),
        }
    }

    /// StopTask with SIGTERM and `timeout_secs`, as Nomad sends it; panics on failure.
    pub async fn stop(&self, id: &str, timeout_secs: i64) {
        let req = StopTaskRequest {
            task_id: id.into(),
            timeout: Some(dur(timeout_secs)),
            signal: "SIGTERM".into(),
        };
        if let Err(s) = within(60.0, "StopTask", self.plugin.driver().stop_task(req)).await {
            panic!(
                "StopTask failed: {s:?}\nplugin stderr:\n{}",
                self.stderr_tail()
            );
        }
    }

    pub async fn destroy(&self, id: &str) {
        let req = DestroyTaskRequest {
            task_id: id.into(),
            force: true,
        };
        if let Err(s) = within(30.0, "DestroyTask", self.plugin.driver().destroy_task(req)).await {
            panic!(
                "DestroyTask failed: {s:?}\nplugin stderr:\n{}",
                self.stderr_tail()
            );
        }
    }

    pub async fn wait_ready(&self, t: &TestTask) {
        if !t
            .logs
            .wait_for_stdout("ready", Duration::from_secs(15))
            .await
        {
            panic!(
                "task never printed \"ready\" (stdout {:?}, stderr {:?})\nplugin stderr:\n{}",
                t.logs.stdout(),
                t.logs.stderr(),
                self.stderr_tail()
            );
        }
    }

    /// The common end of every scenario.
    pub async fn finish(self) {
        self.sim.assert_clean("at the end of the scenario");
        self.plugin.assert_clean_io();
        self.plugin.shutdown().await;
        self.sim.assert_clean("after plugin shutdown");
    }
}

impl Env {
    /// SIGKILLs the plugin and launches a fresh one configured like Nomad's long-lived instance.
    pub async fn crash_and_relaunch(&mut self) {
        self.plugin.kill();
        let plugin = Plugin::launch().await;
        set_config(&plugin, &self.sim.agent_config(), true)
            .await
            .expect("SetConfig on the relaunched plugin");
        self.plugin = plugin;
    }

    /// RecoverTask as Nomad sends it after an agent restart: no task id, and the handle's config
    /// without the driver config (lost by the client's state store).
    pub async fn recover(&self, handle: &TaskHandle) -> Result<(), tonic::Status> {
        let mut handle = handle.clone();
        if let Some(c) = handle.config.as_mut() {
            c.msgpack_driver_config.clear();
        }
        let req = RecoverTaskRequest {
            task_id: String::new(),
            handle: Some(handle),
        };
        within(30.0, "RecoverTask", self.plugin.driver().recover_task(req))
            .await
            .map(drop)
    }
}

impl Env {
    /// Datasets under the jails dataset other than the `demo_1.0` image: clones, pot datasets,
    /// and the temporary dataset of an interrupted import. `check` does not see the last two.
    pub fn stray_datasets(&self) -> Vec<String> {
        let out = std::process::Command::new(self.sim.dir.join("bin/zfs"))
            .args(["list", "-H", "-r", "-o", "name", "zroot/pot/jails"])
            .output()
            .expect("zfs list");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| {
                let rel = l.strip_prefix("zroot/pot/jails").unwrap_or(l);
                !rel.is_empty() && rel != "/demo_1_0" && rel != "/demo_1_0/m"
            })
            .map(str::to_string)
            .collect()
    }

    /// The simulated host is clean and no pot dataset is left.
    pub fn assert_no_debris(&self, when: &str) {
        self.sim.assert_clean(when);
        let stray = self.stray_datasets();
        assert!(stray.is_empty(), "stray datasets {when}: {stray:?}");
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
    json!({
        "image": env.file_image(), "pot": "demo", "tag": "1.0", "command": "/bin/sh",
        "args": ["-c", format!(
            "echo ready; while [ ! -e /local/go ]; do sleep 0.1; done; echo after-restart; exit {code}"
        )],
    })
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
