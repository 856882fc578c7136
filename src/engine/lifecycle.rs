//! The task lifecycle: prepare (import + clone), start (mounts, jail, jexec), wait, stop, destroy.
//!
//! Every step after the clone is undone by [`Engine::teardown`], which is idempotent and is used
//! both to roll back a failed start and to destroy a finished task.

use super::command::{self, Argv};
use super::image::{self, ImageRef};
use super::layout::{self, MountSpec, PotName, PotPaths};
use super::network::{self, BridgePlan, NetworkPlan, NetworkRecord, NetworkRequest};
use super::potconf::PotConf;
use super::{Engine, EngineError, shim};
use crate::host::{JailParams, JexecSpec};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// FreeBSD's login PATH, for tasks whose environment has none (IMAGE isolation passes no host env).
pub(super) const DEFAULT_JAIL_PATH: &str =
    "/sbin:/bin:/usr/sbin:/usr/bin:/usr/local/sbin:/usr/local/bin";
/// How long a killed task may take to be reaped.
const KILL_GRACE: Duration = Duration::from_secs(10);
/// pot's `POT_HOSTNAME_MAX_LENGTH`.
const HOSTNAME_MAX_LENGTH: usize = 64;

/// Everything the engine needs to run one task.
#[derive(Debug, Clone)]
pub struct TaskSpec {
    pub pot: PotName,
    pub image: ImageRef,
    pub command: Option<String>,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    pub mounts: Vec<MountSpec>,
    pub memory_mb: Option<i64>,
    /// Who the pot belongs to (Nomad's task id), recorded on its dataset.
    pub owner: String,
    pub network: NetworkRequest,
}

/// ZFS user property marking the pots this driver created, with the owning task's id. Only
/// pots carrying it are ever garbage-collected.
pub const OWNER_PROPERTY: &str = "nomad-pot-driver:task";

/// How a task ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    pub exit_code: i32,
    pub signal: i32,
    pub finished_at_ms: u64,
    /// Set when the status could not be observed.
    pub error: Option<String>,
}

impl ExitInfo {
    /// An exit whose status could not be observed.
    pub fn unknown(reason: String) -> ExitInfo {
        ExitInfo {
            exit_code: -1,
            signal: 0,
            finished_at_ms: now_ms(),
            error: Some(reason),
        }
    }
}

/// A task the engine tracks: its main process and its exit, once known.
#[derive(Debug)]
pub struct Instance {
    pub pot: PotName,
    pub pid: u32,
    pub started_at_ms: u64,
    exit: watch::Receiver<Option<ExitInfo>>,
}

impl Instance {
    pub fn exit(&self) -> Option<ExitInfo> {
        self.exit.borrow().clone()
    }

    /// Waits until the task has exited.
    pub async fn wait(&self) -> ExitInfo {
        let mut rx = self.exit.clone();
        let done = rx
            .wait_for(Option::is_some)
            .await
            .map(|v| v.clone().expect("waited for Some"));
        done.unwrap_or_else(|_| ExitInfo {
            exit_code: -1,
            signal: 0,
            finished_at_ms: now_ms(),
            error: Some("task waiter vanished".to_string()),
        })
    }

    async fn wait_timeout(&self, timeout: Duration) -> Option<ExitInfo> {
        tokio::time::timeout(timeout, self.wait()).await.ok()
    }
}

