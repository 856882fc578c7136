//! Typed agent and task configs, decoded from Nomad's msgpack.

use super::cty::{self, CtyError};
use super::schema;
use crate::engine::{NetworkRequest, Overrides, PortSpec};
use crate::proto::drivers::PortMapping;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The agent's `config {}` block.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    pub enabled: bool,
    pub engine: Overrides,
}

impl AgentConfig {
    pub fn decode(bytes: &[u8]) -> Result<AgentConfig, CtyError> {
        let o = cty::decode("agent config", bytes, schema::AGENT)?;
        let path = |k: &str| o.string(k).map(PathBuf::from);
        Ok(AgentConfig {
            enabled: o.bool("enabled").unwrap_or(true),
            engine: Overrides {
                tool_path: o.string("tool_path"),
                zfs_root: o.string("zfs_root"),
                fs_root: path("fs_root"),
                cache_dir: path("cache_dir"),
                tmp_dir: path("tmp_dir"),
                state_dir: path("state_dir"),
                lock_file: path("lock_file"),
                pot_conf_dir: path("pot_conf_dir"),
                network: o.string("network"),
                netmask: o.string("netmask"),
                gateway: o.string("gateway"),
                dns_ip: o.string("dns_ip"),
                extif: o.string("extif"),
                extra_extif: o.merged_map("extra_extif"),
                extif_addr: o.string("extif_addr"),
                vpn_extif: o.string("vpn_extif"),
                vpn_networks: o.strings("vpn_networks"),
                isolate_vnet_pots: o.bool("isolate_vnet_pots"),
                network_stack: o.string("network_stack"),
                args_quote_compat: o.bool("args_quote_compat"),
            },
        })
    }
}

/// A job's `config {}` block, with the Go driver's keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskConfig {
    pub image: String,
    pub pot: String,
    pub tag: String,
    pub command: Option<String>,
    pub args: Vec<String>,
    pub port_map: BTreeMap<String, String>,
    pub network_mode: Option<String>,
    /// An explicit pot address (bridge types).
    pub ip: Option<String>,
    /// The private bridge of a private-bridge task.
    pub bridge: Option<String>,
    pub mount: Vec<String>,
    pub copy: Vec<String>,
    pub mount_read_only: Vec<String>,
    pub extra_hosts: Vec<String>,
    pub attributes: Vec<String>,
}

impl TaskConfig {
    pub fn decode(bytes: &[u8]) -> Result<TaskConfig, CtyError> {
        let o = cty::decode("task config", bytes, schema::TASK)?;
        let required = |k: &str| o.string(k).unwrap_or_default();
        let config = TaskConfig {
            image: required("image"),
            pot: required("pot"),
            tag: required("tag"),
            command: o.string("command"),
            args: o.strings("args"),
            port_map: o.merged_map("port_map"),
            network_mode: o.string("network_mode"),
            ip: o.string("ip"),
            bridge: o.string("bridge"),
            mount: o.strings("mount"),
            copy: o.strings("copy"),
            mount_read_only: o.strings("mount_read_only"),
            extra_hosts: o.strings("extra_hosts"),
            attributes: o.strings("attributes"),
        };
        config.check_supported()?;
        Ok(config)
    }

    /// Options this version does not implement yet are refused rather than silently ignored.
    fn check_supported(&self) -> Result<(), CtyError> {
        let unsupported = |reason: String| CtyError {
            block: "task config",
            reason,
        };
        for (key, set) in [
            ("mount", !self.mount.is_empty()),
            ("copy", !self.copy.is_empty()),
            ("mount_read_only", !self.mount_read_only.is_empty()),
            ("extra_hosts", !self.extra_hosts.is_empty()),
            ("attributes", !self.attributes.is_empty()),
        ] {
            if set {
                return Err(unsupported(format!("{key} is not supported yet")));
            }
        }
        Ok(())
    }
}

