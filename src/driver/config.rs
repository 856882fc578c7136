//! Typed agent and task configs, decoded from Nomad's msgpack.

use super::cty::{self, CtyError, CtyObject};
use super::schema;
use crate::engine::{
    CopyIn, HostEntry, HostMount, Limits, NetworkMode, NetworkRequest, Overrides, PortSpec,
    Proxies, parse_count, parse_size,
};
use crate::proto::drivers::PortMapping;
use std::collections::BTreeMap;

/// The agent's `config {}` block.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    pub enabled: bool,
    /// Tasks without `cpu_hard_limit` take this.
    pub cpu_hard_limit: bool,
    pub engine: Overrides,
}

impl AgentConfig {
    pub fn decode(bytes: &[u8]) -> Result<AgentConfig, CtyError> {
        let o = cty::decode("agent config", bytes, schema::AGENT)?;
        Ok(AgentConfig {
            enabled: o.bool("enabled").unwrap_or(true),
            cpu_hard_limit: o.bool("cpu_hard_limit").unwrap_or(false),
            engine: Overrides {
                // Nomad starts plugins with the agent's own environment, where pot's fetch(1)
                // would find its proxy; potctl decodes its config here too, with its own. The
                // one place either reads them.
                proxies: Proxies::from_env(|name| std::env::var(name).ok()),
                ..Overrides::from_values(&o)
            },
        })
    }
}

/// The engine's settings table reads its keys from the decoded agent config through this.
impl crate::engine::Values for CtyObject {
    fn text(&self, key: &str) -> Option<String> {
        self.string(key)
    }

    fn flag(&self, key: &str) -> Option<bool> {
        self.bool(key)
    }

    fn texts(&self, key: &str) -> Vec<String> {
        self.strings(key)
    }

    fn pairs(&self, key: &str) -> BTreeMap<String, String> {
        self.merged_map(key)
    }
}

impl AgentConfig {
    /// The agent config as a JSON object (as `freebsd-sim init` prints it), for tools that work
    /// on a node without Nomad; decoded exactly as Nomad's msgpack is.
    pub fn from_json(json: &serde_json::Value) -> Result<AgentConfig, CtyError> {
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &json_to_msgpack(json))
            .expect("writing msgpack to memory cannot fail");
        AgentConfig::decode(&bytes)
    }
}

fn json_to_msgpack(v: &serde_json::Value) -> rmpv::Value {
    use serde_json::Value as J;
    match v {
        J::Null => rmpv::Value::Nil,
        J::Bool(b) => (*b).into(),
        J::Number(n) => n
            .as_i64()
            .map(rmpv::Value::from)
            .or_else(|| n.as_u64().map(rmpv::Value::from))
            .unwrap_or_else(|| n.as_f64().unwrap_or_default().into()),
        J::String(s) => s.as_str().into(),
        J::Array(a) => rmpv::Value::Array(a.iter().map(json_to_msgpack).collect()),
        J::Object(o) => rmpv::Value::Map(
            o.iter()
                .map(|(k, v)| (k.as_str().into(), json_to_msgpack(v)))
                .collect(),
        ),
    }
}

/// A job's `config {}` block, with the Go driver's keys.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskConfig {
    pub image: String,
    pub pot: String,
    pub tag: String,
    pub command: Option<String>,
    pub args: Vec<String>,
    pub port_map: BTreeMap<String, String>,
    pub network_mode: Option<NetworkMode>,
    /// An explicit pot address (bridge types).
    pub ip: Option<String>,
    /// The private bridge of a private-bridge task.
    pub bridge: Option<String>,
    /// `mount` then `mount_read_only`, in that order (the Go driver's).
    pub mounts: Vec<HostMount>,
    pub copy: Vec<CopyIn>,
    pub extra_hosts: Vec<HostEntry>,
    pub attributes: Vec<(String, String)>,
    /// `maxproc` … `writebps` and `quota`.
    pub limits: Limits,
    /// Whether Nomad's `cpu` caps the task; absent: the agent's default.
    pub cpu_hard_limit: Option<bool>,
}

