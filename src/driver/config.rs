//! Typed agent and task configs, decoded from Nomad's msgpack.

use super::cty::{self, CtyError};
use super::schema;
use crate::engine::{CopyIn, HostEntry, HostMount, Limits, Overrides, parse_count, parse_size};
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
                allowed_host_paths: o
                    .strings("allowed_host_paths")
                    .into_iter()
                    .map(PathBuf::from)
                    .collect(),
                allowed_attributes: o.strings("allowed_attributes"),
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

/// A job's `config {}` block, with the Go driver's keys.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskConfig {
    pub image: String,
    pub pot: String,
    pub tag: String,
    pub command: Option<String>,
    pub args: Vec<String>,
    pub port_map: BTreeMap<String, String>,
    pub network_mode: Option<String>,
    /// `mount` then `mount_read_only`, in that order (the Go driver's).
    pub mounts: Vec<HostMount>,
    pub copy: Vec<CopyIn>,
    pub extra_hosts: Vec<HostEntry>,
    pub attributes: Vec<(String, String)>,
    /// `maxproc` … `writebps` and `quota`.
    pub limits: Limits,
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
        let config = TaskConfig {
            image: required("image"),
            pot: required("pot"),
            tag: required("tag"),
            command: o.string("command"),
            args: o.strings("args"),
            port_map: o.merged_map("port_map"),
            network_mode: o.string("network_mode"),
            mounts,
            copy,
            extra_hosts,
            attributes,
            limits,
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
