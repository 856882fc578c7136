//! Operating pots without Nomad: prepare, start, stop, destroy, exec and run a job's task.
//!
//! A task is built the way a Nomad client hands it to the plugin ([`task`]) and turned into the
//! engine's `TaskSpec` by the driver's own `task_spec`, so potctl runs exactly what the plugin
//! would. A foreground run is [`mod@run`]; the engine's events reach the operator through
//! [`reporter`].

mod reporter;
mod run;
mod task;

pub use reporter::Reporter;
pub use run::run;
pub use task::TaskArgs;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use nix::sys::signal::Signal;
use nomad_pot_driver::driver::{self, TaskConfig as DecodedConfig};
use nomad_pot_driver::engine::{Engine, EngineError, ExitInfo, ImageRef, PotName};
use nomad_pot_driver::jobspec;
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use crate::ports;
use task::prepare_task;

/// Where potctl keeps the alloc dirs of the tasks it starts, under the driver's `state_dir`.
const POTCTL_DIR: &str = "potctl";

#[derive(Args)]
pub struct StopArgs {
    /// The pot to stop.
    pub pot: String,
    /// The signal sent to the task after the pot's exec_stop (default: the job's `kill_signal`
    /// for a pot `potctl start` made, else SIGTERM).
    #[arg(long)]
    pub signal: Option<String>,
    /// How long the task may take to exit before it is killed, in seconds (default: the job's
    /// `kill_timeout` for a pot `potctl start` made, else 5).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
}

/// How `potctl start` records its job's stop settings for a later `potctl stop`.
const STOP_FILE: &str = "stop.json";

/// A task's stop settings as `potctl start` records them.
#[derive(serde::Serialize, serde::Deserialize)]
struct StopSettings {
    signal: String,
    timeout_ms: u64,
}

#[derive(Args)]
pub struct ExecArgs {
    /// The pot whose jail runs the command.
    pub pot: String,
    /// The user to run it as (default: root).
    #[arg(long, short = 'u')]
    pub user: Option<String>,
    /// The command and its arguments.
    #[arg(required = true, last = true)]
    pub command: Vec<String>,
}

/// `potctl prepare`: imports the task's image, the first step of every start.
pub async fn prepare(engine: &Engine, args: &TaskArgs, json: bool) -> Result<ExitCode> {
    let hcl = std::fs::read_to_string(&args.job)
        .with_context(|| format!("reading {}", args.job.display()))?;
    let mut config = jobspec::task_config(&hcl, args.task.as_deref())
        .with_context(|| format!("reading {}", args.job.display()))?;
    if let Some(image) = &args.image {
        config["image"] = image.clone().into();
    }
    let msgpack = nomad_pot_client::cty::encode(&driver::task_schema(), &config)
        .map_err(|e| anyhow!("{}: {e}", args.job.display()))?;
    let decoded = DecodedConfig::decode(&msgpack)?;
    let image = ImageRef::parse(&decoded.image, &decoded.pot, &decoded.tag)?;
    let local = engine.prepare_image(&image).await?;
    if json {
        println!(
            "{}",
            json!({"image": local, "source": image.base_url(), "ready": true})
        );
    } else {
        println!("image {local} from {} is imported", image.base_url());
    }
    Ok(ExitCode::SUCCESS)
}

/// How long `potctl start` watches a new task before calling it started: a task that exits
/// sooner is reported with its exit code and the end of its stderr.
const EARLY_EXIT_WINDOW: Duration = Duration::from_secs(1);
/// How many of its last stderr lines an early exit shows.
const EARLY_EXIT_LINES: usize = 10;

