//! A job or a client that misbehaves against the plugin's runtime: files that would block it, a
//! script check that prints without end, starts that their caller gives up on or that outlive
//! the plugin. Each scenario drives the real plugin on the simulated host and ends clean.
//!
//! Needs `cargo build --workspace` first (for the simulator) and root, like tests/e2e/.

mod common;

use std::time::Duration;

use common::env::*;
use common::{TestTask, within};
use nomad_pot_driver::proto::drivers::{
    ExecTaskRequest, FingerprintRequest, InspectTaskRequest, StartTaskRequest, StartTaskResponse,
    TaskState, fingerprint_response::HealthState,
};
use serde_json::json;

/// StartTask in the background, as Nomad's task runner calls it.
fn spawn_start(
    env: &Env,
    t: &TestTask,
) -> tokio::task::JoinHandle<Result<StartTaskResponse, tonic::Status>> {
    let mut driver = env.plugin.driver();
    let req = StartTaskRequest {
        task: Some(t.config.clone()),
    };
    tokio::spawn(async move { driver.start_task(req).await.map(|r| r.into_inner()) })
}

async fn inspect(env: &Env, id: &str) -> Result<TaskState, tonic::Status> {
    let req = InspectTaskRequest { task_id: id.into() };
    within(10.0, "InspectTask", env.plugin.driver().inspect_task(req))
        .await
        .map(|r| TaskState::try_from(r.into_inner().task.expect("status").state).unwrap())
}

