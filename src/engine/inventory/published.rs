//! What each task publishes: pf's port redirections, or addresses on host NICs.

use crate::engine::{AliasAddr, Engine, EngineError, PortSpec, PotName};
use serde::Serialize;
use std::net::Ipv4Addr;

/// What one task publishes: ports redirected by pf, or addresses on host NICs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Published {
    pub pot: String,
    pub ip: Option<Ipv4Addr>,
    pub ports: Vec<PortSpec>,
    pub aliases: Vec<AliasAddr>,
    /// `pot-rdr/<anchor>` and the rules pf holds in it now.
    pub anchor: Option<String>,
    pub pf_rules: Vec<String>,
}

impl Engine {
    /// What each task publishes, with the rules pf holds for it now.
    pub async fn published(&self) -> Result<Vec<Published>, EngineError> {
        let mut out = Vec::new();
        for (pot, _) in self.network_records() {
            if let Some(p) = self.published_of(&pot).await? {
                out.push(p);
            }
        }
        Ok(out)
    }

    pub(super) async fn published_of(
        &self,
        pot: &PotName,
    ) -> Result<Option<Published>, EngineError> {
        let Some(record) = self.network_record(pot) else {
            return Ok(None);
        };
        let pf_rules = match &record.anchor {
            Some(anchor) => match self.host.pf_nat_rules(anchor).await {
                Ok(rules) => rules,
                // An anchor pf has dropped (or never loaded) holds no rules.
                Err(crate::host::HostError::Failed { .. }) => Vec::new(),
                Err(e) => return Err(EngineError::host(pot.as_str())(e)),
            },
            None => Vec::new(),
        };
        Ok(Some(Published {
            pot: pot.to_string(),
            ip: record.ip,
            ports: record.ports,
            aliases: record.aliases,
            anchor: record.anchor,
            pf_rules,
        }))
    }
}
