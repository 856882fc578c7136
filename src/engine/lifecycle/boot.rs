//! From the clone to the running jail: copies, mounts, resolver and hosts files, the jail with
//! its network and limits; then the task goes to its supervisor (see [`super::supervise`]).

use super::start::CheckedOptions;
use super::{Instance, TaskSpec, write_file};
use crate::engine::attributes::JailAttributes;
use crate::engine::command::Argv;
use crate::engine::jailfs;
use crate::engine::layout::{self, MountSpec, PotName, PotPaths};
use crate::engine::mounts::{MountRecord, RecordedMount};
use crate::engine::network::Attach;
use crate::engine::options::{self, Dns};
use crate::engine::potconf::PotConf;
use crate::engine::state;
use crate::engine::status::{self, State};
use crate::engine::supervisor;
use crate::engine::{Engine, EngineError, files};
use crate::host::{JailParams, RctlAction};
use std::path::Path;
use std::sync::Arc;

/// What pot's `inherit` DNS mode copies into the jail.
const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";

impl Engine {
    pub(super) async fn boot(
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
        let joined = self.join_network(pot, attach, &mut params).await?;
        mounted.add_jail_mounts(&paths.root, attributes);
        self.save_mounts(pot, &mounted)?;
        let created = self.host.jail_create(&params).await;
        if created.is_err() {
            self.jail_not_created(pot, &joined)?;
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
        let relays = self.configure_network(pot, joined).await?;
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
pub(super) struct Booting<'a> {
    pub(super) conf: &'a PotConf,
    pub(super) hostname: &'a str,
    pub(super) attributes: &'a JailAttributes,
    pub(super) attach: Attach<'a>,
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
pub(super) fn hosts_lines(spec: &TaskSpec) -> Vec<String> {
    spec.extra_hosts
        .iter()
        .map(|h| format!("{} {}", h.ip, h.name))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
