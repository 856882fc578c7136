//! `jail`, `jls`, `jexec`: jails are records; their processes are real Linux processes living in
//! private mount namespaces, chrooted into the jail path.
//!
//! Here: `jail -c` and `jail -r`, a jail's record made with what jail(8) sets up around it
//! (devfs, addresses, vnet interfaces) and removed once its processes are gone. `jls` is in
//! [`jls`], `jexec` and the jail's processes in [`jexec`].

mod jexec;
mod jls;

pub use jexec::{die_by_signal, jexec_main, pids_in};
pub use jls::jls_main;

use crate::state::{Host, Jail, Mount};
use crate::{Fail, Outcome, Res, getopt, usage};
use jexec::run_in_jail;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

const JAIL_USAGE: &str = "usage: jail [-dhilqv] [-J jid_file] [-u username] [-U username] [-cmr] param=value ... [command=command ...]\n       jail [-qv] [-f conf_file] [-rR] [* | jail ...]";

fn not_found(tool: &str, key: &str) -> Fail {
    match tool {
        "jail" => Fail::new(1, format!("jail: \"{key}\" not found")),
        _ => Fail::new(1, format!("{tool}: jail \"{key}\" not found")),
    }
}

pub fn jail_main(host: &Host, args: &[String]) -> Res<String> {
    let (opts, rest) = getopt("jail", args, "cdf:hiJ:lmqrRuU:v", JAIL_USAGE)?;
    let has = |c: char| opts.iter().any(|(o, _)| *o == c);
    match (has('c'), has('r'), has('R')) {
        (true, false, false) => create(host, &rest, has('i')),
        (false, true, false) | (false, false, true) if !rest.is_empty() => {
            for key in &rest {
                remove(host, key, has('R'))?;
            }
            Ok(String::new())
        }
        _ => Err(usage(JAIL_USAGE)),
    }
}

fn create(host: &Host, params: &[String], print_jid: bool) -> Res<String> {
    let params: Vec<(String, Option<String>)> = params
        .iter()
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (p.clone(), None),
        })
        .collect();
    let get = |k: &str| {
        params
            .iter()
            .rev()
            .find(|(n, _)| n == k)
            .and_then(|(_, v)| v.clone())
    };
    let name = get("name").ok_or_else(|| Fail::new(1, "jail: missing required parameter: name"))?;
    let path = get("path")
        .ok_or_else(|| Fail::new(1, format!("jail: {name}: missing required parameter: path")))?;
    if !Path::new(&path).is_dir() {
        return Err(Fail::new(
            1,
            format!("jail: {name}: path \"{path}\": not a directory"),
        ));
    }
    let devfs = params
        .iter()
        .any(|(k, v)| k == "mount.devfs" && v.as_deref().is_none_or(|v| v == "true" || v == "1"));
    let jid = host.update(|st| {
        if st.jails.iter().any(|j| j.name == name) {
            return Err(Fail::new(1, format!("jail: {name}: already exists")));
        }
        let jid = st.next_jid.max(1);
        st.next_jid = jid + 1;
        if devfs {
            // jail(8) mounts devfs itself; `jail -r` without a jail.conf entry leaves it mounted.
            let target = format!("{}/dev", path.trim_end_matches('/'));
            fs::create_dir_all(&target)
                .map_err(|e| crate::state::io_fail("mkdir", Path::new(&target), e))?;
            st.mounts.push(Mount {
                fstype: "devfs".into(),
                src: "devfs".into(),
                target,
                ro: false,
            });
        }
        let jail = Jail {
            jid,
            name: name.clone(),
            path: path.clone(),
            params: params.clone(),
            ns: vec![],
            dying: false,
        };
        let vnet = crate::net::is_vnet(&jail);
        if vnet {
            st.ifaces.push(crate::net::jail_loopback(&name));
        }
        st.jails.push(jail);
        // jail(8) adds each `NIC|IP` of ip4.addr/ip6.addr as an alias on NIC; removing the jail
        // without a jail.conf entry leaves them (pot stop removes them).
        for (key, inet6) in [("ip4.addr", false), ("ip6.addr", true)] {
            for (_, v) in params.iter().filter(|(k, _)| k == key) {
                for entry in v.as_deref().unwrap_or_default().split(',') {
                    if let Some((nic, ip)) = entry.split_once('|') {
                        let ip = ip.split('/').next().unwrap_or(ip);
                        crate::net::add_jail_alias(st, nic, ip, inet6).map_err(|f| {
                            Fail::new(1, format!("{}\njail: {name}: {key} {entry} failed", f.msg))
                        })?;
                    }
                }
            }
        }
        // jail(8) runs `ifconfig IF vnet JAIL` for each vnet.interface; a failure removes the
        // jail again (the whole update is dropped).
        for (_, v) in params.iter().filter(|(k, _)| k == "vnet.interface") {
            let iface = v.clone().unwrap_or_default();
            if !vnet {
                return Err(Fail::new(
                    1,
                    format!("jail: {name}: vnet.interface requires vnet"),
                ));
            }
            crate::net::move_into(st, &iface, &name).map_err(|f| {
                Fail::new(
                    1,
                    format!(
                        "{}\njail: {name}: ifconfig {iface} vnet {name} failed",
                        f.msg
                    ),
                )
            })?;
        }
        Ok(jid)
    })?;
    Ok(if print_jid {
        format!("{jid}\n")
    } else {
        String::new()
    })
}