impl Engine {
    /// Prepares and starts `spec`. On failure everything created so far is removed again.
    pub async fn start(&self, spec: TaskSpec) -> Result<Arc<Instance>, EngineError> {
        let _starting = self.mark_starting(&spec.pot);
        let pot = spec.pot.clone();
        // Nomad retries StartTask with the same task id after a plugin crash: adopt the task
        // if it was started, clean up if a start was interrupted half-way.
        if let Some(instance) = self.instance(&pot) {
            return Ok(instance);
        }
        if self.task_state_dir(&pot).join(shim::PIDS_FILE).exists() {
            match self.recover(&pot).await {
                Ok(instance) => return Ok(instance),
                Err(e) => tracing::info!(pot = %pot, reason = %e, "cleaning up an earlier start"),
            }
        }
        // Everything that can be checked without the host is checked first: bad input changes nothing.
        if spec.command.is_some() || !spec.args.is_empty() {
            command::resolve(
                spec.command.as_deref(),
                &spec.args,
                None,
                self.cfg.args_quote_compat,
            )?;
        }
        for m in &spec.mounts {
            if !m.source.is_dir() {
                return Err(EngineError::InvalidInput(format!(
                    "mount source {} is not a directory",
                    m.source.display()
                )));
            }
        }
        let plan = network::plan(&self.cfg.network, &self.cfg.fs_root, &spec.network)?;
        let bridge = match &plan {
            NetworkPlan::Bridged(b) => {
                let v4 = match b.v4() {
                    true => Some(self.ensure_vnet(b).await?),
                    false => None,
                };
                let v6 = match b.v6() {
                    true => Some(self.ensure_vnet6().await?),
                    false => None,
                };
                Some((v4, v6))
            }
            NetworkPlan::Alias(addrs) => {
                // pot's create checks each NIC with `ifconfig NIC`.
                let nics: std::collections::BTreeSet<&str> =
                    addrs.iter().map(|a| a.nic.as_str()).collect();
                for nic in nics {
                    if !self
                        .host
                        .iface_exists(nic)
                        .await
                        .map_err(EngineError::host(pot.as_str()))?
                    {
                        return Err(EngineError::InvalidInput(format!(
                            "network interface {nic} (of ip) does not exist"
                        )));
                    }
                }
                None
            }
            NetworkPlan::Inherit => None,
        };
        let events = |msg: String| self.event(&pot, msg);
        let imported = image::ensure_imported(
            &self.host,
            &self.images,
            &self.cfg.jails_dataset(),
            &self.cfg.cache_dir,
            &spec.image,
            &events,
        )
        .await?;
        let image_conf_path = self
            .cfg
            .jails_dir()
            .join(spec.image.local_name())
            .join("conf/pot.conf");
        let image_conf = std::fs::read_to_string(&image_conf_path)
            .map(|t| PotConf::parse(&t))
            .map_err(EngineError::io(pot.as_str(), "read", &image_conf_path))?;
        let argv = command::resolve(
            spec.command.as_deref(),
            &spec.args,
            image_conf.get_raw("pot.cmd"),
            self.cfg.args_quote_compat,
        )?;
        let paths = PotPaths::new(&self.cfg.jails_dir(), &pot);
        let hostname = layout::usable_hostname(
            &pot,
            &nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default(),
            HOSTNAME_MAX_LENGTH,
        );
        let conf = layout::clone_conf(
            &image_conf,
            &hostname,
            &layout::command_line(&argv.argv),
            spec.memory_mb,
        );
        let (conf, ip) = self
            .clone_pot(&pot, &imported, &paths, &spec.owner, conf, &plan)
            .await?;
        let attach = match (&plan, ip, bridge) {
            (NetworkPlan::Bridged(b), Some(ip), Some((bridge4, bridge6))) => Attach::Bridge {
                bridge4,
                bridge6,
                plan: b,
                record: NetworkRecord {
                    // An ipv6 pot keeps its IPv4 in pot.conf (as pot does) but has no use for it.
                    ip: b.v4().then_some(ip),
                    ports: b.ports.clone(),
                    ..Default::default()
                },
            },
            (NetworkPlan::Alias(addrs), _, _) => Attach::Alias(addrs),
            _ => Attach::Inherit,
        };
        match self
            .boot(&spec, &paths, &conf, &hostname, attach, &argv)
            .await
        {
            Ok(instance) => Ok(instance),
            Err(e) => {
                if let Err(cleanup) = self.teardown(&pot).await {
                    tracing::error!(pot = %pot, error = %cleanup, "rollback after failed start left debris");
                }
                Err(e)
            }
        }
    }

