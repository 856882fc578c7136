//! Base-tool invocations per bridged task lifecycle (StartTask + DestroyTask of a public-bridge
//! task with one published port), counted from the simulated host's `calls.jsonl`, next to pot's
//! own count for the same lifecycle (spec: pot-process-count.md, scenario B).
//!
//! Run: `cargo build --workspace && cargo bench --profile dev --bench network_calls`
//! (the bench drives the workspace's debug binaries; root is needed, as for the e2e tests).

use nomad_harness::{Plugin, SimHost, TestTask, cty};
use nomad_pot_driver::proto::base::{ConfigSchemaRequest, SetConfigRequest};
use nomad_pot_driver::proto::drivers::{
    DestroyTaskRequest, PortMapping, StartTaskRequest, TaskConfigSchemaRequest,
};
use serde_json::json;
use std::collections::BTreeMap;
use std::process::ExitCode;

/// Runs measured, after one warm-up lifecycle (image import and vnet-start are once per host).
const RUNS: usize = 5;
/// The budget for networking calls per bridged start + stop.
const TARGET: usize = 12;
/// Issue 18's budget for all base-tool calls of the same lifecycle.
const TARGET_ALL: usize = 24;
const NETWORK_TOOLS: &[&str] = &["ifconfig", "pfctl", "route"];

/// pot 0.16 + the Go driver, scenario B (pot-process-count.md §1 and §6): network calls in the
/// pot layer (ifconfig 12, pfctl 5, and 2 more `sysctl` VIMAGE checks than scenario A), and
/// those jail(8) and the in-jail tinirc make themselves (`ifconfig epairNb vnet`, `ifconfig`
/// ×3, `route add default`).
const POT_NETWORK_POT_LAYER: usize = 12 + 5 + 2;
const POT_NETWORK_JAIL_TINIRC: usize = 5;
const POT_ALL_POT_LAYER: usize = 86;

fn main() -> ExitCode {
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    rt.block_on(run())
}

async fn run() -> ExitCode {
    let sim = SimHost::create();
    let (code, _, err) = sim.tool(
        "pfctl",
        &["-f", "-"],
        "nat-anchor pot-nat\nrdr-anchor \"pot-rdr/*\"\n",
    );
    assert_eq!(code, 0, "pf main ruleset: {err}");
    let plugin = Plugin::launch().await;
    let schema = plugin
        .base()
        .config_schema(ConfigSchemaRequest {})
        .await
        .expect("ConfigSchema")
        .into_inner()
        .spec
        .expect("spec");
    plugin
        .base()
        .set_config(SetConfigRequest {
            msgpack_config: cty::encode(&schema, &sim.agent_config()).expect("agent config"),
            nomad_config: None,
            plugin_api_version: "v0.1.0".into(),
        })
        .await
        .expect("SetConfig");
    let task_spec = plugin
        .driver()
        .task_config_schema(TaskConfigSchemaRequest {})
        .await
        .expect("TaskConfigSchema")
        .into_inner()
        .spec
        .expect("spec");
    let image = format!("file://{}", sim.image("demo", "1.0").display());
    let cfg = json!({
        "image": image, "pot": "demo", "tag": "1.0",
        "command": "/bin/sh", "args": ["-c", "sleep 60"],
    });
    let mut per_run: Vec<BTreeMap<String, usize>> = Vec::new();
    for run in 0..=RUNS {
        let mut t = TestTask::new(
            &sim.allocs_dir(),
            "bench",
            cty::encode(&task_spec, &cfg).expect("task config"),
        );
        t.config
            .resources
            .as_mut()
            .unwrap()
            .ports
            .push(PortMapping {
                label: "http".into(),
                value: 24000 + (std::process::id() % 1000) as i32 + run as i32,
                to: 80,
                host_ip: String::new(),
            });
        let mark = sim.calls().len();
        plugin
            .driver()
            .start_task(StartTaskRequest {
                task: Some(t.config.clone()),
            })
            .await
            .expect("StartTask");
        plugin
            .driver()
            .destroy_task(DestroyTaskRequest {
                task_id: t.id(),
                force: true,
            })
            .await
            .expect("DestroyTask");
        let mut by_tool = BTreeMap::new();
        for c in &sim.calls()[mark..] {
            *by_tool.entry(c.argv[0].clone()).or_insert(0) += 1;
        }
        if run > 0 {
            per_run.push(by_tool);
        }
    }
    plugin.shutdown().await;
    let (clean, leftovers) = sim.check();
    assert!(clean, "leftovers: {leftovers}");

    let last = per_run.last().expect("measured runs").clone();
    let stable = per_run.iter().all(|r| *r == last);
    let network: usize = NETWORK_TOOLS
        .iter()
        .map(|t| last.get(*t).copied().unwrap_or(0))
        .sum();
    let all: usize = last.values().sum();
    println!(
        "base-tool calls per bridged lifecycle (StartTask + DestroyTask, 1 port), {RUNS} runs{}",
        if stable { ", identical" } else { ", VARYING" }
    );
    for (tool, n) in &last {
        println!("  {tool:<12} {n}");
    }
    println!("networking (ifconfig, pfctl, route): {network}   (target <= {TARGET})");
    println!(
        "pot 0.16: {POT_NETWORK_POT_LAYER} network calls in the pot layer + {POT_NETWORK_JAIL_TINIRC} by jail(8)/tinirc = {} ({:.1}x ours)",
        POT_NETWORK_POT_LAYER + POT_NETWORK_JAIL_TINIRC,
        (POT_NETWORK_POT_LAYER + POT_NETWORK_JAIL_TINIRC) as f64 / network as f64
    );
    println!(
        "all base tools: {all} (target <= {TARGET_ALL}) vs {POT_ALL_POT_LAYER} in pot's layer ({:.1}x ours)",
        POT_ALL_POT_LAYER as f64 / all as f64
    );
    println!(
        "note: on FreeBSD jail(8) itself also runs `ifconfig epairNb vnet <pot>` for vnet.interface (+1 here, not logged by the simulator)"
    );
    if network <= TARGET && all <= TARGET_ALL && stable {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
