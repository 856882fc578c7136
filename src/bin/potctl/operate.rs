//! Operating pots without Nomad: prepare, start, stop, destroy, exec and run a job's task.
//!
//! A task is built the way a Nomad client hands it to the plugin (a `TaskConfig` with the
//! msgpack of the job's `config {}`, the task's env, user and resources, an alloc dir, log
//! paths) and turned into the engine's
//! `TaskSpec` by the driver's own `task_spec`, so potctl runs exactly what the plugin would.

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use nix::sys::signal::Signal;
use nomad_pot_driver::driver::{self, TaskConfig as DecodedConfig};
use nomad_pot_driver::engine::{Engine, EngineError, ExitInfo, ImageRef, PotName};
use nomad_pot_driver::jobspec;
use nomad_pot_driver::proto::drivers::{
    AllocatedCpuResources, AllocatedMemoryResources, AllocatedTaskResources, DnsConfig,
    LinuxResources, PortMapping, Resources, TaskConfig,
};
use serde_json::json;
use std::collections::HashMap;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::Mutex;

use crate::ports::{self, PortArg, TaskPort};
use std::time::Duration;

/// A Nomad client's default `max_kill_timeout`, the cap on a job's `kill_timeout`.
const MAX_KILL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the log readers may take to drain once the task has exited.
const LOG_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Where potctl keeps the alloc dirs of the tasks it starts, under the driver's `state_dir`.
const POTCTL_DIR: &str = "potctl";

/// Which task of which job file, and what a Nomad client would add to it.
#[derive(Args, Clone)]
pub struct TaskArgs {
    /// The job file (HCL) whose task is run: its `config {}`, `env {}`, `user`, `resources`,
    /// `kill_signal` and `kill_timeout`, and its group's `network {}` (ports and `dns`).
    pub job: PathBuf,
    /// The task to run, when the job has several (default: the first).
    #[arg(long, value_name = "NAME")]
    pub task: Option<String>,
    /// Replace the config's `image` (where the image is fetched from).
    #[arg(long, value_name = "URL")]
    pub image: Option<String>,
    /// The host port (and the pot's) of a port the job's group declares, instead of its
    /// `static` or a free port from Nomad's dynamic range: LABEL=HOST_PORT[:TO] (repeatable).
    #[arg(long = "port", value_name = "LABEL=HOST[:TO]")]
    pub ports: Vec<PortArg>,
    /// An environment variable for the task, over the job's `env {}` (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<EnvArg>,
}

#[derive(Clone)]
pub struct EnvArg(String, String);

impl FromStr for EnvArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok(EnvArg(k.to_string(), v.to_string())),
            _ => Err(format!("{s:?} is not KEY=VALUE")),
        }
    }
}

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

/// Prints the engine's events on stderr: a progress bar for an image download on a terminal,
/// plain lines otherwise, JSON lines with `--json`.
pub struct Reporter {
    json: bool,
    tty: bool,
    /// A progress bar is drawn on the current line.
    bar: Mutex<bool>,
}

impl Reporter {
    pub fn new(json: bool) -> Reporter {
        Reporter {
            json,
            tty: !json && std::io::stderr().is_terminal(),
            bar: Mutex::new(false),
        }
    }

    pub fn event(&self, pot: &PotName, message: &str) {
        let mut bar = self.bar.lock().expect("reporter poisoned");
        let mut err = std::io::stderr().lock();
        if self.json {
            let _ = writeln!(err, "{}", json!({"pot": pot.as_str(), "event": message}));
            return;
        }
        if self.tty
            && let Some((name, percent, total)) = download_progress(message)
        {
            let _ = write!(err, "\r{}", bar_line(name, percent, total));
            let _ = err.flush();
            *bar = true;
            return;
        }
        if std::mem::take(&mut *bar) {
            let _ = writeln!(err);
        }
        let _ = writeln!(err, "==> {message}");
    }

    /// Ends a progress bar left on the current line.
    fn finish(&self) {
        if std::mem::take(&mut *self.bar.lock().expect("reporter poisoned")) {
            eprintln!();
        }
    }
}

/// One frame of the download bar, redrawn in place.
fn bar_line(name: &str, percent: u64, total: &str) -> String {
    let filled = (percent.min(100) / 5) as usize;
    format!(
        "==> downloading {name} [{}{}] {percent:>3}% of {total}",
        "#".repeat(filled),
        " ".repeat(20 - filled)
    )
}

