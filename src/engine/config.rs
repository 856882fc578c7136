//! Engine settings: pot's defaults, overlaid by pot's own config files, overlaid by the agent config.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Everything the engine needs to know about the host.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    /// Colon-separated directories searched for base tools.
    pub tool_path: String,
    /// Parent dataset of pot's datasets (`POT_ZFS_ROOT`).
    pub zfs_root: String,
    /// Mountpoint of `zfs_root` (`POT_FS_ROOT`).
    pub fs_root: PathBuf,
    /// Where image files are kept (`POT_CACHE`).
    pub cache_dir: PathBuf,
    /// pot's temp dir (`POT_TMP`): status files live here.
    pub tmp_dir: PathBuf,
    /// The driver's own state: one directory per task.
    pub state_dir: PathBuf,
    /// pot's global lock file, shared with a `pot` CLI on the same host.
    pub lock_file: PathBuf,
    /// Where `pot.default.conf` and `pot.conf` are read from.
    pub pot_conf_dir: PathBuf,
    pub network: NetworkConfig,
    /// Strip one pair of outer quotes from `args` elements, as Go-driver jobs expect.
    pub args_quote_compat: bool,
    /// Host directories, besides a task's own alloc dir, that jobs may mount or copy from.
    pub allowed_host_paths: Vec<PathBuf>,
    /// Jail attributes jobs may change, besides the safe ones.
    pub allowed_attributes: Vec<String>,
    /// Host directories `file://` images may be read from; none: `file://` is refused.
    pub allowed_image_dirs: Vec<PathBuf>,
    pub image: ImagePolicy,
    /// devd(8)'s client socket, through which task supervisors learn that a jail reached its
    /// memory limit; `None`: not reported.
    pub devd_socket: Option<PathBuf>,
}

/// How images are fetched and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ImagePolicy {
    /// signify public keys an image's `.skein.sig` may be signed with.
    pub pubkeys: Vec<PathBuf>,
    /// Refuse images without a valid signature.
    pub require_signature: bool,
    /// Upper bound, in bytes, for both the compressed download and the decompressed stream.
    pub max_size: u64,
    pub connect_timeout: Duration,
    /// A download that receives nothing for this long is cut and retried.
    pub idle_timeout: Duration,
    /// Tries per import (and per download, resuming with Range) before giving up.
    pub attempts: u32,
    /// Wait before the second try; doubled for each further one.
    pub backoff: Duration,
    /// A PEM file of CA certificates trusted for `https://` images besides the system store.
    pub ca_file: Option<PathBuf>,
    /// Keep at most this many imported images, removing unused ones oldest first after each
    /// import; `None`: never remove any automatically (as pot).
    pub cache_max: Option<usize>,
}

impl Default for ImagePolicy {
    fn default() -> Self {
        ImagePolicy {
            pubkeys: Vec::new(),
            require_signature: false,
            max_size: DEFAULT_IMAGE_MAX_SIZE,
            connect_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            attempts: 4,
            backoff: Duration::from_secs(2),
            ca_file: None,
            cache_max: None,
        }
    }
}

/// pot's network settings.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfig {
    /// `POT_NETWORK`, CIDR form.
    pub network: String,
    pub netmask: Ipv4Addr,
    pub gateway: Ipv4Addr,
    pub dns_ip: Option<Ipv4Addr>,
    pub extif: String,
    /// `POT_EXTRA_EXTIF` with each NIC's `POT_NETWORK_<nic>`: extra NAT and rdr rules.
    pub extra_extif: BTreeMap<String, String>,
    /// `POT_EXTIF_ADDR`: NAT to and rdr from this address instead of the NIC's.
    pub extif_addr: Option<Ipv4Addr>,
    /// `POT_VPN_EXTIF` and `POT_VPN_NETWORKS`: extra NAT rules towards a VPN.
    pub vpn_extif: Option<String>,
    pub vpn_networks: Vec<String>,
    /// `POT_ISOLATE_VNET_POTS`: bridge members are `private` (no traffic between pots).
    pub isolate_vnet_pots: bool,
    /// `POT_NETWORK_STACK`: the stack of pots whose task config names none.
    pub stack: Stack,
}

