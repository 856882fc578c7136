//! The task lifecycle: prepare (import + clone), start (mounts, jail, jexec), wait, stop, destroy.
//!
//! Every step after the clone is undone by [`Engine::teardown`], which is idempotent and is used
//! both to roll back a failed start and to destroy a finished task.

use super::attributes::JailAttributes;
use super::command::{self, Argv, DEFAULT_JAIL_PATH};
use super::gc::Ownership;
use super::image::{self, ImageRef};
use super::jailfs;
use super::layout::{self, MountSpec, OWNER_PROPERTY, PotName, PotPaths};
use super::limits::Limits;
use super::mounts::{MountRecord, RecordedMount};
use super::network::{self, BridgePlan, NetworkPlan, NetworkRecord, NetworkRequest};
use super::options::{self, CopyIn, Dns, HostEntry, HostMount, HostPathPolicy};
use super::potconf::PotConf;
use super::state::{
    EXIT_FILE, ExitInfo, PIDS_FILE, Pids, SHIM_PID_FILE, alive, read_json, write_atomic,
};
use super::status::{self, State};
use super::{Engine, EngineError, files};
use super::{state, supervisor};
use crate::host::{JailParams, JexecSpec, RctlAction, RctlRule};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// What pot's `inherit` DNS mode copies into the jail.
const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";
/// How long a killed task may take to be reaped.
const KILL_GRACE: Duration = Duration::from_secs(10);
/// pot's `POT_HOSTNAME_MAX_LENGTH`.
const HOSTNAME_MAX_LENGTH: usize = 64;
/// Far more than any image's pot.conf; a bigger one is refused rather than read whole.
const POT_CONF_LIMIT: u64 = 1 << 20;

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
    /// The task's dir (`<alloc_dir>/<task>`) and its allocation's dir on the host.
    pub task_dir: PathBuf,
    pub alloc_dir: PathBuf,
    /// The driver's own mounts (`/local`, `/secrets`, `/alloc`).
    pub mounts: Vec<MountSpec>,
    /// Host directories the job asked for, checked against `allowed_host_paths`.
    pub host_mounts: Vec<HostMount>,
    pub copies: Vec<CopyIn>,
    pub extra_hosts: Vec<HostEntry>,
    /// `(attribute, value)` pairs of the job's `attributes`.
    pub attributes: Vec<(String, String)>,
    /// The jail user the task runs as; root when `None`.
    pub user: Option<String>,
    /// Resolver settings for the jail; pot's `inherit` (the host's resolv.conf) when `None`.
    pub dns: Option<Dns>,
    pub limits: Limits,
    /// Who the pot belongs to (Nomad's task id), recorded on its dataset.
    pub owner: String,
    pub network: NetworkRequest,
}

/// A task's job options after every check: what boot applies, host paths already resolved.
struct CheckedOptions {
    mounts: Vec<MountSpec>,
    copies: Vec<(PathBuf, String)>,
    /// Empty when racct is off and only Nomad's own resources asked for limits.
    rctl_rules: Vec<RctlRule>,
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
            finished_at_ms: state::now_ms(),
            error: Some("task waiter vanished".to_string()),
            memory_limit_hit: None,
        })
    }

    async fn wait_timeout(&self, timeout: Duration) -> Option<ExitInfo> {
        tokio::time::timeout(timeout, self.wait()).await.ok()
    }
}

