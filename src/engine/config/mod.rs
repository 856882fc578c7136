//! Engine settings: pot's defaults, overlaid by pot's own config files, overlaid by the agent config.

mod explain;
mod parse;
mod pot_files;
mod table;
#[cfg(test)]
mod tests;

pub use explain::{Setting, Source};
use parse::{parse_cidr, parse_ip, parse_size, validate_dataset_name, validate_nic};
use pot_files::PotSettings;
pub use table::{Kind, SETTINGS, Values};

use super::image::Proxies;
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
    /// The HTTP proxies downloads go through.
    pub proxies: Proxies,
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
            proxies: Proxies::default(),
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

/// Agent-config values that override pot's; `None` keeps pot's value. One field per row of
/// [`SETTINGS`], which fills them from the decoded agent config ([`Overrides::from_values`]).
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
    /// Empty: only pot's key, if any.
    pub signature_pubkeys: Vec<PathBuf>,
    pub require_signature: Option<bool>,
    pub image_max_size: Option<String>,
    pub image_cache_max: Option<String>,
    pub image_ca_file: Option<PathBuf>,
    /// Empty disables memory-limit reporting.
    pub devd_socket: Option<String>,
    /// Not an agent-config key: the `HTTP_PROXY`, `HTTPS_PROXY` and `NO_PROXY` of the process
    /// environment, where pot's fetch(1) finds them too, read where the agent config is decoded.
    pub proxies: Proxies,
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
    ///
    /// Key by key on purpose: each setting becomes a typed field by a rule of its own (pot's
    /// fallback, parsing, a default that depends on another key). Which pot variable backs a
    /// setting, and pot's default for it, come from [`SETTINGS`].
    pub fn resolve(o: &Overrides) -> Result<EngineConfig, ConfigError> {
        let conf_dir = o
            .pot_conf_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_POT_CONF_DIR));
        let pot = PotSettings::read(&conf_dir)?;
        let pick = |agent: &Option<String>, setting: &str| {
            agent
                .clone()
                .unwrap_or_else(|| pot.get(setting).to_string())
        };
        let pick_path = |agent: &Option<PathBuf>, setting: &str| {
            agent
                .clone()
                .unwrap_or_else(|| PathBuf::from(pot.get(setting)))
        };
        let network = pick(&o.network, "network");
        let netmask = pick(&o.netmask, "netmask");
        let gateway = pick(&o.gateway, "gateway");
        let dns_ip = pick(&o.dns_ip, "dns_ip");
        let extif_addr = pick(&o.extif_addr, "extif_addr");
        let vpn_extif = pick(&o.vpn_extif, "vpn_extif");
        let stack = pick(&o.network_stack, "network_stack");
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
            pot.get("vpn_networks")
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
                pot.get("isolate_vnet_pots"),
                "YES" | "yes" | "true" | "TRUE" | "on" | "ON" | "1"
            ),
        };
        let cfg = EngineConfig {
            tool_path: o
                .tool_path
                .clone()
                .unwrap_or_else(|| DEFAULT_TOOL_PATH.to_string()),
            zfs_root: pick(&o.zfs_root, "zfs_root"),
            fs_root: pick_path(&o.fs_root, "fs_root"),
            cache_dir: pick_path(&o.cache_dir, "cache_dir"),
            tmp_dir: pick_path(&o.tmp_dir, "tmp_dir"),
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
                extif: pick(&o.extif, "extif"),
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

    /// Key by key, in this order, on purpose: the first failure is the one reported, so the
    /// order is part of what an operator sees.
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

/// Agent keys come first; pot's `POT_DEFAULT_SIGNATURE_PUBKEY` is added when set. Keys present
/// make signatures mandatory unless `require_signature = false`, as with pot's default key.
fn image_policy(o: &Overrides, pot: &PotSettings) -> Result<ImagePolicy, ConfigError> {
    let mut pubkeys = o.signature_pubkeys.clone();
    let pot_key = pot.get("signature_pubkeys");
    if !pot_key.is_empty() {
        pubkeys.push(PathBuf::from(pot_key));
    }
    for key in &pubkeys {
        let key_name = if o.signature_pubkeys.contains(key) {
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
        super::image::read_ca_file(path).map_err(|e| bad("image_ca_file", e.to_string()))?;
    }
    Ok(ImagePolicy {
        pubkeys,
        require_signature,
        max_size,
        ca_file: o.image_ca_file.clone(),
        cache_max,
        proxies: o.proxies.clone(),
        ..ImagePolicy::default()
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
