//! Which addresses a pot may take: the next free one as `potnet` picks it, and the checks of an
//! alias pot's addresses against the host and the other pots.

use super::pf::export_ports;
use super::plan::{PrivateBridge, read_private_bridge, subnet_hosts};
use super::{AliasAddr, NetworkPlan};
use crate::engine::config::{NetworkConfig, prefix_mask};
use crate::engine::layout::PotName;
use crate::engine::potconf::PotConf;
use crate::engine::{Engine, EngineError};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

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
pub fn check_alias_unclaimed(
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
pub(super) fn choose_ip(
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

impl Engine {
    /// Checks an alias pot's addresses against the host's interfaces (`ifconfig -a`) and the
    /// other pots, before anything changes.
    pub(in crate::engine) async fn check_alias_addresses(
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
    pub(in crate::engine) fn assign_network(
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::network::testing::cfg;

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
}
