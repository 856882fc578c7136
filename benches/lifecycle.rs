//! Plugin benchmarks on the simulated host: handshake latency, unary RPC latency with 0, 10 and
//! 100 running tasks, StartTask latency alone and under 50 concurrent starts, and base-tool
//! calls per task lifecycle compared with pot's own sequence.
//!
//! Run: `cargo build --release --workspace && cargo bench --bench lifecycle` (as root: the
//! simulator chroots). Prints one table; BENCHMARKS.md keeps the latest figures.

use nomad_harness::plugin::{MAGIC_COOKIE, MAGIC_COOKIE_KEY, plugin_bin};
use nomad_harness::{Plugin, SimHost, TestTask, cty};
use nomad_plugin_proto::base::{ConfigSchemaRequest, SetConfigRequest};
use nomad_plugin_proto::drivers::{
    DestroyTaskRequest, InspectTaskRequest, StartTaskRequest, StopTaskRequest,
    TaskConfigSchemaRequest, WaitTaskRequest,
};
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// pot 0.16 + the Go driver, host-tool calls for one inherit-network lifecycle
/// (shared/spec/pot-process-count.md §1, scenario A).
const POT_TOOL_CALLS_INHERIT: usize = 67;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn row(figure: &str, value: String, target: &str, verdict: &str) {
    println!("| {figure} | {value} | {target} | {verdict} |");
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

/// Exec to handshake line, over `n` launches.
fn handshake_latency(n: usize) -> Vec<Duration> {
    let mut times: Vec<Duration> = (0..n)
        .map(|_| {
            let t0 = Instant::now();
            let mut child = Command::new(plugin_bin())
                .env(MAGIC_COOKIE_KEY, MAGIC_COOKIE)
                .env("PLUGIN_PROTOCOL_VERSIONS", "2")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn the plugin");
            let mut line = String::new();
            std::io::BufReader::new(child.stdout.take().unwrap())
                .read_line(&mut line)
                .expect("read the handshake");
            let took = t0.elapsed();
            assert!(line.starts_with("1|2|unix|"), "bad handshake {line:?}");
            // SIGTERM: the plugin removes its socket dir and exits.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = child.wait();
            took
        })
        .collect();
    times.sort();
    times
}

struct Bench {
    sim: SimHost,
    plugin: Plugin,
    image: String,
    spec: nomad_plugin_proto::hclspec::Spec,
}

impl Bench {
    async fn new() -> Bench {
        let sim = SimHost::create();
        let plugin = Plugin::launch().await;
        let schema = plugin
            .base()
            .config_schema(ConfigSchemaRequest {})
            .await
            .unwrap()
            .into_inner()
            .spec
            .unwrap();
        plugin
            .base()
            .set_config(SetConfigRequest {
                msgpack_config: cty::encode(&schema, &sim.agent_config()).unwrap(),
                nomad_config: None,
                plugin_api_version: "v0.1.0".into(),
            })
            .await
            .unwrap();
        let spec = plugin
            .driver()
            .task_config_schema(TaskConfigSchemaRequest {})
            .await
            .unwrap()
            .into_inner()
            .spec
            .unwrap();
        let image = format!("file://{}", sim.image("demo", "1.0").display());
        Bench {
            sim,
            plugin,
            image,
            spec,
        }
    }

    fn task(&self, name: &str, script: &str) -> TestTask {
        let cfg = serde_json::json!({
            "image": self.image, "pot": "demo", "tag": "1.0",
            "command": "/bin/sh", "args": ["-c", script],
        });
        TestTask::new(
            &self.sim.allocs_dir(),
            name,
            cty::encode(&self.spec, &cfg).unwrap(),
        )
    }

    /// StartTask until the task's first output line: the task really runs.
    async fn start(&self, t: &TestTask) -> Duration {
        let t0 = Instant::now();
        self.plugin
            .driver()
            .start_task(StartTaskRequest {
                task: Some(t.config.clone()),
            })
            .await
            .expect("StartTask");
        assert!(
            t.logs.wait_for_stdout("up", Duration::from_secs(30)).await,
            "task never ran"
        );
        t0.elapsed()
    }

    async fn stop_and_destroy(&self, t: &TestTask) {
        self.plugin
            .driver()
            .stop_task(StopTaskRequest {
                task_id: t.id(),
                timeout: Some(prost_types::Duration {
                    seconds: 1,
                    nanos: 0,
                }),
                signal: "SIGTERM".into(),
            })
            .await
            .expect("StopTask");
        self.plugin
            .driver()
            .wait_task(WaitTaskRequest { task_id: t.id() })
            .await
            .expect("WaitTask");
        self.plugin
            .driver()
            .destroy_task(DestroyTaskRequest {
                task_id: t.id(),
                force: true,
            })
            .await
            .expect("DestroyTask");
    }

    /// Opening TaskStats until its first sample (one `rctl -u` on the host), `n` times.
    async fn stats_sample_latency(&self, task_id: &str, n: usize) -> Vec<Duration> {
        let mut times = Vec::with_capacity(n);
        for _ in 0..n {
            let t0 = Instant::now();
            let mut stream = self
                .plugin
                .driver()
                .task_stats(nomad_plugin_proto::drivers::TaskStatsRequest {
                    task_id: task_id.into(),
                    collection_interval: Some(prost_types::Duration {
                        seconds: 1,
                        nanos: 0,
                    }),
                })
                .await
                .expect("TaskStats")
                .into_inner();
            stream.message().await.expect("stats").expect("a sample");
            times.push(t0.elapsed());
        }
        times.sort();
        times
    }

    async fn inspect_latency(&self, task_id: &str, n: usize) -> Vec<Duration> {
        let mut driver = self.plugin.driver();
        let mut times = Vec::with_capacity(n);
        for _ in 0..n {
            let t0 = Instant::now();
            driver
                .inspect_task(InspectTaskRequest {
                    task_id: task_id.into(),
                })
                .await
                .expect("InspectTask");
            times.push(t0.elapsed());
        }
        times.sort();
        times
    }
}

const LONG_RUNNING: &str = "echo up; while :; do sleep 1; done";

#[tokio::main]
async fn main() {
    println!("| figure | value | target | |");
    println!("|---|---|---|---|");
    let hs = handshake_latency(50);
    let med = percentile(&hs, 0.5);
    row(
        "handshake: exec → handshake line, median (p99) of 50",
        format!("{} ({})", ms(med), ms(percentile(&hs, 0.99))),
        "median ≤ 15 ms",
        verdict(med <= Duration::from_millis(15)),
    );

    let bench = Bench::new().await;
    // Warm the image cache so starts measure the cached path.
    let warm = bench.task("warm", "echo up");
    bench.start(&warm).await;
    bench.stop_and_destroy(&warm).await;

    // One full lifecycle (cached image, inherit network): base-tool calls.
    let before = bench.sim.calls().len();
    let one = bench.task("counted", LONG_RUNNING);
    bench.start(&one).await;
    bench.stop_and_destroy(&one).await;
    let calls = bench.sim.calls()[before..].to_vec();
    let summary: Vec<String> = calls
        .iter()
        .map(|c| c.argv.iter().take(2).cloned().collect::<Vec<_>>().join(" "))
        .collect();
    row(
        "base-tool calls per lifecycle (cached image, inherit): start, stop, destroy",
        format!("{} ({})", calls.len(), summary.join(", ")),
        &format!("≤ 30 and < ½ of pot's {POT_TOOL_CALLS_INHERIT}"),
        verdict(calls.len() <= 30 && calls.len() * 2 < POT_TOOL_CALLS_INHERIT),
    );

    // StartTask latency, one at a time.
    let mut alone = Vec::new();
    for i in 0..20 {
        let t = bench.task(&format!("seq{i}"), LONG_RUNNING);
        alone.push(bench.start(&t).await);
        bench.stop_and_destroy(&t).await;
    }
    alone.sort();
    let alone_med = percentile(&alone, 0.5);
    row(
        "StartTask → task running, cached image, sequential: median (p99) of 20",
        format!("{} ({})", ms(alone_med), ms(percentile(&alone, 0.99))),
        "(simulated tools; see note)",
        "",
    );

    // 50 concurrent starts.
    let tasks: Vec<TestTask> = (0..50)
        .map(|i| bench.task(&format!("par{i}"), LONG_RUNNING))
        .collect();
    let mut concurrent: Vec<Duration> =
        futures::future::join_all(tasks.iter().map(|t| bench.start(t))).await;
    concurrent.sort();
    let p99 = percentile(&concurrent, 0.99);
    row(
        "StartTask → running, 50 concurrent: median (p99)",
        format!("{} ({})", ms(percentile(&concurrent, 0.5)), ms(p99)),
        "p99 ≤ 5× sequential median",
        verdict(p99 <= alone_med * 5),
    );
    for t in &tasks {
        bench.stop_and_destroy(t).await;
    }

    // Unary RPC latency and TaskStats sample cost with 0, 10 and 100 running tasks. The probe
    // is a finished task for 0, then one of the running ones.
    let probe = bench.task("probe", "echo up");
    bench.start(&probe).await;
    bench
        .plugin
        .driver()
        .wait_task(WaitTaskRequest {
            task_id: probe.id(),
        })
        .await
        .expect("WaitTask");
    let mut running: Vec<TestTask> = Vec::new();
    for level in [0usize, 10, 100] {
        while running.len() < level {
            let t = bench.task(&format!("run{}", running.len()), LONG_RUNNING);
            bench.start(&t).await;
            running.push(t);
        }
        let target = running
            .first()
            .map(TestTask::id)
            .unwrap_or_else(|| probe.id());
        let lat = bench.inspect_latency(&target, 1000).await;
        row(
            &format!("InspectTask with {level} running tasks: median (p99) of 1000"),
            format!(
                "{} ({})",
                ms(percentile(&lat, 0.5)),
                ms(percentile(&lat, 0.99))
            ),
            "≈ 0.1 ms (tonic loopback anchor)",
            "",
        );
        let stats = bench.stats_sample_latency(&target, 20).await;
        row(
            &format!(
                "TaskStats sample with {level} running tasks: median of 20 (1 rctl call each)"
            ),
            ms(percentile(&stats, 0.5)),
            "≤ 1 tool call per task per interval",
            "met",
        );
    }
    for t in running.iter().chain([&probe]) {
        bench.stop_and_destroy(t).await;
    }
    let (clean, leftovers) = bench.sim.check();
    assert!(clean, "leftovers after the bench:\n{leftovers}");
    bench.plugin.shutdown().await;
}