/// pot's network stacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stack {
    Ipv4,
    Ipv6,
    Dual,
}

impl Stack {
    pub fn parse(v: &str) -> Option<Stack> {
        match v {
            "ipv4" => Some(Stack::Ipv4),
            "ipv6" => Some(Stack::Ipv6),
            "dual" => Some(Stack::Dual),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Stack::Ipv4 => "ipv4",
            Stack::Ipv6 => "ipv6",
            Stack::Dual => "dual",
        }
    }
}

/// Agent-config values that override pot's; `None` keeps pot's value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    pub tool_path: Option<String>,
    pub zfs_root: Option<String>,
    pub fs_root: Option<PathBuf>,
    pub cache_dir: Option<PathBuf>,
    pub tmp_dir: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub lock_file: Option<PathBuf>,
    pub pot_conf_dir: Option<PathBuf>,
    pub network: Option<String>,
    pub netmask: Option<String>,
    pub gateway: Option<String>,
    pub dns_ip: Option<String>,
    pub extif: Option<String>,
    /// NIC → network; empty keeps pot's.
    pub extra_extif: BTreeMap<String, String>,
    pub extif_addr: Option<String>,
    pub vpn_extif: Option<String>,
    /// Empty keeps pot's.
    pub vpn_networks: Vec<String>,
    pub isolate_vnet_pots: Option<bool>,
    pub network_stack: Option<String>,
    pub args_quote_compat: Option<bool>,
    pub allowed_host_paths: Vec<PathBuf>,
    pub allowed_attributes: Vec<String>,
    pub allowed_image_dirs: Vec<PathBuf>,
    pub signature_pubkeys: Option<Vec<PathBuf>>,
    pub require_signature: Option<bool>,
    pub image_max_size: Option<String>,
    pub image_cache_max: Option<String>,
    pub image_ca_file: Option<PathBuf>,
    /// Empty disables memory-limit reporting.
    pub devd_socket: Option<String>,
}

/// A setting that failed validation.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct ConfigError {
    pub key: String,
    pub reason: String,
}

fn bad(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.to_string(),
        reason: reason.into(),
    }
}

pub const DEFAULT_TOOL_PATH: &str = "/sbin:/bin:/usr/sbin:/usr/bin";
pub const DEFAULT_POT_CONF_DIR: &str = "/usr/local/etc/pot";
/// 64 GiB: far above any real pot image, low enough to stop an xz bomb filling the pool.
pub const DEFAULT_IMAGE_MAX_SIZE: u64 = 64 << 30;