impl Engine {
    /// Prepares and starts `spec`. On failure everything created so far is removed again.
    pub async fn start(&self, spec: TaskSpec) -> Result<Arc<Instance>, EngineError> {
        let _starting = self.mark_starting(&spec.pot)?;
        let pot = spec.pot.clone();
        // Nomad retries StartTask with the same task id after a plugin crash: adopt the task
        // if it was started, clean up if a start was interrupted half-way.
        if let Some(instance) = self.instance(&pot) {
            return Ok(instance);
        }
        if self.task_state_dir(&pot).join(PIDS_FILE).exists() {
            match self.recover(&pot).await {
                Ok(instance) => return Ok(instance),
                Err(e) => tracing::info!(pot = %pot, reason = %e, "cleaning up an earlier start"),
            }
        } else {
            self.kill_unstarted_supervisor(&pot).await;
        }
        // Everything that can be checked without the host is checked first: bad input changes nothing.
        let argv = match spec.command.is_some() || !spec.args.is_empty() {
            true => {
                command::resolve(
                    spec.command.as_deref(),
                    &spec.args,
                    None,
                    self.cfg.args_quote_compat,
                )?
                .argv
            }
            false => Vec::new(),
        };
        command::check_exec(&argv, &spec.env)?;
        spec.image.check_source(&self.cfg.allowed_image_dirs)?;
        for m in &spec.mounts {
            if !m.source.is_dir() {
                return Err(EngineError::InvalidInput(format!(
                    "mount source {} is not a directory",
                    m.source.display()
                )));
            }
        }
        let mut checked = self.check_options(&spec)?;
        checked.rctl_rules = self.plan_rctl(&pot, &spec.limits).await?;
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
                self.check_alias_addresses(&pot, addrs).await?;
                None
            }
            NetworkPlan::Inherit => None,
        };
        let events = |msg: String| self.event(&pot, msg);
        // Held until the clone exists, so an image GC cannot remove the image in between.
        let (imported, image_lock) =
            image::ensure_imported(&self.host, &self.images, &self.cfg, &spec.image, &events)
                .await?;
        let image_conf_path = self
            .cfg
            .jails_dir()
            .join(imported.local_name())
            .join("conf/pot.conf");
        // The image's own file: read like every file a job controls (see `files`).
        let conf_path = image_conf_path.clone();
        let image_conf = files::off_runtime(move || {
            files::read_regular(&conf_path, POT_CONF_LIMIT)?
                .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
        })
        .await
        .map(|bytes| PotConf::parse(&String::from_utf8_lossy(&bytes)))
        .map_err(EngineError::io(pot.as_str(), "read", &image_conf_path))?;
        let argv = command::resolve(
            spec.command.as_deref(),
            &spec.args,
            image_conf.get_raw("pot.cmd"),
            self.cfg.args_quote_compat,
        )?;
        command::check_exec(&argv.argv, &spec.env)?;
        let paths = PotPaths::new(&self.cfg.jails_dir(), &pot);
        let hostname = layout::usable_hostname(
            &pot,
            &nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default(),
            HOSTNAME_MAX_LENGTH,
        );
        let (conf, attributes) = self.pot_conf(&spec, &image_conf, &hostname, &argv)?;
        let (conf, ip) = self
            .clone_pot(&pot, &imported, &paths, &spec.owner, conf, &plan)
            .await?;
        drop(image_lock);
        if let Some(max) = self.cfg.image.cache_max
            && let Err(e) = self.gc_images(max, false).await
        {
            tracing::warn!(error = %e, "image cache GC failed");
        }
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
        let booted = self
            .boot(
                &spec,
                &checked,
                &paths,
                Booting {
                    conf: &conf,
                    hostname: &hostname,
                    attributes: &attributes,
                    attach,
                },
                &argv,
            )
            .await;
        match booted {
            Ok(instance) => Ok(instance),
            Err(e) => {
                if let Err(cleanup) = self.teardown(&pot).await {
                    tracing::error!(pot = %pot, error = %cleanup, "rollback after failed start left debris");
                }
                Err(e)
            }
        }
    }

    /// Checks the job's host paths, jail paths, hosts and attributes, before anything changes.
    fn check_options(&self, spec: &TaskSpec) -> Result<CheckedOptions, EngineError> {
        let policy = HostPathPolicy {
            task_dir: &spec.task_dir,
            alloc_dir: &spec.alloc_dir,
            allowed: &self.cfg.allowed_host_paths,
        };
        let mut mounts = Vec::new();
        // One mount per jail path: a second would hide the first. `//` and a trailing `/`
        // name the same path.
        let mut targets: BTreeMap<PathBuf, &str> = spec
            .mounts
            .iter()
            .map(|m| {
                (
                    Path::new(&m.target).components().collect(),
                    "the task's own mounts",
                )
            })
            .collect();
        for m in &spec.host_mounts {
            options::check_mount_target(&m.origin, &m.target)?;
            let normal: PathBuf = Path::new(&m.target).components().collect();
            if let Some(first) = targets.insert(normal, &m.origin) {
                return Err(EngineError::InvalidInput(format!(
                    "{}: jail path {:?} is already a mount target (of {first})",
                    m.origin, m.target
                )));
            }
            let source = policy.authorize(&m.origin, &m.source)?;
            options::check_mount_source(&m.origin, &source)?;
            mounts.push(MountSpec {
                source,
                target: m.target.clone(),
                readonly: m.readonly,
            });
        }
        let mut copies = Vec::new();
        for c in &spec.copies {
            options::check_jail_path(&c.origin, &c.target)?;
            let source = policy.authorize(&c.origin, &c.source)?;
            if !source.is_file() && !source.is_dir() {
                return Err(EngineError::InvalidInput(format!(
                    "{}: host path {} is not a regular file or directory",
                    c.origin,
                    source.display()
                )));
            }
            copies.push((source, c.target.clone()));
        }
        for h in &spec.extra_hosts {
            h.check()?;
        }
        if let Some(user) = &spec.user {
            options::check_user(user)?;
        }
        if let Some(dns) = &spec.dns {
            dns.check()?;
        }
        // Checked against pot's defaults here; applied over the image's values in boot.
        JailAttributes::from_job(
            JailAttributes::default(),
            &spec.attributes,
            &self.cfg.allowed_attributes,
        )?;
        Ok(CheckedOptions {
            mounts,
            copies,
            rctl_rules: Vec::new(),
        })
    }

    /// The rctl rules for the task. rctl needs racct (`kern.racct.enable=1`, a boot-time
    /// tunable): without it, limits the job set itself fail the start before anything changes,
    /// while Nomad's memory and cpu are only reported as not enforced, as pot does.
    async fn plan_rctl(
        &self,
        pot: &PotName,
        limits: &Limits,
    ) -> Result<Vec<RctlRule>, EngineError> {
        let p = pot.as_str();
        let report_memory = self.cfg.devd_socket.is_some();
        if limits.rules(p, 1, report_memory).is_empty() {
            return Ok(Vec::new());
        }
        let racct = self
            .host
            .sysctl("kern.racct.enable")
            .await
            .is_ok_and(|v| v == "1");
        if !racct {
            if limits.has_explicit_rctl() {
                return Err(EngineError::State {
                    pot: p.to_string(),
                    reason: "the job sets rctl limits but kern.racct.enable is 0 (set kern.racct.enable=1 in /boot/loader.conf and reboot)".to_string(),
                });
            }
            self.event(
                pot,
                "memory and cpu limits are not enforced: kern.racct.enable is 0".to_string(),
            );
            return Ok(Vec::new());
        }
        let ncpu = match limits.cpu_share {
            None => 1,
            Some(_) => {
                let v = self
                    .host
                    .sysctl("hw.ncpu")
                    .await
                    .map_err(EngineError::host(p))?;
                v.parse().map_err(|_| EngineError::State {
                    pot: p.to_string(),
                    reason: format!("hw.ncpu is {v:?}, not a number"),
                })?
            }
        };
        Ok(limits.rules(p, ncpu, report_memory))
    }

    /// What `pot clone` + `pot prepare` would leave in the pot's pot.conf, before the network
    /// keys; and the jail attributes, the image's under the job's.
    fn pot_conf(
        &self,
        spec: &TaskSpec,
        image_conf: &PotConf,
        hostname: &str,
        argv: &Argv,
    ) -> Result<(PotConf, JailAttributes), EngineError> {
        let mut conf = layout::clone_conf(
            image_conf,
            hostname,
            &layout::command_line(&argv.argv),
            spec.limits.memory_bytes.map(|b| (b >> 20) as i64),
        );
        if !spec.limits.cpus.is_empty() {
            conf.set("pot.rss.cpus", spec.limits.cpus.len().to_string());
        }
        let attributes = JailAttributes::from_job(
            JailAttributes::from_image(image_conf),
            &spec.attributes,
            &self.cfg.allowed_attributes,
        )?;
        attributes.write_conf(&mut conf);
        if spec.dns.is_some() {
            conf.set("pot.dns", "custom");
        }
        conf.set_all("pot.hosts", &hosts_lines(spec));
        Ok((conf, attributes))
    }

    /// `pot clone` of a single pot: a dataset for the pot, its pot.conf with the address picked
    /// (see [`network`]) and a ZFS clone of the image's root. pot holds its global lock for all
    /// of it; only a picked address needs it (a `pot` CLI on the same host must never take the
    /// same one), so it is taken for bridged pots only and released once the pot.conf that
    /// records the address is written, before the clone: concurrent starts no longer queue
    /// behind each other's `zfs clone`.
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
        let p = pot.as_str();
        // Pot names come from Nomad's task ids, so one made for this task is debris of its own
        // interrupted start; anything else of that name is not ours to remove.
        match self.ownership(pot).await? {
            Ownership::Absent => {}
            Ownership::Task(id) if id == owner => self.teardown(pot).await?,
            Ownership::Task(id) => {
                return Err(EngineError::State {
                    pot: p.to_string(),
                    reason: format!("the pot already exists for task {id}"),
                });
            }
            Ownership::Foreign => return Err(not_ours(p)),
        }
        let lock = match plan {
            NetworkPlan::Bridged(_) | NetworkPlan::Alias(_) => Some(self.global_lock(p).await?),
            NetworkPlan::Inherit => None,
        };
        if let NetworkPlan::Alias(addrs) = plan {
            // Again under the lock: a concurrent start may have claimed one since the check.
            network::check_alias_unclaimed(&self.cfg.fs_root, pot, addrs)?;
        }
        // Before any change, so a refused address leaves nothing behind.
        let ip = self.assign_network(plan, &mut conf)?;
        self.host
            .zfs_create(&dataset, &[(OWNER_PROPERTY, &layout::owner_value(owner))])
            .await
            .map_err(EngineError::host(p))?;
        let cloned = async {
            std::fs::create_dir_all(&paths.conf_dir).map_err(EngineError::io(
                p,
                "create",
                &paths.conf_dir,
            ))?;
            write_file(
                p,
                &paths.conf_dir.join("pot.conf"),
                conf.render().as_bytes(),
            )?;
            drop(lock);
            let snapshot = format!("{}/m@{}", imported.dataset, imported.snapshot);
            self.host
                .zfs_clone(&snapshot, &format!("{dataset}/m"), &paths.root)
                .await
                .map_err(EngineError::host(p))?;
            Ok(())
        }
        .await;
        match cloned {
            Ok(()) => Ok((conf, ip)),
            Err(e) => {
                let _ = self.host.zfs_destroy_recursive(&dataset).await;
                Err(e)
            }
        }
    }

    async fn boot(
        &self,
        spec: &TaskSpec,
        checked: &CheckedOptions,
        paths: &PotPaths,
        booting: Booting<'_>,
        argv: &Argv,
    ) -> Result<Arc<Instance>, EngineError> {
        let Booting {
            conf,
            hostname,
            attributes,
            attach,
        } = booting;
        let pot = &spec.pot;
        let p = pot.as_str();
        status::set(pot, &self.status_file(pot), State::Starting, "", false)?;
        if let Some(quota) = spec.limits.quota {
            self.host
                .zfs_set_quota(&format!("{}/{}", self.cfg.jails_dataset(), p), quota)
                .await
                .map_err(EngineError::host(p))?;
        }
        // pot copy-in runs before the mounts, so copies land in the pot's own file system.
        // File-system work on the job's files runs on the blocking pool from here on.
        let (root, copies) = (paths.root.clone(), checked.copies.clone());
        let copied = files::off_runtime(move || {
            for (source, target) in &copies {
                jailfs::copy_in(&root, source, Path::new(target))
                    .map_err(|e| (source.clone(), e))?;
            }
            Ok(())
        })
        .await;
        if let Err((source, e)) = copied {
            return Err(EngineError::io(p, "copy into the jail", &source)(e));
        }
        // Top-down like pot's `_pot_mount`, each target resolved inside the jail root just before
        // its mount (pot: `chroot $M realpath`), so it sees the mounts above it and a symlink in
        // the image cannot send a mount onto the host.
        let mut fscomp = Vec::new();
        let mut mounted = MountRecord::default();
        for m in spec.mounts.iter().chain(&checked.mounts) {
            let (root, in_jail) = (paths.root.clone(), m.target.clone());
            let target = files::off_runtime(move || jailfs::create_dir(&root, Path::new(&in_jail)))
                .await
                .map_err(EngineError::io(p, "create", Path::new(&m.target)))?;
            mounted.mounts.push(RecordedMount {
                source: Some(m.source.clone()),
                target: target.host.clone(),
                in_jail: target.in_jail.display().to_string(),
                readonly: m.readonly,
            });
            self.save_mounts(pot, &mounted)?;
            self.host
                .mount_nullfs(&m.source, &target.host, m.readonly)
                .await
                .map_err(EngineError::host(p))?;
            fscomp.push(MountSpec {
                target: target.in_jail.display().to_string(),
                ..m.clone()
            });
        }
        write_file(
            p,
            &paths.conf_dir.join("fscomp.conf"),
            layout::fscomp_lines(&fscomp).as_bytes(),
        )?;
        if let Some(user) = &spec.user {
            let (root, name) = (paths.root.clone(), user.clone());
            let known = files::off_runtime(move || options::jail_has_user(&root, &name))
                .await
                .map_err(EngineError::io(p, "read", Path::new("/etc/passwd")))?;
            if !known {
                return Err(EngineError::InvalidInput(format!(
                    "user {user:?} does not exist in the image's /etc/passwd"
                )));
            }
        }
        let etc_hosts = layout::etc_hosts(hostname, &hosts_lines(spec));
        let (owned, dns, paths2) = (p.to_string(), spec.dns.clone(), paths.clone());
        files::off_runtime(move || {
            write_resolv_conf(&owned, dns.as_ref(), &paths2)?;
            jailfs::write_file(
                &paths2.root,
                Path::new("/etc/hosts"),
                etc_hosts.as_bytes(),
                0o644,
            )
            .map_err(EngineError::io(&owned, "write", Path::new("/etc/hosts")))
            .map(drop)
        })
        .await?;
        let osrelease = conf.get("osrelease").unwrap_or_default();
        let mut params = jail_params(pot, hostname, &osrelease, &paths.root, attributes);
        let mut record = None;
        let aliased = matches!(attach, Attach::Alias(_));
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
                    let jail_if = self.plug_epair(pot, &b, Some(plan), &mut rec).await?;
                    params.set("vnet.interface", jail_if.clone());
                    jail_ifs.0 = Some(jail_if);
                }
                if let Some(b) = bridge6 {
                    let jail_if = self.plug_epair(pot, &b, None, &mut rec).await?;
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
        mounted.add_jail_mounts(&paths.root, attributes);
        self.save_mounts(pot, &mounted)?;
        let created = self.host.jail_create(&params).await;
        if created.is_err() && aliased {
            // A failed `jail -c` undoes the aliases it added; those still on a NIC are not
            // this start's, so the rollback must leave them.
            self.save_record(pot, &NetworkRecord::default())?;
        }
        let jid = created.map_err(EngineError::host(p))?;
        self.event(pot, format!("Jail created (jid {jid})"));
        // pot's `_js_rss`: limits go on the jail before its command starts.
        self.host
            .rctl_add(&checked.rctl_rules)
            .await
            .map_err(EngineError::host(p))?;
        if !spec.limits.cpus.is_empty() {
            self.host
                .cpuset_jail(jid, &spec.limits.cpus)
                .await
                .map_err(EngineError::host(p))?;
        }
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
        let memory_watch = checked
            .rctl_rules
            .iter()
            .any(|r| r.action == RctlAction::Devctl)
            .then(|| self.memory_watch())
            .flatten();
        self.spawn_task(spec, &argv.argv, relays, memory_watch)
            .await
    }

    /// How supervisors learn that a jail reached its memory limit, when devd is configured.
    fn memory_watch(&self) -> Option<supervisor::oom::MemoryWatch> {
        Some(supervisor::oom::MemoryWatch {
            devd_socket: self.cfg.devd_socket.clone()?,
            lock_file: self.cfg.state_dir.join("devd.lock"),
            tasks_dir: state::tasks_dir(&self.cfg.state_dir),
        })
    }

    /// Hands the task to its supervisor (see [`supervisor`]), which runs it through jexec in its own
    /// session with stdout and stderr on Nomad's log FIFOs, and watches for its exit.
    async fn spawn_task(
        &self,
        spec: &TaskSpec,
        argv: &[String],
        relays: Vec<supervisor::relay::Relay>,
        memory_watch: Option<supervisor::oom::MemoryWatch>,
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
                user: spec.user.clone(),
                argv: argv.to_vec(),
                env,
            })
            .map_err(EngineError::host(p))?;
        let state_dir = self.task_state_dir(pot);
        std::fs::create_dir_all(&state_dir).map_err(EngineError::io(p, "create", &state_dir))?;
        let shim_spec = supervisor::ShimSpec {
            invocation,
            stdout: spec.stdout.clone(),
            stderr: spec.stderr.clone(),
            state_dir: state_dir.clone(),
            relays,
            memory_watch,
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
        if let Some(pid) = child.id() {
            write_file(
                p,
                &state_dir.join(SHIM_PID_FILE),
                pid.to_string().as_bytes(),
            )?;
        }
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
        let pids: Pids =
            read_json(&state_dir.join(PIDS_FILE)).ok_or_else(|| EngineError::State {
                pot: p.to_string(),
                reason: "the task supervisor recorded no pids".to_string(),
            })?;
        let epairs = self
            .network_record(pot)
            .map(|r| r.epairs)
            .unwrap_or_default();
        status::set(
            pot,
            &self.status_file(pot),
            State::Started,
            &status::interfaces(&epairs),
            false,
        )?;
        let (tx, rx) = watch::channel(None);
        self.event(pot, format!("Task started (pid {})", pids.task));
        let (events, pot2) = (self.events.clone(), pot.clone());
        tokio::spawn(async move {
            // Reaps the supervisor; its exit means the status is on disk (or lost).
            let _ = child.wait().await;
            let info = exit_after_supervisor(&state_dir, pids.task).await;
            events(&pot2, exit_event(&info));
            let _ = tx.send(Some(info));
        });
        Ok(self.track(pot, pids, rx))
    }

    /// Kills the supervisor of a start interrupted before its task ran (the plugin died while
    /// it was still opening the log FIFOs): left alone, it would go on to start the task in
    /// the pot that replaces this one.
    async fn kill_unstarted_supervisor(&self, pot: &PotName) {
        let path = self.task_state_dir(pot).join(SHIM_PID_FILE);
        let Some(pid) = std::fs::read_to_string(&path)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
            .filter(|pid| *pid > 1)
        else {
            return;
        };
        // The supervisor is started in an existing jail: without one, the pid is not its.
        if alive(pid as u32) && self.host.jail_exists(pot.as_str()).await.unwrap_or(false) {
            tracing::info!(pot = %pot, pid, "killing the supervisor of an interrupted start");
            // It leads its own session and process group (setsid), with the jexec it may
            // have spawned.
            let _ = kill(Pid::from_raw(-pid), Signal::SIGKILL);
        }
    }

    /// Sends the spec to the supervisor and reads its one-line answer.
    async fn supervisor_reply(
        &self,
        pot: &PotName,
        child: &mut tokio::process::Child,
        spec: &supervisor::ShimSpec,
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
        let deadline = supervisor::FIFO_OPEN_TIMEOUT + Duration::from_secs(10);
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
        pids: Pids,
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
        let pids: Pids = read_json(&dir.join(PIDS_FILE))
            .ok_or_else(|| EngineError::NotFound { pot: p.to_string() })?;
        let read_exit = || read_json::<ExitInfo>(&dir.join(EXIT_FILE));
        let mut exit = read_exit();
        // A task without an exit status can only still run inside its jail; once the jail is
        // gone (a host reboot, a jail removed by hand) its pids may name other processes.
        // Each "gone" is read after the exit status, which the supervisor may have written
        // meanwhile: it writes the status before it ends, so the status is read once more.
        if exit.is_none()
            && !self
                .host
                .jail_exists(p)
                .await
                .map_err(EngineError::host(p))?
        {
            exit = read_exit();
            if exit.is_none() {
                return Err(EngineError::State {
                    pot: p.to_string(),
                    reason: "its jail is gone (the host restarted, or the jail was removed by hand) and the task left no exit status".to_string(),
                });
            }
        }
        if exit.is_none() && !alive(pids.shim) && !alive(pids.task) {
            exit = read_exit();
            if exit.is_none() {
                return Err(EngineError::State {
                    pot: p.to_string(),
                    reason: "the task is no longer running and left no exit status".to_string(),
                });
            }
        }
        let (tx, rx) = watch::channel(exit);
        if rx.borrow().is_none() {
            let (events, pot2) = (self.events.clone(), pot.clone());
            tokio::spawn(async move {
                let info = loop {
                    if let Some(info) = read_json(&dir.join(EXIT_FILE)) {
                        break info;
                    }
                    if !alive(pids.shim) {
                        break exit_after_supervisor(&dir, pids.task).await;
                    }
                    tokio::time::sleep(RECOVERED_POLL).await;
                };
                events(&pot2, exit_event(&info));
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

    /// Stops the task within `timeout` (Nomad's kill_timeout): first the pot's `exec_stop`
    /// inside the jail, for at most its `stop_timeout` and what is left of `timeout`; then, if
    /// the task still runs, `signal`; once `timeout` is over, every process of the jail is
    /// killed and the jail removed. A zero `timeout` kills at once. A task already gone is fine.
    pub async fn stop(
        &self,
        pot: &PotName,
        signal: Signal,
        timeout: Duration,
    ) -> Result<(), EngineError> {
        self.stop_task(pot, signal, timeout).await?;
        self.stopped
            .lock()
            .expect("stopped set poisoned")
            .insert(pot.clone());
        status::set(pot, &self.status_file(pot), State::Stopped, "", true)
    }

    /// [`Engine::stop`] between set-status's `stopping` and `stopped`.
    async fn stop_task(
        &self,
        pot: &PotName,
        signal: Signal,
        timeout: Duration,
    ) -> Result<(), EngineError> {
        let status_file = self.status_file(pot);
        // stop.sh carries the interfaces over into `stopping`.
        let interfaces = std::fs::read_to_string(&status_file)
            .map(|t| status::interfaces_of(&t))
            .unwrap_or_default();
        status::set(pot, &status_file, State::Stopping, &interfaces, true)?;
        if let Some(inst) = self.instance(pot).filter(|i| i.exit().is_none()) {
            // `timeout` may come from a client: far enough to overflow the clock is forever.
            let deadline = tokio::time::Instant::now().checked_add(timeout);
            let exited = !timeout.is_zero() && {
                self.exec_stop(pot, timeout).await;
                if inst.exit().is_none() {
                    // A failure means the process is already gone; the wait then ends at once.
                    let _ = kill(Pid::from_raw(inst.pid as i32), signal);
                }
                let left = deadline.map_or(timeout, |d| {
                    d.saturating_duration_since(tokio::time::Instant::now())
                });
                inst.wait_timeout(left).await.is_some()
            };
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
                self.remove_shm(pot).await?;
                return self.remove_rctl_rules(pot).await;
            }
        }
        // The task is gone; its jail may still hold other processes.
        self.remove_jail(pot).await?;
        self.remove_shm(pot).await?;
        self.remove_rctl_rules(pot).await
    }

    /// `rctl -r jail:<pot>`. pot leaves rctl rules behind forever (they are keyed by jail name,
    /// not by jail); we remove them once the jail is gone.
    async fn remove_rctl_rules(&self, pot: &PotName) -> Result<(), EngineError> {
        match self.host.rctl_remove_jail(pot.as_str()).await {
            Err(e) if !e.is_absent() => Err(EngineError::host(pot.as_str())(e)),
            _ => Ok(()),
        }
    }

    /// Runs the pot's `exec_stop`, if it has one, as jail(8) would before signalling the jail.
    /// Its failure is reported as an event: the signal and the kill still follow.
    async fn exec_stop(&self, pot: &PotName, budget: Duration) {
        let conf_path = PotPaths::new(&self.cfg.jails_dir(), pot)
            .conf_dir
            .join("pot.conf");
        let attrs = match std::fs::read_to_string(&conf_path) {
            Ok(text) => StopAttrs::of(&PotConf::parse(&text)),
            Err(_) => return,
        };
        let Some(cmd) = attrs.exec_stop else { return };
        let limit = budget.min(attrs.timeout);
        self.event(pot, format!("Running exec_stop: {cmd}"));
        let argv = ["/bin/sh".to_string(), "-c".to_string(), cmd];
        match self
            .exec(pot, None, &argv, &BTreeMap::new(), Some(limit))
            .await
        {
            Ok(out) if out.exit.exit_code == 0 => {}
            Ok(out) => self.event(
                pot,
                format!(
                    "exec_stop exited with {}: {}",
                    out.exit.exit_code,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            ),
            Err(e) => self.event(pot, format!("exec_stop failed: {e}")),
        }
    }

    async fn remove_jail(&self, pot: &PotName) -> Result<(), EngineError> {
        match self.host.jail_remove(pot.as_str(), true).await {
            Err(e) if !e.is_absent() => Err(EngineError::host(pot.as_str())(e)),
            _ => Ok(()),
        }
    }

    /// Kills the task if needed and removes every trace of the pot.
    pub async fn destroy(&self, pot: &PotName) -> Result<(), EngineError> {
        // A pot this process neither started nor recovered may be anything (a stale handle, a
        // pot name of an image): never what the driver did not create. A tracked one passed
        // this check when it was started or recovered, and its lifecycle costs no extra call.
        if self.instance(pot).is_none() && self.ownership(pot).await? == Ownership::Foreign {
            return Err(not_ours(pot.as_str()));
        }
        if self.instance(pot).is_some_and(|i| i.exit().is_none()) {
            self.stop(pot, Signal::SIGKILL, Duration::ZERO).await?;
        }
        // Teardown removes the jail too, so an exited task costs no separate stop.
        match self.teardown(pot).await {
            // The jail is dying and still holds the datasets: the reconciler finishes.
            Err(e) if super::dying::is_busy(&e) => self.defer_teardown(pot, &e)?,
            other => other?,
        }
        self.instances
            .lock()
            .expect("instances poisoned")
            .remove(pot);
        Ok(())
    }

    /// Removes the jail, the mounts under the jail root, the pot's datasets and files, and the
    /// task's state. Each step accepts that its object is already gone. Callers have made
    /// sure the driver created the pot (its start, [`Engine::destroy`], reconcile's owned pots).
    pub(super) async fn teardown(&self, pot: &PotName) -> Result<(), EngineError> {
        let p = pot.as_str();
        let paths = PotPaths::new(&self.cfg.jails_dir(), pot);
        if !self.task_state_dir(pot).join(PIDS_FILE).exists() {
            // A supervisor still waiting for a reader of its log FIFOs would start the task
            // later, in a pot no one tracks any more.
            self.kill_unstarted_supervisor(pot).await;
        }
        // What this process's stop removed is gone for good: no jail of the name can come back
        // before a new start, which forgets the stop.
        let stopped = self
            .stopped
            .lock()
            .expect("stopped set poisoned")
            .remove(pot);
        if !stopped {
            self.remove_jail(pot).await?;
            self.remove_shm(pot).await?;
            self.remove_rctl_rules(pot).await?;
        }
        self.unplug(pot).await?;
        self.unmount_all(pot, &paths).await?;
        self.destroy_pot_datasets(pot).await?;
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

    /// pot's global lock; `what` names the holder in errors.
    pub(super) async fn global_lock(
        &self,
        what: &str,
    ) -> Result<nix::fcntl::Flock<std::fs::File>, EngineError> {
        let path = self.cfg.lock_file.clone();
        let p = what.to_string();
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
        state::task_dir(&state::tasks_dir(&self.cfg.state_dir), pot)
    }

    /// pot's status file, so that `pot` commands see the pot's state (see [`status`]).
    fn status_file(&self, pot: &PotName) -> PathBuf {
        self.cfg.tmp_dir.join(format!("pot_status_{pot}"))
    }
}

/// The refusal to remove or replace a dataset the driver did not create.
fn not_ours(pot: &str) -> EngineError {
    EngineError::State {
        pot: pot.to_string(),
        reason: format!(
            "its dataset has no {OWNER_PROPERTY} property: the driver did not create it (an image, or a pot made by hand) and leaves it alone"
        ),
    }
}

/// jail(8) parameters as pot's `_js_start` builds them for an inherit-network, non-rc pot, except
/// that the jail persists until the driver removes it (no placeholder `sleep` process needed).
fn jail_params(
    pot: &PotName,
    hostname: &str,
    osrelease: &str,
    root: &Path,
    attributes: &JailAttributes,
) -> JailParams {
    let mut p = JailParams::default();
    p.set("allow.set_hostname", "false")
        .flag("allow.raw_sockets")
        .flag("allow.socket_af")
        .flag("allow.chflags")
        .flag("exec.clean")
        .flag("mount.devfs");
    attributes.add_params(&mut p);
    p.set("name", pot.as_str()).set("host.hostname", hostname);
    if !osrelease.is_empty() {
        p.set("osrelease", osrelease);
    }
    p.set("path", root.display().to_string()).flag("persist");
    p
}

/// What `boot` needs that `start` decided before the clone.
struct Booting<'a> {
    conf: &'a PotConf,
    hostname: &'a str,
    attributes: &'a JailAttributes,
    attach: Attach<'a>,
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

/// pot's `_js_resolv`: `custom` writes `conf/resolv.conf` and copies it into the jail;
/// `inherit` copies the host's `/etc/resolv.conf` when there is one.
fn write_resolv_conf(p: &str, dns: Option<&Dns>, paths: &PotPaths) -> Result<(), EngineError> {
    let target = Path::new("/etc/resolv.conf");
    let text = match dns {
        Some(dns) => {
            let text = dns.render();
            write_file(p, &paths.conf_dir.join("resolv.conf"), text.as_bytes())?;
            text
        }
        None => match std::fs::read_to_string(HOST_RESOLV_CONF) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(EngineError::io(p, "read", Path::new(HOST_RESOLV_CONF))(e)),
        },
    };
    jailfs::write_file(&paths.root, target, text.as_bytes(), 0o644)
        .map_err(EngineError::io(p, "write", target))?;
    Ok(())
}

/// `pot.hosts` lines (`<ip> <name>`) from the job's `extra_hosts`.
fn hosts_lines(spec: &TaskSpec) -> Vec<String> {
    spec.extra_hosts
        .iter()
        .map(|h| format!("{} {}", h.ip, h.name))
        .collect()
}

/// pot's stop attributes (`pot set-attr -A exec_stop|stop_timeout`), from a pot.conf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct StopAttrs {
    /// Run with `/bin/sh -c` inside the jail before the task is signalled.
    pub exec_stop: Option<String>,
    /// pot's `stop_timeout`: here, how long `exec_stop` may run.
    pub timeout: Duration,
}

impl StopAttrs {
    /// pot's default `stop_timeout`.
    const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

    /// Read as pot reads them: `exec_stop` verbatim (`_get_conf_var_string`), `stop_timeout`
    /// as digits (anything else is pot's default).
    pub fn of(conf: &PotConf) -> StopAttrs {
        StopAttrs {
            exec_stop: conf
                .get_raw("pot.attr.exec_stop")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_string),
            timeout: conf
                .get("pot.attr.stop_timeout")
                .and_then(|t| t.parse().ok())
                .map(Duration::from_secs)
                .unwrap_or(Self::DEFAULT_TIMEOUT),
        }
    }
}

/// How a recovered task's supervisor is watched: it is not our child, so it is polled.
const RECOVERED_POLL: Duration = Duration::from_millis(200);

/// The task's status once its supervisor is gone: recorded, or lost if the supervisor was
/// killed before its task (then we can only wait for the task itself to go).
async fn exit_after_supervisor(state_dir: &Path, task_pid: u32) -> ExitInfo {
    if let Some(info) = read_json(&state_dir.join(EXIT_FILE)) {
        return info;
    }
    while alive(task_pid) {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    read_json(&state_dir.join(EXIT_FILE)).unwrap_or_else(|| {
        ExitInfo::unknown(
            "the task supervisor died before its task: exit status unknown".to_string(),
        )
    })
}

/// The task event for a recorded exit.
fn exit_event(info: &ExitInfo) -> String {
    let ended = match (&info.error, info.signal) {
        (Some(reason), _) => format!("Task ended: {reason}"),
        (None, 0) => format!("Task exited with code {}", info.exit_code),
        (None, sig) => format!("Task killed by signal {sig}"),
    };
    match info.memory_limit_hit {
        Some(bytes) => format!(
            "{ended} (OOM: the jail reached its memory limit of {})",
            human_bytes(bytes)
        ),
        None => ended,
    }
}

/// Bytes in the largest binary unit that divides them, as Nomad's `memory` is given in MiB.
fn human_bytes(bytes: u64) -> String {
    let (amount, unit) = [(30, "GiB"), (20, "MiB"), (10, "KiB")]
        .into_iter()
        .find(|(shift, _)| bytes >= 1 << shift && bytes.is_multiple_of(1 << shift))
        .map_or((bytes, "bytes"), |(shift, unit)| (bytes >> shift, unit));
    format!("{amount} {unit}")
}

fn write_file(pot: &str, path: &Path, bytes: &[u8]) -> Result<(), EngineError> {
    write_atomic(path, bytes).map_err(EngineError::io(pot, "write", path))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_events_name_the_memory_limit_reached() {
        let mut info = ExitInfo {
            exit_code: 137,
            signal: 9,
            finished_at_ms: 0,
            error: None,
            memory_limit_hit: Some(64 << 20),
        };
        assert_eq!(
            exit_event(&info),
            "Task killed by signal 9 (OOM: the jail reached its memory limit of 64 MiB)"
        );
        info.memory_limit_hit = Some(1536 << 20);
        assert!(exit_event(&info).ends_with("limit of 1536 MiB)"));
        info.memory_limit_hit = Some(3 << 30);
        assert!(exit_event(&info).ends_with("limit of 3 GiB)"));
        info.memory_limit_hit = Some(1000);
        assert!(exit_event(&info).ends_with("limit of 1000 bytes)"));
        info.memory_limit_hit = None;
        assert_eq!(exit_event(&info), "Task killed by signal 9");
    }

    #[test]
    fn stop_attrs_read_like_pot() {
        let conf = PotConf::parse(
            "pot.attr.exec_stop=service nginx stop \"now\"\npot.attr.stop_timeout=3\n",
        );
        let attrs = StopAttrs::of(&conf);
        assert_eq!(
            attrs.exec_stop.as_deref(),
            Some("service nginx stop \"now\"")
        );
        assert_eq!(attrs.timeout, Duration::from_secs(3));
        // pot create writes both keys with these values: nothing to run, pot's default timeout.
        let attrs = StopAttrs::of(&PotConf::parse(
            "pot.attr.exec_stop=\npot.attr.stop_timeout=10\n",
        ));
        assert_eq!(attrs.exec_stop, None);
        assert_eq!(attrs.timeout, Duration::from_secs(10));
        let attrs = StopAttrs::of(&PotConf::parse("pot.attr.stop_timeout=soon\n"));
        assert_eq!(attrs.timeout, StopAttrs::DEFAULT_TIMEOUT);
    }

    #[test]
    fn jail_params_carry_exec_stop_and_stop_timeout_like_pot() {
        let pot = PotName::new("web_1").unwrap();
        let image = PotConf::parse(
            "pot.attr.exec_stop=service nginx stop\npot.attr.stop_timeout=3\npot.attr.enforce_statfs=0\n",
        );
        // The image's stop attributes apply; its privileges do not.
        let attrs = JailAttributes::from_image(&image);
        let mut expected = JailParams::default();
        expected
            .set("allow.set_hostname", "false")
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
            .set("exec.stop", "service nginx stop")
            .set("stop.timeout", "3")
            .set("name", "web_1")
            .set("host.hostname", "web_1.h")
            .set("osrelease", "14.2-RELEASE")
            .set("path", "/p/m")
            .flag("persist");
        assert_eq!(
            jail_params(&pot, "web_1.h", "14.2-RELEASE", Path::new("/p/m"), &attrs),
            expected
        );
    }
}