impl TaskConfig {
    pub fn decode(bytes: &[u8]) -> Result<TaskConfig, CtyError> {
        let o = cty::decode("task config", bytes, schema::TASK)?;
        let required = |k: &str| o.string(k).unwrap_or_default();
        let pairs = |key: &'static str,
                     form: &str|
         -> Result<Vec<(String, String, String)>, CtyError> {
            o.strings(key)
                .iter()
                .enumerate()
                .map(|(i, entry)| {
                    let origin = format!("{key}[{i}]");
                    match entry.split_once(':') {
                        Some((a, b)) if !a.is_empty() && !b.is_empty() => {
                            Ok((origin, a.to_string(), b.to_string()))
                        }
                        _ => Err(CtyError {
                            block: "task config",
                            reason: format!("{origin}: {entry:?} is not of the form \"{form}\""),
                        }),
                    }
                })
                .collect()
        };
        let mut mounts = Vec::new();
        for (key, readonly) in [("mount", false), ("mount_read_only", true)] {
            for (origin, source, target) in pairs(key, "host_path:jail_path")? {
                mounts.push(HostMount {
                    origin,
                    source: source.into(),
                    target,
                    readonly,
                });
            }
        }
        let copy = pairs("copy", "host_path:jail_path")?
            .into_iter()
            .map(|(origin, source, target)| CopyIn {
                origin,
                source: source.into(),
                target,
            })
            .collect();
        let extra_hosts = pairs("extra_hosts", "name:ip")?
            .into_iter()
            .map(|(origin, name, ip)| HostEntry { origin, name, ip })
            .collect();
        let attributes = pairs("attributes", "attribute:value")?
            .into_iter()
            .map(|(_, a, v)| (a, v))
            .collect();
        let engine_err = |e: crate::engine::EngineError| CtyError {
            block: "task config",
            reason: e.to_string(),
        };
        let count = |k: &str| o.string(k).map(|v| parse_count(k, &v)).transpose();
        let size = |k: &str| o.string(k).map(|v| parse_size(k, &v)).transpose();
        let limits = Limits {
            maxproc: count("maxproc").map_err(engine_err)?,
            openfiles: count("openfiles").map_err(engine_err)?,
            vmemoryuse: size("vmemoryuse").map_err(engine_err)?,
            swapuse: size("swapuse").map_err(engine_err)?,
            readbps: size("readbps").map_err(engine_err)?,
            writebps: size("writebps").map_err(engine_err)?,
            quota: size("quota").map_err(engine_err)?,
            ..Limits::default()
        };
        let network_mode = o
            .string("network_mode")
            .map(|m| m.parse::<NetworkMode>())
            .transpose()
            .map_err(|e| CtyError {
                block: "task config",
                reason: e.to_string(),
            })?;
        let config = TaskConfig {
            image: required("image"),
            pot: required("pot"),
            tag: required("tag"),
            command: o.string("command"),
            args: o.strings("args"),
            port_map: o.merged_map("port_map"),
            network_mode,
            ip: o.string("ip"),
            bridge: o.string("bridge"),
            mounts,
            copy,
            extra_hosts,
            attributes,
            limits,
            cpu_hard_limit: o.bool("cpu_hard_limit"),
        };
        Ok(config)
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
    ) -> Result<NetworkRequest, PortError> {
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
                    .map_err(|_| PortError::NotANumber {
                        label: label.clone(),
                        value: pot_port.clone(),
                    })
                    .and_then(|n| port_number(label, "port_map", n))?;
                let host = ports
                    .iter()
                    .find(|p| p.label == *label)
                    .map(|p| i64::from(p.value))
                    .or_else(|| {
                        env.get(&format!("NOMAD_HOST_PORT_{label}"))
                            .and_then(|v| v.parse().ok())
                    })
                    .ok_or_else(|| PortError::NotAllocated {
                        label: label.clone(),
                    })?;
                specs.push(PortSpec {
                    label: label.clone(),
                    host_port: port_number(label, "host port", host)?,
                    pot_port,
                });
            }
        }
        // With network_mode "host" the task uses the host's ports directly: nothing to publish.
        if self.network_mode == Some(NetworkMode::Inherit) {
            specs.clear();
        }
        Ok(NetworkRequest {
            mode: self.network_mode,
            ip: self.ip.clone(),
            bridge: self.bridge.clone(),
            ports: specs,
        })
    }
}

/// Why a task's ports cannot be published as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    #[error("port {label:?}: {what} {number} is not in 1-65535")]
    OutOfRange {
        label: String,
        /// Which number: `host port`, `to` or `port_map`.
        what: &'static str,
        number: i64,
    },
    #[error("port_map {label:?}: {value:?} is not a port number")]
    NotANumber { label: String, value: String },
    #[error(
        "port_map {label:?}: Nomad allocated no port with that label (add `port \"{label}\" {{}}` to the group's network block)"
    )]
    NotAllocated { label: String },
}

