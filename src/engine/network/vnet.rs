//! Bridges and epairs: pot's `vnet-start` (forwarding, `pot-nat`, the bridges), a pot's epairs
//! plugged into them, the jail's addresses and routes, and their removal at teardown.

use super::pf::nat_rules;
use super::{
    BridgePlan, IPV6_BRIDGE_DESCR, NetworkRecord, PRIVATE_BRIDGE_DESCR, PUBLIC_BRIDGE_DESCR,
};
use crate::engine::config::prefix_mask;
use crate::engine::layout::PotName;
use crate::engine::{Engine, EngineError};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, Ordering};

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

    /// Undoes [`Engine::plug_epair`] and [`Engine::publish_ports`]; each step accepts that its
    /// object is gone already.
    pub(in crate::engine) async fn unplug(&self, pot: &PotName) -> Result<(), EngineError> {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epair_names_fit_ifnamsiz() {
        let a = epair_host_name('4');
        let b = epair_host_name('6');
        assert!(a.starts_with("p4") && a.len() <= 15, "{a}");
        assert!(b.starts_with("p6") && b.len() <= 15, "{b}");
        assert_ne!(a, b);
    }
}
