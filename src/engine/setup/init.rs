//! `pot init` and `pot vnet-start` on a fresh host, done idempotently: each step checks first
//! and changes only what is missing, and a dry run only reports what it would do.

use super::{PF_ANCHOR_LINES, with_pot_anchors};
use crate::engine::config::prefix_mask;
use crate::engine::network::{IPV6_BRIDGE_DESCR, PUBLIC_BRIDGE_DESCR, nat_rules};
use crate::engine::{Engine, EngineError, Stack};
use crate::host::HostError;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// pot's mode for its fs root.
const FS_ROOT_MODE: u32 = 0o750;

/// What `init` changed, or in a dry run would change, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InitReport {
    pub dry_run: bool,
    pub changes: Vec<String>,
}

fn init_err(e: HostError) -> EngineError {
    EngineError::host("init")(e)
}

fn init_io<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> EngineError + 'a {
    EngineError::io("init", op, path)
}

/// Replaces `path` by `text` atomically (a temp file in the same directory, renamed over it),
/// keeping its mode.
fn write_atomically(path: &Path, text: &str) -> Result<(), EngineError> {
    use std::io::Write;
    let tmp = PathBuf::from(format!("{}.potctl-tmp", path.display()));
    let mode = std::fs::metadata(path)
        .map(|m| m.permissions().mode())
        .unwrap_or(0o644);
    let mut file = std::fs::File::create(&tmp).map_err(init_io("create", &tmp))?;
    file.write_all(text.as_bytes())
        .and_then(|_| file.set_permissions(std::fs::Permissions::from_mode(mode)))
        .and_then(|_| file.sync_all())
        .map_err(init_io("write", &tmp))?;
    std::fs::rename(&tmp, path).map_err(init_io("rename into place", path))
}

impl Engine {
    /// Prepares the host as `pot init` and `pot vnet-start` do: pot's datasets and directories,
    /// the anchor lines in `pf_conf`, forwarding, pf with pot's anchors and NAT, and the
    /// bridge(s). Every step first checks and only acts on what is missing; `dry_run` only
    /// reports what it would do.
    pub async fn init(&self, pf_conf: &Path, dry_run: bool) -> Result<InitReport, EngineError> {
        let mut report = InitReport {
            dry_run,
            changes: Vec::new(),
        };
        self.init_datasets(&mut report).await?;
        self.init_dirs(&mut report)?;
        self.init_pf_conf(pf_conf, &mut report)?;
        self.init_vnet(pf_conf, &mut report).await?;
        Ok(report)
    }

    async fn init_datasets(&self, report: &mut InitReport) -> Result<(), EngineError> {
        let (root, fs_root) = (&self.cfg.zfs_root, &self.cfg.fs_root);
        if self.host.zfs_exists(root).await.map_err(init_err)? {
            let mountpoint = self
                .host
                .zfs_get(root, "mountpoint")
                .await
                .map_err(init_err)?;
            if Path::new(&mountpoint) != fs_root {
                return Err(EngineError::State {
                    pot: "init".to_string(),
                    reason: format!(
                        "dataset {root} exists with mountpoint {mountpoint}, not fs_root {}: set fs_root to it, or `zfs set mountpoint={} {root}`",
                        fs_root.display(),
                        fs_root.display()
                    ),
                });
            }
        } else {
            let mountpoint = fs_root.display().to_string();
            let props = [
                ("mountpoint", mountpoint.as_str()),
                ("canmount", "off"),
                ("compression", "lz4"),
                ("atime", "off"),
            ];
            self.create_dataset(root, &props, report).await?;
        }
        for child in ["bases", "jails", "fscomp"] {
            let name = format!("{root}/{child}");
            if !self.host.zfs_exists(&name).await.map_err(init_err)? {
                self.create_dataset(&name, &[], report).await?;
            }
        }
        let cache = format!("{root}/cache");
        if !self.host.zfs_exists(&cache).await.map_err(init_err)? {
            let mountpoint = self.cfg.cache_dir.display().to_string();
            let props = [("mountpoint", mountpoint.as_str()), ("compression", "off")];
            self.create_dataset(&cache, &props, report).await?;
        }
        Ok(())
    }

