//! `ifconfig`: interfaces of the host and of vnet jails. Each vnet jail is its own interface
//! namespace (it starts with `lo0`); `vnet`/`-vnet` move interfaces between namespaces.

use crate::state::{Host, IfKind, Iface, Jail, State};
use crate::{Fail, Res, getopt, usage};
use std::net::{Ipv4Addr, Ipv6Addr};

const USAGE: &str = "usage: ifconfig [-j jail] interface address_family [address [dest_address]] [parameters]\n       ifconfig [-j jail] interface create\n       ifconfig [-j jail] -a [-du] [-g group]\n       ifconfig [-j jail] -l [-du] [-g group]\n       ifconfig [-j jail] -g group";

/// A namespace: `None` is the host, `Some(jail name)` a vnet jail.
type Ns = Option<String>;

fn err(msg: impl std::fmt::Display) -> Fail {
    Fail::new(1, format!("ifconfig: {msg}"))
}

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

pub fn main(host: &Host, args: &[String]) -> Res<String> {
    let (opts, rest) = getopt("ifconfig", args, "adg:j:lu", USAGE)?;
    let has = |c: char| opts.iter().any(|(o, _)| *o == c);
    let arg = |c: char| {
        opts.iter()
            .rev()
            .find(|(o, _)| *o == c)
            .map(|(_, v)| v.clone())
    };
    let st = host.load()?;
    // A jail without its own vnet sees the host's interfaces but may not change them.
    let (ns, writable): (Ns, bool) = match arg('j') {
        None => (None, true),
        Some(key) => {
            let j = st
                .jail(&key)
                .ok_or_else(|| err(format!("jail \"{key}\" not found")))?;
            if is_vnet(j) {
                (Some(j.name.clone()), true)
            } else {
                (None, false)
            }
        }
    };
    let Some((name, cmds)) = rest.split_first() else {
        return Ok(listing(&st, &ns, &opts));
    };
    if has('a') || has('l') || has('g') {
        return Err(usage(USAGE));
    }
    if cmds.is_empty() {
        let list = in_ns(&st, &ns);
        let i = list
            .iter()
            .find(|i| i.name == *name)
            .ok_or_else(|| err(format!("interface {name} does not exist")))?;
        return Ok(show(&list, i));
    }
    if !writable {
        return Err(err(format!(
            "ioctl ({}): Operation not permitted",
            ioctl(&cmds[0])
        )));
    }
    // Like ifconfig, commands before a failing one stay applied: the state is saved either way.
    host.update(|st| Ok(apply(st, &ns, name, cmds)))?
}

/// The ioctl a command issues, as ifconfig names it in errors.
fn ioctl(cmd: &str) -> &'static str {
    match cmd {
        "create" => "SIOCIFCREATE2",
        "destroy" => "SIOCIFDESTROY",
        "name" => "SIOCSIFNAME",
        "description" | "descr" | "-description" | "-descr" => "SIOCSIFDESCR",
        "group" => "SIOCAIFGROUP",
        "-group" => "SIOCDIFGROUP",
        "addm" => "BRDGADD",
        "deletem" => "BRDGDEL",
        "private" | "-private" => "BRDGSIFFLGS",
        "vnet" => "SIOCSIFVNET",
        "-vnet" => "SIOCSIFRVNET",
        "up" | "down" => "SIOCSIFFLAGS",
        _ => "SIOCAIFADDR",
    }
}

fn in_ns<'a>(st: &'a State, ns: &Ns) -> Vec<&'a Iface> {
    st.ifaces.iter().filter(|i| i.vnet == *ns).collect()
}

fn find(st: &State, ns: &Ns, name: &str) -> Option<usize> {
    st.ifaces
        .iter()
        .position(|i| i.vnet == *ns && i.name == name)
}