/// `potctl start`: starts the task in the background; its logs go to files.
/// `cpu_hard_limit` is the agent's default for the task, as in the plugin.
pub async fn start(
    engine: &Engine,
    args: &TaskArgs,
    cpu_hard_limit: bool,
    json: bool,
) -> Result<ExitCode> {
    let task = prepare_task(engine, args, false).await?;
    note(&task.notes, json);
    let spec = driver::task_spec(&task.config, cpu_hard_limit)?;
    let instance = match engine.start(spec).await {
        Ok(i) => i,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&task.dir);
            return Err(e.into());
        }
    };
    let stop = StopSettings {
        signal: task.kill_signal.as_str().to_string(),
        timeout_ms: u64::try_from(task.kill_timeout.as_millis()).unwrap_or(u64::MAX),
    };
    let stop_file = task.dir.join(STOP_FILE);
    std::fs::write(&stop_file, serde_json::to_vec(&stop)?)
        .with_context(|| format!("writing {}", stop_file.display()))?;
    let (stdout, stderr) = (&task.config.stdout_path, &task.config.stderr_path);
    let early = tokio::time::timeout(EARLY_EXIT_WINDOW, instance.wait())
        .await
        .ok();
    let ports: Vec<serde_json::Value> = task.ports.iter().map(ports::to_json).collect();
    if let Some(exit) = early {
        let tail = last_lines(Path::new(stderr), EARLY_EXIT_LINES);
        if json {
            println!(
                "{}",
                json!({"pot": task.pot.as_str(), "pid": instance.pid, "ports": ports,
                       "stdout": stdout, "stderr": stderr, "exit": exit_json(Some(&exit)),
                       "stderr_tail": tail})
            );
        } else {
            println!(
                "pot {}: the task did not stay up{}",
                task.pot,
                describe_exit(Some(&exit))
            );
            if tail.is_empty() {
                println!("its stderr ({stderr}) is empty");
            } else {
                println!("last lines of its stderr ({stderr}):");
                for line in &tail {
                    println!("  {line}");
                }
            }
            println!("stdout: {stdout}");
            println!("`potctl destroy {}` removes the pot", task.pot);
        }
        return Ok(exit_code(&exit));
    }
    if json {
        println!(
            "{}",
            json!({"pot": task.pot.as_str(), "pid": instance.pid, "ports": ports,
                   "stdout": stdout, "stderr": stderr})
        );
    } else {
        println!("started pot {} (pid {})", task.pot, instance.pid);
        for p in &task.ports {
            println!("{}", ports::describe(p, task.address));
        }
        println!("stdout: {stdout}");
        println!("stderr: {stderr}");
    }
    Ok(ExitCode::SUCCESS)
}

/// What of the job potctl does not apply, on stderr.
fn note(notes: &[String], json: bool) {
    for n in notes {
        if json {
            eprintln!("{}", json!({ "note": n }));
        } else {
            eprintln!("note: {n}");
        }
    }
}

/// The last `n` lines of a log file (none when it cannot be read).
fn last_lines(path: &Path, n: usize) -> Vec<String> {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| l.to_string())
        .collect()
}

/// The pot `name`, if this driver created it: potctl never acts on other pots.
async fn owned(engine: &Engine, name: &str) -> Result<PotName> {
    let pot = PotName::new(name)?;
    if engine.owner(&pot).await?.is_none() {
        bail!("pot {pot} was not created by this driver (or does not exist): not touching it");
    }
    Ok(pot)
}

