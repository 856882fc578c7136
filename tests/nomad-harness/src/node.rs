//! A Nomad client node: a simulated host and the real plugin launched and configured on it as a
//! Nomad agent does, with the calls its task runner makes. The end-to-end tests' world (their
//! `Env` wraps a [`Node`]) and the benches' set-up, written once; every call has a deadline and
//! a failure names the call, with the tail of the plugin's stderr.

use std::future::Future;
use std::time::Duration;

use nomad_plugin_proto::base::{
    ConfigSchemaRequest, NomadConfig, NomadDriverConfig, PluginInfoRequest, PluginInfoResponse,
    SetConfigRequest,
};
use nomad_plugin_proto::drivers::{
    DestroyTaskRequest, DriverTaskEvent, ExitResult, PortMapping, RecoverTaskRequest,
    StartTaskRequest, StartTaskResponse, StopTaskRequest, TaskConfigSchemaRequest,
    TaskEventsRequest, TaskHandle, WaitTaskRequest, WaitTaskResponse,
};
use nomad_plugin_proto::hclspec::Spec;
use serde_json::{Value as Json, json};

use crate::{Plugin, SimHost, TestTask, cty};

/// The plugin API version a Nomad client sends with SetConfig.
pub const API_VERSION: &str = "v0.1.0";

/// What `pot init` adds to pf.conf and pot's `vnet-start` leaves loaded: the anchors bridged
/// tasks' rules hang off. Without it bridged starts are refused.
pub const POT_PF_MAIN: &str = "nat-anchor pot-nat\nrdr-anchor \"pot-rdr/*\"\n";

/// Runs `fut` with a deadline; panics naming `what` when it expires.
pub async fn within<T>(secs: f64, what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs_f64(secs), fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {secs} s: {what}"),
    }
}

/// The `nomad_config` a Nomad client gives its long-lived plugin instance.
pub fn nomad_config() -> NomadConfig {
    NomadConfig {
        driver: Some(NomadDriverConfig {
            client_max_port: 14512,
            client_min_port: 14000,
            ..Default::default()
        }),
    }
}

/// `secs` whole seconds as a protobuf duration (StopTask's timeout, TaskStats' interval).
pub fn dur(secs: i64) -> prost_types::Duration {
    prost_types::Duration {
        seconds: secs,
        nanos: 0,
    }
}

/// The last `n` of `lines`, one a line.
pub fn tail(lines: &[String], n: usize) -> String {
    lines[lines.len().saturating_sub(n)..].join("\n")
}

pub async fn plugin_info(plugin: &Plugin) -> PluginInfoResponse {
    within(
        5.0,
        "PluginInfo",
        plugin.base().plugin_info(PluginInfoRequest {}),
    )
    .await
    .expect("PluginInfo")
    .into_inner()
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

/// SetConfig with an encoded agent config; `with_nomad` adds the long-lived instance's
/// [`nomad_config`] (the agent's validation launches send none).
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

/// Publishes host port `value` of `t` as `label`, mapped to `to` inside the task, and tells the
/// task its host port in `NOMAD_HOST_PORT_<label>`, as a Nomad client does.
pub fn publish_port(t: &mut TestTask, label: &str, value: i32, to: i32) {
    t.config
        .resources
        .as_mut()
        .expect("a TestTask has resources")
        .ports
        .push(PortMapping {
            label: label.into(),
            value,
            to,
            host_ip: String::new(),
        });
    t.config
        .env
        .insert(format!("NOMAD_HOST_PORT_{label}"), value.to_string());
}

/// How a [`Node`] comes up. `Setup::default()` is a fresh host and Nomad's long-lived plugin
/// instance configured with the simulator's agent config.
#[derive(Default)]
pub struct Setup<'a> {
    /// Agent options added to the simulator's (an object; `Null` adds none).
    pub agent_options: Json,
    /// Variables added to the plugin's environment, as a Nomad agent started with them passes
    /// them on (e.g. `SSL_CERT_FILE`).
    pub plugin_env: &'a [(&'a str, &'a std::ffi::OsStr)],
    /// Loads [`POT_PF_MAIN`] before the plugin starts, as on a host where pot has run
    /// `vnet-start`: bridged tasks need it.
    pub pot_pf_main: bool,
    /// SetConfig without Nomad's config, as the agent's validation launches send it: the plugin
    /// starts no reconciler, so the host's calls are the tasks' alone (the benches count them).
    pub without_nomad_config: bool,
}

