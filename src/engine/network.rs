//! Task networking as pot builds it.
//!
//! Design:
//! * [`plan`] turns a task's request (network type, optional IP, ports) into a typed
//!   [`NetworkPlan`] and checks everything that needs no host: the type, the stack, the IP
//!   against `POT_NETWORK`, the ports. Bad input fails here, before anything is created.
//! * The shared part, pot's `vnet-start`, is [`Engine::ensure_vnet`]: forwarding on, the public
//!   bridge found by its gateway address (or created), the `pot-nat` anchor loaded. It runs
//!   before the first bridged task of a plugin process and is idempotent; bridges and NAT are
//!   never torn down, as with pot.
//! * The address is chosen like `potnet next` (first free host of `POT_NETWORK`, skipping the
//!   gateway, the DNS IP, every bridge pot's `ip=` and every private-bridge subnet) while pot's
//!   global lock is held, and written into the pot's `pot.conf` before the lock is released,
//!   so concurrent starts in this plugin and a `pot` CLI never pick the same one.
//! * Per task: an epair (`descr <pot>`, group `pot`), its host end renamed `p4<hex epoch><hex
//!   n>` and added to the bridge, its jail end handed to the jail with `vnet.interface`, then
//!   address, default route and lo0 set from the host (`ifconfig -j`, `route -j`) before the
//!   task's command runs, and the rdr rules loaded into `pot-rdr/<anchor>` from stdin. Stacks
//!   ipv6 and dual add (ipv6: only) a `p6…` epair on the bridge holding `extif`, its jail end
//!   set for SLAAC; private bridges and alias pots follow pot's rules for each stack.
//! * Alias pots get `NIC|IP` addresses through jail(8)'s `ip4.addr`/`ip6.addr`; jail(8) adds
//!   them to the NICs and teardown removes them, as `pot stop` does.
//! * What teardown needs is in the task's state dir (`network.json`), written before each host
//!   change: the epair, the anchor, and whether an epair was being created (then teardown also
//!   looks for interfaces with `descr <pot>`, pot's own convention). The address needs no
//!   release: it is free once the pot's `pot.conf` is gone.
//! * Ports are also reachable from the host itself (pf's rdr does not see locally originated
//!   traffic): the task's supervisor relays them (see [`super::supervisor::relay`]) instead of pot's copied
//!   `ncat` binaries.

use super::config::{NetworkConfig, prefix_mask};
use super::layout::PotName;
use super::potconf::PotConf;
use super::state::{self, read_json, write_atomic};
use super::supervisor::relay::{Proto, Relay};
use super::{Engine, EngineError};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

/// pot's limit for `pot-rdr/<anchor>` names.
const ANCHOR_MAX: usize = 55;
/// Descriptions of the bridges the engine creates, as `vnet-start` does.
pub(super) const PUBLIC_BRIDGE_DESCR: &str = "pot public bridge";
pub(super) const IPV6_BRIDGE_DESCR: &str = "pot ipv6 bridge";
const PRIVATE_BRIDGE_DESCR: &str = "pot private bridge";
pub(super) const RECORD_FILE: &str = "network.json";

/// The network a task asks for, in pot's terms (the driver has resolved Nomad's ports).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkRequest {
    /// pot's network type (`host` is `inherit`); `None` picks public-bridge when ports are
    /// published, inherit otherwise.
    pub network_type: Option<String>,
    /// An explicit address instead of the next free one.
    pub ip: Option<String>,
    /// The private bridge (`<fs_root>/bridges/<name>`) of a private-bridge task.
    pub bridge: Option<String>,
    pub ports: Vec<PortSpec>,
}

/// One published port: traffic to the host's `host_port` goes to the pot's `pot_port`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSpec {
    pub label: String,
    pub host_port: u16,
    pub pot_port: u16,
}

/// A validated network plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkPlan {
    Inherit,
    Bridged(BridgePlan),
    /// Static addresses on host NICs, given to the jail with `ip4.addr`/`ip6.addr`.
    Alias(Vec<AliasAddr>),
}

/// One `NIC|IP` of an alias pot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasAddr {
    pub nic: String,
    pub ip: IpAddr,
}

impl AliasAddr {
    fn is_v6(&self) -> bool {
        self.ip.is_ipv6()
    }
}

/// `ip4.addr` and `ip6.addr` values (`nic|ip,…`), empty when the stack has none.
pub fn alias_jail_params(addrs: &[AliasAddr]) -> (String, String) {
    let join = |v6: bool| {
        addrs
            .iter()
            .filter(|a| a.is_v6() == v6)
            .map(|a| format!("{}|{}", a.nic, a.ip))
            .collect::<Vec<_>>()
            .join(",")
    };
    (join(false), join(true))
}

/// pot's alias `ip=` list (`NIC|IP` or `IP`, space-separated), the NIC defaulting to `extif`,
/// kept as the stack allows; the stack must keep at least one.
fn alias_plan(cfg: &NetworkConfig, ip: Option<&str>) -> Result<Vec<AliasAddr>, EngineError> {
    let bad = |m: String| EngineError::InvalidInput(m);
    let list = ip.filter(|s| !s.trim().is_empty()).ok_or_else(|| {
        bad(
            "network_mode \"alias\" needs `ip`: addresses as `IP` or `NIC|IP`, space-separated"
                .to_string(),
        )
    })?;
    let mut addrs = Vec::new();
    for entry in list.split_whitespace() {
        let (nic, ip) = match entry.split_once('|') {
            Some((nic, ip)) => (nic.to_string(), ip),
            None => (cfg.extif.clone(), entry),
        };
        let nic_ok = !nic.is_empty()
            && nic.len() <= 15
            && nic
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        let ip: IpAddr = ip
            .parse()
            .ok()
            .filter(|_| nic_ok)
            .ok_or_else(|| bad(format!("ip entry {entry:?} is not `IP` or `NIC|IP`")))?;
        if let Some(what) = not_a_host_address(ip) {
            return Err(bad(format!(
                "ip entry {entry:?}: {ip} is {what}, which a pot cannot hold"
            )));
        }
        if addrs.iter().any(|a: &AliasAddr| a.ip == ip) {
            return Err(bad(format!("ip entry {entry:?}: {ip} is listed twice")));
        }
        addrs.push(AliasAddr { nic, ip });
    }
    let stack = cfg.stack;
    addrs.retain(|a| match stack {
        super::Stack::Ipv4 => !a.is_v6(),
        super::Stack::Ipv6 => a.is_v6(),
        super::Stack::Dual => true,
    });
    if addrs.is_empty() {
        return Err(bad(format!(
            "ip {list:?} has no address for network stack {}",
            stack.as_str()
        )));
    }
    Ok(addrs)
}