impl EngineConfig {
    /// pot's defaults, then `pot.default.conf` and `pot.conf` from the config dir, then `o`.
    pub fn resolve(o: &Overrides) -> Result<EngineConfig, ConfigError> {
        let conf_dir = o
            .pot_conf_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_POT_CONF_DIR));
        let mut pot = PotSettings::defaults();
        for file in ["pot.default.conf", "pot.conf"] {
            pot.overlay_file(&conf_dir.join(file))?;
        }
        let pick = |agent: &Option<String>, potv: &str| agent.clone().unwrap_or(potv.to_string());
        let network = pick(&o.network, &pot.network);
        let netmask = pick(&o.netmask, &pot.netmask);
        let gateway = pick(&o.gateway, &pot.gateway);
        let dns_ip = pick(&o.dns_ip, &pot.dns_ip);
        let extif_addr = pick(&o.extif_addr, &pot.extif_addr);
        let vpn_extif = pick(&o.vpn_extif, &pot.vpn_extif);
        let stack = pick(&o.network_stack, &pot.network_stack);
        let extra_extif = if o.extra_extif.is_empty() {
            pot.extra_extif()?
        } else {
            o.extra_extif.clone()
        };
        for (nic, net) in &extra_extif {
            validate_nic("extra_extif", nic)?;
            parse_cidr("extra_extif", net)?;
        }
        let vpn_networks = if o.vpn_networks.is_empty() {
            pot.vpn_networks
                .split_whitespace()
                .map(str::to_string)
                .collect()
        } else {
            o.vpn_networks.clone()
        };
        for net in &vpn_networks {
            parse_cidr("vpn_networks", net)?;
        }
        let isolate = match o.isolate_vnet_pots {
            Some(b) => b,
            None => matches!(
                pot.isolate.as_str(),
                "YES" | "yes" | "true" | "TRUE" | "on" | "ON" | "1"
            ),
        };
        let cfg = EngineConfig {
            tool_path: o
                .tool_path
                .clone()
                .unwrap_or_else(|| DEFAULT_TOOL_PATH.to_string()),
            zfs_root: pick(&o.zfs_root, &pot.zfs_root),
            fs_root: o.fs_root.clone().unwrap_or_else(|| pot.fs_root.clone()),
            cache_dir: o.cache_dir.clone().unwrap_or_else(|| pot.cache.clone()),
            tmp_dir: o.tmp_dir.clone().unwrap_or_else(|| pot.tmp.clone()),
            state_dir: o
                .state_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("/var/db/nomad-pot-driver")),
            lock_file: o
                .lock_file
                .clone()
                .unwrap_or_else(|| PathBuf::from("/tmp/pot-lock-file")),
            pot_conf_dir: conf_dir,
            network: NetworkConfig {
                network: parse_cidr("network", &network)?,
                netmask: parse_ip("netmask", &netmask)?,
                gateway: parse_ip("gateway", &gateway)?,
                dns_ip: if dns_ip.is_empty() {
                    None
                } else {
                    Some(parse_ip("dns_ip", &dns_ip)?)
                },
                extif: pick(&o.extif, &pot.extif),
                extra_extif,
                extif_addr: if extif_addr.is_empty() {
                    None
                } else {
                    Some(parse_ip("extif_addr", &extif_addr)?)
                },
                vpn_extif: Some(vpn_extif).filter(|v| !v.is_empty()),
                vpn_networks,
                isolate_vnet_pots: isolate,
                stack: match (o.network_stack.is_some(), Stack::parse(&stack)) {
                    (_, Some(s)) => s,
                    (true, None) => {
                        return Err(bad(
                            "network_stack",
                            format!("{stack:?} is not one of ipv4, ipv6, dual"),
                        ));
                    }
                    // pot itself falls back to ipv4 for an invalid POT_NETWORK_STACK.
                    (false, None) => Stack::Ipv4,
                },
            },
            args_quote_compat: o.args_quote_compat.unwrap_or(true),
            allowed_host_paths: o.allowed_host_paths.clone(),
            allowed_attributes: o.allowed_attributes.clone(),
            allowed_image_dirs: o.allowed_image_dirs.clone(),
            image: image_policy(o, &pot)?,
            devd_socket: match o.devd_socket.as_deref() {
                None => Some(PathBuf::from(crate::host::devd::DEFAULT_SOCKET)),
                Some("") => None,
                Some(path) => Some(PathBuf::from(path)),
            },
        };
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.tool_path.split(':').all(str::is_empty) {
            return Err(bad("tool_path", "must name at least one directory"));
        }
        validate_dataset_name("zfs_root", &self.zfs_root)?;
        for (key, path) in [
            ("fs_root", &self.fs_root),
            ("cache_dir", &self.cache_dir),
            ("tmp_dir", &self.tmp_dir),
            ("state_dir", &self.state_dir),
            ("lock_file", &self.lock_file),
            ("pot_conf_dir", &self.pot_conf_dir),
        ]
        .into_iter()
        .chain(self.devd_socket.as_ref().map(|p| ("devd_socket", p)))
        {
            if !path.is_absolute() {
                return Err(bad(
                    key,
                    format!("{} is not an absolute path", path.display()),
                ));
            }
        }
        for dir in self.tool_path.split(':').filter(|d| !d.is_empty()) {
            if !Path::new(dir).is_absolute() {
                return Err(bad("tool_path", format!("{dir} is not an absolute path")));
            }
        }
        for (key, paths) in [
            ("allowed_host_paths", &self.allowed_host_paths),
            ("allowed_image_dirs", &self.allowed_image_dirs),
        ] {
            if let Some(path) = paths.iter().find(|p| !p.is_absolute()) {
                return Err(bad(
                    key,
                    format!("{} is not an absolute path", path.display()),
                ));
            }
        }
        for name in &self.allowed_attributes {
            if !super::attributes::is_known(name) {
                return Err(bad(
                    "allowed_attributes",
                    format!(
                        "{name:?} is not a jail attribute (known: {})",
                        super::attributes::names().join(", ")
                    ),
                ));
            }
        }
        if self.network.extif.is_empty() {
            return Err(bad("extif", "must not be empty"));
        }
        validate_nic("extif", &self.network.extif)?;
        if let Some(v) = &self.network.vpn_extif {
            validate_nic("vpn_extif", v)?;
        }
        let (net, len) = self.network.ipv4_network();
        if prefix_mask(len) != u32::from(self.network.netmask) {
            return Err(bad(
                "netmask",
                format!(
                    "{} does not match network {}",
                    self.network.netmask, self.network.network
                ),
            ));
        }
        let inside = |ip: Ipv4Addr| u32::from(ip) & prefix_mask(len) == u32::from(net);
        if !inside(self.network.gateway) {
            return Err(bad(
                "gateway",
                format!(
                    "{} is outside network {}",
                    self.network.gateway, self.network.network
                ),
            ));
        }
        Ok(())
    }

    /// `<zfs_root>/jails`
    pub fn jails_dataset(&self) -> String {
        format!("{}/jails", self.zfs_root)
    }

    /// `<fs_root>/jails`
    pub fn jails_dir(&self) -> PathBuf {
        self.fs_root.join("jails")
    }
}

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