/// A `file://` image whose `.skein` is a FIFO, in an allowed directory a job could write: a start
/// importing it is refused at once, and even a start stuck in a hung tool leaves health,
/// InspectTask and other starts answering.
#[tokio::test(flavor = "multi_thread")]
async fn a_fifo_in_an_image_or_a_stuck_start_wedges_nothing() {
    let env = Env::new().await;
    let running = env.task("running", &long_task(&env));
    env.start_ready(&running).await;

    env.sim
        .fault(&["jail", "--word", "-c", "--nth", "1", "--hang"]);
    let stuck = env.task("stuck", &long_task(&env));
    let stuck_start = spawn_start(&env, &stuck);
    env.sim.wait_for_hang("jail", "-c", Duration::from_secs(60));

    // Inside a directory the operator allows images from, which a job can also write to (a
    // host volume, say).
    let evil = env.sim.images_dir().join("from-a-job");
    std::fs::create_dir_all(&evil).unwrap();
    std::fs::write(evil.join("evil_1.0.xz"), b"").unwrap();
    nix::unistd::mkfifo(
        &evil.join("evil_1.0.xz.skein"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    let fifo_cfg = json!({
        "image": format!("file://{}", evil.display()), "pot": "evil", "tag": "1.0",
        "command": "/bin/true",
    });
    // More than the runtime has worker threads: blocking opens would take them all.
    let fifo_tasks: Vec<TestTask> = (0..6)
        .map(|i| env.task(&format!("fifo{i}"), &fifo_cfg))
        .collect();
    let fifo_starts: Vec<_> = fifo_tasks.iter().map(|t| spawn_start(&env, t)).collect();

    let mut fingerprint = within(
        10.0,
        "Fingerprint",
        env.plugin.driver().fingerprint(FingerprintRequest {}),
    )
    .await
    .expect("Fingerprint")
    .into_inner();
    let fp = within(10.0, "the first fingerprint", fingerprint.message())
        .await
        .expect("fingerprint stream")
        .expect("a fingerprint");
    assert_eq!(fp.health, HealthState::Healthy as i32, "{fp:?}");
    assert_eq!(
        inspect(&env, &running.id()).await.unwrap(),
        TaskState::Running
    );
    let other = env.task("other", &long_task(&env));
    within(60.0, "another StartTask", env.try_start(&other))
        .await
        .expect("another task starts while one start hangs");
    env.wait_ready(&other).await;

    for (t, start) in fifo_tasks.iter().zip(fifo_starts) {
        let e = within(20.0, "StartTask of a FIFO image", start)
            .await
            .unwrap()
            .expect_err("a FIFO .skein is refused");
        assert!(
            e.message()
                .contains("evil_1.0.xz.skein is a FIFO, not a regular file"),
            "{}: {e:?}",
            t.id()
        );
    }

    env.try_destroy(&stuck.id())
        .await
        .expect("DestroyTask of the stuck start");
    let e = within(30.0, "the stuck StartTask", stuck_start)
        .await
        .unwrap()
        .expect_err("a start destroyed half-way fails");
    assert_eq!(e.code(), tonic::Code::Aborted, "{e:?}");
    env.sim.clear_faults();
    for t in [&running, &other] {
        env.destroy(&t.id()).await;
    }
    env.assert_no_debris("after the stuck and the refused starts");
    env.finish().await;
}

/// A script check printing far more than Nomad keeps: the plugin keeps the last 4 KiB of each
/// stream (Nomad's `CheckBufSize`), says how much it dropped, and still sees the command end.
#[tokio::test(flavor = "multi_thread")]
async fn exec_task_keeps_only_the_tail_of_a_huge_output() {
    let env = Env::new().await;
    let t = env.task("checked", &long_task(&env));
    env.start_ready(&t).await;
    let script = "head -c 67108864 /dev/zero; echo out-end; head -c 100000 /dev/zero >&2; echo err-end >&2; exit 3";
    let r = within(
        60.0,
        "ExecTask",
        env.plugin.driver().exec_task(ExecTaskRequest {
            task_id: t.id(),
            command: vec!["/bin/sh".into(), "-c".into(), script.into()],
            timeout: Some(dur(50)),
        }),
    )
    .await
    .expect("ExecTask")
    .into_inner();
    assert_eq!(r.result.expect("result").exit_code, 3);
    for (out, total, end) in [
        (&r.stdout, 67_108_864 + 8, "out-end\n"),
        (&r.stderr, 100_000 + 8, "err-end\n"),
    ] {
        let note = format!(
            "[nomad-pot-driver: {} bytes of output discarded, only the last 4096 kept]\n",
            total - 4096
        );
        let text = String::from_utf8_lossy(out);
        assert!(
            text.starts_with(&note),
            "{:?}",
            &text[..100.min(text.len())]
        );
        assert_eq!(out.len(), note.len() + 4096);
        assert!(text.ends_with(end));
    }
    env.destroy(&t.id()).await;
    env.finish().await;
}

/// A start whose caller gives up while a tool hangs is rolled back on its own; one that
/// DestroyTask meets half-way is rolled back before DestroyTask answers, and its caller told.
#[tokio::test(flavor = "multi_thread")]
async fn a_start_given_up_or_destroyed_half_way_is_rolled_back() {
    let env = Env::new().await;
    // Clone and mounts exist once `jail -c` runs.
    env.sim.fault(&["jail", "--word", "-c", "--hang"]);
    let t = env.task("abandoned", &long_task(&env));
    let start = spawn_start(&env, &t);
    env.sim.wait_for_hang("jail", "-c", Duration::from_secs(60));
    // The client's request goes away, as when Nomad's context ends.
    start.abort();
    env.wait_clean("after the caller gave up on StartTask")
        .await;
    env.destroy(&t.id()).await;
    env.assert_no_debris("after DestroyTask of an abandoned start");

    let t = env.task("destroyed", &long_task(&env));
    let start = spawn_start(&env, &t);
    while env.sim.calls().iter().filter(|c| c.fault.is_some()).count() < 2 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    env.try_destroy(&t.id())
        .await
        .expect("DestroyTask during StartTask");
    env.assert_no_debris("right after DestroyTask of a half-made start");
    let e = within(10.0, "StartTask", start)
        .await
        .unwrap()
        .expect_err("a start destroyed half-way fails");
    assert_eq!(e.code(), tonic::Code::Aborted, "{e:?}");
    env.sim.clear_faults();
    env.finish().await;
}

/// Makes `t` log to a FIFO no one reads yet; returns it.
fn unread_log(t: &mut TestTask) -> std::path::PathBuf {
    let fifo = t.alloc_dir.join("alloc/logs/unread.stdout.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    t.config.stdout_path = fifo.display().to_string();
    fifo
}

/// Opens a reader on `fifo` and holds it a while: time enough for a supervisor waiting there.
async fn read_for_a_while(fifo: &std::path::Path) {
    use std::os::unix::fs::OpenOptionsExt;
    let _reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(fifo)
        .expect("open a reader");
    tokio::time::sleep(Duration::from_secs(2)).await;
}

/// Waits until the start of `t` has spawned its supervisor, which then waits for its logs.
async fn wait_for_supervisor(env: &Env, t: &TestTask) {
    let shim_pid = engine_for(&env.sim)
        .config()
        .state_dir
        .join("tasks")
        .join(pot_of(t).as_str())
        .join("shim.pid");
    within(60.0, "the supervisor to start", async {
        while !shim_pid.exists() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

fn jexec_calls(env: &Env, t: &TestTask) -> usize {
    let pot = pot_of(t).to_string();
    env.sim
        .calls()
        .iter()
        .filter(|c| c.argv.first().is_some_and(|a| a == "jexec") && c.argv.contains(&pot))
        .count()
}

/// A start waiting for a reader of its log FIFO, given up by its caller: it is rolled back,
/// and a reader coming later does not start a task no one tracks.
#[tokio::test(flavor = "multi_thread")]
async fn a_start_given_up_while_its_log_has_no_reader_never_runs() {
    let env = Env::new().await;
    let mut t = env.task("unread", &long_task(&env));
    let fifo = unread_log(&mut t);
    let start = spawn_start(&env, &t);
    wait_for_supervisor(&env, &t).await;
    start.abort();
    env.wait_clean("after the caller gave up on StartTask")
        .await;
    read_for_a_while(&fifo).await;
    assert_eq!(jexec_calls(&env, &t), 0, "the abandoned task was started");
    assert_eq!(
        inspect(&env, &t.id()).await.map_err(|e| e.code()),
        Err(tonic::Code::NotFound)
    );
    env.assert_no_debris("after a reader came to the abandoned start's log");
    env.finish().await;
}

/// The plugin dies while a start waits for a reader of its log FIFO: a reader coming later
/// does not start the task, and reconcile collects what the start left.
#[tokio::test(flavor = "multi_thread")]
async fn after_a_crash_mid_start_the_task_never_runs_and_reconcile_collects_it() {
    let mut env = Env::new().await;
    let mut t = env.task("crashed", &long_task(&env));
    let fifo = unread_log(&mut t);
    let start = spawn_start(&env, &t);
    wait_for_supervisor(&env, &t).await;
    env.crash_and_relaunch().await;
    let _ = start.await;
    read_for_a_while(&fifo).await;
    assert_eq!(
        jexec_calls(&env, &t),
        0,
        "the orphaned supervisor started the task"
    );
    let report = engine_for(&env.sim)
        .gc(false, Duration::ZERO)
        .await
        .expect("reconcile");
    assert_eq!(
        report.collected.iter().map(|(p, _)| p).collect::<Vec<_>>(),
        [&pot_of(&t)],
        "{report:?}"
    );
    env.assert_no_debris("after reconcile");
    env.finish().await;
}
