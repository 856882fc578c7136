//! A task's network request checked and typed, before anything changes on the host.

use super::AliasAddr;
use crate::engine::EngineError;
use crate::engine::Stack;
use crate::engine::config::{NetworkConfig, prefix_mask};
use crate::engine::potconf::PotConf;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

/// The network a task asks for, in pot's terms (the driver has resolved Nomad's ports).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkRequest {
    /// `None` picks public-bridge when ports are published, inherit otherwise.
    pub mode: Option<NetworkMode>,
    /// An explicit address instead of the next free one.
    pub ip: Option<String>,
    /// The private bridge (`<fs_root>/bridges/<name>`) of a private-bridge task.
    pub bridge: Option<String>,
    pub ports: Vec<PortSpec>,
}

/// pot's network types, decided once where the task config is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkMode {
    /// The host's network stack; Nomad's `host` names it too.
    Inherit,
    PublicBridge,
    PrivateBridge,
    /// Static addresses on host NICs.
    Alias,
}

/// A `network_mode` that is none of pot's network types.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown network_mode {0:?} (pot's types: \"inherit\" (or \"host\"), \"public-bridge\", \"private-bridge\", \"alias\")"
)]
pub struct UnknownNetworkMode(pub String);

impl std::str::FromStr for NetworkMode {
    type Err = UnknownNetworkMode;

    fn from_str(s: &str) -> Result<NetworkMode, UnknownNetworkMode> {
        match s {
            "host" | "inherit" => Ok(NetworkMode::Inherit),
            "public-bridge" => Ok(NetworkMode::PublicBridge),
            "private-bridge" => Ok(NetworkMode::PrivateBridge),
            "alias" => Ok(NetworkMode::Alias),
            other => Err(UnknownNetworkMode(other.to_string())),
        }
    }
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
    pub stack: Stack,
}

impl BridgePlan {
    pub fn v4(&self) -> bool {
        self.stack != Stack::Ipv6
    }

    pub fn v6(&self) -> bool {
        self.stack != Stack::Ipv4
    }

    /// The bridge's network, prefix length and gateway.
    pub(super) fn subnet(&self, cfg: &NetworkConfig) -> (Ipv4Addr, u8, Ipv4Addr) {
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

/// Checks `req` against pot's network settings (and private bridge files) without changing
/// anything on the host.
pub fn plan(
    cfg: &NetworkConfig,
    fs_root: &Path,
    req: &NetworkRequest,
) -> Result<NetworkPlan, EngineError> {
    let bad = |m: String| Err(EngineError::InvalidInput(m));
    let mode = match req.mode {
        Some(mode) => mode,
        None if req.ports.is_empty() => NetworkMode::Inherit,
        None => NetworkMode::PublicBridge,
    };
    if mode == NetworkMode::Inherit {
        if let Some(ip) = &req.ip {
            return bad(format!(
                "ip {ip:?} needs a bridge network_mode; inherit shares the host's addresses"
            ));
        }
        return Ok(NetworkPlan::Inherit);
    }
    if mode == NetworkMode::Alias {
        if let Some(b) = &req.bridge {
            return bad(format!(
                "bridge {b:?} is only used with network_mode \"private-bridge\""
            ));
        }
        // pot publishes no ports for alias pots: the task listens on its own addresses.
        return Ok(NetworkPlan::Alias(alias_plan(cfg, req.ip.as_deref())?));
    }
    if let (Some(b), false) = (&req.bridge, mode == NetworkMode::PrivateBridge) {
        return bad(format!(
            "bridge {b:?} is only used with network_mode \"private-bridge\""
        ));
    }
    let private = if mode == NetworkMode::PrivateBridge {
        // pot refuses ipv6 and treats dual as ipv4: private bridges are IPv4 only.
        if cfg.stack == Stack::Ipv6 {
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
        if cfg.stack == Stack::Ipv6 && !req.ports.is_empty() {
            return bad(
                "ports are published through IPv4 only (pot's rdr rules): network stack ipv6 cannot publish them"
                    .to_string(),
            );
        }
        None
    };
    let stack = if private.is_some() {
        Stack::Ipv4
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
        Stack::Ipv4 => !a.is_v6(),
        Stack::Ipv6 => a.is_v6(),
        Stack::Dual => true,
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

/// Reads a private bridge file: `net=`, `gateway=` and `name=` lines, read like pot does
/// (spaces, tabs and `"` dropped).
pub(super) fn read_private_bridge(
    fs_root: &Path,
    name: &str,
) -> Result<PrivateBridge, EngineError> {
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

/// Host addresses of a subnet in ascending order (network and broadcast excluded but in /31
/// and /32), as the `hosts()` potnet walks.
pub(super) fn subnet_hosts(net: Ipv4Addr, len: u8) -> impl Iterator<Item = Ipv4Addr> {
    let first = u32::from(net);
    let last = first | !prefix_mask(len);
    let range = if len >= 31 {
        first..=last
    } else {
        first + 1..=last - 1
    };
    range.map(Ipv4Addr::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::network::addresses::choose_ip;
    use crate::engine::network::alias_jail_params;
    use crate::engine::network::testing::{cfg, port};

    #[test]
    fn network_modes_are_pots_types_and_host() {
        let parse = |s: &str| s.parse::<NetworkMode>();
        assert_eq!(parse("host"), Ok(NetworkMode::Inherit));
        assert_eq!(parse("inherit"), Ok(NetworkMode::Inherit));
        assert_eq!(parse("public-bridge"), Ok(NetworkMode::PublicBridge));
        assert_eq!(parse("private-bridge"), Ok(NetworkMode::PrivateBridge));
        assert_eq!(parse("alias"), Ok(NetworkMode::Alias));
        let e = parse("vlan").unwrap_err().to_string();
        assert!(
            e.starts_with("unknown network_mode \"vlan\" (pot's types: "),
            "{e}"
        );
    }

    #[test]
    fn plan_defaults_and_refusals() {
        let c = cfg();
        let req = |t: Option<&str>, ip: Option<&str>, ports: Vec<PortSpec>| NetworkRequest {
            mode: t.map(|t| t.parse().unwrap()),
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
            mode: Some(NetworkMode::Alias),
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
            mode: Some(NetworkMode::PrivateBridge),
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
        v6.stack = Stack::Ipv6;
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
}