/// Agent keys come first; pot's `POT_DEFAULT_SIGNATURE_PUBKEY` is added when set. Keys present
/// make signatures mandatory unless `require_signature = false`, as with pot's default key.
fn image_policy(o: &Overrides, pot: &PotSettings) -> Result<ImagePolicy, ConfigError> {
    let mut pubkeys = o.signature_pubkeys.clone().unwrap_or_default();
    if !pot.signature_pubkey.is_empty() {
        pubkeys.push(PathBuf::from(&pot.signature_pubkey));
    }
    for key in &pubkeys {
        let key_name = if o
            .signature_pubkeys
            .as_ref()
            .is_some_and(|k| k.contains(key))
        {
            "signature_pubkeys"
        } else {
            "POT_DEFAULT_SIGNATURE_PUBKEY"
        };
        let text = std::fs::read_to_string(key)
            .map_err(|e| bad(key_name, format!("{}: {e}", key.display())))?;
        <libsignify::PublicKey as libsignify::Codeable>::from_base64(&text).map_err(|e| {
            bad(
                key_name,
                format!("{}: not a signify public key: {e}", key.display()),
            )
        })?;
    }
    let require_signature = o.require_signature.unwrap_or(!pubkeys.is_empty());
    if require_signature && pubkeys.is_empty() {
        return Err(bad(
            "require_signature",
            "needs signature_pubkeys (or pot's POT_DEFAULT_SIGNATURE_PUBKEY) to check signatures with",
        ));
    }
    let max_size = match &o.image_max_size {
        Some(v) => parse_size("image_max_size", v)?,
        None => DEFAULT_IMAGE_MAX_SIZE,
    };
    let cache_max = o
        .image_cache_max
        .as_deref()
        .map(|v| {
            v.trim().parse::<usize>().map_err(|_| {
                bad(
                    "image_cache_max",
                    format!("{v:?} is not a number of images"),
                )
            })
        })
        .transpose()?;
    // Checked here so that a typo fails SetConfig, not the first https:// start.
    if let Some(path) = &o.image_ca_file {
        super::image::read_ca_file(path).map_err(|e| bad("image_ca_file", e))?;
    }
    Ok(ImagePolicy {
        pubkeys,
        require_signature,
        max_size,
        ca_file: o.image_ca_file.clone(),
        cache_max,
        ..ImagePolicy::default()
    })
}

