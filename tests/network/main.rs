//! Networking end to end: the real plugin on a simulated host, asserting the exact interfaces,
//! addresses, routes and pf rules a bridged task gets, their teardown, and the refusals of bad
//! input. Needs `cargo build --workspace` first (for the sim). Each scenario ends with
//! `freebsd-sim check` clean.
//!
//! One test binary, a module per part of the network; the world of a scenario is here.

#[path = "../common/mod.rs"]
mod common;

mod alias;
mod bridges;
mod concurrency;
mod ipv6;
mod refusals;

use common::env::{set_config, task_schema};
use common::{Plugin, SimHost, TestTask, within};
use nomad_pot_driver::engine::PotName;
use nomad_pot_driver::proto::drivers::{
    DestroyTaskRequest, FingerprintRequest, PortMapping, StartTaskRequest, StartTaskResponse,
};
use nomad_pot_driver::proto::hclspec::Spec;
use nomad_pot_driver::proto::structs::attribute;
use serde_json::{Value as Json, json};

/// What `pot init` adds to pf.conf: without it bridged starts are refused.
const POT_PF_MAIN: &str = "nat-anchor pot-nat\nrdr-anchor \"pot-rdr/*\"\n";

struct Env {
    sim: SimHost,
    plugin: Plugin,
    task_spec: Spec,
    image: String,
}

impl Env {
    async fn new(pf_ready: bool) -> Env {
        Env::with_agent_config(pf_ready, json!({})).await
    }

    /// Like [`Env::new`], with some agent config keys replaced.
    async fn with_agent_config(pf_ready: bool, overrides: Json) -> Env {
        let sim = SimHost::create();
        if pf_ready {
            let (code, _, err) = sim.tool("pfctl", &["-f", "-"], POT_PF_MAIN);
            assert_eq!(code, 0, "load pf main ruleset: {err}");
        }
        let plugin = Plugin::launch().await;
        set_config(&plugin, &sim.agent_config_with(overrides), true)
            .await
            .expect("SetConfig");
        let task_spec = task_schema(&plugin).await;
        let image = format!("file://{}", sim.image("demo", "1.0").display());
        Env {
            sim,
            plugin,
            task_spec,
            image,
        }
    }

    /// A task running `sh -c 'echo ready; sleep 60'` with `extra` config keys and Nomad ports.
    fn task(&self, name: &str, extra: Json, ports: &[(&str, i32, i32)]) -> TestTask {
        let mut cfg = json!({
            "image": self.image, "pot": "demo", "tag": "1.0",
            "command": "/bin/sh", "args": ["-c", "echo ready; sleep 60"],
        });
        for (k, v) in extra.as_object().unwrap() {
            cfg[k] = v.clone();
        }
        let bytes = common::cty::encode(&self.task_spec, &cfg).expect("task config");
        let mut t = TestTask::new(&self.sim.allocs_dir(), name, bytes);
        let res = t.config.resources.as_mut().unwrap();
        for (label, value, to) in ports {
            res.ports.push(PortMapping {
                label: label.to_string(),
                value: *value,
                to: *to,
                host_ip: String::new(),
            });
            t.config
                .env
                .insert(format!("NOMAD_HOST_PORT_{label}"), value.to_string());
        }
        t
    }

    async fn try_start(&self, t: &TestTask) -> Result<StartTaskResponse, tonic::Status> {
        let req = StartTaskRequest {
            task: Some(t.config.clone()),
        };
        within(120.0, "StartTask", self.plugin.driver().start_task(req))
            .await
            .map(|r| r.into_inner())
    }

    async fn start(&self, t: &TestTask) -> StartTaskResponse {
        self.try_start(t).await.unwrap_or_else(|s| {
            panic!(
                "StartTask failed: {s:?}\n{}",
                self.plugin.stderr_lines().join("\n")
            )
        })
    }

    async fn destroy(&self, t: &TestTask) {
        let req = DestroyTaskRequest {
            task_id: t.id(),
            force: true,
        };
        within(60.0, "DestroyTask", self.plugin.driver().destroy_task(req))
            .await
            .expect("DestroyTask");
    }

    async fn fingerprint(&self) -> (bool, String) {
        let mut stream = self
            .plugin
            .driver()
            .fingerprint(FingerprintRequest {})
            .await
            .expect("Fingerprint")
            .into_inner();
        let fp = within(10.0, "Fingerprint", stream.message())
            .await
            .expect("stream")
            .expect("message");
        let bridge = match fp.attributes["driver.pot.network.bridge"].value {
            Some(attribute::Value::BoolVal(b)) => b,
            ref other => panic!("driver.pot.network.bridge is {other:?}"),
        };
        (bridge, fp.health_description)
    }

    async fn finish(self) {
        self.sim.assert_clean("at the end of the scenario");
        self.plugin.assert_clean_io();
        self.plugin.shutdown().await;
        self.sim.assert_clean("after plugin shutdown");
    }
}

fn pot_of(t: &TestTask) -> PotName {
    PotName::for_task(
        &t.task_name,
        t.id().rsplit('/').next().unwrap(),
        &t.alloc_id,
    )
    .unwrap()
}

/// Host ports for one test run, spread so parallel tests rarely meet.
fn port_base() -> i32 {
    20000 + (std::process::id() as i32 % 400) * 20
}

/// The ifconfig block of `name` as (description, inet lines, members).
fn block(text: &str) -> (String, Vec<String>, Vec<String>) {
    let mut descr = String::new();
    let (mut inet, mut members) = (vec![], vec![]);
    for l in text.lines().skip(1).map(str::trim) {
        if let Some(d) = l.strip_prefix("description: ") {
            descr = d.to_string();
        } else if l.starts_with("inet ") {
            inet.push(l.to_string());
        } else if let Some(m) = l.strip_prefix("member: ") {
            members.push(m.split_whitespace().next().unwrap().to_string());
        }
    }
    (descr, inet, members)
}
