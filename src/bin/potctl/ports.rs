//! A task's ports as a Nomad client would hand them to the plugin: the group's `port` blocks,
//! `--port` overrides, and host ports picked from Nomad's dynamic range where the job pins none.

use anyhow::{Result, anyhow, bail};
use nomad_pot_driver::engine::Engine;
use nomad_pot_driver::jobspec::network::{DYNAMIC_PORTS, PortDecl};
use nomad_pot_driver::proto::drivers::PortMapping;
use serde_json::json;
use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::str::FromStr;

/// `--port LABEL=HOST[:TO]`: the host port (and the pot's) of a port the job declares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortArg {
    pub label: String,
    pub host: u16,
    pub to: Option<u16>,
}

impl FromStr for PortArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (label, rest) = s
            .split_once('=')
            .filter(|(l, _)| !l.is_empty())
            .ok_or_else(|| format!("{s:?} is not LABEL=HOST_PORT[:TO]"))?;
        let number = |v: &str| {
            v.parse::<u16>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{s:?}: {v:?} is not a port number (1-65535)"))
        };
        let (host, to) = match rest.split_once(':') {
            Some((host, to)) => (number(host)?, Some(number(to)?)),
            None => (number(rest)?, None),
        };
        Ok(PortArg {
            label: label.to_string(),
            host,
            to,
        })
    }
}

/// How a port's host side was chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The job's `static`.
    Static,
    /// A `--port` flag.
    Flag,
    /// Picked from Nomad's dynamic range.
    Dynamic,
}

/// One allocated port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskPort {
    pub label: String,
    pub host: u16,
    /// The port inside the pot; `None` is the host port.
    pub to: Option<u16>,
    pub origin: Origin,
}

impl TaskPort {
    /// The port the task listens on.
    pub fn inside(&self) -> u16 {
        self.to.unwrap_or(self.host)
    }
}

/// The task's ports: each `port` the group declares, with `--port` over its `static` and `to`,
/// and a free host port from Nomad's dynamic range for the rest. A flag naming a label the job
/// does not declare is refused.
pub async fn allocate(
    engine: &Engine,
    declared: &[PortDecl],
    flags: &[PortArg],
) -> Result<Vec<TaskPort>> {
    for f in flags {
        if !declared.iter().any(|d| d.label == f.label) {
            let labels: Vec<&str> = declared.iter().map(|d| d.label.as_str()).collect();
            bail!(
                "--port {}: the job's group declares no port {:?} ({})",
                f.label,
                f.label,
                if labels.is_empty() {
                    "it has no network block with ports".to_string()
                } else {
                    format!("it declares {}", labels.join(", "))
                }
            );
        }
    }
    let mut ports: Vec<(TaskPort, bool)> = declared
        .iter()
        .map(|d| {
            let flag = flags.iter().rev().find(|f| f.label == d.label);
            let to = flag.and_then(|f| f.to).or(d.to);
            match (flag, d.static_port) {
                (Some(f), _) => (port(d, f.host, to, Origin::Flag), true),
                (None, Some(host)) => (port(d, host, to, Origin::Static), true),
                (None, None) => (port(d, 0, to, Origin::Dynamic), false),
            }
        })
        .collect();
    let mut taken = BTreeSet::new();
    for (p, fixed) in &ports {
        if *fixed && !taken.insert(p.host) {
            bail!(
                "port {}: host port {} is asked for twice by this task",
                p.label,
                p.host
            );
        }
    }
    if ports.iter().any(|(_, fixed)| !fixed) {
        taken.extend(engine.published_host_ports().await?);
        for (p, fixed) in ports.iter_mut().filter(|(_, fixed)| !*fixed) {
            p.host = pick(&taken, free_on_host).ok_or_else(|| {
                anyhow!(
                    "port {}: no free host port in Nomad's dynamic range {}-{}",
                    p.label,
                    DYNAMIC_PORTS.start(),
                    DYNAMIC_PORTS.end()
                )
            })?;
            taken.insert(p.host);
            *fixed = true;
        }
    }
    Ok(ports.into_iter().map(|(p, _)| p).collect())
}

fn port(d: &PortDecl, host: u16, to: Option<u16>, origin: Origin) -> TaskPort {
    TaskPort {
        label: d.label.clone(),
        host,
        to,
        origin,
    }
}

/// A port of the dynamic range that is neither `taken` nor refused by `free`, scanning from a
/// random start as Nomad's scheduler picks at random.
fn pick(taken: &BTreeSet<u16>, free: impl Fn(u16) -> bool) -> Option<u16> {
    let (lo, hi) = (*DYNAMIC_PORTS.start(), *DYNAMIC_PORTS.end());
    let span = u32::from(hi - lo) + 1;
    let start = (std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
        % u64::from(span)) as u32;
    (0..span)
        .map(|i| lo + ((start + i) % span) as u16)
        .find(|p| !taken.contains(p) && free(*p))
}

/// Whether nothing on the host listens on `port`, over TCP or UDP.
fn free_on_host(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok()
        && UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok()
}

