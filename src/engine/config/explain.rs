//! `potctl config`: each setting with its effective value and where that value came from.

use super::pot_files::PotSettings;
use super::{ConfigError, EngineConfig, Overrides};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// Where a setting's effective value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// pot's default, or the driver's where pot has none.
    Default,
    /// A `POT_*` variable in one of pot's config files.
    PotConf,
    /// The plugin's agent config.
    AgentConfig,
}

/// One setting of the engine: its agent-config key, effective value and source.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Setting {
    pub key: &'static str,
    pub value: String,
    pub source: Source,
    /// The pot config file, for [`Source::PotConf`].
    pub file: Option<PathBuf>,
}

/// A setting's key, value, and source with its file.
type SettingRow = (&'static str, String, (Source, Option<PathBuf>));

impl EngineConfig {
    /// Each setting [`EngineConfig::resolve`] decides, with where its value came from.
    pub fn explain(o: &Overrides) -> Result<Vec<Setting>, ConfigError> {
        let cfg = EngineConfig::resolve(o)?;
        let mut pot = PotSettings::defaults();
        for file in ["pot.default.conf", "pot.conf"] {
            pot.overlay_file(&cfg.pot_conf_dir.join(file))?;
        }
        let source =
            |agent: bool, pot_var: Option<&str>| match pot_var.and_then(|v| pot.set_by.get(v)) {
                _ if agent => (Source::AgentConfig, None),
                Some(file) => (Source::PotConf, Some(file.clone())),
                None => (Source::Default, None),
            };
        let path = |p: &Path| p.display().to_string();
        let list = |v: &[PathBuf]| v.iter().map(|p| path(p)).collect::<Vec<_>>().join(" ");
        let n = &cfg.network;
        let opt = |v: Option<Ipv4Addr>| v.map(|a| a.to_string()).unwrap_or_default();
        let rows: Vec<SettingRow> = vec![
            (
                "tool_path",
                cfg.tool_path.clone(),
                source(o.tool_path.is_some(), None),
            ),
            (
                "zfs_root",
                cfg.zfs_root.clone(),
                source(o.zfs_root.is_some(), Some("POT_ZFS_ROOT")),
            ),
            (
                "fs_root",
                path(&cfg.fs_root),
                source(o.fs_root.is_some(), Some("POT_FS_ROOT")),
            ),
            (
                "cache_dir",
                path(&cfg.cache_dir),
                source(o.cache_dir.is_some(), Some("POT_CACHE")),
            ),
            (
                "tmp_dir",
                path(&cfg.tmp_dir),
                source(o.tmp_dir.is_some(), Some("POT_TMP")),
            ),
            (
                "state_dir",
                path(&cfg.state_dir),
                source(o.state_dir.is_some(), None),
            ),
            (
                "lock_file",
                path(&cfg.lock_file),
                source(o.lock_file.is_some(), None),
            ),
            (
                "pot_conf_dir",
                path(&cfg.pot_conf_dir),
                source(o.pot_conf_dir.is_some(), None),
            ),
            (
                "network",
                n.network.clone(),
                source(o.network.is_some(), Some("POT_NETWORK")),
            ),
            (
                "netmask",
                n.netmask.to_string(),
                source(o.netmask.is_some(), Some("POT_NETMASK")),
            ),
            (
                "gateway",
                n.gateway.to_string(),
                source(o.gateway.is_some(), Some("POT_GATEWAY")),
            ),
            (
                "dns_ip",
                opt(n.dns_ip),
                source(o.dns_ip.is_some(), Some("POT_DNS_IP")),
            ),
            (
                "extif",
                n.extif.clone(),
                source(o.extif.is_some(), Some("POT_EXTIF")),
            ),
            (
                "extra_extif",
                n.extra_extif
                    .iter()
                    .map(|(nic, net)| format!("{nic}={net}"))
                    .collect::<Vec<_>>()
                    .join(" "),
                source(!o.extra_extif.is_empty(), Some("POT_EXTRA_EXTIF")),
            ),
            (
                "extif_addr",
                opt(n.extif_addr),
                source(o.extif_addr.is_some(), Some("POT_EXTIF_ADDR")),
            ),
            (
                "vpn_extif",
                n.vpn_extif.clone().unwrap_or_default(),
                source(o.vpn_extif.is_some(), Some("POT_VPN_EXTIF")),
            ),
            (
                "vpn_networks",
                n.vpn_networks.join(" "),
                source(!o.vpn_networks.is_empty(), Some("POT_VPN_NETWORKS")),
            ),
            (
                "isolate_vnet_pots",
                n.isolate_vnet_pots.to_string(),
                source(o.isolate_vnet_pots.is_some(), Some("POT_ISOLATE_VNET_POTS")),
            ),
            (
                "network_stack",
                n.stack.as_str().to_string(),
                source(o.network_stack.is_some(), Some("POT_NETWORK_STACK")),
            ),
            (
                "args_quote_compat",
                cfg.args_quote_compat.to_string(),
                source(o.args_quote_compat.is_some(), None),
            ),
            (
                "allowed_host_paths",
                list(&cfg.allowed_host_paths),
                source(!o.allowed_host_paths.is_empty(), None),
            ),
            (
                "allowed_attributes",
                cfg.allowed_attributes.join(" "),
                source(!o.allowed_attributes.is_empty(), None),
            ),
            (
                "allowed_image_dirs",
                list(&cfg.allowed_image_dirs),
                source(!o.allowed_image_dirs.is_empty(), None),
            ),
            (
                "signature_pubkeys",
                list(&cfg.image.pubkeys),
                source(
                    o.signature_pubkeys.is_some(),
                    Some("POT_DEFAULT_SIGNATURE_PUBKEY"),
                ),
            ),
            (
                "require_signature",
                cfg.image.require_signature.to_string(),
                source(o.require_signature.is_some(), None),
            ),
            (
                "image_max_size",
                cfg.image.max_size.to_string(),
                source(o.image_max_size.is_some(), None),
            ),
            (
                "image_cache_max",
                cfg.image
                    .cache_max
                    .map(|m| m.to_string())
                    .unwrap_or_default(),
                source(o.image_cache_max.is_some(), None),
            ),
        ];
        Ok(rows
            .into_iter()
            .map(|(key, value, (source, file))| Setting {
                key,
                value,
                source,
                file,
            })
            .collect())
    }
}
