//! Memory as the host pays it, on a simulated FreeBSD host (Linux /proc figures): the per-task
//! supervisor's PSS (its private pages plus its share of the pages it shares with the other
//! supervisors and the plugin) against the target, its peak RSS for information, the plugin's
//! RSS idle and with 100 running tasks, and the total PSS of the plugin and 100 supervisors next
//! to what Nomad's own per-task executor costs.
//!
//! `cargo build --release --workspace && cargo bench --bench rss` (root; the simulator and the
//! plugin are taken from target/release).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use common::env::*;
use nomad_pot_driver::proto::drivers::FingerprintRequest;

const TASKS: usize = 100;
const MIB: f64 = 1024.0 * 1024.0;
const SHIM_PSS_TARGET_MIB: f64 = 1.0;
const PLUGIN_IDLE_TARGET_MIB: f64 = 10.0;
/// Nomad's executor process per task (`hashicorp/nomad#9858`): about 18 MB of RSS each.
const NOMAD_EXECUTOR_MB: f64 = 18.0;

/// A field of `/proc/<pid>/<file>` in bytes: `VmRSS`, `VmHWM` of `status`; `Pss`,
/// `Private_Dirty` of `smaps_rollup`.
fn proc_bytes(pid: u32, file: &str, field: &str) -> f64 {
    let path = format!("/proc/{pid}/{file}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kib| kib * 1024.0)
        .unwrap_or_else(|| panic!("no {field} in {path}"))
}

/// A `/proc/<pid>/status` field in bytes (`VmRSS`, `VmHWM`).
fn proc_kib(pid: u32, field: &str) -> f64 {
    proc_bytes(pid, "status", field)
}

/// A `/proc/<pid>/smaps_rollup` field in bytes (`Pss`, `Private_Dirty`, …).
fn rollup_kib(pid: u32, field: &str) -> f64 {
    proc_bytes(pid, "smaps_rollup", field)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The floor for any dynamically linked program here: /bin/sleep's peak RSS.
fn sleep_floor() -> f64 {
    let mut sleep = std::process::Command::new("/bin/sleep")
        .arg("5")
        .spawn()
        .expect("spawn /bin/sleep");
    std::thread::sleep(Duration::from_millis(300));
    let hwm = proc_kib(sleep.id(), "VmHWM");
    let _ = sleep.kill();
    let _ = sleep.wait();
    hwm
}

fn row(figure: &str, bytes: f64, target_mib: Option<f64>) {
    let mib = bytes / MIB;
    match target_mib {
        Some(t) => println!(
            "| {figure} | {mib:.2} MiB | ≤ {t} MiB | {:.2} | {} |",
            mib / t,
            if mib <= t { "met" } else { "MISSED" }
        ),
        None => println!("| {figure} | {mib:.2} MiB | – | – | – |"),
    }
}

#[tokio::main]
async fn main() {
    let env = Env::new().await;
    let mut fp = env.plugin.driver();
    let _ = fp
        .fingerprint(FingerprintRequest {})
        .await
        .expect("Fingerprint")
        .into_inner()
        .message()
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let plugin = env.plugin.pid;
    let idle = proc_kib(plugin, "VmRSS");

    let mut tasks = Vec::new();
    for i in 0..TASKS {
        let t = env.task(&format!("rss{i}"), &gated_task_config(&env, 0));
        env.start(&t).await;
        tasks.push(t);
    }
    for t in &tasks {
        env.wait_ready(t).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let loaded = proc_kib(plugin, "VmRSS");
    let peak = proc_kib(plugin, "VmHWM");
    let shim_pids: Vec<u32> = tasks
        .iter()
        .map(|t| env.supervisor_pids(t).0 as u32)
        .collect();
    let mut shims: Vec<f64> = shim_pids.iter().map(|p| proc_kib(*p, "VmHWM")).collect();
    shims.sort_by(f64::total_cmp);
    let mut pss: Vec<f64> = shim_pids.iter().map(|p| rollup_kib(*p, "Pss")).collect();
    pss.sort_by(f64::total_cmp);
    let total_pss = rollup_kib(plugin, "Pss") + pss.iter().sum::<f64>();
    let private = median(
        shim_pids
            .iter()
            .map(|p| rollup_kib(*p, "Private_Dirty"))
            .collect(),
    );
    let floor = sleep_floor();

    for t in &tasks {
        open_gate(t);
    }
    for t in &tasks {
        env.wait_and_destroy(&t.id(), 30.0).await;
    }

    println!("| figure | value | target | ratio | |");
    println!("|---|---|---|---|---|");
    row(
        "shim PSS (shared pages split), median of 100",
        pss[TASKS / 2],
        Some(SHIM_PSS_TARGET_MIB),
    );
    row(
        "shim PSS (shared pages split), max of 100",
        pss[TASKS - 1],
        Some(SHIM_PSS_TARGET_MIB),
    );
    row("shim private dirty memory, median of 100", private, None);
    row(
        "shim peak RSS (VmHWM), median of 100",
        shims[TASKS / 2],
        None,
    );
    row("shim peak RSS (VmHWM), max of 100", shims[TASKS - 1], None);
    row("floor: /bin/sleep peak RSS (VmHWM)", floor, None);
    row(
        "plugin RSS, idle (configured, fingerprinted)",
        idle,
        Some(PLUGIN_IDLE_TARGET_MIB),
    );
    row("plugin RSS, 100 running tasks", loaded, None);
    row("plugin peak RSS (VmHWM) over the run", peak, None);
    let nomad = TASKS as f64 * NOMAD_EXECUTOR_MB * 1e6;
    println!(
        "| plugin + 100 shims, total PSS | {:.2} MiB ({:.2} MiB per task) | Nomad's executors: {TASKS} × ~{NOMAD_EXECUTOR_MB} MB RSS = {:.0} MiB | {:.3} | – |",
        total_pss / MIB,
        total_pss / MIB / TASKS as f64,
        nomad / MIB,
        total_pss / nomad
    );
    env.finish().await;
}
