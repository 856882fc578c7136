//! Interface addresses: `inet` and `inet6` arguments parsed as ifconfig reads them, and added,
//! replaced or deleted (`alias`, `-alias`) as the kernel does.

use super::err;
use crate::Res;
use crate::state::Iface;
use std::net::{Ipv4Addr, Ipv6Addr};

pub(super) fn split_prefix(a: &str) -> (&str, u8) {
    match a.split_once('/') {
        Some((ip, len)) => (ip, len.parse().unwrap_or(0)),
        None => (a, 0),
    }
}

/// `ADDR[/len]` plus an optional `netmask` (dotted or 0x hex); without either, the classful mask
/// the kernel still falls back to.
pub fn parse_inet(addr: &str, netmask: Option<&str>) -> Res<(Ipv4Addr, u8)> {
    let bad = |v: &str| err(format!("{v}: bad value"));
    let (a, len) = match addr.split_once('/') {
        Some((a, l)) => (
            a,
            Some(
                l.parse::<u8>()
                    .ok()
                    .filter(|l| *l <= 32)
                    .ok_or_else(|| bad(addr))?,
            ),
        ),
        None => (addr, None),
    };
    let ip: Ipv4Addr = a.parse().map_err(|_| bad(addr))?;
    let len = match netmask {
        Some(m) => {
            let v = match m.strip_prefix("0x") {
                Some(hex) => u32::from_str_radix(hex, 16).map_err(|_| bad(m))?,
                None => u32::from(m.parse::<Ipv4Addr>().map_err(|_| bad(m))?),
            };
            if v.leading_ones() + v.trailing_zeros() != 32 {
                return Err(bad(m));
            }
            v.leading_ones() as u8
        }
        None => len.unwrap_or(match ip.octets()[0] {
            0..128 => 8,
            128..192 => 16,
            192..224 => 24,
            _ => 32,
        }),
    };
    Ok((ip, len))
}

pub fn parse_inet6(addr: &str, prefixlen: Option<&str>) -> Res<(Ipv6Addr, u8)> {
    let bad = |v: &str| err(format!("{v}: bad value"));
    let (a, len) = addr.split_once('/').unwrap_or((addr, "64"));
    let ip: Ipv6Addr = a.parse().map_err(|_| bad(addr))?;
    let len = prefixlen.unwrap_or(len);
    let len = len
        .parse::<u8>()
        .ok()
        .filter(|l| *l <= 128)
        .ok_or_else(|| bad(len))?;
    Ok((ip, len))
}

/// An address change, applied after every other command as ifconfig does.
#[derive(Default)]
pub(super) struct AddrOp {
    pub(super) inet6: bool,
    pub(super) addr: Option<String>,
    pub(super) mask: Option<String>,
    pub(super) alias: bool,
    pub(super) delete: bool,
}

pub(super) fn set_addr(i: &mut Iface, op: &AddrOp, addr: &str) -> Res<()> {
    let (list, new, ioctl_del) = if op.inet6 {
        let (ip, len) = parse_inet6(addr, op.mask.as_deref())?;
        (&mut i.inet6, (ip.to_string(), len), "SIOCDIFADDR_IN6")
    } else {
        let (ip, len) = parse_inet(addr, op.mask.as_deref())?;
        (&mut i.inet, (ip.to_string(), len), "SIOCDIFADDR")
    };
    let pos = list.iter().position(|a| split_prefix(a).0 == new.0);
    if op.delete {
        let pos = pos.ok_or_else(|| {
            err(format!(
                "ioctl ({ioctl_del}): Can't assign requested address"
            ))
        })?;
        list.remove(pos);
        return Ok(());
    }
    let entry = format!("{}/{}", new.0, new.1);
    if op.inet6 {
        // in6_update_ifa updates an existing address in place.
        match pos {
            Some(p) => list[p] = entry,
            None => list.push(entry),
        }
    } else {
        // Without `alias`, ifconfig first deletes the interface's first address.
        if !op.alias && !list.is_empty() {
            list.remove(0);
        }
        if list.iter().any(|a| split_prefix(a).0 == new.0) {
            return Err(err("ioctl (SIOCAIFADDR): File exists"));
        }
        list.push(entry);
    }
    // Configuring an address marks the interface up (ether_ioctl SIOCSIFADDR).
    i.up = true;
    Ok(())
}