/// [`super::limits::bytes`] of an agent-config value, or an error naming its key.
fn parse_size(key: &str, v: &str) -> Result<u64, ConfigError> {
    super::limits::bytes(v.trim()).ok_or_else(|| {
        bad(
            key,
            format!("{v:?} is not a size (a positive number of bytes, or with K, M, G or T)"),
        )
    })
}

impl NetworkConfig {
    /// `POT_NETWORK` as (network address, prefix length); validated at resolve time.
    pub fn ipv4_network(&self) -> (Ipv4Addr, u8) {
        let (a, l) = self.network.split_once('/').expect("validated CIDR");
        let len: u8 = l.parse().expect("validated prefix");
        let a: Ipv4Addr = a.parse().expect("validated address");
        (Ipv4Addr::from(u32::from(a) & prefix_mask(len)), len)
    }
}

/// The netmask of a prefix length, as a number.
pub fn prefix_mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    }
}

/// An interface name as FreeBSD allows it: up to 15 characters, letters, digits, `_`, `.`, `-`.
fn validate_nic(key: &str, nic: &str) -> Result<(), ConfigError> {
    let ok = !nic.is_empty()
        && nic.len() <= 15
        && nic
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(bad(key, format!("{nic:?} is not an interface name")))
    }
}

fn validate_dataset_name(key: &str, name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && !name.starts_with('/')
        && !name.ends_with('/')
        && name.split('/').all(|c| {
            !c.is_empty()
                && c.chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "_-.:".contains(ch))
        });
    if ok {
        Ok(())
    } else {
        Err(bad(
            key,
            format!("{name:?} is not a valid ZFS dataset name"),
        ))
    }
}

fn parse_ip(key: &str, v: &str) -> Result<Ipv4Addr, ConfigError> {
    v.parse()
        .map_err(|_| bad(key, format!("{v:?} is not an IPv4 address")))
}

fn parse_cidr(key: &str, v: &str) -> Result<String, ConfigError> {
    let (addr, len) = v
        .split_once('/')
        .ok_or_else(|| bad(key, format!("{v:?} is not in CIDR form (a.b.c.d/len)")))?;
    parse_ip(key, addr)?;
    match len.parse::<u8>() {
        Ok(l) if l <= 32 => Ok(v.to_string()),
        _ => Err(bad(key, format!("{v:?} has an invalid prefix length"))),
    }
}

/// The subset of pot's configuration variables the engine uses.
struct PotSettings {
    zfs_root: String,
    fs_root: PathBuf,
    cache: PathBuf,
    tmp: PathBuf,
    network: String,
    netmask: String,
    gateway: String,
    dns_ip: String,
    extif: String,
    signature_pubkey: String,
    extra_extif: String,
    extif_addr: String,
    vpn_extif: String,
    vpn_networks: String,
    isolate: String,
    network_stack: String,
    /// Every `POT_NETWORK_<nic>` seen.
    nic_networks: BTreeMap<String, String>,
    /// The file that last set each pot variable.
    set_by: BTreeMap<String, PathBuf>,
}