/// Attaches to the pot's task if it still has one, so stop and destroy can signal it.
async fn attach(engine: &Engine, pot: &PotName) -> Result<()> {
    match engine.recover(pot).await {
        Ok(_) | Err(EngineError::NotFound { .. } | EngineError::State { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// `potctl stop`: exec_stop, the signal, and after the timeout a kill; the pot stays.
pub async fn stop(engine: &Engine, args: &StopArgs, json: bool) -> Result<ExitCode> {
    let pot = owned(engine, &args.pot).await?;
    let stop_file = potctl_dir(engine, &pot).join(STOP_FILE);
    let recorded: Option<StopSettings> = match std::fs::read(&stop_file) {
        Ok(bytes) => Some(
            serde_json::from_slice(&bytes)
                .with_context(|| format!("reading {}", stop_file.display()))?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", stop_file.display())),
    };
    let signal = match (&args.signal, &recorded) {
        (Some(s), _) => parse_signal(s)?,
        (None, Some(r)) => parse_signal(&r.signal)?,
        (None, None) => Signal::SIGTERM,
    };
    let timeout = match (args.timeout, &recorded) {
        (Some(secs), _) => Duration::from_secs(secs),
        (None, Some(r)) => Duration::from_millis(r.timeout_ms),
        (None, None) => jobspec::DEFAULT_KILL_TIMEOUT,
    };
    attach(engine, &pot).await?;
    engine.stop(&pot, signal, timeout).await?;
    let exit = engine.instance(&pot).and_then(|i| i.exit());
    if json {
        println!(
            "{}",
            json!({"pot": pot.as_str(), "stopped": true, "exit": exit_json(exit.as_ref())})
        );
    } else {
        println!("stopped pot {pot}{}", describe_exit(exit.as_ref()));
    }
    Ok(ExitCode::SUCCESS)
}

/// `potctl destroy`: kills the task if it runs and removes everything of the pot.
pub async fn destroy(engine: &Engine, name: &str, json: bool) -> Result<ExitCode> {
    let pot = owned(engine, name).await?;
    attach(engine, &pot).await?;
    engine.destroy(&pot).await?;
    remove_potctl_dir(engine, &pot)?;
    if json {
        println!("{}", json!({"pot": pot.as_str(), "destroyed": true}));
    } else {
        println!("destroyed pot {pot}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Where potctl keeps a pot's alloc dir, logs and stop settings.
fn potctl_dir(engine: &Engine, pot: &PotName) -> PathBuf {
    engine
        .config()
        .state_dir
        .join(POTCTL_DIR)
        .join(pot.as_str())
}

fn remove_potctl_dir(engine: &Engine, pot: &PotName) -> Result<()> {
    let dir = potctl_dir(engine, pot);
    match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", dir.display()))
        }
        _ => Ok(()),
    }
}

/// `potctl exec`: runs a command in the pot's jail and exits with its code. Its output is
/// streamed as it comes (a one-shot exec keeps only the tail, as Nomad's checks do); with
/// `--json` it is gathered into the one JSON object.
pub async fn exec(engine: &Engine, args: &ExecArgs, json: bool) -> Result<ExitCode> {
    use nomad_pot_driver::engine::ExecOutputEvent;
    let pot = PotName::new(&args.pot)?;
    let session = engine
        .exec_session(
            &pot,
            args.user.as_deref(),
            &args.command,
            &Default::default(),
            None,
        )
        .await?;
    // No input: the command's stdin is closed.
    drop(session.input);
    let mut output = session.output;
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    while let Some(event) = output.recv().await {
        match (event, json) {
            (ExecOutputEvent::Stdout(d), true) => stdout.extend_from_slice(&d),
            (ExecOutputEvent::Stderr(d), true) => stderr.extend_from_slice(&d),
            (ExecOutputEvent::Stdout(d), false) => std::io::stdout().write_all(&d)?,
            (ExecOutputEvent::Stderr(d), false) => std::io::stderr().write_all(&d)?,
            (ExecOutputEvent::StdoutClosed | ExecOutputEvent::StderrClosed, _) => {}
        }
    }
    let exit = session
        .exit
        .await
        .unwrap_or_else(|_| ExitInfo::unknown("the command's waiter vanished".to_string()));
    if json {
        println!(
            "{}",
            json!({
                "pot": pot.as_str(),
                "stdout": String::from_utf8_lossy(&stdout),
                "stderr": String::from_utf8_lossy(&stderr),
                "exit": exit_json(Some(&exit)),
            })
        );
    }
    Ok(exit_code(&exit))
}

fn parse_signal(name: &str) -> Result<Signal> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&full).map_err(|_| anyhow!("unknown signal {name:?}"))
}

/// The exit code potctl passes on: the task's, or 128 + the signal that killed it.
fn exit_code(exit: &ExitInfo) -> ExitCode {
    if exit.signal > 0 {
        ExitCode::from(128u8.saturating_add(exit.signal as u8))
    } else {
        ExitCode::from(u8::try_from(exit.exit_code).unwrap_or(1))
    }
}

fn exit_json(exit: Option<&ExitInfo>) -> serde_json::Value {
    match exit {
        Some(e) => json!({"exit_code": e.exit_code, "signal": e.signal, "error": e.error}),
        None => serde_json::Value::Null,
    }
}

fn describe_exit(exit: Option<&ExitInfo>) -> String {
    match exit {
        Some(e) if e.signal > 0 => format!(": the task was killed by signal {}", e.signal),
        Some(e) => format!(": the task exited with {}", e.exit_code),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_and_exit_codes() {
        assert_eq!(parse_signal("term").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("SIGINT").unwrap(), Signal::SIGINT);
        assert!(parse_signal("nope").is_err());
        let exit = |code, signal| ExitInfo {
            exit_code: code,
            signal,
            finished_at_ms: 0,
            error: None,
            memory_limit_hit: None,
        };
        assert_eq!(exit_code(&exit(3, 0)), ExitCode::from(3));
        assert_eq!(exit_code(&exit(0, 9)), ExitCode::from(137));
    }
}
