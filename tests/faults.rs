//! Fault injection against the real plugin: base tools failing or hanging at each step of a
//! task's life (through `freebsd-sim fault`), the plugin SIGKILLed in the middle of a step, and
//! the per-task supervisor killed under a running task. After every scenario the host is clean.
//!
//! Needs `cargo build --workspace` first (for the simulator) and root, like tests/e2e/.

mod common;

use std::time::Duration;

use common::env::*;
use common::{TestTask, within};
use nomad_pot_driver::proto::drivers::{
    DestroyTaskRequest, StartTaskRequest, StopTaskRequest, TaskHandle,
};

/// The steps of a first start (image not yet imported), as fault rules: (what the error must
/// name, tool, word, nth).
const START_STEPS: &[(&str, &str, &str, u32)] = &[
    ("zfs list", "zfs", "list", 1),
    ("zfs receive", "zfs", "receive", 1),
    ("zfs rename", "zfs", "rename", 1),
    ("zfs list", "zfs", "snapshot", 1),
    ("zfs create", "zfs", "create", 1),
    ("zfs clone", "zfs", "clone", 1),
    ("mount -t nullfs", "mount", "nullfs", 1),
    ("mount -t nullfs", "mount", "nullfs", 3),
    ("jail -i -c", "jail", "-c", 1),
];

/// `word` with `{root}`, the task's jail root, filled in.
fn step_word(env: &Env, word: &str, t: &TestTask) -> String {
    let root = std::path::Path::new(env.sim.config["fs_root"].as_str().unwrap())
        .join("jails")
        .join(pot_of(t).as_str())
        .join("m");
    word.replace("{root}", root.to_str().unwrap())
}

/// A failing tool at any step of StartTask fails it with an error naming that step, and
/// leaves nothing behind; the same task then starts fine.
#[tokio::test(flavor = "multi_thread")]
async fn tool_failure_at_each_start_step_rolls_back() {
    for &(named, tool, word, nth) in START_STEPS {
        let env = Env::new().await;
        let t = env.task("failing", &long_task(&env));
        let word = step_word(&env, word, &t);
        let nth = nth.to_string();
        env.sim.fault(&[
            tool,
            "--word",
            &word,
            "--nth",
            &nth,
            "--fail",
            "1",
            "--stderr",
            "injected-failure",
        ]);
        let step = format!("{tool} {word} #{nth}");
        let e = env
            .try_start(&t)
            .await
            .expect_err(&format!("StartTask with {step} failing"));
        assert!(
            e.message().contains(named) && e.message().contains("injected-failure"),
            "{step}: the error should name `{named}` and carry the tool's stderr: {e:?}"
        );
        env.assert_no_debris(&format!("right after StartTask failed at {step}"));
        env.sim.clear_faults();
        env.try_start(&t)
            .await
            .unwrap_or_else(|e| panic!("{step}: StartTask after the rollback: {e:?}"));
        env.wait_ready(&t).await;
        env.destroy(&t.id()).await;
        env.finish().await;
    }
}

/// jexec runs under the task's supervisor after StartTask returned, and its own failure cannot
/// be told apart from the command's: it is the task's exit, with jexec's complaint in the task's
/// stderr log.
#[tokio::test(flavor = "multi_thread")]
async fn jexec_failure_is_the_tasks_exit_with_its_message_in_the_log() {
    let env = Env::new().await;
    let t = env.task("nojexec", &long_task(&env));
    env.sim
        .fault(&["jexec", "--fail", "1", "--stderr", "jexec: jail not found"]);
    env.start(&t).await;
    let r = env.wait(&t.id(), 20.0).await;
    assert_eq!(r.result.expect("result").exit_code, 1);
    assert!(
        t.logs
            .wait_for_stderr("jexec: jail not found", Duration::from_secs(5))
            .await,
        "task stderr: {:?}",
        t.logs.stderr()
    );
    env.sim.clear_faults();
    env.destroy(&t.id()).await;
    env.finish().await;
}

