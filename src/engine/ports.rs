//! What a Nomad client's scheduler would know of a node before it hands out host ports: the
//! ports pots already publish, and the node's address that `NOMAD_IP_<label>` names.

use super::{Engine, EngineError};
use crate::host::{HostError, parse::pfctl_rdr_host_port};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// pot's parent anchor of every pot's port redirections (`rdr-anchor "pot-rdr/*"`).
const RDR_PARENT: &str = "pot-rdr";

impl Engine {
    /// Host ports published by pots: by this driver's tasks (also those whose rules are not
    /// loaded yet) and by any rule under `pot-rdr/`, such as a pot the `pot` CLI started.
    pub async fn published_host_ports(&self) -> Result<BTreeSet<u16>, EngineError> {
        let mut ports: BTreeSet<u16> = self
            .network_records()
            .into_iter()
            .flat_map(|(_, r)| r.ports)
            .map(|p| p.host_port)
            .collect();
        let anchors = match self.host.pf_child_anchors(RDR_PARENT).await {
            Ok(a) => a,
            // No pot anchor was ever loaded: pf has no `pot-rdr` yet.
            Err(HostError::Failed { .. }) => Vec::new(),
            Err(e) => return Err(EngineError::node("list pf's pot-rdr anchors")(e)),
        };
        for anchor in anchors {
            let rules = self
                .host
                .pf_nat_rules(&anchor)
                .await
                .map_err(EngineError::node("read a pot-rdr anchor's rules"))?;
            ports.extend(rules.iter().filter_map(|r| pfctl_rdr_host_port(r)));
        }
        Ok(ports)
    }

    /// The address ports are published on: `POT_EXTIF_ADDR`, else the external interface's
    /// first IPv4 address; `None` when it has none.
    pub async fn published_address(&self) -> Result<Option<Ipv4Addr>, EngineError> {
        let net = &self.cfg.network;
        if let Some(addr) = net.extif_addr {
            return Ok(Some(addr));
        }
        let info = self
            .host
            .iface_info(&net.extif)
            .await
            .map_err(EngineError::node("read the external interface's address"))?;
        Ok(info.inet.first().map(|(ip, _)| *ip))
    }
}
