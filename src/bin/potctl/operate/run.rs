//! `potctl run`: a job's task in the foreground, its log FIFOs copied to potctl's stdout and
//! stderr as they come, stopped on SIGINT or SIGTERM, and destroyed whatever happened.

use anyhow::{Context, Result};
use nix::sys::signal::Signal;
use nomad_pot_driver::driver;
use nomad_pot_driver::engine::{Engine, ExitInfo};
use serde_json::json;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use super::task::{TaskArgs, prepare_task};
use super::{Reporter, attach, exit_code, exit_json, note, remove_potctl_dir};
use crate::ports;

/// How long the log readers may take to drain once the task has exited.
const LOG_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// `potctl run`: the task in the foreground, its logs streamed, its exit code returned; on
/// SIGINT or SIGTERM it is stopped, and in every case its pot is destroyed.
pub async fn run(
    engine: &Engine,
    reporter: &Reporter,
    args: &TaskArgs,
    cpu_hard_limit: bool,
    json: bool,
) -> Result<ExitCode> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("handling SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("handling SIGTERM")?;
    let task = prepare_task(engine, args, true).await?;
    note(&task.notes, json);
    for p in &task.ports {
        reporter.event(&task.pot, &ports::describe(p, task.address));
    }
    let pot = task.pot.clone();
    let result: Result<RunEnd> = async {
        let spec = driver::task_spec(&task.config, cpu_hard_limit)?;
        let stdout = stream(&task.config.stdout_path, std::io::stdout());
        let stderr = stream(&task.config.stderr_path, std::io::stderr());
        let instance = tokio::select! {
            started = engine.start(spec) => {
                match started {
                    Ok(i) => i,
                    Err(e) => {
                        release(&task.config.stdout_path, &task.config.stderr_path);
                        return Err(e.into());
                    }
                }
            }
            _ = interrupt.recv() => return Ok(Interrupted(Signal::SIGINT)),
            _ = terminate.recv() => return Ok(Interrupted(Signal::SIGTERM)),
        };
        let signal = tokio::select! {
            exit = instance.wait() => {
                drain(stdout, stderr).await;
                return Ok(Exited(exit));
            }
            _ = interrupt.recv() => Signal::SIGINT,
            _ = terminate.recv() => Signal::SIGTERM,
        };
        reporter.event(
            &pot,
            &format!(
                "{signal}: stopping the task with {} (kill_timeout {:?})",
                task.kill_signal, task.kill_timeout
            ),
        );
        engine
            .stop(&pot, task.kill_signal, task.kill_timeout)
            .await?;
        drain(stdout, stderr).await;
        Ok(Interrupted(signal))
    }
    .await;
    reporter.finish();
    // Whatever happened, nothing of the run stays behind.
    attach(engine, &pot).await?;
    let destroyed = engine.destroy(&pot).await;
    remove_potctl_dir(engine, &pot)?;
    destroyed?;
    let (code, summary) = match result? {
        Exited(exit) => (exit_code(&exit), exit_json(Some(&exit))),
        Interrupted(signal) => (
            ExitCode::from(128 + signal as u8),
            json!({"interrupted": signal.as_str()}),
        ),
    };
    if json {
        eprintln!("{}", json!({"pot": pot.as_str(), "result": summary}));
    } else {
        eprintln!("==> pot {pot} {}", describe_summary(&summary));
    }
    Ok(code)
}

enum RunEnd {
    Exited(ExitInfo),
    Interrupted(Signal),
}
use RunEnd::{Exited, Interrupted};

/// Copies a log FIFO to `out` until its writers are gone. Opening blocks until the task's
/// supervisor opens the writing end.
fn stream<W: Write + Send + 'static>(fifo: &str, mut out: W) -> std::thread::JoinHandle<()> {
    let path = PathBuf::from(fifo);
    std::thread::spawn(move || {
        let Ok(mut file) = std::fs::File::open(&path) else {
            return;
        };
        let mut buf = [0u8; 8192];
        while let Ok(n) = file.read(&mut buf) {
            if n == 0 || out.write_all(&buf[..n]).is_err() {
                break;
            }
            let _ = out.flush();
        }
    })
}

/// Unblocks readers still waiting for a writer (the task never started).
fn release(stdout: &str, stderr: &str) {
    use std::os::unix::fs::OpenOptionsExt;
    for path in [stdout, stderr] {
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(Path::new(path));
    }
}

async fn drain(stdout: std::thread::JoinHandle<()>, stderr: std::thread::JoinHandle<()>) {
    let joined = tokio::task::spawn_blocking(move || {
        let _ = stdout.join();
        let _ = stderr.join();
    });
    let _ = tokio::time::timeout(LOG_DRAIN_TIMEOUT, joined).await;
}

fn describe_summary(summary: &serde_json::Value) -> String {
    if let Some(signal) = summary["interrupted"].as_str() {
        return format!("interrupted by {signal}: stopped and destroyed");
    }
    match summary["signal"].as_i64() {
        Some(s) if s > 0 => format!("killed by signal {s}; destroyed"),
        _ => format!("exited with code {}; destroyed", summary["exit_code"]),
    }
}
