//! Task networking as pot builds it.
//!
//! Design:
//! * [`plan()`] turns a task's request (network type, optional IP, ports) into a typed
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
//!   traffic): the task's supervisor relays them (see [`crate::engine::supervisor::relay`])
//!   instead of pot's copied `ncat` binaries.
//!
//! Rooms: [`plan`](mod@plan) (the request checked and typed), [`addresses`] (allocation and
//! the alias checks), [`pf`] (published ports), [`vnet`] (bridges and epairs) and [`attach`]
//! (the network half of a start: before the clone, before and after `jail -c`).

mod addresses;
mod attach;
mod pf;
mod plan;
mod vnet;

pub(in crate::engine) use addresses::check_alias_unclaimed;
pub(in crate::engine) use attach::Attach;
pub(in crate::engine) use pf::nat_rules;
pub use plan::{
    BridgePlan, NetworkMode, NetworkPlan, NetworkRequest, PortSpec, UnknownNetworkMode, plan,
};

use super::layout::PotName;
use super::state::{self, read_json, write_atomic};
use super::{Engine, EngineError};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr};

/// Descriptions of the bridges the engine creates, as `vnet-start` does.
pub(super) const PUBLIC_BRIDGE_DESCR: &str = "pot public bridge";
pub(super) const IPV6_BRIDGE_DESCR: &str = "pot ipv6 bridge";
const PRIVATE_BRIDGE_DESCR: &str = "pot private bridge";
pub(super) const RECORD_FILE: &str = "network.json";

/// One `NIC|IP` of an alias pot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasAddr {
    pub nic: String,
    pub ip: IpAddr,
}

impl AliasAddr {
    pub(super) fn is_v6(&self) -> bool {
        self.ip.is_ipv6()
    }
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

impl Engine {
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

/// `ip4.addr` and `ip6.addr` values (`nic|ip,…`), empty when the stack has none.
pub(super) fn alias_jail_params(addrs: &[AliasAddr]) -> (String, String) {
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

#[cfg(test)]
mod testing {
    use super::PortSpec;
    use crate::engine::{EngineConfig, NetworkConfig, Overrides};

    pub(super) fn cfg() -> NetworkConfig {
        EngineConfig::resolve(&Overrides {
            pot_conf_dir: Some("/nonexistent".into()),
            ..Default::default()
        })
        .unwrap()
        .network
    }

    pub(super) fn port(label: &str, host: u16, pot: u16) -> PortSpec {
        PortSpec {
            label: label.into(),
            host_port: host,
            pot_port: pot,
        }
    }
}
