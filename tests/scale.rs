//! Scale and soak, against the real plugin on a simulated host: many tasks through a plugin
//! crash, and a seeded random mix of lifecycles and injected faults (tool failures, slow and
//! hung tools, plugin SIGKILL, supervisor SIGKILL).
//!
//! The soak runs `SOAK_LIFECYCLES` (default [`SOAK_DEFAULT_LIFECYCLES`]) task lifecycles from seed
//! `SOAK_SEED` (default [`SOAK_DEFAULT_SEED`]), stopping early after `SOAK_SECS` seconds (default
//! [`SOAK_DEFAULT_SECS`]); e.g. `SOAK_LIFECYCLES=30 cargo test --test scale soak -- --nocapture`
//! for a quick run, or `SOAK_LIFECYCLES=5000 SOAK_SECS=3600 SOAK_SEED=7` for a long one.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::env::*;
use common::{TestTask, within};
use nomad_pot_driver::engine::PotName;
use nomad_pot_driver::proto::drivers::{
    DestroyTaskRequest, InspectTaskRequest, StartTaskRequest, StopTaskRequest, TaskHandle,
    WaitTaskRequest, WaitTaskResponse,
};

/// Exits with `code` when its gate opens or on SIGTERM.
fn coded_task(env: &Env, code: i32) -> serde_json::Value {
    env.sh_config(&format!(
            "trap 'exit {code}' TERM; echo ready; while [ ! -e /local/go ]; do sleep 0.1; done; exit {code}"
        ))
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_running_tasks_survive_a_plugin_sigkill() {
    const TASKS: i32 = 20;
    let mut env = Env::new().await;
    let mut tasks = Vec::new();
    for i in 0..TASKS {
        let t = env.task(&format!("many{i}"), &coded_task(&env, 10 + i));
        let handle = env.start(&t).await.handle.expect("handle");
        tasks.push((t, handle, 10 + i));
    }
    for (t, _, _) in &tasks {
        env.wait_ready(t).await;
    }
    env.crash_and_relaunch().await;
    let mut recovered = 0;
    for (t, handle, _) in &tasks {
        match env.recover(handle).await {
            Ok(()) => recovered += 1,
            Err(e) => eprintln!("{}: RecoverTask: {e:?}", t.id()),
        }
    }
    assert_eq!(recovered, TASKS, "every running task is recovered");
    for (t, _, _) in &tasks {
        open_gate(t);
    }
    for (t, _, code) in &tasks {
        let r = env.wait(&t.id(), 30.0).await;
        assert_eq!(r.err, "", "{}", t.id());
        assert_eq!(r.result.expect("result").exit_code, *code, "{}", t.id());
        env.destroy(&t.id()).await;
    }
    env.finish().await;
}

// ---------------------------------------------------------------------------------------------
// The soak
// ---------------------------------------------------------------------------------------------

/// About two minutes on a 2-core machine; the time cap bounds slower ones.
const SOAK_DEFAULT_LIFECYCLES: u64 = 200;
const SOAK_DEFAULT_SEED: u64 = 0x5eed_0005;
const SOAK_DEFAULT_SECS: u64 = 240;
/// Tasks alive at once.
const SOAK_MAX_LIVE: usize = 4;

/// splitmix64: deterministic for a seed, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Start steps with a cached image: (tool, word, nth).
const START_STEPS: &[(&str, &str, u32)] = &[
    ("zfs", "filesystem,snapshot", 1),
    ("zfs", "create", 1),
    ("zfs", "clone", 1),
    ("mount", "nullfs", 1),
    ("mount", "nullfs", 3),
    ("jail", "-c", 1),
];
/// Steps of DestroyTask after the task ended (after a StopTask by the same plugin, DestroyTask
/// does not repeat its `jail -R`, so that is no step of its own); `None` for every matching
/// call: teardown unmounts everything in one `umount` and, when that fails, target by target.
const DESTROY_STEPS: &[(&str, &str, Option<u32>)] =
    &[("umount", "-f", None), ("zfs", "destroy", Some(1))];

/// What WaitTask must report for a task.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    Code(i32),
    /// Its supervisor was killed: the status is unknown and must be reported as such.
    Unknown,
}

struct Live {
    task: TestTask,
    handle: TaskHandle,
    expect: Expect,
}

struct Soak {
    env: Env,
    rng: Rng,
    live: BTreeMap<u64, Live>,
    next_id: u64,
    passed: u64,
    failed: Vec<String>,
    /// How often each kind of event happened, for the summary.
    events: BTreeMap<&'static str, u64>,
}

type Step<T> = Result<T, String>;

impl Soak {
    fn count(&mut self, event: &'static str) {
        *self.events.entry(event).or_default() += 1;
    }

