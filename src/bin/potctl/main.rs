//! potctl: the operator's debug CLI for one node.

mod doctor;
mod inspect;
mod man;
mod operate;
mod output;
mod plugin_check;
mod ports;
mod setup;

use anyhow::{Context, Result, bail};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use nomad_pot_client::{FileServer, Plugin, SimHost, Task, cty};
use nomad_pot_driver::driver::AgentConfig;
use nomad_pot_driver::engine::{Engine, EngineConfig, ExportOptions};
use nomad_pot_driver::proto::base::{ConfigSchemaRequest, SetConfigRequest};
use nomad_pot_driver::proto::drivers::{
    DestroyTaskRequest, StartTaskRequest, TaskConfigSchemaRequest, WaitTaskRequest,
};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "potctl",
    version,
    about = "Inspect and repair the pot driver's node"
)]
struct Cli {
    /// The driver's agent config as JSON (the plugin's `config {}` block; `freebsd-sim init`
    /// prints one).
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        conflicts_with = "sim",
        env = "POTCTL_CONFIG"
    )]
    config: Option<PathBuf>,
    /// Work on the simulated host at DIR (its config is what `freebsd-sim init DIR` prints).
    #[arg(long, global = true, value_name = "DIR", env = "POTCTL_SIM")]
    sim: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a task end to end on a simulated FreeBSD host (Linux, root): the real plugin,
    /// launched and driven the way a Nomad client does it.
    Demo {
        /// The job file whose task is run; its `image` is replaced by the simulated host's.
        #[arg(long, default_value = "nomad-jobs/demo.nomad.hcl")]
        job: PathBuf,
    },
    /// Write pot image files (`<pot>_<tag>.xz`, `.meta`, `.skein`, with -S `.skein.sig`) from a
    /// single pot's only snapshot, as `pot export` does; the `.xz` is multi-block.
    Export {
        /// The pot to export.
        #[arg(short = 'p', value_name = "POT")]
        pot: String,
        /// Image tag. Default: the snapshot's name.
        #[arg(short = 't', value_name = "TAG")]
        tag: Option<String>,
        /// Output directory.
        #[arg(short = 'D', value_name = "DIR", default_value = ".")]
        dir: PathBuf,
        /// xz compression level, 0-9.
        #[arg(short = 'l', value_name = "LEVEL", default_value_t = 6)]
        level: u32,
        /// Sign the .skein with this unencrypted signify secret key.
        #[arg(short = 'S', value_name = "SECKEY")]
        seckey: Option<PathBuf>,
    },
    /// Find the pots this driver created that no task owns any more (their supervisor and task
    /// are gone) and, with --apply, remove each with everything it holds: jail, epairs, pf
    /// anchor, rctl rules, mounts, datasets, status and state files. Pots the driver did not
    /// create are never touched; running tasks are listed, never removed.
    Gc {
        /// Remove what is found (default: a dry run that only shows it).
        #[arg(long)]
        apply: bool,
    },
    /// Import the image of a job's task, the first step of its start.
    Prepare(operate::TaskArgs),
    /// Start a job's task in the background, as the plugin would (logs go to files).
    Start(operate::TaskArgs),
    /// Stop a pot's task (exec_stop, signal, kill after --timeout); the pot stays.
    Stop(operate::StopArgs),
    /// Kill a pot's task if it runs and remove everything of the pot.
    Destroy {
        /// The pot to destroy (only pots this driver created).
        pot: String,
    },
    /// Run a command in a pot's jail: `potctl exec POT -- CMD ARG…`.
    Exec(operate::ExecArgs),
    /// Run a job's task once in the foreground through the plugin's engine path: its logs
    /// streamed, its exit code returned; Ctrl-C stops it; its pot is always destroyed.
    Run(operate::TaskArgs),
    /// Prepare a fresh host as `pot init` and `pot vnet-start` do: ZFS datasets, directories,
    /// pot's anchor lines in pf.conf, forwarding, pf, NAT and the bridge. Idempotent.
    Init(setup::InitArgs),
    /// Check the node's readiness (root, ZFS, racct, VIMAGE, pf, pot's config, the plugin and
    /// Nomad's agent config), with a fix for each failure; exits 1 when something fails.
    Doctor(doctor::DoctorArgs),
    /// Launch a plugin binary the way Nomad does and show the handshake, PluginInfo,
    /// Capabilities and the first fingerprint, or why Nomad would not load it.
    PluginCheck(plugin_check::PluginCheckArgs),
    /// Imported images (size, import time, the pots cloned from each) and the files in the
    /// image cache; `images gc` removes unused ones.
    #[command(after_help = "Examples:
  potctl images             what is imported and cached, and who uses it
  potctl images --json
  potctl images gc --dry-run")]
    Images {
        #[command(subcommand)]
        command: Option<ImagesCommand>,
    },
    #[command(flatten)]
    Inspect(inspect::Command),
    /// Print a shell completion script generated from this CLI (`sh` gets the bash script,
    /// for shells that read bash's `complete`).
    #[command(after_help = "Examples:
  potctl completions bash > /usr/local/etc/bash_completion.d/potctl
  potctl completions zsh > \"${fpath[1]}/_potctl\"")]
    Completions {
        #[arg(value_enum)]
        shell: CompletionShell,
    },
    /// Print potctl(8) in roff (packaging/man/potctl.8 is its output).
    #[command(hide = true)]
    Man,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum CompletionShell {
    Sh,
    Bash,
    Zsh,
}

