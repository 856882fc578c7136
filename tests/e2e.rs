//! End-to-end scenarios: the real plugin binary, driven like Nomad drives it, against a
//! simulated FreeBSD host (`freebsd-sim`). Needs `cargo build --workspace` first (for the sim).
//!
//! Every scenario has its own sim host and plugin process and ends with: `freebsd-sim check`
//! clean, nothing on the plugin's stdout after the handshake, every stderr line hclog JSON, and
//! a clean `GRPCController.Shutdown`.

mod common;

use std::time::{Duration, Instant};

use common::cty::{self, find_attr, norm_type};
use common::env::*;
use common::{FileServer, Plugin, SimHost, TaskBuilder, TestTask, within};
use nomad_pot_driver::proto::base::{PluginInfoRequest, PluginType};
use nomad_pot_driver::proto::drivers::{
    CapabilitiesRequest, DestroyTaskRequest, FingerprintRequest, FingerprintResponse,
    InspectTaskRequest, SignalTaskRequest, StartTaskRequest, StopTaskRequest, TaskHandle,
    TaskStatsRequest, WaitTaskRequest, driver_capabilities::FsIsolation,
    fingerprint_response::HealthState,
};
use nomad_pot_driver::proto::structs::attribute;
use serde_json::{Value as Json, json};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

/// `1.2.3`, `v1.2.3`, `1.2.3-dev` → (1, 2, 3)
fn parse_semver(v: &str) -> Option<(u64, u64, u64)> {
    let v = v.strip_prefix('v').unwrap_or(v);
    let core = v.split(['-', '+']).next()?;
    let parts: Vec<u64> = core
        .split('.')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    match parts.as_slice() {
        [a, b, c] => Some((*a, *b, *c)),
        _ => None,
    }
}

async fn first_fingerprint(plugin: &Plugin) -> FingerprintResponse {
    let mut driver = plugin.driver();
    within(5.0, "first Fingerprint message", async move {
        let mut stream = driver
            .fingerprint(FingerprintRequest {})
            .await
            .expect("Fingerprint")
            .into_inner();
        stream
            .message()
            .await
            .expect("Fingerprint stream error")
            .expect("Fingerprint stream ended")
    })
    .await
}

async fn assert_health_serving(plugin: &Plugin) {
    let resp = within(
        5.0,
        "health Check",
        plugin.health().check(HealthCheckRequest {
            service: "plugin".into(),
        }),
    )
    .await
    .expect("health Check(\"plugin\")")
    .into_inner();
    assert_eq!(resp.status, ServingStatus::Serving as i32, "health status");
}