/// A simulated host and a plugin configured like Nomad's long-lived instance.
pub struct Node {
    pub sim: SimHost,
    pub plugin: Plugin,
    pub task_spec: Spec,
}

impl Node {
    /// Sim host + plugin launched and configured like Nomad's long-lived instance.
    pub async fn new() -> Node {
        Node::setup(Setup::default()).await
    }

    /// Like [`Node::new`], with some agent options added to the sim's.
    pub async fn with_agent_config(agent_options: Json) -> Node {
        Node::setup(Setup {
            agent_options,
            ..Setup::default()
        })
        .await
    }

    /// Like [`Node::with_agent_config`], with variables added to the plugin's environment.
    pub async fn with_plugin_env(
        agent_options: Json,
        plugin_env: &[(&str, &std::ffi::OsStr)],
    ) -> Node {
        Node::setup(Setup {
            agent_options,
            plugin_env,
            ..Setup::default()
        })
        .await
    }

    /// A fresh simulated host, and the plugin launched and configured on it as `setup` says;
    /// checks PluginInfo names the plugin `pot`.
    pub async fn setup(setup: Setup<'_>) -> Node {
        let sim = SimHost::create();
        if setup.pot_pf_main {
            let (code, _, err) = sim.tool("pfctl", &["-f", "-"], POT_PF_MAIN);
            assert_eq!(code, 0, "load pot's main pf ruleset: {err}");
        }
        let plugin = Plugin::launch_with_env(setup.plugin_env).await;
        let info = plugin_info(&plugin).await;
        assert_eq!(info.name, "pot", "PluginInfo name");
        let options = match setup.agent_options {
            Json::Null => json!({}),
            options => options,
        };
        let agent = sim.agent_config_with(options);
        if let Err(s) = set_config(&plugin, &agent, !setup.without_nomad_config).await {
            panic!(
                "SetConfig with the sim's agent config failed: {s:?}\n{}",
                tail(&plugin.stderr_lines(), 30)
            );
        }
        let task_spec = task_schema(&plugin).await;
        Node {
            sim,
            plugin,
            task_spec,
        }
    }

    /// The last 40 lines of the plugin's stderr, for a failure message.
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