/// What `ip` is when it can never be one host's own address: jail(8) would add it to a NIC.
fn not_a_host_address(ip: IpAddr) -> Option<&'static str> {
    match ip {
        _ if ip.is_unspecified() => Some("the unspecified address"),
        _ if ip.is_multicast() => Some("a multicast address"),
        IpAddr::V4(v4) if v4.is_broadcast() => Some("the broadcast address"),
        _ => None,
    }
}

/// Every address the pots under `fs_root` name in their pot.conf's `ip` (`IP` or `NIC|IP`,
/// space-separated, whatever the network type), but `except`'s, with the pot naming each.
fn pot_addresses(fs_root: &Path, except: &PotName) -> BTreeMap<IpAddr, String> {
    let mut held = BTreeMap::new();
    let Ok(dirs) = std::fs::read_dir(fs_root.join("jails")) else {
        return held;
    };
    for dir in dirs.flatten() {
        let name = dir.file_name().to_string_lossy().into_owned();
        if name == except.as_str() {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(dir.path().join("conf/pot.conf")) else {
            continue;
        };
        let conf = PotConf::parse(&text);
        for entry in conf.get("ip").unwrap_or_default().split_whitespace() {
            let ip = entry.split_once('|').map_or(entry, |(_, ip)| ip);
            if let Ok(ip) = ip.parse::<IpAddr>() {
                held.insert(ip, name.clone());
            }
        }
    }
    held
}

/// Refuses alias addresses another pot's pot.conf names. Run under pot's global lock before
/// the pot's own pot.conf is written, so two starts never claim one address: the loser's
/// failed `jail -c` would otherwise be undone by taking the address from the winner.
pub(super) fn check_alias_unclaimed(
    fs_root: &Path,
    pot: &PotName,
    addrs: &[AliasAddr],
) -> Result<(), EngineError> {
    let held = pot_addresses(fs_root, pot);
    for a in addrs {
        if let Some(other) = held.get(&a.ip) {
            return Err(EngineError::InvalidInput(format!(
                "ip {}|{}: {} is already used by pot {other}",
                a.nic, a.ip, a.ip
            )));
        }
    }
    Ok(())
}

/// Refuses alias addresses the host already has (on any interface) and the broadcast address
/// of a subnet on their NIC: those are not the pot's to add, nor to remove at teardown.
fn check_alias_host(
    listing: &[crate::host::IfaceInfo],
    addrs: &[AliasAddr],
) -> Result<(), EngineError> {
    for a in addrs {
        let bad = |why: String| {
            Err(EngineError::InvalidInput(format!(
                "ip {}|{}: {why}",
                a.nic, a.ip
            )))
        };
        for iface in listing {
            let has = match a.ip {
                IpAddr::V4(v4) => iface.inet.iter().any(|(ip, _)| *ip == v4),
                IpAddr::V6(v6) => iface.inet6.contains(&v6),
            };
            if has {
                return bad(format!(
                    "{} is already an address of the host's {}",
                    a.ip, iface.name
                ));
            }
        }
        let IpAddr::V4(v4) = a.ip else { continue };
        let nic = listing.iter().find(|i| i.name == a.nic);
        for (ip, len) in nic.into_iter().flat_map(|i| &i.inet) {
            let broadcast = Ipv4Addr::from(u32::from(*ip) | !prefix_mask(*len));
            if *len < 31 && broadcast == v4 {
                return bad(format!(
                    "{v4} is the broadcast address of {}'s network {ip}/{len}",
                    a.nic
                ));
            }
        }
    }
    Ok(())
}

/// A pot on the public bridge or on a private one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgePlan {
    /// `None` is the public bridge.
    pub private: Option<PrivateBridge>,
    /// An explicit address, validated against the bridge's network.
    pub ip: Option<Ipv4Addr>,
    pub ports: Vec<PortSpec>,
    /// pot's stack for the pot: ipv4 joins the IPv4 bridge, ipv6 the bridge holding `extif`
    /// (addresses by SLAAC), dual both.
    pub stack: super::Stack,
}

impl BridgePlan {
    pub fn v4(&self) -> bool {
        self.stack != super::Stack::Ipv6
    }

    pub fn v6(&self) -> bool {
        self.stack != super::Stack::Ipv4
    }

    /// The bridge's network, prefix length and gateway.
    fn subnet(&self, cfg: &NetworkConfig) -> (Ipv4Addr, u8, Ipv4Addr) {
        match &self.private {
            Some(b) => (b.net, b.len, b.gateway),
            None => {
                let (net, len) = cfg.ipv4_network();
                (net, len, cfg.gateway)
            }
        }
    }
}

/// A private bridge as `pot create-private-bridge` recorded it in `<fs_root>/bridges/<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivateBridge {
    pub name: String,
    pub net: Ipv4Addr,
    pub len: u8,
    pub gateway: Ipv4Addr,
}

/// Reads a private bridge file: `net=`, `gateway=` and `name=` lines, read like pot does
/// (spaces, tabs and `"` dropped).
fn read_private_bridge(fs_root: &Path, name: &str) -> Result<PrivateBridge, EngineError> {
    let bad = |m: String| EngineError::InvalidInput(m);
    let valid = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
    if !valid {
        return Err(bad(format!(
            "bridge {name:?} is not a valid private bridge name"
        )));
    }
    let path = fs_root.join("bridges").join(name);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        bad(format!(
            "private bridge {name:?} does not exist ({}: {e}); `pot create-private-bridge -B {name} -S <hosts>` creates it",
            path.display()
        ))
    })?;
    let conf = PotConf::parse(&text);
    let malformed = || {
        bad(format!(
            "private bridge {name:?}: {} has no valid net= and gateway=",
            path.display()
        ))
    };
    let (net, gateway) = match (conf.get("net"), conf.get("gateway")) {
        (Some(n), Some(g)) => (n, g),
        _ => return Err(malformed()),
    };
    let parsed = net.split_once('/').and_then(|(a, l)| {
        Some((
            a.parse::<Ipv4Addr>().ok()?,
            l.parse::<u8>().ok().filter(|l| *l <= 30)?,
        ))
    });
    let (Some((addr, len)), Ok(gateway)) = (parsed, gateway.parse::<Ipv4Addr>()) else {
        return Err(malformed());
    };
    let net = Ipv4Addr::from(u32::from(addr) & prefix_mask(len));
    if !subnet_hosts(net, len).any(|h| h == gateway) {
        return Err(bad(format!(
            "private bridge {name:?}: gateway {gateway} is not a host of {net}/{len}"
        )));
    }
    Ok(PrivateBridge {
        name: name.to_string(),
        net,
        len,
        gateway,
    })
}