fn remove(host: &Host, key: &str, at_once: bool) -> Res<()> {
    let st = host.load()?;
    let jail = st
        .jail(key)
        .cloned()
        .ok_or_else(|| not_found("jail", key))?;
    if !at_once && let Some(cmd) = jail.param("exec.stop").filter(|c| !c.trim().is_empty()) {
        let argv = ["/bin/sh", "-c", cmd].map(String::from);
        // Like jail(8): a failing exec.stop is reported but the jail is still removed.
        if let Ok(Outcome::Exit(c)) | Ok(Outcome::Signal(c)) =
            run_in_jail(host, &jail.name, None, false, &argv)
            && c != 0
        {
            eprintln!("jail: {}: exec.stop: /bin/sh -c {cmd}: failed", jail.name);
        }
    }
    let timeout = jail
        .param("stop.timeout")
        .and_then(|t| t.parse::<u64>().ok())
        .unwrap_or(10);
    // From here on no jexec can join: otherwise one that joins after the last kill would
    // outlive the jail (on FreeBSD, attaching to a dying jail fails).
    host.update(|st| {
        if let Some(j) = st.jails.iter_mut().find(|j| j.jid == jail.jid) {
            j.dying = true;
        }
        Ok(())
    })?;
    // Namespaces recorded by jexecs that started after we read the state count too.
    let current_ns = || {
        host.load()
            .ok()
            .and_then(|s| s.jail(&jail.name).map(|j| j.ns.clone()))
            .unwrap_or_default()
    };
    if !at_once {
        for p in pids_in(&current_ns()) {
            let _ = kill(Pid::from_raw(p), Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(timeout);
        while Instant::now() < deadline && !pids_in(&current_ns()).is_empty() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    loop {
        let left = pids_in(&current_ns());
        if left.is_empty() {
            break;
        }
        for p in left {
            let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    host.update(|st| {
        if let Some(i) = st.jails.iter().position(|j| j.jid == jail.jid) {
            let mut j = st.jails.remove(i);
            st.retired_ns.extend(std::mem::take(&mut j.ns));
            // The jail's vnet and cpuset die with it; moved-in interfaces go back to the host.
            crate::net::release_jail(st, &j.name);
            st.cpusets.remove(&j.jid);
            // The kernel frees the prison only once its last reference is gone (README "Dying
            // jails"); until then `jls -d` lists it and its root stays busy.
            let until_us = crate::state::now_us() + (st.dying_secs.max(0.0) * 1e6) as u64;
            st.dying.push(crate::state::DyingJail { jail: j, until_us });
        }
        Ok(())
    })
}