    /// A fault rule for the `nth` call with `word` (every one: `None`).
    fn fault(&self, tool: &str, word: &str, nth: Option<u32>, action: &[&str]) {
        let nth = nth.map(|n| n.to_string());
        let mut args = vec![tool, "--word", word];
        if let Some(nth) = &nth {
            args.extend(["--nth", nth]);
        }
        args.extend_from_slice(action);
        self.env.sim.fault(&args);
    }

    /// Leftovers of one pot, from `freebsd-sim check`.
    fn debris_of(&self, pot: &PotName) -> Vec<String> {
        let (_, report) = self.env.sim.check();
        report
            .lines()
            .filter(|l| l.contains(pot.as_str()))
            .map(str::to_string)
            .collect()
    }

    async fn start(&self, t: &TestTask) -> Step<TaskHandle> {
        let req = StartTaskRequest {
            task: Some(t.config.clone()),
        };
        let r = tokio::time::timeout(
            Duration::from_secs(60),
            self.env.plugin.driver().start_task(req),
        )
        .await
        .map_err(|_| "StartTask stuck for 60 s".to_string())?
        .map_err(|e| format!("StartTask: {}", e.message()))?;
        r.into_inner()
            .handle
            .ok_or_else(|| "StartTask without a handle".to_string())
    }

    async fn wait(&self, t: &TestTask) -> Step<WaitTaskResponse> {
        let req = WaitTaskRequest { task_id: t.id() };
        tokio::time::timeout(
            Duration::from_secs(30),
            self.env.plugin.driver().wait_task(req),
        )
        .await
        .map_err(|_| "WaitTask stuck for 30 s".to_string())?
        .map(|r| r.into_inner())
        .map_err(|e| format!("WaitTask: {}", e.message()))
    }

    async fn stop(&self, t: &TestTask) -> Step<()> {
        let req = StopTaskRequest {
            task_id: t.id(),
            timeout: Some(dur(5)),
            signal: "SIGTERM".into(),
        };
        tokio::time::timeout(
            Duration::from_secs(30),
            self.env.plugin.driver().stop_task(req),
        )
        .await
        .map_err(|_| "StopTask stuck for 30 s".to_string())?
        .map(drop)
        .map_err(|e| format!("StopTask: {}", e.message()))
    }

    async fn destroy(&self, t: &TestTask) -> Step<()> {
        let req = DestroyTaskRequest {
            task_id: t.id(),
            force: true,
        };
        tokio::time::timeout(
            Duration::from_secs(30),
            self.env.plugin.driver().destroy_task(req),
        )
        .await
        .map_err(|_| "DestroyTask stuck for 30 s".to_string())?
        .map(drop)
        .map_err(|e| format!("DestroyTask: {}", e.message()))
    }

    async fn ready(&self, t: &TestTask) -> Step<()> {
        if t.logs
            .wait_for_stdout("ready", Duration::from_secs(15))
            .await
        {
            Ok(())
        } else {
            Err(format!("never ready (stderr {:?})", t.logs.stderr()))
        }
    }

    fn record(&mut self, what: &str, result: Step<()>) {
        match result {
            Ok(()) => self.passed += 1,
            Err(e) => {
                eprintln!("soak: FAILED {what}: {e}");
                self.failed.push(format!("{what}: {e}"));
            }
        }
    }

    /// A new task, sometimes with a start step failing first (then started again).
    async fn op_start(&mut self) {
        let id = self.next_id;
        self.next_id += 1;
        let code = 1 + self.rng.below(100) as i32;
        let t = self
            .env
            .task(&format!("soak{id}"), &coded_task(&self.env, code));
        let pot = pot_of(&t);
        if self.rng.below(3) == 0 {
            self.count("start step failed");
            let &(tool, word, nth) = self.rng.pick(START_STEPS);
            self.fault(tool, word, Some(nth), &["--fail", "1"]);
            let failed = self.start(&t).await;
            self.env.sim.clear_faults();
            let what = format!("task {id}: start failing at {tool} {word} #{nth}");
            let result = match failed {
                Ok(_) => Err("StartTask succeeded".to_string()),
                Err(e) if !e.contains(tool) => Err(format!("error does not name {tool}: {e}")),
                Err(_) => match self.debris_of(&pot) {
                    d if d.is_empty() => Ok(()),
                    d => Err(format!("left {d:?}")),
                },
            };
            self.record(&what, result);
        }
        let slow = (self.rng.below(4) == 0).then(|| {
            let &(tool, word, nth) = self.rng.pick(START_STEPS);
            let secs = format!("{:.1}", 0.2 + self.rng.below(9) as f64 / 10.0);
            (tool, word, nth, secs)
        });
        if let Some((tool, word, nth, secs)) = &slow {
            self.count("start step slow");
            self.fault(tool, word, Some(*nth), &["--hang", secs]);
        }
        let (started, others) = tokio::join!(
            async {
                let handle = self.start(&t).await?;
                self.ready(&t).await?;
                Ok(handle)
            },
            self.inspect_live()
        );
        if let Some((tool, word, nth, secs)) = slow {
            self.env.sim.clear_faults();
            self.record(
                &format!("task {id}: other tasks answer while {tool} {word} #{nth} hangs {secs} s"),
                others,
            );
        }
        match started {
            Ok(handle) => {
                self.live.insert(
                    id,
                    Live {
                        task: t,
                        handle,
                        expect: Expect::Code(code),
                    },
                );
            }
            Err(e) => {
                let _ = self.destroy(&t).await;
                self.record(&format!("task {id}: start"), Err(e));
            }
        }
    }