#[derive(Subcommand)]
enum ImagesCommand {
    /// Remove imported images no pot is cloned from, oldest first, with their cached files.
    /// Only images imported by this driver are considered.
    Gc {
        /// Print what would be removed; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Images to keep (in-use ones count and always stay). Default: the agent's
        /// `image_cache_max`, else 0.
        #[arg(long, value_name = "N")]
        keep: Option<usize>,
    },
}

fn main() -> ExitCode {
    // The engine runs every task under `<its own binary> shim`, as the plugin does.
    if std::env::args_os().nth(1).is_some_and(|a| a == "shim") {
        return nomad_pot_driver::engine::supervisor::main();
    }
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let origin = agent_origin(&matches, &cli);
    let json = cli.json;
    let reporter = Arc::new(operate::Reporter::new(json));
    let operate = |config, sim| engine_with(config, sim, &reporter);
    let result = tokio::runtime::Runtime::new()
        .context("starting the async runtime")
        .and_then(|rt| match cli.command {
            Command::Demo { job } => rt.block_on(demo(job)),
            Command::Export {
                pot,
                tag,
                dir,
                level,
                seckey,
            } => {
                let options = ExportOptions {
                    pot,
                    tag,
                    dir,
                    level,
                    seckey,
                };
                engine(cli.config, cli.sim)
                    .and_then(|engine| rt.block_on(export(&engine, &options)))
            }
            Command::Images {
                command: Some(ImagesCommand::Gc { dry_run, keep }),
            } => engine(cli.config, cli.sim)
                .and_then(|engine| rt.block_on(images_gc(&engine, dry_run, keep))),
            Command::Prepare(args) => operate(cli.config, cli.sim)
                .and_then(|(e, _)| rt.block_on(operate::prepare(&e, &args, json))),
            Command::Start(args) => operate(cli.config, cli.sim)
                .and_then(|(e, hard)| rt.block_on(operate::start(&e, &args, hard, json))),
            Command::Stop(args) => operate(cli.config, cli.sim)
                .and_then(|(e, _)| rt.block_on(operate::stop(&e, &args, json))),
            Command::Destroy { pot } => operate(cli.config, cli.sim)
                .and_then(|(e, _)| rt.block_on(operate::destroy(&e, &pot, json))),
            Command::Exec(args) => operate(cli.config, cli.sim)
                .and_then(|(e, _)| rt.block_on(operate::exec(&e, &args, json))),
            Command::Run(args) => operate(cli.config, cli.sim)
                .and_then(|(e, hard)| rt.block_on(operate::run(&e, &reporter, &args, hard, json))),
            Command::Init(args) => {
                let sim = cli.sim.clone();
                engine(cli.config, cli.sim)
                    .and_then(|e| rt.block_on(setup::init(&e, &args, sim.as_deref(), json)))
            }
            Command::Doctor(args) => {
                let sim = cli.sim.clone();
                let agent = match (&cli.config, &cli.sim) {
                    (None, None) => Ok(None),
                    _ => agent_json(cli.config, cli.sim).map(Some),
                };
                agent.and_then(|agent| {
                    rt.block_on(doctor::doctor(&args, agent, sim.as_deref(), json))
                })
            }
            Command::PluginCheck(args) => agent_json(cli.config, cli.sim)
                .and_then(|agent| rt.block_on(plugin_check::plugin_check(&args, agent, json))),
            Command::Images { command: None } => engine(cli.config, cli.sim).and_then(|engine| {
                let images = rt.block_on(engine.images())?;
                print!("{}", inspect::images(&images, cli.json));
                Ok(ExitCode::SUCCESS)
            }),
            Command::Inspect(command) => agent_config(cli.config, cli.sim).and_then(|overrides| {
                let engine = engine_from(&overrides)?;
                let agent = inspect::Agent { overrides, origin };
                rt.block_on(inspect::run(command, &engine, &agent, cli.json))?;
                Ok(ExitCode::SUCCESS)
            }),
            Command::Completions { shell } => {
                let shell = match shell {
                    CompletionShell::Sh | CompletionShell::Bash => clap_complete::Shell::Bash,
                    CompletionShell::Zsh => clap_complete::Shell::Zsh,
                };
                clap_complete::generate(
                    shell,
                    &mut Cli::command(),
                    "potctl",
                    &mut std::io::stdout(),
                );
                Ok(ExitCode::SUCCESS)
            }
            Command::Man => {
                man::render(&mut std::io::stdout()).context("writing potctl(8)")?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Gc { apply } => {
                engine(cli.config, cli.sim).and_then(|engine| rt.block_on(gc(&engine, apply)))
            }
        });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("potctl: {}", output::error_message(&e));
            ExitCode::from(2)
        }
    }
}