/// The steps of StopTask and DestroyTask of a running task, as fault rules: (what the error
/// must name, tool, word, nth; `None` for every matching call). Teardown unmounts everything
/// in one `umount` and asks target by target only when that fails, so an unmount fails for
/// good only when it fails every time: all of them, or one target alone.
const TEARDOWN_STEPS: &[(&str, &str, &str, Option<u32>)] = &[
    ("jail -R", "jail", "-R", Some(1)),
    ("umount -f", "umount", "-f", None),
    ("umount -f", "umount", "{root}/local", None),
    ("zfs destroy", "zfs", "destroy", Some(1)),
];

/// A failing tool at any step of StopTask or DestroyTask is reported, and the call retried as
/// Nomad retries it succeeds and leaves nothing.
#[tokio::test(flavor = "multi_thread")]
async fn tool_failure_at_each_stop_and_destroy_step_is_reported_and_retry_cleans_up() {
    for &(named, tool, word, nth) in TEARDOWN_STEPS {
        for in_stop in [true, false] {
            // jail -R is StopTask's own step (a DestroyTask after a stop by the same plugin
            // does not repeat it); the others belong to DestroyTask only.
            if in_stop != (tool == "jail") {
                continue;
            }
            let env = Env::new().await;
            let t = env.task("stopping", &long_task(&env));
            env.start_ready(&t).await;
            let word = step_word(&env, word, &t);
            let step = format!(
                "{tool} {word} #{nth:?} in {}",
                if in_stop { "StopTask" } else { "DestroyTask" }
            );
            let nth = nth.map(|n| n.to_string());
            let mut fault = vec![tool, "--word", &word];
            if let Some(nth) = &nth {
                fault.extend(["--nth", nth]);
            }
            fault.extend(["--fail", "1", "--stderr", "injected-failure"]);
            if in_stop {
                env.sim.fault(&fault);
                let e = env
                    .try_stop(&t.id(), 5)
                    .await
                    .expect_err(&format!("StopTask with {step} failing"));
                assert!(
                    e.message().contains(named) && e.message().contains("injected-failure"),
                    "{step}: {e:?}"
                );
                env.try_stop(&t.id(), 5)
                    .await
                    .unwrap_or_else(|e| panic!("{step}: StopTask retried: {e:?}"));
            } else {
                env.try_stop(&t.id(), 5)
                    .await
                    .unwrap_or_else(|e| panic!("{step}: StopTask: {e:?}"));
                env.wait(&t.id(), 20.0).await;
                env.sim.fault(&fault);
                let e = env
                    .try_destroy(&t.id())
                    .await
                    .expect_err(&format!("DestroyTask with {step} failing"));
                assert!(
                    e.message().contains(named) && e.message().contains("injected-failure"),
                    "{step}: {e:?}"
                );
                // A fault on every call lasts until the host is mended.
                env.sim.clear_faults();
            }
            let r = env.wait(&t.id(), 20.0).await;
            assert_eq!(r.err, "", "{step}: WaitTask error");
            env.try_destroy(&t.id())
                .await
                .unwrap_or_else(|e| panic!("{step}: DestroyTask retried: {e:?}"));
            assert!(
                t.logs.wait_for_eof(Duration::from_secs(5)).await,
                "{step}: FIFO write ends still open after DestroyTask"
            );
            env.assert_no_debris(&format!("after {step} and a retry"));
            env.finish().await;
        }
    }
}

/// A pot without a mount record (made by a driver before the record existed) is unmounted from
/// the host's table: a failing `mount --libxo json -p` is reported, and the retry cleans up.
#[tokio::test(flavor = "multi_thread")]
async fn without_a_mount_record_teardown_reads_the_mount_table() {
    let env = Env::new().await;
    let t = env.task("old driver", &long_task(&env));
    env.start_ready(&t).await;
    env.try_stop(&t.id(), 5).await.expect("StopTask");
    env.wait(&t.id(), 20.0).await;
    let record = env.state_dir(&t).join("mounts.json");
    std::fs::remove_file(&record).expect("the task's mount record");
    env.sim.fault(&[
        "mount",
        "--word",
        "json",
        "--nth",
        "1",
        "--fail",
        "1",
        "--stderr",
        "injected-failure",
    ]);
    let e = env
        .try_destroy(&t.id())
        .await
        .expect_err("DestroyTask with the mount table unreadable");
    assert!(
        e.message().contains("mount --libxo json -p") && e.message().contains("injected-failure"),
        "{e:?}"
    );
    env.try_destroy(&t.id())
        .await
        .unwrap_or_else(|e| panic!("DestroyTask retried: {e:?}"));
    let listed = env
        .sim
        .calls()
        .iter()
        .filter(|c| c.argv[0] == "mount" && c.argv.iter().any(|a| a == "-p"))
        .count();
    assert_eq!(listed, 2, "the table is read once per DestroyTask");
    env.assert_no_debris("after a teardown from the mount table");
    env.finish().await;
}

