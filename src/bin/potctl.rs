//! potctl: the operator's debug CLI for one node.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use nomad_harness::{FileServer, Plugin, SimHost, TestTask, cty};
use nomad_pot_driver::proto::base::{ConfigSchemaRequest, SetConfigRequest};
use nomad_pot_driver::proto::drivers::{
    DestroyTaskRequest, StartTaskRequest, TaskConfigSchemaRequest, WaitTaskRequest,
};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "potctl",
    version,
    about = "Inspect and repair the pot driver's node"
)]
struct Cli {
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
    /// Show what each task publishes (pf rdr rules, localhost relay) and where it goes.
    Ports {
        /// The driver's `state_dir`.
        #[arg(long, default_value = "/var/db/nomad-pot-driver")]
        state_dir: PathBuf,
        /// Where pot's `pot.conf` is read (for the external interface).
        #[arg(long, default_value = nomad_pot_driver::engine::DEFAULT_POT_CONF_DIR)]
        pot_conf_dir: PathBuf,
        /// The external interface, if not pot's `POT_EXTIF` (the agent's `extif`).
        #[arg(long)]
        extif: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo { job } => tokio::runtime::Runtime::new()
            .context("starting the async runtime")
            .and_then(|rt| rt.block_on(demo(job))),
        Command::Ports {
            state_dir,
            pot_conf_dir,
            extif,
        } => ports(state_dir, pot_conf_dir, extif),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("potctl: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// `potctl ports`: one line per published port, one per alias address.
fn ports(state_dir: PathBuf, pot_conf_dir: PathBuf, extif: Option<String>) -> Result<ExitCode> {
    use nomad_pot_driver::engine::{Engine, EngineConfig, Overrides};
    let cfg = EngineConfig::resolve(&Overrides {
        state_dir: Some(state_dir),
        pot_conf_dir: Some(pot_conf_dir),
        extif,
        ..Default::default()
    })
    .context("reading pot's configuration")?;
    let extif = cfg.network.extif.clone();
    let target = match cfg.network.extif_addr {
        Some(a) => a.to_string(),
        None => extif.clone(),
    };
    let engine = Engine::new(cfg, std::sync::Arc::new(|_: &_, _| {}));
    let records = engine.network_records();
    if records.is_empty() {
        println!("no task publishes anything");
    }
    for (pot, r) in records {
        let anchor = r.anchor.as_deref().unwrap_or("-");
        for p in &r.ports {
            let ip = r.ip.map(|ip| ip.to_string()).unwrap_or_default();
            println!(
                "{pot}  {label}  tcp,udp  {target}:{host} -> {ip}:{to}  (pf anchor {anchor}; also 127.0.0.1:{host} via the task's relay)",
                label = p.label,
                host = p.host_port,
                to = p.pot_port,
            );
        }
        for a in &r.aliases {
            println!("{pot}  alias  {}|{}  (the task's own address)", a.nic, a.ip);
        }
        if let (true, Some(ip)) = (r.ports.is_empty() && r.aliases.is_empty(), r.ip) {
            println!("{pot}  -  {ip}  (bridged, no published ports)");
        }
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

    let sim = SimHost::create();
    step(&format!("simulated FreeBSD host at {}", sim.dir.display()));
    let pot = config["pot"].as_str().unwrap_or("demo").to_string();
    let tag = config["tag"].as_str().unwrap_or("1.0").to_string();
    sim.image(&pot, &tag);
    let server = FileServer::serve(&sim.images_dir());
    step(&format!("serving image {pot}_{tag}.xz at {}", server.url()));
    config["image"] = server.url().into();

    let plugin = Plugin::launch().await;
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
    let task = TestTask::new(&sim.allocs_dir(), "hello", msgpack);
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
    plugin.shutdown().await;
    let (clean, leftovers) = sim.check();
    if clean {
        step("freebsd-sim check: no leftovers");
        Ok(ExitCode::SUCCESS)
    } else {
        step(&format!("freebsd-sim check found leftovers:\n{leftovers}"));
        Ok(ExitCode::FAILURE)
    }
}