/// The engine for the node described by `--config` or `--sim`, configured as the plugin would be.
fn engine(config: Option<PathBuf>, sim: Option<PathBuf>) -> Result<Engine> {
    engine_from(&agent_config(config, sim)?)
}

fn engine_from(overrides: &nomad_pot_driver::engine::Overrides) -> Result<Engine> {
    let cfg = EngineConfig::resolve(overrides)?;
    Ok(Engine::new(cfg, Arc::new(|_, _| {})))
}

/// [`engine`], with its events shown by `reporter`, and the agent's `cpu_hard_limit` (the
/// default of tasks that do not set it).
fn engine_with(
    config: Option<PathBuf>,
    sim: Option<PathBuf>,
    reporter: &Arc<operate::Reporter>,
) -> Result<(Engine, bool)> {
    let agent = AgentConfig::from_json(&agent_json(config, sim)?)?;
    let cfg = EngineConfig::resolve(&agent.engine)?;
    let reporter = reporter.clone();
    let engine = Engine::new(cfg, Arc::new(move |pot, msg| reporter.event(pot, &msg)));
    Ok((engine, agent.cpu_hard_limit))
}

/// How the agent config was chosen, for `potctl config`.
fn agent_origin(matches: &clap::ArgMatches, cli: &Cli) -> String {
    use clap::parser::ValueSource;
    let how = |arg: &str, flag: &str, var: &str| match matches.value_source(arg) {
        Some(ValueSource::EnvVariable) => format!("${var}"),
        _ => flag.to_string(),
    };
    match (&cli.config, &cli.sim) {
        (Some(file), _) => format!(
            "{} ({})",
            file.display(),
            how("config", "--config", "POTCTL_CONFIG")
        ),
        (None, Some(dir)) => format!(
            "simulated host {} ({})",
            dir.display(),
            how("sim", "--sim", "POTCTL_SIM")
        ),
        (None, None) => "none (the plugin's defaults: pot's configuration)".to_string(),
    }
}

/// The driver's agent config (`--config`, `--sim`, or none), as the plugin decodes it.
fn agent_config(
    config: Option<PathBuf>,
    sim: Option<PathBuf>,
) -> Result<nomad_pot_driver::engine::Overrides> {
    Ok(AgentConfig::from_json(&agent_json(config, sim)?)?.engine)
}

/// The agent's plugin config as JSON, from `--config` or `--sim`; empty without either.
fn agent_json(config: Option<PathBuf>, sim: Option<PathBuf>) -> Result<serde_json::Value> {
    Ok(match (config, sim) {
        (Some(file), _) => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            serde_json::from_str(&text).with_context(|| format!("parsing {}", file.display()))?
        }
        (None, Some(dir)) => nomad_pot_client::sim::init(&dir, &[])?,
        // As the plugin with `plugin "nomad-pot-driver" {}`: pot's own configuration.
        (None, None) => serde_json::json!({}),
    })
}

async fn export(engine: &Engine, options: &ExportOptions) -> Result<ExitCode> {
    let exported = engine.export(options).await?;
    println!(
        "exported {} (snapshot {}, tag {}{})",
        exported.xz.display(),
        exported.snapshot,
        exported.tag,
        if exported.signed { ", signed" } else { "" }
    );
    Ok(ExitCode::SUCCESS)
}

