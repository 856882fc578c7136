//! Host set-up and readiness: what `pot init` and `pot vnet-start` do to a fresh host, done
//! idempotently (each step checks first and changes only what is missing), and the checks
//! behind `potctl doctor`.

use super::network::{IPV6_BRIDGE_DESCR, PUBLIC_BRIDGE_DESCR, nat_rules};
use super::{Engine, EngineError, Stack, config::prefix_mask};
use crate::host::{HostError, REQUIRED_TOOLS};
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The lines pot's init puts at the top of the pf config (pot-engine.md §4.1).
pub const PF_ANCHOR_LINES: [&str; 2] = ["nat-anchor pot-nat", "rdr-anchor \"pot-rdr/*\""];
/// pot's mode for its fs root.
const FS_ROOT_MODE: u32 = 0o750;

/// What `init` changed, or in a dry run would change, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InitReport {
    pub dry_run: bool,
    pub changes: Vec<String>,
}

/// One readiness check: what was looked at, what was found, and how to fix a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
    pub fix: Option<String>,
}

impl Check {
    pub fn pass(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            ok: true,
            detail: detail.into(),
            fix: None,
        }
    }

    pub fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            name,
            ok: false,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
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

/// `text` with pot's anchor lines at the top, as pot's init leaves a pf config; `None` when it
/// already has exactly one of each (pot then leaves the file alone).
pub fn with_pot_anchors(text: &str) -> Option<String> {
    let count = |wanted: &str| text.lines().filter(|l| l.trim() == wanted).count();
    if PF_ANCHOR_LINES.iter().all(|l| count(l) == 1) {
        return None;
    }
    let mut out: String = PF_ANCHOR_LINES.iter().map(|l| format!("{l}\n")).collect();
    for line in text.lines() {
        if !PF_ANCHOR_LINES.contains(&line.trim()) {
            out.push_str(line);
            out.push('\n');
        }
    }
    Some(out)
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

    /// Everything a task start needs from the host, each failure with its fix. `pf_conf` is
    /// the pf config pf loads at boot.
    pub async fn readiness(&self, pf_conf: &Path) -> Vec<Check> {
        let mut checks = Vec::new();
        checks.push(if nix::unistd::geteuid().is_root() {
            Check::pass("root", "running as root")
        } else {
            Check::fail(
                "root",
                "not running as root: jails, ZFS and pf need root",
                "run as root (Nomad's client runs the plugin as root)",
            )
        });
        let missing: Vec<&str> = self.host.missing_tools().iter().map(|t| t.name()).collect();
        checks.push(if missing.is_empty() {
            Check::pass(
                "tools",
                format!(
                    "{} base tools found in {}",
                    REQUIRED_TOOLS.len(),
                    self.host.tool_path()
                ),
            )
        } else {
            Check::fail(
                "tools",
                format!(
                    "missing from tool_path {}: {}",
                    self.host.tool_path(),
                    missing.join(", ")
                ),
                "set the agent config's tool_path to the directories of FreeBSD's base tools",
            )
        });
        checks.push(self.check_zfs().await);
        checks.push(self.check_sysctl(
            "racct",
            "kern.racct.enable",
            "add kern.racct.enable=1 to /boot/loader.conf and reboot (memory and cpu limits and task stats need it)",
        ).await);
        checks.push(self.check_sysctl(
            "vimage",
            "kern.features.vimage",
            "boot a kernel with `options VIMAGE` (GENERIC has it since FreeBSD 12); without it only host and alias networking work",
        ).await);
        // Without kldstat (a tool_path that lacks it) pfctl's own error has to do.
        let pf_module = self.host.kmod_loaded("pf").await.ok();
        checks.push(match self.host.pf_enabled().await {
            _ if pf_module == Some(false) => Check::fail(
                "pf",
                "pf's kernel module is not loaded (pf was never enabled on this host)",
                "kldload pf && sysrc pf_enable=YES && service pf start (or `potctl init`)",
            ),
            Ok(true) => Check::pass("pf", "pf is enabled"),
            Ok(false) => Check::fail(
                "pf",
                "pf is loaded but disabled",
                "sysrc pf_enable=YES && service pf start (or `potctl init`)",
            ),
            Err(e) => Check::fail(
                "pf",
                format!("pf is not usable: {e}"),
                "kldload pf && sysrc pf_enable=YES && service pf start",
            ),
        });
        checks.push(check_pf_conf(pf_conf));
        checks.push(match self.host.pf_anchors().await {
            _ if pf_module == Some(false) => Check::fail(
                "pf_anchors",
                "pf is not loaded, so its main ruleset has none of pot's anchors",
                "`potctl init` (loads pf, then the pf config with pot's anchor lines)",
            ),
            Ok(a)
                if ["pot-nat", "pot-rdr"]
                    .iter()
                    .all(|x| a.iter().any(|y| y == x)) =>
            {
                Check::pass("pf_anchors", "pf's main ruleset has pot-nat and pot-rdr")
            }
            Ok(_) => Check::fail(
                "pf_anchors",
                "pf's main ruleset lacks pot's anchors: bridge networking cannot work",
                format!(
                    "pfctl -f {} once it has pot's anchor lines (`potctl init` does both)",
                    pf_conf.display()
                ),
            ),
            Err(e) => Check::fail(
                "pf_anchors",
                format!("cannot list pf's anchors: {e}"),
                "kldload pf && service pf start",
            ),
        });
        checks.push(self.check_pot_conf().await);
        checks
    }

    async fn check_zfs(&self) -> Check {
        let root = &self.cfg.zfs_root;
        let fix = "`potctl init` (or `pot init`), or point zfs_root/fs_root at pot's datasets";
        match self.host.zfs_get(root, "mountpoint").await {
            Err(e) if e.is_absent() => {
                return Check::fail("zfs_root", format!("dataset {root} does not exist"), fix);
            }
            Err(e) => return Check::fail("zfs_root", format!("cannot inspect ZFS: {e}"), fix),
            Ok(m) if Path::new(&m) != self.cfg.fs_root => {
                return Check::fail(
                    "zfs_root",
                    format!(
                        "{root} is mounted at {m}, but fs_root is {}",
                        self.cfg.fs_root.display()
                    ),
                    format!("set fs_root = \"{m}\" (POT_FS_ROOT) to match"),
                );
            }
            Ok(_) => {}
        }
        let mut missing = Vec::new();
        for child in ["bases", "jails", "fscomp", "cache"] {
            let name = format!("{root}/{child}");
            if !self.host.zfs_exists(&name).await.unwrap_or(false) {
                missing.push(name);
            }
        }
        if !missing.is_empty() {
            return Check::fail(
                "zfs_root",
                format!("missing datasets: {}", missing.join(", ")),
                fix,
            );
        }
        if !self.cfg.jails_dir().is_dir() {
            return Check::fail(
                "zfs_root",
                format!(
                    "{} is not a directory: is {} mounted?",
                    self.cfg.jails_dir().display(),
                    self.cfg.jails_dataset()
                ),
                format!("zfs mount {}", self.cfg.jails_dataset()),
            );
        }
        Check::pass(
            "zfs_root",
            format!("{root} at {}", self.cfg.fs_root.display()),
        )
    }

    async fn check_sysctl(&self, name: &'static str, oid: &str, fix: &str) -> Check {
        match self.host.sysctl(oid).await {
            Ok(v) if v == "1" => Check::pass(name, format!("{oid} is 1")),
            Ok(v) => Check::fail(name, format!("{oid} is {v}"), fix),
            Err(e) => Check::fail(name, format!("{oid}: {e}"), fix),
        }
    }

    async fn check_pot_conf(&self) -> Check {
        let dir = &self.cfg.pot_conf_dir;
        let source = if dir.join("pot.conf").is_file() {
            format!("{}/pot.conf", dir.display())
        } else {
            format!("pot's defaults (no pot.conf in {})", dir.display())
        };
        let extif = &self.cfg.network.extif;
        match self.host.iface_exists(extif).await {
            Ok(true) => Check::pass(
                "pot_conf",
                format!(
                    "{source}: network {}, gateway {}, extif {extif}",
                    self.cfg.network.network, self.cfg.network.gateway
                ),
            ),
            Ok(false) => Check::fail(
                "pot_conf",
                format!("{source}: the external interface {extif} does not exist"),
                "set POT_EXTIF in pot.conf (or extif in the agent config) to the host's external interface",
            ),
            Err(e) => Check::fail(
                "pot_conf",
                format!("{source}: cannot look up {extif}: {e}"),
                "check tool_path (ifconfig)",
            ),
        }
    }
}