    /// `pot clone` of a single pot: a dataset for the pot, a ZFS clone of the image's root and
    /// its pot.conf, with the address picked (see [`network`]). Runs under pot's global lock so
    /// a `pot` CLI on the same host sees a consistent tree and never takes the same address.
    async fn clone_pot(
        &self,
        pot: &PotName,
        imported: &image::Imported,
        paths: &PotPaths,
        owner: &str,
        mut conf: PotConf,
        plan: &NetworkPlan,
    ) -> Result<(PotConf, Option<std::net::Ipv4Addr>), EngineError> {
        let dataset = format!("{}/{}", self.cfg.jails_dataset(), pot);
        let host_err = EngineError::host(pot.as_str());
        // Pot names come from Nomad's task ids, so an existing one is debris of our own
        // interrupted start.
        if self.host.zfs_exists(&dataset).await.map_err(host_err)? {
            self.teardown(pot).await?;
        }
        let _lock = self.global_lock(pot).await?;
        let ip = self.assign_network(plan, &mut conf)?;
        self.host
            .zfs_create(&dataset, &[(OWNER_PROPERTY, owner)])
            .await
            .map_err(EngineError::host(pot.as_str()))?;
        let snapshot = format!("{}/m@{}", imported.dataset, imported.snapshot);
        if let Err(e) = self
            .host
            .zfs_clone(&snapshot, &format!("{dataset}/m"), &paths.root)
            .await
        {
            let _ = self.host.zfs_destroy_recursive(&dataset).await;
            return Err(EngineError::host(pot.as_str())(e));
        }
        let p = pot.as_str();
        let written = std::fs::create_dir_all(&paths.conf_dir)
            .map_err(EngineError::io(p, "create", &paths.conf_dir))
            .and_then(|_| {
                write_file(
                    p,
                    &paths.conf_dir.join("pot.conf"),
                    conf.render().as_bytes(),
                )
            });
        if let Err(e) = written {
            let _ = self.host.zfs_destroy_recursive(&dataset).await;
            return Err(e);
        }
        Ok((conf, ip))
    }

    async fn boot(
        &self,
        spec: &TaskSpec,
        paths: &PotPaths,
        conf: &PotConf,
        hostname: &str,
        attach: Attach<'_>,
        argv: &Argv,
    ) -> Result<Arc<Instance>, EngineError> {
        let pot = &spec.pot;
        let p = pot.as_str();
        write_file(
            p,
            &paths.conf_dir.join("fscomp.conf"),
            layout::fscomp_lines(&spec.mounts).as_bytes(),
        )?;
        for m in &spec.mounts {
            let target = paths.root.join(m.target.trim_start_matches('/'));
            std::fs::create_dir_all(&target).map_err(EngineError::io(p, "create", &target))?;
            self.host
                .mount_nullfs(&m.source, &target, m.readonly)
                .await
                .map_err(EngineError::host(p))?;
        }
        let osrelease = conf.get("osrelease").unwrap_or_default();
        let mut params = jail_params(pot, hostname, &osrelease, &paths.root);
        let mut record = None;
        match attach {
            Attach::Bridge {
                bridge4,
                bridge6,
                plan,
                record: mut rec,
            } => {
                self.save_record(pot, &rec)?;
                params.flag("vnet");
                let mut jail_ifs = (None, None);
                if let Some(b) = bridge4 {
                    let jail_if = self.plug_epair(pot, &b, '4', &mut rec).await?;
                    params.set("vnet.interface", jail_if.clone());
                    jail_ifs.0 = Some(jail_if);
                }
                if let Some(b) = bridge6 {
                    let jail_if = self.plug_epair(pot, &b, '6', &mut rec).await?;
                    params.set("vnet.interface", jail_if.clone());
                    jail_ifs.1 = Some(jail_if);
                }
                record = Some((jail_ifs, plan, rec));
            }
            Attach::Alias(aliases) => {
                // Recorded first: jail(8) adds the aliases and they outlive the jail.
                self.save_record(
                    pot,
                    &NetworkRecord {
                        aliases: aliases.to_vec(),
                        ..Default::default()
                    },
                )?;
                let (v4, v6) = network::alias_jail_params(aliases);
                if !v4.is_empty() {
                    params.set("ip4.addr", v4);
                }
                if !v6.is_empty() {
                    params.set("ip6.addr", v6);
                }
            }
            Attach::Inherit => {
                // pot's inherit: the host's stacks that the pot's stack names.
                let stack = self.cfg.network.stack;
                if stack != super::Stack::Ipv6 {
                    params.set("ip4", "inherit");
                }
                if stack != super::Stack::Ipv4 {
                    params.set("ip6", "inherit");
                }
            }
        }
        self.host
            .jail_create(&params)
            .await
            .map_err(EngineError::host(p))?;
        let mut relays = Vec::new();
        if let Some(((jail_if4, jail_if6), plan, mut rec)) = record {
            if let (Some(jail_if), Some(ip)) = (jail_if4, rec.ip) {
                self.configure_jail_net(pot, &jail_if, ip, plan).await?;
                self.publish_ports(pot, ip, &mut rec).await?;
                relays = network::relays(&rec);
            }
            if let Some(jail_if) = jail_if6 {
                self.configure_jail_net6(pot, &jail_if).await?;
            }
            self.configure_jail_lo0(pot).await?;
        }
        for i in &argv.unquoted_args {
            self.event(
                pot,
                format!("args[{i}]: removed one pair of outer quotes (args_quote_compat)"),
            );
        }
        self.spawn_task(spec, &argv.argv, relays).await
    }