impl PotSettings {
    fn defaults() -> Self {
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
    fn extra_extif(&self) -> Result<BTreeMap<String, String>, ConfigError> {
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
    fn overlay_file(&mut self, path: &Path) -> Result<(), ConfigError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explain_names_each_source() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("pot.conf"),
            "POT_EXTIF=vtnet0\nPOT_GATEWAY=10.192.0.1\n",
        )
        .unwrap();
        let settings = EngineConfig::explain(&Overrides {
            pot_conf_dir: Some(dir.path().to_path_buf()),
            zfs_root: Some("tank/pot".into()),
            gateway: Some("10.192.0.9".into()),
            ..Default::default()
        })
        .unwrap();
        let get = |key: &str| settings.iter().find(|s| s.key == key).unwrap().clone();
        let extif = get("extif");
        assert_eq!(
            (extif.value.as_str(), extif.source),
            ("vtnet0", Source::PotConf)
        );
        assert_eq!(extif.file, Some(dir.path().join("pot.conf")));
        // The agent config wins over pot.conf.
        let gateway = get("gateway");
        assert_eq!(
            (gateway.value.as_str(), gateway.source),
            ("10.192.0.9", Source::AgentConfig)
        );
        assert_eq!(get("zfs_root").source, Source::AgentConfig);
        let fs_root = get("fs_root");
        assert_eq!(
            (fs_root.value.as_str(), fs_root.source),
            ("/opt/pot", Source::Default)
        );
    }