/// How the hung tool call ends once the plugin is dead.
#[derive(Clone, Copy, Debug)]
enum HungCall {
    /// It never does its work (it dies with its caller).
    Abandoned,
    /// It completes its work after the plugin died.
    Completes,
}

/// Adds a hang rule for the step (`nth` `None`: every matching call).
fn hang_fault(env: &Env, tool: &str, word: &str, nth: Option<u32>, how: HungCall) {
    let nth = nth.map(|n| n.to_string());
    let mut args = vec![tool, "--word", word];
    if let Some(nth) = &nth {
        args.extend(["--nth", nth]);
    }
    args.push("--hang");
    if let HungCall::Completes = how {
        args.push("1.5");
    }
    env.sim.fault(&args);
}

/// Whether `pid` exists and is not a zombie (orphans may never be reaped here).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, r)| !r.trim_start().starts_with('Z'))
    })
}

/// Waits until the hung tool call is over (abandoned or completed).
async fn wait_gone(pid: u32) {
    within(30.0, "the hung tool call to end", async {
        while running(pid) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// The plugin SIGKILLed while a tool of StartTask hangs; relaunched, Nomad retries StartTask
/// with the same TaskConfig: the task runs, and stop and destroy leave nothing.
#[tokio::test(flavor = "multi_thread")]
async fn plugin_killed_at_each_start_step_then_start_retried() {
    for &(_, tool, word, nth) in START_STEPS {
        for how in [HungCall::Abandoned, HungCall::Completes] {
            let mut env = Env::new().await;
            let t = env.task("interrupted", &long_task(&env));
            let word = step_word(&env, word, &t);
            let step = format!("{tool} {word} #{nth} ({how:?})");
            hang_fault(&env, tool, &word, Some(nth), how);
            let start = {
                let mut driver = env.plugin.driver();
                let req = StartTaskRequest {
                    task: Some(t.config.clone()),
                };
                tokio::spawn(async move { driver.start_task(req).await })
            };
            let pid = env.sim.wait_for_hang(tool, &word, Duration::from_secs(30));
            env.plugin.kill();
            let _ = start.await;
            wait_gone(pid).await;
            env.sim.clear_faults();
            env.crash_and_relaunch().await;
            env.try_start(&t)
                .await
                .unwrap_or_else(|e| panic!("{step}: StartTask retried: {e:?}"));
            env.wait_ready(&t).await;
            env.try_stop(&t.id(), 5)
                .await
                .unwrap_or_else(|e| panic!("{step}: StopTask: {e:?}"));
            let r = env.wait(&t.id(), 20.0).await;
            assert_eq!(r.err, "", "{step}");
            env.try_destroy(&t.id())
                .await
                .unwrap_or_else(|e| panic!("{step}: DestroyTask: {e:?}"));
            env.assert_no_debris(&format!("after {step}"));
            env.finish().await;
        }
    }
}

/// The plugin SIGKILLed while a tool of StopTask or DestroyTask hangs; relaunched, Nomad
/// recovers the task from its handle, retries StopTask, waits and destroys: nothing is left.
#[tokio::test(flavor = "multi_thread")]
async fn plugin_killed_at_each_stop_and_destroy_step_then_recovered() {
    for &(_, tool, word, nth) in TEARDOWN_STEPS {
        for how in [HungCall::Abandoned, HungCall::Completes] {
            let in_stop = tool == "jail";
            let mut env = Env::new().await;
            let t = env.task("stopping", &long_task(&env));
            let handle: TaskHandle = env.start(&t).await.handle.expect("handle");
            env.wait_ready(&t).await;
            let word = step_word(&env, word, &t);
            let step = format!(
                "{tool} {word} #{nth:?} in {} ({how:?})",
                if in_stop { "StopTask" } else { "DestroyTask" }
            );
            if !in_stop {
                env.try_stop(&t.id(), 5).await.expect("StopTask");
                env.wait(&t.id(), 20.0).await;
            }
            hang_fault(&env, tool, &word, nth, how);
            let call = {
                let mut driver = env.plugin.driver();
                let id = t.id();
                tokio::spawn(async move {
                    if in_stop {
                        let req = StopTaskRequest {
                            task_id: id,
                            timeout: Some(dur(0)),
                            signal: String::new(),
                        };
                        driver.stop_task(req).await.map(drop)
                    } else {
                        let req = DestroyTaskRequest {
                            task_id: id,
                            force: true,
                        };
                        driver.destroy_task(req).await.map(drop)
                    }
                })
            };
            let pid = env.sim.wait_for_hang(tool, &word, Duration::from_secs(30));
            env.plugin.kill();
            let _ = call.await;
            wait_gone(pid).await;
            env.sim.clear_faults();
            env.crash_and_relaunch().await;
            match env.recover(&handle).await {
                Ok(()) => {
                    env.try_stop(&t.id(), 5)
                        .await
                        .unwrap_or_else(|e| panic!("{step}: StopTask after recovery: {e:?}"));
                    env.wait(&t.id(), 20.0).await;
                }
                // Nomad cleans up after a failed recovery with DestroyTask(force).
                Err(e) => eprintln!("{step}: RecoverTask failed: {e:?}"),
            }
            env.try_destroy(&t.id())
                .await
                .unwrap_or_else(|e| panic!("{step}: DestroyTask: {e:?}"));
            env.assert_no_debris(&format!("after {step}"));
            env.finish().await;
        }
    }
}

fn sigkill(pid: i32) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill");
}

/// A supervisor killed under its running task: the task keeps running, and once it ends
/// WaitTask reports that its exit status is unknown (never a made-up code).
#[tokio::test(flavor = "multi_thread")]
async fn supervisor_killed_while_its_task_runs() {
    let env = Env::new().await;
    let t = env.task("orphaned", &gated_task_config(&env, 3));
    env.start_ready(&t).await;
    let (shim, _) = env.supervisor_pids(&t);
    sigkill(shim);
    open_gate(&t);
    let r = env.wait(&t.id(), 20.0).await;
    assert!(r.err.contains("exit status unknown"), "{r:?}");
    assert_ne!(r.result.expect("result").exit_code, 0, "{:?}", r.err);
    env.destroy(&t.id()).await;
    env.assert_no_debris("after destroying a task whose supervisor was killed");
    env.finish().await;
}

/// The supervisor and the plugin killed, and the task ended before the plugin came back: the
/// recovery fails (nothing can say how the task ended), and Nomad's DestroyTask cleans up.
#[tokio::test(flavor = "multi_thread")]
async fn supervisor_and_plugin_killed_and_task_gone_then_destroy_cleans_up() {
    let mut env = Env::new().await;
    let t = env.task("lost", &gated_task_config(&env, 3));
    let handle = env.start_ready(&t).await.handle.expect("handle");
    let (shim, task) = env.supervisor_pids(&t);
    env.plugin.kill();
    sigkill(shim);
    open_gate(&t);
    wait_gone(task as u32).await;
    env.crash_and_relaunch().await;
    let e = env
        .recover(&handle)
        .await
        .expect_err("recovery of a task that left no status");
    assert!(e.message().contains("no exit status"), "{e:?}");
    env.try_destroy(&t.id())
        .await
        .expect("DestroyTask after a failed recovery");
    env.assert_no_debris("after DestroyTask of an unrecoverable task");
    env.finish().await;
}

/// DestroyTask(force) right after StartTask, for many tasks at once: whatever stage the task's
/// process is in (jexec still entering the jail), it dies with its jail and nothing is left.
#[tokio::test(flavor = "multi_thread")]
async fn destroy_right_after_start_under_load() {
    const TASKS: usize = 12;
    let env = Env::new().await;
    let tasks: Vec<TestTask> = (0..TASKS)
        .map(|i| env.task(&format!("brief{i}"), &long_task(&env)))
        .collect();
    // The image is imported once, by the first start.
    env.start(&tasks[0]).await;
    env.destroy(&tasks[0].id()).await;
    let mut calls = tokio::task::JoinSet::new();
    for t in &tasks[1..] {
        let mut driver = env.plugin.driver();
        let config = t.config.clone();
        calls.spawn(async move {
            let id = config.id.clone();
            driver
                .start_task(StartTaskRequest { task: Some(config) })
                .await
                .map_err(|e| format!("{id}: StartTask: {e:?}"))?;
            driver
                .destroy_task(DestroyTaskRequest {
                    task_id: id.clone(),
                    force: true,
                })
                .await
                .map(drop)
                .map_err(|e| format!("{id}: DestroyTask: {e:?}"))
        });
    }
    let results = within(120.0, "starts and destroys", calls.join_all()).await;
    let failed: Vec<_> = results.into_iter().filter_map(Result::err).collect();
    assert!(failed.is_empty(), "{failed:#?}\n{}", env.stderr_tail());
    env.assert_no_debris("after destroying tasks right after their start");
    env.finish().await;
}

/// Children of `parent` whose command line has `word` as an argument.
fn children_with_arg(parent: u32, word: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let ppid = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    let (_, rest) = s.rsplit_once(')')?;
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                });
            let args = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            ppid == Some(parent) && args.split(|b| *b == 0).any(|a| a == word.as_bytes())
        })
        .collect()
}

