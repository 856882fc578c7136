//! The network half of a task's start: what needs the host before the clone (the bridges made
//! ready, an alias pot's NICs and addresses checked), the jail's network before `jail -c` (the
//! record, the epairs, jail(8)'s parameters) and after it (addresses, routes, rdr rules).

use super::{AliasAddr, BridgePlan, NetworkPlan, NetworkRecord, alias_jail_params};
use crate::engine::layout::PotName;
use crate::engine::supervisor::relay::{Proto, Relay};
use crate::engine::{Engine, EngineError, Stack};
use crate::host::JailParams;
use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddrV4};

/// The bridges a bridged pot's stacks join, made ready before the clone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bridges {
    pub v4: Option<String>,
    pub v6: Option<String>,
}

/// How the jail joins the network, decided before the clone.
pub enum Attach<'a> {
    Inherit,
    Bridge {
        bridges: Bridges,
        plan: &'a BridgePlan,
        record: NetworkRecord,
    },
    Alias(&'a [AliasAddr]),
}

impl<'a> Attach<'a> {
    /// How a pot planned as `plan` joins, once the clone has its address (`ip`, bridged pots
    /// only) and its bridges are ready.
    pub fn new(
        plan: &'a NetworkPlan,
        ip: Option<Ipv4Addr>,
        bridges: Option<Bridges>,
    ) -> Attach<'a> {
        match (plan, ip, bridges) {
            (NetworkPlan::Bridged(b), Some(ip), Some(bridges)) => Attach::Bridge {
                bridges,
                plan: b,
                record: NetworkRecord {
                    // An ipv6 pot keeps its IPv4 in pot.conf (as pot does) but has no use for it.
                    ip: b.v4().then_some(ip),
                    ports: b.ports.clone(),
                    ..Default::default()
                },
            },
            (NetworkPlan::Alias(addrs), _, _) => Attach::Alias(addrs),
            _ => Attach::Inherit,
        }
    }
}

/// The jail's network between `jail -c` and its configuration from the host.
pub enum Joined<'a> {
    Inherit,
    Alias,
    Bridge {
        /// The jail ends of the IPv4 and the IPv6 epair.
        jail_if4: Option<String>,
        jail_if6: Option<String>,
        plan: &'a BridgePlan,
        record: NetworkRecord,
    },
}

impl Engine {
    /// Before the clone: a bridged pot's bridges made ready (pot's `vnet-start`), an alias
    /// pot's NICs and addresses checked.
    pub(in crate::engine) async fn prepare_network(
        &self,
        pot: &PotName,
        plan: &NetworkPlan,
    ) -> Result<Option<Bridges>, EngineError> {
        match plan {
            NetworkPlan::Bridged(b) => {
                let v4 = match b.v4() {
                    true => Some(self.ensure_vnet(b).await?),
                    false => None,
                };
                let v6 = match b.v6() {
                    true => Some(self.ensure_vnet6().await?),
                    false => None,
                };
                Ok(Some(Bridges { v4, v6 }))
            }
            NetworkPlan::Alias(addrs) => {
                // pot's create checks each NIC with `ifconfig NIC`.
                let nics: BTreeSet<&str> = addrs.iter().map(|a| a.nic.as_str()).collect();
                for nic in nics {
                    if !self
                        .host
                        .iface_exists(nic)
                        .await
                        .map_err(EngineError::host(pot.as_str()))?
                    {
                        return Err(EngineError::InvalidInput(format!(
                            "network interface {nic} (of ip) does not exist"
                        )));
                    }
                }
                self.check_alias_addresses(pot, addrs).await?;
                Ok(None)
            }
            NetworkPlan::Inherit => Ok(None),
        }
    }

    /// Before `jail -c`: records what teardown needs, plugs a bridged pot's epairs and sets
    /// jail(8)'s network parameters.
    pub(in crate::engine) async fn join_network<'a>(
        &self,
        pot: &PotName,
        attach: Attach<'a>,
        params: &mut JailParams,
    ) -> Result<Joined<'a>, EngineError> {
        match attach {
            Attach::Bridge {
                bridges,
                plan,
                mut record,
            } => {
                self.save_record(pot, &record)?;
                params.flag("vnet");
                let (mut jail_if4, mut jail_if6) = (None, None);
                if let Some(b) = bridges.v4 {
                    let jail_if = self.plug_epair(pot, &b, Some(plan), &mut record).await?;
                    params.set("vnet.interface", jail_if.clone());
                    jail_if4 = Some(jail_if);
                }
                if let Some(b) = bridges.v6 {
                    let jail_if = self.plug_epair(pot, &b, None, &mut record).await?;
                    params.set("vnet.interface", jail_if.clone());
                    jail_if6 = Some(jail_if);
                }
                Ok(Joined::Bridge {
                    jail_if4,
                    jail_if6,
                    plan,
                    record,
                })
            }
            Attach::Alias(aliases) => {
                // Recorded first: jail(8) adds the aliases and they outlive the jail.
                self.save_record(
                    pot,
                    &NetworkRecord {
                        aliases: aliases.to_vec(),
                        ..Default::default()
                    },
                )?;
                let (v4, v6) = alias_jail_params(aliases);
                if !v4.is_empty() {
                    params.set("ip4.addr", v4);
                }
                if !v6.is_empty() {
                    params.set("ip6.addr", v6);
                }
                Ok(Joined::Alias)
            }
            Attach::Inherit => {
                // pot's inherit: the host's stacks that the pot's stack names.
                let stack = self.cfg.network.stack;
                if stack != Stack::Ipv6 {
                    params.set("ip4", "inherit");
                }
                if stack != Stack::Ipv4 {
                    params.set("ip6", "inherit");
                }
                Ok(Joined::Inherit)
            }
        }
    }

    /// After a failed `jail -c`, which undoes the aliases it added: those still on a NIC are
    /// not this start's, so the rollback must leave them.
    pub(in crate::engine) fn jail_not_created(
        &self,
        pot: &PotName,
        joined: &Joined<'_>,
    ) -> Result<(), EngineError> {
        match joined {
            Joined::Alias => self.save_record(pot, &NetworkRecord::default()),
            Joined::Inherit | Joined::Bridge { .. } => Ok(()),
        }
    }

    /// After `jail -c`: a bridged jail's addresses, default route and loopback, and its rdr
    /// rules. Returns the localhost relays of its published ports.
    pub(in crate::engine) async fn configure_network(
        &self,
        pot: &PotName,
        joined: Joined<'_>,
    ) -> Result<Vec<Relay>, EngineError> {
        let Joined::Bridge {
            jail_if4,
            jail_if6,
            plan,
            mut record,
        } = joined
        else {
            return Ok(Vec::new());
        };
        let mut relays = Vec::new();
        if let (Some(jail_if), Some(ip)) = (jail_if4, record.ip) {
            self.configure_jail_net(pot, &jail_if, ip, plan).await?;
            self.publish_ports(pot, ip, &mut record).await?;
            relays = port_relays(&record);
        }
        if let Some(jail_if) = jail_if6 {
            self.configure_jail_net6(pot, &jail_if).await?;
        }
        self.configure_jail_lo0(pot).await?;
        Ok(relays)
    }
}

/// The localhost relays for a bridged task's ports.
fn port_relays(record: &NetworkRecord) -> Vec<Relay> {
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