fn listing(st: &State, ns: &Ns, opts: &[(char, String)]) -> String {
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

fn split_prefix(a: &str) -> (&str, u8) {
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
struct AddrOp {
    inet6: bool,
    addr: Option<String>,
    mask: Option<String>,
    alias: bool,
    delete: bool,
}

fn apply(st: &mut State, ns: &Ns, name: &str, cmds: &[String]) -> Res<String> {
    let mut print_name = false;
    let mut cmds = cmds;
    let mut idx = find(st, ns, name);
    if cmds.first().is_some_and(|c| c == "create") {
        if idx.is_some() {
            return Err(err(format!("SIOCIFCREATE2 ({name}): File exists")));
        }
        idx = Some(create(st, ns, name)?);
        print_name = true;
        cmds = &cmds[1..];
    } else if idx.is_none() && cmds.first().is_some_and(|c| c == "-vnet") {
        // ifconfig special-cases -vnet: the interface lives in the jail, not here.
        let jail = cmds
            .get(1)
            .ok_or_else(|| err("'-vnet' requires argument"))?;
        idx = Some(reclaim(st, ns, name, jail)?);
        cmds = &cmds[2..];
    }
    let mut idx = idx.ok_or_else(|| err(format!("interface {name} does not exist")))?;
    let mut op = AddrOp::default();
    if let Some(af) = cmds.first().filter(|c| *c == "inet" || *c == "inet6") {
        op.inet6 = af == "inet6";
        cmds = &cmds[1..];
    }
    let mut k = 0;
    while k < cmds.len() {
        let cmd = cmds[k].as_str();
        let takes_arg = matches!(
            cmd,
            "name"
                | "description"
                | "descr"
                | "group"
                | "-group"
                | "addm"
                | "deletem"
                | "private"
                | "-private"
                | "vnet"
                | "-vnet"
                | "netmask"
                | "prefixlen"
        );
        let val = if takes_arg {
            k += 1;
            cmds.get(k)
                .map(String::as_str)
                .ok_or_else(|| err(format!("'{cmd}' requires argument")))?
        } else {
            ""
        };
        k += 1;
        let last = k == cmds.len();
        match cmd {
            "up" => st.ifaces[idx].up = true,
            "down" => st.ifaces[idx].up = false,
            "destroy" => {
                destroy(st, idx)?;
                return gone_after(last, name);
            }
            "name" => {
                rename(st, idx, val)?;
                print_name = true;
            }
            "description" | "descr" => st.ifaces[idx].descr = val.into(),
            "-description" | "-descr" => st.ifaces[idx].descr.clear(),
            "group" => {
                if val.ends_with(|c: char| c.is_ascii_digit()) {
                    return Err(err("setifgroup: group names may not end in a digit"));
                }
                // ifconfig ignores EEXIST here and ENOENT for -group.
                let groups = &mut st.ifaces[idx].groups;
                if !groups.iter().any(|g| g == val) {
                    groups.push(val.into());
                }
            }
            "-group" => st.ifaces[idx].groups.retain(|g| g != val),
            "addm" => addm(st, idx, val)?,
            "deletem" => {
                let b = &mut st.ifaces[idx];
                let pos = b
                    .members
                    .iter()
                    .position(|m| m == val)
                    .ok_or_else(|| err(format!("BRDGDEL {val}: No such file or directory")))?;
                b.members.remove(pos);
                b.private.retain(|m| m != val);
            }
            "private" | "-private" => {
                let b = &mut st.ifaces[idx];
                if !b.members.iter().any(|m| m == val) {
                    return Err(err("unable to get bridge flags: No such file or directory"));
                }
                b.private.retain(|m| m != val);
                if cmd == "private" {
                    b.private.push(val.into());
                }
            }
            "vnet" => {
                move_to_jail(st, ns, idx, val)?;
                return gone_after(last, name);
            }
            "-vnet" => {
                let here = st.ifaces[idx].name.clone();
                idx = reclaim(st, ns, &here, val)?;
            }
            "accept_rtadv" => st.ifaces[idx].accept_rtadv = true,
            "-accept_rtadv" => st.ifaces[idx].accept_rtadv = false,
            "ifdisabled" => st.ifaces[idx].ifdisabled = true,
            "-ifdisabled" => st.ifaces[idx].ifdisabled = false,
            "alias" | "add" => op.alias = true,
            "-alias" | "delete" => op.delete = true,
            "netmask" | "prefixlen" => op.mask = Some(val.into()),
            _ if op.addr.is_none() => op.addr = Some(cmd.into()),
            _ => return Err(err(format!("{cmd}: bad value"))),
        }
    }
    if let Some(addr) = &op.addr {
        set_addr(&mut st.ifaces[idx], &op, addr)?;
    }
    Ok(if print_name {
        format!("{}\n", st.ifaces[idx].name)
    } else {
        String::new()
    })
}

/// After `destroy` or `vnet` the interface is gone from here: later commands cannot apply.
fn gone_after(last: bool, name: &str) -> Res<String> {
    if last {
        Ok(String::new())
    } else {
        Err(err(format!("interface {name} does not exist")))
    }
}

fn set_addr(i: &mut Iface, op: &AddrOp, addr: &str) -> Res<()> {
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

fn cloner_groups(kind: IfKind) -> Vec<String> {
    match kind {
        IfKind::Loopback => vec!["lo".into()],
        IfKind::Epair => vec!["epair".into()],
        IfKind::Bridge => vec!["bridge".into()],
        IfKind::Ether => vec![],
    }
}

fn create(st: &mut State, ns: &Ns, name: &str) -> Res<usize> {
    let (kind, digits) = if let Some(d) = name.strip_prefix("epair") {
        (IfKind::Epair, d)
    } else if let Some(d) = name.strip_prefix("bridge") {
        (IfKind::Bridge, d)
    } else {
        return Err(err(format!("SIOCIFCREATE2 ({name}): Invalid argument")));
    };
    let names = |u: u32| -> Vec<String> {
        match kind {
            IfKind::Epair => vec![format!("epair{u}a"), format!("epair{u}b")],
            _ => vec![format!("bridge{u}")],
        }
    };
    // Clone units are per vnet; a unit stays taken while any interface it made exists.
    let free = |u: u32| {
        !st.ifaces
            .iter()
            .any(|i| i.kind == kind && i.home == *ns && i.unit == u)
            && names(u).iter().all(|n| find(st, ns, n).is_none())
    };
    let unit = if digits.is_empty() {
        (0..).find(|u| free(*u)).expect("a free unit")
    } else {
        let u = digits
            .parse::<u32>()
            .map_err(|_| err(format!("SIOCIFCREATE2 ({name}): Invalid argument")))?;
        if !free(u) {
            return Err(err(format!("SIOCIFCREATE2 ({name}): File exists")));
        }
        u
    };
    let first = st.ifaces.len();
    for (side, n) in names(unit).into_iter().enumerate() {
        let ether = match kind {
            IfKind::Epair => format!(
                "02:{:02x}:{:02x}:{:02x}:{:02x}:0{}",
                unit >> 24,
                (unit >> 16) & 255,
                (unit >> 8) & 255,
                unit & 255,
                if side == 0 { 'a' } else { 'b' }
            ),
            _ => format!("58:9c:fc:10:{:02x}:{:02x}", (unit >> 8) & 255, unit & 255),
        };
        st.ifaces.push(Iface {
            name: n,
            kind,
            unit,
            groups: cloner_groups(kind),
            ether,
            vnet: ns.clone(),
            home: ns.clone(),
            ..Default::default()
        });
    }
    Ok(first)
}

fn rename(st: &mut State, idx: usize, new: &str) -> Res<()> {
    if new.len() >= 16 {
        return Err(err(format!("interface name '{new}' too long")));
    }
    let ns = st.ifaces[idx].vnet.clone();
    if find(st, &ns, new).is_some() {
        return Err(err("ioctl SIOCSIFNAME (set name): File exists"));
    }
    let old = std::mem::replace(&mut st.ifaces[idx].name, new.into());
    for b in st.ifaces.iter_mut().filter(|b| b.vnet == ns) {
        for m in b.members.iter_mut().chain(b.private.iter_mut()) {
            if *m == old {
                *m = new.into();
            }
        }
    }
    Ok(())
}

fn addm(st: &mut State, idx: usize, member: &str) -> Res<()> {
    let ns = st.ifaces[idx].vnet.clone();
    let fail = |why: &str| err(format!("BRDGADD {member}: {why}"));
    let m = find(st, &ns, member).ok_or_else(|| fail("No such file or directory"))?;
    if st.ifaces[idx].kind != IfKind::Bridge
        || m == idx
        || matches!(st.ifaces[m].kind, IfKind::Loopback | IfKind::Bridge)
    {
        return Err(fail("Invalid argument"));
    }
    if st.ifaces[idx].members.iter().any(|x| x == member) {
        return Err(fail("File exists"));
    }
    if st
        .ifaces
        .iter()
        .any(|b| b.vnet == ns && b.members.iter().any(|x| x == member))
    {
        return Err(fail("Device busy"));
    }
    st.ifaces[idx].members.push(member.into());
    Ok(())
}

/// What leaving a vnet does to an interface: out of its bridge, addresses and user groups gone,
/// marked down; the description stays.
fn detach(st: &mut State, idx: usize) {
    let (name, ns) = (st.ifaces[idx].name.clone(), st.ifaces[idx].vnet.clone());
    for b in st.ifaces.iter_mut().filter(|b| b.vnet == ns) {
        b.members.retain(|m| *m != name);
        b.private.retain(|m| *m != name);
    }
    let i = &mut st.ifaces[idx];
    i.inet.clear();
    i.inet6.clear();
    i.members.clear();
    i.private.clear();
    i.up = false;
    i.groups = cloner_groups(i.kind);
}

/// Moves an interface to another vnet, where it is attached last; returns its new index.
fn relocate(st: &mut State, idx: usize, to: Ns) -> usize {
    detach(st, idx);
    let mut i = st.ifaces.remove(idx);
    i.vnet = to;
    st.ifaces.push(i);
    st.ifaces.len() - 1
}

/// Removes an interface (an epair takes its other end along, wherever that is).
fn remove(st: &mut State, idx: usize) {
    let i = st.ifaces[idx].clone();
    let doomed: Vec<usize> = match i.kind {
        IfKind::Epair => (0..st.ifaces.len())
            .filter(|&k| {
                let o = &st.ifaces[k];
                o.kind == IfKind::Epair && o.unit == i.unit && o.home == i.home
            })
            .collect(),
        _ => vec![idx],
    };
    for &k in &doomed {
        detach(st, k);
    }
    let mut k = 0;
    st.ifaces.retain(|_| {
        k += 1;
        !doomed.contains(&(k - 1))
    });
}

fn destroy(st: &mut State, idx: usize) -> Res<()> {
    if matches!(st.ifaces[idx].kind, IfKind::Loopback | IfKind::Ether) {
        return Err(err("SIOCIFDESTROY: Invalid argument"));
    }
    remove(st, idx);
    Ok(())
}

fn move_to_jail(st: &mut State, ns: &Ns, idx: usize, key: &str) -> Res<()> {
    let jail = st
        .jail(key)
        .ok_or_else(|| err(format!("jail \"{key}\" not found")))?;
    let target = Some(jail.name.clone());
    // A jail sharing our stack is the same vnet: if_vmove_loan refuses with EEXIST.
    if !is_vnet(jail) || target == *ns || find(st, &target, &st.ifaces[idx].name).is_some() {
        return Err(err("SIOCSIFVNET: File exists"));
    }
    if st.ifaces[idx].kind == IfKind::Loopback {
        return Err(err("SIOCSIFVNET: Invalid argument"));
    }
    relocate(st, idx, target);
    Ok(())
}

fn reclaim(st: &mut State, ns: &Ns, name: &str, key: &str) -> Res<usize> {
    let jail = st
        .jail(key)
        .ok_or_else(|| err(format!("jail \"{key}\" not found")))?;
    let from = Some(jail.name.clone());
    let idx = find(st, &from, name)
        .filter(|_| from != *ns)
        .ok_or_else(|| err("SIOCSIFRVNET: Device not configured"))?;
    if find(st, ns, name).is_some() {
        return Err(err("SIOCSIFRVNET: File exists"));
    }
    Ok(relocate(st, idx, ns.clone()))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Jail;

    fn host_state() -> State {
        State {
            ifaces: vec![
                Iface {
                    name: "lo0".into(),
                    kind: IfKind::Loopback,
                    up: true,
                    groups: vec!["lo".into()],
                    inet: vec!["127.0.0.1/8".into()],
                    ..Default::default()
                },
                Iface {
                    name: "em0".into(),
                    up: true,
                    ether: "08:00:27:5e:00:01".into(),
                    ..Default::default()
                },
                jail_loopback("web"),
            ],
            jails: vec![Jail {
                jid: 1,
                name: "web".into(),
                params: vec![("vnet".into(), None)],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn run(st: &mut State, ns: &Ns, args: &[&str]) -> Res<String> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        apply(st, ns, &args[0], &args[1..])
    }

    #[test]
    fn formats_like_freebsd() {
        let mut st = host_state();
        assert_eq!(
            run(&mut st, &None, &["bridge", "create"]).unwrap(),
            "bridge0\n"
        );
        run(
            &mut st,
            &None,
            &[
                "bridge0",
                "inet",
                "10.192.0.1",
                "netmask",
                "255.192.0.0",
                "descr",
                "pot bridge",
            ],
        )
        .unwrap();
        assert_eq!(
            run(&mut st, &None, &["epair", "create", "group", "pot"]).unwrap(),
            "epair0a\n"
        );
        run(
            &mut st,
            &None,
            &["bridge0", "addm", "epair0a", "private", "epair0a"],
        )
        .unwrap();
        let list = in_ns(&st, &None);
        let b = list.iter().find(|i| i.name == "bridge0").unwrap();
        assert_eq!(
            show(&list, b),
            "bridge0: flags=1008843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST,LOWER_UP> metric 0 mtu 1500\n\
             \tdescription: pot bridge\n\
             \tether 58:9c:fc:10:00:00\n\
             \tinet 10.192.0.1 netmask 0xffc00000 broadcast 10.255.255.255\n\
             \tid 00:00:00:00:00:00 priority 32768 hellotime 2 fwddelay 15\n\
             \tmaxage 20 holdcnt 6 proto rstp maxaddr 2000 timeout 1200\n\
             \troot id 00:00:00:00:00:00 priority 32768 ifcost 0 port 0\n\
             \tmember: epair0a flags=943<LEARNING,DISCOVER,PRIVATE,AUTOEDGE,AUTOPTP>\n\
             \t        ifmaxaddr 0 port 4 priority 128 path cost 2000\n\
             \tgroups: bridge\n"
        );
        let lo = list[0];
        assert_eq!(
            show(&list, lo),
            "lo0: flags=1008049<UP,LOOPBACK,RUNNING,MULTICAST,LOWER_UP> metric 0 mtu 16384\n\tinet 127.0.0.1 netmask 0xff000000\n\tgroups: lo\n"
        );
        let b_end = list.iter().find(|i| i.name == "epair0b").unwrap();
        assert_eq!(
            show(&list, b_end),
            "epair0b: flags=8802<BROADCAST,SIMPLEX,MULTICAST> metric 0 mtu 1500\n\tether 02:00:00:00:00:0b\n\tgroups: epair\n"
        );
        let opts = vec![('l', String::new())];
        assert_eq!(
            listing(&st, &None, &opts),
            "lo0 em0 bridge0 epair0a epair0b\n"
        );
        let opts = vec![('g', "pot".to_string())];
        assert_eq!(listing(&st, &None, &opts), "epair0a\n");
    }

    #[test]
    fn addresses() {
        assert_eq!(parse_inet("10.192.0.3/10", None).unwrap().1, 10);
        assert_eq!(parse_inet("10.1.2.3", Some("0xffffff00")).unwrap().1, 24);
        assert_eq!(parse_inet("10.1.2.3", None).unwrap().1, 8);
        assert!(
            parse_inet("10.1.2", None)
                .unwrap_err()
                .msg
                .contains("bad value")
        );
        assert!(parse_inet("10.1.2.3", Some("255.0.255.0")).is_err());
        assert_eq!(parse_inet6("fd00::1", None).unwrap().1, 64);
        assert_eq!(parse_inet6("fd00::1/48", None).unwrap().1, 48);
        let mut st = host_state();
        run(&mut st, &None, &["em0", "inet", "10.0.0.1/24"]).unwrap();
        run(&mut st, &None, &["em0", "inet", "10.0.0.2/24", "alias"]).unwrap();
        // Without alias the first address is replaced.
        run(&mut st, &None, &["em0", "inet", "10.0.0.3/24"]).unwrap();
        assert_eq!(st.ifaces[1].inet, ["10.0.0.2/24", "10.0.0.3/24"]);
        let e = run(&mut st, &None, &["em0", "inet", "10.0.0.2/24", "alias"]).unwrap_err();
        assert_eq!(e.msg, "ifconfig: ioctl (SIOCAIFADDR): File exists");
        run(&mut st, &None, &["em0", "inet", "10.0.0.2", "-alias"]).unwrap();
        run(
            &mut st,
            &None,
            &["em0", "inet6", "fd00::1", "prefixlen", "64", "alias"],
        )
        .unwrap();
        assert_eq!(st.ifaces[1].inet, ["10.0.0.3/24"]);
        assert_eq!(st.ifaces[1].inet6, ["fd00::1/64"]);
        let e = run(&mut st, &None, &["em0", "inet", "10.9.9.9", "-alias"]).unwrap_err();
        assert!(e.msg.contains("SIOCDIFADDR"), "{}", e.msg);
    }

    #[test]
    fn vnet_moves_and_jail_release() {
        let mut st = host_state();
        run(&mut st, &None, &["bridge", "create"]).unwrap();
        run(&mut st, &None, &["epair", "create"]).unwrap();
        assert_eq!(
            run(&mut st, &None, &["epair0a", "name", "p0a"]).unwrap(),
            "p0a\n"
        );
        run(&mut st, &None, &["bridge0", "addm", "p0a"]).unwrap();
        run(&mut st, &None, &["epair0b", "vnet", "web"]).unwrap();
        let web = Some("web".to_string());
        assert!(find(&st, &None, "epair0b").is_none());
        run(&mut st, &web, &["epair0b", "inet", "10.192.0.3/10"]).unwrap();
        let names: Vec<&str> = in_ns(&st, &web).iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["lo0", "epair0b"]);
        // Out and back in again.
        run(&mut st, &None, &["epair0b", "-vnet", "web"]).unwrap();
        assert!(
            st.ifaces[find(&st, &None, "epair0b").unwrap()]
                .inet
                .is_empty()
        );
        run(&mut st, &None, &["epair0b", "vnet", "web"]).unwrap();
        let e = run(&mut st, &None, &["lo0", "vnet", "nope"]).unwrap_err();
        assert_eq!(e.msg, "ifconfig: jail \"nope\" not found");
        // A second epair gets the lowest free unit.
        assert_eq!(
            run(&mut st, &None, &["epair", "create"]).unwrap(),
            "epair1a\n"
        );
        run(&mut st, &None, &["epair1a", "destroy"]).unwrap();
        release_jail(&mut st, "web");
        assert!(in_ns(&st, &web).is_empty());
        let b = find(&st, &None, "epair0b").expect("returned to the host");
        assert!(!st.ifaces[b].up);
        // Destroying the renamed a-end takes the b-end and the bridge membership along.
        run(&mut st, &None, &["p0a", "destroy"]).unwrap();
        assert!(find(&st, &None, "epair0b").is_none());
        assert!(
            st.ifaces[find(&st, &None, "bridge0").unwrap()]
                .members
                .is_empty()
        );
        let e = run(&mut st, &None, &["em0", "destroy"]).unwrap_err();
        assert_eq!(e.msg, "ifconfig: SIOCIFDESTROY: Invalid argument");
    }

    #[test]
    fn epair_end_destroyed_from_jail_side_too() {
        let mut st = host_state();
        run(&mut st, &None, &["epair", "create"]).unwrap();
        run(&mut st, &None, &["epair0b", "vnet", "web"]).unwrap();
        run(&mut st, &Some("web".into()), &["epair0b", "destroy"]).unwrap();
        assert!(st.ifaces.iter().all(|i| i.kind != IfKind::Epair));
    }
}