impl TaskConfig {
    /// The network to ask the engine for. Ports: with a legacy `port_map` (Go-driver jobs),
    /// exactly its labels, the host port being Nomad's port of that label (or
    /// `NOMAD_HOST_PORT_<label>`); without one, every port Nomad allocated to the task, to its
    /// `to` (or the same number when `to` is unset).
    pub fn network_request(
        &self,
        ports: &[PortMapping],
        env: &std::collections::HashMap<String, String>,
    ) -> Result<NetworkRequest, String> {
        let mut specs = Vec::new();
        if self.port_map.is_empty() {
            for p in ports {
                let host = port_number(&p.label, "host port", i64::from(p.value))?;
                let to = if p.to > 0 {
                    i64::from(p.to)
                } else {
                    host.into()
                };
                specs.push(PortSpec {
                    label: p.label.clone(),
                    host_port: host,
                    pot_port: port_number(&p.label, "to", to)?,
                });
            }
        } else {
            for (label, pot_port) in &self.port_map {
                let pot_port = pot_port
                    .parse::<i64>()
                    .map_err(|_| format!("port_map {label:?}: {pot_port:?} is not a port number"))
                    .and_then(|n| port_number(label, "port_map", n))?;
                let host = ports
                    .iter()
                    .find(|p| p.label == *label)
                    .map(|p| i64::from(p.value))
                    .or_else(|| {
                        env.get(&format!("NOMAD_HOST_PORT_{label}"))
                            .and_then(|v| v.parse().ok())
                    })
                    .ok_or_else(|| {
                        format!(
                            "port_map {label:?}: Nomad allocated no port with that label (add `port \"{label}\" {{}}` to the group's network block)"
                        )
                    })?;
                specs.push(PortSpec {
                    label: label.clone(),
                    host_port: port_number(label, "host port", host)?,
                    pot_port,
                });
            }
        }
        // With network_mode "host" the task uses the host's ports directly: nothing to publish.
        if matches!(self.network_mode.as_deref(), Some("host" | "inherit")) {
            specs.clear();
        }
        Ok(NetworkRequest {
            network_type: self.network_mode.clone(),
            ip: self.ip.clone(),
            bridge: self.bridge.clone(),
            ports: specs,
        })
    }
}

fn port_number(label: &str, what: &str, n: i64) -> Result<u16, String> {
    u16::try_from(n)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("port {label:?}: {what} {n} is not in 1-65535"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(pairs: Vec<(&str, rmpv::Value)>) -> Vec<u8> {
        let map = rmpv::Value::Map(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect());
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, &map).unwrap();
        out
    }

    #[test]
    fn agent_config_with_only_enabled_keeps_pot_defaults() {
        // nomad-protocol.md §4.6 example A: `plugin "nomad-pot-driver" {}`.
        let bytes = [0x81, 0xa7, b'e', b'n', b'a', b'b', b'l', b'e', b'd', 0xc3];
        let c = AgentConfig::decode(&bytes).unwrap();
        assert!(c.enabled);
        assert_eq!(c.engine, Overrides::default());
    }

    #[test]
    fn unsupported_options_are_refused_by_name() {
        let base = || -> Vec<(&str, rmpv::Value)> {
            vec![
                ("image", "http://h/".into()),
                ("pot", "p".into()),
                ("tag", "1".into()),
            ]
        };
        let mut m = base();
        m.push(("mount", rmpv::Value::Array(vec!["/a:/b".into()])));
        assert!(
            TaskConfig::decode(&encode(m))
                .unwrap_err()
                .reason
                .starts_with("mount ")
        );
        let mut m = base();
        m.push(("network_mode", "host".into()));
        assert_eq!(
            TaskConfig::decode(&encode(m))
                .unwrap()
                .network_mode
                .as_deref(),
            Some("host")
        );
    }

    #[test]
    fn ports_from_nomad_and_from_legacy_port_map() {
        let tc = |port_map: &[(&str, &str)], mode: Option<&str>| TaskConfig {
            image: "http://h/".into(),
            pot: "p".into(),
            tag: "1".into(),
            command: None,
            args: vec![],
            port_map: port_map
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            network_mode: mode.map(str::to_string),
            ip: None,
            bridge: None,
            mount: vec![],
            copy: vec![],
            mount_read_only: vec![],
            extra_hosts: vec![],
            attributes: vec![],
        };
        let pm = |label: &str, value: i32, to: i32| PortMapping {
            label: label.into(),
            value,
            to,
            host_ip: String::new(),
        };
        let env = std::collections::HashMap::from([(
            "NOMAD_HOST_PORT_legacy".to_string(),
            "25001".to_string(),
        )]);
        let nomad = [pm("http", 25000, 80), pm("raw", 25002, 0)];
        let r = tc(&[], None).network_request(&nomad, &env).unwrap();
        assert_eq!(
            r.ports,
            [
                PortSpec {
                    label: "http".into(),
                    host_port: 25000,
                    pot_port: 80
                },
                PortSpec {
                    label: "raw".into(),
                    host_port: 25002,
                    pot_port: 25002
                },
            ]
        );
        let r = tc(&[("http", "8080"), ("legacy", "9090")], None)
            .network_request(&nomad, &env)
            .unwrap();
        assert_eq!(
            r.ports,
            [
                PortSpec {
                    label: "http".into(),
                    host_port: 25000,
                    pot_port: 8080
                },
                PortSpec {
                    label: "legacy".into(),
                    host_port: 25001,
                    pot_port: 9090
                },
            ]
        );
        let e = tc(&[("nope", "80")], None)
            .network_request(&nomad, &env)
            .unwrap_err();
        assert!(
            e.contains("port_map \"nope\": Nomad allocated no port"),
            "{e}"
        );
        let e = tc(&[("http", "eighty")], None)
            .network_request(&nomad, &env)
            .unwrap_err();
        assert!(e.contains("not a port number"), "{e}");
        let r = tc(&[("http", "80")], Some("host"))
            .network_request(&nomad, &env)
            .unwrap();
        assert!(r.ports.is_empty());
    }
}