/// What a bridged task got; kept in the task's state dir for teardown and for Nomad.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkRecord {
    pub ip: Option<Ipv4Addr>,
    /// Host ends of the epairs (IPv4, then IPv6), once renamed.
    pub epairs: Vec<String>,
    /// Set while an epair is being created and named.
    pub epair_pending: bool,
    /// `pot-rdr/<anchor>`, once rules may have been loaded.
    pub anchor: Option<String>,
    pub ports: Vec<PortSpec>,
    /// Aliases jail(8) adds to host NICs for an alias pot; they outlive the jail.
    pub aliases: Vec<AliasAddr>,
}

/// Checks `req` against pot's network settings (and private bridge files) without changing
/// anything on the host.
pub fn plan(
    cfg: &NetworkConfig,
    fs_root: &Path,
    req: &NetworkRequest,
) -> Result<NetworkPlan, EngineError> {
    let bad = |m: String| Err(EngineError::InvalidInput(m));
    let ty = match req.network_type.as_deref() {
        Some("host") | Some("inherit") => "inherit",
        Some("public-bridge") => "public-bridge",
        Some("private-bridge") => "private-bridge",
        Some("alias") => "alias",
        Some(other) => {
            return bad(format!(
                "unknown network_mode {other:?} (pot's types: \"inherit\" (or \"host\"), \"public-bridge\", \"private-bridge\", \"alias\")"
            ));
        }
        None if req.ports.is_empty() => "inherit",
        None => "public-bridge",
    };
    if ty == "inherit" {
        if let Some(ip) = &req.ip {
            return bad(format!(
                "ip {ip:?} needs a bridge network_mode; inherit shares the host's addresses"
            ));
        }
        return Ok(NetworkPlan::Inherit);
    }
    if ty == "alias" {
        if let Some(b) = &req.bridge {
            return bad(format!(
                "bridge {b:?} is only used with network_mode \"private-bridge\""
            ));
        }
        // pot publishes no ports for alias pots: the task listens on its own addresses.
        return Ok(NetworkPlan::Alias(alias_plan(cfg, req.ip.as_deref())?));
    }
    if let (Some(b), false) = (&req.bridge, ty == "private-bridge") {
        return bad(format!(
            "bridge {b:?} is only used with network_mode \"private-bridge\""
        ));
    }
    let private = if ty == "private-bridge" {
        // pot refuses ipv6 and treats dual as ipv4: private bridges are IPv4 only.
        if cfg.stack == super::Stack::Ipv6 {
            return bad(
                "private-bridge is IPv4 only: it cannot be used with network stack ipv6"
                    .to_string(),
            );
        }
        let name = req.bridge.as_deref().ok_or_else(|| {
            EngineError::InvalidInput(
                "network_mode \"private-bridge\" needs `bridge`, the private bridge's name"
                    .to_string(),
            )
        })?;
        Some(read_private_bridge(fs_root, name)?)
    } else {
        if cfg.stack == super::Stack::Ipv6 && !req.ports.is_empty() {
            return bad(
                "ports are published through IPv4 only (pot's rdr rules): network stack ipv6 cannot publish them"
                    .to_string(),
            );
        }
        None
    };
    let stack = if private.is_some() {
        super::Stack::Ipv4
    } else {
        cfg.stack
    };
    let mut bridge = BridgePlan {
        private,
        ip: None,
        ports: Vec::new(),
        stack,
    };
    if let Some(s) = &req.ip {
        let ip: Ipv4Addr = s
            .parse()
            .map_err(|_| EngineError::InvalidInput(format!("ip {s:?} is not an IPv4 address")))?;
        let (net, len, gateway) = bridge.subnet(cfg);
        let dns = cfg.dns_ip.filter(|_| bridge.private.is_none());
        if ip == gateway || Some(ip) == dns || !subnet_hosts(net, len).any(|h| h == ip) {
            return bad(format!(
                "ip {ip} is not a free host address of network {net}/{len} (gateway {gateway}{})",
                dns.map(|d| format!(", DNS {d}")).unwrap_or_default()
            ));
        }
        bridge.ip = Some(ip);
    }
    let mut seen = BTreeSet::new();
    for p in &req.ports {
        if p.host_port == 0 || p.pot_port == 0 {
            return bad(format!("port {:?}: ports must be 1-65535", p.label));
        }
        if !seen.insert(p.host_port) {
            return bad(format!(
                "host port {} is published twice (port {:?})",
                p.host_port, p.label
            ));
        }
    }
    bridge.ports = req.ports.clone();
    Ok(NetworkPlan::Bridged(bridge))
}

/// Host addresses of a subnet in ascending order (network and broadcast excluded but in /31
/// and /32), as the `hosts()` potnet walks.
fn subnet_hosts(net: Ipv4Addr, len: u8) -> impl Iterator<Item = Ipv4Addr> {
    let first = u32::from(net);
    let last = first | !prefix_mask(len);
    let range = if len >= 31 {
        first..=last
    } else {
        first + 1..=last - 1
    };
    range.map(Ipv4Addr::from)
}

/// Addresses potnet never hands out whatever the pots: gateway and DNS IP.
fn reserved(cfg: &NetworkConfig) -> BTreeSet<Ipv4Addr> {
    let mut r = BTreeSet::from([cfg.gateway]);
    r.extend(cfg.dns_ip);
    r
}

/// potnet's known-address DB for the public bridge: the reserved addresses, every bridge
/// pot's `ip=` and every address of every private-bridge subnet.
fn used_addresses(cfg: &NetworkConfig, fs_root: &Path) -> BTreeSet<Ipv4Addr> {
    let mut used = reserved(cfg);
    used.extend(bridge_pot_addresses(fs_root));
    if let Ok(files) = std::fs::read_dir(fs_root.join("bridges")) {
        for f in files.flatten() {
            let Some(name) = f.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if let Ok(b) = read_private_bridge(fs_root, &name) {
                let first = u32::from(b.net);
                let last = first | !prefix_mask(b.len);
                used.extend((first..=last).map(Ipv4Addr::from));
            }
        }
    }
    used
}

