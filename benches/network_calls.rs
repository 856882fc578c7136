//! Base-tool invocations per bridged task lifecycle (StartTask + DestroyTask of a public-bridge
//! task with one published port), counted from the simulated host's `calls.jsonl`, next to pot's
//! own count for the same lifecycle (spec: pot-process-count.md, scenario B).
//!
//! Run: `cargo build --workspace && cargo bench --profile dev --bench network_calls`
//! (the bench drives the workspace's debug binaries; root is needed, as for the e2e tests).

use nomad_harness::node::publish_port;
use nomad_harness::{Node, Setup};
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
    let node = Node::setup(Setup {
        pot_pf_main: true,
        without_nomad_config: true,
        ..Setup::default()
    })
    .await;
    let cfg = node.sh_config("sleep 60");
    let mut per_run: Vec<BTreeMap<String, usize>> = Vec::new();
    for run in 0..=RUNS {
        let mut t = node.task("bench", &cfg);
        let port = 24000 + (std::process::id() % 1000) as i32 + run as i32;
        publish_port(&mut t, "http", port, 80);
        let mark = node.sim.calls().len();
        node.start(&t).await;
        node.destroy(&t.id()).await;
        let mut by_tool = BTreeMap::new();
        for c in &node.sim.calls()[mark..] {
            *by_tool.entry(c.argv[0].clone()).or_insert(0) += 1;
        }
        if run > 0 {
            per_run.push(by_tool);
        }
    }
    node.finish().await;

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