    /// Hands the task to its supervisor (see [`shim`]), which runs it through jexec in its own
    /// session with stdout and stderr on Nomad's log FIFOs, and watches for its exit.
    async fn spawn_task(
        &self,
        spec: &TaskSpec,
        argv: &[String],
        relays: Vec<super::relay::Relay>,
    ) -> Result<Arc<Instance>, EngineError> {
        let pot = &spec.pot;
        let p = pot.as_str();
        let mut env = spec.env.clone();
        env.entry("PATH".to_string())
            .or_insert_with(|| DEFAULT_JAIL_PATH.to_string());
        let invocation = self
            .host
            .jexec_invocation(&JexecSpec {
                jail: p.to_string(),
                argv: argv.to_vec(),
                env,
            })
            .map_err(EngineError::host(p))?;
        let state_dir = self.task_state_dir(pot);
        std::fs::create_dir_all(&state_dir).map_err(EngineError::io(p, "create", &state_dir))?;
        let shim_spec = shim::ShimSpec {
            invocation,
            stdout: spec.stdout.clone(),
            stderr: spec.stderr.clone(),
            state_dir: state_dir.clone(),
            relays,
        };
        let mut cmd = tokio::process::Command::new(&self.supervisor);
        cmd.arg("shim")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        // SAFETY: setsid is async-signal-safe. Its own session keeps the supervisor and the task
        // away from signals aimed at the agent's or the plugin's process group.
        unsafe {
            cmd.pre_exec(|| {
                nix::unistd::setsid()
                    .map(drop)
                    .map_err(std::io::Error::from)
            });
        }
        let mut child = cmd.spawn().map_err(EngineError::io(
            p,
            "start the task supervisor",
            &self.supervisor,
        ))?;
        let reply = self.supervisor_reply(pot, &mut child, &shim_spec).await?;
        let started = reply
            .strip_prefix("started ")
            .ok_or_else(|| EngineError::State {
                pot: p.to_string(),
                reason: reply
                    .strip_prefix("error ")
                    .unwrap_or("the task supervisor exited without starting the task")
                    .to_string(),
            })?;
        tracing::debug!(pot = %pot, task_pid = started, "task running");
        let pids: shim::Pids =
            read_json(&state_dir.join(shim::PIDS_FILE)).ok_or_else(|| EngineError::State {
                pot: p.to_string(),
                reason: "the task supervisor recorded no pids".to_string(),
            })?;
        write_file(p, &self.status_file(pot), b"pot.status=started,\n")?;
        let (tx, rx) = watch::channel(None);
        tokio::spawn(async move {
            // Reaps the supervisor; its exit means the status is on disk (or lost).
            let _ = child.wait().await;
            let _ = tx.send(Some(exit_after_supervisor(&state_dir, pids.task).await));
        });
        Ok(self.track(pot, pids, rx))
    }

