//! A task's start up to its clone: every check that needs no host, the network plan, the image,
//! and `pot clone`; then [`Engine::boot`] takes over, and a failure anywhere rolls back.

use super::boot::{Booting, hosts_lines};
use super::{Instance, TaskSpec, not_ours, write_file};
use crate::engine::attributes::JailAttributes;
use crate::engine::command::{self, Argv};
use crate::engine::gc::Ownership;
use crate::engine::image;
use crate::engine::layout::{self, MountSpec, OWNER_PROPERTY, PotName, PotPaths};
use crate::engine::limits::Limits;
use crate::engine::network::{self, Attach, NetworkPlan};
use crate::engine::options::{self, HostPathPolicy};
use crate::engine::potconf::PotConf;
use crate::engine::state::PIDS_FILE;
use crate::engine::task_id::TaskId;
use crate::engine::{Engine, EngineError, files};
use crate::host::RctlRule;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// pot's `POT_HOSTNAME_MAX_LENGTH`.
const HOSTNAME_MAX_LENGTH: usize = 64;
/// Far more than any image's pot.conf; a bigger one is refused rather than read whole.
const POT_CONF_LIMIT: u64 = 1 << 20;

/// A task's job options after every check: what boot applies, host paths already resolved.
pub(super) struct CheckedOptions {
    pub(super) mounts: Vec<MountSpec>,
    pub(super) copies: Vec<(PathBuf, String)>,
    /// Empty when racct is off and only Nomad's own resources asked for limits.
    pub(super) rctl_rules: Vec<RctlRule>,
}

impl Engine {
    /// Prepares and starts `spec`. On failure everything created so far is removed again.
    pub async fn start(&self, spec: TaskSpec) -> Result<Arc<Instance>, EngineError> {
        let started = self.start_pot(spec).await;
        if started.is_err() {
            // What this process knew of the host may be why: the next start reads it again.
            self.forget_host_facts();
        }
        started
    }

    /// The start itself; [`Engine::start`] adds what a failure makes this process forget.
    async fn start_pot(&self, spec: TaskSpec) -> Result<Arc<Instance>, EngineError> {
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
        let bridges = self.prepare_network(&pot, &plan).await?;
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
        let booted = self
            .boot(
                &spec,
                &checked,
                &paths,
                Booting {
                    conf: &conf,
                    hostname: &hostname,
                    attributes: &attributes,
                    attach: Attach::new(&plan, ip, bridges),
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
        if !self.racct().await {
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
            Some(_) => self.ncpu(pot).await?,
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
        owner: &TaskId,
        mut conf: PotConf,
        plan: &NetworkPlan,
    ) -> Result<(PotConf, Option<std::net::Ipv4Addr>), EngineError> {
        let dataset = format!("{}/{}", self.cfg.jails_dataset(), pot);
        let p = pot.as_str();
        // The pot's directory is what an earlier start of the pot (or someone else's pot of the
        // name) leaves: its owner is read before addresses are picked, which its pot.conf may
        // hold. Without the directory there is no such pot.conf, and `zfs create` itself tells
        // whether a dataset of the name exists (unmounted): a fresh start reads nothing.
        let mut cleared = paths.dir.exists();
        if cleared {
            self.clear_earlier_pot(pot, owner).await?;
        }
        let (lock, ip) = loop {
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
            match self
                .host
                .zfs_create(
                    &dataset,
                    &[(OWNER_PROPERTY, &layout::owner_value(&owner.to_string()))],
                )
                .await
            {
                Ok(()) => break (lock, ip),
                Err(e) if e.is_exists() && !cleared => {
                    drop(lock);
                    self.clear_earlier_pot(pot, owner).await?;
                    cleared = true;
                }
                Err(e) => return Err(EngineError::host(p)(e)),
            }
        };
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

    /// A pot of this task's pot name found at its start. Pot names come from Nomad's task ids,
    /// so one made for this task is debris of its own interrupted start and goes; anything else
    /// of that name is not ours to remove, and the start is refused.
    async fn clear_earlier_pot(&self, pot: &PotName, owner: &TaskId) -> Result<(), EngineError> {
        match self.ownership(pot).await? {
            Ownership::Absent => Ok(()),
            Ownership::Task(id) if id == owner.to_string() => self.teardown(pot).await,
            Ownership::Task(id) => Err(EngineError::State {
                pot: pot.to_string(),
                reason: format!("the pot already exists for task {id}"),
            }),
            Ownership::Foreign => Err(not_ours(pot.as_str())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testing::{calls_since, engine_on};
    use nomad_harness::sim::SimHost;

    #[tokio::test(flavor = "multi_thread")]
    async fn a_fresh_pot_reads_nothing_and_one_met_by_zfs_create_is_cleared_if_ours() {
        let sim = SimHost::create();
        let engine = engine_on(&sim);
        sim.image("demo", "1.0");
        let url = format!("file://{}", sim.images_dir().display());
        let image = image::ImageRef::parse(&url, "demo", "1.0").unwrap();
        let (imported, _lock) =
            image::ensure_imported(&engine.host, &engine.images, &engine.cfg, &image, &|_| {})
                .await
                .unwrap();
        let pot = PotName::new("web_1").unwrap();
        let paths = PotPaths::new(&engine.cfg.jails_dir(), &pot);
        let dataset = format!("{}/web_1", engine.cfg.jails_dataset());
        let owner = TaskId::parse("a-1/web/1").unwrap();
        let clone = || {
            engine.clone_pot(
                &pot,
                &imported,
                &paths,
                &owner,
                PotConf::default(),
                &NetworkPlan::Inherit,
            )
        };
        let zfs_calls = |mark: usize| -> Vec<String> {
            calls_since(&sim, mark)
                .into_iter()
                .filter(|argv| argv[0] == "zfs")
                .map(|argv| argv[1].clone())
                .collect()
        };

        let mark = sim.calls().len();
        clone().await.unwrap();
        assert_eq!(zfs_calls(mark), ["create", "clone"]);
        engine.teardown(&pot).await.unwrap();

        // Debris of this task's own start whose dataset is not mounted, so that no directory
        // tells of it: `zfs create` meets it, its owner is read and it goes.
        let ours = format!(
            "{OWNER_PROPERTY}={}",
            layout::owner_value(&owner.to_string())
        );
        sim.tool_ok("zfs", &["create", "-u", "-o", &ours, &dataset]);
        assert!(!paths.dir.exists());
        let mark = sim.calls().len();
        clone().await.unwrap();
        assert_eq!(
            zfs_calls(mark),
            ["create", "list", "destroy", "create", "clone"]
        );
        engine.teardown(&pot).await.unwrap();

        // Someone else's: refused, and left alone.
        sim.tool_ok("zfs", &["create", "-o", "canmount=off", &dataset]);
        let e = clone().await.unwrap_err();
        assert!(
            e.to_string().contains("the driver did not create it"),
            "{e}"
        );
        sim.tool_ok("zfs", &["list", &dataset]);

        // With its directory there, the owner is read before anything is created.
        sim.tool_ok("zfs", &["destroy", &dataset]);
        sim.tool_ok("zfs", &["create", &dataset]);
        let mark = sim.calls().len();
        assert!(clone().await.is_err());
        assert_eq!(zfs_calls(mark), ["list"]);
        sim.tool_ok("zfs", &["destroy", &dataset]);
    }
}