/// The `ip=` of every bridged pot: `network_type` public-bridge or private-bridge, or the old
/// `ip4=` with `vnet=true`; alias pots do not count.
fn bridge_pot_addresses(fs_root: &Path) -> BTreeSet<Ipv4Addr> {
    let mut used = BTreeSet::new();
    let Ok(dirs) = std::fs::read_dir(fs_root.join("jails")) else {
        return used;
    };
    for dir in dirs.flatten() {
        let Ok(text) = std::fs::read_to_string(dir.path().join("conf/pot.conf")) else {
            continue;
        };
        let conf = PotConf::parse(&text);
        let bridged = matches!(
            conf.get("network_type").as_deref(),
            Some("public-bridge" | "private-bridge")
        ) || conf.get("vnet").as_deref() == Some("true");
        let ip = conf.get("ip").or_else(|| conf.get("ip4"));
        if let (true, Some(ip)) = (bridged, ip) {
            match ip.parse::<Ipv4Addr>() {
                Ok(ip) => {
                    used.insert(ip);
                }
                // potnet panics here; one bad file must not stop every start.
                Err(_) => tracing::warn!(
                    pot = %dir.file_name().to_string_lossy(),
                    ip = %ip,
                    "ignoring a malformed ip= in pot.conf"
                ),
            }
        }
    }
    used
}

/// `potnet next [-b B]`, or `potnet validate` of an explicit address.
fn choose_ip(
    cfg: &NetworkConfig,
    fs_root: &Path,
    private: Option<&PrivateBridge>,
    wanted: Option<Ipv4Addr>,
) -> Result<Ipv4Addr, EngineError> {
    let (used, mut hosts, what) = match private {
        // Inside a private bridge only its gateway and the bridge pots' addresses count.
        Some(b) => {
            let mut used = bridge_pot_addresses(fs_root);
            used.insert(b.gateway);
            let what = format!("private bridge {:?} ({}/{})", b.name, b.net, b.len);
            (used, subnet_hosts(b.net, b.len), what)
        }
        None => {
            let (net, len) = cfg.ipv4_network();
            let what = format!("network {}", cfg.network);
            (used_addresses(cfg, fs_root), subnet_hosts(net, len), what)
        }
    };
    match wanted {
        Some(ip) if used.contains(&ip) => Err(EngineError::InvalidInput(format!(
            "ip {ip} is already used by another pot"
        ))),
        Some(ip) => Ok(ip),
        None => hosts
            .find(|h| !used.contains(h))
            .ok_or_else(|| EngineError::InvalidInput(format!("{what} has no free address left"))),
    }
}

/// pot's anchor name: the pot name, or its last 55 characters without leading `_`.
pub fn anchor_name(pot: &PotName) -> String {
    let p = pot.as_str();
    if p.len() <= ANCHOR_MAX {
        return p.to_string();
    }
    p[p.len() - ANCHOR_MAX..]
        .trim_start_matches('_')
        .to_string()
}

/// pot's `rdr` rules for one pot, tcp and udp for each port (Nomad ports carry no protocol).
pub fn rdr_rules(cfg: &NetworkConfig, ip: Ipv4Addr, ports: &[PortSpec]) -> String {
    let target = match cfg.extif_addr {
        Some(a) => a.to_string(),
        None => format!("({})", cfg.extif),
    };
    let mut out = String::new();
    for p in ports {
        for proto in ["tcp", "udp"] {
            let (h, pp) = (p.host_port, p.pot_port);
            out.push_str(&format!(
                "rdr pass on {} proto {proto} from any to {target} port {h} -> {ip} port {pp}\n",
                cfg.extif
            ));
            for nic in cfg.extra_extif.keys() {
                out.push_str(&format!(
                    "rdr pass on {nic} proto {proto} from any to ({nic}) port {h} -> {ip} port {pp}\n"
                ));
            }
        }
    }
    out
}

/// pot's `pot-nat` anchor (vnet-start).
pub fn nat_rules(cfg: &NetworkConfig) -> String {
    let mut out = format!(
        "ext_if = \"{}\"\nlocalnet = \"{}\"\n",
        cfg.extif, cfg.network
    );
    match cfg.extif_addr {
        Some(a) => out.push_str(&format!(
            "ext_addr = \"{a}\"\nnat on $ext_if from $localnet to any -> $ext_addr\n"
        )),
        None => out.push_str("nat on $ext_if from $localnet to any -> ($ext_if:0)\n"),
    }
    for (nic, net) in &cfg.extra_extif {
        out.push_str(&format!(
            "nat on {nic} from $localnet to {net} -> ({nic}:0)\n"
        ));
    }
    if let Some(vpn) = &cfg.vpn_extif {
        for net in &cfg.vpn_networks {
            out.push_str(&format!(
                "nat on {vpn} from $localnet to {net} -> ({vpn}:0)\n"
            ));
        }
    }
    out
}