    /// InspectTask of every live task, each answering within 5 s: no task is stuck behind
    /// another task's tool call.
    async fn inspect_live(&self) -> Step<()> {
        for live in self.live.values() {
            let req = InspectTaskRequest {
                task_id: live.task.id(),
            };
            tokio::time::timeout(
                Duration::from_secs(5),
                self.env.plugin.driver().inspect_task(req),
            )
            .await
            .map_err(|_| format!("InspectTask of {} stuck for 5 s", live.task.id()))?
            .map_err(|e| format!("InspectTask of {}: {}", live.task.id(), e.message()))?;
        }
        Ok(())
    }

    /// Ends a task (its gate, or StopTask), checks its exit, destroys it, maybe through a
    /// failing destroy step and Nomad's retry, and checks that nothing of it is left.
    async fn op_finish(&mut self, id: u64) {
        let Some(live) = self.live.remove(&id) else {
            return;
        };
        let t = &live.task;
        let by_stop = self.rng.below(2) == 0;
        let destroy_fault = (self.rng.below(3) == 0).then(|| *self.rng.pick(DESTROY_STEPS));
        // A destroy step that is slow rather than failing: DestroyTask still succeeds at once.
        let destroy_slow = self.rng.below(2) == 0;
        let what = format!(
            "task {id}: {} (expect {:?}, destroy fault {destroy_fault:?}{})",
            if by_stop { "StopTask" } else { "exit" },
            live.expect,
            match (destroy_fault, destroy_slow) {
                (None, _) => "",
                (Some(_), true) => " slow",
                (Some(_), false) => " failing",
            }
        );
        let result = async {
            if by_stop {
                self.stop(t).await?;
            } else {
                open_gate(t);
            }
            let r = self.wait(t).await?;
            let got = r.result.unwrap_or_default();
            match live.expect {
                Expect::Code(c) if got.exit_code == c && r.err.is_empty() => {}
                Expect::Unknown if r.err.contains("exit status unknown") => {}
                e => return Err(format!("expected {e:?}, WaitTask said {got:?} {:?}", r.err)),
            }
            match destroy_fault {
                Some((tool, word, nth)) if destroy_slow => {
                    *self.events.entry("destroy step slow").or_default() += 1;
                    self.fault(tool, word, nth, &["--hang", "0.5"]);
                    let slow = self.destroy(t).await;
                    self.env.sim.clear_faults();
                    slow.map_err(|e| format!("DestroyTask with {tool} {word} slow: {e}"))?;
                }
                Some((tool, word, nth)) => {
                    *self.events.entry("destroy step failed").or_default() += 1;
                    self.fault(tool, word, nth, &["--fail", "1"]);
                    let first = self.destroy(t).await;
                    self.env.sim.clear_faults();
                    if first.is_ok() {
                        return Err(format!("DestroyTask with {tool} {word} failing succeeded"));
                    }
                    // Nomad retries a failed DestroyTask.
                    self.destroy(t).await?;
                }
                None => self.destroy(t).await?,
            }
            match self.debris_of(&pot_of(t)) {
                d if d.is_empty() => Ok(()),
                d => Err(format!("left {d:?}")),
            }
        }
        .await;
        if result.is_err() {
            let _ = self.destroy(t).await;
        }
        self.record(&what, result);
    }