    /// The job `config {}` of a task of a freshly written `demo_1.0` image that runs
    /// `/bin/sh -c script`.
    pub fn sh_config(&self, script: &str) -> Json {
        json!({
            "image": self.file_image(), "pot": "demo", "tag": "1.0", "command": "/bin/sh",
            "args": ["-c", script],
        })
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

    /// StartTask of `t`, as the Nomad client sends it.
    pub async fn try_start(&self, t: &TestTask) -> Result<StartTaskResponse, tonic::Status> {
        let req = StartTaskRequest {
            task: Some(t.config.clone()),
        };
        within(120.0, "StartTask", self.plugin.driver().start_task(req))
            .await
            .map(|r| r.into_inner())
    }

    /// [`Node::try_start`] that must succeed.
    pub async fn start(&self, t: &TestTask) -> StartTaskResponse {
        self.try_start(t).await.unwrap_or_else(|s| {
            panic!(
                "StartTask of {} failed: {s:?}\nplugin stderr:\n{}",
                t.id(),
                self.stderr_tail()
            )
        })
    }

    /// StartTask, then the task's `ready` line on stdout.
    pub async fn start_ready(&self, t: &TestTask) -> StartTaskResponse {
        let started = self.start(t).await;
        self.wait_ready(t).await;
        started
    }

    pub async fn wait(&self, id: &str, secs: f64) -> WaitTaskResponse {
        let req = WaitTaskRequest { task_id: id.into() };
        match within(secs, "WaitTask", self.plugin.driver().wait_task(req)).await {
            Ok(r) => r.into_inner(),
            Err(s) => panic!(
                "WaitTask of {id} failed: {s:?}\nplugin stderr:\n{}",
                self.stderr_tail()
            ),
        }
    }

    /// The exit WaitTask reports for task `id` within `secs`; panics if it reports none.
    pub async fn exit(&self, id: &str, secs: f64) -> ExitResult {
        let waited = self.wait(id, secs).await;
        waited
            .result
            .unwrap_or_else(|| panic!("WaitTask of {id} reported no exit result: {waited:?}"))
    }

    /// WaitTask until task `id` has exited, then DestroyTask: the end of a task that ends.
    pub async fn wait_and_destroy(&self, id: &str, secs: f64) {
        self.wait(id, secs).await;
        self.destroy(id).await;
    }

    /// The TaskEvents stream, from now on.
    pub async fn task_events(&self) -> tonic::Streaming<DriverTaskEvent> {
        within(
            5.0,
            "TaskEvents",
            self.plugin.driver().task_events(TaskEventsRequest {}),
        )
        .await
        .expect("TaskEvents")
        .into_inner()
    }

    /// StopTask with SIGTERM and `timeout_secs`, as Nomad sends it.
    pub async fn try_stop(&self, id: &str, timeout_secs: i64) -> Result<(), tonic::Status> {
        let req = StopTaskRequest {
            task_id: id.into(),
            timeout: Some(dur(timeout_secs)),
            signal: "SIGTERM".into(),
        };
        within(60.0, "StopTask", self.plugin.driver().stop_task(req))
            .await
            .map(drop)
    }

    /// [`Node::try_stop`] that must succeed.
    pub async fn stop(&self, id: &str, timeout_secs: i64) {
        if let Err(s) = self.try_stop(id, timeout_secs).await {
            panic!(
                "StopTask of {id} failed: {s:?}\nplugin stderr:\n{}",
                self.stderr_tail()
            );
        }
    }

    /// DestroyTask with `force`, as the Nomad client sends it.
    pub async fn try_destroy(&self, id: &str) -> Result<(), tonic::Status> {
        let req = DestroyTaskRequest {
            task_id: id.into(),
            force: true,
        };
        within(60.0, "DestroyTask", self.plugin.driver().destroy_task(req))
            .await
            .map(drop)
    }

    /// [`Node::try_destroy`] that must succeed.
    pub async fn destroy(&self, id: &str) {
        if let Err(s) = self.try_destroy(id).await {
            panic!(
                "DestroyTask of {id} failed: {s:?}\nplugin stderr:\n{}",
                self.stderr_tail()
            );
        }
    }

    /// Waits (15 s at most) for the task's `ready` line on stdout.
    pub async fn wait_ready(&self, t: &TestTask) {
        if !t
            .logs
            .wait_for_stdout("ready", Duration::from_secs(15))
            .await
        {
            panic!(
                "task {} never printed \"ready\" (stdout {:?}, stderr {:?})\nplugin stderr:\n{}",
                t.id(),
                t.logs.stdout(),
                t.logs.stderr(),
                self.stderr_tail()
            );
        }
    }

    /// The common end of every scenario: the host clean, the plugin's stdio clean, a clean
    /// shutdown, and the host still clean after it.
    pub async fn finish(self) {
        self.sim.assert_clean("at the end of the scenario");
        self.plugin.assert_clean_io();
        self.plugin.shutdown().await;
        self.sim.assert_clean("after plugin shutdown");
    }

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

    /// Datasets under the jails dataset other than the `demo_1.0` image: clones, pot datasets,
    /// and the temporary dataset of an interrupted import. `check` does not see the last two.
    pub fn stray_datasets(&self) -> Vec<String> {
        let (_, listed, _) = self.sim.tool(
            "zfs",
            &["list", "-H", "-r", "-o", "name", "zroot/pot/jails"],
            "",
        );
        listed
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

    /// Waits (30 s at most) until the host is clean and no pot dataset is left: a rollback may
    /// run after its caller left.
    pub async fn wait_clean(&self, what: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !(self.sim.check().0 && self.stray_datasets().is_empty()) {
            if std::time::Instant::now() > deadline {
                self.assert_no_debris(what);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
