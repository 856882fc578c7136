//! What jail(8) does to the interfaces: a vnet jail's own `lo0`, `vnet.interface` moved in,
//! `ip4.addr`/`ip6.addr` aliases added on the host, and all of it undone when the jail goes.

use super::addr::{AddrOp, set_addr};
use super::iface::{move_to_jail, relocate, remove};
use super::{err, find};
use crate::Res;
use crate::state::{IfKind, Iface, Jail, State};

/// `vnet` or `vnet=new` gives a jail its own network stack (jail(8)); `inherit` shares the host's.
pub fn is_vnet(j: &Jail) -> bool {
    matches!(j.param("vnet"), Some("new" | "true" | "1"))
}

/// The interfaces a fresh vnet jail owns.
pub fn jail_loopback(jail: &str) -> Iface {
    Iface {
        name: "lo0".into(),
        kind: IfKind::Loopback,
        groups: vec!["lo".into()],
        vnet: Some(jail.into()),
        home: Some(jail.into()),
        ..Default::default()
    }
}

/// `ifconfig NIC inet IP netmask 255.255.255.255 alias` (or inet6 prefixlen 128), as jail(8)
/// adds each `NIC|IP` of `ip4.addr`/`ip6.addr`.
pub fn add_jail_alias(st: &mut State, nic: &str, ip: &str, inet6: bool) -> Res<()> {
    let idx = find(st, &None, nic).ok_or_else(|| err(format!("interface {nic} does not exist")))?;
    let op = AddrOp {
        inet6,
        mask: Some(if inet6 { "128" } else { "255.255.255.255" }.into()),
        alias: true,
        ..Default::default()
    };
    set_addr(&mut st.ifaces[idx], &op, ip)?;
    let entry = (nic.to_string(), ip.to_string());
    if !st.jail_aliases.contains(&entry) {
        st.jail_aliases.push(entry);
    }
    Ok(())
}

/// `ifconfig IF vnet JAIL` from the host, as jail(8) runs it for `vnet.interface`.
pub fn move_into(st: &mut State, name: &str, jail: &str) -> Res<()> {
    let idx =
        find(st, &None, name).ok_or_else(|| err(format!("interface {name} does not exist")))?;
    move_to_jail(st, &None, idx, jail)
}

/// A vnet jail goes away: interfaces it cloned die with it, those moved in return to the host,
/// and its routing table goes with its stack.
pub fn release_jail(st: &mut State, jail: &str) {
    st.routes.retain(|r| r.vnet.as_deref() != Some(jail));
    while let Some(idx) = st
        .ifaces
        .iter()
        .position(|i| i.home.as_deref() == Some(jail))
    {
        remove(st, idx);
    }
    while let Some(idx) = st
        .ifaces
        .iter()
        .position(|i| i.vnet.as_deref() == Some(jail))
    {
        relocate(st, idx, None);
    }
}