/// `(image, percent, total)` of the engine's "Downloading image NAME: P% of SIZE" event.
fn download_progress(message: &str) -> Option<(&str, u64, &str)> {
    let rest = message.strip_prefix("Downloading image ")?;
    let (name, rest) = rest.split_once(": ")?;
    let (percent, total) = rest.split_once("% of ")?;
    Some((name, percent.parse().ok()?, total))
}

/// A job's task as the plugin would receive it, with the dirs it runs in and how it is stopped.
struct Prepared {
    config: TaskConfig,
    pot: PotName,
    /// potctl's dir for the task: the alloc dir and the logs.
    dir: PathBuf,
    /// The job's `kill_signal`, or SIGINT, the plugin's signal when Nomad sends none.
    kill_signal: Signal,
    /// The job's `kill_timeout`, capped as a client caps it.
    kill_timeout: Duration,
    /// The ports handed to the plugin, and the node address they are published on.
    ports: Vec<TaskPort>,
    address: Option<std::net::Ipv4Addr>,
    /// What of the job potctl read but does not apply, for the operator.
    notes: Vec<String>,
}

/// Reads the job's task, builds the `TaskConfig` a Nomad client would hand the plugin (the
/// task's env, user and resources with Nomad's defaults) and then lays out its alloc dir as a
/// client does; `fifo` makes the log paths FIFOs (a foreground run streams them) rather than
/// files. A bad setting fails before anything is created.
async fn prepare_task(engine: &Engine, args: &TaskArgs, fifo: bool) -> Result<Prepared> {
    let job = args.job.display();
    let hcl = std::fs::read_to_string(&args.job).with_context(|| format!("reading {job}"))?;
    let tasks =
        jobspec::task_configs(&hcl).with_context(|| format!("reading the tasks of {job}"))?;
    let (task, mut config) = match &args.task {
        Some(wanted) => tasks
            .into_iter()
            .find(|(name, _)| name == wanted)
            .ok_or_else(|| anyhow!("{job} has no task {wanted:?}"))?,
        None => tasks
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("{job} has no task"))?,
    };
    let settings = jobspec::task_settings(&hcl, Some(&task))
        .with_context(|| format!("reading the settings of {job}"))?;
    let network = jobspec::network::group_network(&hcl, Some(&task))
        .with_context(|| format!("reading the group network of {job}"))?;
    if let Some(image) = &args.image {
        config["image"] = image.clone().into();
    }
    let msgpack = nomad_pot_client::cty::encode(&driver::task_schema(), &config)
        .map_err(|e| anyhow!("task {task:?} of {job}: {e}"))?;
    let ports = ports::allocate(engine, &network.ports, &args.ports)
        .await
        .with_context(|| format!("{job}: task {task:?}: ports"))?;
    let address = if ports.is_empty() {
        None
    } else {
        engine.published_address().await?
    };
    let resources = nomad_resources(
        engine,
        &settings.resources,
        ports::mappings(&ports, address),
    )
    .await
    .with_context(|| format!("{job}: task {task:?}: resources"))?;
    let alloc_id = nomad_pot_client::task::random_uuid()?;
    let invocation = nomad_pot_client::task::random_hex(8)?;
    let pot = PotName::for_task(&task, &invocation, &alloc_id)?;
    let env = task_env(&settings, &resources, &alloc_id, (&ports, address), args)
        .with_context(|| format!("{job}: task {task:?}"))?;
    let dir = potctl_dir(engine, &pot);
    let alloc_dir = dir.join("alloc");
    for d in [
        alloc_dir.join(&task).join("local"),
        alloc_dir.join(&task).join("secrets"),
        alloc_dir.join("alloc").join("data"),
        alloc_dir.join("alloc").join("logs"),
    ] {
        std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
    }
    if settings.user.is_some() {
        // Nomad makes these world-writable, so a task with a `user` can write there.
        use std::os::unix::fs::PermissionsExt;
        for d in [
            alloc_dir.join(&task).join("local"),
            alloc_dir.join("alloc").join("data"),
        ] {
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777))
                .with_context(|| format!("opening {} to the task's user", d.display()))?;
        }
    }
    let logs = alloc_dir.join("alloc").join("logs");
    let (stdout, stderr) = (
        logs.join(format!("{task}.stdout")),
        logs.join(format!("{task}.stderr")),
    );
    for path in [&stdout, &stderr] {
        if fifo {
            nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600))
                .with_context(|| format!("creating the FIFO {}", path.display()))?;
        } else {
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        }
    }
    let config = TaskConfig {
        id: format!("{alloc_id}/{task}/{invocation}"),
        name: task,
        msgpack_driver_config: msgpack,
        env,
        resources: Some(resources),
        user: settings.user.unwrap_or_default(),
        alloc_dir: alloc_dir.display().to_string(),
        stdout_path: stdout.display().to_string(),
        stderr_path: stderr.display().to_string(),
        alloc_id,
        dns: network.dns.map(|d| DnsConfig {
            servers: d.servers,
            searches: d.searches,
            options: d.options,
        }),
        ..Default::default()
    };
    Ok(Prepared {
        config,
        pot,
        dir,
        kill_signal: settings.kill_signal.unwrap_or(Signal::SIGINT),
        kill_timeout: settings.kill_timeout.min(MAX_KILL_TIMEOUT),
        ports,
        address,
        notes: network.notes,
    })
}

