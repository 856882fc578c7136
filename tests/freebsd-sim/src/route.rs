//! `route`: static IPv4 routes of the host and of vnet jails (`-j JAIL`), following route(8).
//! A gateway must lie in the connected network of an up interface of the same stack.

use crate::state::{Host, Route, State};
use crate::{Fail, Res, getopt, usage};
use std::net::Ipv4Addr;

const USAGE: &str = "usage: route [-j jail] [-46dnqtv] command [[modifiers] args]";

fn err(msg: impl std::fmt::Display) -> Fail {
    Fail::new(1, format!("route: {msg}"))
}

pub fn main(host: &Host, args: &[String]) -> Res<String> {
    let (opts, rest) = getopt("route", args, "46dj:nqtv", USAGE)?;
    let quiet = opts.iter().any(|(o, _)| *o == 'q');
    let jail = opts
        .iter()
        .rev()
        .find(|(o, _)| *o == 'j')
        .map(|(_, v)| v.clone());
    let Some((cmd, words)) = rest.split_first() else {
        return Err(usage(USAGE));
    };
    // Modifiers that only restate what the destination already says.
    let words: Vec<&String> = words
        .iter()
        .filter(|w| !matches!(w.as_str(), "-net" | "-host" | "-inet" | "-4"))
        .collect();
    let st = host.load()?;
    let ns = match &jail {
        None => None,
        Some(key) => {
            let j = st
                .jail(key)
                .ok_or_else(|| err(format!("jail \"{key}\" not found")))?;
            if !crate::net::is_vnet(j) {
                return Err(err("writing to routing socket: Operation not permitted"));
            }
            Some(j.name.clone())
        }
    };
    match (cmd.as_str(), words.as_slice()) {
        ("add", [dest, gw]) => {
            let dest = parse_dest(dest)?;
            let gateway: Ipv4Addr = gw.parse().map_err(|_| err(format!("{gw}: bad address")))?;
            let kind = kind(&dest);
            let line = format!("add {kind} {dest}: gateway {gateway}");
            host.update(|st| {
                let iface = connected(st, &ns, gateway).ok_or_else(|| {
                    err(format!(
                        "writing to routing socket: Network is unreachable\n{line} fail: Network is unreachable"
                    ))
                })?;
                if st.routes.iter().any(|r| r.vnet == ns && r.dest == dest) {
                    return Err(err(format!(
                        "writing to routing socket: File exists\n{line} fail: File exists"
                    )));
                }
                st.routes.push(Route {
                    vnet: ns.clone(),
                    dest: dest.clone(),
                    gateway: gateway.to_string(),
                    iface,
                });
                Ok(())
            })?;
            Ok(if quiet {
                String::new()
            } else {
                format!("{line}\n")
            })
        }
        ("delete", [dest, ..]) => {
            let dest = parse_dest(dest)?;
            let removed = host.update(|st| {
                let idx = st
                    .routes
                    .iter()
                    .position(|r| r.vnet == ns && r.dest == dest)
                    .ok_or_else(|| err("route has not been found"))?;
                Ok(st.routes.remove(idx))
            })?;
            Ok(if quiet {
                String::new()
            } else {
                format!(
                    "delete {} {dest}: gateway {}\n",
                    kind(&dest),
                    removed.gateway
                )
            })
        }
        ("get", [dest]) => {
            let dest = parse_dest(dest)?;
            let r = st
                .routes
                .iter()
                .find(|r| r.vnet == ns && r.dest == dest)
                .ok_or_else(|| err("route has not been found"))?;
            let mask = if dest == "default" { "default" } else { "" };
            let mut out = format!("   route to: {dest}\ndestination: {dest}\n");
            if !mask.is_empty() {
                out.push_str(&format!("       mask: {mask}\n"));
            }
            out.push_str(&format!(
                "    gateway: {}\n        fib: 0\n  interface: {}\n      flags: <UP,GATEWAY,DONE,STATIC>\n",
                r.gateway, r.iface
            ));
            Ok(out)
        }
        _ => Err(usage(USAGE)),
    }
}

fn kind(dest: &str) -> &'static str {
    if dest.ends_with("/32") { "host" } else { "net" }
}

/// `default`, `0.0.0.0/0` (= default) or `a.b.c.d[/len]`.
fn parse_dest(d: &str) -> Res<String> {
    if d == "default" || d == "0.0.0.0/0" {
        return Ok("default".into());
    }
    let (ip, len) = match d.split_once('/') {
        Some((ip, l)) => (ip, l.parse::<u8>().ok().filter(|l| *l <= 32)),
        None => (d, Some(32)),
    };
    match (ip.parse::<Ipv4Addr>(), len) {
        (Ok(ip), Some(len)) => Ok(format!("{ip}/{len}")),
        _ => Err(err(format!("{d}: bad address"))),
    }
}

/// The up interface of `ns` whose IPv4 network contains `gw`.
fn connected(st: &State, ns: &Option<String>, gw: Ipv4Addr) -> Option<String> {
    st.ifaces
        .iter()
        .filter(|i| i.vnet == *ns && i.up)
        .find(|i| {
            i.inet.iter().any(|a| {
                let (ip, len) = a.split_once('/').unwrap_or((a, "32"));
                let (Ok(ip), Ok(len)) = (ip.parse::<Ipv4Addr>(), len.parse::<u32>()) else {
                    return false;
                };
                let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                u32::from(ip) & mask == u32::from(gw) & mask
            })
        })
        .map(|i| i.name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Iface;

    #[test]
    fn gateway_must_be_connected() {
        let mut st = State::default();
        st.ifaces.push(Iface {
            name: "epair0b".into(),
            up: true,
            inet: vec!["10.192.0.3/10".into()],
            vnet: Some("p".into()),
            ..Default::default()
        });
        let gw: Ipv4Addr = "10.192.0.1".parse().unwrap();
        assert_eq!(
            connected(&st, &Some("p".into()), gw).as_deref(),
            Some("epair0b")
        );
        assert_eq!(connected(&st, &None, gw), None);
        assert_eq!(parse_dest("0.0.0.0/0").unwrap(), "default");
        assert_eq!(parse_dest("10.0.0.0/8").unwrap(), "10.0.0.0/8");
        assert!(parse_dest("10.0.0.0/40").is_err());
    }
}