async fn images_gc(engine: &Engine, dry_run: bool, keep: Option<usize>) -> Result<ExitCode> {
    let keep = keep.or(engine.config().image.cache_max).unwrap_or(0);
    let report = engine.gc_images(keep, dry_run).await?;
    let verb = if dry_run { "would remove" } else { "removed" };
    for name in &report.removed {
        println!("{verb} {name}");
    }
    for name in &report.kept {
        println!("kept {name}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn gc(engine: &Engine, apply: bool) -> Result<ExitCode> {
    let report = engine
        .gc(!apply, nomad_pot_driver::engine::OUTSIDE_START_GRACE)
        .await?;
    let verb = if apply { "removed" } else { "would remove" };
    for (pot, why) in &report.collected {
        println!("{verb} {pot}: {why}");
    }
    for (pot, why) in &report.kept {
        println!("kept {pot}: {why}");
    }
    if report.collected.is_empty() && report.kept.is_empty() {
        println!("nothing of this driver's on this node");
    } else if !apply && !report.collected.is_empty() {
        println!("dry run: add --apply to remove");
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints a step of the demo.
fn step(text: &str) {
    println!("==> {text}");
}

async fn demo(job: PathBuf) -> Result<ExitCode> {
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "the demo needs root: the simulated jexec chroots the task in a private mount namespace"
        );
    }
    let hcl =
        std::fs::read_to_string(&job).with_context(|| format!("reading {}", job.display()))?;
    let mut config = nomad_pot_driver::jobspec::task_config(&hcl, None)
        .with_context(|| format!("reading the task config of {}", job.display()))?;

    let sim = SimHost::create()?;
    step(&format!("simulated FreeBSD host at {}", sim.dir.display()));
    let pot = config["pot"].as_str().unwrap_or("demo").to_string();
    let tag = config["tag"].as_str().unwrap_or("1.0").to_string();
    sim.image(&pot, &tag)?;
    let server = FileServer::serve(&sim.images_dir())?;
    step(&format!("serving image {pot}_{tag}.xz at {}", server.url()));
    config["image"] = server.url().into();

    let plugin = Plugin::launch().await?;
    step(&format!("plugin handshake: {}", plugin.handshake));
    let agent_schema = plugin
        .base()
        .config_schema(ConfigSchemaRequest {})
        .await?
        .into_inner()
        .spec
        .context("the plugin returned no agent config schema")?;
    let agent_config = cty::encode(&agent_schema, &sim.agent_config())
        .map_err(|e| anyhow::anyhow!("agent config: {e}"))?;
    plugin
        .base()
        .set_config(SetConfigRequest {
            msgpack_config: agent_config,
            nomad_config: None,
            plugin_api_version: "v0.1.0".into(),
        })
        .await?;
    let task_schema = plugin
        .driver()
        .task_config_schema(TaskConfigSchemaRequest {})
        .await?
        .into_inner()
        .spec
        .context("the plugin returned no task config schema")?;
    let msgpack =
        cty::encode(&task_schema, &config).map_err(|e| anyhow::anyhow!("task config: {e}"))?;
    let task = Task::new(&sim.allocs_dir(), "hello", msgpack)?;
    step(&format!("StartTask {}", task.id()));
    plugin
        .driver()
        .start_task(StartTaskRequest {
            task: Some(task.config.clone()),
        })
        .await?;
    let exit = plugin
        .driver()
        .wait_task(WaitTaskRequest { task_id: task.id() })
        .await?
        .into_inner()
        .result
        .context("WaitTask returned no result")?;
    task.logs.wait_for_eof(Duration::from_secs(5)).await;
    step("task stdout:");
    print!("{}", task.logs.stdout());
    step("task stderr:");
    print!("{}", task.logs.stderr());
    step(&format!(
        "exit code {}, signal {}",
        exit.exit_code, exit.signal
    ));
    plugin
        .driver()
        .destroy_task(DestroyTaskRequest {
            task_id: task.id(),
            force: true,
        })
        .await?;
    plugin.shutdown().await?;
    let (clean, leftovers) = sim.check()?;
    if clean {
        step("freebsd-sim check: no leftovers");
        Ok(ExitCode::SUCCESS)
    } else {
        step(&format!("freebsd-sim check found leftovers:\n{leftovers}"));
        Ok(ExitCode::FAILURE)
    }
}
