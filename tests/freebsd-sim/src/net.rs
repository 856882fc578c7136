//! `ifconfig`: interfaces of the host and of vnet jails. Each vnet jail is its own interface
//! namespace (it starts with `lo0`); `vnet`/`-vnet` move interfaces between namespaces.
//!
//! Here: the command line and its commands applied in ifconfig's order. Interfaces made, bridged,
//! moved and destroyed are in [`iface`], addresses in [`addr`], the status output in
//! [`status`], and what jail(8) does to the interfaces in [`jails`].

mod addr;
mod iface;
mod jails;
mod status;
#[cfg(test)]
mod tests;

pub use jails::{add_jail_alias, is_vnet, jail_loopback, move_into, release_jail};

use crate::state::{Host, Iface, State};
use crate::{Fail, Res, getopt, usage};
use addr::{AddrOp, set_addr};
use iface::{addm, create, destroy, move_to_jail, reclaim, rename};
use status::{listing, show};

const USAGE: &str = "usage: ifconfig [-j jail] interface address_family [address [dest_address]] [parameters]\n       ifconfig [-j jail] interface create\n       ifconfig [-j jail] -a [-du] [-g group]\n       ifconfig [-j jail] -l [-du] [-g group]\n       ifconfig [-j jail] -g group";

/// A namespace: `None` is the host, `Some(jail name)` a vnet jail.
type Ns = Option<String>;

fn err(msg: impl std::fmt::Display) -> Fail {
    Fail::new(1, format!("ifconfig: {msg}"))
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