/// `pot.export.ports` as pot's export-ports writes it: `[proto:]pot_port:host_port`.
fn export_ports(ports: &[PortSpec]) -> String {
    ports
        .iter()
        .flat_map(|p| {
            [
                format!("{}:{}", p.pot_port, p.host_port),
                format!("udp:{}:{}", p.pot_port, p.host_port),
            ]
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// pot names the host end `p4<hex epoch><hex pid>`; one plugin process starts many pots, so a
/// per-process sequence is added to the pid. At most 15 characters (IFNAMSIZ - 1).
fn epair_host_name(stack_prefix: char) -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let n = (std::process::id() + SEQ.fetch_add(1, Ordering::Relaxed)) & 0xf_ffff;
    let epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("p{stack_prefix}{epoch:x}{n:x}")
}

impl Engine {
    /// pot's `vnet-start` for IPv4: forwarding, `pot-nat` and pf on (once per plugin process),
    /// then the task's bridge, found by its gateway address or created (once per bridge).
    /// Returns the bridge's interface.
    pub(super) async fn ensure_vnet(&self, plan: &BridgePlan) -> Result<String, EngineError> {
        let mut state = self.vnet.lock().await;
        let (net, len, gateway) = plan.subnet(&self.cfg.network);
        if let Some(bridge) = state.as_ref().and_then(|m| m.get(&gateway)) {
            return Ok(bridge.clone());
        }
        let host_err = || EngineError::host("vnet-start");
        if state.is_none() {
            self.vnet_shared().await?;
            *state = Some(BTreeMap::new());
        }
        let bridges = self
            .host
            .ifaces_in_group("bridge")
            .await
            .map_err(host_err())?;
        let found = bridges
            .iter()
            .find(|b| b.inet.iter().any(|(a, _)| *a == gateway))
            .map(|b| b.name.clone());
        let bridge = match found {
            Some(b) => b,
            None => {
                let descr = if plan.private.is_some() {
                    PRIVATE_BRIDGE_DESCR
                } else {
                    PUBLIC_BRIDGE_DESCR
                };
                let b = self.host.bridge_create(descr).await.map_err(host_err())?;
                self.host
                    .iface_inet(None, &b, gateway, Ipv4Addr::from(prefix_mask(len)), false)
                    .await
                    .map_err(host_err())?;
                b
            }
        };
        tracing::info!(bridge = %bridge, network = %format!("{net}/{len}"), gateway = %gateway, "bridge ready");
        state
            .get_or_insert_with(BTreeMap::new)
            .insert(gateway, bridge.clone());
        Ok(bridge)
    }

    /// The IPv6 part of pot's `vnet-start`: the bridge holding `extif` (pots get addresses by
    /// SLAAC through it), created with `extif` as member if missing. Once per plugin process.
    pub(super) async fn ensure_vnet6(&self) -> Result<String, EngineError> {
        let mut done = self.vnet6.lock().await;
        if let Some(b) = done.as_ref() {
            return Ok(b.clone());
        }
        let host_err = || EngineError::host("vnet-start");
        let extif = &self.cfg.network.extif;
        let bridges = self
            .host
            .ifaces_in_group("bridge")
            .await
            .map_err(host_err())?;
        let bridge = match bridges.into_iter().find(|b| b.members.contains(extif)) {
            Some(b) => b.name,
            None => {
                let b = self
                    .host
                    .bridge_create(IPV6_BRIDGE_DESCR)
                    .await
                    .map_err(host_err())?;
                self.host
                    .iface_inet6_up(None, &b)
                    .await
                    .map_err(host_err())?;
                self.host
                    .bridge_addm(&b, extif, false)
                    .await
                    .map_err(host_err())?;
                b
            }
        };
        tracing::info!(bridge = %bridge, "ipv6 bridge ready");
        *done = Some(bridge.clone());
        Ok(bridge)
    }

    /// SLAAC on the jail's IPv6 epair end, set from the host (pot's tinirc runs `ifconfig
    /// … inet6 up accept_rtadv -ifdisabled` inside the jail).
    pub(super) async fn configure_jail_net6(
        &self,
        pot: &PotName,
        jail_if: &str,
    ) -> Result<(), EngineError> {
        let p = pot.as_str();
        self.host
            .iface_inet6_autoconf(Some(p), jail_if)
            .await
            .map_err(EngineError::host(p))
    }

    /// The bridge-independent part of `vnet-start`.
    async fn vnet_shared(&self) -> Result<(), EngineError> {
        let host_err = || EngineError::host("vnet-start");
        let state = |reason: String| EngineError::State {
            pot: "vnet-start".to_string(),
            reason,
        };
        let vimage = self
            .host
            .sysctl("kern.features.vimage")
            .await
            .map_err(host_err())?;
        if vimage != "1" {
            return Err(state(
                "the kernel lacks VIMAGE (kern.features.vimage is not 1): bridge networking needs it"
                    .to_string(),
            ));
        }
        let anchors = self.host.pf_anchors().await.map_err(host_err())?;
        for (anchor, rule) in [
            ("pot-nat", "nat-anchor pot-nat"),
            ("pot-rdr", "rdr-anchor \"pot-rdr/*\""),
        ] {
            if !anchors.iter().any(|a| a == anchor) {
                return Err(state(format!(
                    "pf's main ruleset has no anchor {anchor}: add `{rule}` to pf.conf (pot init does) and reload pf"
                )));
            }
        }
        self.host
            .sysctl_set("net.inet.ip.forwarding", "1")
            .await
            .map_err(host_err())?;
        self.host
            .pf_load("pot-nat", &nat_rules(&self.cfg.network))
            .await
            .map_err(host_err())?;
        self.host.pf_enable().await.map_err(host_err())?;
        tracing::info!("vnet ready: forwarding on, pot-nat loaded, pf enabled");
        Ok(())
    }

    /// Checks an alias pot's addresses against the host's interfaces (`ifconfig -a`) and the
    /// other pots, before anything changes.
    pub(super) async fn check_alias_addresses(
        &self,
        pot: &PotName,
        addrs: &[AliasAddr],
    ) -> Result<(), EngineError> {
        let listing = self
            .host
            .ifaces_all()
            .await
            .map_err(EngineError::host(pot.as_str()))?;
        check_alias_unclaimed(&self.cfg.fs_root, pot, addrs)?;
        check_alias_host(&listing, addrs)
    }

    /// Under pot's global lock: picks or validates the address and puts the network keys into
    /// `conf`, which the caller writes before releasing the lock.
    pub(super) fn assign_network(
        &self,
        plan: &NetworkPlan,
        conf: &mut PotConf,
    ) -> Result<Option<Ipv4Addr>, EngineError> {
        let b = match plan {
            NetworkPlan::Bridged(b) => b,
            NetworkPlan::Alias(addrs) => {
                conf.set("network_type", "alias");
                conf.set("vnet", "false");
                let list: Vec<String> = addrs
                    .iter()
                    .map(|a| format!("{}|{}", a.nic, a.ip))
                    .collect();
                conf.set("ip", list.join(" "));
                conf.set("pot.stack", self.cfg.network.stack.as_str());
                return Ok(None);
            }
            NetworkPlan::Inherit => {
                conf.set("pot.stack", self.cfg.network.stack.as_str());
                return Ok(None);
            }
        };
        let ip = choose_ip(
            &self.cfg.network,
            &self.cfg.fs_root,
            b.private.as_ref(),
            b.ip,
        )?;
        conf.set("pot.stack", b.stack.as_str());
        match &b.private {
            Some(p) => {
                conf.set("network_type", "private-bridge");
                conf.set("bridge", p.name.clone());
            }
            None => conf.set("network_type", "public-bridge"),
        }
        conf.set("vnet", "true");
        conf.set("ip", ip.to_string());
        if !b.ports.is_empty() {
            conf.set("pot.export.ports", export_ports(&b.ports));
        }
        Ok(Some(ip))
    }

    /// Creates the pot's epair on `bridge`; returns the jail end for `vnet.interface`.
    /// `plan` is `None` for the IPv6 bridge.
    pub(super) async fn plug_epair(
        &self,
        pot: &PotName,
        bridge: &str,
        plan: Option<&BridgePlan>,
        record: &mut NetworkRecord,
    ) -> Result<String, EngineError> {
        let stack_prefix = if plan.is_some() { '4' } else { '6' };
        let p = pot.as_str();
        record.epair_pending = true;
        self.save_record(pot, record)?;
        let a = self
            .host
            .epair_create(p)
            .await
            .map_err(EngineError::host(p))?;
        let b = format!("{}b", a.trim_end_matches('a'));
        let name = epair_host_name(stack_prefix);
        self.host
            .iface_rename_up(&a, &name)
            .await
            .map_err(EngineError::host(p))?;
        record.epairs.push(name.clone());
        record.epair_pending = false;
        self.save_record(pot, record)?;
        let isolate = self.cfg.network.isolate_vnet_pots;
        if let Err(e) = self.host.bridge_addm(bridge, &name, isolate).await {
            if self
                .host
                .iface_exists(bridge)
                .await
                .map_err(EngineError::host(p))?
            {
                return Err(EngineError::host(p)(e));
            }
            let bridge = self.replace_vanished_bridge(bridge, plan).await?;
            self.host
                .bridge_addm(&bridge, &name, isolate)
                .await
                .map_err(EngineError::host(p))?;
        }
        Ok(b)
    }

    /// A bridge found once per plugin process may since have been destroyed by hand (pot's
    /// `vnet-start` looks for it at every start); it is forgotten and found or made again.
    async fn replace_vanished_bridge(
        &self,
        bridge: &str,
        plan: Option<&BridgePlan>,
    ) -> Result<String, EngineError> {
        tracing::warn!(bridge = %bridge, "bridge no longer exists; setting it up again");
        match plan {
            Some(plan) => {
                if let Some(known) = self.vnet.lock().await.as_mut() {
                    known.retain(|_, b| b != bridge);
                }
                self.ensure_vnet(plan).await
            }
            None => {
                *self.vnet6.lock().await = None;
                self.ensure_vnet6().await
            }
        }
    }

    /// IPv4 address and default route inside the jail, set from the host.
    pub(super) async fn configure_jail_net(
        &self,
        pot: &PotName,
        jail_if: &str,
        ip: Ipv4Addr,
        plan: &BridgePlan,
    ) -> Result<(), EngineError> {
        let p = pot.as_str();
        let (_, len, gateway) = plan.subnet(&self.cfg.network);
        self.host
            .iface_inet(
                Some(p),
                jail_if,
                ip,
                Ipv4Addr::from(prefix_mask(len)),
                false,
            )
            .await
            .map_err(EngineError::host(p))?;
        self.host
            .jail_default_route(p, gateway)
            .await
            .map_err(EngineError::host(p))
    }

    /// The jail's loopback address (pot's tinirc: `ifconfig lo0 inet 127.0.0.1 alias`).
    pub(super) async fn configure_jail_lo0(&self, pot: &PotName) -> Result<(), EngineError> {
        let p = pot.as_str();
        self.host
            .iface_inet(
                Some(p),
                "lo0",
                Ipv4Addr::LOCALHOST,
                Ipv4Addr::new(255, 0, 0, 0),
                true,
            )
            .await
            .map_err(EngineError::host(p))
    }

    /// Loads the pot's rdr rules into `pot-rdr/<anchor>`.
    pub(super) async fn publish_ports(
        &self,
        pot: &PotName,
        ip: Ipv4Addr,
        record: &mut NetworkRecord,
    ) -> Result<(), EngineError> {
        if record.ports.is_empty() {
            return Ok(());
        }
        let anchor = format!("pot-rdr/{}", anchor_name(pot));
        record.anchor = Some(anchor.clone());
        self.save_record(pot, record)?;
        self.host
            .pf_load(&anchor, &rdr_rules(&self.cfg.network, ip, &record.ports))
            .await
            .map_err(EngineError::host(pot.as_str()))
    }

    /// Undoes [`Engine::plug_epair`] and [`Engine::publish_ports`]; each step accepts that its
    /// object is gone already.
    pub(super) async fn unplug(&self, pot: &PotName) -> Result<(), EngineError> {
        let p = pot.as_str();
        let Some(record) = self.network_record(pot) else {
            return Ok(());
        };
        let mut doomed: Vec<String> = record.epairs.clone();
        if record.epair_pending {
            // Interrupted between create and rename: find it by pot's `descr <pot>`.
            let ours = self
                .host
                .ifaces_in_group("pot")
                .await
                .map_err(EngineError::host(p))?;
            doomed.extend(
                ours.into_iter()
                    .filter(|i| i.description == p)
                    .map(|i| i.name),
            );
        }
        for name in doomed {
            match self.host.iface_destroy(&name).await {
                Err(e) if !e.is_absent() => return Err(EngineError::host(p)(e)),
                _ => {}
            }
        }
        for a in &record.aliases {
            match self.host.iface_remove_alias(&a.nic, a.ip).await {
                Err(e) if !e.is_absent() => return Err(EngineError::host(p)(e)),
                _ => {}
            }
        }
        if let Some(anchor) = &record.anchor {
            self.host
                .pf_flush_nat(anchor)
                .await
                .map_err(EngineError::host(p))?;
        }
        Ok(())
    }

    /// Every task with a network record (bridged or alias), by pot name.
    pub fn network_records(&self) -> Vec<(PotName, NetworkRecord)> {
        let Ok(dirs) = std::fs::read_dir(state::tasks_dir(&self.cfg.state_dir)) else {
            return Vec::new();
        };
        let mut out: Vec<(PotName, NetworkRecord)> = dirs
            .flatten()
            .filter_map(|d| PotName::new(&d.file_name().to_string_lossy()).ok())
            .filter_map(|pot| self.network_record(&pot).map(|r| (pot, r)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// What the task's network looks like, if it is bridged.
    pub fn network_record(&self, pot: &PotName) -> Option<NetworkRecord> {
        read_json(&self.task_state_dir(pot).join(RECORD_FILE))
    }

    pub(super) fn save_record(
        &self,
        pot: &PotName,
        record: &NetworkRecord,
    ) -> Result<(), EngineError> {
        let dir = self.task_state_dir(pot);
        let path = dir.join(RECORD_FILE);
        std::fs::create_dir_all(&dir)
            .and_then(|_| {
                write_atomic(
                    &path,
                    &serde_json::to_vec(record).expect("record serializes"),
                )
            })
            .map_err(EngineError::io(pot.as_str(), "write", &path))
    }
}

/// The localhost relays for a bridged task's ports.
pub(super) fn relays(record: &NetworkRecord) -> Vec<Relay> {
    let Some(ip) = record.ip else {
        return Vec::new();
    };
    record
        .ports
        .iter()
        .flat_map(|p| {
            [Proto::Tcp, Proto::Udp].map(|proto| Relay {
                proto,
                listen_port: p.host_port,
                target: SocketAddrV4::new(ip, p.pot_port),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{EngineConfig, Overrides};

    fn cfg() -> NetworkConfig {
        EngineConfig::resolve(&Overrides {
            pot_conf_dir: Some("/nonexistent".into()),
            ..Default::default()
        })
        .unwrap()
        .network
    }

    fn port(label: &str, host: u16, pot: u16) -> PortSpec {
        PortSpec {
            label: label.into(),
            host_port: host,
            pot_port: pot,
        }
    }

    #[test]
    fn plan_defaults_and_refusals() {
        let c = cfg();
        let req = |t: Option<&str>, ip: Option<&str>, ports: Vec<PortSpec>| NetworkRequest {
            network_type: t.map(str::to_string),
            ip: ip.map(str::to_string),
            bridge: None,
            ports,
        };
        assert_eq!(
            plan(&c, Path::new("/nonexistent"), &req(None, None, vec![])).unwrap(),
            NetworkPlan::Inherit
        );
        assert_eq!(
            plan(
                &c,
                Path::new("/nonexistent"),
                &req(Some("host"), None, vec![port("a", 1, 2)])
            )
            .unwrap(),
            NetworkPlan::Inherit
        );
        assert!(
            plan(
                &c,
                Path::new("/nonexistent"),
                &req(None, None, vec![port("a", 8080, 80)])
            )
            .is_ok_and(|p| matches!(p, NetworkPlan::Bridged(BridgePlan { private: None, .. })))
        );
        let err = |r| {
            plan(&c, Path::new("/nonexistent"), &r)
                .unwrap_err()
                .to_string()
        };
        assert!(err(req(Some("vlan"), None, vec![])).contains("unknown network_mode \"vlan\""));
        assert!(
            err(req(Some("public-bridge"), Some("10.1.2.3.4"), vec![])).contains("not an IPv4")
        );
        for outside in [
            "192.168.1.5",
            "10.192.0.1",
            "10.192.0.2",
            "10.192.0.0",
            "10.255.255.255",
        ] {
            assert!(
                err(req(Some("public-bridge"), Some(outside), vec![]))
                    .contains("not a free host address"),
                "{outside}"
            );
        }
        assert!(
            err(req(
                Some("public-bridge"),
                None,
                vec![port("a", 8080, 80), port("b", 8080, 81)]
            ))
            .contains("host port 8080 is published twice")
        );
        assert!(err(req(Some("host"), Some("10.192.0.9"), vec![])).contains("needs a bridge"));
        let mut v6 = c.clone();
        v6.stack = crate::engine::Stack::Ipv6;
        let e = plan(
            &v6,
            Path::new("/nonexistent"),
            &req(None, None, vec![port("a", 8080, 80)]),
        );
        assert!(
            e.unwrap_err()
                .to_string()
                .contains("network stack ipv6 cannot publish them")
        );
        assert!(matches!(
            plan(
                &v6,
                Path::new("/nonexistent"),
                &req(Some("public-bridge"), None, vec![])
            ),
            Ok(NetworkPlan::Bridged(BridgePlan {
                stack: crate::engine::Stack::Ipv6,
                ..
            }))
        ));
    }

    #[test]
    fn alias_addresses_follow_pot() {
        let mut c = cfg();
        let req = |ip: Option<&str>| NetworkRequest {
            network_type: Some("alias".into()),
            ip: ip.map(str::to_string),
            bridge: None,
            ports: vec![port("http", 8080, 80)],
        };
        let a = |nic: &str, ip: &str| AliasAddr {
            nic: nic.into(),
            ip: ip.parse().unwrap(),
        };
        let none = Path::new("/nonexistent");
        let all = "vtnet1|192.168.5.20 10.0.2.20 2001:db8::20";
        assert_eq!(
            plan(&c, none, &req(Some(all))).unwrap(),
            NetworkPlan::Alias(vec![a("vtnet1", "192.168.5.20"), a("em0", "10.0.2.20")])
        );
        assert!(
            plan(&c, none, &req(None))
                .unwrap_err()
                .to_string()
                .contains("needs `ip`")
        );
        assert!(
            plan(&c, none, &req(Some("em0|nope")))
                .unwrap_err()
                .to_string()
                .contains("not `IP` or `NIC|IP`")
        );
        assert!(
            plan(&c, none, &req(Some("2001:db8::20")))
                .unwrap_err()
                .to_string()
                .contains("no address for network stack ipv4")
        );
        c.stack = crate::engine::Stack::Dual;
        let NetworkPlan::Alias(addrs) = plan(&c, none, &req(Some(all))).unwrap() else {
            panic!("alias plan expected")
        };
        assert_eq!(
            alias_jail_params(&addrs),
            (
                "vtnet1|192.168.5.20,em0|10.0.2.20".to_string(),
                "em0|2001:db8::20".to_string()
            )
        );
    }

    #[test]
    fn private_bridges_are_read_like_pot_and_ipv4_only() {
        let c = cfg();
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("bridges")).unwrap();
        std::fs::write(
            root.path().join("bridges/priv"),
            "net=10.192.0.16/29\ngateway=10.192.0.17\nname=priv\n",
        )
        .unwrap();
        std::fs::write(root.path().join("bridges/broken"), "net=10.192.0.16\n").unwrap();
        let req = |bridge: Option<&str>, ip: Option<&str>| NetworkRequest {
            network_type: Some("private-bridge".into()),
            ip: ip.map(str::to_string),
            bridge: bridge.map(str::to_string),
            ports: vec![],
        };
        let priv_bridge = PrivateBridge {
            name: "priv".into(),
            net: Ipv4Addr::new(10, 192, 0, 16),
            len: 29,
            gateway: Ipv4Addr::new(10, 192, 0, 17),
        };
        assert_eq!(
            plan(&c, root.path(), &req(Some("priv"), Some("10.192.0.22"))).unwrap(),
            NetworkPlan::Bridged(BridgePlan {
                private: Some(priv_bridge.clone()),
                ip: Some(Ipv4Addr::new(10, 192, 0, 22)),
                ports: vec![],
                stack: crate::engine::Stack::Ipv4,
            })
        );
        // A dual-stack host still puts private-bridge pots on IPv4 only, as pot does.
        let mut dual = c.clone();
        dual.stack = crate::engine::Stack::Dual;
        assert!(matches!(
            plan(&dual, root.path(), &req(Some("priv"), None)),
            Ok(NetworkPlan::Bridged(BridgePlan {
                stack: crate::engine::Stack::Ipv4,
                ..
            }))
        ));
        let err = |r| plan(&c, root.path(), &r).unwrap_err().to_string();
        assert!(err(req(Some("nope"), None)).contains("private bridge \"nope\" does not exist"));
        assert!(err(req(None, None)).contains("needs `bridge`"));
        assert!(err(req(Some("broken"), None)).contains("no valid net= and gateway="));
        assert!(err(req(Some("../x"), None)).contains("not a valid private bridge name"));
        for bad_ip in ["10.192.0.17", "10.192.0.23", "10.192.0.3"] {
            assert!(
                err(req(Some("priv"), Some(bad_ip)))
                    .contains("not a free host address of network 10.192.0.16/29"),
                "{bad_ip}"
            );
        }
        let mut v6 = c.clone();
        v6.stack = super::super::Stack::Ipv6;
        let e = plan(&v6, root.path(), &req(Some("priv"), None)).unwrap_err();
        assert!(e.to_string().contains("IPv4 only"), "{e}");
        // potnet next -b: the bridge's first free host; the public bridge skips the subnet.
        assert_eq!(
            choose_ip(&c, root.path(), Some(&priv_bridge), None).unwrap(),
            Ipv4Addr::new(10, 192, 0, 18)
        );
        let d = root.path().join("jails/p1/conf");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("pot.conf"),
            "network_type=private-bridge\nbridge=priv\nip=10.192.0.18\n",
        )
        .unwrap();
        assert_eq!(
            choose_ip(&c, root.path(), Some(&priv_bridge), None).unwrap(),
            Ipv4Addr::new(10, 192, 0, 19)
        );
    }

    #[test]
    fn allocation_skips_what_potnet_skips() {
        let c = cfg();
        let root = tempfile::tempdir().unwrap();
        assert_eq!(
            choose_ip(&c, root.path(), None, None).unwrap(),
            Ipv4Addr::new(10, 192, 0, 3)
        );
        let pot = |name: &str, body: &str| {
            let d = root.path().join("jails").join(name).join("conf");
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("pot.conf"), body).unwrap();
        };
        pot(
            "a",
            "network_type=public-bridge\nvnet=true\nip=10.192.0.3\n",
        );
        pot("b", "network_type=alias\nvnet=false\nip=10.192.0.4\n");
        pot("c", "network_type=public-bridge\nip=garbage\n");
        pot("d", "ip4=10.192.0.5\nvnet=true\n");
        std::fs::create_dir_all(root.path().join("bridges")).unwrap();
        std::fs::write(
            root.path().join("bridges/priv"),
            "net=10.192.0.8/29\ngateway=10.192.0.9\nname=priv\n",
        )
        .unwrap();
        // .4 belongs to an alias pot, which potnet ignores.
        assert_eq!(
            choose_ip(&c, root.path(), None, None).unwrap(),
            Ipv4Addr::new(10, 192, 0, 4)
        );
        pot("e", "network_type=public-bridge\nip=10.192.0.4\n");
        pot("f", "network_type=public-bridge\nip=10.192.0.6\n");
        pot("g", "network_type=public-bridge\nip=10.192.0.7\n");
        assert_eq!(
            choose_ip(&c, root.path(), None, None).unwrap(),
            Ipv4Addr::new(10, 192, 0, 16)
        );
        assert!(
            choose_ip(&c, root.path(), None, Some(Ipv4Addr::new(10, 192, 0, 10)))
                .unwrap_err()
                .to_string()
                .contains("already used")
        );
        assert_eq!(
            choose_ip(&c, root.path(), None, Some(Ipv4Addr::new(10, 192, 1, 1))).unwrap(),
            Ipv4Addr::new(10, 192, 1, 1)
        );
    }

    #[test]
    fn anchor_names_follow_pot() {
        let short = PotName::new("web_1").unwrap();
        assert_eq!(anchor_name(&short), "web_1");
        // 56 characters: the first one goes, and the `_` it exposes too.
        let long = PotName::new(&format!("a_{}", "b".repeat(54))).unwrap();
        assert_eq!(anchor_name(&long), "b".repeat(54));
        let name = format!("{}{}", "x".repeat(10), "y".repeat(55));
        assert_eq!(anchor_name(&PotName::new(&name).unwrap()), "y".repeat(55));
    }

    #[test]
    fn rules_match_pot_text() {
        let mut c = cfg();
        let ip = Ipv4Addr::new(10, 192, 0, 5);
        assert_eq!(
            rdr_rules(&c, ip, &[port("http", 23456, 80)]),
            "rdr pass on em0 proto tcp from any to (em0) port 23456 -> 10.192.0.5 port 80\n\
             rdr pass on em0 proto udp from any to (em0) port 23456 -> 10.192.0.5 port 80\n"
        );
        assert_eq!(
            nat_rules(&c),
            "ext_if = \"em0\"\nlocalnet = \"10.192.0.0/10\"\nnat on $ext_if from $localnet to any -> ($ext_if:0)\n"
        );
        c.extif_addr = Some(Ipv4Addr::new(10, 0, 2, 15));
        c.extra_extif
            .insert("vtnet1".into(), "192.168.5.0/24".into());
        c.vpn_extif = Some("tun0".into());
        c.vpn_networks = vec!["172.16.0.0/16".into()];
        assert_eq!(
            nat_rules(&c),
            "ext_if = \"em0\"\nlocalnet = \"10.192.0.0/10\"\next_addr = \"10.0.2.15\"\n\
             nat on $ext_if from $localnet to any -> $ext_addr\n\
             nat on vtnet1 from $localnet to 192.168.5.0/24 -> (vtnet1:0)\n\
             nat on tun0 from $localnet to 172.16.0.0/16 -> (tun0:0)\n"
        );
        let r = rdr_rules(&c, ip, &[port("dns", 5353, 53)]);
        assert!(r.starts_with("rdr pass on em0 proto tcp from any to 10.0.2.15 port 5353 -> 10.192.0.5 port 53\nrdr pass on vtnet1 proto tcp from any to (vtnet1) port 5353 -> 10.192.0.5 port 53\n"), "{r}");
        assert_eq!(
            export_ports(&[port("http", 23456, 80)]),
            "80:23456 udp:80:23456"
        );
    }

    #[test]
    fn epair_names_fit_ifnamsiz() {
        let a = epair_host_name('4');
        let b = epair_host_name('6');
        assert!(a.starts_with("p4") && a.len() <= 15, "{a}");
        assert!(b.starts_with("p6") && b.len() <= 15, "{b}");
        assert_ne!(a, b);
    }
}