/// The ports as the plugin receives them in the task's resources.
pub fn mappings(ports: &[TaskPort], address: Option<Ipv4Addr>) -> Vec<PortMapping> {
    ports
        .iter()
        .map(|p| PortMapping {
            label: p.label.clone(),
            value: i32::from(p.host),
            to: p.to.map_or(0, i32::from),
            host_ip: address.map(|a| a.to_string()).unwrap_or_default(),
        })
        .collect()
}

/// The port variables a Nomad client sets for each port (taskenv's addPorts).
pub fn env(ports: &[TaskPort], address: Option<Ipv4Addr>, env: &mut HashMap<String, String>) {
    let ip = address.map(|a| a.to_string()).unwrap_or_default();
    for p in ports {
        let l = &p.label;
        let addr = format!("{ip}:{}", p.host);
        let inside = p.inside().to_string();
        for (key, value) in [
            (format!("NOMAD_ADDR_{l}"), addr.clone()),
            (format!("NOMAD_HOST_ADDR_{l}"), addr),
            (format!("NOMAD_IP_{l}"), ip.clone()),
            (format!("NOMAD_HOST_IP_{l}"), ip.clone()),
            (format!("NOMAD_PORT_{l}"), inside.clone()),
            (format!("NOMAD_ALLOC_PORT_{l}"), inside),
            (format!("NOMAD_HOST_PORT_{l}"), p.host.to_string()),
        ] {
            env.insert(key, value);
        }
    }
}

/// One line per port for the operator: where it is published and how it was chosen.
pub fn describe(p: &TaskPort, address: Option<Ipv4Addr>) -> String {
    let how = match p.origin {
        Origin::Static => "the job's static port",
        Origin::Flag => "--port",
        Origin::Dynamic => "picked from Nomad's dynamic range",
    };
    let at = address.map_or_else(|| "*".to_string(), |a| a.to_string());
    format!(
        "port {}: {at}:{} -> pot port {} ({how})",
        p.label,
        p.host,
        p.inside()
    )
}

pub fn to_json(p: &TaskPort) -> serde_json::Value {
    json!({
        "label": p.label,
        "host_port": p.host,
        "pot_port": p.inside(),
        "origin": match p.origin {
            Origin::Static => "static",
            Origin::Flag => "flag",
            Origin::Dynamic => "dynamic",
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_parsed_or_rejected() {
        let p: PortArg = "http=8080:80".parse().unwrap();
        assert_eq!((p.label.as_str(), p.host, p.to), ("http", 8080, Some(80)));
        let p: PortArg = "http=8080".parse().unwrap();
        assert_eq!(p.to, None);
        for bad in [
            "http",
            "http=99999",
            "=1",
            "http=0",
            "http=80:0",
            "http=a:1",
        ] {
            assert!(bad.parse::<PortArg>().is_err(), "{bad}");
        }
    }

    #[test]
    fn picks_free_ports_of_the_dynamic_range_only() {
        let taken: BTreeSet<u16> = DYNAMIC_PORTS.filter(|p| p % 2 == 0).collect();
        for _ in 0..50 {
            let p = pick(&taken, |p| p % 3 != 0).unwrap();
            assert!(
                DYNAMIC_PORTS.contains(&p) && p % 2 == 1 && p % 3 != 0,
                "{p}"
            );
        }
        assert_eq!(pick(&taken, |_| false), None);
        let all: BTreeSet<u16> = DYNAMIC_PORTS.collect();
        assert_eq!(pick(&all, |_| true), None);
    }

    #[test]
    fn sets_nomads_port_variables() {
        let ports = [
            TaskPort {
                label: "http".into(),
                host: 23456,
                to: Some(80),
                origin: Origin::Dynamic,
            },
            TaskPort {
                label: "admin".into(),
                host: 8081,
                to: None,
                origin: Origin::Static,
            },
        ];
        let mut vars = HashMap::new();
        env(&ports, Some(Ipv4Addr::new(192, 0, 2, 10)), &mut vars);
        let get = |k: &str| vars[k].as_str();
        assert_eq!(get("NOMAD_PORT_http"), "80");
        assert_eq!(get("NOMAD_ALLOC_PORT_http"), "80");
        assert_eq!(get("NOMAD_HOST_PORT_http"), "23456");
        assert_eq!(get("NOMAD_ADDR_http"), "192.0.2.10:23456");
        assert_eq!(get("NOMAD_HOST_ADDR_http"), "192.0.2.10:23456");
        assert_eq!(get("NOMAD_IP_http"), "192.0.2.10");
        assert_eq!(get("NOMAD_HOST_IP_http"), "192.0.2.10");
        assert_eq!(get("NOMAD_PORT_admin"), "8081");
        assert_eq!(get("NOMAD_HOST_PORT_admin"), "8081");
        assert_eq!(vars.len(), 14);
        assert_eq!(
            mappings(&ports, Some(Ipv4Addr::new(192, 0, 2, 10)))[0],
            PortMapping {
                label: "http".into(),
                value: 23456,
                to: 80,
                host_ip: "192.0.2.10".into()
            }
        );
    }
}