    #[test]
    fn defaults_match_pot() {
        let cfg = EngineConfig::resolve(&Overrides {
            pot_conf_dir: Some("/nonexistent".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(cfg.zfs_root, "zroot/pot");
        assert_eq!(cfg.fs_root, PathBuf::from("/opt/pot"));
        assert_eq!(cfg.network.gateway, Ipv4Addr::new(10, 192, 0, 1));
        assert!(cfg.args_quote_compat);
        assert_eq!(
            cfg.devd_socket,
            Some(PathBuf::from("/var/run/devd.seqpacket.pipe"))
        );
        let off = EngineConfig::resolve(&Overrides {
            pot_conf_dir: Some("/nonexistent".into()),
            devd_socket: Some(String::new()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(off.devd_socket, None);
    }

    #[test]
    fn pot_conf_overrides_defaults_and_agent_overrides_pot() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("pot.default.conf"),
            "POT_ZFS_ROOT=zroot/pot\nPOT_FS_ROOT=/opt/pot\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("pot.conf"),
            "# local\nPOT_ZFS_ROOT=\"tank/pot\" # comment\nPOT_EXTIF=vtnet0\n",
        )
        .unwrap();
        let mut o = Overrides {
            pot_conf_dir: Some(dir.path().into()),
            ..Default::default()
        };
        let cfg = EngineConfig::resolve(&o).unwrap();
        assert_eq!(cfg.zfs_root, "tank/pot");
        assert_eq!(cfg.network.extif, "vtnet0");
        o.zfs_root = Some("other/pot".into());
        assert_eq!(EngineConfig::resolve(&o).unwrap().zfs_root, "other/pot");
    }

    #[test]
    fn bad_values_name_the_key() {
        let o = Overrides {
            pot_conf_dir: Some("/nonexistent".into()),
            zfs_root: Some("/bad//name".into()),
            ..Default::default()
        };
        assert_eq!(EngineConfig::resolve(&o).unwrap_err().key, "zfs_root");
        let o = Overrides {
            pot_conf_dir: Some("/nonexistent".into()),
            gateway: Some("10.1".into()),
            ..Default::default()
        };
        assert_eq!(EngineConfig::resolve(&o).unwrap_err().key, "gateway");
        let o = Overrides {
            pot_conf_dir: Some("/nonexistent".into()),
            fs_root: Some("relative".into()),
            ..Default::default()
        };
        assert_eq!(EngineConfig::resolve(&o).unwrap_err().key, "fs_root");
        let o = Overrides {
            pot_conf_dir: Some("/nonexistent".into()),
            devd_socket: Some("run/devd.pipe".into()),
            ..Default::default()
        };
        assert_eq!(EngineConfig::resolve(&o).unwrap_err().key, "devd_socket");
        let o = Overrides {
            pot_conf_dir: Some("/nonexistent".into()),
            image_max_size: Some("12X".into()),
            ..Default::default()
        };
        assert_eq!(EngineConfig::resolve(&o).unwrap_err().key, "image_max_size");
        let o = Overrides {
            pot_conf_dir: Some("/nonexistent".into()),
            image_cache_max: Some("ten".into()),
            ..Default::default()
        };
        assert_eq!(
            EngineConfig::resolve(&o).unwrap_err().key,
            "image_cache_max"
        );
        let o = Overrides {
            pot_conf_dir: Some("/nonexistent".into()),
            require_signature: Some(true),
            ..Default::default()
        };
        assert_eq!(
            EngineConfig::resolve(&o).unwrap_err().key,
            "require_signature"
        );
        let o = Overrides {
            pot_conf_dir: Some("/nonexistent".into()),
            signature_pubkeys: Some(vec!["/nonexistent/key.pub".into()]),
            ..Default::default()
        };
        assert_eq!(
            EngineConfig::resolve(&o).unwrap_err().key,
            "signature_pubkeys"
        );
        let tls = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tls");
        for (ca_file, why) in [
            (Path::new("/nonexistent/ca.pem"), "No such file"),
            (&tls.join("server.key"), "no PEM certificate"),
        ] {
            let o = Overrides {
                pot_conf_dir: Some("/nonexistent".into()),
                image_ca_file: Some(ca_file.into()),
                ..Default::default()
            };
            let e = EngineConfig::resolve(&o).unwrap_err();
            assert_eq!(e.key, "image_ca_file");
            assert!(e.reason.contains(why), "{e:?}");
        }
        let o = Overrides {
            pot_conf_dir: Some("/nonexistent".into()),
            image_ca_file: Some(tls.join("ca.pem")),
            ..Default::default()
        };
        assert_eq!(
            EngineConfig::resolve(&o).unwrap().image.ca_file,
            Some(tls.join("ca.pem"))
        );
    }

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_size("k", "1048576").unwrap(), 1 << 20);
        assert_eq!(parse_size("k", "512K").unwrap(), 512 << 10);
        assert_eq!(parse_size("k", "100MiB").unwrap(), 100 << 20);
        assert_eq!(parse_size("k", "20G").unwrap(), 20 << 30);
        assert_eq!(parse_size("k", "1TB").unwrap(), 1 << 40);
        for bad in ["", "0", "-1", "G", "1.5G", "99999999999T"] {
            assert!(parse_size("k", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pot_default_signature_pubkey_makes_signatures_required() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("pot.pub");
        std::fs::write(
            &key,
            "untrusted comment: test public key\nRWQBAgMEBQYHCAECAwQFBgcIAQIDBAUGBwgBAgMEBQYHCAECAwQFBgcI\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("pot.conf"),
            format!("POT_DEFAULT_SIGNATURE_PUBKEY={}\n", key.display()),
        )
        .unwrap();
        let mut o = Overrides {
            pot_conf_dir: Some(dir.path().into()),
            ..Default::default()
        };
        let cfg = EngineConfig::resolve(&o).unwrap();
        assert_eq!(cfg.image.pubkeys, vec![key.clone()]);
        assert!(cfg.image.require_signature);
        o.require_signature = Some(false);
        assert!(!EngineConfig::resolve(&o).unwrap().image.require_signature);
    }

    #[test]
    fn trust_boundary_options_are_checked() {
        let o = Overrides {
            pot_conf_dir: Some("/nonexistent".into()),
            allowed_host_paths: vec!["data".into()],
            ..Default::default()
        };
        assert_eq!(
            EngineConfig::resolve(&o).unwrap_err().key,
            "allowed_host_paths"
        );
        let o = Overrides {
            pot_conf_dir: Some("/nonexistent".into()),
            allowed_attributes: vec!["enforce_statfs".into(), "persistent".into()],
            ..Default::default()
        };
        let e = EngineConfig::resolve(&o).unwrap_err();
        assert_eq!(e.key, "allowed_attributes");
        assert!(e.reason.contains("\"persistent\""), "{e}");
        let o = Overrides {
            pot_conf_dir: Some("/nonexistent".into()),
            allowed_image_dirs: vec!["/srv/images".into(), "images".into()],
            ..Default::default()
        };
        let e = EngineConfig::resolve(&o).unwrap_err();
        assert_eq!(e.key, "allowed_image_dirs");
        assert!(e.reason.contains("images is not an absolute path"), "{e}");
    }
}
