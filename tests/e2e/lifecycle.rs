//! A task's life through the plugin: start, logs and exit code; stop with its timeout, pot's
//! `exec_stop`, signals, stats and task events; destroy of a running task, idempotency,
//! unknown ids.

use std::time::{Duration, Instant};

use crate::common::env::*;
use crate::common::{FileServer, within};
use crate::{collect_events, wait_for_event};
use nomad_pot_driver::proto::drivers::{
    InspectTaskRequest, SignalTaskRequest, StopTaskRequest, TaskStatsRequest, WaitTaskRequest,
};
use serde_json::json;

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

#[tokio::test(flavor = "multi_thread")]
async fn stop_kills_after_timeout() {
    let env = Env::new().await;
    let cfg = env.sh_config("trap '' TERM; echo ready; while :; do sleep 1; done");
    let t = env.task("stubborn", &cfg);
    env.start_ready(&t).await;

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
    let r = env.exit(&t.id(), 10.0).await;
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
    let cfg = env.sh_config("trap 'exit 3' TERM; echo ready; while :; do sleep 0.1; done");
    let t = env.task("patient", &cfg);
    env.start_ready(&t).await;
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
    let r = env.exit(&t.id(), 10.0).await;
    assert_eq!(r.exit_code, 3, "{r:?}");
    env.destroy(&t.id()).await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn signal_task() {
    let env = Env::new().await;
    let cfg = env.sh_config("trap 'exit 7' USR1; echo ready; while :; do sleep 0.1; done");
    let t = env.task("signalled", &cfg);
    env.start_ready(&t).await;

    let req = SignalTaskRequest {
        task_id: t.id(),
        signal: "SIGUSR1".into(),
    };
    within(5.0, "SignalTask", env.plugin.driver().signal_task(req))
        .await
        .expect("SignalTask(SIGUSR1)");
    let r = env.exit(&t.id(), 10.0).await;
    assert_eq!(
        (r.exit_code, r.signal),
        (7, 0),
        "exit result after SIGUSR1 {r:?}"
    );

    env.destroy(&t.id()).await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn task_events_show_jail_start_and_exit() {
    let env = Env::new().await;
    let t = env.task("eventful", &gated_task_config(&env, 6));
    let events = collect_events(&env, t.id());
    // The stream must be open before the task starts.
    tokio::time::sleep(Duration::from_millis(200)).await;
    env.start_ready(&t).await;
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
    let cfg = env.sh_config(script);
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
    env.start_ready(&t).await;
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
    env.start_ready(&t).await;
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

#[tokio::test(flavor = "multi_thread")]
async fn destroy_running_and_idempotent() {
    let env = Env::new().await;
    let cfg = env.sh_config("echo ready; while :; do sleep 1; done");
    let t = env.task("forever", &cfg);
    env.start_ready(&t).await;

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