fn check_pf_conf(pf_conf: &Path) -> Check {
    match std::fs::read_to_string(pf_conf) {
        Ok(text) if with_pot_anchors(&text).is_none() => Check::pass(
            "pf_conf",
            format!("{} has pot's anchor lines", pf_conf.display()),
        ),
        Ok(_) => Check::fail(
            "pf_conf",
            format!(
                "{} lacks `{}` / `{}` (or has them more than once)",
                pf_conf.display(),
                PF_ANCHOR_LINES[0],
                PF_ANCHOR_LINES[1]
            ),
            "`potctl init` (puts them at the top, keeping a backup)",
        ),
        Err(e) => Check::fail(
            "pf_conf",
            format!("cannot read {}: {e}", pf_conf.display()),
            "`potctl init` creates it with pot's anchor lines (or pass --pf-conf)",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchor_lines_go_to_the_top_once() {
        let text = "ext_if = \"em0\"\nnat-anchor pot-nat\npass all\n";
        assert_eq!(
            with_pot_anchors(text).unwrap(),
            "nat-anchor pot-nat\nrdr-anchor \"pot-rdr/*\"\next_if = \"em0\"\npass all\n"
        );
        let done = with_pot_anchors(text).unwrap();
        assert_eq!(with_pot_anchors(&done), None);
        let twice = format!("{done}nat-anchor pot-nat\n");
        assert_eq!(with_pot_anchors(&twice).unwrap(), done);
        assert_eq!(
            with_pot_anchors("").unwrap(),
            "nat-anchor pot-nat\nrdr-anchor \"pot-rdr/*\"\n"
        );
    }

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
