//! Limits: rctl rules, cpuset and quota from Nomad's resources and the task config, their
//! removal and rollback, `oom_killed`, and a recovered task keeping them.

use std::time::Duration;

use crate::common::env::*;
use crate::common::within;
use crate::{collect_events, wait_for_event};
use nomad_pot_driver::proto::drivers::StopTaskRequest;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn limits_are_applied_before_the_task_and_removed_after() {
    let env = Env::new().await;
    env.sim.tool_ok("sysctl", &["hw.ncpu=8"]);
    let mut cfg = gated_task_config(&env, 0);
    for (k, v) in [
        ("maxproc", "100"),
        ("openfiles", "1024"),
        ("vmemoryuse", "1G"),
        ("swapuse", "512M"),
        ("readbps", "10m"),
        ("writebps", "1048576"),
        ("quota", "2G"),
    ] {
        cfg[k] = json!(v);
    }
    cfg["cpu_hard_limit"] = json!(true);
    let t = env.limited_task("limited", &cfg, "2-3");
    env.start_ready(&t).await;
    let pot = pot_of(&t).to_string();
    let mut rules: Vec<String> = env
        .sim
        .tool_ok("rctl", &[])
        .lines()
        .map(String::from)
        .collect();
    rules.sort();
    let want = |r: &str, a: &str, n: u64| format!("jail:{pot}:{r}:{a}={n}");
    let mut expected = vec![
        // memory_max wins over memory; 0.0625 of 8 CPUs is half of one.
        want("memoryuse", "deny", 128 << 20),
        // The kernel reports the jail reaching it (oom_killed).
        want("memoryuse", "devctl", 128 << 20),
        want("pcpu", "deny", 50),
        want("maxproc", "deny", 100),
        want("openfiles", "deny", 1024),
        want("vmemoryuse", "deny", 1 << 30),
        want("swapuse", "deny", 512 << 20),
        want("readbps", "throttle", 10 << 20),
        want("writebps", "throttle", 1 << 20),
    ];
    expected.sort();
    assert_eq!(rules, expected);
    let jid = env
        .sim
        .tool_ok("jls", &["-j", &pot, "jid"])
        .trim()
        .to_string();
    assert!(
        env.sim
            .tool_ok("cpuset", &["-g", "-j", &pot])
            .contains(&format!("jail {jid} mask: 2, 3")),
        "cpuset"
    );
    let quota = format!("quota={}", 2u64 << 30);
    assert_eq!(
        env.calls_starting(&["zfs", "set", &quota]),
        [vec![
            "zfs".to_string(),
            "set".into(),
            quota.clone(),
            format!("zroot/pot/jails/{pot}")
        ]]
    );
    // Limits are on the jail before the task runs in it.
    let calls: Vec<String> = env.sim.calls().iter().map(|c| c.line()).collect();
    let jail_c = calls
        .iter()
        .position(|l| l.starts_with("jail -i -c"))
        .unwrap();
    let last_limit = calls
        .iter()
        .rposition(|l| l.starts_with("rctl -a") || l.starts_with("cpuset -l"))
        .unwrap();
    assert!(jail_c < last_limit);
    assert!(
        calls[last_limit..].iter().all(|l| !l.starts_with("jexec")),
        "{calls:?}"
    );
    within(
        20.0,
        "StopTask",
        env.plugin.driver().stop_task(StopTaskRequest {
            task_id: t.id(),
            timeout: Some(dur(1)),
            signal: "SIGKILL".into(),
        }),
    )
    .await
    .expect("StopTask");
    assert_eq!(
        env.sim.tool_ok("rctl", &[]),
        "",
        "rules left behind by StopTask"
    );
    env.wait_and_destroy(&t.id(), 10.0).await;
    assert_eq!(env.sim.tool_ok("rctl", &[]), "", "rules left behind");
    env.finish().await;
}

