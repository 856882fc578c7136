//! pf for published ports and NAT: pot's anchor names and rule texts, and the pot's rdr rules
//! loaded into its anchor.

use super::{NetworkRecord, PortSpec};
use crate::engine::config::NetworkConfig;
use crate::engine::layout::PotName;
use crate::engine::{Engine, EngineError};
use std::net::Ipv4Addr;

/// pot's limit for `pot-rdr/<anchor>` names.
const ANCHOR_MAX: usize = 55;

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
pub(super) fn export_ports(ports: &[PortSpec]) -> String {
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

impl Engine {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::network::testing::{cfg, port};

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
}
