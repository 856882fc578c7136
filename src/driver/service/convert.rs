//! Nomad's messages to engine types and back: the task spec from a TaskConfig, limits, handles,
//! times, exit results, signals, durations, the network override and stats samples.

use super::TaskEntry;
use crate::driver::config::{PortError, TaskConfig};
use crate::driver::cty::CtyError;
use crate::driver::handle::{DriverState, HANDLE_VERSION};
use crate::driver::status;
use crate::engine::{
    Dns, EngineError, ExitInfo, HostMount, ImageRef, Limits, MountSpec, NetworkRecord, TaskId,
    TaskSpec, TaskUsage, parse_cpu_list,
};
use crate::proto::drivers;
use nix::sys::signal::Signal;
use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tonic::Status;

/// Why a task cannot be made from what Nomad sent; [`crate::driver::status`] turns it into the
/// gRPC status at the edge.
#[derive(Debug, thiserror::Error)]
pub enum TaskSpecError {
    /// The task's `config {}` block does not decode.
    #[error(transparent)]
    Config(#[from] CtyError),
    /// The task's ports are unusable.
    #[error("task config: {0}")]
    Ports(#[from] PortError),
    /// The engine rejects the task id, image, pot name or resources.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// What the engine runs for Nomad's `cfg`: the decoded task config, the task's dirs, its log
/// FIFOs, mounts, network, limits and environment. `potctl run` builds its task through this
/// too, so that it runs exactly what the plugin would. `cpu_hard_limit` is the agent's default
/// for tasks that do not set it.
pub fn task_spec(
    cfg: &drivers::TaskConfig,
    cpu_hard_limit: bool,
) -> Result<TaskSpec, TaskSpecError> {
    let id = TaskId::parse(&cfg.id)?;
    let tc = TaskConfig::decode(&cfg.msgpack_driver_config)?;
    let image = ImageRef::parse(&tc.image, &tc.pot, &tc.tag)?;
    let pot = id.pot_name()?;
    let alloc_dir = Path::new(&cfg.alloc_dir);
    let task_dir = alloc_dir.join(&cfg.name);
    let mounts = vec![
        MountSpec {
            source: task_dir.join("local"),
            target: "/local".into(),
            readonly: false,
        },
        MountSpec {
            source: task_dir.join("secrets"),
            target: "/secrets".into(),
            readonly: false,
        },
        MountSpec {
            source: alloc_dir.join("alloc"),
            target: "/alloc".into(),
            readonly: false,
        },
    ];
    // Host volumes (`volume_mount`): the client resolved them from its host_volume config.
    let volumes: Vec<HostMount> = cfg
        .mounts
        .iter()
        .map(|m| HostMount {
            origin: format!("volume_mount {:?}", m.task_path),
            source: m.host_path.clone().into(),
            target: m.task_path.clone(),
            readonly: m.readonly,
        })
        .collect();
    let nomad_ports = cfg
        .resources
        .as_ref()
        .map(|r| r.ports.as_slice())
        .unwrap_or_default();
    let network = tc.network_request(nomad_ports, &cfg.env)?;
    let cpu_hard_limit = tc.cpu_hard_limit.unwrap_or(cpu_hard_limit);
    let limits = nomad_limits(cfg, tc.limits, cpu_hard_limit)?;
    Ok(TaskSpec {
        pot,
        image,
        command: tc.command,
        args: tc.args,
        env: cfg.env.clone().into_iter().collect(),
        stdout: cfg.stdout_path.clone().into(),
        stderr: cfg.stderr_path.clone().into(),
        task_dir,
        alloc_dir: alloc_dir.to_path_buf(),
        mounts,
        host_mounts: tc.mounts.into_iter().chain(volumes).collect(),
        copies: tc.copy,
        extra_hosts: tc.extra_hosts,
        attributes: tc.attributes,
        user: Some(cfg.user.clone()).filter(|u| !u.is_empty()),
        dns: cfg.dns.as_ref().map(|d| Dns {
            servers: d.servers.clone(),
            searches: d.searches.clone(),
            options: d.options.clone(),
        }),
        limits,
        owner: id,
        network,
    })
}

/// The task config's limits plus Nomad's resources: memory (`memory_max` when higher, as with
/// oversubscription), reserved cores, and the cpu share as a cap only with `cpu_hard_limit`.
/// Nomad's `cpu` is a reservation that docker and podman turn into a weight; FreeBSD has no CPU
/// weight for jails, and a `pcpu` cap would hold a default task (100 MHz) to a few percent of
/// one core, so without `cpu_hard_limit` the scheduler's reservation is all there is.
fn nomad_limits(
    cfg: &drivers::TaskConfig,
    from_job: Limits,
    cpu_hard_limit: bool,
) -> Result<Limits, EngineError> {
    let resources = cfg.resources.as_ref();
    let memory_mb = resources
        .and_then(|r| r.allocated_resources.as_ref())
        .and_then(|a| a.memory.as_ref())
        .map(|m| m.memory_mb.max(m.memory_max_mb))
        .filter(|mb| *mb > 0);
    let linux = resources.and_then(|r| r.linux_resources.as_ref());
    let cpus = parse_cpu_list(linux.map_or("", |l| l.cpuset_cpus.as_str()))?;
    Ok(Limits {
        memory_bytes: memory_mb.map(|mb| (mb as u64) << 20),
        cpu_share: linux
            .map(|l| l.percent_ticks)
            .filter(|t| *t > 0.0 && cpu_hard_limit),
        cpus,
        ..from_job
    })
}

pub(super) fn handle_for(entry: &TaskEntry) -> drivers::TaskHandle {
    let (alloc_id, task_name) = (entry.config.alloc_id.clone(), entry.config.name.clone());
    let state = DriverState {
        pot: entry.pot.to_string(),
        task_id: entry.config.id.clone(),
        task_name,
        alloc_id,
        pid: entry.instance.pid,
        started_at_ms: entry.instance.started_at_ms,
    };
    drivers::TaskHandle {
        version: HANDLE_VERSION,
        config: Some(entry.config.clone()),
        state: drivers::TaskState::Running as i32,
        driver_state: state.encode(),
    }
}

pub(super) fn timestamp(t: SystemTime) -> prost_types::Timestamp {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    prost_types::Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

pub(super) fn timestamp_ms(ms: u64) -> prost_types::Timestamp {
    timestamp(UNIX_EPOCH + Duration::from_millis(ms))
}

/// What Go sends for "no time": 0001-01-01T00:00:00Z.
pub(super) fn zero_time() -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: -62_135_596_800,
        nanos: 0,
    }
}

pub(super) fn exit_result(e: &ExitInfo) -> drivers::ExitResult {
    drivers::ExitResult {
        exit_code: e.exit_code,
        signal: e.signal,
        oom_killed: e.memory_limit_hit.is_some(),
    }
}

/// The longest duration taken from a request: longer waits are of no use, and deadlines
/// computed from them must not overflow.
const MAX_CLIENT_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

/// A request's duration; negative is zero, longer than [`MAX_CLIENT_DURATION`] is that.
pub(super) fn client_duration(d: prost_types::Duration) -> Duration {
    let secs = u64::try_from(d.seconds).unwrap_or(0);
    let nanos = u32::try_from(d.nanos).unwrap_or(0).min(999_999_999);
    Duration::new(secs, nanos).min(MAX_CLIENT_DURATION)
}

/// Signal names as Nomad sends them (`SIGTERM`), also accepted without the prefix or in lower case.
pub(super) fn parse_signal(name: &str) -> Result<Signal, Status> {
    let upper = name.trim().to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&full)
        .map_err(|_| status::invalid_argument(format!("unknown signal {name:?}")))
}

/// For a bridged pot, the pot's address and the in-pot ports, for services with
/// `address_mode = "driver"`; Nomad keeps advertising the host's address otherwise, which the
/// rdr rules serve, so `auto_advertise` stays off. An alias pot is only reachable on its own
/// addresses: its first one is advertised.
pub(super) fn network_override(record: Option<&NetworkRecord>) -> Option<drivers::NetworkOverride> {
    let record = record?;
    if let Some(alias) = record.aliases.first() {
        let ip = record
            .aliases
            .iter()
            .find(|a| a.ip.is_ipv4())
            .unwrap_or(alias)
            .ip;
        return Some(drivers::NetworkOverride {
            port_map: HashMap::new(),
            addr: ip.to_string(),
            auto_advertise: true,
        });
    }
    let ip = record.ip?;
    Some(drivers::NetworkOverride {
        port_map: record
            .ports
            .iter()
            .map(|p| (p.label.clone(), i32::from(p.pot_port)))
            .collect(),
        addr: ip.to_string(),
        auto_advertise: false,
    })
}

/// One TaskStats sample. Without usage (racct off, jail gone) the sample is still sent, with no
/// measured fields, because Nomad dereferences it unconditionally.
pub(super) fn stats_sample(task_id: &str, usage: Option<TaskUsage>) -> drivers::TaskStatsResponse {
    use drivers::{cpu_usage, memory_usage};
    let (cpu, memory) = match usage {
        Some(u) => (
            drivers::CpuUsage {
                percent: u.cpu_percent,
                measured_fields: vec![cpu_usage::Fields::Percent as i32],
                ..Default::default()
            },
            drivers::MemoryUsage {
                rss: u.memory_bytes,
                swap: u.swap_bytes,
                measured_fields: vec![
                    memory_usage::Fields::Rss as i32,
                    memory_usage::Fields::Swap as i32,
                ],
                ..Default::default()
            },
        ),
        None => Default::default(),
    };
    drivers::TaskStatsResponse {
        stats: Some(drivers::TaskStats {
            id: task_id.to_string(),
            timestamp: Some(timestamp(SystemTime::now())),
            agg_resource_usage: Some(drivers::TaskResourceUsage {
                cpu: Some(cpu),
                memory: Some(memory),
            }),
            resource_usage_by_pid: HashMap::new(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_signal_names_as_nomad_sends_them() {
        assert_eq!(parse_signal("SIGTERM").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("usr1").unwrap(), Signal::SIGUSR1);
        assert!(parse_signal("SIGNOPE").is_err());
    }

    #[test]
    fn client_durations_are_clamped() {
        let d = |seconds, nanos| client_duration(prost_types::Duration { seconds, nanos });
        assert_eq!(d(5, 500), Duration::new(5, 500));
        assert_eq!(d(-1, -1), Duration::ZERO);
        assert_eq!(d(i64::MAX, 999_999_999), MAX_CLIENT_DURATION);
        assert_eq!(d(0, i32::MAX), Duration::new(0, 999_999_999));
    }

    #[test]
    fn task_spec_errors_say_which_input_is_bad() {
        let cfg = |id: &str, config: Vec<u8>| drivers::TaskConfig {
            id: id.to_string(),
            msgpack_driver_config: config,
            ..Default::default()
        };
        let e = task_spec(&cfg("a/web", Vec::new()), false).unwrap_err();
        assert!(
            matches!(e, TaskSpecError::Engine(EngineError::InvalidInput(_))),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            r#"task id "a/web" is not of the form <alloc>/<task>/<invocation>"#
        );
        // 0xc1 is no msgpack value at all.
        let e = task_spec(&cfg("a/web/0f3c", vec![0xc1]), false).unwrap_err();
        assert!(matches!(e, TaskSpecError::Config(_)), "{e:?}");
    }

    #[test]
    fn nomad_cpu_becomes_a_pcpu_cap_only_with_cpu_hard_limit() {
        let cfg = drivers::TaskConfig {
            resources: Some(drivers::Resources {
                linux_resources: Some(drivers::LinuxResources {
                    percent_ticks: 0.25,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let share = |hard| {
            nomad_limits(&cfg, Limits::default(), hard)
                .unwrap()
                .cpu_share
        };
        assert_eq!(share(false), None);
        assert_eq!(share(true), Some(0.25));
    }

    #[test]
    fn stats_samples_always_carry_usage_and_timestamp() {
        let s = stats_sample("t", None).stats.unwrap();
        assert!(s.timestamp.is_some() && s.agg_resource_usage.is_some());
    }
}