    /// Sends the spec to the supervisor and reads its one-line answer.
    async fn supervisor_reply(
        &self,
        pot: &PotName,
        child: &mut tokio::process::Child,
        spec: &shim::ShimSpec,
    ) -> Result<String, EngineError> {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        let p = pot.as_str();
        let talk = EngineError::io(p, "talk to the task supervisor", &self.supervisor);
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let bytes = serde_json::to_vec(spec).expect("shim spec serializes");
        stdin.write_all(&bytes).await.map_err(talk)?;
        drop(stdin);
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut line = String::new();
        let deadline = shim::FIFO_OPEN_TIMEOUT + Duration::from_secs(10);
        tokio::time::timeout(
            deadline,
            tokio::io::BufReader::new(stdout).read_line(&mut line),
        )
        .await
        .map_err(|_| EngineError::State {
            pot: p.to_string(),
            reason: format!("the task supervisor did not answer within {deadline:?}"),
        })?
        .map_err(EngineError::io(
            p,
            "read from the task supervisor",
            &self.supervisor,
        ))?;
        Ok(line.trim_end().to_string())
    }

    fn track(
        &self,
        pot: &PotName,
        pids: shim::Pids,
        exit: watch::Receiver<Option<ExitInfo>>,
    ) -> Arc<Instance> {
        let instance = Arc::new(Instance {
            pot: pot.clone(),
            pid: pids.task,
            started_at_ms: pids.started_at_ms,
            exit,
        });
        self.instances
            .lock()
            .expect("instances poisoned")
            .insert(pot.clone(), instance.clone());
        instance
    }

    /// The tracked instance of `pot`, if this process knows it.
    pub fn instance(&self, pot: &PotName) -> Option<Arc<Instance>> {
        self.instances
            .lock()
            .expect("instances poisoned")
            .get(pot)
            .cloned()
    }

    /// Re-attaches to a task started by an earlier plugin process, through what its supervisor
    /// left in the task's state dir: the pids while it runs, the exit status once it is done.
    pub async fn recover(&self, pot: &PotName) -> Result<Arc<Instance>, EngineError> {
        if let Some(instance) = self.instance(pot) {
            return Ok(instance);
        }
        let p = pot.as_str();
        let dir = self.task_state_dir(pot);
        let pids: shim::Pids = read_json(&dir.join(shim::PIDS_FILE))
            .ok_or_else(|| EngineError::NotFound { pot: p.to_string() })?;
        let exit = read_json::<ExitInfo>(&dir.join(shim::EXIT_FILE));
        if exit.is_none() && !alive(pids.shim) && !alive(pids.task) {
            return Err(EngineError::State {
                pot: p.to_string(),
                reason: "the task is no longer running and left no exit status".to_string(),
            });
        }
        let (tx, rx) = watch::channel(exit);
        if rx.borrow().is_none() {
            tokio::spawn(async move {
                let info = loop {
                    if let Some(info) = read_json(&dir.join(shim::EXIT_FILE)) {
                        break info;
                    }
                    if !alive(pids.shim) {
                        break exit_after_supervisor(&dir, pids.task).await;
                    }
                    tokio::time::sleep(RECOVERED_POLL).await;
                };
                let _ = tx.send(Some(info));
            });
        }
        Ok(self.track(pot, pids, rx))
    }

    /// Sends `signal` to the task's main process.
    pub fn signal(&self, pot: &PotName, signal: Signal) -> Result<(), EngineError> {
        let inst = self.instance(pot).ok_or_else(|| EngineError::NotFound {
            pot: pot.to_string(),
        })?;
        if inst.exit().is_some() {
            return Err(EngineError::State {
                pot: pot.to_string(),
                reason: "the task has exited".to_string(),
            });
        }
        kill(Pid::from_raw(inst.pid as i32), signal).map_err(|e| EngineError::State {
            pot: pot.to_string(),
            reason: format!("kill {signal} to pid {}: {e}", inst.pid),
        })
    }

