//! Property test: any task name Nomad accepts runs a full lifecycle through the real plugin
//! and leaves nothing behind on the simulated host, also with alloc dirs under a Nomad
//! `data_dir` that contains blanks. `TASK_NAMES_SEED` replays a failing run,
//! `TASK_NAMES_CASES` runs more cases (default 12 per test).

mod common;

use common::env::{Env, pot_of};
use common::names::{MAX_TASK_NAME, Rng};
use common::potctl::potctl;
use common::{TaskBuilder, TestTask};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn seed() -> u64 {
    std::env::var("TASK_NAMES_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
}

fn cases() -> usize {
    std::env::var("TASK_NAMES_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12)
}

/// Start, run to its exit, destroy: the task prints its own name, and the host is clean after.
async fn lifecycle(env: &Env, allocs: &Path, name: &str, seed: u64) {
    let ctx = format!("task name {name:?} (TASK_NAMES_SEED={seed})");
    let cfg = json!({
        "image": env.file_image(), "pot": "demo", "tag": "1.0", "network_mode": "host",
        "command": "/bin/sh", "args": ["-c", "printf %s \"$NOMAD_TASK_NAME\""],
    });
    let t = TaskBuilder::new(name, env.encode_task(&cfg)).build(allocs);
    env.start(&t).await;
    let exit = env.wait(&t.id(), 30.0).await;
    assert_eq!(
        exit.result.as_ref().map(|r| r.exit_code),
        Some(0),
        "{ctx}: {exit:?}, stderr {:?}",
        t.logs.stderr()
    );
    assert!(t.logs.wait_for_eof(Duration::from_secs(5)).await, "{ctx}");
    assert_eq!(t.logs.stdout(), name, "{ctx}: the task's NOMAD_TASK_NAME");
    potctl_shows(env, &t, &ctx);
    env.destroy(&t.id()).await;
    let (clean, report) = env.sim.check();
    assert!(clean, "{ctx}: freebsd-sim check found leftovers:\n{report}");
}

/// `potctl show` finds the pot, names its task and mounts whole in JSON, and keeps the
/// table one line per item.
fn potctl_shows(env: &Env, t: &TestTask, ctx: &str) {
    let pot = pot_of(t);
    let show = |json: bool| {
        let mut args = vec!["show", pot.as_str()];
        if json {
            args.push("--json");
        }
        let out = potctl(&env.sim, &args);
        assert!(out.status.success(), "{ctx}: potctl {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let d: serde_json::Value = serde_json::from_str(&show(true)).unwrap();
    assert_eq!(d["owner"]["task"], t.task_name.as_str(), "{ctx}");
    let task_dir = t.alloc_dir.join(&t.task_name);
    let sources: Vec<&str> = d["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["source"].as_str().unwrap())
        .collect();
    for dir in ["local", "secrets"] {
        let want = std::fs::canonicalize(task_dir.join(dir)).unwrap();
        assert!(
            sources.contains(&want.to_str().unwrap()),
            "{ctx}: {want:?} not among {sources:?}"
        );
    }
    let text = show(false);
    let mounts = text
        .lines()
        .skip_while(|l| *l != "mounts:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .count();
    assert_eq!(
        mounts,
        sources.len(),
        "{ctx}: one line per mount in\n{text}"
    );
}

async fn run(allocs: impl Fn(&Env) -> PathBuf) {
    let seed = seed();
    // Shown by the test harness when the test fails.
    println!("TASK_NAMES_SEED={seed}");
    let mut rng = Rng::new(seed);
    let env = Env::new().await;
    let allocs = allocs(&env);
    for fixed in ["web v2", "web.v2", &"n".repeat(MAX_TASK_NAME)] {
        lifecycle(&env, &allocs, fixed, seed).await;
    }
    for _ in 0..cases() {
        let name = rng.task_name();
        lifecycle(&env, &allocs, &name, seed).await;
    }
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn any_task_name_nomad_accepts_runs_and_leaves_nothing() {
    run(|env| env.sim.allocs_dir()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn alloc_dirs_under_a_data_dir_with_blanks_leave_nothing() {
    run(|env| {
        env.sim
            .allocs_dir()
            .join("nomad data\tdir #1")
            .join("alloc")
    })
    .await;
}
