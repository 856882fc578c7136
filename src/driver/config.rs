//! Typed agent and task configs, decoded from Nomad's msgpack.

use super::cty::{self, CtyError};
use super::schema;
use crate::engine::Overrides;
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
                args_quote_compat: o.bool("args_quote_compat"),
                signature_pubkeys: Some(o.strings("signature_pubkeys"))
                    .filter(|keys| !keys.is_empty())
                    .map(|keys| keys.into_iter().map(PathBuf::from).collect()),
                require_signature: o.bool("require_signature"),
                image_max_size: o.string("image_max_size"),
                image_cache_max: o.string("image_cache_max"),
            },
        })
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskConfig {
    pub image: String,
    pub pot: String,
    pub tag: String,
    pub command: Option<String>,
    pub args: Vec<String>,
    pub port_map: BTreeMap<String, String>,
    pub network_mode: Option<String>,
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
        match self.network_mode.as_deref() {
            None | Some("host") | Some("inherit") => {}
            Some(other) => {
                return Err(unsupported(format!(
                    "network_mode {other:?} is not supported yet (supported: \"host\", \"inherit\")"
                )));
            }
        }
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
    fn agent_config_from_json_decodes_like_msgpack() {
        let c = AgentConfig::from_json(&serde_json::json!({
            "enabled": true, "zfs_root": "tank/pot", "signature_pubkeys": ["/k.pub"],
        }))
        .unwrap();
        assert_eq!(c.engine.zfs_root.as_deref(), Some("tank/pot"));
        assert_eq!(
            c.engine.signature_pubkeys,
            Some(vec![PathBuf::from("/k.pub")])
        );
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
        ]);
        let e = AgentConfig::decode(&bytes).unwrap().engine;
        assert_eq!(
            e.signature_pubkeys,
            Some(vec![
                PathBuf::from("/etc/pot/a.pub"),
                PathBuf::from("/etc/pot/b.pub")
            ])
        );
        assert_eq!(e.require_signature, Some(false));
        assert_eq!(e.image_max_size.as_deref(), Some("20G"));
        assert_eq!(e.image_cache_max.as_deref(), Some("10"));
        let e = AgentConfig::decode(&encode(vec![("enabled", true.into())]))
            .unwrap()
            .engine;
        assert_eq!(
            (e.signature_pubkeys, e.require_signature),
            (None, None),
            "absent options keep pot's behaviour"
        );
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
        m.push(("network_mode", "public-bridge".into()));
        let e = TaskConfig::decode(&encode(m)).unwrap_err();
        assert!(e.reason.contains("network_mode \"public-bridge\""), "{e}");
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
}