    async fn create_dataset(
        &self,
        name: &str,
        props: &[(&str, &str)],
        report: &mut InitReport,
    ) -> Result<(), EngineError> {
        let options: String = props.iter().map(|(k, v)| format!("-o {k}={v} ")).collect();
        report.changes.push(format!("zfs create {options}{name}"));
        if !report.dry_run {
            self.host.zfs_create(name, props).await.map_err(init_err)?;
        }
        Ok(())
    }

    /// pot's fs root (mode 750), its `bridges` dir, pot's tmp dir and the driver's state dir.
    fn init_dirs(&self, report: &mut InitReport) -> Result<(), EngineError> {
        let fs_root = &self.cfg.fs_root;
        let dirs = [
            fs_root.clone(),
            fs_root.join("bridges"),
            self.cfg.tmp_dir.clone(),
            self.cfg.state_dir.clone(),
        ];
        for dir in &dirs {
            if !dir.is_dir() {
                report.changes.push(format!("mkdir -p {}", dir.display()));
                if !report.dry_run {
                    std::fs::create_dir_all(dir).map_err(init_io("create", dir))?;
                }
            }
        }
        let mode = std::fs::metadata(fs_root)
            .map(|m| m.permissions().mode() & 0o7777)
            .ok();
        if mode != Some(FS_ROOT_MODE) {
            report
                .changes
                .push(format!("chmod {FS_ROOT_MODE:o} {}", fs_root.display()));
            if !report.dry_run {
                std::fs::set_permissions(fs_root, std::fs::Permissions::from_mode(FS_ROOT_MODE))
                    .map_err(init_io("chmod", fs_root))?;
            }
        }
        Ok(())
    }