/// The task's resources as a Nomad client fills them: the allocated cpu shares (MHz) and
/// memory, and the same as Linux resources, where the plugin reads the CPU share of the node
/// (`PercentTicks`) and the reserved cores. `cores` takes the lowest CPUs: potctl does not
/// know which cores Nomad reserved for other allocations.
async fn nomad_resources(
    engine: &Engine,
    task: &jobspec::TaskResources,
    ports: Vec<PortMapping>,
) -> Result<Resources> {
    let node = engine.node_cpu().await?;
    if task.cores > u64::from(node.cpus) {
        bail!(
            "cores: {} asked for, the node has {} CPUs",
            task.cores,
            node.cpus
        );
    }
    let cpu_shares = if task.cores > 0 {
        task.cores * node.mhz
    } else {
        task.cpu
    };
    let total = u64::from(node.cpus) * node.mhz;
    let cores: Vec<String> = (0..task.cores).map(|c| c.to_string()).collect();
    let mb = |mb: u64| i64::try_from(mb).unwrap_or(i64::MAX);
    Ok(Resources {
        allocated_resources: Some(AllocatedTaskResources {
            cpu: Some(AllocatedCpuResources {
                cpu_shares: mb(cpu_shares),
            }),
            memory: Some(AllocatedMemoryResources {
                memory_mb: mb(task.memory_mb),
                memory_max_mb: mb(task.memory_max_mb),
            }),
            ..Default::default()
        }),
        linux_resources: Some(LinuxResources {
            cpu_shares: mb(cpu_shares),
            memory_limit_bytes: mb(task.memory_mb.max(task.memory_max_mb)).saturating_mul(1 << 20),
            cpuset_cpus: cores.join(","),
            percent_ticks: cpu_shares as f64 / total as f64,
            ..Default::default()
        }),
        ports,
    })
}

