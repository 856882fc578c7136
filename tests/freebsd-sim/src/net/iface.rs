//! Interfaces made (`epair`, `bridge` cloners), renamed, bridged (`addm`), moved between vnets
//! and destroyed, with what each does to the others (an epair's two ends, bridge membership).

use super::{Ns, err, find, is_vnet};
use crate::Res;
use crate::state::{IfKind, Iface, State};

fn cloner_groups(kind: IfKind) -> Vec<String> {
    match kind {
        IfKind::Loopback => vec!["lo".into()],
        IfKind::Epair => vec!["epair".into()],
        IfKind::Bridge => vec!["bridge".into()],
        IfKind::Ether => vec![],
    }
}

pub(super) fn create(st: &mut State, ns: &Ns, name: &str) -> Res<usize> {
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

pub(super) fn rename(st: &mut State, idx: usize, new: &str) -> Res<()> {
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

pub(super) fn addm(st: &mut State, idx: usize, member: &str) -> Res<()> {
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
pub(super) fn relocate(st: &mut State, idx: usize, to: Ns) -> usize {
    detach(st, idx);
    let mut i = st.ifaces.remove(idx);
    i.vnet = to;
    st.ifaces.push(i);
    st.ifaces.len() - 1
}

/// Removes an interface (an epair takes its other end along, wherever that is).
pub(super) fn remove(st: &mut State, idx: usize) {
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

pub(super) fn destroy(st: &mut State, idx: usize) -> Res<()> {
    if matches!(st.ifaces[idx].kind, IfKind::Loopback | IfKind::Ether) {
        return Err(err("SIOCIFDESTROY: Invalid argument"));
    }
    remove(st, idx);
    Ok(())
}

pub(super) fn move_to_jail(st: &mut State, ns: &Ns, idx: usize, key: &str) -> Res<()> {
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

pub(super) fn reclaim(st: &mut State, ns: &Ns, name: &str, key: &str) -> Res<usize> {
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