fn port_number(label: &str, what: &'static str, number: i64) -> Result<u16, PortError> {
    u16::try_from(number)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| PortError::OutOfRange {
            label: label.to_string(),
            what,
            number,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

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
    fn host_colon_jail_entries_split_on_the_first_colon_only() {
        let list = |v: &[&str]| rmpv::Value::Array(v.iter().map(|s| (*s).into()).collect());
        let m = vec![
            ("image", "http://h/".into()),
            ("pot", "p".into()),
            ("tag", "1".into()),
            ("mount", list(&["/srv/a:b:/data:x"])),
            ("mount_read_only", list(&["local/ro:/ro"])),
            ("copy", list(&["/etc/x.conf:/usr/local/etc/x.conf"])),
            ("extra_hosts", list(&["db:2001:db8::1"])),
            ("attributes", list(&["exec_stop:/bin/sh -c 'a:b'"])),
        ];
        let c = TaskConfig::decode(&encode(m)).unwrap();
        assert_eq!(
            c.mounts,
            [
                HostMount {
                    origin: "mount[0]".into(),
                    source: "/srv/a".into(),
                    target: "b:/data:x".into(),
                    readonly: false
                },
                HostMount {
                    origin: "mount_read_only[0]".into(),
                    source: "local/ro".into(),
                    target: "/ro".into(),
                    readonly: true
                }
            ]
        );
        assert_eq!(c.copy[0].target, "/usr/local/etc/x.conf");
        assert_eq!(
            (c.extra_hosts[0].name.as_str(), c.extra_hosts[0].ip.as_str()),
            ("db", "2001:db8::1")
        );
        assert_eq!(
            c.attributes,
            [("exec_stop".to_string(), "/bin/sh -c 'a:b'".to_string())]
        );
        for (key, entry) in [
            ("mount", "/no-colon"),
            ("copy", ":/x"),
            ("attributes", "a:"),
        ] {
            let m = vec![
                ("image", "http://h/".into()),
                ("pot", "p".into()),
                ("tag", "1".into()),
                (key, list(&[entry])),
            ];
            let e = TaskConfig::decode(&encode(m)).unwrap_err();
            assert!(e.reason.starts_with(&format!("{key}[0]: ")), "{e}");
        }
    }

    #[test]
    fn agent_config_from_json_decodes_like_msgpack() {
        let c = AgentConfig::from_json(&serde_json::json!({
            "enabled": true, "zfs_root": "tank/pot", "signature_pubkeys": ["/k.pub"],
        }))
        .unwrap();
        assert_eq!(c.engine.zfs_root.as_deref(), Some("tank/pot"));
        assert_eq!(c.engine.signature_pubkeys, [PathBuf::from("/k.pub")]);
        let e = AgentConfig::from_json(&serde_json::json!({"zfs_root": 3})).unwrap_err();
        assert!(e.reason.contains("\"zfs_root\" must be string"), "{e}");
        assert!(AgentConfig::from_json(&serde_json::json!({"nope": 1})).is_err());
    }

    #[test]
    fn image_options_reach_the_engine() {
        let bytes = encode(vec![
            ("enabled", true.into()),
            (
                "signature_pubkeys",
                rmpv::Value::Array(vec!["/etc/pot/a.pub".into(), "/etc/pot/b.pub".into()]),
            ),
            ("require_signature", false.into()),
            ("image_max_size", "20G".into()),
            ("image_cache_max", "10".into()),
            ("image_ca_file", "/usr/local/etc/pot/images-ca.pem".into()),
        ]);
        let e = AgentConfig::decode(&bytes).unwrap().engine;
        assert_eq!(
            e.signature_pubkeys,
            [
                PathBuf::from("/etc/pot/a.pub"),
                PathBuf::from("/etc/pot/b.pub")
            ]
        );
        assert_eq!(e.require_signature, Some(false));
        assert_eq!(e.image_max_size.as_deref(), Some("20G"));
        assert_eq!(e.image_cache_max.as_deref(), Some("10"));
        assert_eq!(
            e.image_ca_file,
            Some(PathBuf::from("/usr/local/etc/pot/images-ca.pem"))
        );
        let e = AgentConfig::decode(&encode(vec![("enabled", true.into())]))
            .unwrap()
            .engine;
        assert_eq!(
            (e.signature_pubkeys, e.require_signature),
            (vec![], None),
            "absent options keep pot's behaviour"
        );
    }

    #[test]
    fn an_unknown_network_mode_is_refused_naming_the_key() {
        let m = vec![
            ("image", "http://h/".into()),
            ("pot", "p".into()),
            ("tag", "1".into()),
            ("network_mode", "vlan".into()),
        ];
        let e = TaskConfig::decode(&encode(m)).unwrap_err().to_string();
        assert!(
            e.starts_with("task config: unknown network_mode \"vlan\""),
            "{e}"
        );
    }

    #[test]
    fn network_options_are_decoded() {
        let m = vec![
            ("image", "http://h/".into()),
            ("pot", "p".into()),
            ("tag", "1".into()),
            ("network_mode", "private-bridge".into()),
            ("ip", "10.192.0.9".into()),
            ("bridge", "backend".into()),
        ];
        let c = TaskConfig::decode(&encode(m)).unwrap();
        assert_eq!(
            (c.network_mode, c.ip.as_deref(), c.bridge.as_deref()),
            (
                Some(NetworkMode::PrivateBridge),
                Some("10.192.0.9"),
                Some("backend")
            )
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
            network_mode: mode.map(|m| m.parse().unwrap()),
            ip: None,
            bridge: None,
            mounts: vec![],
            copy: vec![],
            extra_hosts: vec![],
            attributes: vec![],
            limits: Limits::default(),
            cpu_hard_limit: None,
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
        assert_eq!(
            e,
            PortError::NotAllocated {
                label: "nope".into()
            }
        );
        assert!(
            e.to_string()
                .starts_with("port_map \"nope\": Nomad allocated no port with that label"),
            "{e}"
        );
        let e = tc(&[("http", "eighty")], None)
            .network_request(&nomad, &env)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "port_map \"http\": \"eighty\" is not a port number"
        );
        let r = tc(&[("http", "80")], Some("host"))
            .network_request(&nomad, &env)
            .unwrap();
        assert!(r.ports.is_empty());
    }
}