    /// pot's anchor lines at the top of the pf config, the old file kept as `<file>.bkp-pot`.
    fn init_pf_conf(&self, pf_conf: &Path, report: &mut InitReport) -> Result<(), EngineError> {
        let current = match std::fs::read_to_string(pf_conf) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(init_io("read", pf_conf)(e)),
        };
        let Some(updated) = with_pot_anchors(current.as_deref().unwrap_or_default()) else {
            return Ok(());
        };
        let backup = PathBuf::from(format!("{}.bkp-pot", pf_conf.display()));
        report.changes.push(match current {
            Some(_) => format!(
                "{}: put `{}` and `{}` at the top (old file kept as {})",
                pf_conf.display(),
                PF_ANCHOR_LINES[0],
                PF_ANCHOR_LINES[1],
                backup.display()
            ),
            None => format!(
                "{}: create with `{}` and `{}`",
                pf_conf.display(),
                PF_ANCHOR_LINES[0],
                PF_ANCHOR_LINES[1]
            ),
        });
        if report.dry_run {
            return Ok(());
        }
        if current.is_some() {
            std::fs::copy(pf_conf, &backup).map_err(init_io("back up", pf_conf))?;
        }
        write_atomically(pf_conf, &updated)
    }

    /// pot's vnet-start: forwarding, the main ruleset with pot's anchors, NAT in `pot-nat`, pf
    /// on, the public bridge (and the IPv6 bridge for an IPv6 stack).
    async fn init_vnet(&self, pf_conf: &Path, report: &mut InitReport) -> Result<(), EngineError> {
        let dry = report.dry_run;
        if self
            .host
            .sysctl("net.inet.ip.forwarding")
            .await
            .map_err(init_err)?
            != "1"
        {
            report
                .changes
                .push("sysctl net.inet.ip.forwarding=1".into());
            if !dry {
                self.host
                    .sysctl_set("net.inet.ip.forwarding", "1")
                    .await
                    .map_err(init_err)?;
            }
        }
        // A host that has never enabled pf has not loaded its module: pfctl cannot even open
        // /dev/pf. A dry run stops asking pf then; everything below would change.
        let pf_loaded = self.host.kmod_loaded("pf").await.map_err(init_err)?;
        if !pf_loaded {
            report.changes.push("kldload -n pf".into());
            if !dry {
                self.host.kmod_load("pf").await.map_err(init_err)?;
            }
        }
        let pf_answers = pf_loaded || !dry;
        let anchors = if pf_answers {
            self.host.pf_anchors().await.map_err(init_err)?
        } else {
            Vec::new()
        };
        if !["pot-nat", "pot-rdr"]
            .iter()
            .all(|a| anchors.iter().any(|x| x == a))
        {
            report.changes.push(format!(
                "pfctl -f {} (loads pot's anchors)",
                pf_conf.display()
            ));
            if !dry {
                self.host.pf_load_main(pf_conf).await.map_err(init_err)?;
            }
        }
        if !pf_answers
            || self
                .host
                .pf_nat_rules("pot-nat")
                .await
                .map_err(init_err)?
                .is_empty()
        {
            let rules = nat_rules(&self.cfg.network);
            report.changes.push(format!(
                "pfctl -a pot-nat -f - (NAT of {} on {})",
                self.cfg.network.network, self.cfg.network.extif
            ));
            if !dry {
                self.host
                    .pf_load("pot-nat", &rules)
                    .await
                    .map_err(init_err)?;
            }
        }
        if !pf_answers || !self.host.pf_enabled().await.map_err(init_err)? {
            report.changes.push("pfctl -e".into());
            if !dry {
                self.host.pf_enable().await.map_err(init_err)?;
            }
        }
        let stack = self.cfg.network.stack;
        if stack != Stack::Ipv6 {
            self.init_public_bridge(report).await?;
        }
        if stack != Stack::Ipv4 {
            self.init_ipv6_bridge(report).await?;
        }
        Ok(())
    }

    /// The public bridge is found by its address, the gateway, as pot does.
    async fn init_public_bridge(&self, report: &mut InitReport) -> Result<(), EngineError> {
        let net = &self.cfg.network;
        let bridges = self
            .host
            .ifaces_in_group("bridge")
            .await
            .map_err(init_err)?;
        if bridges
            .iter()
            .any(|b| b.inet.iter().any(|(a, _)| *a == net.gateway))
        {
            return Ok(());
        }
        let (_, len) = net.ipv4_network();
        let netmask = Ipv4Addr::from(prefix_mask(len));
        report.changes.push(format!(
            "ifconfig bridge create descr \"{PUBLIC_BRIDGE_DESCR}\" group pot; inet {} netmask {netmask}",
            net.gateway
        ));
        if !report.dry_run {
            let bridge = self
                .host
                .bridge_create(PUBLIC_BRIDGE_DESCR)
                .await
                .map_err(init_err)?;
            self.host
                .iface_inet(None, &bridge, net.gateway, netmask, false)
                .await
                .map_err(init_err)?;
        }
        Ok(())
    }

    /// The IPv6 bridge is the one holding the external interface.
    async fn init_ipv6_bridge(&self, report: &mut InitReport) -> Result<(), EngineError> {
        let extif = &self.cfg.network.extif;
        let bridges = self
            .host
            .ifaces_in_group("bridge")
            .await
            .map_err(init_err)?;
        if bridges.iter().any(|b| b.members.contains(extif)) {
            return Ok(());
        }
        report.changes.push(format!(
            "ifconfig bridge create descr \"{IPV6_BRIDGE_DESCR}\" group pot; inet6 up; addm {extif}"
        ));
        if !report.dry_run {
            let bridge = self
                .host
                .bridge_create(IPV6_BRIDGE_DESCR)
                .await
                .map_err(init_err)?;
            self.host
                .iface_inet6_up(None, &bridge)
                .await
                .map_err(init_err)?;
            self.host
                .bridge_addm(&bridge, extif, false)
                .await
                .map_err(init_err)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_keeps_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pf.conf");
        std::fs::write(&path, "old\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        write_atomically(&path, "new\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
