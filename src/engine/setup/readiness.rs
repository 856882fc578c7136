//! The host's readiness for a task start, behind `potctl doctor`: one check per thing a start
//! needs, each failure with its fix. Read-only: nothing here changes the host.

use super::{PF_ANCHOR_LINES, with_pot_anchors};
use crate::engine::Engine;
use crate::host::REQUIRED_TOOLS;
use std::path::Path;

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

impl Engine {
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
