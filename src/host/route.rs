//! route(8), inside a vnet jail.

use super::{Host, HostError, Tool, argv};
use std::net::Ipv4Addr;

impl Host {
    /// `route -q -j JAIL add default GW`: the jail's default route.
    pub async fn jail_default_route(&self, jail: &str, gateway: Ipv4Addr) -> Result<(), HostError> {
        self.run(
            Tool::Route,
            argv!["-q", "-j", jail, "add", "default", gateway.to_string()],
        )
        .await
        .map(drop)
    }
}