    /// SIGKILLs the plugin, relaunches it and recovers every live task, as Nomad does. With
    /// `start`, the kill happens while a step of that task's StartTask hangs, and Nomad then
    /// retries the StartTask.
    async fn op_crash(&mut self, during_start: bool) {
        let mut pending = None;
        self.count(if during_start {
            "plugin killed in a start step"
        } else {
            "plugin killed"
        });
        if during_start {
            let id = self.next_id;
            self.next_id += 1;
            let code = 1 + self.rng.below(100) as i32;
            let t = self
                .env
                .task(&format!("soak{id}"), &coded_task(&self.env, code));
            let &(tool, word, nth) = self.rng.pick(START_STEPS);
            let completes = self.rng.below(2) == 0;
            let mut action = vec!["--hang"];
            if completes {
                action.push("1");
            }
            self.fault(tool, word, Some(nth), &action);
            let mut driver = self.env.plugin.driver();
            let req = StartTaskRequest {
                task: Some(t.config.clone()),
            };
            let call = tokio::spawn(async move { driver.start_task(req).await });
            let pid = self
                .env
                .sim
                .wait_for_hang(tool, word, Duration::from_secs(30));
            self.env.plugin.kill();
            let _ = call.await;
            within(30.0, "the hung tool call to end", async {
                while std::path::Path::new(&format!("/proc/{pid}")).exists() && alive(pid) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await;
            self.env.sim.clear_faults();
            pending = Some((
                id,
                t,
                code,
                format!("{tool} {word} #{nth} completes={completes}"),
            ));
        }
        self.env.crash_and_relaunch().await;
        let ids: Vec<u64> = self.live.keys().copied().collect();
        for id in ids {
            let recovered = self.env.recover(&self.live[&id].handle).await;
            if let Err(e) = recovered {
                let live = self.live.remove(&id).expect("live task");
                let _ = self.destroy(&live.task).await;
                self.record(
                    &format!("task {id}: recovery"),
                    Err(e.message().to_string()),
                );
            }
        }
        if let Some((id, t, code, step)) = pending {
            let started = async {
                let handle = self.start(&t).await?;
                self.ready(&t).await?;
                Ok(handle)
            }
            .await;
            match started {
                Ok(handle) => {
                    self.live.insert(
                        id,
                        Live {
                            task: t,
                            handle,
                            expect: Expect::Code(code),
                        },
                    );
                }
                Err(e) => {
                    let _ = self.destroy(&t).await;
                    self.record(
                        &format!("task {id}: StartTask retried after {step}"),
                        Err(e),
                    );
                }
            }
        }
    }

    /// SIGKILLs the supervisor of a live task: its exit status is now unknown.
    fn op_kill_supervisor(&mut self, id: u64) {
        let Some(live) = self.live.get_mut(&id) else {
            return;
        };
        let path = self.env.state_dir(&live.task).join("pids.json");
        let pids: serde_json::Value = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        if let Some(shim) = pids["shim"].as_i64() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(shim as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            live.expect = Expect::Unknown;
            *self.events.entry("supervisor killed").or_default() += 1;
        }
    }
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, r)| !r.trim_start().starts_with('Z'))
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn soak() {
    let lifecycles = env_u64("SOAK_LIFECYCLES", SOAK_DEFAULT_LIFECYCLES);
    let seed = env_u64("SOAK_SEED", SOAK_DEFAULT_SEED);
    let time_cap = Duration::from_secs(env_u64("SOAK_SECS", SOAK_DEFAULT_SECS));
    let began = Instant::now();
    let mut soak = Soak {
        env: Env::new().await,
        rng: Rng(seed),
        live: BTreeMap::new(),
        next_id: 0,
        passed: 0,
        failed: Vec::new(),
        events: BTreeMap::new(),
    };
    // Removed jails linger as on FreeBSD, so teardown and recovery meet dying jails.
    soak.env.sim.set_dying_time(0.5);
    while soak.next_id < lifecycles && began.elapsed() < time_cap {
        let live: Vec<u64> = soak.live.keys().copied().collect();
        let roll = soak.rng.below(100);
        match roll {
            _ if live.is_empty() => soak.op_start().await,
            0..=44 if live.len() < SOAK_MAX_LIVE => soak.op_start().await,
            0..=79 => {
                let id = *soak.rng.pick(&live);
                soak.op_finish(id).await;
            }
            80..=87 => soak.op_crash(false).await,
            88..=93 => soak.op_crash(true).await,
            _ => {
                let id = *soak.rng.pick(&live);
                soak.op_kill_supervisor(id);
            }
        }
    }
    let ids: Vec<u64> = soak.live.keys().copied().collect();
    for id in ids {
        soak.op_finish(id).await;
    }
    let (clean, leftovers) = soak.env.sim.check();
    if !clean {
        soak.failed
            .push(format!("host not clean at the end:\n{leftovers}"));
    }
    println!(
        "soak: seed {seed:#x}, {} of {lifecycles} lifecycles in {:.1} s{}",
        soak.next_id,
        began.elapsed().as_secs_f64(),
        if soak.next_id < lifecycles {
            " (stopped at the time cap)"
        } else {
            ""
        }
    );
    for (event, n) in &soak.events {
        println!("soak: {event}: {n}");
    }
    println!("{} passed, {} failed", soak.passed, soak.failed.len());
    assert!(
        soak.failed.is_empty(),
        "soak failures:\n{}",
        soak.failed.join("\n")
    );
    soak.env.finish().await;
}