async fn jails_created(env: &Env, n: usize) {
    within(30.0, "jail -c", async {
        loop {
            let created = env
                .sim
                .calls()
                .iter()
                .filter(|c| c.exit == 0 && c.line().starts_with("jail -i -c"))
                .count();
            if created >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// The plugin killed while the task's supervisor is still starting (here: waiting for a log
/// reader). Nomad's retried StartTask replaces the half-started pot; the old supervisor must
/// not go on to start a second copy of the task in the new jail.
#[tokio::test(flavor = "multi_thread")]
async fn plugin_killed_while_the_supervisor_starts_then_start_retried() {
    let mut env = Env::new().await;
    let t = env.task("slowlog", &long_task(&env));
    let fifo = t.alloc_dir.join("alloc/logs/.slowlog.stdout.late");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let mut config = t.config.clone();
    config.stdout_path = fifo.display().to_string();
    let start = |env: &Env| {
        let mut driver = env.plugin.driver();
        let req = StartTaskRequest {
            task: Some(config.clone()),
        };
        tokio::spawn(async move { driver.start_task(req).await })
    };
    let first = start(&env);
    jails_created(&env, 1).await;
    let plugin = env.plugin.pid;
    let old_shim = within(10.0, "the first supervisor", async {
        loop {
            if let Some(pid) = children_with_arg(plugin, "shim").first() {
                break *pid;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    env.plugin.kill();
    let _ = first.await;
    env.crash_and_relaunch().await;
    let retried = start(&env);
    jails_created(&env, 2).await;
    // Only now does the log reader come: both supervisors, if both live, could go on.
    let reader = std::thread::spawn(move || std::fs::read(&fifo).unwrap_or_default());
    within(60.0, "the retried StartTask", retried)
        .await
        .expect("join")
        .expect("StartTask retried");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !running(old_shim),
        "the supervisor of the interrupted start is still alive"
    );
    env.try_stop(&t.id(), 5).await.expect("StopTask");
    env.wait_and_destroy(&t.id(), 20.0).await;
    let out = String::from_utf8_lossy(&reader.join().expect("reader")).into_owned();
    assert_eq!(out.matches("ready").count(), 1, "task output: {out:?}");
    env.assert_no_debris("after the retried start");
    env.finish().await;
}