/// The task's environment as a Nomad client builds it: the NOMAD_* variables potctl knows
/// (with each port's, on `address`), then the job's `env {}` (whose `${NAME}` may name those,
/// or a variable given with `--env`), then the `--env` flags.
fn task_env(
    settings: &jobspec::TaskSettings,
    resources: &Resources,
    alloc_id: &str,
    (ports, address): (&[TaskPort], Option<std::net::Ipv4Addr>),
    args: &TaskArgs,
) -> Result<HashMap<String, String>> {
    let task = settings.name.as_str();
    let mut env: HashMap<String, String> = [
        ("NOMAD_ALLOC_ID", alloc_id),
        ("NOMAD_TASK_NAME", task),
        ("NOMAD_ALLOC_DIR", "/alloc"),
        ("NOMAD_TASK_DIR", "/local"),
        ("NOMAD_SECRETS_DIR", "/secrets"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let limits = resources.linux_resources.as_ref();
    let memory = resources
        .allocated_resources
        .as_ref()
        .and_then(|a| a.memory.as_ref());
    env.insert(
        "NOMAD_CPU_LIMIT".into(),
        limits.map_or(0, |l| l.cpu_shares).to_string(),
    );
    if let Some(m) = memory {
        env.insert("NOMAD_MEMORY_LIMIT".into(), m.memory_mb.to_string());
        if m.memory_max_mb > 0 {
            env.insert("NOMAD_MEMORY_MAX_LIMIT".into(), m.memory_max_mb.to_string());
        }
    }
    if let Some(cores) = limits.map(|l| &l.cpuset_cpus).filter(|c| !c.is_empty()) {
        env.insert("NOMAD_CPU_CORES".into(), cores.clone());
    }
    ports::env(ports, address, &mut env);
    let flags: HashMap<&str, &str> = args
        .env
        .iter()
        .map(|e| (e.0.as_str(), e.1.as_str()))
        .collect();
    let mut from_job = Vec::new();
    for (key, value) in &settings.env {
        let lookup = |name: &str| {
            flags
                .get(name)
                .map(|v| v.to_string())
                .or_else(|| env.get(name).cloned())
        };
        let value = value.resolve(lookup).map_err(|name| {
            anyhow!(
                "env.{key}: ${{{name}}} is not a variable potctl sets (it sets the NOMAD_* \
                 variables of the task's dirs, ids, resources and ports); give it a value \
                 with --env {name}=VALUE"
            )
        })?;
        from_job.push((key.clone(), value));
    }
    env.extend(from_job);
    env.extend(args.env.iter().map(|e| (e.0.clone(), e.1.clone())));
    Ok(env)
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

fn describe_summary(summary: &serde_json::Value) -> String {
    if let Some(signal) = summary["interrupted"].as_str() {
        return format!("interrupted by {signal}: stopped and destroyed");
    }
    match summary["signal"].as_i64() {
        Some(s) if s > 0 => format!("killed by signal {s}; destroyed"),
        _ => format!("exited with code {}; destroyed", summary["exit_code"]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_engines_download_progress() {
        assert_eq!(
            download_progress("Downloading image web_1.0: 45% of 12 MB"),
            Some(("web_1.0", 45, "12 MB"))
        );
        assert_eq!(
            download_progress("Downloading image web_1.0: 3 MB so far"),
            None
        );
        assert_eq!(download_progress("Imported image web_1.0"), None);
        assert_eq!(
            bar_line("web_1.0", 45, "12 MB"),
            "==> downloading web_1.0 [#########           ]  45% of 12 MB"
        );
        assert_eq!(
            bar_line("web_1.0", 100, "12 MB"),
            "==> downloading web_1.0 [####################] 100% of 12 MB"
        );
    }

    #[test]
    fn env_flags_are_parsed_or_rejected() {
        assert!("=1".parse::<EnvArg>().is_err());
        let e: EnvArg = "A=b=c".parse().unwrap();
        assert_eq!((e.0.as_str(), e.1.as_str()), ("A", "b=c"));
    }

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

    #[test]
    fn the_jobs_env_is_interpolated_over_nomads_and_under_the_flags() {
        let hcl = r#"task "web" {
  env {
    URL   = "http://127.0.0.1:${NOMAD_HOST_PORT_http}/ -> ${NOMAD_PORT_http} as ${NOMAD_TASK_NAME}"
    OWNER = "${NOMAD_META_owner}"
    MODE  = "job"
  }
  resources {
    memory     = 64
    memory_max = 128
  }
  config {}
}"#;
        let settings = jobspec::task_settings(hcl, None).unwrap();
        let resources = Resources {
            allocated_resources: Some(AllocatedTaskResources {
                memory: Some(AllocatedMemoryResources {
                    memory_mb: 64,
                    memory_max_mb: 128,
                }),
                ..Default::default()
            }),
            linux_resources: Some(LinuxResources {
                cpu_shares: 100,
                ..Default::default()
            }),
            ..Default::default()
        };
        let args = |flags: &[&str]| TaskArgs {
            job: "job.hcl".into(),
            task: None,
            image: None,
            ports: vec!["http=8080:80".parse().unwrap()],
            env: flags.iter().map(|f| f.parse().unwrap()).collect(),
        };
        let ports = [TaskPort {
            label: "http".into(),
            host: 8080,
            to: Some(80),
            origin: ports::Origin::Flag,
        }];
        let published = (&ports[..], Some(std::net::Ipv4Addr::new(192, 0, 2, 1)));
        let err = task_env(&settings, &resources, "a1", published, &args(&[])).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("env.OWNER: ${NOMAD_META_owner} is not a variable potctl sets"),
            "{err}"
        );
        let env = task_env(
            &settings,
            &resources,
            "a1",
            published,
            &args(&["NOMAD_META_owner=ops", "MODE=flag"]),
        )
        .unwrap();
        assert_eq!(env["URL"], "http://127.0.0.1:8080/ -> 80 as web");
        assert_eq!(env["NOMAD_ADDR_http"], "192.0.2.1:8080");
        assert_eq!(env["OWNER"], "ops");
        assert_eq!(env["MODE"], "flag");
        assert_eq!(env["NOMAD_ALLOC_ID"], "a1");
        assert_eq!(env["NOMAD_CPU_LIMIT"], "100");
        assert_eq!(env["NOMAD_MEMORY_LIMIT"], "64");
        assert_eq!(env["NOMAD_MEMORY_MAX_LIMIT"], "128");
        assert!(!env.contains_key("NOMAD_CPU_CORES"));
    }
}
