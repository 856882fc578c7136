//! Tasks outlive the plugin: recovery after a plugin SIGKILL or a host reboot, an idempotent
//! StartTask, RecoverTask's refusals; reconcile and `potctl gc` collect only the abandoned pots
//! of this driver and leave others alone.

use std::time::Duration;

use crate::common::env::*;
use crate::common::within;
use nomad_pot_driver::proto::drivers::{
    InspectTaskRequest, SignalTaskRequest, StartTaskRequest, TaskHandle,
};
use serde_json::{Value as Json, json};

#[tokio::test(flavor = "multi_thread")]
async fn task_survives_plugin_sigkill_with_logs_and_exit_code() {
    let mut env = Env::new().await;
    let t = env.task("survivor", &gated_task_config(&env, 5));
    let handle = env
        .start_ready(&t)
        .await
        .handle
        .expect("StartTask without handle");

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
        .start_ready(&t)
        .await
        .handle
        .expect("StartTask without handle");
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
    for t in [&recovered, &collected] {
        sigkill_if_alive(env.supervisor_pids(t).0);
    }
    env.sim.reboot();
    // After the boot, the old pids belong to unrelated processes.
    let mut stranger = std::process::Command::new("/bin/sleep")
        .arg("120")
        .spawn()
        .unwrap();
    for t in [&recovered, &collected] {
        let path = env.state_dir(t).join("pids.json");
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
    assert_eq!(gone, [pot_of(&collected).to_string()], "{report:?}");
    assert!(
        stranger.try_wait().unwrap().is_none(),
        "a process that reused a task's pid was signalled"
    );
    let _ = stranger.kill();
    let _ = stranger.wait();
    // The node is usable after the reboot: the image is still there and a new task runs.
    let after = env.task("after", &gated_task_config(&env, 3));
    env.start_ready(&after).await;
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
    assert_eq!(env.exit(&t.id(), 20.0).await.exit_code, 0);
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
    let handle = env.start_ready(&t).await.handle.expect("handle");
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
    env.wait_and_destroy(&t.id(), 20.0).await;
    for d in [handmade, squat.as_str()] {
        let (code, _, err) = env.sim.tool("zfs", &["destroy", "-r", d], "");
        assert_eq!(code, 0, "zfs destroy: {err}");
    }
    env.finish().await;
}

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
    env.sim.tool_ok("zfs", &["create", foreign]);

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
    env.kill_supervisor_and_task(&running);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = engine.gc(false, Duration::ZERO).await.expect("gc");
    assert_eq!(names(&report.collected), [pot_of(&running)]);
    let (clean, leftovers) = env.sim.check();
    assert!(clean, "after reconcile: {leftovers}");
    let (listed, _, err) = env
        .sim
        .tool("zfs", &["list", "-H", "-o", "name", foreign], "");
    assert_eq!(
        listed, 0,
        "a pot this driver did not create was removed: {err}"
    );
    env.crash_and_relaunch().await;
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
    let potctl = |args: &[&str]| crate::common::potctl::ok(&env.sim, args);
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
