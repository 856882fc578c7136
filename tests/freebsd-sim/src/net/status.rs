//! ifconfig(8)'s status output: one interface's flags, addresses, bridge members and groups,
//! and the listings of `-a`, `-l` and `-g`.

use super::addr::split_prefix;
use super::{Ns, in_ns};
use crate::state::{IfKind, Iface, State};
use std::net::Ipv4Addr;

pub(super) fn listing(st: &State, ns: &Ns, opts: &[(char, String)]) -> String {
    let has = |c: char| opts.iter().any(|(o, _)| *o == c);
    let group = opts.iter().rev().find(|(o, _)| *o == 'g').map(|(_, v)| v);
    let list = in_ns(st, ns);
    let picked: Vec<&Iface> = list
        .iter()
        .copied()
        .filter(|i| (!has('u') || i.up) && (!has('d') || !i.up))
        .filter(|i| group.is_none_or(|g| i.groups.contains(g)))
        .collect();
    if group.is_some() && !has('a') && !has('l') {
        // `-g group` alone names the members, one per line.
        return picked.iter().map(|i| format!("{}\n", i.name)).collect();
    }
    if has('l') {
        let names: Vec<&str> = picked.iter().map(|i| i.name.as_str()).collect();
        return format!("{}\n", names.join(" "));
    }
    picked.iter().map(|i| show(&list, i)).collect()
}

const IFF_UP: u32 = 0x1;
const IFF_BROADCAST: u32 = 0x2;
const IFF_LOOPBACK: u32 = 0x8;
const IFF_RUNNING: u32 = 0x40;
const IFF_SIMPLEX: u32 = 0x800;
const IFF_MULTICAST: u32 = 0x8000;
const IFF_LOWER_UP: u32 = 0x100_0000;

/// `flags=hex<NAMES>` the way printb(3)-style output spells it.
fn bits(value: u32, names: &[(u32, &str)]) -> String {
    let set: Vec<&str> = names
        .iter()
        .filter(|(b, _)| value & b != 0)
        .map(|(_, n)| *n)
        .collect();
    format!("{value:x}<{}>", set.join(","))
}

fn iff(i: &Iface) -> u32 {
    let base = match i.kind {
        IfKind::Loopback => IFF_LOOPBACK | IFF_MULTICAST,
        _ => IFF_BROADCAST | IFF_SIMPLEX | IFF_MULTICAST,
    };
    if i.up {
        base | IFF_UP | IFF_RUNNING | IFF_LOWER_UP
    } else {
        base
    }
}

fn prefix_mask(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

/// One interface in ifconfig(8)'s status format; `list` is its namespace (member port numbers).
pub fn show(list: &[&Iface], i: &Iface) -> String {
    let flags = bits(
        iff(i),
        &[
            (IFF_UP, "UP"),
            (IFF_BROADCAST, "BROADCAST"),
            (IFF_LOOPBACK, "LOOPBACK"),
            (IFF_RUNNING, "RUNNING"),
            (IFF_SIMPLEX, "SIMPLEX"),
            (IFF_MULTICAST, "MULTICAST"),
            (IFF_LOWER_UP, "LOWER_UP"),
        ],
    );
    let mtu = if i.kind == IfKind::Loopback {
        16384
    } else {
        1500
    };
    let mut s = format!("{}: flags={flags} metric 0 mtu {mtu}\n", i.name);
    if !i.descr.is_empty() {
        s.push_str(&format!("\tdescription: {}\n", i.descr));
    }
    if !i.ether.is_empty() {
        s.push_str(&format!("\tether {}\n", i.ether));
    }
    for a in &i.inet {
        let (ip, len) = split_prefix(a);
        let Ok(ip) = ip.parse::<Ipv4Addr>() else {
            continue;
        };
        let mask = prefix_mask(len);
        s.push_str(&format!("\tinet {ip} netmask 0x{mask:08x}"));
        if i.kind != IfKind::Loopback {
            s.push_str(&format!(
                " broadcast {}",
                Ipv4Addr::from(u32::from(ip) | !mask)
            ));
        }
        s.push('\n');
    }
    for a in &i.inet6 {
        let (ip, len) = split_prefix(a);
        s.push_str(&format!("\tinet6 {ip} prefixlen {len}\n"));
    }
    if i.accept_rtadv || i.ifdisabled {
        let mut f = 0x1 | 0x20;
        if i.accept_rtadv {
            f |= 0x2;
        }
        if i.ifdisabled {
            f |= 0x8;
        }
        let flags = bits(
            f,
            &[
                (0x1, "PERFORMNUD"),
                (0x2, "ACCEPT_RTADV"),
                (0x8, "IFDISABLED"),
                (0x20, "AUTO_LINKLOCAL"),
            ],
        );
        s.push_str(&format!("\tnd6 options={flags}\n"));
    }
    if i.kind == IfKind::Bridge {
        s.push_str("\tid 00:00:00:00:00:00 priority 32768 hellotime 2 fwddelay 15\n\tmaxage 20 holdcnt 6 proto rstp maxaddr 2000 timeout 1200\n\troot id 00:00:00:00:00:00 priority 32768 ifcost 0 port 0\n");
        // if_bridge inserts members at the head of its list: the newest is shown first.
        for m in i.members.iter().rev() {
            let mut f = 0x1 | 0x2 | 0x40 | 0x100;
            if i.private.contains(m) {
                f |= 0x800;
            }
            let flags = bits(
                f,
                &[
                    (0x1, "LEARNING"),
                    (0x2, "DISCOVER"),
                    (0x800, "PRIVATE"),
                    (0x40, "AUTOEDGE"),
                    (0x100, "AUTOPTP"),
                ],
            );
            let port = list.iter().position(|x| x.name == *m).map_or(0, |p| p + 1);
            s.push_str(&format!(
                "\tmember: {m} flags={flags}\n\t        ifmaxaddr 0 port {port} priority 128 path cost 2000\n"
            ));
        }
    }
    if !i.groups.is_empty() {
        s.push_str(&format!("\tgroups: {}\n", i.groups.join(" ")));
    }
    s
}