// ---------------------------------------------------------------------------------------------
// a. info, schemas, SetConfig
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn info_schemas_and_setconfig() {
    let sim = SimHost::create();
    let plugin = Plugin::launch().await;

    assert_health_serving(&plugin).await;

    let info = within(
        5.0,
        "PluginInfo",
        plugin.base().plugin_info(PluginInfoRequest {}),
    )
    .await
    .expect("PluginInfo")
    .into_inner();
    assert_eq!(info.r#type, PluginType::Driver as i32, "plugin type");
    assert_eq!(info.name, "pot");
    assert_eq!(info.plugin_api_versions, vec![API_VERSION.to_string()]);
    let v = parse_semver(&info.plugin_version)
        .unwrap_or_else(|| panic!("plugin_version {:?} is not a semver", info.plugin_version));
    assert!(
        v > (0, 10, 0),
        "plugin_version {} must be above 0.10.0",
        info.plugin_version
    );

    // Agent schema.
    let schema = config_schema(&plugin).await;
    assert!(schema.block.is_some(), "ConfigSchema spec is empty");
    assert!(
        !cty::object_attrs(&schema).is_empty(),
        "ConfigSchema root must be a non-empty object"
    );

    // Task schema: a superset of the Go driver's (protocol spec §7.3).
    let tspec = task_schema(&plugin).await;
    assert!(
        !cty::object_attrs(&tspec).is_empty(),
        "TaskConfigSchema root must be a non-empty object"
    );
    for key in ["image", "pot", "tag"] {
        let a = find_attr(&tspec, key).unwrap_or_else(|| panic!("task schema lacks {key:?}"));
        assert!(a.required, "{key:?} must be required");
        assert_eq!(norm_type(&a.r#type), "string", "type of {key:?}");
    }
    for (key, ty) in [
        ("command", "string"),
        ("args", "list(string)"),
        ("port_map", "list(map(string))"),
        ("network_mode", "string"),
        ("mount", "list(string)"),
        ("copy", "list(string)"),
        ("mount_read_only", "list(string)"),
        ("extra_hosts", "list(string)"),
        ("attributes", "list(string)"),
    ] {
        let a = find_attr(&tspec, key).unwrap_or_else(|| panic!("task schema lacks {key:?}"));
        assert!(!a.required, "{key:?} must be optional");
        assert_eq!(norm_type(&a.r#type), ty, "type of {key:?}");
    }
    // Every attribute type must be one the agent can parse.
    for (k, _) in cty::object_attrs(&tspec) {
        if let Some(a) = find_attr(&tspec, &k) {
            cty::Ty::parse(&a.r#type).unwrap_or_else(|e| panic!("task schema attr {k:?}: {e}"));
        }
    }

    // Validation launch: SetConfig twice without nomad_config; then the long-lived form.
    let agent = sim.agent_config();
    set_config(&plugin, &agent, false)
        .await
        .expect("SetConfig #1 (nomad_config unset)");
    set_config(&plugin, &agent, false)
        .await
        .expect("SetConfig #2 (nomad_config unset)");
    set_config(&plugin, &agent, true)
        .await
        .expect("SetConfig with nomad_config");
    // The agent's `plugin "nomad-pot-driver" {}` with no config block must also be accepted.
    set_config(&plugin, &json!({}), false)
        .await
        .expect("SetConfig with an empty config block");
    set_config(&plugin, &agent, true)
        .await
        .expect("SetConfig again");

    let caps = within(
        5.0,
        "Capabilities",
        plugin.driver().capabilities(CapabilitiesRequest {}),
    )
    .await
    .expect("Capabilities")
    .into_inner()
    .capabilities
    .expect("Capabilities response without capabilities");
    assert!(caps.send_signals, "send_signals");
    assert!(caps.exec, "exec");
    assert_eq!(caps.fs_isolation, FsIsolation::Image as i32, "fs_isolation");

    // Bad agent configs (bypassing the agent's validation) must be rejected, naming the key.
    let bad_value = cty::encode_raw(&json!({"enabled": true, "zfs_root": 5}));
    let err = set_config_bytes(&plugin, bad_value, true)
        .await
        .expect_err("SetConfig with zfs_root = 5 must fail");
    assert!(
        err.message().contains("zfs_root"),
        "error should name zfs_root: {err:?}"
    );
    let mut unknown = sim.agent_config();
    unknown["bogus_option"] = json!("x");
    let err = set_config_bytes(&plugin, cty::encode_raw(&unknown), true)
        .await
        .expect_err("SetConfig with an unknown key must fail");
    assert!(
        err.message().contains("bogus_option"),
        "error should name bogus_option: {err:?}"
    );
    // A good config is still accepted afterwards.
    set_config(&plugin, &agent, true)
        .await
        .expect("SetConfig after rejected configs");

    sim.assert_clean("after the info scenario");
    plugin.assert_clean_io();
    plugin.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// b. fingerprint
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn fingerprint() {
    let env = Env::new().await;
    let fp = first_fingerprint(&env.plugin).await;
    assert_eq!(
        fp.health,
        HealthState::Healthy as i32,
        "health (description {:?})\nplugin stderr:\n{}",
        fp.health_description,
        env.stderr_tail()
    );
    match fp
        .attributes
        .get("driver.pot")
        .and_then(|a| a.value.as_ref())
    {
        Some(attribute::Value::BoolVal(true)) => {}
        other => panic!("attribute driver.pot must be bool true, got {other:?}"),
    }
    match fp
        .attributes
        .get("driver.pot.version")
        .and_then(|a| a.value.as_ref())
    {
        Some(attribute::Value::StringVal(s)) if !s.is_empty() => {}
        other => panic!("attribute driver.pot.version must be a non-empty string, got {other:?}"),
    }
    // The simulated host has kern.racct.enable=1.
    match fp
        .attributes
        .get("driver.pot.racct")
        .and_then(|a| a.value.as_ref())
    {
        Some(attribute::Value::BoolVal(true)) => {}
        other => panic!("attribute driver.pot.racct must be bool true, got {other:?}"),
    }

    // A second plugin whose tool_path has no tools: UNHEALTHY, saying what is missing.
    let broken = Plugin::launch().await;
    let empty = env.sim.empty_dir();
    let cfg = env
        .sim
        .agent_config_with(json!({"tool_path": empty.to_string_lossy()}));
    set_config(&broken, &cfg, true)
        .await
        .expect("SetConfig must accept a tool_path without tools");
    let fp = first_fingerprint(&broken).await;
    assert_eq!(
        fp.health,
        HealthState::Unhealthy as i32,
        "health with no tools: {fp:?}"
    );
    let desc = fp.health_description.to_lowercase();
    assert!(
        [
            "zfs", "jail", "jexec", "jls", "ifconfig", "pfctl", "rctl", "mount", "sysctl", "cpuset"
        ]
        .iter()
        .any(|t| desc.contains(t)),
        "health description should name the missing tool(s): {:?}",
        fp.health_description
    );
    broken.assert_clean_io();
    broken.shutdown().await;

    env.finish().await;
}

// ---------------------------------------------------------------------------------------------
// c. start, logs, exit code
// ---------------------------------------------------------------------------------------------

async fn start_logs_exit_code_with(env: &Env, image: String) {
    let cfg = json!({
        "image": image,
        "pot": "demo",
        "tag": "1.0",
        "command": "/bin/sh",
        "args": ["-c", "echo out-line; echo err-line >&2; exit 3"],
    });
    let t = env.task("web", &cfg);
    let resp = env.start(&t).await;
    let handle = resp.handle.expect("StartTask response without handle");
    assert_ne!(handle.version, 0, "TaskHandle.version 0 is reserved");
    let hcfg = handle
        .config
        .expect("TaskHandle.config must echo the TaskConfig");
    assert_eq!(hcfg.id, t.id(), "TaskHandle.config.id");

    assert!(
        t.logs
            .wait_for_stdout("out-line", Duration::from_secs(15))
            .await,
        "stdout FIFO never got \"out-line\" (got {:?})\nplugin stderr:\n{}",
        t.logs.stdout(),
        env.stderr_tail()
    );
    assert!(
        t.logs
            .wait_for_stderr("err-line", Duration::from_secs(5))
            .await,
        "stderr FIFO never got \"err-line\" (got {:?})",
        t.logs.stderr()
    );
    assert!(
        !t.logs.stdout().contains("err-line"),
        "stderr leaked into stdout"
    );
    assert!(
        !t.logs.stderr().contains("out-line"),
        "stdout leaked into stderr"
    );

    let w = env.wait(&t.id(), 30.0).await;
    let r = w.result.expect("WaitTask response without result");
    assert_eq!((r.exit_code, r.signal), (3, 0), "exit result {r:?}");
    assert!(w.err.is_empty(), "WaitTask err: {:?}", w.err);
    // WaitTask may be called again after exit and returns at once.
    let w2 = env.wait(&t.id(), 5.0).await;
    assert_eq!(w2.result.map(|r| r.exit_code), Some(3), "second WaitTask");

    let insp = within(
        5.0,
        "InspectTask",
        env.plugin
            .driver()
            .inspect_task(InspectTaskRequest { task_id: t.id() }),
    )
    .await
    .expect("InspectTask")
    .into_inner();
    let st = insp.task.expect("InspectTask without task");
    assert_eq!(st.id, t.id(), "InspectTask task.id");
    assert!(st.started_at.is_some(), "InspectTask started_at unset");
    assert!(st.completed_at.is_some(), "InspectTask completed_at unset");
    let res = st.result.expect("InspectTask without result");
    assert_eq!(res.exit_code, 3, "InspectTask result");

    env.destroy(&t.id()).await;
    assert!(
        t.logs.wait_for_eof(Duration::from_secs(5)).await,
        "FIFO write ends still open after DestroyTask (logmon would never see EOF)"
    );
    env.sim.assert_clean("after DestroyTask");
}

#[tokio::test(flavor = "multi_thread")]
async fn start_logs_exit_code() {
    let env = Env::new().await;
    let server = FileServer::serve(&env.sim.image("demo", "1.0"));
    start_logs_exit_code_with(&env, server.url()).await;
    let reqs = server.requests();
    assert!(
        reqs.iter().any(|r| r.ends_with("/demo_1.0.xz")),
        "no request for demo_1.0.xz: {reqs:?}"
    );
    assert!(
        reqs.iter().any(|r| r.ends_with("/demo_1.0.xz.skein")),
        "no request for demo_1.0.xz.skein: {reqs:?}"
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn start_logs_exit_code_file_image() {
    let env = Env::new().await;
    let image = env.file_image();
    start_logs_exit_code_with(&env, image).await;
    env.finish().await;
}

// ---------------------------------------------------------------------------------------------
// d. stop with timeout, signals, stats
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn stop_kills_after_timeout() {
    let env = Env::new().await;
    let cfg = json!({
        "image": env.file_image(), "pot": "demo", "tag": "1.0", "command": "/bin/sh",
        "args": ["-c", "trap '' TERM; echo ready; while :; do sleep 1; done"],
    });
    let t = env.task("stubborn", &cfg);
    env.start(&t).await;
    env.wait_ready(&t).await;

    // TaskStats on a running task: first sample within 3 s.
    let mut driver = env.plugin.driver();
    let id = t.id();
    let sample = within(3.0, "first TaskStats sample", async move {
        let req = TaskStatsRequest {
            task_id: id,
            collection_interval: Some(dur(1)),
        };
        let mut stream = driver
            .task_stats(req)
            .await
            .expect("TaskStats")
            .into_inner();
        stream
            .message()
            .await
            .expect("TaskStats stream error")
            .expect("TaskStats stream ended")
    })
    .await;
    let stats = sample.stats.expect("TaskStatsResponse.stats unset");
    assert!(stats.timestamp.is_some(), "TaskStats.timestamp unset");
    assert!(
        stats.agg_resource_usage.is_some(),
        "TaskStats.agg_resource_usage unset"
    );

    let t0 = Instant::now();
    let req = StopTaskRequest {
        task_id: t.id(),
        timeout: Some(dur(1)),
        signal: "SIGTERM".into(),
    };
    within(
        8.0,
        "StopTask(timeout 1 s)",
        env.plugin.driver().stop_task(req),
    )
    .await
    .expect("StopTask");
    let took = t0.elapsed();
    let w = env.wait(&t.id(), 10.0).await;
    let r = w.result.expect("WaitTask without result");
    let recent_calls = || {
        let calls = env.sim.calls();
        calls[calls.len().saturating_sub(15)..]
            .iter()
            .map(|c| format!("{} -> {}", c.line(), c.exit))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        took >= Duration::from_millis(900),
        "StopTask returned after {took:?} (exit {r:?}): the task ignores SIGTERM, so SIGKILL must wait for the 1 s \
         timeout\nlast host calls:\n{}\nplugin stderr:\n{}",
        recent_calls(),
        env.stderr_tail()
    );
    assert!(
        r.signal == 9 || (r.exit_code != 0 && r.signal != 0),
        "expected a SIGKILL exit, got {r:?}\nlast host calls:\n{}",
        recent_calls()
    );

    env.destroy(&t.id()).await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_with_a_timeout_near_i64_max_still_stops() {
    let env = Env::new().await;
    let cfg = json!({
        "image": env.file_image(), "pot": "demo", "tag": "1.0", "command": "/bin/sh",
        "args": ["-c", "trap 'exit 3' TERM; echo ready; while :; do sleep 0.1; done"],
    });
    let t = env.task("patient", &cfg);
    env.start(&t).await;
    env.wait_ready(&t).await;
    let req = StopTaskRequest {
        task_id: t.id(),
        timeout: Some(prost_types::Duration {
            seconds: i64::MAX,
            nanos: 999_999_999,
        }),
        signal: "SIGTERM".into(),
    };
    within(10.0, "StopTask", env.plugin.driver().stop_task(req))
        .await
        .expect("StopTask with a huge timeout");
    let r = env
        .wait(&t.id(), 10.0)
        .await
        .result
        .expect("WaitTask result");
    assert_eq!(r.exit_code, 3, "{r:?}");
    env.destroy(&t.id()).await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn signal_task() {
    let env = Env::new().await;
    let cfg = json!({
        "image": env.file_image(), "pot": "demo", "tag": "1.0", "command": "/bin/sh",
        "args": ["-c", "trap 'exit 7' USR1; echo ready; while :; do sleep 0.1; done"],
    });
    let t = env.task("signalled", &cfg);
    env.start(&t).await;
    env.wait_ready(&t).await;

    let req = SignalTaskRequest {
        task_id: t.id(),
        signal: "SIGUSR1".into(),
    };
    within(5.0, "SignalTask", env.plugin.driver().signal_task(req))
        .await
        .expect("SignalTask(SIGUSR1)");
    let w = env.wait(&t.id(), 10.0).await;
    let r = w.result.expect("WaitTask without result");
    assert_eq!(
        (r.exit_code, r.signal),
        (7, 0),
        "exit result after SIGUSR1 {r:?}"
    );

    env.destroy(&t.id()).await;
    env.finish().await;
}

/// Collects the messages of `TaskEvents` for one task id, from now on.
fn collect_events(env: &Env, task_id: String) -> std::sync::Arc<std::sync::Mutex<Vec<String>>> {
    use nomad_pot_driver::proto::drivers::TaskEventsRequest;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (mut driver, out) = (env.plugin.driver(), seen.clone());
    tokio::spawn(async move {
        let Ok(stream) = driver.task_events(TaskEventsRequest {}).await else {
            return;
        };
        let mut stream = stream.into_inner();
        while let Ok(Some(ev)) = stream.message().await {
            if ev.task_id == task_id {
                out.lock().unwrap().push(ev.message);
            }
        }
    });
    seen
}

async fn wait_for_event(
    events: &std::sync::Mutex<Vec<String>>,
    needle: &str,
    secs: f64,
) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    loop {
        let seen = events.lock().unwrap().clone();
        if seen.iter().any(|m| m.contains(needle)) || Instant::now() >= deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn task_events_show_jail_start_and_exit() {
    let env = Env::new().await;
    let t = env.task("eventful", &gated_task_config(&env, 6));
    let events = collect_events(&env, t.id());
    // The stream must be open before the task starts.
    tokio::time::sleep(Duration::from_millis(200)).await;
    env.start(&t).await;
    env.wait_ready(&t).await;
    open_gate(&t);
    env.wait(&t.id(), 20.0).await;
    let seen = wait_for_event(&events, "Task exited with code 6", 5.0).await;
    for needle in [
        "Jail created (jid ",
        "Task started (pid ",
        "Task exited with code 6",
    ] {
        assert!(
            seen.iter().any(|m| m.contains(needle)),
            "{needle:?} not in {seen:?}"
        );
    }
    env.destroy(&t.id()).await;
    env.finish().await;
}

/// Sets pot attributes in the imported image's pot.conf, as `pot set-attr` on the image would
/// (replacing the key's lines); pots cloned from it afterwards inherit them.
fn set_image_attrs(env: &Env, attrs: &[(&str, &str)]) {
    let conf = std::path::Path::new(env.sim.config["fs_root"].as_str().unwrap())
        .join("jails/demo_1_0/conf/pot.conf");
    let mut text = std::fs::read_to_string(&conf).expect("the image is imported");
    for (k, v) in attrs {
        let key = format!("pot.attr.{k}=");
        text = text
            .lines()
            .filter(|l| !l.starts_with(&key))
            .map(|l| format!("{l}\n"))
            .collect();
        text.push_str(&format!("{key}{v}\n"));
    }
    std::fs::write(&conf, text).unwrap();
}

/// pot's `exec_stop` runs inside the jail before Nomad's signal, for at most the pot's
/// `stop_timeout`; the job's kill_timeout still bounds the whole stop.
#[tokio::test(flavor = "multi_thread")]
async fn stop_runs_exec_stop_first_bounded_by_stop_timeout() {
    let env = Env::new().await;
    let script = "echo $$ > /local/pid; trap 'exit 4' TERM; trap 'exit 9' INT; echo ready; \
                  while :; do sleep 0.1; done";
    let cfg = json!({
        "image": env.file_image(), "pot": "demo", "tag": "1.0", "command": "/bin/sh",
        "args": ["-c", script],
    });
    // The first task imports the image.
    let first = env.task("importer", &cfg);
    env.start(&first).await;
    env.destroy(&first.id()).await;

    // exec_stop stops the task itself (SIGTERM → 4); SIGINT (→ 9) would come too late.
    set_image_attrs(
        &env,
        &[(
            "exec_stop",
            "kill -TERM $(cat /local/pid); while kill -0 $(cat /local/pid) 2>/dev/null; do sleep 0.05; done",
        )],
    );
    let t = env.task("graceful", &cfg);
    let events = collect_events(&env, t.id());
    env.start(&t).await;
    env.wait_ready(&t).await;
    let stop = |id: String| StopTaskRequest {
        task_id: id,
        timeout: Some(dur(5)),
        signal: String::new(),
    };
    let t0 = Instant::now();
    within(
        10.0,
        "StopTask",
        env.plugin.driver().stop_task(stop(t.id())),
    )
    .await
    .expect("StopTask");
    assert!(
        t0.elapsed() < Duration::from_secs(4),
        "took {:?}",
        t0.elapsed()
    );
    let r = env.wait(&t.id(), 10.0).await;
    assert_eq!(
        r.result.expect("result").exit_code,
        4,
        "exec_stop ran first"
    );
    let seen = wait_for_event(&events, "Running exec_stop", 2.0).await;
    assert!(
        seen.iter().any(|m| m.contains("Running exec_stop")),
        "{seen:?}"
    );
    env.destroy(&t.id()).await;

    // An exec_stop that hangs is cut off after stop_timeout; then comes the signal.
    set_image_attrs(&env, &[("exec_stop", "sleep 30"), ("stop_timeout", "1")]);
    let t = env.task("hanging", &cfg);
    let events = collect_events(&env, t.id());
    env.start(&t).await;
    env.wait_ready(&t).await;
    let t0 = Instant::now();
    within(
        10.0,
        "StopTask",
        env.plugin.driver().stop_task(stop(t.id())),
    )
    .await
    .expect("StopTask");
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "took {took:?}"
    );
    let r = env.wait(&t.id(), 10.0).await;
    assert_eq!(
        r.result.expect("result").exit_code,
        9,
        "SIGINT after exec_stop"
    );
    let seen = wait_for_event(&events, "exec_stop failed", 2.0).await;
    assert!(seen.iter().any(|m| m.contains("timed out")), "{seen:?}");
    env.destroy(&t.id()).await;
    env.finish().await;
}

// ---------------------------------------------------------------------------------------------
// e. destroy a running task, idempotency, unknown ids
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn destroy_running_and_idempotent() {
    let env = Env::new().await;
    let cfg = json!({
        "image": env.file_image(), "pot": "demo", "tag": "1.0", "command": "/bin/sh",
        "args": ["-c", "echo ready; while :; do sleep 1; done"],
    });
    let t = env.task("forever", &cfg);
    env.start(&t).await;
    env.wait_ready(&t).await;

    env.destroy(&t.id()).await;
    env.sim
        .assert_clean("after DestroyTask(force) of a running task");
    assert!(
        t.logs.wait_for_eof(Duration::from_secs(5)).await,
        "FIFO write ends still open after DestroyTask"
    );
    // Again: OK.
    env.destroy(&t.id()).await;

    // StopTask on an unknown id: OK (Nomad retries errors 5 times).
    let req = StopTaskRequest {
        task_id: "no-such-alloc/no-such-task/00000000".into(),
        timeout: Some(dur(1)),
        signal: String::new(),
    };
    within(5.0, "StopTask(unknown)", env.plugin.driver().stop_task(req))
        .await
        .expect("StopTask on an unknown id must be OK");

    // WaitTask on an unknown id: error.
    let req = WaitTaskRequest {
        task_id: "no-such-alloc/no-such-task/00000000".into(),
    };
    let r = within(5.0, "WaitTask(unknown)", env.plugin.driver().wait_task(req)).await;
    assert!(r.is_err(), "WaitTask on an unknown id must fail, got {r:?}");

    env.finish().await;
}

// ---------------------------------------------------------------------------------------------
// f. invalid task configs
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn bad_task_config() {
    let env = Env::new().await;
    let base = json!({
        // never fetched: configs are validated before anything touches the host
        "image": "http://127.0.0.1:9/", "pot": "demo", "tag": "1.0",
        "command": "/bin/sh", "args": ["-c", "exit 0"],
    });

    let mut unknown = base.clone();
    unknown["foo"] = json!("bar");
    let mut wrong_type = base.clone();
    wrong_type["args"] = json!("not-a-list");
    let mut missing = base.clone();
    missing.as_object_mut().unwrap().remove("image");
    let mut null_image = base.clone();
    null_image["image"] = Json::Null;

    // What Nomad itself says about them.
    let cases = [
        (
            &unknown,
            "foo",
            Some("Invalid label: No argument or block type is named \"foo\"."),
        ),
        (
            &wrong_type,
            "args",
            Some(
                "Incorrect attribute value type: Inappropriate value for attribute \"args\": list of string required.",
            ),
        ),
        (
            &missing,
            "image",
            Some(
                "Missing required argument: The argument \"image\" is required, but no definition was found.",
            ),
        ),
        (&null_image, "image", None),
    ];
    for (cfg, _, msg) in &cases {
        if let Some(msg) = msg {
            let e =
                cty::encode(&env.task_spec, cfg).expect_err("the encoder must reject this config");
            assert!(e.contains(msg), "encoder error {e} should contain {msg}");
        }
    }

    // Sent anyway (bypassing Nomad's validation): InvalidArgument naming the key.
    for (i, (cfg, key, _)) in cases.iter().enumerate() {
        let t = TestTask::new(
            &env.sim.allocs_dir(),
            &format!("bad{i}"),
            cty::encode_raw(cfg),
        );
        let req = StartTaskRequest {
            task: Some(t.config.clone()),
        };
        let r = within(
            30.0,
            "StartTask(bad config)",
            env.plugin.driver().start_task(req),
        )
        .await;
        let s = match r {
            Ok(_) => panic!("StartTask accepted a bad config {cfg}"),
            Err(s) => s,
        };
        assert_eq!(
            s.code(),
            tonic::Code::InvalidArgument,
            "status for {cfg}: {s:?}"
        );
        assert!(
            s.message().contains(key),
            "error for {cfg} should name {key:?}: {s:?}"
        );
        // Nomad calls DestroyTask after a failed start only for tasks it has a handle for; the
        // plugin must not have kept anything for this id anyway.
        let _ = within(
            10.0,
            "DestroyTask(after failed start)",
            env.plugin.driver().destroy_task(DestroyTaskRequest {
                task_id: t.id(),
                force: true,
            }),
        )
        .await;
    }

    // Still healthy.
    assert_health_serving(&env.plugin).await;
    let fp = first_fingerprint(&env.plugin).await;
    assert_eq!(
        fp.health,
        HealthState::Healthy as i32,
        "fingerprint after bad configs: {fp:?}"
    );

    // Nothing was created on the host.
    let bad_calls: Vec<String> = env
        .sim
        .calls()
        .iter()
        .map(|c| c.line())
        .filter(|l| {
            l.starts_with("zfs clone")
                || l.starts_with("zfs receive")
                || l.starts_with("zfs recv")
                || l == "jail"
                || l.starts_with("jail ")
        })
        .collect();
    assert!(
        bad_calls.is_empty(),
        "bad configs reached the host: {bad_calls:?}"
    );

    env.finish().await;
}

// ---------------------------------------------------------------------------------------------
// g. tasks outlive the plugin: recovery after a plugin SIGKILL, idempotent StartTask
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn task_survives_plugin_sigkill_with_logs_and_exit_code() {
    let mut env = Env::new().await;
    let t = env.task("survivor", &gated_task_config(&env, 5));
    let handle = env
        .start(&t)
        .await
        .handle
        .expect("StartTask without handle");
    env.wait_ready(&t).await;

    env.crash_and_relaunch().await;
    // The task owns its log FIFOs: its output still reaches logmon with no plugin running it.
    open_gate(&t);
    assert!(
        t.logs
            .wait_for_stdout("after-restart", Duration::from_secs(10))
            .await,
        "log output after the plugin died was lost: {:?}",
        t.logs.stdout()
    );
    env.recover(&handle).await.expect("RecoverTask");
    let r = env.wait(&t.id(), 20.0).await;
    assert_eq!(r.err, "", "WaitTask error");
    assert_eq!(r.result.expect("WaitTask result").exit_code, 5);
    env.destroy(&t.id()).await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_while_the_plugin_is_down_is_reported() {
    let mut env = Env::new().await;
    let t = env.task("batch", &gated_task_config(&env, 7));
    let handle = env
        .start(&t)
        .await
        .handle
        .expect("StartTask without handle");
    env.wait_ready(&t).await;
    env.plugin.kill();
    open_gate(&t);
    assert!(
        t.logs.wait_for_eof(Duration::from_secs(10)).await,
        "the task did not finish while the plugin was down"
    );
    env.crash_and_relaunch().await;
    env.recover(&handle)
        .await
        .expect("RecoverTask of an exited task");
    let r = env.wait(&t.id(), 10.0).await;
    assert_eq!(r.result.expect("WaitTask result").exit_code, 7);
    env.destroy(&t.id()).await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_host_reboot_tasks_are_gone_even_where_their_pids_now_run_others() {
    let mut env = Env::new().await;
    let recovered = env.task("rebooted", &gated_task_config(&env, 0));
    let collected = env.task("collected", &gated_task_config(&env, 0));
    let handle = env.start(&recovered).await.handle.expect("handle");
    env.start(&collected).await;
    for t in [&recovered, &collected] {
        env.wait_ready(t).await;
    }
    // The host goes down with everything on it: plugin, supervisors, jails.
    env.plugin.kill();
    let state_dir = |t: &TestTask| {
        std::path::Path::new(env.sim.config["state_dir"].as_str().unwrap())
            .join("tasks")
            .join(env.pot_of(t))
    };
    for t in [&recovered, &collected] {
        let pids: Json =
            serde_json::from_slice(&std::fs::read(state_dir(t).join("pids.json")).unwrap())
                .unwrap();
        let shim = pids["shim"].as_i64().unwrap() as i32;
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(shim),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    env.sim.reboot();
    // After the boot, the old pids belong to unrelated processes.
    let mut stranger = std::process::Command::new("/bin/sleep")
        .arg("120")
        .spawn()
        .unwrap();
    for t in [&recovered, &collected] {
        let path = state_dir(t).join("pids.json");
        let mut pids: Json = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        pids["shim"] = json!(stranger.id());
        pids["task"] = json!(stranger.id());
        std::fs::write(&path, serde_json::to_vec(&pids).unwrap()).unwrap();
    }
    env.crash_and_relaunch().await;

    let e = env
        .recover(&handle)
        .await
        .expect_err("a task from before the reboot");
    assert!(e.message().contains("its jail is gone"), "{e:?}");
    env.destroy(&recovered.id()).await;
    let report = engine_for(&env.sim)
        .gc(false, Duration::ZERO)
        .await
        .expect("gc");
    let gone: Vec<String> = report
        .collected
        .iter()
        .map(|(p, _)| p.to_string())
        .collect();
    assert_eq!(gone, [env.pot_of(&collected)], "{report:?}");
    assert!(
        stranger.try_wait().unwrap().is_none(),
        "a process that reused a task's pid was signalled"
    );
    let _ = stranger.kill();
    let _ = stranger.wait();
    // The node is usable after the reboot: the image is still there and a new task runs.
    let after = env.task("after", &gated_task_config(&env, 3));
    env.start(&after).await;
    env.wait_ready(&after).await;
    open_gate(&after);
    assert_eq!(
        env.wait(&after.id(), 20.0).await.result.unwrap().exit_code,
        3
    );
    env.destroy(&after.id()).await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn start_task_is_idempotent_across_a_plugin_crash() {
    let mut env = Env::new().await;
    let t = env.task("retried", &gated_task_config(&env, 0));
    let first = env.start(&t).await.handle.expect("handle");
    let again = env.start(&t).await.handle.expect("handle");
    assert_eq!(
        first.driver_state, again.driver_state,
        "same process, same handle"
    );
    env.wait_ready(&t).await;
    // Nomad retries StartTask with the same TaskConfig after the plugin died under it.
    env.crash_and_relaunch().await;
    let adopted = env.start(&t).await.handle.expect("handle");
    assert_eq!(
        first.driver_state, adopted.driver_state,
        "the running task was adopted"
    );
    let jails_created = env
        .sim
        .calls()
        .iter()
        .filter(|c| c.argv.first().map(String::as_str) == Some("jail"))
        .filter(|c| c.argv.iter().any(|a| a == "-c"))
        .count();
    assert_eq!(
        jails_created, 1,
        "a retried StartTask must not start a second jail"
    );
    open_gate(&t);
    assert_eq!(
        env.wait(&t.id(), 20.0)
            .await
            .result
            .expect("result")
            .exit_code,
        0
    );
    env.destroy(&t.id()).await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn recover_refuses_go_driver_handles_and_vanished_tasks() {
    let env = Env::new().await;
    let t = env.task("old", &gated_task_config(&env, 0));
    let go_handle = TaskHandle {
        version: 2,
        config: Some(t.config.clone()),
        state: 1,
        driver_state: vec![0x80],
    };
    let e = env
        .recover(&go_handle)
        .await
        .expect_err("a Go-driver handle");
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(e.message().contains("Go nomad-pot-driver"), "{e:?}");
    let state = json!({"pot": "old_gone_x", "task_id": t.id(), "task_name": "old",
                       "alloc_id": t.alloc_id, "pid": 1, "started_at_ms": 0});
    let vanished = TaskHandle {
        version: 3,
        config: Some(t.config.clone()),
        state: 1,
        driver_state: serde_json::to_vec(&state).unwrap(),
    };
    let e = env.recover(&vanished).await.expect_err("an unknown pot");
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
    assert!(e.message().contains("old_gone_x"), "{e:?}");
    env.finish().await;
}

/// Whether dataset `name` exists on the simulated host.
fn dataset_exists(env: &Env, name: &str) -> bool {
    env.sim
        .tool("zfs", &["list", "-H", "-o", "name", name], "")
        .0
        == 0
}

#[tokio::test(flavor = "multi_thread")]
async fn recover_adopts_only_pots_made_for_the_task_and_destroy_never_removes_others() {
    let env = Env::new().await;
    let t = env.task("owned", &gated_task_config(&env, 0));
    let handle = env.start(&t).await.handle.expect("handle");
    env.wait_ready(&t).await;
    let pot = format!(
        "owned_{}_{}",
        t.id().rsplit('/').next().unwrap(),
        t.alloc_id
    );
    let handmade = "zroot/pot/jails/handmade";
    let (code, _, err) = env.sim.tool("zfs", &["create", handmade], "");
    assert_eq!(code, 0, "zfs create: {err}");
    let image = "zroot/pot/jails/demo_1_0";
    assert!(dataset_exists(&env, image), "the image was imported");

    // A copy of the running task's handle under another task id, and handles naming the image
    // and a pot made by hand: none is adopted.
    let forged_id = format!("{}-forged", t.id());
    let mut forged = handle.clone();
    forged.config.as_mut().unwrap().id = forged_id.clone();
    let state: Json = serde_json::from_slice(&handle.driver_state).unwrap();
    let naming = |target: &str, id: &str| {
        let mut h = handle.clone();
        h.config.as_mut().unwrap().id = id.to_string();
        let mut st = state.clone();
        st["pot"] = json!(target);
        st["task_id"] = json!(id);
        h.driver_state = serde_json::to_vec(&st).unwrap();
        h
    };
    let cases = [
        (
            forged,
            forged_id.clone(),
            format!("belongs to task {}", t.id()),
        ),
        (
            naming("demo_1_0", "x/image/1"),
            "x/image/1".to_string(),
            "the driver did not create it".to_string(),
        ),
        (
            naming("handmade", "x/handmade/1"),
            "x/handmade/1".to_string(),
            "the driver did not create it".to_string(),
        ),
    ];
    for (h, id, want) in &cases {
        let e = env.recover(h).await.expect_err(want);
        assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
        assert!(e.message().contains(want.as_str()), "{want}: {e:?}");
        let signal = SignalTaskRequest {
            task_id: id.clone(),
            signal: "SIGKILL".into(),
        };
        let e = env
            .plugin
            .driver()
            .signal_task(signal)
            .await
            .expect_err("no task to signal");
        assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
        // Nomad destroys a task it could not recover: nothing of what the handle named goes.
        env.destroy(id).await;
    }
    assert!(dataset_exists(&env, image), "DestroyTask removed the image");
    assert!(
        dataset_exists(&env, handmade),
        "DestroyTask removed a pot made by hand"
    );
    assert!(dataset_exists(&env, &format!("zroot/pot/jails/{pot}")));
    let inspect = InspectTaskRequest { task_id: t.id() };
    let status = env
        .plugin
        .driver()
        .inspect_task(inspect)
        .await
        .expect("InspectTask")
        .into_inner();
    assert_eq!(
        status.task.unwrap().state,
        nomad_pot_driver::proto::drivers::TaskState::Running as i32,
        "the original task was hit"
    );

    // A start whose pot name is taken by a dataset the driver did not make refuses to replace it.
    let squatted = env.task("squatted", &gated_task_config(&env, 0));
    let squat = format!(
        "zroot/pot/jails/squatted_{}_{}",
        squatted.id().rsplit('/').next().unwrap(),
        squatted.alloc_id
    );
    let (code, _, err) = env.sim.tool("zfs", &["create", &squat], "");
    assert_eq!(code, 0, "zfs create: {err}");
    let req = StartTaskRequest {
        task: Some(squatted.config.clone()),
    };
    let e = within(60.0, "StartTask", env.plugin.driver().start_task(req))
        .await
        .expect_err("a pot name taken by a hand-made dataset");
    assert!(
        e.message().contains("the driver did not create it"),
        "{e:?}"
    );
    assert!(
        dataset_exists(&env, &squat),
        "StartTask removed a pot it did not make"
    );

    open_gate(&t);
    env.wait(&t.id(), 20.0).await;
    env.destroy(&t.id()).await;
    for d in [handmade, squat.as_str()] {
        let (code, _, err) = env.sim.tool("zfs", &["destroy", "-r", d], "");
        assert_eq!(code, 0, "zfs destroy: {err}");
    }
    env.finish().await;
}

// ---------------------------------------------------------------------------------------------
// h. nomad alloc exec: ExecTaskStreaming over pipes and over a pty
// ---------------------------------------------------------------------------------------------

/// Runs one streaming exec and returns (stdout, stderr, exit code, close frames seen).
async fn exec_streaming(
    env: &Env,
    task_id: &str,
    command: &[&str],
    tty: bool,
    input: &[u8],
) -> (String, String, i32, usize) {
    use nomad_pot_driver::proto::drivers::{
        ExecTaskStreamingIoOperation, ExecTaskStreamingRequest,
        exec_task_streaming_request::{Setup, TerminalSize},
    };
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tx.send(ExecTaskStreamingRequest {
        setup: Some(Setup {
            task_id: task_id.into(),
            command: command.iter().map(|s| s.to_string()).collect(),
            tty,
        }),
        tty_size: tty.then_some(TerminalSize {
            height: 40,
            width: 100,
        }),
        stdin: None,
    })
    .await
    .unwrap();
    if !input.is_empty() {
        let stdin = |data: Vec<u8>, close| ExecTaskStreamingRequest {
            stdin: Some(ExecTaskStreamingIoOperation { data, close }),
            ..Default::default()
        };
        tx.send(stdin(input.to_vec(), false)).await.unwrap();
        tx.send(stdin(Vec::new(), true)).await.unwrap();
    }
    // An empty message is a heartbeat and must be ignored.
    tx.send(ExecTaskStreamingRequest::default()).await.unwrap();
    let mut stream = within(
        10.0,
        "ExecTaskStreaming",
        env.plugin
            .driver()
            .exec_task_streaming(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
    .await
    .expect("ExecTaskStreaming")
    .into_inner();
    let (mut out, mut err, mut closes) = (Vec::new(), Vec::new(), 0);
    let code = within(20.0, "exec output", async {
        loop {
            let msg = stream
                .message()
                .await
                .expect("exec stream error")
                .expect("exec stream ended before `exited`");
            for (io, buf) in [(&msg.stdout, &mut out), (&msg.stderr, &mut err)] {
                if let Some(io) = io {
                    buf.extend_from_slice(&io.data);
                    closes += usize::from(io.close);
                }
            }
            if msg.exited {
                break msg.result.expect("exited without result").exit_code;
            }
        }
    })
    .await;
    drop(tx);
    (
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
        code,
        closes,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_streaming_over_pipes_and_a_pty() {
    let env = Env::new().await;
    let cfg = json!({
        "image": env.file_image(), "pot": "demo", "tag": "1.0", "command": "/bin/sh",
        "args": ["-c", "echo ready; while :; do sleep 1; done"],
    });
    let t = env.task("execd", &cfg);
    env.start(&t).await;
    env.wait_ready(&t).await;

    let (out, err, code, closes) = exec_streaming(
        &env,
        &t.id(),
        &["/bin/sh", "-c", "read x; echo got:$x; echo err >&2; exit 4"],
        false,
        b"hello\n",
    )
    .await;
    assert_eq!(
        (out.as_str(), err.as_str(), code),
        ("got:hello\n", "err\n", 4)
    );
    assert_eq!(closes, 2, "stdout and stderr each end with a close frame");

    let (out, _, code, _) = exec_streaming(
        &env,
        &t.id(),
        &["/bin/sh", "-c", "stty size; exit 2"],
        true,
        b"",
    )
    .await;
    assert!(
        out.contains("40 100"),
        "the pty has the requested size: {out:?}"
    );
    assert_eq!(code, 2);

    env.destroy(&t.id()).await;
    env.finish().await;
}

// images through the plugin
// ---------------------------------------------------------------------------------------------

fn quick_task(image: &str) -> Json {
    json!({
        "image": image, "pot": "demo", "tag": "1.0",
        "command": "/bin/sh", "args": ["-c", "exit 0"],
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_starts_of_one_uncached_image_download_it_once() {
    let env = Env::new().await;
    let server = FileServer::serve(&env.sim.image("demo", "1.0"));
    let cfg = quick_task(&server.url());
    let tasks: Vec<TestTask> = (0..20).map(|i| env.task(&format!("t{i}"), &cfg)).collect();
    futures::future::join_all(tasks.iter().map(|t| env.start(t))).await;
    for t in &tasks {
        let r = env.wait(&t.id(), 30.0).await.result.expect("exit result");
        assert_eq!(r.exit_code, 0);
        env.destroy(&t.id()).await;
    }
    let downloads = server
        .requests()
        .iter()
        .filter(|r| r.ends_with("/demo_1.0.xz"))
        .count();
    assert_eq!(downloads, 1, "requests: {:?}", server.requests());
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn required_signature_refuses_unsigned_images_and_accepts_signed_ones() {
    use libsignify::Codeable;
    let keys = tempfile::tempdir().unwrap();
    let sk = libsignify::PrivateKey::generate(
        &mut rand_core::OsRng,
        libsignify::NewKeyOpts::NoEncryption,
    )
    .unwrap();
    let pubkey = keys.path().join("release.pub");
    std::fs::write(&pubkey, sk.public().to_file_encoding("release public key")).unwrap();
    let env = Env::with_agent_config(json!({
        "signature_pubkeys": [pubkey.display().to_string()],
        "require_signature": true,
    }))
    .await;
    let images = env.sim.image("demo", "1.0");
    let server = FileServer::serve(&images);
    let t = env.task("unsigned", &quick_task(&server.url()));
    let req = StartTaskRequest {
        task: Some(t.config.clone()),
    };
    let s = within(30.0, "StartTask", env.plugin.driver().start_task(req))
        .await
        .expect_err("an unsigned image was started");
    assert!(
        s.message()
            .contains("demo_1.0.xz.skein.sig not found: the image is unsigned"),
        "{s:?}"
    );
    env.sim.assert_clean("after the refused image");

    let skein = std::fs::read(images.join("demo_1.0.xz.skein")).unwrap();
    std::fs::write(
        images.join("demo_1.0.xz.skein.sig"),
        sk.sign(&skein).to_file_encoding("verify with release.pub"),
    )
    .unwrap();
    let t = env.task("signed", &quick_task(&server.url()));
    env.start(&t).await;
    assert_eq!(env.wait(&t.id(), 30.0).await.result.unwrap().exit_code, 0);
    env.destroy(&t.id()).await;
    env.finish().await;
}

/// Runs one quick task from `image` to its exit, and destroys it.
async fn run_quick_task(env: &Env, name: &str, image: &str) {
    let t = env.task(name, &quick_task(image));
    env.start(&t).await;
    assert_eq!(env.wait(&t.id(), 30.0).await.result.unwrap().exit_code, 0);
    env.destroy(&t.id()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn https_image_from_a_private_ca_runs_with_image_ca_file() {
    let env = Env::with_agent_config(json!({
        "image_ca_file": common::tls::test_ca().display().to_string(),
    }))
    .await;
    let server = FileServer::serve_https(
        &env.sim.image("demo", "1.0"),
        common::tls::TestCert::Localhost,
    );
    assert!(server.url().starts_with("https://127.0.0.1:"));
    run_quick_task(&env, "tls", &server.url()).await;
    assert!(
        server.requests().iter().any(|r| r == "/demo_1.0.xz"),
        "{:?}",
        server.requests()
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn https_trust_store_follows_ssl_cert_file() {
    let ca = common::tls::test_ca();
    let env = Env::with_plugin_env(json!({}), &[("SSL_CERT_FILE", ca.as_os_str())]).await;
    let server = FileServer::serve_https(
        &env.sim.image("demo", "1.0"),
        common::tls::TestCert::Localhost,
    );
    run_quick_task(&env, "tls", &server.url()).await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn untrusted_https_image_fails_the_start_for_good_and_leaves_nothing() {
    let env = Env::new().await;
    let server = FileServer::serve_https(
        &env.sim.image("demo", "1.0"),
        common::tls::TestCert::Localhost,
    );
    let t = env.task("untrusted", &quick_task(&server.url()));
    let req = StartTaskRequest {
        task: Some(t.config.clone()),
    };
    let s = within(30.0, "StartTask", env.plugin.driver().start_task(req))
        .await
        .expect_err("an image behind an untrusted certificate was started");
    let expected = format!(
        "GET {}demo_1.0.xz.skein: the server's certificate is not trusted",
        server.url()
    );
    assert!(s.message().contains(&expected), "{s:?}");
    assert!(s.message().contains("set image_ca_file"), "{s:?}");
    assert_eq!(s.code(), tonic::Code::Unknown, "not recoverable: {s:?}");
    assert!(server.requests().is_empty(), "{:?}", server.requests());
    let datasets = jails_datasets(&env.sim);
    assert!(
        !datasets.iter().any(|d| d.contains("demo_1_0")),
        "{datasets:?}"
    );
    let cache = std::path::PathBuf::from(env.sim.config["cache_dir"].as_str().unwrap());
    let cached: Vec<_> = std::fs::read_dir(&cache)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(cached.is_empty(), "cache files left: {cached:?}");
    env.sim.assert_clean("after the refused https image");
    // With the CA configured (a new engine), the same image imports: nothing half-imported was
    // left in its way.
    let ca = common::tls::test_ca().display().to_string();
    set_config(
        &env.plugin,
        &env.sim.agent_config_with(json!({ "image_ca_file": ca })),
        true,
    )
    .await
    .expect("SetConfig with image_ca_file");
    run_quick_task(&env, "trusted", &server.url()).await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_image_ca_file_fails_setconfig_naming_the_key() {
    let sim = SimHost::create();
    let plugin = Plugin::launch().await;
    let config = sim.agent_config_with(json!({ "image_ca_file": "/nonexistent/ca.pem" }));
    let s = set_config(&plugin, &config, true)
        .await
        .expect_err("SetConfig accepted a missing image_ca_file");
    assert!(
        s.message().contains("image_ca_file") && s.message().contains("/nonexistent/ca.pem"),
        "{s:?}"
    );
    plugin.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// i. reconcile: abandoned pots of this driver are collected, others are left alone
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn reconcile_collects_only_abandoned_pots_of_this_driver() {
    let mut env = Env::new().await;
    let running = env.task("running", &gated_task_config(&env, 0));
    let exited = env.task("exited", &gated_task_config(&env, 0));
    env.start(&running).await;
    env.start(&exited).await;
    open_gate(&exited);
    env.wait(&exited.id(), 20.0).await;
    env.wait_ready(&running).await;
    let engine = engine_for(&env.sim);
    // The plugin dies and Nomad never comes back for these tasks.
    env.plugin.kill();
    let foreign = "zroot/pot/jails/made_by_pot_cli";
    let out = std::process::Command::new(env.sim.dir.join("bin/zfs"))
        .args(["create", foreign])
        .output()
        .expect("zfs create");
    assert!(out.status.success(), "{out:?}");

    let pot_of = |t: &TestTask| {
        nomad_pot_driver::engine::PotName::for_task(
            &t.task_name,
            t.id().rsplit('/').next().unwrap(),
            &t.alloc_id,
        )
        .unwrap()
    };
    let names = |v: &[(nomad_pot_driver::engine::PotName, String)]| {
        v.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>()
    };
    let dry = engine.gc(true, Duration::ZERO).await.expect("gc dry run");
    assert_eq!(names(&dry.collected), [pot_of(&exited)], "{dry:?}");
    assert_eq!(names(&dry.kept), [pot_of(&running)], "{dry:?}");
    assert!(!env.sim.check().0, "a dry run changes nothing");

    let report = engine.gc(false, Duration::ZERO).await.expect("gc");
    assert_eq!(names(&report.collected), [pot_of(&exited)]);
    // The running task goes away without its supervisor: now it is debris too.
    let pids: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            env.sim
                .dir
                .join("root/var/db/nomad-pot-driver/tasks")
                .join(pot_of(&running).as_str())
                .join("pids.json"),
        )
        .unwrap(),
    )
    .unwrap();
    for key in ["shim", "task"] {
        let pid = nix::unistd::Pid::from_raw(pids[key].as_i64().unwrap() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = engine.gc(false, Duration::ZERO).await.expect("gc");
    assert_eq!(names(&report.collected), [pot_of(&running)]);
    let (clean, leftovers) = env.sim.check();
    assert!(clean, "after reconcile: {leftovers}");
    let listed = std::process::Command::new(env.sim.dir.join("bin/zfs"))
        .args(["list", "-H", "-o", "name", foreign])
        .output()
        .expect("zfs list");
    assert!(
        listed.status.success(),
        "a pot this driver did not create was removed"
    );
    env.crash_and_relaunch().await;
    env.finish().await;
}

/// Names of the datasets under `zroot/pot/jails` on the simulated host.
fn jails_datasets(sim: &SimHost) -> Vec<String> {
    let out = std::process::Command::new(sim.dir.join("bin/zfs"))
        .args(["list", "-H", "-r", "-o", "name", "zroot/pot/jails"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn potctl(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_potctl"))
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "potctl {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn image_cache_is_bounded_and_collected_by_potctl() {
    let env = Env::with_agent_config(json!({"image_cache_max": "1"})).await;
    let images = env.sim.image("demo", "1.0");
    env.sim.image("demo", "2.0");
    let url = format!("file://{}", images.display());
    for tag in ["1.0", "2.0"] {
        let mut cfg = quick_task(&url);
        cfg["tag"] = tag.into();
        let t = env.task(&format!("t{}", tag.replace('.', "")), &cfg);
        env.start(&t).await;
        assert_eq!(env.wait(&t.id(), 30.0).await.result.unwrap().exit_code, 0);
        env.destroy(&t.id()).await;
    }
    // The second start removed the first image, which no pot used any more.
    let datasets = jails_datasets(&env.sim);
    assert!(
        !datasets.iter().any(|d| d.contains("demo_1_0")),
        "{datasets:?}"
    );
    assert!(
        datasets.iter().any(|d| d.ends_with("/demo_2_0")),
        "{datasets:?}"
    );

    let cache = std::path::PathBuf::from(env.sim.config["cache_dir"].as_str().unwrap());
    let sim_dir = env.sim.dir.display().to_string();
    assert_eq!(
        potctl(&["--sim", &sim_dir, "images", "gc", "--dry-run"]),
        "would remove demo_2_0\n"
    );
    let config_file = env.sim.tmp.path().join("agent.json");
    std::fs::write(&config_file, env.sim.config.to_string()).unwrap();
    assert_eq!(
        potctl(&[
            "images",
            "gc",
            "--dry-run",
            "--keep",
            "1",
            "--config",
            &config_file.display().to_string()
        ]),
        "kept demo_2_0\n"
    );
    assert!(cache.join("demo_2.0.xz").exists());
    assert_eq!(
        potctl(&["--sim", &sim_dir, "images", "gc"]),
        "removed demo_2_0\n"
    );
    assert!(!jails_datasets(&env.sim).iter().any(|d| d.contains("demo_")));
    assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 0);
    env.finish().await;
}

/// The task's events up to and including its image's "Imported image …".
async fn events_until_imported(
    events: &mut tonic::Streaming<nomad_pot_driver::proto::drivers::DriverTaskEvent>,
    t: &TestTask,
) -> Vec<String> {
    let mut messages = Vec::new();
    while !messages
        .iter()
        .any(|m: &String| m.starts_with("Imported image"))
    {
        let ev = within(10.0, "a task event", events.message())
            .await
            .expect("event stream")
            .expect("event stream ended");
        assert_eq!(ev.task_id, t.id());
        messages.push(ev.message);
    }
    messages
}

#[tokio::test(flavor = "multi_thread")]
async fn image_download_progress_reaches_task_events() {
    use nomad_pot_driver::proto::drivers::TaskEventsRequest;
    let env = Env::new().await;
    let server = FileServer::serve(&env.sim.image("demo", "1.0"));
    let mut events = within(
        5.0,
        "TaskEvents",
        env.plugin.driver().task_events(TaskEventsRequest {}),
    )
    .await
    .expect("TaskEvents")
    .into_inner();
    let t = env.task("progress", &quick_task(&server.url()));
    env.start(&t).await;
    let messages = events_until_imported(&mut events, &t).await;
    let progress: Vec<&String> = messages
        .iter()
        .filter(|m| m.starts_with("Downloading image demo_1.0: "))
        .collect();
    assert!(
        progress.last().is_some_and(|m| m.contains(": 100% of ")),
        "{messages:?}"
    );
    assert_eq!(messages.last().unwrap(), "Imported image demo_1.0");
    env.wait(&t.id(), 30.0).await;
    env.destroy(&t.id()).await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_seeded_cache_runs_a_task_whose_image_url_is_unreachable() {
    use nomad_pot_driver::proto::drivers::TaskEventsRequest;
    let env = Env::new().await;
    // An air-gapped node: the image's files copied into the cache by hand.
    let images = env.sim.image("demo", "1.0");
    let cache = std::path::PathBuf::from(env.sim.config["cache_dir"].as_str().unwrap());
    std::fs::create_dir_all(&cache).unwrap();
    for file in ["demo_1.0.xz", "demo_1.0.xz.meta", "demo_1.0.xz.skein"] {
        std::fs::copy(images.join(file), cache.join(file)).unwrap();
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut events = within(
        5.0,
        "TaskEvents",
        env.plugin.driver().task_events(TaskEventsRequest {}),
    )
    .await
    .expect("TaskEvents")
    .into_inner();
    let t = env.task(
        "airgapped",
        &quick_task(&format!("http://127.0.0.1:{port}/images")),
    );
    env.start(&t).await;
    let messages = events_until_imported(&mut events, &t).await;
    assert_eq!(
        messages,
        [
            "Importing image demo_1.0 from the cache",
            "Imported image demo_1.0"
        ]
    );
    assert_eq!(env.wait(&t.id(), 30.0).await.result.unwrap().exit_code, 0);
    env.destroy(&t.id()).await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn potctl_export_writes_an_image_the_plugin_runs() {
    let env = Env::new().await;
    let image = env.file_image();
    let t = env.task("first", &quick_task(&image));
    env.start(&t).await;
    env.wait(&t.id(), 30.0).await;
    env.destroy(&t.id()).await;

    // Under the host's images dir, which its agent config allows file:// images from.
    let out = env.sim.images_dir().join("exported");
    std::fs::create_dir_all(&out).unwrap();
    let sim_dir = env.sim.dir.display().to_string();
    let printed = potctl(&[
        "--sim",
        &sim_dir,
        "export",
        "-p",
        "demo_1_0",
        "-t",
        "9",
        "-D",
        &out.display().to_string(),
    ]);
    assert!(
        printed.starts_with(&format!(
            "exported {}/demo_1_0_9.xz (snapshot ",
            out.display()
        )),
        "{printed}"
    );
    let cfg = json!({
        "image": format!("file://{}", out.display()), "pot": "demo_1_0", "tag": "9",
        "command": "/bin/sh", "args": ["-c", "exit 7"],
    });
    let t = env.task("second", &cfg);
    env.start(&t).await;
    assert_eq!(env.wait(&t.id(), 30.0).await.result.unwrap().exit_code, 7);
    env.destroy(&t.id()).await;
    env.finish().await;
}

// ---------------------------------------------------------------------------------------------
// j. job options: mount, mount_read_only, copy, extra_hosts, attributes, and their boundary
// ---------------------------------------------------------------------------------------------

impl Env {
    /// StartTask that must fail; returns the status.
    async fn start_err(&self, t: &TestTask) -> tonic::Status {
        let req = StartTaskRequest {
            task: Some(t.config.clone()),
        };
        match within(60.0, "StartTask", self.plugin.driver().start_task(req)).await {
            Ok(_) => panic!("StartTask accepted {}", t.id()),
            Err(s) => s,
        }
    }

    /// The pot (jail) name of a started task: `<task>_<invocation>_<alloc>`.
    fn pot_of(&self, t: &TestTask) -> String {
        let invocation = t.id().rsplit('/').next().unwrap().to_string();
        format!("{}_{}_{}", t.task_name, invocation, t.alloc_id)
    }

    fn jail_root(&self, pot: &str) -> std::path::PathBuf {
        std::path::Path::new(self.sim.config["fs_root"].as_str().unwrap())
            .join("jails")
            .join(pot)
    }

    /// Calls whose argv starts with `prefix`.
    fn calls_starting(&self, prefix: &[&str]) -> Vec<Vec<String>> {
        self.sim
            .calls()
            .into_iter()
            .map(|c| c.argv)
            .filter(|a| a.len() >= prefix.len() && a.iter().zip(prefix).all(|(x, y)| x == y))
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn job_mounts_copies_hosts_and_attributes() {
    let outside = tempfile::tempdir().unwrap();
    let shared = outside.path().join("shared");
    std::fs::create_dir_all(shared.join("www")).unwrap();
    std::fs::write(shared.join("www/index"), "from-www\n").unwrap();
    std::fs::write(shared.join("app.conf"), "key=from-copy\n").unwrap();
    let shared = std::fs::canonicalize(&shared).unwrap();
    let env = Env::with_agent_config(json!({
        "allowed_host_paths": [shared.display().to_string()],
        "allowed_attributes": ["devfs_ruleset"],
    }))
    .await;
    let script = "cat /etc/app.conf /www/index; echo written > /data/out; \
                  (echo x > /www/new) 2>/dev/null && echo RO-VIOLATED; \
                  cat /etc/hosts; cat /opt/tree/file; echo done";
    let cfg = json!({
        "image": env.file_image(), "pot": "demo", "tag": "1.0",
        "command": "/bin/sh", "args": ["-c", script],
        "mount": ["local/data:/data"],
        "mount_read_only": [format!("{}:/www", shared.join("www").display())],
        "copy": [
            // Onto a directory: the file lands inside it, as with cp.
            format!("{}:/etc", shared.join("app.conf").display()),
            "local/tree:/opt/tree",
        ],
        "extra_hosts": ["db:10.1.2.3", "db6:2001:db8::1"],
        "attributes": ["devfs_ruleset:3", "exec_stop:/bin/echo bye"],
    });
    let t = env.task("opts", &cfg);
    let local = t.alloc_dir.join("opts/local");
    std::fs::create_dir_all(local.join("data")).unwrap();
    std::fs::create_dir_all(local.join("tree")).unwrap();
    std::fs::write(local.join("tree/file"), "tree-file\n").unwrap();
    // Copied as a symlink: later mounts through it must still land inside the jail.
    std::os::unix::fs::symlink("/", local.join("tree/up")).unwrap();
    env.start(&t).await;
    let pot = env.pot_of(&t);
    let dir = env.jail_root(&pot);
    let root = dir.join("m");

    let w = env.wait(&t.id(), 30.0).await;
    // The exit can be reported before the log reader has drained the FIFO.
    assert!(
        t.logs.wait_for_eof(Duration::from_secs(5)).await,
        "stdout never reached EOF"
    );
    let out = t.logs.stdout();
    assert_eq!(
        w.result.map(|r| r.exit_code),
        Some(0),
        "stdout {out:?} stderr {:?}",
        t.logs.stderr()
    );
    for line in [
        "key=from-copy",
        "from-www",
        "127.0.0.1 localhost",
        "10.1.2.3 db\n",
        "2001:db8::1 db6\n",
        "tree-file",
        "done",
    ] {
        assert!(out.contains(line), "stdout lacks {line:?}: {out:?}");
    }
    assert!(!out.contains("RO-VIOLATED"), "{out:?}");
    assert_eq!(
        std::fs::read_to_string(local.join("data/out")).unwrap(),
        "written\n"
    );

    let real_data = std::fs::canonicalize(local.join("data")).unwrap();
    let mounts = env.calls_starting(&["mount", "-t", "nullfs"]);
    let expect = |opt: &str, src: &std::path::Path, target: &str| {
        let want: Vec<String> = ["mount", "-t", "nullfs", "-o", opt]
            .iter()
            .map(|s| s.to_string())
            .chain([
                src.display().to_string(),
                root.join(target).display().to_string(),
            ])
            .collect();
        assert!(mounts.contains(&want), "no {want:?} in {mounts:#?}");
    };
    expect("rw", &real_data, "data");
    expect("ro", &shared.join("www"), "www");
    let conf = std::fs::read_to_string(dir.join("conf/pot.conf")).unwrap();
    for line in [
        "pot.hosts=10.1.2.3 db\n",
        "pot.hosts=2001:db8::1 db6\n",
        "pot.attr.devfs_ruleset=3\n",
        "pot.attr.enforce_statfs=2\n",
        "pot.attr.exec_stop=/bin/echo bye\n",
    ] {
        assert!(conf.contains(line), "pot.conf lacks {line:?}:\n{conf}");
    }
    let fscomp = std::fs::read_to_string(dir.join("conf/fscomp.conf")).unwrap();
    assert!(
        fscomp.ends_with(&format!(
            "{} /data\n{} /www ro\n",
            real_data.display(),
            shared.join("www").display()
        )),
        "{fscomp}"
    );
    let jail = env.calls_starting(&["jail", "-i", "-c"]);
    let params = &jail.last().expect("jail -c").clone();
    for p in [
        "devfs_ruleset=3",
        "enforce_statfs=2",
        "children.max=0",
        "exec.stop=/bin/echo bye",
    ] {
        assert!(
            params.iter().any(|a| a == p),
            "jail -c lacks {p}: {params:?}"
        );
    }
    env.destroy(&t.id()).await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mount_targets_resolve_inside_the_jail() {
    let env = Env::new().await;
    let cfg = json!({
        "image": env.file_image(), "pot": "demo", "tag": "1.0",
        "command": "/bin/sh", "args": ["-c", "cat /escaped/f"],
        // /opt/tree/up is a symlink to "/" copied in from the task: as the jail sees it, it is
        // the jail's root, not the host's.
        "copy": ["local/tree:/opt/tree"],
        "mount_read_only": ["local/data:/opt/tree/up/escaped"],
    });
    let t = env.task("links", &cfg);
    let local = t.alloc_dir.join("links/local");
    std::fs::create_dir_all(local.join("tree")).unwrap();
    std::fs::create_dir_all(local.join("data")).unwrap();
    std::fs::write(local.join("data/f"), "inside\n").unwrap();
    std::os::unix::fs::symlink("/", local.join("tree/up")).unwrap();
    env.start(&t).await;
    let root = env.jail_root(&env.pot_of(&t)).join("m");
    let w = env.wait(&t.id(), 30.0).await;
    assert_eq!(w.result.map(|r| r.exit_code), Some(0));
    assert!(t.logs.stdout().contains("inside"), "{:?}", t.logs.stderr());
    let targets: Vec<String> = env
        .calls_starting(&["mount", "-t", "nullfs"])
        .into_iter()
        .map(|a| a[a.len() - 1].clone())
        .collect();
    assert!(
        targets.contains(&root.join("escaped").display().to_string()),
        "{targets:?}"
    );
    assert!(
        targets
            .iter()
            .all(|t| t.starts_with(&root.display().to_string())),
        "a mount left the jail root: {targets:?}"
    );
    assert!(!std::path::Path::new("/escaped").exists());
    env.destroy(&t.id()).await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn host_paths_and_attributes_outside_the_boundary_are_refused() {
    let env = Env::new().await;
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), "s").unwrap();
    let other = env.task(
        "other",
        &json!({"image": "http://127.0.0.1:9/", "pot": "demo", "tag": "1.0"}),
    );
    let base = json!({
        "image": "http://127.0.0.1:9/", "pot": "demo", "tag": "1.0",
        "command": "/bin/sh", "args": ["-c", "exit 0"],
    });
    let out = outside.path().display().to_string();
    let cases: Vec<(&str, Json, &str)> = vec![
        (
            "mount",
            json!([format!("{out}:/data")]),
            "allowed_host_paths",
        ),
        ("mount", json!(["local/escape:/data"]), "allowed_host_paths"),
        (
            "mount",
            json!(["local/../../../..:/data"]),
            "allowed_host_paths",
        ),
        (
            "mount_read_only",
            json!([format!("{}:/other", other.alloc_dir.display())]),
            "allowed_host_paths",
        ),
        (
            "copy",
            json!([format!("{out}/secret:/etc/secret")]),
            "allowed_host_paths",
        ),
        ("copy", json!(["local/nothing-here:/x"]), "No such file"),
        (
            "copy",
            json!(["local/fifo:/x"]),
            "not a regular file or directory",
        ),
        ("mount", json!(["local:/"]), "root"),
        ("mount", json!(["local:relative"]), "absolute"),
        ("mount", json!(["local:/a b"]), "whitespace"),
        ("mount", json!(["no-colon"]), "host_path:jail_path"),
        (
            "attributes",
            json!(["enforce_statfs:1"]),
            "allowed_attributes",
        ),
        ("attributes", json!(["nullfs:YES"]), "allowed_attributes"),
        ("attributes", json!(["children:10"]), "allowed_attributes"),
        ("attributes", json!(["bogus:1"]), "unknown attribute"),
        ("attributes", json!(["persistent:YES"]), "pot attribute"),
        ("extra_hosts", json!(["db:10.1.2"]), "not an IP address"),
    ];
    for (i, (key, value, needle)) in cases.iter().enumerate() {
        let mut cfg = base.clone();
        cfg[*key] = value.clone();
        let t = env.task(&format!("refused{i}"), &cfg);
        std::os::unix::fs::symlink(
            outside.path(),
            t.alloc_dir.join(format!("refused{i}/local/escape")),
        )
        .unwrap();
        nix::unistd::mkfifo(
            &t.alloc_dir.join(format!("refused{i}/local/fifo")),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        let s = env.start_err(&t).await;
        assert_eq!(
            s.code(),
            tonic::Code::InvalidArgument,
            "{key} {value}: {s:?}"
        );
        assert!(
            s.message().contains(&format!("{key}[0]")) || *key == "attributes",
            "{key} {value}: the error should name the entry: {s:?}"
        );
        assert!(
            s.message().contains(needle),
            "{key} {value}: error should say {needle:?}: {s:?}"
        );
    }
    let touched: Vec<String> = env
        .sim
        .calls()
        .iter()
        .map(|c| c.line())
        .filter(|l| {
            [
                "zfs create",
                "zfs clone",
                "zfs receive",
                "jail ",
                "mount -t",
            ]
            .iter()
            .any(|p| l.starts_with(p))
        })
        .collect();
    assert!(
        touched.is_empty(),
        "refused jobs reached the host: {touched:?}"
    );
    for (key, value) in [
        ("allowed_attributes", json!(["persistent"])),
        ("allowed_host_paths", json!(["relative/dir"])),
    ] {
        let cfg = env.sim.agent_config_with(json!({ key: value }));
        let s = set_config(&env.plugin, &cfg, true)
            .await
            .expect_err("SetConfig must refuse it");
        assert_eq!(s.code(), tonic::Code::InvalidArgument, "{s:?}");
        assert!(s.message().contains(key), "{s:?}");
    }
    env.finish().await;
}

// ---------------------------------------------------------------------------------------------
// k. Nomad-native task features: user, dns, volume_mount, NOMAD_*_DIR, the exact environment
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn user_dns_volumes_and_task_dirs() {
    use nomad_pot_driver::proto::drivers::{DnsConfig, ExecTaskRequest, Mount};
    let vol = tempfile::tempdir().unwrap();
    std::fs::write(vol.path().join("f"), "from-volume\n").unwrap();
    let vol_path = std::fs::canonicalize(vol.path()).unwrap();
    let env =
        Env::with_agent_config(json!({"allowed_host_paths": [vol_path.display().to_string()]}))
            .await;
    let caps = within(
        5.0,
        "Capabilities",
        env.plugin.driver().capabilities(CapabilitiesRequest {}),
    )
    .await
    .expect("Capabilities")
    .into_inner()
    .capabilities
    .unwrap();
    assert_eq!(caps.mount_configs, 0, "host volumes must be accepted");

    let script = "id -u; cat /etc/resolv.conf /vol/f; \
                  (echo x > /vol/w) 2>/dev/null || echo vol-read-only; \
                  echo in-task-dir > \"$NOMAD_TASK_DIR/t\"; echo in-alloc-dir > \"$NOMAD_ALLOC_DIR/data/a\"; \
                  echo ready; while [ ! -e /local/go ]; do sleep 0.1; done";
    let cfg = json!({
        "image": env.file_image(), "pot": "demo", "tag": "1.0",
        "command": "/bin/sh", "args": ["-c", script],
    });
    let mut t = env.task("native", &cfg);
    t.config.user = "nobody".into();
    t.config.dns = Some(DnsConfig {
        servers: vec!["10.0.0.53".into(), "2001:db8::53".into()],
        searches: vec!["service.consul".into()],
        options: vec!["ndots:2".into()],
    });
    t.config.mounts = vec![Mount {
        task_path: "/vol".into(),
        host_path: vol_path.display().to_string(),
        readonly: true,
        ..Default::default()
    }];
    // Nomad makes these world-writable, so tasks with a `user` can write there.
    for d in ["native/local", "alloc/data"] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(t.alloc_dir.join(d), std::fs::Permissions::from_mode(0o777))
            .unwrap();
    }
    env.start(&t).await;
    env.wait_ready(&t).await;
    let out = t.logs.stdout();
    let resolv = "# Generated by nomad-pot-driver from the job's dns block\nnameserver 10.0.0.53\n\
                  nameserver 2001:db8::53\nsearch service.consul\noptions ndots:2\n";
    assert!(
        out.starts_with(&format!("65534\n{resolv}from-volume\nvol-read-only\n")),
        "{out:?} / {:?}",
        t.logs.stderr()
    );
    let task_dir = t.alloc_dir.join("native");
    assert_eq!(
        std::fs::read_to_string(task_dir.join("local/t")).unwrap(),
        "in-task-dir\n"
    );
    assert_eq!(
        std::fs::read_to_string(t.alloc_dir.join("alloc/data/a")).unwrap(),
        "in-alloc-dir\n"
    );
    assert_eq!(t.config.env["NOMAD_TASK_DIR"], "/local");
    let pot = env.pot_of(&t);
    let conf = std::fs::read_to_string(env.jail_root(&pot).join("conf/pot.conf")).unwrap();
    assert!(conf.contains("pot.dns=custom\n"), "{conf}");

    // ExecTask runs as the task's user too.
    let r = within(
        10.0,
        "ExecTask",
        env.plugin.driver().exec_task(ExecTaskRequest {
            task_id: t.id(),
            command: vec!["/usr/bin/id".into(), "-un".into()],
            timeout: Some(dur(5)),
        }),
    )
    .await
    .expect("ExecTask")
    .into_inner();
    assert_eq!(String::from_utf8_lossy(&r.stdout), "nobody\n");
    // So does `nomad alloc exec` (ExecTaskStreaming).
    let (out, _, code, _) =
        exec_streaming(&env, &t.id(), &["/usr/bin/id", "-un"], false, b"").await;
    assert_eq!((out.as_str(), code), ("nobody\n", 0));
    open_gate(&t);
    env.wait(&t.id(), 10.0).await;
    // calls.jsonl records a call when it ends: the task's and the exec's, both as nobody.
    let programs: Vec<String> = env
        .calls_starting(&["jexec", "-U", "nobody", &pot])
        .into_iter()
        .map(|a| a[4].clone())
        .collect();
    assert_eq!(programs, ["/usr/bin/id", "/usr/bin/id", "/bin/sh"]);
    env.destroy(&t.id()).await;

    // A user the image does not know, and an unusable dns block, are refused before the jail.
    let mut bad_user = env.task("nouser", &cfg);
    bad_user.config.user = "mallory".into();
    let s = env.start_err(&bad_user).await;
    assert!(s.message().contains("\"mallory\" does not exist"), "{s:?}");
    let mut bad_dns = env.task("nodns", &cfg);
    bad_dns.config.dns = Some(DnsConfig {
        servers: vec!["10.0.0.53\nnameserver 6.6.6.6".into()],
        ..Default::default()
    });
    let s = env.start_err(&bad_dns).await;
    assert_eq!(s.code(), tonic::Code::InvalidArgument);
    assert!(s.message().contains("dns: server"), "{s:?}");
    let mut bad_vol = env.task("novol", &cfg);
    bad_vol.config.mounts = vec![Mount {
        task_path: "/etc".into(),
        host_path: "/etc".into(),
        ..Default::default()
    }];
    let s = env.start_err(&bad_vol).await;
    assert!(
        s.message().contains("volume_mount \"/etc\"") && s.message().contains("allowed_host_paths"),
        "{s:?}"
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn task_env_reaches_the_process_byte_for_byte() {
    let env = Env::new().await;
    let cfg = json!({
        "image": env.file_image(), "pot": "demo", "tag": "1.0",
        "command": "/usr/bin/env", "args": ["-0"],
    });
    let values = [
        ("QUOTES", "it's \"quoted\" `back`"),
        ("DOLLAR", "$HOME ${PATH} $(id -u) $$"),
        ("NEWLINES", "line1\nline2\n"),
        ("EQUALS", "a=b==c="),
        ("SHELL_META", "; rm -rf / # | & > < * ? [ ] ~ \\"),
        ("UNICODE", "grüße ✓ 日本"),
        ("EMPTY", ""),
    ];
    let mut b = TaskBuilder::new("envdump", env.encode_task(&cfg));
    for (k, v) in values {
        b = b.env(k, v);
    }
    let t = b.build(&env.sim.allocs_dir());
    env.start(&t).await;
    let w = env.wait(&t.id(), 30.0).await;
    assert_eq!(
        w.result.map(|r| r.exit_code),
        Some(0),
        "{:?}",
        t.logs.stderr()
    );
    assert!(t.logs.wait_for_eof(Duration::from_secs(5)).await);
    let got: std::collections::BTreeMap<String, String> = t
        .logs
        .stdout()
        .split_terminator('\0')
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("KEY=value");
            (k.to_string(), v.to_string())
        })
        .collect();
    let mut want: std::collections::BTreeMap<String, String> =
        t.config.env.clone().into_iter().collect();
    want.insert(
        "PATH".into(),
        "/sbin:/bin:/usr/sbin:/usr/bin:/usr/local/sbin:/usr/local/bin".into(),
    );
    assert_eq!(got, want);
    env.destroy(&t.id()).await;
    env.finish().await;
}

// ---------------------------------------------------------------------------------------------
// l. limits: rctl rules, cpuset and quota from Nomad's resources and the task config
// ---------------------------------------------------------------------------------------------

impl Env {
    /// Runs a tool of the simulated host, as an operator would; returns its stdout.
    fn host_tool(&self, tool: &str, args: &[&str]) -> String {
        let out = std::process::Command::new(self.sim.dir.join("bin").join(tool))
            .args(args)
            .output()
            .expect("run a sim tool");
        assert!(out.status.success(), "{tool} {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A gated task with Nomad resources: memory 64 MiB (max 128), an eighth of an
    /// 8-CPU node, cores `cores`.
    fn limited_task(&self, name: &str, cfg: &Json, cores: &str) -> TestTask {
        let mut t = self.task(name, cfg);
        let r = t.config.resources.as_mut().unwrap();
        r.allocated_resources
            .as_mut()
            .unwrap()
            .memory
            .as_mut()
            .unwrap()
            .memory_max_mb = 128;
        let linux = r.linux_resources.as_mut().unwrap();
        linux.percent_ticks = 0.0625;
        linux.cpuset_cpus = cores.into();
        t
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_are_applied_before_the_task_and_removed_after() {
    let env = Env::new().await;
    env.host_tool("sysctl", &["hw.ncpu=8"]);
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
    env.start(&t).await;
    env.wait_ready(&t).await;
    let pot = env.pot_of(&t);
    let mut rules: Vec<String> = env
        .host_tool("rctl", &[])
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
        .host_tool("jls", &["-j", &pot, "jid"])
        .trim()
        .to_string();
    assert!(
        env.host_tool("cpuset", &["-g", "-j", &pot])
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
        env.host_tool("rctl", &[]),
        "",
        "rules left behind by StopTask"
    );
    env.wait(&t.id(), 10.0).await;
    env.destroy(&t.id()).await;
    assert_eq!(env.host_tool("rctl", &[]), "", "rules left behind");
    env.finish().await;
}

/// The pcpu rules on the host's rctl list (`jail:<pot>:pcpu:deny=N`).
fn pcpu_rules(env: &Env) -> Vec<String> {
    env.host_tool("rctl", &[])
        .lines()
        .filter(|r| r.contains(":pcpu:"))
        .map(String::from)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn cpu_is_a_reservation_unless_cpu_hard_limit_makes_it_a_cap() {
    // The agent's default is a reservation; a task's own `cpu_hard_limit = true` caps it.
    let env = Env::new().await;
    env.host_tool("sysctl", &["hw.ncpu=8"]);
    let reserved = env.limited_task("reserved", &gated_task_config(&env, 0), "");
    env.start(&reserved).await;
    env.wait_ready(&reserved).await;
    assert_eq!(pcpu_rules(&env), Vec::<String>::new());
    let mut cfg = gated_task_config(&env, 0);
    cfg["cpu_hard_limit"] = json!(true);
    let capped = env.limited_task("capped", &cfg, "");
    env.start(&capped).await;
    env.wait_ready(&capped).await;
    assert_eq!(
        pcpu_rules(&env),
        [format!("jail:{}:pcpu:deny=50", env.pot_of(&capped))]
    );
    for t in [&reserved, &capped] {
        open_gate(t);
        env.wait(&t.id(), 10.0).await;
        env.destroy(&t.id()).await;
    }
    env.finish().await;

    // The agent's `cpu_hard_limit = true` caps every task that does not say otherwise.
    let env = Env::with_agent_config(json!({"cpu_hard_limit": true})).await;
    env.host_tool("sysctl", &["hw.ncpu=8"]);
    let capped = env.limited_task("capped", &gated_task_config(&env, 0), "");
    let mut cfg = gated_task_config(&env, 0);
    cfg["cpu_hard_limit"] = json!(false);
    let reserved = env.limited_task("reserved", &cfg, "");
    for t in [&capped, &reserved] {
        env.start(t).await;
        env.wait_ready(t).await;
    }
    assert_eq!(
        pcpu_rules(&env),
        [format!("jail:{}:pcpu:deny=50", env.pot_of(&capped))]
    );
    for t in [&reserved, &capped] {
        open_gate(t);
        env.wait(&t.id(), 10.0).await;
        env.destroy(&t.id()).await;
    }
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_are_rolled_back_with_a_failed_start_and_need_racct() {
    let env = Env::new().await;
    env.host_tool("sysctl", &["hw.ncpu=8"]);
    // CPU 9 does not exist: cpuset fails after the rctl rules are in place.
    let t = env.limited_task("badcores", &gated_task_config(&env, 0), "1,9");
    let s = env.start_err(&t).await;
    assert!(s.message().contains("cpuset"), "{s:?}");
    let pot = env.pot_of(&t);
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
    env.host_tool("sysctl", &["kern.racct.enable=0"]);
    let mut cfg = gated_task_config(&env, 0);
    cfg["maxproc"] = json!("10");
    let t = env.limited_task("noracct", &cfg, "");
    let s = env.start_err(&t).await;
    assert!(s.message().contains("kern.racct.enable is 0"), "{s:?}");
    let adds = env.calls_starting(&["rctl", "-a"]).len();
    let t = env.limited_task("nolimits", &gated_task_config(&env, 0), "");
    env.start(&t).await;
    env.wait_ready(&t).await;
    assert_eq!(env.calls_starting(&["rctl", "-a"]).len(), adds);
    open_gate(&t);
    env.wait(&t.id(), 10.0).await;
    env.destroy(&t.id()).await;
    env.finish().await;
}

/// A jail that reached its memory limit is reported as OOM-killed: the kernel's `devctl`
/// notification reaches a task supervisor through devd, also while the plugin is down, and the
/// exit says so. A task that stayed below its limit is not.
#[tokio::test(flavor = "multi_thread")]
async fn a_task_that_reached_its_memory_limit_is_reported_oom_killed() {
    let mut env = Env::new().await;
    let _devd = env.sim.start_devd();
    let cfg = json!({
        "image": env.file_image(), "pot": "demo", "tag": "1.0", "command": "/bin/sh",
        "args": ["-c", "echo $$ > /local/pid; echo ready; while :; do sleep 0.1; done"],
    });
    let (hog, calm) = (env.task("hog", &cfg), env.task("calm", &cfg));
    let mut handles = Vec::new();
    for t in [&hog, &calm] {
        handles.push(env.start(t).await.handle.expect("StartTask without handle"));
        env.wait_ready(t).await;
    }
    let limit: u64 = 64 << 20;
    let (hog_pot, calm_pot) = (env.pot_of(&hog), env.pot_of(&calm));
    let rules = env.host_tool("rctl", &[]);
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
    let r = env
        .wait(&hog.id(), 20.0)
        .await
        .result
        .expect("WaitTask result");
    assert_eq!((r.signal, r.oom_killed), (9, true), "{r:?}");
    let r = env
        .wait(&calm.id(), 20.0)
        .await
        .result
        .expect("WaitTask result");
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
    assert_eq!(env.host_tool("rctl", &[]), "", "rules left behind");
    env.finish().await;
}

// ---------------------------------------------------------------------------------------------
// m. no shell: hostile strings in every string field reach their tool verbatim or are refused
// ---------------------------------------------------------------------------------------------

/// A small deterministic generator (xorshift64*) of strings made of shell metacharacters,
/// quotes, newlines and non-ASCII text.
struct Hostile(u64);

impl Hostile {
    const FRAGMENTS: &[&str] = &[
        "$(touch /tmp/pwned)",
        "`id`",
        "'",
        "\"",
        "\n",
        ";",
        "|",
        "&&",
        "$HOME",
        "${IFS}",
        "\\",
        "*",
        "?",
        "~",
        "#",
        "ü",
        "日本",
        " ",
        "\t",
        "=",
        ":",
        ">",
        "<",
        "!",
        "%s",
        "-rf",
        "{a,b}",
        "x",
    ];

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn string(&mut self) -> String {
        let n = 1 + self.next() % 4;
        (0..n)
            .map(|_| Self::FRAGMENTS[(self.next() % Self::FRAGMENTS.len() as u64) as usize])
            .collect()
    }

    /// A file name: no `/`, and no `:` (the separator of `host:jail` entries).
    fn file_name(&mut self) -> String {
        format!("f{}", self.string().replace(['/', ':'], "_"))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_strings_duplicate_mounts_and_file_images_are_refused_before_any_change() {
    let env = Env::new().await;
    let base = json!({
        "image": env.file_image(), "pot": "demo", "tag": "1.0",
        "command": "/bin/sh", "args": ["-c", "exit 0"],
    });
    let with = |extra: Json| {
        let mut cfg = base.clone();
        for (k, v) in extra.as_object().unwrap() {
            cfg[k] = v.clone();
        }
        cfg
    };
    // (task name, config, an env variable, what the refusal says)
    type Case<'a> = (&'a str, Json, Option<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "eqkey",
            base.clone(),
            Some(("A=B", "x")),
            "\"A=B\" is empty or contains '='",
        ),
        (
            "nulkey",
            base.clone(),
            Some(("A\0B", "x")),
            "contains '=' or a NUL byte",
        ),
        (
            "nulval",
            base.clone(),
            Some(("A", "x\0y")),
            "environment variable A contains a NUL",
        ),
        (
            "nularg",
            with(json!({"args": ["-c", "a\0b"]})),
            None,
            "args[1] contains a NUL",
        ),
        (
            "nulcmd",
            with(json!({"command": "/bin/\0sh"})),
            None,
            "command",
        ),
        (
            "dupmount",
            with(json!({"mount": ["local/a:/data", "local/b:/data/"]})),
            None,
            "mount[1]: jail path \"/data/\" is already a mount target (of mount[0])",
        ),
        (
            "overlocal",
            with(json!({"mount": ["local/a://local"]})),
            None,
            "is already a mount target (of the task's own mounts)",
        ),
        // Outside the sim's allowed_image_dirs, existing or not.
        (
            "etc",
            with(json!({"image": "file:///etc"})),
            None,
            "allowed_image_dirs",
        ),
        (
            "nodir",
            with(json!({"image": "file:///no/such/dir"})),
            None,
            "allowed_image_dirs",
        ),
    ];
    let before = env.sim.calls().len();
    for (name, cfg, var, want) in &cases {
        let mut b = TaskBuilder::new(name, env.encode_task(cfg));
        if let Some((k, v)) = var {
            b = b.env(k, v);
        }
        let t = b.build(&env.sim.allocs_dir());
        for d in ["a", "b"] {
            std::fs::create_dir_all(t.alloc_dir.join(&t.task_name).join("local").join(d)).unwrap();
        }
        let req = StartTaskRequest {
            task: Some(t.config.clone()),
        };
        let e = within(30.0, "StartTask", env.plugin.driver().start_task(req))
            .await
            .expect_err(name);
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{name}: {e:?}");
        assert!(e.message().contains(want), "{name}: {e:?}");
    }
    // Refused before the image import, the clone, the jail: not one tool ran.
    let calls: Vec<String> = env.sim.calls()[before..].iter().map(|c| c.line()).collect();
    assert!(calls.is_empty(), "refused starts ran tools: {calls:?}");
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_command_too_long_for_execve_fails_with_a_bounded_message() {
    let env = Env::new().await;
    // One argument over Linux's 128 KiB MAX_ARG_STRLEN: the task's execve fails with E2BIG.
    let huge = "x".repeat(1 << 20);
    let cfg = json!({
        "image": env.file_image(), "pot": "demo", "tag": "1.0",
        "command": "/bin/sh", "args": ["-c", huge],
    });
    let t = env.task("huge", &cfg);
    let req = StartTaskRequest {
        task: Some(t.config.clone()),
    };
    let e = within(60.0, "StartTask", env.plugin.driver().start_task(req))
        .await
        .expect_err("E2BIG");
    assert!(
        e.message().contains("Argument list too long"),
        "{}",
        &e.message()[..200.min(e.message().len())]
    );
    assert!(
        e.message().len() <= 4200,
        "grpc-message of {} bytes",
        e.message().len()
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_strings_reach_tools_verbatim_or_are_refused() {
    use nomad_pot_driver::proto::drivers::{DnsConfig, ExecTaskRequest};
    let env = Env::with_agent_config(json!({"args_quote_compat": false})).await;
    let image = env.file_image();
    let mut hostile = Hostile(0x9E37_79B9_7F4A_7C15);
    let (mut accepted, mut refused) = (0, 0);
    for round in 0..6 {
        // Always accepted: args, env values and copy targets, which need no validation.
        let args: Vec<String> = (0..3).map(|_| hostile.string()).collect();
        let copy_name = hostile.file_name();
        let copy_target = format!("/opt/{}", hostile.string().replace('\0', ""));
        let mut cfg = json!({
            "image": image, "pot": "demo", "tag": "1.0", "command": "/usr/bin/printf",
            "args": ([vec!["%s\\0".to_string()], args.clone()].concat()),
            "copy": [format!("local/{copy_name}:{copy_target}")],
        });
        cfg["network_mode"] = json!("host");
        let mut b = TaskBuilder::new(&format!("hostile{round}"), env.encode_task(&cfg));
        let env_values: Vec<String> = (0..3).map(|_| hostile.string()).collect();
        for (i, v) in env_values.iter().enumerate() {
            b = b.env(&format!("HOSTILE_{i}"), v);
        }
        let t = b.build(&env.sim.allocs_dir());
        std::fs::write(
            t.alloc_dir
                .join(&t.task_name)
                .join("local")
                .join(&copy_name),
            &copy_name,
        )
        .unwrap();
        env.start(&t).await;
        let pot = env.pot_of(&t);
        env.wait(&t.id(), 30.0).await;
        assert!(t.logs.wait_for_eof(Duration::from_secs(5)).await);
        let printed: Vec<String> = t
            .logs
            .stdout()
            .split_terminator('\0')
            .map(String::from)
            .collect();
        assert_eq!(printed, args, "round {round}: the task's argv");
        let jexec = env.calls_starting(&["jexec", &pot, "/usr/bin/printf"]);
        assert_eq!(jexec.len(), 1);
        assert_eq!(jexec[0][4..], args[..], "round {round}: jexec argv");
        let copied = nomad_pot_driver::engine::PotName::new(&pot).unwrap();
        let root = env.jail_root(copied.as_str()).join("m");
        let landed = root.join(copy_target.trim_start_matches('/'));
        let landed = if landed.is_dir() {
            landed.join(&copy_name)
        } else {
            landed
        };
        assert_eq!(std::fs::read_to_string(&landed).unwrap(), copy_name);
        // The environment, through an exec with the task's env.
        let r = within(
            10.0,
            "ExecTask env",
            env.plugin.driver().exec_task(ExecTaskRequest {
                task_id: t.id(),
                command: vec!["/usr/bin/env".into(), "-0".into()],
                timeout: Some(dur(5)),
            }),
        )
        .await
        .expect("ExecTask")
        .into_inner();
        let seen = String::from_utf8(r.stdout).unwrap();
        for (i, v) in env_values.iter().enumerate() {
            let entry = format!("HOSTILE_{i}={v}");
            assert!(
                seen.split('\0').any(|e| e == entry),
                "round {round}: {entry:?} not in {seen:?}"
            );
        }
        env.destroy(&t.id()).await;
        accepted += 1;

        // Fields with rules: each alone, accepted verbatim or refused naming the field.
        let local_dir = hostile.file_name();
        let mount_target = format!("/mnt/{}", hostile.string());
        let host_name = hostile.string();
        let exec_stop = hostile.string();
        let search = hostile.string();
        let user = hostile.string();
        let command = format!("/{}", hostile.string());
        let (net, count, size) = (hostile.string(), hostile.string(), hostile.string());
        let (pot_name, tag) = (format!("demo{}", hostile.string()), hostile.string());
        let cases: Vec<(&str, Json)> = vec![
            (
                "mount",
                json!({"mount": [format!("local/{local_dir}:{mount_target}")]}),
            ),
            (
                "extra_hosts",
                json!({"extra_hosts": [format!("{host_name}:10.0.0.1")]}),
            ),
            (
                "attributes",
                json!({"attributes": [format!("exec_stop:{exec_stop}")]}),
            ),
            ("dns", json!({})),
            ("user", json!({})),
            ("command", json!({"command": command})),
            ("network_mode", json!({"network_mode": net})),
            ("maxproc", json!({"maxproc": count})),
            ("quota", json!({"quota": size})),
            ("pot", json!({"pot": pot_name})),
            ("tag", json!({"tag": tag})),
        ];
        for (field, extra) in cases {
            let mut cfg = json!({
                "image": image, "pot": "demo", "tag": "1.0",
                "command": "/bin/sh", "args": ["-c", "exit 0"],
            });
            for (k, v) in extra.as_object().unwrap() {
                cfg[k] = v.clone();
            }
            let mut t = env.task(&format!("r{round}{}", field.replace('_', "")), &cfg);
            std::fs::create_dir_all(
                t.alloc_dir
                    .join(&t.task_name)
                    .join("local")
                    .join(&local_dir),
            )
            .unwrap();
            if field == "dns" {
                t.config.dns = Some(DnsConfig {
                    searches: vec![search.clone()],
                    ..Default::default()
                });
            }
            if field == "user" {
                t.config.user = user.clone();
            }
            let before = env.sim.calls().len();
            let req = StartTaskRequest {
                task: Some(t.config.clone()),
            };
            match within(60.0, "StartTask", env.plugin.driver().start_task(req)).await {
                // A valid-looking pot or tag names an image that does not exist.
                Err(s) if matches!(field, "pot" | "tag") && s.message().starts_with("image ") => {
                    refused += 1;
                    continue;
                }
                Err(s) => {
                    assert_eq!(s.code(), tonic::Code::InvalidArgument, "{field}: {s:?}");
                    assert!(s.message().contains(field), "{field}: {s:?}");
                    let touched: Vec<String> = env.sim.calls()[before..]
                        .iter()
                        .map(|c| c.line())
                        .filter(|l| l.starts_with("jail ") || l.starts_with("mount -t"))
                        .collect();
                    assert!(
                        touched.is_empty() || field == "user",
                        "{field}: refused after {touched:?}"
                    );
                    refused += 1;
                    continue;
                }
                Ok(_) => accepted += 1,
            }
            let pot = env.pot_of(&t);
            let dir = env.jail_root(&pot);
            match field {
                "mount" => {
                    let real = std::fs::canonicalize(
                        t.alloc_dir
                            .join(&t.task_name)
                            .join("local")
                            .join(&local_dir),
                    )
                    .unwrap();
                    let want = vec![
                        "mount".to_string(),
                        "-t".into(),
                        "nullfs".into(),
                        "-o".into(),
                        "rw".into(),
                        real.display().to_string(),
                        dir.join("m").join(&mount_target[1..]).display().to_string(),
                    ];
                    assert!(env.sim.calls().iter().any(|c| c.argv == want), "{want:?}");
                }
                "extra_hosts" => {
                    let hosts = std::fs::read_to_string(dir.join("m/etc/hosts")).unwrap();
                    assert!(
                        hosts.ends_with(&format!("10.0.0.1 {host_name}\n")),
                        "{hosts:?}"
                    );
                }
                "attributes" => {
                    let want = format!("exec.stop={exec_stop}");
                    let jail = env.calls_starting(&["jail", "-i", "-c"]);
                    assert!(jail.last().unwrap().contains(&want), "{want:?}");
                }
                "dns" => {
                    let resolv = std::fs::read_to_string(dir.join("m/etc/resolv.conf")).unwrap();
                    assert!(
                        resolv.contains(&format!("\nsearch {search}\n")),
                        "{resolv:?}"
                    );
                }
                "command" => {
                    env.wait(&t.id(), 30.0).await;
                    let jexec = env.calls_starting(&["jexec", &pot]);
                    assert_eq!(
                        jexec.last().unwrap()[2..],
                        [command.clone(), "-c".into(), "exit 0".into()]
                    );
                }
                other => panic!("{other}: a hostile value was accepted"),
            }
            env.wait(&t.id(), 30.0).await;
            env.destroy(&t.id()).await;
        }
    }
    assert!(
        refused > 0 && accepted > 6,
        "accepted {accepted}, refused {refused}"
    );
    assert!(!std::path::Path::new("/tmp/pwned").exists());
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
    let pot = env.pot_of(&t);
    assert!(
        env.host_tool("rctl", &[])
            .contains(&format!("jail:{pot}:maxproc:deny=50\n")),
        "the running task keeps its limits"
    );
    open_gate(&t);
    env.wait(&t.id(), 10.0).await;
    env.destroy(&t.id()).await;
    assert_eq!(env.host_tool("rctl", &[]), "", "rules left behind");
    env.finish().await;
}

/// `potctl gc`: a dry run by default, `--apply` removes exactly the abandoned pot.
#[tokio::test(flavor = "multi_thread")]
async fn potctl_gc_shows_then_removes_an_abandoned_pot() {
    let mut env = Env::new().await;
    let t = env.task("leaked", &gated_task_config(&env, 0));
    env.start(&t).await;
    open_gate(&t);
    env.wait(&t.id(), 20.0).await;
    // The plugin dies after the task ended and Nomad never comes back for it.
    env.plugin.kill();
    let potctl = |args: &[&str]| {
        let out = std::process::Command::new(nomad_harness::bin_dir().join("potctl"))
            .arg("--sim")
            .arg(&env.sim.dir)
            .args(args)
            .output()
            .expect("run potctl");
        assert!(out.status.success(), "potctl {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let dry = potctl(&["gc"]);
    assert!(dry.contains("would remove leaked_"), "{dry}");
    assert!(!env.sim.check().0, "the dry run changed nothing");
    let applied = potctl(&["gc", "--apply"]);
    assert!(applied.contains("removed leaked_"), "{applied}");
    let (clean, leftovers) = env.sim.check();
    assert!(clean, "after potctl gc --apply: {leftovers}");
    assert!(potctl(&["gc"]).contains("nothing of this driver's"));
    env.crash_and_relaunch().await;
    env.finish().await;
}