    /// Sends `signal`, waits up to `timeout` for the task to exit, then kills every process of
    /// the jail and removes the jail. A task already gone is fine.
    pub async fn stop(
        &self,
        pot: &PotName,
        signal: Signal,
        timeout: Duration,
    ) -> Result<(), EngineError> {
        if let Some(inst) = self.instance(pot).filter(|i| i.exit().is_none()) {
            let exited = !timeout.is_zero()
                && kill(Pid::from_raw(inst.pid as i32), signal).is_ok()
                && inst.wait_timeout(timeout).await.is_some();
            if !exited {
                if !timeout.is_zero() {
                    self.event(
                        pot,
                        format!("task did not exit within {timeout:?} after {signal}: killing it"),
                    );
                }
                self.remove_jail(pot).await?;
                if inst.wait_timeout(KILL_GRACE).await.is_none() {
                    return Err(EngineError::State {
                        pot: pot.to_string(),
                        reason: format!("pid {} survived removal of its jail", inst.pid),
                    });
                }
            }
        }
        self.remove_jail(pot).await
    }

    async fn remove_jail(&self, pot: &PotName) -> Result<(), EngineError> {
        match self.host.jail_remove(pot.as_str(), true).await {
            Err(e) if !e.is_absent() => Err(EngineError::host(pot.as_str())(e)),
            _ => Ok(()),
        }
    }

    /// Kills the task if needed and removes every trace of the pot.
    pub async fn destroy(&self, pot: &PotName) -> Result<(), EngineError> {
        self.stop(pot, Signal::SIGKILL, Duration::ZERO).await?;
        self.teardown(pot).await?;
        self.instances
            .lock()
            .expect("instances poisoned")
            .remove(pot);
        Ok(())
    }

    /// Removes the jail, the mounts under the jail root, the pot's datasets and files, and the
    /// task's state. Each step accepts that its object is already gone.
    pub(super) async fn teardown(&self, pot: &PotName) -> Result<(), EngineError> {
        let p = pot.as_str();
        let paths = PotPaths::new(&self.cfg.jails_dir(), pot);
        self.remove_jail(pot).await?;
        self.unplug(pot).await?;
        let mut mounts: Vec<PathBuf> = self
            .host
            .mounts()
            .await
            .map_err(EngineError::host(p))?
            .into_iter()
            // The pot's own datasets go with `zfs destroy`; nullfs, devfs and tmpfs are ours.
            .filter(|m| m.fstype != "zfs" && m.target.starts_with(&paths.root))
            .map(|m| m.target)
            .collect();
        // Deepest first, like pot's bottom-up fscomp.conf walk.
        mounts.sort_by_key(|t| std::cmp::Reverse(t.components().count()));
        for target in mounts {
            match self.host.unmount(&target).await {
                Err(e) if !e.is_absent() => return Err(EngineError::host(p)(e)),
                _ => {}
            }
        }
        match self
            .host
            .zfs_destroy_recursive(&format!("{}/{}", self.cfg.jails_dataset(), p))
            .await
        {
            Err(e) if !e.is_absent() => return Err(EngineError::host(p)(e)),
            _ => {}
        }
        remove_all(p, &paths.dir)?;
        remove_all(p, &self.status_file(pot))?;
        remove_all(p, &self.task_state_dir(pot))
    }

    /// Current resource usage of the task's jail.
    pub async fn usage(&self, pot: &PotName) -> Result<crate::host::ResourceUsage, EngineError> {
        self.host
            .rctl_usage(pot.as_str())
            .await
            .map_err(EngineError::host(pot.as_str()))
    }

