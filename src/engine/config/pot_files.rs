//! pot's own configuration files, `pot.default.conf` and `pot.conf`.

use super::{ConfigError, bad};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The subset of pot's configuration variables the engine uses.
pub(super) struct PotSettings {
    pub(super) zfs_root: String,
    pub(super) fs_root: PathBuf,
    pub(super) cache: PathBuf,
    pub(super) tmp: PathBuf,
    pub(super) network: String,
    pub(super) netmask: String,
    pub(super) gateway: String,
    pub(super) dns_ip: String,
    pub(super) extif: String,
    pub(super) signature_pubkey: String,
    pub(super) extra_extif: String,
    pub(super) extif_addr: String,
    pub(super) vpn_extif: String,
    pub(super) vpn_networks: String,
    pub(super) isolate: String,
    pub(super) network_stack: String,
    /// Every `POT_NETWORK_<nic>` seen.
    pub(super) nic_networks: BTreeMap<String, String>,
    /// The file that last set each pot variable.
    pub(super) set_by: BTreeMap<String, PathBuf>,
}

impl PotSettings {
    pub(super) fn defaults() -> Self {
        PotSettings {
            zfs_root: "zroot/pot".into(),
            fs_root: "/opt/pot".into(),
            cache: "/var/cache/pot".into(),
            tmp: "/tmp".into(),
            network: "10.192.0.0/10".into(),
            netmask: "255.192.0.0".into(),
            gateway: "10.192.0.1".into(),
            dns_ip: "10.192.0.2".into(),
            extif: "em0".into(),
            signature_pubkey: String::new(),
            extra_extif: String::new(),
            extif_addr: String::new(),
            vpn_extif: String::new(),
            vpn_networks: String::new(),
            isolate: "false".into(),
            network_stack: "ipv4".into(),
            nic_networks: BTreeMap::new(),
            set_by: BTreeMap::new(),
        }
    }

    /// `POT_EXTRA_EXTIF` NICs with their `POT_NETWORK_<nic>`; pot skips NICs without one.
    pub(super) fn extra_extif(&self) -> Result<BTreeMap<String, String>, ConfigError> {
        Ok(self
            .extra_extif
            .split_whitespace()
            .filter_map(|nic| {
                self.nic_networks
                    .get(nic)
                    .map(|net| (nic.to_string(), net.clone()))
            })
            .collect())
    }

    /// pot sources these files as sh; like potnet we read plain `KEY=value` lines and ignore the
    /// rest, stripping one pair of surrounding quotes and any trailing comment.
    pub(super) fn overlay_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(bad("pot_conf_dir", format!("{}: {e}", path.display())));
            }
        };
        for (key, value) in parse_shell_assignments(&text) {
            if key.starts_with("POT_") {
                self.set_by.insert(key.clone(), path.to_path_buf());
            }
            let slot = match key.as_str() {
                "POT_ZFS_ROOT" => &mut self.zfs_root,
                "POT_NETWORK" => &mut self.network,
                "POT_NETMASK" => &mut self.netmask,
                "POT_GATEWAY" => &mut self.gateway,
                "POT_DNS_IP" => &mut self.dns_ip,
                "POT_EXTIF" => &mut self.extif,
                "POT_DEFAULT_SIGNATURE_PUBKEY" => &mut self.signature_pubkey,
                "POT_EXTRA_EXTIF" => &mut self.extra_extif,
                "POT_EXTIF_ADDR" => &mut self.extif_addr,
                "POT_VPN_EXTIF" => &mut self.vpn_extif,
                "POT_VPN_NETWORKS" => &mut self.vpn_networks,
                "POT_ISOLATE_VNET_POTS" => &mut self.isolate,
                "POT_NETWORK_STACK" => &mut self.network_stack,
                k if k.starts_with("POT_NETWORK_") => {
                    self.nic_networks
                        .insert(k["POT_NETWORK_".len()..].to_string(), value);
                    continue;
                }
                "POT_FS_ROOT" => {
                    self.fs_root = value.into();
                    continue;
                }
                "POT_CACHE" => {
                    self.cache = value.into();
                    continue;
                }
                "POT_TMP" => {
                    self.tmp = value.into();
                    continue;
                }
                _ => continue,
            };
            *slot = value;
        }
        Ok(())
    }
}

fn parse_shell_assignments(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .map(|(k, v)| {
            let v = v.split(" #").next().unwrap_or("").trim();
            let v = v
                .strip_prefix('"')
                .and_then(|s| s.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')))
                .unwrap_or(v);
            (k.to_string(), v.to_string())
        })
        .collect()
}