/// The pcpu rules on the host's rctl list (`jail:<pot>:pcpu:deny=N`).
fn pcpu_rules(env: &Env) -> Vec<String> {
    env.sim
        .tool_ok("rctl", &[])
        .lines()
        .filter(|r| r.contains(":pcpu:"))
        .map(String::from)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn cpu_is_a_reservation_unless_cpu_hard_limit_makes_it_a_cap() {
    // The agent's default is a reservation; a task's own `cpu_hard_limit = true` caps it.
    let env = Env::new().await;
    env.sim.tool_ok("sysctl", &["hw.ncpu=8"]);
    let reserved = env.limited_task("reserved", &gated_task_config(&env, 0), "");
    env.start_ready(&reserved).await;
    assert_eq!(pcpu_rules(&env), Vec::<String>::new());
    let mut cfg = gated_task_config(&env, 0);
    cfg["cpu_hard_limit"] = json!(true);
    let capped = env.limited_task("capped", &cfg, "");
    env.start_ready(&capped).await;
    assert_eq!(
        pcpu_rules(&env),
        [format!("jail:{}:pcpu:deny=50", pot_of(&capped))]
    );
    for t in [&reserved, &capped] {
        open_gate(t);
        env.wait_and_destroy(&t.id(), 10.0).await;
    }
    env.finish().await;

    // The agent's `cpu_hard_limit = true` caps every task that does not say otherwise.
    let env = Env::with_agent_config(json!({"cpu_hard_limit": true})).await;
    env.sim.tool_ok("sysctl", &["hw.ncpu=8"]);
    let capped = env.limited_task("capped", &gated_task_config(&env, 0), "");
    let mut cfg = gated_task_config(&env, 0);
    cfg["cpu_hard_limit"] = json!(false);
    let reserved = env.limited_task("reserved", &cfg, "");
    for t in [&capped, &reserved] {
        env.start_ready(t).await;
    }
    assert_eq!(
        pcpu_rules(&env),
        [format!("jail:{}:pcpu:deny=50", pot_of(&capped))]
    );
    for t in [&reserved, &capped] {
        open_gate(t);
        env.wait_and_destroy(&t.id(), 10.0).await;
    }
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_are_rolled_back_with_a_failed_start_and_need_racct() {
    let mut env = Env::new().await;
    env.sim.tool_ok("sysctl", &["hw.ncpu=8"]);
    // CPU 9 does not exist: cpuset fails after the rctl rules are in place.
    let t = env.limited_task("badcores", &gated_task_config(&env, 0), "1,9");
    let s = env.start_err(&t).await;
    assert!(s.message().contains("cpuset"), "{s:?}");
    let pot = pot_of(&t).to_string();
    assert!(!env.calls_starting(&["rctl", "-a"]).is_empty());
    assert_eq!(
        env.calls_starting(&["rctl", "-r", &format!("jail:{pot}")])
            .len(),
        1,
        "rollback must remove the rules"
    );
    env.sim.assert_clean("after a rolled-back start");

    let bad = env.task(
        "badsize",
        &json!({"image": "http://127.0.0.1:9/", "pot": "demo",
        "tag": "1.0", "swapuse": "lots"}),
    );
    let s = env.start_err(&bad).await;
    assert_eq!(s.code(), tonic::Code::InvalidArgument);
    assert!(
        s.message().contains("swapuse: \"lots\" is not a size"),
        "{s:?}"
    );

    // Without racct: limits the job asked for refuse the start, Nomad's own are skipped.
    // racct is a loader tunable: a host without it is one booted so, under a new plugin (a
    // plugin process reads it once).
    env.sim.tool_ok("sysctl", &["kern.racct.enable=0"]);
    env.crash_and_relaunch().await;
    let mut cfg = gated_task_config(&env, 0);
    cfg["maxproc"] = json!("10");
    let t = env.limited_task("noracct", &cfg, "");
    let s = env.start_err(&t).await;
    assert!(s.message().contains("kern.racct.enable is 0"), "{s:?}");
    let adds = env.calls_starting(&["rctl", "-a"]).len();
    let t = env.limited_task("nolimits", &gated_task_config(&env, 0), "");
    env.start_ready(&t).await;
    assert_eq!(env.calls_starting(&["rctl", "-a"]).len(), adds);
    open_gate(&t);
    env.wait_and_destroy(&t.id(), 10.0).await;
    env.finish().await;
}

/// A jail that reached its memory limit is reported as OOM-killed: the kernel's `devctl`
/// notification reaches a task supervisor through devd, also while the plugin is down, and the
/// exit says so. A task that stayed below its limit is not.
#[tokio::test(flavor = "multi_thread")]
async fn a_task_that_reached_its_memory_limit_is_reported_oom_killed() {
    let mut env = Env::new().await;
    let _devd = env.sim.start_devd();
    let cfg = env.sh_config("echo $$ > /local/pid; echo ready; while :; do sleep 0.1; done");
    let (hog, calm) = (env.task("hog", &cfg), env.task("calm", &cfg));
    let mut handles = Vec::new();
    for t in [&hog, &calm] {
        handles.push(env.start(t).await.handle.expect("StartTask without handle"));
        env.wait_ready(t).await;
    }
    let limit: u64 = 64 << 20;
    let (hog_pot, calm_pot) = (pot_of(&hog).to_string(), pot_of(&calm).to_string());
    let rules = env.sim.tool_ok("rctl", &[]);
    for pot in [&hog_pot, &calm_pot] {
        assert!(
            rules.contains(&format!("jail:{pot}:memoryuse:devctl={limit}\n")),
            "{rules}"
        );
    }

    // The jail crosses its limit while no plugin runs.
    env.plugin.kill();
    let note = env.sim.usage(&hog_pot, "memoryuse", limit + 4096);
    assert!(
        note.contains(&format!("rule=jail:{hog_pot}:memoryuse:devctl={limit} ")),
        "{note}"
    );
    assert_eq!(env.sim.usage(&calm_pot, "memoryuse", limit / 2), "");
    env.crash_and_relaunch().await;
    let events = collect_events(&env, hog.id());
    let calm_events = collect_events(&env, calm.id());
    tokio::time::sleep(Duration::from_millis(200)).await;
    for h in &handles {
        env.recover(h).await.expect("RecoverTask");
    }
    // Both die of SIGKILL, as the kernel's OOM killer would kill them.
    for t in [&hog, &calm] {
        let pid: i32 = std::fs::read_to_string(t.alloc_dir.join(&t.task_name).join("local/pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // SAFETY: kill(2) on a pid the task wrote.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    }
    let r = env.exit(&hog.id(), 20.0).await;
    assert_eq!((r.signal, r.oom_killed), (9, true), "{r:?}");
    let r = env.exit(&calm.id(), 20.0).await;
    assert_eq!((r.signal, r.oom_killed), (9, false), "{r:?}");
    let said = "Task killed by signal 9 (OOM: the jail reached its memory limit of 64 MiB)";
    let seen = wait_for_event(&events, said, 5.0).await;
    assert!(seen.iter().any(|m| m == said), "{seen:?}");
    let seen = wait_for_event(&calm_events, "Task killed by signal 9", 5.0).await;
    assert!(
        seen.iter().any(|m| m == "Task killed by signal 9"),
        "{seen:?}"
    );
    for t in [&hog, &calm] {
        env.destroy(&t.id()).await;
    }
    assert_eq!(env.sim.tool_ok("rctl", &[]), "", "rules left behind");
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_of_a_recovered_task_go_with_it() {
    let mut env = Env::new().await;
    let mut cfg = gated_task_config(&env, 0);
    cfg["maxproc"] = json!("50");
    let t = env.limited_task("crashy", &cfg, "");
    let handle = env.start(&t).await.handle.unwrap();
    env.wait_ready(&t).await;
    env.crash_and_relaunch().await;
    env.recover(&handle).await.expect("RecoverTask");
    let pot = pot_of(&t).to_string();
    assert!(
        env.sim
            .tool_ok("rctl", &[])
            .contains(&format!("jail:{pot}:maxproc:deny=50\n")),
        "the running task keeps its limits"
    );
    open_gate(&t);
    env.wait_and_destroy(&t.id(), 10.0).await;
    assert_eq!(env.sim.tool_ok("rctl", &[]), "", "rules left behind");
    env.finish().await;
}