    async fn global_lock(
        &self,
        pot: &PotName,
    ) -> Result<nix::fcntl::Flock<std::fs::File>, EngineError> {
        let path = self.cfg.lock_file.clone();
        let p = pot.to_string();
        tokio::task::spawn_blocking(move || {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&path)
                .map_err(EngineError::io(&p, "open lock file", &path))?;
            nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).map_err(
                |(_, errno)| EngineError::io(&p, "lock", &path)(std::io::Error::from(errno)),
            )
        })
        .await
        .expect("lock task panicked")
    }

    pub(super) fn task_state_dir(&self, pot: &PotName) -> PathBuf {
        self.cfg.state_dir.join("tasks").join(pot.as_str())
    }

    /// pot's status file, so that `pot` commands see the pot as started.
    fn status_file(&self, pot: &PotName) -> PathBuf {
        self.cfg.tmp_dir.join(format!("pot_status_{pot}"))
    }
}

/// jail(8) parameters as pot's `_js_start` builds them for a non-rc pot, up to the network ones,
/// except that the jail persists until the driver removes it (no placeholder `sleep` process).
fn jail_params(pot: &PotName, hostname: &str, osrelease: &str, root: &Path) -> JailParams {
    let mut p = JailParams::default();
    p.set("allow.set_hostname", "false")
        .flag("allow.raw_sockets")
        .flag("allow.socket_af")
        .flag("allow.chflags")
        .flag("exec.clean")
        .flag("mount.devfs")
        .set("enforce_statfs", "2")
        .set("sysvshm", "new")
        .set("sysvsem", "new")
        .set("sysvmsg", "new")
        .set("children.max", "0")
        .set("devfs_ruleset", "4")
        .set("stop.timeout", "10")
        .set("name", pot.as_str())
        .set("host.hostname", hostname);
    if !osrelease.is_empty() {
        p.set("osrelease", osrelease);
    }
    p.set("path", root.display().to_string()).flag("persist");
    p
}

/// How the jail joins the network, decided before the clone.
enum Attach<'a> {
    Inherit,
    Bridge {
        /// The IPv4 and IPv6 bridges the pot's stack joins.
        bridge4: Option<String>,
        bridge6: Option<String>,
        plan: &'a BridgePlan,
        record: NetworkRecord,
    },
    Alias(&'a [network::AliasAddr]),
}

/// How a recovered task's supervisor is watched: it is not our child, so it is polled.
const RECOVERED_POLL: Duration = Duration::from_millis(200);

/// Whether `pid` runs. A zombie does not: an orphan is only reaped when its new parent gets to
/// it, which some init processes (of containers, for one) never do. Where /proc exists its
/// state says so; elsewhere a zombie is gone as soon as init reaps it.
pub(super) fn alive(pid: u32) -> bool {
    kill(Pid::from_raw(pid as i32), None).is_ok() && !is_zombie(pid)
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // The state follows the parenthesised command name, which may itself contain ')'.
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            == Some("Z")
    })
}

/// The task's status once its supervisor is gone: recorded, or lost if the supervisor was
/// killed before its task (then we can only wait for the task itself to go).
async fn exit_after_supervisor(state_dir: &Path, task_pid: u32) -> ExitInfo {
    if let Some(info) = read_json(&state_dir.join(shim::EXIT_FILE)) {
        return info;
    }
    while alive(task_pid) {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    read_json(&state_dir.join(shim::EXIT_FILE)).unwrap_or_else(|| {
        ExitInfo::unknown(
            "the task supervisor died before its task: exit status unknown".to_string(),
        )
    })
}

pub(super) fn exit_info(status: std::process::ExitStatus) -> ExitInfo {
    use std::os::unix::process::ExitStatusExt;
    ExitInfo {
        exit_code: status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
        signal: status.signal().unwrap_or(0),
        finished_at_ms: now_ms(),
        error: None,
    }
}

pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn write_file(pot: &str, path: &Path, bytes: &[u8]) -> Result<(), EngineError> {
    write_atomic(path, bytes).map_err(EngineError::io(pot, "write", path))
}

/// Writes through a temporary file and a rename, so readers never see half a file.
pub(super) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

pub(super) fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

fn remove_all(pot: &str, path: &Path) -> Result<(), EngineError> {
    let result = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match result {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(EngineError::io(pot, "remove", path)(e))
        }
        _ => Ok(()),
    }
}
