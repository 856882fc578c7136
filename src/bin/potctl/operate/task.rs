//! A job's task built the way a Nomad client hands it to the plugin: the `TaskConfig` with the
//! msgpack of the job's `config {}`, the task's env, user and resources with Nomad's defaults,
//! its ports, and the alloc dir and log paths laid out as a client lays them out.

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use nix::sys::signal::Signal;
use nomad_pot_driver::driver;
use nomad_pot_driver::engine::{Engine, PotName};
use nomad_pot_driver::jobspec;
use nomad_pot_driver::proto::drivers::{
    AllocatedCpuResources, AllocatedMemoryResources, AllocatedTaskResources, DnsConfig,
    LinuxResources, PortMapping, Resources, TaskConfig,
};
use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use super::potctl_dir;
use crate::ports::{self, PortArg, TaskPort};

/// A Nomad client's default `max_kill_timeout`, the cap on a job's `kill_timeout`.
const MAX_KILL_TIMEOUT: Duration = Duration::from_secs(30);

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

/// A job's task as the plugin would receive it, with the dirs it runs in and how it is stopped.
pub(super) struct Prepared {
    pub(super) config: TaskConfig,
    pub(super) pot: PotName,
    /// potctl's dir for the task: the alloc dir and the logs.
    pub(super) dir: PathBuf,
    /// The job's `kill_signal`, or SIGINT, the plugin's signal when Nomad sends none.
    pub(super) kill_signal: Signal,
    /// The job's `kill_timeout`, capped as a client caps it.
    pub(super) kill_timeout: Duration,
    /// The ports handed to the plugin, and the node address they are published on.
    pub(super) ports: Vec<TaskPort>,
    pub(super) address: Option<std::net::Ipv4Addr>,
    /// What of the job potctl read but does not apply, for the operator.
    pub(super) notes: Vec<String>,
}

/// Reads the job's task, builds the `TaskConfig` a Nomad client would hand the plugin (the
/// task's env, user and resources with Nomad's defaults) and then lays out its alloc dir as a
/// client does; `fifo` makes the log paths FIFOs (a foreground run streams them) rather than
/// files. A bad setting fails before anything is created.
pub(super) async fn prepare_task(engine: &Engine, args: &TaskArgs, fifo: bool) -> Result<Prepared> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_flags_are_parsed_or_rejected() {
        assert!("=1".parse::<EnvArg>().is_err());
        let e: EnvArg = "A=b=c".parse().unwrap();
        assert_eq!((e.0.as_str(), e.1.as_str()), ("A", "b=c"));
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
